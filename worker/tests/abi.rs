//! Each rule of the ABI, over real sockets against the real worker.

mod support;

use std::io::{Read, Write};
use std::net::Shutdown;
use std::time::Duration;

use support::{Worker, read_to_close, wat};

/// Frames every chunk as `[chunk]`, answers `EOF` to `poll_stream(0, 0)` and ends.
const FRAMES: &str = r#"
  (data (i32.const 0) "[]EOF")
  (func (export "poll_stream") (param $ptr i32) (param $len i32)
    (if (i32.eqz (local.get $len))
      (then (call $send (i32.const 2) (i32.const 3)) (call $end) (return)))
    (call $send (i32.const 0) (i32.const 1))
    (call $send (local.get $ptr) (local.get $len))
    (call $send (i32.const 1) (i32.const 1)))"#;

#[test]
fn every_chunk_is_one_poll_stream_call_in_order_and_eof_is_called_once() {
    let worker = Worker::wat(&wat(FRAMES), &[]);
    let mut stream = worker.connect();
    stream.write_all(b"abc").unwrap();
    let mut first = [0; 5];
    stream.read_exact(&mut first).unwrap();
    assert_eq!(
        &first, b"[abc]",
        "output of a chunk is flushed before the next read"
    );
    // Each answer read before the next chunk is sent, so each chunk is read
    // alone however slow the machine.
    stream.write_all(b"de").unwrap();
    let mut second = [0; 4];
    stream.read_exact(&mut second).unwrap();
    assert_eq!(&second, b"[de]");
    stream.write_all(b"f").unwrap();
    let mut third = [0; 3];
    stream.read_exact(&mut third).unwrap();
    assert_eq!(&third, b"[f]");
    stream.shutdown(Shutdown::Write).unwrap();
    let rest = read_to_close(&mut stream);
    assert_eq!(String::from_utf8(rest).unwrap(), "EOF");
}

#[test]
fn nur_end_flushes_and_closes_without_waiting_for_the_client() {
    // Ends after the first chunk; the client never half-closes.
    let body = r#"
      (func (export "poll_stream") (param $ptr i32) (param $len i32)
        (call $send (local.get $ptr) (local.get $len))
        (call $end)
        (call $send (local.get $ptr) (local.get $len)))"#;
    let worker = Worker::wat(&wat(body), &[]);
    let mut stream = worker.connect();
    stream.write_all(b"once").unwrap();
    assert_eq!(
        read_to_close(&mut stream),
        b"once",
        "sends after nur_end are ignored"
    );
}

#[test]
fn nur_log_goes_to_the_log_tagged_and_never_to_the_client() {
    let body = r#"
      (data (i32.const 0) "hello from the guest\ff")
      (func (export "poll_stream") (param $ptr i32) (param $len i32)
        (call $log (i32.const 0) (i32.const 21))
        (call $send (local.get $ptr) (local.get $len))
        (call $end))"#;
    let worker = Worker::wat(&wat(body), &["--function-name", "greeter"]);
    assert_eq!(worker.request(b"x"), b"x");
    let line = worker
        .wait_log(&["hello from the guest"], Duration::from_secs(5))
        .expect("the guest's log line reaches the worker's log");
    assert!(line.contains("\"function\":\"greeter\""), "{line}");
    assert!(line.contains("\"connection\":1"), "{line}");
    assert!(line.contains("\"level\":\"INFO\""), "{line}");
    assert!(
        line.contains("guest\u{fffd}"),
        "invalid UTF-8 is replaced: {line}"
    );
}

#[test]
fn every_connection_gets_a_fresh_instance_and_initialize_runs_once() {
    // `_initialize` sets the counter to 10; each chunk adds one and sends it.
    let body = r#"
      (global $n (mut i32) (i32.const 0))
      (func (export "_initialize") (global.set $n (i32.add (global.get $n) (i32.const 10))))
      (func (export "poll_stream") (param $ptr i32) (param $len i32)
        (if (i32.eqz (local.get $len)) (then (call $end) (return)))
        (global.set $n (i32.add (global.get $n) (i32.const 1)))
        (i32.store8 (i32.const 0) (i32.add (i32.const 48) (global.get $n)))
        (call $send (i32.const 0) (i32.const 1)))"#;
    let worker = Worker::wat(&wat(body), &[]);
    for _ in 0..3 {
        let mut stream = worker.connect();
        let mut got = [0; 1];
        stream.write_all(b"a").unwrap();
        stream.read_exact(&mut got).unwrap();
        assert_eq!(
            &got, b";",
            "10 + 1 = ';' - 48: state from other connections never shows"
        );
        stream.write_all(b"b").unwrap();
        stream.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"<", "state persists within a connection");
    }
}

