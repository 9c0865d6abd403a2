#!/usr/bin/env bash
# Installs zig, the pinned `ziglang` wheel from PyPI, into target/tools once
# (pip --target: the system's Python is left alone) and prints the path of
# target/tools/bin/zig, a link to the binary the wheel holds.
set -euo pipefail
cd "$(dirname "$0")/.."
zig_version=0.17.1
zig_dir="$PWD/target/tools/ziglang-$zig_version"
if [ ! -x "$zig_dir/ziglang/zig" ]; then
  python3 -m pip --version >/dev/null 2>&1 ||
    { apt-get update -qq && apt-get install -y -qq python3-pip; } >&2
  rm -rf "$zig_dir.partial"
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
    --no-deps --target "$zig_dir.partial" "ziglang==$zig_version" >&2
  mv "$zig_dir.partial" "$zig_dir"
fi
mkdir -p target/tools/bin
ln -sfn "$zig_dir/ziglang/zig" target/tools/bin/zig
echo "$PWD/target/tools/bin/zig"
