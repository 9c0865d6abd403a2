//! The accept loop and the drain.
//!
//! The design overview is in `docs/ARCHITECTURE.md`; this is the detail.
//!
//! Two limits: at most `--max-open-connections` open connections (more wait
//! in the listen backlog), and at most `--max-connections` of them served at
//! once, each with a live instance, run on a thread of tokio's blocking
//! pool. An accepted connection first waits on tokio, without a thread or an
//! instance, for its first bytes (or EOF), then for a serving slot, then is
//! handed to [`connection::serve_request`]. So tens of thousands of mostly
//! idle clients cost a tokio task and a socket each, and never more threads
//! or memory mappings than the process can have. A function waiting for
//! more of its request gives its thread back too: the connection waits here
//! with its instance and slot ([`Served::Waiting`]) and goes on on any pool
//! thread when the bytes come. A connection kept alive after its answer
//! (`--keep-alive`) comes back here and waits the same way for its next
//! request, which gets a deadline of its own.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nur_module::abi::Kind;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::admin::Status;
use crate::connection::{self, Close, Context, Conversation, Patience, Served};
use crate::socket;
use crate::spare::SpareThreads;

/// Accepts connections until `shutdown` completes, at most `max_open` open at
/// once; returns the permits that open connections hold, for [`drain`].
pub async fn run(
    listener: TcpListener,
    ctx: Arc<Context>,
    max_open: u32,
    shutdown: impl Future<Output = ()>,
) -> Arc<Semaphore> {
    let open = Arc::new(Semaphore::new(max_open as usize));
    let serving = Arc::new(Semaphore::new(ctx.limits.max_connections as usize));
    let workers = tokio::runtime::Handle::current().metrics().num_workers();
    let spare = Arc::new(SpareThreads::new(
        workers,
        tokio::runtime::Handle::current(),
    ));
    tokio::pin!(shutdown);
    let mut id = 0u64;
    loop {
        let permit = tokio::select! {
            biased;
            () = &mut shutdown => break,
            permit = open.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
        };
        let socket = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((socket, _)) => socket,
                Err(e) => {
                    // Out of file descriptors or similar: back off, keep serving.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        id += 1;
        let shared = (ctx.clone(), serving.clone(), spare.clone());
        tokio::spawn(handle(socket, id, shared, permit));
    }
    open
}

/// Waits up to `grace` for every open connection; false if some remain.
pub async fn drain(open: &Semaphore, max_open: u32, grace: Duration) -> bool {
    tokio::time::timeout(grace, open.acquire_many(max_open))
        .await
        .is_ok()
}

/// What every connection's task shares.
type Shared = (Arc<Context>, Arc<Semaphore>, Arc<SpareThreads>);

async fn handle(socket: TcpStream, id: u64, shared: Shared, open: OwnedSemaphorePermit) {
    let (ctx, serving, spare) = shared;
    let tracked = Tracked::new(&ctx, open);
    let deadline = tracked.started + ctx.limits.timeout;
    let slot = match wait_for_turn(&socket, &ctx, &serving, deadline).await {
        Ok(slot) => slot,
        Err(close) => return tracked.close(close),
    };
    let accepted = Accepted {
        id,
        ctx,
        serving,
        spare,
        tracked,
    };
    serve_next(socket, accepted, Next::Request(Vec::new()), slot, deadline);
}

/// What the pool thread does next with a connection.
enum Next {
    /// Its next request, whose first bytes (these) may be read already.
    Request(Vec<u8>),
    /// Goes on with the request whose instance waited for more bytes.
    Resume(Box<Conversation>),
}

/// What the accept side holds of a connection between its requests, beside
/// its socket: its id, what every connection shares and its entry in the
/// metrics.
struct Accepted {
    id: u64,
    ctx: Arc<Context>,
    serving: Arc<Semaphore>,
    spare: Arc<SpareThreads>,
    tracked: Tracked,
}

/// Serves the connection's next request, or goes on with the current one:
/// here, on this runtime thread, when a runtime thread is spare
/// ([`Lent`]), else on a thread of the blocking pool. Either way it is
/// recorded and released where it ran: nothing waits for it, so its end
/// wakes no task. A connection kept alive goes on in [`next_request`], one
/// whose instance waits for more bytes in [`next_chunk`].
fn serve_next(
    socket: TcpStream,
    accepted: Accepted,
    next: Next,
    slot: OwnedSemaphorePermit,
    deadline: Instant,
) {
    let Some(stream) = socket.into_std().ok() else {
        return accepted.tracked.close(Close::ClientGone);
    };
    let spare = accepted.spare.clone();
    let lent = match accepted.ctx.function.kind {
        Kind::Stream => spare.lend(),
        // A WASI command blocks in `_start` for its whole connection.
        Kind::Command => None,
    };
    if let Some(lent) = lent {
        let served = serve_here(stream, &accepted, next, deadline, Patience::NONE);
        drop(lent);
        return go_on(served, accepted, slot, Linger::OnTokio);
    }
    let runtime = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let served = serve_here(stream, &accepted, next, deadline, Patience::POOL);
        let _entered = runtime.enter();
        go_on(served, accepted, slot, Linger::Here);
    });
}

