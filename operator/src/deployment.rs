//! The worker Deployment: pods running `nur-worker serve` with the module URL
//! and digest pinned in the args, so a new digest rolls the pods.

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapKeySelector, Container, ContainerPort, EnvVar, EnvVarSource,
    HTTPGetAction, PodSecurityContext, PodSpec, PodTemplateSpec, Probe, SeccompProfile,
    SecretKeySelector, SecurityContext,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use nur_module::abi::FUNCTION_ENV_PREFIX;

use crate::crd::EnvVarSpec;
use crate::meta::{
    ADMIN_PORT, DRAIN_DELAY_SECONDS, Input, SHUTDOWN_GRACE_SECONDS, TERMINATION_GRACE_SECONDS,
};

/// Name of the worker container.
pub const CONTAINER: &str = "worker";

/// User and group the worker runs as (distroless "nonroot").
pub const RUN_AS: i64 = 65532;

/// The worker's command line after the image's entrypoint (`nur-worker`).
pub fn worker_args(input: &Input) -> Vec<String> {
    let spec = &input.function.spec;
    let mut args = vec![
        "serve".to_string(),
        "--module".into(),
        spec.module.url.clone(),
        "--sha256".into(),
        input.sha256.into(),
        "--function-name".into(),
        input.name.into(),
        "--listen".into(),
        format!("0.0.0.0:{}", spec.port),
        "--admin-listen".into(),
        format!("0.0.0.0:{ADMIN_PORT}"),
        "--shutdown-grace".into(),
        format!("{SHUTDOWN_GRACE_SECONDS}s"),
        "--drain-delay".into(),
        format!("{DRAIN_DELAY_SECONDS}s"),
    ];
    if let Some((url, sha256)) = input.artifact {
        args.extend([
            "--artifact".into(),
            url.into(),
            "--artifact-sha256".into(),
            sha256.into(),
        ]);
    }
    if spec.module.credentials_secret.is_some() {
        args.push("--static-credentials".into());
    }
    // A function with HTTP routes speaks HTTP: its connections (the
    // gateway's among them) carry request after request.
    if spec.routes.as_ref().is_some_and(|r| !r.http.is_empty()) {
        args.push("--keep-alive".into());
    }
    if let Some(l) = &spec.limits {
        if let Some(t) = &l.timeout {
            args.extend(["--timeout".into(), t.clone()]);
        }
        if let Some(n) = l.max_connections {
            args.extend(["--max-connections".into(), n.to_string()]);
        }
        if let Some(m) = &l.memory {
            args.extend(["--memory-limit".into(), m.clone()]);
        }
    }
    args
}

/// The static store settings of the credentials Secret `secret`, one
/// variable per allowed key: a key the Secret may not hold (a token file,
/// a credentials URI, a `NUR_*` flag of the worker) never reaches the pod.
fn credential_variables(secret: &str) -> Vec<EnvVar> {
    nur_module::policy::ALLOWED_VARIABLES
        .iter()
        .map(|key| EnvVar {
            name: (*key).into(),
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: secret.into(),
                    key: (*key).into(),
                    optional: Some(true),
                }),
                ..Default::default()
            }),
            ..Default::default()
        })
        .collect()
}

/// One variable of spec.env, as the worker takes it: `NUR_ENV_NAME`, its
/// value or the kubelet's reference to a Secret's or ConfigMap's key (the
/// value never in the Deployment).
fn function_variable(variable: &EnvVarSpec) -> EnvVar {
    let source = variable.value_from.as_ref().map(|from| EnvVarSource {
        secret_key_ref: from.secret_key_ref.as_ref().map(|r| SecretKeySelector {
            name: r.name.clone(),
            key: r.key.clone(),
            optional: Some(false),
        }),
        config_map_key_ref: from
            .config_map_key_ref
            .as_ref()
            .map(|r| ConfigMapKeySelector {
                name: r.name.clone(),
                key: r.key.clone(),
                optional: Some(false),
            }),
        ..Default::default()
    });
    EnvVar {
        name: format!("{FUNCTION_ENV_PREFIX}{}", variable.name),
        value: variable.value.clone(),
        value_from: source,
    }
}

fn http_probe(path: &str, period: i32, failures: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String("admin".into()),
            ..Default::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        ..Default::default()
    }
}

