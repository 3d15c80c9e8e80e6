#!/usr/bin/env bash
# bench/cluster.sh: what sharing limits in Redis costs per request. The same gatehouse config
# twice in front of the same nginx upstream: node-local limits ("incumbent" column) vs
# [cluster] redis = a Debian redis-server on loopback. wrk --latency, alternating runs:
#   pair 1: route auth = ["none"] + rate_limit (one GCRA script per request)
#   pair 2: route auth = ["basic"] + rate_limit (login reservation and release, and the GCRA:
#           three scripts per request; the password check itself is cached)
# Both rate limits sit far above what the machine can send (nothing is limited). Reported:
# req/s, p99, and the gateway's CPU per request (Redis's own CPU is listed in a note).
#
#   RUNS=3 WRK_DURATION=10s WRK_THREADS=2 WRK_CONNS=32 bench/cluster.sh
#   GH_HTTP_PORT=31180 GH_HTTP_PORT_LOCAL=31181 REDIS_PORT=31379
# shellcheck disable=SC2317 # op_* functions are called indirectly through compare_wrk
set -euo pipefail

: "${WRK_DURATION:=10s}"
: "${WRK_THREADS:=2}"
: "${WRK_CONNS:=32}"
: "${GH_HTTP_PORT_LOCAL:=31181}"
: "${REDIS_PORT:=31379}"

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

bench_need_int WRK_THREADS WRK_CONNS GH_HTTP_PORT_LOCAL REDIS_PORT
bench_require curl wrk nginx redis-server redis-cli timeout awk base64
BENCH_INCUMBENT="node-local"
gh_resolve_bin || bench_die "no gatehouse binary (cargo build --release)"

AUTH=""

url() { # SIDE ROUTE
    if [[ "$1" == inc ]]; then
        echo "http://$BENCH_HOST:$GH_HTTP_PORT_LOCAL/api/$2/bench"
    else
        echo "http://$BENCH_HOST:$GH_HTTP_PORT/api/$2/bench"
    fi
}

op_open() { wrk_measure -t "$WRK_THREADS" -c "$WRK_CONNS" -d "$WRK_DURATION" "$(url "$1" open)"; }
op_basic() {
    wrk_measure -t "$WRK_THREADS" -c "$WRK_CONNS" -d "$WRK_DURATION" \
        -H "Authorization: Basic $AUTH" "$(url "$1" basic)"
}

# config DIR PORT [CLUSTER]: one gatehouse config; CLUSTER adds [cluster] redis.
config() {
    local dir=$1 port=$2 cluster=${3:-} hash=$4
    mkdir -p "$dir/var"
    cat <<EOF
[gateway]
state_dir = "$dir/var"
shutdown_grace_secs = 5

[audit]
fsync = "batch"

[limits]
max_connections = 10000
login_failures = { max = 1000000, window_secs = 60, ban_secs = 1 }

EOF
    if [[ -n "$cluster" ]]; then
        cat <<EOF
[cluster]
node = "bench"
redis = "redis://$BENCH_HOST:$REDIS_PORT/0"
timeout_ms = 25

EOF
    fi
    cat <<EOF
[http]
listen = "$BENCH_HOST:$port"

[backends.mem]
kind = "memory"

[[mounts]]
path = "/"
backend = "mem"

[[users]]
name = "$BENCH_USER"
password_hash = "$hash"
home = "/"
permissions = [ { path = "/", allow = ["list"] } ]

[[routes]]
name = "open"
path_prefix = "/api/open"
upstreams = ["http://$BENCH_HOST:$NGINX_UPSTREAM_PORT"]
strip_prefix = false
auth = ["none"]
rate_limit = { per_second = 100000000, burst = 100000000 }

[[routes]]
name = "basic"
path_prefix = "/api/basic"
upstreams = ["http://$BENCH_HOST:$NGINX_UPSTREAM_PORT"]
strip_prefix = false
auth = ["basic"]
rate_limit = { per_second = 100000000, burst = 100000000 }
EOF
}

main() {
    start_nginx_upstream "$NGINX_UPSTREAM_PORT"
    require_port_free "$REDIS_PORT" "$GH_HTTP_PORT_LOCAL"
    bench_spawn redis redis-server --port "$REDIS_PORT" --bind "$BENCH_HOST" --save "" --appendonly no
    local redis_pid=$BENCH_LAST_PID
    wait_port "$REDIS_PORT" 20 "$redis_pid" || bench_die "redis-server did not start"

    local hash
    hash="$(gh_hash_password "$BENCH_PASSWORD")" || bench_die "hash-password failed"
    AUTH="$(printf '%s:%s' "$BENCH_USER" "$BENCH_PASSWORD" | base64 -w0)"
    config "$BENCH_DIR/local" "$GH_HTTP_PORT_LOCAL" "" "$hash" >"$BENCH_DIR/local.toml"
    config "$BENCH_DIR/cluster" "$GH_HTTP_PORT" cluster "$hash" >"$BENCH_DIR/cluster.toml"
    bench_spawn gatehouse-local "$GATEHOUSE_BIN" serve --config "$BENCH_DIR/local.toml"
    wait_port "$GH_HTTP_PORT_LOCAL" 30 "$BENCH_LAST_PID" || bench_die "node-local gatehouse did not start"
    bench_cpu_pid inc "$BENCH_LAST_PID"
    gh_start "$BENCH_DIR/cluster.toml" "$GH_HTTP_PORT" || bench_die "cluster gatehouse did not start"
    local side route code
    for side in inc gh; do
        for route in open basic; do
            code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 -H "Authorization: Basic $AUTH" "$(url "$side" "$route")")"
            [[ "$code" == 200 ]] || bench_die "$side /api/$route answered $code"
        done
        wrk_measure -t "$WRK_THREADS" -c "$WRK_CONNS" -d 2s "$(url "$side" open)" >/dev/null || true
    done
    local r0 r1
    r0="$(tree_cpu_ticks "$redis_pid")"
    compare_wrk "route auth none + rate_limit" op_open
    compare_wrk "route basic + rate_limit" op_basic
    r1="$(tree_cpu_ticks "$redis_pid")"
    bench_note "redis-server $(redis-server --version | sed 's/.*v=\([^ ]*\).*/\1/') on loopback;" \
        "its own CPU over both gatehouse-with-Redis cases: $(((r1 - r0) * 1000 / CLK_TCK)) ms" \
        "(not in the gatehouse column)"
    bench_note "wrk -t$WRK_THREADS -c$WRK_CONNS -d$WRK_DURATION --latency (keep-alive); upstream: nginx," \
        "1 worker, 37-byte JSON; wrk, both gateways, Redis and the upstream share $(nproc) cores"
    [[ -z "$(gh_version)" ]] || bench_note "gatehouse: $(gh_version)"
    {
        bench_env_line
        bench_table "Cluster mode: node-local limits vs limits shared in Redis (same gatehouse)"
    }
    bench_finish
}

main "$@"
