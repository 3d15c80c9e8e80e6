#!/usr/bin/env bash
# Run pyftpdlib's functional FTP + FTPS tests and paramiko's SFTP client tests, unmodified,
# against a LIVE gatehouse binary, and report per-suite counts plus per-test outcomes (JSON).
#
#   tests/thirdparty/run.sh [--suite NAME ...] [-- extra pytest args]
#
# Environment:
#   GATEHOUSE_BIN   binary to test (default: target/debug/gatehouse of this checkout)
#   GH_VENV         Python venv to use/install into (default: /root/.cache/gatehouse-peers/venv;
#                   created if missing)
#   GH_CACHE        where the sdists are downloaded/reused (default: ~/.cache/gatehouse-thirdparty)
#   GH_WORK         scratch dir, wiped at start (default: a new mktemp dir)
#   GH_OUT          results JSON (default: $GH_WORK/results.json)
#   GH_SUITE_TIMEOUT / GH_TEST_TIMEOUT   seconds per suite (600) / per test (60)
#
# Suites: pyftpdlib-functional, pyftpdlib-functional-ssl, paramiko-sftp (default set) and
# paramiko-sftp-big (opt-in, --suite paramiko-sftp-big).
# Exit status: 0 when every suite ran (test failures are the report, not an error); non-zero
# when the harness itself broke (deps, download, gateway start, collection, suite timeout).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
GATEHOUSE_BIN="${GATEHOUSE_BIN:-$ROOT/target/debug/gatehouse}"
GH_VENV="${GH_VENV:-/root/.cache/gatehouse-peers/venv}"
GH_CACHE="${GH_CACHE:-$HOME/.cache/gatehouse-thirdparty}"
GH_WORK="${GH_WORK:-$(mktemp -d /tmp/gh-thirdparty.XXXXXX)}"

PYFTPDLIB_VERSION=2.2.0
PARAMIKO_VERSION=5.1.0
# Pinned test dependencies. pyOpenSSL 25.3 is the newest that accepts cryptography 46 (the
# venv's; newer pyOpenSSL would upgrade it under sslyze). pytest-timeout bounds each test so a
# hanging server shows up as one failed test, not a lost suite.
DEPS=(
  "pytest==9.2.0"
  "pytest-timeout==2.4.0"
  "psutil==7.2.2"
  "pyopenssl==25.3.0"
  "paramiko==$PARAMIKO_VERSION"
  "invoke==3.0.3"
  "icecream==2.2.0"
  "asttokens==3.0.2"
  "colorama==0.4.6"
  "executing==2.3.0"
)

if [ ! -x "$GH_VENV/bin/python" ]; then
  echo "[run.sh] creating venv $GH_VENV"
  python3 -m venv "$GH_VENV"
fi
PY="$GH_VENV/bin/python"

# (a) pinned deps, installed only when one is missing or at another version
missing=()
for d in "${DEPS[@]}"; do
  name="${d%%==*}"; want="${d##*==}"
  have="$("$PY" -c "import importlib.metadata as m,sys
try: print(m.version(sys.argv[1]))
except m.PackageNotFoundError: print('')" "$name")"
  [ "$have" = "$want" ] || missing+=("$d")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "[run.sh] installing: ${missing[*]}"
  "$PY" -m pip install --quiet "${missing[@]}"
fi

# (b) the sdists (their tests are not in the wheels), downloaded once
mkdir -p "$GH_CACHE"
if [ ! -f "$GH_CACHE/pyftpdlib-$PYFTPDLIB_VERSION.tar.gz" ] || [ ! -f "$GH_CACHE/paramiko-$PARAMIKO_VERSION.tar.gz" ]; then
  echo "[run.sh] downloading sdists into $GH_CACHE"
  "$PY" -m pip download --quiet --no-deps --no-binary :all: -d "$GH_CACHE" \
    "pyftpdlib==$PYFTPDLIB_VERSION" "paramiko==$PARAMIKO_VERSION"
fi

# (c)-(f) configs, gateways, suites, summary, JSON, stop: harness.py
exec "$PY" "$HERE/harness.py" \
  --bin "$GATEHOUSE_BIN" --sdists "$GH_CACHE" --work "$GH_WORK" \
  ${GH_OUT:+--out "$GH_OUT"} \
  --suite-timeout "${GH_SUITE_TIMEOUT:-600}" --test-timeout "${GH_TEST_TIMEOUT:-60}" \
  "$@"
