#!/usr/bin/env bash
# nur-gateway's cost and the scale-to-zero wake time on testenv's real node,
# each against a baseline of the same run; writes
# bench/results/gateway-<date>.{json,md}.
#
#  1. release builds of nur-worker, nur-gateway and nur-bench; the release
#     worker imported into the node as ghcr.io/nur-dev/nur-worker:bench;
#  2. a namespace on the real node with the object-store Secret and the
#     chart (worker image tag bench, the chart's own gateway off); echo
#     (route host echo.bench) and http-hello (route pathPrefix /), 1 replica
#     each, from MinIO;
#  3. nur-gateway (release) on this host with the testenv kubeconfig; nur-load
#     against each pod's IP:8080 directly and through the gateway, the same
#     payload both ways: one connection per request (`Connection: close`),
#     then clients that keep their connection (`--keep-alive`, the
#     *-keepalive rows); then both at a fixed offered rate (the @RATE rows);
#  4. scale to zero: echo with scaleToZero {idleAfter: 5s} (host nap.bench),
#     WAKES times: wait until it is at zero, time one request through the
#     gateway, then the same request to it awake; the same for markdown.wasm
#     (host md.bench) MD_WAKES times; each woken pod's native-code origin
#     and load time from its `serving` log line; then, as the baseline of
#     the operator's compile Job, the operator upgraded to
#     operator.compileArtifacts=false and markdown woken MD_WAKES times
#     again, its pods compiling the module themselves;
#  5. the namespace, the release, the uploads and the gateway go at the end.
#
# Needs `make testenv` with the real node (.testenv/env names
# NUR_TESTENV_NODE_SELECTOR). Knobs (environment): CLIENTS=16 DURATION=10
# WARMUP=2 ROUNDS=2 (direct/gateway pairs per function, the order swapped
# each round) LIGHT_CLIENTS=1 (one more pair each at this many clients; 0: none) WAKES=20 MD_WAKES=20
# RATE=2000 (the same pairs at this offered rate, open loop; 0: none)
# IDLE_AFTER=5s SKIP_BUILD=1 SKIP_LOAD=1 SKIP_WAKE=1 SKIP_COMPILED=1 (no
# compileArtifacts=false baseline) KEEP=1 (leave the
# namespace) RESULTS_NAME=NAME (results/NAME.{json,md}).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
CLIENTS="${CLIENTS:-16}"
DURATION="${DURATION:-10}"
WARMUP="${WARMUP:-2}"
ROUNDS="${ROUNDS:-2}"
WAKES="${WAKES:-20}"
MD_WAKES="${MD_WAKES:-20}"
IDLE_AFTER="${IDLE_AFTER:-5s}"
TAG=bench
WORKER_IMAGE="ghcr.io/nur-dev/nur-worker:$TAG"
started_epoch=$(date +%s)
started="$(date -u '+%Y-%m-%d %H:%M:%S UTC')"

if [ ! -f .testenv/env ]; then
    echo "gateway.sh: no .testenv/env: run \`make testenv\` first" >&2
    exit 1
fi
set -a
# shellcheck disable=SC1091
. .testenv/env
set +a
if [ -z "${NUR_TESTENV_NODE_SELECTOR:-}" ]; then
    echo "gateway.sh: the test environment has no real node (no NUR_TESTENV_NODE_SELECTOR in .testenv/env)" >&2
    exit 1
fi
kubectl() { "$NUR_TESTENV_BIN/kubectl" "$@"; }
helm() { "$NUR_TESTENV_BIN/helm" "$@"; }
bin="${CARGO_TARGET_DIR:-$root/target}/release"
results="$root/bench/results"
work="$(mktemp -d /tmp/nur-bench-gateway.XXXXXX)"
records="$work/records.jsonl"
: >"$records"
mkdir -p "$results"
log() { echo "gateway.sh [$(date -u +%H:%M:%S)]: $*"; }
log "scratch files and logs in $work"

# --- 1. build, and the release worker as an image -------------------------------

if [ -z "${SKIP_BUILD:-}" ]; then
    cargo build --release --locked -p nur-worker -p nur-gateway -p nur-bench
    [ -f examples/build/markdown.wasm ] || examples/build.sh
