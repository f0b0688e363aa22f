#!/usr/bin/env bash
# bench/compare.sh: the set/get flood against queued and its peers.
#
# Starts, on 127.0.0.1 high ports: memcached, redis-server (no persistence)
# and redis-server with appendfsync always, `kpush queued --sync never` and
# `kpush queued --sync always` (each in a fresh temp directory). Then runs
#   kpush bench --mode setget   at each of $CONNS connections against
#                               memcached and both queueds (each connection
#                               alternates a set and a get of $SIZE bytes)
#   redis-benchmark -t lpush,rpop  at the same connection counts against
#                               both redis servers
#   kpush bench --mode reliable (get q/close/open, a worker's loop) against
#                               both queueds, after filling exactly the items
#                               the run takes
# and writes a markdown report with the ratios (queued/memcached,
# always/never, queued/redis) to bench-results/compare-<time>.md, raw
# outputs beside it, and the flood's requests/s by connections to the
# results file bench/results/flood.jsonl (the README's picture; see
# bench/README.md). Kills only the processes it started (by PID).
#
# Environment: CONNS (1,10,50,200), DURATION per run (10s, after a WARMUP
# of 1s that is not measured), SIZE (100),
# REDIS_REQUESTS per redis-benchmark test (200000; for the fsyncing redis
# at most REDIS_AOF_PER_CONN=5000 per connection), KPUSH (a prebuilt
# binary; default: build ./cmd/kpush), DATA_ROOT (where the temp data dirs
# go; default /tmp), OUT_DIR (bench-results), RESULTS (the results file).
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"

CONNS=${CONNS:-1,10,50,200}
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-1s}
SIZE=${SIZE:-100}
REDIS_REQUESTS=${REDIS_REQUESTS:-200000}
# redis with appendfsync always manages ~1k requests/s on one connection:
# its runs get at most this many requests per connection.
REDIS_AOF_PER_CONN=${REDIS_AOF_PER_CONN:-5000}
# The reliable loop runs a fixed number of requests (it needs that many
# items first): RELIABLE_OPS, at most RELIABLE_PER_CONN per connection.
RELIABLE_OPS=${RELIABLE_OPS:-100000}
RELIABLE_PER_CONN=${RELIABLE_PER_CONN:-5000}

bench_init
need memcached memcached
need redis-server redis-server
need redis-benchmark redis-tools
need jq jq
build_kpush

STAMP=$(date -u +%Y%m%dT%H%M%SZ)
results_open flood compare.sh CONNS DURATION WARMUP SIZE REDIS_REQUESTS REDIS_AOF_PER_CONN RELIABLE_OPS RELIABLE_PER_CONN
RAW=$OUT_DIR/compare-$STAMP
REPORT=$OUT_DIR/compare-$STAMP.md
mkdir -p "$RAW"

# memcached
MC_PORT=$(free_port)
mc_user=()
[[ $(id -u) -eq 0 ]] && mc_user=(-u nobody)
memcached "${mc_user[@]}" -l 127.0.0.1 -p "$MC_PORT" -U 0 -t 2 -c 4096 -m 1024 &
MC_PID=$!
STARTED_PIDS+=("$MC_PID")
wait_port "$MC_PORT" "$MC_PID"
log "memcached pid $MC_PID on 127.0.0.1:$MC_PORT"

# redis, in memory only, and with every write fsynced before the reply
start_redis() { # NAME EXTRA-ARGS...
	local name=$1 port
	shift
	port=$(free_port)
	mkdir -p "$WORK/$name"
	redis-server --bind 127.0.0.1 --port "$port" --dir "$WORK/$name" --save '' --daemonize no \
		--maxclients 4096 "$@" >"$WORK/$name/redis.log" 2>&1 &
	local pid=$!
	STARTED_PIDS+=("$pid")
	wait_port "$port" "$pid"
	log "redis $name pid $pid on 127.0.0.1:$port"
	echo "$port" >"$WORK/$name/port"
}
start_redis redis --appendonly no
start_redis redis-aof --appendonly yes --appendfsync always
REDIS_PORT=$(cat "$WORK/redis/port")
REDIS_AOF_PORT=$(cat "$WORK/redis-aof/port")

start_queued never never
NEVER_ADDR=$QUEUED_ADDR
start_queued always always
ALWAYS_ADDR=$QUEUED_ADDR

run_kpush() { # NAME TARGET ADDR
	log "kpush bench setget against $1 ($3), conns $CONNS, $DURATION each"
	"$KPUSH" bench --servers "$3" --target "$2" --mode setget --conns "$CONNS" --duration "$DURATION" --warmup "$WARMUP" \
		--size "$SIZE" --json --quiet >"$RAW/$1.json"
}
run_kpush memcached memcached "127.0.0.1:$MC_PORT"
run_kpush queued-never kestrel "$NEVER_ADDR"
run_kpush queued-always kestrel "$ALWAYS_ADDR"

