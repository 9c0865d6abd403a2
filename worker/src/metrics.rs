//! Prometheus metrics of the worker, served on `/metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

use crate::guest::FaultKind;

/// Labels of `nur_guest_traps_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TrapLabels {
    pub kind: &'static str,
}

/// Labels of `nur_connection_closes_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CloseLabels {
    pub reason: &'static str,
}

/// Labels of `nur_guest_exits_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ExitLabels {
    /// The code, 0 to 255; `other` for any other.
    pub code: String,
}

/// Labels of `nur_wasi_unsupported_calls_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WasiLabels {
    pub function: String,
}

/// Every metric the worker exports.
pub struct Metrics {
    pub registry: Registry,
    pub connections: Counter,
    pub kept_alive_requests: Counter,
    pub active: Gauge,
    pub duration: Histogram,
    pub bytes_in: Counter,
    pub bytes_out: Counter,
    pub traps: Family<TrapLabels, Counter>,
    pub closes: Family<CloseLabels, Counter>,
    pub log_lines_dropped: Counter,
    pub exits: Family<ExitLabels, Counter>,
    pub wasi_unsupported: Family<WasiLabels, Counter>,
    pub compile_seconds: Gauge<f64, AtomicU64>,
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("nur");
        let connections = Counter::default();
        let kept_alive_requests = Counter::default();
        let active = Gauge::default();
        let duration = Histogram::new(exponential_buckets(0.0001, 4.0, 12));
        let bytes_in = Counter::default();
        let bytes_out = Counter::default();
        let traps = Family::<TrapLabels, Counter>::default();
        let closes = Family::<CloseLabels, Counter>::default();
        let log_lines_dropped = Counter::default();
        let exits = Family::<ExitLabels, Counter>::default();
        let wasi_unsupported = Family::<WasiLabels, Counter>::default();
        let compile_seconds = Gauge::<f64, AtomicU64>::default();
        registry.register("connections", "Connections accepted", connections.clone());
        registry.register(
            "kept_alive_requests",
            "Requests served on a connection kept open after an earlier answer (--keep-alive)",
            kept_alive_requests.clone(),
        );
        registry.register(
            "connections_active",
            "Connections being served",
            active.clone(),
        );
        registry.register(
            "connection_duration_seconds",
            "Time from accept to close",
            duration.clone(),
        );
        registry.register(
            "received_bytes",
            "Bytes read from clients",
            bytes_in.clone(),
        );
        registry.register("sent_bytes", "Bytes written to clients", bytes_out.clone());
        registry.register("guest_traps", "Guest faults, by kind", traps.clone());
        registry.register(
            "connection_closes",
            "Connections closed, by reason",
            closes.clone(),
        );
        registry.register(
            "guest_log_lines_dropped",
            "nur_log lines dropped past --max-log-bytes",
            log_lines_dropped.clone(),
        );
        registry.register(
            "guest_exits",
            "Connections ended by WASI proc_exit, by code",
            exits.clone(),
        );
        registry.register(
            "wasi_unsupported_calls",
            "Calls of WASI functions the worker does not provide (answered ENOSYS), by function",
            wasi_unsupported.clone(),
        );
        registry.register(
            "module_compile_seconds",
            "Time spent at start getting the module's native code: fetching --artifact, loading the cache or compiling",
            compile_seconds.clone(),
        );
        Self {
            registry,
            connections,
            kept_alive_requests,
            active,
            duration,
            bytes_in,
            bytes_out,
            traps,
            closes,
            log_lines_dropped,
            exits,
            wasi_unsupported,
            compile_seconds,
        }
    }

    pub fn trap(&self, kind: FaultKind) {
        self.traps
            .get_or_create(&TrapLabels {
                kind: kind.as_str(),
            })
            .inc();
    }

    pub fn close(&self, reason: &'static str) {
        self.closes.get_or_create(&CloseLabels { reason }).inc();
    }

    /// Counts a `proc_exit(code)`.
    pub fn exit(&self, code: i32) {
        let code = if (0..=255).contains(&code) {
            code.to_string()
        } else {
            "other".to_string()
        };
        self.exits.get_or_create(&ExitLabels { code }).inc();
    }

    /// Counts `calls` of the unsupported WASI function `function`.
    pub fn wasi_unsupported(&self, function: &str, calls: u64) {
        self.wasi_unsupported
            .get_or_create(&WasiLabels {
                function: function.to_string(),
            })
            .inc_by(calls);
    }

    /// The text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
