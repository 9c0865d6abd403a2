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

/// The one `kind` object named `name`.
fn named<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    let found: Vec<&Value> = find(objects, kind)
        .into_iter()
        .filter(|o| o["metadata"]["name"] == name)
        .collect();
    assert_eq!(found.len(), 1, "want one {kind} {name}, got {found:?}");
    found[0]
}

/// Names of the `kind` objects.
fn names_of(objects: &[Value], kind: &str) -> Vec<String> {
    find(objects, kind)
        .iter()
        .map(|o| o["metadata"]["name"].as_str().unwrap().to_string())
        .collect()
}

fn operator_pod(objects: &[Value]) -> &Value {
    &named(objects, "Deployment", "nur-operator")["spec"]["template"]["spec"]
}

fn operator_container(objects: &[Value]) -> &Value {
    &operator_pod(objects)["containers"][0]
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect()
}

fn args(objects: &[Value]) -> Vec<String> {
    strings(&operator_container(objects)["args"])
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

    // RBAC: no wildcard anywhere, Pods only listed, Secrets only read one by one
    // (the credentialsSecret a function names, never listed or watched),
    // and the ClusterRole bound cluster-wide to the chart's own
    // ServiceAccount.
    named(&objects, "ServiceAccount", "nur");
    for kind in ["ClusterRole", "Role"] {
        for role in find(&objects, kind) {
            for rule in role["rules"].as_array().unwrap() {
                for field in ["apiGroups", "resources", "verbs", "resourceNames"] {
                    for v in rule[field].as_array().into_iter().flatten() {
                        let v = v.as_str().unwrap();
                        assert!(!v.contains('*'), "wildcard in {kind} {field}: {rule}");
                        assert!(
                            !matches!(v, "pods/exec" | "pods/log" | "nodes"),
                            "{kind} grants {v}: {rule}"
                        );
                        // Pods only to list: the compile Job's pod, whose
                        // termination message carries the artifact's sha256.
                        if v == "pods" {
                            assert_eq!(
                                rule["verbs"],
                                serde_json::json!(["list"]),
                                "{kind}: {rule}"
                            );
                        }
                    }
                }
            }
        }
    }
    let cr = named(&objects, "ClusterRole", "nur");
    let secret_rules: Vec<&Value> = cr["rules"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["resources"].to_string().contains("secrets"))
        .collect();
    for r in &secret_rules {
        assert_eq!(r["verbs"], serde_json::json!(["get"]), "{r}");
    }
    let crb = named(&objects, "ClusterRoleBinding", "nur");
    assert_eq!(crb["roleRef"]["name"], cr["metadata"]["name"]);
    assert_eq!(crb["subjects"][0]["name"], "nur");
    assert_eq!(crb["subjects"][0]["namespace"], "nur-system");
    // Leases only in the release namespace, get/update only on its own one.
    assert_eq!(names_of(&objects, "Role"), ["nur-leader-election"]);
    let role = named(&objects, "Role", "nur-leader-election");
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
    let pod = operator_pod(&objects);
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
        ("jobs", &["list", "watch", "create"]),
        ("pods", &["list"]),
    ] {
        assert_eq!(verbs(resource), serde_json::json!(want), "{resource}");
    }

    // Metrics: a Service by default (and the gateway's); no
    // prometheus-operator objects unless asked for (their CRDs may not
    // exist).
    assert_eq!(
        names_of(&objects, "Service"),
        ["nur-gateway", "nur-operator-metrics"]
    );
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
    let pod = operator_pod(&objects);
    assert_eq!(pod["imagePullSecrets"][0]["name"], "regcred");
    // The gateway's pods take the same pull secrets.
    let pod = &named(&objects, "Deployment", "nur-gateway")["spec"]["template"]["spec"];
    assert_eq!(pod["imagePullSecrets"][0]["name"], "regcred");

    // Two replicas elect a leader; turning election off with two replicas
    // is refused, and with one the rollout never overlaps two operators.
    let objects = render(&env, &["--set", "operator.replicas=2"]).unwrap();
    assert_eq!(
        named(&objects, "Deployment", "nur-operator")["spec"]["replicas"],
        2
    );
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
        named(&objects, "Deployment", "nur-operator")["spec"]["strategy"]["type"],
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

fn gateway_pod(objects: &[Value]) -> &Value {
    &named(objects, "Deployment", "nur-gateway")["spec"]["template"]["spec"]
}

fn gateway_container(objects: &[Value]) -> &Value {
    &gateway_pod(objects)["containers"][0]
}

