//! The accept loop: at most `--max-connections` connections at once (more
//! wait in the listen backlog), each handed to [`connection::serve`] on
//! tokio's blocking pool once the client has sent something, and a drain
//! that waits for all of them.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::connection::{self, Close, Context};

/// Accepts connections until `shutdown` completes; returns the permits that
/// in-flight connections hold, for [`drain`].
pub async fn run(
    listener: TcpListener,
    ctx: Arc<Context>,
    shutdown: impl Future<Output = ()>,
) -> Arc<Semaphore> {
    let permits = Arc::new(Semaphore::new(ctx.limits.max_connections as usize));
    tokio::pin!(shutdown);
    let mut id = 0u64;
    loop {
        let permit = tokio::select! {
            biased;
            () = &mut shutdown => break,
            permit = permits.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
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
        tokio::spawn(handle(socket, id, ctx.clone(), permit));
    }
    permits
}

/// Waits up to `grace` for every in-flight connection; false if some remain.
pub async fn drain(permits: &Semaphore, max_connections: u32, grace: Duration) -> bool {
    tokio::time::timeout(grace, permits.acquire_many(max_connections))
        .await
        .is_ok()
}

async fn handle(socket: TcpStream, id: u64, ctx: Arc<Context>, permit: OwnedSemaphorePermit) {
    let started = Instant::now();
    let metrics = &ctx.status.metrics;
    metrics.connections.inc();
    metrics.active.inc();
    let close = serve(socket, id, &ctx, started + ctx.limits.timeout).await;
    metrics.close(close.reason());
    metrics.duration.observe(started.elapsed().as_secs_f64());
    metrics.active.dec();
    drop(permit);
}

/// Waits, without a thread, for the client's first bytes (or EOF), then
/// serves the connection on the blocking pool.
async fn serve(socket: TcpStream, id: u64, ctx: &Arc<Context>, deadline: Instant) -> Close {
    let _ = socket.set_nodelay(true);
    let first = ctx.limits.idle_timeout.min(ctx.limits.timeout);
    // `peek`, not `readable`: tokio reports a fresh socket readable at once,
    // which would hand a silent client a thread and an instance.
    match tokio::time::timeout(first, socket.peek(&mut [0; 1])).await {
        Err(_) => return Close::Idle,
        Ok(Err(_)) => return Close::ClientGone,
        Ok(Ok(_)) => {}
    }
    let Ok(stream) = socket.into_std() else {
        return Close::ClientGone;
    };
    if stream.set_nonblocking(false).is_err() {
        return Close::ClientGone;
    }
    let ctx = ctx.clone();
    tokio::task::spawn_blocking(move || connection::serve(stream, id, &ctx, deadline))
        .await
        .unwrap_or_else(|e| {
            tracing::error!(connection = id, "connection handler failed: {e}");
            Close::Internal
        })
}
