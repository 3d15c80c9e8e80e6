#!/usr/bin/env bash
# bench/sftp_backend.sh: the gateway in front of an internal SFTP server (kind = "sftp"
# backend) against copying straight to that server. The same OpenSSH `sftp -b` client puts and
# gets one SIZE_MIB file (default 1 GiB, tmpfs), once directly to OpenSSH sshd (internal-sftp),
# once through gatehouse's SFTP door into its sftp backend on that same sshd. Runs alternate
# (direct, gateway, ...), RUNS each; medians, the ratio (target >= 0.8x of direct), and the
# gateway's peak resident memory (it must not grow with the file).
#
#   RUNS=3 SIZE_MIB=1024 bench/sftp_backend.sh
#   CIPHER=aes128-gcm@openssh.com  GATEHOUSE_BIN=target/release/gatehouse
# shellcheck disable=SC2317 # op_* functions are called indirectly through compare_rate
set -euo pipefail

: "${SIZE_MIB:=1024}"
: "${CIPHER:=aes128-gcm@openssh.com}"

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

bench_need_int SIZE_MIB
bench_require sftp ssh ssh-keygen /usr/sbin/sshd cmp timeout awk
bench_need_shm $((SIZE_MIB * 4 + 64))
BENCH_INCUMBENT="direct to sshd"
gh_resolve_bin || true

SRC="$BENCH_DIR/src"
DL="$BENCH_DIR/dl"
UP_ROOT="$BENCH_DIR/upstream" # what sshd writes into (absolute paths)
GH_UP="$UP_ROOT/gateway"      # the gateway backend's root on the upstream

remote_path() { if [[ "$1" == inc ]]; then echo "$UP_ROOT/$2"; else echo "/$2"; fi; }
landed_path() { if [[ "$1" == inc ]]; then echo "$UP_ROOT/$2"; else echo "$GH_UP/$2"; fi; }
host_alias() { if [[ "$1" == inc ]]; then echo incumbent; else echo gatehouse; fi; }

sftp_batch() { # SIDE LINE
    local side=$1 batch="$BENCH_DIR/batch.$1"
    printf '%s\n' "$2" >"$batch"
    timeit sftp -F "$BENCH_DIR/ssh/config" -c "$CIPHER" -b "$batch" "$(host_alias "$side")"
}

op_put_big() { # SIDE
    local side=$1 secs
    rm -f "$(landed_path "$side" big.bin)"
    secs="$(sftp_batch "$side" "put \"$SRC/big.bin\" \"$(remote_path "$side" big.bin)\"")"
    same_file "$SRC/big.bin" "$(landed_path "$side" big.bin)"
    echo "$secs"
}

op_get_big() { # SIDE
    local side=$1 secs
    [[ -f "$(landed_path "$side" big.bin)" ]] || cp "$SRC/big.bin" "$(landed_path "$side" big.bin)"
    rm -f "$DL/big.bin"
    secs="$(sftp_batch "$side" "get \"$(remote_path "$side" big.bin)\" \"$DL/big.bin\"")"
    same_file "$SRC/big.bin" "$DL/big.bin"
    rm -f "$DL/big.bin"
    echo "$secs"
}

main() {
    bench_log "generating test data: ${SIZE_MIB} MiB file"
    mkdir -p "$SRC" "$DL" "$GH_UP"
    make_file "$SRC/big.bin" "$SIZE_MIB"

    start_sshd "$SSHD_PORT"
    ssh_host_entry incumbent "$SSHD_PORT" "$(id -un)"

    if gh_enabled; then
        local hash config="$BENCH_DIR/gh/gatehouse.toml" host_key
        host_key="$(awk '{print $1, $2}' "$BENCH_DIR/sshd/hostkey.pub")"
        if hash="$(gh_hash_password "$BENCH_PASSWORD")" && [[ "$hash" == "\$argon2"* ]]; then
            {
                gh_config_head
                cat <<CFG
[sftp]
listen = "$BENCH_HOST:$GH_SFTP_PORT"
host_keys = ["$BENCH_DIR/gh/var/ssh_host_ed25519_key"]

[backends.upstream]
kind = "sftp"
address = "$BENCH_HOST:$SSHD_PORT"
user = "$(id -un)"
private_key = "$BENCH_DIR/ssh/client"
host_key = "$host_key"
root = "$GH_UP"
max_sessions = 4

[[mounts]]
path = "/"
backend = "upstream"

CFG
                gh_config_user "$hash" "$(cat "$BENCH_DIR/ssh/client.pub")"
            } >"$config"
            gh_start "$config" "$GH_SFTP_PORT" || true
        else
            gh_disable "gatehouse hash-password failed"
        fi
        ssh_host_entry gatehouse "$GH_SFTP_PORT" "$BENCH_USER"
    fi

    compare_rate "put ${SIZE_MIB} MiB" MiB/s "$SIZE_MIB" op_put_big
    compare_rate "get ${SIZE_MIB} MiB" MiB/s "$SIZE_MIB" op_get_big
    if gh_enabled; then
        local pid hwm
        pid="${BENCH_CPU_PID[gh]:-}"
        hwm="$(awk '/^VmHWM:/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)"
        bench_note "gatehouse peak RSS over the run: ${hwm:-?} KiB (VmHWM), ${SIZE_MIB} MiB files"
    fi
    bench_note "client: $(ssh -V 2>&1) sftp -b -c $CIPHER, one session per command; times include connect + auth"
    bench_note "direct: sftp -> sshd internal-sftp; gateway: sftp -> gatehouse SFTP -> sftp backend (russh client, 4 pooled sessions) -> the same sshd"
    bench_note "CPU per MiB: the direct side counts sshd (which also serves the gateway's upstream sessions); the gateway side counts gatehouse only"
    [[ -z "$(gh_version)" ]] || bench_note "gatehouse: $(gh_version)"
    {
        bench_env_line
        bench_table "SFTP backend: straight to OpenSSH sshd vs through gatehouse's sftp backend"
    }
    bench_finish
}

main "$@"
