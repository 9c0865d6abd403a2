//! Both directions of a connection copied until each side closes, the
//! bytes counted per function.

use nur_operator::routes::Target;
use tokio::net::TcpStream;

use crate::metrics::Metrics;

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
