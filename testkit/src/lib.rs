//! Test support for Nur's integration tests.
//!
//! `make testenv` starts a real control plane (etcd, kube-apiserver,
//! kube-controller-manager) and MinIO, and writes `.testenv/env`. This crate
//! reads that file and hands a test:
//!
//! - [`TestEnv::client`]: a `kube::Client` acting as cluster admin;
//! - [`TestEnv::namespace`]: a fresh namespace, deleted when dropped;
//! - [`TestEnv::client_for_service_account`]: a client holding a real
//!   ServiceAccount token (TokenRequest), for RBAC tests;
//! - [`TestEnv::object_store`]: an S3 client for the test bucket in MinIO;
//! - [`TestEnv::kubectl`] / [`TestEnv::helm`]: the tools in `.testenv/bin`.
//!
//! Use [`testenv!`] at the top of a test: it yields the [`TestEnv`], or, when
//! `.testenv/env` is missing, skips the test with a loud message, unless
//! `NUR_REQUIRE_TESTENV=1` (CI sets it), in which case the test fails.
//!
//! Layout: everything is in this file: env loading, clients, namespaces,
//! polling helpers.

#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{DeleteParams, ObjectMeta, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};
use object_store::ObjectStore;
use object_store::aws::{AmazonS3, AmazonS3Builder};

/// Re-exports so tests need not name the exact versions.
pub use k8s_openapi;
pub use kube;
pub use object_store;

/// Everything the tests need to reach the running test environment.
#[derive(Debug, Clone)]
pub struct TestEnv {
    dir: PathBuf,
    vars: HashMap<String, String>,
}

/// Whether a missing test environment is an error (`NUR_REQUIRE_TESTENV=1`).
pub fn required() -> bool {
    matches!(
        std::env::var("NUR_REQUIRE_TESTENV").as_deref(),
        Ok("1") | Ok("true") | Ok("yes")
    )
}

/// Yields the [`TestEnv`], or returns from the test (skipping it loudly) when
/// `.testenv/env` is missing and `NUR_REQUIRE_TESTENV` is not set. With
/// `NUR_REQUIRE_TESTENV=1` a missing environment panics.
#[macro_export]
macro_rules! testenv {
    () => {
        match $crate::TestEnv::for_test(::std::thread::current().name().unwrap_or(module_path!())) {
            Some(env) => env,
            None => return,
        }
    };
}

/// An error from this crate.
#[derive(Debug)]
pub struct Error(pub String);

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

fn err(e: impl std::fmt::Display) -> Error {
    Error(e.to_string())
}

impl TestEnv {
    /// Finds and parses `env` of the test environment: `$NUR_TESTENV_DIR/env`
    /// if that variable is set, else `.testenv/env` in the current directory
    /// or any parent of it or of this crate's directory.
    pub fn find() -> Result<TestEnv, Error> {
        let dir = Self::locate().ok_or_else(|| {
            Error(
                "no .testenv/env found (looked in $NUR_TESTENV_DIR, and for .testenv/ in the \
                 current directory, the workspace and their parents); run `make testenv`"
                    .into(),
            )
        })?;
        Self::load(&dir)
    }

    /// Parses `DIR/env`.
    pub fn load(dir: &Path) -> Result<TestEnv, Error> {
        let path = dir.join("env");
        let text = std::fs::read_to_string(&path)
            .map_err(|e| Error(format!("read {}: {e}", path.display())))?;
        let vars = parse_env(&text);
        for k in ["KUBECONFIG", "AWS_ENDPOINT_URL", "NUR_TEST_BUCKET"] {
            if !vars.contains_key(k) {
                return Err(Error(format!("{} has no {k}", path.display())));
            }
        }
        Ok(TestEnv {
            dir: dir.to_path_buf(),
            vars,
        })
    }

    fn locate() -> Option<PathBuf> {
        if let Ok(d) = std::env::var("NUR_TESTENV_DIR") {
            return Some(PathBuf::from(d));
        }
        let mut starts = vec![];
        if let Ok(cwd) = std::env::current_dir() {
            starts.push(cwd);
        }
        starts.push(PathBuf::from(env!("CARGO_MANIFEST_DIR")));
        for start in starts {
            for d in start.ancestors() {
                let c = d.join(".testenv");
                if c.join("env").is_file() {
                    return Some(c);
                }
            }
        }
        None
    }

