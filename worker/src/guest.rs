//! One function compiled once ([`Function`]) and its per-connection
//! instances ([`Guest`]): a Nur-ABI guest is fed chunk by chunk
//! ([`Guest::feed`]), a WASI command runs once over its connection
//! ([`Guest::run`]). The host functions they import are in `host.rs` and
//! `wasi.rs`, how they fail in [`crate::fault`].
//!
//! A `Guest` owns a wasmer `Store`, which is not `Send`: it is created, used
//! and dropped on one thread (see `connection.rs`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmer::sys::{Cranelift, EngineBuilder, NativeEngineExt};
use wasmer::{
    Engine, Extern, Function as HostFunction, FunctionEnv, Instance, InstantiationError, Memory,
    RuntimeError, Store, TypedFunction,
};

use nur_module::abi::Kind;

use crate::config::Limits;
use crate::connection::Close;
use crate::fault::HostFault;
use crate::host::{CommandIo, HostState, nur_end, nur_log, nur_send};
use crate::wasi;

use crate::deadline::{Deadlines, GuestCode, Watchdog};
pub use crate::fault::{Fault, FaultKind};
use crate::tunables::{self, MemoryLimit};

/// A module compiled once for this process, with the limits of its instances.
pub struct Function {
    pub name: Arc<str>,
    engine: Engine,
    module: wasmer::Module,
    initializer: bool,
    max_output: usize,
    max_log_bytes: u64,
    deadlines: Deadlines,
    code: GuestCode,
    /// What the module imports, in its order.
    imports: Vec<Import>,
    /// WASI's one argument: the function's name and a NUL.
    argument: Arc<[u8]>,
    /// WASI's environment: `NAME=value` and a NUL, each.
    environment: Arc<[Box<[u8]>]>,
    /// A Nur-ABI function or a WASI command.
    pub kind: Kind,
}

impl Function {
    /// The engine the instances of `module` run on: Cranelift, memories
    /// capped at `--memory-limit`, each starting from the module's memory
    /// image ([`crate::image`]; the native code must then come from
    /// [`Function::compile`] or an artifact of it).
    pub fn engine(limits: &Limits, module: &nur_module::Module) -> anyhow::Result<Engine> {
        let image = crate::image::lift_if_worthwhile(&module.binary).map(|lifted| lifted.image);
        let tunables = MemoryLimit::new(
            limits.memory_limit,
            limits.max_connections as usize,
            image.as_deref().unwrap_or_default(),
        )
        .map_err(|e| anyhow::anyhow!("{}: making its memory image: {e}", module.source))?;
        let mut engine: Engine = EngineBuilder::new(Cranelift::default()).engine().into();
        engine.set_tunables(tunables);
        Ok(engine)
    }

    /// Compiles `module` to native code, its active data lifted into the
    /// image [`Function::engine`] maps; returns it and the time it took.
    pub fn compile(
        engine: &Engine,
        module: &nur_module::Module,
    ) -> anyhow::Result<(wasmer::Module, Duration)> {
        let started = Instant::now();
        let lifted = crate::image::lift_if_worthwhile(&module.binary);
        let binary = lifted
            .as_ref()
            .map_or(&module.binary, |lifted| &lifted.module);
        let compiled = wasmer::Module::new(engine, binary)
            .map_err(|e| anyhow::anyhow!("{}: compiling failed: {e}", module.source))?;
        Ok((compiled, started.elapsed()))
    }

    /// Refuses a module that could never be instantiated under `limits`:
    /// its initial memory and tables together above `--memory-limit`.
    pub fn check_limits(module: &nur_module::Module, limits: &Limits) -> anyhow::Result<()> {
        let summary = &module.summary;
        let memory = tunables::Size {
            initial: summary.memory.initial_pages,
            maximum: summary.memory.maximum_pages,
        };
        let tables: Vec<_> = summary
            .tables
            .iter()
            .map(|table| tunables::Size {
                initial: table.initial,
                maximum: table.maximum,
            })
            .collect();
        if let Err(overflow) = tunables::caps(limits.memory_limit, &[memory], &tables) {
            anyhow::bail!(
                "{}: {}",
                module.source,
                overflow.describe(limits.memory_limit)
            );
        }
        Ok(())
    }

