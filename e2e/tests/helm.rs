// One file on purpose: both tests walk the same install path on the test environment and share its helpers.
//! The path a user takes, on the test environment (a real kube-apiserver
//! with the controller-manager, kwok for pods, MinIO):
//!
//! 1. `helm install` the chart with the real helm into a fresh namespace;
//! 2. the operator Deployment's pod is scheduled on kwok's fake node, where
//!    containers never run, so the real `nur-operator` binary runs here with
//!    the container's args and env, authenticated with a token of the
//!    chart's ServiceAccount (TokenRequest) and nothing else;
//! 3. an example module is uploaded to MinIO and its manifest from
//!    `examples/manifests` is `kubectl apply`d;
//! 4. the Deployment and Service appear, the function turns Ready (kwok);
//! 5. the real `nur-worker` runs with exactly the container args, envFrom
//!    and ports of the Deployment the operator wrote, and serves a
//!    connection;
//! 6. a new module uploaded to the same URL rolls the Deployment to the new
//!    digest, and the worker started from the new pod spec serves it;
//! 7. `helm uninstall` removes everything of the release.
//!
//! A second test installs with the defaults (every namespace watched) and
//! checks the cluster-wide binding and its removal.

use std::collections::HashMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Container, Secret, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;
use kube::api::{DynamicObject, GroupVersionKind, ListParams};
use kube::discovery::ApiResource;
use nur_e2e::{chart_app_version, chart_dir, run, workspace_root};
use nur_testkit::net::{exchange, free_port, http_get};
use nur_testkit::pod::{container_command, container_env, container_port, probe_port};
use nur_testkit::process::{Process, binary};
use nur_testkit::{TestNamespace, crd, deployment_pinned, eventually, examples, store, testenv};

const T: Duration = Duration::from_secs(90);

async fn nurfunctions(ns: &TestNamespace) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("nur.dev", "v1alpha1", "NurFunction");
    Api::namespaced_with(ns.client(), ns.name(), &ApiResource::from_gvk(&gvk))
}

fn condition(f: &DynamicObject, type_: &str) -> Option<String> {
    f.data["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
        .and_then(|c| c["status"].as_str().map(String::from))
}

/// How many objects `api` lists with `lp`; None when the list fails.
async fn count<K>(api: Api<K>, lp: &ListParams) -> Option<usize>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    Some(api.list(lp).await.ok()?.items.len())
}

/// Waits until NurFunction `name` is Ready on `sha256` with exactly
/// `replicas` ready pods (a rollout's surge pods gone).
async fn wait_ready(ns: &TestNamespace, name: &str, sha256: &str, replicas: i64) -> DynamicObject {
    let api = nurfunctions(ns).await;
    let digest = format!("sha256:{sha256}");
    let what = format!("NurFunction {name} Ready on {digest} with {replicas} ready pods");
    eventually(&what, T, || {
        let api = api.clone();
        let digest = digest.clone();
        async move {
            let f = api.get(name).await.ok()?;
            (condition(&f, "Ready")? == "True"
                && f.data["status"]["module"]["digest"] == digest.as_str()
                && f.data["status"]["readyReplicas"] == replicas)
                .then_some(f)
        }
    })
    .await
    .unwrap()
}

/// Starts nur-worker as the container of `d` would run, with the Secrets
/// its envFrom names; waits until its readiness probe answers 200.
fn start_worker(
    d: &Deployment,
    secrets: &HashMap<String, Secret>,
    log: std::path::PathBuf,
) -> (Process, Container) {
    let pod = d.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    assert_eq!(pod.containers.len(), 1);
    let c = pod.containers[0].clone();
    let env = container_env(&c, secrets, &HashMap::new());
    let mut worker = Process::spawn(container_command(&binary("nur-worker"), &c, &env), log);
    let probe = c
        .readiness_probe
        .as_ref()
        .unwrap()
        .http_get
        .as_ref()
        .unwrap();
    let admin = probe_port(&c, &probe.port);
    worker.wait_http_ok(admin, probe.path.as_deref().unwrap(), T);
    (worker, c)
}

