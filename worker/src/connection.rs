//! One connection's requests, served on a thread (a spare runtime thread or
//! one of tokio's blocking pool): read a chunk, hand it to the guest, write
//! its output, read the next; or, for a WASI command, run `_start` once
//! with the socket as its stdin and stdout, on one thread. The socket is
//! borrowed: its owner (the accept side) keeps it between steps.
//!
//! The socket stays non-blocking. A write that would block waits in
//! `poll(2)` for at most the idle timeout, or less when the connection's
//! deadline is nearer. A Nur-ABI function whose next chunk has not come
//! within the thread's [`Patience`] gives its thread back: its instance is parked
//! ([`Parked`]) and the connection waits on the accept side
//! ([`Served::Waiting`]) until the client sends, then [`resume`] goes on,
//! on whichever pool thread is free. No socket option is set per read or
//! write. The next chunk is read only once the output of the previous one
//! is in the socket: a client that does not read stops being fed.
//!
//! With `--keep-alive`, a Nur-ABI function's connection carries HTTP/1.1
//! requests one after the other, each served here in an instance of its
//! own: [`nur_http::RequestEnd`] feeds the instance only its request's
//! bytes, [`nur_http::ResponseEnd`] follows its answer, and when the
//! function ends with a whole, length-delimited answer to a request that
//! allows another, the connection goes back to the accept side
//! ([`Served::KeptAlive`]) to wait, without a thread, for the next.

use std::cell::RefCell;
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nur_http::{RequestEnd, ResponseEnd};
use nur_module::abi::Kind;

use crate::admin::Status;
use crate::config::Limits;
use crate::guest::{Fault, FaultKind, Function, Guest, Parked};
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
    /// A kept-alive connection closed between requests: by the client, at
    /// the idle timeout, or because the worker drains.
    KeepAliveEnd,
}

/// How a request on a connection ended, or paused. The socket stays with
/// the caller, who served it by reference.
pub enum Served {
    Closed(Close),
    /// The function is done and its output is in the socket: the caller
    /// lingers on it ([`socket::linger`], or the accept side's own) so
    /// that the close is a FIN, then counts the close.
    Answered(Close),
    /// The answer was whole and the request allows another: the
    /// connection waits for its next request; `carry` holds the bytes of
    /// it already read.
    KeptAlive {
        carry: Vec<u8>,
    },
    /// The function waits for more bytes, which did not come within the
    /// thread's [`Patience`]: the connection and its live instance wait
    /// without a thread until the client sends, then [`resume`] goes on.
    Waiting {
        conversation: Box<Conversation>,
    },
}

/// How a guest's connection ends: with the close, and the bytes of the
/// next request read so far when the connection is kept for it.
type Done = (Close, Option<Vec<u8>>);

/// A Nur-ABI function's instance between two chunks of its request: the
/// guest, what is followed of the HTTP framing, and the deadline.
pub struct Conversation {
    guest: Parked,
    talk: Talk,
    deadline: Instant,
}

impl Conversation {
    /// When the request must be answered.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }
}

/// What [`converse`] keeps across chunks besides the guest.
struct Talk {
    /// The request's and the answer's ends, with `--keep-alive`.
    http: Option<(RequestEnd, ResponseEnd)>,
    /// Bytes read that are not fed yet: the start of the next request.
    carry: Vec<u8>,
}

/// How long the serving thread waits for the client's next bytes (the
/// next chunk of a request, or the next request of a kept-alive
/// connection) before it hands the connection back to wait without it.
#[derive(Debug, Clone, Copy)]
pub struct Patience(Duration);

impl Patience {
    /// A thread of the blocking pool: a client that sends at once (a load,
    /// the gateway's kept connections) costs no hand-off per chunk.
    pub const POOL: Self = Self(Duration::from_millis(2));
    /// A runtime thread, which must not wait: what is not read already is
    /// waited for on tokio.
    pub const NONE: Self = Self(Duration::ZERO);
}

/// Most bytes of a request head followed for keep-alive; a larger head
/// ends the connection after its answer.
const MAX_REQUEST_HEAD: usize = 64 * 1024;

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
            Self::KeepAliveEnd => "keep_alive_end",
        }
    }
}

