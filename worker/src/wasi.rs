//! WASI preview 1 (`wasi_snapshot_preview1`), the subset a Nur function
//! needs, written on the worker's own [`HostState`]: stdout and stderr to
//! the function's log (a command's stdin and stdout are its connection),
//! clocks, random bytes from the OS, one argument (the function's name),
//! the function's own environment (`NUR_ENV_*`, never the worker's),
//! `proc_exit`, `sched_yield` and clock-only `poll_oneoff` sleeps. Every other function a module imports
//! from `wasi_snapshot_preview1` answers `ENOSYS` (52) and is counted.
//!
//! Why not wasmer-wasix: its runtime owns the instance's memory, threads,
//! file descriptors and a tokio runtime of its own, and builds a `WasiEnv`
//! per instance; that fits neither the pooled memories nor a fresh instance
//! per connection served on one blocking-pool thread, where instantiation is
//! most of a connection's cost. These functions are plain host functions on
//! the state `nur_send` already uses, so the same limits hold inside them:
//! each checks the connection's deadline first (and a sleep ends at it),
//! a pointer or length outside memory traps as `bad_pointer` like
//! `nur_send`'s, and what they log takes from the same log budget.
//!
//! Errors are WASI errno values; the layouts written (`iovec`, `fdstat`,
//! `subscription`, `event`) are preview 1's, little-endian.

use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use wasmer::{
    Function as HostFunction, FunctionEnv, FunctionEnvMut, FunctionType, RuntimeError, Store, Type,
    Value,
};

use crate::fault::HostFault;
use crate::host::{self, HostState, MAX_LOG_LINE};

pub use nur_module::abi::WASI_MODULE;

const ESUCCESS: i32 = 0;
const EBADF: i32 = 8;
const EINVAL: i32 = 28;
/// What every unsupported function answers.
pub const ENOSYS: i32 = 52;
const ENOTSUP: i32 = 58;
const ESPIPE: i32 = 70;

const CLOCK_REALTIME: i32 = 0;
const CLOCK_MONOTONIC: i32 = 1;

/// The origin of `CLOCK_MONOTONIC`: nanoseconds since the process started
/// serving (never the host's boot time).
static ORIGIN: LazyLock<Instant> = LazyLock::new(Instant::now);

/// Starts the monotonic clock; called when the function is made.
pub(crate) fn start_clock() {
    LazyLock::force(&ORIGIN);
}

fn user(fault: HostFault) -> RuntimeError {
    RuntimeError::user(Box::new(fault))
}

fn bad_pointer(function: &'static str, ptr: u32, len: u32) -> RuntimeError {
    user(HostFault::BadPointer { function, ptr, len })
}

/// Reads `len` bytes at `ptr`, or fails with `bad_pointer`.
fn read(
    env: &mut FunctionEnvMut<'_, HostState>,
    function: &'static str,
    ptr: i32,
    len: u32,
) -> Result<Vec<u8>, RuntimeError> {
    let (state, store) = env.data_and_store_mut();
    let mut out = Vec::new();
    HostState::read_into(state, &store, function, ptr, len as i32, &mut out)?;
    Ok(out)
}

/// Writes `bytes` at `ptr`, or fails with `bad_pointer` without writing.
fn write(
    env: &mut FunctionEnvMut<'_, HostState>,
    function: &'static str,
    ptr: i32,
    bytes: &[u8],
) -> Result<(), RuntimeError> {
    let (state, store) = env.data_and_store_mut();
    let (ptr, len) = (ptr as u32, bytes.len() as u32);
    let memory = state
        .memory
        .as_ref()
        .ok_or_else(|| bad_pointer(function, ptr, len))?;
    let view = memory.view(&store);
    if u64::from(ptr) + u64::from(len) > view.data_size() {
        return Err(bad_pointer(function, ptr, len));
    }
    view.write(u64::from(ptr), bytes)
        .map_err(|_| bad_pointer(function, ptr, len))
}

fn write_u32(
    env: &mut FunctionEnvMut<'_, HostState>,
    function: &'static str,
    ptr: i32,
    value: u32,
) -> Result<(), RuntimeError> {
    write(env, function, ptr, &value.to_le_bytes())
}

fn deadline(
    env: &FunctionEnvMut<'_, HostState>,
    function: &'static str,
) -> Result<(), RuntimeError> {
    env.data().check_deadline(function)
}

