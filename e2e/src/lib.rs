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
//! - `tests/node.rs`: the same path on testenv's real node, with the images
//!   testenv imported: real pods behind a real Service's ClusterIP, a
//!   rollout under load, the HPA on measured CPU, an OOM kill.
//! - `tests/cli.rs`: the `nur` command line on the real node: an original
//!   nurfile deployed, called, logged, redeployed and removed; its errors.
//! - `tests/gateway.rs`: nur-gateway run on this host in front of pods on
//!   the real node: every kind of route, its own answers, a rollout under
//!   load, scale to zero; `tests/gateway_chart.rs`: the chart's gateway
//!   pods behind their Service.
//! - `tests/console.rs`: `nur console` in headless Chromium (Debian's
//!   chromium and chromium-driver over WebDriver, [`browser`]) on functions
//!   of the real node: the live list, a failing module's message, try it
//!   with its log line, the live log view, metrics, scaling, deleting, a
//!   user without rights; screenshots into docs/console/.
//! - `tests/manifests.rs`: every example NurFunction taken by the API
//!   server (a server-side dry run).
//! - `src/lib.rs` (this file): what the tests share and is e2e's own: the
//!   workspace's paths, the chart, multi-document YAML; [`realnode`]: the
//!   chart installed on the real node, functions deployed there and
//!   waited for, a constant load of clients. Binaries, child
//!   processes, raw TCP clients and containers run as local processes are
//!   in nur-testkit (`process`, `net`, `pod`).
//!
//! The tests run the binaries from the same target directory as the test
//! (`cargo test --workspace` builds them); when one is missing it is built
//! with `cargo build`. `NUR_E2E_BIN_DIR=DIR` runs those in DIR instead, e.g.
//! the static release binaries of `docker/Dockerfile`:
//! `NUR_E2E_BIN_DIR=target/x86_64-unknown-linux-musl/release cargo test -p nur-e2e`.

#![forbid(unsafe_code)]

pub mod browser;
pub mod realnode;

use std::path::{Path, PathBuf};

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

/// Every document of a multi-document YAML stream (empty ones skipped).
pub fn yaml_documents(text: &str) -> Vec<serde_json::Value> {
    use serde::Deserialize;
    serde_yaml::Deserializer::from_str(text)
        .map(|d| serde_json::Value::deserialize(d).unwrap())
        .filter(|v| !v.is_null())
        .collect()
}

/// Runs a tool (kubectl, helm) with `stdin`; panics with its output unless
/// it succeeds; returns its stdout.
pub fn run(mut cmd: std::process::Command, stdin: Option<&str>) -> String {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(stdin.unwrap_or("").as_bytes())
        .expect("write the tool's stdin");
    let out = child.wait_with_output().expect("wait for the tool");
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("the tool prints UTF-8")
}
