#!/usr/bin/env bash
# The user's path for a type of their own (issue 12): install cverse into a prefix of its own
# (meson setup --prefix, ninja install), build examples/wallet against it with PKG_CONFIG_PATH, run the
# installed cverse-node (3 nodes loading wallet.so) and cverse-gate (no module: the nodes map JSON), and
# call the Wallet with curl and the installed CLI: deposits, a withdraw, an overdraft refused as the
# application error INSUFFICIENT_FUNDS, the balance after a restart of every node (durable state).
# Run by scripts/test.sh once (not per build: it configures its own build dir, build-prefix/).
# Usage: tests/example/wallet.sh SOURCE_ROOT
set -euo pipefail
ROOT=$(cd "$1" && pwd)
BP=$ROOT/build-prefix
PREFIX=$BP/inst
tmp=$(mktemp -d /tmp/cverse-wallet.XXXXXX)
PIDS=()
. "$ROOT/cluster/common.sh" # child_alive, stop_pids, wait_for, free_port_block
trap 'stop_pids; rm -rf "$tmp"' EXIT
fail() {
  echo "FAIL: $*"
  for f in "$tmp"/*.log; do [ -f "$f" ] && { echo "--- last lines of $f"; tail -n 20 "$f"; }; done
  exit 1
}
step() { echo "wallet: $*"; }

# 1. cverse installed into a prefix, as docs/objects.md tells a user (release build, no test suites).
step "install cverse into $PREFIX"
if [ ! -f "$BP/build.ninja" ]; then
  meson setup "$BP" "$ROOT" --prefix="$PREFIX" --buildtype=release -Dtests=disabled >"$tmp/setup.log" 2>&1 ||
    fail "meson setup --prefix failed"
fi
ninja -C "$BP" install >"$tmp/install.log" 2>&1 || fail "ninja install failed"
pc=$(find "$PREFIX" -name cverse.pc | head -n 1)
[ -n "$pc" ] || fail "no cverse.pc under $PREFIX"
export PKG_CONFIG_PATH=$(dirname "$pc")
pkg-config --cflags --libs cverse >/dev/null || fail "pkg-config cverse fails with PKG_CONFIG_PATH=$PKG_CONFIG_PATH"

# 2. The example, built on its own against the prefix; docs/objects.md shows its wallet.c verbatim.
python3 - "$ROOT/docs/objects.md" "$ROOT/examples/wallet/wallet.c" <<'PY' || fail "docs/objects.md's Wallet differs from examples/wallet/wallet.c"
import sys
d = open(sys.argv[1]).read()
i = d.index("## 2. The type"); j = d.index("```c", i) + 5
sys.exit(0 if d[j:d.index("```", j)] == open(sys.argv[2]).read() else 1)
PY
step "build examples/wallet against it"
meson setup "$tmp/wallet" "$ROOT/examples/wallet" >"$tmp/wallet-setup.log" 2>&1 || fail "meson setup examples/wallet"
ninja -C "$tmp/wallet" >"$tmp/wallet-build.log" 2>&1 || fail "building examples/wallet"
MOD=$tmp/wallet/wallet.so
[ -f "$MOD" ] || fail "no wallet.so"

# 3. Three installed nodes with the module, one installed gate without it.
base=$(free_port_block 25000 12) || fail "no free block of ports"
cat >"$tmp/cluster.yml" <<YML
version: 1
cluster:
  shards: 64
  data_dir: "$tmp/data"
nodes:
  - {id: node-1, grpc_addr: "127.0.0.1:$base", http_addr: "127.0.0.1:$((base + 1))"}
  - {id: node-2, grpc_addr: "127.0.0.1:$((base + 2))", http_addr: "127.0.0.1:$((base + 3))"}
  - {id: node-3, grpc_addr: "127.0.0.1:$((base + 4))", http_addr: "127.0.0.1:$((base + 5))"}
gates:
  - {id: gate-1, grpc_addr: "127.0.0.1:$((base + 10))", http_addr: "127.0.0.1:$((base + 11))"}
YML
ready() { curl -fsS "http://127.0.0.1:$1/ready" >/dev/null; }
start_nodes() {
  for i in 1 2 3; do
    ("$PREFIX/bin/cverse-node" --config "$tmp/cluster.yml" --node-id "node-$i" --module "$MOD" \
       </dev/null >>"$tmp/node-$i.log" 2>&1) &
    PIDS+=($!)
  done
  for i in 1 2 3; do wait_for 90 ready $((base + 2 * i - 1)) || fail "node-$i not ready"; done
}
step "start 3 nodes (--module wallet.so) and a gate (no module)"
start_nodes
("$PREFIX/bin/cverse-gate" --config "$tmp/cluster.yml" --gate-id gate-1 </dev/null >>"$tmp/gate.log" 2>&1) &
PIDS+=($!)
GATE_PID=$!
wait_for 60 ready $((base + 11)) || fail "gate not ready"

# 4. Calls.
gate=http://127.0.0.1:$((base + 11))
call() { # TYPE ID METHOD JSON -> "STATUS BODY"
  curl -s -o "$tmp/body" -w '%{http_code}' -X POST -d "{\"request\":$4}" "$gate/api/v1/objects/call/$1/$2/$3" >"$tmp/code"
  echo "$(cat "$tmp/code") $(cat "$tmp/body")"
}
expect() { [ "$1" = "$2" ] || fail "$3: got '$1', want '$2'"; }
expect "$(call Wallet w-alice Deposit '{"amount":"10"}')" '200 {"response":{"balance":"10"}}' "deposit 10"
expect "$(call Wallet w-alice Withdraw '{"amount":3}')" '200 {"response":{"balance":"7"}}' "withdraw 3"
r=$(call Wallet w-alice Withdraw '{"amount":"100"}')
case "$r" in
  422\ *INSUFFICIENT_FUNDS*) ;;
  *) fail "an overdraft: got '$r', want 422 with the code INSUFFICIENT_FUNDS" ;;
esac
expect "$(call Wallet w-alice Balance '{}')" '200 {"response":{"balance":"7"}}' "balance after the refused overdraft"
expect "$(call Wallet w-alice Lend '{}' | cut -c1-3)" "404" "an unknown method"
out=$("$PREFIX/bin/cverse" --gate "127.0.0.1:$((base + 10))" call --json Wallet w-alice Balance) ||
  fail "the installed CLI's call failed"
expect "$out" '{"balance":"7"}' "the CLI's Balance"
set +e
err=$("$PREFIX/bin/cverse" --gate "127.0.0.1:$((base + 10))" call Wallet w-alice Withdraw '{"amount":"8"}' 2>&1)
rc=$?
set -e
[ $rc = 1 ] || fail "the CLI's overdraft exited $rc, want 1: $err"
case "$err" in *INSUFFICIENT_FUNDS*"balance 7"*) ;; *) fail "the CLI's overdraft printed: $err" ;; esac
case "$err" in *"looks like a bug"*) fail "a business error is no bug: $err" ;; esac

# 5. Durable: every node stopped and started again keeps the balance.
step "restart every node: the balance is durable"
keep=("$GATE_PID")
for pid in "${PIDS[@]}"; do
  [ "$pid" = "$GATE_PID" ] && continue
  kill -TERM "$pid"
  for _ in $(seq 100); do child_alive "$pid" || break; sleep 0.1; done
  child_alive "$pid" && fail "node $pid did not stop on SIGTERM"
  wait "$pid" 2>/dev/null || true
done
PIDS=("${keep[@]}")
start_nodes
expect "$(call Wallet w-alice Balance '{}')" '200 {"response":{"balance":"7"}}' "the balance after a restart"
step "ok"
