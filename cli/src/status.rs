//! What the cluster says about functions: `nur ls` (one line each),
//! `nur status NAME` (conditions, module, pods, routes, recent events),
//! and the same report when `nur deploy` fails.

use std::fmt::Write;

use k8s_openapi::api::core::v1::{Event, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::ListParams;
use nur_operator::crd::NurFunction;

use crate::cluster::{Cluster, ClusterError};

#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error("no function {name:?} in namespace {namespace}: `nur ls` lists what is deployed")]
    NotFound { name: String, namespace: String },
    #[error(transparent)]
    Cluster(#[from] ClusterError),
}

/// The function's condition of type `type_`.
pub fn condition<'a>(f: &'a NurFunction, type_: &str) -> Option<&'a Condition> {
    f.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
}

/// The NurFunction `name`.
pub async fn get(cluster: &Cluster, name: &str) -> Result<NurFunction, StatusError> {
    match cluster.functions().get_opt(name).await {
        Ok(Some(f)) => Ok(f),
        Ok(None) => Err(StatusError::NotFound {
            name: name.into(),
            namespace: cluster.namespace.clone(),
        }),
        Err(e) => Err(cluster.error(e).into()),
    }
}

/// The worker pods of function `name`, oldest first.
pub async fn pods(cluster: &Cluster, name: &str) -> Result<Vec<Pod>, ClusterError> {
    let selector = nur_operator::meta::selector_string(name);
    let mut pods = cluster
        .api::<Pod>()
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(|e| cluster.error(e))?
        .items;
    pods.sort_by_key(|p| p.metadata.creation_timestamp.clone().map(|t| t.0));
    Ok(pods)
}

/// Whether the pod is Ready and not going away.
pub fn pod_ready(p: &Pod) -> bool {
    p.metadata.deletion_timestamp.is_none()
        && p.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// `nur ls`: a line per function.
pub async fn ls(cluster: &Cluster) -> Result<String, ClusterError> {
    let mut functions = cluster
        .functions()
        .list(&ListParams::default())
        .await
        .map_err(|e| cluster.error(e))?
        .items;
    functions.sort_by_key(|f| f.metadata.name.clone());
    if functions.is_empty() {
        return Ok(format!(
            "no functions in namespace {}: `nur deploy` deploys the nurfile's\n",
            cluster.namespace
        ));
    }
    let rows: Vec<[String; 5]> = functions
        .iter()
        .map(|f| {
            let st = f.status.clone().unwrap_or_default();
            [
                f.metadata.name.clone().unwrap_or_default(),
                ready_text(f),
                format!(
                    "{}/{}",
                    st.ready_replicas.unwrap_or(0),
                    st.replicas.unwrap_or(0)
                ),
                st.module
                    .map(|m| short_digest(&m.digest))
                    .unwrap_or_default(),
                st.endpoint.unwrap_or_default(),
            ]
        })
        .collect();
    Ok(table(
        &["NAME", "READY", "PODS", "DIGEST", "ENDPOINT"],
        &rows,
    ))
}

/// `True`, or `False (Reason)`, or `Unknown` before the operator wrote one.
pub fn ready_text(f: &NurFunction) -> String {
    match condition(f, "Ready") {
        Some(c) if c.status == "True" && c.reason != "Ready" => format!("True ({})", c.reason),
        Some(c) if c.status == "True" => "True".into(),
        Some(c) => format!("{} ({})", c.status, c.reason),
        None => "Unknown".into(),
    }
}

/// The function's gateway routes, as `http HOST/PREFIX (METHODS)`, `tls
/// NAME`, `tcp PORT`.
pub fn routes(f: &NurFunction) -> Vec<String> {
    let Some(r) = &f.spec.routes else {
        return Vec::new();
    };
    let mut out: Vec<String> = r
        .http
        .iter()
        .map(|h| {
            let methods = h
                .methods
                .as_ref()
                .map(|m| format!(" ({})", m.join(",")))
                .unwrap_or_default();
            format!(
                "http {}{}{methods}",
                h.host.as_deref().unwrap_or("*"),
                h.path_prefix.as_deref().unwrap_or("/")
            )
        })
        .collect();
    out.extend(r.tls.iter().map(|t| format!("tls {}", t.sni)));
    out.extend(r.tcp.iter().map(|t| format!("tcp {}", t.port)));
    out
}

/// `sha256:` and the first 12 hex digits.
pub fn short_digest(digest: &str) -> String {
    digest.chars().take("sha256:".len() + 12).collect()
}

/// `nur status NAME`.
pub async fn status(cluster: &Cluster, name: &str) -> Result<String, StatusError> {
    let f = get(cluster, name).await?;
    let mut out = String::new();
    let st = f.status.clone().unwrap_or_default();
    let _ = writeln!(out, "Name:      {name}");
    let _ = writeln!(out, "Namespace: {}", cluster.namespace);
    if let Some(written) = f
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(crate::manifest::NAME_ANNOTATION))
    {
        let _ = writeln!(out, "Nurfile:   {written}");
    }
    let _ = writeln!(out, "Module:    {}", f.spec.module.url);
    if let Some(m) = &st.module {
        let _ = writeln!(out, "Digest:    {} ({} bytes)", m.digest, m.size);
    }
    let _ = writeln!(
        out,
        "Endpoint:  {}",
        st.endpoint.as_deref().unwrap_or("(none yet)")
    );
    let routes = routes(&f);
    if routes.is_empty() {
        let _ = writeln!(
            out,
            "Routes:    none (reached through its Service; `nur call` port-forwards to a pod)"
        );
    } else {
        let _ = writeln!(
            out,
            "Routes:    {} (through nur-gateway)",
            routes.join(", ")
        );
    }
    let _ = writeln!(
        out,
        "Pods:      {} ready of {}",
        st.ready_replicas.unwrap_or(0),
        st.replicas.unwrap_or(0)
    );
    out.push_str(&report(cluster, &f).await?);
    Ok(out)
}

