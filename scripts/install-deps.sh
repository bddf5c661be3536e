#!/usr/bin/env bash
# Installs cverse's build and test dependencies from Debian packages, idempotently.
# libraft comes from bookworm-backports (0.22.1, the maintained cowsql fork): Debian 12's own
# 0.15.0 has a known Raft safety bug and drops log entries (see docs/architecture.md).
# `apt-get update` runs only when something is missing. redis and etcd are the baselines of
# scripts/bench-compare.sh (their services are not started: the script runs its own on loopback ports).
set -euo pipefail

PKGS=(build-essential pkg-config meson ninja-build
      libuv1-dev liblmdb-dev libprotobuf-c-dev protobuf-c-compiler
      libcurl4-openssl-dev libcriterion-dev libyaml-dev libjansson-dev libhttp-parser-dev
      uthash-dev libsodium-dev libssl-dev openssl
      curl python3 lmdb-utils iproute2 clang libclang-rt-dev
      libjs-chart.js libjs-d3 chromium nodejs
      redis-server redis-tools etcd-server etcd-client)
BACKPORTS_PKGS=(libraft-dev)
RAFT_MIN=0.22

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

# npm: Debian's package, unless the installed nodejs brings its own (NodeSource's conflicts with it).
command -v npm >/dev/null || missing+=(npm)

raft_ok=0
if ver=$(dpkg-query -W -f='${Version}' libraft-dev 2>/dev/null) && [ -n "$ver" ] &&
   dpkg --compare-versions "$ver" ge "$RAFT_MIN"; then
  raft_ok=1
fi

# The inspector's browser tests drive chromium with playwright-core, pinned in tests/browser's lock file
# (never `npx playwright install`: the browser is Debian's chromium).
browser_deps() {
  local dir
  dir=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)/tests/browser
  [ -f "$dir/package-lock.json" ] || return 0
  if [ -f "$dir/node_modules/playwright-core/package.json" ] &&
     [ "$dir/node_modules/.package-lock.json" -nt "$dir/package-lock.json" ]; then
    return 0
  fi
  echo "install-deps: npm ci in tests/browser (playwright-core)"
  (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
}

if [ ${#missing[@]} -eq 0 ] && [ $raft_ok -eq 1 ]; then
  browser_deps
  echo "install-deps: all dependencies present"
  exit 0
fi

src=/etc/apt/sources.list.d/bookworm-backports.sources
if [ $raft_ok -eq 0 ] && [ ! -f "$src" ]; then
  $SUDO tee "$src" >/dev/null <<'SRC'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
if [ $raft_ok -eq 0 ]; then
  echo "install-deps: installing libraft-dev from bookworm-backports"
  $SUDO apt-get install -y -q --no-install-recommends -t bookworm-backports "${BACKPORTS_PKGS[@]}"
fi
browser_deps
ver=$(dpkg-query -W -f='${Version}' libraft-dev)
dpkg --compare-versions "$ver" ge "$RAFT_MIN" || { echo "install-deps: libraft-dev $ver < $RAFT_MIN" >&2; exit 1; }
echo "install-deps: done (libraft-dev $ver)"