thread_local! {
    /// The chunk buffer of this pool thread, reused by every connection it
    /// serves. Never zero-filled: reads go to its spare capacity, so only
    /// the pages that data reached are resident.
    static CHUNK: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Serves `stream` (non-blocking mode) until it closes, on this thread
/// (a connection that could be kept alive is closed too).
pub fn serve(stream: TcpStream, id: u64, ctx: &Context, deadline: Instant) -> Close {
    let patience = Patience::POOL;
    let mut served = serve_request(&stream, Vec::new(), id, ctx, deadline, patience);
    loop {
        match served {
            Served::Closed(close) => return close,
            Served::Answered(close) => {
                linger(&stream);
                return close;
            }
            Served::KeptAlive { .. } => return Close::KeepAliveEnd,
            Served::Waiting { conversation } => {
                if !socket::readable(&stream, ctx.limits.idle_timeout, conversation.deadline) {
                    let close = socket::timed_out(conversation.deadline);
                    return abandon(conversation, id, ctx, close);
                }
                served = resume(&stream, conversation, id, ctx, patience);
            }
        }
    }
}

/// Goes on with a [`Served::Waiting`] connection whose client sent more
/// (or closed).
pub fn resume(
    stream: &TcpStream,
    conversation: Box<Conversation>,
    id: u64,
    ctx: &Context,
    patience: Patience,
) -> Served {
    CHUNK.with_borrow_mut(|chunk| {
        ready_chunk(chunk, ctx);
        let Conversation {
            guest,
            talk,
            deadline,
        } = *conversation;
        let talk = (guest.resume(), talk, deadline);
        let served = talk_with(stream, talk, id, ctx, chunk, patience);
        keep_serving(stream, served, id, ctx, chunk, patience)
    })
}

/// Ends a [`Served::Waiting`] connection that the client left waiting.
pub fn abandon(conversation: Box<Conversation>, id: u64, ctx: &Context, close: Close) -> Close {
    end(conversation.guest.resume(), id, ctx);
    close
}

/// Serves the next request of `stream` (non-blocking mode), whose first
/// bytes, `carry`, may have been read already.
///
/// A kept-alive connection whose next request comes within `patience` is
/// served on, on this thread, without the hand-off back to the accept
/// side: a client that sends request after request (a load, the gateway's
/// kept connections) costs no futex wake and no re-registration per
/// request.
pub fn serve_request(
    stream: &TcpStream,
    carry: Vec<u8>,
    id: u64,
    ctx: &Context,
    deadline: Instant,
    patience: Patience,
) -> Served {
    CHUNK.with_borrow_mut(|chunk| {
        ready_chunk(chunk, ctx);
        let served = serve_with(stream, carry, id, ctx, deadline, chunk, patience);
        keep_serving(stream, served, id, ctx, chunk, patience)
    })
}

/// Empties the thread's chunk buffer, with room for `--max-chunk` bytes.
fn ready_chunk(chunk: &mut Vec<u8>, ctx: &Context) {
    chunk.clear();
    chunk.reserve_exact(ctx.limits.max_chunk as usize);
}

/// After a request: serves the next one on this thread while it comes
/// within `patience`.
fn keep_serving(
    stream: &TcpStream,
    mut served: Served,
    id: u64,
    ctx: &Context,
    chunk: &mut Vec<u8>,
    patience: Patience,
) -> Served {
    loop {
        let rest = match served {
            Served::KeptAlive { carry } => carry,
            other => return other,
        };
        if rest.is_empty() {
            // A request already here is served even when the drain has
            // started (its answer then closes the connection).
            match socket::next_bytes_within(stream, patience.0) {
                Some(true) => {}
                Some(false) => return Served::Closed(Close::KeepAliveEnd),
                None => return Served::KeptAlive { carry: rest },
            }
        }
        ctx.status.metrics.kept_alive_requests.inc();
        ready_chunk(chunk, ctx);
        let deadline = Instant::now() + ctx.limits.timeout;
        served = serve_with(stream, rest, id, ctx, deadline, chunk, patience);
    }
}

fn serve_with(
    stream: &TcpStream,
    carry: Vec<u8>,
    id: u64,
    ctx: &Context,
    deadline: Instant,
    chunk: &mut Vec<u8>,
    patience: Patience,
) -> Served {
    let guest = match Guest::instantiate(&ctx.function, id, deadline) {
        Ok(guest) => guest,
        Err(e) => return Served::Closed(fault(ctx, id, e)),
    };
    match ctx.function.kind {
        Kind::Stream => {
            let http = ctx
                .limits
                .keep_alive
                .then(|| (RequestEnd::new(MAX_REQUEST_HEAD), ResponseEnd::default()));
            let talk = (guest, Talk { http, carry }, deadline);
            talk_with(stream, talk, id, ctx, chunk, patience)
        }
        Kind::Command => run_command(stream, guest, id, ctx, chunk),
    }
}

/// Runs a WASI command's `_start` once, with the socket as its stdin and
/// stdout. The guest's stdio holds a descriptor of its own (a `dup`, once
/// per command connection), as wasmer's environment must own what it holds.
fn run_command(
    stream: &TcpStream,
    mut guest: Guest,
    id: u64,
    ctx: &Context,
    chunk: &mut Vec<u8>,
) -> Served {
    let metrics = &ctx.status.metrics;
    let stdio = match stream.try_clone() {
        Ok(stdio) => stdio,
        Err(e) => {
            tracing::warn!(
                connection = id,
                "no descriptor for the command's stdio: {e}"
            );
            end(guest, id, ctx);
            return Served::Closed(Close::Internal);
        }
    };
    let buffer = std::mem::take(chunk);
    let (buffer, ran) = guest.run(stdio, ctx.limits.idle_timeout, buffer);
    *chunk = buffer;
    let (bytes_in, bytes_out) = guest.command_bytes();
    metrics.bytes_in.inc_by(bytes_in);
    metrics.bytes_out.inc_by(bytes_out);
    let done = match ran {
        Ok(close @ (Close::Eof | Close::Ended)) => Ok((close, None)),
        Ok(close) => Err(close),
        Err(e) => Err(fault(ctx, id, e)),
    };
    end(guest, id, ctx);
    close_after(done)
}

/// Feeds a Nur-ABI guest its connection's chunks (see [`converse`]) until
/// it is done, or waits for bytes that have not come.
fn talk_with(
    stream: &TcpStream,
    (mut guest, mut talk, deadline): (Guest, Talk, Instant),
    id: u64,
    ctx: &Context,
    chunk: &mut Vec<u8>,
    patience: Patience,
) -> Served {
    let turn = Turn {
        id,
        ctx,
        deadline,
        patience,
    };
    let done = match converse(stream, &mut guest, &mut talk, &turn, chunk) {
        Ok(None) => {
            return Served::Waiting {
                conversation: Box::new(Conversation {
                    guest: guest.park(),
                    talk,
                    deadline,
                }),
            };
        }
        Ok(Some(done)) => Ok(done),
        Err(close) => Err(close),
    };
    end(guest, id, ctx);
    close_after(done)
}

/// Records what a finished guest leaves in the metrics and the log, and
/// drops it: its memory goes back to the pool.
fn end(guest: Guest, id: u64, ctx: &Context) {
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
}

/// The connection after its guest is done: kept for the next request,
/// to close after a linger, or closed.
fn close_after(done: Result<Done, Close>) -> Served {
    match done {
        Ok((_, Some(carry))) => Served::KeptAlive { carry },
        Ok((close, None)) => Served::Answered(close),
        Err(close) => Served::Closed(close),
    }
}

/// What one call of [`converse`] works within.
struct Turn<'a> {
    id: u64,
    ctx: &'a Context,
    deadline: Instant,
    patience: Patience,
}

