//! The host side of the ABI with arbitrary pointers and lengths.
//!
//! A small guest interprets each chunk it is fed as a list of 9-byte
//! operations (`op`, `a: u32`, `b: u32`) and makes the host calls they name:
//! `nur_send(a, b)`, `nur_log(a, b)`, `nur_end()`, `memory.grow(a)`, and
//! "the next `alloc` returns `a`". The target drives it through the worker's
//! public [`Guest`] (the code a connection runs) and keeps a shadow copy of
//! the guest's memory: every byte the host sends must be the guest's own
//! byte at that address, every out-of-range pointer must be a `bad_pointer`
//! fault, an `alloc` result where the chunk does not fit a `bad_alloc`, too
//! much output an `output_limit`. Never a panic, never a host byte.
#![no_main]

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use nur_worker::config::Limits;
use nur_worker::guest::{FaultKind, Function, Guest};

const PAGE: u64 = 64 * 1024;
const MEMORY_LIMIT: u64 = 16 * PAGE;
const MAX_OUTPUT: u64 = 256 * 1024;
const MAX_LOG_LINE: u64 = 16 * 1024;
const INITIAL_PAGES: u64 = 1;
const FIRST_ALLOC: u32 = 1024;

const GUEST: &str = r#"(module
  (import "nur" "nur_send" (func $send (param i32 i32)))
  (import "nur" "nur_log" (func $log (param i32 i32)))
  (import "nur" "nur_end" (func $end))
  (memory (export "memory") 1)
  (global $next (mut i32) (i32.const 1024))
  (data (i32.const 0) "PATTERN")
  (func (export "alloc") (param i32) (result i32) (global.get $next))
  (func (export "poll_stream") (param $ptr i32) (param $len i32)
    (local $stop i32) (local $op i32) (local $a i32) (local $b i32)
    (local.set $stop (i32.add (local.get $ptr) (local.get $len)))
    (block $done
      (loop $ops
        (br_if $done (i32.gt_u (i32.add (local.get $ptr) (i32.const 9)) (local.get $stop)))
        (local.set $op (i32.load8_u (local.get $ptr)))
        (local.set $a (i32.load (i32.add (local.get $ptr) (i32.const 1))))
        (local.set $b (i32.load (i32.add (local.get $ptr) (i32.const 5))))
        (local.set $ptr (i32.add (local.get $ptr) (i32.const 9)))
        (if (i32.eq (local.get $op) (i32.const 0)) (then (call $send (local.get $a) (local.get $b))))
        (if (i32.eq (local.get $op) (i32.const 1)) (then (call $log (local.get $a) (local.get $b))))
        (if (i32.eq (local.get $op) (i32.const 2)) (then (call $end)))
        (if (i32.eq (local.get $op) (i32.const 3)) (then (drop (memory.grow (local.get $a)))))
        (if (i32.eq (local.get $op) (i32.const 4)) (then (global.set $next (local.get $a))))
        (br $ops)))))"#;

/// The bytes of the data segment at address 0.
fn pattern() -> Vec<u8> {
    (0..251u32).map(|i| (i * 7 + 3) as u8).collect()
}

/// An address, absolute or relative to the memory's size when it is used.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Addr {
    Absolute(u32),
    FromEnd(u16),
    Low(u16),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Len {
    Any(u32),
    Small(u16),
}

#[derive(Arbitrary, Debug)]
enum Op {
    Send(Addr, Len),
    Log(Addr, Len),
    End,
    Grow(u32),
    NextAlloc(Addr),
}

#[derive(Arbitrary, Debug)]
enum Chunk {
    Ops(Vec<Op>),
    /// Raw bytes, so the guest also meets operations it never asked for.
    Raw(Vec<u8>),
    /// The client closed its side: `poll_stream(0, 0)`.
    Eof,
}

struct Harness {
    runtime: tokio::runtime::Runtime,
    function: Function,
}

fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(|| {
        let text = GUEST.replace("PATTERN", &escape(&pattern()));
        let source = nur_module::Source::parse("host_calls.wat").unwrap();
        let module = nur_module::Module::from_stored(source, text.as_bytes().to_vec()).unwrap();
        let limits = limits();
        let engine = Function::engine(&limits, &module).unwrap();
        let (compiled, _) = Function::compile(&engine, &module).unwrap();
        let function = Function::new(engine, compiled, &module, "host_calls", &limits);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        Harness { runtime, function }
    })
}

fn limits() -> Limits {
    Limits {
        timeout: Duration::from_secs(30),
        idle_timeout: Duration::from_secs(10),
        max_connections: 1,
        max_open_connections: 1,
        memory_limit: MEMORY_LIMIT,
        max_chunk: 64 * 1024,
        max_output: MAX_OUTPUT,
        max_log_bytes: 64 << 10,
        keep_alive: false,
    }
}

fn escape(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("\\{b:02x}")).collect()
}

/// What the guest's memory holds, as the host must see it.
struct Shadow {
    memory: Vec<u8>,
    next_alloc: u32,
    ended: bool,
}

