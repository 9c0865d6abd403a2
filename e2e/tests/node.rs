//! Nur on testenv's real node (kubelet, containerd, runc, CNI bridge,
//! kube-proxy): the chart installed with the real helm runs the operator
//! image as a pod, the operator rolls out worker pods that are real
//! containers of the worker image, and clients on this host reach them
//! through their Service's ClusterIP, as users of a cluster do.
//!
//! - the install path: operator pod Ready through its probes as user
//!   65532, two echo pods Ready through /readyz, the echo answer through the
//!   ClusterIP, the function's `nur_log` line in `kubectl logs`; then a new
//!   upload rolled out under constant load with no failed connection and
//!   every drained pod exiting 0;
//! - the HorizontalPodAutoscaler scaling a CPU-bound function up on the
//!   CPU its pods really use, and down when the load stops;
//! - a worker killed by the kernel for its container's memory limit,
//!   restarted by the kubelet, while the Service keeps serving.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{ListParams, WatchEvent, WatchParams};
use nur_e2e::realnode::{
    Load, T, apply, deploy, example_manifest, install_on_real_node as install, pod_ready,
    wait_ready,
};
use nur_testkit::net::exchange;
use nur_testkit::{TestNamespace, eventually, examples, store, testenv};

/// The ClusterIP and port of Service `name`, once kube-proxy routes it to
/// the function: `probe` gets an answer ending with `expect`. (A bare
/// connect proves nothing: while kube-proxy has no rule yet for a new
/// ClusterIP, a connection to it leaves the machine, and whatever is out
/// there may accept it.)
async fn cluster_ip(
    ns: &TestNamespace,
    name: &str,
    probe: &'static [u8],
    expect: &'static [u8],
) -> SocketAddr {
    let svc = ns.api::<Service>().get(name).await.unwrap();
    let spec = svc.spec.unwrap();
    let ip = spec.cluster_ip.unwrap();
    let port = spec.ports.unwrap()[0].port;
    let addr: SocketAddr = format!("{ip}:{port}").parse().unwrap();
    eventually(
        &format!("Service {name} routed at {addr}"),
        T,
        || async move {
            let reply = exchange(addr, probe).ok()?;
            reply.ends_with(expect).then_some(())
        },
    )
    .await
    .unwrap();
    addr
}

type Exits = Arc<std::sync::Mutex<BTreeMap<String, i32>>>;

/// Exit codes of the containers of function `name` that terminate from now
/// on, by pod, as a watch sees them (a drained pod's last status before it
/// is deleted).
fn watch_exits(ns: &TestNamespace, name: &str) -> (tokio::task::JoinHandle<()>, Exits) {
    let pods = ns.api::<Pod>();
    let exits = Exits::default();
    let seen = exits.clone();
    let wp = WatchParams::default().labels(&format!("app.kubernetes.io/instance={name}"));
    let task = tokio::spawn(async move {
        let mut stream = pods.watch(&wp, "0").await.unwrap().boxed();
        while let Some(Ok(ev)) = stream.next().await {
            let (WatchEvent::Modified(p) | WatchEvent::Deleted(p)) = ev else {
                continue;
            };
            for cs in p
                .status
                .iter()
                .flat_map(|s| s.container_statuses.iter().flatten())
            {
                if let Some(t) = cs.state.as_ref().and_then(|s| s.terminated.as_ref()) {
                    seen.lock()
                        .unwrap()
                        .insert(p.metadata.name.clone().unwrap(), t.exit_code);
                }
            }
        }
    });
    (task, exits)
}

/// The uid of the process on this machine whose argv[0] is `argv0` (a
/// container's process, seen from the host), if one runs.
fn process_uid(argv0: &str) -> Option<u32> {
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        if cmdline.split(|b| *b == 0).next() == Some(argv0.as_bytes()) {
            let status = std::fs::read_to_string(entry.path().join("status")).ok()?;
            let uid = status.lines().find(|l| l.starts_with("Uid:"))?;
            return uid.split_whitespace().nth(1)?.parse().ok();
        }
    }
    None
}

