//! The reconciler, in named stages:
//!
//! 1. [`validate`]: the spec (pure), then fetch and check the module with
//!    `nur_module` (the worker's own check), with the store settings of
//!    spec.module.credentialsSecret when it names one (the variables the
//!    pods will see), else the operator's own. A module that cannot be served
//!    sets ModuleValid=False, emits an Event and applies nothing: running
//!    pods are left alone.
//! 2. build: the pure builders ([`crate::deployment`], [`crate::service`],
//!    [`crate::hpa`], [`crate::pdb`]).
//! 3. [`apply`]: server-side apply with the one field manager
//!    [`FIELD_MANAGER`]; an HPA or PDB no longer wanted is deleted.
//! 4. [`status`]: conditions mirrored from the applied Deployment.
//!
//! Every function is re-checked every [`Config::recheck`]: without a pin a
//! new upload rolls the Deployment to the new digest. The module is
//! downloaded again only when its version (ETag) changes.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ResourceRequirements, Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::{WatchStreamExt, predicates, reflector, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use nur_module::Settings;

use crate::crd::{ModuleStatus, NurFunction, NurFunctionStatus};
use crate::health::Metrics;
use crate::meta::{FIELD_MANAGER, Input, InvalidSpec, selector_string};
use crate::{deployment, hpa, pdb, service};

/// The worker image when `--worker-image` is not given.
pub const DEFAULT_WORKER_IMAGE: &str = "ghcr.io/nur-dev/nur-worker:0.1.0";

/// How the controller runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// Worker image for functions without spec.image.
    pub worker_image: String,
    /// Worker container resources for functions without spec.resources.
    pub worker_resources: Option<ResourceRequirements>,
    /// Watch only this namespace; all namespaces when `None`.
    pub namespace: Option<String>,
    /// How often every function's module is re-checked.
    pub recheck: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            worker_image: DEFAULT_WORKER_IMAGE.into(),
            worker_resources: None,
            namespace: None,
            recheck: Duration::from_secs(60),
        }
    }
}

/// Why a reconcile failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The spec cannot be built; waits for the object to change.
    #[error("invalid spec: {0}")]
    InvalidSpec(#[from] InvalidSpec),
    /// Object storage did not answer; retried with backoff.
    #[error("module: {0}")]
    ModuleUnreachable(#[source] nur_module::LoadError),
    /// Applying an owned object failed.
    #[error("apply {kind}: {source}")]
    Apply {
        kind: String,
        #[source]
        source: kube::Error,
    },
    /// Writing the status failed.
    #[error("status: {0}")]
    Status(#[source] kube::Error),
    /// Reading the credentials Secret failed (other than not found).
    #[error("credentials Secret {name}: {source}")]
    Credentials {
        name: String,
        #[source]
        source: kube::Error,
    },
}

/// A module that passed the check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    /// Hex sha256 of the stored object.
    pub sha256: String,
    /// Size of the stored object.
    pub size: u64,
}

/// Why the module cannot be served: ModuleValid=False with this text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleProblem {
    /// Condition reason (PascalCase).
    pub reason: &'static str,
    /// The error text, naming the URL and the rule or both digests.
    pub message: String,
}

/// Shared state of the reconcilers.
pub struct Context {
    client: Client,
    config: Config,
    recorder: Recorder,
    /// url -> (version, check result), so an unchanged module is not
    /// downloaded again.
    modules: ModuleCache,
    /// Consecutive transient failures per object, for the backoff.
    failures: Mutex<HashMap<String, u32>>,
    metrics: Arc<Metrics>,
}

