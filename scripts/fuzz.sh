#!/usr/bin/env bash
# Coverage-guided fuzzing (cargo-fuzz / libFuzzer) of the parsers a client or an operator feeds:
# path normalisation (vpath), config loading (config), policy evaluation (policy), request-path
# normalisation and route matching (route), and the FTP control channel codec and command parser
# (ftp_command). Each target runs from its committed corpus (fuzz/corpus/<target>) for a bounded
# time; a crash fails the run and leaves its input under fuzz/artifacts/<target>/.
#
#   bash scripts/fuzz.sh                    # every target, FUZZ_SECONDS (default 30) each
#   FUZZ_SECONDS=600 bash scripts/fuzz.sh route
#
# The stable toolchain builds the fuzz targets with RUSTC_BOOTSTRAP=1 (cargo-fuzz needs -Z flags).
set -euo pipefail
cd "$(dirname "$0")/.."

readonly CARGO_FUZZ_VERSION=0.13.2
SECONDS_EACH="${FUZZ_SECONDS:-30}"
TARGETS=("$@")
if ((${#TARGETS[@]} == 0)); then
    TARGETS=(vpath config policy route ftp_command)
fi

if ! cargo fuzz --version 2>/dev/null | grep -q "$CARGO_FUZZ_VERSION"; then
    echo "fuzz: installing cargo-fuzz $CARGO_FUZZ_VERSION" >&2
    cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked
fi
export RUSTC_BOOTSTRAP=1
for t in "${TARGETS[@]}"; do cargo fuzz build -s none -a "$t"; done

# Run from a scratch copy, so a run adds nothing to the committed corpus.
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
for t in "${TARGETS[@]}"; do
    cp -r "fuzz/corpus/$t" "$work/$t"
    log="$work/$t.log"
    if ! cargo fuzz run -s none -a "$t" "$work/$t" -- \
        -max_total_time="$SECONDS_EACH" -max_len=4096 -timeout=10 -rss_limit_mb=2048 >"$log" 2>&1; then
        tail -40 "$log" >&2
        echo "fuzz: $t FAILED (input saved under fuzz/artifacts/$t/)" >&2
        exit 1
    fi
    runs="$(grep -Eo 'Done [0-9]+ runs' "$log" | grep -Eo '[0-9]+' || echo '?')"
    corpus="$(ls "$work/$t" | wc -l)"
    echo "fuzz: $t ok: $runs executions in ${SECONDS_EACH}s, corpus $(ls "fuzz/corpus/$t" | wc -l) -> $corpus inputs, no crash"
done
