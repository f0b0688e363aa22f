#!/usr/bin/env python3
"""Enqueue one push message on a queued server with a stock Python memcache
client (pymemcache; Debian: python3-pymemcache). A queued `set` is an
enqueue: the key is the queue name, the value the message JSON.

    python3 examples/python/enqueue.py [--servers 127.0.0.1:22133] [--queue push]

The servers can also come from $KPUSH_SERVERS (comma-separated); with
several, pymemcache's HashClient picks one by hashing the key, the queue
name.
"""

import argparse
import json
import os
import sys

from pymemcache.client.hash import HashClient


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = os.environ.get("KPUSH_SERVERS") or os.environ.get("KPUSH_SERVER") or "127.0.0.1:22133"
    ap.add_argument("--servers", "--server", dest="servers", default=default,
                    help="queued servers, host:port, comma-separated (--server is the old spelling)")
    ap.add_argument("--queue", default="push")
    args = ap.parse_args()

    msg = {
        "id": "example-python-1",
        "tokens": ["a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90"],
        "topic": "com.example.app",
        "alert": {"title": "Hello", "body": "from pymemcache"},
        "data": {"order": 1234},
    }
    servers = []
    for s in args.servers.split(","):
        host, _, port = s.strip().rpartition(":")
        servers.append((host, int(port)))
    client = HashClient(servers, connect_timeout=2, timeout=2)
    try:
        # noreply=False waits for the answer: True on STORED, False on
        # NOT_STORED (the queue is full).
        stored = client.set(args.queue, json.dumps(msg, separators=(",", ":")), noreply=False)
    finally:
        client.close()
    if not stored:
        print(f"queue {args.queue} is full on {args.servers} (NOT_STORED)", file=sys.stderr)
        return 2
    print(f"stored 1 message on queue {args.queue} at {args.servers}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
