//! Both directions of a connection copied until each side closes, the
//! bytes counted per function.

use nur_operator::routes::Target;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::Shared;
use crate::metrics::Metrics;

/// Connects `client` to a ready pod of `target` (the bytes already read
/// from it, `first`, sent ahead) and copies both ways; a connection with
/// no pod to go to is closed.
pub async fn forward(client: TcpStream, first: &[u8], target: &Target, shared: &Shared) {
    let _open = shared.activity.open(target);
    let mut upstream = match shared.dialer.connect(shared, target).await {
        Ok(u) => u,
        Err(e) => {
            tracing::info!("{e}");
            shared.metrics.no_ready_pod(target);
            return;
        }
    };
    let _active = shared.metrics.connection(target);
    if upstream.stream.write_all(first).await.is_err() {
        return;
    }
    shared
        .metrics
        .bytes(target, "in")
        .inc_by(first.len() as u64);
    splice(client, &mut upstream.stream, &shared.metrics, target).await;
}

/// Copies `client` to `upstream` and back until both are done.
pub async fn splice(
    mut client: TcpStream,
    upstream: &mut TcpStream,
    metrics: &Metrics,
    target: &Target,
) {
    match tokio::io::copy_bidirectional(&mut client, upstream).await {
        Ok((to_upstream, to_client)) => {
            metrics.bytes(target, "in").inc_by(to_upstream);
            metrics.bytes(target, "out").inc_by(to_client);
        }
        Err(e) => tracing::debug!(function = %target, "connection ended: {e}"),
    }
}
