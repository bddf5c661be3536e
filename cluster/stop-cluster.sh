#!/usr/bin/env bash
# Stops the processes cluster/run-cluster.sh started (nodes, gates, the inspector, a local etcd), and only those: it
# reads RUN_DIR/pids ("PID ROLE ID" lines), sends SIGTERM (graceful stop) to each PID that is still a cverse process, waits up to
# CVERSE_STOP_TIMEOUT seconds (default 10) for them to exit, SIGKILLs the survivors and removes the pids
# file. The local etcd of a cluster.provider etcd config stops last. Data directories and logs are kept.
# Never signals anything by name.
#
# Usage: cluster/stop-cluster.sh
# Environment: CVERSE_RUN_DIR (default cluster/run), CVERSE_STOP_TIMEOUT seconds (default 10).
# Exit: 0 everything stopped (or nothing was running), 1 a process could not be signalled.
set -euo pipefail

ROOT=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)

case "${1:-}" in
  "") ;;
  -h|--help) echo "usage: cluster/stop-cluster.sh   (environment: CVERSE_RUN_DIR, CVERSE_STOP_TIMEOUT)"
             exit 0 ;;
  *) echo "stop-cluster: unknown argument '$1'" >&2; exit 2 ;;
esac

run_dir=${CVERSE_RUN_DIR:-$ROOT/cluster/run}
case "$run_dir" in /*) ;; *) run_dir=$PWD/$run_dir ;; esac
PIDS=$run_dir/pids
STOP_TIMEOUT=${CVERSE_STOP_TIMEOUT:-10}
if ! [[ $STOP_TIMEOUT =~ ^[0-9]+$ ]]; then
  echo "stop-cluster: CVERSE_STOP_TIMEOUT must be a whole number of seconds" >&2
  exit 2
fi

if [ ! -f "$PIDS" ]; then
  echo "stop-cluster: nothing to stop (no $PIDS)"
  exit 0
fi

# is_ours PID ROLE: alive and the program its line names (a cverse binary, or etcd for role etcd). A
# recorded PID may have been reused by an unrelated process since; that one must not be signalled. A
# zombie has an empty cmdline and counts as gone.
. "$ROOT/cluster/common.sh"

# Stops the lines of the pids file whose role matches PASS ("cverse": all but etcd; "etcd": the local etcd,
# last, so that nodes and gates revoke their etcd leases on their way out). Adds to stopped / killed.
stopped=0 killed=0 errors=0
stop_pass() {
  local pass=$1 pid role id t
  local -a targets=() alive=() still=()
  while read -r pid role id _; do
    [ -n "${pid:-}" ] || continue
    if ! [[ $pid =~ ^[0-9]+$ ]]; then
      [ "$pass" = cverse ] && echo "stop-cluster: ignoring malformed line in $PIDS: $pid $role $id" >&2
      continue
    fi
    if [ "$role" = etcd ]; then [ "$pass" = etcd ] || continue; else [ "$pass" = cverse ] || continue; fi
    if [ -d "/proc/$pid" ] && ! is_ours "$pid" "$role"; then
      echo "stop-cluster: $role $id: pid $pid now belongs to another program; left alone"
    elif ! is_ours "$pid" "$role"; then
      echo "stop-cluster: $role $id (pid $pid) is not running"
    elif kill -TERM "$pid" 2>/dev/null; then
      targets+=("$pid $role $id")
    else
      echo "stop-cluster: cannot signal $role $id (pid $pid)" >&2
      errors=$((errors + 1))
    fi
  done <"$PIDS"

  # Poll until all are gone or the deadline passes.
  local deadline_us=$(($(now_us) + STOP_TIMEOUT * 1000000))
  alive=("${targets[@]}")
  while [ ${#alive[@]} -gt 0 ]; do
    still=()
    for t in "${alive[@]}"; do
      read -r pid role id <<<"$t"
      if is_ours "$pid" "$role"; then still+=("$t"); fi
    done
    alive=("${still[@]}")
    if [ ${#alive[@]} -eq 0 ] || [ "$(now_us)" -ge $deadline_us ]; then break; fi
    sleep 0.1
  done

  for t in "${alive[@]}"; do
    read -r pid role id <<<"$t"
    echo "stop-cluster: $role $id (pid $pid) still running after ${STOP_TIMEOUT}s, sending SIGKILL" >&2
    if is_ours "$pid" "$role" && ! kill -KILL "$pid" 2>/dev/null && is_ours "$pid" "$role"; then
      errors=$((errors + 1))
    fi
  done
  stopped=$((stopped + ${#targets[@]}))
  killed=$((killed + ${#alive[@]}))
}

now_us() { echo "${EPOCHREALTIME//[.,]/}"; }
stop_pass cverse
stop_pass etcd

if [ $errors -gt 0 ]; then
  echo "stop-cluster: $errors process(es) could not be signalled; keeping $PIDS" >&2
  exit 1
fi
rm -f "$PIDS"
echo "stop-cluster: stopped $stopped process(es)" \
     "($killed needed SIGKILL); data and logs are kept in $run_dir"