    /// For the [`testenv!`] macro: the env, or `None` after a loud skip
    /// message; panics when the environment is required but missing.
    pub fn for_test(test: &str) -> Option<TestEnv> {
        match Self::find() {
            Ok(env) => Some(env),
            Err(e) if required() => {
                panic!("NUR_REQUIRE_TESTENV is set but the test environment is unusable: {e}")
            }
            Err(e) => {
                // Written straight to stderr: libtest captures eprintln!
                // output of passing tests, and a skip must be seen.
                use std::io::Write;
                let bar = "!".repeat(72);
                let msg = format!(
                    "\n{bar}\n!! SKIPPED {test}: {e}\n\
                     !! Start it with `make testenv`, or set NUR_REQUIRE_TESTENV=1 to fail.\n{bar}\n"
                );
                let _ = std::io::stderr().lock().write_all(msg.as_bytes());
                None
            }
        }
    }

    /// The `.testenv` directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A variable from `.testenv/env`.
    pub fn var(&self, k: &str) -> Option<&str> {
        self.vars.get(k).map(String::as_str)
    }

    /// All variables from `.testenv/env`, e.g. to pass to a child process.
    pub fn vars(&self) -> &HashMap<String, String> {
        &self.vars
    }

    /// Path of the admin kubeconfig.
    pub fn kubeconfig(&self) -> PathBuf {
        PathBuf::from(&self.vars["KUBECONFIG"])
    }

    /// `.testenv/bin/kubectl`.
    pub fn kubectl(&self) -> std::process::Command {
        self.tool("kubectl")
    }

    /// `.testenv/bin/helm`.
    pub fn helm(&self) -> std::process::Command {
        self.tool("helm")
    }

    /// A command for `.testenv/bin/NAME` with the test environment's
    /// variables (KUBECONFIG, AWS_*) set.
    pub fn tool(&self, name: &str) -> std::process::Command {
        let mut c = std::process::Command::new(self.dir.join("bin").join(name));
        c.envs(&self.vars);
        c
    }

    /// The admin `kube::Config` (client certificate in group system:masters).
    pub async fn config(&self) -> Result<Config, Error> {
        install_crypto_provider();
        let kc = Kubeconfig::read_from(self.kubeconfig()).map_err(err)?;
        Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
            .await
            .map_err(err)
    }

    /// A client acting as cluster admin.
    pub async fn client(&self) -> Result<Client, Error> {
        Client::try_from(self.config().await?).map_err(err)
    }

    /// A client that authenticates with `token` (and nothing else).
    pub async fn client_with_token(&self, token: &str) -> Result<Client, Error> {
        let mut cfg = self.config().await?;
        cfg.auth_info = kube::config::AuthInfo {
            token: Some(secrecy::SecretString::from(token.to_owned())),
            ..Default::default()
        };
        Client::try_from(cfg).map_err(err)
    }

