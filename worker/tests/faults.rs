//! Guest faults and limits: each ends only its own connection.

mod support;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use support::{Worker, read_to_close, wat};

/// Echoes a chunk and ends, unless the chunk starts with a command byte:
/// `s` spins forever, `t` traps, `o` sends from outside memory, `d` divides by zero.
const FAULTY: &str = r#"
  (func (export "poll_stream") (param $ptr i32) (param $len i32)
    (local $cmd i32)
    (if (i32.eqz (local.get $len)) (then (call $end) (return)))
    (local.set $cmd (i32.load8_u (local.get $ptr)))
    (if (i32.eq (local.get $cmd) (i32.const 115)) (then (loop $forever (br $forever))))
    (if (i32.eq (local.get $cmd) (i32.const 116)) (then unreachable))
    (if (i32.eq (local.get $cmd) (i32.const 111))
      (then
        (call $send (local.get $ptr) (local.get $len))
        (call $send (i32.const 0xffff0000) (i32.const 16))))
    (if (i32.eq (local.get $cmd) (i32.const 100))
      (then (drop (i32.div_u (i32.const 1) (i32.sub (local.get $cmd) (i32.const 100))))))
    (call $send (local.get $ptr) (local.get $len))
    (call $end))"#;

fn faulty(args: &[&str]) -> Worker {
    Worker::wat(&wat(FAULTY), args)
}

#[test]
fn a_trap_closes_only_its_connection() {
    let worker = faulty(&[]);
    let mut held = worker.connect();
    assert_eq!(
        worker.request(b"trap"),
        b"",
        "a trapping connection gets nothing"
    );
    held.write_all(b"held open").unwrap();
    assert_eq!(read_to_close(&mut held), b"held open");
    assert_eq!(
        worker.wait_metric("nur_guest_traps_total{kind=\"unreachable\"}", 1.0),
        1.0
    );
    assert_eq!(worker.request(b"div"), b"");
    assert_eq!(
        worker.wait_metric("nur_guest_traps_total{kind=\"arithmetic\"}", 1.0),
        1.0
    );
    let line = worker
        .wait_log(&["guest fault", "unreachable"], Duration::from_secs(5))
        .expect("the trap is logged");
    assert!(line.contains("\"connection\":2"), "{line}");
}

#[test]
fn an_out_of_bounds_nur_send_closes_only_that_connection_and_sends_nothing() {
    let worker = faulty(&[]);
    assert_eq!(worker.request(b"out of bounds"), b"");
    assert_eq!(
        worker.wait_metric("nur_guest_traps_total{kind=\"bad_pointer\"}", 1.0),
        1.0
    );
    assert!(
        worker
            .wait_log(&["nur_send(4294901760, 16)"], Duration::from_secs(5))
            .is_some()
    );
    assert_eq!(worker.request(b"fine"), b"fine");
}

#[test]
fn an_endless_loop_is_interrupted_at_the_timeout() {
    let worker = faulty(&["--timeout", "1s"]);
    let started = Instant::now();
    assert_eq!(worker.request(b"spin"), b"");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "{took:?}"
    );
    assert_eq!(
        worker.wait_metric("nur_guest_traps_total{kind=\"timeout\"}", 1.0),
        1.0
    );
    // The guest really stopped: the worker's CPU time stops growing.
    let cpu = || {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", worker.pid())).unwrap();
        let fields: Vec<u64> = stat
            .rsplit(')')
            .next()
            .unwrap()
            .split_whitespace()
            .skip(11)
            .take(2)
            .map(|f| f.parse().unwrap())
            .collect();
        fields[0] + fields[1]
    };
    let before = cpu();
    std::thread::sleep(Duration::from_secs(1));
    let spent = cpu() - before;
    assert!(
        spent < 20,
        "the worker used {spent} ticks of CPU in a second after the interrupt"
    );
}

