//! A second, bare API server beside the test environment's: the same
//! kube-apiserver on the same etcd under a prefix of its own, so a cluster
//! with nothing installed (no CRD of Nur's), for the errors a user of such
//! a cluster gets. Killed when dropped.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::namespace::random_suffix;
use crate::net::free_port;
use crate::process::Process;
use crate::{Error, TestEnv};

/// A running bare API server and a kubeconfig for it (admin).
pub struct BareApiServer {
    _process: Process,
    dir: PathBuf,
    log: PathBuf,
    /// A kubeconfig for it: the test environment's, at its address.
    pub kubeconfig: PathBuf,
}

impl Drop for BareApiServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
        let _ = std::fs::remove_file(&self.log);
    }
}

impl TestEnv {
    /// Starts a bare API server and waits until it serves.
    pub async fn bare_api_server(&self) -> Result<BareApiServer, Error> {
        let etcd = self.var("NUR_TESTENV_ETCD").ok_or_else(|| {
            Error("`.testenv/env` has no NUR_TESTENV_ETCD: `make testenv` again".into())
        })?;
        let suffix = random_suffix();
        let dir = std::env::temp_dir().join(format!("nur-bare-apiserver-{suffix}"));
        std::fs::create_dir_all(&dir).map_err(|e| Error(e.to_string()))?;
        let pki = self.dir().join("pki");
        let pki = |f: &str| pki.join(f).display().to_string();
        let port = free_port();
        let mut cmd = Command::new(self.dir().join("bin/nur-testenv"));
        cmd.arg("kube-apiserver").args([
            format!("--etcd-servers={etcd}"),
            format!("--etcd-prefix=/nur-bare-{suffix}"),
            "--bind-address=127.0.0.1".into(),
            format!("--secure-port={port}"),
            format!("--tls-cert-file={}", pki("apiserver.crt")),
            format!("--tls-private-key-file={}", pki("apiserver.key")),
            format!("--client-ca-file={}", pki("ca.crt")),
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
            format!("--service-account-key-file={}", pki("sa.pub")),
            format!("--service-account-signing-key-file={}", pki("sa.key")),
            "--authorization-mode=RBAC".into(),
            "--service-cluster-ip-range=10.97.0.0/16".into(),
            "--endpoint-reconciler-type=none".into(),
            "--enable-priority-and-fairness=false".into(),
            "--profiling=false".into(),
            format!("--cert-dir={}", dir.join("certs").display()),
        ]);
        // Beside the directory, so that it outlives a failed start.
        let log = std::env::temp_dir().join(format!("nur-bare-apiserver-{suffix}.log"));
        let process = Process::spawn(cmd, log.clone());
        let kubeconfig = dir.join("kubeconfig");
        let text = std::fs::read_to_string(self.kubeconfig()).map_err(|e| Error(e.to_string()))?;
        let server = self
            .config()
            .await?
            .cluster_url
            .to_string()
            .trim_end_matches('/')
            .to_string();
        std::fs::write(
            &kubeconfig,
            text.replace(&server, &format!("https://127.0.0.1:{port}")),
        )
        .map_err(|e| Error(e.to_string()))?;
        let bare = BareApiServer {
            _process: process,
            dir,
            log: log.clone(),
            kubeconfig,
        };
        let options = kube::config::KubeConfigOptions::default();
        let config = kube::Config::from_custom_kubeconfig(
            kube::config::Kubeconfig::read_from(&bare.kubeconfig)
                .map_err(|e| Error(e.to_string()))?,
            &options,
        )
        .await
        .map_err(|e| Error(e.to_string()))?;
        let client = kube::Client::try_from(config).map_err(|e| Error(e.to_string()))?;
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if client.apiserver_version().await.is_ok() {
                return Ok(bare);
            }
            if Instant::now() > deadline {
                return Err(Error(format!(
                    "the bare kube-apiserver did not serve within 90s; its log: {}",
                    log.display()
                )));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}
