//! The admin HTTP server: `/healthz`, `/readyz`, `/metrics`.
//!
//! `/healthz` is liveness: it fails (503) when the deadline timer is stuck,
//! since a worker that can no longer stop guests at their deadline is not
//! alive in any useful sense; a restart is the remedy.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::deadline::Deadlines;
use crate::metrics::Metrics;

/// How long past a deadline, with the timer not running, before `/healthz` fails.
pub const TIMER_GRACE: Duration = Duration::from_secs(1);

/// What the admin endpoints report.
pub struct Status {
    /// True once the module is compiled and the listener bound, false again when draining.
    pub ready: AtomicBool,
    pub metrics: Metrics,
    /// The deadline timer of the function served, once there is one.
    deadlines: OnceLock<Deadlines>,
    /// True from the start of the drain: kept-alive connections close.
    draining: watch::Sender<bool>,
}

impl Status {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            ready: AtomicBool::new(false),
            metrics: Metrics::new(),
            deadlines: OnceLock::new(),
            draining: watch::Sender::new(false),
        })
    }

    /// Not ready any more, and kept-alive connections close (those waiting
    /// for a request at once, the others after their answer).
    pub fn start_draining(&self) {
        self.set_ready(false);
        self.draining.send_replace(true);
    }

    pub fn is_draining(&self) -> bool {
        *self.draining.borrow()
    }

    /// Completes once the drain has started.
    pub async fn drained(&self) {
        let mut draining = self.draining.subscribe();
        let _ = draining.wait_for(|d| *d).await;
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }

    /// Makes `/healthz` watch `deadlines` (the first call only).
    pub fn watch_deadlines(&self, deadlines: Deadlines) {
        let _ = self.deadlines.set(deadlines);
    }
}

/// Serves the admin endpoints until the process exits.
pub async fn serve(listener: TcpListener, status: Arc<Status>) -> std::io::Result<()> {
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(status);
    axum::serve(listener, app).await
}

async fn healthz(State(status): State<Arc<Status>>) -> impl IntoResponse {
    let stuck = status.deadlines.get().and_then(|d| d.stuck(TIMER_GRACE));
    match stuck {
        None => (StatusCode::OK, "ok\n".to_string()),
        Some(overdue) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "deadline timer stuck: a deadline is {} ms overdue\n",
                overdue.as_millis()
            ),
        ),
    }
}

async fn readyz(State(status): State<Arc<Status>>) -> impl IntoResponse {
    if status.ready.load(Ordering::SeqCst) {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}

async fn metrics(State(status): State<Arc<Status>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        status.metrics.encode(),
    )
}
