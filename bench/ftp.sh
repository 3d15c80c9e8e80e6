#!/usr/bin/env bash
# bench/ftp.sh: vsftpd vs gatehouse FTP/FTPS.
#   * curl: STOR / RETR of one SIZE_MIB file (default 1 GiB), plain FTP and explicit FTPS
#     (--ssl-reqd -k: AUTH TLS, PROT P), passive mode, tmpfs on both ends;
#   * lftp: mirror -R / mirror of SMALL_FILES x 4 KiB files, plain and FTPS, one session each.
#     (lftp, not a curl glob: peers.md §6, curl 7.88 stalls between files on multi-line 226 replies.)
#     FTPS_MIRROR=1 adds the same over FTPS (off by default: each TLS data connection costs
#     25-55 ms with lftp/gnutls here, so 1000 files take about a minute per run).
# Runs alternate (vsftpd, gatehouse, vsftpd, gatehouse, ...), RUNS each; medians and ratio printed.
#
#   RUNS=3 SIZE_MIB=1024 SMALL_FILES=1000 FTPS_MIRROR=0 bench/ftp.sh
#   GATEHOUSE_BIN=target/release/gatehouse  VSFTPD_PORT=31021  GH_FTP_PORT=31121
#   VSFTPD_PASV_MIN/MAX=31200/31299  GH_PASV_MIN/MAX=31300/31399
# vsftpd needs a local PAM user: the local account "gwbench" is created once if missing (root).
# shellcheck disable=SC2317 # op_* functions are called indirectly through compare_rate
set -euo pipefail

: "${SIZE_MIB:=1024}"
: "${SMALL_FILES:=1000}"
: "${FTPS_MIRROR:=0}"

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

bench_need_int SIZE_MIB SMALL_FILES
bench_require curl lftp openssl /usr/sbin/vsftpd cmp diff timeout awk useradd chpasswd
bench_need_shm $((SIZE_MIB * 4 + SMALL_FILES * 4 * 4 / 1024 + 64))
BENCH_INCUMBENT=vsftpd
gh_resolve_bin || true

SRC="$BENCH_DIR/src"
DL="$BENCH_DIR/dl"
INC_ROOT="$BENCH_DIR/inc-root" # vsftpd local_root of the FTP user
GH_ROOT="$BENCH_DIR/gh/data"   # the gatehouse local backend root, mounted at "/"
CURL_OPTS=(-sS --fail --connect-timeout 10 --ftp-pasv)

server_dir() { if [[ "$1" == inc ]]; then echo "$INC_ROOT"; else echo "$GH_ROOT"; fi; }
port_of() { if [[ "$1" == inc ]]; then echo "$VSFTPD_PORT"; else echo "$GH_FTP_PORT"; fi; }
# tls_opts MODE: extra curl options for plain|tls.
tls_opts() { if [[ "$1" == tls ]]; then echo "--ssl-reqd -k"; fi; }

op_stor() { # SIDE MODE
    local side=$1 mode=$2 srv secs
    srv="$(server_dir "$side")"
    rm -f "$srv/big.bin"
    # shellcheck disable=SC2046 # tls_opts is a fixed word list
    secs="$(timeit curl "${CURL_OPTS[@]}" $(tls_opts "$mode") -u "$BENCH_USER:$BENCH_PASSWORD" \
        -T "$SRC/big.bin" "ftp://$BENCH_HOST:$(port_of "$side")/big.bin")"
    same_file "$SRC/big.bin" "$srv/big.bin"
    echo "$secs"
}

op_retr() { # SIDE MODE
    local side=$1 mode=$2 srv secs
    srv="$(server_dir "$side")"
    if [[ ! -f "$srv/big.bin" ]]; then
        cp "$SRC/big.bin" "$srv/big.bin"
        chown "$BENCH_USER" "$srv/big.bin" 2>/dev/null || true
    fi
    rm -f "$DL/big.bin"
    # shellcheck disable=SC2046
    secs="$(timeit curl "${CURL_OPTS[@]}" $(tls_opts "$mode") -u "$BENCH_USER:$BENCH_PASSWORD" \
        -o "$DL/big.bin" "ftp://$BENCH_HOST:$(port_of "$side")/big.bin")"
    same_file "$SRC/big.bin" "$DL/big.bin"
    rm -f "$DL/big.bin"
    echo "$secs"
}

# lftp_run SIDE MODE COMMAND: one lftp session (no rc files) running COMMAND, timed.
lftp_run() {
    local side=$1 mode=$2 cmd=$3 settings
    settings="set cmd:fail-exit yes; set net:max-retries 1; set net:timeout 20;"
    settings+=" set net:reconnect-interval-base 1; set ftp:passive-mode yes; set ftp:prefer-epsv no;"
    if [[ "$mode" == tls ]]; then
        # ca-file = our own cert: otherwise gnutls re-reads the whole system CA bundle for
        # every data connection (client-side cost, same for both servers, but it dilutes the ratio).
        settings+=" set ftp:ssl-force yes; set ftp:ssl-protect-data yes; set ssl:verify-certificate no;"
        settings+=" set ssl:ca-file $BENCH_DIR/tls/cert.pem;"
    else
        settings+=" set ftp:ssl-allow no;"
    fi
    timeit lftp --norc -c "$settings open -u $BENCH_USER,$BENCH_PASSWORD -p $(port_of "$side") ftp://$BENCH_HOST; $cmd"
}

