//! End-to-end tests of Nur as a user installs it: the Helm chart in
//! `charts/nur`, the example manifests in `examples/manifests`, and the
//! `nur-operator` and `nur-worker` binaries of this workspace.
//!
//! Layout:
//!
//! - `tests/chart.rs`: the chart as the real helm lints and renders it, no
//!   cluster needed: least-privilege RBAC, the hardened operator pod, the
//!   values that change what is rendered.
//! - `tests/helm.rs`: the whole path on the test environment (`make
//!   testenv`): `helm install`, the operator run as the chart's
//!   ServiceAccount with the chart's args, an example uploaded to MinIO and
//!   `kubectl apply`d, the worker serving with the pod spec the operator
//!   wrote, a new upload rolling out, `helm uninstall`.
//! - `src/lib.rs` (this file): what both share: the workspace's binaries,
//!   child processes that die with the test, a container run as a local
//!   process, raw TCP clients, multi-document YAML.
//!
//! The tests run the binaries from the same target directory as the test
//! (`cargo test --workspace` builds them); when one is missing it is built
//! with `cargo build`. `NUR_E2E_BIN_DIR=DIR` runs those in DIR instead, e.g.
//! the static release binaries of `docker/Dockerfile`:
//! `NUR_E2E_BIN_DIR=target/x86_64-unknown-linux-musl/release cargo test -p nur-e2e`.

#![forbid(unsafe_code)]

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, Secret};

/// The workspace root (the parent of this crate).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("e2e/ has a parent")
        .to_path_buf()
}

/// `charts/nur`.
pub fn chart_dir() -> PathBuf {
    workspace_root().join("charts/nur")
}

/// The chart's `appVersion`, the images' default tag.
pub fn chart_app_version() -> String {
    let text = std::fs::read_to_string(chart_dir().join("Chart.yaml")).unwrap();
    let chart: serde_json::Value = serde_yaml::from_str(&text).unwrap();
    chart["appVersion"].as_str().unwrap().to_string()
}

/// The workspace binary `name` (`nur-operator`, `nur-worker`): from
/// `$NUR_E2E_BIN_DIR` when set (e.g. the static musl release build that
/// goes into the images), else from the target directory of the running
/// test, built when missing.
pub fn binary(name: &str) -> PathBuf {
    if let Some(dir) = std::env::var_os("NUR_E2E_BIN_DIR") {
        let bin = PathBuf::from(dir).join(name);
        assert!(bin.is_file(), "NUR_E2E_BIN_DIR has no {}", bin.display());
        return bin;
    }
    let exe = std::env::current_exe().unwrap();
    // target/debug/deps/TEST -> target/debug/NAME
    let dir = exe.parent().unwrap().parent().unwrap();
    let bin = dir.join(name);
    if !bin.exists() {
        let status = Command::new(env!("CARGO"))
            .args(["build", "-p", name, "--bin", name])
            .status()
            .unwrap();
        assert!(status.success(), "cargo build -p {name} failed");
    }
    bin
}

/// A child process, killed when dropped; its stderr goes to a log file.
pub struct Process {
    child: Child,
    log: PathBuf,
}

impl Process {
    /// Spawns `cmd` with stdout discarded and stderr written to `log`.
    pub fn spawn(mut cmd: Command, log: PathBuf) -> Process {
        let file = std::fs::File::create(&log).unwrap();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
        eprintln!("log: {}", log.display());
        Process { child, log }
    }

