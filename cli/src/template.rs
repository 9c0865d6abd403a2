//! Templates: what `template:` names in a nurfile. Each has the build a
//! function without `build:` gets, and the skeleton `nur new` writes.

use serde::Deserialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Template {
    /// A Rust crate built with cargo for wasm32-unknown-unknown.
    Rust,
    /// C built with clang for wasm32, without libc.
    C,
    /// WebAssembly text, the module as written.
    Wat,
    /// Zig built with zig for wasm32-freestanding, without libc.
    Zig,
    /// Go built for GOOS=wasip1 as a reactor (the Go runtime uses the
    /// worker's WASI preview 1).
    Go,
    /// C++ built with clang++ for wasm32-wasi, with libc++ and wasi-libc
    /// (examples/cpp-hello).
    Cpp,
    /// AssemblyScript built with the npm package `assemblyscript`, pinned
    /// by its package-lock.json (examples/as-hello).
    Assemblyscript,
}

/// A build: `command` run by `sh -c` in the function's directory writes
/// `output` (relative to it).
pub struct DefaultBuild {
    pub command: String,
    pub output: String,
}

impl Template {
    /// The build of a function named `label` (its Kubernetes name) that has
    /// no `build:`.
    pub fn default_build(self, label: &str) -> DefaultBuild {
        let (command, output) = match self {
            Template::Rust => (
                "cargo build --target wasm32-unknown-unknown --release --target-dir target".to_string(),
                format!(
                    "target/wasm32-unknown-unknown/release/{}.wasm",
                    label.replace('-', "_")
                ),
            ),
            Template::C => (
                "clang --target=wasm32 -O2 -nostdlib -Wl,--no-entry -Wl,--export-dynamic -o function.wasm function.c"
                    .to_string(),
                "function.wasm".to_string(),
            ),
            Template::Wat => ("true".to_string(), "function.wat".to_string()),
            Template::Go => (
                "GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -trimpath -o function.wasm ."
                    .to_string(),
                "function.wasm".to_string(),
            ),
            Template::Cpp => (
                "clang++ --target=wasm32-wasi -O2 -std=c++17 -fno-exceptions -fno-rtti -mexec-model=reactor -Wl,--strip-all -o function.wasm function.cpp"
                    .to_string(),
                "function.wasm".to_string(),
            ),
            Template::Assemblyscript => (
                "{ [ -x node_modules/.bin/asc ] || npm ci --no-audit --no-fund --loglevel=error; } && npm run --silent build"
                    .to_string(),
                "function.wasm".to_string(),
            ),
            Template::Zig => (
                "zig build-exe function.zig -target wasm32-freestanding -fno-entry -rdynamic -O ReleaseSmall -femit-bin=function.wasm"
                    .to_string(),
                "function.wasm".to_string(),
            ),
        };
        DefaultBuild { command, output }
    }

    /// The files of a new function named `label`: path and contents.
    pub fn skeleton(self, label: &str) -> Vec<(&'static str, String)> {
        match self {
            Template::Rust => vec![
                (
                    "Cargo.toml",
                    format!(
                        "[package]\nname = \"{}\"\nversion = \"0.1.0\"\nedition = \"2024\"\n\n\
                         [lib]\ncrate-type = [\"cdylib\"]\n\n[profile.release]\nopt-level = \"s\"\nlto = true\n\
                         panic = \"abort\"\nstrip = true\n\n# Its own workspace, wherever it lives.\n[workspace]\n",
                        label.replace('-', "_")
                    ),
                ),
                ("src/lib.rs", RUST_SKELETON.replace("NAME", label)),
            ],
            Template::C => vec![("function.c", C_SKELETON.replace("NAME", label))],
            Template::Wat => vec![("function.wat", wat_skeleton(label))],
            Template::Zig => vec![("function.zig", ZIG_SKELETON.replace("zig-hello", label))],
            Template::Cpp => vec![("function.cpp", CPP_SKELETON.replace("cpp-hello", label))],
            Template::Assemblyscript => vec![
                ("package.json", AS_PACKAGE.replace("as-hello", label)),
                ("package-lock.json", AS_LOCK.replace("as-hello", label)),
                ("assembly/index.ts", AS_SKELETON.replace("as-hello", label)),
                (".gitignore", "node_modules/\nfunction.wasm\n".into()),
            ],
            Template::Go => vec![
                (
                    "go.mod",
                    format!("module nur.dev/functions/{label}\n\ngo 1.24\n"),
                ),
                ("main.go", GO_SKELETON.replace("NAME", label)),
            ],
        }
    }
}

/// A Rust function that answers every request with a greeting (the Nur
/// ABI: docs/ABI.md).
const RUST_SKELETON: &str = r#"//! NAME: a Nur function. It answers the first chunk a client sends with an
//! HTTP/1.1 200 response that greets it, and logs the chunk's size.
//! The ABI: https://github.com/nur-dev/nur/blob/main/docs/ABI.md

#[link(wasm_import_module = "nur")]
unsafe extern "C" {
    fn nur_send(ptr: *const u8, len: usize);
    fn nur_log(ptr: *const u8, len: usize);
    fn nur_end();
}

static mut BUFFER: [u8; 65536] = [0; 65536];

