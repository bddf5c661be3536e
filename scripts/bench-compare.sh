#!/usr/bin/env bash
# Same-run comparison (issue 11): measures cverse beside redis and etcd on this machine, in one run, and
# prints a markdown table with the ratios and the exact commands (what docs/benchmarks.md shows).
#
# Starts, in its own run dir and on loopback ports of its own (--port-base): a 3-node cverse cluster with
# 8192 shards and one gate (release build, build-rel, configured with --buildtype=release if missing;
# object_types: {SimpleCounter: {persist: none}}, the call path without durable state), a redis-server
# and a 3-member etcd (Debian packages; scripts/install-deps.sh installs them). Measures
#   redis-benchmark INCR at 1 and 64 clients;
#   etcd puts through its v3 JSON gateway at 1 and 64 connections (cverse-bench --etcd);
#   cverse SimpleCounter.Increment on 10000 counters, native and HTTP, at 1 and 64 in flight (P1, P2);
#   cverse creates (one Raft commit each) at 64 in flight (P3);
#   then, on a second cluster of the same shape with SimpleCounter persist: on_write, durable increments
#   (each one a Raft commit of the counter's state) at 64 in flight on 10000 counters (issue 9: ≥ 3× etcd);
#   with --before-rev REV, a third cluster of REV's binaries (its tree exported with git archive into
#   the run dir, release build)
#   and the four call rows again: the before/after ratio (issue 9: calls on none types no slower).
# Everything it started is stopped by PID when it exits (also on failure or Ctrl-C).
#
# Usage: scripts/bench-compare.sh [--duration S] [--warmup S] [--objects N] [--build-dir DIR] [--port-base B]
#                                 [--before-rev REV] [--no-durable]
#   --duration S   measured seconds per case (default 5)     --warmup S   unmeasured seconds first (default 1)
#   --objects N    counters the calls spread over (default 10000)
#   --build-dir    release build dir (default build-rel)     --port-base B  first port (default 29000)
#   --before-rev REV  also measure the call rows on REV's binaries (issue 9's before: 71cfe97, the commit
#                  before the durable-state merge; its config has no object_types: nothing persists)
#   --no-durable   skip the durable (on_write) cluster
# Exit: 0 all measured, 1 something failed to start or a measurement failed (see the run dir), 2 bad usage.
set -euo pipefail
ROOT=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)
dur=5 warm=1 objects=10000 build=$ROOT/build-rel base=29000 before_rev="" durable=1
orig_args="$*"
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) dur=$2; shift ;; --warmup) warm=$2; shift ;; --objects) objects=$2; shift ;;
    --build-dir) build=$2; shift ;; --port-base) base=$2; shift ;;
    --before-rev) before_rev=$2; shift ;; --no-durable) durable=0 ;;
    -h|--help) sed -n '2,28p' "$0"; exit 0 ;;
    *) echo "bench-compare: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
for v in "$dur" "$warm" "$objects" "$base"; do
  [[ $v =~ ^[0-9]+$ ]] || { echo "bench-compare: expected a whole number, got '$v'" >&2; exit 2; }
done
for p in redis-server redis-benchmark redis-cli etcd curl python3; do
  command -v "$p" >/dev/null || { echo "bench-compare: $p is missing: run scripts/install-deps.sh" >&2; exit 1; }
done

. "$ROOT/cluster/common.sh" # start_node, child_alive, stop_pids, wait_for

if [ ! -f "$build/build.ninja" ]; then meson setup "$build" "$ROOT" --buildtype=release >/dev/null; fi
ninja -C "$build" src/node/cverse-node src/gate/cverse-gate src/bench/cverse-bench >/dev/null
BENCH=$build/src/bench/cverse-bench
RUN=$(mktemp -d /tmp/cverse-bench-compare.XXXXXX)
cut -d' ' -f1-3 /proc/loadavg >"$RUN/load-start"
PIDS=()
BEFORE_WT=""
if [ -n "$before_rev" ]; then
  # The older binaries: REV's tree exported into the run dir (git archive: no worktree to register),
  # release build.
  before_sha=$(git -C "$ROOT" rev-parse --verify "$before_rev^{commit}") || { echo "bench-compare: unknown revision $before_rev" >&2; exit 2; }
  BEFORE_WT=$RUN/before-src
  mkdir -p "$BEFORE_WT"
  git -C "$ROOT" archive "$before_sha" | tar -x -C "$BEFORE_WT"
  echo "bench-compare: building $before_rev (${before_sha:0:7}) in $BEFORE_WT" >&2
  meson setup "$BEFORE_WT/build-rel" "$BEFORE_WT" --buildtype=release >"$RUN/before-build.log" 2>&1 &&
    ninja -C "$BEFORE_WT/build-rel" src/node/cverse-node src/gate/cverse-gate >>"$RUN/before-build.log" 2>&1 ||
    { echo "bench-compare: building $before_rev failed (see $RUN/before-build.log)" >&2; exit 1; }
