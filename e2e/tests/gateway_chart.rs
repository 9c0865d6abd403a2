//! The chart's nur-gateway on testenv's real node, as a user installs it:
//! `helm install` with the gateway on (the default), its two pods real
//! containers of the imported nur-gateway image, Ready through their
//! probes, running as the chart's non-root user with nothing but the
//! chart's Role; a function with an HTTP route answering through the
//! ClusterIP of the `<release>-gateway` Service, port 80, and through each
//! gateway pod; a function scaled to zero woken by its next client through
//! that Service (the gateway writes its wake request on the NurFunction
//! with the chart's RBAC only). With the chart's default
//! `operator.compileArtifacts`, each module is compiled once by a Job into
//! an artifact beside it in MinIO, and the pods, the woken one too, load
//! that native code instead of compiling.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{ListParams, LogParams};
use nur_e2e::realnode::{
    T, deploy, install_on_real_node_with, nurfunctions, pod_ready, ready_reason, release_name,
    wait_ready,
};
use nur_testkit::net::{http_get, read_to_close};
use nur_testkit::{TestEnv, TestNamespace, eventually, examples, testenv};
use object_store::ObjectStoreExt;

/// The uids (real, effective, saved, filesystem) of every process on this
/// machine that runs `argv0` with the argument `arg` (a container's
/// process, seen from the host).
fn uids_of(argv0: &str, arg: &str) -> Vec<Vec<u32>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let argv: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        if argv.first() != Some(&argv0.as_bytes()) || !argv.contains(&arg.as_bytes()) {
            continue;
        }
        let Ok(status) = std::fs::read_to_string(entry.path().join("status")) else {
            continue;
        };
        let uids = status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .unwrap()
            .split_whitespace()
            .map(|u| u.parse().unwrap())
            .collect();
        out.push(uids);
    }
    out
}

/// `GET path` at `addr` from a blocking thread: the whole answer, if any.
async fn get(addr: SocketAddr, path: &'static str) -> Option<String> {
    tokio::task::spawn_blocking(move || http_get(addr, path))
        .await
        .unwrap()
}

/// Sends `request` to `addr` from a blocking thread and reads the answer
/// until the server closes (at most `wait`), with how long that took.
async fn send(addr: SocketAddr, request: &'static [u8], wait: Duration) -> (String, Duration) {
    tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(wait)).unwrap();
        s.write_all(request).unwrap();
        let answer = read_to_close(&mut s).unwrap();
        (
            String::from_utf8_lossy(&answer).into_owned(),
            started.elapsed(),
        )
    })
    .await
    .unwrap()
}

/// The log of every pod of function `name` that is serving.
async fn serving_lines(ns: &TestNamespace, name: &str) -> Vec<String> {
    let pods = ns.api::<Pod>();
    let lp = ListParams::default().labels(&format!(
        "app.kubernetes.io/name=nur-function,app.kubernetes.io/instance={name}"
    ));
    let mut lines = Vec::new();
    for p in pods.list(&lp).await.unwrap().items {
        let log = pods
            .logs(&p.metadata.name.unwrap(), &LogParams::default())
            .await
            .unwrap();
        lines.extend(
            log.lines()
                .filter(|l| l.contains("serving"))
                .map(String::from),
        );
    }
    lines
}

