#!/usr/bin/env bash
# Holds the Nur worker against a native baseline in one run and prints one
# table; writes bench/results/<date>.{json,md} and bench/results/latency.svg.
#
# Scenarios: echo, http-hello (nur-load, and wrk when installed: one
# connection per request, and kept connections with --keep-alive), 64 KiB
# streamed through stream.wat, idle connections (server RSS per connection),
# and the per-connection wasm overhead (criterion). Every server listens on
# 127.0.0.1 only; every wait is bounded.
#
# Knobs (environment): CLIENTS=64 DURATION=10 WARMUP=2 IDLE_CONNS=10000 IDLE_FALLBACK=5000
# MANY_CONNS=50000 STREAM_BYTES=65536 STREAM_CHUNK=4096 WORKER_LOG=warn PORT=18080
# SKIP_BUILD=1 SKIP_LOAD=1 SKIP_CRITERION=1 SKIP_IDLE=1 SKIP_MANY=1 SKIP_WRK=1 QUIET_LOAD=1.0
# RESULTS_NAME=NAME (results/NAME.{json,md} instead of the date)
# WORKER_BIN=PATH (another nur-worker binary, e.g. an older build to compare)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
CLIENTS="${CLIENTS:-64}"
DURATION="${DURATION:-10}"
WARMUP="${WARMUP:-2}"
IDLE_CONNS="${IDLE_CONNS:-10000}"
IDLE_FALLBACK="${IDLE_FALLBACK:-5000}"
MANY_CONNS="${MANY_CONNS:-50000}"
STREAM_BYTES="${STREAM_BYTES:-65536}"
STREAM_CHUNK="${STREAM_CHUNK:-4096}"
WORKER_LOG="${WORKER_LOG:-warn}"
PORT="${PORT:-18080}"
nur_port=$PORT admin_port=$((PORT + 1)) native_port=$((PORT + 2))
bin="$root/target/release"
results="$root/bench/results"
work="$(mktemp -d /tmp/nur-bench.XXXXXX)"
records="$work/records.jsonl"
mkdir -p "$results"
: >"$records"
echo "run.sh: scratch files and server logs in $work"

# --- build -------------------------------------------------------------------

if [ -z "${SKIP_BUILD:-}" ]; then
    cargo build --release -p nur-worker -p nur-bench
    examples/build.sh
fi
if [ -z "${SKIP_WRK:-}" ] && ! command -v wrk >/dev/null; then
    echo "run.sh: wrk not found, trying apt-get install wrk (skip with SKIP_WRK=1)"
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq wrk >/dev/null 2>&1 ||
        echo "run.sh: wrk not installable; the HTTP scenario uses nur-load only"
fi

# --- servers -----------------------------------------------------------------

server=""
stop() {
    if [ -n "$server" ]; then
        kill "$server" 2>/dev/null || true
        for _ in $(seq 100); do kill -0 "$server" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$server" 2>/dev/null || true
        wait "$server" 2>/dev/null || true
        server=""
    fi
}
trap stop EXIT

# wait_for COMMAND...: retries COMMAND for up to 30 s.
wait_for() {
    for _ in $(seq 300); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.1
    done
    echo "run.sh: server did not come up ($*); see $work" >&2
    exit 1
}

# start_worker MODULE [FLAGS...]: nur-worker on $nur_port.
start_worker() {
    stop
    NUR_LOG="$WORKER_LOG" "${WORKER_BIN:-$bin/nur-worker}" serve --module "examples/build/$1" \
        --listen "127.0.0.1:$nur_port" --admin-listen "127.0.0.1:$admin_port" "${@:2}" \
        2>>"$work/worker.log" &
    server=$!
    wait_for curl -sf "http://127.0.0.1:$admin_port/readyz"
    addr="127.0.0.1:$nur_port"
}

# start_native SCENARIO [FLAGS...]: nur-native on $native_port.
start_native() {
    stop
    "$bin/nur-native" --scenario "$1" --listen "127.0.0.1:$native_port" "${@:2}" \
        2>>"$work/native.log" &
    server=$!
    wait_for bash -c "exec 3<>/dev/tcp/127.0.0.1/$native_port"
    addr="127.0.0.1:$native_port"
}

