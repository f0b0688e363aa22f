#!/bin/sh
# Enqueue one push message on a queued server from the shell: a memcache
# "set <queue> <flags> <exptime> <bytes>" followed by the data. queued
# answers STORED once the item is journaled.
#
#   KPUSH_SERVER=127.0.0.1:22133 KPUSH_QUEUE=push examples/shell/enqueue.sh
#
# Needs nc (netcat-openbsd). The message may be given as the first argument.
set -eu

server=${KPUSH_SERVER:-127.0.0.1:22133}
queue=${KPUSH_QUEUE:-push}
host=${server%:*}
port=${server##*:}
msg=${1:-'{"id":"example-shell-1","tokens":["a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90"],"topic":"com.example.app","alert":"Hello from the shell"}'}

# The byte count, not the character count.
len=$(printf '%s' "$msg" | LC_ALL=C wc -c | tr -d ' ')

# "quit" makes the server close the connection, so nc exits after the reply.
reply=$(printf 'set %s 0 0 %s\r\n%s\r\nquit\r\n' "$queue" "$len" "$msg" | nc -w 5 "$host" "$port" | tr -d '\r')

case $reply in
STORED) echo "stored 1 message on queue $queue at $server" ;;
NOT_STORED) echo "queue $queue is full on $server (NOT_STORED)" >&2; exit 2 ;;
*) echo "enqueue on $server failed: ${reply:-no reply}" >&2; exit 1 ;;
esac
