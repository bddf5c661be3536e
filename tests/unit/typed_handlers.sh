#!/bin/sh
# The service form's promise (docs/objects.md): a handler of the wrong message type does not compile.
# Compiles tests/unit/typed_handler.c with the project's flags: as is it must compile; with
# -DWRONG_REQUEST it must fail, and because of incompatible-pointer-types (not some other error).
# Usage: typed_handlers.sh SOURCE_ROOT GENERATED_PROTO_DIR CC [CC ARGS...]
set -eu
root=$1 gen=$2
shift 2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
flags="-fsyntax-only -std=gnu11 -Wall -Wextra -Wno-unused-parameter -Werror -Werror=incompatible-pointer-types"
# shellcheck disable=SC2086
if ! "$@" $flags -I"$root/include" -I"$gen" "$root/tests/unit/typed_handler.c" 2> "$tmp/ok.err"; then
    echo "FAIL: the well-typed service type does not compile:"; cat "$tmp/ok.err"; exit 1
fi
# shellcheck disable=SC2086
if "$@" $flags -DWRONG_REQUEST -I"$root/include" -I"$gen" "$root/tests/unit/typed_handler.c" 2> "$tmp/bad.err"; then
    echo "FAIL: a handler of the wrong request type compiled"; exit 1
fi
if ! grep -q 'incompatible-pointer-types\|incompatible function pointer\|incompatible pointer' "$tmp/bad.err"; then
    echo "FAIL: the wrong handler failed for another reason:"; cat "$tmp/bad.err"; exit 1
fi
echo "ok: a handler of the wrong request type is a compile error"
