// One file on purpose: each test runs the real operator against the cluster through the same setup; split by topic would repeat it.
//! The operator against the real test environment: a kube-apiserver with
//! the controller-manager (Deployments, garbage collection) and kwok (pods go
//! Ready), and MinIO for the modules. Each test runs the real `nur-operator`
//! binary, scoped to the test's namespace, with the environment's
//! KUBECONFIG and AWS_* variables.

use std::process::Stdio;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::Api;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use nur_operator::crd::NurFunction;
use nur_testkit::{TestEnv, TestNamespace, eventually, testenv};

mod support;
use nur_testkit::examples;
use support::*;

/// A module that imports from a module the worker does not provide
/// ("env", what a C toolchain's libc expects): breaks the ABI.
const FOREIGN_MODULE: &str = r#"(module
  (import "env" "abort" (func))
  (memory (export "memory") 1)
  (func (export "alloc") (param i32) (result i32) i32.const 0)
  (func (export "poll_stream") (param i32 i32)))"#;

/// A module that follows the ABI and does nothing: a second digest.
const IDLE_MODULE: &str = r#"(module
  (memory (export "memory") 1)
  (func (export "alloc") (param i32) (result i32) i32.const 1024)
  (func (export "poll_stream") (param i32 i32)))"#;

#[tokio::test]
async fn crd_applies_explains_and_enforces_cel_rules() {
    let env = testenv!();
    install_crd(&env).await;
    // kubectl's discovery can lag behind a freshly established CRD.
    let explain = |field: &str| {
        let start = std::time::Instant::now();
        loop {
            let out = env.kubectl().args(["explain", field]).output().unwrap();
            let text = String::from_utf8_lossy(&out.stdout).to_string();
            if out.status.success() {
                return text;
            }
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(start.elapsed() < T, "kubectl explain {field}: {err}");
            std::thread::sleep(Duration::from_millis(500));
        }
    };
    let text = explain("nurfunction.spec.module");
    assert!(
        text.contains("without a pin the operator follows new uploads"),
        "{text}"
    );
    let text = explain("nurfunction.spec.port");
    assert!(text.contains("Default: 8080"), "{text}");
    let text = explain("nurfunction.spec.autoscaling.targetCPUUtilizationPercentage");
    assert!(text.contains("Default: 80"), "{text}");

    let ns = env.namespace("op-cel").await.unwrap();
    let api = ns.api::<NurFunction>();
    let both: NurFunction = serde_json::from_value(serde_json::json!({
        "apiVersion": "nur.dev/v1alpha1", "kind": "NurFunction",
        "metadata": { "name": "both" },
        "spec": { "module": { "url": "s3://b/k" }, "replicas": 2,
                  "autoscaling": { "maxReplicas": 3 } }
    }))
    .unwrap();
    let err = eventually("CEL refusal", T, || {
        let api = api.clone();
        let both = both.clone();
        async move {
            match api.create(&PostParams::default(), &both).await {
                Err(kube::Error::Api(s)) if s.code == 422 => Some(s.message),
                _ => None,
            }
        }
    })
    .await
    .unwrap();
    assert!(
        err.contains("set either replicas or autoscaling, not both"),
        "{err}"
    );

    let mut inverted = both.clone();
    inverted.spec.replicas = None;
    inverted.spec.autoscaling.as_mut().unwrap().min_replicas = Some(5);
    let err = api
        .create(&PostParams::default(), &inverted)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("maxReplicas must be greater than or equal to minReplicas"),
        "{err}"
    );

    let mut admin_port = both.clone();
    admin_port.spec.autoscaling = None;
    admin_port.spec.port = 9090;
    let err = api
        .create(&PostParams::default(), &admin_port)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("port 9090 is the worker's admin port"),
        "{err}"
    );
}

/// What most cluster tests start from: the CRD installed, a fresh namespace,
/// echo.wasm uploaded as `key`, and an operator watching the namespace.
struct Started {
    ns: TestNamespace,
    echo: Vec<u8>,
    digest: String,
    url: String,
    operator: Operator,
}

