//! Many functions, one module: the storage requests a re-check period costs
//! do not grow with the number of functions that share a module.

mod support;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use nur_testkit::{examples, testenv};

use support::*;

/// An S3 endpoint serving `module` at every key, counting HEAD requests.
fn counting_store(module: Vec<u8>) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let heads = Arc::new(AtomicUsize::new(0));
    let count = heads.clone();
    let etag = format!("\"{}\"", &nur_module::sha256_hex(&module)[..32]);
    std::thread::spawn(move || {
        for mut socket in listener.incoming().flatten() {
            let mut head = [0; 8192];
            let n = socket.read(&mut head).unwrap_or(0);
            let is_head = head[..n].starts_with(b"HEAD ");
            if is_head {
                count.fetch_add(1, Ordering::SeqCst);
            }
            let answer = format!(
                "HTTP/1.1 200 OK\r\netag: {etag}\r\ncontent-length: {}\r\n\
                 last-modified: Tue, 01 Dec 2026 12:00:00 GMT\r\nconnection: close\r\n\r\n",
                module.len()
            );
            let _ = socket.write_all(answer.as_bytes());
            if !is_head {
                let _ = socket.write_all(&module);
            }
        }
    });
    (endpoint, heads)
}

#[tokio::test]
async fn functions_sharing_a_module_share_its_re_checks() {
    let env = testenv!();
    install_crd(&env).await;
    let ns = env.namespace("scale-share").await.unwrap();
    let (endpoint, heads) = counting_store(examples::read("echo.wasm"));
    create_secret(
        &ns,
        "store",
        &[
            ("AWS_ENDPOINT_URL", endpoint.as_str()),
            ("AWS_ALLOW_HTTP", "true"),
            ("AWS_REGION", "us-east-1"),
        ],
    )
    .await;
    let _op = Operator::start(&env, &ns);
    let spec = serde_json::json!({
        "module": { "url": "s3://fns/echo.wasm", "credentialsSecret": "store" }
    });
    for i in 0..20 {
        create_function(&ns, &format!("f{i}"), spec.clone()).await;
    }
    for i in 0..20 {
        wait_condition(&ns, &format!("f{i}"), "ModuleValid", |c| c.1 == "Checked").await;
    }
    // Three re-check periods of 2 s: 20 functions asking alone would be 60.
    // A version is shared for 1.8 s and asked once however many checks
    // want it together, so asks are 1.8 s apart at least.
    let started = std::time::Instant::now();
    let before = heads.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(6)).await;
    let asked = heads.load(Ordering::SeqCst) - before;
    let window = started.elapsed().as_secs_f64();
    let most = (window / 1.8).floor() as usize + 1;
    eprintln!("HEAD requests in {window:.1} s for 20 functions: {asked} (at most {most})");
    assert!(asked <= most, "{asked} HEAD requests in {window:.1} s");
}

#[tokio::test]
async fn a_function_at_rest_is_not_rewritten_and_drift_is_repaired() {
    use k8s_openapi::api::apps::v1::Deployment;
    use kube::api::{Patch, PatchParams};
    use nur_operator::crd::NurFunction;
    let env = testenv!();
    install_crd(&env).await;
    let ns = env.namespace("scale-rest").await.unwrap();
    let url = upload(&env, &ns, "echo.wasm", examples::read("echo.wasm")).await;
    let op = Operator::start(&env, &ns);
    create_function(&ns, "calm", serde_json::json!({ "module": { "url": url } })).await;
    wait_condition(&ns, "calm", "Ready", |c| c.0 == "True").await;
    // Settled: no apply and no status write for a re-check period.
    let settled = || async {
        let applies = metric(&op, "nur_operator_applies_total");
        let f = ns.api::<NurFunction>().get("calm").await.unwrap();
        (applies, f.metadata.resource_version)
    };
    let last = std::cell::RefCell::new(settled().await);
    let (last_seen, settled) = (&last, &settled);
    nur_testkit::eventually("the function at rest", T, move || async move {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let now = settled().await;
        (last_seen.replace(now.clone()) == now).then_some(())
    })
    .await
    .unwrap();
    // Three re-check periods of 2 s with nothing changing: no apply, and
    // the function itself (its status) is not written.
    let applies = metric(&op, "nur_operator_applies_total");
    let version = |f: NurFunction| f.metadata.resource_version.unwrap();
    let before = version(ns.api::<NurFunction>().get("calm").await.unwrap());
    let reconciles = metric(&op, "nur_operator_reconciles_total");
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert!(metric(&op, "nur_operator_reconciles_total") >= reconciles + 2.0);
    assert_eq!(metric(&op, "nur_operator_applies_total"), applies);
    assert_eq!(
        version(ns.api::<NurFunction>().get("calm").await.unwrap()),
        before
    );
    // Someone scales the Deployment by hand: it is applied again.
    let patch = serde_json::json!({ "spec": { "replicas": 4 } });
    ns.api::<Deployment>()
        .patch("calm", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    nur_testkit::eventually("replicas restored", T, || async {
        let d = ns.api::<Deployment>().get("calm").await.ok()?;
        (d.spec?.replicas == Some(1)).then_some(())
    })
    .await
    .unwrap();
    assert!(metric(&op, "nur_operator_applies_total") > applies);
}
