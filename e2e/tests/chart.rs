//! The Helm chart as the real helm (from the test environment's
//! `.testenv/bin`) lints and renders it; no cluster is needed.

use nur_e2e::{chart_app_version, chart_dir, yaml_documents};
use nur_testkit::{TestEnv, testenv};
use serde_json::Value;

/// `helm template nur charts/nur ARGS...`: the rendered objects, or helm's
/// error text.
fn render(env: &TestEnv, args: &[&str]) -> Result<Vec<Value>, String> {
    let out = env
        .helm()
        .args(["template", "nur"])
        .arg(chart_dir())
        .args(["--namespace", "nur-system"])
        .args(args)
        .output()
        .unwrap();
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(yaml_documents(&String::from_utf8(out.stdout).unwrap()))
}

fn find<'a>(objects: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objects.iter().filter(|o| o["kind"] == kind).collect()
}

fn one<'a>(objects: &'a [Value], kind: &str) -> &'a Value {
    let found = find(objects, kind);
    assert_eq!(found.len(), 1, "want one {kind}, got {found:?}");
    found[0]
}

fn operator_container(objects: &[Value]) -> &Value {
    &one(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]
}

fn args(objects: &[Value]) -> Vec<String> {
    operator_container(objects)["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn chart_lints_clean() {
    let env = testenv!();
    let out = env
        .helm()
        .args(["lint", "--strict"])
        .arg(chart_dir())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("1 chart(s) linted, 0 chart(s) failed"),
        "{text}"
    );
    assert!(!text.contains("[WARNING]"), "{text}");
    assert!(!text.contains("[ERROR]"), "{text}");
}

