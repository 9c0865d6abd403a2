//! Polling: a condition until it holds, a Deployment until it is pinned.

use std::time::{Duration, Instant};

use crate::{Error, TestNamespace};

/// Polls `f` every 100 ms until it returns `Some`, for at most `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> Result<T, Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return Ok(v);
        }
        if start.elapsed() > timeout {
            return Err(Error(format!(
                "timed out after {timeout:?} waiting for {what}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits (at most `timeout`) until Deployment `name` in `ns` runs its first
/// container with `--sha256 SHA256`, the worker's module pin; returns it.
pub async fn deployment_pinned(
    ns: &TestNamespace,
    name: &str,
    sha256: &str,
    timeout: Duration,
) -> Result<k8s_openapi::api::apps::v1::Deployment, Error> {
    eventually(
        &format!("Deployment {name} pinned to {sha256}"),
        timeout,
        || {
            let api = ns.api::<k8s_openapi::api::apps::v1::Deployment>();
            async move {
                let d = api.get_opt(name).await.ok()??;
                let args = d.spec.as_ref()?.template.spec.as_ref()?.containers[0]
                    .args
                    .clone()?;
                args.windows(2)
                    .any(|w| w[0] == "--sha256" && w[1] == sha256)
                    .then_some(d)
            }
        },
    )
    .await
}