#[tokio::test]
async fn helm_install_serves_echo_through_its_cluster_ip_and_rolls_out_under_load() {
    let env = testenv!();
    let ns = install(&env, "node-echo").await;

    // The operator is a real container of the chart's image, Ready through
    // its real probes, running as the chart's non-root user.
    let op = ns
        .api::<Pod>()
        .list(&ListParams::default().labels("app.kubernetes.io/component=operator"))
        .await
        .unwrap()
        .items;
    assert_eq!(op.len(), 1);
    assert!(pod_ready(&op[0]), "{:?}", op[0].status);
    assert_eq!(
        op[0].spec.as_ref().unwrap().node_name.as_deref(),
        env.var("NUR_TESTENV_NODE")
    );
    assert_eq!(process_uid("/nur-operator"), Some(65532));

    // Upload echo.wasm, apply the example manifest as it is (port 8080).
    let prefix = format!("node/{}", ns.name());
    let echo = examples::read("echo.wasm");
    let echo_digest = nur_module::sha256_hex(&echo);
    store::put(&env, &format!("{prefix}/echo.wasm"), echo).await;
    let out = apply(&env, &ns, &example_manifest(&env, "echo.yaml", &prefix));
    assert!(out.contains("nurfunction.nur.dev/echo created"), "{out}");
    wait_ready(&ns, "echo", &echo_digest, 2).await;

    // A client on this host, through the Service's ClusterIP.
    let addr = cluster_ip(&ns, "echo", b"routed?", b"routed?").await;
    let reply = exchange(addr, b"hello, nur").unwrap();
    let reply = String::from_utf8_lossy(&reply);
    assert_eq!(
        reply,
        "HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nhello, nur"
    );
    // The function's nur_log line, in the pods' logs (one of the two
    // served it).
    let logs = eventually("the echo log line in kubectl logs", T, || {
        let mut logs = env.kubectl();
        logs.args([
            "logs",
            "-n",
            ns.name(),
            "-l",
            "app.kubernetes.io/instance=echo",
        ]);
        async move {
            let out = logs.output().ok()?;
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            text.contains("echo: 10 bytes").then_some(text)
        }
    })
    .await
    .unwrap();
    assert!(logs.contains("echo: 10 bytes"), "{logs}");

    // A new upload under constant load: the operator rolls the Deployment,
    // kube-proxy moves the Service to the new pods, the old pods drain.
    let (watch, exits) = watch_exits(&ns, "echo");
    // A request both modules answer with 200 (echo: any chunk; http-hello:
    // an HTTP request).
    let load = Load::start(addr, b"GET /load HTTP/1.1\r\nHost: echo\r\n\r\n", 4);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let hello = examples::read("http-hello.wasm");
    let hello_digest = nur_module::sha256_hex(&hello);
    store::put(&env, &format!("{prefix}/echo.wasm"), hello).await;
    let started = Instant::now();
    wait_ready(&ns, "echo", &hello_digest, 2).await;
    let rolled = started.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (answered, failures) = load.finish();
    assert!(
        failures.is_empty(),
        "{} of {} connections failed during the rollout: {:?}",
        failures.len(),
        answered + failures.len() as u64,
        &failures[..failures.len().min(10)]
    );
    assert!(answered > 50, "only {answered} connections in the rollout");
    let reply = String::from_utf8_lossy(&exchange(addr, b"GET /rolled HTTP/1.1\r\n\r\n").unwrap())
        .into_owned();
    assert!(reply.ends_with("Hello, /rolled!\n"), "{reply}");
    // Both old pods exited 0 after draining.
    let drained = eventually("both old pods' exit codes", T, || {
        let e = exits.lock().unwrap().clone();
        async move { (e.len() >= 2).then_some(e) }
    })
    .await
    .unwrap();
    watch.abort();
    assert!(drained.values().all(|c| *c == 0), "{drained:?}");
    eprintln!(
        "rollout under load: {answered} connections, 0 failed, rolled in {rolled:?}, exits {drained:?}"
    );
}