/// Runs the connection's next step on this thread.
fn serve_here(
    stream: std::net::TcpStream,
    accepted: &Accepted,
    next: Next,
    deadline: Instant,
    patience: Patience,
) -> Served {
    let (id, ctx) = (accepted.id, &accepted.ctx);
    std::panic::catch_unwind(AssertUnwindSafe(|| match next {
        Next::Request(carry) => {
            connection::serve_request(stream, carry, id, ctx, deadline, patience)
        }
        Next::Resume(conversation) => connection::resume(stream, conversation, id, ctx, patience),
    }))
    .unwrap_or_else(|_| {
        tracing::error!(connection = id, "connection handler panicked");
        Served::Closed(Close::Internal)
    })
}

/// Where an answered connection waits for the client's FIN.
enum Linger {
    /// On this pool thread.
    Here,
    /// On tokio, so that a runtime thread is not held.
    OnTokio,
}

/// After a step: closes the connection and records it, or hands it back to
/// tokio to wait for the next request or the next chunk.
fn go_on(served: Served, accepted: Accepted, slot: OwnedSemaphorePermit, linger: Linger) {
    match served {
        Served::Closed(close) => {
            drop(slot);
            accepted.tracked.close(close);
        }
        Served::Answered { stream, close } => {
            drop(slot);
            match linger {
                Linger::Here => {
                    socket::linger(stream);
                    accepted.tracked.close(close);
                }
                Linger::OnTokio => {
                    tokio::spawn(linger_on_tokio(stream, accepted.tracked, close));
                }
            }
        }
        Served::KeptAlive { stream, carry } => {
            drop(slot);
            match TcpStream::from_std(stream) {
                Ok(socket) => {
                    tokio::spawn(next_request(socket, accepted, carry));
                }
                Err(_) => accepted.tracked.close(Close::ClientGone),
            }
        }
        Served::Waiting {
            stream,
            conversation,
        } => {
            // The live instance keeps its serving slot.
            match TcpStream::from_std(stream) {
                Ok(socket) => {
                    tokio::spawn(next_chunk(socket, accepted, conversation, slot));
                }
                Err(_) => {
                    let (id, ctx) = (accepted.id, &accepted.ctx);
                    let close = connection::abandon(conversation, id, ctx, Close::ClientGone);
                    drop(slot);
                    accepted.tracked.close(close);
                }
            }
        }
    }
}

/// [`socket::linger`] without a thread: sends FIN, then reads and drops
/// what the client still sends until its own FIN, at most
/// [`socket::LINGER`]; then the close is recorded.
async fn linger_on_tokio(stream: std::net::TcpStream, tracked: Tracked, close: Close) {
    if stream.shutdown(std::net::Shutdown::Write).is_ok()
        && let Ok(mut socket) = TcpStream::from_std(stream)
    {
        let mut sink = [0; 4096];
        let _ = tokio::time::timeout(socket::LINGER, async {
            while matches!(socket.read(&mut sink).await, Ok(n) if n > 0) {}
        })
        .await;
    }
    tracked.close(close);
}