/// Feeds the guest chunk after chunk (`carry` first) and writes its
/// output: `Ok(Some)` when it ended or answered EOF (the connection
/// lingers, or with the bytes of the next request read so far, is kept
/// alive), `Ok(None)` when no bytes came within the turn's patience (the
/// guest waits for them), `Err` on any other close.
fn converse(
    stream: &TcpStream,
    guest: &mut Guest,
    talk: &mut Talk,
    turn: &Turn,
    chunk: &mut Vec<u8>,
) -> Result<Option<Done>, Close> {
    let &Turn {
        id,
        ctx,
        deadline,
        patience,
    } = turn;
    let metrics = &ctx.status.metrics;
    let Talk { http, carry } = talk;
    loop {
        let read = if carry.is_empty() {
            let Some(read) = socket::read_within(stream, chunk, patience.0, deadline)? else {
                return Ok(None);
            };
            metrics.bytes_in.inc_by(read as u64);
            read
        } else {
            chunk.clear();
            chunk.append(carry);
            chunk.len()
        };
        let mut fed = read;
        if let Some((request, _)) = http
            && read > 0
        {
            if request.complete() {
                // More bytes before the function ended its answer: it gets
                // them, as without keep-alive, and the connection closes.
                *http = None;
            } else {
                fed = request.take(&chunk[..read]);
                carry.extend_from_slice(&chunk[fed..read]);
            }
        }
        let called = if read == 0 {
            guest.finish()
        } else {
            guest.feed(&chunk[..fed])
        };
        called.map_err(|e| fault(ctx, id, e))?;
        socket::write(stream, guest.output(), ctx.limits.idle_timeout, deadline)?;
        metrics.bytes_out.inc_by(guest.output().len() as u64);
        if let Some((_, answer)) = http {
            answer.see(guest.output());
        }
        guest.clear_output();
        if read == 0 {
            return Ok(Some((Close::Eof, None)));
        }
        if guest.ended() {
            let kept = http.as_ref().is_some_and(|(request, answer)| {
                request.complete_and_kept() && answer.complete_and_kept()
            }) && !ctx.status.is_draining();
            return Ok(Some((Close::Ended, kept.then(|| std::mem::take(carry)))));
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
