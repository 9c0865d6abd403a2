//! The `nur-gateway` binary's own errors, as an operator of the platform
//! sees them: bad flags, no cluster.

use std::process::Command;

fn gateway(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_nur-gateway"))
        .args(args)
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_flags_and_no_cluster_are_named() {
    let (ok, err) = gateway(&["run", "--tcp-ports", "7009-7000"]);
    assert!(!ok);
    assert!(err.contains("the first port is above the last"), "{err}");
    let (ok, err) = gateway(&[
        "run",
        "--http-listen",
        "127.0.0.1:0",
        "--tls-listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
        "--tcp-ports",
        "1-1",
    ]);
    assert!(!ok);
    assert!(err.contains("connecting to the Kubernetes API"), "{err}");
}
