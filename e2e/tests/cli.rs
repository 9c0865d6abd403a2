//! The `nur` command line as a developer runs it, against testenv with its
//! real node: the chart installed with the real helm, a repository with the
//! original platform's nurfile.yaml (three Rust functions, one named with an
//! emoji and a space) deployed with `nur deploy`, answered through `nur
//! call` (a port-forward through the API server to a real pod), its log
//! line in `nur logs`, a redeploy that uploads and changes nothing, a
//! changed function that rolls only itself, `nur ls`, `nur status`, `nur
//! rm --purge`; and each error a user can run into, with what to do.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};

use futures::TryStreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use kube::api::{DynamicObject, GroupVersionKind};
use kube::discovery::ApiResource;
use nur_e2e::realnode::install_on_real_node;
use nur_testkit::process::{binary, failed, succeeded as ok};
use nur_testkit::{TestEnv, TestNamespace, store, testenv};
use object_store::path::Path as Key;

/// `nur ARGS` in `dir`, as a user with the test environment's kubeconfig
/// and MinIO credentials (and nothing of the test's own environment that
/// would change what it does).
fn nur(env: &TestEnv, dir: &Path, args: &[&str]) -> Output {
    Command::new(binary("nur"))
        .args(args)
        .current_dir(dir)
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("NUR_STORE")
        .env_remove("NUR_FILE")
        .env("KUBECONFIG", env.kubeconfig())
        .envs(store::aws(env))
        .output()
        .unwrap()
}

/// The keys under `prefix` in the test bucket.
async fn objects(env: &TestEnv, prefix: &str) -> Vec<String> {
    let mut keys: Vec<String> = env
        .object_store()
        .unwrap()
        .list(Some(&Key::from(prefix)))
        .map_ok(|m| m.location.to_string())
        .try_collect()
        .await
        .unwrap();
    keys.sort();
    keys
}

/// Each function's Deployment generation (a rollout changes it).
async fn generations(ns: &TestNamespace) -> BTreeMap<String, i64> {
    ns.api::<Deployment>()
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|d| {
            d.metadata.labels.as_ref().is_some_and(|l| {
                l.get("app.kubernetes.io/name").map(String::as_str) == Some("nur-function")
            })
        })
        .map(|d| (d.metadata.name.unwrap(), d.metadata.generation.unwrap()))
        .collect()
}

/// Each NurFunction's resourceVersion (any write changes it).
async fn versions(ns: &TestNamespace) -> BTreeMap<String, String> {
    let gvk = GroupVersionKind::gvk("nur.dev", "v1alpha1", "NurFunction");
    let functions: Api<DynamicObject> =
        Api::namespaced_with(ns.client(), ns.name(), &ApiResource::from_gvk(&gvk));
    functions
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|f| {
            (
                f.metadata.name.unwrap(),
                f.metadata.resource_version.unwrap(),
            )
        })
        .collect()
}

/// A repository of three Rust functions made by `nur new`, and the
/// original platform's nurfile for them with Nur's keys added.
fn repository(env: &TestEnv, dir: &Path, ns: &TestNamespace, prefix: &str) {
    for name in ["hello-world", "🐄 cowsay", "echo"] {
        ok(nur(env, dir, &["new", "rust", name]));
    }
    let nurfile = format!(
        "functions:
  - name: hello-world
    directory: /hello-world
    template: rust
    build:
      command: cargo build --target wasm32-unknown-unknown --release --target-dir target
      output: /target/wasm32-unknown-unknown/release/hello_world.wasm
    credentialsSecret: object-store
  - name: 🐄 cowsay
    directory: /cowsay
    template: rust
    credentialsSecret: object-store
  - name: echo
    directory: /echo
    template: rust
    credentialsSecret: object-store
    replicas: 2
store: s3://{bucket}/{prefix}
namespace: {ns}
",
        bucket = env.bucket(),
        ns = ns.name(),
    );
    std::fs::write(dir.join("nurfile.yaml"), nurfile).unwrap();
}

