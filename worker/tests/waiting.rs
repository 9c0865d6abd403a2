//! A function in the middle of a request, waiting for the client's next
//! bytes, waits without a thread: its instance is parked and goes on, on
//! any pool thread, when the bytes come; it is dropped at the idle timeout
//! or the deadline. Real worker process, real sockets.

mod support;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use nur_testkit::examples;
use support::{Worker, read_to_close};

#[test]
fn functions_waiting_for_the_rest_of_their_request_hold_no_thread() {
    let worker = Worker::start(&examples::path("http-hello.wasm"), &[]);
    // 200 requests cut after their first line, one after the other, so
    // that each waits with a live instance while the next arrives.
    let mut clients: Vec<_> = (0..200)
        .map(|i| {
            let mut s = worker.connect();
            s.write_all(format!("GET /wait/{i} HTTP/1.1\r\n").as_bytes())
                .unwrap();
            std::thread::sleep(Duration::from_millis(5));
            s
        })
        .collect();
    worker.wait_metric("nur_connections_active", 200.0);
    let held = worker.threads();
    assert!(
        held < 50,
        "{held} threads for 200 waiting functions: each holds one"
    );
    for (i, s) in clients.iter_mut().enumerate() {
        s.write_all(b"Host: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        let answer = String::from_utf8(read_to_close(s)).unwrap();
        assert!(
            answer.starts_with("HTTP/1.1 200 OK\r\n")
                && answer.ends_with(&format!("Hello, /wait/{i}!\n")),
            "{answer}"
        );
    }
    drop(clients);
    assert_eq!(
        worker.wait_metric("nur_connection_closes_total{reason=\"ended\"}", 200.0),
        200.0
    );
}

#[test]
fn a_request_sent_a_byte_at_a_time_is_answered_and_the_next_gets_a_fresh_instance() {
    let worker = Worker::start(&examples::path("http-hello.wasm"), &["--keep-alive"]);
    let mut s = worker.connect();
    for path in ["/slow", "/again"] {
        // Each byte after a pause longer than a thread waits: the instance
        // is parked and resumed for every one.
        for byte in format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").bytes() {
            s.write_all(&[byte]).unwrap();
            std::thread::sleep(Duration::from_millis(4));
        }
        let mut answer = vec![0; 4096];
        let n = s.read(&mut answer).unwrap();
        let answer = String::from_utf8_lossy(&answer[..n]).into_owned();
        assert!(answer.ends_with(&format!("Hello, {path}!\n")), "{answer}");
    }
    assert_eq!(worker.metric("nur_kept_alive_requests_total"), 1.0);
}

#[test]
fn a_waiting_function_is_dropped_at_the_idle_timeout_and_at_the_deadline() {
    for (flags, reason, after) in [
        (["--idle-timeout", "500ms", "--timeout", "30s"], "idle", 0.5),
        (["--idle-timeout", "30s", "--timeout", "1s"], "timeout", 1.0),
    ] {
        let worker = Worker::start(&examples::path("http-hello.wasm"), &flags);
        // Before the connect: the deadline counts from the accept.
        let started = Instant::now();
        let mut s = worker.connect();
        s.write_all(b"GET /never HTTP/1.1\r\n").unwrap();
        let rest = read_to_close(&mut s);
        let took = started.elapsed().as_secs_f64();
        assert!(rest.is_empty(), "{}", String::from_utf8_lossy(&rest));
        assert!(
            (after..after + 1.5).contains(&took),
            "{reason}: closed after {took:.2} s"
        );
        worker.wait_metric(
            &format!("nur_connection_closes_total{{reason=\"{reason}\"}}"),
            1.0,
        );
        assert_eq!(worker.metric("nur_connections_active"), 0.0);
    }
}
