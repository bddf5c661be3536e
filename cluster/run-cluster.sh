#!/usr/bin/env bash
# Starts the demo cluster on this machine: installs missing dependencies, builds a release build of
# cverse-node, cverse-gate and cverse-inspector if needed (build-rel/, meson --buildtype=release: the
# debug checks, CV_CHECKS, stay in the test builds), starts every node of the config in the background
# (all logging to RUN_DIR/node.log), records "PID ROLE ID" lines in RUN_DIR/pids and waits until every
# node answers GET /ready with 200. If a node dies or the deadline passes it prints the end of the log,
# stops what it started and exits 1.
# Then the gates (RUN_DIR/gate.log) and the inspector (cverse-inspector, RUN_DIR/inspector.log; its URL
# is printed) are started and waited for the same way.
# Stop the cluster with cluster/stop-cluster.sh.
#
# Usage: cluster/run-cluster.sh [--config FILE] [--build-dir DIR] [--module PATH.so]...
#   --config FILE     cluster config (default cluster/demo-cluster.yml)
#   --module PATH.so  a module of object types (docs/objects.md), loaded by every node; repeatable
#   --build-dir DIR   meson build directory (default build-rel/ in the repository, set up as a release
#                     build if missing; an existing directory is used with the build type it has)
# Environment:
#   CVERSE_RUN_DIR        run directory: pids, logs, data (default cluster/run)
#   CVERSE_READY_TIMEOUT  seconds to wait for every node to be ready (default 60)
#   CVERSE_CLUSTER_SECRET_FILE  the cluster secret (default: the config's cluster.secret_file, else
#                         RUN_DIR/secret, generated at the first run; docs/security.md)
# Exit: 0 cluster ready, 1 start failed or already running, 2 bad arguments or config.
set -euo pipefail

ROOT=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)

