//! `nur rm NAME`: deletes the NurFunction (the operator's objects go with
//! it, by owner reference, first) and waits until it is gone. Its module stays in the store, unless
//! `--purge` and no other function of the namespace serves the same bytes;
//! then the native code the operator stored beside it goes too.

use kube::api::{DeleteParams, ListParams};

use crate::cluster::Cluster;
use crate::status::{self, StatusError};
use crate::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum RmError {
    #[error(transparent)]
    Status(#[from] StatusError),
    #[error(
        "{name} is being deleted but still there after {waited:?} (its pods drain first): `nur status {name}` shows what is left"
    )]
    StillThere {
        name: String,
        waited: std::time::Duration,
    },
    #[error("{name} is deleted, but its module is not: {source}")]
    Purge { name: String, source: StoreError },
}

/// What `nur rm` did with the module.
#[derive(Debug, PartialEq, Eq)]
pub enum Module {
    /// Left in the store (no `--purge`).
    Kept(String),
    /// Deleted from the store.
    Purged(String),
    /// Left because these functions serve it too.
    Shared(String, Vec<String>),
}

/// How long `nur rm` waits for the function and its pods to be gone.
const GONE_WITHIN: std::time::Duration = std::time::Duration::from_secs(120);

/// Deletes `name` and waits until it is gone; with `purge`, its module
/// too unless another function of the namespace serves it.
pub async fn rm(cluster: &Cluster, name: &str, purge: bool) -> Result<Module, RmError> {
    let f = status::get(cluster, name).await?;
    let url = f.spec.module.url.clone();
    let artifact = f
        .status
        .as_ref()
        .and_then(|s| s.module.as_ref()?.artifact.as_ref())
        .map(|a| a.url.clone());
    cluster
        .functions()
        .delete(name, &DeleteParams::foreground())
        .await
        .map_err(|e| StatusError::Cluster(cluster.error(e)))?;
    // Foreground: the NurFunction goes once its pods and Service have gone.
    let deadline = std::time::Instant::now() + GONE_WITHIN;
    while cluster
        .functions()
        .get_opt(name)
        .await
        .map_err(|e| StatusError::Cluster(cluster.error(e)))?
        .is_some()
    {
        if std::time::Instant::now() > deadline {
            return Err(RmError::StillThere {
                name: name.into(),
                waited: GONE_WITHIN,
            });
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    if !purge {
        return Ok(Module::Kept(url));
    }
    let others: Vec<String> = cluster
        .functions()
        .list(&ListParams::default())
        .await
        .map_err(|e| StatusError::Cluster(cluster.error(e)))?
        .items
        .into_iter()
        .filter(|o| o.spec.module.url == url && o.metadata.name.as_deref() != Some(name))
        .filter_map(|o| o.metadata.name)
        .collect();
    if !others.is_empty() {
        return Ok(Module::Shared(url, others));
    }
    for object in std::iter::once(&url).chain(&artifact) {
        Store::delete(object)
            .await
            .map_err(|source| RmError::Purge {
                name: name.into(),
                source,
            })?;
    }
    Ok(Module::Purged(url))
}
