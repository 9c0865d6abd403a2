//! `nur console` as a user sees it, in headless Chromium (Debian's
//! chromium and chromium-driver, over WebDriver) against testenv's real
//! node: a function deployed while the list is open appears and becomes
//! Ready without a reload; a failing module's condition message on its
//! page; a try-it call returns the function's answer and the log line it
//! produced, which the live log view shows too; the metrics charts gain
//! points and count the calls; scaling from the page reaches the
//! Deployment; deleting asks first; a user without rights sees the API
//! server's 403, not a blank page. Screenshots of each page at desktop
//! and phone width go to docs/console/.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use nur_e2e::browser::Browser;
use nur_e2e::realnode::{deploy, install_on_real_node_with, nurfunctions, release_name};
use nur_testkit::net::{free_port, http_get, request};
use nur_testkit::process::{Process, binary};
use nur_testkit::{TestEnv, eventually, examples, testenv};

fn screenshots() -> PathBuf {
    nur_e2e::workspace_root().join("docs/console")
}

/// `nur console` on a free loopback port with `kubeconfig`, in `namespace`;
/// returns the process and the console's URL once it answers.
fn console(
    kubeconfig: &std::path::Path,
    namespace: &str,
    gateway: Option<SocketAddr>,
) -> (Process, String) {
    let port = free_port();
    let mut cmd = Command::new(binary("nur"));
    cmd.args(["console", "--listen", &format!("127.0.0.1:{port}")])
        .args(["-n", namespace])
        .env("KUBECONFIG", kubeconfig)
        .env_remove("NUR_GATEWAY");
    if let Some(gateway) = gateway {
        cmd.args(["--gateway", &gateway.to_string()]);
    }
    let log = std::env::temp_dir().join(format!("nur-console-{port}.log"));
    let mut process = Process::spawn(cmd, log);
    // The console answers only requests naming it in Host (a page of
    // another site cannot reach it by DNS rebinding), so wait with one.
    let addr = format!("127.0.0.1:{port}");
    let get = format!("GET / HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    let started = std::time::Instant::now();
    while !request(&addr, get.as_bytes()).is_ok_and(|a| a.starts_with(b"HTTP/1.1 200")) {
        process.assert_running();
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no console at {addr}; log:\n{}",
            process.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    (process, format!("http://{addr}/"))
}

/// A call of `name` through the console's own API, as its page makes it.
fn call_through_console(url: &str, namespace: &str, name: &str, data: &str) -> String {
    let addr = url.trim_start_matches("http://").trim_end_matches('/');
    let body = serde_json::json!({ "data": data }).to_string();
    let head = format!(
        "POST /api/functions/{namespace}/{name}/call HTTP/1.1\r\nHost: {addr}\r\n\
         X-Nur-Console: 1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        body.len()
    );
    let answer = request(addr, format!("{head}{body}").as_bytes()).unwrap();
    let answer = String::from_utf8_lossy(&answer).into_owned();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    answer
}

/// The ClusterIP and `http` port of the release's gateway Service.
async fn gateway_address(ns: &nur_testkit::TestNamespace) -> SocketAddr {
    let name = format!("{}-gateway", release_name(ns));
    let spec = ns.api::<Service>().get(&name).await.unwrap().spec.unwrap();
    let port = spec
        .ports
        .unwrap()
        .into_iter()
        .find(|p| p.name.as_deref() == Some("http"))
        .unwrap()
        .port;
    format!("{}:{port}", spec.cluster_ip.unwrap())
        .parse()
        .unwrap()
}

async fn deployment_replicas(ns: &nur_testkit::TestNamespace, name: &str) -> Option<i32> {
    let d = ns.api::<Deployment>().get_opt(name).await.ok()??;
    d.spec?.replicas
}

#[tokio::test]
async fn the_console_shows_calls_logs_measures_scales_and_deletes_functions() {
    let env: TestEnv = testenv!();
    // The chart with its gateway; the console calls routed functions
    // through the gateway Service's ClusterIP (port 80).
    let ns = install_on_real_node_with(&env, "console", &[]).await;
    let gateway = gateway_address(&ns).await;
    let (_console, url) = console(&env.kubeconfig(), ns.name(), Some(gateway));
    let b = Browser::start().await;
    b.goto(&url).await;

    // The list, empty, then a function deployed while it is open: it
    // appears and becomes Ready with no reload (the marker survives).
    b.until(
        "the empty list",
        "const e = document.getElementById('functions-empty'); return e && !e.hidden",
    )
    .await;
    b.run("window.nurNoReload = 42; return null").await;
    deploy(
        &env,
        &ns,
        "echo",
        examples::read("echo.wasm"),
        "  replicas: 1\n",
    )
    .await;
    b.until(
        "echo in the list",
        r#"return document.querySelector('tr[data-name="echo"]') !== null"#,
    )
    .await;
    let ready = b
        .until(
            "echo Ready in the list",
            r#"const b = document.querySelector('tr[data-name="echo"] .ready .badge');
               return b && b.dataset.status === 'True' ? b.closest('tr').innerText : null"#,
        )
        .await;
    assert!(ready.as_str().unwrap().contains("1/1"), "{ready}");
    assert_eq!(
        b.run("return window.nurNoReload").await,
        42,
        "the page reloaded"
    );

    // A module that breaks the ABI: its page shows the condition's message.
    let broken = wat::parse_str(
        r#"(module (import "env" "not_in_the_abi" (func))
             (memory (export "memory") 1)
             (func (export "alloc") (param i32) (result i32) i32.const 0)
             (func (export "poll_stream") (param i32 i32)))"#,
    )
    .unwrap();
    deploy(&env, &ns, "broken", broken, "").await;
    b.until(
        "broken in the list with its problem",
        r#"const r = document.querySelector('tr[data-name="broken"]');
           return r && r.innerText.includes('BreaksABI')"#,
    )
    .await;
    b.screenshots(&screenshots(), "functions").await;
    b.goto(&format!("{url}#/fn/{}/broken", ns.name())).await;
    let message = b
        .until(
            "broken's ModuleValid condition",
            r#"const rows = [...document.querySelectorAll('#conditions tbody tr')];
               const r = rows.find(r => r.cells[0].innerText === 'ModuleValid');
               return r && r.cells[1].innerText === 'False' ? r.innerText : null"#,
        )
        .await;
    let message = message.as_str().unwrap();
    assert!(message.contains("BreaksABI"), "{message}");
    assert!(message.contains("not_in_the_abi"), "{message}");
    b.screenshots(&screenshots(), "function-failing").await;

    // Try it: raw bytes, then an HTTP request with a header; the answer and
    // the log line each call produced.
    b.goto(&format!("{url}#/fn/{}/echo/try", ns.name())).await;
    b.until(
        "the try-it form",
        "return document.getElementById('try-send') !== null",
    )
    .await;
    b.run("const m = document.getElementById('try-mode'); m.value = 'bytes'; m.dispatchEvent(new Event('change')); return null").await;
    b.fill("#try-body", "hello console").await;
    b.click("#try-send").await;
    let answer = b
        .until(
            "the try-it answer",
            "const a = document.getElementById('try-answer'); return a && a.innerText",
        )
        .await;
    assert_eq!(
        answer, "hello console",
        "echo answers its input as the body"
    );
    let status = b
        .run("return document.getElementById('try-status').innerText")
        .await;
    assert_eq!(status, "200 OK");
    let logged = b
        .run("return document.getElementById('try-logs').innerText")
        .await;
    assert!(
        logged.as_str().unwrap().contains("echo: 13 bytes"),
        "{logged}"
    );
    assert!(logged.as_str().unwrap().contains("conn "), "{logged}");
    b.run("const m = document.getElementById('try-mode'); m.value = 'http'; m.dispatchEvent(new Event('change')); return null").await;
    b.run("document.getElementById('try-method').value = 'POST'; return null")
        .await;
    b.fill("#try-path", "/orders").await;
    b.fill("#try-headers", "X-Test: from the console").await;
    b.fill("#try-body", "{}").await;
    b.click("#try-send").await;
    let echoed = b
        .until(
            "the HTTP answer",
            "const a = document.getElementById('try-answer'); return a && a.innerText.startsWith('POST') && a.innerText",
        )
        .await;
    let echoed = echoed.as_str().unwrap();
    assert!(echoed.starts_with("POST /orders HTTP/1.1"), "{echoed}");
    assert!(echoed.contains("X-Test: from the console"), "{echoed}");
    b.screenshots(&screenshots(), "try-it").await;

    // The live log view: the earlier calls' lines, then one made while it
    // is open, with its connection; the filter hides the others.
    b.goto(&format!("{url}#/fn/{}/echo/logs", ns.name())).await;
    b.until(
        "the try-it call's line in the log view",
        "return [...document.querySelectorAll('#log-lines li')].some(l => l.innerText.includes('echo: 13 bytes'))",
    )
    .await;
    call_through_console(&url, ns.name(), "echo", "live!");
    let line = b
        .until(
            "a new call's line in the log view",
            "const l = [...document.querySelectorAll('#log-lines li')].find(l => l.innerText.includes('echo: 5 bytes')); return l && l.innerText",
        )
        .await;
    assert!(line.as_str().unwrap().contains("conn "), "{line}");
    b.fill("#log-filter", "5 bytes").await;
    let shown = b
        .run("return [...document.querySelectorAll('#log-lines li')].filter(l => !l.hidden).map(l => l.innerText)")
        .await;
    let shown = shown.as_array().unwrap();
    assert!(!shown.is_empty(), "the filter shows the matching line");
    assert!(
        shown
            .iter()
            .all(|l| l.as_str().unwrap().contains("5 bytes")),
        "{shown:?}"
    );
    b.screenshots(&screenshots(), "logs").await;

    // Metrics: the charts gain points, and the calls are counted.
    b.goto(&format!("{url}#/fn/{}/echo/metrics", ns.name()))
        .await;
    let before = b
        .until(
            "a first metrics point",
            "const c = document.getElementById('chart-connections'); const t = document.getElementById('metrics-totals');
             return c && Number(c.dataset.points) >= 1 && t.dataset.connections !== undefined
               ? [Number(c.dataset.points), Number(t.dataset.connections)] : null",
        )
        .await;
    let (points, connections) = (before[0].as_i64().unwrap(), before[1].as_f64().unwrap());
    for i in 0..5 {
        call_through_console(&url, ns.name(), "echo", &format!("metric {i}"));
    }
    b.until(
        "the 5 calls counted in the metrics",
        &format!(
            "const c = document.getElementById('chart-connections'); const t = document.getElementById('metrics-totals');
             return Number(t.dataset.connections) >= {} && Number(c.dataset.points) > {points}",
            connections + 5.0
        ),
    )
    .await;
    let rate = b
        .until(
            "a connection rate above zero drawn",
            "const l = document.getElementById('chart-connections-rate'); return l && !/ (0\\.00|–)/.test(l.innerText) && l.innerText",
        )
        .await;
    eprintln!("connections chart: {rate}");
    b.screenshots(&screenshots(), "metrics").await;

    // A routed function: try it goes through the gateway, and the metrics
    // page shows what the gateway counts for it. Until kube-proxy has a
    // rule for the gateway's new ClusterIP a connection to it may leave
    // the machine: wait for the function's own answer first.
    deploy(
        &env,
        &ns,
        "hello",
        examples::read("http-hello.wasm"),
        "  replicas: 1\n  routes: {http: [{pathPrefix: /hello}]}\n",
    )
    .await;
    eventually(
        "hello through the gateway",
        Duration::from_secs(90),
        || async move {
            tokio::task::spawn_blocking(move || http_get(gateway, "/hello/x"))
                .await
                .unwrap()
                .filter(|a| a.ends_with("Hello, /hello/x!\n"))
        },
    )
    .await
    .unwrap();
    b.goto(&format!("{url}#/fn/{}/hello/try", ns.name())).await;
    b.until(
        "hello's try-it form",
        "return document.getElementById('try-send') !== null",
    )
    .await;
    b.run("document.getElementById('try-method').value = 'GET'; return null")
        .await;
    b.fill("#try-path", "/hello/console").await;
    b.click("#try-send").await;
    let answer = b
        .until(
            "hello's answer through the gateway",
            "const a = document.getElementById('try-answer'); return a && a.innerText.length > 0 && a.innerText",
        )
        .await;
    assert_eq!(answer, "Hello, /hello/console!\n");
    let via = b
        .run("return document.getElementById('try-meta').innerText")
        .await;
    assert!(
        via.as_str()
            .unwrap()
            .contains(&format!("via gateway {gateway}")),
        "{via}"
    );
    b.goto(&format!("{url}#/fn/{}/hello/metrics", ns.name()))
        .await;
    let counted = b
        .until(
            "the gateway's count of hello",
            "const t = document.getElementById('gateway-totals');
             return t && t.dataset.connections ? Number(t.dataset.connections) : null",
        )
        .await;
    assert!(
        counted.as_f64().unwrap() >= 2.0,
        "two requests through the gateway: {counted}"
    );
    b.until(
        "a point on the gateway chart",
        "const c = document.getElementById('chart-gateway'); return c && Number(c.dataset.points) >= 2",
    )
    .await;
    b.screenshots(&screenshots(), "metrics-gateway").await;

    // Scale from the page: the Deployment follows.
    b.goto(&format!("{url}#/fn/{}/echo", ns.name())).await;
    b.until(
        "the scale form",
        "return document.getElementById('replicas') !== null",
    )
    .await;
    let module = b
        .until(
            "echo's module facts",
            "const m = document.getElementById('module'); return m && m.innerText.includes('Imports') && m.innerText",
        )
        .await;
    let module = module.as_str().unwrap();
    assert!(!module.contains("not checked yet"), "the digest: {module}");
    assert!(module.contains("nur."), "the ABI's imports: {module}");
    assert!(module.contains("memory ("), "the exports: {module}");
    assert!(module.contains("pages"), "the memory: {module}");
    b.screenshots(&screenshots(), "function").await;
    b.fill("#replicas", "2").await;
    b.click("#scale").await;
    eventually(
        "echo's Deployment at 2 replicas",
        Duration::from_secs(60),
        || {
            let ns = &ns;
            async move { (deployment_replicas(ns, "echo").await == Some(2)).then_some(()) }
        },
    )
    .await
    .unwrap();

    // Delete asks first; cancel keeps it, confirm deletes it.
    b.goto(&format!("{url}#/fn/{}/broken", ns.name())).await;
    b.until(
        "broken's page",
        "return document.getElementById('delete') !== null",
    )
    .await;
    b.click("#delete").await;
    b.until(
        "the confirmation",
        "return document.getElementById('confirm').open",
    )
    .await;
    b.click("#confirm-cancel").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let functions = nurfunctions(&ns).await;
    assert!(functions.get_opt("broken").await.unwrap().is_some());
    b.click("#delete").await;
    b.until(
        "the confirmation",
        "return document.getElementById('confirm').open",
    )
    .await;
    b.click("#confirm-ok").await;
    b.until(
        "back on the list without broken",
        r#"return location.hash === '#/' && document.querySelector('tr[data-name="echo"]') !== null
                  && document.querySelector('tr[data-name="broken"]') === null"#,
    )
    .await;
    eventually("broken deleted", Duration::from_secs(60), || {
        let functions = functions.clone();
        async move {
            functions
                .get_opt("broken")
                .await
                .ok()?
                .is_none()
                .then_some(())
        }
    })
    .await
    .unwrap();

    // A user without rights in the namespace: the API server's 403 on the
    // page, naming what is missing.
    let kubeconfig = tempfile::NamedTempFile::new().unwrap();
    env.kubeconfig_for_service_account(&ns.client(), ns.name(), "no-rights", kubeconfig.path())
        .await
        .unwrap();
    let (_viewer, viewer_url) = console(kubeconfig.path(), ns.name(), None);
    b.goto(&viewer_url).await;
    let problem = b
        .until(
            "the 403 on the page",
            "const p = document.getElementById('problem'); return p && !p.hidden && p.innerText",
        )
        .await;
    let problem = problem.as_str().unwrap();
    assert!(problem.contains("Not allowed"), "{problem}");
    assert!(problem.contains("forbidden"), "{problem}");
    assert!(
        problem.contains("cannot list resource \"nurfunctions\""),
        "{problem}"
    );
    assert!(problem.contains("no-rights"), "{problem}");
    b.screenshots(&screenshots(), "forbidden").await;
}