fi
for m in echo http-hello markdown; do
    [ -f "examples/build/$m.wasm" ] || { echo "gateway.sh: no examples/build/$m.wasm (examples/build.sh)" >&2; exit 1; }
done
"$NUR_TESTENV_BIN/nur-testenv" import-image --dir "$NUR_TESTENV_DIR" --image "$WORKER_IMAGE=$bin/nur-worker"

# --- cleanup ----------------------------------------------------------------------

suffix="$(head -c 4 /dev/urandom | od -An -tx1 | tr -d ' \n')"
ns="nur-bench-gateway-$suffix"
release="nur-bench-$suffix"
prefix="bench/$ns"
gateway_pid=""
s3() { # METHOD KEY [FILE]: one signed request to MinIO (the bucket of the test environment).
    local sha
    if [ -n "${3:-}" ]; then sha="$(sha256sum "$3" | cut -d' ' -f1)"; else sha="$(printf '' | sha256sum | cut -d' ' -f1)"; fi
    curl -sS -f -o /dev/null --aws-sigv4 "aws:amz:$AWS_REGION:s3" --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" \
        -H "x-amz-content-sha256: $sha" -X "$1" ${3:+-T "$3"} "$AWS_ENDPOINT_URL/$NUR_TEST_BUCKET/$2"
}
cleanup() {
    set +e
    if [ -n "$gateway_pid" ]; then
        kill "$gateway_pid" 2>/dev/null
        for _ in $(seq 50); do kill -0 "$gateway_pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$gateway_pid" 2>/dev/null
        wait "$gateway_pid" 2>/dev/null
    fi
    if [ -n "${KEEP:-}" ]; then
        log "KEEP: namespace $ns and release $release left in place"
        return
    fi
    if kubectl get namespace "$ns" >/dev/null 2>&1; then
        log "deleting release $release and namespace $ns"
        helm uninstall "$release" --namespace "$ns" --wait --timeout 60s >/dev/null 2>&1
        kubectl delete namespace "$ns" --wait=false >/dev/null 2>&1
    fi
    for m in echo http-hello markdown; do s3 DELETE "$prefix/$m.wasm" 2>/dev/null; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- 2. namespace, Secret, chart, functions -------------------------------------------

load_before="$(cut -d' ' -f1-3 /proc/loadavg)"
log "load average before: $load_before; namespace $ns"
# The chart's CRD as this checkout has it (helm installs a CRD only when
# there is none), as e2e::realnode does.
kubectl apply --server-side --force-conflicts -f charts/nur/crds/nurfunction.yaml >/dev/null
kubectl apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Namespace
metadata:
  name: $ns
  labels: {nur.dev/bench: gateway}
  annotations: {scheduler.alpha.kubernetes.io/node-selector: "$NUR_TESTENV_NODE_SELECTOR"}
EOF
kubectl create secret generic object-store -n "$ns" \
    --from-literal=AWS_ENDPOINT_URL="$NUR_TEST_IN_CLUSTER_ENDPOINT" \
    --from-literal=AWS_ACCESS_KEY_ID="$AWS_ACCESS_KEY_ID" \
    --from-literal=AWS_SECRET_ACCESS_KEY="$AWS_SECRET_ACCESS_KEY" \
    --from-literal=AWS_REGION="$AWS_REGION" \
    --from-literal=AWS_ALLOW_HTTP="$AWS_ALLOW_HTTP" >/dev/null
sets=(--set "operator.watchNamespace=$ns"
    --set "operator.envFrom[0].secretRef.name=object-store"
    --set operator.recheckSeconds=2
    --set operator.storage.allowLocalStorage=true
    --set "worker.image.tag=$TAG")
# The chart's own gateway, where the chart has one: off (ours runs on the host).
if grep -q '^gateway:' charts/nur/values.yaml; then sets+=(--set gateway.enabled=false); fi
helm install "$release" charts/nur --namespace "$ns" --wait --timeout 2m "${sets[@]}" >"$work/helm.out"
grep -q 'STATUS: deployed' "$work/helm.out" || { cat "$work/helm.out" >&2; exit 1; }
log "chart installed (release $release)"

for m in echo http-hello markdown; do s3 PUT "$prefix/$m.wasm" "examples/build/$m.wasm"; done

apply_function() { # NAME MODULE EXTRA-SPEC-YAML
    kubectl apply -n "$ns" -f - >/dev/null <<EOF
apiVersion: nur.dev/v1alpha1
kind: NurFunction
metadata: {name: $1}
spec:
  module: {url: "s3://$NUR_TEST_BUCKET/$prefix/$2.wasm", credentialsSecret: object-store}
  port: 8080
$3
EOF
}

# ready_pods NAME: "IP" of each ready, not terminating pod of NAME, one a line.
ready_pods() {
    kubectl get pods -n "$ns" -l "app.kubernetes.io/instance=$1" -o \
        jsonpath='{range .items[*]}{.status.podIP}{" "}{.status.conditions[?(@.type=="Ready")].status}{" "}{.metadata.deletionTimestamp}{"\n"}{end}' |
        awk '$2 == "True" && $3 == "" { print $1 }'
}
pod_count() { kubectl get pods -n "$ns" -l "app.kubernetes.io/instance=$1" -o name | wc -l; }
# wait_ready NAME: Ready=True and exactly one pod, ready (120 s at most).
wait_ready() {
    local deadline=$((SECONDS + 120))
    while [ $SECONDS -lt $deadline ]; do
        if [ "$(kubectl get nurfn "$1" -n "$ns" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" = True ] &&
            [ "$(pod_count "$1")" -eq 1 ] && [ -n "$(ready_pods "$1")" ]; then
            return 0
        fi
        sleep 0.5
    done
    echo "gateway.sh: $1 not Ready with one pod within 120 s:" >&2
    kubectl get nurfn,pods -n "$ns" -o wide >&2 || true
    kubectl get nurfn "$1" -n "$ns" -o yaml >&2 || true
    exit 1
}
# wait_zero NAME: Ready=True reason ScaledToZero, 0 replicas, no pod left (180 s at most).
wait_zero() {
    local deadline=$((SECONDS + 180))
    while [ $SECONDS -lt $deadline ]; do
        if kubectl get nurfn "$1" -n "$ns" -o json >"$work/fn.json" 2>/dev/null &&
            python3 bench/gateway.py ready-zero "$work/fn.json" && [ "$(pod_count "$1")" -eq 0 ]; then
            return 0
        fi
        sleep 0.5
    done
    echo "gateway.sh: $1 not at zero within 180 s:" >&2
    kubectl get nurfn,pods -n "$ns" -o wide >&2 || true
    exit 1
}

# --- 3. the gateway on this host --------------------------------------------------

http_port=$(python3 bench/gateway.py free-port)
tls_port=$(python3 bench/gateway.py free-port)
admin_port=$(python3 bench/gateway.py free-port)
tcp_port=$(python3 bench/gateway.py free-port)
KUBECONFIG="$NUR_TESTENV_DIR/kubeconfig" "$bin/nur-gateway" run \
    --http-listen "127.0.0.1:$http_port" --tls-listen "127.0.0.1:$tls_port" \
    --admin-listen "127.0.0.1:$admin_port" --tcp-address 127.0.0.1 --tcp-ports "$tcp_port" \
    --namespace "$ns" --wake-timeout 90s 2>"$work/gateway.log" &
gateway_pid=$!
for _ in $(seq 300); do
    curl -sf "http://127.0.0.1:$admin_port/readyz" >/dev/null 2>&1 && break
    kill -0 "$gateway_pid" 2>/dev/null || { echo "gateway.sh: nur-gateway exited:" >&2; cat "$work/gateway.log" >&2; exit 1; }
    sleep 0.1
done
gw="127.0.0.1:$http_port"
log "nur-gateway (pid $gateway_pid) on $gw"

# length TEXT: bytes of TEXT after printf's escapes.
length() { printf '%b' "$1" | wc -c; }
body64="$(printf 'abcdefghijklmnopqrstuvwxyz%.0s' 1 2 3 | head -c 64)"
# One connection per request (`Connection: close`), and the same requests
# from clients that keep their connection (the *-keepalive rows).
echo_request="POST /bench HTTP/1.1\r\nHost: echo.bench\r\nConnection: close\r\nContent-Length: 64\r\n\r\n$body64"
echo_ka_request="POST /bench HTTP/1.1\r\nHost: echo.bench\r\nContent-Length: 64\r\n\r\n$body64"
hello_request='GET /bench HTTP/1.1\r\nHost: hello.bench\r\nuser-agent: nur-load\r\nConnection: close\r\n\r\n'
hello_ka_request='GET /bench HTTP/1.1\r\nHost: hello.bench\r\nuser-agent: nur-load\r\n\r\n'
hello_body='Hello, /bench!\n'
hello_head="HTTP/1.1 200 OK\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: $(length "$hello_body")\r\n\r\n"
# checks FUNCTION PATH: sets `check`, nur-load's payload and checks for
# FUNCTION (echo, http-hello, echo-keepalive, http-hello-keepalive) reached
# PATH (direct, gateway). echo answers with the bytes it was sent: through
# the gateway, without the request's hop-by-hop `Connection` field.
checks() {
    local request answered flags=()
    case "$1" in
        echo) request=$echo_request ;;
        echo-keepalive) request=$echo_ka_request flags=(--keep-alive) ;;
        http-hello) request=$hello_request ;;
        http-hello-keepalive) request=$hello_ka_request flags=(--keep-alive) ;;
    esac
    if [ "${1%-keepalive}" = echo ]; then
        answered=$request
        [ "$2" = gateway ] && answered=${answered/Connection: close\\r\\n/}
        answered=$(length "$answered")
        answered=$(($(length "HTTP/1.1 200 OK\r\ncontent-length: $answered\r\n\r\n") + answered))
    elif [ "$1" = http-hello ] && [ "$2" = direct ]; then
        # http-hello says `connection: close` when the request asks for it
        # (through the gateway, the request no longer does).
        answered=$(($(length "$hello_head") + $(length 'connection: close\r\n') + $(length "$hello_body")))
    else
        answered=$(($(length "$hello_head") + $(length "$hello_body")))
    fi
    check=("${flags[@]}" --payload "$request" --expect-prefix 'HTTP/1.1 200 OK\r\n' --expect-len "$answered")
}

