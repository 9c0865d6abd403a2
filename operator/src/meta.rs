//! What every owned object shares: names, labels, owner references, and the
//! validated input of the builders.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;

use crate::crd::NurFunction;

/// The one field manager of every server-side apply.
pub const FIELD_MANAGER: &str = "nur-operator";

/// The label selector of every object the operator owns.
pub const MANAGED_BY_SELECTOR: &str = "app.kubernetes.io/managed-by=nur-operator";

/// Longest function name: it names a Service (a DNS label) and is a label value.
pub const MAX_NAME_LENGTH: usize = 63;

/// Container port of the worker's admin endpoints (/healthz /readyz /metrics).
pub const ADMIN_PORT: i32 = 9090;

/// How long the worker lets in-flight connections finish after SIGTERM
/// (`--shutdown-grace`).
pub const SHUTDOWN_GRACE_SECONDS: i64 = 25;

/// How long the worker keeps accepting after SIGTERM, not ready, while the
/// Service's endpoints drop the pod (`--drain-delay`): without it, the
/// connections kube-proxy still sends meanwhile are refused.
pub const DRAIN_DELAY_SECONDS: i64 = 5;

/// The pod's terminationGracePeriodSeconds: the drain delay, the drain,
/// plus time to exit.
pub const TERMINATION_GRACE_SECONDS: i64 = DRAIN_DELAY_SECONDS + SHUTDOWN_GRACE_SECONDS + 5;

/// Why a NurFunction cannot be built into objects; fixed only by editing it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InvalidSpec {
    #[error("NurFunction has no {0}")]
    MissingMeta(&'static str),
    #[error("spec.port {0} is taken by the worker's admin endpoints")]
    AdminPort(i32),
    #[error("spec.replicas and spec.autoscaling are both set; set one")]
    ReplicasAndAutoscaling,
    #[error("spec.scaleToZero works with replicas, not with spec.autoscaling; drop one")]
    ScaleToZeroAndAutoscaling,
    #[error("{0}")]
    IdleAfter(String),
    #[error("spec.autoscaling.maxReplicas {max} is less than minReplicas {min}")]
    MaxBelowMin { min: i32, max: i32 },
    #[error(
        "metadata.name {0:?} cannot name a Service: use at most 63 lowercase letters, digits          and '-', starting with a letter and ending with a letter or digit"
    )]
    Name(String),
}

/// A validated NurFunction, with its defaults applied and, once its module
/// is checked, its digest: everything the pure builders need.
#[derive(Debug, Clone)]
pub struct Input<'a> {
    pub function: &'a NurFunction,
    pub name: &'a str,
    pub namespace: &'a str,
    /// Hex sha256 of the module the pods must serve (see [`Input::with_digest`]).
    pub sha256: &'a str,
    /// Worker image: spec.image, else the operator's `--worker-image`.
    pub image: &'a str,
    /// Worker container resources: spec.resources, else the operator's
    /// `--worker-resources` (see [`Input::with_default_resources`]).
    pub resources: Option<&'a ResourceRequirements>,
    /// Scaled to zero for being idle (see [`crate::idle`]).
    pub asleep: bool,
    /// The native code the pods load: (URL, hex sha256) of the artifact
    /// (see [`Input::with_artifact`]).
    pub artifact: Option<(&'a str, &'a str)>,
}

impl<'a> Input<'a> {
    /// Validates what the CRD schema cannot (or what an old schema let in).
    pub fn new(function: &'a NurFunction, default_image: &'a str) -> Result<Self, InvalidSpec> {
        let name = function
            .metadata
            .name
            .as_deref()
            .ok_or(InvalidSpec::MissingMeta("metadata.name"))?;
        let namespace = function
            .metadata
            .namespace
            .as_deref()
            .ok_or(InvalidSpec::MissingMeta("metadata.namespace"))?;
        if !is_dns_label(name) {
            return Err(InvalidSpec::Name(name.into()));
        }
        if function.metadata.uid.is_none() {
            return Err(InvalidSpec::MissingMeta("metadata.uid"));
        }
        let spec = &function.spec;
        if spec.port == ADMIN_PORT {
            return Err(InvalidSpec::AdminPort(spec.port));
        }
        if spec.replicas.is_some() && spec.autoscaling.is_some() {
            return Err(InvalidSpec::ReplicasAndAutoscaling);
        }
        if spec.scale_to_zero.is_some() && spec.autoscaling.is_some() {
            return Err(InvalidSpec::ScaleToZeroAndAutoscaling);
        }
        if let Some(a) = &spec.autoscaling {
            let min = a.min_replicas.unwrap_or(1);
            if a.max_replicas < min {
                return Err(InvalidSpec::MaxBelowMin {
                    min,
                    max: a.max_replicas,
                });
            }
        }
        Ok(Input {
            function,
            name,
            namespace,
            sha256: "",
            image: spec.image.as_deref().unwrap_or(default_image),
            resources: spec.resources.as_ref(),
            asleep: false,
            artifact: None,
        })
    }

    /// The function scaled to zero (or not).
    pub fn with_sleep(mut self, asleep: bool) -> Self {
        self.asleep = asleep;
        self
    }

    /// The function with its checked module's digest.
    pub fn with_digest(mut self, sha256: &'a str) -> Self {
        self.sha256 = sha256;
        self
    }

