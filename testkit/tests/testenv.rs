// One file on purpose: each test proves one piece of the same test environment, and they share its setup.
//! Proves the test environment is the real thing: a kube-apiserver with RBAC,
//! CRDs and subresources, a controller-manager that turns Deployments into
//! ReplicaSets and garbage-collects them, ServiceAccount tokens, MinIO, kubectl
//! and helm. Needs `make testenv`; see nur_testkit for the skip rules.

use std::time::Duration;

use bytes::Bytes;
use nur_testkit::k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use nur_testkit::k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use nur_testkit::k8s_openapi::api::core::v1::{ConfigMap, Pod};
use nur_testkit::k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use nur_testkit::kube::api::{
    ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams,
    PostParams,
};
use nur_testkit::kube::{self, Api};
use nur_testkit::object_store::{ObjectStoreExt, PutPayload, path::Path};
use nur_testkit::{eventually, testenv};
use serde_json::json;

const T: Duration = Duration::from_secs(60);

fn from_json<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
    serde_json::from_value(v).expect("valid object")
}

#[tokio::test]
async fn apiserver_version_via_client_and_kubectl() {
    let env = testenv!();
    let client = env.client().await.unwrap();
    let v = client.apiserver_version().await.unwrap();
    assert_eq!(v.major, "1");
    assert!(v.minor.starts_with("36"), "minor {}", v.minor);

    let out = env
        .kubectl()
        .args(["get", "--raw", "/version"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let body: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(body["gitVersion"], v.git_version);
}

#[tokio::test]
async fn crd_with_structural_schema_status_and_scale() {
    let env = testenv!();
    let client = env.client().await.unwrap();
    let ns = env.namespace("crd").await.unwrap();

    let crd: CustomResourceDefinition = from_json(json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": { "name": "widgets.testenv.nur.dev" },
        "spec": {
            "group": "testenv.nur.dev",
            "names": { "kind": "Widget", "plural": "widgets", "singular": "widget", "shortNames": ["wdg"] },
            "scope": "Namespaced",
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "subresources": {
                    "status": {},
                    "scale": { "specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas" }
                },
                "schema": { "openAPIV3Schema": {
                    "type": "object",
                    "properties": {
                        "spec": {
                            "type": "object",
                            "required": ["message"],
                            "properties": {
                                "message": { "type": "string" },
                                "replicas": { "type": "integer", "minimum": 0, "default": 1 }
                            }
                        },
                        "status": {
                            "type": "object",
                            "properties": { "replicas": { "type": "integer" } }
                        }
                    }
                }}
            }]
        }
    }));
    nur_testkit::crd::install(&env, &crd, "nur-testkit", T)
        .await
        .unwrap();

    let gvk = GroupVersionKind::gvk("testenv.nur.dev", "v1", "Widget");
    let ar = ApiResource::from_gvk_with_plural(&gvk, "widgets");
    let widgets: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns.name(), &ar);

    // Server-side apply of an instance; the schema default fills replicas.
    let w = json!({
        "apiVersion": "testenv.nur.dev/v1", "kind": "Widget",
        "metadata": { "name": "w1" },
        "spec": { "message": "hello" }
    });
    // CRDs can take a moment to be served after Established.
    let applied = eventually("Widget apply", T, || {
        let widgets = widgets.clone();
        let w = w.clone();
        async move {
            widgets
                .patch("w1", &PatchParams::apply("nur-testkit"), &Patch::Apply(&w))
                .await
                .ok()
        }
    })
    .await
    .unwrap();
    assert_eq!(applied.data["spec"]["replicas"], 1, "{applied:?}");

    // The structural schema rejects a wrong type and a missing field.
    for bad in [
        json!({ "apiVersion": "testenv.nur.dev/v1", "kind": "Widget",
                "metadata": { "name": "bad1" }, "spec": { "message": "x", "replicas": "two" } }),
        json!({ "apiVersion": "testenv.nur.dev/v1", "kind": "Widget",
                "metadata": { "name": "bad2" }, "spec": { "replicas": 2 } }),
    ] {
        let obj: DynamicObject = from_json(bad);
        match widgets.create(&PostParams::default(), &obj).await {
            Err(kube::Error::Api(s)) => assert_eq!(s.code, 422, "{s:?}"),
            other => panic!("invalid Widget was not rejected: {other:?}"),
        }
    }

    // Status subresource: a status patch is kept, a status change through
    // the main resource is ignored.
    widgets
        .patch_status(
            "w1",
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": { "replicas": 1 } })),
        )
        .await
        .unwrap();
    let got = widgets.get("w1").await.unwrap();
    assert_eq!(got.data["status"]["replicas"], 1);

    // Scale subresource.
    let scale = widgets.get_scale("w1").await.unwrap();
    assert_eq!(scale.spec.and_then(|s| s.replicas), Some(1));
    widgets
        .patch_scale(
            "w1",
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": { "replicas": 3 } })),
        )
        .await
        .unwrap();
    let got = widgets.get("w1").await.unwrap();
    assert_eq!(got.data["spec"]["replicas"], 3);

    // And kubectl sees it through discovery, short name included.
    let out = env
        .kubectl()
        .args([
            "get",
            "wdg",
            "w1",
            "-n",
            ns.name(),
            "-o",
            "jsonpath={.spec.message}",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello");
}

#[tokio::test]
async fn deployment_gets_replicaset_and_owner_delete_garbage_collects() {
    let env = testenv!();
    let ns = env.namespace("gc").await.unwrap();
    let deployments: Api<Deployment> = ns.api();
    let replicasets: Api<ReplicaSet> = ns.api();
    let pods: Api<Pod> = ns.api();

    let d: Deployment = from_json(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": { "name": "web" },
        "spec": {
            "replicas": 2,
            "selector": { "matchLabels": { "app": "web" } },
            "template": {
                "metadata": { "labels": { "app": "web" } },
                "spec": { "containers": [{ "name": "c", "image": "nur.invalid/none:1" }] }
            }
        }
    }));
    let d = deployments
        .create(&PostParams::default(), &d)
        .await
        .unwrap();
    let uid = d.metadata.uid.clone().unwrap();

    let rs = eventually("ReplicaSet owned by the Deployment", T, || {
        let replicasets = replicasets.clone();
        let uid = uid.clone();
        async move {
            let list = replicasets.list(&ListParams::default()).await.ok()?;
            list.items.into_iter().find(|rs| {
                rs.metadata
                    .owner_references
                    .iter()
                    .flatten()
                    .any(|o| o.uid == uid && o.controller == Some(true))
            })
        }
    })
    .await
    .unwrap();
    let rs_uid = rs.metadata.uid.clone().unwrap();

    // The ReplicaSet controller creates the pods (they stay Pending: no kubelet).
    eventually("2 pods owned by the ReplicaSet", T, || {
        let pods = pods.clone();
        let rs_uid = rs_uid.clone();
        async move {
            let list = pods.list(&ListParams::default()).await.ok()?;
            let n = list
                .items
                .iter()
                .filter(|p| {
                    p.metadata
                        .owner_references
                        .iter()
                        .flatten()
                        .any(|o| o.uid == rs_uid)
                })
                .count();
            (n == 2).then_some(())
        }
    })
    .await
    .unwrap();

    // With kwok (the default), kube-scheduler binds the pods to the fake
    // node and kwok marks them Running/Ready, so the Deployment becomes
    // available like on a real cluster.
    if env.var("NUR_TESTENV_KWOK") == Some("true") {
        eventually("Deployment readyReplicas == 2", T, || {
            let deployments = deployments.clone();
            async move {
                let d = deployments.get("web").await.ok()?;
                let st = d.status?;
                (st.ready_replicas == Some(2) && st.available_replicas == Some(2)).then_some(())
            }
        })
        .await
        .unwrap();
        let list = pods.list(&ListParams::default()).await.unwrap();
        for p in &list.items {
            let st = p.status.as_ref().unwrap();
            assert_eq!(st.phase.as_deref(), Some("Running"));
            assert_eq!(
                p.spec.as_ref().unwrap().node_name.as_deref(),
                Some("nur-fake-node")
            );
        }
    }

    // Deleting the owner garbage-collects the ReplicaSet and its pods.
    deployments
        .delete("web", &DeleteParams::background())
        .await
        .unwrap();
    eventually("ReplicaSet and pods garbage-collected", T, || {
        let replicasets = replicasets.clone();
        let pods = pods.clone();
        async move {
            let rs = replicasets.list(&ListParams::default()).await.ok()?;
            let p = pods.list(&ListParams::default()).await.ok()?;
            (rs.items.is_empty()
                && p.items
                    .iter()
                    .all(|p| p.metadata.deletion_timestamp.is_some()))
            .then_some(())
        }
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn service_account_without_rights_is_denied() {
    let env = testenv!();
    let admin = env.client().await.unwrap();
    let ns = env.namespace("rbac").await.unwrap();

    // A real token from the TokenRequest API, and a client using only it.
    let sa = env
        .client_for_service_account(&admin, ns.name(), "nobody")
        .await
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(sa.clone(), ns.name());
    match pods.list(&ListParams::default()).await {
        Err(kube::Error::Api(s)) => assert_eq!(s.code, 403, "{s:?}"),
        other => panic!("ServiceAccount without rights listed pods: {other:?}"),
    }

    // The same answer from a SelfSubjectAccessReview made with the token ...
    let review = |sa: kube::Client, ns: String| async move {
        let ssar = SelfSubjectAccessReview {
            spec: SelfSubjectAccessReviewSpec {
                resource_attributes: Some(ResourceAttributes {
                    namespace: Some(ns),
                    verb: Some("list".into()),
                    resource: Some("pods".into()),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        let api: Api<SelfSubjectAccessReview> = Api::all(sa);
        let out = api.create(&PostParams::default(), &ssar).await.unwrap();
        out.status.unwrap().allowed
    };
    assert!(!review(sa.clone(), ns.name().to_string()).await);

    // ... and from `kubectl auth can-i`, as the ServiceAccount.
    let as_sa = format!("system:serviceaccount:{}:nobody", ns.name());
    let can_i = |env: &nur_testkit::TestEnv| {
        let out = env
            .kubectl()
            .args([
                "auth",
                "can-i",
                "list",
                "pods",
                "-n",
                ns.name(),
                "--as",
                &as_sa,
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(can_i(&env), "no");

    // RBAC is really enforced, not AlwaysDeny: grant the right and see it work.
    let role: nur_testkit::k8s_openapi::api::rbac::v1::Role = from_json(json!({
        "metadata": { "name": "pod-reader" },
        "rules": [{ "apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"] }]
    }));
    let binding: nur_testkit::k8s_openapi::api::rbac::v1::RoleBinding = from_json(json!({
        "metadata": { "name": "nobody-reads-pods" },
        "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pod-reader" },
        "subjects": [{ "kind": "ServiceAccount", "name": "nobody", "namespace": ns.name() }]
    }));
    ns.api::<nur_testkit::k8s_openapi::api::rbac::v1::Role>()
        .create(&PostParams::default(), &role)
        .await
        .unwrap();
    ns.api::<nur_testkit::k8s_openapi::api::rbac::v1::RoleBinding>()
        .create(&PostParams::default(), &binding)
        .await
        .unwrap();
    eventually("pods listable after the RoleBinding", T, || {
        let pods = pods.clone();
        async move { pods.list(&ListParams::default()).await.ok() }
    })
    .await
    .unwrap();
    assert!(review(sa, ns.name().to_string()).await);
    assert_eq!(can_i(&env), "yes");
}

#[tokio::test]
async fn object_put_and_get_through_minio() {
    let env = testenv!();
    let store = env.object_store().unwrap();
    let path = Path::from(format!("testkit/{}/hello.txt", std::process::id()));
    let body = Bytes::from_static(b"hello from nur-testkit\n");

    store
        .put(&path, PutPayload::from(body.clone()))
        .await
        .unwrap();
    let got = store.get(&path).await.unwrap();
    assert_eq!(got.meta.size, body.len() as u64);
    assert_eq!(got.bytes().await.unwrap(), body);

    store.delete(&path).await.unwrap();
    assert!(matches!(
        store.get(&path).await,
        Err(nur_testkit::object_store::Error::NotFound { .. })
    ));

    // Wrong credentials are refused: the server checks signatures.
    let bad = env
        .s3_builder(env.bucket())
        .with_secret_access_key("wrong")
        .build()
        .unwrap();
    assert!(bad.put(&path, PutPayload::from_static(b"x")).await.is_err());
}

#[tokio::test]
async fn helm_installs_a_chart_into_the_apiserver() {
    let env = testenv!();
    let ns = env.namespace("helm").await.unwrap();
    let out = env.helm().args(["version", "--short"]).output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("v3."));

    let chart = std::env::temp_dir().join(format!("nur-testkit-chart-{}", std::process::id()));
    std::fs::create_dir_all(chart.join("templates")).unwrap();
    std::fs::write(
        chart.join("Chart.yaml"),
        "apiVersion: v2\nname: probe\nversion: 0.1.0\n",
    )
    .unwrap();
    std::fs::write(chart.join("values.yaml"), "greeting: hi\n").unwrap();
    std::fs::write(
        chart.join("templates/cm.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-cm\ndata:\n  greeting: {{ .Values.greeting | quote }}\n",
    )
    .unwrap();
    let out = env
        .helm()
        .args(["install", "probe"])
        .arg(&chart)
        .args([
            "-n",
            ns.name(),
            "--set",
            "greeting=hello",
            "--wait",
            "--timeout",
            "60s",
        ])
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&chart);
    assert!(
        out.status.success(),
        "helm install: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let cm = ns.api::<ConfigMap>().get("probe-cm").await.unwrap();
    assert_eq!(cm.data.unwrap()["greeting"], "hello");
}