impl Context {
    /// A context for `client`.
    pub fn new(client: Client, config: Config, metrics: Arc<Metrics>) -> Self {
        let reporter = Reporter {
            controller: FIELD_MANAGER.into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Context {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            config,
            modules: Mutex::default(),
            failures: Mutex::default(),
            metrics,
        }
    }
}

/// Runs the controller until the process is signalled.
pub async fn run(client: Client, config: Config, metrics: Arc<Metrics>) {
    let functions: Api<NurFunction> = api(&client, config.namespace.as_deref());
    let wc = watcher::Config::default();
    let ns = config.namespace.clone();
    // Only spec changes (a new generation) of a NurFunction trigger: its
    // status writes do not, so a status that keeps changing (an error text)
    // cannot loop. Owned objects trigger as usual; a timer re-checks.
    let (reader, writer) = reflector::store();
    let functions = watcher(functions, wc.clone())
        .default_backoff()
        .reflect(writer)
        .applied_objects()
        .predicate_filter(predicates::generation, Default::default());
    Controller::for_stream(functions, reader)
        .owns(api::<Deployment>(&client, ns.as_deref()), wc.clone())
        .owns(api::<Service>(&client, ns.as_deref()), wc.clone())
        .owns(
            api::<HorizontalPodAutoscaler>(&client, ns.as_deref()),
            wc.clone(),
        )
        .owns(api::<PodDisruptionBudget>(&client, ns.as_deref()), wc)
        // Each reconcile may download a module: bound how many run at once.
        .with_config(kube::runtime::controller::Config::default().concurrency(8))
        .shutdown_on_signal()
        .run(
            reconcile,
            error_policy,
            Arc::new(Context::new(client, config, metrics)),
        )
        .for_each(|res| async move {
            match res {
                Ok((obj, _)) => tracing::debug!(%obj, "reconciled"),
                Err(e) => tracing::warn!("reconcile: {e}"),
            }
        })
        .await;
}

fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    <K as Resource>::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

fn key(f: &NurFunction) -> String {
    format!("{}/{}", f.namespace().unwrap_or_default(), f.name_any())
}

/// Reconciles one NurFunction.
pub async fn reconcile(f: Arc<NurFunction>, ctx: Arc<Context>) -> Result<Action, Error> {
    ctx.metrics.reconciles.fetch_add(1, Ordering::Relaxed);
    let result = reconcile_stages(&f, &ctx).await;
    if !matches!(
        result,
        Err(Error::ModuleUnreachable(_) | Error::Apply { .. })
    ) {
        ctx.failures.lock().unwrap().remove(&key(&f));
    }
    result
}

async fn reconcile_stages(f: &NurFunction, ctx: &Context) -> Result<Action, Error> {
    let recheck = Action::requeue(ctx.config.recheck);
    // Stage 1: validate the spec, then the module.
    if let Err(e) = validate_spec(f, &ctx.config.worker_image) {
        let problem = ModuleProblem {
            reason: "InvalidSpec",
            message: e.to_string(),
        };
        report_problem(f, ctx, &problem).await?;
        return Err(e.into());
    }
    let module = match validate(f, ctx).await {
        Ok(Ok(m)) => m,
        Err(e) => {
            report_unreachable(f, ctx, &e).await;
            return Err(e);
        }
        Ok(Err(problem)) => {
            ctx.metrics.module_problems.fetch_add(1, Ordering::Relaxed);
            report_problem(f, ctx, &problem).await?;
            return Ok(recheck);
        }
    };
    // Stage 2: build (pure).
    let input = Input::new(f, &module.sha256, &ctx.config.worker_image)?
        .with_default_resources(ctx.config.worker_resources.as_ref());
    let deployment = deployment::build(&input);
    let service = service::build(&input);
    let hpa = hpa::build(&input);
    let pdb = pdb::build(&input);
    // Stage 3: server-side apply.
    ctx.metrics.applies.fetch_add(2, Ordering::Relaxed);
    let applied = apply(&ctx.client, &input, &deployment).await?;
    apply(&ctx.client, &input, &service).await?;
    apply_or_delete(&ctx.client, &input, hpa).await?;
    apply_or_delete(&ctx.client, &input, pdb).await?;
    // Stage 4: status.
    let previous = f.status.clone().unwrap_or_default();
    let status = status(f, &input, &module, &applied, &previous.conditions);
    if previous.module.as_ref().map(|m| &m.digest) != status.module.as_ref().map(|m| &m.digest) {
        let note = format!(
            "rolling to {} ({} bytes) from {}",
            status
                .module
                .as_ref()
                .map(|m| m.digest.as_str())
                .unwrap_or(""),
            module.size,
            f.spec.module.url
        );
        publish(ctx, f, EventType::Normal, "ModuleRollout", "Apply", note).await;
    }
    patch_status(ctx, f, &status).await?;
    Ok(recheck)
}

/// The pure part of validation: what the builders refuse.
pub fn validate_spec(f: &NurFunction, image: &str) -> Result<(), InvalidSpec> {
    Input::new(f, "", image).map(|_| ())
}

/// Stage 1: fetch and check the module, and compare it with the pin. The
/// outer error is transient (storage unreachable); the inner one is a
/// module that cannot be served.
pub async fn validate(
    f: &NurFunction,
    ctx: &Context,
) -> Result<Result<Checked, ModuleProblem>, Error> {
    let url = &f.spec.module.url;
    let variables = match &f.spec.module.credentials_secret {
        None => None,
        Some(name) => match credentials(f, ctx, name).await? {
            Ok(variables) => Some(variables),
            Err(problem) => return Ok(Err(problem)),
        },
    };
    let settings = variables
        .as_ref()
        .map_or(Settings::Environment, Settings::Variables);
    let checked = check_module(url, settings, &ctx.modules).await?;
    Ok(checked.and_then(|m| match &f.spec.module.sha256 {
        Some(pin) if *pin != m.sha256 => Err(ModuleProblem {
            reason: "DigestMismatch",
            message: format!(
                "{url}: sha256 is {}, but spec.module.sha256 pins {pin}; running pods are left alone",
                m.sha256
            ),
        }),
        _ => Ok(m),
    }))
}

/// The variables of the credentials Secret `name`, as the pods get them
/// through envFrom; a missing Secret is a problem of the function.
async fn credentials(
    f: &NurFunction,
    ctx: &Context,
    name: &str,
) -> Result<Result<BTreeMap<String, String>, ModuleProblem>, Error> {
    let namespace = f.namespace().unwrap_or_default();
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &namespace);
    let secret = secrets
        .get_opt(name)
        .await
        .map_err(|source| Error::Credentials {
            name: format!("{namespace}/{name}"),
            source,
        })?;
    let Some(secret) = secret else {
        return Ok(Err(ModuleProblem {
            reason: "CredentialsSecretNotFound",
            message: format!(
                "Secret {namespace}/{name} named by spec.module.credentialsSecret does not exist"
            ),
        }));
    };
    Ok(Ok(secret
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
        .collect()))
}

