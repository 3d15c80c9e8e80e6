# shellcheck shell=bash
# bench/lib.sh: helpers sourced by bench/*.sh (gatehouse vs incumbent benchmarks).
#
# Sourcing this file:
#   * creates a scratch directory on tmpfs, $BENCH_DIR (removed on exit unless BENCH_KEEP=1);
#   * installs EXIT/INT/TERM traps that stop every process started through bench_spawn, by PID
#     (never by name), then remove $BENCH_DIR;
#   * starts a watchdog that ends the script after $BENCH_MAX_SECS.
# Every client command run through timeit/bench_exec is bounded by $BENCH_CMD_TIMEOUT.
# Everything binds and talks to 127.0.0.1 only.
#
# Environment knobs (all optional):
#   RUNS=3                 measured runs per side and case (alternating incumbent, gatehouse, ...)
#   GATEHOUSE_BIN          gatehouse binary (default: <repo>/target/release/gatehouse)
#   BENCH_CMD_TIMEOUT=300  seconds allowed for any single client command
#   BENCH_MAX_SECS=3600    seconds allowed for the whole script
#   BENCH_SHM=/dev/shm     where the scratch directory is created (must be tmpfs for fair numbers)
#   BENCH_KEEP=1           keep $BENCH_DIR (configs, logs) after the run
#   BENCH_WARMUP=1         unmeasured warm-up runs per side before each compare_rate case (0: none)
#   BENCH_PERF=DIR         profile gatehouse in one extra, uncounted run of every case:
#                          `perf record --call-graph dwarf` into DIR/<case>.data, and a summary
#                          (CPU by thread, by library, top symbols) into DIR/<case>.txt
#   *_PORT                 listener ports, see the defaults below

if [[ -z "${BASH_VERSION:-}" ]] || ((BASH_VERSINFO[0] < 5)); then
    echo "bench/lib.sh: needs bash >= 5" >&2
    exit 1
fi

export LC_ALL=C
umask 022

BENCH_LIB_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BENCH_REPO_ROOT="$(cd "$BENCH_LIB_DIR/.." && pwd)"
readonly BENCH_LIB_DIR BENCH_REPO_ROOT
readonly BENCH_HOST=127.0.0.1 # never configurable: benchmarks only talk to loopback
readonly MIB=1048576

: "${RUNS:=3}"
: "${BENCH_CMD_TIMEOUT:=300}"
: "${BENCH_MAX_SECS:=3600}"
: "${BENCH_SHM:=/dev/shm}"
: "${BENCH_KEEP:=0}"
: "${BENCH_WARMUP:=1}"

# Default ports: below the Linux ephemeral range (32768-60999) so client sockets never take them.
: "${SSHD_PORT:=31022}"
: "${GH_SFTP_PORT:=31122}"
: "${VSFTPD_PORT:=31021}"
: "${VSFTPD_PASV_MIN:=31200}"
: "${VSFTPD_PASV_MAX:=31299}"
: "${GH_FTP_PORT:=31121}"
: "${GH_PASV_MIN:=31300}"
: "${GH_PASV_MAX:=31399}"
: "${NGINX_STATIC_PORT:=31080}"
: "${NGINX_UPSTREAM_PORT:=31081}"
: "${NGINX_PROXY_PORT:=31082}"
: "${GH_HTTP_PORT:=31180}"

# Local account used by vsftpd (PAM) and as the gatehouse user name everywhere.
readonly BENCH_USER=gwbench
readonly BENCH_PASSWORD=gwbench-pw

# --- messages -------------------------------------------------------------------------------

bench_log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
bench_warn() { printf '[bench] WARNING: %s\n' "$*" >&2; }
bench_die() {
    printf '[bench] ERROR: %s\n' "$*" >&2
    exit 1
}

# --- preconditions ---------------------------------------------------------------------------

