#!/usr/bin/env bash
# bench/fairness.sh: does one writer of huge items hurt everybody else?
#
# Starts `kpush queued --sync $SYNC`, then runs `kpush bench --mode set` with
# $CONNS connections setting $SIZE-byte items for $DURATION twice: alone
# (the reference), and beside $BIG_CONNS connection(s) that alternate a set
# of a $BIG_SIZE-byte item and a get on another queue (bench_big). The small
# writers offer a fixed $RATE sets/s in total (open loop, latency counted
# from each set's scheduled time), so both runs carry the same load and a
# stall shows in the percentiles instead of lowering the rate. Reports
# the small sets' rate and p50/p99/p99.9 in both runs and their ratios, and
# what the big writer achieved. The same two runs against a queued with
# --sync never (what fsync adds) and against memcached (-I sized for the
# big items) are the references: they show how much of the slowdown is
# the disk's fsyncs and how much the machine (client and server share its
# CPUs, loopback copies) rather than queued's scheduling. Writes bench-results/fairness-<time>.md.
#
# Environment: CONNS (10), SIZE (100), RATE (2000; 0 = closed loop, as fast
# as replies come), BIG_CONNS (1), BIG_SIZE (8388608), DURATION (10s), SYNC
# (always), KPUSH, DATA_ROOT, OUT_DIR.
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"

CONNS=${CONNS:-10}
SIZE=${SIZE:-100}
BIG_CONNS=${BIG_CONNS:-1}
BIG_SIZE=${BIG_SIZE:-8388608}
DURATION=${DURATION:-10s}
SYNC=${SYNC:-always}
RATE=${RATE:-2000}

bench_init
need jq jq
build_kpush

STAMP=$(date -u +%Y%m%dT%H%M%SZ)
REPORT=$OUT_DIR/fairness-$STAMP.md
RAW=$OUT_DIR/fairness-$STAMP
mkdir -p "$RAW"

# max_item_size must admit the big items.
printf 'max_item_size = %d\n' $((BIG_SIZE * 2)) >"$WORK/fairness.conf"
start_queued daemon "$SYNC" --config "$WORK/fairness.conf"
MAIN_ADDR=$QUEUED_ADDR
start_queued nosync never --config "$WORK/fairness.conf"
NOSYNC_ADDR=$QUEUED_ADDR

need memcached memcached
MC_PORT=$(free_port)
mc_user=()
[[ $(id -u) -eq 0 ]] && mc_user=(-u nobody)
memcached "${mc_user[@]}" -l 127.0.0.1 -p "$MC_PORT" -U 0 -t 2 -m 2048 -I "$(((BIG_SIZE * 2 + 1048575) / 1048576))m" &
MC_PID=$!
STARTED_PIDS+=("$MC_PID")
wait_port "$MC_PORT" "$MC_PID"

run() { # NAME TARGET ADDR EXTRA-ARGS...
	local name=$1 target=$2 addr=$3
	shift 3
	log "run $name"
	"$KPUSH" bench --servers "$addr" --target "$target" --mode set --conns "$CONNS" --size "$SIZE" --duration "$DURATION" \
		--queue bench --rate "$RATE" --json --quiet "$@" >"$RAW/$name.json"
}
run alone kestrel "$MAIN_ADDR"
run beside-big kestrel "$MAIN_ADDR" --big-conns "$BIG_CONNS" --big-size "$BIG_SIZE"
run never-alone kestrel "$NOSYNC_ADDR"
run never-beside-big kestrel "$NOSYNC_ADDR" --big-conns "$BIG_CONNS" --big-size "$BIG_SIZE"
run memcached-alone memcached "127.0.0.1:$MC_PORT"
run memcached-beside-big memcached "127.0.0.1:$MC_PORT" --big-conns "$BIG_CONNS" --big-size "$BIG_SIZE"

k() { # NAME KIND FIELD
	jq -r --arg k "$2" --arg f "$3" '.runs[0].kinds[] | select(.kind == $k) | .[$f] // empty' "$RAW/$1.json"
}
{
	echo "# Fairness: $CONNS writers of $SIZE B beside $BIG_CONNS writer(s) of $BIG_SIZE B ($STAMP)"
	echo
	machine_info
	echo "- kpush queued --sync $SYNC; kpush bench --mode set --duration $DURATION --rate $RATE (0: closed loop); the big writer alternates set and get on queue bench_big"
	echo
	echo "Runs: \`alone\`/\`beside-big\`: queued --sync $SYNC; \`never-*\`: queued --sync never; \`memcached-*\`: memcached."
	echo
	echo "| run | small sets/s | p50 (µs) | p99 (µs) | p99.9 (µs) | max (µs) | big sets | big set p50 (µs) |"
	echo "|---|---:|---:|---:|---:|---:|---:|---:|"
	for n in alone beside-big never-alone never-beside-big memcached-alone memcached-beside-big; do
		echo "| $n | $(fmt_int "$(k $n set ops_per_sec)") | $(fmt_int "$(k $n set p50_us)") | $(fmt_int "$(k $n set p99_us)") | $(fmt_int "$(k $n set p999_us)") | $(fmt_int "$(k $n set max_us)") | $(k $n bigset ops | grep . || echo 0) | $(fmt_int "$(k $n bigset p50_us)") |"
	done
	echo
	echo "- queued --sync $SYNC: p99 of small sets beside the big writer / alone: **$(ratio "$(k beside-big set p99_us)" "$(k alone set p99_us)")**;" \
		"rate beside / alone: **$(ratio "$(k beside-big set ops_per_sec)" "$(k alone set ops_per_sec)")**"
	echo "- queued --sync never: p99 beside / alone: **$(ratio "$(k never-beside-big set p99_us)" "$(k never-alone set p99_us)")**;" \
		"rate beside / alone: **$(ratio "$(k never-beside-big set ops_per_sec)" "$(k never-alone set ops_per_sec)")**"
	echo "- memcached (reference): p99 beside / alone: **$(ratio "$(k memcached-beside-big set p99_us)" "$(k memcached-alone set p99_us)")**;" \
		"rate beside / alone: **$(ratio "$(k memcached-beside-big set ops_per_sec)" "$(k memcached-alone set ops_per_sec)")**"
	echo
	echo "Raw outputs: \`$(basename "$RAW")/\`."
} >"$REPORT"
cat "$REPORT"
log "report written to $REPORT"
