//! Stage 3 of a reconcile: server-side apply of owned objects with the one
//! field manager [`FIELD_MANAGER`], and deletion of an object of an owned
//! kind that is no longer wanted.

use k8s_openapi::NamespaceResourceScope;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::{Api, Client, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::meta::{FIELD_MANAGER, Input};

/// An object the operator owns: namespaced, (de)serializable.
pub trait Owned:
    Resource<Scope = NamespaceResourceScope, DynamicType = ()>
    + Clone
    + Serialize
    + DeserializeOwned
    + std::fmt::Debug
{
}

impl<K> Owned for K where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + Serialize
        + DeserializeOwned
        + std::fmt::Debug
{
}

/// An owned object the API server refused.
#[derive(Debug, thiserror::Error)]
#[error("apply {kind} {name}: {source}")]
pub struct Error {
    pub kind: String,
    pub name: String,
    #[source]
    pub source: kube::Error,
}

fn error<K: Owned>(name: &str, source: kube::Error) -> Error {
    Error {
        kind: K::kind(&()).into_owned(),
        name: name.into(),
        source,
    }
}

/// An API for `K` in `namespace`, or in every namespace.
pub fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = NamespaceResourceScope>,
    <K as Resource>::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Server-side applies `object`; returns what the API server holds now.
pub async fn apply<K: Owned>(client: &Client, input: &Input<'_>, object: &K) -> Result<K, Error> {
    let api: Api<K> = Api::namespaced(client.clone(), input.namespace);
    let pp = PatchParams::apply(FIELD_MANAGER).force();
    api.patch(input.name, &pp, &Patch::Apply(object))
        .await
        .map_err(|e| error::<K>(input.name, e))
}

/// Applies `object`, or deletes the object of that kind and name when it is
/// no longer wanted (autoscaling or a PDB turned off) and this function
/// owns it.
pub async fn apply_or_delete<K: Owned>(
    client: &Client,
    input: &Input<'_>,
    object: Option<K>,
) -> Result<(), Error> {
    if let Some(o) = object {
        apply(client, input, &o).await?;
        return Ok(());
    }
    let api: Api<K> = Api::namespaced(client.clone(), input.namespace);
    match api.get_opt(input.name).await {
        Ok(Some(existing)) if owned_by(&existing, input) => {}
        Ok(_) => return Ok(()),
        Err(e) => return Err(error::<K>(input.name, e)),
    }
    match api.delete(input.name, &DeleteParams::background()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(error::<K>(input.name, e)),
    }
}

fn owned_by<K: Resource>(object: &K, input: &Input) -> bool {
    let uid = input.function.metadata.uid.as_deref();
    object
        .meta()
        .owner_references
        .iter()
        .flatten()
        .any(|o| o.controller == Some(true) && Some(o.uid.as_str()) == uid)
}