fn gateway_args(objects: &[Value]) -> Vec<String> {
    strings(&gateway_container(objects)["args"])
}

/// The gateway Service's ports as (name, port, targetPort).
fn service_ports(objects: &[Value]) -> Vec<(String, i64, String)> {
    named(objects, "Service", "nur-gateway")["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            assert_eq!(p["protocol"], "TCP", "{p}");
            (
                p["name"].as_str().unwrap().to_string(),
                p["port"].as_i64().unwrap(),
                p["targetPort"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// The gateway container's ports as (name, containerPort).
fn container_ports(objects: &[Value]) -> Vec<(String, i64)> {
    gateway_container(objects)["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_string(),
                p["containerPort"].as_i64().unwrap(),
            )
        })
        .collect()
}

/// `tcp-N` for each N of `ports`.
fn tcp_names(ports: std::ops::RangeInclusive<i64>) -> Vec<String> {
    ports.map(|p| format!("tcp-{p}")).collect()
}

/// What the gateway may do: get, list and watch NurFunctions and
/// EndpointSlices, and patch NurFunctions (the scale-to-zero annotations),
/// nothing else.
fn gateway_rules() -> Value {
    serde_json::json!([
        {"apiGroups": ["nur.dev"], "resources": ["nurfunctions"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": ["nur.dev"], "resources": ["nurfunctions"], "verbs": ["patch"]},
        {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["get", "list", "watch"]},
    ])
}

/// Every rendered object that belongs to the gateway, by label or name.
fn gateway_objects(objects: &[Value]) -> Vec<String> {
    objects
        .iter()
        .filter(|o| {
            o["metadata"]["labels"]["app.kubernetes.io/component"] == "gateway"
                || o["metadata"]["name"]
                    .as_str()
                    .is_some_and(|n| n.contains("gateway"))
        })
        .map(|o| {
            format!(
                "{}/{}",
                o["kind"].as_str().unwrap(),
                o["metadata"]["name"].as_str().unwrap()
            )
        })
        .collect()
}

#[test]
fn defaults_render_a_hardened_gateway_with_least_privilege_rbac() {
    let env = testenv!();
    let objects = render(&env, &[]).unwrap();
    let version = chart_app_version();

    // Two pods of the chart's gateway image, hardened exactly like the
    // operator's: the same pod and container security contexts, spelled
    // out here too.
    let d = named(&objects, "Deployment", "nur-gateway");
    assert_eq!(d["metadata"]["namespace"], "nur-system");
    assert_eq!(d["spec"]["replicas"], 2);
    let pod = gateway_pod(&objects);
    let c = gateway_container(&objects);
    assert_eq!(c["image"], format!("ghcr.io/nur-dev/nur-gateway:{version}"));
    assert_eq!(
        pod["securityContext"],
        operator_pod(&objects)["securityContext"]
    );
    assert_eq!(
        c["securityContext"],
        operator_container(&objects)["securityContext"]
    );
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["securityContext"]["runAsUser"], 65532);
    assert_eq!(pod["securityContext"]["runAsGroup"], 65532);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    let sc = &c["securityContext"];
    assert_eq!(sc["runAsNonRoot"], true);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["privileged"], false);
    assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]));
    assert!(sc["capabilities"]["add"].is_null(), "{sc}");
    assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault");
    assert_eq!(pod["enableServiceLinks"], false);
    assert!(pod["hostNetwork"].is_null(), "{pod}");
    // Its own ServiceAccount, whose token only the gateway pods mount (they
    // need the API: the watches).
    assert_eq!(pod["serviceAccountName"], "nur-gateway");
    assert_eq!(pod["automountServiceAccountToken"], true);
    let sa = named(&objects, "ServiceAccount", "nur-gateway");
    assert_eq!(sa["metadata"]["namespace"], "nur-system");
    assert_eq!(sa["automountServiceAccountToken"], false);

    // The listeners, the ports named after them, the probes on the admin
    // port, and a grace period above drain delay + shutdown grace.
    let gw_args = gateway_args(&objects);
    for want in [
        "--http-listen=0.0.0.0:8000",
        "--tls-listen=0.0.0.0:8443",
        "--admin-listen=0.0.0.0:9091",
        "--tcp-ports=7000-7009",
        "--drain-delay=5s",
        "--shutdown-grace=30s",
    ] {
        assert!(
            gw_args.iter().any(|a| a == want),
            "{want} not in {gw_args:?}"
        );
    }
    assert_eq!(gw_args[0], "run", "{gw_args:?}");
    assert!(
        !gw_args.iter().any(|a| a.starts_with("--namespace")),
        "{gw_args:?}"
    );
    let mut want_ports = vec![
        ("http".to_string(), 8000),
        ("tls".to_string(), 8443),
        ("admin".to_string(), 9091),
    ];
    want_ports.extend((7000..=7009).map(|p| (format!("tcp-{p}"), p)));
    assert_eq!(container_ports(&objects), want_ports);
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(c["readinessProbe"]["httpGet"]["port"], "admin");
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(c["livenessProbe"]["httpGet"]["port"], "admin");
    let grace = pod["terminationGracePeriodSeconds"].as_i64().unwrap();
    assert!(grace > 5 + 30, "terminationGracePeriodSeconds {grace}");
    assert_eq!(
        c["env"][0],
        serde_json::json!({"name": "NUR_LOG", "value": "info"})
    );

    // Its pods are told apart from the operator's: neither selector (nor
    // the operator's metrics Service) picks the other's pods.
    let gw_labels = &d["spec"]["template"]["metadata"]["labels"];
    let op_labels =
        &named(&objects, "Deployment", "nur-operator")["spec"]["template"]["metadata"]["labels"];
    let selects = |selector: &Value, labels: &Value| {
        selector
            .as_object()
            .unwrap()
            .iter()
            .all(|(k, v)| &labels[k] == v)
    };
    let gw_selector = &d["spec"]["selector"]["matchLabels"];
    assert_eq!(gw_selector["app.kubernetes.io/component"], "gateway");
    assert!(selects(gw_selector, gw_labels));
    assert!(!selects(gw_selector, op_labels));
    let op_service = &named(&objects, "Service", "nur-operator-metrics")["spec"]["selector"];
    assert!(!selects(op_service, gw_labels));

    // RBAC: exactly get, list and watch of NurFunctions and EndpointSlices
    // and patch of NurFunctions (the activity marks and wake requests of
    // scale to zero), bound cluster-wide (every namespace routed) to its
    // ServiceAccount.
    let cr = named(&objects, "ClusterRole", "nur-gateway");
    assert_eq!(cr["rules"], gateway_rules());
    let crb = named(&objects, "ClusterRoleBinding", "nur-gateway");
    assert_eq!(
        crb["roleRef"],
        serde_json::json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "nur-gateway"})
    );
    assert_eq!(
        crb["subjects"],
        serde_json::json!([{"kind": "ServiceAccount", "name": "nur-gateway", "namespace": "nur-system"}])
    );
    // No other grant names the gateway's ServiceAccount.
    for kind in ["ClusterRoleBinding", "RoleBinding"] {
        for b in find(&objects, kind) {
            if b["metadata"]["name"] != "nur-gateway" {
                assert!(!b["subjects"].to_string().contains("nur-gateway"), "{b}");
            }
        }
    }

    // The Service: http 80 and tls 443 to the named container ports, and
    // one port per TCP route port, each to the container port of its name.
    let svc = named(&objects, "Service", "nur-gateway");
    assert_eq!(svc["metadata"]["namespace"], "nur-system");
    assert_eq!(svc["spec"]["type"], "ClusterIP");
    assert_eq!(&svc["spec"]["selector"], gw_selector);
    let mut want = vec![
        ("http".to_string(), 80, "http".to_string()),
        ("tls".to_string(), 443, "tls".to_string()),
    ];
    want.extend((7000..=7009).map(|p| (format!("tcp-{p}"), p, format!("tcp-{p}"))));
    assert_eq!(service_ports(&objects), want);

    // Two replicas: a node drain takes one at a time.
    let pdb = named(&objects, "PodDisruptionBudget", "nur-gateway");
    assert_eq!(pdb["spec"]["maxUnavailable"], 1);
    assert_eq!(&pdb["spec"]["selector"]["matchLabels"], gw_selector);

    // The operator judges spec.routes.tcp by the same ports.
    let op_args = args(&objects);
    assert!(
        op_args.contains(&"--gateway-tcp-ports=7000-7009".to_string()),
        "{op_args:?}"
    );
}