fi

# Stops what this script started, by PID (cluster/common.sh: stop_pids), and removes REV's tree.
cleanup() {
  stop_pids
  [ -z "$BEFORE_WT" ] || rm -rf "$BEFORE_WT" # REV's sources and build (~200 MB); the logs stay
}
trap cleanup EXIT
trap 'exit 1' INT TERM
die() { echo "bench-compare: $1 (logs in $RUN)" >&2; exit 1; }


# --- cverse: 3 nodes, 8192 shards, one gate ---------------------------------------------------------
GATE=127.0.0.1:$((base + 350)) GATE_HTTP=http://127.0.0.1:$((base + 351))
CL_PIDS=()
# start_cverse NAME BUILD_DIR OBJECT_TYPES_LINE: a cluster of BUILD_DIR's binaries in $RUN/NAME (the same
# ports each time: one cluster runs at a time). Its PIDs are CL_PIDS (and in PIDS for the cleanup).
start_cverse() {
  local name=$1 bin=$2 types=$3 i dir=$RUN/$1
  mkdir -p "$dir"
  {
    echo "version: 1"
    echo "cluster:"
    echo "  shards: 8192"
    echo "  data_dir: \"$dir/data\""
    [ -z "$types" ] || echo "$types"
    echo "nodes:"
    for i in 1 2 3; do
      echo "  - {id: \"node-$i\", grpc_addr: \"127.0.0.1:$((base + i))\", http_addr: \"127.0.0.1:$((base + 100 + i))\", raft_addr: \"127.0.0.1:$((base + 200 + i))\"}"
    done
    echo "gates:"
    echo "  - {id: \"gate-1\", grpc_addr: \"127.0.0.1:$((base + 350))\", http_addr: \"127.0.0.1:$((base + 351))\"}"
  } >"$dir/cluster.yml"
  echo "bench-compare: cluster $name in $dir" >&2
  CL_PIDS=()
  for i in 1 2 3; do
    start_node "$bin/src/node/cverse-node" "$dir/cluster.yml" "node-$i" "$dir" "$dir/node-$i.log"
    CL_PIDS+=($!) PIDS+=($!)
  done
  for i in 1 2 3; do wait_for 90 ready "http://127.0.0.1:$((base + 100 + i))" || die "$name: node-$i not ready"; done
  (exec "$bin/src/gate/cverse-gate" --config "$dir/cluster.yml" --gate-id gate-1 </dev/null >>"$dir/gate.log" 2>&1) &
  CL_PIDS+=($!) PIDS+=($!)
  wait_for 30 ready "$GATE_HTTP" || die "$name: gate not ready"
}
# stop_cverse: SIGTERM to the running cluster, waits for it (SIGKILL after 10 s), forgets its PIDs.
stop_cverse() {
  local pid i alive keep=()
  for pid in "${CL_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for i in $(seq 100); do
    alive=0
    for pid in "${CL_PIDS[@]}"; do child_alive "$pid" && alive=1; done
    [ $alive -eq 0 ] && break
    sleep 0.1
  done
  for pid in "${CL_PIDS[@]}"; do child_alive "$pid" && kill -KILL "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do [[ " ${CL_PIDS[*]} " == *" $pid "* ]] || keep+=("$pid"); done
  PIDS=("${keep[@]}") CL_PIDS=()
}
ready() { curl -fsS "$1/ready" >/dev/null; }
start_cverse now "$build" "object_types: {SimpleCounter: {persist: none}}"

# --- redis ------------------------------------------------------------------------------------------
RPORT=$((base + 400))
(exec redis-server --port "$RPORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$RUN" \
   </dev/null >"$RUN/redis.log" 2>&1) &
