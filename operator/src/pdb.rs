//! The PodDisruptionBudget, only when the function runs more than one pod
//! (replicas > 1, or autoscaling with minReplicas > 1).

use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::meta::Input;

/// Builds the PDB of `input`'s function (at most one pod down at a time),
/// or `None` when it runs a single pod.
pub fn build(input: &Input) -> Option<PodDisruptionBudget> {
    if input.asleep || input.function.spec.min_replicas() <= 1 {
        return None;
    }
    Some(PodDisruptionBudget {
        metadata: input.object_meta(),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(input.selector_labels()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::testing::*;

    const WANT: &str = r#"
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: echo
  namespace: fns
  labels:
    app.kubernetes.io/name: nur-function
    app.kubernetes.io/instance: echo
    app.kubernetes.io/managed-by: nur-operator
  ownerReferences:
  - {apiVersion: nur.dev/v1alpha1, kind: NurFunction, name: echo, uid: uid-1, controller: true}
spec:
  maxUnavailable: 1
  selector:
    matchLabels: {app.kubernetes.io/name: nur-function, app.kubernetes.io/instance: echo}
"#;

    fn pdb(spec: &str) -> Option<PodDisruptionBudget> {
        let f = function(&format!(
            "apiVersion: nur.dev/v1alpha1\nkind: NurFunction\nspec: {{module: {{url: s3://b/k}}, {spec}}}"
        ));
        build(&Input::new(&f, IMAGE).unwrap().with_digest(DIGEST))
    }

    #[test]
    fn only_with_more_than_one_pod() {
        assert!(pdb("port: 8080").is_none());
        assert!(pdb("replicas: 1").is_none());
        assert!(pdb("autoscaling: {maxReplicas: 4}").is_none());
        assert_object(&pdb("replicas: 2").unwrap(), WANT);
        assert_object(
            &pdb("autoscaling: {minReplicas: 2, maxReplicas: 4}").unwrap(),
            WANT,
        );
    }
}
