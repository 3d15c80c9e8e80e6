#!/usr/bin/env bash
# bench/sftp.sh: OpenSSH sshd (internal-sftp) vs gatehouse SFTP, both driven by the OpenSSH
# `sftp -b` client with public-key auth, per cipher:
#   * put / get of one SIZE_MIB file (default 1 GiB), tmpfs on both ends;
#   * put -r / get -r of SMALL_FILES x 4 KiB files (one session per command).
# Runs alternate (sshd, gatehouse, sshd, gatehouse, ...), RUNS each; medians and ratio printed.
#
#   RUNS=3 SIZE_MIB=1024 SMALL_FILES=1000 bench/sftp.sh
#   CIPHERS="aes128-gcm@openssh.com chacha20-poly1305@openssh.com"   (space separated)
#   GATEHOUSE_BIN=target/release/gatehouse  SSHD_PORT=31022  GH_SFTP_PORT=31122
# shellcheck disable=SC2317 # op_* functions are called indirectly through compare_rate
set -euo pipefail

: "${SIZE_MIB:=1024}"
: "${SMALL_FILES:=1000}"
: "${CIPHERS:=aes128-gcm@openssh.com chacha20-poly1305@openssh.com}"

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

bench_need_int SIZE_MIB SMALL_FILES
bench_require sftp ssh ssh-keygen /usr/sbin/sshd cmp diff timeout awk
bench_need_shm $((SIZE_MIB * 4 + SMALL_FILES * 4 * 4 / 1024 + 64))
BENCH_INCUMBENT=sshd
gh_resolve_bin || true

SRC="$BENCH_DIR/src"
DL="$BENCH_DIR/dl"
INC_ROOT="$BENCH_DIR/inc-root" # what sshd's sftp session writes into (absolute paths)
GH_ROOT="$BENCH_DIR/gh/data"   # the gatehouse local backend root, mounted at "/"
BIG_BYTES=$((SIZE_MIB * MIB))

# server_dir SIDE: where the server stores what the client uploads (local filesystem).
server_dir() { if [[ "$1" == inc ]]; then echo "$INC_ROOT"; else echo "$GH_ROOT"; fi; }
# remote_path SIDE NAME: the path to send over SFTP.
remote_path() { if [[ "$1" == inc ]]; then echo "$INC_ROOT/$2"; else echo "/$2"; fi; }
host_alias() { if [[ "$1" == inc ]]; then echo incumbent; else echo gatehouse; fi; }

# sftp_batch SIDE CIPHER LINE...: time one `sftp -b` session running the given batch lines.
sftp_batch() {
    local side=$1 cipher=$2 batch
    shift 2
    batch="$BENCH_DIR/batch.$side"
    printf '%s\n' "$@" >"$batch"
    timeit sftp -F "$BENCH_DIR/ssh/config" -c "$cipher" -b "$batch" "$(host_alias "$side")"
}

op_put_big() { # SIDE CIPHER
    local side=$1 cipher=$2 srv secs
    srv="$(server_dir "$side")"
    rm -f "$srv/big.bin"
    secs="$(sftp_batch "$side" "$cipher" "put \"$SRC/big.bin\" \"$(remote_path "$side" big.bin)\"")"
    same_file "$SRC/big.bin" "$srv/big.bin"
    echo "$secs"
}

op_get_big() { # SIDE CIPHER
    local side=$1 cipher=$2 srv secs
    srv="$(server_dir "$side")"
    [[ -f "$srv/big.bin" ]] || cp "$SRC/big.bin" "$srv/big.bin"
    rm -f "$DL/big.bin"
    secs="$(sftp_batch "$side" "$cipher" "get \"$(remote_path "$side" big.bin)\" \"$DL/big.bin\"")"
    same_file "$SRC/big.bin" "$DL/big.bin"
    rm -f "$DL/big.bin"
    echo "$secs"
}

op_put_small() { # SIDE CIPHER
    local side=$1 cipher=$2 srv secs
    srv="$(server_dir "$side")"
    rm -rf "$srv/small"
    secs="$(sftp_batch "$side" "$cipher" "put -r \"$SRC/small\" \"$(remote_path "$side" small)\"")"
    same_tree "$SRC/small" "$srv/small"
    echo "$secs"
}

