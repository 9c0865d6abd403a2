//! Hostile clients against the real worker: slowloris, half-open
//! connections, resets mid-stream, a flood beyond --max-connections and
//! chunks larger than --max-chunk. During each, a well-behaved client gets
//! its answer promptly; afterwards the worker's open file descriptors are
//! back to where they were and its RSS near it.

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use support::{Worker, read_to_close, reset, wat};

/// The first byte of a connection picks what the guest does with it:
/// `B` streams 32 MiB and ends, `L` answers each chunk with its length (u32,
/// little-endian), anything else is echoed chunk by chunk. EOF ends.
const CHAOS: &str = r#"
  (global $mode (mut i32) (i32.const 0))
  (func (export "poll_stream") (param $ptr i32) (param $len i32)
    (local $i i32)
    (if (i32.eqz (local.get $len)) (then (call $end) (return)))
    (if (i32.eqz (global.get $mode))
      (then (global.set $mode (i32.load8_u (local.get $ptr)))))
    (if (i32.eq (global.get $mode) (i32.const 66))
      (then
        (loop $more
          (call $send (i32.const 0) (i32.const 65536))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br_if $more (i32.lt_u (local.get $i) (i32.const 512))))
        (call $end)
        (return)))
    (if (i32.eq (global.get $mode) (i32.const 76))
      (then
        (i32.store (i32.const 0) (local.get $len))
        (call $send (i32.const 0) (i32.const 4))
        (return)))
    (call $send (local.get $ptr) (local.get $len)))"#;

const STREAM_BYTES: usize = 512 * 65536;

/// What `B` streams: the guest's first page again and again, zeros but for
/// the `B` that `alloc` placed at 1024.
fn is_stream(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .enumerate()
        .all(|(i, &b)| b == if i % 65536 == 1024 { b'B' } else { 0 })
}

fn chaos(args: &[&str]) -> Worker {
    let mut all = vec!["--max-output", "64Mi"];
    all.extend_from_slice(args);
    Worker::wat(&wat(CHAOS), &all)
}

/// RSS and open descriptors once the worker has served a few connections
/// (thread pool, allocator arenas and code pages warmed up).
fn baseline(worker: &Worker) -> (u64, usize) {
    worker.concurrently(16, "warm", |input, output| assert_eq!(output, input));
    (worker.rss_kib(), worker.open_fds())
}

/// A well-behaved client: its echo comes back within two seconds.
fn well_behaved(worker: &Worker, i: usize) -> Duration {
    let input = format!("well-behaved {i}");
    let started = Instant::now();
    assert_eq!(worker.request(input.as_bytes()), input.as_bytes());
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(2),
        "a well-behaved client waited {took:?}"
    );
    took
}

