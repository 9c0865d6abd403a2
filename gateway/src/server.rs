//! The accept loops: each accepted connection gets a task of its own with
//! the handler of its listener's kind, tracked so that a shutdown waits
//! for the connections in flight.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::{Shared, http, tcp, tls};

/// What a listener carries.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Http,
    Tls,
    /// A TCP route port.
    Tcp(u16),
}

/// Accepts on `listener` until `stop` is cancelled.
pub async fn accept(
    listener: TcpListener,
    kind: Kind,
    shared: Arc<Shared>,
    tracker: TaskTracker,
    stop: CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => return,
            a = listener.accept() => a,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors, most likely: let connections end.
                tracing::warn!(?kind, "accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        let header_timeout = shared.http_limits.header_timeout;
        tracker.spawn(async move {
            match kind {
                Kind::Http => http::handle(stream, shared).await,
                Kind::Tls => tls::handle(stream, shared, header_timeout).await,
                Kind::Tcp(port) => tcp::handle(stream, port, shared).await,
            }
        });
    }
}