# CPU time in ns: of a process (all its threads, /proc/PID/stat utime +
# stime, in clock ticks), and of a pod (its cgroup's cpuacct.usage; empty
# when the cgroup is not found).
clk_tck=$(getconf CLK_TCK)
proc_cpu_ns() { awk -v t="$clk_tck" '{ printf "%.0f\n", ($14 + $15) * 1e9 / t }' "/proc/$1/stat"; }
pod_cgroup() { # POD-UID: its cpuacct directory (cgroup v1) or cgroup v2 directory
    local d
    for d in /sys/fs/cgroup/cpuacct/kubepods /sys/fs/cgroup/kubepods /sys/fs/cgroup/kubepods.slice; do
        [ -d "$d" ] && find "$d" -maxdepth 3 -type d \( -name "pod$1" -o -name "*pod${1//-/_}.slice" \) 2>/dev/null | head -n1 && return
    done
}
cgroup_cpu_ns() { # DIR
    if [ -z "$1" ]; then echo ""
    elif [ -f "$1/cpuacct.usage" ]; then cat "$1/cpuacct.usage"
    else awk '$1 == "usage_usec" { print $2 * 1000 }' "$1/cpu.stat"; fi
}
# time_waits IP: this host's TIME_WAIT sockets to IP.
time_waits() { ss -Htan state time-wait dst "$1" | wc -l; }
# load LABEL ADDR POD-IP POD-CGROUP [FLAGS...]: nur-load (--no-shutdown: the
# server closes first, see nur-load.rs); keeps its JSON line, with the CPU
# time the gateway and the worker pod took during it (warm-up included; per
# request over rps x (warm-up + duration)) and this host's TIME_WAIT
# sockets to the pod before and after.
load() {
    local g0 w0 g1 w1 t0 t1
    g0=$(proc_cpu_ns "$gateway_pid"); w0=$(cgroup_cpu_ns "$4"); t0=$(time_waits "$3")
    "$bin/nur-load" --addr "$2" --clients "${LOAD_CLIENTS:-$CLIENTS}" --duration "$DURATION" --warmup "$WARMUP" \
        --no-shutdown --label "$1" "${@:5}" >"$work/load.out"
    g1=$(proc_cpu_ns "$gateway_pid"); w1=$(cgroup_cpu_ns "$4"); t1=$(time_waits "$3")
    head -n1 "$work/load.out"
    tail -n1 "$work/load.out" | G="$((g1 - g0))" W="${w0:+$((w1 - w0))}" WARMUP="$WARMUP" T0="$t0" T1="$t1" python3 -c '
import json, os, sys
r = json.loads(sys.stdin.read())
n = r["rps"] * (r["duration_s"] + float(os.environ["WARMUP"]))
r["host_time_wait_to_pod"] = [int(os.environ["T0"]), int(os.environ["T1"])]
cpu = {"gateway_ms": int(os.environ["G"]) / 1e6, "requests_estimated": round(n)}
if os.environ["W"]:
    cpu["worker_ms"] = int(os.environ["W"]) / 1e6
for k in ("gateway", "worker"):
    if k + "_ms" in cpu and n:
        cpu[k + "_us_per_request"] = cpu[k + "_ms"] * 1000 / n
r["cpu"] = cpu
print(json.dumps(r))' >>"$records"
    tail -n1 "$records" | python3 -c '
import json, sys
r = json.load(sys.stdin); c = r["cpu"]
worker = "%.0f ms (%.1f µs/request)" % (c["worker_ms"], c["worker_us_per_request"]) if "worker_ms" in c else "unknown"
print("  cpu: gateway %.0f ms (%.1f µs/request), worker pod %s; TIME_WAIT sockets to the pod %d -> %d"
      % (c["gateway_ms"], c.get("gateway_us_per_request", 0), worker, *r["host_time_wait_to_pod"]))'
}
# through_gateway REQUEST SUFFIX: retries (60 s) until the gateway answers 200 for it.
through_gateway() {
    for _ in $(seq 120); do
        python3 bench/gateway.py probe --addr "$gw" --request "$1" --expect-suffix "$2" --label check --timeout 10 \
            >/dev/null 2>&1 && return 0
        sleep 0.5
    done
    echo "gateway.sh: the gateway does not route $1:" >&2
    python3 bench/gateway.py probe --addr "$gw" --request "$1" --label check --timeout 10 >&2 || true
    tail -20 "$work/gateway.log" >&2
    exit 1
}