#[tokio::test]
async fn helm_install_apply_example_serve_roll_and_uninstall() {
    let env = testenv!();
    // Pods turn Ready only on kwok's fake node (helm --wait, Ready=True).
    assert_eq!(
        env.var("NUR_TESTENV_KWOK"),
        Some("true"),
        "this test needs kwok: start the test environment without --kwok=false"
    );
    let admin = env.client().await.unwrap();
    let ns = env.namespace("e2e-helm").await.unwrap();
    // ClusterRole and ClusterRoleBinding are cluster-scoped: the release
    // name is unique per run.
    let suffix = ns.name().rsplit('-').next().unwrap();
    let release = format!("nur-e2e-{suffix}");
    let version = chart_app_version();
    let tmp = std::env::temp_dir();

    // The object-store credentials, as a user creates them: the worker pods
    // get them through spec.module.credentialsSecret, and the operator
    // checks the module with the same Secret; the chart also hands it to
    // the operator's own environment (envFrom), for functions naming none.
    let mut create_secret = env.kubectl();
    create_secret.args([
        "create",
        "secret",
        "generic",
        "object-store",
        "-n",
        ns.name(),
    ]);
    for k in [
        "AWS_ENDPOINT_URL",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_REGION",
        "AWS_ALLOW_HTTP",
    ] {
        let v = env
            .var(k)
            .unwrap_or_else(|| panic!(".testenv/env has no {k}"));
        create_secret.arg(format!("--from-literal={k}={v}"));
    }
    run(create_secret, None);

    // 1. helm install, scoped to this namespace (other tests' operators
    // watch theirs), re-checking modules every 2 s.
    let mut install = env.helm();
    install
        .args(["install", &release])
        .arg(chart_dir())
        .args(["--namespace", ns.name(), "--wait", "--timeout", "3m"])
        .args(["--set", &format!("operator.watchNamespace={}", ns.name())])
        .args(["--set", "operator.envFrom[0].secretRef.name=object-store"])
        .args(["--set", "operator.recheckSeconds=2"])
        .args(["--set", "operator.leaderElection.leaseSeconds=5"])
        // testenv's MinIO listens on the loopback address.
        .args(["--set", "operator.storage.allowLocalStorage=true"]);
    let notes = run(install, None);
    assert!(notes.contains("STATUS: deployed"), "{notes}");
    assert!(
        notes.contains(&format!("ghcr.io/nur-dev/nur-worker:{version}")),
        "{notes}"
    );

    // The CRD from crds/ is served (helm keeps an existing one as it is).
    let crds: Api<CustomResourceDefinition> = Api::all(admin.clone());
    crd::wait_established(&admin, "nurfunctions.nur.dev", T)
        .await
        .unwrap();

    // The operator Deployment: ready (kwok), its own ServiceAccount.
    let op_name = format!("{release}-operator");
    let op = ns.api::<Deployment>().get(&op_name).await.unwrap();
    let st = op.status.clone().unwrap();
    assert_eq!(st.ready_replicas, Some(1), "{st:?}");
    let pod = op.spec.as_ref().unwrap().template.spec.clone().unwrap();
    assert_eq!(pod.service_account_name.as_deref(), Some(release.as_str()));
    ns.api::<ServiceAccount>().get(&release).await.unwrap();

    // 2. The operator's container, run here as the chart's ServiceAccount.
    let kubeconfig = tmp.join(format!("{}-sa-kubeconfig", ns.name()));
    env.kubeconfig_for_service_account(&admin, ns.name(), &release, &kubeconfig)
        .await
        .unwrap();

    let secrets: HashMap<String, Secret> = [(
        "object-store".to_string(),
        ns.api::<Secret>().get("object-store").await.unwrap(),
    )]
    .into();
    let mut c = pod.containers[0].clone();
    // The one change: /healthz etc. on a free loopback port instead of
    // 0.0.0.0:8081, which another process here may hold.
    let health = free_port();
    for a in c.args.iter_mut().flatten() {
        if a.starts_with("--health-listen=") {
            *a = format!("--health-listen=127.0.0.1:{health}");
        }
    }
    let fields: HashMap<&str, String> = [
        ("metadata.name", format!("{op_name}-local")),
        ("metadata.namespace", ns.name().to_string()),
    ]
    .into();
    let mut op_env = container_env(&c, &secrets, &fields);
    op_env.insert("KUBECONFIG".into(), kubeconfig.display().to_string());
    let mut operator = Process::spawn(
        container_command(&binary("nur-operator"), &c, &op_env),
        tmp.join(format!("{}-operator.log", ns.name())),
    );
    operator.wait_http_ok(health, "/readyz", T);

    // 3. Upload echo.wasm and apply the example manifest, templated to this
    // test's bucket prefix and a free port.
    let prefix = format!("e2e/{}", ns.name());
    let echo = examples::read("echo.wasm");
    let echo_digest = nur_module::sha256_hex(&echo);
    store::put(&env, &format!("{prefix}/echo.wasm"), echo).await;
    let port = free_port();
    let manifest =
        std::fs::read_to_string(workspace_root().join("examples/manifests/echo.yaml")).unwrap();
    assert!(
        manifest.contains("url: s3://functions/echo.wasm"),
        "{manifest}"
    );
    assert!(manifest.contains("port: 8080"), "{manifest}");
    let manifest = manifest
        .replace(
            "s3://functions/",
            &format!("s3://{}/{prefix}/", env.bucket()),
        )
        .replace("port: 8080", &format!("port: {port}"));
    let mut apply = env.kubectl();
    apply.args(["apply", "-n", ns.name(), "-f", "-"]);
    let out = run(apply, Some(&manifest));
    assert!(out.contains("nurfunction.nur.dev/echo created"), "{out}");

    // 4. Deployment (digest pinned, the chart's worker image), Service,
    // Ready.
    let d = deployment_pinned(&ns, "echo", &echo_digest, T)
        .await
        .unwrap();
    let worker_c = &d
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0];
    assert_eq!(
        worker_c.image.as_deref(),
        Some(format!("ghcr.io/nur-dev/nur-worker:{version}").as_str())
    );
    let svc = eventually("Service echo", T, || {
        let api = ns.api::<Service>();
        async move { api.get_opt("echo").await.ok()? }
    })
    .await
    .unwrap();
    let sp = &svc.spec.unwrap().ports.unwrap()[0];
    assert_eq!(sp.port, i32::from(port));
    let f = wait_ready(&ns, "echo", &echo_digest, 2).await;
    assert_eq!(f.data["status"]["readyReplicas"], 2);
    assert_eq!(
        f.data["status"]["endpoint"],
        format!("echo.{}.svc:{port}", ns.name())
    );
    let mut get = env.kubectl();
    get.args(["get", "nurfn", "echo", "-n", ns.name()]);
    let table = run(get, None);
    let row: Vec<&str> = table
        .lines()
        .nth(1)
        .unwrap_or("")
        .split_whitespace()
        .collect();
    assert_eq!(
        row[..5],
        [
            "echo",
            "True",
            "Ready",
            "2",
            &format!("sha256:{echo_digest}")
        ],
        "{table}"
    );

    // 5. The worker with exactly that pod spec serves a connection: the
    // client sends, half-closes, and gets its bytes back.
    let (worker, c) = start_worker(&d, &secrets, tmp.join(format!("{}-echo.log", ns.name())));
    let reply = exchange(("127.0.0.1", container_port(&c, "function")), b"hello, nur").unwrap();
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.starts_with("HTTP/1.1 200 OK"), "{reply}");
    assert!(reply.ends_with("hello, nur"), "{reply}");
    drop(worker);

    // 6. A new module under the same URL (the manifest pins no digest):
    // the operator rolls the Deployment, and its new pod spec serves it.
    let hello = examples::read("http-hello.wasm");
    let hello_digest = nur_module::sha256_hex(&hello);
    store::put(&env, &format!("{prefix}/echo.wasm"), hello).await;
    let d = deployment_pinned(&ns, "echo", &hello_digest, T)
        .await
        .unwrap();
    let f = wait_ready(&ns, "echo", &hello_digest, 2).await;
    assert_eq!(f.data["status"]["readyReplicas"], 2);
    let (worker, c) = start_worker(&d, &secrets, tmp.join(format!("{}-hello.log", ns.name())));
    let reply = http_get(("127.0.0.1", container_port(&c, "function")), "/rolled").unwrap();
    assert!(reply.starts_with("HTTP/1.1 200 OK"), "{reply}");
    assert!(reply.ends_with("\r\n\r\nHello, /rolled!\n"), "{reply}");
    drop(worker);
    operator.assert_running();
    drop(operator);

    // 7. helm uninstall: nothing of the release is left, cluster-scoped
    // objects included. The CRD stays (Helm never deletes crds/), and so
    // do the functions and what they own: they are the user's.
    let mut uninstall = env.helm();
    uninstall.args(["uninstall", &release, "--namespace", ns.name(), "--wait"]);
    run(uninstall, None);
    let by_release = ListParams::default().labels(&format!("app.kubernetes.io/instance={release}"));
    eventually("release objects gone", T, || {
        let admin = admin.clone();
        let lp = by_release.clone();
        let ns = ns.name().to_string();
        async move {
            let n = count(Api::<ClusterRole>::all(admin.clone()), &lp).await?
                + count(Api::<ClusterRoleBinding>::all(admin.clone()), &lp).await?
                + count(Api::<Role>::namespaced(admin.clone(), &ns), &lp).await?
                + count(Api::<RoleBinding>::namespaced(admin.clone(), &ns), &lp).await?
                + count(Api::<ServiceAccount>::namespaced(admin.clone(), &ns), &lp).await?
                + count(Api::<Deployment>::namespaced(admin.clone(), &ns), &lp).await?
                + count(Api::<Service>::namespaced(admin.clone(), &ns), &lp).await?;
            (n == 0).then_some(())
        }
    })
    .await
    .unwrap();
    // By name too, in case a label went missing.
    assert!(
        Api::<ClusterRole>::all(admin.clone())
            .get_opt(&release)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        Api::<RoleBinding>::namespaced(admin.clone(), ns.name())
            .get_opt(&release)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        ns.api::<ServiceAccount>()
            .get_opt(&release)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        ns.api::<Deployment>()
            .get_opt(&op_name)
            .await
            .unwrap()
            .is_none()
    );
    // Helm's own record of the release (a Secret per revision) is gone too.
    let records = ns
        .api::<Secret>()
        .list(&ListParams::default().labels(&format!("owner=helm,name={release}")))
        .await
        .unwrap();
    assert!(records.items.is_empty(), "{:?}", records.items);
    let mut list = env.helm();
    list.args(["list", "--namespace", ns.name(), "--short"]);
    assert_eq!(run(list, None).trim(), "");

    assert!(
        crds.get_opt("nurfunctions.nur.dev")
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        nurfunctions(&ns)
            .await
            .get_opt("echo")
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        ns.api::<Deployment>()
            .get_opt("echo")
            .await
            .unwrap()
            .is_some()
    );
}

