#!/usr/bin/env bash
# Failover benchmark: on a release build, starts an N-node cluster shaped like the demo (8192 shards, a
# ShardMonitor auto-loaded on every shard) and one gate, keeps calls flowing through the gate, then K
# times: kill -9 a node (non-leader; with --leader also K kills of the raft leader), measure the time
# until every probed shard of the killed node serves calls again (calls to "shard#S/ShardMonitor"
# started right after the kill; the gate retries them until they succeed), restart the node and wait
# until the cluster is ready again. Prints p50/p99/max per case, the failed calls and the slowest call
# of the background load, and the command to reproduce. With $CVERSE_CLUSTER_SECRET_FILE set the nodes
# have that secret and the bench reads their /v1/... through `cverse node-get` (signed) either way.
#
# Usage: scripts/failover-bench.sh [--nodes N] [--kills K] [--leader | --leader-only] [--shards S]
#                                  [--probe P] [--build-dir DIR] [--port-base B]
#   --nodes N      nodes (default 10)          --kills K     kills per case (default 5)
#   --leader       also K kills of the leader  --shards S    shard count (default 8192, the demo's)
#   --leader-only  only the K kills of the leader
#   --probe P      shards of the victim probed (default 32; 0 = all)
#   --build-dir    release build dir (default build-rel, configured with --buildtype=release if missing)
#   --port-base B  first port (default 27000, below the ephemeral port range): nodes use B+i (grpc), B+100+i (http), B+200+i (raft)
# Stops only the processes it started (by PID), also on Ctrl-C. Exit 0, or 1 if the cluster failed.
set -euo pipefail
ROOT=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)
nodes=10 kills=5 leader=0 nonleader=1 shards=8192 probe=32 build=$ROOT/build-rel base=27000
orig_args="$*"
while [ $# -gt 0 ]; do
  case "$1" in
    --nodes) nodes=$2; shift ;; --kills) kills=$2; shift ;; --leader) leader=1 ;; --leader-only) leader=1 nonleader=0 ;;
    --shards) shards=$2; shift ;; --probe) probe=$2; shift ;; --build-dir) build=$2; shift ;;
    --port-base) base=$2; shift ;;
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
    *) echo "failover-bench: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
if [ ! -f "$build/build.ninja" ]; then meson setup "$build" "$ROOT" --buildtype=release >/dev/null; fi
ninja -C "$build" src/node/cverse-node src/gate/cverse-gate src/cli/cverse >/dev/null
RUN=$(mktemp -d /tmp/cverse-failover-bench.XXXXXX)
CFG=$RUN/cluster.yml
{
  echo "version: 1"
  echo "cluster:"
  echo "  shards: $shards"
  echo "  data_dir: \"$RUN/data\""
  echo "  auto_load_objects:"
  echo "    - {type: \"ShardMonitor\", id: \"ShardMonitor\", per_shard: true}"
  echo "nodes:"
  for i in $(seq 1 "$nodes"); do
    echo "  - {id: \"node-$i\", grpc_addr: \"127.0.0.1:$((base + i))\", http_addr: \"127.0.0.1:$((base + 100 + i))\", raft_addr: \"127.0.0.1:$((base + 200 + i))\"}"
  done
  echo "gates:"
  echo "  - {id: \"gate-1\", grpc_addr: \"127.0.0.1:$((base + 350))\", http_addr: \"127.0.0.1:$((base + 351))\"}"
} >"$CFG"
echo "failover-bench: run dir $RUN ($nodes nodes, $shards shards, $kills kills per case)"
exec python3 - "$build" "$CFG" "$RUN" "$nodes" "$kills" "$leader" "$base" "$probe" "$nonleader" "$0 $orig_args" <<'PY'
import json, os, random, signal, subprocess, sys, threading, time, urllib.request
build, cfg, run, nodes, kills, leader, base, probe, nonleader, cmdline = sys.argv[1:]
nodes, kills, leader, base, probe, nonleader = int(nodes), int(kills), int(leader), int(base), int(probe), int(nonleader)
procs = {}
def start(i):
    log = open(f"{run}/node-{i}.log", "a")
    procs[i] = subprocess.Popen([f"{build}/src/node/cverse-node", "-c", cfg, "-n", f"node-{i}"], stdout=log, stderr=log)
def get(url, timeout=2.0):
    # a node's /v1/... through `cverse node-get`: signed with $CVERSE_CLUSTER_SECRET_FILE when the nodes have a
    # secret (they answer only signed requests but /health, /ready and /metrics; docs/security.md)
    r = subprocess.run([f"{build}/src/cli/cverse", "node-get", "--timeout", str(int(timeout * 1000)), url],
                       capture_output=True, timeout=timeout + 5)
    if r.returncode != 0: raise RuntimeError(f"cverse node-get {url}: {r.stderr.decode().strip()}")
    return 200, json.loads(r.stdout or b"{}")
