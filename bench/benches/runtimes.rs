//! One connection's wasm cost in Nur's worker beside wasmtime with its
//! pooling allocator, copy-on-write memory images and `InstancePre` (the
//! setup wasmtime's own guide gives for fast instantiation), on the same
//! modules in the same run: a fresh instance, one chunk in (`alloc`, the
//! copy, `poll_stream`), the answer out, the drop.
//!
//! `make bench-runtimes` (needs `examples/build.sh` first). wasmtime is a
//! bench-only dependency behind nur-bench's `wasmtime` feature. Both sides
//! bound a guest's time the cheap way each has: Nur arms its watchdog,
//! wasmtime's store gets an epoch deadline. Before measuring, each module's
//! answer from both runtimes is checked to be the same bytes.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use nur_worker::config::Limits;
use nur_worker::guest::{Function, Guest};
use wasmtime::{
    Caller, Config, Engine, InstanceAllocationStrategy, InstancePre, Linker, Memory,
    PoolingAllocationConfig, Store,
};

const GET: &[u8] = b"GET /bench HTTP/1.1\r\nhost: bench\r\n\r\n";
const MARKDOWN: &[u8] =
    b"POST / HTTP/1.1\r\nhost: bench\r\ncontent-length: 14\r\n\r\n# Hi\n\n*there*\n";
const MEMORY_LIMIT: u64 = 128 << 20;
const INSTANCES: u32 = 1024;

/// The modules, each with the chunk it answers.
const MODULES: [(&str, &[u8]); 4] = [
    ("echo.wasm", GET),
    ("http-hello.wasm", GET),
    ("stream.wat", GET),
    ("markdown.wasm", MARKDOWN),
];

fn limits() -> Limits {
    Limits {
        timeout: Duration::from_secs(30),
        idle_timeout: Duration::from_secs(10),
        max_connections: INSTANCES,
        max_open_connections: 100_000,
        memory_limit: MEMORY_LIMIT,
        max_chunk: 64 << 10,
        max_output: 16 << 20,
        max_log_bytes: 64 << 10,
        keep_alive: false,
    }
}

fn module(rt: &tokio::runtime::Runtime, file: &str) -> nur_module::Module {
    let path = format!("{}/../examples/build/{file}", env!("CARGO_MANIFEST_DIR"));
    rt.block_on(nur_module::load(&path))
        .unwrap_or_else(|e| panic!("{path}: {e} (run examples/build.sh first)"))
}

fn nur(module: &nur_module::Module, file: &str) -> Function {
    let limits = limits();
    let engine = Function::engine(&limits, module).expect("an engine");
    let (compiled, _took) = Function::compile(&engine, module).expect("compiles");
    Function::new(engine, compiled, module, file, &limits)
}

/// A connection on Nur's worker, fed `chunk`; dropping it ends it.
fn nur_connection(function: &Function, chunk: &[u8]) -> Guest {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut guest = Guest::instantiate(function, 1, deadline).expect("instantiates");
    guest.feed(black_box(chunk)).expect("feeds");
    guest
}

/// What one wasmtime instance's host functions see.
#[derive(Default)]
struct Connection {
    memory: Option<Memory>,
    output: Vec<u8>,
    ended: bool,
}

/// `[ptr, ptr + len)` of the caller's memory, or a trap.
fn guest_bytes<'a>(
    memory: Memory,
    caller: &'a mut Caller<'_, Connection>,
    ptr: i32,
    len: i32,
) -> wasmtime::Result<(&'a [u8], &'a mut Connection)> {
    let (data, connection) = memory.data_and_store_mut(caller);
    let start = ptr as u32 as usize;
    let bytes = start
        .checked_add(len as u32 as usize)
        .and_then(|end| data.get(start..end))
        .ok_or_else(|| wasmtime::Error::msg("bad_pointer"))?;
    Ok((bytes, connection))
}

