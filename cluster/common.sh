# Shared by cluster/run-cluster.sh and cluster/rolling-restart.sh (sourced, not run): how a node of the
# demo is started, and how a recorded PID is recognised as ours.

# True if PID is alive and its program (argv[0]) is a cverse binary. Checking argv[0] rather than "is the
# PID alive" guards against the PID having been reused, and treats a zombie (empty cmdline) as dead.
is_cverse() {
  local argv0=""
  { IFS= read -r -d '' argv0 <"/proc/$1/cmdline"; } 2>/dev/null || return 1
  case "${argv0##*/}" in cverse*) return 0 ;; *) return 1 ;; esac
}

# True while our child PID runs. Not is_cverse: right after the fork a child is still "bash".
child_alive() {
  local stat
  kill -0 "$1" 2>/dev/null || return 1
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [ "${stat:0:1}" != Z ]
}

# The --module options of the run: one "--module PATH" pair per line of RUN_DIR/modules (written by
# run-cluster.sh --module), so restarted nodes load what the first ones did. Sets the array MODULE_ARGS.
# Usage: module_args RUN_DIR
module_args() {
  MODULE_ARGS=()
  [ -s "$1/modules" ] || return 0
  local m
  while IFS= read -r m; do
    if [ -n "$m" ]; then MODULE_ARGS+=(--module "$m"); fi
  done <"$1/modules"
  return 0
}

# Starts node ID in the background exactly as run-cluster.sh does: NODE_BIN --config CONFIG --node-id ID
# --data-dir RUN_DIR/data/ID [--module PATH]..., appending to LOG, SIGHUP ignored (the cluster outlives
# the terminal, as with nohup), run from the current directory. The new PID is in $! afterwards.
# Usage: start_node NODE_BIN CONFIG ID RUN_DIR LOG
start_node() {
  mkdir -p "$4/data/$3"
  module_args "$4"
  (trap '' HUP; exec "$1" --config "$2" --node-id "$3" --data-dir "$4/data/$3" "${MODULE_ARGS[@]}" </dev/null >>"$5" 2>&1) &
}

# Stops the processes whose PIDs are in the array PIDS (children of the caller, started by it): SIGTERM,
# up to 10 s each, then SIGKILL; reaps them and empties PIDS.
stop_pids() {
  local pid
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 100); do child_alive "$pid" || break; sleep 0.1; done
    child_alive "$pid" && kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  PIDS=()
}

# wait_for SECONDS CMD [ARG...]: runs CMD every 0.2 s until it succeeds (0) or SECONDS passed (1).
wait_for() {
  local t=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do [ $SECONDS -lt $t ] || return 1; sleep 0.2; done
}

# Prints the first port P >= MIN (below 32768, spread by this shell's PID so concurrent runs differ) such
# that P .. P+COUNT-1 all refuse connections on 127.0.0.1; fails after 40 tries.
# Usage: base=$(free_port_block MIN COUNT)
free_port_block() {
  local min=$1 count=$2 try b k ok
  for try in $(seq 0 40); do
    b=$((min + (($$ + try * 37) % 300) * count))
    ok=1
    for k in $(seq 0 $((count - 1))); do
      if (exec 3<>"/dev/tcp/127.0.0.1/$((b + k))") 2>/dev/null; then ok=0; break; fi
    done
    if [ $ok = 1 ]; then echo "$b"; return 0; fi
  done
  return 1
}
