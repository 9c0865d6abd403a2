//! The accept loop and the drain.
//!
//! The design overview is in `docs/ARCHITECTURE.md`; this is the detail.
//!
//! Two limits: at most `--max-open-connections` open connections (more wait
//! in the listen backlog), and at most `--max-connections` of them served at
//! once, each with a live instance, run on a spare runtime thread or a
//! thread of tokio's blocking pool. An accepted connection first waits on
//! tokio, without a thread or an instance, for its first bytes (or EOF),
//! then for a serving slot, then is handed to
//! [`connection::serve_request`]. So tens of thousands of mostly idle
//! clients cost a tokio task and a socket each, and never more threads or
//! memory mappings than the process can have. A function waiting for more
//! of its request gives its thread back too: the connection waits here
//! with its instance and slot ([`Served::Waiting`]) and goes on on any
//! thread when the bytes come. A connection kept alive after its answer
//! (`--keep-alive`) comes back here and waits the same way for its next
//! request, which gets a deadline of its own. The socket stays registered
//! with tokio from accept to close ([`StdView`]).

use std::future::Future;
use std::net::Shutdown;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nur_module::abi::Kind;
use tokio::io::Interest;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::admin::Status;
use crate::connection::{self, Close, Context, Conversation, Patience, Served};
use crate::socket;
use crate::spare::SpareThreads;
use crate::sys::StdView;

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
    let step = Step {
        next: Next::Request(Vec::new()),
        slot,
        deadline,
    };
    drive(socket, accepted, step).await;
}

/// What the serving thread does next with a connection.
enum Next {
    /// Its next request, whose first bytes (these) may be read already.
    Request(Vec<u8>),
    /// Goes on with the request whose instance waited for more bytes.
    Resume(Box<Conversation>),
}

/// A connection's next step on a thread: what it does, the serving slot it
/// holds for it, and the deadline of its request.
struct Step {
    next: Next,
    slot: OwnedSemaphorePermit,
    deadline: Instant,
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

/// Runs the connection's steps on this runtime thread while one is spare
/// ([`Lent`](crate::spare::Lent)), waiting on tokio in between (for the
/// next request, the next chunk, or the client's FIN after the answer),
/// all in this task; when no runtime thread is spare the step goes to a
/// thread of the blocking pool ([`on_pool`]). The socket stays registered
/// with tokio throughout: a serving thread reads and writes it through a
/// [`StdView`].
async fn drive(socket: TcpStream, accepted: Accepted, mut step: Step) {
    let spare = accepted.spare.clone();
    loop {
        let lent = match accepted.ctx.function.kind {
            Kind::Stream => spare.lend(),
            // A WASI command blocks in `_start` for its whole connection.
            Kind::Command => None,
        };
        let Some(lent) = lent else {
            return on_pool(socket, accepted, step);
        };
        let served = serve_here(&socket, &accepted, step.next, step.deadline, Patience::NONE);
        drop(lent);
        match after(&socket, &accepted, served, step.slot).await {
            Ok(next) => step = next,
            Err(close) => return finish(socket, accepted, close),
        }
    }
}

/// Runs the connection's step on a thread of the blocking pool. The thread
/// records an end itself (after its own linger for an answer): nothing
/// waits for it, so its end wakes no task; a connection that goes on goes
/// back to tokio in a task of its own.
fn on_pool(socket: TcpStream, accepted: Accepted, step: Step) {
    let runtime = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let served = serve_here(&socket, &accepted, step.next, step.deadline, Patience::POOL);
        let close = match served {
            Served::Closed(close) => {
                drop(step.slot);
                close
            }
            Served::Answered(close) => {
                drop(step.slot);
                socket::linger(&StdView::of(&socket));
                close
            }
            served => {
                runtime.spawn(async move {
                    match after(&socket, &accepted, served, step.slot).await {
                        Ok(next) => drive(socket, accepted, next).await,
                        Err(close) => finish(socket, accepted, close),
                    }
                });
                return;
            }
        };
        finish(socket, accepted, close);
    });
}

