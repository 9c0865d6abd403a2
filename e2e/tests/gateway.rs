//! nur-gateway in front of functions on testenv's real node: the gateway
//! binary runs on this host with a kubeconfig (as it runs in a pod with
//! its service account), watches the NurFunctions and EndpointSlices of a
//! namespace and connects straight to the pods' IPs. Clients are raw
//! sockets and a real rustls ClientHello.
//!
//! One namespace holds every function, so the chart is installed once:
//! routes by path, host and method, a route conflict on the status, a TLS
//! route by server name, a TCP port route, keep-alive, the gateway's own
//! 400/404/408/431/503 answers, and a rollout of a routed function under
//! load with no failed request. A function at zero is woken by its next
//! client, with the operator and then a gateway restarted mid-wake.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use nur_e2e::realnode::{
    Load, T, deploy, install_on_real_node, nurfunctions, pod_ready, ready_reason, wait_ready,
};
use nur_testkit::net::{free_port, read_to_close};
use nur_testkit::process::{Process, binary};
use nur_testkit::{TestEnv, TestNamespace, eventually, examples, testenv};

/// The gateway's ports on 127.0.0.1.
struct Gateway {
    process: Process,
    http: SocketAddr,
    tls: SocketAddr,
    tcp: u16,
    admin: u16,
}

fn start_gateway(env: &TestEnv, ns: &TestNamespace, wake_timeout: &str) -> Gateway {
    let (http, tls, admin, tcp) = (free_port(), free_port(), free_port(), free_port());
    let mut cmd = Command::new(binary("nur-gateway"));
    cmd.arg("run")
        .args(["--http-listen", &format!("127.0.0.1:{http}")])
        .args(["--tls-listen", &format!("127.0.0.1:{tls}")])
        .args(["--admin-listen", &format!("127.0.0.1:{admin}")])
        .args([
            "--tcp-address",
            "127.0.0.1",
            "--tcp-ports",
            &tcp.to_string(),
        ])
        .args(["--namespace", ns.name()])
        .args(["--header-timeout", "1s", "--wake-timeout", wake_timeout])
        .env("KUBECONFIG", env.kubeconfig());
    let log = std::env::temp_dir().join(format!("nur-gateway-{}.log", ns.name()));
    let mut process = Process::spawn(cmd, log);
    process.wait_http_ok(admin, "/readyz", Duration::from_secs(30));
    Gateway {
        process,
        http: ([127, 0, 0, 1], http).into(),
        tls: ([127, 0, 0, 1], tls).into(),
        tcp,
        admin,
    }
}

/// The time of the last wake request a gateway wrote on NurFunction `name`.
async fn wake_mark(ns: &TestNamespace, name: &str) -> Option<String> {
    let f = nurfunctions(ns).await.get(name).await.unwrap();
    f.metadata.annotations?.remove("nur.dev/wake")
}

/// Waits until a gateway holding a client asked for `name` to be woken
/// (its wake mark is no longer `before`).
async fn wait_wake_requested(ns: &TestNamespace, name: &str, before: Option<String>) {
    eventually("a gateway asks for the wake", T, || {
        let before = before.clone();
        async move {
            let now = wake_mark(ns, name).await;
            (now.is_some() && now != before).then_some(())
        }
    })
    .await
    .unwrap();
}

/// Sends `request` on a new connection and reads the answer to the end.
fn send(addr: SocketAddr, request: &[u8]) -> String {
    send_within(addr, request, Duration::from_secs(20))
}

fn send_within(addr: SocketAddr, request: &[u8], timeout: Duration) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(timeout)).unwrap();
    s.write_all(request).unwrap();
    String::from_utf8_lossy(&read_to_close(&mut s).unwrap()).into_owned()
}

fn get(addr: SocketAddr, host: Option<&str>, path: &str) -> String {
    let host = host.map(|h| format!("Host: {h}\r\n")).unwrap_or_default();
    send(
        addr,
        format!("GET {path} HTTP/1.1\r\n{host}Connection: close\r\n\r\n").as_bytes(),
    )
}

