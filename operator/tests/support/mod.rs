//! What the operator's integration tests share: the CRD installed and
//! served, modules uploaded to MinIO, the real `nur-operator` binary run for
//! one namespace, NurFunctions created and their conditions read.
#![allow(dead_code)] // each test file uses a different part

use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use kube::CustomResourceExt;
use kube::api::PostParams;
use nur_operator::crd::NurFunction;
use nur_testkit::net::{self, free_port};
use nur_testkit::process::Process;
use nur_testkit::store;
use nur_testkit::{TestEnv, TestNamespace, eventually};

/// How long a test waits for a condition.
pub const T: Duration = Duration::from_secs(60);

/// Uploads `bytes` to a key unique to `ns`; returns the s3:// URL.
pub async fn upload(env: &TestEnv, ns: &TestNamespace, name: &str, bytes: Vec<u8>) -> String {
    store::put(env, &format!("operator/{}/{name}", ns.name()), bytes).await
}

/// Applies the CRD (as `nur-operator crd` prints it) and waits until it is
/// served.
pub async fn install_crd(env: &TestEnv) {
    nur_testkit::crd::install(env, &NurFunction::crd(), "nur-operator-tests", T)
        .await
        .unwrap();
}

/// The `nur-operator run` process, killed on drop.
pub struct Operator {
    process: Process,
    /// Port of its /healthz, /readyz and /metrics.
    health: u16,
}

impl Operator {
    pub fn start(env: &TestEnv, ns: &TestNamespace) -> Operator {
        Self::start_as(env, ns, "op")
    }

    /// Starts an operator for `ns` with Lease identity `name`.
    pub fn start_as(env: &TestEnv, ns: &TestNamespace, name: &str) -> Operator {
        Self::start_with(env, ns, name, &env.kubeconfig())
    }

    /// Starts an operator for `ns` with Lease identity `name`, acting as
    /// the user of `kubeconfig`.
    pub fn start_with(
        env: &TestEnv,
        ns: &TestNamespace,
        name: &str,
        kubeconfig: &std::path::Path,
    ) -> Operator {
        Self::start_with_env(env, ns, name, kubeconfig, &[])
    }

    /// [`Operator::start_with`], with `extra` environment variables set
    /// last (they override testenv's). It may reach testenv's MinIO on the
    /// loopback address (`--allow-local-storage`).
    pub fn start_with_env(
        env: &TestEnv,
        ns: &TestNamespace,
        name: &str,
        kubeconfig: &std::path::Path,
        extra: &[(&str, &str)],
    ) -> Operator {
        Self::start_with_args(env, ns, name, kubeconfig, extra, &["--allow-local-storage"])
    }

    /// [`Operator::start_with_env`], with `args` instead of
    /// `--allow-local-storage`.
    pub fn start_with_args(
        env: &TestEnv,
        ns: &TestNamespace,
        name: &str,
        kubeconfig: &std::path::Path,
        extra: &[(&str, &str)],
        args: &[&str],
    ) -> Operator {
        let health = free_port();
        let log = std::env::temp_dir().join(format!("{}-{name}.log", ns.name()));
        // Re-check every 2 s unless `args` says otherwise.
        let recheck = match args.contains(&"--recheck-seconds") {
            true => &[][..],
            false => &["--recheck-seconds", "2"][..],
        };
        let mut command = Command::new(env!("CARGO_BIN_EXE_nur-operator"));
        command
            .args([
                "run",
                "--namespace",
                ns.name(),
                "--lease-seconds",
                "3",
                "--worker-image",
                "nur-worker:test",
                "--health-listen",
                &format!("127.0.0.1:{health}"),
            ])
            .args(recheck)
            .args(args)
            .envs(env.vars())
            .env("KUBECONFIG", kubeconfig)
            .env("POD_NAME", name)
            .env("NUR_LOG", "info,nur_operator=debug")
            .envs(extra.iter().copied());
        eprintln!("operator {name}:");
        let process = Process::spawn(command, log);
        Operator { process, health }
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        self.process.log()
    }

    /// The port of its /healthz, /readyz and /metrics.
    pub fn health_port(&self) -> u16 {
        self.health
    }

