//! WASI commands and spec.env on testenv's real node: the chart's operator
//! rolls out worker pods of the worker image for a C command (wasi-libc)
//! whose environment is its spec.env, a plain value and a key of a Secret
//! labelled for functions, and for a Rust command that answers line by
//! line through the Service's ClusterIP; a function naming a Secret
//! without the label is not rolled out.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use nur_e2e::realnode::{
    T, apply, example_manifest, install_on_real_node as install, nurfunctions, wait_ready,
};
use nur_e2e::run;
use nur_testkit::net::exchange;
use nur_testkit::{TestEnv, TestNamespace, eventually, examples, store, testenv};

/// Uploads examples/build/NAME.wasm, applies its example manifest and waits
/// for its pod to be Ready.
async fn deploy_example(env: &TestEnv, ns: &TestNamespace, name: &str) {
    let prefix = format!("wasi/{}", ns.name());
    let module = examples::read(&format!("{name}.wasm"));
    let digest = nur_module::sha256_hex(&module);
    store::put(env, &format!("{prefix}/{name}.wasm"), module).await;
    apply(
        env,
        ns,
        &example_manifest(env, &format!("{name}.yaml"), &prefix),
    );
    wait_ready(ns, name, &digest, 1).await;
}

/// The ClusterIP address of Service `name`, once `probe` gets an answer
/// containing `expect` through it.
async fn routed(ns: &TestNamespace, name: &str, probe: &'static [u8], expect: &str) -> SocketAddr {
    let spec = ns.api::<Service>().get(name).await.unwrap().spec.unwrap();
    let addr: SocketAddr = format!(
        "{}:{}",
        spec.cluster_ip.unwrap(),
        spec.ports.unwrap()[0].port
    )
    .parse()
    .unwrap();
    let expect = expect.to_string();
    eventually(&format!("{name} answering at {addr}"), T, || {
        let expect = expect.clone();
        async move {
            let reply = exchange(addr, probe).ok()?;
            String::from_utf8_lossy(&reply)
                .contains(&expect)
                .then_some(())
        }
    })
    .await
    .unwrap();
    addr
}

fn secret(env: &TestEnv, ns: &TestNamespace, name: &str, literal: &str, labelled: bool) {
    let mut create = env.kubectl();
    create.args(["create", "secret", "generic", name, "-n", ns.name()]);
    create.arg(format!("--from-literal={literal}"));
    run(create, None);
    if labelled {
        let mut label = env.kubectl();
        label.args([
            "label",
            "secret",
            name,
            "-n",
            ns.name(),
            "nur.dev/function-env=true",
        ]);
        run(label, None);
    }
}

#[tokio::test]
async fn commands_serve_on_the_real_node_with_spec_env_from_a_labelled_secret_only() {
    let env = testenv!();
    let ns = install(&env, "node-wasi").await;
    secret(&env, &ns, "c-sandbox-env", "token=s3cr3t", true);
    secret(&env, &ns, "admin-token", "token=not-for-functions", false);

    // c-sandbox sees its name, its spec.env and nothing of the pod.
    deploy_example(&env, &ns, "c-sandbox").await;
    let addr = routed(&ns, "c-sandbox", b"probe", "read 5 bytes").await;
    let reply = String::from_utf8(exchange(addr, b"hello pod").unwrap()).unwrap();
    assert_eq!(
        reply,
        "read 9 bytes\narg 0: c-sandbox\nenv: GREETING=hello\nenv: TOKEN=s3cr3t\n\
         open /etc/passwd: Capabilities insufficient\n\
         open /proc/self/environ: Capabilities insufficient\n\
         open ../../etc/hostname: Capabilities insufficient\n",
        "only spec.env: no AWS_*, KUBERNETES_* or NUR_* variable of the pod"
    );

    // shout answers each line before the next is sent, through kube-proxy.
    deploy_example(&env, &ns, "shout").await;
    let addr = routed(&ns, "shout", b"probe\n", "PROBE").await;
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    for (line, answer) in [("one\n", "ONE\n"), ("two\n", "TWO\n")] {
        stream.write_all(line.as_bytes()).unwrap();
        let mut got = vec![0; answer.len()];
        stream.read_exact(&mut got).unwrap();
        assert_eq!(String::from_utf8(got).unwrap(), answer);
    }

    // A Secret without the label is not handed to a function: no
    // Deployment, Ready=False naming the Secret and the fix.
    let prefix = format!("wasi/{}", ns.name());
    store::put(
        &env,
        &format!("{prefix}/leaky.wasm"),
        examples::read("c-sandbox.wasm"),
    )
    .await;
    let url = format!("s3://{}/{prefix}/leaky.wasm", env.bucket());
    apply(
        &env,
        &ns,
        &format!(
            "apiVersion: nur.dev/v1alpha1\nkind: NurFunction\nmetadata: {{name: leaky}}\nspec:\n  \
             module: {{url: {url}, credentialsSecret: object-store}}\n  env:\n  \
             - name: STOLEN\n    valueFrom: {{secretKeyRef: {{name: admin-token, key: token}}}}\n"
        ),
    );
    let functions = nurfunctions(&ns).await;
    let message = eventually("leaky refused with EnvSourceNotAllowed", T, || {
        let functions = functions.clone();
        async move {
            let f = functions.get("leaky").await.ok()?;
            let ready = f.data["status"]["conditions"]
                .as_array()?
                .iter()
                .find(|c| c["type"] == "Ready")?
                .clone();
            (ready["status"] == "False" && ready["reason"] == "EnvSourceNotAllowed")
                .then(|| ready["message"].as_str().unwrap_or_default().to_string())
        }
    })
    .await
    .unwrap();
    assert!(
        message.contains(&format!(
            "Secret {}/admin-token named by spec.env lacks the label nur.dev/function-env=true",
            ns.name()
        )) && message.contains("kubectl label secret admin-token"),
        "{message}"
    );
    assert!(
        ns.api::<Deployment>()
            .get_opt("leaky")
            .await
            .unwrap()
            .is_none(),
        "no pod may get the Secret"
    );

    // The API server refuses a variable with both a value and a source.
    let mut bad = env.kubectl();
    bad.args(["apply", "--dry-run=server", "-n", ns.name(), "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = bad.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(
            format!(
                "apiVersion: nur.dev/v1alpha1\nkind: NurFunction\nmetadata: {{name: both}}\nspec:\n  \
                 module: {{url: {url}}}\n  env:\n  - name: X\n    value: a\n    \
                 valueFrom: {{configMapKeyRef: {{name: c, key: k}}}}\n"
            )
            .as_bytes(),
        )
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("set exactly one of value and valueFrom"),
        "{stderr}"
    );
}
