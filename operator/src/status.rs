//! Stage 4, pure: the NurFunctionStatus for each outcome of a reconcile
//! (module servable and applied, module problem, spec problem, storage or
//! API server unreachable, an owned object refused). Conditions keep their
//! lastTransitionTime while their status does not change.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::crd::{ModuleStatus, NurFunction, NurFunctionStatus};
use crate::meta::{Input, selector_string};
use crate::module_check::{ModuleProblem, Servable};
use crate::native_code::Native;
use crate::reason::Reason;
use crate::routes::Outcome;
use crate::service;

/// The condition types the operator writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConditionType {
    /// The module was fetched and follows the ABI.
    ModuleValid,
    /// The Deployment has its minimum of ready pods.
    Available,
    /// Every desired pod serves the current module.
    Ready,
    /// The gateway holds every route of the function.
    Routed,
    /// The module's native code was compiled once for every pod.
    NativeCode,
}

impl ConditionType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ModuleValid => "ModuleValid",
            Self::Available => "Available",
            Self::Ready => "Ready",
            Self::Routed => "Routed",
            Self::NativeCode => "NativeCode",
        }
    }
}

/// A condition's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Truth {
    True,
    False,
    Unknown,
}

impl Truth {
    fn as_str(self) -> &'static str {
        match self {
            Self::True => "True",
            Self::False => "False",
            Self::Unknown => "Unknown",
        }
    }
}

/// Conditions being written for one generation, over the previous ones.
struct Conditions<'a> {
    previous: &'a [Condition],
    generation: Option<i64>,
    conditions: Vec<Condition>,
}

impl<'a> Conditions<'a> {
    /// Starts from `start`, over `previous`.
    fn new(f: &'a NurFunction, start: Vec<Condition>) -> Self {
        let previous = f.status.as_ref().map_or(&[][..], |s| &s.conditions[..]);
        Self {
            previous,
            generation: f.metadata.generation,
            conditions: start,
        }
    }

    /// Sets condition `type_`, keeping its lastTransitionTime from the
    /// previous conditions when its status did not change.
    fn set(&mut self, type_: ConditionType, status: Truth, reason: Reason, message: &str) {
        self.set_raw(type_.as_str(), status.as_str(), reason.as_str(), message);
    }

    /// [`Conditions::set`] with words of another controller (the
    /// Deployment's Available condition).
    fn set_raw(&mut self, type_: &str, status: &str, reason: &str, message: &str) {
        let since = self
            .previous
            .iter()
            .find(|c| c.type_ == type_ && c.status == status)
            .map(|c| c.last_transition_time.clone())
            .unwrap_or_else(|| Time(k8s_openapi::jiff::Timestamp::now()));
        let c = Condition {
            type_: type_.into(),
            status: status.into(),
            reason: reason.into(),
            message: message.into(),
            observed_generation: self.generation,
            last_transition_time: since,
        };
        match self.conditions.iter_mut().find(|c| c.type_ == type_) {
            Some(old) => *old = c,
            None => self.conditions.push(c),
        }
    }
}

fn previous(f: &NurFunction) -> NurFunctionStatus {
    f.status.clone().unwrap_or_default()
}

/// A module that cannot be served: ModuleValid=False and Ready=False with
/// the problem; the rest of the status (the running digest) is kept.
pub fn module_problem(f: &NurFunction, problem: &ModuleProblem) -> NurFunctionStatus {
    let mut status = previous(f);
    let mut c = Conditions::new(f, status.conditions.clone());
    c.set(
        ConditionType::ModuleValid,
        Truth::False,
        problem.reason,
        &problem.message,
    );
    c.set(
        ConditionType::Ready,
        Truth::False,
        problem.reason,
        &problem.message,
    );
    status.conditions = c.conditions;
    status.observed_generation = f.metadata.generation;
    status
}

/// A spec that cannot be applied (invalid, not allowed, or refused by the
/// API server): Ready=False with `reason`.
pub fn not_ready(f: &NurFunction, reason: Reason, message: &str) -> NurFunctionStatus {
    let mut status = previous(f);
    let mut c = Conditions::new(f, status.conditions.clone());
    c.set(ConditionType::Ready, Truth::False, reason, message);
    status.conditions = c.conditions;
    status.observed_generation = f.metadata.generation;
    status
}

