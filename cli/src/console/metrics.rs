//! A function's metrics now: each ready worker pod's `/metrics` read
//! through the API server's pod proxy (the user's own rights: `get` on
//! `pods/proxy`), summed over the pods; for a routed function, also what
//! the gateway pods (the chart's, found by their labels in any namespace
//! the user may list) count for it. The page keeps the samples and draws
//! rates and percentiles from their differences.
//!
//! The text format is read here rather than with a parser crate: the
//! console reads a few metrics of Nur's own worker and gateway (counters,
//! gauges, histograms), which is a split per line; prometheus-parse would
//! add chrono and regex for it.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, State};
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::ListParams;
use serde::Serialize;

use super::App;
use super::error::ConsoleError;
use crate::status;

/// The metrics of every ready pod of a function, summed.
#[derive(Serialize, Default, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Sample {
    /// Milliseconds since the epoch.
    pub time: i64,
    pub pods: usize,
    /// Pods whose metrics could not be read, with why.
    pub unread: Vec<String>,
    pub connections: f64,
    pub active: f64,
    pub received_bytes: f64,
    pub sent_bytes: f64,
    /// Guest faults by kind.
    pub faults: BTreeMap<String, f64>,
    /// Connection duration histogram: (upper bound in seconds, cumulative
    /// count), `+Inf` last as a bound of `null`.
    pub duration_buckets: Vec<(Option<f64>, f64)>,
    pub duration_count: f64,
    /// What the gateway counts for a routed function (`None` when it has
    /// no routes or no gateway pod could be read).
    pub gateway: Option<GatewaySample>,
    /// Gateway pods that could not be found or read, with why.
    pub gateway_unread: Vec<String>,
}

/// What the gateway pods count for one function, summed over the pods.
#[derive(Serialize, Default, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GatewaySample {
    pub pods: usize,
    /// Connections (HTTP: requests) forwarded.
    pub connections: f64,
    pub active: f64,
    pub received_bytes: f64,
    pub sent_bytes: f64,
    pub upstream_errors: f64,
    /// Connections that found no ready pod within the wake timeout.
    pub no_ready_pod: f64,
    /// Connections held until a pod was ready (wakes), and their waits.
    pub wakes: f64,
    pub wake_seconds: f64,
}

impl GatewaySample {
    /// Adds one gateway pod's `/metrics` text, the series of `function`
    /// (`namespace/name`) only.
    pub fn add(&mut self, text: &str, function: &str) {
        self.pods += 1;
        for (name, labels, value) in series(text) {
            if label(labels, "function") != function {
                continue;
            }
            match name {
                "nur_gateway_connections_total" => self.connections += value,
                "nur_gateway_connections_active" => self.active += value,
                "nur_gateway_bytes_total" => match label(labels, "direction").as_str() {
                    "in" => self.received_bytes += value,
                    _ => self.sent_bytes += value,
                },
                "nur_gateway_upstream_connect_errors_total" => self.upstream_errors += value,
                "nur_gateway_no_ready_pod_total" => self.no_ready_pod += value,
                "nur_gateway_wake_seconds_count" => self.wakes += value,
                "nur_gateway_wake_seconds_sum" => self.wake_seconds += value,
                _ => {}
            }
        }
    }
}

/// Each sample of an OpenMetrics text: (name, labels, value).
fn series(text: &str) -> impl Iterator<Item = (&str, &str, f64)> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let value = value.parse::<f64>().ok()?;
            Some(match series.split_once('{') {
                Some((n, l)) => (n, l.trim_end_matches('}'), value),
                None => (series, "", value),
            })
        })
}

impl Sample {
    /// Adds one pod's `/metrics` text.
    pub fn add(&mut self, text: &str) {
        let mut buckets: Vec<(Option<f64>, f64)> = Vec::new();
        for (name, labels, value) in series(text) {
            match name {
                "nur_connections_total" => self.connections += value,
                "nur_connections_active" => self.active += value,
                "nur_received_bytes_total" => self.received_bytes += value,
                "nur_sent_bytes_total" => self.sent_bytes += value,
                "nur_connection_duration_seconds_count" => self.duration_count += value,
                "nur_guest_traps_total" => {
                    *self.faults.entry(label(labels, "kind")).or_default() += value
                }
                "nur_connection_duration_seconds_bucket" => {
                    let le = label(labels, "le");
                    buckets.push((le.parse().ok().filter(|b: &f64| b.is_finite()), value));
                }
                _ => {}
            }
        }
        if self.duration_buckets.is_empty() {
            self.duration_buckets = buckets;
        } else {
            for ((_, sum), (_, v)) in self.duration_buckets.iter_mut().zip(buckets) {
                *sum += v;
            }
        }
    }
}

/// The value of `key` in `a="x",b="y"`.
fn label(labels: &str, key: &str) -> String {
    labels
        .split(',')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| k.trim() == key)
        .map(|(_, v)| v.trim().trim_matches('"').to_string())
        .unwrap_or_default()
}