if [ -z "${SKIP_LOAD:-}" ]; then
    apply_function echo echo '  replicas: 1
  routes: {http: [{host: echo.bench}]}'
    apply_function hello http-hello '  replicas: 1
  routes: {http: [{pathPrefix: /}]}'
    wait_ready echo
    wait_ready hello
    through_gateway "$echo_request" "$body64"
    through_gateway "$hello_request" "$hello_body"
    echo_pod="$(ready_pods echo | head -n1):8080"
    hello_pod="$(ready_pods hello | head -n1):8080"
    uid() { kubectl get pods -n "$ns" -l "app.kubernetes.io/instance=$1" -o jsonpath='{.items[0].metadata.uid}'; }
    echo_cg="$(pod_cgroup "$(uid echo)")"
    hello_cg="$(pod_cgroup "$(uid hello)")"
    [ -n "$echo_cg" ] || log "the echo pod's cgroup was not found: no worker CPU figures"
    # QUIET_LOAD=1.0: first wait (at most 10 minutes) for the 1-minute load
    # average to fall below it.
    if [ -n "${QUIET_LOAD:-}" ]; then
        for _ in $(seq 120); do
            awk -v max="$QUIET_LOAD" '{ exit !($1 < max) }' /proc/loadavg && break
            sleep 5
        done
    fi
    log "echo pod $echo_pod, hello pod $hello_pod; load average $(cut -d' ' -f1-3 /proc/loadavg); load: $CLIENTS clients, ${DURATION}s after ${WARMUP}s, $ROUNDS round(s)"
    load_at_load="$(cut -d' ' -f1-3 /proc/loadavg)"
    # rounds SUFFIX [FLAGS...]: ROUNDS rounds of the four loads, each
    # direct and through the gateway (odd rounds direct first, even rounds
    # the gateway first), labelled FUNCTION$SUFFIX/PATH/ROUND.
    rounds() {
        local round function path order pod cg addr
        for round in $(seq "$ROUNDS"); do
            for function in echo http-hello echo-keepalive http-hello-keepalive; do
                if [ "${function%-keepalive}" = echo ]; then pod=$echo_pod cg=$echo_cg
                else pod=$hello_pod cg=$hello_cg; fi
                if [ $((round % 2)) -eq 1 ]; then order=(direct gateway); else order=(gateway direct); fi
                for path in "${order[@]}"; do
                    if [ "$path" = direct ]; then addr=$pod; else addr=$gw; fi
                    checks "$function" "$path"
                    load "$function$1/$path/$round" "$addr" "${pod%:*}" "$cg" "${check[@]}" "${@:2}"
                done
            done
        done
    }
    rounds ""
    # The same with LIGHT_CLIENTS (1) clients: the added latency without
    # the 2 CPUs saturated.
    if [ "${LIGHT_CLIENTS:-1}" -gt 0 ]; then
        for function in echo http-hello; do
            if [ "$function" = echo ]; then pod=$echo_pod cg=$echo_cg
            else pod=$hello_pod cg=$hello_cg; fi
            for path in direct gateway; do
                if [ "$path" = direct ]; then addr=$pod; else addr=$gw; fi
                checks "$function" "$path"
                LOAD_CLIENTS="${LIGHT_CLIENTS:-1}" load "$function-${LIGHT_CLIENTS:-1}client/$path/1" "$addr" "${pod%:*}" "$cg" "${check[@]}"
            done
        done
    fi
    # The same requests at an offered RATE (open loop, `nur-load --rate`,
    # well below what either path serves): the latency the gateway adds
    # when the 2 CPUs are not saturated, the way proxies' added latency is
    # measured (a closed loop at saturation measures queueing instead).
    if [ "${RATE:-2000}" != 0 ]; then
        rounds "@${RATE:-2000}rps" --rate "${RATE:-2000}"
    fi
    # Their pods stay up, idle, for the rest of the run.