/// Waits, without a thread, for the next request of a kept-alive
/// connection (its first bytes, unless `carry` has them), then for a
/// serving slot; closes it at the idle timeout, at the client's close, or
/// when the worker drains.
fn next_request(
    socket: TcpStream,
    accepted: Accepted,
    carry: Vec<u8>,
) -> Pin<Box<dyn Future<Output = ()> + Send>> {
    Box::pin(async move {
        let ctx = accepted.ctx.clone();
        if carry.is_empty() {
            let mut byte = [0; 1];
            let arrived = tokio::select! {
                biased;
                () = ctx.status.drained() => false,
                peeked = tokio::time::timeout(ctx.limits.idle_timeout, socket.peek(&mut byte)) => {
                    matches!(peeked, Ok(Ok(n)) if n > 0)
                }
            };
            if !arrived {
                return accepted.tracked.close(Close::KeepAliveEnd);
            }
        }
        ctx.status.metrics.kept_alive_requests.inc();
        let deadline = Instant::now() + ctx.limits.timeout;
        let slot = match wait_for_slot(&accepted.serving, deadline).await {
            Ok(slot) => slot,
            Err(close) => return accepted.tracked.close(close),
        };
        serve_next(socket, accepted, Next::Request(carry), slot, deadline);
    })
}

/// Waits, without a thread, for the bytes (or the EOF) that a function in
/// the middle of a request waits for, within the idle timeout and the
/// request's deadline, then goes on with it on the pool; on timeout the
/// instance is dropped and the connection closed.
fn next_chunk(
    socket: TcpStream,
    accepted: Accepted,
    conversation: Box<Conversation>,
    slot: OwnedSemaphorePermit,
) -> Pin<Box<dyn Future<Output = ()> + Send>> {
    Box::pin(async move {
        let ctx = accepted.ctx.clone();
        let deadline = conversation.deadline();
        let until = deadline.min(Instant::now() + ctx.limits.idle_timeout);
        // `peek`, not `readable`: tokio reports a socket it was just given
        // readable at once.
        let arrived = tokio::time::timeout_at(until.into(), socket.peek(&mut [0; 1])).await;
        if arrived.is_err() {
            let close =
                connection::abandon(conversation, accepted.id, &ctx, socket::timed_out(deadline));
            drop(slot);
            return accepted.tracked.close(close);
        }
        serve_next(socket, accepted, Next::Resume(conversation), slot, deadline);
    })
}

/// One open connection in the metrics, from accept to close: counted in
/// `nur_connections_total` and `nur_connections_active` when made; its
/// close reason and duration recorded, and no longer active, when closed.
/// Holds the connection's open permit, released only after that.
struct Tracked {
    status: Arc<Status>,
    started: Instant,
    _open: OwnedSemaphorePermit,
}

impl Tracked {
    fn new(ctx: &Context, open: OwnedSemaphorePermit) -> Self {
        let metrics = &ctx.status.metrics;
        metrics.connections.inc();
        metrics.active.inc();
        Self {
            status: ctx.status.clone(),
            started: Instant::now(),
            _open: open,
        }
    }

    /// Records the close and releases the connection's open permit.
    fn close(self, close: Close) {
        let metrics = &self.status.metrics;
        metrics.close(close.reason());
        metrics
            .duration
            .observe(self.started.elapsed().as_secs_f64());
        metrics.active.dec();
    }
}

/// Waits, without a thread, for the client's first bytes (or EOF) within the
/// idle timeout, then for a serving slot within the deadline.
async fn wait_for_turn(
    socket: &TcpStream,
    ctx: &Context,
    serving: &Arc<Semaphore>,
    deadline: Instant,
) -> Result<OwnedSemaphorePermit, Close> {
    let _ = socket.set_nodelay(true);
    let first = ctx.limits.idle_timeout.min(ctx.limits.timeout);
    // `peek`, not `readable`: tokio reports a fresh socket readable at once,
    // which would hand a silent client a thread and an instance.
    match tokio::time::timeout(first, socket.peek(&mut [0; 1])).await {
        Err(_) => return Err(Close::Idle),
        Ok(Err(_)) => return Err(Close::ClientGone),
        Ok(Ok(_)) => {}
    }
    wait_for_slot(serving, deadline).await
}

/// Waits for a serving slot within the deadline.
async fn wait_for_slot(
    serving: &Arc<Semaphore>,
    deadline: Instant,
) -> Result<OwnedSemaphorePermit, Close> {
    if let Ok(slot) = serving.clone().try_acquire_owned() {
        return Ok(slot);
    }
    match tokio::time::timeout_at(deadline.into(), serving.clone().acquire_owned()).await {
        Ok(slot) => Ok(slot.expect("the semaphore is never closed")),
        Err(_) => Err(Close::Timeout),
    }
}
