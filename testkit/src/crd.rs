//! CustomResourceDefinitions: applied, and waited for until Established
//! (the API server serves the kind).

use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};

use crate::{Error, TestEnv, eventually};

/// Server-side applies `crd` as field manager `manager` (forced) and waits
/// (at most `timeout`) until it is Established.
pub async fn install(
    env: &TestEnv,
    crd: &CustomResourceDefinition,
    manager: &str,
    timeout: Duration,
) -> Result<(), Error> {
    let client = env.client().await?;
    let name = crd.metadata.name.as_deref().expect("the CRD has a name");
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.patch(
        name,
        &PatchParams::apply(manager).force(),
        &Patch::Apply(crd),
    )
    .await
    .map_err(|e| Error(format!("apply CRD {name}: {e}")))?;
    wait_established(&client, name, timeout).await
}

/// Waits (at most `timeout`) until CRD `name` has Established=True.
pub async fn wait_established(client: &Client, name: &str, timeout: Duration) -> Result<(), Error> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    eventually(&format!("CRD {name} Established"), timeout, || {
        let crds = crds.clone();
        async move {
            let c = crds.get(name).await.ok()?;
            c.status?
                .conditions?
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True")
                .then_some(())
        }
    })
    .await
}
