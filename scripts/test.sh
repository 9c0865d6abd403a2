#!/usr/bin/env bash
# The test command (`make test`): installs what a fresh Debian machine lacks,
# builds the examples, checks formatting and lints, starts the test
# environment (testenv/: Kubernetes control plane, MinIO, helm) and runs
# every test of the workspace against it.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

# The real node's pods, the cluster's recent warnings and the node's own
# errors, short enough to read at the end of a failed run.
testenv_report() {
  step "test environment at the failure"
  kubectl() { .testenv/bin/kubectl --kubeconfig .testenv/kubeconfig "$@"; }
  kubectl get pods -A -o wide --field-selector "spec.nodeName=${NUR_TESTENV_NODE:-nur-node}" 2>&1 | tail -n 15
  kubectl get events -A --field-selector type=Warning,reason!=MissingClusterDNS \
    --sort-by=.lastTimestamp 2>&1 | tail -n 15 | cut -c1-250
  for log in kubelet kube-proxy containerd; do
    echo "-- .testenv/logs/$log.log (errors, last 5)"
    grep -E '^E|level=error' ".testenv/logs/$log.log" 2>/dev/null |
      grep -v -e 'cgroup config for the pod' -e 'cgroup limits for the pod' -e cadvisor |
      tail -n 5 | cut -c1-300
  done
  uptime
  df -h . | tail -n 1
}
started=$SECONDS

step "toolchain (rust-toolchain.toml) and system packages"
channel=$(sed -n 's/^channel = "\(.*\)"/\1/p' rust-toolchain.toml)
rustup toolchain install "$channel" --profile minimal \
  --component rustfmt,clippy --target wasm32-unknown-unknown,wasm32-wasip1 >/dev/null
missing=()
command -v curl >/dev/null || missing+=(curl)
command -v clang >/dev/null || missing+=(clang)
command -v wasm-ld >/dev/null || missing+=(lld)
# testenv's real node: containerd 1.6 with runc, iptables and conntrack for
# kube-proxy, binutils' strip for the images it imports.
command -v containerd >/dev/null || missing+=(containerd)
command -v runc >/dev/null || missing+=(runc)
command -v iptables >/dev/null || missing+=(iptables)
command -v conntrack >/dev/null || missing+=(conntrack)
command -v strip >/dev/null || missing+=(binutils)
# The console's browser tests: Debian's Chromium and its WebDriver.
command -v chromium >/dev/null || missing+=(chromium)
command -v chromedriver >/dev/null || missing+=(chromium-driver)
if ((${#missing[@]})); then
  apt-get update -qq && apt-get install -y -qq "${missing[@]}"
fi

step "zig (the zig examples' and template's compiler, from PyPI's ziglang)"
# A zig on PATH is used as it is; otherwise scripts/zig.sh installs the
# pinned wheel into target/tools once, first on PATH for the rest of this
# script and its children.
if ! command -v zig >/dev/null; then
  scripts/zig.sh >/dev/null
  export PATH="$PWD/target/tools/bin:$PATH"
fi
echo "zig $(zig version) ($(command -v zig))"

step "test environment: building in the background (log: target/testenv-build.log)"
mkdir -p target
make testenv-build >target/testenv-build.log 2>&1 &
testenv_build=$!
trap 'kill "$testenv_build" 2>/dev/null || true' EXIT

step "examples"
examples/build.sh

step "format and lints"
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings

step "build"
cargo test --workspace --locked --no-run

step "test environment"
if ! wait "$testenv_build"; then
  cat target/testenv-build.log
  echo "make testenv-build failed" >&2
  exit 1
fi
# Starts the control plane, MinIO and the real node, and imports the images
# of the binaries just built (no second build).
make testenv
set -a
# shellcheck disable=SC1091
. .testenv/env
set +a

step "tests"
# On a failure, what the real node was doing is printed last, where a CI
# log's tail shows it.
if ! cargo test --workspace --locked; then
  testenv_report
  exit 1
fi

printf '\n==> all tests passed in %ss\n' "$((SECONDS - started))"
