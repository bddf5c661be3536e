#!/usr/bin/env bash
# Restarts every node of a cluster started by cluster/run-cluster.sh, one at a time, while calls run
# through the gates, and reports whether any call failed.
#
# For each "PID node ID" line of RUN_DIR/pids (only those PIDs, and only while they are still a cverse
# process): SIGTERM (the node drains: its shards move to the others through the two-phase handoff, then
# it exits), wait for the PID to exit, start the node again with run-cluster.sh's command line
# (cluster/common.sh: start_node), record its new PID in the pids file, then wait until it answers
# /ready, no shard is unassigned and it owns shards again, before the next node. Meanwhile LOADERS curl
# processes (default 4) call SimpleCounter rolling-K.Increment through the gates' HTTP API in a loop (32
# objects, created first; every call has a 30 s deadline). At the end: calls made, failed (any answer
# but 200, or none) and the slowest call.
# Stops only what it started (the loaders end themselves on a stop file; nodes it restarted keep running
# as part of the cluster). Stop the cluster with cluster/stop-cluster.sh.
#
# Usage: cluster/rolling-restart.sh [--config FILE] [--run-dir DIR] [--build-dir DIR]
#   --config FILE     the config run-cluster.sh used (default cluster/demo-cluster.yml)
#   --run-dir DIR     its run directory (default $CVERSE_RUN_DIR, else cluster/run)
#   --build-dir DIR   meson build directory (default: the one run-cluster.sh used, RUN_DIR/build-dir,
#                     else build-rel/ in the repository)
# Environment: LOADERS (default 4), CVERSE_READY_TIMEOUT seconds per node (default 60).
# Exit: 0 every node restarted and no call failed; 1 a call failed or a node did not stop / come back;
# 2 bad arguments or no running cluster.
set -euo pipefail

ROOT=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)
. "$ROOT/cluster/common.sh"

