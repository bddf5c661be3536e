#!/bin/sh
# libcverse exports exactly its public API: the functions declared in include/cverse/*.h plus the
# generated code of proto/rpc.proto (client.h exposes its messages), nothing of the internals
# (cv_catalog_*, cv_log, the catalog's protobuf code, ...). Usage: symbols.sh LIBCVERSE.so SOURCE_ROOT
set -eu
lib=$1 root=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
nm -D --defined-only "$lib" | awk '$2 ~ /^[TDBR]$/ {print $3}' | sort -u > "$tmp/exported"
[ -s "$tmp/exported" ] || { echo "FAIL: nm found no exported symbols in $lib"; exit 1; }
grep -ohE '\bcv_[a-z0-9_]+[[:space:]]*\(' "$root"/include/cverse/*.h | sed 's/[[:space:]]*($//' | sort -u > "$tmp/declared"
grep -v '^cverse__rpc__' "$tmp/exported" > "$tmp/exported_cv" || true
rc=0
if ! diff -u "$tmp/declared" "$tmp/exported_cv" > "$tmp/diff"; then
    echo "FAIL: libcverse's exported functions differ from those the public headers declare"
    echo "(- declared but not exported: add it to src/lib/libcverse.map; + exported but not public):"
    cat "$tmp/diff"
    rc=1
fi
n_rpc=$(grep -c '^cverse__rpc__' "$tmp/exported" || true)
if [ "$n_rpc" -eq 0 ]; then
    echo "FAIL: the rpc.proto code client.h needs (cverse__rpc__*) is not exported"
    rc=1
fi
[ $rc -eq 0 ] && echo "ok: $(wc -l < "$tmp/declared") public functions and $n_rpc rpc.proto symbols exported, nothing else"
exit $rc