/// Where the host writes the next chunk of input (at most `len` bytes).
#[unsafe(no_mangle)]
pub extern "C" fn alloc(len: usize) -> *mut u8 {
    assert!(len <= 65536);
    &raw mut BUFFER as *mut u8
}

/// A chunk of input arrived (`len` 0: the client closed its side).
#[unsafe(no_mangle)]
pub extern "C" fn poll_stream(_ptr: *const u8, len: usize) {
    let body = "Hello from NAME!\n";
    let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", body.len());
    let line = format!("NAME: {len} bytes");
    unsafe {
        nur_log(line.as_ptr(), line.len());
        nur_send(head.as_ptr(), head.len());
        nur_send(body.as_ptr(), body.len());
        nur_end();
    }
}
"#;

const C_SKELETON: &str = r#"// NAME: a Nur function in C (no libc). It answers the first chunk a
// client sends with an HTTP/1.1 200 response that greets it.
// The ABI: https://github.com/nur-dev/nur/blob/main/docs/ABI.md

__attribute__((import_module("nur"), import_name("nur_send"))) void nur_send(const char *p, unsigned long n);
__attribute__((import_module("nur"), import_name("nur_end"))) void nur_end(void);

static char buffer[65536];
static const char answer[] = "HTTP/1.1 200 OK\r\ncontent-length: 17\r\n\r\nHello from NAME!\n";

__attribute__((export_name("alloc"))) char *alloc(unsigned long len) { return len <= sizeof buffer ? buffer : 0; }

__attribute__((export_name("poll_stream"))) void poll_stream(const char *p, unsigned long len) {
    (void)p; (void)len;
    nur_send(answer, sizeof answer - 1);
    nur_end();
}
"#;

/// A Go function that answers every request with a greeting and logs the
/// chunk's size (on stdout, which the worker's WASI puts in the log).
const GO_SKELETON: &str = r#"// NAME: a Nur function in Go. It answers the first chunk a client sends
// with an HTTP/1.1 200 response that greets it, and logs the chunk's size
// (stdout goes to the function's log). Built with GOOS=wasip1 GOARCH=wasm
// -buildmode=c-shared; the ABI: https://github.com/nur-dev/nur/blob/main/docs/ABI.md
package main

import (
	"fmt"
	"unsafe"
)

//go:wasmimport nur nur_send
func nurSend(ptr unsafe.Pointer, len uint32)

//go:wasmimport nur nur_end
func nurEnd()

var buffer []byte

//go:wasmexport alloc
func alloc(n uint32) uint32 {
	if uint32(cap(buffer)) < n || n == 0 {
		buffer = make([]byte, max(n, 1))
	}
	return uint32(uintptr(unsafe.Pointer(unsafe.SliceData(buffer))))
}

func send(b []byte) {
	nurSend(unsafe.Pointer(unsafe.SliceData(b)), uint32(len(b)))
}

//go:wasmexport poll_stream
func pollStream(ptr, n uint32) {
	fmt.Printf("NAME: %d bytes\n", n)
	body := "Hello from NAME!\n"
	send([]byte(fmt.Sprintf("HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n", len(body))))
	send([]byte(body))
	nurEnd()
}

func main() {}
"#;

/// A Zig function (examples/zig-hello, its name replaced) that answers every request with a greeting and logs the
/// chunk's size (the Nur ABI). In its default build `-fno-entry` leaves out
/// `_start` and `-rdynamic` exports the `export fn`s (the linker exports
/// `memory`); it imports nothing but `nur`'s functions.
const ZIG_SKELETON: &str = include_str!("../../examples/zig-hello/hello.zig");

/// examples/cpp-hello: C++ on the Nur ABI, answering an HTTP request once
/// its headers are in.
const CPP_SKELETON: &str = include_str!("../../examples/cpp-hello/hello.cpp");

/// examples/as-hello: AssemblyScript on the Nur ABI, with its pinned
/// compiler (package.json and its lockfile).
const AS_SKELETON: &str = include_str!("../../examples/as-hello/assembly/index.ts");
const AS_PACKAGE: &str = include_str!("../../examples/as-hello/package.json");
const AS_LOCK: &str = include_str!("../../examples/as-hello/package-lock.json");

fn wat_skeleton(label: &str) -> String {
    let body = format!("Hello from {label}!\n");
    let answer = format!(
        "HTTP/1.1 200 OK\\r\\ncontent-length: {}\\r\\n\\r\\n{}",
        body.len(),
        body.replace('\n', "\\n")
    );
    let answer_len = format!(
        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{}",
        body.len(),
        body
    )
    .len();
    format!(
        r#";; {label}: a Nur function in WebAssembly text. It answers the first chunk
;; a client sends with an HTTP/1.1 200 response that greets it.
;; The ABI: https://github.com/nur-dev/nur/blob/main/docs/ABI.md
(module
  (import "nur" "nur_send" (func $send (param i32 i32)))
  (import "nur" "nur_end" (func $end))
  (memory (export "memory") 1)
  (data (i32.const 0) "{answer}")
  (func (export "alloc") (param i32) (result i32) i32.const 4096)
  (func (export "poll_stream") (param i32 i32)
    (call $send (i32.const 0) (i32.const {answer_len}))
    (call $end)))
"#
    )
}
