#!/usr/bin/env bash
# Enqueue one push message on a queued server from the shell, with bash
# alone (its /dev/tcp; no nc, no memcache client): a memcache
# "set <queue> <flags> <exptime> <bytes>" followed by the data. queued
# answers STORED once the item is journaled.
#
#   KPUSH_SERVERS=127.0.0.1:22133 KPUSH_QUEUE=push examples/shell/enqueue.sh
#
# The first of $KPUSH_SERVERS is used. The message may be given as the
# first argument.
set -euo pipefail

servers=${KPUSH_SERVERS:-${KPUSH_SERVER:-127.0.0.1:22133}}
server=${servers%%,*}
queue=${KPUSH_QUEUE:-push}
host=${server%:*}
port=${server##*:}
msg=${1:-'{"id":"example-shell-1","tokens":["a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90"],"topic":"com.example.app","alert":"Hello from the shell"}'}

# The byte count, not the character count.
len=$(printf '%s' "$msg" | LC_ALL=C wc -c | tr -d ' ')

# "quit" makes the server close the connection after the reply, so the read
# ends; the timeout covers a server that never answers.
reply=$(
	exec 3<>"/dev/tcp/$host/$port" || exit 1
	printf 'set %s 0 0 %s\r\n%s\r\nquit\r\n' "$queue" "$len" "$msg" >&3
	timeout 5 cat <&3 | tr -d '\r'
) || true

case $reply in
STORED) echo "stored 1 message on queue $queue at $server" ;;
NOT_STORED) echo "queue $queue is full on $server (NOT_STORED)" >&2; exit 2 ;;
*) echo "enqueue on $server failed: ${reply:-no reply}" >&2; exit 1 ;;
esac