pub async fn sample(
    State(app): State<App>,
    Path((namespace, name)): Path<(String, String)>,
) -> Result<Json<Sample>, ConsoleError> {
    let cluster = app.cluster(&namespace)?;
    let function = status::get(&cluster, &name).await?;
    let pods = status::pods(&cluster, &name).await?;
    let mut sample = Sample {
        time: jiff::Timestamp::now().as_millisecond(),
        ..Sample::default()
    };
    for pod in pods.iter().filter(|p| status::pod_ready(p)) {
        let pod = pod.metadata.name.clone().unwrap_or_default();
        let path = format!(
            "/api/v1/namespaces/{}/pods/{pod}:{}/proxy/metrics",
            cluster.namespace,
            nur_operator::meta::ADMIN_PORT
        );
        let request = http::Request::get(path)
            .body(Vec::new())
            .expect("a GET request");
        match cluster.client.request_text(request).await {
            Ok(text) => {
                sample.pods += 1;
                sample.add(&text);
            }
            Err(e) => sample.unread.push(format!("{pod}: {}", cluster.error(e))),
        }
    }
    if function.spec.routes.is_some() {
        gateway_sample(&cluster, &format!("{namespace}/{name}"), &mut sample).await;
    }
    Ok(Json(sample))
}

/// The labels of the chart's gateway pods.
const GATEWAY_PODS: &str = "app.kubernetes.io/part-of=nur,app.kubernetes.io/component=gateway";

/// Adds what every ready gateway pod counts for `function`: pods listed
/// in every namespace, or in the function's own when the user may not
/// list them all.
async fn gateway_sample(cluster: &crate::cluster::Cluster, function: &str, sample: &mut Sample) {
    let lp = ListParams::default().labels(GATEWAY_PODS);
    let listed = match Api::<Pod>::all(cluster.client.clone()).list(&lp).await {
        Ok(list) => Ok(list),
        Err(_) => cluster.api::<Pod>().list(&lp).await,
    };
    let pods = match listed {
        Ok(list) => list.items,
        Err(e) => {
            sample
                .gateway_unread
                .push(format!("gateway pods: {}", cluster.error(e)));
            return;
        }
    };
    let mut gateway = GatewaySample::default();
    for pod in pods.iter().filter(|p| status::pod_ready(p)) {
        let (Some(ns), Some(pod_name)) = (&pod.metadata.namespace, &pod.metadata.name) else {
            continue;
        };
        let port = admin_port(pod).unwrap_or(9091);
        let path = format!("/api/v1/namespaces/{ns}/pods/{pod_name}:{port}/proxy/metrics");
        let request = http::Request::get(path)
            .body(Vec::new())
            .expect("a GET request");
        match cluster.client.request_text(request).await {
            Ok(text) => gateway.add(&text, function),
            Err(e) => sample
                .gateway_unread
                .push(format!("{ns}/{pod_name}: {}", cluster.error(e))),
        }
    }
    if gateway.pods > 0 {
        sample.gateway = Some(gateway);
    } else if sample.gateway_unread.is_empty() {
        sample
            .gateway_unread
            .push("no ready gateway pod found".into());
    }
}

/// The gateway container's port named `admin`.
fn admin_port(pod: &Pod) -> Option<i32> {
    pod.spec
        .as_ref()?
        .containers
        .iter()
        .flat_map(|c| c.ports.iter().flatten())
        .find(|p| p.name.as_deref() == Some("admin"))
        .map(|p| p.container_port)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pods_are_summed() {
        let pod = "# HELP nur_connections Connections accepted.\n\
                   # TYPE nur_connections counter\n\
                   nur_connections_total 3\n\
                   nur_connections_active 1\n\
                   nur_guest_traps_total{kind=\"timeout\"} 2\n\
                   nur_connection_duration_seconds_bucket{le=\"0.0001\"} 1\n\
                   nur_connection_duration_seconds_bucket{le=\"+Inf\"} 3\n\
                   nur_connection_duration_seconds_count 3\n";
        let mut s = Sample::default();
        s.add(pod);
        s.add(pod);
        assert_eq!(s.connections, 6.0);
        assert_eq!(s.active, 2.0);
        assert_eq!(s.faults["timeout"], 4.0);
        assert_eq!(s.duration_buckets, vec![(Some(0.0001), 2.0), (None, 6.0)]);
        assert_eq!(s.duration_count, 6.0);
    }

    #[test]
    fn a_gateway_pod_counts_only_the_functions_own_series() {
        let pod = "nur_gateway_connections_total{function=\"a/echo\"} 4\n\
                   nur_gateway_connections_total{function=\"a/other\"} 9\n\
                   nur_gateway_bytes_total{function=\"a/echo\",direction=\"in\"} 10\n\
                   nur_gateway_bytes_total{function=\"a/echo\",direction=\"out\"} 20\n\
                   nur_gateway_wake_seconds_sum{function=\"a/echo\"} 1.5\n\
                   nur_gateway_wake_seconds_count{function=\"a/echo\"} 2\n\
                   nur_gateway_route_misses_total{listener=\"http\"} 3\n";
        let mut g = GatewaySample::default();
        g.add(pod, "a/echo");
        g.add(pod, "a/echo");
        assert_eq!(g.pods, 2);
        assert_eq!(g.connections, 8.0);
        assert_eq!((g.received_bytes, g.sent_bytes), (20.0, 40.0));
        assert_eq!((g.wakes, g.wake_seconds), (4.0, 3.0));
    }
}