/// url -> (version, result). The version is always read first with the
/// function's own settings, so a function without access to the object
/// never gets another function's cached result.
type ModuleCache = Mutex<HashMap<String, (String, Result<Checked, ModuleProblem>)>>;

async fn check_module(
    url: &str,
    settings: Settings<'_>,
    cache: &ModuleCache,
) -> Result<Result<Checked, ModuleProblem>, Error> {
    let unsupported = |e: nur_module::SourceError| {
        let e = nur_module::LoadError::from(e);
        if e.is_transient() {
            Err(Error::ModuleUnreachable(e))
        } else {
            Ok(Err(problem(&e)))
        }
    };
    let source = match nur_module::Source::parse_with(url, settings) {
        Ok(s) => s,
        Err(e) => return unsupported(e),
    };
    let version = match source.version().await {
        Ok(v) => v,
        Err(e) => return unsupported(e),
    };
    if let Some((v, result)) = cache.lock().unwrap().get(url)
        && *v == version
    {
        return Ok(result.clone());
    }
    // Cache under the version of the bytes read, not the one asked above:
    // the object may have changed in between.
    let (stored, version) = match source.fetch_versioned().await {
        Ok(fetched) => fetched,
        Err(e) => return unsupported(e),
    };
    let result = match nur_module::Module::from_stored(source, &stored) {
        Ok(m) => Ok(Checked {
            sha256: m.sha256,
            size: m.size,
        }),
        Err(e) => Err(problem(&e)),
    };
    cache
        .lock()
        .unwrap()
        .insert(url.to_string(), (version, result.clone()));
    Ok(result)
}

fn problem(e: &nur_module::LoadError) -> ModuleProblem {
    use nur_module::{AbiError, LoadError, SourceError};
    let reason = match e {
        LoadError::Source(SourceError::NotFound { .. }) => "ModuleNotFound",
        LoadError::Source(SourceError::AccessDenied { .. }) => "AccessDenied",
        LoadError::Source(SourceError::TooLarge { .. }) => "ModuleTooLarge",
        LoadError::Source(_) => "UnsupportedURL",
        LoadError::Abi {
            error: AbiError::Violations(_),
            ..
        } => "BreaksABI",
        LoadError::Abi { .. } | LoadError::Zstd { .. } => "InvalidModule",
        #[allow(unreachable_patterns)]
        _ => "InvalidModule",
    };
    ModuleProblem {
        reason,
        message: e.to_string(),
    }
}