run_reliable() { # NAME ADDR
	local c n
	for c in ${CONNS//,/ }; do
		n=$((c * RELIABLE_PER_CONN < RELIABLE_OPS ? c * RELIABLE_PER_CONN : RELIABLE_OPS))
		log "kpush bench reliable against $1, $c connections, $n requests"
		"$KPUSH" bench --servers "$2" --mode reliable --conns "$c" --ops "$n" --size "$SIZE" --json --quiet \
			>"$RAW/$1-reliable-c$c.json"
	done
}
run_reliable queued-never "$NEVER_ADDR"
run_reliable queued-always "$ALWAYS_ADDR"

run_redis() { # NAME PORT PER-CONN-CAP
	local c n
	for c in ${CONNS//,/ }; do
		n=$REDIS_REQUESTS
		if [[ -n "$3" ]] && ((c * $3 < n)); then
			n=$((c * $3))
		fi
		log "redis-benchmark lpush,rpop against $1, $c connections, $n requests"
		redis-benchmark -h 127.0.0.1 -p "$2" -c "$c" -n "$n" -d "$SIZE" -t lpush,rpop --csv \
			>"$RAW/$1-c$c.csv"
	done
}
run_redis redis "$REDIS_PORT" ""
run_redis redis-aof "$REDIS_AOF_PORT" "$REDIS_AOF_PER_CONN"

# kv NAME CONNS FIELD: ops_per_sec or the "all" row's latency field.
kv() {
	jq -r --argjson c "$2" --arg f "$3" '.runs[] | select(.conns == $c) |
		if $f == "ops_per_sec" then .ops_per_sec else (.kinds[] | select(.kind == "all") | .[$f]) end' "$RAW/$1.json"
}
# redis_rate NAME CONNS: requests/s over the LPUSH then RPOP runs together
# (2 / (1/lpush + 1/rpop)): the rate of a loop doing both.
redis_rate() {
	awk -F'"' '$2 == "LPUSH" {l = $4} $2 == "RPOP" {r = $4} END { if (l > 0 && r > 0) printf "%.0f", 2 / (1/l + 1/r) }' "$RAW/$1-c$2.csv"
}
# redis_p99 NAME CONNS: "LPUSH p99 / RPOP p99" in µs.
redis_p99() {
	awk -F'"' '$2 == "LPUSH" {l = $14} $2 == "RPOP" {r = $14} END { printf "%.0f / %.0f", l * 1000, r * 1000 }' "$RAW/$1-c$2.csv"
}

for c in ${CONNS//,/ }; do
	result "memcached (set/get)" "$c" "$(kv memcached "$c" ops_per_sec)"
	result "kpush queued --sync never" "$c" "$(kv queued-never "$c" ops_per_sec)"
	result "kpush queued --sync always" "$c" "$(kv queued-always "$c" ops_per_sec)"
	result "redis LPUSH/RPOP (in memory)" "$c" "$(redis_rate redis "$c")"
	result "redis LPUSH/RPOP (appendfsync always)" "$c" "$(redis_rate redis-aof "$c")"
done
results_close

{
	echo "# Set/get flood: queued vs memcached vs redis ($STAMP)"
	echo
	machine_info
	echo "- memcached $(memcached -V | awk '{print $2}'), redis $(redis-server --version | sed 's/.*v=\([^ ]*\).*/\1/')"
	echo "- kpush bench --mode setget --size $SIZE --duration $DURATION --warmup $WARMUP (each connection: set, wait, get, wait);"
	echo "  redis-benchmark -t lpush,rpop -d $SIZE -n $REDIS_REQUESTS (aof-always: at most $REDIS_AOF_PER_CONN per connection)."
	echo "  Rates count every request (a set and a get are 2); redis's is 2/(1/lpush + 1/rpop)."
	echo
	echo "## Throughput (requests/s)"
	echo
	echo "| conns | memcached | queued never | queued always | redis | redis aof-always | never/memcached | always/never | never/redis | always/redis-aof |"
	echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
	for c in ${CONNS//,/ }; do
		mc=$(kv memcached "$c" ops_per_sec)
		nv=$(kv queued-never "$c" ops_per_sec)
		al=$(kv queued-always "$c" ops_per_sec)
		rd=$(redis_rate redis "$c")
		ra=$(redis_rate redis-aof "$c")
		echo "| $c | $(fmt_int "$mc") | $(fmt_int "$nv") | $(fmt_int "$al") | $(fmt_int "$rd") | $(fmt_int "$ra") | $(ratio "$nv" "$mc") | $(ratio "$al" "$nv") | $(ratio "$nv" "$rd") | $(ratio "$al" "$ra") |"
	done
	echo
	echo "## Latency p50 / p99 / p99.9 (µs)"
	echo
	echo "| conns | memcached | queued never | queued always | redis p99 LPUSH / RPOP | redis aof-always p99 LPUSH / RPOP |"
	echo "|---:|---:|---:|---:|---:|---:|"
	for c in ${CONNS//,/ }; do
		row="| $c "
		for n in memcached queued-never queued-always; do
			row+="| $(fmt_int "$(kv $n "$c" p50_us)") / $(fmt_int "$(kv $n "$c" p99_us)") / $(fmt_int "$(kv $n "$c" p999_us)") "
		done
		row+="| $(redis_p99 redis "$c") | $(redis_p99 redis-aof "$c") |"
		echo "$row"
	done
	echo
	echo "## Reliable loop: get q/close/open (requests/s, p50 / p99 / p99.9 µs)"
	echo
	echo "Each request confirms the previous item and opens the next, as a worker does; the queue is filled first."
	echo
	echo "| conns | queued never | latency | queued always | latency | always/never |"
	echo "|---:|---:|---:|---:|---:|---:|"
	for c in ${CONNS//,/ }; do
		rn=$RAW/queued-never-reliable-c$c.json
		ra=$RAW/queued-always-reliable-c$c.json
		lat() { jq -r '.runs[0].kinds[0] | "\(.p50_us|round) / \(.p99_us|round) / \(.p999_us|round)"' "$1"; }
		vn=$(jq '.runs[0].ops_per_sec' "$rn")
		va=$(jq '.runs[0].ops_per_sec' "$ra")
		echo "| $c | $(fmt_int "$vn") | $(lat "$rn") | $(fmt_int "$va") | $(lat "$ra") | $(ratio "$va" "$vn") |"
	done
	echo
	echo "Raw outputs: \`$(basename "$RAW")/\` (kpush bench --json, redis-benchmark --csv)."
} >"$REPORT"

cat "$REPORT"
log "report written to $REPORT"
