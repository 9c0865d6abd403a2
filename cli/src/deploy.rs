//! `nur deploy`: for each built function, upload its module under its
//! content address (nothing when the bytes are there), server-side apply
//! its NurFunction pinned by sha256, and wait until it is Ready on that
//! digest. Functions go side by side, each with its progress line.

use std::time::{Duration, Instant};

use kube::Api;
use kube::api::{DynamicObject, Patch, PatchParams, ValidationDirective};
use kube::core::GroupVersionKind;
use kube::discovery::ApiResource;
use nur_operator::crd::NurFunction;

use crate::build::Built;
use crate::cluster::{Cluster, ClusterError};
use crate::manifest::{self, FIELD_MANAGER};
use crate::nurfile::Function;
use crate::progress::Line;
use crate::status::{self, condition};
use crate::store::{Store, StoreError, Upload};

#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error("{label}: {source}")]
    Store { label: String, source: StoreError },
    #[error("{label}: the cluster refused the NurFunction: {message}")]
    Apply { label: String, message: String },
    #[error("{label}: {source}")]
    Cluster { label: String, source: ClusterError },
    #[error("{label}: not Ready: {reason}\n{report}")]
    NotReady {
        label: String,
        reason: String,
        report: String,
    },
}

/// What deploying one function did.
#[derive(Debug, Clone)]
pub struct Deployed {
    pub label: String,
    pub upload: Upload,
    /// Whether the apply changed the NurFunction (or created it).
    pub changed: bool,
    pub created: bool,
    pub sha256: String,
    pub size: usize,
    pub ready_replicas: i32,
    /// `NAME.NAMESPACE.svc:PORT`.
    pub endpoint: String,
    /// Its gateway routes (see [`status::routes`]).
    pub routes: Vec<String>,
}

/// Reasons of Ready=False that the operator moves past by itself.
const PASSING: &[&str] = &["Progressing", "Pending", "StorageUnreachable", "Compiling"];

/// Deploys one function (built as `built`) and waits up to `timeout`.
pub async fn deploy(
    cluster: &Cluster,
    store: &Store,
    function: &Function,
    built: &Built,
    timeout: Duration,
    line: &Line,
) -> Result<Deployed, DeployError> {
    let label = function.label.clone();
    let size = built.bytes.len();
    line.step(format!("uploading {}", bytesize(size)));
    let upload = store
        .upload(&built.sha256, &built.bytes)
        .await
        .map_err(|source| DeployError::Store {
            label: label.clone(),
            source,
        })?;
    line.step("applying its NurFunction");
    let url = store.module_url(&built.sha256);
    let object = manifest::nurfunction(function, &url, &built.sha256);
    let api: Api<DynamicObject> = Api::namespaced_with(
        cluster.client.clone(),
        &cluster.namespace,
        &ApiResource::from_gvk(&GroupVersionKind::gvk("nur.dev", "v1alpha1", "NurFunction")),
    );
    let before = api
        .get_opt(&label)
        .await
        .map_err(|e| cluster_error(cluster, &label, e))?
        .and_then(|o| o.metadata.resource_version);
    let mut params = PatchParams::apply(FIELD_MANAGER).force();
    params.field_validation = Some(ValidationDirective::Strict);
    let applied = api
        .patch(&label, &params, &Patch::Apply(&object))
        .await
        .map_err(|e| match e {
            kube::Error::Api(s) if s.code == 422 || s.code == 400 => DeployError::Apply {
                label: label.clone(),
                message: s.message,
            },
            other => cluster_error(cluster, &label, other),
        })?;
    let generation = applied.metadata.generation.unwrap_or(0);
    let changed = before != applied.metadata.resource_version;
    let f = wait_ready(cluster, &label, generation, &built.sha256, timeout, line).await?;
    if let Some(c) = condition(&f, "Routed").filter(|c| c.status == "False") {
        let reason = format!("{}: {}", c.reason, c.message);
        return Err(not_ready(cluster, &f, reason).await);
    }
    let routes = status::routes(&f);
    let st = f.status.unwrap_or_default();
    Ok(Deployed {
        routes,
        label,
        upload,
        changed,
        created: before.is_none(),
        sha256: built.sha256.clone(),
        size,
        ready_replicas: st.ready_replicas.unwrap_or(0),
        endpoint: st.endpoint.unwrap_or_default(),
    })
}

