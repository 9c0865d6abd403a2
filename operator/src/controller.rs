//! The reconciler, in named stages:
//!
//! 1. validate: the spec ([`Input::new`], pure) and what the operator's
//!    [`SpecPolicy`] allows, then the module ([`crate::module_check`]). A
//!    module that cannot be served sets ModuleValid=False, emits an Event and
//!    applies nothing: running pods are left alone. With
//!    [`Config::compile_artifacts`], its native code is compiled once per
//!    digest ([`crate::native_code`]); the rollout waits for it.
//! 2. build: the pure builders ([`crate::deployment`], [`crate::service`],
//!    [`crate::hpa`], [`crate::pdb`]).
//! 3. apply: server-side apply ([`crate::apply`]); an HPA or PDB no longer
//!    wanted is deleted. A refused object sets Ready=False (ApplyFailed).
//! 4. status: [`crate::status`], pure, written only when it changed.
//!
//! Every function is re-checked every [`Config::recheck`]: without a pin a
//! new upload rolls the Deployment to the new digest.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ResourceRequirements, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Api, Client, Resource, ResourceExt};

use crate::apply::{self, Applied, api};
use crate::crd::{NurFunction, NurFunctionStatus};
use crate::health::Metrics;
use crate::idle::Sleep;
use crate::meta::{FIELD_MANAGER, Input, InvalidSpec, MANAGED_BY_SELECTOR};
use crate::module_check::{self, Checked, ModuleChecker};
use crate::native_code::{self, Native};
use crate::reason::Reason;
use crate::spec_policy::SpecPolicy;
use crate::{deployment, hpa, pdb, service, status};

/// The worker image when `--worker-image` is not given.
pub const DEFAULT_WORKER_IMAGE: &str =
    concat!("ghcr.io/nur-dev/nur-worker:", env!("CARGO_PKG_VERSION"));

/// The largest module the operator checks by default (`--max-module-size`).
pub const DEFAULT_MAX_MODULE_BYTES: u64 = 64 * 1024 * 1024;

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
    /// What module fetches may reach, how long they wait, the size limit.
    pub storage: nur_module::Policy,
    /// Longest one function's storage work may take in all.
    pub storage_bound: Duration,
    /// Which risky spec fields functions may set.
    pub spec_policy: SpecPolicy,
    /// The gateway's TCP route ports (a route outside is not taken).
    pub tcp_ports: std::ops::RangeInclusive<u16>,
    /// Compile each module digest once, in a Job, and have the pods load
    /// the stored native code (modules in object storage only).
    pub compile_artifacts: bool,
    /// Functions reconciled at once.
    pub concurrency: u16,
}

impl Config {
    /// The fetch policy for tenants' modules: no files, no loopback or
    /// link-local addresses, 5 s for any answer, no error bodies quoted.
    pub fn tenant_storage() -> nur_module::Policy {
        nur_module::Policy {
            allow_files: false,
            allow_local_addresses: false,
            timeout: Duration::from_secs(5),
            retries: 0,
            max_bytes: DEFAULT_MAX_MODULE_BYTES,
            quote_error_bodies: false,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            worker_image: DEFAULT_WORKER_IMAGE.into(),
            worker_resources: None,
            namespace: None,
            recheck: Duration::from_secs(60),
            storage: Self::tenant_storage(),
            storage_bound: Duration::from_secs(30),
            spec_policy: SpecPolicy::default(),
            tcp_ports: crate::routes::DEFAULT_TCP_PORTS,
            compile_artifacts: false,
            concurrency: DEFAULT_CONCURRENCY,
        }
    }
}

/// Functions reconciled at once by default: each reconcile mostly waits on
/// the API server, so more at once roll out more functions a second.
pub const DEFAULT_CONCURRENCY: u16 = 32;