/// Function `name` (module digest `sha256`) has its native code compiled
/// once: its compile Job succeeded, the artifact it stored is in MinIO with
/// the sha256 the status names, the Deployment pins that artifact and every
/// serving pod loaded it instead of compiling.
async fn assert_compiled_once(env: &TestEnv, ns: &TestNamespace, name: &str, sha256: &str) {
    let functions = nurfunctions(ns).await;
    let f = eventually(&format!("{name} NativeCode=True"), T, || {
        let functions = functions.clone();
        async move {
            let f = functions.get(name).await.ok()?;
            f.data["status"]["conditions"]
                .as_array()?
                .iter()
                .any(|c| {
                    c["type"] == "NativeCode" && c["status"] == "True" && c["reason"] == "Compiled"
                })
                .then_some(f)
        }
    })
    .await
    .unwrap();
    let artifact = &f.data["status"]["module"]["artifact"];
    assert_eq!(
        artifact["moduleDigest"],
        format!("sha256:{sha256}"),
        "{artifact}"
    );
    let url = artifact["url"].as_str().unwrap();
    let pinned = artifact["sha256"].as_str().unwrap();
    assert!(
        url.ends_with(&format!(".wasm.{}.artifact", &sha256[..16])),
        "{url}"
    );
    assert_eq!(pinned.len(), 64, "{artifact}");

    let job = ns
        .api::<Job>()
        .get(&format!("{name}-compile-{}", &sha256[..10]))
        .await
        .unwrap();
    assert_eq!(job.status.unwrap().succeeded, Some(1));

    let prefix = format!("s3://{}/", env.bucket());
    let key = url.strip_prefix(&prefix).unwrap();
    let stored = env
        .object_store()
        .unwrap()
        .get(&object_store::path::Path::from(key))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(nur_module::sha256_hex(&stored), pinned, "{url}");

    let deployment = ns.api::<Deployment>().get(name).await.unwrap();
    let args = deployment.spec.unwrap().template.spec.unwrap().containers[0]
        .args
        .clone()
        .unwrap();
    let pin = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .map(|i| args[i + 1].as_str())
    };
    assert_eq!(pin("--artifact"), Some(url), "{args:?}");
    assert_eq!(pin("--artifact-sha256"), Some(pinned), "{args:?}");

    let lines = serving_lines(ns, name).await;
    assert!(!lines.is_empty(), "no pod of {name} serving");
    for l in &lines {
        assert!(l.contains("native_code") && l.contains("artifact"), "{l}");
    }
}

