#!/usr/bin/env bash
# bench/e2e.sh: end-to-end deliveries per second by worker --concurrency,
# with the kpush binaries run as users run them: `kpush queued`,
# `kpush apns-sim` and `kpush worker` as separate processes, their default
# flags except the addresses (and the simulator's development key).
#
# For each --concurrency in $CONCURRENCY: fill the queue with N messages
# (`kpush enqueue --file`; N = min($TOTAL, concurrency x $PER_SLOT), not
# timed), start `kpush worker --concurrency C`, and time the simulator's
# accepted count from 5% to 95% of N (so the worker's start and the last
# stragglers are left out); then stop the worker (SIGTERM) and check the
# queue is empty. Each level runs $REPEAT times; the results file gets the
# median, the report every run. Writes bench-results/e2e-<time>.md and the results file
# bench/results/e2e.jsonl (the README's picture; see bench/README.md).
#
# Environment: CONCURRENCY (1,4,16,64,256,1000,4000), TOTAL (50000),
# PER_SLOT (1000), REPEAT (3), KPUSH, DATA_ROOT, OUT_DIR, RESULTS.
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"

CONCURRENCY=${CONCURRENCY:-1,4,16,64,256,1000,4000}
TOTAL=${TOTAL:-50000}
PER_SLOT=${PER_SLOT:-1000}
REPEAT=${REPEAT:-3}

bench_init
need jq jq
need curl curl
build_kpush

STAMP=$(date -u +%Y%m%dT%H%M%SZ)
results_open e2e e2e.sh CONCURRENCY TOTAL PER_SLOT REPEAT
REPORT=$OUT_DIR/e2e-$STAMP.md
RAW=$OUT_DIR/e2e-$STAMP
mkdir -p "$RAW"

# listen_addr LOG SERVICE PID: the address a kpush daemon logged.
listen_addr() {
	local addr="" deadline=$((SECONDS + 30))
	while [[ -z "$addr" ]]; do
		addr=$(sed -n "s/.*msg=listening service=$2 addr=\([^ ]*\).*/\1/p" "$1" | head -1)
		if [[ -z "$addr" ]]; then
			kill -0 "$3" 2>/dev/null || { cat "$1" >&2; log "$2 exited"; return 1; }
			((SECONDS < deadline)) || { log "$2 did not listen within 30s"; return 1; }
			sleep 0.05
		fi
	done
	echo "$addr"
}

mkdir -p "$WORK/sim"
"$KPUSH" apns-sim --listen 127.0.0.1:0 --tls-dir "$WORK/sim" >"$WORK/sim/out.log" 2>"$WORK/sim/sim.log" &
SIM_PID=$!
STARTED_PIDS+=("$SIM_PID")
SIM_ADDR=$(listen_addr "$WORK/sim/sim.log" apns-sim "$SIM_PID")
log "apns-sim pid $SIM_PID on $SIM_ADDR"

# queued with the delay queue the worker's retries go through (README,
# "Configuration").
cat >"$WORK/queued.conf" <<CONF
queues {
  push_retry { expire_to_queue = "push" }
}
CONF
start_queued queued always --config "$WORK/queued.conf"

sim_accepted() {
	curl -sS --cacert "$WORK/sim/ca.pem" "https://$SIM_ADDR/sim/stats?tokens=0" | jq '.accepted'
}

# One message per line, each to its own device token.
messages() { # N
	awk -v n="$1" 'BEGIN { for (i = 1; i <= n; i++) printf "{\"tokens\":[\"%064x\"],\"topic\":\"com.example.app\",\"alert\":\"message %d\"}\n", i, i }'
}

# one_run C N: sets RATE to the deliveries/s of one worker run at
# concurrency C over N messages.
one_run() {
	local c=$1 n=$2
	log "concurrency $c: enqueueing $n messages"
	messages "$n" | "$KPUSH" enqueue --servers "$QUEUED_ADDR" --file - --concurrency 32 >"$RAW/enqueue-c$c.txt"
	base=$(sim_accepted)
	lo=$((base + n * 5 / 100))
	hi=$((base + n * 95 / 100))
	"$KPUSH" worker --servers "$QUEUED_ADDR" --concurrency "$c" \
		--apns-host "https://$SIM_ADDR" --apns-ca "$WORK/sim/ca.pem" \
		--auth-key "$WORK/sim/dev-key.p8" --key-id KPUSHSIM01 --team-id KPUSHDEV01 \
		2>"$RAW/worker-c$c.log" &
	wpid=$!
	STARTED_PIDS+=("$wpid")
	t_lo="" t_hi=""
	deadline=$((SECONDS + 600))
	while [[ -z "$t_hi" ]]; do
		a=$(sim_accepted)
		now=$(date +%s.%N)
		[[ -z "$t_lo" ]] && ((a >= lo)) && t_lo=$now
		[[ -n "$t_lo" ]] && ((a >= hi)) && t_hi=$now
		kill -0 "$wpid" 2>/dev/null || { cat "$RAW/worker-c$c.log" >&2; log "worker exited"; exit 1; }
		((SECONDS < deadline)) || { log "concurrency $c: no 95% within 600 s"; exit 1; }
		[[ -z "$t_hi" ]] && sleep 0.1
	done
	while (($(sim_accepted) < base + n)); do
		((SECONDS < deadline)) || { log "concurrency $c: not all $n delivered"; exit 1; }
		sleep 0.1
	done
	stop_pid "$wpid"
	left=$(server_stat "$QUEUED_ADDR" queue_push_items)
	[[ "$left" == 0 ]] || { log "concurrency $c: $left items left in the queue"; exit 1; }
	RATE=$(awk -v n="$n" -v a="$t_lo" -v b="$t_hi" 'BEGIN { printf "%.0f", n * 0.9 / (b - a) }')
}

ROWS=()
for c in ${CONCURRENCY//,/ }; do
	n=$((c * PER_SLOT < TOTAL ? c * PER_SLOT : TOTAL))
	rates=()
	for ((r = 1; r <= REPEAT; r++)); do
		one_run "$c" "$n"
		rates+=("$RATE")
		log "concurrency $c, run $r: ${rates[-1]}/s"
	done
	median=$(printf '%s\n' "${rates[@]}" | sort -n | awk '{v[NR] = $1} END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }')
	result "kpush worker -> kpush apns-sim (queued --sync always)" "$c" "$median"
	ROWS+=("| $c | $(fmt_int "$n") | $(fmt_int "$median") | ${rates[*]} | $(cut -d' ' -f1 /proc/loadavg) |")
	log "${ROWS[-1]}"
done
results_close

{
	echo "# End to end: deliveries/s by worker --concurrency ($STAMP)"
	echo
	machine_info
	echo "- kpush queued (sync always), kpush worker, kpush apns-sim: separate processes, default flags; rate = 90% of N over the time from 5% to 95% delivered"
	echo
	echo "| --concurrency | messages | deliveries/s (median) | each run | load average |"
	echo "|---:|---:|---:|---|---:|"
	printf '%s\n' "${ROWS[@]}"
} >"$REPORT"
cat "$REPORT"
log "report written to $REPORT"