# load LABEL [FLAGS...]: nur-load against $addr; keeps its JSON line.
load() {
    "$bin/nur-load" --addr "$addr" --clients "$CLIENTS" --duration "$DURATION" \
        --warmup "$WARMUP" --label "$1" "${@:2}" >"$work/load.out"
    head -n1 "$work/load.out"
    tail -n1 "$work/load.out" >>"$records"
}

# wrk_http LABEL [WRK FLAGS...]: wrk against $addr (its own warm-up run
# first, discarded).
wrk_http() {
    if [ -n "${SKIP_WRK:-}" ] || ! command -v wrk >/dev/null; then return 0; fi
    local threads=2 warm="${WARMUP%%.*}" measure="${DURATION%%.*}"
    [ "$CLIENTS" -ge "$threads" ] || threads=1
    # wrk takes whole seconds only.
    [ "${warm:-0}" -ge 1 ] || warm=1
    [ "${measure:-0}" -ge 1 ] || measure=1
    wrk -t"$threads" -c"$CLIENTS" -d"${warm}s" "${@:2}" "http://$addr/bench" >/dev/null
    wrk -t"$threads" -c"$CLIENTS" -d"${measure}s" --latency "${@:2}" "http://$addr/bench" >"$work/wrk.out"
    python3 bench/report.py wrk "$1" "$work/wrk.out" >>"$records"
    tail -n1 "$records"
}

# length TEXT: bytes of TEXT after printf's escapes.
length() { printf '%b' "$1" | wc -c; }

# QUIET_LOAD=1.0: first wait (at most 10 minutes) for the 1-minute load
# average to fall below it, since other work on the machine skews the figures.
if [ -n "${QUIET_LOAD:-}" ]; then
    for _ in $(seq 120); do
        awk -v max="$QUIET_LOAD" '{ exit !($1 < max) }' /proc/loadavg && break
        sleep 5
    done
fi
echo "run.sh: load before: $(cut -d' ' -f1-3 /proc/loadavg); clients=$CLIENTS duration=${DURATION}s warmup=${WARMUP}s"
load_before="$(cut -d' ' -f1-3 /proc/loadavg)"

if [ -z "${SKIP_LOAD:-}" ]; then

# --- echo: 64 bytes in, an HTTP response with them back ------------------------

echo_len=$(($(length 'HTTP/1.1 200 OK\r\ncontent-length: 64\r\n\r\n') + 64))
echo_check=(--size 64 --expect-len "$echo_len" --expect-prefix 'HTTP/1.1 200 OK\r\n')
start_worker echo.wasm
load echo/nur "${echo_check[@]}"
start_native echo
load echo/native "${echo_check[@]}"

# --- http-hello: GET /bench, a whole request parsed with httparse --------------

hello_body='Hello, /bench!\n'
hello_head="HTTP/1.1 200 OK\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: $(length "$hello_body")\r\n\r\n"
hello_check=(--http-get /bench --expect-len "$(($(length "$hello_head") + $(length "$hello_body")))" --expect-prefix 'HTTP/1.1 200 OK\r\n')
start_worker http-hello.wasm
load http-hello/nur "${hello_check[@]}"
# One connection per request: wrk asks each server to close.
wrk_http http-hello-wrk/nur -H "Connection: close"
start_native http-hello
load http-hello/native "${hello_check[@]}"
wrk_http http-hello-wrk/native -H "Connection: close"
# Kept connections on both sides (--keep-alive): wrk sends request after
# request on each connection; the worker serves each in a fresh instance.
if [ -z "${SKIP_WRK:-}" ] && command -v wrk >/dev/null; then
    start_worker http-hello.wasm --keep-alive
    wrk_http http-hello-wrk-keepalive/nur
    start_native http-hello --keep-alive
    wrk_http http-hello-wrk-keepalive/native
fi

# --- stream: STREAM_BYTES written in STREAM_CHUNK pieces, uppercased back ------

stream_check=(--size "$STREAM_BYTES" --write-chunk "$STREAM_CHUNK"
    --expect-len "$((STREAM_BYTES + $(length "\n-- $STREAM_BYTES bytes\n")))" --expect-prefix ABCDEFGHIJ)
