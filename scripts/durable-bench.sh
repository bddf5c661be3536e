#!/usr/bin/env bash
# Increments of SimpleCounter through one gate with 64 calls in flight over 1024 counters (cverse-bench,
# docs/bench.md), on a 3-node cluster on this machine, once per persistence policy (on_write: every
# increment committed through raft before it is answered; none: memory only), with a release build.
# Prints cverse-bench's report per policy and how many saves each CmdSaveState entry carried
# (docs/durable-state.md).
#
# Usage: scripts/durable-bench.sh [--seconds S (10)] [--inflight N (64)] [--policies "on_write none"]
# Uses build-rel/ (meson setup build-rel --buildtype=release) and a run directory under /tmp; stops
# only the processes it started (cluster/stop-cluster.sh, by PID).
set -euo pipefail

ROOT=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)
seconds=10
inflight=64
policies="on_write none"
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) seconds=$2; shift ;;
    --inflight) inflight=$2; shift ;;
    --policies) policies=$2; shift ;;
    *) echo "usage: scripts/durable-bench.sh [--seconds S] [--inflight N] [--policies \"on_write none\"]" >&2; exit 2 ;;
  esac
  shift
done

BUILD=$ROOT/build-rel
[ -f "$BUILD/build.ninja" ] || meson setup "$BUILD" --buildtype=release >/dev/null
ninja --quiet -C "$BUILD" src/node/cverse-node src/gate/cverse-gate src/cli/cverse src/inspector/cverse-inspector \
  src/bench/cverse-bench

base=$((20000 + ($$ % 500) * 20))
for policy in $policies; do
  run=$(mktemp -d /tmp/cverse-durable-bench-XXXXXX)
  cat > "$run/cluster.yml" <<YML
version: 1
cluster:
  shards: 256
  data_dir: "$run/data"
nodes:
  - {id: node-1, grpc_addr: "127.0.0.1:$base", http_addr: "127.0.0.1:$((base + 100))"}
  - {id: node-2, grpc_addr: "127.0.0.1:$((base + 1))", http_addr: "127.0.0.1:$((base + 101))"}
  - {id: node-3, grpc_addr: "127.0.0.1:$((base + 2))", http_addr: "127.0.0.1:$((base + 102))"}
gates:
  - {id: gate-1, grpc_addr: "127.0.0.1:$((base + 10))", http_addr: "127.0.0.1:$((base + 110))"}
object_types:
  SimpleCounter: {persist: $policy}
YML
  export CVERSE_RUN_DIR=$run/run
  "$ROOT/cluster/run-cluster.sh" --config "$run/cluster.yml" --build-dir "$BUILD" >/dev/null
  trap '"$ROOT/cluster/stop-cluster.sh" >/dev/null || true' EXIT
  echo "persist: $policy:"
  "$BUILD/src/bench/cverse-bench" --gate "127.0.0.1:$((base + 10))" --concurrency "$inflight" --objects 1024 \
    --duration "${seconds}s" --warmup 2s --quiet
  saves=0 entries=0
  for i in 0 1 2; do
    m=$(curl -s "http://127.0.0.1:$((base + 100 + i))/metrics")
    saves=$((saves + $(echo "$m" | awk '/^cverse_state_saves_total\{result="committed"\}/ {print $2}')))
    entries=$((entries + $(echo "$m" | awk '/^cverse_state_save_entries_total / {print $2}')))
  done
  [ "$entries" -gt 0 ] && echo "  $saves saves committed in $entries CmdSaveState entries ($((saves / entries)) per entry)"
  "$ROOT/cluster/stop-cluster.sh" >/dev/null
  trap - EXIT
  rm -rf "$run"
done
echo "command: scripts/durable-bench.sh --seconds $seconds --inflight $inflight --policies \"$policies\""
