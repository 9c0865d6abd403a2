//! What a tenant who may create NurFunctions and Secrets in one namespace
//! cannot make the operator do (SECURITY.md), against testenv's real API
//! server and MinIO, with the real `nur-operator` binary and real sockets.
//! One file on purpose (over 400 lines): one test per promise of
//! SECURITY.md, all with the same tenant setup.

mod support;
use nur_testkit::examples;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::rbac::v1::Role;
use kube::api::{Patch, PatchParams, PostParams};
use nur_operator::crd::NurFunction;
use nur_testkit::object_store::ObjectStoreExt;
use nur_testkit::{TestEnv, TestNamespace, eventually, testenv};

use support::*;

/// A TCP server on a free port that counts connections and never answers.
fn silent_server() -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(AtomicUsize::new(0));
    let count = seen.clone();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for socket in listener.incoming().flatten() {
            count.fetch_add(1, Ordering::SeqCst);
            held.push(socket);
        }
    });
    (port, seen)
}

/// The operator's peak resident memory, from /proc.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap()
}

/// The operator's CPU time so far (user + system), from /proc.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat.rsplit_once(") ").unwrap().1.split(' ').collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10)
}

async fn start(env: &TestEnv, prefix: &str, args: &[&str]) -> (TestNamespace, Operator) {
    install_crd(env).await;
    let ns = env.namespace(prefix).await.unwrap();
    let op = Operator::start_with_args(env, &ns, "op", &env.kubeconfig(), &[], args);
    (ns, op)
}

async fn wait_ready_condition(ns: &TestNamespace, name: &str, reason: &str) -> String {
    wait_condition(ns, name, "Ready", |c| c.1 == reason).await.2
}

#[tokio::test]
async fn a_secret_cannot_make_the_operator_send_its_token() {
    let env = testenv!();
    let (ns, _op) = start(&env, "sec-token", &["--allow-local-storage"]).await;
    let url = upload(&env, &ns, "echo.wasm", examples::read("echo.wasm")).await;
    // Where a tenant would want the operator's ServiceAccount token sent.
    let (port, seen) = silent_server();
    let token = std::env::temp_dir().join(format!("{}-token", ns.name()));
    std::fs::write(&token, "the-operators-token").unwrap();
    let mut vars = nur_testkit::store::aws_sorted(&env);
    vars.retain(|(k, _)| k != "AWS_ACCESS_KEY_ID" && k != "AWS_SECRET_ACCESS_KEY");
    vars.push((
        "AWS_CONTAINER_CREDENTIALS_FULL_URI".into(),
        format!("http://127.0.0.1:{port}/creds"),
    ));
    vars.push((
        "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE".into(),
        token.display().to_string(),
    ));
    create_secret(&ns, "hostile", &vars).await;
    let spec = serde_json::json!({ "module": { "url": url, "credentialsSecret": "hostile" } });
    create_function(&ns, "thief", spec).await;

    let (status, _, message) = wait_condition(&ns, "thief", "ModuleValid", |c| {
        c.1 == "CredentialsKeyNotAllowed"
    })
    .await;
    assert_eq!(status, "False");
    assert!(
        message.contains("key AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE is not allowed"),
        "{message}"
    );
    assert_eq!(
        seen.load(Ordering::SeqCst),
        0,
        "the operator called the URI"
    );
    assert!(!has_deployment(&ns, "thief").await);
}

