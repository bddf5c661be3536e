#!/usr/bin/env bash
# How cost grows (issue 11, docs/benchmarks.md): for each shape NODESxGATESxSHARDS of --shapes, starts a
# cverse cluster of that shape (release build, build-rel; SimpleCounter persist: none) in a run dir of
# its own, and measures
#   idle: Raft entries applied per second on the first node over 5 s (the lease renewals), and the
#         cluster's CPU over those 5 s;
#   calls: native SimpleCounter.Increment on --objects counters, 64 in flight on EVERY gate at once
#         (one cverse-bench per gate): the summed rate and the worst p99;
#   creates: 64 in flight through the first gate: rate, p99, and the mean apply time of an entry on
#         the first node (cverse_catalog_apply_seconds) over the run;
# prints one row per shape and stops what it started by PID.
#
# Usage: scripts/bench-grow.sh [--shapes "3x1x8192 ..."] [--duration S] [--objects N] [--port-base B]
#   --shapes    NODESxGATESxSHARDS list (default "3x1x8192 3x2x8192 10x1x8192 3x1x65536")
#   --duration  seconds per measurement (default 5)    --objects  counters (default 10000)
# Exit: 0 measured, 1 a start or a run failed (see the run dir), 2 bad usage.
set -euo pipefail
ROOT=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)
shapes="3x1x8192 3x2x8192 10x1x8192 3x1x65536" dur=5 objects=10000 base=29800 build=$ROOT/build-rel
while [ $# -gt 0 ]; do
  case "$1" in
    --shapes) shapes=$2; shift ;; --duration) dur=$2; shift ;; --objects) objects=$2; shift ;;
    --port-base) base=$2; shift ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "bench-grow: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