/// Conditions, pods and recent events of `f`: what `nur status` shows and
/// what `nur deploy` prints when a function does not become Ready.
pub async fn report(cluster: &Cluster, f: &NurFunction) -> Result<String, ClusterError> {
    let name = f.metadata.name.clone().unwrap_or_default();
    let mut out = String::from("\nConditions:\n");
    let conditions: Vec<[String; 4]> = f
        .status
        .iter()
        .flat_map(|s| s.conditions.iter())
        .map(|c| {
            [
                c.type_.clone(),
                c.status.clone(),
                c.reason.clone(),
                c.message.clone(),
            ]
        })
        .collect();
    if conditions.is_empty() {
        out.push_str("  none yet (is the operator running and watching this namespace?)\n");
    } else {
        out.push_str(&indent(&table(
            &["TYPE", "STATUS", "REASON", "MESSAGE"],
            &conditions,
        )));
    }
    let pods = pods(cluster, &name).await?;
    out.push_str("\nPods:\n");
    if pods.is_empty() {
        out.push_str("  none\n");
    } else {
        let rows: Vec<[String; 5]> = pods.iter().map(pod_row).collect();
        out.push_str(&indent(&table(
            &["NAME", "READY", "STATUS", "RESTARTS", "NODE"],
            &rows,
        )));
    }
    out.push_str("\nEvents:\n");
    let events = events(cluster, &name, &pods).await?;
    if events.is_empty() {
        out.push_str("  none\n");
    } else {
        let rows: Vec<[String; 4]> = events
            .iter()
            .map(|e| {
                [
                    event_object(e),
                    e.type_.clone().unwrap_or_default(),
                    e.reason.clone().unwrap_or_default(),
                    e.message.clone().unwrap_or_default().trim().to_string(),
                ]
            })
            .collect();
        out.push_str(&indent(&table(
            &["OBJECT", "TYPE", "REASON", "MESSAGE"],
            &rows,
        )));
    }
    Ok(out)
}

