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
//! Layout, by topic:
//!
//! - this file: the [`TestEnv`] (env loading, clients, namespaces);
//! - [`envfile`]: `.testenv/env` parsing; [`wait`]: polling helpers;
//! - [`net`]: a free port, a raw HTTP GET, one request/answer exchange;
//! - [`process`]: a child killed on drop, with its log; a built binary;
//! - [`store`]: uploads to the test bucket, the AWS variables, the
//!   fault-injecting TCP [`store::Proxy`];
//! - [`examples`]: a built example from `examples/build/`;
//! - [`crd`]: install a CRD and wait until it is Established;
//! - [`bare`]: a second API server on the same etcd with nothing installed;
//! - [`pod`]: a container's command, env and ports from a pod spec.

#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{ObjectMeta, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};
use object_store::ObjectStore;
use object_store::aws::{AmazonS3, AmazonS3Builder};

/// Re-exports so tests need not name the exact versions.
pub use k8s_openapi;
pub use kube;
pub use object_store;

pub mod bare;
pub mod crd;
pub mod envfile;
pub mod examples;
pub mod namespace;
pub mod net;
pub mod pod;
pub mod process;
pub mod store;
pub mod wait;

pub use envfile::parse_env;
pub use namespace::TestNamespace;
use namespace::{random_suffix, sanitize};
pub use wait::{deployment_pinned, eventually};

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
    /// returned guard is dropped. Its pods go to kwok's fake node.
    pub async fn namespace(&self, prefix: &str) -> Result<TestNamespace, Error> {
        self.namespace_with(prefix, None).await
    }

    /// Like [`TestEnv::namespace`], but its pods go to the real node
    /// (kubelet, containerd, runc): real containers of the images testenv
    /// imported, on pod IPs routed from this host. An error when the test
    /// environment runs without one (not root, no containerd).
    pub async fn namespace_on_real_node(&self, prefix: &str) -> Result<TestNamespace, Error> {
        let selector = self.var("NUR_TESTENV_NODE_SELECTOR").ok_or_else(|| {
            Error(
                "the test environment has no real node (.testenv/env has no \
                 NUR_TESTENV_NODE_SELECTOR): `make testenv` as root with containerd, runc, \
                 iptables and conntrack installed; see .testenv/logs/testenv.log"
                    .into(),
            )
        })?;
        self.namespace_with(prefix, Some(selector.to_string()))
            .await
    }

    async fn namespace_with(
        &self,
        prefix: &str,
        node_selector: Option<String>,
    ) -> Result<TestNamespace, Error> {
        let client = self.client().await?;
        let name = format!("nur-test-{}-{}", sanitize(prefix), random_suffix());
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: Some([("nur.dev/test".to_string(), "true".to_string())].into()),
                // PodNodeSelector admission: every pod of the namespace.
                annotations: node_selector.map(|s| {
                    [("scheduler.alpha.kubernetes.io/node-selector".to_string(), s)].into()
                }),
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

/// Selects rustls' aws-lc-rs provider for the process, once. Both kube and
/// object_store use rustls; when the workspace enables more than one
/// provider, rustls cannot pick one by itself.
pub fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    });
}