PIDS+=($!)
wait_for 10 redis-cli -p "$RPORT" ping || die "redis-server not answering"

# --- etcd: 3 members --------------------------------------------------------------------------------
ECL="" EURL=http://127.0.0.1:$((base + 411))
for i in 1 2 3; do ECL="$ECL${ECL:+,}e$i=http://127.0.0.1:$((base + 420 + i))"; done
for i in 1 2 3; do
  (exec etcd --name "e$i" --data-dir "$RUN/etcd-$i" --listen-client-urls "http://127.0.0.1:$((base + 410 + i))" \
     --advertise-client-urls "http://127.0.0.1:$((base + 410 + i))" \
     --listen-peer-urls "http://127.0.0.1:$((base + 420 + i))" \
     --initial-advertise-peer-urls "http://127.0.0.1:$((base + 420 + i))" \
     --initial-cluster "$ECL" --initial-cluster-state new --log-level error \
     </dev/null >"$RUN/etcd-$i.log" 2>&1) &
  PIDS+=($!)
done
etcd_ok() { curl -fsS "$EURL/health" | grep -q '"health":"true"'; }
wait_for 30 etcd_ok || die "etcd not healthy"

# --- measurements -----------------------------------------------------------------------------------
CMDS=$RUN/commands.txt
: >"$CMDS"
# run NAME CMD...: runs a measurement, keeps its output in $RUN/NAME.out and the command in commands.txt.
run() {
  local name=$1; shift
  echo "bench-compare: $name (at ${SECONDS}s)" >&2
  printf '%s\t%s\n' "$name" "$*" >>"$CMDS"
  "$@" >"$RUN/$name.out" 2>"$RUN/$name.err" || die "$name failed: $(tail -3 "$RUN/$name.err")"
}
D=(--duration "${dur}s" --warmup "${warm}s" --json --quiet)
run redis_1 redis-benchmark -p "$RPORT" -t incr -c 1 -n $((dur * 20000)) --csv
run redis_64 redis-benchmark -p "$RPORT" -t incr -c 64 -n $((dur * 80000)) --csv
run etcd_1 "$BENCH" --etcd "$EURL" --concurrency 1 --objects "$objects" "${D[@]}"
run etcd_64 "$BENCH" --etcd "$EURL" --concurrency 64 --objects "$objects" "${D[@]}"
# The first cverse run creates the counters (64 at a time, unmeasured); the others reuse them.
run native_64 "$BENCH" --gate "$GATE" --concurrency 64 --objects "$objects" "${D[@]}"
run native_1 "$BENCH" --gate "$GATE" --concurrency 1 --objects "$objects" --no-create "${D[@]}"
run http_1 "$BENCH" --http "$GATE_HTTP" --concurrency 1 --objects "$objects" --no-create "${D[@]}"
run http_64 "$BENCH" --http "$GATE_HTTP" --concurrency 64 --objects "$objects" --no-create "${D[@]}"
run create_64 "$BENCH" --gate "$GATE" --op create --concurrency 64 "${D[@]}"
stop_cverse
if [ "$durable" = 1 ]; then
  # Issue 9: durable increments (persist on_write: each answer waits for the Raft commit of the state).
  start_cverse durable "$build" "object_types: {SimpleCounter: {persist: on_write}}"
  run durable_64 "$BENCH" --gate "$GATE" --concurrency 64 --objects "$objects" "${D[@]}"
  stop_cverse
fi
if [ -n "$before_rev" ]; then
  # Issue 9: the call rows on the binaries from before durable state (no object_types then).
  start_cverse before "$BEFORE_WT/build-rel" ""
  run before_native_64 "$BENCH" --gate "$GATE" --concurrency 64 --objects "$objects" "${D[@]}"
  run before_native_1 "$BENCH" --gate "$GATE" --concurrency 1 --objects "$objects" --no-create "${D[@]}"
  run before_http_1 "$BENCH" --http "$GATE_HTTP" --concurrency 1 --objects "$objects" --no-create "${D[@]}"
  run before_http_64 "$BENCH" --http "$GATE_HTTP" --concurrency 64 --objects "$objects" --no-create "${D[@]}"
  stop_cverse
fi

