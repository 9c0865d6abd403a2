//! The console's JSON: the context (namespace, cluster, a first problem),
//! one function in full, scaling and deleting it. The function list comes
//! through [`super::live`].

use axum::Json;
use axum::extract::{Path, State};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use nur_operator::crd::{AbiSummary, NurFunction};
use serde::{Deserialize, Serialize};

use super::App;
use super::error::{ConsoleError, Problem};
use crate::status;

/// The namespace and cluster the console starts in, and what already
/// stands in the way (no cluster, no CRD, no rights to list functions).
#[derive(Serialize)]
pub struct Context {
    pub namespace: Option<String>,
    pub cluster: Option<String>,
    pub gateway: Option<String>,
    pub problem: Option<Problem>,
}

pub async fn context(State(app): State<App>) -> Json<Context> {
    let problem = match app.cluster("") {
        Err(e) => Some(e.problem()),
        Ok(c) => match c.functions().list(&ListParams::default().limit(1)).await {
            Ok(_) => None,
            Err(e) => Some(ConsoleError::from(c.error(e)).problem()),
        },
    };
    let (namespace, cluster) = app.context().unzip();
    Json(Context {
        namespace: namespace.map(str::to_string),
        cluster: cluster.map(str::to_string),
        gateway: app.gateway.clone(),
        problem,
    })
}

/// A function as the list shows it.
#[derive(Serialize, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub namespace: String,
    pub name: String,
    /// True, False or Unknown (no condition yet).
    pub ready: String,
    pub reason: String,
    /// The message of the first condition that is not True: the last problem.
    pub problem: Option<String>,
    pub replicas: i32,
    pub ready_replicas: i32,
    pub scaled_to_zero: bool,
    pub digest: Option<String>,
    pub routes: Vec<String>,
    /// RFC 3339.
    pub created: Option<String>,
}

pub fn summary(f: &NurFunction) -> Summary {
    let st = f.status.clone().unwrap_or_default();
    let ready = status::condition(f, "Ready");
    let problem = st
        .conditions
        .iter()
        .find(|c| c.status != "True")
        .map(|c| format!("{}: {}", c.reason, c.message));
    Summary {
        namespace: f.metadata.namespace.clone().unwrap_or_default(),
        name: f.metadata.name.clone().unwrap_or_default(),
        ready: ready.map_or("Unknown".into(), |c| c.status.clone()),
        reason: ready.map(|c| c.reason.clone()).unwrap_or_default(),
        problem,
        replicas: st.replicas.unwrap_or(0),
        ready_replicas: st.ready_replicas.unwrap_or(0),
        scaled_to_zero: ready.is_some_and(|c| c.reason == "ScaledToZero"),
        digest: st.module.as_ref().map(|m| m.digest.clone()),
        routes: status::routes(f),
        created: f
            .metadata
            .creation_timestamp
            .as_ref()
            .map(|t| t.0.to_string()),
    }
}

/// One function in full.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Detail {
    pub summary: Summary,
    pub module: Module,
    pub conditions: Vec<Condition>,
    pub pods: Vec<PodRow>,
    pub events: Vec<EventRow>,
    /// `spec.replicas` when the function is not autoscaled.
    pub replicas: Option<i32>,
    pub autoscaling: Option<serde_json::Value>,
    pub scale_to_zero: Option<serde_json::Value>,
    pub limits: Option<serde_json::Value>,
    pub port: i32,
}

#[derive(Serialize)]
pub struct Module {
    pub url: String,
    pub digest: Option<String>,
    pub size: Option<i64>,
    pub abi: Option<AbiSummary>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub type_: String,
    pub status: String,
    pub reason: String,
    pub message: String,
    pub since: String,
}

#[derive(Serialize)]
pub struct PodRow {
    pub name: String,
    pub ready: bool,
    pub state: String,
    pub restarts: String,
    pub node: String,
}

#[derive(Serialize)]
pub struct EventRow {
    pub object: String,
    #[serde(rename = "type")]
    pub type_: String,
    pub reason: String,
    pub message: String,
    pub count: i32,
}

pub async fn detail(
    State(app): State<App>,
    Path((namespace, name)): Path<(String, String)>,
) -> Result<Json<Detail>, ConsoleError> {
    let cluster = app.cluster(&namespace)?;
    let f = status::get(&cluster, &name).await?;
    let pods: Vec<Pod> = status::pods(&cluster, &name).await?;
    let events = status::events(&cluster, &name, &pods).await?;
    let st = f.status.clone().unwrap_or_default();
    Ok(Json(Detail {
        summary: summary(&f),
        module: Module {
            url: f.spec.module.url.clone(),
            digest: st.module.as_ref().map(|m| m.digest.clone()),
            size: st.module.as_ref().map(|m| m.size),
            abi: st.module.and_then(|m| m.abi),
        },
        conditions: st
            .conditions
            .iter()
            .map(|c| Condition {
                type_: c.type_.clone(),
                status: c.status.clone(),
                reason: c.reason.clone(),
                message: c.message.clone(),
                since: c.last_transition_time.0.to_string(),
            })
            .collect(),
        pods: pods
            .iter()
            .map(|p| {
                let [name, ready, state, restarts, node] = status::pod_row(p);
                PodRow {
                    name,
                    ready: ready == "true",
                    state,
                    restarts,
                    node,
                }
            })
            .collect(),
        events: events
            .iter()
            .map(|e| EventRow {
                object: status::event_object(e),
                type_: e.type_.clone().unwrap_or_default(),
                reason: e.reason.clone().unwrap_or_default(),
                message: e.message.clone().unwrap_or_default().trim().to_string(),
                count: e.count.unwrap_or(1),
            })
            .collect(),
        replicas: f.spec.fixed_replicas(),
        autoscaling: as_json(&f.spec.autoscaling),
        scale_to_zero: as_json(&f.spec.scale_to_zero),
        limits: as_json(&f.spec.limits),
        port: f.spec.port,
    }))
}

#[derive(Deserialize)]
pub struct Scale {
    pub replicas: i32,
}

/// Sets `spec.replicas` (the operator scales the Deployment to it).
pub async fn scale(
    State(app): State<App>,
    Path((namespace, name)): Path<(String, String)>,
    Json(scale): Json<Scale>,
) -> Result<Json<Summary>, ConsoleError> {
    let cluster = app.cluster(&namespace)?;
    let f = status::get(&cluster, &name).await?;
    if f.spec.autoscaling.is_some() {
        return Err(ConsoleError::BadRequest(format!(
            "{name} is autoscaled between its spec.autoscaling minReplicas and maxReplicas: change those, not replicas"
        )));
    }
    let patch = serde_json::json!({"spec": {"replicas": scale.replicas}});
    let f = cluster
        .functions()
        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|e| cluster.error(e))?;
    Ok(Json(summary(&f)))
}

/// Deletes the function (its module stays in the store).
pub async fn delete(
    State(app): State<App>,
    Path((namespace, name)): Path<(String, String)>,
) -> Result<Json<serde_json::Value>, ConsoleError> {
    let cluster = app.cluster(&namespace)?;
    cluster
        .functions()
        .delete(&name, &DeleteParams::default())
        .await
        .map_err(|e| cluster.error(e))?;
    Ok(Json(serde_json::json!({"deleted": name})))
}

/// A spec part as JSON for the page, `None` when it is not set.
fn as_json<T: Serialize>(part: &Option<T>) -> Option<serde_json::Value> {
    part.as_ref().and_then(|v| serde_json::to_value(v).ok())
}