fi

# --- 4. scale to zero ----------------------------------------------------------------

# wakes NAME REQUEST SUFFIX COUNT [CASE]: COUNT times, at zero, one request
# timed through the gateway (wake/CASE), then the same request awake
# (warm/CASE), then how the woken pod got its native code
# (load/CASE/ORIGIN: the load_ms of its `serving` line). CASE is NAME
# unless given.
wakes() {
    local i case="${5:-$1}"
    for i in $(seq "$4"); do
        wait_zero "$1"
        python3 bench/gateway.py probe --addr "$gw" --request "$2" --expect-suffix "$3" --label "wake/$case" \
            >>"$records" || log "wake $i of $1 failed: $(tail -n1 "$records")"
        python3 bench/gateway.py probe --addr "$gw" --request "$2" --expect-suffix "$3" --label "warm/$case" \
            >>"$records" || log "warm request $i of $1 failed: $(tail -n1 "$records")"
        kubectl logs -n "$ns" -l "app.kubernetes.io/instance=$1" --tail=-1 2>/dev/null |
            python3 bench/gateway.py serving-line --label "load/$case" >>"$records" ||
            log "no serving line of $1 after wake $i"
        log "$1 $i/$4: $(tail -n3 "$records" | python3 -c 'import json,sys; print(", ".join("%s %.1f ms" % (r["label"], r.get("ms", -1)) for r in map(json.loads, sys.stdin)))')"
    done
}

