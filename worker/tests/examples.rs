//! Every example function, built by examples/build.sh, end to end through
//! real sockets (and curl for the HTTP ones).

mod support;

use std::io::Write;
use std::net::Shutdown;
use std::process::Command;
use std::time::Duration;

use nur_testkit::examples;
use support::{Worker, read_to_close};

/// How many clients the concurrent checks run at once.
const CLIENTS: usize = 40;

/// Sends `CLIENTS` requests at once, the i-th `input(i)`, and hands each
/// index and response to `check`.
fn many(
    worker: &Worker,
    input: impl Fn(usize) -> Vec<u8> + Sync,
    check: impl Fn(usize, &str) + Sync,
) {
    std::thread::scope(|scope| {
        let clients: Vec<_> = (0..CLIENTS)
            .map(|i| {
                let (input, check) = (&input, &check);
                scope.spawn(move || {
                    let response = worker.request(&input(i));
                    check(i, &String::from_utf8_lossy(&response));
                })
            })
            .collect();
        for client in clients {
            client.join().unwrap();
        }
    });
}

/// Sends `line` and reads until the answer ends with a newline: the
/// answer to this line, received before the next one is sent.
fn converse_line(stream: &mut std::net::TcpStream, line: &str) -> String {
    stream.write_all(line.as_bytes()).unwrap();
    let mut answer = Vec::new();
    let mut byte = [0];
    while !answer.ends_with(b"\n") {
        match std::io::Read::read(stream, &mut byte) {
            Ok(1) => answer.push(byte[0]),
            other => panic!("the answer to {line:?} did not come: {other:?} after {answer:?}"),
        }
    }
    String::from_utf8(answer).unwrap()
}

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

/// go-hello (Go, GOOS=wasip1, a reactor), 40 clients at once.
#[test]
fn go_hello_answers_200_through_wasi() {
    let worker = Worker::start(&examples::path("go-hello.wasm"), &[]);
    let response = curl(&worker, &["--data", "hello go"], "/");
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    assert!(response.ends_with("\r\n\r\nhello go"), "{response}");
    worker.concurrently(CLIENTS, "go", |input, response| {
        let expected = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", input.len());
        assert_eq!(response, [expected.as_bytes(), input].concat());
    });
    assert_eq!(
        worker.request(b"hi"),
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nhi"
    );
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

/// cpp-hello (C++ with libc++ and wasi-libc, a reactor on the Nur ABI).
#[test]
fn cpp_hello_answers_each_path_concurrently() {
    let worker = Worker::start(&examples::path("cpp-hello.wasm"), &[]);
    let response = curl(&worker, &["-H", "x-extra: 1"], "/world");
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    assert!(
        response.ends_with("\r\n\r\nHello from C++, /world (4 headers)\n"),
        "{response}"
    );
    many(
        &worker,
        |i| format!("GET /n{i} HTTP/1.1\r\nHost: x\r\n\r\n").into_bytes(),
        |i, response| {
            assert!(
                response.ends_with(&format!("Hello from C++, /n{i} (1 headers)\n")),
                "{response}"
            )
        },
    );
    let response = String::from_utf8(worker.request(b"GET /half")).unwrap();
    assert!(response.starts_with("HTTP/1.1 400"), "{response}");
    assert!(
        worker
            .wait_log(&["GET /n7 HTTP/1.1"], Duration::from_secs(5))
            .is_some(),
        "the request line is logged"
    );
}

/// zig-hello (Zig, freestanding, on the Nur ABI; the `nur new zig` template).
#[test]
fn zig_hello_answers_concurrently() {
    let worker = Worker::start(&examples::path("zig-hello.wasm"), &[]);
    many(
        &worker,
        |i| format!("zig {i}").into_bytes(),
        |_, response| {
            assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
            assert!(
                response.ends_with("\r\n\r\nHello from zig-hello!\n"),
                "{response}"
            );
        },
    );
    assert!(
        worker
            .wait_log(&["zig-hello: 6 bytes"], Duration::from_secs(5))
            .is_some()
    );
}

/// as-hello (AssemblyScript, on the Nur ABI).
#[test]
fn as_hello_answers_concurrently() {
    let worker = Worker::start(&examples::path("as-hello.wasm"), &[]);
    many(
        &worker,
        |i| vec![b'a'; i + 1],
        |i, response| {
            let body = format!("Hello from AssemblyScript, {} bytes\n", i + 1);
            assert_eq!(
                response,
                format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                )
            );
        },
    );
    assert!(
        worker
            .wait_log(&["as-hello: 40 bytes"], Duration::from_secs(5))
            .is_some()
    );
}