#[test]
fn defaults_render_a_hardened_least_privilege_operator() {
    let env = testenv!();
    let objects = render(&env, &[]).unwrap();
    let version = chart_app_version();

    // RBAC: no wildcard anywhere, no Pods, Secrets only read one by one
    // (the credentialsSecret a function names, never listed or watched),
    // and the ClusterRole bound cluster-wide to the chart's own
    // ServiceAccount.
    let sa = one(&objects, "ServiceAccount");
    assert_eq!(sa["metadata"]["name"], "nur");
    for kind in ["ClusterRole", "Role"] {
        for role in find(&objects, kind) {
            for rule in role["rules"].as_array().unwrap() {
                for field in ["apiGroups", "resources", "verbs", "resourceNames"] {
                    for v in rule[field].as_array().into_iter().flatten() {
                        let v = v.as_str().unwrap();
                        assert!(!v.contains('*'), "wildcard in {kind} {field}: {rule}");
                        assert!(
                            !matches!(v, "pods" | "pods/exec" | "nodes"),
                            "{kind} grants {v}: {rule}"
                        );
                    }
                }
            }
        }
    }
    let cr = one(&objects, "ClusterRole");
    let secret_rules: Vec<&Value> = cr["rules"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["resources"].to_string().contains("secrets"))
        .collect();
    for r in &secret_rules {
        assert_eq!(r["verbs"], serde_json::json!(["get"]), "{r}");
    }
    let crb = one(&objects, "ClusterRoleBinding");
    assert_eq!(crb["roleRef"]["name"], cr["metadata"]["name"]);
    assert_eq!(crb["subjects"][0]["name"], "nur");
    assert_eq!(crb["subjects"][0]["namespace"], "nur-system");
    // Leases only in the release namespace, get/update only on its own one.
    let role = one(&objects, "Role");
    assert_eq!(role["metadata"]["namespace"], "nur-system");
    let lease_rules = role["rules"].as_array().unwrap();
    assert!(
        lease_rules
            .iter()
            .all(|r| r["resources"] == serde_json::json!(["leases"]))
    );
    assert!(
        lease_rules
            .iter()
            .any(|r| r["resourceNames"] == serde_json::json!(["nur"])
                && r["verbs"] == serde_json::json!(["get", "update"]))
    );
    assert!(find(&objects, "ClusterRole").iter().all(|r| {
        !r["rules"]
            .as_array()
            .unwrap()
            .iter()
            .any(|rule| rule["resources"].to_string().contains("leases"))
    }));

    // The operator pod: its own ServiceAccount, non-root, read-only root
    // filesystem, no capabilities, RuntimeDefault seccomp.
    let pod = &one(&objects, "Deployment")["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "nur");
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["securityContext"]["runAsUser"], 65532);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    let c = operator_container(&objects);
    let sc = &c["securityContext"];
    assert_eq!(sc["runAsNonRoot"], true);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]));
    assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault");
    assert_eq!(
        c["image"],
        format!("ghcr.io/nur-dev/nur-operator:{version}")
    );
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");

    // Args: the worker image of the same version, leader election on a
    // Lease in the release namespace, every namespace watched.
    let args = args(&objects);
    for want in [
        "run".to_string(),
        format!("--worker-image=ghcr.io/nur-dev/nur-worker:{version}"),
        r#"--worker-resources={"limits":{"memory":"512Mi"},"requests":{"cpu":"100m","memory":"64Mi"}}"#.into(),
        "--storage-timeout=5s".into(),
        "--check-timeout=30s".into(),
        "--max-module-size=64Mi".into(),
        "--leader-election=true".into(),
        "--lease-name=nur".into(),
        "--lease-namespace=nur-system".into(),
    ] {
        assert!(args.contains(&want), "{want} not in {args:?}");
    }
    assert!(
        !args.iter().any(|a| a.starts_with("--namespace")),
        "{args:?}"
    );
    // Nothing that loosens what a tenant's function may make the operator do.
    for loosening in [
        "--allow-file-modules",
        "--allow-local-storage",
        "--allow-image-override",
        "--allow-service-types",
        "--allow-service-annotations",
    ] {
        assert!(
            !args.iter().any(|a| a.starts_with(loosening)),
            "{loosening} in {args:?}"
        );
    }
    // Exactly the verbs the operator uses: server-side apply (create,
    // patch), watches (list, watch), get and delete only where an HPA or
    // PDB no longer wanted is removed; never update.
    let verbs = |resource: &str| -> Value {
        cr["rules"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["resources"] == serde_json::json!([resource]))
            .unwrap_or_else(|| panic!("no rule for {resource}"))["verbs"]
            .clone()
    };
    for (resource, want) in [
        ("nurfunctions", &["list", "watch"][..]),
        ("nurfunctions/status", &["patch"]),
        ("deployments", &["list", "watch", "create", "patch"]),
        ("services", &["list", "watch", "create", "patch"]),
        (
            "horizontalpodautoscalers",
            &["get", "list", "watch", "create", "patch", "delete"],
        ),
        (
            "poddisruptionbudgets",
            &["get", "list", "watch", "create", "patch", "delete"],
        ),
        ("secrets", &["get"]),
        ("events", &["create", "patch"]),
    ] {
        assert_eq!(verbs(resource), serde_json::json!(want), "{resource}");
    }

    // Metrics: a Service by default; no prometheus-operator objects unless
    // asked for (their CRDs may not exist).
    assert_eq!(find(&objects, "Service").len(), 1);
    assert!(find(&objects, "ServiceMonitor").is_empty());
    assert!(find(&objects, "PodMonitor").is_empty());
}

