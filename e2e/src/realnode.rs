//! Nur on testenv's real node, shared by the tests that run there: the
//! chart installed into a namespace of the real node, a function uploaded
//! and applied, waited for until Ready on its digest, and a constant load
//! of clients that counts what failed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{DynamicObject, GroupVersionKind, ListParams};
use kube::discovery::ApiResource;
use nur_testkit::net::exchange_within;
use nur_testkit::{TestEnv, TestNamespace, eventually, store};

use crate::{chart_dir, run, workspace_root};

/// How long a function on the real node may take to become Ready.
pub const T: Duration = Duration::from_secs(120);

/// A namespace on the real node with the object-store Secret pods use
/// (MinIO at the address pods reach it), and the chart installed into it,
/// watching it, without the chart's gateway. Returns once the operator pod
/// is Ready.
pub async fn install_on_real_node(env: &TestEnv, prefix: &str) -> TestNamespace {
    install_on_real_node_with(env, prefix, &["gateway.enabled=false"]).await
}

/// [`install_on_real_node`] with more helm `--set` values (`key=value`,
/// after the ones it always sets, so they win), and the chart's gateway
/// unless `sets` turn it off. Returns once every pod of the release is
/// Ready (helm `--wait`); [`release_name`] names the release.
pub async fn install_on_real_node_with(
    env: &TestEnv,
    prefix: &str,
    sets: &[&str],
) -> TestNamespace {
    // The chart's CRD as this checkout has it (helm installs a CRD only
    // when there is none, as on a user's upgrade).
    let mut crd = env.kubectl();
    crd.args(["apply", "--server-side", "--force-conflicts", "-f"])
        .arg(chart_dir().join("crds/nurfunction.yaml"));
    run(crd, None);
    let ns = env.namespace_on_real_node(prefix).await.unwrap();
    let endpoint = env
        .var("NUR_TEST_IN_CLUSTER_ENDPOINT")
        .expect(".testenv/env names MinIO's address for pods");
    let mut secret = env.kubectl();
    secret.args([
        "create",
        "secret",
        "generic",
        "object-store",
        "-n",
        ns.name(),
    ]);
    secret.arg(format!("--from-literal=AWS_ENDPOINT_URL={endpoint}"));
    for k in [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_REGION",
        "AWS_ALLOW_HTTP",
    ] {
        secret.arg(format!("--from-literal={k}={}", env.var(k).unwrap()));
    }
    run(secret, None);
    let release = release_name(&ns);
    let mut helm = env.helm();
    helm.args(["install", &release])
        .arg(chart_dir())
        .args(["--namespace", ns.name(), "--wait", "--timeout", "4m"])
        .args(["--set", &format!("operator.watchNamespace={}", ns.name())])
        .args(["--set", "operator.envFrom[0].secretRef.name=object-store"])
        .args(["--set", "operator.recheckSeconds=2"])
        // MinIO is at a private address of this machine.
        .args(["--set", "operator.storage.allowLocalStorage=true"]);
    for set in sets {
        helm.args(["--set", set]);
    }
    let out = helm.output().expect("run helm");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("STATUS: deployed"),
        "{helm:?} failed:\n{stdout}{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        namespace_report(env, ns.name())
    );
    ns
}

/// What a namespace's pods are doing (phase, events, last log lines), for
/// a failure message.
pub fn namespace_report(env: &TestEnv, ns: &str) -> String {
    let mut report = String::new();
    for args in [
        &["get", "pods", "-o", "wide"][..],
        &["describe", "pods"],
        &[
            "logs",
            "--all-containers",
            "--prefix",
            "--tail=20",
            "-l",
            "app.kubernetes.io/part-of=nur",
        ],
    ] {
        let mut kubectl = env.kubectl();
        kubectl.args(["-n", ns]).args(args);
        let text = match kubectl.output() {
            Ok(out) => format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
            Err(e) => e.to_string(),
        };
        report += &format!("--- kubectl -n {ns} {}\n{text}\n", args.join(" "));
    }
    report
}

/// The release [`install_on_real_node`] installs into `ns`. ClusterRole and
/// ClusterRoleBinding are cluster-scoped: the name is unique per run (and
/// contains "nur", so it is also the chart's fullname, the prefix of every
/// object).
pub fn release_name(ns: &TestNamespace) -> String {
    format!("nur-{}", ns.name().rsplit('-').next().unwrap())
}

pub async fn nurfunctions(ns: &TestNamespace) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("nur.dev", "v1alpha1", "NurFunction");
    Api::namespaced_with(ns.client(), ns.name(), &ApiResource::from_gvk(&gvk))
}