    /// Whether the process has exited.
    pub fn exited(&mut self) -> bool {
        self.process.exited()
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// GET `path` on the admin port: (status code, body).
    pub fn get(&self, path: &str) -> Option<(u16, String)> {
        net::get(("127.0.0.1", self.health), path)
    }
}

/// Creates NurFunction `name` from a JSON spec.
pub async fn create_function(
    ns: &TestNamespace,
    name: &str,
    spec: serde_json::Value,
) -> NurFunction {
    let f: NurFunction = serde_json::from_value(serde_json::json!({
        "apiVersion": "nur.dev/v1alpha1",
        "kind": "NurFunction",
        "metadata": { "name": name },
        "spec": spec,
    }))
    .unwrap();
    // A freshly established CRD can take a moment to be served.
    eventually("NurFunction created", T, || {
        let api = ns.api::<NurFunction>();
        let f = f.clone();
        async move { api.create(&PostParams::default(), &f).await.ok() }
    })
    .await
    .unwrap()
}

pub fn condition(f: &NurFunction, type_: &str) -> Option<(String, String, String)> {
    f.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

/// Waits until the Deployment's args pin `sha256`; returns it.
pub async fn deployment_with_digest(ns: &TestNamespace, name: &str, sha256: &str) -> Deployment {
    nur_testkit::deployment_pinned(ns, name, sha256, T)
        .await
        .unwrap()
}

/// Waits until NurFunction `name` has a `type_` condition that `accept`s;
/// returns its (status, reason, message).
pub async fn wait_condition(
    ns: &TestNamespace,
    name: &str,
    type_: &str,
    accept: impl Fn(&(String, String, String)) -> bool,
) -> (String, String, String) {
    let api = ns.api::<NurFunction>();
    let accept = &accept;
    eventually(&format!("{name}: condition {type_}"), T, || {
        let api = api.clone();
        async move {
            let c = condition(&api.get(name).await.ok()?, type_)?;
            accept(&c).then_some(c)
        }
    })
    .await
    .unwrap()
}

/// Creates Secret `name` with `vars` as its data.
pub async fn create_secret<K: AsRef<str>, V: AsRef<str>>(
    ns: &TestNamespace,
    name: &str,
    vars: &[(K, V)],
) {
    let data: serde_json::Map<String, serde_json::Value> = vars
        .iter()
        .map(|(k, v)| (k.as_ref().to_string(), v.as_ref().into()))
        .collect();
    let secret: k8s_openapi::api::core::v1::Secret = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": { "name": name },
        "stringData": data,
    }))
    .unwrap();
    ns.api::<k8s_openapi::api::core::v1::Secret>()
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
}

/// A metric's value from an operator's /metrics, 0 when absent.
pub fn metric(op: &Operator, name: &str) -> f64 {
    let (_, text) = op.get("/metrics").unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

/// Binds ServiceAccount `account` of `ns` to `role` (`kind` Role or
/// ClusterRole) in `ns`, and writes a kubeconfig with its token and nothing
/// else; returns the kubeconfig's path.
pub async fn service_account_kubeconfig(
    env: &TestEnv,
    ns: &TestNamespace,
    account: &str,
    kind: &str,
    role: &str,
) -> std::path::PathBuf {
    let binding: k8s_openapi::api::rbac::v1::RoleBinding =
        serde_json::from_value(serde_json::json!({
            "metadata": { "name": format!("{account}-{role}") },
            "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": role },
            "subjects": [{ "kind": "ServiceAccount", "name": account, "namespace": ns.name() }]
        }))
        .unwrap();
    ns.api::<k8s_openapi::api::rbac::v1::RoleBinding>()
        .create(&PostParams::default(), &binding)
        .await
        .unwrap();
    let path = std::env::temp_dir().join(format!("{}-{account}-kubeconfig", ns.name()));
    let admin = env.client().await.unwrap();
    env.kubeconfig_for_service_account(&admin, ns.name(), account, &path)
        .await
        .unwrap();
    path
}

/// Whether Deployment `name` exists in `ns`.
pub async fn has_deployment(ns: &TestNamespace, name: &str) -> bool {
    ns.api::<Deployment>()
        .get_opt(name)
        .await
        .unwrap()
        .is_some()
}