/// Reads one length-delimited response from a kept-alive connection.
fn read_response(s: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).unwrap();
        buf.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&buf).to_string();
    let len: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length: ")
                .map(|v| v.trim().parse().unwrap())
        })
        .unwrap_or_else(|| panic!("no content-length in {head}"));
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).unwrap();
    head + &String::from_utf8_lossy(&body)
}

/// The bytes of a real TLS ClientHello for `server_name` (rustls).
fn client_hello(server_name: &str) -> Vec<u8> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    let name = server_name.to_string().try_into().unwrap();
    let mut conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let mut hello = Vec::new();
    conn.write_tls(&mut hello).unwrap();
    hello
}

/// The Routed condition of NurFunction `name`: (status, reason, message).
async fn routed(ns: &TestNamespace, name: &str) -> Option<(String, String, String)> {
    let f = nurfunctions(ns).await.get(name).await.ok()?;
    let c = f.data["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "Routed")?
        .clone();
    let s = |k: &str| c[k].as_str().unwrap_or_default().to_string();
    Some((s("status"), s("reason"), s("message")))
}

#[tokio::test]
async fn the_gateway_routes_http_tls_and_tcp_to_functions_on_the_real_node() {
    let env = testenv!();
    let ns = install_on_real_node(&env, "gateway").await;
    let gateway = start_gateway(&env, &ns, "3s");
    let tcp = gateway.tcp;
    let hello = deploy(
        &env,
        &ns,
        "hello",
        examples::read("http-hello.wasm"),
        "  routes: {http: [{pathPrefix: /hello}]}\n",
    )
    .await;
    let echo = deploy(
        &env,
        &ns,
        "echo",
        examples::read("echo.wasm"),
        &format!(
            "  routes:\n    http: [{{host: echo.example, methods: [POST]}}]\n    \
             tls: [{{sni: echo.example}}]\n    tcp: {{port: {tcp}}}\n"
        ),
    )
    .await;
    let c = deploy(
        &env,
        &ns,
        "c-hello",
        examples::read("c-hello.wasm"),
        "  routes: {http: [{host: c.example}]}\n",
    )
    .await;
    // Created after hello: the route is hello's.
    deploy(
        &env,
        &ns,
        "thief",
        examples::read("c-hello.wasm"),
        "  routes: {http: [{pathPrefix: /hello}]}\n",
    )
    .await;
    // Two functions on one host, split by path.
    let split_a = deploy(
        &env,
        &ns,
        "split-a",
        examples::read("http-hello.wasm"),
        "  routes: {http: [{host: split.example, pathPrefix: /a}]}\n",
    )
    .await;
    let split_b = deploy(
        &env,
        &ns,
        "split-b",
        examples::read("echo.wasm"),
        "  routes: {http: [{host: split.example, pathPrefix: /b}]}\n",
    )
    .await;
    // A function that ends every connection without a byte: 502.
    let silent = deploy(
        &env,
        &ns,
        "silent",
        br#"(module (import "nur" "nur_end" (func $end)) (memory (export "memory") 1)
             (func (export "alloc") (param i32) (result i32) i32.const 0)
             (func (export "poll_stream") (param i32 i32) call $end))"#
            .to_vec(),
        "  routes: {http: [{host: silent.example}]}\n",
    )
    .await;
    // No pod at all: the gateway waits up to its wake timeout, then 503.
    deploy(
        &env,
        &ns,
        "sleepy",
        examples::read("echo.wasm"),
        "  replicas: 0\n  routes: {http: [{host: sleepy.example}]}\n",
    )
    .await;
    wait_ready(&ns, "hello", &hello, 1).await;
    wait_ready(&ns, "echo", &echo, 1).await;
    wait_ready(&ns, "c-hello", &c, 1).await;
    wait_ready(&ns, "split-a", &split_a, 1).await;
    wait_ready(&ns, "split-b", &split_b, 1).await;
    wait_ready(&ns, "silent", &silent, 1).await;

    // The status says who holds what.
    let conflict = eventually("thief's RouteConflict", T, || async {
        routed(&ns, "thief")
            .await
            .filter(|r| r.1 == "RouteConflict")
    })
    .await
    .unwrap();
    assert_eq!(conflict.0, "False");
    assert!(
        conflict.2.contains(&format!("held by {}/hello", ns.name())),
        "{conflict:?}"
    );
    let held = eventually("hello Routed", T, || async {
        routed(&ns, "hello").await.filter(|r| r.0 == "True")
    })
    .await
    .unwrap();
    assert_eq!(held.1, "Routed");

    // Path prefixes, hosts and methods, once the gateway has each pod.
    let http = gateway.http;
    let answer = eventually("hello through the gateway", T, || async move {
        let a = tokio::task::spawn_blocking(move || get(http, None, "/hello/world"))
            .await
            .unwrap();
        a.starts_with("HTTP/1.1 200").then_some(a)
    })
    .await
    .unwrap();
    assert!(answer.ends_with("Hello, /hello/world!\n"), "{answer}");
    let http = gateway.http;
    let c_answer = eventually("c-hello by host", T, || async move {
        let a = tokio::task::spawn_blocking(move || get(http, Some("C.Example:80"), "/any"))
            .await
            .unwrap();
        a.starts_with("HTTP/1.1 200").then_some(a)
    })
    .await
    .unwrap();
    assert!(c_answer.ends_with("hello from C\n"), "{c_answer}");
    let echo_post = |body: &str, close: bool| {
        let close = if close { "Connection: close\r\n" } else { "" };
        format!(
            "POST /x HTTP/1.1\r\nHost: echo.example\r\n{close}Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    let http = gateway.http;
    let request = echo_post("ping", true);
    eventually("echo by host and method", T, || {
        let request = request.clone();
        async move {
            let a = tokio::task::spawn_blocking(move || send(http, request.as_bytes()))
                .await
                .unwrap();
            (a.starts_with("HTTP/1.1 200") && a.ends_with("ping")).then_some(())
        }
    })
    .await
    .unwrap();
    let http = gateway.http;
    tokio::task::spawn_blocking(move || {
        // Not its method; not its prefix: 404 naming host and path.
        let a = get(http, Some("echo.example"), "/x");
        assert!(a.starts_with("HTTP/1.1 404 Not Found\r\n"), "{a}");
        assert!(a.ends_with("no route for GET echo.example/x\n"), "{a}");
        let a = get(http, None, "/helloworld");
        assert!(
            a.ends_with("no route for GET (no host)/helloworld\n"),
            "{a}"
        );

        // Keep-alive: two requests on one connection, each answered.
        let mut s = TcpStream::connect(http).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        for body in ["one", "two"] {
            s.write_all(echo_post(body, false).as_bytes()).unwrap();
            let a = read_response(&mut s);
            assert!(a.starts_with("HTTP/1.1 200 OK\r\n"), "{a}");
            assert!(a.ends_with(body), "{a}");
        }

        // One host, two functions by path.
        let a = get(http, Some("split.example"), "/a/x");
        assert!(a.ends_with("Hello, /a/x!\n"), "{a}");
        let a = get(http, Some("split.example"), "/b/x");
        assert!(
            a.starts_with("HTTP/1.1 200 OK\r\n") && a.contains("GET /b/x HTTP/1.1"),
            "{a}"
        );

        // A function that closes without answering: 502.
        let a = get(http, Some("silent.example"), "/");
        assert!(a.starts_with("HTTP/1.1 502 Bad Gateway\r\n"), "{a}");
        assert!(
            a.ends_with("closed the connection without an answer\n"),
            "{a}"
        );

        // Keep-alive with a real client: curl sends both requests on one
        // connection.
        let out = Command::new("curl")
            .args(["-sv", "-H", "Host: echo.example", "--data", "first"])
            .arg(format!("http://{http}/1"))
            .args(["--next", "-H", "Host: echo.example", "--data", "second"])
            .arg(format!("http://{http}/2"))
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stdout.contains("first") && stdout.contains("second"),
            "{stdout}{stderr}"
        );
        assert!(stderr.contains("Re-using existing connection"), "{stderr}");
        // An HTTP/1.0 client asking for keep-alive gets its answer, the
        // function's or the gateway's own, and the close (neither says
        // keep-alive, so such a client reads to the close).
        for (request, answer) in [
            (
                &b"POST /ten HTTP/1.0\r\nHost: echo.example\r\nConnection: keep-alive\r\nContent-Length: 3\r\n\r\nten"[..],
                "HTTP/1.1 200 OK\r\n",
            ),
            (
                b"GET /ten HTTP/1.0\r\nHost: echo.example\r\nConnection: keep-alive\r\n\r\n",
                "HTTP/1.1 404 Not Found\r\n",
            ),
        ] {
            // Kept open, it would be read to the gateway's 60 s idle timeout.
            let started = std::time::Instant::now();
            let a = send_within(http, request, Duration::from_secs(30));
            assert!(a.starts_with(answer), "{a}");
            assert!(
                started.elapsed() < Duration::from_secs(15),
                "{:?}",
                started.elapsed()
            );
        }
        let a = send(
            http,
            b"POST /ten HTTP/1.0\r\nHost: echo.example\r\nContent-Length: 3\r\n\r\nten",
        );
        assert!(a.ends_with("Content-Length: 3\r\n\r\nten"), "{a}");

        // Hostile clients: each gets its answer, the gateway serves on.
        let a = send(http, b"GARBAGE\r\n\r\n");
        assert!(a.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{a}");
        let huge = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(70 * 1024));
        let mut s = TcpStream::connect(http).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let _ = s.write_all(huge.as_bytes());
        let a = String::from_utf8_lossy(&read_to_close(&mut s).unwrap_or_default()).to_string();
        assert!(a.starts_with("HTTP/1.1 431 "), "{a}");
        // The header timeout is 1 s; `send` would wait 20 s.
        let started = std::time::Instant::now();
        let a = send(http, b"GET / HTTP/1.1\r\nHost: slow");
        assert!(a.starts_with("HTTP/1.1 408 Request Timeout\r\n"), "{a}");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );

        // No ready pod within the wake timeout: 503.
        let a = get(http, Some("sleepy.example"), "/");
        assert!(a.starts_with("HTTP/1.1 503 Service Unavailable\r\n"), "{a}");
        assert!(a.contains("has no ready pod"), "{a}");
    })
    .await
    .unwrap();

    // TLS by server name: the ClientHello reaches echo untouched (echo
    // answers with the first chunk it got); an unknown name is closed.
    let (tls, tcp_addr) = (gateway.tls, SocketAddr::from(([127, 0, 0, 1], tcp)));
    tokio::task::spawn_blocking(move || {
        let hello = client_hello("echo.example");
        let mut s = TcpStream::connect(tls).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s.write_all(&hello).unwrap();
        let answer = read_to_close(&mut s).unwrap();
        assert!(answer.starts_with(b"HTTP/1.1 200 OK\r\n"), "{answer:?}");
        assert!(
            answer.ends_with(&hello),
            "the ClientHello came back changed"
        );
        let mut s = TcpStream::connect(tls).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s.write_all(&client_hello("nobody.example")).unwrap();
        assert!(read_to_close(&mut s).unwrap_or_default().is_empty());

        // The TCP port route.
        let a = send(tcp_addr, b"over tcp");
        assert!(a.ends_with("over tcp"), "{a}");
    })
    .await
    .unwrap();

    // A rollout of a routed function under load: no request fails.
    let load = Load::start(
        gateway.http,
        b"GET /hello/load HTTP/1.1\r\nConnection: close\r\n\r\n",
        4,
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut module = examples::read("http-hello.wasm");
    // A custom section: other bytes, same function.
    module.extend_from_slice(&[0, 4, 3, b'n', b'e', b'w']);
    let rolled = deploy(
        &env,
        &ns,
        "hello",
        module,
        "  routes: {http: [{pathPrefix: /hello}]}\n",
    )
    .await;
    wait_ready(&ns, "hello", &rolled, 1).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (answered, failures) = load.finish();
    assert!(answered > 20, "{answered} answered");
    assert!(
        failures.is_empty(),
        "{} of {} requests failed during the rollout: {:?}",
        failures.len(),
        answered + failures.len() as u64,
        &failures[..failures.len().min(5)]
    );

    // The gateway keeps its connections to a pod open between requests (a
    // client's `Connection: close` is for its own hop), and the pod, whose
    // function has HTTP routes, serves request after request on them.
    let http = gateway.http;
    tokio::task::spawn_blocking(move || {
        for i in 0..10 {
            let a = get(http, None, &format!("/hello/kept{i}"));
            assert!(a.ends_with(&format!("Hello, /hello/kept{i}!\n")), "{a}");
        }
    })
    .await
    .unwrap();
    let pods = ns
        .api::<Pod>()
        .list(&ListParams::default().labels("app.kubernetes.io/instance=hello"))
        .await
        .unwrap();
    let ip = pods
        .items
        .iter()
        .find(|p| pod_ready(p))
        .and_then(|p| p.status.as_ref()?.pod_ip.clone())
        .expect("a ready hello pod");
    let metrics = nur_testkit::net::http_get((ip.as_str(), 9090), "/metrics").unwrap();
    let kept: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("nur_kept_alive_requests_total "))
        .map_or(0.0, |v| v.trim().parse().unwrap());
    assert!(
        kept >= 9.0,
        "{kept} requests on kept connections:\n{metrics}"
    );

    // `nur call` through the gateway, `nur status` naming the routes.
    let nur = |args: &[&str]| {
        let out = Command::new(binary("nur"))
            .args(args)
            .args(["-n", ns.name()])
            .env("KUBECONFIG", env.kubeconfig())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let gw = gateway.http.to_string();
    let answer = nur(&[
        "call",
        "hello",
        "--gateway",
        &gw,
        "--http",
        "GET /hello/cli",
    ]);
    assert!(answer.ends_with("Hello, /hello/cli!\n"), "{answer}");
    let status = nur(&["status", "echo"]);
    assert!(
        status.contains(&format!(
            "Routes:    http echo.example/ (POST), tls echo.example, tcp {tcp} (through nur-gateway)"
        )),
        "{status}"
    );

    // Per-function metrics.
    let metrics = nur_testkit::net::http_get(("127.0.0.1", gateway.admin), "/metrics").unwrap();
    for want in [
        format!(
            "nur_gateway_connections_total{{function=\"{}/echo\"}}",
            ns.name()
        ),
        "nur_gateway_route_misses_total{listener=\"http\"}".to_string(),
        // At least the slow client's (another may have been slow too).
        "nur_gateway_rejected_total{listener=\"http\",reason=\"header_timeout\"}".to_string(),
        format!(
            "nur_gateway_no_ready_pod_total{{function=\"{}/sleepy\"}} 1",
            ns.name()
        ),
    ] {
        assert!(metrics.contains(&want), "no {want} in:\n{metrics}");
    }
    drop(gateway.process);
}

async fn wait_scaled_to_zero(ns: &TestNamespace, name: &str) {
    eventually(&format!("{name} scaled to zero"), T, || async {
        ready_reason(ns, name)
            .await
            .filter(|(r, n)| r == "ScaledToZero" && *n == 0)
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn an_idle_function_goes_to_zero_and_its_next_client_wakes_it() {
    let env = testenv!();
    let ns = install_on_real_node(&env, "zero").await;
    let gateway = start_gateway(&env, &ns, "90s");
    let echo = deploy(
        &env,
        &ns,
        "napper",
        examples::read("echo.wasm"),
        "  scaleToZero: {idleAfter: 6s}\n  routes: {http: [{host: nap.example}]}\n",
    )
    .await;
    wait_ready(&ns, "napper", &echo, 1).await;
    // Idle: to zero pods, and `kubectl get nurfn` says so.
    wait_scaled_to_zero(&ns, "napper").await;
    let mut get = env.kubectl();
    get.args(["get", "nurfn", "napper", "-n", ns.name()]);
    let table = String::from_utf8(get.output().unwrap().stdout).unwrap();
    assert!(table.contains(" ScaledToZero "), "{table}");

    // The next connection is held until a pod is ready, then answered.
    let http = gateway.http;
    let request = b"POST / HTTP/1.1\r\nHost: nap.example\r\nConnection: close\r\nContent-Length: 4\r\n\r\nwake";
    let (answer, took) = tokio::task::spawn_blocking(move || {
        let started = std::time::Instant::now();
        (send(http, request), started.elapsed())
    })
    .await
    .unwrap();
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(answer.ends_with("wake"), "{answer}");
    // Half the wake timeout: held to its end, it would be a 503.
    assert!(took < Duration::from_secs(45), "woken in {took:?}");
    eprintln!("woken and answered in {took:?}");

    // A client that keeps connecting keeps it awake past idleAfter, and
    // never fails.
    let load = Load::start(
        gateway.http,
        b"POST / HTTP/1.1\r\nHost: nap.example\r\nConnection: close\r\nContent-Length: 2\r\n\r\nhi",
        2,
    );
    tokio::time::sleep(Duration::from_secs(10)).await;
    let awake = ready_reason(&ns, "napper").await;
    let (answered, failures) = load.finish();
    assert!(
        failures.is_empty(),
        "{:?}",
        &failures[..failures.len().min(5)]
    );
    assert!(answered > 20, "{answered}");
    assert_eq!(awake.map(|a| a.0), Some("Ready".to_string()));

    // The operator restarted mid-wake: the wake request is on the
    // NurFunction, so the new operator (once it leads) wakes it, and the
    // held connection is answered.
    wait_scaled_to_zero(&ns, "napper").await;
    let http = gateway.http;
    let marked = wake_mark(&ns, "napper").await;
    let held =
        tokio::task::spawn_blocking(move || send_within(http, request, Duration::from_secs(90)));
    wait_wake_requested(&ns, "napper", marked).await;
    let mut delete = env.kubectl();
    delete.args([
        "delete",
        "pod",
        "-n",
        ns.name(),
        "-l",
        "app.kubernetes.io/component=operator",
        "--wait=false",
    ]);
    assert!(delete.status().unwrap().success());
    let answer = held.await.unwrap();
    assert!(answer.ends_with("wake"), "{answer}");

    // A gateway restarted mid-wake: told to stop (SIGTERM) while it holds
    // a client for a function at zero, it still answers that client (a
    // held connection is in flight, drained like any other) and exits 0;
    // the gateway started in its place routes the next client.
    wait_scaled_to_zero(&ns, "napper").await;
    let mut restarted = start_gateway(&env, &ns, "90s");
    let http = restarted.http;
    let marked = wake_mark(&ns, "napper").await;
    let held =
        tokio::task::spawn_blocking(move || send_within(http, request, Duration::from_secs(90)));
    wait_wake_requested(&ns, "napper", marked).await;
    let term = Command::new("kill")
        .args(["-TERM", &restarted.process.pid().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let answer = held.await.unwrap();
    assert!(answer.ends_with("wake"), "{answer}");
    let exited = eventually("the stopped gateway exits", T, || {
        let status = restarted.process.try_wait();
        async move { status }
    })
    .await
    .unwrap();
    assert!(exited.success(), "{exited}: {}", restarted.process.log());
    let successor = start_gateway(&env, &ns, "90s");
    let http = successor.http;
    let answer = tokio::task::spawn_blocking(move || send(http, request))
        .await
        .unwrap();
    assert!(answer.ends_with("wake"), "{answer}");
    drop(successor.process);

    // Back to zero once the load stops; a load that starts at zero loses
    // nothing while the function wakes.
    wait_scaled_to_zero(&ns, "napper").await;
    let load = Load::start(
        gateway.http,
        b"POST / HTTP/1.1\r\nHost: nap.example\r\nConnection: close\r\nContent-Length: 2\r\n\r\nhi",
        2,
    );
    load.answered(6, T).await;
    let (answered, failures) = load.finish();
    assert!(
        failures.is_empty(),
        "{:?}",
        &failures[..failures.len().min(5)]
    );
    assert!(answered > 5, "{answered}");
    let metrics = nur_testkit::net::http_get(("127.0.0.1", gateway.admin), "/metrics").unwrap();
    assert!(
        !metrics.contains(&format!(
            "nur_gateway_no_ready_pod_total{{function=\"{}/napper\"}}",
            ns.name()
        )),
        "a connection found no pod:\n{metrics}"
    );
    let held = format!(
        "nur_gateway_wake_seconds_count{{function=\"{}/napper\"}}",
        ns.name()
    );
    let held: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix(&held))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {held} in:\n{metrics}"));
    assert!(held >= 1.0, "the wakes are counted: {held}");
    drop(gateway.process);
}