/// A function that spends about `iterations` loop turns of CPU on every
/// connection, then answers 200.
fn burn_module(iterations: u32) -> Vec<u8> {
    wat::parse_str(format!(
        r#"(module
          (import "nur" "nur_send" (func $send (param i32 i32)))
          (import "nur" "nur_end" (func $end))
          (memory (export "memory") 1)
          (data (i32.const 0) "HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nburnt")
          (func (export "alloc") (param i32) (result i32) i32.const 1024)
          (func (export "poll_stream") (param i32 i32)
            (local $i i32)
            (loop $l
              (local.set $i (i32.add (local.get $i) (i32.const 1)))
              (br_if $l (i32.lt_u (local.get $i) (i32.const {iterations}))))
            (call $send (i32.const 0) (i32.const 43))
            (call $end)))"#
    ))
    .unwrap()
}

#[tokio::test]
async fn the_autoscaler_scales_a_busy_function_on_the_cpu_its_pods_use() {
    let env = testenv!();
    let ns = install(&env, "node-hpa").await;
    let digest = deploy(
        &env,
        &ns,
        "burn",
        burn_module(20_000_000),
        "  autoscaling: {minReplicas: 1, maxReplicas: 3, targetCPUUtilizationPercentage: 50}
  resources: {requests: {cpu: 50m, memory: 32Mi}, limits: {memory: 256Mi}}
",
    )
    .await;
    wait_ready(&ns, "burn", &digest, 1).await;
    let hpas = ns.api::<HorizontalPodAutoscaler>();
    let addr = cluster_ip(&ns, "burn", b"x", b"burnt").await;

    let load = Load::start(addr, b"x", 2);
    let up = eventually("the autoscaler at 2 or more replicas", T, || {
        let hpas = hpas.clone();
        async move {
            let h = hpas.get("burn").await.ok()?;
            let st = h.status?;
            (st.desired_replicas >= 2).then_some(st)
        }
    })
    .await
    .unwrap();
    let (answered, failures) = load.finish();
    // What it scaled on: the CPU the kubelet measured, in percent of the
    // 50m request.
    let cpu = up
        .current_metrics
        .iter()
        .flatten()
        .find_map(|m| m.resource.as_ref()?.current.average_utilization)
        .expect("the autoscaler reports CPU utilization");
    assert!(cpu > 50, "scaled at {cpu}% CPU: {up:?}");
    assert!(failures.len() as u64 <= answered / 100, "{failures:?}");
    eprintln!(
        "scaled to {} at {cpu}% of the CPU request",
        up.desired_replicas
    );

    // No load: back to one replica.
    eventually(
        "the autoscaler back at 1 replica",
        Duration::from_secs(180),
        || {
            let hpas = hpas.clone();
            async move {
                let st = hpas.get("burn").await.ok()?.status?;
                (st.desired_replicas == 1 && st.current_replicas == Some(1)).then_some(())
            }
        },
    )
    .await
    .unwrap();
}

/// A function that answers "ok", or, given "grow", grows its memory by
/// `pages` pages of 64 KiB and writes every one of them.
fn grow_module(pages: u32) -> Vec<u8> {
    wat::parse_str(format!(
        r#"(module
          (import "nur" "nur_send" (func $send (param i32 i32)))
          (import "nur" "nur_end" (func $end))
          (memory (export "memory") 1)
          (data (i32.const 0) "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
          (func (export "alloc") (param i32) (result i32) i32.const 1024)
          (func (export "poll_stream") (param $p i32) (param $n i32)
            (local $base i32)
            (if (i32.and (i32.ge_u (local.get $n) (i32.const 4))
                         (i32.eq (i32.load (local.get $p)) (i32.const 0x776f7267)))
              (then
                (local.set $base (memory.grow (i32.const {pages})))
                (if (i32.ne (local.get $base) (i32.const -1))
                  (then
                    (memory.fill (i32.mul (local.get $base) (i32.const 65536))
                                 (i32.const 7)
                                 (i32.mul (i32.const {pages}) (i32.const 65536)))))))
            (call $send (i32.const 0) (i32.const 40))
            (call $end)))"#
    ))
    .unwrap()
}