/// Builds the Deployment of `input`'s function.
pub fn build(input: &Input) -> Deployment {
    let spec = &input.function.spec;
    let container = Container {
        name: CONTAINER.into(),
        image: Some(input.image.into()),
        args: Some(worker_args(input)),
        ports: Some(vec![
            ContainerPort {
                name: Some("function".into()),
                container_port: spec.port,
                protocol: Some("TCP".into()),
                ..Default::default()
            },
            ContainerPort {
                name: Some("admin".into()),
                container_port: ADMIN_PORT,
                protocol: Some("TCP".into()),
                ..Default::default()
            },
        ]),
        env: {
            let mut env: Vec<EnvVar> = spec
                .module
                .credentials_secret
                .as_deref()
                .map(credential_variables)
                .unwrap_or_default();
            env.extend(spec.env.iter().flatten().map(function_variable));
            (!env.is_empty()).then_some(env)
        },
        readiness_probe: Some(http_probe("/readyz", 1, 1)),
        liveness_probe: Some(http_probe("/healthz", 10, 3)),
        resources: input.resources.cloned(),
        security_context: Some(SecurityContext {
            run_as_non_root: Some(true),
            read_only_root_filesystem: Some(true),
            allow_privilege_escalation: Some(false),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                ..Default::default()
            }),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let pod = PodSpec {
        containers: vec![container],
        automount_service_account_token: Some(false),
        enable_service_links: Some(false),
        termination_grace_period_seconds: Some(TERMINATION_GRACE_SECONDS),
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(RUN_AS),
            run_as_group: Some(RUN_AS),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        node_selector: spec.node_selector.clone(),
        tolerations: spec.tolerations.clone(),
        affinity: spec.affinity.clone(),
        image_pull_secrets: spec.image_pull_secrets.clone(),
        ..Default::default()
    };
    Deployment {
        metadata: input.object_meta(),
        spec: Some(DeploymentSpec {
            replicas: if input.asleep {
                Some(0)
            } else {
                spec.fixed_replicas()
            },
            selector: LabelSelector {
                match_labels: Some(input.selector_labels()),
                ..Default::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(input.labels()),
                    annotations: spec.pod_annotations.clone(),
                    ..Default::default()
                }),
                spec: Some(pod),
            },
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::testing::*;
    use k8s_openapi::api::core::v1::ResourceRequirements;

    const POD_SECURITY: &str = "
        runAsNonRoot: true
        runAsUser: 65532
        runAsGroup: 65532
        seccompProfile: {type: RuntimeDefault}";

    fn expected(replicas: &str, args_tail: &str, container_extra: &str, pod_extra: &str) -> String {
        format!(
            r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: echo
  namespace: fns
  labels: &labels
    app.kubernetes.io/name: nur-function
    app.kubernetes.io/instance: echo
    app.kubernetes.io/managed-by: nur-operator
  ownerReferences:
  - apiVersion: nur.dev/v1alpha1
    kind: NurFunction
    name: echo
    uid: uid-1
    controller: true
spec:
  {replicas}
  selector:
    matchLabels:
      app.kubernetes.io/name: nur-function
      app.kubernetes.io/instance: echo
  template:
    metadata:
      labels: *labels
    spec:
      automountServiceAccountToken: false
      enableServiceLinks: false
      terminationGracePeriodSeconds: 35
      securityContext: {POD_SECURITY}
      containers:
      - name: worker
        image: {IMAGE}
        args: [serve, --module, "s3://fns/echo.wasm", --sha256, {DIGEST},
               --function-name, echo, --listen, "0.0.0.0:8080",
               --admin-listen, "0.0.0.0:9090", --shutdown-grace, 25s,
               --drain-delay, 5s{args_tail}]
        ports:
        - {{name: function, containerPort: 8080, protocol: TCP}}
        - {{name: admin, containerPort: 9090, protocol: TCP}}
        readinessProbe:
          httpGet: {{path: /readyz, port: admin}}
          periodSeconds: 1
          failureThreshold: 1
        livenessProbe:
          httpGet: {{path: /healthz, port: admin}}
          periodSeconds: 10
          failureThreshold: 3
        securityContext:
          runAsNonRoot: true
          readOnlyRootFilesystem: true
          allowPrivilegeEscalation: false
          capabilities: {{drop: [ALL]}}
          seccompProfile: {{type: RuntimeDefault}}
{container_extra}
{pod_extra}
"#
        )
    }

    #[test]
    fn minimal_function() {
        let f = function(
            r#"
apiVersion: nur.dev/v1alpha1
kind: NurFunction
spec:
  module: {url: "s3://fns/echo.wasm"}
"#,
        );
        let input = Input::new(&f, IMAGE).unwrap().with_digest(DIGEST);
        assert_object(&build(&input), &expected("replicas: 1", "", "", ""));
        // The operator's --worker-resources fill in.
        let defaults: ResourceRequirements =
            serde_yaml::from_str("{requests: {cpu: 50m, memory: 64Mi}}").unwrap();
        let input = input.with_default_resources(Some(&defaults));
        let want = expected(
            "replicas: 1",
            "",
            "        resources: {requests: {cpu: 50m, memory: 64Mi}}",
            "",
        );
        assert_object(&build(&input), &want);
    }

    #[test]
    fn http_routes_keep_connections_alive_and_others_do_not() {
        let routed = |routes: &str| {
            let f = function(&format!(
                "apiVersion: nur.dev/v1alpha1\nkind: NurFunction\nspec:\n  \
                 module: {{url: \"s3://fns/echo.wasm\"}}\n  routes: {routes}\n"
            ));
            worker_args(&Input::new(&f, IMAGE).unwrap().with_digest(DIGEST))
                .contains(&"--keep-alive".to_string())
        };
        assert!(routed("{http: [{pathPrefix: /hello}]}"));
        assert!(!routed("{tls: [{sni: db.example}]}"));
        assert!(!routed("{tcp: {port: 7000}}"));
    }

    #[test]
    fn spec_env_becomes_nur_env_variables_the_kubelet_fills_in() {
        let f = function(
            r#"
apiVersion: nur.dev/v1alpha1
kind: NurFunction
spec:
  module: {url: "s3://fns/echo.wasm"}
  env:
  - {name: GREETING, value: hello}
  - {name: TOKEN, valueFrom: {secretKeyRef: {name: api, key: token}}}
  - {name: MODE, valueFrom: {configMapKeyRef: {name: settings, key: mode}}}
"#,
        );
        let input = Input::new(&f, IMAGE).unwrap().with_digest(DIGEST);
        let want = expected(
            "replicas: 1",
            "",
            "        env:\n        \
             - {name: NUR_ENV_GREETING, value: hello}\n        \
             - {name: NUR_ENV_TOKEN, valueFrom: {secretKeyRef: {name: api, key: token, optional: false}}}\n        \
             - {name: NUR_ENV_MODE, valueFrom: {configMapKeyRef: {name: settings, key: mode, optional: false}}}",
            "",
        );
        assert_object(&build(&input), &want);
    }

    #[test]
    fn full_function() {
        let f = function(
            r#"
apiVersion: nur.dev/v1alpha1
kind: NurFunction
spec:
  module: {url: "s3://fns/echo.wasm", credentialsSecret: store}
  replicas: 3
  limits: {memory: 64Mi, timeout: 5s, maxConnections: 10}
  resources: {requests: {cpu: 100m}}
  image: my/worker:dev
  nodeSelector: {pool: fns}
  tolerations: [{key: k, operator: Exists}]
  imagePullSecrets: [{name: pull}]
  podAnnotations: {a: b}
"#,
        );
        // spec.resources wins over the operator's defaults.
        let defaults: ResourceRequirements =
            serde_yaml::from_str("{requests: {cpu: 50m, memory: 64Mi}}").unwrap();
        let input = Input::new(&f, IMAGE)
            .unwrap()
            .with_digest(DIGEST)
            .with_default_resources(Some(&defaults));
        let want = expected(
            "replicas: 3",
            ", --static-credentials, --timeout, 5s, --max-connections, '10', --memory-limit, 64Mi",
            &format!(
                "        env: [{}]\n        resources: {{requests: {{cpu: 100m}}}}",
                nur_module::policy::ALLOWED_VARIABLES
                    .iter()
                    .map(|k| format!(
                        "{{name: {k}, valueFrom: {{secretKeyRef: {{name: store, key: {k}, optional: true}}}}}}"
                    ))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            "      nodeSelector: {pool: fns}\n      tolerations: [{key: k, operator: Exists}]\n      imagePullSecrets: [{name: pull}]",
        )
        .replace(IMAGE, "my/worker:dev")
        .replace("      labels: *labels\n", "      labels: *labels\n      annotations: {a: b}\n");
        assert_object(&build(&input), &want);
    }

    #[test]
    fn autoscaled_function_leaves_replicas_to_the_hpa() {
        let f = function(
            r#"
apiVersion: nur.dev/v1alpha1
kind: NurFunction
spec:
  module: {url: "s3://fns/echo.wasm"}
  autoscaling: {maxReplicas: 5}
"#,
        );
        let input = Input::new(&f, IMAGE).unwrap().with_digest(DIGEST);
        assert_object(&build(&input), &expected("", "", "", ""));
    }
}
