//! HTTP/1.1 keep-alive (`--keep-alive`): request after request on one
//! connection, each in a fresh instance fed only its own bytes; the
//! connection closes when the request or the answer does not allow
//! another, at the idle timeout, and when the worker drains. Real worker
//! process, real sockets.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use nur_testkit::examples;
use support::{Worker, read_to_close, wat};

/// Answers every call with a one-byte body: how many times this instance
/// was called (so "1" from a fresh instance), then ends.
const COUNTER: &str = r#"
  (global $calls (mut i32) (i32.const 0))
  (data (i32.const 0) "HTTP/1.1 200 OK\0d\0acontent-length: 1\0d\0a\0d\0a0")
  (func (export "poll_stream") (param i32 i32)
    (global.set $calls (i32.add (global.get $calls) (i32.const 1)))
    (i32.store8 (i32.const 38) (i32.add (i32.const 48) (global.get $calls)))
    (call $send (i32.const 0) (i32.const 39))
    (call $end))"#;

/// Answers without a length (the end of the answer is the close).
const UNDELIMITED: &str = r#"
  (data (i32.const 0) "HTTP/1.1 200 OK\0d\0a\0d\0aok")
  (func (export "poll_stream") (param i32 i32)
    (call $send (i32.const 0) (i32.const 21))
    (call $end))"#;

/// Reads one length-delimited answer; `None` when the worker closed first.
fn read_answer(s: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut byte).ok()? == 0 {
            return None;
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    let len: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length: ")?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no content-length in {head}"));
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).ok()?;
    Some(head + &String::from_utf8_lossy(&body))
}

#[test]
fn requests_on_one_connection_each_get_a_fresh_instance() {
    let worker = Worker::wat(&wat(COUNTER), &["--keep-alive"]);
    let mut s = worker.connect();
    for path in ["/a", "/b", "/c"] {
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            .unwrap();
        let answer = read_answer(&mut s).expect("an answer on the kept connection");
        assert!(
            answer.ends_with("\r\n\r\n1"),
            "not a fresh instance: {answer}"
        );
    }
    assert_eq!(worker.metric("nur_connections_total"), 1.0);
    assert_eq!(worker.metric("nur_kept_alive_requests_total"), 2.0);
    drop(s);
    assert_eq!(
        worker.wait_metric(
            "nur_connection_closes_total{reason=\"keep_alive_end\"}",
            1.0
        ),
        1.0
    );
}

#[test]
fn pipelined_requests_reach_their_own_instances_in_order() {
    let worker = Worker::start(&examples::path("echo.wasm"), &["--keep-alive"]);
    let mut s = worker.connect();
    let first = "POST /1 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nfirst";
    let second = "GET /2 HTTP/1.1\r\nHost: x\r\n\r\n";
    let third = "POST /3 HTTP/1.1\r\nContent-Length: 5\r\nConnection: close\r\n\r\nthird";
    s.write_all(format!("{first}{second}{third}").as_bytes())
        .unwrap();
    // echo answers with the bytes its instance was fed: each request's own.
    for request in [first, second] {
        let answer = read_answer(&mut s).unwrap();
        assert!(answer.ends_with(&format!("\r\n\r\n{request}")), "{answer}");
    }
    // The last asked to close: its answer ends the connection.
    let rest = String::from_utf8(read_to_close(&mut s)).unwrap();
    assert!(rest.ends_with(&format!("\r\n\r\n{third}")), "{rest}");
    assert_eq!(worker.metric("nur_kept_alive_requests_total"), 2.0);
}

#[test]
fn connections_close_when_the_request_or_the_answer_does_not_allow_another() {
    let counter = Worker::wat(&wat(COUNTER), &["--keep-alive"]);
    for request in [
        "GET / HTTP/1.1\r\nConnection: close\r\n\r\n",
        "GET / HTTP/1.0\r\n\r\n",
    ] {
        let mut s = counter.connect();
        s.write_all(request.as_bytes()).unwrap();
        let answer = String::from_utf8(read_to_close(&mut s)).unwrap();
        assert!(answer.ends_with("\r\n\r\n1"), "{request:?}: {answer}");
    }
    // Bytes that are not HTTP are served as before, then closed.
    let echo = Worker::start(&examples::path("echo.wasm"), &["--keep-alive"]);
    let mut s = echo.connect();
    s.write_all(b"not http at all\r\n\r\n").unwrap();
    let answer = String::from_utf8(read_to_close(&mut s)).unwrap();
    assert!(answer.ends_with("not http at all\r\n\r\n"), "{answer}");
    // An answer without a length ends at the close.
    let undelimited = Worker::wat(&wat(UNDELIMITED), &["--keep-alive"]);
    let mut s = undelimited.connect();
    s.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    assert_eq!(read_to_close(&mut s), b"HTTP/1.1 200 OK\r\n\r\nok");
    // Without --keep-alive every connection closes after its answer.
    let plain = Worker::wat(&wat(COUNTER), &[]);
    let mut s = plain.connect();
    s.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    assert!(read_to_close(&mut s).ends_with(b"\r\n\r\n1"));
    assert_eq!(plain.metric("nur_kept_alive_requests_total"), 0.0);
}

#[test]
fn kept_connections_close_at_the_idle_timeout_and_at_the_drain() {
    let worker = Worker::wat(&wat(COUNTER), &["--keep-alive", "--idle-timeout", "500ms"]);
    let mut idle = worker.connect();
    idle.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    assert!(read_answer(&mut idle).is_some());
    let started = Instant::now();
    assert!(
        matches!(idle.read(&mut [0u8; 1]), Ok(0)),
        "closed when idle"
    );
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(300) && waited < Duration::from_secs(5),
        "closed after {waited:?}"
    );

    // A kept connection with the default 10 s idle timeout: SIGTERM closes
    // it at once, and the worker exits without waiting for it.
    let mut worker = Worker::wat(&wat(COUNTER), &["--keep-alive", "--shutdown-grace", "20s"]);
    let mut kept = worker.connect();
    kept.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    assert!(read_answer(&mut kept).is_some());
    let started = Instant::now();
    worker.signal(libc::SIGTERM);
    assert!(
        matches!(kept.read(&mut [0u8; 1]), Ok(0)),
        "closed by the drain"
    );
    worker
        .wait_exit(Duration::from_secs(5))
        .expect("exits once drained");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}
