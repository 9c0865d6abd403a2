//! One function compiled once ([`Function`]) and its per-connection
//! instances ([`Guest`]): the host side of the Nur ABI.
//!
//! A `Guest` owns a wasmer `Store`, which is not `Send`: it is created, used
//! and dropped on one thread (see `connection.rs`).

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmer::sys::{Cranelift, EngineBuilder, NativeEngineExt};
use wasmer::{
    Engine, Function as HostFunction, FunctionEnv, FunctionEnvMut, Instance, InstantiationError,
    Memory, RuntimeError, Store, TypedFunction, imports,
};
use wasmer_types::TrapCode;

use crate::config::Limits;
use crate::deadline::{Deadlines, GuestCode, Watchdog};
use crate::sys;
use crate::tunables::{self, MemoryLimit};

/// Longest `nur_log` line kept; the rest is cut.
const MAX_LOG_LINE: usize = 16 * 1024;

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
}

impl Function {
    /// The engine every instance runs on: Cranelift, memories capped at
    /// `--memory-limit`.
    pub fn engine(limits: &Limits) -> Engine {
        let mut engine: Engine = EngineBuilder::new(Cranelift::default()).engine().into();
        engine.set_tunables(MemoryLimit::new(
            limits.memory_limit,
            limits.max_connections as usize,
        ));
        engine
    }

    /// Compiles `module` to native code; returns it and the time it took.
    pub fn compile(
        engine: &Engine,
        module: &nur_module::Module,
    ) -> anyhow::Result<(wasmer::Module, Duration)> {
        let started = Instant::now();
        let compiled = wasmer::Module::new(engine, &module.binary)
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
            module: compiled,
        }
    }

    /// The deadlines of this function's guests, for the health check.
    pub fn deadlines(&self) -> &Deadlines {
        &self.deadlines
    }
}

/// How a guest failed; each ends its connection and only its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// `unreachable` was executed.
    Unreachable,
    /// A load or store outside linear memory.
    OutOfBounds,
    /// A pointer passed to `nur_send` or `nur_log` outside linear memory.
    BadPointer,
    /// Division by zero, integer overflow or a bad float conversion.
    Arithmetic,
    /// The call stack overflowed.
    StackOverflow,
    /// Interrupted at the connection's deadline.
    Timeout,
    /// One call sent more than the output limit.
    OutputLimit,
    /// `alloc` returned an address where the chunk does not fit.
    BadAlloc,
    /// Instantiation failed (memory limit, start function trap).
    Instantiate,
    /// Any other trap.
    Other,
}

impl FaultKind {
    /// The label used in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unreachable => "unreachable",
            Self::OutOfBounds => "out_of_bounds",
            Self::BadPointer => "bad_pointer",
            Self::Arithmetic => "arithmetic",
            Self::StackOverflow => "stack_overflow",
            Self::Timeout => "timeout",
            Self::OutputLimit => "output_limit",
            Self::BadAlloc => "bad_alloc",
            Self::Instantiate => "instantiate",
            Self::Other => "other",
        }
    }
}

/// A guest fault: what kind, and what happened.
#[derive(Debug)]
pub struct Fault {
    pub kind: FaultKind,
    pub message: String,
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.kind.as_str())
    }
}