    /// The function served from `compiled`, the native code of `module`.
    pub fn new(
        engine: Engine,
        compiled: wasmer::Module,
        module: &nur_module::Module,
        name: &str,
        limits: &Limits,
    ) -> Self {
        Self {
            name: name.into(),
            engine,
            initializer: module.summary.initializer,
            max_output: usize::try_from(limits.max_output).unwrap_or(usize::MAX),
            max_log_bytes: limits.max_log_bytes,
            deadlines: Deadlines::default(),
            code: GuestCode::of(&compiled),
            imports: {
                wasi::start_clock();
                Import::all(&compiled)
            },
            argument: name.bytes().chain([0]).collect(),
            environment: Arc::new([]),
            kind: module.summary.kind,
            module: compiled,
        }
    }

    /// The same function with `variables` as its WASI environment.
    pub fn with_environment(mut self, variables: &[(String, String)]) -> Self {
        self.environment = variables
            .iter()
            .map(|(name, value)| format!("{name}={value}\0").into_bytes().into_boxed_slice())
            .collect();
        self
    }

    /// The deadlines of this function's guests, for the health check.
    pub fn deadlines(&self) -> &Deadlines {
        &self.deadlines
    }
}

/// One import of the module, resolved once per process: each connection
/// makes its host functions in the module's order and instantiates by
/// index (`Instance::new_by_index`), with no import map and no name
/// lookup per connection.
enum Import {
    Send,
    Log,
    End,
    /// A `wasi_snapshot_preview1` function.
    Wasi(wasi::Import),
    /// Nothing Nur provides (a module that passed Nur's check has none):
    /// `module.name`.
    Unknown(String),
}

impl Import {
    /// The imports of `module`, in its order.
    fn all(module: &wasmer::Module) -> Vec<Self> {
        module
            .imports()
            .map(
                |import| match (import.module(), import.name(), import.ty()) {
                    (nur_module::abi::IMPORT_MODULE, "nur_send", _) => Self::Send,
                    (nur_module::abi::IMPORT_MODULE, "nur_log", _) => Self::Log,
                    (nur_module::abi::IMPORT_MODULE, "nur_end", _) => Self::End,
                    (wasi::WASI_MODULE, name, wasmer::ExternType::Function(ty)) => {
                        Self::Wasi(wasi::Import::resolve(name, ty))
                    }
                    (module, name, _) => Self::Unknown(format!("{module}.{name}")),
                },
            )
            .collect()
    }

    /// This import's host function in `store`, on `env`.
    fn make(&self, store: &mut Store, env: &FunctionEnv<HostState>) -> Result<Extern, Fault> {
        let function = match self {
            Self::Send => HostFunction::new_typed_with_env(store, env, nur_send),
            Self::Log => HostFunction::new_typed_with_env(store, env, nur_log),
            Self::End => HostFunction::new_typed_with_env(store, env, nur_end),
            Self::Wasi(import) => import.make(store, env),
            Self::Unknown(name) => {
                return Err(Fault {
                    kind: FaultKind::Instantiate,
                    message: format!(
                        "instantiating failed: unknown import {name}: a function may import \
                         only what the Nur ABI (docs/ABI.md) and WASI preview 1 provide"
                    ),
                });
            }
        };
        Ok(function.into())
    }
}

/// A fresh instance serving one connection.
pub struct Guest {
    store: Store,
    env: FunctionEnv<HostState>,
    memory: Memory,
    entry: Entry,
    /// A command's bytes in and out, once run.
    bytes: (u64, u64),
    _watchdog: Watchdog,
}