#[test]
fn values_change_what_is_rendered() {
    let env = testenv!();

    // One watched namespace: a RoleBinding there, no ClusterRoleBinding.
    let objects = render(&env, &["--set", "operator.watchNamespace=fns"]).unwrap();
    assert!(find(&objects, "ClusterRoleBinding").is_empty());
    let bindings = find(&objects, "RoleBinding");
    let rb = bindings
        .iter()
        .find(|b| b["roleRef"]["kind"] == "ClusterRole")
        .unwrap();
    assert_eq!(rb["metadata"]["namespace"], "fns");
    assert!(args(&objects).contains(&"--namespace=fns".to_string()));

    // No worker default resources (null: helm merges {} with the defaults).
    let objects = render(&env, &["--set", "worker.resources=null"]).unwrap();
    let rendered = args(&objects);
    assert!(
        !rendered.iter().any(|a| a.starts_with("--worker-resources")),
        "{rendered:?}"
    );
    // A quantity that is not a string is refused by the schema.
    let refused = render(
        &env,
        &["--set-json", r#"worker.resources={"requests":{"cpu":1}}"#],
    )
    .unwrap_err();
    assert!(
        refused.contains("/worker/resources/requests/cpu"),
        "{refused}"
    );

    // Images by digest, pull secrets, object-store credentials for the
    // operator's module checks.
    let objects = render(
        &env,
        &[
            "--set",
            "worker.image.digest=sha256:1111111111111111111111111111111111111111111111111111111111111111",
            "--set",
            "operator.image.tag=dev",
            "--set",
            "imagePullSecrets[0].name=regcred",
            "--set",
            "operator.envFrom[0].secretRef.name=object-store",
        ],
    )
    .unwrap();
    let c = operator_container(&objects);
    assert_eq!(c["image"], "ghcr.io/nur-dev/nur-operator:dev");
    assert_eq!(c["envFrom"][0]["secretRef"]["name"], "object-store");
    assert!(args(&objects).contains(
        &"--worker-image=ghcr.io/nur-dev/nur-worker@sha256:1111111111111111111111111111111111111111111111111111111111111111".to_string()
    ));
    let pod = &one(&objects, "Deployment")["spec"]["template"]["spec"];
    assert_eq!(pod["imagePullSecrets"][0]["name"], "regcred");

    // Two replicas elect a leader; turning election off with two replicas
    // is refused, and with one the rollout never overlaps two operators.
    let objects = render(&env, &["--set", "operator.replicas=2"]).unwrap();
    assert_eq!(one(&objects, "Deployment")["spec"]["replicas"], 2);
    assert!(args(&objects).contains(&"--leader-election=true".to_string()));
    let err = render(
        &env,
        &[
            "--set",
            "operator.replicas=2",
            "--set",
            "operator.leaderElection.enabled=false",
        ],
    )
    .unwrap_err();
    assert!(
        err.contains("operator.replicas > 1 needs operator.leaderElection.enabled"),
        "{err}"
    );
    let objects = render(&env, &["--set", "operator.leaderElection.enabled=false"]).unwrap();
    assert!(find(&objects, "Role").is_empty());
    assert_eq!(
        one(&objects, "Deployment")["spec"]["strategy"]["type"],
        "Recreate"
    );
    assert!(args(&objects).contains(&"--leader-election=false".to_string()));

    // values.schema.json: a misspelt key or a malformed digest is refused,
    // not silently ignored.
    let err = render(&env, &["--set", "operator.replica=2"]).unwrap_err();
    assert!(
        err.contains("additional properties 'replica' not allowed"),
        "{err}"
    );
    let err = render(&env, &["--set", "worker.image.digest=latest"]).unwrap_err();
    assert!(err.contains("/worker/image/digest"), "{err}");

    // Prometheus-operator objects on request.
    let objects = render(
        &env,
        &[
            "--set",
            "metrics.serviceMonitor.enabled=true",
            "--set",
            "metrics.podMonitor.enabled=true",
        ],
    )
    .unwrap();
    let sm = one(&objects, "ServiceMonitor");
    assert_eq!(sm["spec"]["endpoints"][0]["port"], "http-metrics");
    let pm = one(&objects, "PodMonitor");
    assert_eq!(pm["spec"]["podMetricsEndpoints"][0]["port"], "admin");
    assert_eq!(
        pm["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"],
        "nur-function"
    );
}
