#!/usr/bin/env bash
# bench/http_files.sh: nginx static file serving vs gatehouse `GET /v1/files/<path>` (Basic auth).
#   * GET of one SIZE_MIB file (default 1 GiB) with curl, saved to tmpfs;
#   * GETs of 4 KiB files cycling through SMALL_FILES (1000) paths for WRK_DURATION (10s) with
#     wrk (WRK_THREADS=2 threads, WRK_CONNS=16 keep-alive connections, a Lua script generating
#     the paths): req/s and p99 latency (a 10 s run is well over 10k GETs). wrk runs for a fixed
#     duration (its Lua thread:stop() does not end the run early), so this is rate-based;
#   * PUT of the SIZE_MIB file with `curl -T`: gatehouse `PUT /v1/files/<path>` vs nginx's
#     WebDAV module (`dav_methods PUT`: body spooled to a temp file on the same tmpfs, then renamed).
# Both servers serve the same inodes (hard links) from tmpfs. Runs alternate (nginx, gatehouse,
# ...), RUNS each; medians and ratio printed.
#
#   RUNS=3 SIZE_MIB=1024 SMALL_FILES=1000 WRK_DURATION=10s bench/http_files.sh
#   NGINX_BASIC_AUTH=1   nginx also checks Basic auth (auth_basic, SHA-512-crypt htpasswd)
#   NGINX_SENDFILE=on    (Debian's default nginx.conf has sendfile on)
#   GATEHOUSE_BIN=target/release/gatehouse  NGINX_STATIC_PORT=31080  GH_HTTP_PORT=31180
# shellcheck disable=SC2317 # op_* functions are called indirectly through compare_*
set -euo pipefail

: "${SIZE_MIB:=1024}"
: "${SMALL_FILES:=1000}"
: "${WRK_DURATION:=10s}"
: "${WRK_THREADS:=2}"
: "${WRK_CONNS:=16}"
: "${NGINX_BASIC_AUTH:=0}"

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

bench_need_int SIZE_MIB SMALL_FILES WRK_THREADS WRK_CONNS
[[ "$WRK_DURATION" =~ ^[1-9][0-9]*[sm]?$ ]] || bench_die "WRK_DURATION must look like 10s, got '$WRK_DURATION'"
bench_require curl wrk nginx openssl base64 cmp timeout awk
bench_need_shm $((SIZE_MIB * 4 + SMALL_FILES * 4 / 1024 + 64))
BENCH_INCUMBENT=nginx
gh_resolve_bin || true

SRC="$BENCH_DIR/src"
DL="$BENCH_DIR/dl"
INC_ROOT="$BENCH_DIR/inc-root" # nginx root
GH_ROOT="$BENCH_DIR/gh/data"   # gatehouse local backend root, mounted at "/"
BASIC="Basic $(printf '%s:%s' "$BENCH_USER" "$BENCH_PASSWORD" | base64 -w0)"
CURL_OPTS=(-sS --fail --connect-timeout 10 -H "Authorization: $BASIC")

# url SIDE PATH: the URL of a file for each server.
url() {
    if [[ "$1" == inc ]]; then
        echo "http://$BENCH_HOST:$NGINX_STATIC_PORT/$2"
    else
        echo "http://$BENCH_HOST:$GH_HTTP_PORT/v1/files/$2"
    fi
}
server_dir() { if [[ "$1" == inc ]]; then echo "$INC_ROOT"; else echo "$GH_ROOT"; fi; }

op_get_big() { # SIDE
    local side=$1 secs
    rm -f "$DL/big.bin"
    secs="$(timeit curl "${CURL_OPTS[@]}" -o "$DL/big.bin" "$(url "$side" big.bin)")"
    same_file "$SRC/big.bin" "$DL/big.bin"
    rm -f "$DL/big.bin"
    echo "$secs"
}

op_put_big() { # SIDE
    local side=$1 srv secs
    srv="$(server_dir "$side")"
    rm -f "$srv/up.bin"
    secs="$(timeit curl "${CURL_OPTS[@]}" -o /dev/null -T "$SRC/big.bin" "$(url "$side" up.bin)")"
    same_file "$SRC/big.bin" "$srv/up.bin"
    rm -f "$srv/up.bin"
    echo "$secs"
}

op_small_gets() { # SIDE
    local side=$1 base
    base="$(url "$side" small)"
    # wrk wants the URL's path part separately from the script's generated paths.
    wrk_measure -t "$WRK_THREADS" -c "$WRK_CONNS" -d "$WRK_DURATION" --timeout 10s \
        -s "$BENCH_DIR/cycle.lua" "$base/" -- "/${base#http://*/}" "$SMALL_FILES" "$BASIC"
}

