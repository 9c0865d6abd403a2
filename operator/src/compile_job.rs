//! The compile Job, pure: `nur-worker compile` once per module digest, run
//! where and as the function's worker pods run (same image, node choice,
//! credentials and hardening, no ports, no Service selects it), storing
//! the artifact beside the module; and what a finished Job's pod says.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{Job, JobCondition, JobSpec};
use k8s_openapi::api::core::v1::{Pod, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::deployment;
use crate::meta::{FIELD_MANAGER, Input};

/// Name of the compile container.
pub const CONTAINER: &str = "compile";

/// Longest a compile may take, its pod's start included; past it the Job
/// fails and the pods compile the module themselves.
pub const DEADLINE_SECONDS: i64 = 180;

/// How long a finished Job stays (its outcome is on the function's status).
pub const TTL_SECONDS: i32 = 600;

/// Where the termination message is written; the kubelet's default path.
const TERMINATION_LOG: &str = "/dev/termination-log";

/// The artifact's URL for a module at `module_url` with hex digest
/// `sha256`: beside the module, named by the digest. `None` for modules
/// not in object storage (the artifact could not be stored there).
pub fn artifact_url(module_url: &str, sha256: &str) -> Option<String> {
    let scheme = module_url.split_once("://")?.0;
    matches!(
        scheme,
        "s3" | "s3a" | "gs" | "az" | "abfs" | "abfss" | "azure"
    )
    .then(|| format!("{module_url}.{}.artifact", &sha256[..sha256.len().min(16)]))
}

/// The Job's name: the function's (shortened) and the digest's start, so
/// a new digest gets a Job of its own and a finished one is not rerun.
pub fn job_name(function: &str, sha256: &str) -> String {
    let function = &function[..function.len().min(44)];
    format!(
        "{}-compile-{}",
        function.trim_end_matches('-'),
        &sha256[..sha256.len().min(10)]
    )
}

/// Labels of the Job and its pod: Nur's, but not the worker pods'. No
/// `app.kubernetes.io/instance`: what selects a function's pods by it
/// (`kubectl logs -l app.kubernetes.io/instance=NAME`, the Service, the
/// PDB) keeps selecting only the pods that serve.
pub fn labels(function: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".into(), "nur-compile".into()),
        ("nur.dev/function".into(), function.into()),
        ("app.kubernetes.io/managed-by".into(), FIELD_MANAGER.into()),
    ])
}

/// The compile Job of `input`'s function and digest, storing at `artifact`.
pub fn build(input: &Input, artifact: &str) -> Job {
    let worker = deployment::build(input);
    let template = worker.spec.expect("a Deployment has a spec").template;
    let mut pod = template.spec.expect("a Deployment has a pod spec");
    let mut args = vec![
        "compile".to_string(),
        input.function.spec.module.url.clone(),
        "--upload".into(),
        artifact.into(),
        "--sha256".into(),
        input.sha256.into(),
        "--termination-log".into(),
        TERMINATION_LOG.into(),
    ];
    if input.function.spec.module.credentials_secret.is_some() {
        args.push("--static-credentials".into());
    }
    let container = &mut pod.containers[0];
    container.name = CONTAINER.into();
    container.args = Some(args);
    container.ports = None;
    container.readiness_probe = None;
    container.liveness_probe = None;
    container.termination_message_path = Some(TERMINATION_LOG.into());
    container.termination_message_policy = Some("FallbackToLogsOnError".into());
    // Compiling takes more memory than serving a small module; a bounded
    // amount, so a hostile module costs at most this much.
    container.resources = Some(ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".into(), Quantity("100m".into())),
            ("memory".into(), Quantity("128Mi".into())),
        ])),
        limits: Some(BTreeMap::from([("memory".into(), Quantity("1Gi".into()))])),
        ..Default::default()
    });
    pod.restart_policy = Some("Never".into());
    pod.termination_grace_period_seconds = Some(5);
    let labels = labels(input.name);
    Job {
        metadata: ObjectMeta {
            name: Some(job_name(input.name, input.sha256)),
            namespace: Some(input.namespace.into()),
            labels: Some(labels.clone()),
            owner_references: input.object_meta().owner_references,
            ..Default::default()
        },
        spec: Some(JobSpec {
            backoff_limit: Some(1),
            active_deadline_seconds: Some(DEADLINE_SECONDS),
            ttl_seconds_after_finished: Some(TTL_SECONDS),
            template: k8s_openapi::api::core::v1::PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    ..Default::default()
                }),
                spec: Some(pod),
            },
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Where a compile Job is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Running,
    /// Stored; the artifact's hex sha256.
    Stored(String),
    /// Failed, with why.
    Failed(String),
}

