//! WASI preview 1 in the worker (`wasi.rs`), over real sockets against the
//! real binary: each provided function, an unsupported one, and the limits
//! (deadline, memory bounds, log budget) inside them.

mod support;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use support::Worker;

/// A module with the three `nur` imports, the WASI functions this file
/// calls, a `$send_i32` helper (sends 4 little-endian bytes) and `body`.
/// Scratch memory: 8192 and up; input at 1024.
fn module(body: &str) -> String {
    format!(
        r#"(module
  (import "nur" "nur_send" (func $send (param i32 i32)))
  (import "nur" "nur_log" (func $log (param i32 i32)))
  (import "nur" "nur_end" (func $end))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_prestat_get" (func $fd_prestat_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_seek" (func $fd_seek (param i32 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "clock_time_get" (func $clock_time_get (param i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "clock_res_get" (func $clock_res_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "random_get" (func $random_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_sizes_get" (func $args_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_get" (func $args_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_sizes_get" (func $environ_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (import "wasi_snapshot_preview1" "sched_yield" (func $sched_yield (result i32)))
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll_oneoff (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_filestat_get" (func $fd_filestat_get (param i32 i32) (result i32)))
  (memory (export "memory") 2)
  (func (export "alloc") (param i32) (result i32) (i32.const 1024))
  (func $send_i32 (param i32)
    (i32.store (i32.const 8192) (local.get 0))
    (call $send (i32.const 8192) (i32.const 4)))
  ;; One iovec at 8200 over [ptr, ptr + len), then fd_write(fd, 8200, 1, 8208).
  (func $write (param $fd i32) (param $ptr i32) (param $len i32) (result i32)
    (i32.store (i32.const 8200) (local.get $ptr))
    (i32.store (i32.const 8204) (local.get $len))
    (call $fd_write (local.get $fd) (i32.const 8200) (i32.const 1) (i32.const 8208)))
  ;; poll_oneoff with one relative monotonic clock subscription of $ns at 8448,
  ;; its event at 8512, the number of events at 8600.
  (func $sleep (param $ns i64) (result i32)
    (i64.store (i32.const 8448) (i64.const 7))
    (i32.store (i32.const 8464) (i32.const 1))
    (i64.store (i32.const 8472) (local.get $ns))
    (call $poll_oneoff (i32.const 8448) (i32.const 8512) (i32.const 1) (i32.const 8600)))
  {body})"#
    )
}

fn errno(bytes: &[u8]) -> Vec<i32> {
    bytes
        .chunks_exact(4)
        .map(|b| i32::from_le_bytes(b.try_into().unwrap()))
        .collect()
}

#[test]
fn fd_write_to_stdout_and_stderr_goes_to_the_log_line_by_line() {
    let body = r#"
      (data (i32.const 0) "first line\nsecond\n partial")
      (data (i32.const 100) "to stderr\1b[31m")
      (func (export "poll_stream") (param $ptr i32) (param $len i32)
        (call $send_i32 (call $write (i32.const 1) (i32.const 0) (i32.const 26)))
        (call $send_i32 (i32.load (i32.const 8208)))
        (call $send_i32 (call $write (i32.const 2) (i32.const 100) (i32.const 14)))
        (call $send_i32 (call $write (i32.const 5) (i32.const 0) (i32.const 4)))
        (call $send_i32 (call $fd_prestat_get (i32.const 3) (i32.const 8300)))
        (call $send_i32 (call $fd_seek (i32.const 1) (i64.const 0) (i32.const 0) (i32.const 8300)))
        (i32.store (i32.const 8208) (i32.const 99))
        (i32.store (i32.const 8200) (i32.const 0))
        (i32.store (i32.const 8204) (i32.const 16))
        (call $send_i32 (call $fd_read (i32.const 0) (i32.const 8200) (i32.const 1) (i32.const 8208)))
        (call $send_i32 (i32.load (i32.const 8208)))
        (call $end))"#;
    let worker = Worker::wat(&module(body), &["--function-name", "printer"]);
    // fd_write: 0 and 26 bytes written, stderr 0, fd 5 EBADF; fd_prestat_get
    // EBADF (no preopens); fd_seek on stdout ESPIPE; fd_read on 0: 0 bytes.
    assert_eq!(errno(&worker.request(b"x")), [0, 26, 0, 8, 8, 70, 0, 0]);
    let wait = |needle: &str| {
        worker
            .wait_log(&[needle], Duration::from_secs(5))
            .unwrap_or_else(|| panic!("{needle} not logged: {:?}", worker.logs()))
    };
    let first = wait("\"message\":\"first line\"");
    assert!(first.contains("\"stream\":\"stdout\""), "{first}");
    assert!(first.contains("\"function\":\"printer\""), "{first}");
    assert!(first.contains("\"connection\":1"), "{first}");
    wait("\"message\":\"second\"");
    // The rest without a newline, once the call returned.
    wait("\"message\":\" partial\"");
    let stderr = wait("to stderr");
    assert!(stderr.contains("\"stream\":\"stderr\""), "{stderr}");
    assert!(
        stderr.contains(r"to stderr\\u{1b}[31m"),
        "escaped: {stderr}"
    );
}

#[test]
fn fd_write_takes_from_the_log_budget_and_checks_its_pointers() {
    let body = r#"
      (data (i32.const 0) "a line of 20 bytes.\n")
      (func (export "poll_stream") (param $ptr i32) (param $len i32)
        (local $i i32)
        (if (i32.eq (i32.load8_u (local.get $ptr)) (i32.const 98))
          (then (drop (call $write (i32.const 1) (i32.const 131000) (i32.const 100)))))
        (loop $more
          (drop (call $write (i32.const 1) (i32.const 0) (i32.const 20)))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br_if $more (i32.lt_u (local.get $i) (i32.const 1000))))
        (call $send (local.get $ptr) (local.get $len))
        (call $end))"#;
    let worker = Worker::wat(&module(body), &["--max-log-bytes", "1Ki"]);
    assert_eq!(worker.request(b"a"), b"a");
    // 19 bytes a line (the newline is not logged): 53 fit 1 KiB.
    assert_eq!(
        worker.wait_metric("nur_guest_log_lines_dropped_total", 1000.0 - 53.0),
        1000.0 - 53.0
    );
    // A buffer past the end of memory: a bad_pointer trap, as in nur_send.
    let mut stream = worker.connect();
    std::io::Write::write_all(&mut stream, b"b").unwrap();
    assert!(support::read_to_close(&mut stream).is_empty());
    assert_eq!(
        worker.wait_metric("nur_guest_traps_total{kind=\"bad_pointer\"}", 1.0),
        1.0
    );
    assert!(
        worker
            .wait_log(
                &["fd_write(131000, 100): the range is outside"],
                Duration::from_secs(5)
            )
            .is_some()
    );
}

#[test]
fn random_get_gives_different_bytes_on_two_connections() {
    let body = r#"
      (func (export "poll_stream") (param $ptr i32) (param $len i32)
        (call $send_i32 (call $random_get (i32.const 9000) (i32.const 32)))
        (call $send (i32.const 9000) (i32.const 32))
        (call $end))"#;
    let worker = Worker::wat(&module(body), &[]);
    let (a, b) = (worker.request(b"x"), worker.request(b"x"));
    assert_eq!((a.len(), errno(&a[..4])), (36, vec![0]));
    assert_eq!(b.len(), 36);
    assert_ne!(a[4..], b[4..]);
    assert_ne!(a[4..], [0; 32]);
}

#[test]
fn clocks_are_realtime_and_monotonic_and_no_other() {
    let body = r#"
      (func (export "poll_stream") (param $ptr i32) (param $len i32)
        (call $send_i32 (call $clock_time_get (i32.const 0) (i64.const 1) (i32.const 9000)))
        (call $send (i32.const 9000) (i32.const 8))
        (call $send_i32 (call $clock_time_get (i32.const 1) (i64.const 1) (i32.const 9000)))
        (call $send (i32.const 9000) (i32.const 8))
        (call $send_i32 (call $clock_time_get (i32.const 1) (i64.const 1) (i32.const 9000)))
        (call $send (i32.const 9000) (i32.const 8))
        (call $send_i32 (call $clock_time_get (i32.const 2) (i64.const 1) (i32.const 9000)))
        (call $send_i32 (call $clock_res_get (i32.const 1) (i32.const 9000)))
        (call $send (i32.const 9000) (i32.const 8))
        (call $send_i32 (call $clock_res_get (i32.const 3) (i32.const 9000)))
        (call $send_i32 (call $sched_yield))
        (call $end))"#;
    let worker = Worker::wat(&module(body), &[]);
    let out = worker.request(b"x");
    assert_eq!(out.len(), 3 * 12 + 4 + 12 + 4 + 4, "{out:?}");
    let u64_at = |at: usize| u64::from_le_bytes(out[at..at + 8].try_into().unwrap());
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    assert_eq!(errno(&out[..4]), [0]);
    let realtime = u64_at(4);
    assert!(
        realtime <= now && now - realtime < 5_000_000_000,
        "{realtime} vs {now}"
    );
    assert!(u64_at(16) <= u64_at(28), "monotonic");
    assert_eq!(errno(&out[36..40]), [28], "CPU-time clocks: EINVAL");
    assert_eq!(errno(&out[40..44]), [0]);
    assert_eq!(u64_at(44), 1, "resolution: 1 ns");
    assert_eq!(errno(&out[52..]), [28, 0]);
}

#[test]
fn args_are_the_functions_name_and_the_environment_is_empty() {
    let body = r#"
      (func (export "poll_stream") (param $ptr i32) (param $len i32)
        (call $send_i32 (call $args_sizes_get (i32.const 9000) (i32.const 9004)))
        (call $send (i32.const 9000) (i32.const 8))
        (call $send_i32 (call $args_get (i32.const 9100) (i32.const 9200)))
        (call $send_i32 (i32.load (i32.const 9100)))
        (call $send (i32.const 9200) (i32.load (i32.const 9004)))
        (i64.store (i32.const 9000) (i64.const -1))
        (call $send_i32 (call $environ_sizes_get (i32.const 9000) (i32.const 9004)))
        (call $send (i32.const 9000) (i32.const 8))
        (call $end))"#;
    let module = support::module_file(&module(body), ".wat");
    let mut command = Worker::command(module.as_os_str(), &["--function-name", "greeter"]);
    command.env("NUR_TEST_SECRET", "the worker's own");
    let worker = Worker::spawn(command).unwrap();
    let out = worker.request(b"x");
    assert_eq!(errno(&out[..16]), [0, 1, 8, 0]);
    assert_eq!(errno(&out[16..20]), [9200], "argv[0] points into argv_buf");
    assert_eq!(&out[20..28], b"greeter\0");
    assert_eq!(errno(&out[28..]), [0, 0, 0], "no variables");
}

#[test]
fn proc_exit_ends_the_connection_and_is_counted_by_code() {
    let body = r#"
      (data (i32.const 0) "bye")
      (func (export "poll_stream") (param $ptr i32) (param $len i32)
        (call $send (i32.const 0) (i32.const 3))
        (call $proc_exit (i32.load8_u (local.get $ptr)))
        (call $send (i32.const 0) (i32.const 3)))"#;
    let worker = Worker::wat(&module(body), &[]);
    // Ends at once, without waiting for the client's EOF.
    let mut stream = worker.connect();
    std::io::Write::write_all(&mut stream, &[3]).unwrap();
    assert_eq!(support::read_to_close(&mut stream), b"bye");
    assert_eq!(worker.request(&[0]), b"bye");
    assert_eq!(
        worker.wait_metric("nur_guest_exits_total{code=\"3\"}", 1.0),
        1.0
    );
    assert_eq!(
        worker.wait_metric("nur_guest_exits_total{code=\"0\"}", 1.0),
        1.0
    );
    assert_eq!(
        worker.wait_metric("nur_connection_closes_total{reason=\"ended\"}", 2.0),
        2.0
    );
    assert_eq!(worker.metric("nur_guest_traps_total{kind=\"other\"}"), 0.0);
    let line = worker
        .wait_log(&["proc_exit(3)"], Duration::from_secs(5))
        .expect("a code other than 0 is logged");
    assert!(line.contains("\"code\":3"), "{line}");
    assert!(
        worker
            .wait_log(&["proc_exit(0)"], Duration::from_millis(200))
            .is_none()
    );
}

#[test]
fn an_unsupported_import_loads_answers_enosys_and_is_counted() {
    let body = r#"
      (func (export "poll_stream") (param $ptr i32) (param $len i32)
        (call $send_i32 (call $fd_filestat_get (i32.const 3) (i32.const 9000)))
        (call $send_i32 (call $fd_filestat_get (i32.const 4) (i32.const 9000)))
        (call $end))"#;
    let worker = Worker::wat(&module(body), &[]);
    assert_eq!(errno(&worker.request(b"x")), [52, 52]);
    assert_eq!(
        worker.wait_metric(
            "nur_wasi_unsupported_calls_total{function=\"fd_filestat_get\"}",
            2.0
        ),
        2.0
    );
}

#[test]
fn poll_oneoff_sleeps_and_the_deadline_cuts_a_sleep_and_a_loop_of_them() {
    // "s": one 50 ms sleep; "l": 100 ms sleeps forever; "f": one of 60 s.
    let body = r#"
      (func (export "poll_stream") (param $ptr i32) (param $len i32)
        (local $c i32)
        (local.set $c (i32.load8_u (local.get $ptr)))
        (if (i32.eq (local.get $c) (i32.const 115))
          (then
            (call $send_i32 (call $sleep (i64.const 50000000)))
            (call $send_i32 (i32.load (i32.const 8600)))
            (call $send (i32.const 8512) (i32.const 11))
            (call $end)
            (return)))
        (if (i32.eq (local.get $c) (i32.const 102))
          (then (drop (call $sleep (i64.const 60000000000)))))
        (loop $forever
          (drop (call $sleep (i64.const 100000000)))
          (br $forever)))"#;
    let worker = Worker::wat(&module(body), &["--timeout", "1s"]);
    let started = Instant::now();
    let out = worker.request(b"s");
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(50), "{took:?}");
    assert_eq!(errno(&out[..8]), [0, 1]);
    // The event: userdata 7, errno 0, type clock.
    assert_eq!(&out[8..], [7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    for (input, timeouts) in [(b"l", 1.0), (b"f", 2.0)] {
        let started = Instant::now();
        let mut stream = worker.connect();
        std::io::Write::write_all(&mut stream, input).unwrap();
        assert!(support::read_to_close(&mut stream).is_empty());
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(950) && took < Duration::from_millis(2500),
            "{took:?}"
        );
        assert_eq!(
            worker.wait_metric("nur_guest_traps_total{kind=\"timeout\"}", timeouts),
            timeouts
        );
    }
    assert!(
        worker
            .wait_log(
                &["poll_oneoff: called past the connection's deadline"],
                Duration::from_secs(5)
            )
            .is_some()
    );
}

#[test]
fn check_lists_the_wasi_imports_provided_and_those_answering_enosys() {
    let file = support::module_file(
        &module("(func (export \"poll_stream\") (param i32 i32))"),
        ".wat",
    );
    let (code, out) = support::check(&file);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(
            "wasi      wasi_snapshot_preview1 (WASI preview 1) provided: fd_write, fd_read, \
             fd_prestat_get, fd_seek, clock_time_get, clock_res_get, random_get, args_sizes_get, \
             args_get, environ_sizes_get, proc_exit, sched_yield, poll_oneoff"
        ),
        "{out}"
    );
    assert!(
        out.contains("          returning ENOSYS (52): fd_filestat_get\n"),
        "{out}"
    );
    // Imports from any other module are still refused, and WASI ones with
    // another signature.
    let other = support::module_file(
        &module("(func (export \"poll_stream\") (param i32 i32))")
            .replace("\"fd_filestat_get\"", "\"fd_write\"")
            .replace(
                "(import \"nur\" \"nur_end\" (func $end))",
                "(import \"nur\" \"nur_end\" (func $end)) (import \"env\" \"abort\" (func))",
            ),
        ".wat",
    );
    let (code, out) = support::check(&other);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("import env.abort: only functions from \"nur\" may be imported"),
        "{out}"
    );
    assert!(
        out.contains(
            "import wasi_snapshot_preview1.fd_write has signature (i32, i32) -> (i32), expected \
             (i32, i32, i32, i32) -> (i32) (WASI preview 1)"
        ),
        "{out}"
    );
}

/// A WASI command: `fd_read`, `fd_write`, `proc_exit` and `poll_oneoff`,
/// `$read` (one fd_read of fd 0 into [1024, 1024 + 4096), the count), `$out`
/// (one fd_write of [ptr, ptr + len) to fd `fd`), `$sleep` (ns) and `body`,
/// which defines `_start`.
fn command(body: &str) -> String {
    format!(
        r#"(module
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll_oneoff (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 4)
  (func $read (result i32)
    (i32.store (i32.const 16) (i32.const 1024))
    (i32.store (i32.const 20) (i32.const 4096))
    (drop (call $fd_read (i32.const 0) (i32.const 16) (i32.const 1) (i32.const 24)))
    (i32.load (i32.const 24)))
  (func $out (param $fd i32) (param $ptr i32) (param $len i32)
    (i32.store (i32.const 32) (local.get $ptr))
    (i32.store (i32.const 36) (local.get $len))
    (drop (call $fd_write (local.get $fd) (i32.const 32) (i32.const 1) (i32.const 40))))
  (func $sleep (param $ns i64)
    (i64.store (i32.const 8448) (i64.const 7))
    (i32.store (i32.const 8464) (i32.const 1))
    (i64.store (i32.const 8472) (local.get $ns))
    (drop (call $poll_oneoff (i32.const 8448) (i32.const 8512) (i32.const 1) (i32.const 8600))))
  {body})"#
    )
}

#[test]
fn a_command_echoes_as_it_reads_and_its_proc_exit_3_is_logged_and_counted() {
    let body = r#"
      (data (i32.const 100) "bye\n")
      (func (export "_start") (local $n i32)
        (loop $more
          (local.set $n (call $read))
          (if (local.get $n)
            (then
              (call $out (i32.const 1) (i32.const 1024) (local.get $n))
              (br $more))))
        (call $out (i32.const 2) (i32.const 100) (i32.const 4))
        (call $out (i32.const 1) (i32.const 100) (i32.const 4))
        (call $proc_exit (i32.const 3))
        (unreachable))"#;
    let file = support::module_file(&command(body), ".wat");
    let worker = Worker::start(&file, &[]);
    let (_, check) = support::check(&file);
    assert!(check.contains("kind      wasi-command"), "{check}");
    let mut stream = worker.connect();
    for chunk in [&b"abc"[..], b"defg"] {
        std::io::Write::write_all(&mut stream, chunk).unwrap();
        let mut echoed = vec![0; chunk.len()];
        std::io::Read::read_exact(&mut stream, &mut echoed).unwrap();
        assert_eq!(echoed, chunk, "echoed before the next chunk is sent");
    }
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    assert_eq!(support::read_to_close(&mut stream), b"bye\n");
    assert_eq!(
        worker.wait_metric("nur_guest_exits_total{code=\"3\"}", 1.0),
        1.0
    );
    assert_eq!(
        worker.wait_metric("nur_connection_closes_total{reason=\"eof\"}", 1.0),
        1.0
    );
    assert_eq!(worker.metric("nur_received_bytes_total"), 7.0);
    assert_eq!(worker.metric("nur_sent_bytes_total"), 11.0);
    let line = worker
        .wait_log(&["proc_exit(3)"], Duration::from_secs(5))
        .expect("a code other than 0 is logged");
    assert!(line.contains("\"code\":3"), "{line}");
    let line = worker
        .wait_log(&["\"stream\":\"stderr\""], Duration::from_secs(5))
        .expect("stderr reaches the log");
    assert!(line.contains("bye"), "{line}");
}

#[test]
fn a_command_stops_at_the_deadline_the_idle_timeout_and_the_output_limit() {
    // "s": sleeps 60 s; "r": reads again, and the client sends nothing more;
    // "w": writes 4 KiB forever to a client that does not read; "b": one
    // fd_write of 128 KiB, over --max-output.
    let body = r#"
      (func (export "_start") (local $c i32)
        (drop (call $read))
        (local.set $c (i32.load8_u (i32.const 1024)))
        (if (i32.eq (local.get $c) (i32.const 115))
          (then (call $sleep (i64.const 60000000000))))
        (if (i32.eq (local.get $c) (i32.const 114))
          (then (drop (call $read))))
        (if (i32.eq (local.get $c) (i32.const 98))
          (then (call $out (i32.const 1) (i32.const 0) (i32.const 131072))))
        (if (i32.eq (local.get $c) (i32.const 119))
          (then (loop $forever
            (call $out (i32.const 1) (i32.const 0) (i32.const 4096))
            (br $forever)))))"#;
    let worker = Worker::wat(
        &command(body),
        &[
            "--timeout",
            "1500ms",
            "--idle-timeout",
            "500ms",
            "--max-output",
            "64Ki",
        ],
    );
    let timed = |input: &[u8], read: bool| {
        let started = Instant::now();
        let mut stream = worker.connect();
        std::io::Write::write_all(&mut stream, input).unwrap();
        if read {
            support::read_to_close(&mut stream);
        } else {
            // Not reading: wait for the worker to give up on this client.
            std::thread::sleep(Duration::from_millis(1200));
        }
        started.elapsed()
    };
    let took = timed(b"s", true);
    assert!(
        took >= Duration::from_millis(1400) && took < Duration::from_millis(3000),
        "a sleep ends at the deadline: {took:?}"
    );
    assert_eq!(
        worker.wait_metric("nur_guest_traps_total{kind=\"timeout\"}", 1.0),
        1.0
    );
    let took = timed(b"r", true);
    assert!(
        took >= Duration::from_millis(450) && took < Duration::from_millis(3000),
        "a read with nothing to read ends: {took:?}"
    );
    // At the idle timeout, not the deadline: closed idle, no timeout trap.
    assert_eq!(
        worker.wait_metric("nur_connection_closes_total{reason=\"idle\"}", 1.0),
        1.0
    );
    assert_eq!(
        worker.metric("nur_guest_traps_total{kind=\"timeout\"}"),
        1.0,
        "the read was cut at the deadline"
    );
    timed(b"w", false);
    assert_eq!(
        worker.wait_metric("nur_connection_closes_total{reason=\"idle\"}", 2.0),
        2.0,
        "a client that does not read is dropped at the idle timeout"
    );
    assert!(
        worker.metric("nur_sent_bytes_total") < 64.0 * 1024.0 * 1024.0,
        "the writes waited for the client"
    );
    assert!(timed(b"b", true) < Duration::from_secs(3));
    assert_eq!(
        worker.wait_metric("nur_guest_traps_total{kind=\"output_limit\"}", 1.0),
        1.0
    );
    assert!(
        worker
            .wait_log(
                &["fd_write: output of one call would exceed 65536 bytes"],
                Duration::from_secs(5)
            )
            .is_some()
    );
}
