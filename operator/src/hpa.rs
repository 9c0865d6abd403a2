//! The HorizontalPodAutoscaler (autoscaling/v2, CPU), only when
//! spec.autoscaling is set.

use k8s_openapi::api::autoscaling::v2::{
    CrossVersionObjectReference, HorizontalPodAutoscaler, HorizontalPodAutoscalerSpec, MetricSpec,
    MetricTarget, ResourceMetricSource,
};

use crate::meta::Input;

/// CPU target when targetCPUUtilizationPercentage is not set.
pub const DEFAULT_CPU_PERCENT: i32 = 80;

/// Builds the HPA of `input`'s function, or `None` without autoscaling.
pub fn build(input: &Input) -> Option<HorizontalPodAutoscaler> {
    let a = input.function.spec.autoscaling.as_ref()?;
    Some(HorizontalPodAutoscaler {
        metadata: input.object_meta(),
        spec: HorizontalPodAutoscalerSpec {
            scale_target_ref: CrossVersionObjectReference {
                api_version: Some("apps/v1".into()),
                kind: "Deployment".into(),
                name: input.name.into(),
            },
            min_replicas: Some(a.min_replicas.unwrap_or(1)),
            max_replicas: a.max_replicas,
            metrics: Some(vec![MetricSpec {
                type_: "Resource".into(),
                resource: Some(ResourceMetricSource {
                    name: "cpu".into(),
                    target: MetricTarget {
                        type_: "Utilization".into(),
                        average_utilization: Some(
                            a.target_cpu_utilization_percentage
                                .unwrap_or(DEFAULT_CPU_PERCENT),
                        ),
                        ..Default::default()
                    },
                }),
                ..Default::default()
            }]),
            ..Default::default()
        },
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::testing::*;

    #[test]
    fn none_without_autoscaling() {
        let f = function(
            "apiVersion: nur.dev/v1alpha1\nkind: NurFunction\nspec: {module: {url: s3://b/k}, replicas: 3}",
        );
        assert!(build(&Input::new(&f, IMAGE).unwrap().with_digest(DIGEST)).is_none());
    }

    #[test]
    fn cpu_target() {
        let f = function(
            r#"
apiVersion: nur.dev/v1alpha1
kind: NurFunction
spec:
  module: {url: s3://b/k}
  autoscaling: {minReplicas: 2, maxReplicas: 20, targetCPUUtilizationPercentage: 70}
"#,
        );
        let hpa = build(&Input::new(&f, IMAGE).unwrap().with_digest(DIGEST)).unwrap();
        assert_object(
            &hpa,
            r#"
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
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
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: echo}
  minReplicas: 2
  maxReplicas: 20
  metrics:
  - type: Resource
    resource:
      name: cpu
      target: {type: Utilization, averageUtilization: 70}
"#,
        );
    }
}