/// Storage or the API server does not answer: ModuleValid=Unknown with
/// `reason` (Ready is left as it is: running pods keep serving). `None`
/// when the function already shows that reason: the message carries
/// timings, and writing it on every retry would make each retry a change.
pub fn unreachable(f: &NurFunction, reason: Reason, message: &str) -> Option<NurFunctionStatus> {
    let mut status = previous(f);
    let module_valid = ConditionType::ModuleValid.as_str();
    if status
        .conditions
        .iter()
        .any(|c| c.type_ == module_valid && c.reason == reason.as_str())
    {
        return None;
    }
    let mut c = Conditions::new(f, status.conditions.clone());
    c.set(ConditionType::ModuleValid, Truth::Unknown, reason, message);
    status.conditions = c.conditions;
    Some(status)
}

/// `status` with the Routed condition for `outcome` (none without routes).
pub fn routed(
    f: &NurFunction,
    mut status: NurFunctionStatus,
    outcome: &Outcome,
) -> NurFunctionStatus {
    let routed = ConditionType::Routed.as_str();
    status.conditions.retain(|c| c.type_ != routed);
    let (truth, reason, message) = match outcome {
        Outcome::NoRoutes => return status,
        Outcome::Routed { routes } => (
            Truth::True,
            Reason::Routed,
            format!("the gateway holds its {routes} routes"),
        ),
        Outcome::Conflict { route, holder } => (
            Truth::False,
            Reason::RouteConflict,
            format!("{route} is held by {holder}, an older function; its other routes are taken"),
        ),
        Outcome::OutOfRange { port, range } => (
            Truth::False,
            Reason::PortOutOfRange,
            format!("tcp port {port} is outside the gateway's TCP ports {range}"),
        ),
    };
    let mut c = Conditions::new(f, status.conditions);
    c.set(ConditionType::Routed, truth, reason, &message);
    status.conditions = c.conditions;
    status
}

/// A new digest whose native code is being compiled: Ready=False
/// (Compiling) while the rollout waits; the rest of the status is kept.
pub fn compiling(f: &NurFunction, job: &str, sha256: &str) -> NurFunctionStatus {
    let mut status = not_ready(
        f,
        Reason::Compiling,
        &format!(
            "compiling sha256:{sha256} once for every pod (Job {job}); the rollout waits for it"
        ),
    );
    let mut c = Conditions::new(f, status.conditions);
    c.set(
        ConditionType::NativeCode,
        Truth::Unknown,
        Reason::Compiling,
        &format!("Job {job} compiles the module"),
    );
    status.conditions = c.conditions;
    status
}

/// `status` with the NativeCode condition and the artifact for `native`
/// (neither when the module is not compiled ahead).
pub fn native(
    f: &NurFunction,
    mut status: NurFunctionStatus,
    native: &Native,
) -> NurFunctionStatus {
    let Native::Known(artifact) = native else {
        return status;
    };
    let (truth, reason, message) = match (&artifact.sha256, &artifact.problem) {
        (Some(sha), _) => (
            Truth::True,
            Reason::Compiled,
            format!("pods load {} (sha256 {sha})", artifact.url),
        ),
        (None, problem) => (
            Truth::False,
            Reason::CompileFailed,
            format!(
                "{}; the pods compile the module themselves",
                problem.as_deref().unwrap_or("no artifact")
            ),
        ),
    };
    let mut c = Conditions::new(f, status.conditions);
    c.set(ConditionType::NativeCode, truth, reason, &message);
    status.conditions = c.conditions;
    if let Some(module) = &mut status.module {
        module.artifact = Some(artifact.clone());
    }
    status
}