#[test]
fn gateway_values_change_what_is_rendered() {
    let env = testenv!();

    // Other TCP route ports: other port names on the Service and the
    // container, the same range for the gateway and the operator.
    let objects = render(&env, &["--set", "gateway.tcpPorts=7100-7102"]).unwrap();
    let port_names: Vec<String> = service_ports(&objects).into_iter().map(|p| p.0).collect();
    let mut want = vec!["http".to_string(), "tls".to_string()];
    want.extend(tcp_names(7100..=7102));
    assert_eq!(port_names, want);
    assert!(
        service_ports(&objects)
            .iter()
            .any(|p| *p == ("tcp-7101".to_string(), 7101, "tcp-7101".to_string()))
    );
    let ports: Vec<String> = container_ports(&objects).into_iter().map(|p| p.0).collect();
    assert_eq!(ports[3..], tcp_names(7100..=7102));
    assert!(gateway_args(&objects).contains(&"--tcp-ports=7100-7102".to_string()));
    assert!(args(&objects).contains(&"--gateway-tcp-ports=7100-7102".to_string()));
    // One port (helm's --set makes it a number).
    let objects = render(&env, &["--set", "gateway.tcpPorts=7100"]).unwrap();
    let port_names: Vec<String> = service_ports(&objects).into_iter().map(|p| p.0).collect();
    assert_eq!(port_names, ["http", "tls", "tcp-7100"]);
    assert!(args(&objects).contains(&"--gateway-tcp-ports=7100".to_string()));
    // Ranges the gateway could not listen on are refused.
    for (ports, why) in [
        ("7009-7000", "the first not above the last"),
        ("7000-8000", "at most 98 ports"),
        ("8440-8450", "includes 8443"),
        ("9000-9095", "includes 9091"),
        ("1-2-3", "/gateway/tcpPorts"),
        ("http", "/gateway/tcpPorts"),
    ] {
        let err = render(&env, &["--set", &format!("gateway.tcpPorts={ports}")]).unwrap_err();
        assert!(err.contains(why), "{ports}: {err}");
    }

    // Off: nothing of the gateway is rendered.
    let objects = render(&env, &["--set", "gateway.enabled=false"]).unwrap();
    assert_eq!(gateway_objects(&objects), Vec::<String>::new());
    assert_eq!(names_of(&objects, "Deployment"), ["nur-operator"]);
    assert_eq!(names_of(&objects, "Service"), ["nur-operator-metrics"]);
    assert_eq!(names_of(&objects, "ServiceAccount"), ["nur"]);
    assert_eq!(names_of(&objects, "ClusterRole"), ["nur"]);
    assert!(find(&objects, "PodDisruptionBudget").is_empty());
    // and the defaults render it all (the check above looks for something).
    assert_eq!(
        gateway_objects(&render(&env, &[]).unwrap()).len(),
        6,
        "Deployment, Service, ServiceAccount, ClusterRole, ClusterRoleBinding, PodDisruptionBudget"
    );

    // One watched namespace (the operator's, by default): a Role and
    // RoleBinding there with the same rules, nothing cluster-wide.
    let objects = render(&env, &["--set", "operator.watchNamespace=fns"]).unwrap();
    assert!(find(&objects, "ClusterRoleBinding").is_empty());
    assert_eq!(names_of(&objects, "ClusterRole"), ["nur"]);
    let role = named(&objects, "Role", "nur-gateway");
    assert_eq!(role["metadata"]["namespace"], "fns");
    assert_eq!(role["rules"], gateway_rules());
    let rb = named(&objects, "RoleBinding", "nur-gateway");
    assert_eq!(rb["metadata"]["namespace"], "fns");
    assert_eq!(
        rb["roleRef"],
        serde_json::json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "nur-gateway"})
    );
    assert_eq!(
        rb["subjects"],
        serde_json::json!([{"kind": "ServiceAccount", "name": "nur-gateway", "namespace": "nur-system"}])
    );
    assert!(gateway_args(&objects).contains(&"--namespace=fns".to_string()));
    // Its own namespace wins over the operator's.
    let objects = render(
        &env,
        &[
            "--set",
            "operator.watchNamespace=fns",
            "--set",
            "gateway.watchNamespace=edge",
        ],
    )
    .unwrap();
    assert_eq!(
        named(&objects, "Role", "nur-gateway")["metadata"]["namespace"],
        "edge"
    );
    assert!(gateway_args(&objects).contains(&"--namespace=edge".to_string()));
    assert!(args(&objects).contains(&"--namespace=fns".to_string()));

    // One replica: no PodDisruptionBudget (it would block every drain).
    let objects = render(&env, &["--set", "gateway.replicas=1"]).unwrap();
    assert_eq!(
        named(&objects, "Deployment", "nur-gateway")["spec"]["replicas"],
        1
    );
    assert!(find(&objects, "PodDisruptionBudget").is_empty());

    // Drain times: the flags, and a grace period above both.
    let objects = render(
        &env,
        &[
            "--set",
            "gateway.drainDelay=1500ms",
            "--set",
            "gateway.shutdownGrace=2m",
        ],
    )
    .unwrap();
    let gw_args = gateway_args(&objects);
    assert!(
        gw_args.contains(&"--drain-delay=1500ms".to_string()),
        "{gw_args:?}"
    );
    assert!(
        gw_args.contains(&"--shutdown-grace=2m".to_string()),
        "{gw_args:?}"
    );
    let grace = gateway_pod(&objects)["terminationGracePeriodSeconds"]
        .as_i64()
        .unwrap();
    assert!(grace > 2 + 120, "terminationGracePeriodSeconds {grace}");
    let err = render(&env, &["--set", "gateway.drainDelay=1m30s"]).unwrap_err();
    assert!(err.contains("/gateway/drainDelay"), "{err}");

    // Service type, annotations and ports; image by digest; extra flags
    // and environment; placement.
    let objects = render(
        &env,
        &[
            "--set",
            "gateway.service.type=LoadBalancer",
            "--set",
            "gateway.service.annotations.lb\\.example/scheme=internal",
            "--set",
            "gateway.service.ports.http=8080",
            "--set",
            "gateway.image.digest=sha256:2222222222222222222222222222222222222222222222222222222222222222",
            "--set",
            "gateway.extraArgs[0]=--wake-timeout=10s",
            "--set",
            "gateway.env[0].name=X",
            "--set",
            "gateway.env[0].value=y",
            "--set",
            "gateway.nodeSelector.zone=edge",
            "--set",
            "gateway.podAnnotations.a=b",
        ],
    )
    .unwrap();
    let svc = named(&objects, "Service", "nur-gateway");
    assert_eq!(svc["spec"]["type"], "LoadBalancer");
    assert_eq!(
        svc["metadata"]["annotations"]["lb.example/scheme"],
        "internal"
    );
    assert_eq!(
        service_ports(&objects)[0],
        ("http".to_string(), 8080, "http".to_string())
    );
    let c = gateway_container(&objects);
    assert_eq!(
        c["image"],
        "ghcr.io/nur-dev/nur-gateway@sha256:2222222222222222222222222222222222222222222222222222222222222222"
    );
    assert!(gateway_args(&objects).contains(&"--wake-timeout=10s".to_string()));
    assert_eq!(c["env"][1], serde_json::json!({"name": "X", "value": "y"}));
    let pod = gateway_pod(&objects);
    assert_eq!(pod["nodeSelector"]["zone"], "edge");
    assert_eq!(
        named(&objects, "Deployment", "nur-gateway")["spec"]["template"]["metadata"]["annotations"]
            ["a"],
        "b"
    );
    // The operator's placement is its own.
    assert!(operator_pod(&objects)["nodeSelector"].is_null());

    // No RBAC objects with rbac.create=false; a ServiceAccount of the
    // user's.
    let objects = render(
        &env,
        &[
            "--set",
            "rbac.create=false",
            "--set",
            "gateway.serviceAccount.create=false",
            "--set",
            "gateway.serviceAccount.name=edge",
        ],
    )
    .unwrap();
    let mut left = gateway_objects(&objects);
    left.sort();
    assert_eq!(
        left,
        [
            "Deployment/nur-gateway",
            "PodDisruptionBudget/nur-gateway",
            "Service/nur-gateway"
        ]
    );
    assert_eq!(gateway_pod(&objects)["serviceAccountName"], "edge");

    // values.schema.json: a misspelt gateway key is refused.
    let err = render(&env, &["--set", "gateway.replica=3"]).unwrap_err();
    assert!(
        err.contains("additional properties 'replica' not allowed"),
        "{err}"
    );
}

/// NOTES.txt says where the gateway is.
#[test]
fn the_notes_name_the_gateway_service() {
    let env = testenv!();
    let notes = |sets: &[&str]| {
        let out = env
            .helm()
            .args(["install", "nur"])
            .arg(chart_dir())
            .args(["--namespace", "nur-system", "--dry-run=client"])
            .args(sets)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        text[text.find("NOTES:").unwrap()..].to_string()
    };
    let text = notes(&[]);
    assert!(
        text.contains("at Service nur-gateway.nur-system.svc (ClusterIP):\nHTTP on port 80, TLS on port 443, TCP on ports 7000-7009."),
        "{text}"
    );
    assert!(
        text.contains("rollout status deployment/nur-gateway"),
        "{text}"
    );
    let text = notes(&["--set", "gateway.enabled=false"]);
    assert!(!text.contains("gateway"), "{text}");
}
