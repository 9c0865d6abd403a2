//! Every example function, built by examples/build.sh, end to end through
//! real sockets (and curl for the HTTP ones).

mod support;

use std::io::Write;
use std::net::Shutdown;
use std::process::Command;
use std::time::Duration;

use nur_testkit::examples;
use support::{Worker, read_to_close};

fn curl(worker: &Worker, args: &[&str], path: &str) -> String {
    let out = Command::new("curl")
        .args(["-s", "-i", "--max-time", "10"])
        .args(args)
        .arg(format!("http://{}{path}", worker.addr))
        .output()
        .expect("curl is installed (make test installs it)");
    assert!(out.status.success(), "curl failed: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn echo_answers_the_first_chunk_as_http() {
    let worker = Worker::start(&examples::path("echo.wasm"), &[]);
    assert_eq!(
        worker.request(b"hi"),
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nhi"
    );
    let response = curl(&worker, &["--data", "hello nur"], "/");
    assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
    assert!(response.ends_with("\r\n\r\nhello nur"), "{response}");
    assert!(
        worker
            .wait_log(&["echo: 2 bytes"], Duration::from_secs(5))
            .is_some()
    );
}

#[test]
fn http_hello_accumulates_a_request_across_chunks() {
    let worker = Worker::start(&examples::path("http-hello.wasm"), &[]);
    let response = curl(&worker, &[], "/world");
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    assert!(response.ends_with("\r\n\r\nHello, /world!\n"), "{response}");

    // The same request split over three writes, far enough apart to be three chunks.
    let mut stream = worker.connect();
    for part in ["GET /sp", "lit HTTP/1.1\r\nHost: x\r\n", "\r\n"] {
        stream.write_all(part.as_bytes()).unwrap();
        std::thread::sleep(Duration::from_millis(100));
    }
    let response = String::from_utf8(read_to_close(&mut stream)).unwrap();
    assert!(response.ends_with("Hello, /split!\n"), "{response}");

    let response = String::from_utf8(worker.request(b"GET /half")).unwrap();
    assert!(response.starts_with("HTTP/1.1 400"), "{response}");
    let response = curl(&worker, &["--data", "x", "-X", "POST"], "/posted");
    assert!(response.contains("Hello, /posted!"), "{response}");
}

#[test]
fn stream_answers_every_chunk_as_it_arrives() {
    let worker = Worker::start(&examples::path("stream.wat"), &[]);
    let mut stream = worker.connect();
    stream.write_all(b"hello ").unwrap();
    let mut first = [0; 6];
    std::io::Read::read_exact(&mut stream, &mut first).unwrap();
    assert_eq!(
        &first, b"HELLO ",
        "the first chunk is answered before the second is sent"
    );
    stream.write_all(b"world\n").unwrap();
    stream.shutdown(Shutdown::Write).unwrap();
    let rest = String::from_utf8(read_to_close(&mut stream)).unwrap();
    assert_eq!(rest, "WORLD\n\n-- 12 bytes\n");
    assert!(
        worker
            .wait_log(&["stream: 12 bytes"], Duration::from_secs(5))
            .is_some()
    );
}

#[test]
fn c_hello_answers() {
    let worker = Worker::start(&examples::path("c-hello.wasm"), &[]);
    let response = curl(&worker, &[], "/");
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    assert!(response.ends_with("hello from C\n"), "{response}");
}

#[test]
fn markdown_renders_a_posted_document() {
    let worker = Worker::start(&examples::path("markdown.wasm"), &[]);
    let response = curl(
        &worker,
        &[
            "--data-binary",
            "# Nur\n\n*fast* cold starts, see https://example.com/nur\n",
        ],
        "/render",
    );
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    assert!(response.contains("content-type: text/html"), "{response}");
    assert!(response.contains("<h1>Nur</h1>"), "{response}");
    assert!(response.contains("<em>fast</em>"), "{response}");
    assert!(
        response.contains(r#"<a href="https://example.com/nur">https://example.com/nur</a>"#),
        "{response}"
    );
}

/// go-hello (Go, GOOS=wasip1, a reactor): built by examples/build.sh only
/// where Go is installed, so skipped where neither it nor `go` is there.
#[test]
fn go_hello_answers_200_through_wasi() {
    let built =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/build/go-hello.wasm");
    let go = Command::new("go")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !built.exists() && !go {
        eprintln!("go-hello skipped: Go is not installed");
        return;
    }
    let worker = Worker::start(&examples::path("go-hello.wasm"), &[]);
    let response = curl(&worker, &["--data", "hello go"], "/");
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    assert!(response.ends_with("\r\n\r\nhello go"), "{response}");
    for _ in 0..3 {
        assert_eq!(
            worker.request(b"hi"),
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nhi"
        );
    }
    // fmt.Printf to stdout, through WASI fd_write, in the function's log.
    let line = worker
        .wait_log(&["go-hello: 2 bytes"], Duration::from_secs(5))
        .expect("stdout reaches the log");
    assert!(line.contains("\"stream\":\"stdout\""), "{line}");
    assert_eq!(
        worker.metric("nur_guest_traps_total{kind=\"timeout\"}"),
        0.0
    );
    let (_, metrics) = worker.admin_get("/metrics");
    assert!(
        !metrics.contains("nur_wasi_unsupported_calls_total{"),
        "{metrics}"
    );
}
