//! Stage 1b: the module's native code, compiled once per digest. A Job
//! ([`crate::compile_job`]) runs `nur-worker compile` where the worker
//! pods run and stores the artifact beside the module; its pod's
//! termination message names the artifact's sha256, which the Deployment
//! then pins (`--artifact`, `--artifact-sha256`), so a new or woken pod
//! loads native code instead of compiling. The rollout of a new digest
//! waits for the Job (at most its deadline); a Job that fails leaves the
//! pods to compile the module themselves. Functions of one namespace that
//! serve the same module at the same URL share one artifact.
//!
//! The sha256 comes only from the Job's own pod, never from reading the
//! stored bytes: the bucket is the tenant's, the pin is what makes
//! loading native code from it safe.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, PostParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, ResourceExt};

use crate::compile_job::{self, Outcome};
use crate::crd::{ArtifactStatus, NurFunction};
use crate::meta::Input;

/// Where a function's native code is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Native {
    /// Not compiled ahead: off, or a module outside object storage.
    NotAhead,
    /// The compile Job `job` runs; the rollout waits for it.
    Compiling { job: String },
    /// Stored (with its sha256) or failed (with why).
    Known(ArtifactStatus),
}

impl Native {
    /// The artifact the pods load: (URL, hex sha256).
    pub fn pin(&self) -> Option<(&str, &str)> {
        match self {
            Native::Known(a) => Some((a.url.as_str(), a.sha256.as_deref()?)),
            _ => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("creating the compile Job {job}: {source}")]
    CreateJob {
        job: String,
        #[source]
        source: kube::Error,
    },
    #[error("reading the pods of the compile Job {job}: {source}")]
    JobPods {
        job: String,
        #[source]
        source: kube::Error,
    },
}

/// Where `input`'s native code is, starting its compile Job when no
/// function has it yet.
pub async fn ensure(
    client: &Client,
    jobs: &Store<Job>,
    functions: &Store<NurFunction>,
    f: &NurFunction,
    input: &Input<'_>,
) -> Result<Native, Error> {
    let Some(url) = compile_job::artifact_url(&f.spec.module.url, input.sha256) else {
        return Ok(Native::NotAhead);
    };
    let digest = format!("sha256:{}", input.sha256);
    let recorded = |g: &NurFunction| {
        g.status
            .as_ref()?
            .module
            .as_ref()?
            .artifact
            .clone()
            .filter(|a| a.module_digest == digest && a.url == url)
    };
    if let Some(known) = recorded(f) {
        return Ok(Native::Known(known));
    }
    let shared = functions
        .state()
        .iter()
        .filter(|g| g.namespace() == f.namespace())
        .filter_map(|g| recorded(g))
        .find(|a| a.sha256.is_some());
    if let Some(shared) = shared {
        return Ok(Native::Known(shared));
    }
    let name = compile_job::job_name(input.name, input.sha256);
    let api: Api<Job> = Api::namespaced(client.clone(), input.namespace);
    let Some(job) = jobs.get(&ObjectRef::new(&name).within(input.namespace)) else {
        let job = compile_job::build(input, &url);
        match api.create(&PostParams::default(), &job).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(source) => return Err(Error::CreateJob { job: name, source }),
        }
        return Ok(Native::Compiling { job: name });
    };
    let pods = if compile_job::finished(&job) {
        let uid = job.metadata.uid.clone().unwrap_or_default();
        let lp = ListParams::default().labels(&format!("batch.kubernetes.io/controller-uid={uid}"));
        Api::<Pod>::namespaced(client.clone(), input.namespace)
            .list(&lp)
            .await
            .map_err(|source| Error::JobPods {
                job: name.clone(),
                source,
            })?
            .items
    } else {
        Vec::new()
    };
    let artifact = |sha256, problem| ArtifactStatus {
        module_digest: digest.clone(),
        url: url.clone(),
        sha256,
        problem,
    };
    Ok(match compile_job::outcome(&job, &pods) {
        Outcome::Running => Native::Compiling { job: name },
        Outcome::Stored(sha) => Native::Known(artifact(Some(sha), None)),
        Outcome::Failed(why) => Native::Known(artifact(None, Some(why))),
    })
}
