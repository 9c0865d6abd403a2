//! One connection, served start to end on one thread of tokio's blocking
//! pool, because the guest's wasmer `Store` may not change threads: read a
//! chunk, hand it to the guest, write its output, read the next.
//!
//! The socket stays non-blocking; when it is not ready the thread waits in
//! `poll(2)` for at most the idle timeout, or less when the connection's
//! deadline is nearer. No socket option is set per read or write. The next
//! chunk is read only once the output of the previous one is in the socket:
//! a client that does not read stops being fed.

use std::cell::RefCell;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::admin::Status;
use crate::config::Limits;
use crate::guest::{Fault, FaultKind, Function, Guest};
use crate::sys;

/// Longest the worker keeps reading and discarding a client's leftover input
/// after closing its own side, so that the close is a FIN and not a reset.
const LINGER: Duration = Duration::from_secs(1);

/// What every connection shares.
pub struct Context {
    pub function: Arc<Function>,
    pub limits: Limits,
    pub status: Arc<Status>,
}

/// Why a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Close {
    /// The function called `nur_end` (or WASI `proc_exit`).
    Ended,
    /// The client closed its side and the function answered.
    Eof,
    /// The client reset or broke the connection.
    ClientGone,
    /// The client sent nothing, or read nothing, for the idle timeout.
    Idle,
    /// The connection reached its deadline.
    Timeout,
    /// The guest faulted.
    Fault(FaultKind),
    /// A bug in the worker (a panic); the worker goes on.
    Internal,
}

impl Close {
    /// The label used in metrics.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Ended => "ended",
            Self::Eof => "eof",
            Self::ClientGone => "client_gone",
            Self::Idle => "idle",
            Self::Timeout => "timeout",
            Self::Fault(_) => "fault",
            Self::Internal => "internal",
        }
    }
}

thread_local! {
    /// The chunk buffer of this pool thread, reused by every connection it
    /// serves. Never zero-filled: reads go to its spare capacity, so only
    /// the pages that data reached are resident.
    static CHUNK: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Serves `stream` (non-blocking mode) until it closes.
pub fn serve(stream: TcpStream, id: u64, ctx: &Context, deadline: Instant) -> Close {
    CHUNK.with_borrow_mut(|chunk| {
        chunk.clear();
        chunk.reserve_exact(ctx.limits.max_chunk as usize);
        serve_with(stream, id, ctx, deadline, chunk)
    })
}

fn serve_with(
    mut stream: TcpStream,
    id: u64,
    ctx: &Context,
    deadline: Instant,
    chunk: &mut Vec<u8>,
) -> Close {
    let mut guest = match Guest::instantiate(&ctx.function, id, deadline) {
        Ok(guest) => guest,
        Err(e) => return fault(ctx, id, e),
    };
    let done = converse(&mut stream, &mut guest, id, ctx, deadline, chunk);
    let metrics = &ctx.status.metrics;
    metrics.log_lines_dropped.inc_by(guest.log_lines_dropped());
    if let Some(code) = guest.exit_code() {
        if code != 0 {
            tracing::warn!(
                function = %ctx.function.name,
                connection = id,
                code,
                "the function called proc_exit({code}), connection closed"
            );
        }
        metrics.exit(code);
    }
    for (function, calls) in guest.unsupported_calls() {
        metrics.wasi_unsupported(function, *calls);
    }
    // The memory goes back to the pool before the linger.
    drop(guest);
    match done {
        Ok(close) => {
            linger(stream);
            close
        }
        Err(close) => close,
    }
}

/// Feeds the guest chunk after chunk and writes its output: `Ok` when it
/// ended or answered EOF (the connection lingers), `Err` on any other close.
fn converse(
    stream: &mut TcpStream,
    guest: &mut Guest,
    id: u64,
    ctx: &Context,
    deadline: Instant,
    chunk: &mut Vec<u8>,
) -> Result<Close, Close> {
    let metrics = &ctx.status.metrics;
    loop {
        let read = read(stream, chunk, ctx.limits.idle_timeout, deadline)?;
        metrics.bytes_in.inc_by(read as u64);
        let called = if read == 0 {
            guest.finish()
        } else {
            guest.feed(&chunk[..])
        };
        called.map_err(|e| fault(ctx, id, e))?;
        write(stream, guest.output(), ctx.limits.idle_timeout, deadline)?;
        metrics.bytes_out.inc_by(guest.output().len() as u64);
        guest.clear_output();
        if guest.ended() || read == 0 {
            return Ok(if read == 0 { Close::Eof } else { Close::Ended });
        }
    }
}

/// Logs and counts a guest fault; the close it makes.
fn fault(ctx: &Context, id: u64, fault: Fault) -> Close {
    tracing::warn!(
        function = %ctx.function.name,
        connection = id,
        kind = fault.kind.as_str(),
        "guest fault, connection closed: {}",
        fault.message
    );
    ctx.status.metrics.trap(fault.kind);
    if fault.kind == FaultKind::Timeout {
        Close::Timeout
    } else {
        Close::Fault(fault.kind)
    }
}

fn timed_out(deadline: Instant) -> Close {
    if Instant::now() >= deadline {
        Close::Timeout
    } else {
        Close::Idle
    }
}

/// Waits until `stream` is ready for `events` (POLLIN or POLLOUT), at most
/// `idle` and never past `until`; false when that time has passed.
fn wait(stream: &TcpStream, events: libc::c_short, idle: Duration, until: Instant) -> bool {
    let started = Instant::now();
    let limit = until.saturating_duration_since(started).min(idle);
    let end = started + limit;
    loop {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        // Rounded up, so that a wait never ends early and spins.
        let ms = left.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as i32;
        match sys::poll(stream.as_fd(), events, ms) {
            // Ready, or an error/hang-up that the next read or write reports.
            Ok(true) => return true,
            Ok(false) => continue,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return true,
        }
    }
}

/// Reads at most `buf.capacity()` bytes into `buf` (replacing its contents).
fn read(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    idle: Duration,
    deadline: Instant,
) -> Result<usize, Close> {
    buf.clear();
    loop {
        match sys::read_spare(stream.as_fd(), buf) {
            Ok(read) => return Ok(read),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                if !wait(stream, libc::POLLIN, idle, deadline) {
                    return Err(timed_out(deadline));
                }
            }
            Err(_) => return Err(Close::ClientGone),
        }
    }
}

fn write(
    stream: &mut TcpStream,
    mut bytes: &[u8],
    idle: Duration,
    deadline: Instant,
) -> Result<(), Close> {
    while !bytes.is_empty() {
        match stream.write(bytes) {
            Ok(0) => return Err(Close::ClientGone),
            Ok(written) => bytes = &bytes[written..],
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                if !wait(stream, libc::POLLOUT, idle, deadline) {
                    return Err(timed_out(deadline));
                }
            }
            Err(_) => return Err(Close::ClientGone),
        }
    }
    Ok(())
}

/// Sends FIN, then reads and drops what the client still sends (for at most
/// [`LINGER`]) so that closing does not reset the connection and destroy
/// output the client has not read yet.
fn linger(mut stream: TcpStream) {
    if stream.shutdown(Shutdown::Write).is_err() {
        return;
    }
    let until = Instant::now() + LINGER;
    let mut sink = [0; 4096];
    loop {
        match stream.read(&mut sink) {
            Ok(0) => return,
            Ok(_) => continue,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                if !wait(&stream, libc::POLLIN, LINGER, until) {
                    return;
                }
            }
            Err(_) => return,
        }
    }
}
