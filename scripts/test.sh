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
  --component rustfmt,clippy --target wasm32-unknown-unknown >/dev/null
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

step "zig (the zig template's compiler, from PyPI's ziglang)"
# A zig on PATH is used as it is. Otherwise the pinned ziglang wheel goes to
# target/tools/ziglang-VERSION (pip --target: the system's Python is left
# alone) once, and target/tools/bin/zig, first on PATH for the rest of this
# script and its children, points at the binary the wheel holds.
zig_version=0.17.1
if ! command -v zig >/dev/null; then
  zig_dir="$PWD/target/tools/ziglang-$zig_version"
  if [ ! -x "$zig_dir/ziglang/zig" ]; then
    python3 -m pip --version >/dev/null 2>&1 ||
      { apt-get update -qq && apt-get install -y -qq python3-pip; }
    rm -rf "$zig_dir.partial"
    python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
      --no-deps --target "$zig_dir.partial" "ziglang==$zig_version"
    mv "$zig_dir.partial" "$zig_dir"
  fi
  mkdir -p target/tools/bin
  ln -sfn "$zig_dir/ziglang/zig" target/tools/bin/zig
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
