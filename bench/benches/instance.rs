//! The per-connection cost of wasm in the worker, without sockets: a fresh
//! `Guest` for examples/build/echo.wasm (and the other examples), one
//! `feed` of a small request (alloc + copy + poll_stream), and the drop.
//!
//! Needs `examples/build.sh` first. The watchdog that `Guest::instantiate`
//! arms lives on a tokio runtime, entered here for the whole run.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use nur_worker::config::Limits;
use nur_worker::guest::{Function, Guest};

const REQUEST: &[u8] = b"GET /bench HTTP/1.1\r\nhost: bench\r\n\r\n";

fn limits() -> Limits {
    Limits {
        timeout: Duration::from_secs(30),
        idle_timeout: Duration::from_secs(10),
        max_connections: 1024,
        max_open_connections: 100_000,
        memory_limit: 128 << 20,
        max_chunk: 64 << 10,
        max_output: 16 << 20,
        max_log_bytes: 64 << 10,
        keep_alive: false,
    }
}

fn compile(rt: &tokio::runtime::Runtime, file: &str) -> Function {
    let path = format!("{}/../examples/build/{file}", env!("CARGO_MANIFEST_DIR"));
    let module = rt
        .block_on(nur_module::load(&path))
        .unwrap_or_else(|e| panic!("{path}: {e} (run examples/build.sh first)"));
    let limits = limits();
    let engine = Function::engine(&limits, &module).expect("an engine");
    let (compiled, _took) = Function::compile(&engine, &module).expect("compiles");
    Function::new(engine, compiled, &module, file, &limits)
}

fn instance(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let _entered = rt.enter();
    let deadline = || Instant::now() + Duration::from_secs(30);
    let mut group = c.benchmark_group("instance");
    for file in ["echo.wasm", "http-hello.wasm", "stream.wat"] {
        let function = compile(&rt, file);
        let name = file.split('.').next().unwrap_or(file);
        group.bench_function(format!("{name}/instantiate+feed+drop"), |b| {
            b.iter(|| {
                let mut guest = Guest::instantiate(&function, 1, deadline()).expect("instantiates");
                guest.feed(black_box(REQUEST)).expect("feeds");
                black_box(guest.output().len());
            })
        });
        if name == "echo" {
            group.bench_function("echo/instantiate+drop", |b| {
                b.iter(|| Guest::instantiate(&function, 1, deadline()).expect("instantiates"))
            });
        }
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    targets = instance
}
criterion_main!(benches);
