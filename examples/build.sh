#!/usr/bin/env bash
# Builds the example functions into examples/build/:
#   echo.wasm, http-hello.wasm  (Rust, wasm32-unknown-unknown)
#   markdown.wasm               (Rust with real dependencies, ~1.3 MB)
#   stream.wat                  (WebAssembly text; the worker reads it as is)
#   c-hello.wasm                (C, clang --target=wasm32, no libc)
#   cpp-hello.wasm              (C++, clang++ --target=wasm32-wasi, libc++ and wasi-libc)
#   zig-hello.wasm              (Zig, wasm32-freestanding)
#   as-hello.wasm               (AssemblyScript, npm `assemblyscript`, pinned in as-hello/)
#   go-hello.wasm               (Go, GOOS=wasip1 reactor)
# and the WASI commands (stdin and stdout are the connection):
#   shout.wasm                  (Rust std, wasm32-wasip1)
#   c-sandbox.wasm              (C, wasi-libc)
#   go-wc.wasm                  (Go, GOOS=wasip1)
# Installs what is missing on a Debian 12 machine: the Rust targets (rustup),
# clang + lld, wasi-libc and libc++ for wasm32 (apt-get; needs root), and
# zig (PyPI's ziglang, pinned, into target/tools). Go 1.21 or later (GOOS=wasip1;
# Debian 12's is older) and Node.js 20 with npm (AssemblyScript) must be there. Re-runs are incremental.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="$here/build"
target=wasm32-unknown-unknown
mkdir -p "$out"
cd "$here"

# --- tools -----------------------------------------------------------------

# The toolchain comes from the repo's rust-toolchain.toml; it may lack the targets.
for wanted in "$target" wasm32-wasip1; do
    if ! rustup target list --installed 2>/dev/null | grep -qx "$wanted"; then
        echo "build.sh: adding the Rust target $wanted"
        rustup target add "$wanted"
    fi
done

# clang for wasm32 links with wasm-ld, from the lld package. Debian 12 ships
# clang-14 and lld-14: the `lld` package puts /usr/bin/wasm-ld there, and
# clang finds wasm-ld by that name on PATH.
find_wasm_ld() {
    command -v wasm-ld || ls /usr/bin/wasm-ld-* /usr/lib/llvm-*/bin/wasm-ld 2>/dev/null | sort -V | tail -n1 || true
}
# wasi-libc, libc++ and the compiler runtime for wasm32-wasi: Debian puts
# them where clang --target=wasm32-wasi looks by itself.
packages=()
command -v clang >/dev/null || packages+=(clang)
[ -n "$(find_wasm_ld)" ] || packages+=(lld)
[ -e /usr/lib/wasm32-wasi/libc.a ] || packages+=(wasi-libc)
ls /usr/lib/wasm32-wasi/libc++.a /usr/lib/llvm-*/lib/wasm32-wasi/libc++.a >/dev/null 2>&1 ||
    packages+=(libc++-dev-wasm32) # pulls in libc++abi for wasm32
