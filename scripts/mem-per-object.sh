#!/usr/bin/env bash
# Issue 11's P6: memory per active idle object. Starts ONE cverse node (release build, build-rel; 8192
# shards, SimpleCounter persist: none) and a gate in a run dir of its own, notes the node's RSS, creates
# N SimpleCounters through the gate with cverse-bench --objects N (each create is a Raft commit and
# activates the object on its owner, this node; then 1 s of calls), waits until the node reports N more
# active objects, lets it settle and notes the RSS again. Prints the RSS delta per object and the heap's
# part of it (RssAnon: without the catalog's LMDB pages the node mapped; the runtime's cost, goal
# ≤ 256 B) and, apart, the catalog's bytes per object (growth of the data dir's allocated blocks).
# Repeats for every N of --objects (one fresh node each). Stops what it started by PID.
#
# Usage: scripts/mem-per-object.sh [--objects "N ..."] [--build-dir DIR] [--port-base B]
#   --objects   counts to measure (default "1000000")     --build-dir  release build (default build-rel)
#   --port-base first port (default 29700)
# Exit: 0 measured, 1 a start or a create failed (see the run dir), 2 bad usage.
set -euo pipefail
ROOT=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)
counts="1000000" build=$ROOT/build-rel base=29700
while [ $# -gt 0 ]; do
  case "$1" in
    --objects) counts=$2; shift ;; --build-dir) build=$(readlink -f "$2"); shift ;; --port-base) base=$2; shift ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "mem-per-object: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
for n in $counts $base; do [[ $n =~ ^[1-9][0-9]*$ ]] || { echo "mem-per-object: expected whole numbers, got '$n'" >&2; exit 2; }; done
. "$ROOT/cluster/common.sh" # start_node, child_alive, stop_pids, wait_for
if [ ! -f "$build/build.ninja" ]; then meson setup "$build" "$ROOT" --buildtype=release >/dev/null; fi
ninja -C "$build" src/node/cverse-node src/gate/cverse-gate src/bench/cverse-bench >/dev/null
RUN=$(mktemp -d /tmp/cverse-mem.XXXXXX)
PIDS=()
cleanup() { stop_pids; }
trap cleanup EXIT
trap 'exit 1' INT TERM
die() { echo "mem-per-object: $1 (run dir $RUN)" >&2; exit 1; }
ready() { curl -fsS "$1/ready" >/dev/null; }
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
anon_kb() { awk '/^RssAnon:/ {print $2}' "/proc/$1/status"; } # RSS without LMDB's mapped file pages
metric() { curl -fsS "http://127.0.0.1:$((base + 100))/metrics" | awk -v m="$1" '$1 == m {print $2}'; }
active_at_least() { [ "$(metric cverse_objects_active)" -ge "$1" ]; }
cat_kb() { du -sk "$1" | cut -f1; }

echo "objects  rss_before  rss_after  RSS B/object  anon B/object  catalog B/object"
echo "  (node RSS in KiB; anon = RssAnon, the heap: RSS also counts the catalog's LMDB pages the node"
echo "   mapped; catalog = the LMDB files' growth, $RUN/<n>/data/node-1)"
for n in $counts; do
  dir=$RUN/$n
  mkdir -p "$dir"
  cat >"$dir/cluster.yml" <<YML
version: 1
cluster:
  shards: 8192
  data_dir: "$dir/data"
object_types: {SimpleCounter: {persist: none}}
nodes:
  - {id: "node-1", grpc_addr: "127.0.0.1:$base", http_addr: "127.0.0.1:$((base + 100))", raft_addr: "127.0.0.1:$((base + 200))"}
gates:
  - {id: "gate-1", grpc_addr: "127.0.0.1:$((base + 50))", http_addr: "127.0.0.1:$((base + 51))"}
YML
  start_node "$build/src/node/cverse-node" "$dir/cluster.yml" node-1 "$dir" "$dir/node.log"
  node=$!
  PIDS+=("$node")
  wait_for 60 ready "http://127.0.0.1:$((base + 100))" || die "node not ready"
  (exec "$build/src/gate/cverse-gate" --config "$dir/cluster.yml" --gate-id gate-1 </dev/null >>"$dir/gate.log" 2>&1) &
  PIDS+=($!)
  wait_for 30 ready "http://127.0.0.1:$((base + 51))" || die "gate not ready"
  sleep 2
  a0=$(metric cverse_objects_active) r0=$(rss_kb "$node") h0=$(anon_kb "$node") c0=$(cat_kb "$dir/data")
  # cverse-bench creates its --objects first (64 at a time), then calls them for --duration.
  "$build/src/bench/cverse-bench" --gate "127.0.0.1:$((base + 50))" --objects "$n" --concurrency 64 \
    --duration 1s --warmup 0s --quiet --json >"$dir/create.json" 2>"$dir/create.err" ||
    die "creates failed: $(tail -2 "$dir/create.err")"
  wait_for 600 active_at_least $((a0 + n)) || die "the node has $(metric cverse_objects_active) active objects, expected $((a0 + n))"
  sleep 3
  r1=$(rss_kb "$node") h1=$(anon_kb "$node") c1=$(cat_kb "$dir/data")
  awk -v n="$n" -v r0="$r0" -v r1="$r1" -v h0="$h0" -v h1="$h1" -v c0="$c0" -v c1="$c1" 'BEGIN{
    printf "%7d  %10d  %9d  %12.0f  %13.0f  %16.0f\n", n, r0, r1, (r1 - r0) * 1024 / n, (h1 - h0) * 1024 / n,
      (c1 - c0) * 1024 / n }'
  cleanup
done
echo "command: scripts/mem-per-object.sh --objects \"$counts\" (release build, $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg))"
