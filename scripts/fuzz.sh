#!/usr/bin/env bash
# Builds the libFuzzer targets of tests/fuzz with clang (ASan + UBSan + libFuzzer, build dir build-fuzz/)
# and runs each: first over its regression inputs (tests/fuzz/regress/TARGET/: every crash found once),
# then fuzzing for SECONDS (default 60) from its seed corpus (tests/fuzz/corpus/TARGET/; what a run
# learns goes to build-fuzz/corpus/TARGET/, kept between runs, never committed).
#
# Usage: scripts/fuzz.sh [SECONDS] [TARGET...]     e.g. scripts/fuzz.sh 20; scripts/fuzz.sh 600 fuzz_http
# Prints one line per target ("fuzz_frame: 412345 runs in 20 s, 0 crashes") and exits 1 if any target
# crashed, hung (-timeout 10 s per input), leaked or broke one of its checks; the input that did is
# saved as build-fuzz/artifacts/TARGET-crash-* (reproduce: build-fuzz/tests/fuzz/TARGET FILE; add it to
# tests/fuzz/regress/TARGET/ once fixed). Exit 2 for bad arguments. Environment: CVERSE_FUZZ_BUILD_DIR.
set -euo pipefail
cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.."

ALL=(fuzz_frame fuzz_http fuzz_pbjson fuzz_config fuzz_catalog)
secs=60
if [ $# -gt 0 ] && [[ "$1" =~ ^[0-9]+$ ]]; then secs=$1; shift; fi
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${ALL[@]}")
for t in "${targets[@]}"; do
  [[ " ${ALL[*]} " == *" $t "* ]] || { echo "fuzz.sh: unknown target '$t' (targets: ${ALL[*]})" >&2; exit 2; }
done
command -v clang >/dev/null || { echo "fuzz.sh: clang not found (scripts/install-deps.sh installs it)" >&2; exit 2; }

B=${CVERSE_FUZZ_BUILD_DIR:-build-fuzz}
if [ ! -f "$B/build.ninja" ]; then
  CC=clang meson setup "$B" -Dfuzz=true -Dtests=disabled -Db_sanitize=address,undefined -Db_lundef=false \
    -Dwerror=false >/dev/null
fi
ninja -C "$B" "${targets[@]/#/tests/fuzz/}" >/dev/null

export ASAN_OPTIONS="halt_on_error=1:detect_leaks=1:abort_on_error=1"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
mkdir -p "$B/artifacts"
failed=0
for t in "${targets[@]}"; do
  bin="$B/tests/fuzz/$t" work="$B/corpus/$t" log="$B/artifacts/$t.log"
  mkdir -p "$work"
  regress=(tests/fuzz/regress/"$t"/*)
  if [ -e "${regress[0]}" ] && ! "$bin" "${regress[@]}" >"$log" 2>&1; then
    echo "$t: a regression input fails again (log: $log)"; failed=1; continue
  fi
  if "$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
       -artifact_prefix="$B/artifacts/$t-" "$work" "tests/fuzz/corpus/$t" >"$log" 2>&1; then
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    echo "$t: ${runs:-?} runs in $secs s, 0 crashes"
  else
    echo "$t: FAILED (log: $log)"
    grep -E "^(SUMMARY|==[0-9]+==ERROR)|Test unit written|runtime error" "$log" | head -5 || true
    failed=1
  fi
done
exit $failed
