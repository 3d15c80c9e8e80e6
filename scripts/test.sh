#!/usr/bin/env bash
# The whole test suite, on a fresh machine or this one: installs the real test peers
# (OpenSSH, curl, lftp, vsftpd, nginx, a Python venv with paramiko, boto3, moto, ...)
# and runs every unit and integration test against the real binary.
#
#   bash scripts/test.sh                 # everything
#   bash scripts/test.sh http_files      # extra arguments go to `cargo test` (and skip fuzzing)
#   GATEHOUSE_FUZZ=0 bash scripts/test.sh   # everything but the fuzzing
#
# GATEHOUSE_PEERS overrides where the peers' venv lives (default ~/.cache/gatehouse-peers).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-peers.sh
export GATEHOUSE_PEERS="${GATEHOUSE_PEERS:-${HOME:-/root}/.cache/gatehouse-peers}"
# The tests start their own moto; an exported bundle path breaks some AWS clients.
unset AWS_CA_BUNDLE || true

cargo test --locked --all-targets -- "$@"

# The whole suite (no test filter) ends with bounded fuzzing of the parsers (scripts/fuzz.sh);
# GATEHOUSE_FUZZ=0 skips it, FUZZ_SECONDS sets the time per target (default 30).
if (($# == 0)) && [[ "${GATEHOUSE_FUZZ:-1}" != 0 ]]; then
    bash scripts/fuzz.sh
fi
