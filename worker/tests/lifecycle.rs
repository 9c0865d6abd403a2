//! Start, readiness, refusal of bad modules, and graceful shutdown.

mod support;

use std::io::Write;
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use nur_testkit::examples;
use support::{BIN, Worker, read_to_close, wat};

const MINIMAL: &str = r#"(func (export "poll_stream") (param i32 i32) (call $end))"#;

#[test]
fn health_and_readiness() {
    let worker = Worker::start(&examples::path("echo.wasm"), &[]);
    assert_eq!(worker.admin_get("/healthz"), (200, "ok\n".into()));
    assert_eq!(worker.admin_get("/readyz"), (200, "ready\n".into()));
    let (status, metrics) = worker.admin_get("/metrics");
    assert_eq!(status, 200);
    for name in [
        "nur_connections_total",
        "nur_connections_active",
        "nur_connection_duration_seconds_bucket",
        "nur_received_bytes_total",
        "nur_sent_bytes_total",
        "nur_module_compile_seconds",
    ] {
        assert!(metrics.contains(name), "{name} missing from\n{metrics}");
    }
    assert!(worker.metric("nur_module_compile_seconds") > 0.0);
}

#[test]
fn sigterm_turns_readiness_off_stops_listening_and_lets_in_flight_requests_finish() {
    let mut worker = Worker::start(
        &examples::path("http-hello.wasm"),
        &["--shutdown-grace", "20s"],
    );
    let mut in_flight = worker.connect();
    in_flight.write_all(b"GET /late HTTP/1.1\r\n").unwrap();
    assert_eq!(worker.wait_metric("nur_connections_active", 1.0), 1.0);
    worker.signal(libc::SIGTERM);
    assert!(
        worker
            .wait_log(&["shutting down"], Duration::from_secs(5))
            .is_some()
    );
    assert_eq!(worker.admin_get("/readyz").0, 503);
    assert!(
        TcpStream::connect(worker.addr).is_err(),
        "the listener is closed"
    );
    in_flight.write_all(b"Host: x\r\n\r\n").unwrap();
    let response = String::from_utf8(read_to_close(&mut in_flight)).unwrap();
    assert!(response.ends_with("Hello, /late!\n"), "{response}");
    let status = worker
        .wait_exit(Duration::from_secs(5))
        .expect("exits once drained");
    assert!(status.success(), "{status:?}");
}

#[test]
fn after_the_grace_period_the_worker_exits_anyway() {
    let mut worker = Worker::start(
        &examples::path("http-hello.wasm"),
        &["--shutdown-grace", "500ms", "--idle-timeout", "60s"],
    );
    let mut stuck = worker.connect();
    stuck.write_all(b"GET /never-finished").unwrap();
    assert_eq!(worker.wait_metric("nur_connections_active", 1.0), 1.0);
    let started = Instant::now();
    worker.signal(libc::SIGTERM);
    let status = worker
        .wait_exit(Duration::from_secs(5))
        .expect("exits after the grace period");
    assert!(status.success(), "{status:?}");
    assert!(started.elapsed() >= Duration::from_millis(450));
    assert!(
        worker
            .wait_log(&["grace period over"], Duration::from_secs(1))
            .is_some()
    );
}

#[test]
fn a_pinned_digest_that_differs_is_refused_with_both_digests() {
    let path = examples::path("echo.wasm");
    let actual = nur_module::sha256_hex(&std::fs::read(&path).unwrap());
    let wrong = "0".repeat(64);
    let failed = Worker::try_start(&path, &["--sha256", &wrong])
        .err()
        .expect("refused");
    assert_eq!(failed.status.code(), Some(1));
    assert!(
        failed.logs.contains(&actual) && failed.logs.contains(&wrong),
        "{}",
        failed.logs
    );
    Worker::start(&path, &["--sha256", &actual]);
}

#[test]
fn a_module_that_breaks_the_abi_is_refused_at_start() {
    let module = support::module_file(&wat(MINIMAL).replace("\"alloc\"", "\"malloc\""), ".wat");
    let failed = Worker::try_start(&module, &[]).err().expect("refused");
    failed.assert_refused("missing export alloc");
}

#[test]
fn every_flag_is_also_an_environment_variable() {
    let module = support::module_file(&wat(MINIMAL), ".wat");
    let mut command = Command::new(BIN);
    command
        .arg("serve")
        .env("NUR_MODULE", &module)
        .env("NUR_LISTEN", "127.0.0.1:0")
        .env("NUR_ADMIN_LISTEN", "127.0.0.1:0")
        .env("NUR_LOG_FORMAT", "json")
        .env("NUR_FUNCTION_NAME", "from-env")
        .env("NUR_TIMEOUT", "500ms");
    let worker = Worker::spawn(command).expect("starts from the environment alone");
    assert!(worker.logs()[0].contains("\"function\":\"from-env\""));
    assert_eq!(worker.request(b"x"), b"");
    let bad = Command::new(BIN)
        .args(["serve", "--module", "x.wasm"])
        .env("NUR_TIMEOUT", "soon")
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("\"soon\""));
}

#[test]
fn check_summarises_a_good_module() {
    let (code, out) = support::check(&examples::path("echo.wasm"));
    assert_eq!(code, 0, "{out}");
    for line in [
        "memory    17 pages (1.1 MiB) initial, no maximum",
        "tables    12 entries initial, 12 maximum",
        "imports   nur.nur_log (i32, i32) -> ()",
        "          nur.nur_end () -> ()",
        "ok: follows the Nur function ABI v1",
    ] {
        assert!(out.contains(line), "{line:?} missing from\n{out}");
    }
}

#[test]
fn check_names_the_problem_of_a_bad_module() {
    let cases = [
        (
            "\x7fELF not a module",
            "not WebAssembly: no \\0asm magic number (starts with 7f454c46206e6f74) and not WAT text",
        ),
        (
            &wat(MINIMAL).replace(
                "(import \"nur\" \"nur_end\" (func $end))",
                "(import \"nur\" \"nur_end\" (func $end)) (import \"env\" \"abort\" (func))",
            ),
            "import env.abort: only functions from \"nur\" may be imported",
        ),
        (
            &wat(MINIMAL).replace(
                "\"nur_send\" (func $send (param i32 i32))",
                "\"nur_send\" (func $send (param i64))",
            ),
            "import nur.nur_send has signature (i64) -> (), expected (i32, i32) -> ()",
        ),
        (
            &wat(MINIMAL).replace("(export \"alloc\")", ""),
            "missing export alloc: expected a function (i32) -> (i32)",
        ),
        (
            &wat(MINIMAL).replace("(param i32 i32) (call $end)", "(param i32) (call $end)"),
            "export poll_stream has signature (i32) -> (), expected (i32, i32) -> ()",
        ),
        (
            &wat(MINIMAL).replace("(memory (export \"memory\") 2)", "(memory 2)"),
            "missing export memory: expected a memory",
        ),
    ];
    for (module, message) in cases {
        let file = support::module_file(module, ".wat");
        let (code, out) = support::check(&file);
        assert_eq!(code, 1, "{out}");
        assert!(
            out.starts_with("error: ") && out.contains(message),
            "{message:?} missing from {out}"
        );
    }
    let (code, out) = support::check(std::path::Path::new("/nonexistent/f.wasm"));
    assert_eq!(
        (code, out.trim()),
        (1, "error: /nonexistent/f.wasm: not found")
    );
}
