# Shared by .ci/compose-smoke and .ci/compose-cluster: which compose command
# the machine has, a compose project of its own per run (so names, networks
# and volumes never meet another run's), waiting for health, reading the
# simulator's stats. Source it; set project and compose_files first.

if docker compose version >/dev/null 2>&1; then
  compose_cmd=(docker compose)
elif command -v docker-compose >/dev/null; then
  compose_cmd=(docker-compose)
else
  echo "installing docker-compose (Debian)" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose >/dev/null
  compose_cmd=(docker-compose)
fi

compose() {
  local files=()
  for f in "${compose_files[@]}"; do files+=(-f "$f"); done
  "${compose_cmd[@]}" -p "$project" "${files[@]}" "$@"
}

# Removes everything the run created, whatever happened: containers,
# networks, volumes (anonymous ones included).
compose_cleanup() {
  local status=$?
  if [ $status -ne 0 ]; then
    echo "--- failed; last logs:" >&2
    compose logs --no-color --tail 40 >&2 2>/dev/null || true
  fi
  compose down -v --remove-orphans >/dev/null 2>&1 || true
  return $status
}

# wait_healthy DEADLINE_SECONDS: every container of the project reports
# healthy (all of them have a healthcheck).
wait_healthy() {
  local deadline=$((SECONDS + $1)) ids id state bad
  while :; do
    ids=$(compose ps -q)
    bad=
    for id in $ids; do
      state=$(docker inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}' "$id")
      [ "$state" = healthy ] || bad="$bad $(docker inspect -f '{{.Name}}' "$id")=$state"
    done
    if [ -n "$ids" ] && [ -z "$bad" ]; then return 0; fi
    if [ $SECONDS -ge $deadline ]; then echo "not healthy after $1 s:$bad" >&2; return 1; fi
    sleep 1
  done
}

# sim_delivered ADDR TOKENS_FILE: how many of the tokens (one per line) the
# simulator at ADDR has accepted at least once, and how many twice or more.
sim_delivered() {
  python3 - "$1" "$2" <<'PY'
import json, ssl, sys, urllib.request
stats = json.load(urllib.request.urlopen("https://%s/sim/stats" % sys.argv[1], context=ssl._create_unverified_context(), timeout=10))
got = stats.get("tokens") or {}
want = [l.strip() for l in open(sys.argv[2]) if l.strip()]
print(sum(1 for t in want if got.get(t, 0) >= 1), sum(1 for t in want if got.get(t, 0) >= 2))
PY
}

# wait_delivered ADDR TOKENS_FILE DEADLINE_SECONDS: every token delivered.
wait_delivered() {
  local deadline=$((SECONDS + $3)) want got dup
  want=$(grep -c . "$2")
  while :; do
    read -r got dup < <(sim_delivered "$1" "$2")
    if [ "$got" -eq "$want" ]; then echo "$got $dup"; return 0; fi
    if [ $SECONDS -ge $deadline ]; then echo "delivered $got of $want after $3 s" >&2; return 1; fi
    sleep 1
  done
}

# messages FILE TOKENS_FILE N PREFIX: N JSON Lines messages, one fresh token
# each (PREFIX makes them distinct across batches).
messages() {
  python3 - "$@" <<'PY'
import sys
path, tokpath, n, prefix = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
with open(path, "w") as f, open(tokpath, "w") as t:
    for i in range(n):
        tok = "%064x" % (prefix * 10**7 + i)
        f.write('{"tokens":["%s"],"topic":"com.example.app","alert":"hi %d"}\n' % (tok, i))
        t.write(tok + "\n")
PY
}

# queue_stat ADMIN_ADDR QUEUE FIELD: one number of the `stats` command for
# QUEUE (items: waiting, not handed out; waiters: blocked monitors and
# gets) on the queued server whose admin listener is at ADMIN_ADDR.
queue_stat() {
  python3 - "$1" "$2" "$3" <<'PY'
import json, sys, urllib.request
q = json.load(urllib.request.urlopen("http://%s/stats.json" % sys.argv[1], timeout=10))["queues"].get(sys.argv[2], {})
print(q.get(sys.argv[3], 0))
PY
}