/// Names of the cluster-scoped objects labelled with `release`.
async fn cluster_scoped_of(admin: &kube::Client, release: &str) -> Vec<String> {
    let lp = ListParams::default().labels(&format!("app.kubernetes.io/instance={release}"));
    let roles = Api::<ClusterRole>::all(admin.clone())
        .list(&lp)
        .await
        .unwrap();
    let bindings = Api::<ClusterRoleBinding>::all(admin.clone())
        .list(&lp)
        .await
        .unwrap();
    roles
        .items
        .iter()
        .map(|r| format!("clusterrole/{}", r.metadata.name.as_deref().unwrap_or("")))
        .chain(bindings.items.iter().map(|b| {
            format!(
                "clusterrolebinding/{}",
                b.metadata.name.as_deref().unwrap_or("")
            )
        }))
        .collect()
}

/// The default install (every namespace watched) binds the ClusterRole
/// cluster-wide to the chart's ServiceAccount, and `helm uninstall` removes
/// both cluster-scoped objects. No operator runs here: with every namespace
/// watched it would reconcile other tests' functions.
#[tokio::test]
async fn default_install_binds_cluster_wide_and_uninstall_removes_it() {
    let env = testenv!();
    let admin = env.client().await.unwrap();
    let ns = env.namespace("e2e-default").await.unwrap();
    let suffix = ns.name().rsplit('-').next().unwrap();
    let release = format!("nur-default-{suffix}");

    let mut install = env.helm();
    install.args(["install", &release]).arg(chart_dir()).args([
        "--namespace",
        ns.name(),
        "--wait",
        "--timeout",
        "3m",
    ]);
    let notes = run(install, None);
    assert!(
        notes.contains("watches NurFunctions in every namespace"),
        "{notes}"
    );
    let mut objects = cluster_scoped_of(&admin, &release).await;
    objects.sort();
    assert_eq!(
        objects,
        [
            format!("clusterrole/{release}"),
            format!("clusterrole/{release}-gateway"),
            format!("clusterrolebinding/{release}"),
            format!("clusterrolebinding/{release}-gateway"),
        ]
    );
    let crb = Api::<ClusterRoleBinding>::all(admin.clone())
        .get(&release)
        .await
        .unwrap();
    let subject = &crb.subjects.unwrap()[0];
    assert_eq!(
        (subject.kind.as_str(), subject.name.as_str()),
        ("ServiceAccount", release.as_str())
    );
    assert_eq!(subject.namespace.as_deref(), Some(ns.name()));
    assert_eq!(crb.role_ref.name, release);

    let mut uninstall = env.helm();
    uninstall.args(["uninstall", &release, "--namespace", ns.name(), "--wait"]);
    run(uninstall, None);
    let left = cluster_scoped_of(&admin, &release).await;
    assert!(left.is_empty(), "left behind: {left:?}");
    assert!(
        ns.api::<ServiceAccount>()
            .get_opt(&release)
            .await
            .unwrap()
            .is_none()
    );
}