/// Why a reconcile failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The spec cannot be built; waits for the object to change.
    #[error("invalid spec: {0}")]
    InvalidSpec(#[from] InvalidSpec),
    /// The spec asks for what this operator does not allow; waits for a change.
    #[error("{0}")]
    NotAllowed(String),
    /// Storage or the credentials Secret could not be read; retried.
    #[error(transparent)]
    Module(#[from] module_check::Error),
    /// Applying an owned object failed; retried.
    #[error(transparent)]
    Apply(#[from] apply::Error),
    /// The compile Job could not be created or read; retried.
    #[error(transparent)]
    NativeCode(#[from] native_code::Error),
    /// A Secret or ConfigMap of spec.env could not be read; retried.
    #[error(transparent)]
    EnvSource(#[from] crate::env_sources::Error),
    /// Writing the status failed; retried.
    #[error("status: {0}")]
    Status(#[source] kube::Error),
}

impl Error {
    /// Whether trying again without a change to the function may succeed.
    pub fn is_transient(&self) -> bool {
        !matches!(self, Self::InvalidSpec(_) | Self::NotAllowed(_))
    }
}

/// The watch caches of the owned kinds, with what was last applied.
pub struct OwnedObjects {
    pub deployments: Applied<Deployment>,
    pub services: Applied<Service>,
    pub hpas: Applied<HorizontalPodAutoscaler>,
    pub pdbs: Applied<PodDisruptionBudget>,
    /// The compile Jobs (fed only with [`Config::compile_artifacts`]).
    pub jobs: reflector::Store<Job>,
}

/// Shared state of the reconcilers.
pub struct Context {
    client: Client,
    config: Config,
    recorder: Recorder,
    modules: ModuleChecker,
    owned: OwnedObjects,
    /// Every watched NurFunction, for who holds which route.
    functions: reflector::Store<NurFunction>,
    /// Consecutive failures per object, for the backoff.
    failures: Mutex<HashMap<String, u32>>,
    metrics: Arc<Metrics>,
}

impl Context {
    /// A context for `client` over the caches of `owned`; `identity` names
    /// this replica in Events.
    pub fn new(
        client: Client,
        config: Config,
        metrics: Arc<Metrics>,
        identity: String,
        owned: OwnedObjects,
        functions: reflector::Store<NurFunction>,
    ) -> Self {
        let reporter = Reporter {
            controller: FIELD_MANAGER.into(),
            instance: Some(identity),
        };
        Context {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            modules: ModuleChecker::new(config.storage, config.storage_bound, config.recheck),
            config,
            owned,
            functions,
            failures: Mutex::default(),
            metrics,
        }
    }
}

/// The watch of owned objects: only those labelled as Nur's, not every
/// Deployment and Service of the cluster.
pub fn owned_watch() -> watcher::Config {
    watcher::Config::default().labels(MANAGED_BY_SELECTOR)
}

/// Runs the controller until the process is signalled.
pub async fn run(client: Client, config: Config, metrics: Arc<Metrics>, identity: String) {
    let functions: Api<NurFunction> = api(&client, config.namespace.as_deref());
    let ns = config.namespace.clone();
    // Only spec changes (a new generation) of a NurFunction and a gateway's
    // wake request trigger: its status writes and activity marks do not, so a status that keeps changing (an error text)
    // cannot loop. Owned objects trigger as usual; a timer re-checks.
    let (reader, writer) = reflector::store();
    let functions = watcher(functions, watcher::Config::default())
        .default_backoff()
        .modify(drop_managed_fields)
        .reflect(writer)
        .applied_objects()
        .predicate_filter(crate::idle::trigger, Default::default());
    // Owned objects: Nur's only (by label), each kind cached, so that an
    // object as last applied is read from the cache and not applied again.
    let applies = &metrics.applies;
    let (deployments, deployments_cache) = owned_stream::<Deployment>(&client, &ns, applies);
    let (services, services_cache) = owned_stream::<Service>(&client, &ns, applies);
    let (hpas, hpas_cache) = owned_stream::<HorizontalPodAutoscaler>(&client, &ns, applies);
    let (pdbs, pdbs_cache) = owned_stream::<PodDisruptionBudget>(&client, &ns, applies);
    // Compile Jobs are watched only when the operator makes them (and so
    // has the rights to).
    let (jobs_cache, jobs_writer) = reflector::store();
    let jobs = if config.compile_artifacts {
        watcher(api::<Job>(&client, ns.as_deref()), owned_watch())
            .default_backoff()
            .modify(drop_managed_fields)
            .reflect(jobs_writer)
            .touched_objects()
            .boxed()
    } else {
        futures::stream::pending().boxed()
    };
    let owned = OwnedObjects {
        deployments: deployments_cache,
        services: services_cache,
        hpas: hpas_cache,
        pdbs: pdbs_cache,
        jobs: jobs_cache,
    };
    let all_functions = reader.clone();
    Controller::for_stream(functions, reader)
        .owns_stream(deployments)
        .owns_stream(services)
        .owns_stream(hpas)
        .owns_stream(pdbs)
        .owns_stream(jobs)
        .with_config(kube::runtime::controller::Config::default().concurrency(config.concurrency))
        .shutdown_on_signal()
        .run(
            reconcile,
            error_policy,
            Arc::new(Context::new(
                client,
                config,
                metrics,
                identity,
                owned,
                all_functions,
            )),
        )
        .for_each(|res| async move {
            match res {
                Ok((obj, _)) => tracing::debug!(%obj, "reconciled"),
                Err(e) => tracing::warn!("reconcile: {e}"),
            }
        })
        .await;
}

/// A cached watch of the owned objects of kind `K`, as a trigger stream.
fn owned_stream<K: apply::Owned>(
    client: &Client,
    namespace: &Option<String>,
    applies: &prometheus_client::metrics::counter::Counter,
) -> (
    impl futures::Stream<Item = Result<K, watcher::Error>> + Send + 'static,
    Applied<K>,
) {
    let (reader, writer) = reflector::store();
    let stream = watcher(api::<K>(client, namespace.as_deref()), owned_watch())
        .default_backoff()
        .modify(drop_managed_fields)
        .reflect(writer)
        .touched_objects();
    (stream, Applied::new(reader, applies.clone()))
}

/// Caches keep no `managedFields`: nothing here reads them, and they are a
/// large part of each object (most of a Deployment's bytes in a watch cache).
fn drop_managed_fields<K: kube::Resource>(object: &mut K) {
    object.meta_mut().managed_fields = None;
}

/// What `f`'s routes come to among every watched function.
fn route_outcome(ctx: &Context, f: &NurFunction) -> crate::routes::Outcome {
    // Only functions with routes can hold one: one without needs no table,
    // and one with builds it from the routed functions alone.
    if f.spec.routes.is_none() {
        return crate::routes::Outcome::NoRoutes;
    }
    let all = ctx.functions.state();
    let own = key(f);
    let mut functions: Vec<&NurFunction> = all
        .iter()
        .map(|a| a.as_ref())
        .filter(|o| o.spec.routes.is_some() && key(o) != own)
        .collect();
    functions.push(f);
    let (_, mut outcomes) = crate::routes::build(functions, &ctx.config.tcp_ports);
    outcomes
        .remove(&own)
        .unwrap_or(crate::routes::Outcome::NoRoutes)
}

fn key(f: &NurFunction) -> String {
    format!("{}/{}", f.namespace().unwrap_or_default(), f.name_any())
}

/// Reconciles one NurFunction.
pub async fn reconcile(f: Arc<NurFunction>, ctx: Arc<Context>) -> Result<Action, Error> {
    ctx.metrics.reconciles.inc();
    let result = reconcile_stages(&f, &ctx).await;
    if result.is_ok() {
        ctx.failures.lock().unwrap().remove(&key(&f));
    }
    result
}

async fn reconcile_stages(f: &NurFunction, ctx: &Context) -> Result<Action, Error> {
    let recheck = Action::requeue(ctx.config.recheck);
    // Stage 1: validate the spec, then the module.
    let sleep = crate::idle::decide(f, k8s_openapi::jiff::Timestamp::now());
    let input = match sleep
        .clone()
        .map_err(crate::meta::InvalidSpec::IdleAfter)
        .and_then(|sleep| {
            let asleep = matches!(sleep, Sleep::Asleep { .. });
            Ok(Input::new(f, &ctx.config.worker_image)?.with_sleep(asleep))
        }) {
        Ok(input) => input,
        Err(e) => {
            let message = e.to_string();
            write_problem(ctx, f, status::not_ready(f, Reason::InvalidSpec, &message)).await?;
            return Err(e.into());
        }
    };
    if let Err(message) = ctx.config.spec_policy.check(&f.spec) {
        let reason = Reason::SpecNotAllowed;
        write_problem(ctx, f, status::not_ready(f, reason, &message)).await?;
        return Err(Error::NotAllowed(message));
    }
    // The Secrets and ConfigMaps of spec.env: not watched, so rechecked.
    if let Err(problem) = crate::env_sources::check(&ctx.client, f).await? {
        write_problem(
            ctx,
            f,
            status::not_ready(f, problem.reason, &problem.message),
        )
        .await?;
        return Ok(recheck);
    }
    let module = match ctx.modules.check(&ctx.client, f).await {
        Ok(Checked::Servable(m)) => m,
        Ok(Checked::Problem(problem)) => {
            ctx.metrics.module_problems.inc();
            write_problem(ctx, f, status::module_problem(f, &problem)).await?;
            return Ok(recheck);
        }
        Err(e) => {
            if let Some(st) = status::unreachable(f, e.reason(), &e.to_string()) {
                write_problem(ctx, f, st).await?;
            }
            return Err(e.into());
        }
    };
    let input = input
        .with_digest(&module.sha256)
        .with_default_resources(ctx.config.worker_resources.as_ref());
    // Stage 1b: native code once per digest; a new digest waits for it.
    let native = if ctx.config.compile_artifacts {
        native_code::ensure(&ctx.client, &ctx.owned.jobs, &ctx.functions, f, &input).await?
    } else {
        Native::NotAhead
    };
    if let Native::Compiling { job } = &native {
        patch_status(ctx, f, &status::compiling(f, job, &module.sha256)).await?;
        return Ok(Action::requeue(Duration::from_secs(15)));
    }
    // Stage 2: build (pure).
    let input = input.with_artifact(native.pin());
    let deployment = deployment::build(&input);
    let service = service::build(&input);
    let hpa = hpa::build(&input);
    let pdb = pdb::build(&input);
    // Stage 3: server-side apply.
    let applied = async {
        let owned = &ctx.owned;
        let applied = apply::apply(&ctx.client, &input, &deployment, &owned.deployments).await?;
        apply::apply(&ctx.client, &input, &service, &owned.services).await?;
        apply::apply_or_delete(&ctx.client, &input, hpa, &owned.hpas).await?;
        apply::apply_or_delete(&ctx.client, &input, pdb, &owned.pdbs).await?;
        Ok::<_, apply::Error>(applied)
    };
    let applied = match applied.await {
        Ok(applied) => applied,
        Err(e) => {
            let message = e.to_string();
            write_problem(ctx, f, status::not_ready(f, Reason::ApplyFailed, &message)).await?;
            return Err(e.into());
        }
    };
    // Stage 4: status.
    let status = status::servable(f, &input, &module, &applied);
    let status = status::routed(f, status, &route_outcome(ctx, f));
    let status = status::native(f, status, &native);
    let artifact =
        |s: Option<&NurFunctionStatus>| s.and_then(|s| s.module.as_ref()?.artifact.clone());
    if let Native::Known(known) = &native
        && artifact(f.status.as_ref()).as_ref() != Some(known)
    {
        let (type_, reason, note) = match (&known.sha256, &known.problem) {
            (Some(sha), _) => (
                EventType::Normal,
                "Compiled",
                format!("native code stored at {} (sha256 {sha})", known.url),
            ),
            (None, problem) => (
                EventType::Warning,
                "CompileFailed",
                format!(
                    "{}; the pods compile the module themselves",
                    problem.as_deref().unwrap_or("no artifact")
                ),
            ),
        };
        let action = format!("Compile-{}", &module.sha256[..12]);
        publish(ctx, f, type_, reason, &action, note).await;
    }
    let digest =
        |s: Option<&NurFunctionStatus>| s.and_then(|s| s.module.as_ref()).map(|m| m.digest.clone());
    if digest(f.status.as_ref()) != digest(Some(&status)) {
        let note = format!(
            "rolling to sha256:{} ({} bytes) from {}",
            module.sha256, module.size, f.spec.module.url
        );
        // One action per digest: the event recorder folds events of the
        // same action and reason into one series that keeps the first
        // note, which would show a later rollout as the first one.
        let action = format!("Rollout-{}", &module.sha256[..12]);
        publish(ctx, f, EventType::Normal, "ModuleRollout", &action, note).await;
    }
    patch_status(ctx, f, &status).await?;
    // An awake function that may go idle before the next re-check is
    // looked at again when it would.
    match sleep {
        Ok(Sleep::Awake { check_in: Some(d) }) if d < ctx.config.recheck => {
            Ok(Action::requeue(d + Duration::from_secs(1)))
        }
        _ => Ok(recheck),
    }
}

/// Writes a status that reports a problem, and publishes its Ready (or
/// ModuleValid) condition as a Warning Event when the status changed.
async fn write_problem(
    ctx: &Context,
    f: &NurFunction,
    status: NurFunctionStatus,
) -> Result<(), Error> {
    if f.status.as_ref() == Some(&status) {
        return Ok(());
    }
    patch_status(ctx, f, &status).await?;
    let reported = |type_: &str| {
        status
            .conditions
            .iter()
            .find(|c| c.type_ == type_ && c.status != "True")
            .cloned()
    };
    if let Some(c) = reported("ModuleValid").or_else(|| reported("Ready")) {
        publish(ctx, f, EventType::Warning, &c.reason, "Validate", c.message).await;
    }
    Ok(())
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

/// Invalid or refused specs wait for a change; every other error retries
/// with an exponential backoff (5s doubling, at most 5 minutes) that only
/// a successful reconcile resets.
pub fn error_policy(f: Arc<NurFunction>, error: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!("{}: {error}", key(&f));
    ctx.metrics.reconcile_errors.inc();
    if !error.is_transient() {
        return Action::await_change();
    }
    let mut failures = ctx.failures.lock().unwrap();
    let n = failures.entry(key(&f)).or_insert(0);
    *n = n.saturating_add(1);
    Action::requeue(backoff(*n))
}

/// Delay after `n` consecutive failures.
pub fn backoff(n: u32) -> Duration {
    let secs = 5u64.saturating_mul(1 << n.saturating_sub(1).min(6));
    Duration::from_secs(secs.min(300))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_five_minutes() {
        let got: Vec<u64> = (1..=9).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(got, [5, 10, 20, 40, 80, 160, 300, 300, 300]);
    }

    #[test]
    fn only_spec_errors_wait_for_a_change() {
        assert!(!Error::NotAllowed("x".into()).is_transient());
        assert!(!Error::InvalidSpec(InvalidSpec::AdminPort(9090)).is_transient());
        let status = Error::Status(kube::Error::LinesCodecMaxLineLengthExceeded);
        assert!(status.is_transient());
    }
}
