//! The contract between the pod template and nur-worker: the real worker
//! binary, started with exactly the container's args, the credentials
//! Secret's allowed keys as environment and nothing else, serves the module
//! from MinIO on the "function" port, answers the probes on the "admin" port,
//! and drains within terminationGracePeriodSeconds after SIGTERM.

use std::collections::HashMap;
use std::process::Command;
use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use nur_operator::crd::NurFunction;
use nur_operator::{deployment, meta::Input};
use nur_testkit::net::{self, free_port, http_get};
use nur_testkit::process::{Process, binary};
use nur_testkit::{examples, store, testenv};

#[test]
fn worker_serves_with_exactly_the_pod_template() {
    let env = testenv!();
    let echo = examples::read("echo.wasm");
    let sha256 = nur_module::sha256_hex(&echo);
    let key = format!("operator/contract-{}/echo.wasm", std::process::id());
    let url = store::put_blocking(&env, &key, echo);

    // A free port for the function (others on this machine may hold 8080);
    // the admin port is the template's fixed 9090.
    let free = free_port();
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
    let secret = store::aws(&env);
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
            variables.insert(e.name.clone(), v.clone());
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

    let mut command = Command::new(binary("nur-worker"));
    command
        .args(c.args.as_ref().unwrap())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(variables);
    let log = std::env::temp_dir().join(format!("worker-contract-{}.log", std::process::id()));
    let mut worker = Process::spawn(command, log);
    worker.wait_http_ok(admin as u16, &readyz, Duration::from_secs(60));
    assert!(
        http_get(("127.0.0.1", admin as u16), &healthz)
            .unwrap()
            .starts_with("HTTP/1.1 200")
    );

    let body = "hello, nur";
    let reply = net::request(
        ("127.0.0.1", function as u16),
        format!(
            "POST / HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
    .unwrap();
    let reply = String::from_utf8(reply).unwrap();
    assert!(reply.ends_with(body), "{reply}");

    // SIGTERM: not ready at once, exit 0 well within the grace period.
    let grace = pod.termination_grace_period_seconds.unwrap();
    let status = Command::new("kill")
        .args(["-TERM", &worker.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let start = Instant::now();
    let exit = loop {
        if let Some(s) = worker.try_wait() {
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
