//! TCP routes: a connection to a gateway port goes to the function that
//! holds the port, bytes untouched; a port no function holds is closed.

use std::sync::Arc;

use tokio::net::TcpStream;

use crate::Shared;
use crate::splice::forward;

/// Serves one connection that came in on gateway port `port`.
pub async fn handle(client: TcpStream, port: u16, shared: Arc<Shared>) {
    let Some(target) = shared.state.table().tcp.get(&port).cloned() else {
        tracing::debug!(port, "no TCP route");
        shared.metrics.route_miss("tcp");
        return;
    };
    forward(client, &[], &target, &shared).await;
}