for s in $shapes; do [[ $s =~ ^[1-9][0-9]*x[1-9]x[1-9][0-9]*$ ]] || { echo "bench-grow: bad shape $s" >&2; exit 2; }; done
. "$ROOT/cluster/common.sh" # start_node, child_alive, stop_pids, wait_for
if [ ! -f "$build/build.ninja" ]; then meson setup "$build" "$ROOT" --buildtype=release >/dev/null; fi
ninja -C "$build" src/node/cverse-node src/gate/cverse-gate src/bench/cverse-bench >/dev/null
BENCH=$build/src/bench/cverse-bench
RUN=$(mktemp -d /tmp/cverse-bench-grow.XXXXXX)
PIDS=()
cleanup() { stop_pids; }
trap cleanup EXIT
trap 'exit 1' INT TERM
die() { echo "bench-grow: $1 (run dir $RUN)" >&2; exit 1; }
ready() { curl -fsS "$1/ready" >/dev/null; }
metric() { curl -fsS "http://127.0.0.1:$((base + 100))/metrics" | awk -v m="$1" '$1 == m {print $2}'; }
ticks() { local t=0 p; for p in "$@"; do t=$((t + $(awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$p/stat" 2>/dev/null || echo 0))); done; echo $t; }
J() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d[sys.argv[2]])' "$@"; }

printf '| nodes | gates | shards | ready s | idle entries/s | idle CPU %% | calls/s | worst p99 ms | creates/s | create p99 ms | apply µs/entry |\n'
printf '|---|---|---|---|---|---|---|---|---|---|---|\n'
for shape in $shapes; do
  IFS=x read -r nn ng ns <<<"$shape"
  dir=$RUN/$shape
  mkdir -p "$dir"
  {
    echo "version: 1"
    echo "cluster: {shards: $ns, data_dir: \"$dir/data\"}"
    echo "object_types: {SimpleCounter: {persist: none}}"
    echo "nodes:"
    for i in $(seq "$nn"); do
      echo "  - {id: \"node-$i\", grpc_addr: \"127.0.0.1:$((base + i - 1))\", http_addr: \"127.0.0.1:$((base + 100 + i - 1))\", raft_addr: \"127.0.0.1:$((base + 200 + i - 1))\"}"
    done
    echo "gates:"
    for g in $(seq "$ng"); do
      echo "  - {id: \"gate-$g\", grpc_addr: \"127.0.0.1:$((base + 300 + g))\", http_addr: \"127.0.0.1:$((base + 350 + g))\"}"
    done
  } >"$dir/cluster.yml"
  t0=${EPOCHREALTIME//[.,]/}
  node_pids=()
  for i in $(seq "$nn"); do
    start_node "$build/src/node/cverse-node" "$dir/cluster.yml" "node-$i" "$dir" "$dir/node-$i.log"
    PIDS+=($!) node_pids+=($!)
  done
  for i in $(seq "$nn"); do wait_for 120 ready "http://127.0.0.1:$((base + 100 + i - 1))" || die "$shape: node-$i not ready"; done
  ready_s=$(awk -v u=$(( ${EPOCHREALTIME//[.,]/} - t0 )) 'BEGIN{printf "%.2f", u/1e6}')
  for g in $(seq "$ng"); do
    (exec "$build/src/gate/cverse-gate" --config "$dir/cluster.yml" --gate-id "gate-$g" </dev/null >>"$dir/gate.log" 2>&1) &
    PIDS+=($!)
    wait_for 30 ready "http://127.0.0.1:$((base + 350 + g))" || die "$shape: gate-$g not ready"
  done
  sleep 2
  a0=$(metric cverse_catalog_applied_index) c0=$(ticks "${node_pids[@]}")
  sleep 5
  a1=$(metric cverse_catalog_applied_index) c1=$(ticks "${node_pids[@]}")
  idle_rate=$(( (a1 - a0) / 5 ))
  idle_cpu=$(awk -v t=$((c1 - c0)) -v hz="$(getconf CLK_TCK)" 'BEGIN{printf "%.1f", 100 * t / hz / 5}')
  "$BENCH" --gate "127.0.0.1:$((base + 301))" --objects "$objects" --concurrency 64 --duration 1s --warmup 0s \
    --quiet >/dev/null 2>"$dir/create-objects.err" || die "$shape: creating the counters failed"
  bpids=()
  for g in $(seq "$ng"); do
    "$BENCH" --gate "127.0.0.1:$((base + 300 + g))" --objects "$objects" --no-create --concurrency 64 \
      --duration "${dur}s" --warmup 1s --json --quiet >"$dir/calls-$g.json" 2>"$dir/calls-$g.err" &
    bpids+=($!)
  done
  for p in "${bpids[@]}"; do wait "$p" || die "$shape: a calls run failed"; done
  rate=0 p99=0
  for g in $(seq "$ng"); do
    rate=$(awk -v a="$rate" -v b="$(J "$dir/calls-$g.json" rate)" 'BEGIN{printf "%.0f", a + b}')
    p99=$(awk -v a="$p99" -v b="$(J "$dir/calls-$g.json" p99_ms)" 'BEGIN{print (b > a ? b : a)}')
  done
  s0=$(metric cverse_catalog_apply_seconds_sum) n0=$(metric cverse_catalog_apply_seconds_count)
  "$BENCH" --gate "127.0.0.1:$((base + 301))" --op create --concurrency 64 --duration "${dur}s" --warmup 1s \
    --json --quiet >"$dir/create.json" 2>"$dir/create.err" || die "$shape: the creates failed"
  s1=$(metric cverse_catalog_apply_seconds_sum) n1=$(metric cverse_catalog_apply_seconds_count)
  apply_us=$(awk -v s=$(awk -v a="$s1" -v b="$s0" 'BEGIN{print a - b}') -v n=$((n1 - n0)) 'BEGIN{printf "%.0f", n ? 1e6 * s / n : 0}')
  printf '| %s | %s | %s | %s | %s | %s | %.1fk | %.2f | %.1fk | %.1f | %s |\n' "$nn" "$ng" "$ns" "$ready_s" \
    "$idle_rate" "$idle_cpu" "$(awk -v r="$rate" 'BEGIN{print r / 1000}')" "$p99" \
    "$(awk -v r="$(J "$dir/create.json" rate)" 'BEGIN{print r / 1000}')" "$(J "$dir/create.json" p99_ms)" "$apply_us"
  cleanup
done
echo
echo "Measured $(date -u '+%F %H:%M UTC'), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg) at the end;"
echo "command: scripts/bench-grow.sh --shapes \"$shapes\" --duration $dur --objects $objects"