/// Well-behaved clients, one every 100 ms for `time`; the slowest answer.
fn well_behaved_for(worker: &Worker, time: Duration) -> Duration {
    let until = Instant::now() + time;
    let mut slowest = Duration::ZERO;
    let mut i = 0;
    while Instant::now() < until {
        slowest = slowest.max(well_behaved(worker, i));
        i += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    slowest
}

/// Waits up to 10 s for the worker's descriptors to be back at the baseline
/// and its RSS within `rss_slack_kib` of it; returns both figures.
fn back_to_baseline(
    worker: &Worker,
    (rss, fds): (u64, usize),
    rss_slack_kib: u64,
    what: &str,
) -> (u64, usize) {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let (rss_now, fds_now) = (worker.rss_kib(), worker.open_fds());
        if fds_now <= fds && rss_now <= rss + rss_slack_kib {
            eprintln!("{what}: RSS {rss} -> {rss_now} KiB, fds {fds} -> {fds_now}");
            return (rss_now, fds_now);
        }
        assert!(
            Instant::now() < until,
            "{what}: fds {fds} -> {fds_now}, RSS {rss} -> {rss_now} KiB"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Sends one byte a second and reads what comes back, until the worker
/// closes the connection; returns how long that took (at most `limit`).
fn slowloris(worker: &Worker, limit: Duration) -> Duration {
    let mut stream = worker.connect();
    let started = Instant::now();
    let mut buf = [0; 64];
    while started.elapsed() < limit {
        if stream.write_all(b"s").is_err() {
            return started.elapsed();
        }
        let tick = Instant::now() + Duration::from_secs(1);
        while let Some(left) = tick.checked_duration_since(Instant::now()) {
            if left.is_zero() {
                break;
            }
            stream.set_read_timeout(Some(left)).unwrap();
            match stream.read(&mut buf) {
                Ok(0) => return started.elapsed(),
                Ok(_) => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    break;
                }
                Err(_) => return started.elapsed(),
            }
        }
    }
    panic!("a slowloris client was still connected after {limit:?}");
}

#[test]
fn slowloris_clients_are_cut_at_the_deadline_while_others_are_served() {
    let worker = chaos(&["--timeout", "3s", "--idle-timeout", "2s"]);
    let base = baseline(&worker);
    let (slowest, cut) = std::thread::scope(|scope| {
        let lorises: Vec<_> = (0..6)
            .map(|_| scope.spawn(|| slowloris(&worker, Duration::from_secs(10))))
            .collect();
        std::thread::sleep(Duration::from_millis(300));
        let slowest = well_behaved_for(&worker, Duration::from_secs(2));
        let cut: Vec<_> = lorises.into_iter().map(|l| l.join().unwrap()).collect();
        (slowest, cut)
    });
    for took in &cut {
        assert!(
            *took >= Duration::from_millis(2500) && *took < Duration::from_secs(6),
            "a slowloris client was cut after {took:?}, the timeout is 3s"
        );
    }
    assert_eq!(
        worker.wait_metric("nur_connection_closes_total{reason=\"timeout\"}", 6.0),
        6.0
    );
    eprintln!("slowloris: slowest well-behaved answer {slowest:?}, cut after {cut:?}");
    back_to_baseline(&worker, base, 8 * 1024, "slowloris");
}

#[test]
fn half_open_clients_are_closed_after_the_idle_timeout_and_release_their_descriptors() {
    let worker = chaos(&["--idle-timeout", "1s"]);
    let base = baseline(&worker);
    // Connected and silent; sent part of a request and stopped; asked for a
    // 32 MiB stream and never read it. None of them reads or closes.
    let mut held: Vec<TcpStream> = (0..8).map(|_| worker.connect()).collect();
    for _ in 0..8 {
        let mut stream = worker.connect();
        stream.write_all(b"half a request").unwrap();
        held.push(stream);
    }
    for _ in 0..8 {
        let mut stream = worker.connect();
        stream.write_all(b"B").unwrap();
        held.push(stream);
    }
    let slowest = well_behaved_for(&worker, Duration::from_millis(1500));
    assert_eq!(
        worker.wait_metric("nur_connection_closes_total{reason=\"idle\"}", 24.0),
        24.0
    );
    // The clients still hold their sockets; the worker has let go of its side.
    let after = back_to_baseline(&worker, base, 16 * 1024, "half-open");
    eprintln!("half-open: slowest well-behaved answer {slowest:?}, after {after:?}");
    for mut stream in held {
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut sink = vec![0; 1 << 20];
        // The worker closed: reading drains what was sent, then ends.
        loop {
            match stream.read(&mut sink) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
                Err(e) => panic!("a half-open connection is still open on the worker: {e}"),
            }
        }
    }
}

#[test]
fn clients_resetting_mid_stream_end_only_their_connection() {
    let worker = chaos(&[]);
    let base = baseline(&worker);
    let resets = 12;
    let slowest = std::thread::scope(|scope| {
        let readers: Vec<_> = (0..4)
            .map(|_| {
                scope.spawn(|| {
                    for _ in 0..resets / 4 {
                        let mut stream = worker.connect();
                        stream.write_all(b"B").unwrap();
                        let mut got = vec![0; 256 * 1024];
                        stream.read_exact(&mut got).unwrap();
                        assert!(is_stream(&got), "the stream is the guest's first page");
                        reset(stream);
                    }
                })
            })
            .collect();
        let slowest = well_behaved_for(&worker, Duration::from_millis(1500));
        for reader in readers {
            reader.join().unwrap();
        }
        slowest
    });
    assert_eq!(
        worker.wait_metric(
            "nur_connection_closes_total{reason=\"client_gone\"}",
            resets as f64
        ),
        resets as f64
    );
    // A client that reads everything still gets the whole stream.
    let mut stream = worker.connect();
    stream.write_all(b"B").unwrap();
    stream.shutdown(Shutdown::Write).unwrap();
    let whole = read_to_close(&mut stream);
    assert!(whole.len() == STREAM_BYTES && is_stream(&whole));
    eprintln!("resets: slowest well-behaved answer {slowest:?}");
    back_to_baseline(&worker, base, 16 * 1024, "resets");
}

#[test]
fn a_flood_of_three_times_max_connections_is_served_in_turn_and_silent_ones_block_nobody() {
    let max = 4;
    let worker = chaos(&["--max-connections", &max.to_string()]);
    let base = baseline(&worker);
    let flood = 3 * max;
    // Silent clients beyond the limit too: connected, never sending. They
    // wait for their first bytes without a serving slot.
    let silent: Vec<TcpStream> = (0..flood).map(|_| worker.connect()).collect();
    let (served, waited) = std::thread::scope(|scope| {
        let clients: Vec<_> = (0..flood)
            .map(|i| {
                let worker = &worker;
                scope.spawn(move || {
                    // Each holds a serving slot for 400 ms: half a request, a
                    // pause, the rest. Those without a slot wait for one.
                    let mut stream = worker.connect();
                    stream.write_all(format!("flood {i} ").as_bytes()).unwrap();
                    std::thread::sleep(Duration::from_millis(400));
                    stream.write_all(b"done").unwrap();
                    stream.shutdown(Shutdown::Write).unwrap();
                    let output = read_to_close(&mut stream);
                    assert_eq!(output, format!("flood {i} done").as_bytes());
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(100));
        // Behind the flood: served once a slot frees up, never refused.
        let started = Instant::now();
        assert_eq!(worker.request(b"behind the flood"), b"behind the flood");
        let waited = started.elapsed();
        let served = clients.into_iter().map(|c| c.join()).filter(Result::is_ok);
        (served.count(), waited)
    });
    assert_eq!(served, flood);
    assert!(
        waited < Duration::from_secs(6),
        "the client behind the flood waited {waited:?}"
    );
    assert_eq!(
        worker.metric("nur_connection_closes_total{reason=\"fault\"}"),
        0.0
    );
    drop(silent);
    eprintln!("flood: the client behind {flood} waited {waited:?}");
    back_to_baseline(&worker, base, 8 * 1024, "flood");
}

#[test]
fn chunks_larger_than_max_chunk_are_split_and_memory_stays_bounded() {
    let worker = chaos(&["--max-chunk", "16Ki"]);
    let base = baseline(&worker);
    let total = 8 << 20;
    let lengths = std::thread::scope(|scope| {
        let big = scope.spawn(|| {
            let mut stream = worker.connect();
            let mut input = vec![b'x'; total];
            input[0] = b'L';
            let writer = {
                let mut stream = stream.try_clone().unwrap();
                std::thread::spawn(move || {
                    stream.write_all(&input).unwrap();
                    stream.shutdown(Shutdown::Write).unwrap();
                })
            };
            let output = read_to_close(&mut stream);
            writer.join().unwrap();
            output
        });
        let slowest = well_behaved_for(&worker, Duration::from_secs(1));
        eprintln!("huge chunk: slowest well-behaved answer {slowest:?}");
        big.join().unwrap()
    });
    let lengths: Vec<u32> = lengths
        .chunks_exact(4)
        .map(|b| u32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    assert!(
        lengths.iter().all(|&n| n > 0 && n <= 16 * 1024),
        "a poll_stream call got more than --max-chunk: {:?}",
        lengths.iter().max()
    );
    assert_eq!(lengths.iter().map(|&n| n as usize).sum::<usize>(), total);
    back_to_baseline(&worker, base, 8 * 1024, "huge chunk");
}