ls /usr/lib/llvm-*/lib/clang/*/lib/wasi/libclang_rt.builtins-wasm32.a >/dev/null 2>&1 ||
    packages+=(libclang-rt-dev-wasm32)
if ((${#packages[@]})); then
    echo "build.sh: installing ${packages[*]}"
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq "${packages[@]}" >/dev/null
fi
command -v go >/dev/null ||
    { echo "build.sh: go 1.21 or later is needed (go-hello, go-wc): https://go.dev/doc/install" >&2; exit 1; }
command -v npm >/dev/null ||
    { echo "build.sh: Node.js 20 or later with npm is needed (as-hello)" >&2; exit 1; }
wasm_ld="$(find_wasm_ld)"
[ -n "$wasm_ld" ] || { echo "build.sh: wasm-ld not found after installing lld" >&2; exit 1; }
# When only a versioned wasm-ld-NN exists, point clang at it explicitly.
ld_flag=()
[ "$(basename "$wasm_ld")" = wasm-ld ] || ld_flag=("-fuse-ld=$wasm_ld")

# --- Rust: echo, http-hello --------------------------------------------------

cargo build --release --target "$target" --target-dir "$here/target" --workspace --exclude shout
rel="$here/target/$target/release"
# cp -u: copy only when newer, so re-runs leave unchanged outputs alone.
cp -u "$rel/echo.wasm" "$out/echo.wasm"
cp -u "$rel/http_hello.wasm" "$out/http-hello.wasm"
cp -u "$rel/markdown.wasm" "$out/markdown.wasm"

# --- Rust: shout, a WASI command (std's stdin and stdout) --------------------

cargo build --release --target wasm32-wasip1 --target-dir "$here/target" -p shout
cp -u "$here/target/wasm32-wasip1/release/shout.wasm" "$out/shout.wasm"

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

# stale OUTPUT SOURCE...: true when OUTPUT is missing or older than a source
# (or this script).
stale() {
    local output="$out/$1"
    shift
    [ ! -e "$output" ] || [ -n "$(find "$@" "$here/build.sh" -newer "$output" -type f)" ]
}

# --- C: c-sandbox, a WASI command with wasi-libc ----------------------------

if stale c-sandbox.wasm c-sandbox; then
    clang --target=wasm32-wasi -O2 -Wall -Wextra -Werror "${ld_flag[@]}" -Wl,--strip-all \
        -o "$out/c-sandbox.wasm" c-sandbox/sandbox.c
fi

# --- C++: cpp-hello, libc++ and wasi-libc, a reactor on the Nur ABI ----------

# -mexec-model=reactor: no main; wasi-libc's _initialize runs the static
# constructors, and the worker calls it once per instance.
if stale cpp-hello.wasm cpp-hello; then
    clang++ --target=wasm32-wasi -O2 -std=c++17 -fno-exceptions -fno-rtti \
        -Wall -Wextra -Werror "${ld_flag[@]}" -mexec-model=reactor -Wl,--strip-all \
        -o "$out/cpp-hello.wasm" cpp-hello/hello.cpp
fi

# --- Zig: zig-hello ------------------------------------------------------------

# zig from PATH, else PyPI's ziglang (pinned) in the repository's target/tools.
zig="$(command -v zig || "$here/../scripts/zig.sh")"
if stale zig-hello.wasm zig-hello; then
    "$zig" build-exe zig-hello/hello.zig -target wasm32-freestanding -fno-entry -rdynamic \
        -O ReleaseSmall --cache-dir "$here/target/zig-cache" -femit-bin="$out/zig-hello.wasm"
    rm -f "$out/zig-hello.wasm.o"
fi

# --- AssemblyScript: as-hello ------------------------------------------------

# The compiler is the npm package pinned by as-hello/package-lock.json.
if stale as-hello.wasm as-hello/assembly as-hello/package.json; then
    (cd as-hello && { [ -x node_modules/.bin/asc ] || npm ci --no-audit --no-fund --loglevel=error; } &&
        node_modules/.bin/asc assembly/index.ts --outFile "$out/as-hello.wasm" \
            --optimize --runtime stub --use abort=assembly/index/abort)
fi

# --- Go: go-hello (a reactor), go-wc (a command) -----------------------------

# go-hello is a reactor (-buildmode=c-shared): it exports _initialize, which
# the worker calls once per instance; the Go runtime imports WASI preview 1.
if stale go-hello.wasm go-hello; then
    (cd go-hello && GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -trimpath \
        -o "$out/go-hello.wasm" .)
fi
# go-wc is a plain program: its main runs once per connection.
if stale go-wc.wasm go-wc; then
    (cd go-wc && GOOS=wasip1 GOARCH=wasm go build -trimpath -o "$out/go-wc.wasm" .)
fi

outputs=(echo.wasm http-hello.wasm markdown.wasm stream.wat c-hello.wasm cpp-hello.wasm
    zig-hello.wasm as-hello.wasm go-hello.wasm shout.wasm c-sandbox.wasm go-wc.wasm)

echo "build.sh: outputs in $out:"
for f in "${outputs[@]}"; do
    printf '  %-16s %7d bytes\n' "$f" "$(stat -c %s "$out/$f")"
done