/// ModuleValid=False (or the spec problem), Ready=False, an Event; nothing
/// is applied, so running pods are left alone.
async fn report_problem(
    f: &NurFunction,
    ctx: &Context,
    problem: &ModuleProblem,
) -> Result<(), Error> {
    let previous = f.status.clone().unwrap_or_default();
    let generation = f.metadata.generation;
    let mut status = previous.clone();
    status.observed_generation = generation;
    let module_type = if problem.reason == "InvalidSpec" {
        "Ready"
    } else {
        "ModuleValid"
    };
    set_condition(
        &mut status.conditions,
        &previous.conditions,
        generation,
        module_type,
        "False",
        problem.reason,
        &problem.message,
    );
    set_condition(
        &mut status.conditions,
        &previous.conditions,
        generation,
        "Ready",
        "False",
        problem.reason,
        &problem.message,
    );
    let changed = status != previous;
    patch_status(ctx, f, &status).await?;
    if changed {
        publish(
            ctx,
            f,
            EventType::Warning,
            problem.reason,
            "Validate",
            problem.message.clone(),
        )
        .await;
    }
    Ok(())
}

/// ModuleValid=Unknown while storage does not answer (Ready is left as it
/// is: running pods keep serving); best effort, the error is retried.
async fn report_unreachable(f: &NurFunction, ctx: &Context, error: &Error) {
    let previous = f.status.clone().unwrap_or_default();
    // The error text carries timings: writing it on every retry would make
    // each retry a status change, and each status change a new reconcile.
    if previous
        .conditions
        .iter()
        .any(|c| c.type_ == "ModuleValid" && c.reason == "StorageUnreachable")
    {
        return;
    }
    let mut status = previous.clone();
    let message = error.to_string();
    set_condition(
        &mut status.conditions,
        &previous.conditions,
        f.metadata.generation,
        "ModuleValid",
        "Unknown",
        "StorageUnreachable",
        &message,
    );
    if status == previous {
        return;
    }
    if let Err(e) = patch_status(ctx, f, &status).await {
        tracing::warn!("{}: {e}", key(f));
    }
    publish(
        ctx,
        f,
        EventType::Warning,
        "StorageUnreachable",
        "Validate",
        message,
    )
    .await;
}

/// Stage 3: server-side apply of one owned object, returning what the API
/// server holds now.
pub async fn apply<K>(client: &Client, input: &Input<'_>, object: &K) -> Result<K, Error>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + Serialize
        + DeserializeOwned
        + std::fmt::Debug,
    <K as Resource>::DynamicType: Default,
{
    let api: Api<K> = Api::namespaced(client.clone(), input.namespace);
    let pp = PatchParams::apply(FIELD_MANAGER).force();
    api.patch(input.name, &pp, &Patch::Apply(object))
        .await
        .map_err(|source| Error::Apply {
            kind: kind::<K>(),
            source,
        })
}

/// Applies `object`, or deletes the object of that kind and name when it is
/// no longer wanted (autoscaling or a PDB turned off).
async fn apply_or_delete<K>(
    client: &Client,
    input: &Input<'_>,
    object: Option<K>,
) -> Result<(), Error>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + Serialize
        + DeserializeOwned
        + std::fmt::Debug,
    <K as Resource>::DynamicType: Default,
{
    if let Some(o) = object {
        apply(client, input, &o).await?;
        return Ok(());
    }
    let api: Api<K> = Api::namespaced(client.clone(), input.namespace);
    match api.get_opt(input.name).await {
        Ok(Some(existing)) if owned_by(&existing, input) => {}
        Ok(_) => return Ok(()),
        Err(source) => {
            return Err(Error::Apply {
                kind: kind::<K>(),
                source,
            });
        }
    }
    match api.delete(input.name, &DeleteParams::background()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(source) => Err(Error::Apply {
            kind: kind::<K>(),
            source,
        }),
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

fn kind<K: Resource>() -> String
where
    <K as Resource>::DynamicType: Default,
{
    K::kind(&Default::default()).into_owned()
}

/// Stage 4: the status, from the module and what the API server holds.
pub fn status(
    f: &NurFunction,
    input: &Input,
    module: &Checked,
    applied: &Deployment,
    previous: &[Condition],
) -> NurFunctionStatus {
    let generation = f.metadata.generation;
    let ds = applied.status.clone().unwrap_or_default();
    let desired = applied.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let current = ds.observed_generation >= applied.metadata.generation;
    let mut conditions = Vec::new();
    set_condition(
        &mut conditions,
        previous,
        generation,
        "ModuleValid",
        "True",
        "Checked",
        &format!(
            "{} ({} bytes) follows the Nur ABI",
            f.spec.module.url, module.size
        ),
    );
    let available = ds
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Available");
    match available {
        Some(c) => set_condition(
            &mut conditions,
            previous,
            generation,
            "Available",
            &c.status,
            c.reason.as_deref().unwrap_or("Deployment"),
            c.message.as_deref().unwrap_or(""),
        ),
        None => set_condition(
            &mut conditions,
            previous,
            generation,
            "Available",
            "False",
            "Pending",
            "the Deployment reports no availability yet",
        ),
    }
    let ready_replicas = ds.ready_replicas.unwrap_or(0);
    let updated = ds.updated_replicas.unwrap_or(0);
    // Every pod on the new template: pods of the old one still count in
    // `replicas` while a rollout replaces them.
    let old = ds.replicas.unwrap_or(0).saturating_sub(updated);
    let ready =
        current && ready_replicas >= desired && updated >= desired && old == 0 && desired > 0;
    let (reason, message) = if ready {
        (
            "Ready",
            format!("{ready_replicas}/{desired} pods serve {}", module.sha256),
        )
    } else if !current {
        (
            "Progressing",
            "the Deployment controller has not seen the new spec yet".into(),
        )
    } else {
        (
            "Progressing",
            format!(
                "{ready_replicas}/{desired} pods ready, {updated} updated to {}, {old} old",
                module.sha256
            ),
        )
    };
    set_condition(
        &mut conditions,
        previous,
        generation,
        "Ready",
        if ready { "True" } else { "False" },
        reason,
        &message,
    );
    NurFunctionStatus {
        observed_generation: generation,
        conditions,
        module: Some(ModuleStatus {
            digest: format!("sha256:{}", module.sha256),
            size: module.size as i64,
        }),
        replicas: Some(ds.replicas.unwrap_or(0)),
        ready_replicas: Some(ready_replicas),
        selector: Some(selector_string(input.name)),
        endpoint: Some(service::endpoint(input)),
    }
}

/// Sets condition `type_` in `conditions`, keeping its lastTransitionTime
/// from `previous` when its status did not change.
fn set_condition(
    conditions: &mut Vec<Condition>,
    previous: &[Condition],
    generation: Option<i64>,
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
) {
    let since = previous
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| Time(k8s_openapi::jiff::Timestamp::now()));
    let c = Condition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.into(),
        message: message.into(),
        observed_generation: generation,
        last_transition_time: since,
    };
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(old) => *old = c,
        None => conditions.push(c),
    }
}