fn wasmtime_engine() -> Engine {
    let mut pool = PoolingAllocationConfig::default();
    pool.total_core_instances(INSTANCES)
        .total_memories(INSTANCES)
        .total_tables(INSTANCES)
        .max_memory_size(MEMORY_LIMIT as usize);
    let mut config = Config::new();
    config
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
        .memory_init_cow(true)
        .epoch_interruption(true);
    Engine::new(&config).expect("a wasmtime engine")
}

fn wasmtime_pre(engine: &Engine, module: &nur_module::Module) -> InstancePre<Connection> {
    let compiled = wasmtime::Module::new(engine, &module.binary).expect("wasmtime compiles");
    let mut linker = Linker::<Connection>::new(engine);
    linker
        .func_wrap(
            "nur",
            "nur_send",
            |mut caller: Caller<'_, Connection>, ptr: i32, len: i32| {
                let memory = caller.data().memory.expect("set after instantiation");
                let (bytes, connection) = guest_bytes(memory, &mut caller, ptr, len)?;
                if !connection.ended {
                    connection.output.extend_from_slice(bytes);
                }
                Ok(())
            },
        )
        .expect("nur_send")
        .func_wrap(
            "nur",
            "nur_log",
            |mut caller: Caller<'_, Connection>, ptr: i32, len: i32| {
                let memory = caller.data().memory.expect("set after instantiation");
                let (bytes, _) = guest_bytes(memory, &mut caller, ptr, len)?;
                black_box(String::from_utf8_lossy(bytes));
                Ok(())
            },
        )
        .expect("nur_log")
        .func_wrap("nur", "nur_end", |mut caller: Caller<'_, Connection>| {
            caller.data_mut().ended = true;
        })
        .expect("nur_end");
    linker.instantiate_pre(&compiled).expect("links")
}

/// A connection on wasmtime, fed `chunk`; dropping the store ends it.
fn wasmtime_connection(
    engine: &Engine,
    pre: &InstancePre<Connection>,
    chunk: &[u8],
) -> Store<Connection> {
    let mut store = Store::new(engine, Connection::default());
    store.set_epoch_deadline(1);
    let instance = pre.instantiate(&mut store).expect("instantiates");
    let memory = instance
        .get_memory(&mut store, "memory")
        .expect("exports memory");
    store.data_mut().memory = Some(memory);
    let alloc = instance
        .get_typed_func::<i32, i32>(&mut store, "alloc")
        .expect("alloc");
    let poll_stream = instance
        .get_typed_func::<(i32, i32), ()>(&mut store, "poll_stream")
        .expect("poll_stream");
    let len = i32::try_from(chunk.len()).expect("a small chunk");
    let ptr = alloc.call(&mut store, len).expect("alloc runs");
    memory
        .write(&mut store, ptr as u32 as usize, black_box(chunk))
        .expect("the chunk fits");
    poll_stream
        .call(&mut store, (ptr, len))
        .expect("poll_stream runs");
    store
}

fn runtimes(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let _entered = rt.enter();
    let engine = wasmtime_engine();
    let mut group = c.benchmark_group("runtimes");
    for (file, chunk) in MODULES {
        let module = module(&rt, file);
        let function = nur(&module, file);
        let pre = wasmtime_pre(&engine, &module);
        let name = file.split('.').next().unwrap_or(file);

        let guest = nur_connection(&function, chunk);
        let store = wasmtime_connection(&engine, &pre, chunk);
        let answer = &store.data().output;
        assert!(
            !answer.is_empty(),
            "{file}: wasmtime's instance answered nothing"
        );
        assert_eq!(
            guest.output(),
            &answer[..],
            "{file}: both runtimes answer alike"
        );
        drop((guest, store));

        group.bench_function(format!("{name}/nur"), |b| {
            b.iter(|| nur_connection(&function, chunk))
        });
        group.bench_function(format!("{name}/wasmtime-pooling"), |b| {
            b.iter(|| wasmtime_connection(&engine, &pre, chunk))
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    targets = runtimes
}
criterion_main!(benches);
