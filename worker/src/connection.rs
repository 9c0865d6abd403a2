//! One connection, served start to end on one thread of tokio's blocking
//! pool, because the guest's wasmer `Store` may not change threads: read a
//! chunk, hand it to the guest, write its output, read the next; or, for a
//! WASI command, run `_start` once with the socket as its stdin and stdout.
//!
//! The socket stays non-blocking; when it is not ready the thread waits in
//! `poll(2)` for at most the idle timeout, or less when the connection's
//! deadline is nearer. No socket option is set per read or write. The next
//! chunk is read only once the output of the previous one is in the socket:
//! a client that does not read stops being fed.

use std::cell::RefCell;
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Instant;

use nur_module::abi::Kind;

use crate::admin::Status;
use crate::config::Limits;
use crate::guest::{Fault, FaultKind, Function, Guest};
use crate::socket::{self, linger};

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
    let metrics = &ctx.status.metrics;
    let done = match ctx.function.kind {
        Kind::Stream => converse(&mut stream, &mut guest, id, ctx, deadline, chunk),
        Kind::Command => {
            let buffer = std::mem::take(chunk);
            let (returned, buffer, ran) = guest.run(stream, ctx.limits.idle_timeout, buffer);
            (stream, *chunk) = (returned, buffer);
            let (bytes_in, bytes_out) = guest.command_bytes();
            metrics.bytes_in.inc_by(bytes_in);
            metrics.bytes_out.inc_by(bytes_out);
            match ran {
                Ok(close @ (Close::Eof | Close::Ended)) => Ok(close),
                Ok(close) => Err(close),
                Err(e) => Err(fault(ctx, id, e)),
            }
        }
    };
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
        let read = socket::read(stream, chunk, ctx.limits.idle_timeout, deadline)?;
        metrics.bytes_in.inc_by(read as u64);
        let called = if read == 0 {
            guest.finish()
        } else {
            guest.feed(&chunk[..])
        };
        called.map_err(|e| fault(ctx, id, e))?;
        socket::write(stream, guest.output(), ctx.limits.idle_timeout, deadline)?;
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