/// The `iovec`s (`buf: u32, len: u32`) of an `fd_write` or `fd_read`.
fn iovecs(
    env: &mut FunctionEnvMut<'_, HostState>,
    function: &'static str,
    iovs: i32,
    count: i32,
) -> Result<Vec<(i32, u32)>, RuntimeError> {
    let size = (count as u32)
        .checked_mul(8)
        .ok_or_else(|| bad_pointer(function, iovs as u32, u32::MAX))?;
    let raw = read(env, function, iovs, size)?;
    Ok(raw
        .chunks_exact(8)
        .map(|v| {
            let buf = u32::from_le_bytes(v[..4].try_into().unwrap());
            let len = u32::from_le_bytes(v[4..].try_into().unwrap());
            (buf as i32, len)
        })
        .collect())
}

/// `fd_write`: fd 1 (stdout) and 2 (stderr) go to the function's log, one
/// line per newline-terminated line (the rest when the guest call returns,
/// [`flush_stdio`]), within the connection's log budget; other fds `EBADF`.
fn fd_write(
    mut env: FunctionEnvMut<'_, HostState>,
    fd: i32,
    iovs: i32,
    iovs_len: i32,
    nwritten: i32,
) -> Result<i32, RuntimeError> {
    deadline(&env, "fd_write")?;
    if fd != 1 && fd != 2 {
        return Ok(EBADF);
    }
    if fd == 1 && env.data().command.is_some() {
        return command_stdout(env, iovs, iovs_len, nwritten);
    }
    let mut total: u32 = 0;
    for (buf, len) in iovecs(&mut env, "fd_write", iovs, iovs_len)? {
        // Bounds are checked whether the bytes are logged or not.
        let bytes = read(&mut env, "fd_write", buf, len)?;
        total = total.saturating_add(len);
        let state = env.data_mut();
        let index = (fd - 1) as usize;
        for piece in bytes.split_inclusive(|b| *b == b'\n') {
            state.stdio[index].extend_from_slice(piece);
            if piece.ends_with(b"\n") || state.stdio[index].len() >= MAX_LOG_LINE {
                emit(state, index);
            }
        }
    }
    write_u32(&mut env, "fd_write", nwritten, total)?;
    Ok(ESUCCESS)
}

/// `fd_write` to a command's stdout: the bytes of every iovec, sent to the
/// client in one write as the program writes them (at most `--max-output`
/// bytes per call), waiting while the client does not read.
fn command_stdout(
    mut env: FunctionEnvMut<'_, HostState>,
    iovs: i32,
    iovs_len: i32,
    nwritten: i32,
) -> Result<i32, RuntimeError> {
    let vecs = iovecs(&mut env, "fd_write", iovs, iovs_len)?;
    let total: u64 = vecs.iter().map(|(_, len)| u64::from(*len)).sum();
    let limit = env.data().max_output;
    if total > limit as u64 {
        return Err(user(HostFault::OutputLimit {
            function: "fd_write",
            limit,
        }));
    }
    let (state, store) = env.data_and_store_mut();
    let mut out = std::mem::take(&mut state.output);
    out.clear();
    let mut read = Ok(());
    for (buf, len) in vecs {
        read = HostState::read_into(state, &store, "fd_write", buf, len as i32, &mut out);
        if read.is_err() {
            break;
        }
    }
    let sent = match (read, state.command.as_mut()) {
        (Ok(()), Some(io)) => io.send(&out, state.deadline),
        (read, _) => read,
    };
    out.clear();
    state.output = out;
    sent?;
    write_u32(&mut env, "fd_write", nwritten, total as u32)?;
    Ok(ESUCCESS)
}

/// Logs what fd `index + 1` holds as one line (cut at the longest line a
/// log line may be), within the log budget.
fn emit(state: &mut HostState, index: usize) {
    let mut line = std::mem::take(&mut state.stdio[index]);
    let cut = line.len() > MAX_LOG_LINE;
    line.truncate(MAX_LOG_LINE);
    let shown = line.strip_suffix(b"\n").unwrap_or(&line);
    if !shown.is_empty()
        && tracing::enabled!(target: "nur::function", tracing::Level::INFO)
        && state.admit_log(shown.len() as u32)
    {
        let stream = if index == 0 { "stdout" } else { "stderr" };
        host::log_line(state, Some(stream), shown, cut);
    }
    line.clear();
    state.stdio[index] = line;
}