/// The Nur ABI's `alloc(len) -> ptr`.
type Alloc = TypedFunction<i32, i32>;
/// The Nur ABI's `poll_stream(ptr, len)`.
type PollStream = TypedFunction<(i32, i32), ()>;

/// What the worker calls in an instance.
enum Entry {
    /// The Nur ABI: `alloc` and `poll_stream` for every chunk.
    Stream {
        alloc: Alloc,
        poll_stream: PollStream,
    },
    /// A WASI command: `_start`, once.
    Command { start: TypedFunction<(), ()> },
}

impl Guest {
    /// Instantiates `function` for connection `connection` and runs
    /// `_initialize` if the module has one. No guest code of this instance,
    /// its start function included, runs past `deadline`.
    pub fn instantiate(
        function: &Function,
        connection: u64,
        deadline: Instant,
    ) -> Result<Self, Fault> {
        let mut store = Store::new(function.engine.clone());
        store.set_trap_handler(Some(Box::new(function.code.trap_handler())));
        let watchdog = function.deadlines.arm(deadline, store.interrupter());
        let env = FunctionEnv::new(
            &mut store,
            HostState {
                memory: None,
                output: Vec::new(),
                ended: false,
                max_output: function.max_output,
                function: function.name.clone(),
                connection,
                deadline,
                log_left: function.max_log_bytes,
                log_dropped: 0,
                stdio: [Vec::new(), Vec::new()],
                exit: None,
                unsupported: Vec::new(),
                argument: function.argument.clone(),
                environment: function.environment.clone(),
                command: None,
            },
        );
        let imports = function
            .imports
            .iter()
            .map(|import| import.make(&mut store, &env))
            .collect::<Result<Vec<_>, _>>()?;
        let instance = Instance::new_by_index(&mut store, &function.module, &imports).map_err(
            |e| match e {
                InstantiationError::Start(trap) => Fault::from(trap),
                other => Fault {
                    kind: FaultKind::Instantiate,
                    message: format!("instantiating failed: {other}"),
                },
            },
        )?;
        let missing = |e: wasmer::ExportError| Fault {
            kind: FaultKind::Instantiate,
            message: e.to_string(),
        };
        let memory = instance
            .exports
            .get_memory("memory")
            .map_err(missing)?
            .clone();
        let entry = match function.kind {
            Kind::Stream => Entry::Stream {
                alloc: instance
                    .exports
                    .get_typed_function(&store, "alloc")
                    .map_err(missing)?,
                poll_stream: instance
                    .exports
                    .get_typed_function(&store, "poll_stream")
                    .map_err(missing)?,
            },
            Kind::Command => Entry::Command {
                start: instance
                    .exports
                    .get_typed_function(&store, nur_module::abi::START)
                    .map_err(missing)?,
            },
        };
        env.as_mut(&mut store).memory = Some(memory.clone());
        let mut guest = Self {
            store,
            env,
            memory,
            entry,
            bytes: (0, 0),
            _watchdog: watchdog,
        };
        if function.initializer {
            let init: TypedFunction<(), ()> = instance
                .exports
                .get_typed_function(&guest.store, nur_module::abi::INITIALIZE)
                .map_err(missing)?;
            let called = init.call(&mut guest.store);
            guest.settle(called)?;
        }
        Ok(guest)
    }

    /// What a guest call came to: WASI `proc_exit` ends the connection like
    /// `nur_end` (the guest is not called again), any other error is a
    /// fault. Logs what the call left on stdout and stderr without a newline.
    fn settle(&mut self, called: Result<(), RuntimeError>) -> Result<(), Fault> {
        let state = self.env.as_mut(&mut self.store);
        wasi::flush_stdio(state);
        let Err(error) = called else {
            return Ok(());
        };
        match error.downcast::<HostFault>() {
            Ok(HostFault::Exit { .. }) => Ok(()),
            Ok(host) => Err(host.into()),
            Err(error) => Err(error.into()),
        }
    }

