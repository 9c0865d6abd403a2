//! Many connections, sequential and concurrent: no growth of RSS or of
//! open file descriptors.

mod support;

use support::{Worker, example};

#[test]
fn a_thousand_sequential_and_two_hundred_concurrent_connections_leak_nothing() {
    let worker = Worker::start(&example("echo.wasm"), &[]);
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
