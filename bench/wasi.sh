#!/usr/bin/env bash
# The per-connection cost of WASI functions beside the Nur-ABI echo, in one
# run on one machine: the same 12-byte line sent to each, one connection per
# request, CLIENTS at a time.
#
#   echo        Rust on the Nur ABI, no WASI import (the baseline)
#   go-hello    Go on the Nur ABI, a reactor: the Go runtime's WASI imports
#               and its _initialize on every connection
#   shout       Rust std on wasm32-wasip1, a WASI command (stdin, stdout)
#   go-wc       Go, GOOS=wasip1, a WASI command
#
# Writes bench/results/wasi-<date>.{jsonl,md}. Knobs: CLIENTS=16 DURATION=10
# WARMUP=2 PORT=18180 SKIP_BUILD=1 RESULTS_NAME=NAME.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
CLIENTS="${CLIENTS:-16}" DURATION="${DURATION:-10}" WARMUP="${WARMUP:-2}" PORT="${PORT:-18180}"
bin="$root/target/release"
name="${RESULTS_NAME:-wasi-$(date -u +%F)}"
out="$root/bench/results/$name"
work="$(mktemp -d /tmp/nur-bench-wasi.XXXXXX)"
mkdir -p "$root/bench/results"
: >"$out.jsonl"
if [ -z "${SKIP_BUILD:-}" ]; then
    cargo build --release -p nur-worker -p nur-bench --bin nur-worker --bin nur-load
    examples/build.sh >/dev/null
fi

server=""
stop() {
    [ -z "$server" ] && return 0
    kill "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
    server=""
}
trap stop EXIT

# run LABEL MODULE EXPECT_PREFIX EXPECT_LEN: one worker, one load.
run() {
    stop
    NUR_LOG=warn "$bin/nur-worker" serve --module "examples/build/$2" \
        --listen "127.0.0.1:$PORT" --admin-listen "127.0.0.1:$((PORT + 1))" 2>>"$work/worker.log" &
    server=$!
    for _ in $(seq 300); do curl -sf "http://127.0.0.1:$((PORT + 1))/readyz" >/dev/null && break; sleep 0.1; done
    "$bin/nur-load" --addr "127.0.0.1:$PORT" --clients "$CLIENTS" --duration "$DURATION" \
        --warmup "$WARMUP" --label "$1" --payload 'hello, wasi\n' \
        --expect-prefix "$3" --expect-len "$4" >"$work/load.out"
    head -n1 "$work/load.out"
    tail -n1 "$work/load.out" >>"$out.jsonl"
}

load_before="$(cut -d' ' -f1 /proc/loadavg)"
echo "wasi.sh: load before $load_before; clients=$CLIENTS duration=${DURATION}s"
run echo/nur-abi echo.wasm 'HTTP/1.1 200 OK\r\ncontent-length: 12\r\n\r\nhello, wasi\n' 51
run go-hello/nur-abi-reactor go-hello.wasm 'HTTP/1.1 200 OK\r\ncontent-length: 12\r\n\r\nhello, wasi\n' 51
run shout/wasi-command shout.wasm 'HELLO, WASI\n' 12
run go-wc/wasi-command go-wc.wasm '2 words\ntotal: 1 lines, 2 words\n' 32
stop

python3 - "$out.jsonl" "$out.md" "$CLIENTS" "$DURATION" "$load_before" <<'PY'
import json, platform, sys, os
records = [json.loads(l) for l in open(sys.argv[1])]
base = records[0]["rps"]
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
rows = ["| function | kind | req/s | vs echo | p50 µs | p99 µs | errors |", "|---|---|---|---|---|---|---|"]
for r in records:
    fn, kind = r["label"].split("/")
    lat = r["latency_us"]
    rows.append("| %s | %s | %.0f | %.2f× | %d | %d | %d |" % (
        fn, kind, r["rps"], r["rps"] / base, lat["p50"], lat["p99"], r["errors"]))
head = "%s, %d cores (%s), %s clients, %ss per function, load average before %s\n\n" % (
    platform.node(), os.cpu_count(), cpu, sys.argv[3], sys.argv[4], sys.argv[5])
open(sys.argv[2], "w").write(head + "\n".join(rows) + "\n")
print(head + "\n".join(rows))
PY