fn cluster_error(cluster: &Cluster, label: &str, e: kube::Error) -> DeployError {
    DeployError::Cluster {
        label: label.into(),
        source: cluster.error(e),
    }
}

/// Waits until the operator has seen `generation` and says Ready on
/// `sha256`; fails at once on a reason it does not move past by itself.
async fn wait_ready(
    cluster: &Cluster,
    label: &str,
    generation: i64,
    sha256: &str,
    timeout: Duration,
    line: &Line,
) -> Result<NurFunction, DeployError> {
    let api = cluster.functions();
    let digest = format!("sha256:{sha256}");
    let deadline = Instant::now() + timeout;
    loop {
        let f = api
            .get(label)
            .await
            .map_err(|e| cluster_error(cluster, label, e))?;
        let st = f.status.clone().unwrap_or_default();
        let seen = st.observed_generation.is_some_and(|g| g >= generation);
        let ready = condition(&f, "Ready");
        match ready {
            Some(c)
                if seen
                    && c.status == "True"
                    && st.module.as_ref().is_some_and(|m| m.digest == digest) =>
            {
                return Ok(f);
            }
            Some(c) if seen && c.status == "False" && !PASSING.contains(&c.reason.as_str()) => {
                return Err(not_ready(cluster, &f, format!("{}: {}", c.reason, c.message)).await);
            }
            _ => {}
        }
        line.step(match ready {
            Some(c) if seen && c.reason == "Compiling" => {
                "compiling its native code, once for every pod".to_string()
            }
            Some(c) if seen => format!(
                "rolling out: {}/{} pods ready ({})",
                st.ready_replicas.unwrap_or(0),
                st.replicas.unwrap_or(0),
                c.reason
            ),
            _ => "waiting for the operator".to_string(),
        });
        if Instant::now() >= deadline {
            let why = match ready {
                Some(c) if seen => format!("still {} after {timeout:?}: {}", c.reason, c.message),
                _ => format!(
                    "the operator did not take generation {generation} within {timeout:?}: is it running and watching namespace {}?",
                    cluster.namespace
                ),
            };
            return Err(not_ready(cluster, &f, why).await);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn not_ready(cluster: &Cluster, f: &NurFunction, reason: String) -> DeployError {
    let label = f.metadata.name.clone().unwrap_or_default();
    let report = match status::report(cluster, f).await {
        Ok(r) => r,
        Err(e) => format!("(no report: {e})"),
    };
    DeployError::NotReady {
        label,
        reason,
        report,
    }
}

/// `12.3 KiB`.
pub fn bytesize(n: usize) -> String {
    match n {
        0..1024 => format!("{n} B"),
        1024..1_048_576 => format!("{:.1} KiB", n as f64 / 1024.0),
        _ => format!("{:.1} MiB", n as f64 / 1_048_576.0),
    }
}

/// The outcome line of a deployed function.
pub fn outcome(d: &Deployed, width: usize) -> String {
    let applied = if d.created {
        "created"
    } else if d.changed {
        "updated"
    } else {
        "unchanged"
    };
    let upload = match d.upload {
        Upload::Written => format!("uploaded {}", bytesize(d.size)),
        Upload::AlreadyThere => "already in the store".into(),
    };
    let routes = if d.routes.is_empty() {
        String::new()
    } else {
        format!("  gateway: {}", d.routes.join(", "))
    };
    format!(
        "{:width$}  {applied:9}  {}  {upload:20}  ready {}  {}{routes}",
        d.label,
        status::short_digest(&format!("sha256:{}", d.sha256)),
        d.ready_replicas,
        d.endpoint,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(bytesize(512), "512 B");
        assert_eq!(bytesize(12_595), "12.3 KiB");
        assert_eq!(bytesize(3 << 20), "3.0 MiB");
    }
}
