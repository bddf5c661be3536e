#!/usr/bin/env bash
# Integration: the README's main command as a user runs it — cluster/run-cluster.sh, the demo's types
# called through the gate, cluster/stop-cluster.sh, a second run that keeps the counter's value (durable
# state), cluster/rolling-restart.sh under load (zero failed calls), run-cluster --module, and the usage
# errors (exit 2). A config of 3 nodes, 1 gate and the inspector on loopback ports of this test's own;
# everything in a temp run dir; processes stopped by stop-cluster.sh (by the PIDs it recorded).
# Usage: run_cluster.sh SOURCE_ROOT BUILD_DIR [MODULE.so]
set -euo pipefail
ROOT=$1 BUILD=$2 MODULE=${3:-}
tmp=$(mktemp -d /tmp/cverse-runcluster.XXXXXX)
export CVERSE_RUN_DIR=$tmp/run CVERSE_RESERVE_PORTS=0 CVERSE_READY_TIMEOUT=90
stop() { "$ROOT/cluster/stop-cluster.sh" >/dev/null 2>&1 || true; }
trap 'stop; rm -rf "$tmp"' EXIT
fail() {
  echo "FAIL: $*"
  for f in "$tmp"/out "$CVERSE_RUN_DIR"/node.log "$CVERSE_RUN_DIR"/gate.log; do
    [ -f "$f" ] && { echo "--- last lines of $f"; tail -n 25 "$f"; }
  done
  exit 1
}

. "$ROOT/cluster/common.sh" # free_port_block
# Ports below the ephemeral range, apart for concurrent runs; the first free block of 20.
base=$(free_port_block 24000 20) || fail "no free block of 20 ports"
cat >"$tmp/cluster.yml" <<EOF
version: 1
cluster:
  shards: 64
  provider: raft
nodes:
  - {id: node-1, grpc_addr: "127.0.0.1:$base", advertise_addr: "127.0.0.1:$base", http_addr: "127.0.0.1:$((base + 1))"}
  - {id: node-2, grpc_addr: "127.0.0.1:$((base + 2))", advertise_addr: "127.0.0.1:$((base + 2))", http_addr: "127.0.0.1:$((base + 3))"}
  - {id: node-3, grpc_addr: "127.0.0.1:$((base + 4))", advertise_addr: "127.0.0.1:$((base + 4))", http_addr: "127.0.0.1:$((base + 5))"}
gates:
  - {id: gate-1, grpc_addr: "127.0.0.1:$((base + 10))", advertise_addr: "127.0.0.1:$((base + 10))", http_addr: "127.0.0.1:$((base + 11))"}
inspector:
  grpc_addr: "127.0.0.1:$((base + 12))"
  http_addr: "127.0.0.1:$((base + 13))"
  advertise_addr: "127.0.0.1:$((base + 12))"
EOF
gate=http://127.0.0.1:$((base + 11))
run() { "$ROOT/cluster/run-cluster.sh" --config "$tmp/cluster.yml" --build-dir "$BUILD" "$@" >"$tmp/out" 2>&1; }
call() { curl -s -X POST -d '{"request":{}}' "$gate/api/v1/objects/call/$1/$2/$3"; }
alive() { local n=0; while read -r pid _; do kill -0 "$pid" 2>/dev/null && n=$((n + 1)); done <"$CVERSE_RUN_DIR/pids"; echo $n; }