usage() { echo "usage: cluster/rolling-restart.sh [--config FILE] [--run-dir DIR] [--build-dir DIR]"; }
die() { echo "rolling-restart: $1" >&2; exit "${2:-1}"; }
abspath() { case "$1" in /*) printf '%s\n' "$1" ;; *) printf '%s\n' "$PWD/$1" ;; esac; }
now_ms() { echo $((${EPOCHREALTIME//[.,]/} / 1000)); }

config=$ROOT/cluster/demo-cluster.yml
run_dir=${CVERSE_RUN_DIR:-$ROOT/cluster/run}
build_dir=
while [ $# -gt 0 ]; do
  case "$1" in
    --config|--run-dir|--build-dir)
      if [ $# -lt 2 ] || [ -z "$2" ]; then usage >&2; die "$1 needs a value" 2; fi
      case "$1" in --config) config=$2 ;; --run-dir) run_dir=$2 ;; *) build_dir=$2 ;; esac
      shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument '$1'" 2 ;;
  esac
  shift
done
if [ -z "$build_dir" ]; then
  build_dir=$ROOT/build-rel
  [ -s "$run_dir/build-dir" ] && build_dir=$(cat "$run_dir/build-dir")
fi
config=$(abspath "$config") run_dir=$(abspath "$run_dir") build_dir=$(abspath "$build_dir")
PIDS=$run_dir/pids LOG=$run_dir/node.log NODE_BIN=$build_dir/src/node/cverse-node CLI=$build_dir/src/cli/cverse
LOADERS=${LOADERS:-4} READY_TIMEOUT=${CVERSE_READY_TIMEOUT:-60}
[[ $LOADERS =~ ^[1-9][0-9]*$ ]] || die "LOADERS must be a positive number" 2
[ -f "$PIDS" ] || die "no $PIDS: start the cluster with cluster/run-cluster.sh first" 2
[ -x "$NODE_BIN" ] || die "no node binary at $NODE_BIN" 2
[ -x "$CLI" ] || die "no cverse CLI at $CLI (it reads the nodes' /v1/cluster, signed)" 2
# The secret run-cluster.sh generated, unless one is given (restarted nodes must have the cluster's).
if [ -z "${CVERSE_CLUSTER_SECRET_FILE:-}" ] && [ -s "$run_dir/secret" ]; then
  export CVERSE_CLUSTER_SECRET_FILE=$run_dir/secret
fi

# Loopback URL for a listen address.
url_of() {
  local host=${1%:*}
  case "$host" in ""|0.0.0.0) host=127.0.0.1 ;; "[::]"|"::") host="[::1]" ;; esac
  echo "http://$host:${1##*:}"
}
declare -A node_url
while read -r id http _; do [ -n "${id:-}" ] && node_url[$id]=$(url_of "$http"); done \
  < <("$NODE_BIN" --config "$config" --list-nodes)
gates=()
while read -r id http _; do [ -n "${id:-}" ] && gates+=("$(url_of "$http")"); done \
  < <("$NODE_BIN" --config "$config" --list-gates)
[ ${#gates[@]} -gt 0 ] || die "$config has no gates to send calls through" 2
nodes=()  # "PID ID"
while read -r pid role id _; do
  [ "${role:-}" = node ] && [[ $pid =~ ^[0-9]+$ ]] && is_cverse "$pid" && nodes+=("$pid $id")
done <"$PIDS"
[ ${#nodes[@]} -gt 0 ] || die "no running node in $PIDS" 2

work=$(mktemp -d "$run_dir/rolling.XXXXXX")
loader_pids=()
stop_loaders() {
  touch "$work/stop"
  for p in "${loader_pids[@]}"; do wait "$p" 2>/dev/null || true; done
  loader_pids=()
}
trap 'echo "rolling-restart: interrupted" >&2; stop_loaders; exit 130' INT TERM

# --- 1. The objects and the load -----------------------------------------------------------------------
N_OBJ=32
for k in $(seq 0 $((N_OBJ - 1))); do
  code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 30 -X POST -d '{}' \
    "${gates[0]}/api/v1/objects/create/SimpleCounter/rolling-$k")
  [ "$code" = 200 ] || die "cannot create SimpleCounter rolling-$k through ${gates[0]} (HTTP $code)"
done
# One loader: batches of calls over one keep-alive connection, one "code seconds" line per call.
loader() {
  local gate=$1 out=$2 k args
  while [ ! -e "$work/stop" ]; do
    args=()
    for k in $(seq 0 $((N_OBJ - 1))); do
      args+=(-o /dev/null "$gate/api/v1/objects/call/SimpleCounter/rolling-$k/Increment")
    done
    curl -s --max-time 30 -X POST -H 'Content-Type: application/json' -d '{"request":{}}' \
      -w '%{http_code} %{time_total}\n' "${args[@]}" >>"$out" 2>/dev/null || true
  done
}
for l in $(seq 1 "$LOADERS"); do
  loader "${gates[$(((l - 1) % ${#gates[@]}))]}" "$work/load-$l" &
  loader_pids+=("$!")
done
echo "rolling-restart: $LOADERS loaders calling $N_OBJ counters through ${#gates[@]} gates; restarting ${#nodes[@]} nodes"

# --- 2. One node after the other -------------------------------------------------------------------------
# JSON field of a node's /v1/cluster (empty if unreachable); cverse node-get signs the read with the cluster
# secret (nodes with one refuse unsigned reads but /ready).
cluster_field() { "$CLI" node-get --timeout 2000 "$1/v1/cluster" 2>/dev/null | jq -r "$2" 2>/dev/null || true; }
settled() {  # ready, nothing unassigned, and it owns shards again
  local url=$1 id=$2
  [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$url/ready")" = 200 ] || return 1
  [ "$(cluster_field "$url" .unassigned_shards)" = 0 ] || return 1
  [ "$(cluster_field "$url" ".nodes[] | select(.id == \"$id\") | .shards")" -gt 0 ] 2>/dev/null
}
status=0
cd "$run_dir"  # as run-cluster.sh: relative paths a node writes land in the run directory
for entry in "${nodes[@]}"; do
  read -r pid id <<<"$entry"
  url=${node_url[$id]}
  t0=$(now_ms)
  is_cverse "$pid" || { echo "rolling-restart: $id (pid $pid) is not running any more" >&2; status=1; break; }
  kill -TERM "$pid"
  deadline=$((t0 + READY_TIMEOUT * 1000))
  while is_cverse "$pid" && [ "$(now_ms)" -lt "$deadline" ]; do sleep 0.05; done
  if is_cverse "$pid"; then echo "rolling-restart: $id (pid $pid) did not exit" >&2; status=1; break; fi
  t_exit=$(now_ms)
  echo "=== rolling-restart.sh $(date '+%F %T'): restarting $id" >>"$LOG"
  start_node "$NODE_BIN" "$config" "$id" "$run_dir" "$LOG"
  new=$!
  sed -i "s/^$pid node $id\$/$new node $id/" "$PIDS"
  deadline=$(($(now_ms) + READY_TIMEOUT * 1000))
  until settled "$url" "$id"; do
    if ! child_alive "$new"; then
      echo "rolling-restart: $id (pid $new) exited after its restart; see $LOG" >&2
      status=1
      break 2
    elif [ "$(now_ms)" -ge "$deadline" ]; then
      echo "rolling-restart: $id (pid $new) did not come back (ready, owning shards) in ${READY_TIMEOUT}s" >&2
      status=1
      break 2
    fi
    sleep 0.1
  done
  echo "rolling-restart: $id drained and exited in $((t_exit - t0)) ms, back with shards $(($(now_ms) - t_exit)) ms later (pid $new)"
done

# --- 3. Report ---------------------------------------------------------------------------------------------
stop_loaders
trap - INT TERM
cat "$work"/load-* 2>/dev/null | awk '
  { n++; if ($1 != 200) f++; if ($2 > max) max = $2 }
  END { printf "rolling-restart: calls %d, failed %d, slowest %.3f s\n", n, f, max; exit (f > 0 || n == 0) }' ||
  status=1
rm -rf "$work"
exit $status