write_lua() {
    cat >"$BENCH_DIR/cycle.lua" <<'EOF'
-- GET PREFIX/f%06d.bin cycling through NFILES names. args: PREFIX NFILES AUTHORIZATION
local counter = 0
function setup(thread)
    thread:set("id", counter)
    counter = counter + 1
end
function init(args)
    prefix = args[1]
    nfiles = tonumber(args[2])
    wrk.headers["Authorization"] = args[3]
    i = (id or 0) * 7919
end
function request()
    i = i + 1
    return wrk.format("GET", string.format("%s/f%06d.bin", prefix, i % nfiles))
end
EOF
}

# sanity SIDE: one small GET must return the right bytes before anything is measured.
sanity() {
    local side=$1
    curl "${CURL_OPTS[@]}" -o "$DL/sanity.bin" "$(url "$side" small/f000001.bin)" &&
        cmp -s "$DL/sanity.bin" "$SRC/small/f000001.bin"
}

main() {
    bench_log "generating test data: ${SIZE_MIB} MiB file, ${SMALL_FILES} x 4 KiB files"
    mkdir -p "$SRC" "$DL" "$INC_ROOT" "$GH_ROOT"
    make_file "$SRC/big.bin" "$SIZE_MIB"
    make_small_files "$SRC/small" "$SMALL_FILES" 4096
    # The same inodes for both servers: identical page cache state.
    cp -al "$SRC/big.bin" "$SRC/small" "$INC_ROOT/"
    cp -al "$SRC/big.bin" "$SRC/small" "$GH_ROOT/"
    write_lua

    start_nginx_static "$NGINX_STATIC_PORT" "$INC_ROOT"
    if [[ "$NGINX_BASIC_AUTH" == 1 ]]; then
        local p="$BENCH_DIR/nginx-static"
        printf '%s:%s\n' "$BENCH_USER" "$(openssl passwd -6 "$BENCH_PASSWORD")" >"$p/htpasswd"
        sed -i "s|^        root $INC_ROOT;|&\n        auth_basic bench;\n        auth_basic_user_file $p/htpasswd;|" \
            "$p/nginx.conf"
        bench_stop_named nginx-static
        run_nginx nginx-static "$p" "$NGINX_STATIC_PORT"
        bench_note "nginx: auth_basic with a SHA-512-crypt htpasswd entry (checked on every request)"
    else
        bench_note "nginx: no authentication (gatehouse checks Basic auth on every request;" \
            "NGINX_BASIC_AUTH=1 adds auth_basic to nginx)"
    fi
    sanity inc || bench_die "nginx did not serve small/f000001.bin correctly"

    if gh_enabled; then
        local hash config="$BENCH_DIR/gh/gatehouse.toml"
        if hash="$(gh_hash_password "$BENCH_PASSWORD")" && [[ "$hash" == "\$argon2"* ]]; then
            {
                gh_config_head
                cat <<EOF
[http]
listen = "$BENCH_HOST:$GH_HTTP_PORT"

EOF
                gh_config_disk "$GH_ROOT"
                gh_config_user "$hash"
            } >"$config"
            if gh_start "$config" "$GH_HTTP_PORT" && ! sanity gh; then
                gh_disable "GET /v1/files/small/f000001.bin did not return the file"
            fi
        else
            gh_disable "gatehouse hash-password failed"
        fi
    fi

    compare_rate "GET ${SIZE_MIB} MiB (curl)" MiB/s "$SIZE_MIB" op_get_big
    compare_wrk "GET 4KiB, ${SMALL_FILES} paths (wrk)" op_small_gets
    compare_rate "PUT ${SIZE_MIB} MiB (curl -T)" MiB/s "$SIZE_MIB" op_put_big

    bench_note "small GETs: wrk -t$WRK_THREADS -c$WRK_CONNS -d$WRK_DURATION keep-alive, Lua script cycling" \
        "through $SMALL_FILES paths of 4 KiB files; the Authorization header is sent to both servers"
    bench_note "PUT on nginx: WebDAV module (dav_methods PUT), body spooled to a temp file on tmpfs then renamed"
    bench_note "nginx $(nginx -v 2>&1 | sed 's|.*nginx/||'): worker_processes auto," \
        "sendfile ${NGINX_SENDFILE:-on}, access_log off; $(curl -V | head -n 1 | cut -d' ' -f1-2)"
    [[ -z "$(gh_version)" ]] || bench_note "gatehouse: $(gh_version)"
    {
        bench_env_line
        bench_table "HTTP files: nginx static vs gatehouse /v1/files"
    }
    bench_finish
}

main "$@"