/// shout (Rust std on wasm32-wasip1, a WASI command): stdin and stdout are
/// the connection, stderr the log.
#[test]
fn shout_a_rust_command_answers_line_by_line_as_lines_arrive() {
    let worker = Worker::start(&examples::path("shout.wasm"), &[]);
    // Each answer arrives before the next line is sent.
    let mut stream = worker.connect();
    assert_eq!(converse_line(&mut stream, "first line\n"), "FIRST LINE\n");
    assert_eq!(converse_line(&mut stream, "über\n"), "ÜBER\n");
    stream.shutdown(Shutdown::Write).unwrap();
    assert!(read_to_close(&mut stream).is_empty());
    let line = worker
        .wait_log(&["shout: 2 lines"], Duration::from_secs(5))
        .expect("stderr reaches the log");
    assert!(line.contains("\"stream\":\"stderr\""), "{line}");
    many(
        &worker,
        |i| format!("client {i}\nsecond\n").into_bytes(),
        |i, response| assert_eq!(response, format!("CLIENT {i}\nSECOND\n")),
    );
    assert_eq!(
        worker.wait_metric("nur_connection_closes_total{reason=\"eof\"}", 41.0),
        41.0
    );
}

/// go-wc (Go, GOOS=wasip1, a WASI command).
#[test]
fn go_wc_a_go_command_streams_and_totals_at_eof() {
    let worker = Worker::start(&examples::path("go-wc.wasm"), &[]);
    let mut stream = worker.connect();
    assert_eq!(converse_line(&mut stream, "one two three\n"), "3 words\n");
    assert_eq!(converse_line(&mut stream, "four\n"), "1 words\n");
    stream.shutdown(Shutdown::Write).unwrap();
    assert_eq!(
        String::from_utf8(read_to_close(&mut stream)).unwrap(),
        "total: 2 lines, 4 words\n"
    );
    many(
        &worker,
        |i| "w ".repeat(i + 1).into_bytes(),
        |i, response| {
            assert_eq!(
                response,
                format!("{n} words\ntotal: 1 lines, {n} words\n", n = i + 1)
            )
        },
    );
    assert!(
        worker
            .wait_log(&["go-wc: 2 lines"], Duration::from_secs(5))
            .is_some()
    );
}

/// c-sandbox (C with wasi-libc, a WASI command) prints what a function sees
/// of its host: its name as its only argument, only its own variables, and
/// no file at all.
#[test]
fn c_sandbox_sees_its_own_environment_and_nothing_of_the_host() {
    let mut command = Worker::command(
        examples::path("c-sandbox.wasm").as_os_str(),
        &["--function-name", "sandbox", "--env", "MODE=test"],
    );
    command
        .env("NUR_ENV_GREETING", "hello")
        .env("AWS_SECRET_ACCESS_KEY", "the worker's own")
        .env("HOME", "/root");
    let worker = Worker::spawn(command).unwrap();
    let expected = |bytes: usize| {
        format!(
            "read {bytes} bytes\narg 0: sandbox\nenv: MODE=test\nenv: GREETING=hello\n\
             open /etc/passwd: Capabilities insufficient\n\
             open /proc/self/environ: Capabilities insufficient\n\
             open ../../etc/hostname: Capabilities insufficient\n"
        )
    };
    many(
        &worker,
        |i| vec![b'x'; 1000 * i],
        |i, response| assert_eq!(response, expected(1000 * i)),
    );
    // No preopened directory: wasi-libc refuses every path itself, and
    // path_open (which would answer ENOSYS) is never even called.
    let (_, metrics) = worker.admin_get("/metrics");
    assert!(!metrics.contains("function=\"path_open\""), "{metrics}");
}