    /// Creates ServiceAccount `name` in `namespace` (if missing), requests a
    /// token for it, and returns the token.
    pub async fn service_account_token(
        &self,
        admin: &Client,
        namespace: &str,
        name: &str,
    ) -> Result<String, Error> {
        let sas: Api<ServiceAccount> = Api::namespaced(admin.clone(), namespace);
        let sa = ServiceAccount {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            ..Default::default()
        };
        match sas.create(&PostParams::default(), &sa).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => return Err(err(e)),
        }
        let tr = TokenRequest {
            spec: Some(TokenRequestSpec {
                expiration_seconds: Some(3600),
                ..Default::default()
            }),
            ..Default::default()
        };
        let out = sas
            .create_token_request(name, &PostParams::default(), &tr)
            .await
            .map_err(err)?;
        out.status
            .and_then(|s| s.token)
            .ok_or_else(|| Error("TokenRequest returned no token".into()))
    }

    /// A client holding a fresh token of ServiceAccount `namespace/name`
    /// (created if missing).
    pub async fn client_for_service_account(
        &self,
        admin: &Client,
        namespace: &str,
        name: &str,
    ) -> Result<Client, Error> {
        let token = self.service_account_token(admin, namespace, name).await?;
        self.client_with_token(&token).await
    }

    /// Writes to `path` a kubeconfig for the ServiceAccount
    /// `namespace/name` (created if missing): this environment's cluster
    /// with that account's token and no other credential, for a process that
    /// must run with exactly the account's rights.
    pub async fn kubeconfig_for_service_account(
        &self,
        admin: &Client,
        namespace: &str,
        name: &str,
        path: &std::path::Path,
    ) -> Result<(), Error> {
        let token = self.service_account_token(admin, namespace, name).await?;
        let mut kc = kube::config::Kubeconfig::read_from(self.kubeconfig()).map_err(err)?;
        for a in &mut kc.auth_infos {
            a.auth_info = Some(kube::config::AuthInfo {
                token: Some(token.clone().into()),
                ..Default::default()
            });
        }
        // JSON is YAML: kubectl and kube read it as a kubeconfig.
        let text = serde_json::to_string_pretty(&kc).map_err(err)?;
        std::fs::write(path, text).map_err(err)
    }

    /// A fresh namespace named `nur-test-PREFIX-RANDOM`, deleted when the
    /// returned guard is dropped.
    pub async fn namespace(&self, prefix: &str) -> Result<TestNamespace, Error> {
        let client = self.client().await?;
        let name = format!("nur-test-{}-{}", sanitize(prefix), random_suffix());
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: Some([("nur.dev/test".to_string(), "true".to_string())].into()),
                ..Default::default()
            },
            ..Default::default()
        };
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .map_err(err)?;
        Ok(TestNamespace {
            name,
            client,
            kubeconfig: self.kubeconfig(),
            keep: std::env::var_os("NUR_TESTENV_KEEP_NAMESPACES").is_some(),
        })
    }

    /// Name of the test bucket.
    pub fn bucket(&self) -> &str {
        &self.vars["NUR_TEST_BUCKET"]
    }

    /// The S3 endpoint URL (MinIO).
    pub fn s3_endpoint(&self) -> &str {
        &self.vars["AWS_ENDPOINT_URL"]
    }

    /// An S3 builder for `bucket`, configured for MinIO from `.testenv/env`.
    pub fn s3_builder(&self, bucket: &str) -> AmazonS3Builder {
        install_crypto_provider();
        let v = |k: &str| self.vars.get(k).cloned().unwrap_or_default();
        AmazonS3Builder::new()
            .with_endpoint(v("AWS_ENDPOINT_URL"))
            .with_access_key_id(v("AWS_ACCESS_KEY_ID"))
            .with_secret_access_key(v("AWS_SECRET_ACCESS_KEY"))
            .with_region(self.var("AWS_REGION").unwrap_or("us-east-1"))
            .with_allow_http(true)
            .with_virtual_hosted_style_request(false)
            .with_bucket_name(bucket)
    }

    /// An object store for the test bucket.
    pub fn object_store(&self) -> Result<Arc<dyn ObjectStore>, Error> {
        Ok(Arc::new(self.s3()?))
    }

    /// The test bucket as a concrete `AmazonS3`.
    pub fn s3(&self) -> Result<AmazonS3, Error> {
        self.s3_builder(self.bucket()).build().map_err(err)
    }
}

/// A namespace that is deleted (in the background) when dropped. Set
/// `NUR_TESTENV_KEEP_NAMESPACES=1` to keep it for debugging.
pub struct TestNamespace {
    name: String,
    client: Client,
    kubeconfig: PathBuf,
    keep: bool,
}