op_mirror_up() { # SIDE MODE
    local side=$1 mode=$2 srv secs
    srv="$(server_dir "$side")"
    rm -rf "$srv/small"
    secs="$(lftp_run "$side" "$mode" "mirror -R --no-perms $SRC/small small")"
    same_tree "$SRC/small" "$srv/small"
    echo "$secs"
}

op_mirror_down() { # SIDE MODE
    local side=$1 mode=$2 srv secs
    srv="$(server_dir "$side")"
    if [[ ! -d "$srv/small" ]]; then
        cp -r "$SRC/small" "$srv/small"
        chown -R "$BENCH_USER" "$srv/small" 2>/dev/null || true
    fi
    rm -rf "$DL/small"
    secs="$(lftp_run "$side" "$mode" "mirror --no-perms small $DL/small")"
    same_tree "$SRC/small" "$DL/small"
    rm -rf "$DL/small"
    echo "$secs"
}

main() {
    local mode label
    bench_log "generating test data: ${SIZE_MIB} MiB file, ${SMALL_FILES} x 4 KiB files"
    mkdir -p "$SRC" "$DL" "$INC_ROOT" "$GH_ROOT"
    make_file "$SRC/big.bin" "$SIZE_MIB"
    make_small_files "$SRC/small" "$SMALL_FILES" 4096
    bench_tls_cert

    start_vsftpd "$VSFTPD_PORT" "$VSFTPD_PASV_MIN" "$VSFTPD_PASV_MAX" "$INC_ROOT"

    if gh_enabled; then
        local hash config="$BENCH_DIR/gh/gatehouse.toml"
        if hash="$(gh_hash_password "$BENCH_PASSWORD")" && [[ "$hash" == "\$argon2"* ]]; then
            {
                gh_config_head
                cat <<EOF
[ftp]
listen = "$BENCH_HOST:$GH_FTP_PORT"
passive_ports = [$GH_PASV_MIN, $GH_PASV_MAX]
passive_host = "$BENCH_HOST"

[ftp.tls]
cert = "$BENCH_DIR/tls/cert.pem"
key = "$BENCH_DIR/tls/key.pem"
required = false

EOF
                gh_config_disk "$GH_ROOT"
                gh_config_user "$hash"
            } >"$config"
            gh_start "$config" "$GH_FTP_PORT" || true
        else
            gh_disable "gatehouse hash-password failed"
        fi
    fi

    for mode in plain tls; do
        if [[ "$mode" == tls ]]; then label=FTPS; else label=FTP; fi
        compare_rate "$label STOR ${SIZE_MIB} MiB" MiB/s "$SIZE_MIB" op_stor "$mode"
        compare_rate "$label RETR ${SIZE_MIB} MiB" MiB/s "$SIZE_MIB" op_retr "$mode"
    done
    local small_modes=(plain)
    if [[ "$FTPS_MIRROR" == 1 ]]; then
        small_modes+=(tls)
    else
        bench_note "FTPS mirror cases skipped (FTPS_MIRROR=1 adds them; slow: ~25-55 ms per file TLS data connection)"
    fi
    for mode in "${small_modes[@]}"; do
        if [[ "$mode" == tls ]]; then label=FTPS; else label=FTP; fi
        compare_rate "$label mirror -R ${SMALL_FILES}x4KiB" files/s "$SMALL_FILES" op_mirror_up "$mode"
        compare_rate "$label mirror ${SMALL_FILES}x4KiB" files/s "$SMALL_FILES" op_mirror_down "$mode"
    done

    bench_note "clients: $(curl -V | head -n 1 | cut -d' ' -f1-2) (passive, one file per command);" \
        "$(lftp --version | head -n 1 | sed 's/ | .*//;s/Version //') mirror --no-perms, one session"
    bench_note "FTPS = explicit AUTH TLS + PROT P on control and data; same self-signed RSA-2048 cert on both servers"
    bench_note "vsftpd $(dpkg-query -W -f '${Version}' vsftpd 2>/dev/null || echo '?'): PAM user $BENCH_USER, ssl_ciphers=HIGH, require_ssl_reuse=NO"
    [[ -z "$(gh_version)" ]] || bench_note "gatehouse: $(gh_version)"
    {
        bench_env_line
        bench_table "FTP/FTPS: vsftpd vs gatehouse (curl, lftp)"
    }
    bench_finish
}

main "$@"