/// Closes the connection, then records how it ended.
fn finish(socket: TcpStream, accepted: Accepted, close: Close) {
    drop(socket);
    accepted.tracked.close(close);
}

/// Runs the connection's next step on this thread.
fn serve_here(
    socket: &TcpStream,
    accepted: &Accepted,
    next: Next,
    deadline: Instant,
    patience: Patience,
) -> Served {
    let (id, ctx) = (accepted.id, &accepted.ctx);
    let stream = StdView::of(socket);
    std::panic::catch_unwind(AssertUnwindSafe(|| match next {
        Next::Request(carry) => {
            connection::serve_request(&stream, carry, id, ctx, deadline, patience)
        }
        Next::Resume(conversation) => connection::resume(&stream, conversation, id, ctx, patience),
    }))
    .unwrap_or_else(|_| {
        tracing::error!(connection = id, "connection handler panicked");
        Served::Closed(Close::Internal)
    })
}

/// After a step, on tokio: the connection's next step, or how it closed
/// (an answered one after the linger for the client's FIN).
async fn after(
    socket: &TcpStream,
    accepted: &Accepted,
    served: Served,
    slot: OwnedSemaphorePermit,
) -> Result<Step, Close> {
    match served {
        Served::Closed(close) => Err(close),
        Served::Answered(close) => {
            drop(slot);
            linger_on_tokio(socket).await;
            Err(close)
        }
        Served::KeptAlive { carry } => {
            drop(slot);
            next_request(socket, accepted, carry).await
        }
        // The live instance keeps its serving slot.
        Served::Waiting { conversation } => next_chunk(socket, accepted, conversation, slot).await,
    }
}

/// [`socket::linger`] without a thread: sends FIN, then reads and drops
/// what the client still sends until its own FIN, at most
/// [`socket::LINGER`]. The reads go through tokio's `try_io`, so that a
/// `WouldBlock` clears the readiness tokio cached.
async fn linger_on_tokio(socket: &TcpStream) {
    if StdView::of(socket).shutdown(Shutdown::Write).is_err() {
        return;
    }
    let _ = tokio::time::timeout(socket::LINGER, async {
        while socket
            .try_io(Interest::READABLE, || {
                socket::drop_arrived(&StdView::of(socket))
            })
            .is_err()
        {
            if socket.readable().await.is_err() {
                return;
            }
        }
    })
    .await;
}

/// Waits, without a thread, for the next request of a kept-alive
/// connection (its first bytes, unless `carry` has them), then for a
/// serving slot; closes it at the idle timeout, at the client's close, or
/// when the worker drains.
async fn next_request(
    socket: &TcpStream,
    accepted: &Accepted,
    carry: Vec<u8>,
) -> Result<Step, Close> {
    let ctx = &accepted.ctx;
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
            return Err(Close::KeepAliveEnd);
        }
    }
    ctx.status.metrics.kept_alive_requests.inc();
    let deadline = Instant::now() + ctx.limits.timeout;
    let slot = wait_for_slot(&accepted.serving, deadline).await?;
    Ok(Step {
        next: Next::Request(carry),
        slot,
        deadline,
    })
}

/// Waits, without a thread, for the bytes (or the EOF) that a function in
/// the middle of a request waits for, within the idle timeout and the
/// request's deadline; on timeout the instance is dropped and the
/// connection closes.
async fn next_chunk(
    socket: &TcpStream,
    accepted: &Accepted,
    conversation: Box<Conversation>,
    slot: OwnedSemaphorePermit,
) -> Result<Step, Close> {
    let ctx = &accepted.ctx;
    let deadline = conversation.deadline();
    let until = deadline.min(Instant::now() + ctx.limits.idle_timeout);
    // `peek`, not `readable`: tokio's readiness may be stale from the
    // serving thread's reads, which went past it.
    let arrived = tokio::time::timeout_at(until.into(), socket.peek(&mut [0; 1])).await;
    if arrived.is_err() {
        let close =
            connection::abandon(conversation, accepted.id, ctx, socket::timed_out(deadline));
        drop(slot);
        return Err(close);
    }
    Ok(Step {
        next: Next::Resume(conversation),
        slot,
        deadline,
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
