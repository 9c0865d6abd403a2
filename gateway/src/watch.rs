//! The two watches: NurFunctions become the route table (the operator's
//! own rule of who holds a route), and the EndpointSlices of Nur's
//! Services become each function's ready pods. Each change rebuilds the
//! part it touches from the watch's cache.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::reflector;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use nur_operator::crd::NurFunction;

use crate::state::{FunctionKey, State, Watch};

/// The name of the function's port on its Service (and EndpointSlices).
const PORT_NAME: &str = "function";

/// The EndpointSlices the gateway believes: those Kubernetes' own
/// endpointslice controller keeps for the operator's Services (a slice
/// someone wrote by hand could send a route's traffic anywhere).
const SLICES: &str = "app.kubernetes.io/managed-by=nur-operator,endpointslice.kubernetes.io/managed-by=endpointslice-controller.k8s.io";

fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    <K as kube::Resource>::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Keeps the route table current until the process ends.
pub async fn functions(
    client: Client,
    namespace: Option<String>,
    tcp_ports: RangeInclusive<u16>,
    state: Arc<State>,
) {
    let api = api::<NurFunction>(&client, namespace.as_deref());
    follow(
        api,
        watcher::Config::default(),
        &state,
        Watch::Functions,
        |all| {
            let (table, _) =
                nur_operator::routes::build(all.iter().map(|f| f.as_ref()), &tcp_ports);
            tracing::debug!(
                http = table.http.len(),
                tls = table.tls.len(),
                tcp = table.tcp.len(),
                "routes"
            );
            state.set_table(table);
        },
    )
    .await
}

/// Keeps every function's ready endpoints current until the process ends.
pub async fn endpoints(client: Client, namespace: Option<String>, state: Arc<State>) {
    let api = api::<EndpointSlice>(&client, namespace.as_deref());
    let config = watcher::Config::default().labels(SLICES);
    follow(api, config, &state, Watch::Endpoints, |all| {
        state.set_endpoints(ready_endpoints(all))
    })
    .await
}

/// Watches `api` into a cache and calls `changed` with all of it after
/// the first listing and after every change since.
async fn follow<K>(
    api: Api<K>,
    config: watcher::Config,
    state: &State,
    which: Watch,
    mut changed: impl FnMut(&[Arc<K>]),
) where
    K: kube::Resource
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    let (reader, writer) = reflector::store::<K>();
    let stream = watcher(api, config).default_backoff().reflect(writer);
    futures::pin_mut!(stream);
    while let Some(event) = stream.next().await {
        match event {
            Ok(watcher::Event::InitApply(_) | watcher::Event::Init) => continue,
            Ok(watcher::Event::InitDone) => state.set_synced(which),
            Ok(_) => {}
            Err(e) => {
                tracing::warn!("watching {}: {e}", K::plural(&Default::default()));
                continue;
            }
        }
        changed(&reader.state());
    }
}

/// The ready (and not terminating) endpoints of each function's Service.
pub fn ready_endpoints(slices: &[Arc<EndpointSlice>]) -> HashMap<FunctionKey, Vec<SocketAddr>> {
    let mut out: HashMap<FunctionKey, Vec<SocketAddr>> = HashMap::new();
    for slice in slices {
        let labels = slice.metadata.labels.as_ref();
        let Some(service) = labels.and_then(|l| l.get("kubernetes.io/service-name")) else {
            continue;
        };
        let namespace = slice.metadata.namespace.clone().unwrap_or_default();
        let port = slice
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(PORT_NAME))
            .and_then(|p| p.port)
            .and_then(|p| u16::try_from(p).ok());
        let Some(port) = port else { continue };
        let list = out.entry(format!("{namespace}/{service}")).or_default();
        for e in slice.endpoints.iter().flatten() {
            let conditions = e.conditions.clone().unwrap_or_default();
            // An unset `ready` means ready (the API's own rule).
            if conditions.ready == Some(false) || conditions.terminating == Some(true) {
                continue;
            }
            if let Some(ip) = e.addresses.first().and_then(|a| a.parse::<IpAddr>().ok()) {
                list.push(SocketAddr::new(ip, port));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_ready_endpoints_of_the_function_port_count() {
        let slice: EndpointSlice = serde_yaml::from_str(
            "apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: echo-abc
  namespace: fns
  labels: {kubernetes.io/service-name: echo}
addressType: IPv4
ports: [{name: function, port: 8080}]
endpoints:
  - addresses: [10.85.0.4]
    conditions: {ready: true}
  - addresses: [10.85.0.5]
    conditions: {ready: false}
  - addresses: [10.85.0.6]
    conditions: {ready: false, terminating: true}
  - addresses: [10.85.0.7]
",
        )
        .unwrap();
        let got = ready_endpoints(&[Arc::new(slice)]);
        assert_eq!(
            got["fns/echo"],
            vec![
                "10.85.0.4:8080".parse::<SocketAddr>().unwrap(),
                "10.85.0.7:8080".parse().unwrap()
            ]
        );
    }
}
