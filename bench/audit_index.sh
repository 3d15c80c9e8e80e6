#!/usr/bin/env bash
# bench/audit_index.sh: the audit index at scale (examples/audit_index_bench.rs, release build).
# Writes AUDIT_RECORDS records (default 1,000,000) through the real audit writer onto tmpfs,
# builds the SQLite index from the files, times the console's first page (50 newest) and count
# for each filter (median of 5), and the writer's records/s with the index tailing it against
# without. Bounded by BENCH_MAX_SECS (default 900).
set -euo pipefail
cd "$(dirname "$0")/.."
: "${AUDIT_RECORDS:=1000000}"
: "${BENCH_MAX_SECS:=900}"
: "${BENCH_SHM:=/dev/shm}"
[[ "$AUDIT_RECORDS" =~ ^[1-9][0-9]*$ ]] || { echo "AUDIT_RECORDS must be a positive integer" >&2; exit 1; }
if [[ "${BENCH_BUILD:-1}" == 1 ]]; then
    cargo build --release --locked --example audit_index_bench >&2
fi
echo "# audit index: $AUDIT_RECORDS records on $BENCH_SHM, $(nproc) cores, $(date -u +%Y-%m-%dT%H:%MZ)"
timeout "$BENCH_MAX_SECS" target/release/examples/audit_index_bench "$AUDIT_RECORDS" "$BENCH_SHM"