# 1. Start, call, and a second start is refused while it runs.
run || fail "run-cluster.sh exited $?"
grep -q "3 nodes ready" "$tmp/out" || fail "run-cluster did not say the nodes are ready"
[ "$(alive)" = 5 ] || fail "expected 5 processes (3 nodes, gate, inspector) running, $(alive) are"
v=$(call SimpleCounter rc-1 Increment)
[ "$v" = '{"response":{"value":"1"}}' ] || fail "first increment answered: $v"
curl -sf "http://127.0.0.1:$((base + 13))/ready" >/dev/null || fail "the inspector is not ready"
set +e; run; rc=$?; set -e
[ $rc = 1 ] && grep -q "still running" "$tmp/out" || fail "a second run-cluster.sh while running: exit $rc"
echo "ok - run-cluster.sh started 3 nodes, a gate and the inspector; an increment through the gate answered 1"
# The cluster secret it generated (docs/security.md): 32 random bytes as hex, 0600, used by every process.
[ "$(stat -c %a "$CVERSE_RUN_DIR/secret")" = 600 ] && [ "$(wc -c <"$CVERSE_RUN_DIR/secret")" = 65 ] ||
  fail "no 0600 secret of 32 hex bytes in the run dir"
grep -q "authenticate peers with the cluster secret" "$CVERSE_RUN_DIR/node.log" || fail "nodes run without the secret"
curl -s "http://127.0.0.1:$((base + 1))/metrics" | grep -q 'cverse_auth_failures_total{reason="proof"} 0' ||
  fail "a handshake failed between processes of the same run"
echo "ok - run-cluster.sh generated a 0600 cluster secret; every handshake between its processes passed"

# 2. Rolling restart under load: zero failed calls.
LOADERS=2 "$ROOT/cluster/rolling-restart.sh" --config "$tmp/cluster.yml" >"$tmp/out" 2>&1 || fail "rolling-restart.sh exited $?"
grep -q "failed 0" "$tmp/out" || fail "rolling restart: $(tail -n 1 "$tmp/out")"
echo "ok - rolling-restart.sh: $(tail -n 1 "$tmp/out")"

# 3. Stop: nothing of ours runs; start again: the counter continues (durable state).
"$ROOT/cluster/stop-cluster.sh" >"$tmp/out" 2>&1 || fail "stop-cluster.sh exited $?"
pids=$(awk '{print $1}' "$CVERSE_RUN_DIR/pids" 2>/dev/null || true)
for pid in $pids; do kill -0 "$pid" 2>/dev/null && fail "pid $pid still runs after stop-cluster.sh"; done
run || fail "run-cluster.sh (second run) exited $?"
v=$(call SimpleCounter rc-1 Increment)
[ "$v" = '{"response":{"value":"2"}}' ] || fail "increment after a restart answered: $v (want 2: state survives)"
stop
echo "ok - after stop-cluster.sh and run-cluster.sh the counter continues at 2"

# 4. A module through --module; usage errors exit 2.
if [ -n "$MODULE" ]; then
  run --module "$MODULE" || fail "run-cluster.sh --module exited $?"
  v=$(call Probe p-1 GetValue)
  case "$v" in '{"response":'*) ;; *) fail "the module's type answered: $v" ;; esac
  grep -q -- "--module $MODULE" "/proc/$(awk '$2 == "gate" {print $1; exit}' "$CVERSE_RUN_DIR/pids")/cmdline" 2>/dev/null ||
    tr '\0' ' ' <"/proc/$(awk '$2 == "gate" {print $1; exit}' "$CVERSE_RUN_DIR/pids")/cmdline" | grep -q -- "--module $MODULE" ||
    fail "the gate was not given the module"
  stop
  echo "ok - run-cluster.sh --module: the module's type is served through the gate"
fi
set +e
"$ROOT/cluster/run-cluster.sh" --config "$tmp/cluster.yml" --build-dir "$BUILD" --module "$tmp/none.so" >"$tmp/out" 2>&1
rc=$?
set -e
[ $rc = 2 ] && grep -q "module not found" "$tmp/out" || fail "a missing module: exit $rc"
set +e; "$ROOT/cluster/run-cluster.sh" --bogus >"$tmp/out" 2>&1; rc=$?; set -e
[ $rc = 2 ] && grep -q "unknown argument" "$tmp/out" || fail "an unknown argument: exit $rc"
echo "ok - usage errors exit 2"
