//! `nur new` and `nur build` as a user runs them: the real `nur` binary in
//! a fresh directory, the real toolchains (cargo for wasm32, clang, and zig
//! on PATH as scripts/test.sh provides it), and the modules it writes served
//! by the real `nur-worker`.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use nur_testkit::net::{exchange, free_port};
use nur_testkit::process::{Process, binary, failed, succeeded as ok};

fn nur(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nur"))
        .args(args)
        .current_dir(dir)
        // The functions' own target directories, not the workspace's.
        .env_remove("CARGO_TARGET_DIR")
        .output()
        .unwrap()
}

/// Serves `module` with the real worker and returns its answer to `input`.
fn serve_and_call(module: &Path, input: &[u8], log: &Path) -> String {
    let (port, admin) = (free_port(), free_port());
    let mut cmd = Command::new(binary("nur-worker"));
    cmd.arg("serve")
        .arg("--module")
        .arg(module)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--admin-listen", &format!("127.0.0.1:{admin}")]);
    let mut worker = Process::spawn(cmd, log.to_path_buf());
    worker.wait_http_ok(admin, "/readyz", Duration::from_secs(60));
    String::from_utf8(exchange(("127.0.0.1", port), input).unwrap()).unwrap()
}

/// What every template's function is called with: a whole HTTP request.
const REQUEST: &[u8] = b"GET /hi HTTP/1.1\r\nHost: x\r\n\r\n";

#[test]
fn nur_new_for_each_template_builds_a_function_that_answers() {
    let dir = tempfile::tempdir().unwrap();
    for (template, name) in [
        ("rust", "Hello Rust"),
        ("c", "hello-c"),
        ("wat", "hello_wat"),
        ("zig", "Hello Zig"),
        ("go", "Hello Go"),
        ("cpp", "Hello Cpp"),
        ("assemblyscript", "Hello AS"),
    ] {
        let out = ok(nur(dir.path(), &["new", template, name]));
        assert!(out.contains("created"), "{out}");
    }
    // One entry each, in the original format.
    let nurfile = std::fs::read_to_string(dir.path().join("nurfile.yaml")).unwrap();
    assert!(
        nurfile
            .contains("  - name: \"Hello Rust\"\n    directory: /hello-rust\n    template: rust\n"),
        "{nurfile}"
    );
    let out = ok(nur(dir.path(), &["build"]));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 7, "{out}");
    for (line, label) in lines.iter().zip([
        "hello-rust",
        "hello-c",
        "hello-wat",
        "hello-zig",
        "hello-go",
        "hello-cpp",
        "hello-as",
    ]) {
        let fields: Vec<&str> = line.split('\t').collect();
        assert_eq!(fields[0], label, "{line}");
        assert!(fields[1].ends_with("before zstd)"), "{line}");
        let path = dir.path().join(format!(".nur/build/{label}.wasm.zst"));
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(
            fields[2],
            format!("sha256:{}", nur_module::sha256_hex(&bytes)),
            "{line}"
        );
        assert_eq!(fields[3], format!(".nur/build/{label}.wasm.zst"));
        let answer = serve_and_call(&path, REQUEST, &dir.path().join(format!("{label}.log")));
        assert!(
            answer.starts_with("HTTP/1.1 200 OK\r\n"),
            "{label}: {answer}"
        );
        assert!(answer.contains("\r\n\r\nHello from "), "{label}: {answer}");
        // The skeletons that log: the chunk's size, a line of the worker's.
        if ["hello-rust", "hello-zig", "hello-go", "hello-as"].contains(&label) {
            let log = std::fs::read_to_string(dir.path().join(format!("{label}.log"))).unwrap();
            let line = format!("{label}: {} bytes", REQUEST.len());
            assert!(log.contains(&line), "{label}: {log}");
        }
    }
    // A second `nur new` of a name the nurfile has is refused.
    let err = failed(nur(dir.path(), &["new", "rust", "hello rust"]));
    assert!(
        err.contains("already has a function \"Hello Rust\""),
        "{err}"
    );
}

#[test]
fn the_original_nurfile_with_three_rust_functions_builds() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["hello-world", "🐄 cowsay", "echo"] {
        ok(nur(dir.path(), &["new", "rust", name]));
    }
    // The original platform's format, with explicit builds.
    let original = "functions:
  - name: hello-world
    directory: /hello-world
    template: rust
    build:
      command: cargo build --target wasm32-unknown-unknown --release --target-dir target
      output: /target/wasm32-unknown-unknown/release/hello_world.wasm
  - name: 🐄 cowsay
    directory: /cowsay
    template: rust
  - name: echo
    directory: /echo
    template: rust
    build:
      command: cargo build --target wasm32-unknown-unknown --release --target-dir target
      output: /target/wasm32-unknown-unknown/release/echo.wasm
";
    std::fs::write(dir.path().join("nurfile.yaml"), original).unwrap();
    let out = ok(nur(dir.path(), &["build"]));
    let labels: Vec<&str> = out.lines().map(|l| l.split('\t').next().unwrap()).collect();
    assert_eq!(labels, ["hello-world", "cowsay", "echo"], "{out}");
    let answer = serve_and_call(
        &dir.path().join(".nur/build/cowsay.wasm.zst"),
        b"moo",
        &dir.path().join("cowsay.log"),
    );
    assert!(answer.ends_with("Hello from cowsay!\n"), "{answer}");
    // One function by either of its names.
    let out = ok(nur(dir.path(), &["build", "🐄 cowsay"]));
    assert_eq!(out.lines().count(), 1, "{out}");
}

#[test]
fn build_errors_name_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    // No nurfile.
    let err = failed(nur(dir.path(), &["build"]));
    assert!(err.contains("nurfile.yaml: cannot read it"), "{err}");
    std::fs::create_dir_all(dir.path().join("f")).unwrap();
    std::fs::write(
        dir.path().join("f/wasi.wat"),
        r#"(module (import "env" "abort" (func))
             (memory (export "memory") 1)
             (func (export "alloc") (param i32) (result i32) i32.const 0)
             (func (export "poll_stream") (param i32 i32)))"#,
    )
    .unwrap();
    std::fs::write(
        dir.path().join("nurfile.yaml"),
        "functions:
  - name: broken
    directory: /f
    template: wat
    build: {command: 'echo compiling; echo no compiler here >&2; exit 3', output: x.wasm}
  - name: silent
    directory: /f
    template: wat
    build: {command: 'true', output: missing.wasm}
  - name: wasi
    directory: /f
    template: wat
    build: {command: 'true', output: wasi.wat}
",
    )
    .unwrap();
    let err = failed(nur(dir.path(), &["build"]));
    // The failed build: its command, exit status and output.
    assert!(
        err.contains("broken: `echo compiling; echo no compiler here >&2; exit 3` in"),
        "{err}"
    );
    assert!(err.contains("exit status: 3"), "{err}");
    assert!(err.contains("compiling\nno compiler here"), "{err}");
    // No module where build.output says.
    assert!(err.contains("silent: `true` succeeded but"), "{err}");
    assert!(err.contains("missing.wasm is not there"), "{err}");
    // The ABI rule broken.
    assert!(err.contains("wasi: "), "{err}");
    assert!(err.contains("breaks the Nur ABI"), "{err}");
    assert!(err.contains("env.abort"), "{err}");
    // A function the nurfile does not have.
    let err = failed(nur(dir.path(), &["build", "nope"]));
    assert!(
        err.contains("no function named \"nope\"; the nurfile has: broken, silent, wasi"),
        "{err}"
    );
}
