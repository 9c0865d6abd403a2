//! The Service in front of the worker pods.

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::meta::Input;

/// Builds the Service of `input`'s function: port spec.port to the pods'
/// "function" port.
pub fn build(input: &Input) -> Service {
    let spec = &input.function.spec;
    let svc = spec.service.clone().unwrap_or_default();
    let mut metadata = input.object_meta();
    metadata.annotations = svc.annotations;
    Service {
        metadata,
        spec: Some(ServiceSpec {
            type_: Some(svc.type_.unwrap_or_default().as_str().into()),
            cluster_ip: svc.headless.unwrap_or(false).then(|| "None".into()),
            selector: Some(input.selector_labels()),
            ports: Some(vec![ServicePort {
                name: Some("function".into()),
                port: spec.port,
                target_port: Some(IntOrString::String("function".into())),
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Where the function is served inside the cluster.
pub fn endpoint(input: &Input) -> String {
    format!(
        "{}.{}.svc:{}",
        input.name, input.namespace, input.function.spec.port
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::testing::*;

    const META: &str = r#"
  name: echo
  namespace: fns
  labels:
    app.kubernetes.io/name: nur-function
    app.kubernetes.io/instance: echo
    app.kubernetes.io/managed-by: nur-operator
  ownerReferences:
  - {apiVersion: nur.dev/v1alpha1, kind: NurFunction, name: echo, uid: uid-1, controller: true}"#;

    #[test]
    fn cluster_ip_by_default() {
        let f = function(
            "apiVersion: nur.dev/v1alpha1\nkind: NurFunction\nspec: {module: {url: s3://b/k}}",
        );
        let input = Input::new(&f, IMAGE).unwrap().with_digest(DIGEST);
        assert_object(
            &build(&input),
            &format!(
                r#"
apiVersion: v1
kind: Service
metadata:{META}
spec:
  type: ClusterIP
  selector: {{app.kubernetes.io/name: nur-function, app.kubernetes.io/instance: echo}}
  ports:
  - {{name: function, port: 8080, targetPort: function, protocol: TCP}}
"#
            ),
        );
        assert_eq!(endpoint(&input), "echo.fns.svc:8080");
    }

    #[test]
    fn load_balancer_with_annotations_and_port() {
        let f = function(
            r#"
apiVersion: nur.dev/v1alpha1
kind: NurFunction
spec:
  module: {url: s3://b/k}
  port: 7000
  service: {type: LoadBalancer, annotations: {lb: internal}}
"#,
        );
        let input = Input::new(&f, IMAGE).unwrap().with_digest(DIGEST);
        assert_object(
            &build(&input),
            &format!(
                r#"
apiVersion: v1
kind: Service
metadata:{META}
  annotations: {{lb: internal}}
spec:
  type: LoadBalancer
  selector: {{app.kubernetes.io/name: nur-function, app.kubernetes.io/instance: echo}}
  ports:
  - {{name: function, port: 7000, targetPort: function, protocol: TCP}}
"#
            ),
        );
        assert_eq!(endpoint(&input), "echo.fns.svc:7000");
    }

    #[test]
    fn headless_holds_no_cluster_ip() {
        let f = function(
            "apiVersion: nur.dev/v1alpha1\nkind: NurFunction\n\
             spec: {module: {url: s3://b/k}, service: {headless: true}}",
        );
        let input = Input::new(&f, IMAGE).unwrap().with_digest(DIGEST);
        assert_object(
            &build(&input),
            &format!(
                r#"
apiVersion: v1
kind: Service
metadata:{META}
spec:
  type: ClusterIP
  clusterIP: None
  selector: {{app.kubernetes.io/name: nur-function, app.kubernetes.io/instance: echo}}
  ports:
  - {{name: function, port: 8080, targetPort: function, protocol: TCP}}
"#
            ),
        );
    }
}