/// Logs what stdout and stderr hold without a newline; called when a guest
/// call returns.
pub(crate) fn flush_stdio(state: &mut HostState) {
    for index in 0..2 {
        if !state.stdio[index].is_empty() {
            emit(state, index);
        }
    }
}

/// `fd_read`: a command's fd 0 is the client's bytes, as they arrive (it
/// waits for them at most the idle timeout, never past the deadline; 0
/// bytes once the client has closed its side); a Nur-ABI function's fd 0 is
/// at its end. Other fds `EBADF`.
fn fd_read(
    mut env: FunctionEnvMut<'_, HostState>,
    fd: i32,
    iovs: i32,
    iovs_len: i32,
    nread: i32,
) -> Result<i32, RuntimeError> {
    const NAME: &str = "fd_read";
    deadline(&env, NAME)?;
    if fd != 0 {
        return Ok(EBADF);
    }
    let vecs = iovecs(&mut env, NAME, iovs, iovs_len)?;
    let (state, store) = env.data_and_store_mut();
    let deadline = state.deadline;
    let mut given = 0;
    if let Some(io) = state.command.as_mut() {
        let pending = io.pending(deadline)?;
        let view = state.memory.as_ref().map(|m| m.view(&store));
        for (buf, len) in vecs {
            let n = (len as usize).min(pending.len() - given);
            if n == 0 {
                continue;
            }
            let fits = view
                .as_ref()
                .is_some_and(|v| u64::from(buf as u32) + n as u64 <= v.data_size());
            let bytes = &pending[given..given + n];
            if !fits
                || view
                    .as_ref()
                    .unwrap()
                    .write(u64::from(buf as u32), bytes)
                    .is_err()
            {
                return Err(bad_pointer(NAME, buf as u32, len));
            }
            given += n;
        }
        io.taken += given;
    }
    write_u32(&mut env, NAME, nread, given as u32)?;
    Ok(ESUCCESS)
}

/// `fd_close`: nothing to close; fds 0 to 2 succeed, others `EBADF`.
fn fd_close(env: FunctionEnvMut<'_, HostState>, fd: i32) -> Result<i32, RuntimeError> {
    deadline(&env, "fd_close")?;
    Ok(if (0..=2).contains(&fd) {
        ESUCCESS
    } else {
        EBADF
    })
}

/// `fd_fdstat_get`: fds 0 to 2 are character devices (so that libc
/// line-buffers stdout), readable (0) or writable (1, 2); others `EBADF`.
fn fd_fdstat_get(
    mut env: FunctionEnvMut<'_, HostState>,
    fd: i32,
    ptr: i32,
) -> Result<i32, RuntimeError> {
    deadline(&env, "fd_fdstat_get")?;
    if !(0..=2).contains(&fd) {
        return Ok(EBADF);
    }
    const CHARACTER_DEVICE: u8 = 2;
    const RIGHT_FD_READ: u64 = 1 << 1;
    const RIGHT_FD_WRITE: u64 = 1 << 6;
    let mut stat = [0u8; 24];
    stat[0] = CHARACTER_DEVICE;
    let rights = if fd == 0 {
        RIGHT_FD_READ
    } else {
        RIGHT_FD_WRITE
    };
    stat[8..16].copy_from_slice(&rights.to_le_bytes());
    write(&mut env, "fd_fdstat_get", ptr, &stat)?;
    Ok(ESUCCESS)
}

/// `fd_prestat_get`: no preopened directories, so libc's scan from fd 3
/// ends at once.
fn fd_prestat_get(
    env: FunctionEnvMut<'_, HostState>,
    _fd: i32,
    _ptr: i32,
) -> Result<i32, RuntimeError> {
    deadline(&env, "fd_prestat_get")?;
    Ok(EBADF)
}

/// `fd_fdstat_set_flags`: accepted and ignored on fds 0 to 2 (Go sets
/// `O_NONBLOCK` on them); others `EBADF`.
fn fd_fdstat_set_flags(
    env: FunctionEnvMut<'_, HostState>,
    fd: i32,
    _flags: i32,
) -> Result<i32, RuntimeError> {
    deadline(&env, "fd_fdstat_set_flags")?;
    Ok(if (0..=2).contains(&fd) {
        ESUCCESS
    } else {
        EBADF
    })
}

