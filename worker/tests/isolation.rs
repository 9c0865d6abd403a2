//! Instance memories are reused between connections (worker/src/pool.rs):
//! no connection may see what an earlier one left in memory, nor memory an
//! earlier one grew.

mod support;

use std::time::Duration;

use support::{Worker, wat};

/// Answers with what memory holds before this connection writes anything
/// (16 bytes at 64 and 15 at 2048),
/// then `memory.size`. Then leaves its input at 64, grows memory by one page
/// and writes into the new page. A chunk starting with `p` instead loads from
/// the page an earlier connection grew, which must trap.
const LEAVES_TRACES: &str = r#"
  (func (export "poll_stream") (param $ptr i32) (param $len i32)
    (if (i32.eqz (local.get $len)) (then (call $end) (return)))
    (if (i32.eq (i32.load8_u (local.get $ptr)) (i32.const 112))
      (then (drop (i32.load (i32.const 131072)))))
    (call $send (i32.const 64) (i32.const 16))
    (call $send (i32.const 2048) (i32.const 15))
    (i32.store8 (i32.const 200) (memory.size))
    (call $send (i32.const 200) (i32.const 1))
    (memory.copy (i32.const 64) (local.get $ptr) (local.get $len))
    (if (i32.ne (memory.grow (i32.const 1)) (i32.const 2)) (then unreachable))
    (i32.store (i32.const 131072) (i32.const 0x53454352))
    (i32.store (i32.const 2050) (i32.const 0x53454352))
    (call $end))"#;

fn clean_answer() -> Vec<u8> {
    let mut answer = vec![0; 31];
    answer.push(2); // memory.size: the initial two pages
    answer
}

#[test]
fn a_connection_never_sees_memory_left_by_an_earlier_one() {
    let worker = Worker::wat(&wat(LEAVES_TRACES), &["--max-connections", "4"]);
    for i in 0..50 {
        let secret = format!("SECRET-{i:09}");
        assert_eq!(
            worker.request(secret.as_bytes()),
            clean_answer(),
            "request {i} saw traces of an earlier connection"
        );
    }
    // At once, so that memories move between threads.
    worker.concurrently(40, "SECRET-AT-ONCE", |_, output| {
        assert_eq!(output, clean_answer())
    });
}

#[test]
fn memory_grown_by_an_earlier_connection_is_out_of_bounds_for_the_next() {
    let worker = Worker::wat(&wat(LEAVES_TRACES), &["--max-connections", "1"]);
    // More than a batch of dirty memories (pool::BATCH, 16), all grown, so
    // that the probes below run on reused, once-grown memories.
    for _ in 0..40 {
        assert_eq!(worker.request(b"grow it"), clean_answer());
    }
    for _ in 0..20 {
        assert_eq!(worker.request(b"probe"), b"", "the load past 2 pages traps");
    }
    assert_eq!(
        worker.wait_metric("nur_guest_traps_total{kind=\"out_of_bounds\"}", 20.0),
        20.0
    );
    assert_eq!(worker.request(b"after"), clean_answer());
    assert!(
        worker
            .wait_log(&["guest fault", "out_of_bounds"], Duration::from_secs(5))
            .is_some()
    );
}

/// Grows memory to 16 pages and writes into the grown part (`g`), or loads
/// at the address in the chunk's bytes 1..5: a byte (`b`), 8 bytes (`w`),
/// or 4 bytes with a static offset of 64 KiB (`o`), and sends what it read.
const PROBES: &str = r#"
  (func (export "poll_stream") (param $ptr i32) (param $len i32)
    (local $cmd i32) (local $at i32)
    (if (i32.eqz (local.get $len)) (then (call $end) (return)))
    (local.set $cmd (i32.load8_u (local.get $ptr)))
    (local.set $at (i32.load (i32.add (local.get $ptr) (i32.const 1))))
    (if (i32.eq (local.get $cmd) (i32.const 103))
      (then
        (i32.store (i32.const 0) (memory.grow (i32.const 14)))
        (i32.store (i32.const 131072) (i32.const 0x53454352))
        (i32.store (i32.const 1048572) (i32.const 0x53454352))
        (call $send (i32.const 0) (i32.const 4))))
    (if (i32.eq (local.get $cmd) (i32.const 98))
      (then
        (i32.store8 (i32.const 0) (i32.load8_u (local.get $at)))
        (call $send (i32.const 0) (i32.const 1))))
    (if (i32.eq (local.get $cmd) (i32.const 119))
      (then
        (i64.store (i32.const 0) (i64.load (local.get $at)))
        (call $send (i32.const 0) (i32.const 8))))
    (if (i32.eq (local.get $cmd) (i32.const 111))
      (then
        (i32.store (i32.const 0) (i32.load offset=65536 (local.get $at)))
        (call $send (i32.const 0) (i32.const 4))))
    (call $end))"#;

#[test]
fn every_access_past_the_length_traps_though_earlier_connections_grew_the_memory() {
    // One connection at a time: each probe runs in the memory (the pool's
    // slot) that the connections before grew to 16 pages, which stays
    // read-write; only the compiled bounds checks stand at 2 pages.
    let worker = Worker::wat(&wat(PROBES), &["--max-connections", "1"]);
    for _ in 0..3 {
        assert_eq!(
            worker.request(b"g"),
            2i32.to_le_bytes(),
            "grown from 2 pages"
        );
    }
    let probe = |command: u8, at: u32| {
        let mut chunk = vec![command];
        chunk.extend(at.to_le_bytes());
        worker.request(&chunk)
    };
    let end = 2 * 65536u32;
    assert_eq!(probe(b'b', end - 1), [0], "the last byte");
    assert_eq!(probe(b'w', end - 8), [0; 8], "the last 8 bytes");
    assert_eq!(
        probe(b'o', end - 65536 - 4),
        [0; 4],
        "the last 4, by offset"
    );
    let past = [
        (b'b', end, "the first byte past the end"),
        (b'w', end - 4, "8 bytes straddling the end"),
        (b'o', end - 65536, "the offset's first byte past the end"),
        (b'b', end + 65536 * 13, "a byte the grown memory held"),
        (b'b', u32::MAX, "the last 32-bit address"),
        (b'o', u32::MAX - 65535, "an address and offset past 4 GiB"),
    ];
    for (command, at, what) in past {
        assert_eq!(probe(command, at), b"", "{what} ({at}) must trap");
    }
    assert_eq!(
        worker.wait_metric("nur_guest_traps_total{kind=\"out_of_bounds\"}", 6.0),
        6.0
    );
    assert_eq!(probe(b'b', 5000), [0], "and the next connection is served");
}
