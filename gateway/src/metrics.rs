//! Prometheus metrics of the gateway, served on `/metrics`: per function
//! (`namespace/name`) connections, active connections, bytes each way,
//! upstream connect errors and requests retried on a new connection, and the connections held for a pod (a wake of
//! a function at zero, or a wait for its first pod) with how long each
//! waited; per listener the requests no route takes and the clients
//! refused (and why).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use nur_operator::routes::Target;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FunctionLabels {
    pub function: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BytesLabels {
    pub function: String,
    /// `in` (client to function) or `out`.
    pub direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListenerLabels {
    /// `http`, `tls` or `tcp`.
    pub listener: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RejectLabels {
    pub listener: &'static str,
    /// `bad_request`, `head_too_large`, `header_timeout`, `no_server_name`...
    pub reason: &'static str,
}

/// Every metric the gateway exports.
pub struct Metrics {
    registry: Registry,
    connections: Family<FunctionLabels, Counter>,
    active: Family<FunctionLabels, Gauge>,
    bytes: Family<BytesLabels, Counter>,
    upstream_errors: Family<FunctionLabels, Counter>,
    upstream_retries: Family<FunctionLabels, Counter>,
    no_ready_pod: Family<FunctionLabels, Counter>,
    waits: Family<FunctionLabels, Histogram, fn() -> Histogram>,
    route_misses: Family<ListenerLabels, Counter>,
    rejected: Family<RejectLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("nur_gateway");
        let m = Metrics {
            registry: Registry::default(),
            connections: Family::default(),
            active: Family::default(),
            bytes: Family::default(),
            upstream_errors: Family::default(),
            upstream_retries: Family::default(),
            no_ready_pod: Family::default(),
            // 50 ms to ~100 s: a woken pod fetches and compiles its module.
            waits: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.05, 2.0, 12))
            }),
            route_misses: Family::default(),
            rejected: Family::default(),
        };
        registry.register(
            "connections",
            "Connections (HTTP: requests) forwarded to a function",
            m.connections.clone(),
        );
        registry.register(
            "connections_active",
            "Connections to a function open now",
            m.active.clone(),
        );
        registry.register("bytes", "Bytes forwarded, by direction", m.bytes.clone());
        registry.register(
            "upstream_connect_errors",
            "Connects to a ready pod that failed (the next pod was tried)",
            m.upstream_errors.clone(),
        );
        registry.register(
            "upstream_retries",
            "Requests sent again on a new connection: the kept-alive one closed before any answer",
            m.upstream_retries.clone(),
        );
        registry.register(
            "no_ready_pod",
            "Connections answered 503 or closed: no ready pod within the wake timeout",
            m.no_ready_pod.clone(),
        );
        registry.register(
            "wake_seconds",
            "Connections held until the function had a ready pod (a wake from zero), and for how long",
            m.waits.clone(),
        );
        registry.register(
            "route_misses",
            "Requests and connections no route takes",
            m.route_misses.clone(),
        );
        registry.register(
            "rejected",
            "Clients refused before routing, by reason",
            m.rejected.clone(),
        );
        Metrics { registry, ..m }
    }

    fn labels(target: &Target) -> FunctionLabels {
        FunctionLabels {
            function: target.to_string(),
        }
    }

    pub fn connection(&self, target: &Target) -> ActiveGuard {
        self.connections.get_or_create(&Self::labels(target)).inc();
        let gauge = self.active.get_or_create(&Self::labels(target)).clone();
        gauge.inc();
        ActiveGuard(gauge)
    }

    pub fn bytes(&self, target: &Target, direction: &'static str) -> Counter {
        self.bytes
            .get_or_create(&BytesLabels {
                function: target.to_string(),
                direction,
            })
            .clone()
    }

    pub fn upstream_errors(&self, target: &Target) -> Counter {
        self.upstream_errors
            .get_or_create(&Self::labels(target))
            .clone()
    }

    pub fn upstream_retries(&self, target: &Target) -> Counter {
        self.upstream_retries
            .get_or_create(&Self::labels(target))
            .clone()
    }

    pub fn no_ready_pod(&self, target: &Target) {
        self.no_ready_pod.get_or_create(&Self::labels(target)).inc();
    }

    /// A connection held `waited` for a ready pod, then forwarded.
    pub fn waited(&self, target: &Target, waited: std::time::Duration) {
        self.waits
            .get_or_create(&Self::labels(target))
            .observe(waited.as_secs_f64());
    }

    pub fn route_miss(&self, listener: &'static str) {
        self.route_misses
            .get_or_create(&ListenerLabels { listener })
            .inc();
    }

    pub fn rejected(&self, listener: &'static str, reason: &'static str) {
        self.rejected
            .get_or_create(&RejectLabels { listener, reason })
            .inc();
    }

    /// The OpenMetrics text.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String");
        out
    }
}

/// One active connection, counted until dropped.
pub struct ActiveGuard(Gauge);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}