# --- the table --------------------------------------------------------------------------------------
python3 - "$RUN" "scripts/bench-compare.sh $orig_args" "$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo "?")" "$ROOT" "$before_rev" <<'PY'
import csv, json, os, sys, time
run, cmdline, commit, root, before_rev = sys.argv[1:]
def bench(name):
    with open(f"{run}/{name}.out") as f: return json.loads(f.read())
def redis(name):
    rows = list(csv.reader(open(f"{run}/{name}.out")))
    h, v = rows[0], rows[1]
    r = dict(zip(h, v))
    return {"rate": float(r["rps"]), "p50_ms": float(r["p50_latency_ms"]), "p99_ms": float(r["p99_latency_ms"]),
            "errors": {}}
m = {n: redis(n) for n in ("redis_1", "redis_64")}
m.update({n: bench(n) for n in ("etcd_1", "etcd_64", "native_1", "native_64", "http_1", "http_64", "create_64")})
extra = [n for n in ("durable_64", "before_native_64", "before_native_1", "before_http_1", "before_http_64")
         if os.path.exists(f"{run}/{n}.out")]
m.update({n: bench(n) for n in extra})
def fig(r): return f"{r['rate']/1000:.1f}k/s, p50 {r['p50_ms']:.3f} ms, p99 {r['p99_ms']:.3f} ms"
def errs(r): return sum(r.get("errors", {}).values())
rows = [
    ("native calls, 64 in flight", "native_64", "redis INCR, 64 clients", "redis_64", "rate", "P1: ≥ 1.0×"),
    ("HTTP calls, 64 connections", "http_64", "redis INCR, 64 clients", "redis_64", "rate", "P1: ≥ 0.6×"),
    ("native calls, 1 at a time", "native_1", "redis INCR, 1 client", "redis_1", "p50", "P2: p50 ≤ 2.5×"),
    ("HTTP calls, 1 at a time", "http_1", "redis INCR, 1 client", "redis_1", "p50", "–"),
    ("creates (Raft commits), 64 in flight", "create_64", "etcd puts, 64 connections", "etcd_64", "rate", "P3: ≥ 3×"),
    ("creates vs etcd at 1", "create_64", "etcd puts, 1 connection", "etcd_1", "none", "–"),
]
if "durable_64" in m:
    rows.append(("durable increments (persist: on_write), 64 in flight", "durable_64", "etcd puts, 64 connections",
                 "etcd_64", "rate", "issue 9: ≥ 3×"))
if "before_native_64" in m:
    bw = f"`{before_rev}` (before durable state)"
    rows += [
        ("native calls, 64 in flight", "native_64", f"{bw}, same", "before_native_64", "rate", "issue 9: ≥ 1.0×"),
        ("HTTP calls, 64 connections", "http_64", f"{bw}, same", "before_http_64", "rate", "issue 9: ≥ 1.0×"),
        ("native calls, 1 at a time", "native_1", f"{bw}, same", "before_native_1", "p50", "issue 9: ≤ 1.0×"),
        ("HTTP calls, 1 at a time", "http_1", f"{bw}, same", "before_http_1", "p50", "issue 9: ≤ 1.0×"),
    ]
load = open("/proc/loadavg").read().split()[:3]
load0 = open(f"{run}/load-start").read().split()
print(f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, commit `{commit}`, release build, "
      f"{os.cpu_count()} cores, load average (1/5/15 min) {' '.join(load0)} at the start, "
      f"{' '.join(load)} at the end.\n")
print("| what | cverse | baseline | ratio | goal |")
print("|---|---|---|---|---|")
for what, c, base, b, kind, goal in rows:
    if kind == "none": continue
    C, B = m[c], m[b]
    if kind == "rate": ratio = f"{C['rate']/B['rate']:.2f}× rate"
    else: ratio = f"{C['p50_ms']/B['p50_ms']:.2f}× p50"
    e = f" ({errs(C)} errors)" if errs(C) else ""
    print(f"| {what} | {fig(C)}{e} | {base}: {fig(B)} | {ratio} | {goal} |")
print(f"| (baseline) | | etcd puts, 1 connection: {fig(m['etcd_1'])} | | |")
print("\nCommands (ports and paths of this run):\n\n```")
for line in open(f"{run}/commands.txt"):
    name, cmd = line.rstrip("\n").split("\t", 1)
    print(f"{name:<10} {cmd.replace(root + '/', '')}")  # paths relative to the repository
print(f"```\nreproduce: {cmdline}")
PY
