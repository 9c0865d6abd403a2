//! The operator's own admin endpoints: `GET /healthz` (the process runs),
//! `GET /readyz` (the API server answered), `GET /metrics` (Prometheus
//! text, prometheus-client), served with axum on hyper's HTTP/1 server.
//!
//! The server holds at most [`MAX_CONNECTIONS`] connections; a client gets
//! [`HEADER_TIMEOUT`] to send its request head and [`CONNECTION_TIMEOUT`]
//! in all, and a failed accept (out of file descriptors) waits before the
//! next, so no client can tie the server up or make it spin.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// Connections served at once; more wait in the listen backlog.
pub const MAX_CONNECTIONS: usize = 64;
/// Longest a client may take to send its request head.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest one connection may last.
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);
/// Wait after a failed accept.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Counters and flags shown on /metrics and /readyz.
pub struct Metrics {
    registry: Registry,
    /// Whether the API server answered at start.
    pub ready: AtomicBool,
    /// Whether this replica holds the leader Lease (1) or not (0).
    pub leader: Gauge,
    pub reconciles: Counter,
    pub reconcile_errors: Counter,
    pub module_problems: Counter,
    pub applies: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("nur_operator");
        let leader = Gauge::default();
        let reconciles = Counter::default();
        let reconcile_errors = Counter::default();
        let module_problems = Counter::default();
        let applies = Counter::default();
        registry.register("reconciles", "Reconciles run", reconciles.clone());
        registry.register(
            "reconcile_errors",
            "Reconciles that failed (retried or waiting for a change)",
            reconcile_errors.clone(),
        );
        registry.register(
            "module_problems",
            "Reconciles that found a module that cannot be served",
            module_problems.clone(),
        );
        registry.register(
            "applies",
            "Objects applied server-side (an object as last applied is not)",
            applies.clone(),
        );
        registry.register(
            "leader",
            "Whether this replica holds the leader Lease",
            leader.clone(),
        );
        Self {
            registry,
            ready: AtomicBool::new(false),
            leader,
            reconciles,
            reconcile_errors,
            module_problems,
            applies,
        }
    }
}

impl Metrics {
    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
    }

    /// Marks this replica as the leader or not.
    pub fn set_leader(&self, leader: bool) {
        self.leader.set(i64::from(leader));
    }
}

/// The admin routes.
pub fn router(metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(render))
        .with_state(metrics)
}

async fn readyz(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    if metrics.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}

async fn render(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        metrics.render(),
    )
}

/// Serves the endpoints on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>) {
    let app = router(metrics);
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let slot = slots.clone().acquire_owned().await.expect("never closed");
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!("admin accept failed: {e}");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let service = TowerToHyperService::new(app.clone());
        tokio::spawn(async move {
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            let _ = tokio::time::timeout(CONNECTION_TIMEOUT, connection).await;
            drop(slot);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_are_named_as_before() {
        let m = Metrics::default();
        m.reconciles.inc_by(3);
        let text = m.render();
        assert!(text.contains("nur_operator_reconciles_total 3\n"), "{text}");
        assert!(text.contains("nur_operator_leader 0\n"), "{text}");
        m.set_leader(true);
        assert!(m.render().contains("nur_operator_leader 1\n"));
    }
}