fn encode(shadow: &Shadow, ops: &[Op]) -> Vec<u8> {
    // Addresses relative to the end follow the memory as it grows within the chunk.
    let mut pages = shadow.memory.len() as u64 / PAGE;
    let mut bytes = Vec::with_capacity(ops.len() * 9);
    for op in ops {
        let resolve = |addr: Addr| match addr {
            Addr::Absolute(a) => a,
            Addr::FromEnd(back) => (pages * PAGE).saturating_sub(back.into()) as u32,
            Addr::Low(a) => a.into(),
        };
        let len = |len: Len| match len {
            Len::Any(l) => l,
            Len::Small(l) => l.into(),
        };
        let (code, a, b) = match *op {
            Op::Send(addr, l) => (0u8, resolve(addr), len(l)),
            Op::Log(addr, l) => (1, resolve(addr), len(l)),
            Op::End => (2, 0, 0),
            Op::Grow(n) => {
                if pages + u64::from(n) <= MEMORY_LIMIT / PAGE {
                    pages += u64::from(n);
                }
                (3, n, 0)
            }
            Op::NextAlloc(addr) => (4, resolve(addr), 0),
        };
        bytes.push(code);
        bytes.extend_from_slice(&a.to_le_bytes());
        bytes.extend_from_slice(&b.to_le_bytes());
    }
    bytes
}

/// Runs the guest's interpretation of the chunk at `ptr` against the shadow:
/// the output expected, or the fault.
fn expect(shadow: &mut Shadow, ptr: u32, len: u32) -> Result<Vec<u8>, FaultKind> {
    let mut output = Vec::new();
    let (mut at, stop) = (ptr as u64, ptr as u64 + len as u64);
    while at + 9 <= stop {
        let op = &shadow.memory[at as usize..at as usize + 9];
        let code = op[0];
        let a = u32::from_le_bytes(op[1..5].try_into().unwrap());
        let b = u32::from_le_bytes(op[5..9].try_into().unwrap());
        at += 9;
        let size = shadow.memory.len() as u64;
        let in_memory = |len: u64| u64::from(a) + len <= size;
        match code {
            0 if shadow.ended => {}
            0 => {
                if output.len() as u64 + u64::from(b) > MAX_OUTPUT {
                    return Err(FaultKind::OutputLimit);
                }
                if !in_memory(b.into()) {
                    return Err(FaultKind::BadPointer);
                }
                output.extend_from_slice(&shadow.memory[a as usize..(a + b) as usize]);
            }
            1 => {
                if !in_memory(u64::from(b).min(MAX_LOG_LINE)) {
                    return Err(FaultKind::BadPointer);
                }
            }
            2 => shadow.ended = true,
            3 => {
                let pages = size / PAGE + u64::from(a);
                if pages <= MEMORY_LIMIT / PAGE {
                    shadow.memory.resize((pages * PAGE) as usize, 0);
                }
            }
            4 => shadow.next_alloc = a,
            _ => {}
        }
    }
    Ok(output)
}

fuzz_target!(|chunks: Vec<Chunk>| {
    let harness = harness();
    let _entered = harness.runtime.enter();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut guest = Guest::instantiate(&harness.function, 1, deadline).expect("instantiates");
    let mut shadow = Shadow {
        memory: vec![0; (INITIAL_PAGES * PAGE) as usize],
        next_alloc: FIRST_ALLOC,
        ended: false,
    };
    let pattern = pattern();
    shadow.memory[..pattern.len()].copy_from_slice(&pattern);
    for chunk in &chunks {
        let (result, expected) = match chunk {
            Chunk::Eof => {
                let expected = expect(&mut shadow, 0, 0);
                (guest.finish(), expected)
            }
            Chunk::Ops(ops) if ops.is_empty() => continue,
            Chunk::Raw(bytes) if bytes.is_empty() => continue,
            Chunk::Ops(_) | Chunk::Raw(_) => {
                let bytes = match chunk {
                    Chunk::Ops(ops) => encode(&shadow, ops),
                    Chunk::Raw(bytes) => bytes.clone(),
                    Chunk::Eof => unreachable!(),
                };
                let ptr = shadow.next_alloc;
                let fits = u64::from(ptr) + bytes.len() as u64 <= shadow.memory.len() as u64;
                let expected = if fits {
                    shadow.memory[ptr as usize..ptr as usize + bytes.len()].copy_from_slice(&bytes);
                    expect(&mut shadow, ptr, bytes.len() as u32)
                } else {
                    Err(FaultKind::BadAlloc)
                };
                (guest.feed(&bytes), expected)
            }
        };
        match (result, expected) {
            (Ok(()), Ok(output)) => {
                assert!(
                    guest.output() == output,
                    "the host sent bytes that are not the guest's"
                );
                guest.clear_output();
            }
            (Err(fault), Err(kind)) => {
                assert_eq!(fault.kind, kind, "{fault}");
                return;
            }
            (got, want) => panic!("got {got:?}, expected {want:?}"),
        }
        if shadow.ended || matches!(chunk, Chunk::Eof) {
            assert!(guest.ended() == shadow.ended);
            return;
        }
    }
});
