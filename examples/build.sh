#!/usr/bin/env bash
# Builds the example functions into examples/build/:
#   echo.wasm, http-hello.wasm  (Rust, wasm32-unknown-unknown)
#   markdown.wasm               (Rust with real dependencies, ~1.3 MB)
#   stream.wat                  (WebAssembly text; the worker reads it as is)
#   c-hello.wasm                (C, clang --target=wasm32, no libc)
#   go-hello.wasm               (Go, GOOS=wasip1 reactor; only when `go` is installed)
# Installs what is missing on a Debian 12 machine: the Rust wasm32 target
# (rustup) and clang + lld (apt-get; needs root). Re-runs are incremental.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="$here/build"
target=wasm32-unknown-unknown
mkdir -p "$out"
cd "$here"

# --- tools -----------------------------------------------------------------

# The toolchain comes from the repo's rust-toolchain.toml; it may lack the target.
if ! rustup target list --installed 2>/dev/null | grep -qx "$target"; then
    echo "build.sh: adding the Rust target $target"
    rustup target add "$target"
fi

# clang for wasm32 links with wasm-ld, from the lld package. Debian 12 ships
# clang-14 and lld-14: the `lld` package puts /usr/bin/wasm-ld there, and
# clang finds wasm-ld by that name on PATH.
find_wasm_ld() {
    command -v wasm-ld || ls /usr/bin/wasm-ld-* /usr/lib/llvm-*/bin/wasm-ld 2>/dev/null | sort -V | tail -n1 || true
}
if ! command -v clang >/dev/null || [ -z "$(find_wasm_ld)" ]; then
    echo "build.sh: installing clang and lld"
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq clang lld >/dev/null
fi
wasm_ld="$(find_wasm_ld)"
[ -n "$wasm_ld" ] || { echo "build.sh: wasm-ld not found after installing lld" >&2; exit 1; }
# When only a versioned wasm-ld-NN exists, point clang at it explicitly.
ld_flag=()
[ "$(basename "$wasm_ld")" = wasm-ld ] || ld_flag=("-fuse-ld=$wasm_ld")

# --- Rust: echo, http-hello --------------------------------------------------

cargo build --release --target "$target" --target-dir "$here/target"
rel="$here/target/$target/release"
# cp -u: copy only when newer, so re-runs leave unchanged outputs alone.
cp -u "$rel/echo.wasm" "$out/echo.wasm"
cp -u "$rel/http_hello.wasm" "$out/http-hello.wasm"
cp -u "$rel/markdown.wasm" "$out/markdown.wasm"

# --- WAT: stream -------------------------------------------------------------

cp -u stream/stream.wat "$out/stream.wat"

# --- C: c-hello --------------------------------------------------------------

# wasm-ld exports `memory` by itself (an --export=memory would fail).
if [ ! -e "$out/c-hello.wasm" ] || [ c-hello/hello.c -nt "$out/c-hello.wasm" ] || [ "$0" -nt "$out/c-hello.wasm" ]; then
    clang --target=wasm32 -nostdlib -O2 -Wall -Wextra -Werror "${ld_flag[@]}" \
        -Wl,--no-entry -Wl,--strip-all \
        -Wl,--export=alloc -Wl,--export=poll_stream \
        -o "$out/c-hello.wasm" c-hello/hello.c
fi

# --- Go: go-hello (when Go is installed) -------------------------------------

# A reactor (-buildmode=c-shared): it exports _initialize, which the worker
# calls once per instance; the Go runtime imports WASI preview 1.
outputs=(echo.wasm http-hello.wasm markdown.wasm stream.wat c-hello.wasm)
if command -v go >/dev/null; then
    if [ ! -e "$out/go-hello.wasm" ] || [ -n "$(find go-hello "$here/build.sh" -newer "$out/go-hello.wasm" -type f)" ]; then
        (cd go-hello && GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -trimpath \
            -o "$out/go-hello.wasm" .)
    fi
    outputs+=(go-hello.wasm)
else
    echo "build.sh: go not found, go-hello skipped"
fi

echo "build.sh: outputs in $out:"
for f in "${outputs[@]}"; do
    printf '  %-16s %7d bytes\n' "$f" "$(stat -c %s "$out/$f")"
done
