#!/usr/bin/env bash
# Builds cverse and runs every test suite twice: a normal build in build/, then an ASan+UBSan build in
# build-asan/ where any sanitizer report fails the run. Ends with one line "N passed, N failed" (meson
# tests summed over both runs) and exits non-zero if anything failed.
#
# Usage: scripts/test.sh [--no-asan] [--quick] [--suite NAME]...
#   --no-asan      skip the sanitizer run
#   --quick        unit suites only (same as --suite unit)
#   --suite NAME   passed to `meson test --suite` (repeatable): unit, integration, browser (the inspector's
#                  web UI in headless chromium; screenshots land in the build directory), or a test's name
# Environment: CVERSE_BUILD_DIR, CVERSE_ASAN_BUILD_DIR override the two build directories (defaults
# build, build-asan; relative to the repository root).
set -euo pipefail

usage() {
  echo "usage: scripts/test.sh [--no-asan] [--quick] [--suite NAME]..."
}

cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.."

asan=1
suites=()
while [ $# -gt 0 ]; do
  case "$1" in
    --no-asan) asan=0 ;;
    --quick) suites+=(--suite unit) ;;
    --suite)
      [ $# -ge 2 ] || { echo "test.sh: --suite needs a name" >&2; exit 2; }
      suites+=(--suite "$2"); shift ;;
    --suite=*) suites+=(--suite "${1#--suite=}") ;;
    -h|--help) usage; exit 0 ;;
    *) echo "test.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
  esac
  shift
done

BUILD=${CVERSE_BUILD_DIR:-build}
BUILD_ASAN=${CVERSE_ASAN_BUILD_DIR:-build-asan}
ASAN_OPTS=("-Db_sanitize=address,undefined" "-Db_lundef=false")