start_worker stream.wat
load stream-64k/nur "${stream_check[@]}"
start_native stream
load stream-64k/native "${stream_check[@]}"
fi

# --- idle connections: server RSS per held connection --------------------------

if [ -z "${SKIP_IDLE:-}" ]; then
    ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
    long=(--idle-timeout 300s)
    idle() { # LABEL COUNT [FLAGS...]
        "$bin/nur-idle" --addr "$addr" --pid "$server" --conns "$2" --label "$1" "${@:3}" >"$work/idle.out" ||
            echo "{\"label\": \"$1\", \"conns\": $2, \"error\": \"nur-idle failed\"}" >"$work/idle.out"
        grep -v '^{' "$work/idle.out" || true
        grep '^{' "$work/idle.out" >>"$records"
    }
    # IDLE_CONNS, and IDLE_FALLBACK (a count below vm.max_map_count / ~10
    # mappings per Nur connection, so that the worker survives it).
    for count in $IDLE_CONNS $IDLE_FALLBACK; do
        # Silent: connected, nothing sent.
        start_worker http-hello.wasm --max-connections "$((count + 64))" --timeout 600s "${long[@]}"
        idle "idle-silent-$count/nur" "$count"
        start_native http-hello "${long[@]}"
        idle "idle-silent-$count/native" "$count"
        # Mid-request: half an HTTP request sent, so the function holds a live instance.
        start_worker http-hello.wasm --max-connections "$((count + 64))" --timeout 600s "${long[@]}"
        idle "idle-mid-request-$count/nur" "$count" --send 'GET /idle HTTP/1.1\r\n'
        start_native http-hello "${long[@]}"
        idle "idle-mid-request-$count/native" "$count" --send 'GET /idle HTTP/1.1\r\n'
    done
fi

# --- many: MANY_CONNS connections held at once, then every one asks ----------

# Both the worker and nur-idle need a descriptor per connection, so the count
# is clamped to the hard RLIMIT_NOFILE (which an unprivileged process cannot
# raise) less a reserve. Source addresses 127.0.0.1..N spread the client
# ports: one address has about 28,000 ephemeral ports.
if [ -z "${SKIP_MANY:-}" ]; then
    hard="$(ulimit -Hn)"
    many=$MANY_CONNS
    if [ "$hard" != unlimited ] && [ "$many" -gt $((hard - 512)) ]; then
        many=$((hard - 512))
        echo "run.sh: MANY_CONNS=$MANY_CONNS clamped to $many by the hard RLIMIT_NOFILE ($hard)"
    fi
    ulimit -n "$hard" 2>/dev/null || true
    ips=$((many / 20000 + 2))
    many_args=(--source-ips "$ips" --then-request 'GET /many HTTP/1.1\r\nhost: bench\r\n\r\n'
        --expect-prefix 'HTTP/1.1 200 OK\r\n')
    many() { # LABEL
        "$bin/nur-idle" --addr "$addr" --pid "$server" --conns "$many" --label "$1" "${many_args[@]}" >"$work/idle.out" ||
            echo "{\"label\": \"$1\", \"conns\": $many, \"error\": \"nur-idle failed\"}" >"$work/idle.out"
        grep -v '^{' "$work/idle.out" || true
        grep '^{' "$work/idle.out" >>"$records"
    }
    # Default --max-connections: most connections wait for a serving slot.
    start_worker http-hello.wasm --timeout 600s --idle-timeout 300s
    many "many-$many/nur"
    start_native http-hello --idle-timeout 300s
    many "many-$many/native"
fi
stop

# --- per-connection wasm overhead (criterion) ----------------------------------

if [ -z "${SKIP_CRITERION:-}" ]; then
    cargo bench -p nur-bench --bench instance 2>&1 | grep -E '^instance/|time:' || true
    python3 bench/report.py criterion "$root/target/criterion/instance" >>"$records"
fi

# --- report ------------------------------------------------------------------

load_after="$(cut -d' ' -f1-3 /proc/loadavg)"
python3 bench/report.py report "$records" "$results" \
    --clients "$CLIENTS" --duration "$DURATION" --warmup "$WARMUP" \
    --load-before "$load_before" --load-after "$load_after" --worker-log "$WORKER_LOG" \
    --name "${RESULTS_NAME:-}"
