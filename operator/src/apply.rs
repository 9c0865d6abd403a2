//! Stage 3 of a reconcile: server-side apply of owned objects with the one
//! field manager [`FIELD_MANAGER`], and deletion of an object of an owned
//! kind that is no longer wanted.
//!
//! Nothing is written when nothing changed: [`Applied`] remembers, per
//! object, a digest of what was last applied and the version of the live
//! object that apply produced (its generation, or its resourceVersion for
//! kinds without one), and reads the live object from the watch cache. An
//! object whose desired state and live version are both as last applied is
//! not applied again; an object someone else changed (a new generation) or
//! deleted is.

use std::collections::HashMap;
use std::sync::Mutex;

use k8s_openapi::NamespaceResourceScope;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, Resource};
use prometheus_client::metrics::counter::Counter;
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use crate::meta::{FIELD_MANAGER, Input};

/// An object the operator owns: namespaced, (de)serializable.
pub trait Owned:
    Resource<Scope = NamespaceResourceScope, DynamicType = ()>
    + Clone
    + Serialize
    + DeserializeOwned
    + std::fmt::Debug
    + Send
    + Sync
    + 'static
{
}

impl<K> Owned for K where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + Serialize
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static
{
}

/// An object's namespace and name.
type Key = (String, String);

/// A digest of what was last applied, and the live version it produced.
type Last = (Vec<u8>, String);

/// The watch cache of one owned kind, and what was last applied of it.
pub struct Applied<K: Owned> {
    store: Store<K>,
    last: Mutex<HashMap<Key, Last>>,
    /// Counts the applies actually sent.
    applies: Counter,
}

impl<K: Owned> Applied<K> {
    /// Remembers applies over the objects of `store`, counting them in
    /// `applies`.
    pub fn new(store: Store<K>, applies: Counter) -> Self {
        Self {
            store,
            last: Mutex::default(),
            applies,
        }
    }

    fn live(&self, input: &Input) -> Option<std::sync::Arc<K>> {
        self.store
            .get(&ObjectRef::new(input.name).within(input.namespace))
    }
}

/// The version of a live object that only changes with its spec: its
/// generation, or its resourceVersion for kinds without one (Services).
fn version<K: Resource>(object: &K) -> String {
    let meta = object.meta();
    match meta.generation {
        Some(g) => format!("generation {g}"),
        None => format!(
            "resourceVersion {}",
            meta.resource_version.as_deref().unwrap_or("")
        ),
    }
}

fn digest<K: Serialize>(object: &K) -> Vec<u8> {
    Sha256::digest(serde_json::to_vec(object).unwrap_or_default()).to_vec()
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

/// Server-side applies `object` unless it is as last applied; returns what
/// the API server holds now (from the watch cache when not applied).
pub async fn apply<K: Owned>(
    client: &Client,
    input: &Input<'_>,
    object: &K,
    applied: &Applied<K>,
) -> Result<K, Error> {
    let key = (input.namespace.to_string(), input.name.to_string());
    let desired = digest(object);
    if let Some(live) = applied.live(input) {
        let last = applied.last.lock().unwrap().get(&key).cloned();
        if last == Some((desired.clone(), version(live.as_ref()))) {
            return Ok(live.as_ref().clone());
        }
    }
    let api: Api<K> = Api::namespaced(client.clone(), input.namespace);
    let pp = PatchParams::apply(FIELD_MANAGER).force();
    applied.applies.inc();
    let now = api
        .patch(input.name, &pp, &Patch::Apply(object))
        .await
        .map_err(|e| error::<K>(input.name, e))?;
    applied
        .last
        .lock()
        .unwrap()
        .insert(key, (desired, version(&now)));
    Ok(now)
}

/// Applies `object`, or deletes the object of that kind and name when it is
/// no longer wanted (autoscaling or a PDB turned off) and this function
/// owns it.
pub async fn apply_or_delete<K: Owned>(
    client: &Client,
    input: &Input<'_>,
    object: Option<K>,
    applied: &Applied<K>,
) -> Result<(), Error> {
    if let Some(o) = object {
        apply(client, input, &o, applied).await?;
        return Ok(());
    }
    match applied.live(input) {
        Some(existing) if owned_by(existing.as_ref(), input) => {}
        _ => return Ok(()),
    }
    let api: Api<K> = Api::namespaced(client.clone(), input.namespace);
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