#[tokio::test]
async fn module_urls_cannot_reach_files_or_local_addresses() {
    let env = testenv!();
    // No --allow-local-storage: as the chart runs it.
    let (ns, _op) = start(&env, "sec-urls", &[]).await;
    let (port, seen) = silent_server();
    let cases = [
        (
            "file",
            serde_json::json!({ "url": "/etc/passwd" }),
            "local files are not allowed",
        ),
        (
            "fileurl",
            serde_json::json!({ "url": "file:///etc/passwd" }),
            "local files are not allowed",
        ),
        (
            "loopback",
            serde_json::json!({ "url": format!("http://127.0.0.1:{port}/m.wasm") }),
            "127.0.0.1 is a loopback address",
        ),
        (
            "localhost",
            serde_json::json!({ "url": format!("http://localhost:{port}/m.wasm") }),
            "localhost resolves to a loopback address",
        ),
        (
            "metadata",
            serde_json::json!({ "url": "http://169.254.169.254/latest/meta-data/iam/x.wasm" }),
            "169.254.169.254 is a link-local address",
        ),
        (
            "endpoint",
            serde_json::json!({ "url": "s3://fns/m.wasm", "credentialsSecret": "metadata" }),
            "AWS_ENDPOINT_URL: 169.254.169.254 is a link-local address",
        ),
    ];
    create_secret(
        &ns,
        "metadata",
        &[
            ("AWS_ENDPOINT_URL", "http://169.254.169.254/"),
            ("AWS_ALLOW_HTTP", "true"),
        ],
    )
    .await;
    for (name, module, _) in &cases {
        create_function(&ns, name, serde_json::json!({ "module": module })).await;
    }
    for (name, _, want) in &cases {
        let (status, _, message) =
            wait_condition(&ns, name, "ModuleValid", |c| c.1 == "URLNotAllowed").await;
        assert_eq!(status, "False");
        assert!(message.contains(want), "{name}: {message}");
    }
    assert_eq!(seen.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_zstd_bomb_leaves_the_operator_small() {
    let env = testenv!();
    let (ns, op) = start(&env, "sec-bomb", &["--allow-local-storage"]).await;
    // 1 GiB of zeros, without its size in the frame header: about 33 KB.
    let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), 19).unwrap();
    encoder.include_contentsize(false).unwrap();
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..1024 {
        encoder.write_all(&zeros).unwrap();
    }
    let bomb = encoder.finish().unwrap();
    assert!(bomb.len() < 40_000, "{}", bomb.len());
    let url = upload(&env, &ns, "bomb.wasm.zst", bomb).await;
    create_function(&ns, "bomb", serde_json::json!({ "module": { "url": url } })).await;
    let (status, _, message) =
        wait_condition(&ns, "bomb", "ModuleValid", |c| c.1 == "ModuleTooLarge").await;
    assert_eq!(status, "False");
    assert!(
        message.contains("is more than the 67108864-byte module size limit"),
        "{message}"
    );
    let peak = peak_rss_kib(op.pid());
    eprintln!("operator peak RSS: {peak} KiB");
    assert!(peak < 200 * 1024, "peak RSS {peak} KiB");
}

#[tokio::test]
async fn storage_that_never_answers_holds_no_reconcile_slot() {
    let env = testenv!();
    // A silent store holds a reconcile slot (8 run at once) until the
    // storage timeout (5 s), not the check's whole bound (30 s): the good
    // function waits for one at most that long.
    let (ns, _op) = start(&env, "sec-slow", &["--allow-local-storage"]).await;
    let (port, _) = silent_server();
    let url = upload(&env, &ns, "echo.wasm", examples::read("echo.wasm")).await;
    for i in 0..10 {
        let slow = format!("http://127.0.0.1:{port}/m{i}.wasm");
        create_function(
            &ns,
            &format!("slow{i}"),
            serde_json::json!({ "module": { "url": slow } }),
        )
        .await;
    }
    let started = Instant::now();
    create_function(&ns, "good", serde_json::json!({ "module": { "url": url } })).await;
    wait_condition(&ns, "good", "Ready", |c| c.0 == "True").await;
    let took = started.elapsed();
    eprintln!("good function Ready after {took:?} beside 10 hung ones");
    assert!(took < Duration::from_secs(15), "{took:?}");
    let (status, _, message) =
        wait_condition(&ns, "slow0", "ModuleValid", |c| c.1 == "StorageUnreachable").await;
    assert_eq!(status, "Unknown");
    assert!(message.contains(&format!("127.0.0.1:{port}")), "{message}");
}

#[tokio::test]
async fn risky_spec_fields_need_the_operators_flags() {
    let env = testenv!();
    let (ns, _op) = start(&env, "sec-spec", &["--allow-local-storage"]).await;
    let url = upload(&env, &ns, "echo.wasm", examples::read("echo.wasm")).await;
    let module = serde_json::json!({ "url": url });
    let cases = [
        (
            "image",
            serde_json::json!({ "module": module, "image": "evil/miner:latest" }),
            "--allow-image-override",
        ),
        (
            "balancer",
            serde_json::json!({ "module": module, "service": { "type": "LoadBalancer" } }),
            "spec.service.type LoadBalancer is not allowed",
        ),
        (
            "dns",
            serde_json::json!({ "module": module, "service": { "annotations": {
                "external-dns.alpha.kubernetes.io/hostname": "bank.example.com" } } }),
            "--allow-service-annotations",
        ),
    ];
    for (name, spec, _) in &cases {
        create_function(&ns, name, spec.clone()).await;
    }
    for (name, _, want) in &cases {
        let message = wait_ready_condition(&ns, name, "SpecNotAllowed").await;
        assert!(message.contains(want), "{name}: {message}");
        assert!(!has_deployment(&ns, name).await);
    }
    // A name no Service can have gets a status too.
    let long = "a".repeat(70);
    create_function(&ns, &long, serde_json::json!({ "module": module })).await;
    let message = wait_ready_condition(&ns, &long, "InvalidSpec").await;
    assert!(message.contains("at most 63"), "{message}");
    // A URL past the schema's maxLength is refused by the API server.
    let f: NurFunction = serde_json::from_value(serde_json::json!({
        "apiVersion": "nur.dev/v1alpha1", "kind": "NurFunction",
        "metadata": { "name": "huge" },
        "spec": { "module": { "url": format!("s3://b/{}", "k".repeat(3000)) } },
    }))
    .unwrap();
    let err = ns
        .api::<NurFunction>()
        .create(&PostParams::default(), &f)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("2048"), "{err}");
}