async fn patch_status(
    ctx: &Context,
    f: &NurFunction,
    status: &NurFunctionStatus,
) -> Result<(), Error> {
    if f.status.as_ref() == Some(status) {
        return Ok(());
    }
    let api: Api<NurFunction> =
        Api::namespaced(ctx.client.clone(), &f.namespace().unwrap_or_default());
    let patch = serde_json::json!({ "status": status });
    api.patch_status(
        &f.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await
    .map_err(Error::Status)?;
    Ok(())
}

async fn publish(
    ctx: &Context,
    f: &NurFunction,
    type_: EventType,
    reason: &str,
    action: &str,
    note: String,
) {
    let ev = Event {
        type_,
        reason: reason.into(),
        note: Some(note.chars().take(1000).collect()),
        action: action.into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&ev, &f.object_ref(&())).await {
        tracing::warn!("event for {}: {e}", key(f));
    }
}

/// Invalid specs wait for a change; transient errors retry with an
/// exponential backoff (5s doubling, at most 5 minutes).
pub fn error_policy(f: Arc<NurFunction>, error: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!("{}: {error}", key(&f));
    ctx.metrics.reconcile_errors.fetch_add(1, Ordering::Relaxed);
    match error {
        Error::InvalidSpec(_) => Action::await_change(),
        _ => {
            let mut failures = ctx.failures.lock().unwrap();
            let n = failures.entry(key(&f)).or_insert(0);
            *n = n.saturating_add(1);
            Action::requeue(backoff(*n))
        }
    }
}

/// Delay after `n` consecutive transient failures.
pub fn backoff(n: u32) -> Duration {
    let secs = 5u64.saturating_mul(1 << n.saturating_sub(1).min(6));
    Duration::from_secs(secs.min(300))
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::meta::testing::{DIGEST, IMAGE, function};

    fn deployment(yaml: &str) -> Deployment {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn status_mirrors_the_deployment() {
        let mut f = function(
            "apiVersion: nur.dev/v1alpha1\nkind: NurFunction\nmetadata: {generation: 4}\n\
             spec: {module: {url: s3://b/k}, replicas: 2}",
        );
        let input = Input::new(&f, DIGEST, IMAGE).unwrap();
        let module = Checked {
            sha256: DIGEST.into(),
            size: 14135,
        };
        let rolling = deployment(
            "metadata: {generation: 2}\nspec: {replicas: 2, selector: {}, template: {}}\n\
             status: {observedGeneration: 2, replicas: 3, readyReplicas: 2, updatedReplicas: 1,\
             conditions: [{type: Available, status: 'True', reason: MinimumReplicasAvailable,\
             message: Deployment has minimum availability.}]}",
        );
        let st = status(&f, &input, &module, &rolling, &[]);
        let conds: Vec<(&str, &str, &str)> = st
            .conditions
            .iter()
            .map(|c| (c.type_.as_str(), c.status.as_str(), c.reason.as_str()))
            .collect();
        assert_eq!(
            conds,
            [
                ("ModuleValid", "True", "Checked"),
                ("Available", "True", "MinimumReplicasAvailable"),
                ("Ready", "False", "Progressing"),
            ]
        );
        assert!(
            st.conditions
                .iter()
                .all(|c| c.observed_generation == Some(4))
        );
        assert_eq!(st.observed_generation, Some(4));
        assert_eq!(
            st.module,
            Some(ModuleStatus {
                digest: format!("sha256:{DIGEST}"),
                size: 14135
            })
        );
        assert_eq!((st.replicas, st.ready_replicas), (Some(3), Some(2)));
        assert_eq!(st.endpoint.as_deref(), Some("echo.fns.svc:8080"));
        assert_eq!(
            st.selector.as_deref(),
            Some("app.kubernetes.io/instance=echo,app.kubernetes.io/name=nur-function")
        );

        // Rolled out: Ready; ModuleValid keeps its transition time.
        f.status = Some(st.clone());
        let input = Input::new(&f, DIGEST, IMAGE).unwrap();
        let done = deployment(
            "metadata: {generation: 2}\nspec: {replicas: 2, selector: {}, template: {}}\n\
             status: {observedGeneration: 2, replicas: 2, readyReplicas: 2, updatedReplicas: 2}",
        );
        let next = status(&f, &input, &module, &done, &st.conditions);
        let ready = next.conditions.iter().find(|c| c.type_ == "Ready").unwrap();
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("True", "Ready")
        );
        assert_eq!(next.conditions[0], st.conditions[0]);
        let available = &next.conditions[1];
        assert_eq!(
            (available.status.as_str(), available.reason.as_str()),
            ("False", "Pending")
        );

        // A Deployment controller that has not seen the new generation.
        let stale = deployment(
            "metadata: {generation: 3}\nspec: {replicas: 2, selector: {}, template: {}}\n\
             status: {observedGeneration: 2, replicas: 2, readyReplicas: 2, updatedReplicas: 2}",
        );
        let st = status(&f, &input, &module, &stale, &[]);
        assert_eq!(st.conditions[2].status, "False");

        // Every new pod ready, but a surge pod of the old template remains.
        let surge = deployment(
            "metadata: {generation: 2}\nspec: {replicas: 2, selector: {}, template: {}}\n\
             status: {observedGeneration: 2, replicas: 3, readyReplicas: 3, updatedReplicas: 2}",
        );
        let st = status(&f, &input, &module, &surge, &[]);
        let ready = st.conditions.iter().find(|c| c.type_ == "Ready").unwrap();
        assert_eq!(
            (ready.status.as_str(), ready.message.as_str()),
            (
                "False",
                format!("3/2 pods ready, 2 updated to {DIGEST}, 1 old").as_str()
            )
        );
    }

    #[test]
    fn module_problems_name_the_rule() {
        let source = nur_module::Source::parse("s3://b/k.wasm").unwrap();
        let wat = br#"(module (import "wasi_snapshot_preview1" "fd_write" (func)))"#;
        let e = nur_module::Module::from_stored(source, wat).unwrap_err();
        let p = problem(&e);
        assert_eq!(p.reason, "BreaksABI");
        assert!(
            p.message.starts_with("s3://b/k.wasm: breaks the Nur ABI: "),
            "{}",
            p.message
        );
        assert!(
            p.message.contains("WASI is not supported yet"),
            "{}",
            p.message
        );
    }

    #[test]
    fn backoff_doubles_up_to_five_minutes() {
        let got: Vec<u64> = (1..=9).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(got, [5, 10, 20, 40, 80, 160, 300, 300, 300]);
    }
}