    /// The Nur ABI's two functions; a command has neither.
    fn stream(&self) -> Result<(Alloc, PollStream), Fault> {
        match &self.entry {
            Entry::Stream { alloc, poll_stream } => Ok((alloc.clone(), poll_stream.clone())),
            Entry::Command { .. } => Err(Fault {
                kind: FaultKind::Other,
                message: "a WASI command is run, not fed".into(),
            }),
        }
    }

    /// Hands one chunk to the guest: `alloc(n)`, copy, `poll_stream(ptr, n)`.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<(), Fault> {
        if self.ended() {
            return Ok(());
        }
        let (alloc, poll_stream) = self.stream()?;
        let len = chunk.len() as i32;
        let called = alloc.call(&mut self.store, len);
        let ptr = match called {
            Ok(ptr) => ptr as u32,
            Err(error) => return self.settle(Err(error)),
        };
        let view = self.memory.view(&self.store);
        let fits = u64::from(ptr) + chunk.len() as u64 <= view.data_size();
        if !fits || view.write(u64::from(ptr), chunk).is_err() {
            return Err(Fault {
                kind: FaultKind::BadAlloc,
                message: format!(
                    "alloc({len}) returned {ptr}, where {len} bytes do not fit in {} bytes of memory",
                    view.data_size()
                ),
            });
        }
        let called = poll_stream.call(&mut self.store, ptr as i32, len);
        self.settle(called)
    }

    /// Tells the guest the client has closed its side: `poll_stream(0, 0)`.
    pub fn finish(&mut self) -> Result<(), Fault> {
        if self.ended() {
            return Ok(());
        }
        let (_, poll_stream) = self.stream()?;
        let called = poll_stream.call(&mut self.store, 0, 0);
        self.settle(called)
    }

    /// Runs a WASI command's `_start` over its connection: stdin reads
    /// `stream`, stdout writes it (and closes it when done: the caller
    /// hands it a descriptor of its own). Gives the buffer back with how the run
    /// ended: `Ok(close)` when `_start` returned or called `proc_exit`
    /// (`Eof` if it had read to the client's EOF, else `Ended`), or when the
    /// connection closed under it (idle, deadline, client gone); `Err` on a
    /// fault.
    pub fn run(
        &mut self,
        stream: std::net::TcpStream,
        idle: Duration,
        buffer: Vec<u8>,
    ) -> (Vec<u8>, Result<Close, Fault>) {
        let Entry::Command { start } = &self.entry else {
            let fault = Fault {
                kind: FaultKind::Other,
                message: "a Nur-ABI function is fed, not run".into(),
            };
            return (buffer, Err(fault));
        };
        let start = start.clone();
        self.env.as_mut(&mut self.store).command = Some(CommandIo {
            stream,
            idle,
            input: buffer,
            taken: 0,
            eof: false,
            bytes_in: 0,
            bytes_out: 0,
        });
        let called = start.call(&mut self.store);
        let state = self.env.as_mut(&mut self.store);
        wasi::flush_stdio(state);
        let io = state.command.take().expect("set above");
        self.bytes = (io.bytes_in, io.bytes_out);
        let close = match called {
            Ok(()) => Ok(if io.eof { Close::Eof } else { Close::Ended }),
            Err(error) => match error.downcast::<HostFault>() {
                Ok(HostFault::Exit { .. }) => Ok(if io.eof { Close::Eof } else { Close::Ended }),
                Ok(HostFault::Closed { close }) => Ok(close),
                Ok(host) => Err(host.into()),
                Err(error) => Err(error.into()),
            },
        };
        (io.input, close)
    }

    /// A command's bytes read from and written to its connection.
    pub fn command_bytes(&self) -> (u64, u64) {
        self.bytes
    }

    /// Output sent by the guest since the last [`Guest::clear_output`].
    pub fn output(&self) -> &[u8] {
        &self.env.as_ref(&self.store).output
    }

    /// Forgets the output once it is written.
    pub fn clear_output(&mut self) {
        self.env.as_mut(&mut self.store).output.clear();
    }

    /// `nur_log` lines dropped past `--max-log-bytes`.
    pub fn log_lines_dropped(&self) -> u64 {
        self.env.as_ref(&self.store).log_dropped
    }

    /// The code the guest passed to WASI `proc_exit`, if it called it.
    pub fn exit_code(&self) -> Option<i32> {
        self.env.as_ref(&self.store).exit
    }

    /// Calls of each unsupported WASI function (answered `ENOSYS`).
    pub fn unsupported_calls(&self) -> &[(Arc<str>, u64)] {
        &self.env.as_ref(&self.store).unsupported
    }

    /// Whether the guest has called `nur_end` (or WASI `proc_exit`).
    pub fn ended(&self) -> bool {
        self.env.as_ref(&self.store).ended
    }
}

