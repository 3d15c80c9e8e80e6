#!/usr/bin/env bash
# The module boundaries of ../shared/DESIGN.md that the compiler cannot check:
#  1. protocol and storage crates appear only under adapters/;
#  2. src/ names adapters:: only in serve.rs (and the one #[path] line in lib.rs);
#  3. the front doors adapters/{sftp,ftp,http} never name each other.
set -euo pipefail
cd "$(dirname "$0")/.."
fail=0

hits=$(grep -rnE '\b(russh|russh_sftp|libunftp|unftp_core|axum|hyper|hyper_util|object_store)::' src || true)
if [ -n "$hits" ]; then
    echo "boundary 1: protocol/storage crates used in src/ (move the code under adapters/):"
    echo "$hits"
    fail=1
fi

hits=$(grep -rnE '\badapters::' src | grep -vE '^src/(serve|lib)\.rs:' || true)
if [ -n "$hits" ]; then
    echo "boundary 2: src/ names adapters:: outside serve.rs:"
    echo "$hits"
    fail=1
fi

for a in sftp ftp http; do
    [ -d "adapters/$a" ] || continue
    for b in sftp ftp http; do
        [ "$a" = "$b" ] && continue
        hits=$(grep -rnE "(adapters::$b\b|super::$b\b|crate::adapters::$b\b)" "adapters/$a" || true)
        if [ -n "$hits" ]; then
            echo "boundary 3: adapters/$a names adapters/$b:"
            echo "$hits"
            fail=1
        fi
    done
done

if [ "$fail" -ne 0 ]; then
    exit 1
fi
echo "boundaries ok"