#[tokio::test]
async fn a_worker_over_its_container_memory_limit_is_restarted_while_the_service_serves() {
    let env = testenv!();
    let ns = install(&env, "node-oom").await;
    // 192 MiB of wasm memory, allowed by limits.memory (256Mi), in a
    // container limited to 96Mi.
    let digest = deploy(
        &env,
        &ns,
        "grow",
        grow_module(3 * 1024),
        "  replicas: 2
  limits: {memory: 256Mi}
  resources: {requests: {cpu: 50m, memory: 64Mi}, limits: {memory: 96Mi}}
",
    )
    .await;
    wait_ready(&ns, "grow", &digest, 2).await;
    let addr = cluster_ip(&ns, "grow", b"hello", b"ok").await;
    let reply = exchange(addr, b"hello").unwrap();
    assert!(
        reply.ends_with(b"ok"),
        "{}",
        String::from_utf8_lossy(&reply)
    );

    // Clients on the Service all along, each answer timed.
    let stop = Arc::new(AtomicBool::new(false));
    let client = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut answers = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let ok = exchange(addr, b"hello").is_ok_and(|r| r.ends_with(b"ok"));
                answers.push((Instant::now(), ok));
                std::thread::sleep(Duration::from_millis(5));
            }
            answers
        })
    };
    // One connection makes its worker outgrow the container: the kernel
    // kills it (that connection gets no answer).
    let _ = exchange(addr, b"grow");
    let pods = ns.api::<Pod>();
    let lp = ListParams::default().labels("app.kubernetes.io/instance=grow");
    let killed = eventually("a grow pod OOMKilled and restarted", T, || {
        let (pods, lp) = (pods.clone(), lp.clone());
        async move {
            pods.list(&lp).await.ok()?.items.into_iter().find(|p| {
                p.status
                    .iter()
                    .flat_map(|s| s.container_statuses.iter().flatten())
                    .any(|c| {
                        c.restart_count >= 1
                            && c.last_state
                                .as_ref()
                                .and_then(|s| s.terminated.as_ref())
                                .is_some_and(|t| t.reason.as_deref() == Some("OOMKilled"))
                    })
            })
        }
    })
    .await
    .unwrap();
    wait_ready(&ns, "grow", &digest, 2).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    let answers = client.join().unwrap();
    // The Service kept answering: successes all through the kill and the
    // restart, never 3 s without one (a loaded machine can stall the one
    // client for a second; a Service without a live pod answers nothing
    // for the whole restart, the compile and the probes). Connections kube-proxy still
    // sent to the killed pod before its endpoint went away were refused;
    // they are counted and reported, and none fails once the pod is back.
    let ok: Vec<Instant> = answers.iter().filter(|a| a.1).map(|a| a.0).collect();
    let failed: Vec<Instant> = answers.iter().filter(|a| !a.1).map(|a| a.0).collect();
    let refused = failed.len();
    let gap = ok.windows(2).map(|w| w[1] - w[0]).max().unwrap();
    assert!(gap < Duration::from_secs(3), "no answer for {gap:?}");
    let window = match (failed.first(), failed.last()) {
        (Some(a), Some(b)) => *b - *a,
        _ => Duration::ZERO,
    };
    for _ in 0..20 {
        let reply = exchange(addr, b"hello").unwrap();
        assert!(
            reply.ends_with(b"ok"),
            "{}",
            String::from_utf8_lossy(&reply)
        );
    }
    eprintln!(
        "OOMKilled and restarted: {}; {} connections, {refused} refused within {window:?}, longest gap {gap:?}",
        killed.metadata.name.unwrap(),
        answers.len()
    );
}