/// Waits until NurFunction `name` is Ready on `sha256` with `replicas`
/// ready pods and no other pod of it left (a rollout's old pods gone).
pub async fn wait_ready(ns: &TestNamespace, name: &str, sha256: &str, replicas: usize) {
    let functions = nurfunctions(ns).await;
    let pods = ns.api::<Pod>();
    let digest = format!("sha256:{sha256}");
    let lp = ListParams::default().labels(&format!("app.kubernetes.io/instance={name}"));
    eventually(
        &format!("{name} Ready on {digest} with exactly {replicas} pods"),
        T,
        || {
            let (functions, pods, digest, lp) =
                (functions.clone(), pods.clone(), digest.clone(), lp.clone());
            async move {
                let f = functions.get(name).await.ok()?;
                let ready = f.data["status"]["conditions"]
                    .as_array()?
                    .iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True");
                let pods = pods.list(&lp).await.ok()?.items;
                (ready
                    && f.data["status"]["module"]["digest"] == digest.as_str()
                    && pods.len() == replicas
                    && pods.iter().all(pod_ready))
                .then_some(())
            }
        },
    )
    .await
    .unwrap();
}

pub fn pod_ready(p: &Pod) -> bool {
    p.metadata.deletion_timestamp.is_none()
        && p.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Uploads `module` under the namespace's prefix of the test bucket and
/// applies NurFunction `name` of it (with the object-store Secret) on port
/// 8080, with `spec` (YAML lines at the spec's indent); returns the
/// module's digest.
pub async fn deploy(
    env: &TestEnv,
    ns: &TestNamespace,
    name: &str,
    module: Vec<u8>,
    spec: &str,
) -> String {
    let digest = nur_module::sha256_hex(&module);
    let url = store::put(env, &format!("node/{}/{name}.wasm", ns.name()), module).await;
    apply(
        env,
        ns,
        &format!(
            "apiVersion: nur.dev/v1alpha1\nkind: NurFunction\nmetadata: {{name: {name}}}\nspec:\n  \
             module: {{url: {url}, credentialsSecret: object-store}}\n  port: 8080\n{spec}"
        ),
    );
    digest
}

pub fn apply(env: &TestEnv, ns: &TestNamespace, yaml: &str) -> String {
    let mut apply = env.kubectl();
    apply.args(["apply", "-n", ns.name(), "-f", "-"]);
    run(apply, Some(yaml))
}

/// Connections from a few threads to `addr`, one after another, until
/// stopped: each sends `input`, half-closes and must get an answer starting
/// with "HTTP/1.1 200 OK" within a minute (a gateway may hold it while the
/// function wakes).
pub struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    threads: Vec<std::thread::JoinHandle<Vec<String>>>,
}

impl Load {
    pub fn start(addr: SocketAddr, input: &'static [u8], threads: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let threads = (0..threads)
            .map(|_| {
                let (stop, ok) = (stop.clone(), ok.clone());
                std::thread::spawn(move || {
                    let mut failures = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        match exchange_within(addr, input, Duration::from_secs(60)) {
                            Ok(r) if r.starts_with(b"HTTP/1.1 200 OK") => {
                                ok.fetch_add(1, Ordering::Relaxed);
                            }
                            Ok(r) => failures.push(format!(
                                "answer {:?}",
                                String::from_utf8_lossy(&r[..r.len().min(80)])
                            )),
                            Err(e) => failures.push(e.to_string()),
                        }
                    }
                    failures
                })
            })
            .collect();
        Load { stop, ok, threads }
    }

    /// Waits up to `within` until `n` connections were answered; how many were.
    pub async fn answered(&self, n: u64, within: Duration) -> u64 {
        let until = std::time::Instant::now() + within;
        loop {
            let answered = self.ok.load(Ordering::Relaxed);
            if answered >= n || std::time::Instant::now() > until {
                return answered;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops the load; returns (answered, failures).
    pub fn finish(self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        let failures = self
            .threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        (self.ok.load(Ordering::Relaxed), failures)
    }
}

/// The reason of NurFunction `name`'s Ready=True condition and its pod
/// count (`None` while it is not Ready).
pub async fn ready_reason(ns: &TestNamespace, name: &str) -> Option<(String, i64)> {
    let f = nurfunctions(ns).await.get(name).await.ok()?;
    let reason = f.data["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "Ready" && c["status"] == "True")?["reason"]
        .as_str()?
        .to_string();
    Some((reason, f.data["status"]["replicas"].as_i64().unwrap_or(-1)))
}

/// The manifest `examples/manifests/FILE` with its module URL moved to
/// `prefix` of the test bucket.
pub fn example_manifest(env: &TestEnv, file: &str, prefix: &str) -> String {
    let text =
        std::fs::read_to_string(workspace_root().join("examples/manifests").join(file)).unwrap();
    text.replace(
        "s3://functions/",
        &format!("s3://{}/{prefix}/", env.bucket()),
    )
}