/// A Nur-ABI [`Guest`] between two calls, waiting for its connection's
/// next bytes; it goes on ([`Parked::resume`]) on whichever pool thread
/// takes the connection next.
pub struct Parked(Guest);

// SAFETY: wasmer's `Store` is not `Send` only because of its optional
// `on_called` handler (a non-`Send` box), which Nur never sets. Between
// calls a store holds no state of the thread that last ran it: wasmer-vm
// installs the thread's store context and its interrupt-registry entry (the
// pthread a deadline's signal goes to) at the start of each call and removes
// them at its end (wasmer 7.4.2, `backend/sys/entities/module.rs` and
// wasmer-vm `interrupt_registry/unix.rs`). A `Parked` guest is never inside
// a call: it is made from a guest whose call returned, and a call needs the
// `Guest` back. The rest of a guest (its memory from the pool, its host
// state, its watchdog) is `Send`.
#[allow(unsafe_code)]
unsafe impl Send for Parked {}

impl Guest {
    /// Parks the guest between two calls.
    pub fn park(self) -> Parked {
        Parked(self)
    }
}

impl Parked {
    /// The guest again, on this thread, for its next call.
    pub fn resume(self) -> Guest {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imports_are_resolved_once_in_the_modules_order_and_an_unknown_one_is_named() {
        let binary = wat::parse_str(
            r#"(module
                (import "env" "clock" (func))
                (import "nur" "nur_send" (func (param i32 i32)))
                (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))
                (import "nur" "nur_end" (func))
                (memory (export "memory") 1))"#,
        )
        .unwrap();
        let engine = Engine::default();
        let module = wasmer::Module::new(&engine, binary).unwrap();
        let imports = Import::all(&module);
        let shape: Vec<String> = imports
            .iter()
            .map(|import| match import {
                Import::Send => "send".into(),
                Import::Log => "log".into(),
                Import::End => "end".into(),
                Import::Wasi(import) => format!("wasi {}", import.name),
                Import::Unknown(name) => format!("unknown {name}"),
            })
            .collect();
        assert_eq!(shape, ["unknown env.clock", "send", "wasi fd_write", "end"]);

        let mut store = Store::new(engine);
        let state = HostState {
            memory: None,
            output: Vec::new(),
            ended: false,
            max_output: 1024,
            function: "imports".into(),
            connection: 1,
            deadline: Instant::now() + Duration::from_secs(5),
            log_left: 1024,
            log_dropped: 0,
            stdio: [Vec::new(), Vec::new()],
            exit: None,
            unsupported: Vec::new(),
            argument: Arc::new([0]),
            environment: Arc::new([]),
            command: None,
        };
        let env = FunctionEnv::new(&mut store, state);
        let Err(fault) = imports[0].make(&mut store, &env) else {
            panic!("an unknown import has no host function");
        };
        assert_eq!(fault.kind, FaultKind::Instantiate);
        assert!(
            fault.message.contains("unknown import env.clock"),
            "{}",
            fault.message
        );
        assert!(
            imports[1..]
                .iter()
                .all(|import| import.make(&mut store, &env).is_ok())
        );
    }
}