#[tokio::test]
async fn a_cached_check_is_not_shared_across_endpoints() {
    let env = testenv!();
    let (ns, _op) = start(&env, "sec-cache", &["--allow-local-storage"]).await;
    let echo = examples::read("echo.wasm");
    let url = upload(&env, &ns, "echo.wasm", echo).await;
    let store = nur_testkit::store::aws_sorted(&env);
    create_secret(&ns, "minio", &store).await;
    create_function(
        &ns,
        "real",
        serde_json::json!({ "module": { "url": url, "credentialsSecret": "minio" } }),
    )
    .await;
    wait_condition(&ns, "real", "ModuleValid", |c| c.1 == "Checked").await;
    // Another endpoint announces the same object version, and serves other bytes.
    let etag = env
        .object_store()
        .unwrap()
        .head(&nur_testkit::object_store::path::Path::from(
            url.trim_start_matches(&format!("s3://{}/", env.bucket())),
        ))
        .await
        .unwrap()
        .e_tag
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for mut socket in listener.incoming().flatten() {
            let mut head = [0; 8192];
            let n = socket.read(&mut head).unwrap_or(0);
            let body = b"not a module at all";
            let answer = format!(
                "HTTP/1.1 200 OK\r\netag: {etag}\r\ncontent-length: {}\r\n\
                 last-modified: Tue, 01 Dec 2026 12:00:00 GMT\r\nconnection: close\r\n\r\n",
                body.len()
            );
            let _ = socket.write_all(answer.as_bytes());
            if !head[..n].starts_with(b"HEAD") {
                let _ = socket.write_all(body);
            }
        }
    });
    let other: Vec<(String, String)> = store
        .into_iter()
        .map(|(k, v)| {
            if k == "AWS_ENDPOINT_URL" {
                (k, endpoint.clone())
            } else {
                (k, v)
            }
        })
        .collect();
    create_secret(&ns, "other", &other).await;
    create_function(
        &ns,
        "impostor",
        serde_json::json!({ "module": { "url": url, "credentialsSecret": "other" } }),
    )
    .await;
    let (status, reason, _) =
        wait_condition(&ns, "impostor", "ModuleValid", |c| c.0 != "Unknown").await;
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "InvalidModule")
    );
}