# Configures $1 unless it already is; with extra options, makes sure an existing directory has them
# (someone may have configured build-asan/ by hand without the sanitizers).
configure() {
  local dir=$1; shift
  if [ ! -f "$dir/meson-private/coredata.dat" ]; then
    meson setup "$dir" "$@"
  elif [ ! -f "$dir/build.ninja" ]; then
    meson setup --reconfigure "$dir" "$@"
  elif [ $# -gt 0 ] && ! has_options "$dir"; then
    meson configure "$dir" "$@"
  fi
}

# True when $1 is configured with b_sanitize=address,undefined and b_lundef=false.
has_options() {
  meson introspect --buildoptions "$1" | python3 -c '
import json, sys
opts = {o["name"]: o["value"] for o in json.load(sys.stdin)}
ok = opts.get("b_sanitize") == "address,undefined" and opts.get("b_lundef") is False
sys.exit(0 if ok else 1)'
}

passed=0
failed=0
skipped=0
failures=()

# Adds the results in $1/meson-logs/testlog.json to the totals. Criterion's own per-test counts
# ("Synthesis: Tested: ...") are summed too, for information.
count_results() {
  local log="$1/meson-logs/testlog.json" counts
  if [ ! -f "$log" ]; then
    echo "test.sh: $1: no tests ran (no testlog.json)" >&2
    # A mistyped --suite must not pass silently.
    if [ ${#suites[@]} -gt 0 ]; then failed=$((failed + 1)); failures+=("$1:no-test-matched"); fi
    return
  fi
  counts=$(python3 - "$log" "$1" "$TAILS" <<'PY'
import json, re, sys
ok = bad = skip = 0
cases = [0, 0, 0]
names = []
with open(sys.argv[1]) as f:
    for line in f:
        line = line.strip()
        if not line:
            continue
        t = json.loads(line)
        r = t.get("result")
        if r in ("OK", "EXPECTEDFAIL"):
            ok += 1
        elif r == "SKIP":
            skip += 1
        else:
            bad += 1
            name = re.sub(r"\s+", "", t.get("name", "?"))  # "proj:unit / x" -> "proj:unit/x"
            names.append("%s:%s(%s)" % (sys.argv[2], name, r))
            # The tail of a failed test's output, printed again at the very end of the run: CI keeps
            # only the last part of what this script prints.
            tail = ((t.get("stdout") or "") + (t.get("stderr") or "")).splitlines()[-60:]
            with open(sys.argv[3], "a") as f:
                f.write("----- %s:%s (%s), last %d lines\n" % (sys.argv[2], name, r, len(tail)))
                f.write("\n".join(tail) + "\n")
        out = (t.get("stdout") or "") + (t.get("stderr") or "")
        m = re.search(r"Synthesis: Tested: (\d+) \| Passing: (\d+) \| Failing: (\d+)"
                      r"(?: \| Crashing: (\d+))?", out)
        if m:
            run, ok_, fail, crash = (int(v or 0) for v in m.groups())
            cases = [cases[0] + run, cases[1] + ok_, cases[2] + fail + crash]
print(ok, bad, skip, *cases, *names)
PY
  ) || counts="0 1 0 0 0 0 $1:testlog.json-unreadable"
  local a=() i
  read -r -a a <<<"$counts"
  passed=$((passed + a[0])); failed=$((failed + a[1])); skipped=$((skipped + a[2]))
  for ((i = 6; i < ${#a[@]}; i++)); do failures+=("${a[i]}"); done
  local cases=""
  [ "${a[3]}" -eq 0 ] || cases=" (criterion cases: ${a[3]} run, ${a[4]} passing, ${a[5]} failing)"
  echo "test.sh: $1: ${a[0]} passed, ${a[1]} failed, ${a[2]} skipped$cases"
}

# Builds and tests one directory. A build failure ends the script; test failures are counted.
run_in() {
  local dir=$1; shift
  echo "=== $dir: configure and build"
  if ! configure "$dir" "$@" || ! ninja -C "$dir"; then
    echo "test.sh: configure/build failed in $dir" >&2
    echo "$passed passed, $((failed + 1)) failed"
    exit 1
  fi
  echo "=== $dir: meson test ${suites[*]}"
  rm -f "$dir/meson-logs/testlog.json"
  local rc=0 before=$failed
  meson test -C "$dir" --print-errorlogs "${suites[@]}" || rc=$?
  count_results "$dir"
  # meson itself failing (bad --suite name, internal error) must not pass silently.
  if [ $rc -ne 0 ] && [ "$failed" -eq "$before" ]; then
    failed=$((failed + 1)); failures+=("$dir:meson-test(exit $rc)")
  fi
  check_leaks "$dir"
}

# Every test stops what it started: a cverse process of this build still running once the suites are
# over is a teardown that did not run (a suite without .fini once left a cluster behind per run). It
# fails the run and is stopped, by PID (only binaries of this build dir, found by /proc/PID/exe).
check_leaks() {
  local dir=$1 pids pid exe i
  for i in $(seq 50); do
    pids=""
    for pid in /proc/[0-9]*; do
      exe=$(readlink "$pid/exe" 2>/dev/null || true)
      case "$exe" in "$PWD/$dir/src/"*/cverse-*) pids="$pids ${pid#/proc/}" ;; esac
    done
    [ -z "$pids" ] && return 0
    sleep 0.1
  done
  echo "test.sh: processes of $dir still running after its tests:" >&2
  ps -o pid=,args= -p "$(echo $pids | tr ' ' ',')" >&2 || true
  kill -TERM $pids 2>/dev/null || true
  failed=$((failed + 1)); failures+=("$dir:processes-left-running")
}

scripts/install-deps.sh

TAILS=$(mktemp)
trap 'rm -f "$TAILS"' EXIT

run_in "$BUILD"

# The user's path for a type of their own (issue 12): cverse installed into a prefix, examples/wallet
# built against it and run (tests/example/wallet.sh; its own build dir, build-prefix/, so once per run).
if [ ${#suites[@]} -eq 0 ]; then
  echo "=== examples/wallet against an installed prefix"
  if tests/example/wallet.sh "$PWD"; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1)); failures+=("example:wallet")
  fi
fi

# Every libFuzzer target (tests/fuzz, scripts/fuzz.sh) over its regression inputs, then 20 s of fuzzing.
if [ ${#suites[@]} -eq 0 ]; then
  echo "=== fuzz targets, 20 s each"
  if scripts/fuzz.sh 20; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1)); failures+=("fuzz")
  fi
fi

if [ $asan -eq 1 ]; then
  # Any sanitizer report must fail the test that triggered it. These reach the cverse-node processes
  # the integration suites start, too.
  export ASAN_OPTIONS="halt_on_error=1:detect_leaks=1:print_stacktrace=1:abort_on_error=0:exitcode=23"
  export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:exitcode=23"
  export LSAN_OPTIONS="exitcode=23:suppressions=$PWD/tests/lsan.supp:print_suppressions=0"
  run_in "$BUILD_ASAN" "${ASAN_OPTS[@]}"
  # Criterion only warns when a test's teardown dies, and a leak found when a test's forked child exits
  # does not change the suite's result, so a sanitizer report there (a suite's h_cluster_destroy once
  # stopped on a UBSan report, leaving its nodes running; test_httpc leaked a held exchange) would pass:
  # any UBSan, ASan or LSan report in the log fails the run.
  ubsan=$(grep -n -E "runtime error:|ERROR: (Address|Leak)Sanitizer" "$BUILD_ASAN/meson-logs/testlog.txt" \
            2>/dev/null | head -5 || true)
  if [ -n "$ubsan" ]; then
    echo "test.sh: sanitizer reports in $BUILD_ASAN/meson-logs/testlog.txt:" >&2
    echo "$ubsan" >&2
    failed=$((failed + 1)); failures+=("$BUILD_ASAN:sanitizer-report")
  fi
fi

if [ ${#failures[@]} -gt 0 ]; then
  cat "$TAILS"
  echo "failed: ${failures[*]}"
fi
if [ $skipped -gt 0 ]; then
  echo "($skipped skipped)"
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
