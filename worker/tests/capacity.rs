//! Many clients: accepted freely, served `--max-connections` at a time,
//! never more threads or descriptors than the limits allow.

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::Duration;

use support::{Worker, read_to_close, wat};

/// Echoes the first chunk and ends.
const ECHO: &str = r#"
  (func (export "poll_stream") (param $ptr i32) (param $len i32)
    (if (i32.eqz (local.get $len)) (then (call $end) (return)))
    (call $send (local.get $ptr) (local.get $len))
    (call $end))"#;

#[test]
fn clients_far_beyond_max_connections_are_held_without_threads_and_all_served() {
    let worker = Worker::wat(&wat(ECHO), &["--max-connections", "4"]);
    let baseline = worker.threads();
    let mut held: Vec<TcpStream> = (0..300).map(|_| worker.connect()).collect();
    std::thread::sleep(Duration::from_millis(300));
    let during = worker.threads();
    assert!(
        during <= baseline + 4,
        "{during} threads with 300 silent clients (from {baseline})"
    );
    // All ask at once; at most 4 are served at a time, the others wait.
    std::thread::scope(|scope| {
        for (i, stream) in held.iter_mut().enumerate() {
            scope.spawn(move || {
                let input = format!("client {i}");
                stream.write_all(input.as_bytes()).unwrap();
                stream.shutdown(Shutdown::Write).unwrap();
                assert_eq!(read_to_close(stream), input.as_bytes());
            });
        }
    });
    assert_eq!(worker.wait_metric("nur_connections_total", 300.0), 300.0);
    assert_eq!(
        worker.wait_metric("nur_connection_closes_total{reason=\"ended\"}", 300.0),
        300.0
    );
    assert!(
        worker.threads() <= baseline + 8,
        "the blocking pool grew past --max-connections"
    );
}

#[test]
fn past_max_open_connections_clients_wait_in_the_backlog() {
    let worker = Worker::wat(&wat(ECHO), &["--max-open-connections", "2"]);
    let first = worker.connect();
    let second = worker.connect();
    std::thread::sleep(Duration::from_millis(200));
    let mut third = worker.connect();
    third.write_all(b"third").unwrap();
    third
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut byte = [0; 1];
    let early = third.read(&mut byte);
    assert!(
        matches!(&early, Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)),
        "served while two connections were open: {early:?}"
    );
    drop(first);
    third
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    assert_eq!(read_to_close(&mut third), b"third");
    drop(second);
}

#[test]
fn max_connections_is_clamped_to_what_the_process_can_map() {
    let worker = Worker::wat(&wat(ECHO), &["--max-connections", "4000000"]);
    let line = worker.serving_line();
    let field = |name: &str| -> u64 {
        let start = line.find(&format!("\"{name}\":")).unwrap() + name.len() + 3;
        let end = start + line[start..].find([',', '}']).unwrap();
        line[start..end].parse().unwrap()
    };
    let active = field("max_connections");
    let open = field("max_open_connections");
    assert!((1..4_000_000).contains(&active), "{line}");
    assert!(active <= open, "{line}");
    assert!(
        worker
            .wait_log(&["--max-connections lowered"], Duration::from_secs(1))
            .is_some()
    );
    assert_eq!(worker.request(b"still serves"), b"still serves");
}