/// Errors raised by the host functions, turned into traps.
#[derive(Debug, thiserror::Error)]
enum HostFault {
    #[error("{function}({ptr}, {len}): the range is outside the guest's memory")]
    BadPointer {
        function: &'static str,
        ptr: u32,
        len: u32,
    },
    #[error("nur_send: output of one call would exceed {limit} bytes")]
    OutputLimit { limit: usize },
    #[error("{function}: called past the connection's deadline")]
    Timeout { function: &'static str },
}

impl From<RuntimeError> for Fault {
    fn from(error: RuntimeError) -> Self {
        let error = match error.downcast::<HostFault>() {
            Ok(host) => {
                let kind = match host {
                    HostFault::BadPointer { .. } => FaultKind::BadPointer,
                    HostFault::OutputLimit { .. } => FaultKind::OutputLimit,
                    HostFault::Timeout { .. } => FaultKind::Timeout,
                };
                return Fault {
                    kind,
                    message: host.to_string(),
                };
            }
            Err(error) => error,
        };
        let message = error.message();
        let kind = match error.to_trap() {
            Some(TrapCode::UnreachableCodeReached) => FaultKind::Unreachable,
            Some(TrapCode::HeapAccessOutOfBounds | TrapCode::TableAccessOutOfBounds) => {
                FaultKind::OutOfBounds
            }
            Some(
                TrapCode::IntegerOverflow
                | TrapCode::IntegerDivisionByZero
                | TrapCode::BadConversionToInteger,
            ) => FaultKind::Arithmetic,
            Some(TrapCode::StackOverflow) => FaultKind::StackOverflow,
            Some(TrapCode::HostInterrupt) => FaultKind::Timeout,
            _ => FaultKind::Other,
        };
        Fault { kind, message }
    }
}

/// Host-side state of one instance, reached from the host functions.
struct HostState {
    memory: Option<Memory>,
    output: Vec<u8>,
    ended: bool,
    max_output: usize,
    function: Arc<str>,
    connection: u64,
    deadline: Instant,
    /// Bytes of `nur_log` lines this connection may still log.
    log_left: u64,
    /// Lines dropped once `log_left` ran out.
    log_dropped: u64,
}

impl HostState {
    /// Takes `len` bytes of the log budget; false (and the line dropped and
    /// counted) once a line does not fit. The first drop is logged.
    fn admit_log(&mut self, len: u32) -> bool {
        if self.log_dropped == 0 && u64::from(len) <= self.log_left {
            self.log_left -= u64::from(len);
            return true;
        }
        if self.log_dropped == 0 {
            tracing::warn!(
                function = %self.function,
                connection = self.connection,
                "the function reached --max-log-bytes: its further nur_log lines on this connection are dropped"
            );
        }
        self.log_dropped += 1;
        false
    }

    /// Fails with `timeout` once the connection's deadline has passed: a
    /// guest calling host functions in a loop stops at its next call, at a
    /// point where returning an error is safe (see `deadline.rs`).
    fn check_deadline(&self, function: &'static str) -> Result<(), RuntimeError> {
        if Instant::now() >= self.deadline {
            return Err(RuntimeError::user(Box::new(HostFault::Timeout {
                function,
            })));
        }
        Ok(())
    }