#[tokio::test]
async fn the_charts_gateway_routes_and_wakes_functions_through_its_cluster_ip() {
    let env = testenv!();
    // The chart's defaults for the gateway; the operator and the gateway
    // watch this namespace only (a Role here, as operator.watchNamespace).
    // A wake on a loaded machine may take longer than the default 30 s.
    let ns =
        install_on_real_node_with(&env, "gwchart", &["gateway.extraArgs={--wake-timeout=90s}"])
            .await;
    let release = release_name(&ns);
    let gateway = format!("{release}-gateway");

    // Two gateway pods (helm --wait saw them Ready through /readyz), real
    // containers on the real node, none restarted, running as user 65532.
    let lp = ListParams::default().labels(&format!(
        "app.kubernetes.io/instance={release},app.kubernetes.io/component=gateway"
    ));
    let pods = ns.api::<Pod>().list(&lp).await.unwrap().items;
    assert_eq!(pods.len(), 2, "{pods:?}");
    for p in &pods {
        assert!(pod_ready(p), "{:?}", p.status);
        let spec = p.spec.as_ref().unwrap();
        assert_eq!(spec.node_name.as_deref(), env.var("NUR_TESTENV_NODE"));
        assert_eq!(spec.service_account_name.as_deref(), Some(gateway.as_str()));
        let status = &p
            .status
            .as_ref()
            .unwrap()
            .container_statuses
            .as_ref()
            .unwrap()[0];
        assert_eq!(status.restart_count, 0, "{status:?}");
        assert!(
            status.image.contains(&format!(
                "ghcr.io/nur-dev/nur-gateway:{}",
                nur_e2e::chart_app_version()
            )),
            "{status:?}"
        );
    }
    let namespace_arg = format!("--namespace={}", ns.name());
    let uids = uids_of("/nur-gateway", &namespace_arg);
    assert_eq!(uids, vec![vec![65532; 4]; 2], "gateway processes' uids");

    // A function with an HTTP route.
    let hello = deploy(
        &env,
        &ns,
        "hello",
        examples::read("http-hello.wasm"),
        "  routes: {http: [{pathPrefix: /hello}]}\n",
    )
    .await;
    wait_ready(&ns, "hello", &hello, 1).await;
    assert_compiled_once(&env, &ns, "hello", &hello).await;
    let functions = nurfunctions(&ns).await;
    eventually("hello Routed", T, || {
        let functions = functions.clone();
        async move {
            let f = functions.get("hello").await.ok()?;
            f.data["status"]["conditions"]
                .as_array()?
                .iter()
                .any(|c| c["type"] == "Routed" && c["status"] == "True")
                .then_some(())
        }
    })
    .await
    .unwrap();

    // Through the gateway Service's ClusterIP, port `http` (80). Until
    // kube-proxy has a rule for the new ClusterIP a connection to it leaves
    // the machine, and whatever is out there may answer: only the
    // function's own answer counts.
    let svc = ns.api::<Service>().get(&gateway).await.unwrap();
    let spec = svc.spec.unwrap();
    assert_eq!(spec.type_.as_deref(), Some("ClusterIP"));
    let http = spec
        .ports
        .unwrap()
        .into_iter()
        .find(|p| p.name.as_deref() == Some("http"))
        .unwrap();
    assert_eq!(http.port, 80);
    let addr: SocketAddr = format!("{}:{}", spec.cluster_ip.unwrap(), http.port)
        .parse()
        .unwrap();
    let answer = eventually(&format!("hello through {addr}"), T, || async move {
        get(addr, "/hello/x")
            .await
            .filter(|a| a.ends_with("\r\n\r\nHello, /hello/x!\n"))
    })
    .await
    .unwrap();
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");

    // Each gateway pod routes it (port 8000 of the pod), and counts it in
    // its own /metrics (port 9091).
    for p in &pods {
        let ip = p.status.as_ref().unwrap().pod_ip.clone().unwrap();
        let addr: SocketAddr = format!("{ip}:8000").parse().unwrap();
        let answer = eventually(&format!("hello through pod {ip}"), T, || async move {
            get(addr, "/hello/pod")
                .await
                .filter(|a| a.starts_with("HTTP/1.1 200 OK\r\n"))
        })
        .await
        .unwrap();
        assert!(answer.ends_with("\r\n\r\nHello, /hello/pod!\n"), "{answer}");
        let metrics = get(format!("{ip}:9091").parse().unwrap(), "/metrics")
            .await
            .unwrap();
        let want = format!(
            "nur_gateway_connections_total{{function=\"{}/hello\"}}",
            ns.name()
        );
        assert!(metrics.contains(&want), "no {want} in:\n{metrics}");
    }

    // A function scaled to zero: its next client, through the same
    // ClusterIP, is held until the gateway (as its own ServiceAccount) has
    // had it woken, then answered.
    let napper = deploy(
        &env,
        &ns,
        "napper",
        examples::read("echo.wasm"),
        "  scaleToZero: {idleAfter: 6s}\n  routes: {http: [{host: nap.example}]}\n",
    )
    .await;
    wait_ready(&ns, "napper", &napper, 1).await;
    eventually("napper scaled to zero", T, || async {
        ready_reason(&ns, "napper")
            .await
            .filter(|(r, n)| r == "ScaledToZero" && *n == 0)
    })
    .await
    .unwrap();
    let request = b"POST / HTTP/1.1\r\nHost: nap.example\r\nConnection: close\r\nContent-Length: 4\r\n\r\nwake";
    let (answer, took) = send(addr, request, Duration::from_secs(120)).await;
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(answer.ends_with("wake"), "{answer}");
    eprintln!("napper woken and answered through {addr} in {took:?}");
    // The woken pod loaded the artifact compiled before it slept.
    assert_compiled_once(&env, &ns, "napper", &napper).await;
}