if [ -z "${SKIP_WAKE:-}" ]; then
    nap_request="POST / HTTP/1.1\r\nHost: nap.bench\r\nConnection: close\r\nContent-Length: 4\r\n\r\nwake"
    apply_function nap echo "  replicas: 1
  scaleToZero: {idleAfter: $IDLE_AFTER}
  routes: {http: [{host: nap.bench}]}"
    wakes nap "$nap_request" wake "$WAKES"
    if [ "$MD_WAKES" -gt 0 ]; then
        md_body='# Wake\n\nA *markdown* request, see https://example.com.\n'
        md_request="POST /render HTTP/1.1\r\nHost: md.bench\r\nConnection: close\r\nContent-Type: text/markdown\r\nContent-Length: $(length "$md_body")\r\n\r\n$md_body"
        apply_function md markdown "  replicas: 1
  scaleToZero: {idleAfter: $IDLE_AFTER}
  routes: {http: [{host: md.bench}]}"
        wakes md "$md_request" '</p>\n' "$MD_WAKES"
        if [ -z "${SKIP_COMPILED:-}" ]; then
            # The baseline: the same function, its pods compiling the module.
            helm upgrade "$release" charts/nur --namespace "$ns" --wait --timeout 2m \
                "${sets[@]}" --set operator.compileArtifacts=false >"$work/helm-upgrade.out"
            deadline=$((SECONDS + 120))
            until ! kubectl get deployment md -n "$ns" -o jsonpath='{.spec.template.spec.containers[0].args}' |
                grep -q -- --artifact; do
                [ $SECONDS -lt $deadline ] || { echo "gateway.sh: md still pinned to its artifact" >&2; exit 1; }
                sleep 0.5
            done
            log "operator upgraded to compileArtifacts=false; md unpinned"
            wakes md "$md_request" '</p>\n' "$MD_WAKES" md-compiled
        fi
    fi
