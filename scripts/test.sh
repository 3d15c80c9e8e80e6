#!/usr/bin/env bash
# The whole test suite, on a fresh machine or this one: installs the real test peers
# (OpenSSH, curl, lftp, vsftpd, nginx, a Python venv with paramiko, boto3, moto, ...)
# and runs every unit and integration test against the real binary.
#
#   bash scripts/test.sh                 # everything
#   bash scripts/test.sh http_files      # extra arguments go to `cargo test`
#
# GATEHOUSE_PEERS overrides where the peers' venv lives (default ~/.cache/gatehouse-peers).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-peers.sh
export GATEHOUSE_PEERS="${GATEHOUSE_PEERS:-${HOME:-/root}/.cache/gatehouse-peers}"
# The tests start their own moto; an exported bundle path breaks some AWS clients.
unset AWS_CA_BUNDLE || true

cargo test --locked --all-targets -- "$@"
