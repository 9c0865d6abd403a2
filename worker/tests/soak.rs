//! Many connections, sequential and concurrent: no growth of RSS or of
//! open file descriptors.

mod support;

use nur_testkit::examples;
use support::Worker;

#[test]
fn a_thousand_sequential_and_two_hundred_concurrent_connections_leak_nothing() {
    let worker = Worker::start(&examples::path("echo.wasm"), &[]);
    let expected = |input: &[u8]| {
        let mut response =
            format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", input.len()).into_bytes();
        response.extend_from_slice(input);
        response
    };
    let concurrent = |n: usize| {
        worker.concurrently(n, "concurrent", |input, output| {
            assert_eq!(output, expected(input))
        })
    };
    // Warm up: thread pool, allocator arenas, code pages.
    concurrent(200);
    for i in 0..200 {
        worker.request(format!("warm {i}").as_bytes());
    }
    let (rss, fds) = (worker.rss_kib(), worker.open_fds());

    for i in 0..1000 {
        let input = format!("sequential {i}");
        assert_eq!(worker.request(input.as_bytes()), expected(input.as_bytes()));
    }
    concurrent(200);

    let (rss_after, fds_after) = (worker.rss_kib(), worker.open_fds());
    assert!(
        fds_after <= fds,
        "open file descriptors grew from {fds} to {fds_after}"
    );
    assert!(
        rss_after <= rss + 8 * 1024,
        "RSS grew from {rss} KiB to {rss_after} KiB over 1,200 connections"
    );
    assert_eq!(worker.wait_metric("nur_connections_total", 1600.0), 1600.0);
    assert_eq!(worker.metric("nur_connections_active"), 0.0);
    eprintln!("RSS {rss} -> {rss_after} KiB, fds {fds} -> {fds_after}");
}

#[test]
fn silent_connections_hold_no_thread() {
    let worker = Worker::start(&examples::path("echo.wasm"), &["--idle-timeout", "30s"]);
    let threads = || {
        let status = std::fs::read_to_string(format!("/proc/{}/status", worker.pid())).unwrap();
        let line = status.lines().find(|l| l.starts_with("Threads:")).unwrap();
        line.split_whitespace()
            .nth(1)
            .unwrap()
            .parse::<usize>()
            .unwrap()
    };
    let before = threads();
    let silent: Vec<_> = (0..200).map(|_| worker.connect()).collect();
    std::thread::sleep(std::time::Duration::from_millis(500));
    let during = threads();
    assert!(
        during < before + 20,
        "200 silent connections: {before} -> {during} threads"
    );
    assert_eq!(
        worker.request(b"x").len(),
        39,
        "and the worker still answers"
    );
    drop(silent);
}