    /// The pods load native code from the artifact at `url`, pinned by
    /// `sha256`, instead of compiling the module.
    pub fn with_artifact(mut self, artifact: Option<(&'a str, &'a str)>) -> Self {
        self.artifact = artifact;
        self
    }

    /// Uses `defaults` for a function that sets no spec.resources.
    pub fn with_default_resources(mut self, defaults: Option<&'a ResourceRequirements>) -> Self {
        self.resources = self.resources.or(defaults);
        self
    }

    /// Labels that select the worker pods.
    pub fn selector_labels(&self) -> BTreeMap<String, String> {
        selector_labels(self.name)
    }

    /// Labels of every owned object and of the pods.
    pub fn labels(&self) -> BTreeMap<String, String> {
        let mut l = self.selector_labels();
        l.insert("app.kubernetes.io/managed-by".into(), FIELD_MANAGER.into());
        l
    }

    /// Metadata of an owned object: same name and namespace as the
    /// NurFunction, the labels, and a controller owner reference to it.
    pub fn object_meta(&self) -> ObjectMeta {
        ObjectMeta {
            name: Some(self.name.into()),
            namespace: Some(self.namespace.into()),
            labels: Some(self.labels()),
            owner_references: self.function.controller_owner_ref(&()).map(|o| vec![o]),
            ..Default::default()
        }
    }
}

/// Whether `name` is an RFC 1035 label, as a Service name must be.
fn is_dns_label(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= MAX_NAME_LENGTH
        && bytes[0].is_ascii_lowercase()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
}

/// Labels that select the pods of function `name`.
pub fn selector_labels(name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".into(), "nur-function".into()),
        ("app.kubernetes.io/instance".into(), name.into()),
    ])
}

/// The selector as a string, for status.selector (the scale subresource).
pub fn selector_string(name: &str) -> String {
    selector_labels(name)
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
pub(crate) mod testing {
    //! Helpers for the builders' whole-object tests.

    use crate::crd::NurFunction;

    /// A NurFunction from inline YAML (metadata name, namespace and uid are
    /// added when missing).
    pub fn function(yaml: &str) -> NurFunction {
        let mut v: serde_yaml::Value = serde_yaml::from_str(yaml).expect("valid YAML");
        if v.get("metadata").is_none() {
            v["metadata"] = serde_yaml::Mapping::new().into();
        }
        let mut f: NurFunction = serde_yaml::from_value(v).expect("a valid NurFunction");
        let m = &mut f.metadata;
        m.name.get_or_insert_with(|| "echo".into());
        m.namespace.get_or_insert_with(|| "fns".into());
        m.uid.get_or_insert_with(|| "uid-1".into());
        f
    }

    /// Asserts that `object` serializes to exactly the YAML `expected`.
    pub fn assert_object<T: serde::Serialize>(object: &T, expected: &str) {
        let got = serde_json::to_value(object).unwrap();
        let want: serde_json::Value = serde_yaml::from_str(expected).unwrap();
        if got != want {
            panic!(
                "object differs\n--- got\n{}\n--- want\n{}",
                serde_yaml::to_string(&got).unwrap(),
                serde_yaml::to_string(&want).unwrap()
            );
        }
    }

    pub const DIGEST: &str = "9ee85e52c81e60cd7dc1aeaa5415ca8aad60722238c9b838ae9a57d8f57d1a8f";
    pub const IMAGE: &str = "ghcr.io/nur-dev/nur-worker:0.1.0";
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;

    #[test]
    fn validation_names_the_field() {
        let f = function(
            "apiVersion: nur.dev/v1alpha1\nkind: NurFunction\nmetadata: {name: x}\n\
             spec: {module: {url: s3://b/k}, port: 9090}",
        );
        assert_eq!(
            Input::new(&f, IMAGE).unwrap_err(),
            InvalidSpec::AdminPort(9090)
        );
        let f = function(
            "apiVersion: nur.dev/v1alpha1\nkind: NurFunction\nmetadata: {name: x}\n\
             spec: {module: {url: s3://b/k}, autoscaling: {minReplicas: 4, maxReplicas: 2}}",
        );
        assert_eq!(
            Input::new(&f, IMAGE).unwrap_err(),
            InvalidSpec::MaxBelowMin { min: 4, max: 2 }
        );
    }

    #[test]
    fn names_must_fit_a_service() {
        let long = "a".repeat(64);
        for bad in [long.as_str(), "1abc", "abc-", "a.b"] {
            let f = function(&format!(
                "apiVersion: nur.dev/v1alpha1\nkind: NurFunction\nmetadata: {{name: '{bad}'}}\n\
                 spec: {{module: {{url: s3://b/k}}}}"
            ));
            assert_eq!(
                Input::new(&f, IMAGE).unwrap_err(),
                InvalidSpec::Name(bad.into())
            );
        }
        let ok = "a".repeat(63);
        let f = function(&format!(
            "apiVersion: nur.dev/v1alpha1\nkind: NurFunction\nmetadata: {{name: {ok}}}\n\
             spec: {{module: {{url: s3://b/k}}}}"
        ));
        assert!(Input::new(&f, IMAGE).is_ok());
    }

    #[test]
    fn selector_string_matches_labels() {
        assert_eq!(
            selector_string("echo"),
            "app.kubernetes.io/instance=echo,app.kubernetes.io/name=nur-function"
        );
    }
}
