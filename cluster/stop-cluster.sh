#!/usr/bin/env bash
# Stops the processes cluster/run-cluster.sh started (nodes, gates, the inspector), and only those: it
# reads RUN_DIR/pids ("PID ROLE ID" lines), sends SIGTERM (graceful stop) to each PID that is still a cverse process, waits up to
# CVERSE_STOP_TIMEOUT seconds (default 10) for them to exit, SIGKILLs the survivors and removes the pids
# file. Data directories and logs are kept. Never signals anything by name.
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

# True if PID is alive and its program (argv[0]) is a cverse binary. A recorded PID may have been
# reused by an unrelated process since; that one must not be signalled. A zombie has an empty
# cmdline and counts as gone.
is_cverse() {
  local argv0=""
  { IFS= read -r -d '' argv0 <"/proc/$1/cmdline"; } 2>/dev/null || return 1
  case "${argv0##*/}" in cverse*) return 0 ;; *) return 1 ;; esac
}

targets=()  # "PID ROLE ID"
errors=0
while read -r pid role id _; do
  [ -n "${pid:-}" ] || continue
  if ! [[ $pid =~ ^[0-9]+$ ]]; then
    echo "stop-cluster: ignoring malformed line in $PIDS: $pid $role $id" >&2
    continue
  fi
  if [ -d "/proc/$pid" ] && ! is_cverse "$pid"; then
    echo "stop-cluster: $role $id: pid $pid now belongs to another program; left alone"
  elif ! is_cverse "$pid"; then
    echo "stop-cluster: $role $id (pid $pid) is not running"
  elif kill -TERM "$pid" 2>/dev/null; then
    targets+=("$pid $role $id")
  else
    echo "stop-cluster: cannot signal $role $id (pid $pid)" >&2
    errors=$((errors + 1))
  fi
done <"$PIDS"

# Poll until all are gone or the deadline passes.
now_us() { echo "${EPOCHREALTIME//[.,]/}"; }
deadline_us=$(($(now_us) + STOP_TIMEOUT * 1000000))
alive=("${targets[@]}")
while [ ${#alive[@]} -gt 0 ]; do
  still=()
  for t in "${alive[@]}"; do
    if is_cverse "${t%% *}"; then still+=("$t"); fi
  done
  alive=("${still[@]}")
  if [ ${#alive[@]} -eq 0 ] || [ "$(now_us)" -ge $deadline_us ]; then break; fi
  sleep 0.1
done

for t in "${alive[@]}"; do
  read -r pid role id <<<"$t"
  echo "stop-cluster: $role $id (pid $pid) still running after ${STOP_TIMEOUT}s, sending SIGKILL" >&2
  if is_cverse "$pid" && ! kill -KILL "$pid" 2>/dev/null && is_cverse "$pid"; then
    errors=$((errors + 1))
  fi
done

if [ $errors -gt 0 ]; then
  echo "stop-cluster: $errors process(es) could not be signalled; keeping $PIDS" >&2
  exit 1
fi
rm -f "$PIDS"
echo "stop-cluster: stopped ${#targets[@]} process(es)" \
     "(${#alive[@]} needed SIGKILL); data and logs are kept in $run_dir"
