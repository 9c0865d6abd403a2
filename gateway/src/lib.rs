//! `nur-gateway`: one front door for every Nur function.
//!
//! Layout (a server in the shape of tokio's mini-redis: listeners, one
//! handler per connection, shutdown):
//! - `main.rs`: the command line (`run`), logging, start and drain.
//! - [`watch`]: NurFunctions into the route table (the operator's
//!   [`nur_operator::routes`], so both agree who holds a route) and
//!   EndpointSlices into each function's ready pods; [`state`] holds both.
//! - [`server`]: the accept loops and their shutdown.
//! - one handler per kind of route: [`http`] (request heads with httparse,
//!   keep-alive, the gateway's own 4xx/5xx), [`tls`] (the ClientHello's
//!   server name, bytes untouched), [`tcp`] (a port per function);
//!   [`splice`] copies both ways.
//! - [`activity`]: scale to zero: activity marks and wake requests on
//!   the NurFunctions that scale to zero.
//! - [`upstream`]: a connection to a ready pod, least outstanding first,
//!   refusing pods skipped, the wait for a pod up to the wake timeout.
//! - [`admin`] and [`metrics`]: `/healthz`, `/readyz`, `/metrics`.
#![forbid(unsafe_code)]

pub mod activity;
pub mod admin;
pub mod http;
pub mod metrics;
pub mod server;
pub mod splice;
pub mod state;
pub mod tcp;
pub mod tls;
pub mod upstream;
pub mod watch;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// What every connection handler shares.
pub struct Shared {
    pub state: Arc<state::State>,
    pub metrics: metrics::Metrics,
    pub dialer: upstream::Dialer,
    pub http_limits: http::Limits,
    pub activity: Arc<activity::Activity>,
    /// False while draining.
    serving: AtomicBool,
}

impl Shared {
    pub fn new(
        dialer: upstream::Dialer,
        http_limits: http::Limits,
        client: Option<kube::Client>,
    ) -> Arc<Shared> {
        Arc::new(Shared {
            activity: activity::Activity::new(client),
            state: state::State::new(),
            metrics: metrics::Metrics::new(),
            dialer,
            http_limits,
            serving: AtomicBool::new(true),
        })
    }

    /// Ready: both watches have listed once and the gateway is not draining.
    pub fn ready(&self) -> bool {
        self.serving.load(Ordering::SeqCst) && self.state.synced()
    }

    pub fn stop_serving(&self) {
        self.serving.store(false, Ordering::SeqCst);
    }
}