#[test]
fn while_two_connections_spin_forty_others_are_answered() {
    // Two spinners: as many runtime threads as a 2-CPU worker lends to
    // guests, so both lent threads are held.
    let worker = faulty(&["--timeout", "20s"]);
    let spinners: Vec<_> = (0..2)
        .map(|_| {
            let mut spinner = worker.connect();
            spinner.write_all(b"spin").unwrap();
            spinner
        })
        .collect();
    worker.wait_metric("nur_connections_active", 2.0);
    let started = Instant::now();
    worker.concurrently(40, "hello", |input, output| assert_eq!(output, input));
    let took = started.elapsed();
    // Held behind a spinner, they would wait for its 20 s deadline.
    assert!(took < Duration::from_secs(5), "40 answers took {took:?}");
    let timeouts = worker.metric("nur_guest_traps_total{kind=\"timeout\"}");
    assert_eq!(timeouts, 0.0, "answered while both still spun");
    drop(spinners);
}

#[test]
fn while_one_connection_spins_the_admin_port_and_new_connections_answer_at_once() {
    // An idle worker: the runtime thread that wakes for the spinner's bytes
    // is the one that was waiting on the sockets, and it runs the guest.
    let worker = faulty(&["--timeout", "20s"]);
    let mut spinner = worker.connect();
    spinner.write_all(b"spin").unwrap();
    // The admin port is what is tested, so it cannot tell when the spinner
    // runs; when it does not run yet, the rounds below still must pass.
    std::thread::sleep(Duration::from_millis(300));
    for round in 0..5 {
        let started = Instant::now();
        let active = worker.metric("nur_connections_active");
        let took = started.elapsed();
        assert!(
            took < Duration::from_secs(2),
            "round {round}: /metrics took {took:?}"
        );
        assert!(active >= 1.0, "round {round}: the spinner is counted");
        let started = Instant::now();
        assert_eq!(worker.request(b"hello"), b"hello");
        let took = started.elapsed();
        assert!(
            took < Duration::from_secs(2),
            "round {round}: an answer took {took:?}"
        );
    }
    let timeouts = worker.metric("nur_guest_traps_total{kind=\"timeout\"}");
    assert_eq!(timeouts, 0.0, "all answered while the spinner spun");
    drop(spinner);
}

#[test]
fn memory_grow_past_the_limit_returns_minus_one() {
    // Grows memory by the chunk's first byte in pages and sends memory.grow's result.
    let body = r#"
      (func (export "poll_stream") (param $ptr i32) (param $len i32)
        (if (i32.eqz (local.get $len)) (then (call $end) (return)))
        (i32.store (i32.const 0) (memory.grow (i32.load8_u (local.get $ptr))))
        (call $send (i32.const 0) (i32.const 4)))"#;
    let worker = Worker::wat(&wat(body), &["--memory-limit", "1Mi"]); // 16 pages
    let mut stream = worker.connect();
    let mut grow = |pages: u8| {
        stream.write_all(&[pages]).unwrap();
        let mut result = [0; 4];
        stream.read_exact(&mut result).unwrap();
        i32::from_le_bytes(result)
    };
    assert_eq!(grow(10), 2, "2 -> 12 pages: returns the old size");
    assert_eq!(grow(5), -1, "12 + 5 > 16 pages");
    assert_eq!(grow(4), 12, "up to the limit exactly");
    assert_eq!(grow(1), -1);
    drop(stream);
    assert_eq!(
        worker.request(&[200]),
        (-1i32).to_le_bytes(),
        "a memory bomb gets -1 too"
    );
}

#[test]
fn a_module_whose_initial_memory_is_above_the_limit_is_refused_at_start() {
    let module = support::module_file(
        &wat(FAULTY).replace(
            "(memory (export \"memory\") 2)",
            "(memory (export \"memory\") 40)",
        ),
        ".wat",
    );
    let failed = Worker::try_start(&module, &["--memory-limit", "1Mi"])
        .err()
        .expect("refused");
    failed.assert_refused("initial memory (2621440 bytes) is above --memory-limit (1048576 bytes)");
}