op_get_small() { # SIDE CIPHER
    local side=$1 cipher=$2 srv secs
    srv="$(server_dir "$side")"
    [[ -d "$srv/small" ]] || cp -r "$SRC/small" "$srv/small"
    rm -rf "$DL/small"
    secs="$(sftp_batch "$side" "$cipher" "get -r \"$(remote_path "$side" small)\" \"$DL/small\"")"
    same_tree "$SRC/small" "$DL/small"
    rm -rf "$DL/small"
    echo "$secs"
}

# probe SIDE CIPHER: can a session with this cipher be established at all?
probe() {
    timeout 30 sftp -F "$BENCH_DIR/ssh/config" -c "$2" -b - "$(host_alias "$1")" \
        <<<"pwd" >>"$BENCH_CMD_LOG" 2>&1
}

main() {
    local cipher short
    bench_log "generating test data: ${SIZE_MIB} MiB file, ${SMALL_FILES} x 4 KiB files"
    mkdir -p "$SRC" "$DL" "$INC_ROOT" "$GH_ROOT"
    make_file "$SRC/big.bin" "$SIZE_MIB"
    make_small_files "$SRC/small" "$SMALL_FILES" 4096

    start_sshd "$SSHD_PORT"
    ssh_host_entry incumbent "$SSHD_PORT" "$(id -un)"

    if gh_enabled; then
        local hash config="$BENCH_DIR/gh/gatehouse.toml"
        if hash="$(gh_hash_password "$BENCH_PASSWORD")" && [[ "$hash" == "\$argon2"* ]]; then
            {
                gh_config_head
                cat <<EOF
[sftp]
listen = "$BENCH_HOST:$GH_SFTP_PORT"
host_keys = ["$BENCH_DIR/gh/var/ssh_host_ed25519_key"]

EOF
                gh_config_disk "$GH_ROOT"
                gh_config_user "$hash" "$(cat "$BENCH_DIR/ssh/client.pub")"
            } >"$config"
            gh_start "$config" "$GH_SFTP_PORT" || true
        else
            gh_disable "gatehouse hash-password failed"
        fi
        ssh_host_entry gatehouse "$GH_SFTP_PORT" "$BENCH_USER"
    fi

    for cipher in $CIPHERS; do
        short="${cipher%%@*}"
        unset 'BENCH_UNSUP[inc]' 'BENCH_UNSUP[gh]'
        if ! probe inc "$cipher"; then
            BENCH_UNSUP[inc]="cipher $cipher"
            BENCH_FAILED=1
            bench_warn "sshd: cannot open a session with $cipher"
            bench_note "sshd: $cipher session failed (n/a)"
        fi
        if gh_enabled && ! probe gh "$cipher"; then
            BENCH_UNSUP[gh]="cipher $cipher"
            bench_warn "gatehouse: cannot open a session with $cipher (not offered?), reporting n/a"
            bench_note "gatehouse: no session with cipher $cipher (n/a rows)"
        fi
        compare_rate "put ${SIZE_MIB} MiB $short" MiB/s "$SIZE_MIB" op_put_big "$cipher"
        compare_rate "get ${SIZE_MIB} MiB $short" MiB/s "$SIZE_MIB" op_get_big "$cipher"
        compare_rate "put -r ${SMALL_FILES}x4KiB $short" files/s "$SMALL_FILES" op_put_small "$cipher"
        compare_rate "get -r ${SMALL_FILES}x4KiB $short" files/s "$SMALL_FILES" op_get_small "$cipher"
    done
    unset 'BENCH_UNSUP[inc]' 'BENCH_UNSUP[gh]'

    bench_note "client: $(ssh -V 2>&1) sftp -b, one session per command; times include connect + auth"
    bench_note "sshd: internal-sftp, ed25519 host key, ed25519 client key, user $(id -un)"
    bench_note "$((BIG_BYTES)) bytes per big transfer; small files: one 'put -r'/'get -r' per run"
    [[ -z "$(gh_version)" ]] || bench_note "gatehouse: $(gh_version)"
    {
        bench_env_line
        bench_table "SFTP: OpenSSH sshd internal-sftp vs gatehouse (sftp -b)"
    }
    bench_finish
}

main "$@"