def http(i): return f"http://127.0.0.1:{base + 100 + i}"
def ready(i):
    try:
        with urllib.request.urlopen(http(i) + "/ready", timeout=1.0) as r: return r.status == 200
    except Exception: return False
def wait_all_ready(deadline_s=120):
    t = time.time()
    while time.time() - t < deadline_s:
        if all(ready(i) for i in procs if procs[i].poll() is None): return True
        time.sleep(0.1)
    return False
GATE = f"http://127.0.0.1:{base + 351}"
def call(shard, timeout_ms=10000):
    req = urllib.request.Request(f"{GATE}/api/v1/objects/call/ShardMonitor/shard%23{shard}%2FShardMonitor/GetStats?timeout_ms={timeout_ms}",
                                 data=b"{}", headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout_ms / 1000 + 2) as r: return r.status == 200
    except Exception: return False
gate = None
def cleanup(*_):
    for p in list(procs.values()) + ([gate] if gate else []):
        if p.poll() is None: p.kill()
    for p in list(procs.values()) + ([gate] if gate else []):
        try: p.wait(5)
        except Exception: pass
signal.signal(signal.SIGTERM, lambda *a: (cleanup(), os._exit(1)))
try:
    for i in range(1, nodes + 1): start(i)
    if not wait_all_ready(): print("cluster not ready, see", run); sys.exit(1)
    gl = open(f"{run}/gate.log", "a")
    gate = subprocess.Popen([f"{build}/src/gate/cverse-gate", "-c", cfg, "-g", "gate-1"], stdout=gl, stderr=gl)
    t = time.time()
    while time.time() - t < 30 and not call(0, 2000): time.sleep(0.2)
    if not call(0, 2000): print("the gate does not serve calls, see", run); sys.exit(1)
    shards = get(http(1) + "/v1/shards")[1]["shards"]
    # background load: calls to random shards, one after the other per thread
    load = {"calls": 0, "failed": 0, "slowest": 0.0, "stop": False}
    lock = threading.Lock()
    def loader():
        while not load["stop"]:
            s = random.randrange(shards); t0 = time.monotonic(); ok = call(s, 10000); d = time.monotonic() - t0
            with lock:
                load["calls"] += 1; load["failed"] += not ok; load["slowest"] = max(load["slowest"], d)
    loaders = [threading.Thread(target=loader, daemon=True) for _ in range(4)]
    for th in loaders: th.start()
    results = {"non-leader": [], "leader": []}
    cases = (["non-leader"] * kills if nonleader else []) + (["leader"] * kills if leader else [])
    for case in cases:
        c = get(http(1 if procs[1].poll() is None else 2) + "/v1/cluster")[1]
        lid = c.get("leader") or ""
        cand = [i for i in procs if (f"node-{i}" == lid) == (case == "leader")]
        victim = random.choice(cand)
        owners = get(http(victim) + "/v1/shards")[1]["owners"]
        mine = [s for s, o in enumerate(owners) if o == f"node-{victim}"]
        probed = mine if probe == 0 or len(mine) <= probe else random.sample(mine, probe)
        done = {}
        procs[victim].kill(); t0 = time.monotonic(); procs[victim].wait()
        def prober(s):
            while not call(s, 10000) and time.monotonic() - t0 < 60: pass
            done[s] = time.monotonic() - t0
        ths = [threading.Thread(target=prober, args=(s,), daemon=True) for s in probed]
        for th in ths: th.start()
        for th in ths: th.join()
        worst = max(done.values()) if done else 0.0
        results[case].append(worst)
        print(f"  kill -9 node-{victim} ({case}, {len(mine)} shards, {len(probed)} probed): all served again after {worst*1000:.0f} ms", flush=True)
        start(victim)
        if not wait_all_ready(): print("cluster not ready after restart, see", run); sys.exit(1)
        time.sleep(1.0)
    load["stop"] = True
    for th in loaders: th.join()
    def pct(v, q):
        v = sorted(v); return v[min(len(v) - 1, int(q * len(v) + 0.999) - 1)] if v else 0.0
    print("\ncase        kills   p50 ms   p99 ms   max ms")
    for case, v in results.items():
        if v: print(f"{case:<11} {len(v):>5} {pct(v,.5)*1000:>8.0f} {pct(v,.99)*1000:>8.0f} {max(v)*1000:>8.0f}")
    print(f"\nbackground load: {load['calls']} calls, {load['failed']} failed, slowest {load['slowest']*1000:.0f} ms")
    print(f"reproduce: {cmdline}")
finally:
    cleanup()
PY