    /// The log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Panics (with the log) when the process has exited.
    pub fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!("process exited with {status}; log:\n{}", self.log());
        }
    }

    /// Polls `GET path` on `port` until it answers 200, for at most
    /// `timeout`; panics with the log when the process dies first.
    pub fn wait_http_ok(&mut self, port: u16, path: &str, timeout: Duration) {
        let start = Instant::now();
        loop {
            if http_get(port, path).is_some_and(|r| r.starts_with("HTTP/1.1 200")) {
                return;
            }
            self.assert_running();
            assert!(
                start.elapsed() < timeout,
                "GET 127.0.0.1:{port}{path} not 200 after {timeout:?}; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Sends `input` to 127.0.0.1:`port`, half-closes, and reads until the
/// server closes.
pub fn exchange(port: u16, input: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(input)?;
    s.shutdown(Shutdown::Write)?;
    let mut out = vec![];
    s.read_to_end(&mut out)?;
    Ok(out)
}

/// `GET path` over HTTP/1.1 on 127.0.0.1:`port`: the whole response.
pub fn http_get(port: u16, path: &str) -> Option<String> {
    let req = format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    s.write_all(req.as_bytes()).ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

/// Every document of a multi-document YAML stream (empty ones skipped).
pub fn yaml_documents(text: &str) -> Vec<serde_json::Value> {
    use serde::Deserialize;
    serde_yaml::Deserializer::from_str(text)
        .map(|d| serde_json::Value::deserialize(d).unwrap())
        .filter(|v| !v.is_null())
        .collect()
}

/// A Secret's keys and values, as envFrom hands them to a container.
pub fn secret_env(secret: &Secret) -> BTreeMap<String, String> {
    secret
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), String::from_utf8(v.0.clone()).unwrap()))
        .collect()
}

/// The environment the kubelet would give `container`: `envFrom` Secrets
/// (looked up by name in `secrets`), then `env` entries with a value, a
/// Secret key, or a field reference (looked up in `fields`, e.g.
/// `metadata.name`). Anything else panics: the test must not silently run
/// a container with less than its pod spec says.
pub fn container_env(
    container: &Container,
    secrets: &HashMap<String, Secret>,
    fields: &HashMap<&str, String>,
) -> BTreeMap<String, String> {
    let secret = |name: &str| {
        secrets
            .get(name)
            .unwrap_or_else(|| panic!("container reads Secret {name}, which the test lacks"))
    };
    let mut env = BTreeMap::new();
    for from in container.env_from.iter().flatten() {
        let r = from
            .secret_ref
            .as_ref()
            .unwrap_or_else(|| panic!("only secretRef envFrom is supported: {from:?}"));
        let prefix = from.prefix.clone().unwrap_or_default();
        for (k, v) in secret_env(secret(&r.name)) {
            env.insert(format!("{prefix}{k}"), v);
        }
    }
    for e in container.env.iter().flatten() {
        let value = if let Some(v) = &e.value {
            v.clone()
        } else {
            let from = e.value_from.as_ref().unwrap();
            if let Some(f) = &from.field_ref {
                fields
                    .get(f.field_path.as_str())
                    .unwrap_or_else(|| panic!("no value for fieldRef {}", f.field_path))
                    .clone()
            } else if let Some(k) = &from.secret_key_ref {
                match secret_env(secret(&k.name)).remove(&k.key) {
                    Some(v) => v,
                    None if k.optional == Some(true) => continue,
                    None => panic!("Secret {} has no key {}", k.name, k.key),
                }
            } else {
                panic!("unsupported env source for {}: {from:?}", e.name)
            }
        };
        env.insert(e.name.clone(), value);
    }
    env
}

/// A command that runs `binary` the way the container runtime runs
/// `container` from an image whose entrypoint is that binary: the
/// container's args, exactly `env` (plus PATH), no command override.
pub fn container_command(
    binary: &Path,
    container: &Container,
    env: &BTreeMap<String, String>,
) -> Command {
    assert!(
        container.command.is_none(),
        "the image's entrypoint is the binary; the container must not override it"
    );
    let mut cmd = Command::new(binary);
    cmd.args(container.args.iter().flatten())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env);
    cmd
}

/// The container port named `name`.
pub fn container_port(container: &Container, name: &str) -> u16 {
    container
        .ports
        .iter()
        .flatten()
        .find(|p| p.name.as_deref() == Some(name))
        .unwrap_or_else(|| panic!("container has no port named {name}"))
        .container_port as u16
}
