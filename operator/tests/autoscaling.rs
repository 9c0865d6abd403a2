//! Autoscaling end to end: the HorizontalPodAutoscaler the operator creates
//! scales the function's Deployment on CPU. There is no kubelet in the test
//! environment; its fake metrics API (metrics.k8s.io, see testenv/README.md)
//! reports for each Running pod the CPU usage written in the pod's
//! `testenv.nur.dev/cpu` annotation, and the real HPA controller of
//! kube-controller-manager acts on it.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use nur_operator::crd::NurFunction;
use nur_testkit::{TestEnv, TestNamespace, eventually, testenv};

mod support;
use nur_testkit::examples;
use support::{Operator, install_crd, upload};

/// Bound for each wait; generous for a loaded machine.
const T: Duration = Duration::from_secs(90);
const CPU: &str = "testenv.nur.dev/cpu";

async fn deployment_replicas(ns: &TestNamespace, name: &str) -> Option<i32> {
    ns.api::<Deployment>().get(name).await.ok()?.spec?.replicas
}

/// Sets the CPU usage the metrics API reports for every pod of the function.
async fn set_cpu_usage(ns: &TestNamespace, selector: &str, cpu: &str) -> usize {
    let pods = ns.api::<Pod>();
    let list = pods
        .list(&ListParams::default().labels(selector))
        .await
        .unwrap();
    let patch = serde_json::json!({ "metadata": { "annotations": { CPU: cpu } } });
    for p in &list.items {
        let name = p.metadata.name.as_deref().unwrap();
        pods.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap();
    }
    list.items.len()
}

/// `kubectl top pods -n NS -l SELECTOR`: pod name -> CPU column.
fn kubectl_top(
    env: &TestEnv,
    ns: &TestNamespace,
    selector: &str,
) -> Option<BTreeMap<String, String>> {
    let out = env
        .kubectl()
        .args([
            "top",
            "pods",
            "-n",
            ns.name(),
            "-l",
            selector,
            "--no-headers",
        ])
        .output()
        .unwrap();
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).unwrap();
    Some(
        text.lines()
            .filter_map(|l| {
                let mut f = l.split_whitespace();
                Some((f.next()?.to_string(), f.next()?.to_string()))
            })
            .collect(),
    )
}

#[tokio::test]
async fn hpa_scales_the_deployment_up_on_cpu_and_back_down() {
    let env = testenv!();
    install_crd(&env).await;
    let ns = env.namespace("op-autoscale").await.unwrap();
    let url = upload(&env, &ns, "fn.wasm", examples::read("echo.wasm")).await;
    let _op = Operator::start(&env, &ns);

    let f: NurFunction = serde_json::from_value(serde_json::json!({
        "apiVersion": "nur.dev/v1alpha1",
        "kind": "NurFunction",
        "metadata": { "name": "busy" },
        "spec": {
            "module": { "url": url },
            "autoscaling": { "minReplicas": 1, "maxReplicas": 4, "targetCPUUtilizationPercentage": 50 },
            "resources": { "requests": { "cpu": "100m" } }
        },
    }))
    .unwrap();
    eventually("NurFunction created", T, || {
        let (api, f) = (ns.api::<NurFunction>(), f.clone());
        async move { api.create(&PostParams::default(), &f).await.ok() }
    })
    .await
    .unwrap();

    // The operator's HPA and one Ready pod (kwok), idle.
    eventually("HPA", T, || {
        let api = ns.api::<HorizontalPodAutoscaler>();
        async move { api.get_opt("busy").await.ok()? }
    })
    .await
    .unwrap();
    let d = eventually("1 ready pod", T, || {
        let api = ns.api::<Deployment>();
        async move {
            let d = api.get_opt("busy").await.ok()??;
            (d.status.as_ref()?.ready_replicas == Some(1)).then_some(d)
        }
    })
    .await
    .unwrap();
    let selector = d
        .spec
        .unwrap()
        .selector
        .match_labels
        .unwrap()
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");

    // 400m against a request of 100m: 400%, eight times the 50% target.
    assert_eq!(set_cpu_usage(&ns, &selector, "400m").await, 1);
    let top = eventually("kubectl top shows 400m", T, || {
        let top = kubectl_top(&env, &ns, &selector);
        async move { top.filter(|t| t.values().any(|cpu| cpu == "400m")) }
    })
    .await
    .unwrap();
    assert_eq!(top.len(), 1, "{top:?}");

    let start = Instant::now();
    let up = eventually("Deployment scaled up by the HPA", T, || async {
        deployment_replicas(&ns, "busy").await.filter(|r| *r > 1)
    })
    .await
    .unwrap();
    eprintln!("scaled 1 -> {up} in {:?}", start.elapsed());
    assert!(up <= 4, "{up} replicas, above maxReplicas 4");

    // What `kubectl get hpa` shows: the measured CPU against the target.
    let hpa = ns
        .api::<HorizontalPodAutoscaler>()
        .get("busy")
        .await
        .unwrap();
    let status = hpa.status.unwrap();
    let cpu = status
        .current_metrics
        .iter()
        .flatten()
        .find_map(|m| m.resource.as_ref().filter(|r| r.name == "cpu"))
        .expect("HPA status has a cpu metric");
    let utilization = cpu.current.average_utilization.unwrap();
    assert!(
        utilization > 50,
        "{utilization}% is not above the 50% target"
    );
    let out = env
        .kubectl()
        .args(["get", "hpa", "busy", "-n", ns.name(), "--no-headers"])
        .output()
        .unwrap();
    let line = String::from_utf8(out.stdout).unwrap();
    assert!(
        line.contains("/50%") && !line.contains("<unknown>"),
        "{line}"
    );

    // 400m spread over all pods stays above target: the HPA goes to (and
    // stays at) maxReplicas, and the operator, rechecking every 2 s, leaves
    // the Deployment's replicas to it and reports them.
    eventually("4 replicas in the NurFunction status", T, || async {
        let f = ns.api::<NurFunction>().get("busy").await.ok()?;
        let d = deployment_replicas(&ns, "busy").await?;
        (d == 4 && f.status?.replicas == Some(4)).then_some(())
    })
    .await
    .unwrap();
    let watch = Instant::now();
    while watch.elapsed() < Duration::from_secs(8) {
        assert_eq!(deployment_replicas(&ns, "busy").await, Some(4));
        let f = ns.api::<NurFunction>().get("busy").await.unwrap();
        assert_eq!(f.spec.replicas, None);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // Idle again: back to minReplicas once the downscale stabilization
    // window (5 s in the test environment) has passed.
    let start = Instant::now();
    eventually("usage 0 on all pods", T, || async {
        (set_cpu_usage(&ns, &selector, "0").await == 4).then_some(())
    })
    .await
    .unwrap();
    eventually("Deployment scaled down to 1", T, || async {
        (deployment_replicas(&ns, "busy").await == Some(1)).then_some(())
    })
    .await
    .unwrap();
    eprintln!("scaled 4 -> 1 in {:?}", start.elapsed());
}
