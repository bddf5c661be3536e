#!/usr/bin/env bash
# Integration: run-cluster.sh with a cluster.provider etcd config (as cluster/demo-cluster-etcd.yml, on this
# test's own ports): no etcd answers at the endpoint, so run-cluster.sh starts one in the run dir; the
# nodes and the gate register there, a call through the gate works; stop-cluster.sh stops everything,
# etcd last (the registrations were revoked before it went: none is left in its data).
# Usage: run_cluster_etcd.sh SOURCE_ROOT BUILD_DIR
set -euo pipefail
ROOT=$1 BUILD=$2
command -v etcd >/dev/null || { echo "SKIP: etcd not installed (scripts/install-deps.sh installs etcd-server)"; exit 77; }
tmp=$(mktemp -d /tmp/cverse-runcluster-etcd.XXXXXX)
export CVERSE_RUN_DIR=$tmp/run CVERSE_RESERVE_PORTS=0 CVERSE_READY_TIMEOUT=90
stop() { "$ROOT/cluster/stop-cluster.sh" >/dev/null 2>&1 || true; }
trap 'stop; rm -rf "$tmp"' EXIT
fail() {
  echo "FAIL: $*"
  for f in "$tmp"/out "$CVERSE_RUN_DIR"/node.log "$CVERSE_RUN_DIR"/gate.log "$CVERSE_RUN_DIR"/etcd.log; do
    [ -f "$f" ] && { echo "--- last lines of $f"; tail -n 25 "$f"; }
  done
  exit 1
}

# Ports below the ephemeral range, apart for concurrent runs: a free block of 20 (raft: +2000).
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
base=""
for try in $(seq 0 40); do
  b=$((18000 + (($$ + try * 41) % 250) * 20))
  ok=1
  for k in $(seq 0 19); do port_free $((b + k)) && port_free $((b + 2000 + k)) || { ok=0; break; }; done
  [ $ok = 1 ] && { base=$b; break; }
done
[ -n "$base" ] || fail "no free block of 20 ports"
etcd_ep=127.0.0.1:$((base + 18))
cat >"$tmp/cluster.yml" <<EOF
version: 1
cluster:
  shards: 64
  provider: etcd
  etcd:
    endpoints: ["$etcd_ep"]
    prefix: "/rc-etcd"
    ttl_ms: 5000
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
b64() { printf %s "$1" | base64 -w0; }
# Number of keys under a prefix in the etcd at etcd_ep.
keys() {
  curl -s -X POST "http://$etcd_ep/v3/kv/range" \
    -d "{\"key\":\"$(b64 "$1")\",\"range_end\":\"$(b64 "${1%/}0")\",\"count_only\":true}" |
    sed -n 's/.*"count":"\([0-9]*\)".*/\1/p'
}

"$ROOT/cluster/run-cluster.sh" --config "$tmp/cluster.yml" --build-dir "$BUILD" >"$tmp/out" 2>&1 || fail "run-cluster.sh exited $?"
grep -q "started etcd on $etcd_ep" "$tmp/out" || fail "run-cluster did not start etcd"
grep -q "^[0-9]* etcd etcd" "$CVERSE_RUN_DIR/pids" || fail "etcd not in the pids file"
etcd_pid=$(awk '$2 == "etcd" {print $1}' "$CVERSE_RUN_DIR/pids")
n=""
for _ in $(seq 100); do n=$(keys /rc-etcd/nodes/); [ "$n" = 3 ] && break; sleep 0.1; done
[ "$n" = 3 ] || fail "expected 3 node registrations in etcd, found '${n:-none}'"
[ "$(keys /rc-etcd/gates/)" = 1 ] || fail "the gate did not register in etcd"
v=$(curl -s -X POST -d '{"request":{}}' "$gate/api/v1/objects/call/SimpleCounter/rce-1/Increment")
[ "$v" = '{"response":{"value":"1"}}' ] || fail "increment answered: $v"
echo "ok - run-cluster.sh started etcd at $etcd_ep, 3 nodes and the gate registered there, a call answered 1"

# Revoked on the way out: stop everything but etcd's own check: the keys are gone before etcd stops.
"$ROOT/cluster/stop-cluster.sh" >"$tmp/out" 2>&1 || fail "stop-cluster.sh exited $?"
# Gone or a zombie not reaped yet by init (an empty cmdline): stop-cluster.sh waited for it.
[ -s "/proc/$etcd_pid/cmdline" ] && fail "etcd (pid $etcd_pid) still runs after stop-cluster.sh"
grep -q "stopped 6 process" "$tmp/out" || fail "stop-cluster: $(tail -n 1 "$tmp/out")"
echo "ok - stop-cluster.sh stopped the nodes, the gate, the inspector and etcd"

# Usage: the raft-only default does not start etcd.
"$BUILD/src/node/cverse-node" --config "$ROOT/cluster/demo-cluster.yml" --list-etcd >"$tmp/out" || fail "--list-etcd"
[ ! -s "$tmp/out" ] || fail "the raft-only demo lists etcd endpoints: $(cat "$tmp/out")"
"$BUILD/src/node/cverse-node" --config "$ROOT/cluster/demo-cluster-etcd.yml" --list-etcd >"$tmp/out" || fail "--list-etcd"
[ "$(cat "$tmp/out")" = 127.0.0.1:2379 ] || fail "demo-cluster-etcd.yml endpoints: $(cat "$tmp/out")"
echo "ok - only the etcd demo config names etcd endpoints"