/// `fd_prestat_dir_name`: no preopened directories.
fn fd_prestat_dir_name(
    env: FunctionEnvMut<'_, HostState>,
    _fd: i32,
    _ptr: i32,
    _len: i32,
) -> Result<i32, RuntimeError> {
    deadline(&env, "fd_prestat_dir_name")?;
    Ok(EBADF)
}

/// `fd_seek`: stdio cannot seek (`ESPIPE`); other fds `EBADF`.
fn fd_seek(
    env: FunctionEnvMut<'_, HostState>,
    fd: i32,
    _offset: i64,
    _whence: i32,
    _newoffset: i32,
) -> Result<i32, RuntimeError> {
    deadline(&env, "fd_seek")?;
    Ok(if (0..=2).contains(&fd) { ESPIPE } else { EBADF })
}

/// Nanoseconds of `clock` now, or `None` for a clock other than realtime
/// and monotonic (the CPU-time clocks are not provided).
fn now(clock: i32) -> Option<u64> {
    match clock {
        CLOCK_REALTIME => Some(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64),
        ),
        CLOCK_MONOTONIC => Some(ORIGIN.elapsed().as_nanos() as u64),
        _ => None,
    }
}

fn clock_time_get(
    mut env: FunctionEnvMut<'_, HostState>,
    clock: i32,
    _precision: i64,
    ptr: i32,
) -> Result<i32, RuntimeError> {
    deadline(&env, "clock_time_get")?;
    let Some(time) = now(clock) else {
        return Ok(EINVAL);
    };
    write(&mut env, "clock_time_get", ptr, &time.to_le_bytes())?;
    Ok(ESUCCESS)
}

fn clock_res_get(
    mut env: FunctionEnvMut<'_, HostState>,
    clock: i32,
    ptr: i32,
) -> Result<i32, RuntimeError> {
    deadline(&env, "clock_res_get")?;
    if now(clock).is_none() {
        return Ok(EINVAL);
    }
    write(&mut env, "clock_res_get", ptr, &1u64.to_le_bytes())?;
    Ok(ESUCCESS)
}

/// `random_get`: bytes from the OS (`getrandom(2)`).
fn random_get(
    mut env: FunctionEnvMut<'_, HostState>,
    ptr: i32,
    len: i32,
) -> Result<i32, RuntimeError> {
    deadline(&env, "random_get")?;
    let len = len as u32;
    // Bounds first: no buffer larger than the guest's memory is made.
    let size = {
        let (state, store) = env.data_and_store_mut();
        state
            .memory
            .as_ref()
            .map_or(0, |m| m.view(&store).data_size())
    };
    if u64::from(ptr as u32) + u64::from(len) > size {
        return Err(bad_pointer("random_get", ptr as u32, len));
    }
    let mut bytes = vec![0; len as usize];
    if getrandom::fill(&mut bytes).is_err() {
        return Ok(ENOSYS);
    }
    write(&mut env, "random_get", ptr, &bytes)?;
    Ok(ESUCCESS)
}

/// `args_sizes_get`: one argument, the function's name.
fn args_sizes_get(
    mut env: FunctionEnvMut<'_, HostState>,
    argc: i32,
    buf_size: i32,
) -> Result<i32, RuntimeError> {
    deadline(&env, "args_sizes_get")?;
    let size = env.data().argument.len() as u32;
    write_u32(&mut env, "args_sizes_get", argc, 1)?;
    write_u32(&mut env, "args_sizes_get", buf_size, size)?;
    Ok(ESUCCESS)
}

fn args_get(
    mut env: FunctionEnvMut<'_, HostState>,
    argv: i32,
    buf: i32,
) -> Result<i32, RuntimeError> {
    deadline(&env, "args_get")?;
    let argument = env.data().argument.clone();
    write(&mut env, "args_get", buf, &argument)?;
    write_u32(&mut env, "args_get", argv, buf as u32)?;
    Ok(ESUCCESS)
}