/// The Job's condition `type_` when it is True.
fn condition<'a>(job: &'a Job, type_: &str) -> Option<&'a JobCondition> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_ && c.status == "True")
}

/// Whether `job` has ended (Complete or Failed: its pods are accounted
/// for, their termination messages readable). SuccessCriteriaMet and
/// FailureTarget come first, while the pod's status may not yet hold its
/// message, so they do not count.
pub fn finished(job: &Job) -> bool {
    condition(job, "Complete").is_some() || condition(job, "Failed").is_some()
}

/// What `job` and its pods (any pods: those it does not own are ignored)
/// say: the sha256 from the termination message of the pod that
/// succeeded, or why it failed.
pub fn outcome(job: &Job, pods: &[Pod]) -> Outcome {
    let finished = |type_: &str| condition(job, type_);
    let uid = job.metadata.uid.as_deref();
    let messages = pods
        .iter()
        .filter(|p| {
            p.metadata
                .owner_references
                .iter()
                .flatten()
                .any(|o| Some(o.uid.as_str()) == uid)
        })
        .filter_map(|p| {
            let statuses = p.status.as_ref()?.container_statuses.as_ref()?;
            let terminated = statuses.first()?.state.as_ref()?.terminated.as_ref()?;
            Some((
                terminated.exit_code,
                terminated.message.clone().unwrap_or_default(),
            ))
        })
        .collect::<Vec<_>>();
    // Only the terminal conditions (see [`finished`]).
    if finished("Complete").is_some() {
        let sha = messages
            .iter()
            .filter(|(code, _)| *code == 0)
            .find_map(|(_, m)| {
                m.trim()
                    .strip_prefix("artifact-sha256 ")
                    .map(str::to_string)
            })
            .filter(|sha| sha.len() == 64 && sha.bytes().all(|b| b.is_ascii_hexdigit()));
        return match sha {
            Some(sha) => Outcome::Stored(sha),
            None => Outcome::Failed(
                "the compile Job finished without naming the artifact's sha256".into(),
            ),
        };
    }
    if let Some(failed) = finished("Failed") {
        let said = messages
            .iter()
            .rev()
            .map(|(_, m)| m.trim())
            .find(|m| !m.is_empty());
        let why = match said {
            Some(m) => m.lines().last().unwrap_or(m).to_string(),
            None => format!(
                "{}: {}",
                failed.reason.as_deref().unwrap_or("Failed"),
                failed.message.as_deref().unwrap_or("")
            ),
        };
        return Outcome::Failed(why);
    }
    Outcome::Running
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::testing::*;

    #[test]
    fn artifacts_go_beside_modules_in_object_storage_only() {
        assert_eq!(
            artifact_url("s3://fns/echo.wasm", DIGEST).as_deref(),
            Some("s3://fns/echo.wasm.9ee85e52c81e60cd.artifact")
        );
        assert!(artifact_url("gs://b/m.wasm.zst", DIGEST).is_some());
        assert_eq!(artifact_url("https://example.com/m.wasm", DIGEST), None);
        assert_eq!(artifact_url("file:///m.wasm", DIGEST), None);
    }

    #[test]
    fn job_names_fit_a_label_and_differ_by_digest() {
        let long = "a".repeat(63);
        let name = job_name(&long, DIGEST);
        assert!(name.len() <= 63, "{name}");
        assert_eq!(job_name("echo", DIGEST), "echo-compile-9ee85e52c8");
        assert_ne!(job_name("echo", DIGEST), job_name("echo", &"ab".repeat(32)));
    }

    #[test]
    fn the_job_runs_as_the_worker_pods_do_and_no_service_selects_it() {
        let f = function(
            "spec:\n  module: {url: s3://fns/echo.wasm, credentialsSecret: store}\n  \
             nodeSelector: {pool: fns}\n",
        );
        let input = Input::new(&f, IMAGE).unwrap().with_digest(DIGEST);
        let job = build(&input, "s3://fns/echo.wasm.9ee85e52c81e60cd.artifact");
        let spec = job.spec.as_ref().unwrap();
        assert_eq!(spec.backoff_limit, Some(1));
        assert_eq!(spec.active_deadline_seconds, Some(DEADLINE_SECONDS));
        let pod = spec.template.spec.as_ref().unwrap();
        let worker = deployment::build(&input)
            .spec
            .unwrap()
            .template
            .spec
            .unwrap();
        assert_eq!(pod.node_selector, worker.node_selector);
        assert_eq!(pod.security_context, worker.security_context);
        assert_eq!(pod.automount_service_account_token, Some(false));
        assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
        let c = &pod.containers[0];
        assert_eq!(c.image, worker.containers[0].image);
        assert_eq!(
            c.env, worker.containers[0].env,
            "the same credentials, key by key"
        );
        assert_eq!(c.security_context, worker.containers[0].security_context);
        assert_eq!(
            c.args.as_ref().unwrap().join(" "),
            format!(
                "compile s3://fns/echo.wasm --upload s3://fns/echo.wasm.9ee85e52c81e60cd.artifact \
                 --sha256 {DIGEST} --termination-log /dev/termination-log --static-credentials"
            )
        );
        assert!(c.ports.is_none() && c.readiness_probe.is_none());
        let labels = spec
            .template
            .metadata
            .as_ref()
            .unwrap()
            .labels
            .as_ref()
            .unwrap();
        let selector = input.selector_labels();
        assert!(
            !selector.iter().all(|(k, v)| labels.get(k) == Some(v)),
            "the function's Service must not select the compile pod: {labels:?}"
        );
        assert!(
            !labels.contains_key("app.kubernetes.io/instance"),
            "selecting the function's pods by instance must not find the compile pod: {labels:?}"
        );
        assert_eq!(labels["nur.dev/function"], "echo");
        assert_eq!(
            job.metadata.owner_references.unwrap()[0].name,
            f.metadata.name.unwrap()
        );
    }

    fn job_with(condition: &str) -> Job {
        serde_yaml::from_str(&format!(
            "metadata: {{name: j, uid: job-uid}}\nstatus:\n  conditions: [{{type: {condition}, status: 'True'}}]\n"
        ))
        .unwrap()
    }

    fn pod(owner: &str, exit: i32, message: &str) -> Pod {
        serde_yaml::from_str(&format!(
            "metadata:\n  ownerReferences: [{{apiVersion: batch/v1, kind: Job, name: j, uid: {owner}}}]\n\
             status:\n  containerStatuses:\n  - name: compile\n    image: i\n    imageID: ''\n    ready: false\n    \
             restartCount: 0\n    state: {{terminated: {{exitCode: {exit}, message: {message:?}}}}}\n"
        ))
        .unwrap()
    }

    #[test]
    fn a_finished_job_names_the_artifact_or_why_not() {
        let sha = "ab".repeat(32);
        let done = job_with("Complete");
        assert_eq!(
            outcome(
                &done,
                &[pod("job-uid", 0, &format!("artifact-sha256 {sha}\n"))]
            ),
            Outcome::Stored(sha.clone())
        );
        assert!(
            matches!(
                outcome(
                    &done,
                    &[pod("other-uid", 0, &format!("artifact-sha256 {sha}"))]
                ),
                Outcome::Failed(_)
            ),
            "a pod of another owner is not believed"
        );
        assert!(matches!(
            outcome(&done, &[pod("job-uid", 0, "artifact-sha256 nope")]),
            Outcome::Failed(_)
        ));
        let failed = job_with("Failed");
        assert_eq!(
            outcome(
                &failed,
                &[pod("job-uid", 1, "s3://fns/echo.wasm: access denied\n")]
            ),
            Outcome::Failed("s3://fns/echo.wasm: access denied".into())
        );
        let running: Job = serde_yaml::from_str("metadata: {name: j, uid: job-uid}\n").unwrap();
        assert_eq!(outcome(&running, &[]), Outcome::Running);
        // Met, but its pods not yet accounted for: not finished yet.
        for early in ["SuccessCriteriaMet", "FailureTarget"] {
            assert_eq!(outcome(&job_with(early), &[]), Outcome::Running, "{early}");
        }
    }
}
