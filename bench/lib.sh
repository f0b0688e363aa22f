# shellcheck shell=bash
# Shared helpers of the bench/ scripts (sourced, not run). They start
# servers on 127.0.0.1, remember every PID they started, and the EXIT trap
# installed by bench_init kills exactly those PIDs — never anything by name.

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# The variables the script was given in its environment, before it sets
# its defaults (for command_line).
ENV_GIVEN=" $(compgen -e | tr '\n' ' ') "
OUT_DIR=${OUT_DIR:-$ROOT/bench-results}
STARTED_PIDS=()
WORK=""

bench_init() {
	WORK=$(mktemp -d "${DATA_ROOT:-/tmp}/kpush-bench.XXXXXX")
	trap bench_cleanup EXIT
	trap 'exit 130' INT TERM
	mkdir -p "$OUT_DIR"
}

bench_cleanup() {
	local pid
	for pid in "${STARTED_PIDS[@]}"; do
		kill "$pid" 2>/dev/null || true
	done
	for pid in "${STARTED_PIDS[@]}"; do
		wait "$pid" 2>/dev/null || true
	done
	if [[ -n "$WORK" && -z "${KEEP_WORK:-}" ]]; then
		rm -rf "$WORK"
	fi
}

log() { printf '%s %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

# need CMD PACKAGE: install PACKAGE with apt-get when CMD is missing.
APT_UPDATED=""
need() {
	command -v "$1" >/dev/null 2>&1 && return 0
	log "installing $2 (for $1)"
	local sudo=""
	[[ $(id -u) -ne 0 ]] && sudo=sudo
	if [[ -z "$APT_UPDATED" ]]; then
		$sudo apt-get update -qq
		APT_UPDATED=1
	fi
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$2" >/dev/null
}

# build_kpush: use $KPUSH if set, else build ./cmd/kpush into $WORK.
build_kpush() {
	if [[ -n "${KPUSH:-}" ]]; then
		return
	fi
	log "building kpush"
	(cd "$ROOT" && go build -o "$WORK/kpush" ./cmd/kpush)
	KPUSH=$WORK/kpush
}

# free_port prints a TCP port that no socket uses now, below the kernel's
# ephemeral range (so no client connection can be holding it).
free_port() {
	local p lo
	lo=$(awk '{print $1}' /proc/sys/net/ipv4/ip_local_port_range)
	for _ in $(seq 1 200); do
		p=$((20000 + RANDOM % (lo - 20000)))
		if [[ -z "$(ss -Htan "( sport = :$p )" 2>/dev/null)" ]] &&
			! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			echo "$p"
			return
		fi
	done
	echo "no free port found" >&2
	return 1
}

# wait_port PORT PID: wait (up to 20 s) until PORT accepts connections, or
# fail if PID exits first.
wait_port() {
	local deadline=$((SECONDS + 20))
	while ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; do
		kill -0 "$2" 2>/dev/null || { log "process $2 exited before listening on $1"; return 1; }
		((SECONDS < deadline)) || { log "port $1 not ready after 20s"; return 1; }
		sleep 0.05
	done
}

# start_queued NAME SYNC [ARGS...]: start `kpush queued` with its data in
# $WORK/NAME; sets QUEUED_ADDR and QUEUED_PID. The address comes from the
# daemon's "listening" log line (it listens on port 0).
start_queued() {
	local name=$1 sync=$2
	shift 2
	mkdir -p "$WORK/$name"
	"$KPUSH" queued --listen 127.0.0.1:0 --data-dir "$WORK/$name/data" --sync "$sync" "$@" \
		2>"$WORK/$name/queued.log" &
	QUEUED_PID=$!
	STARTED_PIDS+=("$QUEUED_PID")
	local deadline=$((SECONDS + 30))
	QUEUED_ADDR=""
	while [[ -z "$QUEUED_ADDR" ]]; do
		QUEUED_ADDR=$(sed -n 's/.*msg=listening service=queued addr=\([^ ]*\).*/\1/p' "$WORK/$name/queued.log" | head -1)
		if [[ -z "$QUEUED_ADDR" ]]; then
			kill -0 "$QUEUED_PID" 2>/dev/null || { cat "$WORK/$name/queued.log" >&2; log "queued $name exited"; return 1; }
			((SECONDS < deadline)) || { log "queued $name did not listen within 30s"; return 1; }
			sleep 0.05
		fi
	done
	log "queued $name (sync $sync) pid $QUEUED_PID on $QUEUED_ADDR"
}

# stop_pid PID: SIGTERM one process we started and wait for it.
stop_pid() {
	kill "$1" 2>/dev/null || true
	wait "$1" 2>/dev/null || true
}

# server_stat ADDR NAME: one value of a queued server's `stats`.
server_stat() {
	(
		exec 3<>"/dev/tcp/${1%:*}/${1##*:}"
		printf 'stats\r\nquit\r\n' >&3
		tr -d '\r' <&3 | awk -v k="$2" '$1 == "STAT" && $2 == k {print $3}'
	)
}

# rss_kb PID: resident memory of PID in KiB, from /proc/PID/status.
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

# disk_bytes DIR: bytes used by DIR.
disk_bytes() { du -sb "$1" | awk '{print $1}'; }

# ratio A B: A/B with two decimals, or "n/a".
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0 && a != "") printf "%.2f", a / b; else printf "n/a" }'; }