usage() {
  echo "usage: cluster/run-cluster.sh [--config FILE] [--build-dir DIR] [--module PATH.so]..."
  echo "environment: CVERSE_RUN_DIR (default cluster/run), CVERSE_READY_TIMEOUT seconds (default 60)"
}
die() { echo "run-cluster: $1" >&2; exit "${2:-1}"; }
# Paths given by the user are relative to where they ran the script, not to the repository.
abspath() { case "$1" in /*) printf '%s\n' "$1" ;; *) printf '%s\n' "$PWD/$1" ;; esac; }

config=$ROOT/cluster/demo-cluster.yml
build_dir=$ROOT/build-rel
modules=()
add_module() {
  local m
  m=$(abspath "$1")
  [ -f "$m" ] || die "module not found: $1" 2
  modules+=("$m")
}
while [ $# -gt 0 ]; do
  case "$1" in
    --config|--build-dir|--module)
      if [ $# -lt 2 ] || [ -z "$2" ]; then usage >&2; die "$1 needs a value" 2; fi
      case "$1" in --config) config=$(abspath "$2") ;; --module) add_module "$2" ;; *) build_dir=$(abspath "$2") ;; esac
      shift ;;
    --config=*) config=$(abspath "${1#*=}") ;;
    --build-dir=*) build_dir=$(abspath "${1#*=}") ;;
    --module=*) add_module "${1#*=}" ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument '$1'" 2 ;;
  esac
  shift
done

RUN_DIR=$(abspath "${CVERSE_RUN_DIR:-$ROOT/cluster/run}")
READY_TIMEOUT=${CVERSE_READY_TIMEOUT:-60}
[[ $READY_TIMEOUT =~ ^[1-9][0-9]*$ ]] || die "CVERSE_READY_TIMEOUT must be a whole number of seconds" 2
[ -f "$config" ] || die "config file not found: $config" 2
command -v curl >/dev/null || die "curl is missing (scripts/install-deps.sh installs it)" 2
PIDS=$RUN_DIR/pids
LOG=$RUN_DIR/node.log

# is_cverse PID, child_alive PID, start_node ... (shared with cluster/rolling-restart.sh)
. "$ROOT/cluster/common.sh"

# --- 1. Refuse to start over a cluster that is still running --------------------------------------
if [ -f "$PIDS" ]; then
  running=()
  while read -r pid role id _; do
    [[ ${pid:-} =~ ^[0-9]+$ ]] && is_ours "$pid" "$role" && running+=("$role $id (pid $pid)")
  done <"$PIDS"
  if [ ${#running[@]} -gt 0 ]; then
    echo "run-cluster: a cluster from an earlier run is still running:" >&2
    printf '  %s\n' "${running[@]}" >&2
    stop_cmd=cluster/stop-cluster.sh
    [ -n "${CVERSE_RUN_DIR:-}" ] && stop_cmd="CVERSE_RUN_DIR=$RUN_DIR $stop_cmd"
    die "stop it first with: $stop_cmd"
  fi
  echo "run-cluster: removing stale $PIDS (none of its processes is running)"
  rm -f "$PIDS"
fi

# --- 2. Dependencies and build ----------------------------------------------------------------------
"$ROOT/scripts/install-deps.sh" >/dev/null || die "scripts/install-deps.sh failed"
NODE_BIN=$build_dir/src/node/cverse-node
if [ ! -f "$build_dir/meson-private/coredata.dat" ]; then
  (cd "$ROOT" && meson setup --buildtype=release "$build_dir") || die "meson setup failed"
elif [ ! -f "$build_dir/build.ninja" ]; then
  (cd "$ROOT" && meson setup --reconfigure "$build_dir") || die "meson setup failed"
fi
ninja --quiet -C "$build_dir" src/node/cverse-node src/gate/cverse-gate src/cli/cverse \
  src/inspector/cverse-inspector || die "build failed: ninja -C $build_dir"
[ -x "$NODE_BIN" ] || die "no node binary at $NODE_BIN"

# --- 3. Which nodes: ask the binary, so the config is parsed by the one real parser -----------------
listing=$("$NODE_BIN" --config "$config" --list-nodes) || die "cverse-node rejected $config (see above)" 2
ids=()
urls=()
while read -r id http_addr _; do
  [ -n "${id:-}" ] || continue
  [ -n "${http_addr:-}" ] || die "--list-nodes gave no http_addr for node $id" 2
  host=${http_addr%:*}
  port=${http_addr##*:}
  # Wildcard listen addresses are reached through loopback.
  case "$host" in
    ""|0.0.0.0) host=127.0.0.1 ;;
    "[::]"|"::") host="[::1]" ;;
  esac
  ids+=("$id")
  urls+=("http://$host:$port")
done <<<"$listing"
[ ${#ids[@]} -gt 0 ] || die "$config defines no nodes" 2

# cluster.provider etcd: its endpoints (nothing for the raft-only default).
etcd_eps=$("$NODE_BIN" --config "$config" --list-etcd) || die "cverse-node rejected $config (see above)" 2

# --- 3b. Keep the kernel from handing the demo's ports to outgoing connections ----------------------
# The demo's ports (47xxx RPC, 48xxx HTTP, 49xxx raft) lie in Linux's ephemeral range; an outgoing
# connection (even between our own nodes while they start) could take one before its node binds it.
# As root we reserve 47000-49999 (added to what is already reserved); CVERSE_RESERVE_PORTS=0 skips it.
reserve_demo_ports() {
  local f=/proc/sys/net/ipv4/ip_local_reserved_ports cur
  [ "${CVERSE_RESERVE_PORTS:-1}" != 0 ] && [ "$(id -u)" -eq 0 ] && [ -w "$f" ] || return 0
  cur=$(cat "$f")
  case ",$cur," in *",47000-49999,"*) return 0 ;; esac
  if echo "${cur:+$cur,}47000-49999" >"$f" 2>/dev/null; then
    echo "run-cluster: reserved ports 47000-49999 from the kernel's ephemeral range" \
      "(net.ipv4.ip_local_reserved_ports; CVERSE_RESERVE_PORTS=0 to skip)"
  fi
}
for url in "${urls[@]}"; do
  port=${url##*:}
  if [ "$port" -ge 47000 ] && [ "$port" -le 49999 ]; then reserve_demo_ports; break; fi
done

# --- 4. Start the nodes -----------------------------------------------------------------------------
mkdir -p "$RUN_DIR/data"
# The cluster secret (docs/security.md): $CVERSE_CLUSTER_SECRET_FILE or the config's cluster.secret_file
# if given; else RUN_DIR/secret (32 random bytes as hex, mode 0600; kept across runs, so a restarted node
# and rolling-restart.sh use the same one), given to every process started here through the environment.
if [ -z "${CVERSE_CLUSTER_SECRET_FILE:-}" ] && ! grep -Eq '^[[:space:]]+secret_file:' "$config"; then
  if [ ! -s "$RUN_DIR/secret" ]; then
    (umask 077 && od -An -tx1 -N32 /dev/urandom | tr -d ' \n' >"$RUN_DIR/secret" && echo >>"$RUN_DIR/secret") ||
      die "cannot write the cluster secret $RUN_DIR/secret"
    echo "run-cluster: generated the cluster secret $RUN_DIR/secret"
  fi
  export CVERSE_CLUSTER_SECRET_FILE=$RUN_DIR/secret
elif [ -z "${CVERSE_CLUSTER_SECRET_FILE:-}" ]; then
  # The config's cluster.secret_file (relative to the config's directory): RUN_DIR/secret points at it, so
  # that rolling-restart.sh, idle-cpu.sh and the cverse commands printed below sign with it too.
  sf=$(sed -nE 's/^[[:space:]]+secret_file:[[:space:]]*["'"'"']?([^"'"'"'#]*[^"'"'"'#[:space:]])["'"'"']?.*/\1/p' "$config" | head -1)
  [ -n "$sf" ] || die "cannot read cluster.secret_file from $config" 2
  case $sf in /*) ;; *) sf=$(cd "$(dirname "$config")" && pwd)/$sf ;; esac
  ln -sfn "$sf" "$RUN_DIR/secret" || die "cannot link $RUN_DIR/secret to $sf"
  export CVERSE_CLUSTER_SECRET_FILE=$sf
fi
cd "$RUN_DIR"  # anything a process writes with a relative path lands in the run directory
: >"$PIDS"
printf '%s\n' "$build_dir" >"$RUN_DIR/build-dir"  # rolling-restart.sh restarts nodes from the same build
: >"$RUN_DIR/modules"  # ... with the same modules (cluster/common.sh)
[ ${#modules[@]} -eq 0 ] || printf '%s\n' "${modules[@]}" >"$RUN_DIR/modules"
pids=()

# Stops everything started so far (through stop-cluster.sh, which reads the pids file).
stop_started() {
  CVERSE_RUN_DIR=$RUN_DIR "$ROOT/cluster/stop-cluster.sh" || true
}
trap 'echo; echo "run-cluster: interrupted, stopping what was started" >&2; stop_started; exit 130' INT TERM

# --- 4a. etcd (cluster.provider etcd): an etcd that answers at one of the endpoints is used; else one is
# started here (data in RUN_DIR/etcd, log RUN_DIR/etcd.log, recorded as "PID etcd etcd"), on the first
# endpoint; stop-cluster.sh stops it after the nodes and gates (they revoke their leases first).
if [ -n "$etcd_eps" ]; then
  etcd_up=""
  for ep in $etcd_eps; do
    if etcd_answers "$ep"; then etcd_up=$ep; break; fi
  done
  if [ -n "$etcd_up" ]; then
    echo "run-cluster: using the etcd that answers at $etcd_up"
  else
    etcd_first=${etcd_eps%%$'\n'*}
    command -v etcd >/dev/null || die "no etcd answers at $etcd_first and etcd is not installed (scripts/install-deps.sh installs etcd-server)"
    start_etcd "$etcd_first" "$RUN_DIR"
    echo "$! etcd etcd" >>"$PIDS"
    echo "run-cluster: started etcd on $etcd_first (data $RUN_DIR/etcd, log $RUN_DIR/etcd.log)"
    if ! wait_for 30 etcd_answers "$etcd_first"; then
      echo "run-cluster: etcd did not answer at $etcd_first within 30 s; end of $RUN_DIR/etcd.log:" >&2
      tail -n 20 "$RUN_DIR/etcd.log" >&2 || true
      stop_started
      exit 1
    fi
  fi
fi

start_us=${EPOCHREALTIME//[.,]/}
log_start=$(stat -c %s "$LOG" 2>/dev/null || echo 0)  # where this run's lines begin
echo "=== run-cluster.sh $(date '+%F %T'): starting ${#ids[@]} nodes from $config" >>"$LOG"
for i in "${!ids[@]}"; do
  id=${ids[i]}
  start_node "$NODE_BIN" "$config" "$id" "$RUN_DIR" "$LOG"
  pids+=("$!")
  echo "$! node $id" >>"$PIDS"  # written at once: stop-cluster.sh works even if we die mid-way
done
echo "run-cluster: started ${#ids[@]} nodes, waiting up to ${READY_TIMEOUT}s for /ready"

# --- 5. Wait until every node is ready --------------------------------------------------------------
# Fails the whole start: prints why and the end of the log, stops what was started, exits 1.
fail_start() {
  echo "run-cluster: $1" >&2
  echo "--- last 30 lines of $LOG (this run) ---" >&2
  tail -c +$((log_start + 1)) "$LOG" | tail -n 30 >&2 || true
  echo "---" >&2
  stop_started
  exit 1
}

# Waits until every process of the W_IDS / W_URLS / W_PIDS arrays answers /ready with 200 (a dead one
# or the deadline fails the start).
wait_ready() {
  local what=$1 i code status pending
  local -a ready=() reason=()
  for i in "${!W_IDS[@]}"; do ready[i]=0; reason[i]="no answer"; done
  local body=$RUN_DIR/.ready-body
  while :; do
    pending=0
    for i in "${!W_IDS[@]}"; do
      [ "${ready[i]}" -eq 1 ] && continue
      if ! child_alive "${W_PIDS[i]}"; then
        status=0
        wait "${W_PIDS[i]}" 2>/dev/null || status=$?
        fail_start "$what ${W_IDS[i]} (pid ${W_PIDS[i]}) exited with status $status before it was ready"
      fi
      code=$(curl -s -o "$body" -w '%{http_code}' --max-time 2 "${W_URLS[i]}/ready" 2>/dev/null || true)
      if [ "$code" = 200 ]; then
        ready[i]=1
      else
        pending=$((pending + 1))
        [ "$code" = 000 ] || reason[i]="HTTP $code $(head -c 200 "$body" 2>/dev/null | tr -d '\n')"
      fi
    done
    [ $pending -eq 0 ] && break
    if [ "${EPOCHREALTIME//[.,]/}" -ge "$deadline_us" ]; then
      echo "run-cluster: ${what}s not ready after ${READY_TIMEOUT}s:" >&2
      for i in "${!W_IDS[@]}"; do
        [ "${ready[i]}" -eq 1 ] || echo "  ${W_IDS[i]} ${W_URLS[i]}/ready: ${reason[i]}" >&2
      done
      fail_start "deadline passed (raise CVERSE_READY_TIMEOUT if the machine is slow)"
    fi
    sleep 0.2
  done
  rm -f "$body"
}

deadline_us=$((start_us + READY_TIMEOUT * 1000000))
W_IDS=("${ids[@]}") W_URLS=("${urls[@]}") W_PIDS=("${pids[@]}")
wait_ready node
elapsed_ms=$(((${EPOCHREALTIME//[.,]/} - start_us) / 1000))

# --- 6. Gates -------------------------------------------------------------------------------------
# They come after the nodes: a gate routes calls by the shard map, which exists once the nodes are
# ready. They log to RUN_DIR/gate.log and are recorded as "PID gate <id>" in the pids file.
GATE_BIN=$build_dir/src/gate/cverse-gate
GATE_LOG=$RUN_DIR/gate.log
gate_ids=() gate_urls=() gate_grpc=() gate_pids=()
while read -r id http_addr grpc_addr _; do
  [ -n "${id:-}" ] || continue
  host=${http_addr%:*}
  case "$host" in ""|0.0.0.0) host=127.0.0.1 ;; "[::]"|"::") host="[::1]" ;; esac
  ghost=${grpc_addr%:*}
  case "$ghost" in ""|0.0.0.0) ghost=localhost ;; "[::]"|"::") ghost="[::1]" ;; esac
  gate_ids+=("$id")
  gate_urls+=("http://$host:${http_addr##*:}")
  gate_grpc+=("$ghost:${grpc_addr##*:}")
done < <("$NODE_BIN" --config "$config" --list-gates)
gates_ms=0
if [ ${#gate_ids[@]} -gt 0 ]; then
  gates_start_us=${EPOCHREALTIME//[.,]/}
  echo "=== run-cluster.sh $(date '+%F %T'): starting ${#gate_ids[@]} gates from $config" >>"$GATE_LOG"
  module_args "$RUN_DIR"  # gates need no types (the owner node maps JSON) and ignore --module: given as before
  for id in "${gate_ids[@]}"; do
    (trap '' HUP; exec "$GATE_BIN" --config "$config" --gate-id "$id" "${MODULE_ARGS[@]}" </dev/null >>"$GATE_LOG" 2>&1) &
    gate_pids+=("$!")
    echo "$! gate $id" >>"$PIDS"
  done
  echo "run-cluster: started ${#gate_ids[@]} gates, waiting for /ready"
  W_IDS=("${gate_ids[@]}") W_URLS=("${gate_urls[@]}") W_PIDS=("${gate_pids[@]}")
  wait_ready gate
  gates_ms=$(((${EPOCHREALTIME//[.,]/} - gates_start_us) / 1000))
fi

# --- 7. The inspector ------------------------------------------------------------------------------
# cverse-inspector polls every node's HTTP API and serves the web UI on inspector.http_addr (read-only
# unless CVERSE_INSPECTOR_TOKEN or inspector.admin_token_file gives it a token). It logs to
# RUN_DIR/inspector.log and is recorded as "PID inspector inspector" in the pids file.
INSP_BIN=$build_dir/src/inspector/cverse-inspector
INSP_LOG=$RUN_DIR/inspector.log
insp_addr=$("$INSP_BIN" --config "$config" --print-http-addr) || die "cverse-inspector rejected $config" 2
insp_url="http://$insp_addr"
# Actions (move / pin / drain) need a token. Unless the user brought one (environment or the config's
# admin_token_file), a fresh random one is written to RUN_DIR/inspector.token (mode 600) for this run.
INSP_TOKEN_FILE=""
if [ -z "${CVERSE_INSPECTOR_TOKEN:-}" ] && ! grep -q '^[[:space:]]*admin_token_file:' "$config"; then
  INSP_TOKEN_FILE=$RUN_DIR/inspector.token
  (umask 077; head -c 24 /dev/urandom | base64 | tr -d '\n=+/' >"$INSP_TOKEN_FILE"; echo >>"$INSP_TOKEN_FILE")
  CVERSE_INSPECTOR_TOKEN=$(head -n 1 "$INSP_TOKEN_FILE")
  export CVERSE_INSPECTOR_TOKEN
fi
insp_start_us=${EPOCHREALTIME//[.,]/}
echo "=== run-cluster.sh $(date '+%F %T'): starting the inspector from $config" >>"$INSP_LOG"
(trap '' HUP; exec "$INSP_BIN" --config "$config" </dev/null >>"$INSP_LOG" 2>&1) &
insp_pid=$!
echo "$insp_pid inspector inspector" >>"$PIDS"
deadline_us=$((insp_start_us + READY_TIMEOUT * 1000000))
W_IDS=(inspector) W_URLS=("$insp_url") W_PIDS=("$insp_pid")
wait_ready inspector

trap - INT TERM
total_ms=$(((${EPOCHREALTIME//[.,]/} - start_us) / 1000))
printf 'run-cluster: %d nodes ready in %d.%03d s' "${#ids[@]}" $((elapsed_ms / 1000)) $((elapsed_ms % 1000))
[ ${#gate_ids[@]} -gt 0 ] && printf ', %d gates ready %d.%03d s later' "${#gate_ids[@]}" \
  $((gates_ms / 1000)) $((gates_ms % 1000))
printf ' (%d.%03d s in all)\n' $((total_ms / 1000)) $((total_ms % 1000))
echo "  logs:    $LOG${gate_ids:+, $GATE_LOG}, $INSP_LOG"
echo "  inspector: $insp_url/ (web UI)"
if [ -n "$INSP_TOKEN_FILE" ]; then
  echo "             actions (move / pin / drain): paste the token in $INSP_TOKEN_FILE into the UI's Admin token field"
fi
echo "  data:    $RUN_DIR/data/<node-id>"
if [ -n "${CVERSE_CLUSTER_SECRET_FILE:-}" ]; then
  echo "  secret:  $CVERSE_CLUSTER_SECRET_FILE (cluster secret; export CVERSE_CLUSTER_SECRET_FILE=it for cverse"
  echo "           drain / remove-node / node-get: nodes answer only signed requests but /health, /ready, /metrics)"
fi
# Reads of a node's /v1/... are signed with the secret (docs/security.md): cverse node-get does it.
echo "  cluster: ${CVERSE_CLUSTER_SECRET_FILE:+CVERSE_CLUSTER_SECRET_FILE=$CVERSE_CLUSTER_SECRET_FILE }$build_dir/src/cli/cverse node-get ${urls[0]}/v1/cluster"
if [ ${#gate_ids[@]} -gt 0 ]; then
  for i in "${!gate_ids[@]}"; do
    echo "  ${gate_ids[i]}:  ${gate_urls[i]} (HTTP)  ${gate_grpc[i]} (native, cverse --gate)"
  done
  echo "  try:     curl -s -X POST -d '{\"request\":{}}' ${gate_urls[0]}/api/v1/objects/call/SimpleCounter/SimpleCounter-Counter-001/Increment"
  echo "           $build_dir/src/cli/cverse call --gate ${gate_grpc[0]} SimpleCounter SimpleCounter-Counter-001 GetValue"
fi
stop_cmd=cluster/stop-cluster.sh
[ -n "${CVERSE_RUN_DIR:-}" ] && stop_cmd="CVERSE_RUN_DIR=$RUN_DIR $stop_cmd"
echo "  stop:    $stop_cmd"
