//! The Secrets and ConfigMaps spec.env reads: each must exist in the
//! function's namespace and carry the label `nur.dev/function-env: "true"`
//! before the function is rolled out with it. A function's code can read
//! its environment and send it anywhere, so naming a Secret must not be
//! enough to reach it: only someone who may label the Secret hands it to
//! functions. Only metadata is read; the values go from the kubelet to the
//! pod, never through the operator.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::{Api, Client, ResourceExt};

use crate::crd::NurFunction;
use crate::reason::Reason;

/// The label a Secret or ConfigMap needs to be used by spec.env.
pub const LABEL: &str = "nur.dev/function-env";

/// Why spec.env cannot be used as it is: the reason and a message naming
/// the object and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub reason: Reason,
    pub message: String,
}

/// An object spec.env names could not be read.
#[derive(Debug, thiserror::Error)]
#[error("reading {kind} {namespace}/{name} (named by spec.env): {source}")]
pub struct Error {
    kind: &'static str,
    namespace: String,
    name: String,
    #[source]
    source: kube::Error,
}

/// Each distinct Secret and ConfigMap of `f`'s spec.env, as (kind, name).
fn sources(f: &NurFunction) -> BTreeSet<(&'static str, &str)> {
    let mut out = BTreeSet::new();
    for variable in f.spec.env.iter().flatten() {
        let Some(from) = &variable.value_from else {
            continue;
        };
        if let Some(r) = &from.secret_key_ref {
            out.insert(("Secret", r.name.as_str()));
        }
        if let Some(r) = &from.config_map_key_ref {
            out.insert(("ConfigMap", r.name.as_str()));
        }
    }
    out
}

/// What is wrong with the object `kind/name`'s metadata, if anything.
fn judge(kind: &str, namespace: &str, name: &str, meta: Option<&ObjectMeta>) -> Option<Problem> {
    let Some(meta) = meta else {
        return Some(Problem {
            reason: Reason::EnvSourceNotFound,
            message: format!("{kind} {namespace}/{name} named by spec.env does not exist"),
        });
    };
    let label = meta.labels.as_ref().and_then(|l| l.get(LABEL));
    if label.map(String::as_str) != Some("true") {
        return Some(Problem {
            reason: Reason::EnvSourceNotAllowed,
            message: format!(
                "{kind} {namespace}/{name} named by spec.env lacks the label {LABEL}=true: \
                 label it to hand its keys to functions \
                 (kubectl label {} {name} -n {namespace} {LABEL}=true)",
                kind.to_lowercase()
            ),
        });
    }
    None
}

/// Checks every Secret and ConfigMap `f`'s spec.env names: `Ok(Err)` with
/// the first problem, `Ok(Ok)` when all may be used.
pub async fn check(client: &Client, f: &NurFunction) -> Result<Result<(), Problem>, Error> {
    let namespace = f.namespace().unwrap_or_default();
    for (kind, name) in sources(f) {
        let meta = match kind {
            "Secret" => {
                let api: Api<Secret> = Api::namespaced(client.clone(), &namespace);
                api.get_metadata_opt(name)
                    .await
                    .map(|o| o.map(|m| m.metadata))
            }
            _ => {
                let api: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);
                api.get_metadata_opt(name)
                    .await
                    .map(|o| o.map(|m| m.metadata))
            }
        }
        .map_err(|source| Error {
            kind,
            namespace: namespace.clone(),
            name: name.into(),
            source,
        })?;
        if let Some(problem) = judge(kind, &namespace, name, meta.as_ref()) {
            return Ok(Err(problem));
        }
    }
    Ok(Ok(()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(labels: &[(&str, &str)]) -> ObjectMeta {
        ObjectMeta {
            labels: Some(
                labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..Default::default()
        }
    }

    #[test]
    fn a_source_needs_to_exist_and_carry_the_label() {
        let missing = judge("Secret", "t", "api", None).unwrap();
        assert_eq!(missing.reason, Reason::EnvSourceNotFound);
        assert_eq!(
            missing.message,
            "Secret t/api named by spec.env does not exist"
        );
        let unlabelled = judge("Secret", "t", "api", Some(&meta(&[]))).unwrap();
        assert_eq!(unlabelled.reason, Reason::EnvSourceNotAllowed);
        assert!(
            unlabelled
                .message
                .contains("kubectl label secret api -n t nur.dev/function-env=true"),
            "{}",
            unlabelled.message
        );
        let wrong = judge("ConfigMap", "t", "c", Some(&meta(&[(LABEL, "yes")])));
        assert_eq!(wrong.unwrap().reason, Reason::EnvSourceNotAllowed);
        assert_eq!(
            judge("ConfigMap", "t", "c", Some(&meta(&[(LABEL, "true")]))),
            None
        );
    }
}