#[tokio::test]
async fn an_unreadable_secret_is_named_and_backed_off() {
    let env = testenv!();
    install_crd(&env).await;
    let ns = env.namespace("sec-rbac").await.unwrap();
    // Everything the operator needs but reading Secrets.
    let role: Role = serde_json::from_value(serde_json::json!({
        "metadata": { "name": "no-secrets" },
        "rules": [
            { "apiGroups": ["nur.dev"], "resources": ["nurfunctions"], "verbs": ["list", "watch"] },
            { "apiGroups": ["nur.dev"], "resources": ["nurfunctions/status"], "verbs": ["patch"] },
            { "apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["list", "watch", "create", "patch"] },
            { "apiGroups": [""], "resources": ["services"], "verbs": ["list", "watch", "create", "patch"] },
            { "apiGroups": ["autoscaling"], "resources": ["horizontalpodautoscalers"], "verbs": ["get", "list", "watch"] },
            { "apiGroups": ["policy"], "resources": ["poddisruptionbudgets"], "verbs": ["get", "list", "watch"] },
            { "apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"] },
            { "apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "create", "update"] },
        ]
    }))
    .unwrap();
    ns.api::<Role>()
        .create(&PostParams::default(), &role)
        .await
        .unwrap();
    let path = service_account_kubeconfig(&env, &ns, "op", "Role", "no-secrets").await;
    let op = Operator::start_with_args(&env, &ns, "op", &path, &[], &["--allow-local-storage"]);
    let url = upload(&env, &ns, "echo.wasm", examples::read("echo.wasm")).await;
    create_secret(&ns, "store", &nur_testkit::store::aws_sorted(&env)).await;
    create_function(
        &ns,
        "locked",
        serde_json::json!({ "module": { "url": url, "credentialsSecret": "store" } }),
    )
    .await;
    let (status, _, message) = wait_condition(&ns, "locked", "ModuleValid", |c| {
        c.1 == "CredentialsUnreadable"
    })
    .await;
    assert_eq!(status, "Unknown");
    assert!(
        message.contains("forbidden") || message.contains("403"),
        "{message}"
    );
    // Backed off (5 s, 10 s, ...), not retried every 5 s forever.
    let first = metric(&op, "nur_operator_reconciles_total");
    tokio::time::sleep(Duration::from_secs(16)).await;
    let more = metric(&op, "nur_operator_reconciles_total") - first;
    assert!(more <= 3.0, "{more} reconciles in 16 s");
}

#[tokio::test]
async fn objects_without_nurs_labels_do_not_trigger_reconciles() {
    let env = testenv!();
    let (ns, op) = start(
        &env,
        "sec-watch",
        &["--allow-local-storage", "--recheck-seconds", "600"],
    )
    .await;
    let url = upload(&env, &ns, "echo.wasm", examples::read("echo.wasm")).await;
    create_function(&ns, "fn", serde_json::json!({ "module": { "url": url } })).await;
    wait_condition(&ns, "fn", "Ready", |c| c.0 == "True").await;
    // At rest: no reconcile for 2 s (the Deployment's own status changes
    // after Ready reconcile it).
    let last = std::cell::Cell::new(metric(&op, "nur_operator_reconciles_total"));
    let (last_seen, operator) = (&last, &op);
    nur_testkit::eventually("the function at rest", T, move || async move {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let now = metric(operator, "nur_operator_reconciles_total");
        (last_seen.replace(now) == now).then_some(())
    })
    .await
    .unwrap();
    let before = last.get();
    // Deployments someone else made, pointing at the function, unlabelled.
    let uid = ns
        .api::<NurFunction>()
        .get("fn")
        .await
        .unwrap()
        .metadata
        .uid
        .unwrap();
    for i in 0..5 {
        let d: Deployment = serde_json::from_value(serde_json::json!({
            "metadata": { "name": format!("other{i}"), "ownerReferences": [{
                "apiVersion": "nur.dev/v1alpha1", "kind": "NurFunction", "name": "fn",
                "uid": uid, "controller": true }] },
            "spec": { "replicas": 0, "selector": { "matchLabels": { "x": "y" } },
                "template": { "metadata": { "labels": { "x": "y" } },
                    "spec": { "containers": [{ "name": "c", "image": "none" }] } } }
        }))
        .unwrap();
        ns.api::<Deployment>()
            .create(&PostParams::default(), &d)
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = metric(&op, "nur_operator_reconciles_total");
    assert_eq!(after, before, "unlabelled Deployments triggered reconciles");
}

#[tokio::test]
async fn the_admin_server_cuts_silent_clients_and_does_not_spin() {
    let env = testenv!();
    let (_ns, op) = start(&env, "sec-admin", &["--allow-local-storage"]).await;
    let port = eventually("operator admin port", T, || async {
        let (code, _) = op.get("/healthz")?;
        (code == 200).then_some(op.health_port())
    })
    .await
    .unwrap();
    // More silent clients than the server serves at once.
    let silent: Vec<std::net::TcpStream> = (0..100)
        .map(|_| std::net::TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect();
    let started = Instant::now();
    let healthz = eventually(
        "/healthz beside silent clients",
        Duration::from_secs(15),
        || async { op.get("/healthz").filter(|(code, _)| *code == 200) },
    )
    .await;
    assert!(healthz.is_ok(), "no answer");
    eprintln!(
        "/healthz answered after {:?} beside 100 silent clients",
        started.elapsed()
    );
    // The silent ones are closed at the header timeout.
    for mut s in silent.into_iter().take(10) {
        s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        match s.read(&mut [0; 64]) {
            Ok(0) => {}
            other => panic!("a silent client was not closed: {other:?}"),
        }
    }
    // Out of file descriptors, accept fails: the server must wait, not spin.
    let pid = op.pid().to_string();
    let status = std::process::Command::new("prlimit")
        .args(["--pid", &pid, "--nofile=48:48"])
        .status()
        .unwrap();
    assert!(status.success());
    let held: Vec<std::net::TcpStream> = (0..80)
        .filter_map(|_| std::net::TcpStream::connect(("127.0.0.1", port)).ok())
        .collect();
    let before = cpu_time(op.pid());
    tokio::time::sleep(Duration::from_secs(3)).await;
    let used = cpu_time(op.pid()) - before;
    drop(held);
    eprintln!("operator CPU over 3 s out of descriptors: {used:?}");
    assert!(used < Duration::from_millis(600), "{used:?}");
}

#[tokio::test]
async fn a_lease_renewed_on_a_slow_clock_is_not_taken() {
    let env = testenv!();
    install_crd(&env).await;
    let ns = env.namespace("sec-lease").await.unwrap();
    let leases = ns.api::<Lease>();
    // Another replica holds the Lease and renews it every 500 ms, but its
    // clock is an hour behind: every renewTime looks expired here.
    let old = move |n: i64| {
        k8s_openapi::jiff::Timestamp::now() - k8s_openapi::jiff::SignedDuration::from_secs(3600 - n)
    };
    let lease = move |n: i64| {
        serde_json::json!({
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": { "name": "nur-operator" },
            "spec": { "holderIdentity": "other", "leaseDurationSeconds": 3,
                      "renewTime": k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(old(n)) }
        })
    };
    let pp = PatchParams::apply("other-replica").force();
    leases
        .patch("nur-operator", &pp, &Patch::Apply(lease(0)))
        .await
        .unwrap();
    let renewing = {
        let leases = leases.clone();
        tokio::spawn(async move {
            for n in 1.. {
                tokio::time::sleep(Duration::from_millis(500)).await;
                let pp = PatchParams::apply("other-replica").force();
                if leases
                    .patch("nur-operator", &pp, &Patch::Apply(lease(n)))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        })
    };
    let op = Operator::start(&env, &ns);
    tokio::time::sleep(Duration::from_secs(6)).await;
    let holder = leases
        .get("nur-operator")
        .await
        .unwrap()
        .spec
        .unwrap()
        .holder_identity;
    assert_eq!(
        holder.as_deref(),
        Some("other"),
        "took a Lease being renewed"
    );
    assert_eq!(metric(&op, "nur_operator_leader"), 0.0);
    // The other replica stops: the Lease is taken once it has not changed
    // for its duration.
    renewing.abort();
    let took = eventually("the Lease taken over", T, || async {
        let l = leases.get("nur-operator").await.ok()?;
        (l.spec?.holder_identity.as_deref() == Some("op")).then_some(())
    })
    .await;
    assert!(took.is_ok());
}

#[tokio::test]
async fn a_leader_cut_off_steps_down_before_another_takes_over() {
    let env = testenv!();
    install_crd(&env).await;
    let ns = env.namespace("sec-split").await.unwrap();
    // Leader A reaches the API server through a proxy the test cuts.
    let kubeconfig = std::fs::read_to_string(env.kubeconfig()).unwrap();
    let server = kubeconfig
        .lines()
        .find_map(|l| l.trim().strip_prefix("server: https://"))
        .unwrap()
        .to_string();
    let api = nur_testkit::store::Proxy::start(&server);
    let through = std::env::temp_dir().join(format!("{}-kubeconfig", ns.name()));
    let proxied = api.url().replace("http://", "https://");
    std::fs::write(
        &through,
        kubeconfig.replace(&format!("https://{server}"), &proxied),
    )
    .unwrap();
    let local = ["--allow-local-storage"];
    let mut a = Operator::start_with_args(&env, &ns, "a", &through, &[], &local);
    eventually("a leads", T, || async {
        (metric(&a, "nur_operator_leader") == 1.0).then_some(())
    })
    .await
    .unwrap();
    let b = Operator::start_with_args(&env, &ns, "b", &env.kubeconfig(), &[], &local);
    eventually("b is up", T, || async { b.get("/healthz").map(|_| ()) })
        .await
        .unwrap();
    api.set_down(true);
    let cut = Instant::now();
    let (mut a_exited, mut b_leads) = (None, None);
    while b_leads.is_none() && cut.elapsed() < T {
        if a_exited.is_none() && a.exited() {
            a_exited = Some(cut.elapsed());
        }
        if metric(&b, "nur_operator_leader") == 1.0 {
            b_leads = Some(cut.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!("cut off: a exited after {a_exited:?}, b leads after {b_leads:?}");
    let (a_exited, b_leads) = (a_exited.expect("a stepped down"), b_leads.expect("b leads"));
    assert!(
        a_exited < b_leads,
        "a exited {a_exited:?}, b led {b_leads:?}"
    );
    assert!(a.log().contains("leadership lost"), "{}", a.log());
}