# fmt_int N: N rounded, with thousands separators.
fmt_int() { LC_ALL=C awk -v n="$1" 'BEGIN { s = sprintf("%.0f", n); r = ""; while (length(s) > 3) { r = "," substr(s, length(s) - 2) r; s = substr(s, 1, length(s) - 3) } printf "%s%s", s, r }'; }

# machine_line: the machine in one line, for the results files and the
# pictures' captions.
machine_line() {
	local model
	model=$(awk -F': *' '/^model name/ {print $2; exit}' /proc/cpuinfo | sed 's/ \+/ /g; s/ *[0-9]*-Core Processor//')
	printf '%s vCPU %s, %s RAM, Linux %s, load average %s at the start' "$(nproc)" "${model:-unknown CPU}" \
		"$(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)" "$(uname -r | cut -d- -f1)" "$(cut -d' ' -f1 /proc/loadavg)"
}

# command_line SCRIPT VAR...: how this script was run, for the results:
# the variables among VAR... set in the environment, then the script.
command_line() {
	local script=$1 v out=""
	shift
	for v in "$@"; do
		[[ "$ENV_GIVEN" == *" $v "* ]] && out+="$v=${!v} "
	done
	printf '%sbash bench/%s' "$out" "$script"
}

# results_open BENCH SCRIPT VAR...: start the results file of BENCH
# (bench/README.md, "Results files"): $RESULTS, by default
# bench/results/BENCH.jsonl, replaced by this run's records.
results_open() {
	RESULTS=${RESULTS:-$ROOT/bench/results/$1.jsonl}
	RESULTS_BENCH=$1
	RESULTS_RUN=$(date -u +%Y%m%dT%H%M%SZ)
	RESULTS_MACHINE=$(machine_line)
	RESULTS_COMMAND=$(command_line "${@:2}")
	mkdir -p "$(dirname "$RESULTS")"
	RESULTS_TMP=$WORK/results.jsonl
	: >"$RESULTS_TMP"
}

# result SERIES X Y: one record of the results file.
result() {
	jq -cn --arg b "$RESULTS_BENCH" --arg s "$1" --argjson x "$2" --argjson y "$3" \
		--arg r "$RESULTS_RUN" --arg m "$RESULTS_MACHINE" --arg c "$RESULTS_COMMAND" \
		'{bench: $b, series: $s, x: $x, y: ($y * 10 | round / 10), run: $r, machine: $m, command: $c}' >>"$RESULTS_TMP"
}

# results_close: the run finished; its records replace the results file.
results_close() {
	mv "$RESULTS_TMP" "$RESULTS"
	log "results written to $RESULTS (draw them: cd bench/plot && go run .)"
}

machine_info() {
	echo "- host: $(nproc) CPUs, $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo) RAM, kernel $(uname -r)"
	echo "- kpush: $(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo unknown), $(go version 2>/dev/null | awk '{print $3}')"
	echo "- data directory filesystem: $(df -T "$WORK" | awk 'NR==2 {print $2 " on " $1}')"
	echo "- load average at the end (other work on the machine skews results): $(cut -d' ' -f1-3 /proc/loadavg)"
}
