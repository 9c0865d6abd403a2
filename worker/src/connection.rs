//! One connection, served start to end on one thread of tokio's blocking
//! pool, because the guest's wasmer `Store` may not change threads: read a
//! chunk, hand it to the guest, write its output, read the next.
//!
//! Reads and writes block with a timeout (the idle timeout, or less when the
//! connection's deadline is nearer), so the next chunk is read only once the
//! output of the previous one is in the socket: a client that does not read
//! stops being fed.

use std::cell::RefCell;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::admin::Status;
use crate::config::Limits;
use crate::guest::{Fault, FaultKind, Function, Guest};

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
    /// The function called `nur_end`.
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
    /// The chunk buffer of this pool thread, reused by every connection it serves.
    static CHUNK: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Serves `stream` (blocking mode) until it closes.
pub fn serve(stream: TcpStream, id: u64, ctx: &Context, deadline: Instant) -> Close {
    CHUNK.with_borrow_mut(|chunk| {
        chunk.resize(ctx.limits.max_chunk as usize, 0);
        serve_with(stream, id, ctx, deadline, chunk)
    })
}

fn serve_with(
    mut stream: TcpStream,
    id: u64,
    ctx: &Context,
    deadline: Instant,
    chunk: &mut [u8],
) -> Close {
    let metrics = &ctx.status.metrics;
    let fault = |fault: Fault| {
        tracing::warn!(
            function = %ctx.function.name,
            connection = id,
            kind = fault.kind.as_str(),
            "guest fault, connection closed: {}",
            fault.message
        );
        metrics.trap(fault.kind);
        if fault.kind == FaultKind::Timeout {
            Close::Timeout
        } else {
            Close::Fault(fault.kind)
        }
    };
    let mut guest = match Guest::instantiate(&ctx.function, id, deadline) {
        Ok(guest) => guest,
        Err(e) => return fault(e),
    };
    loop {
        let read = match read(&mut stream, chunk, ctx.limits.idle_timeout, deadline) {
            Ok(read) => read,
            Err(close) => return close,
        };
        metrics.bytes_in.inc_by(read as u64);
        let called = if read == 0 {
            guest.finish()
        } else {
            guest.feed(&chunk[..read])
        };
        if let Err(e) = called {
            return fault(e);
        }
        if let Err(close) = write(
            &mut stream,
            guest.output(),
            ctx.limits.idle_timeout,
            deadline,
        ) {
            return close;
        }
        metrics.bytes_out.inc_by(guest.output().len() as u64);
        guest.clear_output();
        if guest.ended() || read == 0 {
            linger(stream);
            return if read == 0 { Close::Eof } else { Close::Ended };
        }
    }
}

fn timeout(idle: Duration, deadline: Instant) -> Result<Duration, Close> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(Close::Timeout);
    }
    Ok(idle.min(left))
}

fn timed_out(deadline: Instant) -> Close {
    if Instant::now() >= deadline {
        Close::Timeout
    } else {
        Close::Idle
    }
}

fn read(
    stream: &mut TcpStream,
    buf: &mut [u8],
    idle: Duration,
    deadline: Instant,
) -> Result<usize, Close> {
    loop {
        stream
            .set_read_timeout(Some(timeout(idle, deadline)?))
            .map_err(|_| Close::ClientGone)?;
        match stream.read(buf) {
            Ok(read) => return Ok(read),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Err(timed_out(deadline));
            }
            Err(_) => return Err(Close::ClientGone),
        }
    }
}

fn write(
    stream: &mut TcpStream,
    bytes: &[u8],
    idle: Duration,
    deadline: Instant,
) -> Result<(), Close> {
    if bytes.is_empty() {
        return Ok(());
    }
    stream
        .set_write_timeout(Some(timeout(idle, deadline)?))
        .map_err(|_| Close::ClientGone)?;
    match stream.write_all(bytes) {
        Ok(()) => Ok(()),
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
            Err(timed_out(deadline))
        }
        Err(_) => Err(Close::ClientGone),
    }
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
    while let Some(left) = until.checked_duration_since(Instant::now()) {
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return;
        }
        match stream.read(&mut sink) {
            Ok(0) => return,
            Ok(_) => continue,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return,
        }
    }
}