/// A servable module and the Deployment the API server holds now.
pub fn servable(
    f: &NurFunction,
    input: &Input,
    module: &Servable,
    applied: &Deployment,
) -> NurFunctionStatus {
    let ds = applied.status.clone().unwrap_or_default();
    let desired = applied.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let current = ds.observed_generation >= applied.metadata.generation;
    let mut c = Conditions::new(f, Vec::new());
    c.set(
        ConditionType::ModuleValid,
        Truth::True,
        Reason::Checked,
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
        // The Deployment's own words, not one of our reasons.
        Some(a) => c.set_raw(
            ConditionType::Available.as_str(),
            &a.status,
            a.reason.as_deref().unwrap_or("Deployment"),
            a.message.as_deref().unwrap_or(""),
        ),
        None => c.set(
            ConditionType::Available,
            Truth::False,
            Reason::Pending,
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
    let (truth, reason, message) = if input.asleep {
        let left = ds.replicas.unwrap_or(0);
        if current && left == 0 {
            (
                Truth::True,
                Reason::ScaledToZero,
                format!(
                    "idle: no pods; nur-gateway wakes it on its next connection to {}",
                    module.sha256
                ),
            )
        } else {
            (
                Truth::False,
                Reason::Progressing,
                format!("scaling to zero for being idle: {left} pods left"),
            )
        }
    } else if ready {
        (
            Truth::True,
            Reason::Ready,
            format!("{ready_replicas}/{desired} pods serve {}", module.sha256),
        )
    } else if !current {
        (
            Truth::False,
            Reason::Progressing,
            "the Deployment controller has not seen the new spec yet".into(),
        )
    } else {
        (
            Truth::False,
            Reason::Progressing,
            format!(
                "{ready_replicas}/{desired} pods ready, {updated} updated to {}, {old} old",
                module.sha256
            ),
        )
    };
    c.set(ConditionType::Ready, truth, reason, &message);
    NurFunctionStatus {
        observed_generation: f.metadata.generation,
        conditions: c.conditions,
        module: Some(ModuleStatus {
            digest: format!("sha256:{}", module.sha256),
            size: module.size as i64,
            abi: Some(module.abi.clone()),
            artifact: None,
        }),
        replicas: Some(ds.replicas.unwrap_or(0)),
        ready_replicas: Some(ready_replicas),
        selector: Some(selector_string(input.name)),
        endpoint: Some(service::endpoint(input)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::crd::AbiSummary;
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
        let input = Input::new(&f, IMAGE).unwrap().with_digest(DIGEST);
        let module = Servable {
            sha256: DIGEST.into(),
            size: 14135,
            abi: AbiSummary::default(),
        };
        let rolling = deployment(
            "metadata: {generation: 2}\nspec: {replicas: 2, selector: {}, template: {}}\n\
             status: {observedGeneration: 2, replicas: 3, readyReplicas: 2, updatedReplicas: 1,\
             conditions: [{type: Available, status: 'True', reason: MinimumReplicasAvailable,\
             message: Deployment has minimum availability.}]}",
        );
        let st = servable(&f, &input, &module, &rolling);
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
                size: 14135,
                abi: Some(AbiSummary::default()),
                artifact: None,
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
        let input = Input::new(&f, IMAGE).unwrap().with_digest(DIGEST);
        let done = deployment(
            "metadata: {generation: 2}\nspec: {replicas: 2, selector: {}, template: {}}\n\
             status: {observedGeneration: 2, replicas: 2, readyReplicas: 2, updatedReplicas: 2}",
        );
        let next = servable(&f, &input, &module, &done);
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
        let st = servable(&f, &input, &module, &stale);
        assert_eq!(st.conditions[2].status, "False");

        // Every new pod ready, but a surge pod of the old template remains.
        let surge = deployment(
            "metadata: {generation: 2}\nspec: {replicas: 2, selector: {}, template: {}}\n\
             status: {observedGeneration: 2, replicas: 3, readyReplicas: 3, updatedReplicas: 2}",
        );
        let st = servable(&f, &input, &module, &surge);
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
    fn storage_down_is_written_once() {
        let f = function(
            "apiVersion: nur.dev/v1alpha1\nkind: NurFunction\nspec: {module: {url: s3://b/k}}",
        );
        let first = unreachable(&f, Reason::StorageUnreachable, "down (after 1.2s)").unwrap();
        assert_eq!(first.conditions[0].reason, "StorageUnreachable");
        assert_eq!(first.conditions[0].status, "Unknown");
        let mut again = f.clone();
        again.status = Some(first);
        assert_eq!(
            unreachable(&again, Reason::StorageUnreachable, "down (after 2.5s)"),
            None
        );
        // Another cause is written.
        let other = unreachable(&again, Reason::CredentialsUnreadable, "403").unwrap();
        assert_eq!(other.conditions[0].reason, "CredentialsUnreadable");
    }
}
