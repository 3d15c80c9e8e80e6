#!/usr/bin/env bash
# bench/proxy.sh: nginx reverse proxy vs gatehouse [[routes]] in front of the same upstream
# (a 1-worker nginx answering a 37-byte JSON, peers.md §3.4), measured with
# `wrk -t2 -c64 -d10s --latency`: req/s and p99 latency.
#   pair 1: gatehouse route with auth = ["none"]                      vs nginx proxy_pass
#   pair 2: gatehouse route with auth = ["api_key"] + a rate_limit far above what one machine
#           can send (nothing gets limited), requests carry X-Api-Key  vs nginx proxy_pass
#           (the same header is sent to nginx, which ignores it)
#   pair 3: gatehouse route with auth = ["jwt"] (HS256, iss/aud/exp checked), requests carry a
#           Bearer token                                               vs nginx proxy_pass
#           (open-source nginx has no JWT check; it forwards the header)
# Runs alternate (nginx, gatehouse, nginx, gatehouse, ...), RUNS each; medians and ratio printed.
# wrk, the proxy and the upstream share the machine's cores: compare ratios, not absolutes.
#
#   RUNS=3 WRK_DURATION=10s WRK_THREADS=2 WRK_CONNS=64 bench/proxy.sh
#   GATEHOUSE_BIN=target/release/gatehouse  NGINX_UPSTREAM_PORT=31081  NGINX_PROXY_PORT=31082
#   GH_HTTP_PORT=31180
# shellcheck disable=SC2317 # op_* functions are called indirectly through compare_wrk
set -euo pipefail

: "${WRK_DURATION:=10s}"
: "${WRK_THREADS:=2}"
: "${WRK_CONNS:=64}"

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

bench_need_int WRK_THREADS WRK_CONNS
[[ "$WRK_DURATION" =~ ^[1-9][0-9]*[sm]?$ ]] || bench_die "WRK_DURATION must look like 10s, got '$WRK_DURATION'"
bench_require curl wrk nginx timeout awk openssl base64
BENCH_INCUMBENT=nginx
gh_resolve_bin || true

readonly UPSTREAM_BODY='{"status":"ok","service":"upstream"}'
GH_API_KEY=""
GH_API_KEY_HASH=""
readonly JWT_SECRET="bench-jwt-secret-bench-jwt-secret-0123"
JWT=""

# url SIDE ROUTE: the URL wrk hits; both proxies forward /api/<route>/bench unchanged.
url() {
    if [[ "$1" == inc ]]; then
        echo "http://$BENCH_HOST:$NGINX_PROXY_PORT/api/$2/bench"
    else
        echo "http://$BENCH_HOST:$GH_HTTP_PORT/api/$2/bench"
    fi
}

op_open() { # SIDE
    wrk_measure -t "$WRK_THREADS" -c "$WRK_CONNS" -d "$WRK_DURATION" "$(url "$1" open)"
}

op_api_key() { # SIDE
    wrk_measure -t "$WRK_THREADS" -c "$WRK_CONNS" -d "$WRK_DURATION" \
        -H "X-Api-Key: $GH_API_KEY" "$(url "$1" key)"
}

op_jwt() { # SIDE
    wrk_measure -t "$WRK_THREADS" -c "$WRK_CONNS" -d "$WRK_DURATION" \
        -H "Authorization: Bearer $JWT" "$(url "$1" jwt)"
}

# b64url: base64url without padding, of stdin.
b64url() { base64 -w0 | tr '+/' '-_' | tr -d '='; }

# make_jwt SECRET: an HS256 token for $BENCH_USER, valid for a day.
make_jwt() {
    local secret=$1 head body sig exp
    exp=$(($(date +%s) + 86400))
    head="$(printf '{"alg":"HS256","typ":"JWT"}' | b64url)"
    body="$(printf '{"sub":"%s","iss":"https://id.bench","aud":"gatehouse","exp":%d}' "$BENCH_USER" "$exp" | b64url)"
    sig="$(printf '%s.%s' "$head" "$body" | openssl dgst -sha256 -hmac "$secret" -binary | b64url)"
    printf '%s.%s.%s' "$head" "$body" "$sig"
}

# expect_body URL [CURL ARGS...]: the proxied answer is the upstream's JSON.
expect_body() {
    local url=$1 body
    shift
    body="$(curl -sS --fail --max-time 10 "$@" "$url")" || return 1
    [[ "$body" == "$UPSTREAM_BODY" ]] || {
        bench_warn "unexpected body from $url: $body"
        return 1
    }
}

