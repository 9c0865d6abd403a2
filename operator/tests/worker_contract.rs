//! The contract between the pod template and nur-worker: the real worker
//! binary, started with exactly the container's args, the credentials
//! Secret's allowed keys as environment and nothing else, serves the module
//! from MinIO on the "function" port, answers the probes on the "admin" port,
//! and drains within terminationGracePeriodSeconds after SIGTERM.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use nur_operator::crd::NurFunction;
use nur_operator::{deployment, meta::Input};
use nur_testkit::object_store::ObjectStoreExt;
use nur_testkit::object_store::path::Path as Key;
use nur_testkit::testenv;

/// target/debug/nur-worker next to this test's binary, built when missing.
fn worker_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    let bin = dir.join("nur-worker");
    if !bin.exists() {
        let status = Command::new(env!("CARGO"))
            .args(["build", "-p", "nur-worker", "--bin", "nur-worker"])
            .status()
            .unwrap();
        assert!(status.success(), "cargo build -p nur-worker failed");
    }
    bin
}

struct Worker(Child);

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn http(port: i32, request: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port as u16)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    s.write_all(request.as_bytes()).ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

fn get(port: i32, path: &str) -> Option<String> {
    http(
        port,
        &format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"),
    )
}

#[test]
fn worker_serves_with_exactly_the_pod_template() {
    let env = testenv!();
    let echo = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/build/echo.wasm"
    ))
    .expect("examples/build/echo.wasm; build the examples with examples/build.sh");
    let sha256 = nur_module::sha256_hex(&echo);
    let key = format!("operator/contract-{}/echo.wasm", std::process::id());
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(
            env.object_store()
                .unwrap()
                .put(&Key::from(key.as_str()), echo.into()),
        )
        .unwrap();
    let url = format!("s3://{}/{key}", env.bucket());

    // A free port for the function (others on this machine may hold 8080);
    // the admin port is the template's fixed 9090.
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let f: NurFunction = serde_json::from_value(serde_json::json!({
        "apiVersion": "nur.dev/v1alpha1", "kind": "NurFunction",
        "metadata": { "name": "contract", "namespace": "fns", "uid": "u" },
        "spec": {
            "module": { "url": url, "credentialsSecret": "object-store" },
            "port": free,
            "limits": { "memory": "64Mi", "timeout": "5s", "maxConnections": 8 }
        }
    }))
    .unwrap();
    let input = Input::new(&f, "unused").unwrap().with_digest(&sha256);
    let d = deployment::build(&input);
    let pod = d.spec.unwrap().template.spec.unwrap();
    let c = &pod.containers[0];

    // The Secret holds the object-store variables, as in a cluster; the pod
    // gets each allowed key as a variable, when the Secret has it.
    let secret: HashMap<&String, &String> = env
        .vars()
        .iter()
        .filter(|(k, _)| k.starts_with("AWS_"))
        .collect();
    assert!(c.env_from.is_none(), "no Secret is handed over whole");
    let mut variables = HashMap::new();
    for e in c.env.iter().flatten() {
        let r = e
            .value_from
            .as_ref()
            .unwrap()
            .secret_key_ref
            .as_ref()
            .unwrap();
        assert_eq!((r.name.as_str(), r.optional), ("object-store", Some(true)));
        if let Some(v) = secret.get(&r.key) {
            variables.insert(e.name.clone(), (*v).clone());
        }
    }
    assert_eq!(
        variables.len(),
        secret.len(),
        "every AWS_ variable of testenv reaches the pod: {secret:?}"
    );

    let port = |name: &str| {
        c.ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name))
            .unwrap()
            .container_port
    };
    let (function, admin) = (port("function"), port("admin"));
    let probe_path = |p: &Option<k8s_openapi::api::core::v1::Probe>| {
        let g = p.as_ref().unwrap().http_get.as_ref().unwrap();
        assert_eq!(g.port, IntOrString::String("admin".into()));
        g.path.clone().unwrap()
    };
    let readyz = probe_path(&c.readiness_probe);
    let healthz = probe_path(&c.liveness_probe);

    let mut child = Command::new(worker_binary());
    child
        .args(c.args.as_ref().unwrap())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(variables)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    let mut worker = Worker(child.spawn().unwrap());

    let start = Instant::now();
    loop {
        if get(admin, &readyz).is_some_and(|r| r.starts_with("HTTP/1.1 200")) {
            break;
        }
        if let Some(status) = worker.0.try_wait().unwrap() {
            panic!("worker exited before ready: {status}");
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "worker not ready"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(get(admin, &healthz).unwrap().starts_with("HTTP/1.1 200"));

    let body = "hello, nur";
    let reply = http(
        function,
        &format!(
            "POST / HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        ),
    )
    .unwrap();
    assert!(reply.ends_with(body), "{reply}");

    // SIGTERM: not ready at once, exit 0 well within the grace period.
    let grace = pod.termination_grace_period_seconds.unwrap();
    let status = Command::new("kill")
        .args(["-TERM", &worker.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let start = Instant::now();
    let exit = loop {
        if let Some(s) = worker.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(grace as u64),
            "worker still running after terminationGracePeriodSeconds"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(exit.success(), "{exit}");
}
