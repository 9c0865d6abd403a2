//! A function's metrics now: each ready worker pod's `/metrics` read
//! through the API server's pod proxy (the user's own rights: `get` on
//! `pods/proxy`), summed over the pods. The page keeps the samples and
//! draws rates and percentiles from their differences.
//!
//! The text format is read here rather than with a parser crate: the
//! console reads five metrics of its own worker (counters, a gauge, one
//! histogram), which is a split per line; prometheus-parse would add
//! chrono and regex for it.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, State};
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
}

impl Sample {
    /// Adds one pod's `/metrics` text.
    pub fn add(&mut self, text: &str) {
        let mut buckets: Vec<(Option<f64>, f64)> = Vec::new();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Ok(value) = value.parse::<f64>() else {
                continue;
            };
            let (name, labels) = match series.split_once('{') {
                Some((n, l)) => (n, l.trim_end_matches('}')),
                None => (series, ""),
            };
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
    status::get(&cluster, &name).await?;
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
    Ok(Json(sample))
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
}