/// NAME, READY, STATUS, RESTARTS and NODE of a pod, as `nur status` shows it.
pub fn pod_row(p: &Pod) -> [String; 5] {
    let status = p.status.clone().unwrap_or_default();
    let containers = status.container_statuses.unwrap_or_default();
    let waiting = containers.iter().find_map(|c| {
        let s = c.state.as_ref()?;
        s.waiting
            .as_ref()
            .and_then(|w| w.reason.clone())
            .or_else(|| s.terminated.as_ref().and_then(|t| t.reason.clone()))
    });
    let phase = if p.metadata.deletion_timestamp.is_some() {
        "Terminating".to_string()
    } else {
        waiting.unwrap_or_else(|| status.phase.unwrap_or_default())
    };
    [
        p.metadata.name.clone().unwrap_or_default(),
        pod_ready(p).to_string(),
        phase,
        containers
            .iter()
            .map(|c| c.restart_count)
            .sum::<i32>()
            .to_string(),
        p.spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_default(),
    ]
}

/// Recent events, oldest first: the last 5 of the NurFunction itself
/// (what the operator did), and the last 10 of its Deployment, ReplicaSets
/// and pods.
pub async fn events(
    cluster: &Cluster,
    name: &str,
    pods: &[Pod],
) -> Result<Vec<Event>, ClusterError> {
    let pods: Vec<&str> = pods
        .iter()
        .filter_map(|p| p.metadata.name.as_deref())
        .collect();
    let replica_sets = format!("{name}-");
    let mut events: Vec<Event> = cluster
        .api::<Event>()
        .list(&ListParams::default())
        .await
        .map_err(|e| cluster.error(e))?
        .items;
    events.sort_by_key(event_time);
    let of = |kind: &str, e: &Event| e.involved_object.kind.as_deref() == Some(kind);
    let object = |e: &Event| e.involved_object.name.clone().unwrap_or_default();
    let (mine, rest): (Vec<Event>, Vec<Event>) = events
        .into_iter()
        .filter(|e| {
            let n = object(e);
            (of("NurFunction", e) || of("Deployment", e)) && n == name
                || of("ReplicaSet", e) && n.starts_with(&replica_sets)
                || of("Pod", e) && pods.contains(&n.as_str())
        })
        .partition(|e| of("NurFunction", e));
    let last = |mut v: Vec<Event>, n: usize| v.split_off(v.len().saturating_sub(n));
    let mut recent = last(mine, 5);
    recent.extend(last(rest, 10));
    recent.sort_by_key(event_time);
    Ok(recent)
}

fn event_time(e: &Event) -> Option<jiff::Timestamp> {
    e.last_timestamp
        .as_ref()
        .map(|Time(t)| *t)
        .or_else(|| e.event_time.as_ref().map(|t| t.0))
        .or_else(|| e.metadata.creation_timestamp.as_ref().map(|Time(t)| *t))
}

/// Rows under a header, columns padded to their widest cell.
pub fn table<const N: usize>(header: &[&str; N], rows: &[[String; N]]) -> String {
    let mut widths = header.map(str::len);
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let mut text = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == N {
                text.push_str(cell);
            } else {
                let _ = write!(text, "{cell:<w$}  ");
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
    out
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("  {l}\n")).collect()
}

/// What an Event is about, as `kind/name` (`pod/echo-5d9f`).
pub fn event_object(e: &k8s_openapi::api::core::v1::Event) -> String {
    format!(
        "{}/{}",
        e.involved_object
            .kind
            .as_deref()
            .unwrap_or_default()
            .to_ascii_lowercase(),
        e.involved_object.name.as_deref().unwrap_or_default()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_pad_every_column_but_the_last() {
        let t = table(
            &["NAME", "READY"],
            &[
                ["cowsay".into(), "True".into()],
                ["a".into(), "False (BreaksABI)".into()],
            ],
        );
        assert_eq!(
            t,
            "NAME    READY\ncowsay  True\na       False (BreaksABI)\n"
        );
    }
}