main() {
    start_nginx_upstream "$NGINX_UPSTREAM_PORT"
    start_nginx_proxy "$NGINX_PROXY_PORT" "$NGINX_UPSTREAM_PORT"
    expect_body "$(url inc open)" || bench_die "the nginx proxy does not answer with the upstream JSON"

    if gh_enabled; then
        local hash config="$BENCH_DIR/gh/gatehouse.toml" code
        JWT="$(make_jwt "$JWT_SECRET")"
        if hash="$(gh_hash_password "$BENCH_PASSWORD")" && [[ "$hash" == "\$argon2"* ]] && gh_gen_api_key; then
            {
                gh_config_head
                cat <<EOF
[http]
listen = "$BENCH_HOST:$GH_HTTP_PORT"

EOF
                # Routes need no storage; the user's home still has to resolve to a mount.
                cat <<EOF
[backends.mem]
kind = "memory"

[[mounts]]
path = "/"
backend = "mem"

EOF
                gh_config_user "$hash"
                cat <<EOF
[[api_keys]]
name = "bench"
user = "$BENCH_USER"
key_hash = "$GH_API_KEY_HASH"

[jwt]
algorithms = ["HS256"]
secret = "$JWT_SECRET"
issuer = "https://id.bench"
audience = "gatehouse"

[[routes]]
name = "jwt"
path_prefix = "/api/jwt"
upstreams = ["http://$BENCH_HOST:$NGINX_UPSTREAM_PORT"]
strip_prefix = false
auth = ["jwt"]

[[routes]]
name = "open"
path_prefix = "/api/open"
upstreams = ["http://$BENCH_HOST:$NGINX_UPSTREAM_PORT"]
strip_prefix = false
auth = ["none"]

[[routes]]
name = "key"
path_prefix = "/api/key"
upstreams = ["http://$BENCH_HOST:$NGINX_UPSTREAM_PORT"]
strip_prefix = false
auth = ["api_key"]
rate_limit = { per_second = 100000000, burst = 100000000 }
EOF
            } >"$config"
            if gh_start "$config" "$GH_HTTP_PORT"; then
                if ! expect_body "$(url gh open)"; then
                    gh_disable "route /api/open does not return the upstream JSON"
                elif ! expect_body "$(url gh key)" -H "X-Api-Key: $GH_API_KEY"; then
                    gh_disable "route /api/key does not return the upstream JSON with the API key"
                elif ! expect_body "$(url gh jwt)" -H "Authorization: Bearer $JWT"; then
                    gh_disable "route /api/jwt does not return the upstream JSON with the token"
                else
                    code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 "$(url gh key)" || true)"
                    [[ "$code" == 401 ]] ||
                        bench_note "WARNING: gatehouse /api/key without a key answered $code, expected 401"
                fi
            fi
        else
            gh_disable "gatehouse hash-password or gen-api-key failed"
        fi
    fi

    # One short unmeasured wrk run per side: first connections, worker start-up, page faults.
    local side
    for side in inc gh; do
        [[ -z "$(side_placeholder "$side")" ]] || continue
        wrk_measure -t "$WRK_THREADS" -c "$WRK_CONNS" -d 2s "$(url "$side" open)" >/dev/null || true
    done

    compare_wrk "proxy, auth none" op_open
    compare_wrk "proxy, api_key + rate_limit" op_api_key
    compare_wrk "proxy, jwt (HS256)" op_jwt

    bench_note "wrk -t$WRK_THREADS -c$WRK_CONNS -d$WRK_DURATION --latency (keep-alive); upstream: nginx," \
        "1 worker, 37-byte JSON on 127.0.0.1:$NGINX_UPSTREAM_PORT; wrk, proxy and upstream share $(nproc) cores"
    bench_note "nginx $(nginx -v 2>&1 | sed 's|.*nginx/||') proxy: worker_processes auto, upstream keepalive 128," \
        "proxy_http_version 1.1, access_log $([[ "${NGINX_ACCESS_LOG:-0}" == 1 ]] && echo "on (a line per request, as gatehouse audits each)" || echo off)"
    bench_note "gatehouse api_key route: rate_limit per_second = burst = 100000000 (never reached);" \
        "X-Api-Key sent to nginx as well"
    [[ -z "$(gh_version)" ]] || bench_note "gatehouse: $(gh_version)"
    {
        bench_env_line
        bench_table "HTTP proxy: nginx reverse proxy vs gatehouse [[routes]]"
    }
    bench_finish
}

main "$@"