# bench_require CMD...: every command must exist (absolute paths or names on PATH).
bench_require() {
    local c missing=()
    for c in "$@"; do
        if [[ "$c" == /* ]]; then
            [[ -x "$c" ]] || missing+=("$c")
        else
            command -v "$c" >/dev/null 2>&1 || missing+=("$c")
        fi
    done
    if ((${#missing[@]})); then
        bench_die "missing tools: ${missing[*]} (install them with: sudo $BENCH_REPO_ROOT/scripts/install-peers.sh)"
    fi
}

# bench_need_int NAME...: each named variable holds a positive integer.
bench_need_int() {
    local n
    for n in "$@"; do
        [[ "${!n}" =~ ^[1-9][0-9]*$ ]] || bench_die "$n must be a positive integer, got '${!n}'"
    done
}

# bench_need_shm MIB: the scratch filesystem has at least MIB MiB free.
bench_need_shm() {
    local need=$1 avail
    avail=$(($(df -Pk "$BENCH_DIR" | awk 'NR == 2 { print $4 }') / 1024))
    ((avail >= need)) || bench_die "$BENCH_SHM has ${avail} MiB free, this run needs about ${need} MiB"
}

# --- scratch dir, processes, cleanup -----------------------------------------------------------

BENCH_PIDS=()
BENCH_PID_NAMES=()
BENCH_PID_SIGNALS=()
BENCH_LAST_PID=
BENCH_CHILD=
BENCH_WATCHDOG_PID=
BENCH_RC=0

# pid_alive PID: running and not a zombie.
pid_alive() {
    local stat
    stat="$(ps -o stat= -p "$1" 2>/dev/null)" || return 1
    [[ -n "$stat" && "$stat" != Z* ]]
}

# descendants PID: every descendant PID of PID (children first found by parent PID, not by name).
descendants() {
    local child
    for child in $(pgrep -P "$1" 2>/dev/null || true); do
        echo "$child"
        descendants "$child"
    done
}

# tree_cpu_ticks PID: CPU time (clock ticks, utime+stime+cutime+cstime from /proc/N/stat) of
# PID and every live descendant. Children that exited and were reaped count through their
# parent's cutime/cstime, so the sum only grows: the difference over a run is the CPU the
# server spent on it, over all its threads and worker processes (nginx workers, sshd and
# vsftpd per-session processes).
tree_cpu_ticks() {
    local p total=0 stat rest
    local -a f
    for p in "$1" $(descendants "$1"); do
        stat="$(cat "/proc/$p/stat" 2>/dev/null)" || continue
        rest="${stat##*) }" # fields after "(comm)", which may contain spaces
        read -r -a f <<<"$rest"
        # rest starts at field 3 (state): utime is field 14, so index 11.
        total=$((total + f[11] + f[12] + f[13] + f[14]))
    done
    echo "$total"
}

# BENCH_CPU_PID[side]: the server whose CPU is charged to that side (set by bench_cpu_pid).
declare -A BENCH_CPU_PID=()
CLK_TCK="$(getconf CLK_TCK 2>/dev/null || echo 100)"
readonly CLK_TCK

# bench_cpu_pid SIDE PID: charge SIDE's CPU to PID's process tree.
bench_cpu_pid() { BENCH_CPU_PID[$1]=$2; }

# side_cpu_ticks SIDE: that side's server CPU so far ("" if no server was named).
side_cpu_ticks() {
    local pid=${BENCH_CPU_PID[$1]:-}
    [[ -n "$pid" ]] || return 0
    tree_cpu_ticks "$pid"
}

# cpu_per TICKS_BEFORE TICKS_AFTER COUNT SCALE: (after-before) CPU seconds * SCALE / COUNT,
# "n/a" when either sample is missing.
cpu_per() {
    awk -v a="$1" -v b="$2" -v c="$3" -v k="$4" -v hz="$CLK_TCK" 'BEGIN {
        if (a == "" || b == "" || c + 0 <= 0) { print "n/a"; exit }
        printf "%.2f\n", (b - a) / hz * k / c }'
}

# bench_stop PID [SIGNAL] [GRACE_SECS]: signal PID's descendants (deepest first, so parents can
# still reap them) and PID, wait for PID, then SIGKILL whatever is left of that tree. With QUIT
# (nginx) only PID is signalled: the nginx master stops its own workers. Only this tree is touched.
bench_stop() {
    local pid=$1 sig=${2:-TERM} grace=${3:-5} i
    [[ -n "$pid" ]] || return 0
    local -a tree
    mapfile -t tree < <(descendants "$pid")
    if [[ "$sig" != QUIT ]]; then
        for ((i = ${#tree[@]} - 1; i >= 0; i--)); do
            kill -s "$sig" "${tree[i]}" 2>/dev/null || true
        done
    fi
    kill -s "$sig" "$pid" 2>/dev/null || true
    for ((i = 0; i < grace * 20; i++)); do
        pid_alive "$pid" || break
        sleep 0.05
    done
    if pid_alive "$pid"; then
        bench_warn "pid $pid did not stop after SIG$sig within ${grace}s, killing it"
        kill -s KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
    for i in "${tree[@]}"; do
        pid_alive "$i" && kill -s KILL "$i" 2>/dev/null
    done
    return 0
}

# bench_spawn NAME [--signal SIG] CMD...: run CMD in the background, output to
# $BENCH_DIR/logs/NAME.log, record its PID (in BENCH_LAST_PID too). SIG (default TERM) is what
# cleanup sends. Call it from the main shell, never inside $(...).
bench_spawn() {
    local name=$1 sig=TERM
    shift
    if [[ "${1:-}" == --signal ]]; then
        sig=$2
        shift 2
    fi
    "$@" </dev/null >"$BENCH_DIR/logs/$name.log" 2>&1 &
    BENCH_LAST_PID=$!
    BENCH_PIDS+=("$BENCH_LAST_PID")
    BENCH_PID_NAMES+=("$name")
    BENCH_PID_SIGNALS+=("$sig")
}

# bench_stop_all: stop every recorded process, newest first.
bench_stop_all() {
    local i
    for ((i = ${#BENCH_PIDS[@]} - 1; i >= 0; i--)); do
        [[ -n "${BENCH_PIDS[i]}" ]] || continue
        bench_stop "${BENCH_PIDS[i]}" "${BENCH_PID_SIGNALS[i]}" 10
        BENCH_PIDS[i]=
    done
}

# bench_stop_named NAME: stop the recorded process(es) started under NAME.
bench_stop_named() {
    local i
    for i in "${!BENCH_PIDS[@]}"; do
        if [[ "${BENCH_PID_NAMES[i]}" == "$1" && -n "${BENCH_PIDS[i]}" ]]; then
            bench_stop "${BENCH_PIDS[i]}" "${BENCH_PID_SIGNALS[i]}" 10
            BENCH_PIDS[i]=
        fi
    done
}

bench_cleanup() {
    local rc=$?
    trap - EXIT INT TERM HUP
    set +e
    [[ -n "$BENCH_CHILD" ]] && bench_stop "$BENCH_CHILD" TERM 2
    bench_stop_all
    [[ -n "$BENCH_WATCHDOG_PID" ]] && bench_stop "$BENCH_WATCHDOG_PID" TERM 2
    if [[ -n "${BENCH_DIR:-}" && -d "$BENCH_DIR" ]]; then
        if [[ "$BENCH_KEEP" == 1 ]]; then
            bench_log "kept scratch dir $BENCH_DIR"
        else
            rm -rf -- "$BENCH_DIR"
        fi
    fi
    exit "$rc"
}

bench_watchdog() {
    local main=$$ secs=$BENCH_MAX_SECS
    (
        sleep "$secs" &
        s=$!
        trap 'kill "$s" 2>/dev/null; wait "$s" 2>/dev/null; exit 0' TERM
        if wait "$s"; then
            echo "[bench] ERROR: time limit BENCH_MAX_SECS=${secs}s reached, stopping" >&2
            kill -s TERM "$main"
        fi
    ) </dev/null &
    BENCH_WATCHDOG_PID=$!
}

bench_init() {
    bench_need_int RUNS BENCH_CMD_TIMEOUT BENCH_MAX_SECS
    [[ "$BENCH_WARMUP" =~ ^[0-9]$ ]] || bench_die "BENCH_WARMUP must be 0-9, got '$BENCH_WARMUP'"
    [[ -d "$BENCH_SHM" ]] || bench_die "BENCH_SHM=$BENCH_SHM is not a directory"
    BENCH_DIR="$(mktemp -d "$BENCH_SHM/gatehouse-bench.XXXXXX")"
    readonly BENCH_DIR
    export BENCH_DIR
    trap bench_cleanup EXIT
    trap 'bench_warn "interrupted (SIGINT)"; exit 130' INT
    trap 'bench_warn "terminated (SIGTERM)"; exit 143' TERM
    trap 'exit 129' HUP
    # 755: vsftpd sessions run as $BENCH_USER and must traverse into the served directory.
    chmod 755 "$BENCH_DIR"
    mkdir -p "$BENCH_DIR/logs"
    BENCH_CMD_LOG="$BENCH_DIR/logs/commands.log"
    : >"$BENCH_CMD_LOG"
    if [[ "$(stat -f -c %T "$BENCH_DIR")" != tmpfs ]]; then
        bench_warn "$BENCH_DIR is not on tmpfs: disk speed will show in the figures"
    fi
    bench_watchdog
}

# --- ports -----------------------------------------------------------------------------------

# port_open PORT: something accepts TCP connections on 127.0.0.1:PORT.
port_open() {
    (exec 3<>"/dev/tcp/$BENCH_HOST/$1") 2>/dev/null
}

# require_port_free PORT...: refuse to start when another process already listens there.
require_port_free() {
    local p
    for p in "$@"; do
        if port_open "$p"; then
            bench_die "127.0.0.1:$p is already in use (pick another port with the matching *_PORT variable)"
        fi
    done
}

# wait_port PORT [TIMEOUT_SECS] [PID]: wait until 127.0.0.1:PORT accepts connections. Fails
# after TIMEOUT_SECS (default 20) or as soon as PID (if given) has exited.
wait_port() {
    local port=$1 timeout=${2:-20} pid=${3:-} start=$EPOCHSECONDS
    until port_open "$port"; do
        if [[ -n "$pid" ]] && ! pid_alive "$pid"; then
            bench_warn "process $pid exited before 127.0.0.1:$port opened"
            return 1
        fi
        if ((EPOCHSECONDS - start >= timeout)); then
            bench_warn "timed out after ${timeout}s waiting for 127.0.0.1:$port"
            return 1
        fi
        sleep 0.05
    done
}

# --- numbers ---------------------------------------------------------------------------------

# median: reads numbers (one per line) on stdin, prints their median; ignores anything that is
# not a number (e.g. "n/a"); prints "n/a" when there is none.
median() {
    awk '$1 ~ /^[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?$/ { print $1 }' |
        sort -g |
        awk '{ a[n++] = $1 }
             END {
                 if (n == 0) { print "n/a"; exit }
                 if (n % 2) print a[(n - 1) / 2]; else print (a[n / 2 - 1] + a[n / 2]) / 2
             }'
}

# mibps BYTES SECONDS: MiB/s with one decimal.
mibps() {
    awk -v b="$1" -v s="$2" 'BEGIN { if (s <= 0) print "n/a"; else printf "%.1f\n", b / 1048576 / s }'
}

# per_sec COUNT SECONDS: COUNT/SECONDS with one decimal.
per_sec() {
    awk -v c="$1" -v s="$2" 'BEGIN { if (s <= 0) print "n/a"; else printf "%.1f\n", c / s }'
}

# ratio A B: A/B with two decimals, "-" when either is not a number.
ratio() {
    awk -v a="$1" -v b="$2" 'BEGIN {
        num = "^[-+]?([0-9]+[.]?[0-9]*|[.][0-9]+)([eE][-+]?[0-9]+)?$"
        if (a !~ num || b !~ num || b + 0 == 0) print "-"
        else printf "%.2f\n", a / b }'
}

# bench_exec CMD...: run CMD bounded by BENCH_CMD_TIMEOUT; its output is appended to
# $BENCH_DIR/logs/commands.log, and on failure its last lines are shown on stderr.
# Sets BENCH_EXEC_SECS to CMD's wall time (seconds, ms precision).
bench_exec() {
    local rc=0 out t0 t1
    out="$(mktemp "$BENCH_DIR/logs/cmd.XXXXXX")"
    t0=$EPOCHREALTIME
    timeout -k 5 "$BENCH_CMD_TIMEOUT" "$@" >"$out" 2>&1 || rc=$?
    t1=$EPOCHREALTIME
    BENCH_EXEC_SECS="$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f\n", b - a }')"
    {
        printf '+ %s\n' "$*"
        cat "$out"
    } >>"$BENCH_CMD_LOG"
    if ((rc != 0)); then
        if ((rc == 124 || rc == 137)); then
            bench_warn "timed out after ${BENCH_CMD_TIMEOUT}s: $*"
        else
            bench_warn "exit $rc: $*"
        fi
        tail -n 4 "$out" | sed 's/^/    | /' >&2
    fi
    rm -f "$out"
    return "$rc"
}

# timeit CMD...: run CMD (see bench_exec) and print its wall time in seconds with ms
# precision. On failure prints nothing on stdout and returns CMD's status.
timeit() {
    bench_exec "$@" || return
    echo "$BENCH_EXEC_SECS"
}

# wrk_measure WRK_ARGS...: one wrk run (--latency added; bounded by BENCH_CMD_TIMEOUT), output
# kept in $BENCH_DIR/logs/wrk-N.log; prints "REQ_PER_SEC P99_MS REQUESTS". Fails when any response was
# not 2xx/3xx, no request completed or the output cannot be parsed; socket errors (e.g.
# timeouts) are reported on stderr.
wrk_measure() {
    local log n=0 rc=0
    while [[ -e "$BENCH_DIR/logs/wrk-$n.log" ]]; do n=$((n + 1)); done
    log="$BENCH_DIR/logs/wrk-$n.log"
    printf '+ wrk --latency %s\n' "$*" >>"$BENCH_CMD_LOG"
    timeout -k 5 "$BENCH_CMD_TIMEOUT" wrk --latency "$@" >"$log" 2>&1 || rc=$?
    if ((rc != 0)); then
        bench_warn "wrk failed (exit $rc), see $log"
        tail -n 5 "$log" | sed 's/^/    | /' >&2
        return 1
    fi
    awk '
        function ms(v) {
            if (v ~ /us$/) { sub(/us$/, "", v); return v / 1000 }
            if (v ~ /ms$/) { sub(/ms$/, "", v); return v + 0 }
            if (v ~ /m$/)  { sub(/m$/, "", v);  return v * 60000 }
            if (v ~ /s$/)  { sub(/s$/, "", v);  return v * 1000 }
            return v + 0
        }
        / requests in / { reqs = $1 }
        /^Requests\/sec:/ { rps = $2 }
        /^[ \t]+99%/ { p99 = ms($2) }
        /Non-2xx or 3xx responses:/ { bad = $NF }
        /Socket errors:/ { print "[bench] wrk " $0 > "/dev/stderr" }
        END {
            if (bad + 0 > 0) { print "[bench] wrk: " bad " non-2xx/3xx responses" > "/dev/stderr"; exit 1 }
            if (rps == "" || p99 == "") { print "[bench] wrk: unparsable output" > "/dev/stderr"; exit 1 }
            if (reqs + 0 == 0) { print "[bench] wrk: no request completed" > "/dev/stderr"; exit 1 }
            printf "%.1f %.3f %d\n", rps, p99, reqs
        }' "$log"
}

# --- test data -------------------------------------------------------------------------------

# make_file PATH MIB: MIB MiB of random bytes.
make_file() {
    head -c "$(($2 * MIB))" /dev/urandom >"$1"
}

# make_small_files DIR COUNT [BYTES]: COUNT random files of BYTES (4096) named f000000.bin, ...
make_small_files() {
    local dir=$1 count=$2 bytes=${3:-4096}
    mkdir -p "$dir"
    head -c "$((count * bytes))" /dev/urandom |
        split -b "$bytes" -d -a 6 --additional-suffix=.bin - "$dir/f"
}

# same_file A B / same_tree A B: content equality checks (untimed verification).
same_file() {
    cmp -s -- "$1" "$2" || {
        bench_warn "content differs: $1 vs $2"
        return 1
    }
}
same_tree() {
    diff -rq -- "$1" "$2" >/dev/null || {
        bench_warn "trees differ: $1 vs $2"
        return 1
    }
}

# --- alternating comparisons and the result table -----------------------------------------------

declare -A BENCH_SKIP=()  # side (inc|gh) -> reason; a skipped side shows "-" in the table
declare -A BENCH_UNSUP=() # side -> reason; shows "n/a" (e.g. cipher not offered)
BENCH_ROWS=()
BENCH_NOTES=()
BENCH_FAILED=0
BENCH_INCUMBENT=incumbent

bench_note() { BENCH_NOTES+=("$*"); }

# run_side OUT FN ARGS...: run FN ARGS in a background subshell with errexit active, stdout to
# OUT; sets BENCH_RC. (Run in the background, not in $(...) or `if`, so that errexit still
# applies inside FN and signals reach the main shell promptly.)
run_side() {
    local out=$1
    shift
    BENCH_RC=0
    "$@" >"$out" &
    BENCH_CHILD=$!
    wait "$BENCH_CHILD" || BENCH_RC=$?
    BENCH_CHILD=
    return 0
}

# side_value SIDE: "" if SIDE runs, else the placeholder to show for it.
side_placeholder() {
    if [[ -n "${BENCH_SKIP[$1]:-}" ]]; then
        echo "-"
    elif [[ -n "${BENCH_UNSUP[$1]:-}" ]]; then
        echo "n/a"
    fi
}

# perf_side LABEL FN ARGS...: with BENCH_PERF set, one more gatehouse run of FN under
# `perf record` (not counted in the figures: dwarf unwinding slows the profiled process), then
# the summary of where its CPU went.
perf_side() {
    local label=$1 fn=$2 pid=${BENCH_CPU_PID[gh]:-} slug data perf_pid
    shift 2
    [[ -n "${BENCH_PERF:-}" && -n "$pid" && -z "$(side_placeholder gh)" ]] || return 0
    command -v perf >/dev/null 2>&1 || { bench_warn "BENCH_PERF: no perf"; return 0; }
    mkdir -p "$BENCH_PERF"
    slug="$(printf '%s' "$label" | tr -c 'A-Za-z0-9' '_' | tr -s '_')"
    data="$BENCH_PERF/$slug.data"
    perf record -F 999 --call-graph dwarf,16384 -p "$pid" -o "$data" >/dev/null 2>&1 &
    perf_pid=$!
    sleep 0.5
    run_side "$BENCH_DIR/perf.out" "$fn" gh "$@"
    kill -INT "$perf_pid" 2>/dev/null || true
    wait "$perf_pid" 2>/dev/null || true
    {
        echo "# $label: gatehouse under perf record (one uncounted run)"
        echo "## by thread"
        perf report -i "$data" --no-children --sort comm --stdio -q -g none 2>/dev/null |
            head -n 15 || true
        echo "## by library"
        perf report -i "$data" --no-children --sort dso --stdio -q -g none 2>/dev/null |
            head -n 15 || true
        echo "## top symbols (self)"
        perf report -i "$data" --no-children --sort dso,sym --stdio -q -g none 2>/dev/null |
            head -n 40 || true
    } >"$BENCH_PERF/$slug.txt"
    bench_log "  profile: $BENCH_PERF/$slug.txt"
}

# bench_row LABEL UNIT GOAL INC GH INC_RUNS GH_RUNS: append one result row.
bench_row() {
    BENCH_ROWS+=("$1"$'\t'"$2"$'\t'"$3"$'\t'"$4"$'\t'"$5"$'\t'"$6"$'\t'"$7")
}

# compare_rate LABEL UNIT AMOUNT FN ARGS...
#   For r in 1..RUNS: FN inc ARGS..., then FN gh ARGS... (alternating). FN prints the elapsed seconds
#   of one measured operation on stdout. Each run becomes a rate AMOUNT/seconds (UNIT, e.g.
#   MiB/s or files/s; higher is better). Adds a row: medians and gatehouse/incumbent.
#   BENCH_WARMUP (default 1) unmeasured runs per side come first (cold caches, first-touch
#   page faults on a fresh VM and first logins otherwise land on whichever side runs first).
compare_rate() {
    local label=$1 unit=$2 amount=$3 fn=$4
    shift 4
    local r side secs value ph c0 c1 cpu out="$BENCH_DIR/side.out"
    local -A runs=([inc]="" [gh]="") cpus=([inc]="" [gh]="")
    local cpu_unit="CPU ms/MiB" cpu_scale=1000
    if [[ "$unit" != MiB/s ]]; then cpu_unit="CPU us/${unit%s/s}" cpu_scale=1000000; fi
    bench_log "$label"
    for ((r = 1 - BENCH_WARMUP; r <= RUNS; r++)); do
        for side in inc gh; do
            ph="$(side_placeholder "$side")"
            [[ -z "$ph" ]] || continue
            c0="$(side_cpu_ticks "$side")"
            run_side "$out" "$fn" "$side" "$@"
            c1="$(side_cpu_ticks "$side")"
            secs="$(tail -n 1 "$out")"
            if ((r < 1)); then
                bench_log "  warm-up $(side_name "$side"): ${secs:-failed} s (not counted)"
                continue
            fi
            if ((BENCH_RC == 0)) && [[ "$secs" =~ ^[0-9]+(\.[0-9]+)?$ ]]; then
                value="$(per_sec "$amount" "$secs")"
                cpu="$(cpu_per "$c0" "$c1" "$amount" "$cpu_scale")"
            else
                value=n/a cpu=n/a
                BENCH_FAILED=1
                bench_warn "$label: $side run $r failed"
            fi
            runs[$side]+="${runs[$side]:+ }$value"
            cpus[$side]+="${cpus[$side]:+ }$cpu"
            bench_log "  run $r $(side_name "$side"): ${secs:-?} s -> $value $unit, $cpu $cpu_unit"
        done
    done
    perf_side "$label" "$fn" "$@"
    bench_row "$label" "$unit" ">1" \
        "$(side_median "inc" "${runs[inc]}")" "$(side_median "gh" "${runs[gh]}")" \
        "${runs[inc]}" "${runs[gh]}"
    bench_row "$label" "$cpu_unit" "<1" \
        "$(side_median "inc" "${cpus[inc]}")" "$(side_median "gh" "${cpus[gh]}")" \
        "${cpus[inc]}" "${cpus[gh]}"
}

# compare_wrk LABEL FN ARGS...
#   Like compare_rate, but FN prints "REQ_PER_SEC P99_MS REQUESTS" (one wrk run). Adds three
#   rows: req/s, p99 and the server's CPU per request.
compare_wrk() {
    local label=$1 fn=$2
    shift 2
    local r side line rps p99 reqs cpu c0 c1 ph out="$BENCH_DIR/side.out"
    local -A rps_runs=([inc]="" [gh]="") p99_runs=([inc]="" [gh]="") cpu_runs=([inc]="" [gh]="")
    bench_log "$label"
    for ((r = 1; r <= RUNS; r++)); do
        for side in inc gh; do
            ph="$(side_placeholder "$side")"
            [[ -z "$ph" ]] || continue
            c0="$(side_cpu_ticks "$side")"
            run_side "$out" "$fn" "$side" "$@"
            c1="$(side_cpu_ticks "$side")"
            line="$(tail -n 1 "$out")"
            rps=n/a p99=n/a cpu=n/a
            if ((BENCH_RC == 0)) && [[ "$line" =~ ^([0-9.]+)\ ([0-9.]+)\ ([0-9]+)$ ]]; then
                rps=${BASH_REMATCH[1]} p99=${BASH_REMATCH[2]} reqs=${BASH_REMATCH[3]}
                cpu="$(cpu_per "$c0" "$c1" "$reqs" 1000000)"
            else
                BENCH_FAILED=1
                bench_warn "$label: $side run $r failed"
            fi
            rps_runs[$side]+="${rps_runs[$side]:+ }$rps"
            p99_runs[$side]+="${p99_runs[$side]:+ }$p99"
            cpu_runs[$side]+="${cpu_runs[$side]:+ }$cpu"
            bench_log "  run $r $(side_name "$side"): $rps req/s, p99 $p99 ms, $cpu CPU us/req"
        done
    done
    perf_side "$label" "$fn" "$@"
    bench_row "$label" "req/s" ">1" \
        "$(side_median inc "${rps_runs[inc]}")" "$(side_median gh "${rps_runs[gh]}")" \
        "${rps_runs[inc]}" "${rps_runs[gh]}"
    bench_row "$label" "p99 ms" "<1" \
        "$(side_median inc "${p99_runs[inc]}")" "$(side_median gh "${p99_runs[gh]}")" \
        "${p99_runs[inc]}" "${p99_runs[gh]}"
    bench_row "$label" "CPU us/req" "<1" \
        "$(side_median inc "${cpu_runs[inc]}")" "$(side_median gh "${cpu_runs[gh]}")" \
        "${cpu_runs[inc]}" "${cpu_runs[gh]}"
}

side_name() {
    if [[ "$1" == inc ]]; then echo "$BENCH_INCUMBENT"; else echo gatehouse; fi
}

side_median() {
    local ph
    ph="$(side_placeholder "$1")"
    if [[ -n "$ph" ]]; then
        echo "$ph"
    else
        tr ' ' '\n' <<<"$2" | median
    fi
}

# bench_table TITLE: print the result table, the per-run values and the notes.
bench_table() {
    local title=$1 row label unit goal inc gh inc_runs gh_runs
    local fmt='%-34s %-12s %12s %12s %8s %5s\n'
    echo
    echo "== $title =="
    # shellcheck disable=SC2059
    printf "$fmt" case unit "$BENCH_INCUMBENT" gatehouse gh/inc goal
    for row in "${BENCH_ROWS[@]}"; do
        IFS=$'\t' read -r label unit goal inc gh inc_runs gh_runs <<<"$row"
        # shellcheck disable=SC2059
        printf "$fmt" "$label" "$unit" "$inc" "$gh" "$(ratio "$gh" "$inc")" "$goal"
    done
    echo
    echo "per-run values (in run order):"
    for row in "${BENCH_ROWS[@]}"; do
        IFS=$'\t' read -r label unit goal inc gh inc_runs gh_runs <<<"$row"
        printf '  %-34s %-12s %s: [%s]  gatehouse: [%s]\n' "$label" "$unit" "$BENCH_INCUMBENT" \
            "${inc_runs:--}" "${gh_runs:--}"
    done
    if ((${#BENCH_NOTES[@]})); then
        echo
        echo "notes:"
        printf '  - %s\n' "${BENCH_NOTES[@]}"
    fi
    echo
    echo "medians of RUNS=$RUNS alternating runs; gh/inc = gatehouse median / $BENCH_INCUMBENT median;"
    echo "goal >1: higher is better for gatehouse (throughput), <1: lower is better (latency)."
}

# bench_finish: exit status 2 if any run failed, else 0 (the table is printed either way).
bench_finish() {
    if ((BENCH_FAILED)); then
        bench_warn "some runs failed (n/a above); logs were in $BENCH_DIR/logs (BENCH_KEEP=1 keeps them)"
        exit 2
    fi
    exit 0
}

bench_env_line() {
    printf 'host: %s cores, %s, kernel %s; scratch %s (%s)\n' "$(nproc)" \
        "$(awk '/MemTotal/ { printf "%.0f GiB RAM", $2 / 1048576 }' /proc/meminfo)" \
        "$(uname -r)" "$BENCH_DIR" "$(stat -f -c %T "$BENCH_DIR")"
}

# --- keys and certificates ---------------------------------------------------------------------

# bench_ssh_client_key: ed25519 client key pair at $BENCH_DIR/ssh/client{,.pub}.
bench_ssh_client_key() {
    mkdir -p "$BENCH_DIR/ssh"
    chmod 700 "$BENCH_DIR/ssh"
    [[ -f "$BENCH_DIR/ssh/client" ]] ||
        ssh-keygen -q -t ed25519 -N '' -C gatehouse-bench-client -f "$BENCH_DIR/ssh/client"
}

# ssh_host_entry ALIAS PORT USER: add a Host block to $BENCH_DIR/ssh/config (use with ssh/sftp -F).
ssh_host_entry() {
    bench_ssh_client_key
    cat >>"$BENCH_DIR/ssh/config" <<EOF
Host $1
    HostName $BENCH_HOST
    Port $2
    User $3
    IdentityFile $BENCH_DIR/ssh/client
    IdentitiesOnly yes
    StrictHostKeyChecking no
    UserKnownHostsFile /dev/null
    LogLevel ERROR
    BatchMode yes
    Compression no
    ConnectTimeout 10
    ServerAliveInterval 15
    ServerAliveCountMax 4

EOF
}

# bench_tls_cert: self-signed RSA-2048 cert for localhost at $BENCH_DIR/tls/{cert,key}.pem.
bench_tls_cert() {
    mkdir -p "$BENCH_DIR/tls"
    [[ -f "$BENCH_DIR/tls/cert.pem" ]] && return 0
    openssl req -x509 -newkey rsa:2048 -nodes -days 7 -subj /CN=localhost \
        -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
        -keyout "$BENCH_DIR/tls/key.pem" -out "$BENCH_DIR/tls/cert.pem" 2>/dev/null
}

# --- incumbent servers -----------------------------------------------------------------------

# start_sshd PORT: OpenSSH sshd, internal-sftp, key auth only (peers.md §3.1). Logs in as the
# invoking user (root here; PermitRootLogin prohibit-password) with $BENCH_DIR/ssh/client.
start_sshd() {
    local port=${1:-$SSHD_PORT} d="$BENCH_DIR/sshd"
    bench_require /usr/sbin/sshd ssh-keygen
    require_port_free "$port"
    mkdir -p "$d"
    [[ -d /run/sshd ]] || mkdir -p /run/sshd # privilege separation dir sshd insists on
    bench_ssh_client_key
    ssh-keygen -q -t ed25519 -N '' -C gatehouse-bench-sshd -f "$d/hostkey"
    cp "$BENCH_DIR/ssh/client.pub" "$d/authorized_keys"
    cat >"$d/sshd_config" <<EOF
Port $port
ListenAddress $BENCH_HOST
HostKey $d/hostkey
PidFile $d/sshd.pid
AuthorizedKeysFile $d/authorized_keys
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
UsePAM no
StrictModes no
UseDNS no
LoginGraceTime 30
MaxStartups 100:30:200
Subsystem sftp internal-sftp
EOF
    /usr/sbin/sshd -t -f "$d/sshd_config" || bench_die "sshd rejected $d/sshd_config"
    bench_spawn sshd /usr/sbin/sshd -D -e -f "$d/sshd_config"
    wait_port "$port" 20 "$BENCH_LAST_PID" || bench_die "sshd did not start (see $BENCH_DIR/logs/sshd.log)"
    bench_cpu_pid inc "$BENCH_LAST_PID"
}

# ensure_bench_user: local account $BENCH_USER with password $BENCH_PASSWORD for vsftpd's PAM
# login (shell in /etc/shells, not in /etc/ftpusers, an existing home directory: vsftpd changes
# into it before local_root). Created once (root needed); later runs only re-assert the password.
readonly BENCH_USER_HOME=/home/$BENCH_USER
ensure_bench_user() {
    local home
    if ! id -u "$BENCH_USER" >/dev/null 2>&1; then
        [[ "$(id -u)" == 0 ]] || bench_die "need root to create the local user $BENCH_USER for vsftpd"
        bench_log "creating local user $BENCH_USER (vsftpd needs a PAM user)"
        useradd --home-dir "$BENCH_USER_HOME" --shell /bin/bash \
            --comment "gatehouse benchmarks" "$BENCH_USER"
    fi
    home="$(getent passwd "$BENCH_USER" | cut -d: -f6)"
    if [[ ! -d "$home" ]]; then
        [[ "$(id -u)" == 0 ]] || bench_die "home $home of $BENCH_USER is missing and we are not root"
        if [[ "$home" == /nonexistent || -z "$home" ]]; then
            usermod --home "$BENCH_USER_HOME" "$BENCH_USER"
            home=$BENCH_USER_HOME
        fi
        install -d -o "$BENCH_USER" -g "$(id -gn "$BENCH_USER")" -m 755 "$home"
    fi
    # Idempotent: keep the known password even if someone changed it.
    if [[ "$(id -u)" == 0 ]]; then
        printf '%s:%s\n' "$BENCH_USER" "$BENCH_PASSWORD" | chpasswd
    fi
    if grep -qx "$BENCH_USER" /etc/ftpusers 2>/dev/null; then
        bench_die "$BENCH_USER is listed in /etc/ftpusers, vsftpd would refuse it"
    fi
    grep -qx "$(getent passwd "$BENCH_USER" | cut -d: -f7)" /etc/shells ||
        bench_die "the shell of $BENCH_USER is not in /etc/shells (PAM pam_shells would refuse it)"
}

# start_vsftpd PORT PASV_MIN PASV_MAX [ROOT]: vsftpd 3 (peers.md §3.2) serving ROOT (default
# $BENCH_DIR/vsftpd-root, owned by $BENCH_USER) to $BENCH_USER; plain FTP and explicit FTPS.
start_vsftpd() {
    local port=${1:-$VSFTPD_PORT} pmin=${2:-$VSFTPD_PASV_MIN} pmax=${3:-$VSFTPD_PASV_MAX}
    local root=${4:-$BENCH_DIR/vsftpd-root} d="$BENCH_DIR/vsftpd"
    bench_require /usr/sbin/vsftpd openssl
    require_port_free "$port"
    ensure_bench_user
    bench_tls_cert
    mkdir -p "$d" "$root" /var/run/vsftpd/empty
    chown "$BENCH_USER" "$root"
    cat >"$d/vsftpd.conf" <<EOF
listen=YES
listen_ipv6=NO
listen_address=$BENCH_HOST
listen_port=$port
background=NO
anonymous_enable=NO
local_enable=YES
write_enable=YES
local_umask=022
local_root=$root
pam_service_name=vsftpd
pasv_enable=YES
pasv_address=$BENCH_HOST
pasv_min_port=$pmin
pasv_max_port=$pmax
port_enable=NO
secure_chroot_dir=/var/run/vsftpd/empty
seccomp_sandbox=NO
xferlog_enable=NO
idle_session_timeout=120
data_connection_timeout=120
ssl_enable=YES
force_local_data_ssl=NO
force_local_logins_ssl=NO
require_ssl_reuse=NO
ssl_ciphers=HIGH
rsa_cert_file=$BENCH_DIR/tls/cert.pem
rsa_private_key_file=$BENCH_DIR/tls/key.pem
EOF
    bench_spawn vsftpd /usr/sbin/vsftpd "$d/vsftpd.conf"
    wait_port "$port" 20 "$BENCH_LAST_PID" || bench_die "vsftpd did not start (see $BENCH_DIR/logs/vsftpd.log)"
    bench_cpu_pid inc "$BENCH_LAST_PID"
}

# nginx_prefix NAME: make an nginx prefix dir with logs/ and temp dirs, print its path.
nginx_prefix() {
    local p="$BENCH_DIR/nginx-$1"
    mkdir -p "$p/logs" "$p/tmp/body" "$p/tmp/proxy" "$p/tmp/fastcgi" "$p/tmp/uwsgi" "$p/tmp/scgi"
    echo "$p"
}

# nginx_http_common PREFIX: the http{} lines every instance shares.
nginx_http_common() {
    local p=$1 access="access_log off;"
    # NGINX_ACCESS_LOG=1: the static server and the proxy log every request (as gatehouse audits
    # every one); the upstream never does.
    if [[ "${NGINX_ACCESS_LOG:-0}" == 1 && "$p" != *nginx-upstream ]]; then
        access="access_log $p/logs/access.log;"
    fi
    cat <<EOF
    $access
    keepalive_requests 1000000;
    client_body_temp_path $p/tmp/body;
    proxy_temp_path $p/tmp/proxy;
    fastcgi_temp_path $p/tmp/fastcgi;
    uwsgi_temp_path $p/tmp/uwsgi;
    scgi_temp_path $p/tmp/scgi;
EOF
}

# nginx_main PREFIX WORKERS: the main-context lines.
nginx_main() {
    local p=$1 workers=$2
    # Workers run as the invoking user so they can write PUT bodies into the scratch dir.
    if [[ "$(id -u)" == 0 ]]; then echo "user root root;"; fi
    cat <<EOF
daemon off;
worker_processes $workers;
pid $p/nginx.pid;
error_log $p/logs/error.log warn;
events { worker_connections 4096; }
EOF
}

# run_nginx NAME PREFIX PORT: check the config, start nginx in the foreground, wait for PORT.
run_nginx() {
    local name=$1 p=$2 port=$3
    nginx -t -q -p "$p" -e "$p/logs/error.log" -c "$p/nginx.conf" ||
        bench_die "nginx rejected $p/nginx.conf"
    bench_spawn "$name" --signal QUIT nginx -p "$p" -e "$p/logs/error.log" -c "$p/nginx.conf"
    wait_port "$port" 20 "$BENCH_LAST_PID" || bench_die "nginx $name did not start (see $p/logs/error.log)"
}

# start_nginx_static PORT ROOT: serves ROOT (sendfile on, as Debian's default nginx.conf), and
# accepts WebDAV PUT (dav_methods PUT) so uploads can be compared too.
start_nginx_static() {
    local port=${1:-$NGINX_STATIC_PORT} root=$2 p
    [[ -d "$root" ]] || bench_die "start_nginx_static: $root is not a directory"
    bench_require nginx
    require_port_free "$port"
    p="$(nginx_prefix static)"
    {
        nginx_main "$p" auto
        echo "http {"
        nginx_http_common "$p"
        cat <<EOF
    sendfile ${NGINX_SENDFILE:-on};
    tcp_nopush on;
    default_type application/octet-stream;
    server {
        listen $BENCH_HOST:$port reuseport backlog=4096;
        root $root;
        location / {
            dav_methods PUT;
            create_full_put_path on;
            client_max_body_size 0;
        }
    }
}
EOF
    } >"$p/nginx.conf"
    run_nginx nginx-static "$p" "$port"
    bench_cpu_pid inc "$BENCH_LAST_PID"
}

# start_nginx_upstream PORT: one worker answering every request with a 37-byte JSON
# ({"status":"ok","service":"upstream"} + newline), as in peers.md §3.4.
start_nginx_upstream() {
    local port=${1:-$NGINX_UPSTREAM_PORT} p
    bench_require nginx
    require_port_free "$port"
    p="$(nginx_prefix upstream)"
    {
        nginx_main "$p" 1
        echo "http {"
        nginx_http_common "$p"
        cat <<EOF
    server {
        listen $BENCH_HOST:$port reuseport backlog=4096;
        location / {
            default_type application/json;
            return 200 '{"status":"ok","service":"upstream"}\n';
        }
    }
}
EOF
    } >"$p/nginx.conf"
    run_nginx nginx-upstream "$p" "$port"
}

# start_nginx_proxy PORT UPSTREAM_PORT: reverse proxy (worker_processes auto, upstream
# keepalive 128) in front of 127.0.0.1:UPSTREAM_PORT, as in peers.md §3.4.
start_nginx_proxy() {
    local port=${1:-$NGINX_PROXY_PORT} up=${2:-$NGINX_UPSTREAM_PORT} p
    bench_require nginx
    require_port_free "$port"
    p="$(nginx_prefix proxy)"
    {
        nginx_main "$p" auto
        echo "http {"
        nginx_http_common "$p"
        cat <<EOF
    upstream up {
        server $BENCH_HOST:$up;
        keepalive 128;
    }
    server {
        listen $BENCH_HOST:$port reuseport backlog=4096;
        location / {
            proxy_pass http://up;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host \$host;
        }
    }
}
EOF
    } >"$p/nginx.conf"
    run_nginx nginx-proxy "$p" "$port"
    bench_cpu_pid inc "$BENCH_LAST_PID"
}

# --- gatehouse -------------------------------------------------------------------------------

# gh_resolve_bin: absolute GATEHOUSE_BIN (default <repo>/target/release/gatehouse); if it is
# missing, mark the gatehouse side skipped (so the incumbent side can still be measured).
gh_resolve_bin() {
    GATEHOUSE_BIN="${GATEHOUSE_BIN:-$BENCH_REPO_ROOT/target/release/gatehouse}"
    if [[ "$GATEHOUSE_BIN" != */* ]]; then
        GATEHOUSE_BIN="$(command -v "$GATEHOUSE_BIN" || echo "$GATEHOUSE_BIN")"
    fi
    [[ "$GATEHOUSE_BIN" == /* ]] || GATEHOUSE_BIN="$PWD/$GATEHOUSE_BIN"
    if [[ ! -x "$GATEHOUSE_BIN" ]]; then
        BENCH_SKIP[gh]="binary not found"
        bench_warn "gatehouse binary not found at $GATEHOUSE_BIN: SKIPPING the gatehouse side" \
            "(build it with 'cargo build --release' or set GATEHOUSE_BIN)"
        bench_note "gatehouse side SKIPPED: no executable at $GATEHOUSE_BIN"
        return 1
    fi
    mkdir -p "$BENCH_DIR/gh"
    return 0
}

gh_enabled() { [[ -z "${BENCH_SKIP[gh]:-}" ]]; }

# gh_disable REASON: stop measuring the gatehouse side for the rest of the script (a failure).
gh_disable() {
    BENCH_SKIP[gh]="$1"
    BENCH_FAILED=1
    bench_warn "gatehouse side disabled: $1"
    bench_note "gatehouse side FAILED: $1"
}

# gh_hash_password PW: argon2id PHC string from `gatehouse hash-password`.
gh_hash_password() {
    printf '%s' "$1" | timeout 60 "$GATEHOUSE_BIN" hash-password | head -n 1
}

# gh_gen_api_key: sets GH_API_KEY and GH_API_KEY_HASH from `gatehouse gen-api-key`.
gh_gen_api_key() {
    local out
    out="$(timeout 30 "$GATEHOUSE_BIN" gen-api-key)" || return 1
    GH_API_KEY="$(sed -n 1p <<<"$out")"
    GH_API_KEY_HASH="$(sed -n 2p <<<"$out")"
    [[ -n "$GH_API_KEY" && "$GH_API_KEY_HASH" == sha256:* ]] || {
        bench_warn "unexpected gen-api-key output"
        return 1
    }
}

# gh_config_head: the [gateway], [audit] and [limits] sections (state and audit under $BENCH_DIR/gh).
gh_config_head() {
    mkdir -p "$BENCH_DIR/gh/var" "$BENCH_DIR/gh/audit"
    cat <<EOF
# written by bench/lib.sh for a benchmark run
[gateway]
state_dir = "$BENCH_DIR/gh/var"
shutdown_grace_secs = 5

[audit]
dir = "$BENCH_DIR/gh/audit"
fsync = "batch"

# Benchmarks open many sessions from 127.0.0.1 in a short time: keep the per-IP login-failure
# ban (e.g. an SSH client's "none" probe) and the connection cap out of the way.
[limits]
max_connections = 10000
login_failures = { max = 1000000, window_secs = 60, ban_secs = 1 }

EOF
    bench_note "gatehouse audit log: fsync = \"batch\" (fsync at most every 100 ms), not \"always\""
    bench_note "gatehouse [limits]: max_connections = 10000, login-failure ban effectively off"
}

# gh_config_disk ROOT: a local backend rooted at ROOT mounted at "/".
gh_config_disk() {
    mkdir -p "$1"
    cat <<EOF
[backends.disk]
kind = "local"
root = "$1"

[[mounts]]
path = "/"
backend = "disk"

EOF
}

# gh_config_user HASH [PUBKEY]: user $BENCH_USER with every permission on its whole tree.
gh_config_user() {
    local hash=$1 pub=${2:-}
    cat <<EOF
[[users]]
name = "$BENCH_USER"
password_hash = "$hash"
EOF
    [[ -z "$pub" ]] || printf 'public_keys = ["%s"]\n' "$pub"
    cat <<EOF
home = "/"
permissions = [ { path = "/", allow = ["list", "read", "write", "overwrite", "delete", "mkdir", "rename"] } ]

EOF
}

# gh_start CONFIG PORT...: `gatehouse check`, then `gatehouse serve` in the background; waits
# for every PORT. On failure disables the gatehouse side (returns 1) instead of aborting.
gh_start() {
    local config=$1 port
    shift
    gh_enabled || return 1
    require_port_free "$@"
    if ! timeout 60 "$GATEHOUSE_BIN" check --config "$config" >"$BENCH_DIR/logs/gatehouse-check.log" 2>&1; then
        sed 's/^/    | /' "$BENCH_DIR/logs/gatehouse-check.log" >&2
        gh_disable "gatehouse check rejected $config"
        return 1
    fi
    bench_spawn gatehouse "$GATEHOUSE_BIN" serve --config "$config"
    for port in "$@"; do
        if ! wait_port "$port" 30 "$BENCH_LAST_PID"; then
            tail -n 20 "$BENCH_DIR/logs/gatehouse.log" | sed 's/^/    | /' >&2
            bench_stop_named gatehouse
            gh_disable "gatehouse serve did not open 127.0.0.1:$port"
            return 1
        fi
    done
    bench_cpu_pid gh "$BENCH_LAST_PID"
    bench_log "gatehouse started (pid $BENCH_LAST_PID), log $BENCH_DIR/logs/gatehouse.log"
}

gh_version() {
    gh_enabled || return 0
    timeout 10 "$GATEHOUSE_BIN" --version 2>/dev/null | head -n 1 || true
}

bench_init
