#!/usr/bin/env bash
# Instructions per call on the call path (docs/benchmarks.md, "What changed on the call path"): starts the
# cluster shape of scripts/bench-compare.sh (3 nodes, 8192 shards, one gate, SimpleCounter persist: none)
# from BUILD's binaries in a run dir of its own, with the gate or node-1 under valgrind --tool=callgrind;
# creates --objects counters, zeroes the counters (callgrind_control -z), runs cverse-bench --concurrency 64
# for --seconds, dumps (callgrind_control -d) and prints the dump's instructions divided by the calls that
# process served (the bench's calls for the gate, node-1's cverse_calls_total for the node). Instruction
# counts hardly depend on the machine's load, unlike rates. Stops what it started by PID.
#
# Usage: scripts/call-profile.sh gate|node [--build-dir DIR] [--seconds S] [--objects N] [--port-base B]
#   --build-dir  release build (default build-rel; another revision's build works the same)
#   --seconds    measured seconds (default 5)   --objects  counters (default 3000)   --port-base (default 29500)
# Exit: 0 measured, 1 a start or the run failed, 2 bad usage.
set -euo pipefail
ROOT=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)
what=${1:-}
case "$what" in gate|node) shift ;; -h|--help) sed -n '2,13p' "$0"; exit 0 ;; *) echo "usage: scripts/call-profile.sh gate|node [options] (see --help)" >&2; exit 2 ;; esac
build=$ROOT/build-rel secs=5 objects=3000 base=29500
while [ $# -gt 0 ]; do
  case "$1" in
    --build-dir) build=$(readlink -f "$2"); shift ;; --seconds) secs=$2; shift ;;
    --objects) objects=$2; shift ;; --port-base) base=$2; shift ;;
    *) echo "call-profile: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
command -v valgrind >/dev/null || { echo "call-profile: valgrind is missing" >&2; exit 1; }
. "$ROOT/cluster/common.sh" # start_node, child_alive
BENCH=$ROOT/build-rel/src/bench/cverse-bench
[ -x "$BENCH" ] || ninja -C "$ROOT/build-rel" src/bench/cverse-bench >/dev/null
RUN=$(mktemp -d /tmp/cverse-call-profile.XXXXXX)
PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 150); do child_alive "$pid" || break; sleep 0.1; done
    child_alive "$pid" && kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
}
trap cleanup EXIT
trap 'exit 1' INT TERM
die() { echo "call-profile: $1 (run dir $RUN)" >&2; exit 1; }
wait_for() {
  local t=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do [ $SECONDS -lt $t ] || return 1; sleep 0.2; done
}
ready() { curl -fsS "$1/ready" >/dev/null; }
calls() { curl -fsS "http://127.0.0.1:$((base + 101))/metrics" | awk '$1 == "cverse_calls_total" {print $2}'; }
{
  echo "version: 1"
  echo "cluster: {shards: 8192, data_dir: \"$RUN/data\"}"
  echo "object_types: {SimpleCounter: {persist: none}}"
  echo "nodes:"
  for i in 1 2 3; do
    echo "  - {id: \"node-$i\", grpc_addr: \"127.0.0.1:$((base + i))\", http_addr: \"127.0.0.1:$((base + 100 + i))\", raft_addr: \"127.0.0.1:$((base + 200 + i))\"}"
  done
  echo "gates:"
  echo "  - {id: \"gate-1\", grpc_addr: \"127.0.0.1:$((base + 350))\", http_addr: \"127.0.0.1:$((base + 351))\"}"
} >"$RUN/cluster.yml"
VG=(valgrind --tool=callgrind "--callgrind-out-file=$RUN/callgrind.out")
target=""
for i in 1 2 3; do
  pre=()
  [ "$what" = node ] && [ "$i" = 1 ] && pre=("${VG[@]}")
  mkdir -p "$RUN/data/node-$i"
  (exec "${pre[@]}" "$build/src/node/cverse-node" --config "$RUN/cluster.yml" --node-id "node-$i" \
     --data-dir "$RUN/data/node-$i" </dev/null >>"$RUN/node-$i.log" 2>&1) &
  PIDS+=($!)
  [ "$what" = node ] && [ "$i" = 1 ] && target=$!
done
for i in 1 2 3; do wait_for 120 ready "http://127.0.0.1:$((base + 100 + i))" || die "node-$i not ready"; done
pre=()
[ "$what" = gate ] && pre=("${VG[@]}")
(exec "${pre[@]}" "$build/src/gate/cverse-gate" --config "$RUN/cluster.yml" --gate-id gate-1 </dev/null >>"$RUN/gate.log" 2>&1) &
PIDS+=($!)
[ "$what" = gate ] && target=$!
wait_for 60 ready "http://127.0.0.1:$((base + 351))" || die "gate not ready"
"$BENCH" --gate "127.0.0.1:$((base + 350))" --concurrency 64 --objects "$objects" --duration 1s --warmup 0s --quiet \
  >/dev/null 2>"$RUN/create.err" || die "creating the counters failed"
c0=$(calls)
callgrind_control -z "$target" >/dev/null
"$BENCH" --gate "127.0.0.1:$((base + 350))" --concurrency 64 --objects "$objects" --no-create --duration "${secs}s" \
  --warmup 0s --json --quiet >"$RUN/bench.json" 2>"$RUN/bench.err" || die "the bench failed"
callgrind_control -d "$target" >/dev/null
c1=$(calls)
sleep 1
dump=$(ls "$RUN"/callgrind.out.* | head -1)
ir=$(callgrind_annotate "$dump" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
bench_calls=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["calls"])' "$RUN/bench.json")
served=$bench_calls
[ "$what" = node ] && served=$((c1 - c0))
awk -v ir="$ir" -v n="$served" -v w="$what" -v b="$bench_calls" 'BEGIN{
  printf "%s: %.0f instructions in %d calls served = %.1fk instructions per call (bench: %d calls)\n", w, ir, n, ir / n / 1000, b }'
echo "callgrind dump: $dump (callgrind_annotate --inclusive=yes $dump | head -60)"
echo "command: scripts/call-profile.sh $what --build-dir $build --seconds $secs --objects $objects"
