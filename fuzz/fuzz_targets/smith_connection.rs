//! Modules from wasm-smith with the Nur imports and exports, through the ABI
//! check, then compiled and serving one real loopback connection in-process
//! (the code of a worker's connection thread), with fuzzer-chosen input.
//! Never a panic, never an abort: whatever the module does ends only its
//! own connection, and a module the check accepts compiles.
#![no_main]

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use arbitrary::{Arbitrary, Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use nur_worker::admin::Status;
use nur_worker::config::Limits;
use nur_worker::connection::{self, Close, Context};
use nur_worker::guest::Function;

const IMPORTS: &str = r#"(module
  (import "nur" "nur_send" (func (param i32 i32)))
  (import "nur" "nur_log" (func (param i32 i32)))
  (import "nur" "nur_end" (func)))"#;

const EXPORTS: &str = r#"(module
  (memory (export "memory") 1)
  (func (export "alloc") (param i32) (result i32) unreachable)
  (func (export "poll_stream") (param i32 i32) unreachable))"#;

const SHAPE: &str = r#"(module
  (import "nur" "nur_send" (func (param i32 i32)))
  (import "nur" "nur_log" (func (param i32 i32)))
  (import "nur" "nur_end" (func))
  (memory (export "memory") 1)
  (func (export "alloc") (param i32) (result i32) unreachable)
  (func (export "poll_stream") (param i32 i32) unreachable))"#;

struct Shared {
    runtime: tokio::runtime::Runtime,
    listener: TcpListener,
    status: Arc<Status>,
    texts: [Vec<u8>; 3],
}

fn shared() -> &'static Shared {
    static SHARED: OnceLock<Shared> = OnceLock::new();
    SHARED.get_or_init(|| Shared {
        runtime: tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap(),
        listener: TcpListener::bind("127.0.0.1:0").unwrap(),
        status: Status::new(),
        texts: [IMPORTS, EXPORTS, SHAPE].map(|t| wat::parse_str(t).unwrap()),
    })
}

fn limits() -> Limits {
    Limits {
        timeout: Duration::from_millis(500),
        idle_timeout: Duration::from_millis(500),
        max_connections: 1,
        max_open_connections: 1,
        memory_limit: 16 << 20,
        max_chunk: 64,
        max_output: 64 << 10,
        max_log_bytes: 64 << 10,
        keep_alive: false,
    }
}

fn module(u: &mut Unstructured<'_>) -> Result<Vec<u8>> {
    let shared = shared();
    let mut config = wasm_smith::Config::arbitrary(u)?;
    if bool::arbitrary(u)? {
        config.module_shape = Some(shared.texts[2].clone());
    } else {
        config.available_imports = Some(shared.texts[0].clone());
        config.exports = Some(shared.texts[1].clone());
    }
    config.max_memory32_bytes = 64 << 20;
    let mut module = wasm_smith::Module::new(config, u)?;
    // Endless loops would only wait for the connection's deadline.
    let _ = module.ensure_termination(10_000);
    Ok(module.to_bytes())
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let Ok(binary) = module(&mut u) else {
        return;
    };
    let input = u.take_rest();
    let source = nur_module::Source::parse("smith.wasm").unwrap();
    let module = match nur_module::Module::from_stored(source, binary.clone()) {
        Ok(module) => module,
        Err(e) => {
            assert!(e.to_string().starts_with("smith.wasm: "), "{e}");
            return;
        }
    };
    let limits = limits();
    if Function::check_limits(&module, &limits).is_err() {
        return;
    }
    let shared = shared();
    let engine = Function::engine(&limits, &module).expect("an engine");
    let compiled = match Function::compile(&engine, &module) {
        Ok((compiled, _)) => compiled,
        Err(e) => panic!("the ABI check accepted a module the worker cannot compile: {e}"),
    };
    let function = Function::new(engine, compiled, &module, "smith", &limits);
    let ctx = Context {
        function: Arc::new(function),
        limits,
        status: shared.status.clone(),
    };

    let mut client = TcpStream::connect(shared.listener.local_addr().unwrap()).unwrap();
    let (server, _) = shared.listener.accept().unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let input = input.to_vec();
    let reader = std::thread::spawn(move || {
        let _ = client.write_all(&input);
        let _ = client.shutdown(Shutdown::Write);
        let mut out = Vec::new();
        let _ = client.read_to_end(&mut out);
        out
    });
    let _entered = shared.runtime.enter();
    let deadline = Instant::now() + ctx.limits.timeout;
    let close = connection::serve(server, 1, &ctx, deadline);
    assert_ne!(close, Close::Internal);
    reader.join().expect("the client thread");
});