#[test]
fn output_past_the_per_call_limit_is_a_trap() {
    let body = r#"
      (func (export "poll_stream") (param $ptr i32) (param $len i32)
        (call $send (i32.const 0) (i32.const 40000))
        (call $send (i32.const 0) (i32.const 40000))
        (call $end))"#;
    let worker = Worker::wat(&wat(body), &["--max-output", "64Ki"]);
    assert_eq!(worker.request(b"go"), b"");
    assert_eq!(
        worker.wait_metric("nur_guest_traps_total{kind=\"output_limit\"}", 1.0),
        1.0
    );
}

#[test]
fn alloc_returning_an_address_that_does_not_fit_closes_the_connection() {
    let text = wat(FAULTY).replace("(i32.const 1024))", "(i32.const 131060))");
    let worker = Worker::wat(&text, &[]);
    assert_eq!(worker.request(b"a chunk that does not fit at 131060"), b"");
    assert_eq!(
        worker.wait_metric("nur_guest_traps_total{kind=\"bad_alloc\"}", 1.0),
        1.0
    );
    assert!(
        worker
            .wait_log(&["alloc(35) returned 131060"], Duration::from_secs(5))
            .is_some()
    );
}

#[test]
fn idle_clients_are_closed_after_the_idle_timeout() {
    let worker = faulty(&["--idle-timeout", "300ms"]);
    // Silent from the start.
    let started = Instant::now();
    let mut silent = worker.connect();
    assert_eq!(read_to_close(&mut silent), b"");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(3),
        "{took:?}"
    );
    // Silent mid-request (the function waits for more).
    let frames = Worker::wat(
        &wat(
            r#"(func (export "poll_stream") (param $ptr i32) (param $len i32)
             (call $send (local.get $ptr) (local.get $len)))"#,
        ),
        &["--idle-timeout", "300ms"],
    );
    let mut stream = frames.connect();
    stream.write_all(b"part").unwrap();
    let started = Instant::now();
    assert_eq!(read_to_close(&mut stream), b"part");
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(
        frames.wait_metric("nur_connection_closes_total{reason=\"idle\"}", 1.0),
        1.0
    );
}

#[test]
fn connections_beyond_max_connections_wait_and_are_served() {
    let worker = faulty(&["--max-connections", "2", "--timeout", "2s"]);
    // Two spinning guests hold both slots until their deadline, 2 s after
    // their accept (after `started`).
    let started = Instant::now();
    let spinners: Vec<_> = (0..2)
        .map(|_| {
            let mut s = worker.connect();
            s.write_all(b"spin").unwrap();
            s
        })
        .collect();
    assert_eq!(worker.wait_metric("nur_connections_active", 2.0), 2.0);
    // Half a second later: this request's own deadline, 2 s after its
    // accept, is then well after the slots free.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(worker.request(b"waited"), b"waited");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(2),
        "served after {waited:?}, before a slot was free"
    );
    drop(spinners);
    // A flood of ten times the limit at once: every request is served.
    worker.concurrently(20, "request", |input, output| assert_eq!(output, input));
    assert_eq!(worker.wait_metric("nur_connections_total", 23.0), 23.0);
}

#[test]
fn runaway_recursion_and_a_looping_start_function_end_only_their_connection() {
    let body = r#"
      (func $deeper (param i32) (result i32) (call $deeper (i32.add (local.get 0) (i32.const 1))))
      (func (export "poll_stream") (param $ptr i32) (param $len i32)
        (if (i32.eq (i32.load8_u (local.get $ptr)) (i32.const 114))
          (then (drop (call $deeper (i32.const 0)))))
        (call $send (local.get $ptr) (local.get $len))
        (call $end))"#;
    let worker = Worker::wat(&wat(body), &[]);
    assert_eq!(worker.request(b"recurse"), b"");
    assert_eq!(
        worker.wait_metric("nur_guest_traps_total{kind=\"stack_overflow\"}", 1.0),
        1.0
    );
    assert_eq!(worker.request(b"fine"), b"fine");

    let looping_start = wat(FAULTY).replace(
        "(func (export \"alloc\")",
        "(func $start (loop $l (br $l))) (start $start) (func (export \"alloc\")",
    );
    let worker = Worker::wat(&looping_start, &["--timeout", "500ms"]);
    let started = Instant::now();
    assert_eq!(worker.request(b"x"), b"");
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(
        worker.wait_metric("nur_guest_traps_total{kind=\"timeout\"}", 1.0),
        1.0
    );
}

