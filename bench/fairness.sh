#!/usr/bin/env bash
# bench/fairness.sh: does one writer of huge items hurt everybody else?
#
# Starts `kpush queued --sync $SYNC`, then runs `kpush bench --mode set` with
# $CONNS connections setting $SIZE-byte items for $DURATION twice: alone
# (the reference), and beside $BIG_CONNS connection(s) that alternate a set
# of a $BIG_SIZE-byte item and a get on another queue (bench_big). Reports
# the small sets' rate and p50/p99/p99.9 in both runs and their ratios, and
# what the big writer achieved. Writes bench-results/fairness-<time>.md.
#
# Environment: CONNS (10), SIZE (100), BIG_CONNS (1), BIG_SIZE (8388608),
# DURATION (10s), SYNC (always), KPUSH, DATA_ROOT, OUT_DIR.
source "$(dirname "$0")/lib.sh"

CONNS=${CONNS:-10}
SIZE=${SIZE:-100}
BIG_CONNS=${BIG_CONNS:-1}
BIG_SIZE=${BIG_SIZE:-8388608}
DURATION=${DURATION:-10s}
SYNC=${SYNC:-always}

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

run() { # NAME EXTRA-ARGS...
	local name=$1
	shift
	log "run $name"
	"$KPUSH" bench --addr "$QUEUED_ADDR" --mode set --conns "$CONNS" --size "$SIZE" --duration "$DURATION" \
		--queue bench --json --quiet "$@" >"$RAW/$name.json"
}
run alone
run beside-big --big-conns "$BIG_CONNS" --big-size "$BIG_SIZE"

k() { # NAME KIND FIELD
	jq -r --arg k "$2" --arg f "$3" '.runs[0].kinds[] | select(.kind == $k) | .[$f] // empty' "$RAW/$1.json"
}
{
	echo "# Fairness: $CONNS writers of $SIZE B beside $BIG_CONNS writer(s) of $BIG_SIZE B ($STAMP)"
	echo
	machine_info
	echo "- kpush queued --sync $SYNC; kpush bench --mode set --duration $DURATION; the big writer alternates set and get on queue bench_big"
	echo
	echo "| run | small sets/s | p50 (µs) | p99 (µs) | p99.9 (µs) | max (µs) | big sets | big set p50 (µs) |"
	echo "|---|---:|---:|---:|---:|---:|---:|---:|"
	for n in alone beside-big; do
		echo "| $n | $(fmt_int "$(k $n set ops_per_sec)") | $(fmt_int "$(k $n set p50_us)") | $(fmt_int "$(k $n set p99_us)") | $(fmt_int "$(k $n set p999_us)") | $(fmt_int "$(k $n set max_us)") | $(k $n bigset ops | grep . || echo 0) | $(fmt_int "$(k $n bigset p50_us)") |"
	done
	echo
	echo "- p99 of small sets beside the big writer / alone: **$(ratio "$(k beside-big set p99_us)" "$(k alone set p99_us)")**"
	echo "- small-set rate beside the big writer / alone: **$(ratio "$(k beside-big set ops_per_sec)" "$(k alone set ops_per_sec)")**"
	echo
	echo "Raw outputs: \`$(basename "$RAW")/\`."
} >"$REPORT"
cat "$REPORT"
log "report written to $REPORT"