#[test]
fn chunks_are_at_most_max_chunk() {
    // Sends each chunk's length as a little-endian u32.
    let body = r#"
      (func (export "poll_stream") (param $ptr i32) (param $len i32)
        (if (i32.eqz (local.get $len)) (then (call $end) (return)))
        (i32.store (i32.const 0) (local.get $len))
        (call $send (i32.const 0) (i32.const 4)))"#;
    let worker = Worker::wat(&wat(body), &["--max-chunk", "1Ki"]);
    let reply = worker.request(&[7; 10_000]);
    let lengths: Vec<u32> = reply
        .chunks(4)
        .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(lengths.iter().sum::<u32>(), 10_000);
    assert!(lengths.iter().all(|&l| l <= 1024), "{lengths:?}");
}

#[test]
fn a_client_that_does_not_read_is_not_fed() {
    // Each chunk logs "chunk" and sends 64 KiB times the chunk's first byte.
    let body = r#"
      (data (i32.const 0) "chunk")
      (func (export "poll_stream") (param $ptr i32) (param $len i32)
        (local $i i32)
        (if (i32.eqz (local.get $len)) (then (call $end) (return)))
        (call $log (i32.const 0) (i32.const 5))
        (local.set $i (i32.load8_u (local.get $ptr)))
        (block $done (loop $more
          (br_if $done (i32.eqz (local.get $i)))
          (call $send (i32.const 0) (i32.const 65536))
          (local.set $i (i32.sub (local.get $i) (i32.const 1)))
          (br $more))))"#;
    let worker = Worker::wat(
        &wat(body),
        &["--max-output", "64Mi", "--idle-timeout", "20s"],
    );
    let mut stream = worker.connect();
    stream.write_all(&[255]).unwrap(); // ~16 MiB of output, more than the socket buffers hold
    assert!(
        worker
            .wait_log(&["chunk"], Duration::from_secs(5))
            .is_some()
    );
    stream.write_all(&[1]).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let chunks = |w: &Worker| w.logs().iter().filter(|l| l.contains("chunk")).count();
    assert_eq!(
        chunks(&worker),
        1,
        "the second chunk waits until the output is taken"
    );
    stream.shutdown(Shutdown::Write).unwrap();
    let got = read_to_close(&mut stream);
    assert_eq!(got.len(), 256 * 65536);
    assert_eq!(chunks(&worker), 2);
}

#[test]
fn check_refuses_a_second_memory_and_shared_memory() {
    let body = r#"(func (export "poll_stream") (param i32 i32))"#;
    let two = wat(body).replace(
        "(memory (export \"memory\") 2)",
        "(memory (export \"memory\") 2) (memory 1)",
    );
    let shared = wat(body).replace(
        "(memory (export \"memory\") 2)",
        "(memory (export \"memory\") 2 2 shared)",
    );
    for (text, message) in [(two, "multiple memories"), (shared, "threads")] {
        let module = support::module_file(&text, ".wat");
        let (code, out) = support::check(&module);
        assert_eq!(code, 1, "{out}");
        assert!(out.contains(message), "{message:?} missing from\n{out}");
    }
}

#[test]
fn check_prints_each_problem_once_with_foreign_imports_grouped() {
    // WASI imports pass (tests/wasi.rs); three from another module do not.
    let module = r#"(module
      (import "env" "sched_yield" (func (result i32)))
      (import "env" "proc_exit" (func (param i32)))
      (import "wasi_snapshot_preview1" "proc_exit" (func (param i32)))
      (import "env" "fd_write" (func (param i32 i32 i32 i32) (result i32)))
      (memory (export "memory") 1)
      (func (export "alloc") (param i32) (result i32) i32.const 0)
      (func (export "poll_stream") (param i32 i32)))"#;
    let file = tempfile::Builder::new().suffix(".wat").tempfile().unwrap();
    std::fs::write(file.path(), module).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_nur-worker"))
        .arg("check")
        .arg(file.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        text.trim(),
        format!(
            "error: {}: breaks the Nur ABI: imports from env (3): \
             sched_yield, proc_exit, fd_write: only functions from \"nur\" may be imported",
            file.path().display()
        )
    );
}
