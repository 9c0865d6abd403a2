//! Storage misbehaving while the operator re-checks a function's module:
//! MinIO going away and coming back (with a new upload meanwhile), the
//! object replaced in the middle of a download, a corrupt zstd upload. The
//! outages are played by a proxy in front of the test environment's MinIO,
//! which other tests share. The Deployment is never torn down nor pinned to
//! anything but the digest of a whole object; the status says what happened.
//! Setup as in cluster.rs: the real `nur-operator` scoped to a namespace.

mod support;

use std::collections::BTreeSet;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::events::v1::Event;
use kube::api::{ListParams, PostParams};
use nur_operator::crd::NurFunction;
use nur_testkit::examples;
use nur_testkit::store::{self, Proxy};
use nur_testkit::{TestEnv, TestNamespace, eventually, testenv};
use support::{Operator, T, install_crd};

/// `nur-operator run` for `ns`, re-checking every 2 s, its S3 endpoint
/// moved to `storage`.
fn start_operator(env: &TestEnv, ns: &TestNamespace, storage: &Proxy) -> Operator {
    let endpoint = storage.url();
    let extra = [("AWS_ENDPOINT_URL", endpoint.as_str())];
    Operator::start_with_env(env, ns, "op", &env.kubeconfig(), &extra)
}

async fn module_valid(ns: &TestNamespace, name: &str) -> Option<(String, String, String)> {
    let f = ns.api::<NurFunction>().get(name).await.ok()?;
    let c = f
        .status?
        .conditions
        .into_iter()
        .find(|c| c.type_ == "ModuleValid")?;
    Some((c.status, c.reason, c.message))
}

/// The digest the status reports.
async fn status_digest(ns: &TestNamespace, name: &str) -> Option<String> {
    let f = ns.api::<NurFunction>().get(name).await.ok()?;
    Some(f.status?.module?.digest)
}

/// The `--sha256` the Deployment's pods are started with.
async fn pinned(ns: &TestNamespace, name: &str) -> Option<String> {
    let d = ns.api::<Deployment>().get_opt(name).await.ok()??;
    let args = d.spec?.template.spec?.containers.first()?.args.clone()?;
    let i = args.iter().position(|a| a == "--sha256")?;
    args.get(i + 1).cloned()
}

/// Waits until the Deployment is pinned to `sha256`, the status reports it
/// and ModuleValid is True.
async fn rolled_to(ns: &TestNamespace, name: &str, sha256: &str) {
    eventually(&format!("rolled to {sha256}"), T, || async move {
        let valid = module_valid(ns, name).await?;
        let digest = status_digest(ns, name).await?;
        let ok = pinned(ns, name).await? == sha256
            && digest == format!("sha256:{sha256}")
            && valid.0 == "True";
        ok.then_some(())
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn storage_outages_and_replacements_while_the_operator_rechecks() {
    let env = testenv!();
    install_crd(&env).await;
    let ns = env.namespace("op-storage-chaos").await.unwrap();
    let key = format!("operator/{}/fn.wasm", ns.name());
    let url = format!("s3://{}/{key}", env.bucket());
    let modules = ["echo.wasm", "http-hello.wasm", "c-hello.wasm"].map(examples::read);
    let digests = modules.clone().map(|m| nur_module::sha256_hex(&m));
    store::put(&env, &key, modules[0].clone()).await;
    let storage = Proxy::start(env.s3_endpoint().trim_start_matches("http://"));
    let _operator = start_operator(&env, &ns, &storage);
    let f: NurFunction = serde_json::from_value(serde_json::json!({
        "apiVersion": "nur.dev/v1alpha1",
        "kind": "NurFunction",
        "metadata": { "name": "chaos" },
        "spec": { "module": { "url": url } },
    }))
    .unwrap();
    eventually("NurFunction created", T, || {
        let (api, f) = (ns.api::<NurFunction>(), f.clone());
        async move { api.create(&PostParams::default(), &f).await.ok() }
    })
    .await
    .unwrap();
    rolled_to(&ns, "chaos", &digests[0]).await;

    // MinIO stops: the re-check says so, and the Deployment stays as it was.
    storage.set_down(true);
    let (_, _, message) = eventually("ModuleValid=Unknown", T, || async {
        let valid = module_valid(&ns, "chaos").await?;
        (valid.0 == "Unknown" && valid.1 == "StorageUnreachable").then_some(valid)
    })
    .await
    .unwrap();
    assert!(message.contains(&url), "{message}");
    assert_eq!(pinned(&ns, "chaos").await, Some(digests[0].clone()));
    // A new upload while it is down; once it is back, the new module rolls.
    store::put(&env, &key, modules[1].clone()).await;
    storage.set_down(false);
    rolled_to(&ns, "chaos", &digests[1]).await;

    // An upload, replaced by another in the middle of the re-check's
    // download: that download fails, the next one rolls the last object, whole.
    let (replacing, key2, next) = (env.clone(), key.clone(), modules[2].clone());
    storage.cut_response_after(8000, move || {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(store::put(&replacing, &key2, next));
    });
    store::put(&env, &key, modules[0].clone()).await;
    eventually("the cut download", T, || async {
        storage.cut_done().then_some(())
    })
    .await
    .unwrap();
    rolled_to(&ns, "chaos", &digests[2]).await;

    // A corrupt zstd upload is refused by name; the pods keep the last good module.
    let mut corrupt = zstd_frame_start();
    corrupt.extend_from_slice(&[0xff; 64]);
    store::put(&env, &key, corrupt).await;
    let (_, reason, message) = eventually("ModuleValid=False", T, || async {
        let valid = module_valid(&ns, "chaos").await?;
        (valid.0 == "False").then_some(valid)
    })
    .await
    .unwrap();
    assert_eq!(reason, "InvalidModule");
    assert!(
        message.contains(&format!("{url}: corrupt zstd data")),
        "{message}"
    );
    assert_eq!(pinned(&ns, "chaos").await, Some(digests[2].clone()));

    // Every rollout announced was to the digest of a whole object.
    let events = ns
        .api::<Event>()
        .list(&ListParams::default())
        .await
        .unwrap();
    let rolled: BTreeSet<String> = events
        .items
        .iter()
        .filter(|e| e.reason.as_deref() == Some("ModuleRollout"))
        .filter_map(|e| e.note.clone())
        .collect();
    assert!(!rolled.is_empty());
    for note in &rolled {
        assert!(
            digests
                .iter()
                .any(|d| note.contains(&format!("sha256:{d}"))),
            "a rollout to an unknown digest: {note}"
        );
    }
}

/// The first bytes of a zstd frame: its magic number and a frame header.
fn zstd_frame_start() -> Vec<u8> {
    vec![0x28, 0xb5, 0x2f, 0xfd, 0x24, 0x10]
}
