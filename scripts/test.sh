#!/usr/bin/env bash
# The test command (`make test`): installs what a fresh Debian machine lacks,
# builds the examples, checks formatting and lints, starts the test
# environment (testenv/: Kubernetes control plane, MinIO, helm) and runs
# every test of the workspace against it.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }
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
cargo test --workspace --locked

printf '\n==> all tests passed in %ss\n' "$((SECONDS - started))"
