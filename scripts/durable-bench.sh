#!/usr/bin/env bash
# Increments of SimpleCounter through one gate with 64 calls in flight over 1024 counters (cverse-bench,
# docs/bench.md), on a 3-node cluster on this machine, once per persistence policy (on_write: every
# increment committed through raft before it is answered; none: memory only), with a release build.
# Prints cverse-bench's report per policy and how many saves each CmdSaveState entry carried
# (docs/durable-state.md).
# --first-calls N instead drives N first calls (activation on first call, docs/objects.md) to ids that
# were never created, in runs of --seconds with fresh ids each (--objects 1000000 --no-create: no id is
# called twice), and prints their rate, every node's RSS before and after, the catalog's object states
# and its LMDB file (docs/durable-state.md, "Speed").
#
# Usage: scripts/durable-bench.sh [--seconds S (10)] [--inflight N (64)] [--policies "on_write none"]
#                                 [--first-calls N]
# Uses build-rel/ (meson setup build-rel --buildtype=release; CVERSE_BENCH_BUILD=DIR: an already built
# directory, e.g. a copy of an older build, not rebuilt) and a run directory under /tmp; stops only the
# processes it started (cluster/stop-cluster.sh, by PID).
set -euo pipefail

ROOT=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)
seconds=10
inflight=64
policies="on_write none"
first=0
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) seconds=$2; shift ;;
    --inflight) inflight=$2; shift ;;
    --policies) policies=$2; shift ;;
    --first-calls) first=$2; shift ;;
    *) echo "usage: scripts/durable-bench.sh [--seconds S] [--inflight N] [--policies \"on_write none\"] [--first-calls N]" >&2
       exit 2 ;;
  esac
  shift
done

if [ -n "${CVERSE_BENCH_BUILD:-}" ]; then
  BUILD=$CVERSE_BENCH_BUILD
else
  BUILD=$ROOT/build-rel
  [ -f "$BUILD/build.ninja" ] || meson setup "$BUILD" --buildtype=release >/dev/null
  ninja --quiet -C "$BUILD" src/node/cverse-node src/gate/cverse-gate src/cli/cverse src/inspector/cverse-inspector \
    src/bench/cverse-bench
fi

# "node-1 41.2 MiB, node-2 ..." from the pids file of the run (VmRSS).
node_rss() {
  local out="" pid role id _
  while read -r pid role id _; do
    [ "$role" = node ] || continue
    out+="$id $(awk '/^VmRSS:/ {printf "%.1f MiB", $2 / 1024}' "/proc/$pid/status"), "
  done < "$CVERSE_RUN_DIR/pids"
  echo "${out%, }"
}

# Drives $first first calls through the gate, in runs of $seconds with fresh ids, and reports.
first_calls() {
  local gate=$1 http=$2 run=$3 total=0 secs=0 k=0 out calls errs
  echo "  before: RSS $(node_rss); catalog LMDB $(du -m "$CVERSE_RUN_DIR/data/node-1/catalog/data.mdb" | cut -f1) MiB, raft log $(du -sm "$CVERSE_RUN_DIR/data/node-1/raft" | cut -f1) MiB (node-1)"
  while [ "$total" -lt "$first" ]; do
    out=$("$BUILD/src/bench/cverse-bench" --gate "$gate" --concurrency "$inflight" --objects 1000000 --no-create \
      --id-prefix "first-$k-" --duration "${seconds}s" --warmup 0s --quiet)
    calls=$(echo "$out" | awk '/^  calls/ {print $2}')
    errs=$(echo "$out" | awk '/^  calls/ {gsub(/[(]/, "", $6); print $8}')
    echo "$out" | sed -n "s/^  \\(rate\\|latency\\)/  run $k: \\1/p"
    total=$((total + calls)) secs=$((secs + seconds)) k=$((k + 1))
    [ "${errs:-0}" = 0 ] || echo "  run $k: $errs errors"
  done
  local records=0 active=0 i m deact=""
  for i in 0 1 2; do
    m=$(curl -s "http://127.0.0.1:$((http + i))/metrics")
    active=$((active + $(echo "$m" | awk '/^cverse_objects_active / {print int($2)}')))
    [ "$i" = 0 ] && records=$(echo "$m" | awk '/^cverse_state_records / {print int($2)}')
    deact+=$(echo "$m" | awk '/^cverse_object_deactivations_total\{/ && $2 > 0 {print $1, $2}')$'\n'
  done
  echo "  $total first calls in $secs s: $((total / secs))/s; $active objects active, $records states in the catalog"
  echo "  deactivations:" $(echo "$deact" | awk 'NF {split($1, a, "\""); n[a[2]] += $2} END {for (r in n) printf "%s %d ", r, n[r]}')
  echo "  after: RSS $(node_rss); catalog LMDB $(du -m "$CVERSE_RUN_DIR/data/node-1/catalog/data.mdb" | cut -f1) MiB, raft log $(du -sm "$CVERSE_RUN_DIR/data/node-1/raft" | cut -f1) MiB (node-1)"
}

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
  if [ "$first" -gt 0 ]; then
    first_calls "127.0.0.1:$((base + 10))" $((base + 100)) "$run"
    "$ROOT/cluster/stop-cluster.sh" >/dev/null
    trap - EXIT
    rm -rf "$run"
    continue
  fi
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
echo "command: scripts/durable-bench.sh --seconds $seconds --inflight $inflight --policies \"$policies\"" \
  "$([ "$first" -gt 0 ] && echo "--first-calls $first")"