async fn start_with_echo(env: &TestEnv, prefix: &str, key: &str) -> Started {
    install_crd(env).await;
    let ns = env.namespace(prefix).await.unwrap();
    let echo = examples::read("echo.wasm");
    let digest = nur_module::sha256_hex(&echo);
    let url = upload(env, &ns, key, echo.clone()).await;
    let operator = Operator::start(env, &ns);
    Started {
        ns,
        echo,
        digest,
        url,
        operator,
    }
}

#[tokio::test]
async fn function_rolls_out_scales_follows_uploads_and_is_collected() {
    let env = testenv!();
    let Started {
        ns,
        echo,
        digest,
        url,
        operator: op,
    } = start_with_echo(&env, "op-roll", "fn.wasm").await;
    let f = create_function(
        &ns,
        "echo",
        serde_json::json!({ "module": { "url": url }, "limits": { "timeout": "5s" } }),
    )
    .await;
    let uid = f.metadata.uid.clone().unwrap();

    // Deployment: digest pinned in the args, owned by the NurFunction.
    let d = deployment_with_digest(&ns, "echo", &digest).await;
    let owner = &d.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str()),
        ("NurFunction", uid.as_str())
    );
    assert_eq!(owner.controller, Some(true));
    let pod = d.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    let c = &pod.containers[0];
    assert_eq!(c.image.as_deref(), Some("nur-worker:test"));
    let args = c.args.clone().unwrap();
    for want in [url.as_str(), "--timeout", "5s", "--function-name", "echo"] {
        assert!(args.iter().any(|a| a == want), "{want} not in {args:?}");
    }
    assert_eq!(pod.automount_service_account_token, Some(false));

    // Service: owned, selects the pods, named port.
    let svc = eventually("Service", T, || {
        let api = ns.api::<Service>();
        async move { api.get_opt("echo").await.ok()? }
    })
    .await
    .unwrap();
    let owner = &svc.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(owner.uid, uid);
    assert_eq!(
        svc.spec.as_ref().unwrap().ports.as_ref().unwrap()[0].port,
        8080
    );

    // Status: module checked, pods Ready (kwok), endpoint and selector.
    let api = ns.api::<NurFunction>();
    let f = eventually("Ready=True", T, || {
        let api = api.clone();
        async move {
            let f = api.get("echo").await.ok()?;
            (condition(&f, "Ready")?.0 == "True").then_some(f)
        }
    })
    .await
    .unwrap();
    let st = f.status.clone().unwrap();
    assert_eq!(condition(&f, "ModuleValid").unwrap().0, "True");
    assert_eq!(condition(&f, "Available").unwrap().0, "True");
    assert_eq!(
        st.module.as_ref().unwrap().digest,
        format!("sha256:{digest}")
    );
    assert_eq!(st.module.as_ref().unwrap().size, echo.len() as i64);
    assert_eq!(st.observed_generation, f.metadata.generation);
    assert_eq!(
        st.endpoint.as_deref(),
        Some(format!("echo.{}.svc:8080", ns.name()).as_str())
    );
    assert_eq!(
        st.selector.as_deref(),
        Some("app.kubernetes.io/instance=echo,app.kubernetes.io/name=nur-function")
    );
    assert_eq!((st.replicas, st.ready_replicas), (Some(1), Some(1)));

    // Printer columns, through the short name.
    let out = env
        .kubectl()
        .args(["get", "nurfn", "echo", "-n", ns.name()])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().unwrap_or("").split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME", "READY", "REASON", "REPLICAS", "DIGEST", "ENDPOINT", "AGE"
        ],
        "{table}"
    );
    let row: Vec<&str> = lines.next().unwrap_or("").split_whitespace().collect();
    assert_eq!(
        row[..5],
        ["echo", "True", "Ready", "1", &format!("sha256:{digest}")],
        "{table}"
    );

    // A restarted operator converges to the same objects: no new
    // Deployment generation, no second ReplicaSet, no status churn.
    let generation = ns
        .api::<Deployment>()
        .get("echo")
        .await
        .unwrap()
        .metadata
        .generation;
    drop(op);
    let op = Operator::start(&env, &ns);
    tokio::time::sleep(Duration::from_secs(6)).await;
    let d = ns.api::<Deployment>().get("echo").await.unwrap();
    assert_eq!(d.metadata.generation, generation);
    let rs = ns
        .api::<ReplicaSet>()
        .list(&ListParams::default())
        .await
        .unwrap();
    assert_eq!(
        rs.items.len(),
        1,
        "{:?}",
        rs.items
            .iter()
            .map(|r| r.metadata.name.clone())
            .collect::<Vec<_>>()
    );
    let again = api.get("echo").await.unwrap();
    assert_eq!(again.status, f.status);

    // A new upload to the same URL (no pin) rolls the Deployment.
    let other = IDLE_MODULE.as_bytes().to_vec();
    let new_digest = nur_module::sha256_hex(&other);
    assert_ne!(new_digest, digest);
    upload(&env, &ns, "fn.wasm", other).await;
    deployment_with_digest(&ns, "echo", &new_digest).await;

    // kubectl scale goes through the scale subresource to the Deployment.
    let out = env
        .kubectl()
        .args(["scale", "-n", ns.name(), "nurfunction/echo", "--replicas=3"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eventually("Deployment scaled to 3", T, || {
        let api = ns.api::<Deployment>();
        async move {
            let d = api.get("echo").await.ok()?;
            (d.spec?.replicas == Some(3)).then_some(())
        }
    })
    .await
    .unwrap();
    eventually("status.readyReplicas 3", T, || {
        let api = api.clone();
        async move {
            let f = api.get("echo").await.ok()?;
            (f.status?.ready_replicas == Some(3)).then_some(())
        }
    })
    .await
    .unwrap();

    // Deleting the NurFunction garbage-collects what it owns.
    api.delete("echo", &DeleteParams::foreground())
        .await
        .unwrap();
    eventually("Deployment and Service collected", T, || {
        let (d, s) = (ns.api::<Deployment>(), ns.api::<Service>());
        async move {
            let gone =
                d.get_opt("echo").await.ok()?.is_none() && s.get_opt("echo").await.ok()?.is_none();
            gone.then_some(())
        }
    })
    .await
    .unwrap();
    drop(op);
}

#[tokio::test]
async fn abi_breaking_module_is_refused_without_a_deployment() {
    let env = testenv!();
    install_crd(&env).await;
    let ns = env.namespace("op-abi").await.unwrap();
    let url = upload(&env, &ns, "wasi.wat", FOREIGN_MODULE.as_bytes().to_vec()).await;
    let _op = Operator::start(&env, &ns);
    create_function(&ns, "wasi", serde_json::json!({ "module": { "url": url } })).await;

    let (status, reason, message) = wait_condition(&ns, "wasi", "ModuleValid", |_| true).await;
    assert_eq!((status.as_str(), reason.as_str()), ("False", "BreaksABI"));
    assert!(
        message.contains("only functions from \"nur\" may be imported"),
        "{message}"
    );
    assert!(message.contains(&url), "{message}");
    let f = ns.api::<NurFunction>().get("wasi").await.unwrap();
    assert_eq!(condition(&f, "Ready").unwrap().0, "False");

    // A Warning Event names the rule.
    let events: Api<Event> = Api::namespaced(ns.client(), ns.name());
    let note = eventually("BreaksABI event", T, || {
        let events = events.clone();
        async move {
            let list = events.list(&ListParams::default()).await.ok()?;
            list.items
                .into_iter()
                .find(|e| e.reason.as_deref() == Some("BreaksABI"))
                .and_then(|e| e.note)
        }
    })
    .await
    .unwrap();
    assert!(note.contains("env.abort"), "{note}");

    // Several re-checks later there is still no Deployment or Service.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(!has_deployment(&ns, "wasi").await);
    assert!(ns.api::<Service>().get_opt("wasi").await.unwrap().is_none());
}

#[tokio::test]
async fn pinned_digest_mismatch_leaves_running_pods_alone() {
    let env = testenv!();
    let Started {
        ns,
        echo: _,
        digest,
        url,
        operator: _op,
    } = start_with_echo(&env, "op-pin", "pinned.wasm").await;
    create_function(
        &ns,
        "pinned",
        serde_json::json!({ "module": { "url": url, "sha256": digest } }),
    )
    .await;
    deployment_with_digest(&ns, "pinned", &digest).await;

    // The object changes under the pin: ModuleValid=False with both
    // digests, and the Deployment keeps the pinned digest.
    let other = IDLE_MODULE.as_bytes().to_vec();
    let other_digest = nur_module::sha256_hex(&other);
    upload(&env, &ns, "pinned.wasm", other).await;
    let (_, reason, message) =
        wait_condition(&ns, "pinned", "ModuleValid", |c| c.0 == "False").await;
    assert_eq!(reason, "DigestMismatch");
    assert!(
        message.contains(&digest) && message.contains(&other_digest),
        "{message}"
    );
    deployment_with_digest(&ns, "pinned", &digest).await;
}

#[tokio::test]
async fn one_leader_reconciles_and_a_standby_takes_over() {
    let env = testenv!();
    install_crd(&env).await;
    let ns = env.namespace("op-lease").await.unwrap();
    let url = upload(&env, &ns, "fn.wasm", examples::read("echo.wasm")).await;
    let mut a = Some(Operator::start_as(&env, &ns, "op-a"));
    let mut b = Some(Operator::start_as(&env, &ns, "op-b"));
    create_function(
        &ns,
        "first",
        serde_json::json!({ "module": { "url": url } }),
    )
    .await;
    let digest = nur_module::sha256_hex(&examples::read("echo.wasm"));
    deployment_with_digest(&ns, "first", &digest).await;

    let leases: Api<Lease> = Api::namespaced(ns.client(), ns.name());
    let holder = leases
        .get("nur-operator")
        .await
        .unwrap()
        .spec
        .unwrap()
        .holder_identity
        .unwrap();
    let (leader, standby) = match holder.as_str() {
        "op-a" => (&mut a, &mut b),
        "op-b" => (&mut b, &mut a),
        other => panic!("lease held by {other}"),
    };
    // Both serve their admin endpoints; only the leader says so.
    let metrics = |op: &Option<Operator>| {
        let (code, body) = op.as_ref().unwrap().get("/metrics").unwrap();
        assert_eq!(code, 200);
        body
    };
    assert!(metrics(leader).contains("nur_operator_leader 1\n"));
    assert!(metrics(standby).contains("nur_operator_leader 0\n"));
    assert_eq!(standby.as_ref().unwrap().get("/readyz").unwrap().0, 200);
    assert_eq!(standby.as_ref().unwrap().get("/healthz").unwrap().0, 200);

    // The leader dies without releasing the Lease: the standby takes it
    // once it expires and reconciles a new function.
    drop(leader.take());
    create_function(
        &ns,
        "second",
        serde_json::json!({ "module": { "url": url } }),
    )
    .await;
    deployment_with_digest(&ns, "second", &digest).await;
    let spec = leases.get("nur-operator").await.unwrap().spec.unwrap();
    assert_ne!(spec.holder_identity.as_deref(), Some(holder.as_str()));
    assert!(spec.lease_transitions.unwrap_or(0) >= 1, "{spec:?}");
    assert!(metrics(standby).contains("nur_operator_leader 1\n"));
}

#[tokio::test]
async fn autoscaling_gets_an_hpa_and_pdb_that_go_when_it_is_turned_off() {
    let env = testenv!();
    let Started {
        ns,
        echo: _,
        digest,
        url,
        operator: _op,
    } = start_with_echo(&env, "op-hpa", "fn.wasm").await;
    create_function(
        &ns,
        "auto",
        serde_json::json!({
            "module": { "url": url },
            "autoscaling": { "minReplicas": 2, "maxReplicas": 5, "targetCPUUtilizationPercentage": 60 },
            "resources": { "requests": { "cpu": "50m" } }
        }),
    )
    .await;
    deployment_with_digest(&ns, "auto", &digest).await;
    let hpa = eventually("HPA", T, || {
        let api = ns.api::<HorizontalPodAutoscaler>();
        async move { api.get_opt("auto").await.ok()? }
    })
    .await
    .unwrap();
    let spec = hpa.spec;
    assert_eq!(spec.scale_target_ref.kind, "Deployment");
    assert_eq!(spec.scale_target_ref.name, "auto");
    assert_eq!((spec.min_replicas, spec.max_replicas), (Some(2), 5));
    let pdb = eventually("PDB", T, || {
        let api = ns.api::<PodDisruptionBudget>();
        async move { api.get_opt("auto").await.ok()? }
    })
    .await
    .unwrap();
    assert_eq!(
        pdb.metadata.owner_references.unwrap()[0].kind,
        "NurFunction"
    );
    // The operator does not own the Deployment's replicas: the HPA does.
    let d = ns.api::<Deployment>().get("auto").await.unwrap();
    let ours = d
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .filter(|m| m.manager.as_deref() == Some("nur-operator"))
        .map(|m| serde_json::to_string(&m.fields_v1).unwrap())
        .collect::<String>();
    assert!(ours.contains("f:template"), "{ours}");
    assert!(!ours.contains("f:replicas"), "{ours}");

    // Back to a single fixed replica: HPA and PDB are deleted.
    ns.api::<NurFunction>()
        .patch(
            "auto",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({ "spec": { "autoscaling": null, "replicas": 1 } })),
        )
        .await
        .unwrap();
    eventually("HPA and PDB deleted", T, || {
        let (h, p) = (
            ns.api::<HorizontalPodAutoscaler>(),
            ns.api::<PodDisruptionBudget>(),
        );
        async move {
            let gone =
                h.get_opt("auto").await.ok()?.is_none() && p.get_opt("auto").await.ok()?.is_none();
            gone.then_some(())
        }
    })
    .await
    .unwrap();
    eventually("Deployment replicas 1", T, || {
        let api = ns.api::<Deployment>();
        async move { (api.get("auto").await.ok()?.spec?.replicas == Some(1)).then_some(()) }
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn operator_runs_with_its_rbac_only() {
    let env = testenv!();
    install_crd(&env).await;
    let ns = env.namespace("op-rbac").await.unwrap();

    // The chart's ClusterRole and leader-election Role, as helm renders
    // them for a release "nur-operator" in this namespace; the ClusterRole
    // is bound in this namespace only.
    let chart = concat!(env!("CARGO_MANIFEST_DIR"), "/../charts/nur");
    let out = env
        .helm()
        .args(["template", "nur-operator", chart, "--namespace", ns.name()])
        .args(["--show-only", "templates/clusterrole.yaml"])
        .args(["--show-only", "templates/leader-election.yaml"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "helm template: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut apply = env
        .kubectl()
        .args(["apply", "--server-side", "--force-conflicts", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut apply.stdin.take().unwrap(), &out.stdout).unwrap();
    let out = apply.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A kubeconfig with the ServiceAccount's token and nothing else.
    let path =
        service_account_kubeconfig(&env, &ns, "nur-operator", "ClusterRole", "nur-operator").await;

    let echo = examples::read("echo.wasm");
    let digest = nur_module::sha256_hex(&echo);
    let url = upload(&env, &ns, "fn.wasm", echo).await;
    let _op = Operator::start_with(&env, &ns, "op-sa", &path);
    create_function(
        &ns,
        "scoped",
        serde_json::json!({ "module": { "url": url }, "replicas": 2 }),
    )
    .await;
    deployment_with_digest(&ns, "scoped", &digest).await;
    let api = ns.api::<NurFunction>();
    eventually("Ready=True", T, || {
        let api = api.clone();
        async move { (condition(&api.get("scoped").await.ok()?, "Ready")?.0 == "True").then_some(()) }
    })
    .await
    .unwrap();
    assert!(
        ns.api::<PodDisruptionBudget>()
            .get_opt("scoped")
            .await
            .unwrap()
            .is_some()
    );
    let events: Api<Event> = Api::namespaced(ns.client(), ns.name());
    eventually("ModuleRollout event", T, || {
        let events = events.clone();
        async move {
            let list = events.list(&ListParams::default()).await.ok()?;
            list.items
                .iter()
                .any(|e| e.reason.as_deref() == Some("ModuleRollout"))
                .then_some(())
        }
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn unreachable_storage_is_reported_and_retried() {
    let env = testenv!();
    install_crd(&env).await;
    let ns = env.namespace("op-down").await.unwrap();
    // Nothing listens on port 1.
    let url = "http://127.0.0.1:1/fn.wasm";
    let op = Operator::start(&env, &ns);
    create_function(&ns, "down", serde_json::json!({ "module": { "url": url } })).await;
    let (status, reason, message) = wait_condition(&ns, "down", "ModuleValid", |_| true).await;
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("Unknown", "StorageUnreachable")
    );
    assert!(message.contains(url), "{message}");
    eventually("reconcile errors counted", T, || async {
        let (_, body) = op.get("/metrics")?;
        let line = body
            .lines()
            .find(|l| l.starts_with("nur_operator_reconcile_errors_total "))?;
        (line != "nur_operator_reconcile_errors_total 0").then_some(())
    })
    .await
    .unwrap();
    assert!(!has_deployment(&ns, "down").await);
}

#[tokio::test]
async fn module_check_uses_the_credentials_secret() {
    let env = testenv!();
    install_crd(&env).await;
    let ns = env.namespace("op-creds").await.unwrap();
    let echo = examples::read("echo.wasm");
    let digest = nur_module::sha256_hex(&echo);
    let url = upload(&env, &ns, "echo.wasm", echo).await;
    // The operator's own credentials are wrong: only a Secret can succeed.
    let kubeconfig = env.kubeconfig();
    let _op = Operator::start_with_env(
        &env,
        &ns,
        "op",
        &kubeconfig,
        &[("AWS_SECRET_ACCESS_KEY", "not-the-secret")],
    );
    let store: Vec<(&String, &String)> = env
        .vars()
        .iter()
        .filter(|(k, _)| k.starts_with("AWS_"))
        .collect();
    let wrong_secret = String::from("not-the-secret");
    let wrong: Vec<(&String, &String)> = store
        .iter()
        .map(|&(k, v)| {
            (
                k,
                if k == "AWS_SECRET_ACCESS_KEY" {
                    &wrong_secret
                } else {
                    v
                },
            )
        })
        .collect();
    create_secret(&ns, "wrong", &wrong).await;
    for (name, secret) in [("good", "store"), ("denied", "wrong"), ("later", "late")] {
        let spec = serde_json::json!({ "module": { "url": url, "credentialsSecret": secret } });
        create_function(&ns, name, spec).await;
    }
    create_secret(&ns, "store", &store).await;

    let module_valid = |name: &'static str, want: &'static str| {
        wait_condition(&ns, name, "ModuleValid", move |c| c.1 == want)
    };
    // The Secret the pods get is the one the module was checked with.
    let d = deployment_with_digest(&ns, "good", &digest).await;
    let pod = d.spec.unwrap().template.spec.unwrap();
    let variables = pod.containers[0].env.clone().unwrap();
    assert!(variables.iter().all(|e| {
        let from = e
            .value_from
            .as_ref()
            .and_then(|v| v.secret_key_ref.as_ref());
        from.is_some_and(|r| r.name == "store" && r.key == e.name)
    }));
    let (status, _, _) = module_valid("good", "Checked").await;
    assert_eq!(status, "True");

    let (status, _, message) = module_valid("denied", "AccessDenied").await;
    assert_eq!(status, "False");
    assert!(message.contains(&url), "{message}");
    let (status, _, message) = module_valid("later", "CredentialsSecretNotFound").await;
    assert_eq!(status, "False");
    assert!(message.contains("late"), "{message}");
    for name in ["denied", "later"] {
        assert!(!has_deployment(&ns, name).await);
    }
    // The missing Secret appears: the next re-check rolls the function out.
    create_secret(&ns, "late", &store).await;
    deployment_with_digest(&ns, "later", &digest).await;
}