impl TestNamespace {
    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// An admin client (default namespace: this one is not set; use
    /// `Api::namespaced(ns.client(), ns.name())`).
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// `Api<K>` in this namespace with the admin client.
    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.name)
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        if self.keep {
            eprintln!("nur-testkit: keeping namespace {}", self.name);
            return;
        }
        // Drop cannot await, and the test's runtime may be shutting down:
        // delete from a separate thread with its own runtime and client.
        let name = self.name.clone();
        let kubeconfig = self.kubeconfig.clone();
        let res = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(err)?;
            rt.block_on(async move {
                install_crypto_provider();
                let kc = Kubeconfig::read_from(kubeconfig).map_err(err)?;
                let cfg = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
                    .await
                    .map_err(err)?;
                let client = Client::try_from(cfg).map_err(err)?;
                match Api::<Namespace>::all(client)
                    .delete(&name, &DeleteParams::background())
                    .await
                {
                    Ok(_) => Ok(()),
                    Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
                    Err(e) => Err(err(e)),
                }
            })
        })
        .join();
        match res {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("nur-testkit: deleting namespace {}: {e}", self.name),
            Err(_) => eprintln!("nur-testkit: deleting namespace {} panicked", self.name),
        }
    }
}

/// Selects rustls' aws-lc-rs provider for the process, once. Both kube and
/// object_store use rustls; when the workspace enables more than one
/// provider, rustls cannot pick one by itself.
pub fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    });
}

/// Polls `f` every 100 ms until it returns `Some`, for at most `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> Result<T, Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return Ok(v);
        }
        if start.elapsed() > timeout {
            return Err(Error(format!(
                "timed out after {timeout:?} waiting for {what}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Parses `KEY=value` lines; values may be single- or double-quoted;
/// `export ` prefixes and `#` comments are ignored.
pub fn parse_env(text: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        out.insert(k.trim().to_string(), unquote(v.trim()));
    }
    out
}

fn unquote(v: &str) -> String {
    if v.len() >= 2 && v.starts_with('"') && v.ends_with('"') {
        return v[1..v.len() - 1].replace("\\\"", "\"");
    }
    if !v.contains('\'') {
        return v.to_string();
    }
    // POSIX single quotes, including the '\'' idiom.
    let mut out = String::new();
    let mut in_q = false;
    let mut chars = v.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' => in_q = !in_q,
            '\\' if !in_q => {
                if let Some(n) = chars.next() {
                    out.push(n);
                }
            }
            c => out.push(c),
        }
    }
    out
}

fn sanitize(s: &str) -> String {
    let s: String = s
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let s = s.trim_matches('-');
    s.chars()
        .take(30)
        .collect::<String>()
        .trim_end_matches('-')
        .to_string()
}

fn random_suffix() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.write_u32(std::process::id());
    format!("{:08x}", h.finish() as u32)
}

/// Waits (at most `timeout`) until Deployment `name` in `ns` runs its first
/// container with `--sha256 SHA256`, the worker's module pin; returns it.
pub async fn deployment_pinned(
    ns: &TestNamespace,
    name: &str,
    sha256: &str,
    timeout: Duration,
) -> Result<k8s_openapi::api::apps::v1::Deployment, Error> {
    eventually(
        &format!("Deployment {name} pinned to {sha256}"),
        timeout,
        || {
            let api = ns.api::<k8s_openapi::api::apps::v1::Deployment>();
            async move {
                let d = api.get_opt(name).await.ok()??;
                let args = d.spec.as_ref()?.template.spec.as_ref()?.containers[0]
                    .args
                    .clone()?;
                args.windows(2)
                    .any(|w| w[0] == "--sha256" && w[1] == sha256)
                    .then_some(d)
            }
        },
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_env_file() {
        let v =
            parse_env("# c\nKUBECONFIG=/a/b\nexport X='it'\\''s'\nY=\"q\"\nAWS_ALLOW_HTTP=true\n");
        assert_eq!(v["KUBECONFIG"], "/a/b");
        assert_eq!(v["X"], "it's");
        assert_eq!(v["Y"], "q");
        assert_eq!(v["AWS_ALLOW_HTTP"], "true");
    }

    #[test]
    fn namespace_names_are_valid() {
        assert_eq!(sanitize("Deploy_GC::x"), "deploy-gc--x");
        assert!(sanitize(&"a".repeat(100)).len() <= 30);
    }
}