/// `environ_sizes_get`: the function's own variables (`spec.env`, given
/// to the worker as `NUR_ENV_*`), never the worker's.
fn environ_sizes_get(
    mut env: FunctionEnvMut<'_, HostState>,
    count: i32,
    buf_size: i32,
) -> Result<i32, RuntimeError> {
    deadline(&env, "environ_sizes_get")?;
    let variables = env.data().environment.clone();
    let size: usize = variables.iter().map(|v| v.len()).sum();
    write_u32(&mut env, "environ_sizes_get", count, variables.len() as u32)?;
    write_u32(&mut env, "environ_sizes_get", buf_size, size as u32)?;
    Ok(ESUCCESS)
}

/// `environ_get`: each `NAME=value` NUL-terminated at `buf`, one after the
/// other, and a pointer to each at `environ`.
fn environ_get(
    mut env: FunctionEnvMut<'_, HostState>,
    environ: i32,
    buf: i32,
) -> Result<i32, RuntimeError> {
    deadline(&env, "environ_get")?;
    let variables = env.data().environment.clone();
    let mut at = buf as u32;
    for (index, variable) in variables.iter().enumerate() {
        write(&mut env, "environ_get", at as i32, variable)?;
        let slot = environ.wrapping_add((4 * index) as i32);
        write_u32(&mut env, "environ_get", slot, at)?;
        at = at.wrapping_add(variable.len() as u32);
    }
    Ok(ESUCCESS)
}

/// `proc_exit`: unwinds the guest's call like a trap; the guest then sees
/// the connection end as after `nur_end` (see `Guest::settle`).
fn proc_exit(mut env: FunctionEnvMut<'_, HostState>, code: i32) -> Result<(), RuntimeError> {
    deadline(&env, "proc_exit")?;
    let state = env.data_mut();
    state.exit = Some(code);
    state.ended = true;
    Err(user(HostFault::Exit { code }))
}

fn sched_yield(env: FunctionEnvMut<'_, HostState>) -> Result<i32, RuntimeError> {
    deadline(&env, "sched_yield")?;
    Ok(ESUCCESS)
}

const SUBSCRIPTION_SIZE: u32 = 48;
const EVENT_SIZE: usize = 32;
const EVENTTYPE_CLOCK: u8 = 0;
const SUBCLOCKFLAGS_ABSTIME: u16 = 1;

/// `poll_oneoff` with clock subscriptions only: sleeps until the first one
/// is due, but never past the connection's deadline, where it fails with
/// `timeout`; writes an event for each subscription due by then. An fd
/// subscription makes the call `ENOTSUP`.
fn poll_oneoff(
    mut env: FunctionEnvMut<'_, HostState>,
    subscriptions: i32,
    events: i32,
    count: i32,
    nevents: i32,
) -> Result<i32, RuntimeError> {
    const NAME: &str = "poll_oneoff";
    deadline(&env, NAME)?;
    let count = count as u32;
    if count == 0 {
        return Ok(EINVAL);
    }
    let size = count
        .checked_mul(SUBSCRIPTION_SIZE)
        .ok_or_else(|| bad_pointer(NAME, subscriptions as u32, u32::MAX))?;
    let raw = read(&mut env, NAME, subscriptions, size)?;
    let started = Instant::now();
    // (userdata, when due, errno)
    let mut due: Vec<(u64, Instant, u16)> = Vec::with_capacity(count as usize);
    for sub in raw.chunks_exact(SUBSCRIPTION_SIZE as usize) {
        let field = |at: usize| u64::from_le_bytes(sub[at..at + 8].try_into().unwrap());
        let userdata = field(0);
        if sub[8] != EVENTTYPE_CLOCK {
            return Ok(ENOTSUP);
        }
        let clock = i32::from_le_bytes(sub[16..20].try_into().unwrap());
        let timeout = field(24);
        let flags = u16::from_le_bytes(sub[40..42].try_into().unwrap());
        let Some(now) = now(clock) else {
            due.push((userdata, started, EINVAL as u16));
            continue;
        };
        let wait = if flags & SUBCLOCKFLAGS_ABSTIME != 0 {
            timeout.saturating_sub(now)
        } else {
            timeout
        };
        due.push((userdata, started + Duration::from_nanos(wait), 0));
    }
    let first = due.iter().map(|(_, at, _)| *at).min().unwrap_or(started);
    let until = first.min(env.data().deadline);
    // A deadline interrupt that finds this thread here is dropped by the
    // trap handler; the sleep itself ends at the deadline.
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        std::thread::sleep(left);
    }
    deadline(&env, NAME)?;
    let woke = Instant::now();
    let mut out = Vec::with_capacity(due.len() * EVENT_SIZE);
    for (userdata, at, errno) in due.iter().filter(|(_, at, _)| *at <= woke) {
        let _ = at;
        let mut event = [0u8; EVENT_SIZE];
        event[..8].copy_from_slice(&userdata.to_le_bytes());
        event[8..10].copy_from_slice(&errno.to_le_bytes());
        event[10] = EVENTTYPE_CLOCK;
        out.extend_from_slice(&event);
    }
    write(&mut env, NAME, events, &out)?;
    write_u32(&mut env, NAME, nevents, (out.len() / EVENT_SIZE) as u32)?;
    Ok(ESUCCESS)
}

