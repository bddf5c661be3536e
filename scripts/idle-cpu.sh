#!/usr/bin/env bash
# Issue 11's idle goals, measured: starts the demo cluster with cluster/run-cluster.sh in a fresh run dir
# of its own (cold: no data yet), takes its cold start (run-cluster's "nodes ready in" = from the first
# node's start to every node's /ready 200), lets it settle, then measures the CPU the idle cluster
# burns over --seconds from /proc/PID/stat (utime + stime of every process in the run's pids file, by
# role) and stops it with cluster/stop-cluster.sh (which signals only the PIDs this run recorded).
# Goals: nodes together ≤ 5 % of one core; cold start ≤ 2 s.
#
# Usage: scripts/idle-cpu.sh [--seconds S] [--settle S] [--build-dir DIR] [--config FILE] [--restart]
#   --seconds S    measured seconds (default 20)        --settle S   seconds between ready and measuring (default 3)
#   --build-dir    passed to run-cluster.sh (default: its own, build-rel)
#   --config FILE  cluster config (default cluster/demo-cluster.yml; its ports must be free)
#   --restart      also stop and start the same cluster again and report that (warm) start too
# Exit: 0 measured (goals met or not: see the lines), 1 the cluster did not start, 2 bad usage.
set -euo pipefail
ROOT=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)
secs=20 settle=3 restart=0 cfg=$ROOT/cluster/demo-cluster.yml
rc_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) secs=$2; shift ;; --settle) settle=$2; shift ;;
    --build-dir|--config) rc_args+=("$1" "$(readlink -f "$2")"); [ "$1" = --config ] && cfg=$(readlink -f "$2"); shift ;;
    --restart) restart=1 ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "idle-cpu: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
[[ $secs =~ ^[1-9][0-9]*$ && $settle =~ ^[0-9]+$ ]] || { echo "idle-cpu: seconds must be whole numbers" >&2; exit 2; }

RUN=$(mktemp -d /tmp/cverse-idle-cpu.XXXXXX)
export CVERSE_RUN_DIR=$RUN
stop() { "$ROOT/cluster/stop-cluster.sh" >/dev/null 2>&1 || true; }
trap stop EXIT
trap 'exit 1' INT TERM

# start: runs run-cluster.sh, prints its "ready in" line, sets READY_S (seconds, nodes to all-ready).
start() {
  local out
  out=$("$ROOT/cluster/run-cluster.sh" "${rc_args[@]}" 2>&1) || { echo "$out" >&2; echo "idle-cpu: run-cluster failed (run dir $RUN)" >&2; exit 1; }
  READY_LINE=$(grep -m1 'nodes ready in' <<<"$out")
  READY_S=$(sed -E 's/.*nodes ready in ([0-9.]+) s.*/\1/' <<<"$READY_LINE")
}

# ticks PID: utime + stime of PID in clock ticks (0 if it is gone).
ticks() { awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$1/stat" 2>/dev/null || echo 0; }

start
echo "cold start: $READY_LINE"
sleep "$settle"
# commit_index of the first node (its /v1/cluster): the raft entries the idle cluster commits.
node_http=$(awk '/http_addr:/ {print $2; exit}' "$cfg" | tr -d '"' | sed 's/^0\.0\.0\.0:/127.0.0.1:/')
# cverse node-get signs the read with the cluster secret (run-cluster.sh's RUN/secret unless one is given):
# nodes with a secret answer only signed requests but /health, /ready and /metrics.
cli=$(cat "$RUN/build-dir")/src/cli/cverse
[ -z "${CVERSE_CLUSTER_SECRET_FILE:-}" ] && [ -s "$RUN/secret" ] && export CVERSE_CLUSTER_SECRET_FILE=$RUN/secret
commit_index() { "$cli" node-get --timeout 2000 "http://$node_http/v1/cluster" | sed -nE 's/.*"commit_index":([0-9]+).*/\1/p'; }
declare -A t0 role
while read -r pid r _; do t0[$pid]=$(ticks "$pid"); role[$pid]=$r; done <"$RUN/pids"
c0=$(commit_index)
w0=${EPOCHREALTIME//[.,]/}
sleep "$secs"
w1=${EPOCHREALTIME//[.,]/}
c1=$(commit_index)
declare -A used count
for pid in "${!t0[@]}"; do
  r=${role[$pid]}
  used[$r]=$(( ${used[$r]:-0} + $(ticks "$pid") - ${t0[$pid]} ))
  count[$r]=$(( ${count[$r]:-0} + 1 ))
done
hz=$(getconf CLK_TCK)
wall_us=$((w1 - w0))
echo "idle CPU over $(awk -v u="$wall_us" 'BEGIN{printf "%.1f", u/1e6}') s ($(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)):"
for r in node gate inspector; do
  [ -n "${used[$r]:-}" ] || continue
  awk -v t="${used[$r]}" -v hz="$hz" -v u="$wall_us" -v n="${count[$r]}" -v r="$r" \
    'BEGIN{ p = 100 * t / hz / (u / 1e6); printf "  %-9s x%-2d %6.2f %% of one core in all (%.2f %% each)\n", r, n, p, p / n }'
done
[ -n "$c0" ] && [ -n "$c1" ] && awk -v a="$c0" -v b="$c1" -v u="$wall_us" -v h="$node_http" \
  'BEGIN{ printf "  raft entries committed: %.1f/s (commit index %d -> %d on %s)\n", (b - a) / (u / 1e6), a, b, h }'
awk -v t="${used[node]:-0}" -v hz="$hz" -v u="$wall_us" -v s="$READY_S" 'BEGIN{
  p = 100 * t / hz / (u / 1e6)
  printf "goals: idle nodes %.2f %% (≤ 5 %%: %s), cold start %s s (≤ 2 s: %s)\n", p, p <= 5 ? "met" : "NOT met", s, s <= 2 ? "met" : "NOT met" }'
if [ "$restart" = 1 ]; then
  "$ROOT/cluster/stop-cluster.sh" >/dev/null
  start
  echo "warm restart (same data): $READY_LINE"
fi