#[tokio::test]
async fn nur_deploys_the_original_nurfile_and_calls_logs_redeploys_and_removes() {
    let env = testenv!();
    let ns = install_on_real_node(&env, "cli").await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let prefix = format!("cli/{}", ns.name());
    repository(&env, d, &ns, &prefix);

    // First deploy: three builds, three uploads, three functions Ready.
    let out = ok(nur(&env, d, &["deploy"]));
    for label in ["hello-world", "cowsay", "echo"] {
        let line = out
            .lines()
            .find(|l| l.starts_with(&format!("{label} ")))
            .unwrap_or_else(|| panic!("no line for {label}: {out}"));
        assert!(line.contains(" created "), "{line}");
        assert!(line.contains(" uploaded "), "{line}");
        assert!(
            line.ends_with(&format!("{label}.{}.svc:8080", ns.name())),
            "{line}"
        );
    }
    assert!(out.contains("ready 2"), "echo has 2 replicas: {out}");
    // In the store: the three modules by digest, and beside each the
    // native code the operator's compile Job stored for it.
    let uploaded = objects(&env, &prefix).await;
    let modules: Vec<&String> = uploaded
        .iter()
        .filter(|k| k.ends_with(".wasm.zst"))
        .collect();
    assert_eq!(modules.len(), 3, "{uploaded:?}");
    for m in &modules {
        assert!(m.starts_with(&format!("{prefix}/sha256/")), "{uploaded:?}");
        let digest = &m[m.len() - ".wasm.zst".len() - 64..m.len() - ".wasm.zst".len()];
        let artifact = format!("{m}.{}.artifact", &digest[..16]);
        assert!(
            uploaded.contains(&artifact),
            "no {artifact} in {uploaded:?}"
        );
    }
    assert_eq!(uploaded.len(), 6, "{uploaded:?}");

    // The function answers through `nur call`, by either of its names.
    let answer = ok(nur(&env, d, &["call", "🐄 cowsay", "--data", "moo"]));
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(answer.ends_with("Hello from cowsay!\n"), "{answer}");
    // The line the function logged on that call, with its connection.
    let logs = ok(nur(&env, d, &["logs", "cowsay"]));
    let logged = logs
        .lines()
        .find(|l| l.contains("cowsay: 3 bytes"))
        .unwrap_or_else(|| panic!("no `cowsay: 3 bytes` in:\n{logs}"));
    assert!(logged.contains(" cowsay-"), "the pod: {logged}");
    assert!(logged.contains(" [conn "), "the connection: {logged}");

    // `nur logs -f` shows a call's line as it comes.
    let mut follow = Command::new(binary("nur"))
        .args(["logs", "-f", "cowsay", "--since", "1s"])
        .current_dir(d)
        .env("KUBECONFIG", env.kubeconfig())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = follow.stdout.take().unwrap();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    // A call every 3 s until its line shows: the stream may attach after
    // the first call's line was written (it starts at `--since 1s`).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut seen = None;
    while seen.is_none() && std::time::Instant::now() < deadline {
        ok(nur(&env, d, &["call", "cowsay", "--data", "followed"]));
        let round = std::time::Instant::now() + std::time::Duration::from_secs(3);
        seen = std::iter::from_fn(|| {
            rx.recv_timeout(round.saturating_duration_since(std::time::Instant::now()))
                .ok()
        })
        .find(|l| l.contains("cowsay: 8 bytes"));
    }
    follow.kill().unwrap();
    follow.wait().unwrap();
    let seen = seen.expect("`nur logs -f` showed the call's line within 30s");
    assert!(seen.contains(" [conn "), "{seen}");

    // A redeploy with nothing changed uploads nothing and changes nothing.
    let before = generations(&ns).await;
    let versions_before = versions(&ns).await;
    let out = ok(nur(&env, d, &["deploy"]));
    assert!(
        out.contains("nothing changed: 3 functions up to date"),
        "{out}"
    );
    assert_eq!(out.matches(" unchanged ").count(), 3, "{out}");
    assert_eq!(out.matches("already in the store").count(), 3, "{out}");
    assert_eq!(objects(&env, &prefix).await, uploaded);
    assert_eq!(versions(&ns).await, versions_before);
    assert_eq!(generations(&ns).await, before);

    // A changed function rolls only itself.
    let lib = d.join("cowsay/src/lib.rs");
    let source = std::fs::read_to_string(&lib).unwrap();
    std::fs::write(
        &lib,
        source.replace("Hello from cowsay!", "Moo from cowsay!"),
    )
    .unwrap();
    let out = ok(nur(&env, d, &["deploy"]));
    let cowsay = out.lines().find(|l| l.starts_with("cowsay ")).unwrap();
    assert!(
        cowsay.contains(" updated ") && cowsay.contains(" uploaded "),
        "{out}"
    );
    assert_eq!(out.matches(" unchanged ").count(), 2, "{out}");
    assert!(out.contains("1 changed, 1 uploaded"), "{out}");
    let after = generations(&ns).await;
    assert_eq!(after["hello-world"], before["hello-world"]);
    assert_eq!(after["echo"], before["echo"]);
    assert!(
        after["cowsay"] > before["cowsay"],
        "{before:?} -> {after:?}"
    );
    // One more module and its native code.
    assert_eq!(objects(&env, &prefix).await.len(), 8);
    let answer = ok(nur(&env, d, &["call", "cowsay", "--http", "GET /moo"]));
    assert!(answer.ends_with("Moo from cowsay!\n"), "{answer}");
    // Its status names the rollout to the new digest.
    let short = cowsay.split_whitespace().nth(2).unwrap();
    assert!(short.starts_with("sha256:"), "{cowsay}");
    let status = ok(nur(&env, d, &["status", "cowsay"]));
    assert!(
        status
            .lines()
            .any(|l| l.contains(" ModuleRollout ") && l.contains(&format!("rolling to {short}"))),
        "no rollout to {short} in:\n{status}"
    );

    // ls and status say what runs.
    let ls = ok(nur(&env, d, &["ls"]));
    assert!(ls.starts_with("NAME "), "{ls}");
    for label in ["cowsay", "echo", "hello-world"] {
        let line = ls.lines().find(|l| l.starts_with(label)).unwrap();
        assert!(line.contains(" True "), "{ls}");
    }
    assert!(ls.contains(" 2/2 "), "echo's pods: {ls}");
    let status = ok(nur(&env, d, &["status", "cowsay"]));
    for want in [
        "Nurfile:   🐄 cowsay",
        "Digest:    sha256:",
        "Ready        True",
        "ModuleValid  True",
        " Running ",
    ] {
        assert!(status.contains(want), "no {want:?} in:\n{status}");
    }

    // A function that does not become Ready: the deploy fails and says why.
    let nurfile = std::fs::read_to_string(d.join("nurfile.yaml")).unwrap();
    std::fs::write(
        d.join("broken.yaml"),
        nurfile.replacen(
            "credentialsSecret: object-store",
            "credentialsSecret: missing",
            1,
        ),
    )
    .unwrap();
    let err = failed(nur(
        &env,
        d,
        &["deploy", "-f", "broken.yaml", "hello-world"],
    ));
    for want in [
        "hello-world: not Ready: CredentialsSecretNotFound",
        "Conditions:",
        "Secret ",
        "/missing named by spec.module.credentialsSecret does not exist",
        "Events:",
        "Pods:",
    ] {
        assert!(err.contains(want), "no {want:?} in:\n{err}");
    }
    // Store credentials the store refuses.
    let mut wrong = Command::new(binary("nur"));
    wrong
        .args(["deploy", "echo"])
        .current_dir(d)
        .env_remove("CARGO_TARGET_DIR")
        .env("KUBECONFIG", env.kubeconfig())
        .envs(store::aws(&env))
        .env("AWS_SECRET_ACCESS_KEY", "wrong");
    let err = failed(wrong.output().unwrap());
    assert!(err.contains("echo: cannot upload to the store"), "{err}");
    assert!(err.contains("access denied"), "{err}");
    assert!(
        err.contains("check that the credentials in the environment may read and write there"),
        "{err}"
    );

    // rm: the module stays unless --purge.
    let echo_digest = nur_e2e::realnode::nurfunctions(&ns)
        .await
        .get("echo")
        .await
        .unwrap()
        .data["status"]["module"]["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_string();
    let out = ok(nur(&env, d, &["rm", "echo", "--purge"]));
    assert!(out.contains("deleted echo and its module s3://"), "{out}");
    let out = ok(nur(&env, d, &["rm", "hello-world"]));
    assert!(
        out.contains("deleted hello-world; its module stays at s3://"),
        "{out}"
    );
    // echo's module and its native code went with --purge.
    let left = objects(&env, &prefix).await;
    assert_eq!(left.len(), 6, "{left:?}");
    assert!(!left.iter().any(|k| k.contains(&echo_digest)), "{left:?}");
    let err = failed(nur(&env, d, &["status", "echo"]));
    assert!(err.contains("no function \"echo\" in namespace"), "{err}");
    let ls = ok(nur(&env, d, &["ls"]));
    assert!(!ls.contains("echo"), "{ls}");
}

#[tokio::test]
async fn nur_on_a_cluster_without_nur_says_to_install_the_chart() {
    let env = testenv!();
    let bare = env.bare_api_server().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    for args in [&["ls"][..], &["status", "x"]] {
        let mut cmd = Command::new(binary("nur"));
        cmd.args(args)
            .current_dir(dir.path())
            .env("KUBECONFIG", &bare.kubeconfig);
        let err = failed(cmd.output().unwrap());
        assert!(
            err.contains("has no NurFunction resource (the CRD nurfunctions.nur.dev is not installed): install Nur with `helm install nur charts/nur`"),
            "{err}"
        );
    }
}

#[test]
fn nur_errors_say_what_to_do() {
    let env = testenv!();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(nur(&env, d, &["new", "wat", "hello"]));
    // No store anywhere.
    let err = failed(nur(&env, d, &["deploy"]));
    assert!(
        err.contains("no store to upload modules to: add `store: s3://BUCKET/PREFIX` to the nurfile, or pass --store URL, or set NUR_STORE"),
        "{err}"
    );
    // No credentials for it.
    let mut cmd = Command::new(binary("nur"));
    cmd.args(["deploy", "--store", "s3://functions/x"])
        .current_dir(d)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap())
        .env("KUBECONFIG", env.kubeconfig());
    let err = failed(cmd.output().unwrap());
    assert!(
        err.contains("no credentials for the store s3://functions/x: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"),
        "{err}"
    );
    // A function that is not in the nurfile.
    let err = failed(nur(
        &env,
        d,
        &["deploy", "--store", "s3://functions/x", "nope"],
    ));
    assert!(
        err.contains("no function named \"nope\"; the nurfile has: hello"),
        "{err}"
    );
    // No cluster at the kubeconfig's address.
    let dead = d.join("dead.kubeconfig");
    std::fs::write(
        &dead,
        "apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: 'https://127.0.0.1:1'}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
users: [{name: u, user: {token: t}}]
current-context: c
",
    )
    .unwrap();
    for args in [&["ls"][..], &["deploy", "--store", "s3://functions/x"]] {
        let mut cmd = Command::new(binary("nur"));
        cmd.args(args)
            .current_dir(d)
            .envs(store::aws(&env))
            .env("KUBECONFIG", &dead);
        let err = failed(cmd.output().unwrap());
        assert!(
            err.contains("cannot reach the cluster at https://127.0.0.1:1/"),
            "{err}"
        );
        assert!(
            err.contains("check that it is running and that KUBECONFIG"),
            "{err}"
        );
    }
    // No kubeconfig at all.
    let mut cmd = Command::new(binary("nur"));
    cmd.arg("ls")
        .current_dir(d)
        .env("KUBECONFIG", d.join("none"))
        .env_remove("KUBERNETES_SERVICE_HOST");
    let err = failed(cmd.output().unwrap());
    assert!(err.contains("no cluster configured"), "{err}");
    assert!(err.contains("set KUBECONFIG to a kubeconfig"), "{err}");
    // A bad nurfile key names the key and its line.
    std::fs::write(
        d.join("nurfile.yaml"),
        "functions:\n  - name: a\n    directory: /a\n    template: wat\n    replica: 2\n",
    )
    .unwrap();
    let err = failed(nur(&env, d, &["deploy"]));
    assert!(err.contains("unknown field `replica`"), "{err}");
    assert!(err.contains("line 5"), "{err}");
}