fi

# --- report ------------------------------------------------------------------------

curl -sf "http://127.0.0.1:$admin_port/metrics" >"$work/gateway-metrics.txt" || true
load_after="$(cut -d' ' -f1-3 /proc/loadavg)"
finished="$(date -u '+%Y-%m-%d %H:%M:%S UTC')"
name="${RESULTS_NAME:-gateway-$(date -u +%Y-%m-%d)}"
dirty="$(git status --porcelain -- gateway worker operator 2>/dev/null | awk '{print $2}' | tr '\n' ' ')"
LSCPU="$(lscpu | head -n 20)" NAME="$name" STARTED="$started" FINISHED="$finished" \
    ELAPSED=$(($(date +%s) - started_epoch)) LOAD_BEFORE="$load_before" LOAD_AT_LOAD="${load_at_load:-}" LOAD_AFTER="$load_after" \
    COMMIT="$(git rev-parse --short HEAD)" DIRTY="$dirty" CLIENTS="$CLIENTS" DURATION="$DURATION" \
    WARMUP="$WARMUP" ROUNDS="$ROUNDS" IDLE_AFTER="$IDLE_AFTER" WORKER_IMAGE="$WORKER_IMAGE" \
    python3 - >"$work/meta.json" <<'EOF'
import json, os, platform
e = os.environ
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
mem = next(int(l.split()[1]) for l in open("/proc/meminfo") if l.startswith("MemTotal:"))
osname = next((l.split("=", 1)[1].strip().strip('"') for l in open("/etc/os-release") if l.startswith("PRETTY_NAME=")), "?")
virt = next((l.split(":", 1)[1].strip() for l in e["LSCPU"].splitlines() if l.startswith("Hypervisor vendor")), "")
print(json.dumps({
    "started": e["STARTED"], "finished": e["FINISHED"], "elapsed_s": int(e["ELAPSED"]),
    "commit": e["COMMIT"], "dirty": e["DIRTY"].strip(),
    "machine": {"kind": "VM (%s)" % virt if virt else "?", "nproc": os.cpu_count(), "cpu": cpu,
                "memory_gib": round(mem / 1024 / 1024, 1), "os": osname, "kernel": platform.release(),
                "lscpu_head": e["LSCPU"].splitlines(), "load_before": e["LOAD_BEFORE"], "load_at_load_start": e["LOAD_AT_LOAD"], "load_after": e["LOAD_AFTER"]},
    "parameters": {"clients": int(e["CLIENTS"]), "duration_s": float(e["DURATION"]), "warmup_s": float(e["WARMUP"]),
                   "rounds": int(e["ROUNDS"]), "idle_after": e["IDLE_AFTER"], "worker_image": e["WORKER_IMAGE"],
                   "worker_log": "the worker's default (info: one line per echo request)",
                   "gateway": "release, on the host, --wake-timeout 90s, default log level",
                   "one_connection_per_request": True},
}))
EOF
python3 bench/gateway.py report "$records" "$results" --name "$name" --meta "$work/meta.json"
log "done in $(($(date +%s) - started_epoch)) s"
