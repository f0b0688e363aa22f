#!/usr/bin/env python3
"""Enqueue one push message on a queued server with a stock Python memcache
client (pymemcache; Debian: python3-pymemcache). A queued `set` is an
enqueue: the key is the queue name, the value the message JSON.

    KPUSH_SERVER=127.0.0.1:22133 python3 examples/python/enqueue.py [--queue push]
"""

import argparse
import json
import os
import sys

from pymemcache.client.base import Client


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--server", default=os.environ.get("KPUSH_SERVER", "127.0.0.1:22133"))
    ap.add_argument("--queue", default="push")
    args = ap.parse_args()

    host, _, port = args.server.rpartition(":")
    msg = {
        "id": "example-python-1",
        "tokens": ["a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90"],
        "topic": "com.example.app",
        "alert": {"title": "Hello", "body": "from pymemcache"},
        "data": {"order": 1234},
    }
    client = Client((host, int(port)), connect_timeout=2, timeout=2)
    try:
        # noreply=False waits for the answer: True on STORED, False on
        # NOT_STORED (the queue is full).
        stored = client.set(args.queue, json.dumps(msg, separators=(",", ":")), noreply=False)
    finally:
        client.close()
    if not stored:
        print(f"queue {args.queue} is full on {args.server} (NOT_STORED)", file=sys.stderr)
        return 2
    print(f"stored 1 message on queue {args.queue} at {args.server}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