    /// Appends guest memory `[ptr, ptr + len)` to `out` (one copy, straight
    /// from the memory), or fails with `bad_pointer` without reading.
    fn read_into(
        state: &HostState,
        store: &impl wasmer::AsStoreRef,
        function: &'static str,
        ptr: i32,
        len: i32,
        out: &mut Vec<u8>,
    ) -> Result<(), RuntimeError> {
        let (ptr, len) = (ptr as u32, len as u32);
        let bad_pointer =
            || RuntimeError::user(Box::new(HostFault::BadPointer { function, ptr, len }));
        let memory = state.memory.as_ref().ok_or_else(bad_pointer)?;
        let view = memory.view(store);
        let end = u64::from(ptr) + u64::from(len);
        if end > view.data_size() {
            return Err(bad_pointer());
        }
        let len = len as usize;
        let filled = sys::extend_uninit(out, len, |spare| view.read_uninit(u64::from(ptr), spare))
            .map_err(|_| bad_pointer())?;
        debug_assert_eq!(filled, len);
        Ok(())
    }
}

fn nur_send(
    mut env: FunctionEnvMut<'_, HostState>,
    ptr: i32,
    len: i32,
) -> Result<(), RuntimeError> {
    let (state, store) = env.data_and_store_mut();
    state.check_deadline("nur_send")?;
    if state.ended {
        return Ok(());
    }
    let ulen = len as u32 as usize;
    if state.output.len().saturating_add(ulen) > state.max_output {
        return Err(RuntimeError::user(Box::new(HostFault::OutputLimit {
            limit: state.max_output,
        })));
    }
    let mut output = std::mem::take(&mut state.output);
    let read = HostState::read_into(state, &store, "nur_send", ptr, len, &mut output);
    state.output = output;
    read
}

fn nur_log(mut env: FunctionEnvMut<'_, HostState>, ptr: i32, len: i32) -> Result<(), RuntimeError> {
    let shown = (len as u32).min(MAX_LOG_LINE as u32);
    let (state, store) = env.data_and_store_mut();
    state.check_deadline("nur_log")?;
    // A bad pointer is a fault whether the line is logged or not.
    let end = u64::from(ptr as u32) + u64::from(shown);
    let size = state
        .memory
        .as_ref()
        .map_or(0, |m| m.view(&store).data_size());
    if end > size {
        return Err(RuntimeError::user(Box::new(HostFault::BadPointer {
            function: "nur_log",
            ptr: ptr as u32,
            len: shown,
        })));
    }
    // Below INFO, or past the connection's log budget, nothing is copied.
    if !tracing::enabled!(target: "nur::function", tracing::Level::INFO) || !state.admit_log(shown)
    {
        return Ok(());
    }
    let mut bytes = Vec::new();
    HostState::read_into(state, &store, "nur_log", ptr, shown as i32, &mut bytes)?;
    let line = String::from_utf8_lossy(&bytes);
    let cut = if shown != len as u32 { " [cut]" } else { "" };
    tracing::info!(
        target: "nur::function",
        function = %state.function,
        connection = state.connection,
        "{}{cut}",
        escape_controls(line.trim_end_matches('\n'))
    );
    Ok(())
}

/// `line` with its control characters escaped (`\n`, `\r`, `\t`, `\u{1b}`...,
/// and the Unicode line and paragraph separators), so that a guest's line is
/// one line of the worker's log in any format and cannot pass for another.
fn escape_controls(line: &str) -> Cow<'_, str> {
    let escaped = |c: char| c.is_control() || matches!(c, '\u{2028}' | '\u{2029}');
    if !line.chars().any(escaped) {
        return Cow::Borrowed(line);
    }
    let mut out = String::with_capacity(line.len() + 16);
    for c in line.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if escaped(c) => out.push_str(&format!("\\u{{{:x}}}", u32::from(c))),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

fn nur_end(mut env: FunctionEnvMut<'_, HostState>) -> Result<(), RuntimeError> {
    let state = env.data_mut();
    state.check_deadline("nur_end")?;
    state.ended = true;
    Ok(())
}

/// A fresh instance serving one connection.
pub struct Guest {
    store: Store,
    env: FunctionEnv<HostState>,
    memory: Memory,
    alloc: TypedFunction<i32, i32>,
    poll_stream: TypedFunction<(i32, i32), ()>,
    _watchdog: Watchdog,
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
            },
        );
        let imports = imports! {
            nur_module::abi::IMPORT_MODULE => {
                "nur_send" => HostFunction::new_typed_with_env(&mut store, &env, nur_send),
                "nur_log" => HostFunction::new_typed_with_env(&mut store, &env, nur_log),
                "nur_end" => HostFunction::new_typed_with_env(&mut store, &env, nur_end),
            }
        };
        let instance =
            Instance::new(&mut store, &function.module, &imports).map_err(|e| match e {
                InstantiationError::Start(trap) => Fault::from(trap),
                other => Fault {
                    kind: FaultKind::Instantiate,
                    message: format!("instantiating failed: {other}"),
                },
            })?;
        let missing = |e: wasmer::ExportError| Fault {
            kind: FaultKind::Instantiate,
            message: e.to_string(),
        };
        let memory = instance
            .exports
            .get_memory("memory")
            .map_err(missing)?
            .clone();
        let alloc = instance
            .exports
            .get_typed_function(&store, "alloc")
            .map_err(missing)?;
        let poll_stream = instance
            .exports
            .get_typed_function(&store, "poll_stream")
            .map_err(missing)?;
        env.as_mut(&mut store).memory = Some(memory.clone());
        let mut guest = Self {
            store,
            env,
            memory,
            alloc,
            poll_stream,
            _watchdog: watchdog,
        };
        if function.initializer {
            let init: TypedFunction<(), ()> = instance
                .exports
                .get_typed_function(&guest.store, nur_module::abi::INITIALIZE)
                .map_err(missing)?;
            init.call(&mut guest.store)?;
        }
        Ok(guest)
    }

    /// Hands one chunk to the guest: `alloc(n)`, copy, `poll_stream(ptr, n)`.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<(), Fault> {
        let len = chunk.len() as i32;
        let ptr = self.alloc.call(&mut self.store, len)? as u32;
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
        self.poll_stream.call(&mut self.store, ptr as i32, len)?;
        Ok(())
    }

    /// Tells the guest the client has closed its side: `poll_stream(0, 0)`.
    pub fn finish(&mut self) -> Result<(), Fault> {
        self.poll_stream.call(&mut self.store, 0, 0)?;
        Ok(())
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

    /// Whether the guest has called `nur_end`.
    pub fn ended(&self) -> bool {
        self.env.as_ref(&self.store).ended
    }
}

#[cfg(test)]
mod tests {
    use super::escape_controls;

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(escape_controls("plain text"), "plain text");
        assert_eq!(
            escape_controls("a\nERROR forged\r\t\u{1b}[31m\u{2028}"),
            "a\\nERROR forged\\r\\t\\u{1b}[31m\\u{2028}"
        );
    }
}