#[test]
fn a_module_whose_initial_table_does_not_fit_the_limit_is_refused_at_start() {
    let module = support::module_file(
        &wat(FAULTY).replace(
            "(memory (export \"memory\") 2)",
            "(memory (export \"memory\") 2) (table 20000000 funcref)",
        ),
        ".wat",
    );
    let failed = Worker::try_start(&module, &["--memory-limit", "128Mi"])
        .err()
        .expect("refused");
    failed.assert_refused(
        "table 0 (20000000 entries, 160000000 bytes) does not fit --memory-limit (134217728 bytes)",
    );
}

#[test]
fn table_grow_past_the_limit_returns_minus_one_and_memory_stays_bounded() {
    // Grows the table by 65,536 entries (512 KiB) at a time, at most 256 times
    // or until table.grow returns -1; sends the grows that worked and the size.
    let body = r#"
      (table $t 1 funcref)
      (func (export "poll_stream") (param $ptr i32) (param $len i32)
        (local $grown i32)
        (if (i32.eqz (local.get $len)) (then (call $end) (return)))
        (block $full (loop $more
          (br_if $full (i32.eq (table.grow $t (ref.null func) (i32.const 65536)) (i32.const -1)))
          (local.set $grown (i32.add (local.get $grown) (i32.const 1)))
          (br_if $more (i32.lt_u (local.get $grown) (i32.const 256)))))
        (i32.store (i32.const 0) (local.get $grown))
        (i32.store (i32.const 4) (table.size $t))
        (call $send (i32.const 0) (i32.const 8))
        (call $end))"#;
    // A memory of 2 pages at most: the tables get the rest of the 16 MiB.
    let text = wat(body).replace(
        "(memory (export \"memory\") 2)",
        "(memory (export \"memory\") 2 2)",
    );
    let limit: u64 = 16 << 20;
    let worker = Worker::wat(&text, &["--memory-limit", "16Mi"]);
    let baseline = worker.rss_kib();
    let fit = (limit - 2 * 65536) / 8;
    worker.concurrently(4, "grow", |_, output| {
        let grown = u32::from_le_bytes(output[..4].try_into().unwrap());
        let size = u64::from(u32::from_le_bytes(output[4..8].try_into().unwrap()));
        assert_eq!(u64::from(grown), (fit - 1) / 65536, "then -1");
        assert!(size <= fit, "{size} entries, more than the {fit} that fit");
    });
    let grown_kib = worker.rss_kib().saturating_sub(baseline);
    assert!(
        grown_kib < 4 * (limit >> 10) + (32 << 10),
        "RSS grew by {grown_kib} KiB"
    );
}

#[test]
fn a_guest_looping_over_host_calls_stops_at_its_next_call_past_the_deadline() {
    let body = r#"
      (func (export "poll_stream") (param $ptr i32) (param $len i32)
        (loop $forever (call $log (local.get $ptr) (i32.const 0)) (br $forever)))"#;
    let worker = Worker::wat(&wat(body), &["--timeout", "300ms"]);
    let started = Instant::now();
    assert_eq!(worker.request(b"log"), b"");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        worker.wait_metric("nur_guest_traps_total{kind=\"timeout\"}", 1.0),
        1.0
    );
    // Stopped by the host function's own check, or by an interrupt that
    // found the guest between two calls, in its compiled loop: either way
    // a timeout fault, within the bound above.
    assert!(
        worker
            .wait_log(&["guest fault", "timeout"], Duration::from_secs(5))
            .is_some(),
        "{:?}",
        worker.logs()
    );
}