/// One unsupported function: counts the call and answers `ENOSYS` (zeros
/// for results of another type than `i32`).
fn unsupported(
    store: &mut Store,
    env: &FunctionEnv<HostState>,
    name: Arc<str>,
    ty: &FunctionType,
) -> HostFunction {
    let results: Vec<Value> = ty
        .results()
        .iter()
        .map(|ty| match ty {
            Type::I32 => Value::I32(ENOSYS),
            Type::I64 => Value::I64(0),
            Type::F32 => Value::F32(0.0),
            Type::F64 => Value::F64(0.0),
            Type::V128 => Value::V128(0),
            Type::ExternRef => Value::ExternRef(None),
            Type::FuncRef => Value::FuncRef(None),
            Type::ExceptionRef => Value::ExceptionRef(None),
        })
        .collect();
    HostFunction::new_with_env(store, env, ty.clone(), move |mut env, _args| {
        let state = env.data_mut();
        state.check_deadline("an unsupported WASI function")?;
        match state.unsupported.iter_mut().find(|(n, _)| *n == name) {
            Some((_, calls)) => *calls += 1,
            None => state.unsupported.push((name.clone(), 1)),
        }
        Ok(results.clone())
    })
}

/// Makes one host function in a connection's store.
type MakeHost = fn(&mut Store, &FunctionEnv<HostState>) -> HostFunction;

/// `(name, maker)` for the host function `name`.
macro_rules! implemented {
    ($function:ident) => {
        (stringify!($function), |store, env| {
            HostFunction::new_typed_with_env(store, env, $function)
        })
    };
}

/// The implemented functions, by name (each one's Rust function has it).
const IMPLEMENTED: [(&str, MakeHost); 18] = [
    implemented!(fd_write),
    implemented!(fd_read),
    implemented!(fd_close),
    implemented!(fd_fdstat_get),
    implemented!(fd_prestat_get),
    implemented!(fd_seek),
    implemented!(fd_fdstat_set_flags),
    implemented!(fd_prestat_dir_name),
    implemented!(clock_time_get),
    implemented!(clock_res_get),
    implemented!(random_get),
    implemented!(args_sizes_get),
    implemented!(args_get),
    implemented!(environ_sizes_get),
    implemented!(environ_get),
    implemented!(proc_exit),
    implemented!(sched_yield),
    implemented!(poll_oneoff),
];

/// A WASI import of a module, resolved by name once per function: each
/// connection then makes its host function with no name lookup.
pub(crate) struct Import {
    pub(crate) name: Arc<str>,
    host: Host,
}

/// What answers a WASI import.
enum Host {
    /// One of [`IMPLEMENTED`].
    Implemented(MakeHost),
    /// An `ENOSYS` stub of the import's type, counted per call.
    Unsupported(FunctionType),
}

impl Import {
    /// The WASI import `name` of type `ty`.
    pub(crate) fn resolve(name: &str, ty: &FunctionType) -> Self {
        let host = IMPLEMENTED
            .iter()
            .find(|(implemented, _)| *implemented == name)
            .map_or_else(
                || Host::Unsupported(ty.clone()),
                |(_, make)| Host::Implemented(*make),
            );
        Self {
            name: name.into(),
            host,
        }
    }

    /// This import's host function in `store`, on `env`.
    pub(crate) fn make(&self, store: &mut Store, env: &FunctionEnv<HostState>) -> HostFunction {
        match &self.host {
            Host::Implemented(make) => make(store, env),
            Host::Unsupported(ty) => unsupported(store, env, self.name.clone(), ty),
        }
    }
}
