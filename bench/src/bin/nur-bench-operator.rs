//! `nur-bench-operator`: the operator at N functions on the test
//! environment (kwok pods, one small module shared by all): how long until
//! every Deployment is pinned and every function Ready, the operator's
//! memory, and the API requests it costs, by verb, from the API server's
//! own metrics, while creating and at steady state. Then the baseline, in
//! the same run: the same Deployments and Services created straight
//! through the API (as `kubectl apply` of N manifests would), without
//! Nur, and the time until every one is ready: what the control plane
//! alone takes for that much work.
//!
//! Needs `make testenv` and a built `nur-operator` (`make bench-operator`
//! builds the release one). Prints one Markdown table.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Parser;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Pod, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Api, Client, CustomResourceExt};
use nur_operator::crd::NurFunction;
use nur_testkit::TestEnv;

#[derive(Parser)]
#[command(about = "The operator at N functions on the test environment")]
struct Args {
    /// Functions to create at once.
    #[arg(long, default_value_t = 1000)]
    functions: usize,
    /// The nur-operator binary.
    #[arg(long, default_value = "target/release/nur-operator")]
    operator: PathBuf,
    /// The operator's re-check period; steady state is measured over two.
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    recheck: Duration,
    /// Give up waiting after this long.
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    timeout: Duration,
}

/// The operator process, killed on drop.
struct Operator(Child);

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Operator {
    /// (VmRSS, VmHWM) in KiB.
    fn rss_kib(&self) -> (u64, u64) {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.0.id())).unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
                .unwrap_or(0)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    /// User and system CPU time so far.
    fn cpu(&self) -> Duration {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.0.id())).unwrap_or_default();
        let fields: Vec<&str> = stat
            .rsplit_once(") ")
            .map_or(vec![], |(_, rest)| rest.split(' ').collect());
        let ticks = |i: usize| {
            fields
                .get(i)
                .and_then(|f| f.parse::<u64>().ok())
                .unwrap_or(0)
        };
        Duration::from_millis((ticks(11) + ticks(12)) * 10)
    }
}

/// `apiserver_request_total` summed by verb, for the resources Nur writes.
async fn requests_by_verb(client: &Client) -> anyhow::Result<BTreeMap<String, f64>> {
    let request = http::Request::get("/metrics").body(Vec::new())?;
    let text = client.request_text(request).await?;
    let mut by_verb = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| l.starts_with("apiserver_request_total{"))
    {
        let label = |name: &str| {
            let start = line.find(&format!("{name}=\""))? + name.len() + 2;
            Some(&line[start..start + line[start..].find('"')?])
        };
        let Some(resource) = label("resource") else {
            continue;
        };
        if !matches!(
            resource,
            "nurfunctions"
                | "deployments"
                | "services"
                | "horizontalpodautoscalers"
                | "poddisruptionbudgets"
                | "secrets"
                | "events"
                | "leases"
        ) {
            continue;
        }
        let verb = label("verb").unwrap_or("?").to_string();
        let value: f64 = line
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        *by_verb.entry(verb).or_insert(0.0) += value;
    }
    Ok(by_verb)
}

fn difference(after: &BTreeMap<String, f64>, before: &BTreeMap<String, f64>) -> String {
    after
        .iter()
        .map(|(verb, n)| (verb, n - before.get(verb).copied().unwrap_or(0.0)))
        .filter(|(_, n)| *n > 0.0)
        .map(|(verb, n)| format!("{verb} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    nur_testkit::install_crypto_provider();
    let env = TestEnv::find().context("the test environment: run `make testenv`")?;
    let client = env.client().await?;
    nur_testkit::crd::install(
        &env,
        &NurFunction::crd(),
        "nur-bench-operator",
        args.timeout,
    )
    .await?;
    quiet_cluster(&client, args.timeout).await?;
    let ns = env.namespace("bench-op").await?;
    let echo = nur_testkit::examples::read("echo.wasm");
    let digest = nur_module::sha256_hex(&echo);
    let url = nur_testkit::store::put(&env, &format!("bench/{}/echo.wasm", ns.name()), echo).await;

    let log = std::env::temp_dir().join(format!("{}-operator.log", ns.name()));
    let operator = Operator(
        Command::new(&args.operator)
            .args(["run", "--namespace", ns.name(), "--allow-local-storage"])
            .args([
                "--recheck",
                &humantime::format_duration(args.recheck).to_string(),
            ])
            .args([
                "--health-listen",
                "127.0.0.1:0",
                "--leader-election",
                "false",
            ])
            .args(["--worker-image", "nur-worker:bench"])
            .envs(env.vars())
            .env("KUBECONFIG", env.kubeconfig())
            .env("NUR_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .with_context(|| format!("starting {}", args.operator.display()))?,
    );

    let before = requests_by_verb(&client).await?;
    let functions: Api<NurFunction> = ns.api();
    let started = Instant::now();
    futures::stream::iter(0..args.functions)
        .map(|i| {
            let functions = functions.clone();
            let url = url.clone();
            async move {
                let f: NurFunction = serde_json::from_value(serde_json::json!({
                    "apiVersion": "nur.dev/v1alpha1", "kind": "NurFunction",
                    "metadata": { "name": format!("f{i}") },
                    "spec": { "module": { "url": url } },
                }))?;
                functions.create(&PostParams::default(), &f).await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(32)
        .try_collect::<Vec<_>>()
        .await?;
    let created = started.elapsed();

    let deployments: Api<Deployment> = ns.api();
    let (mut pinned_at, mut ready_at, mut peak_rss) = (None, None, 0);
    while ready_at.is_none() && started.elapsed() < args.timeout {
        tokio::time::sleep(Duration::from_millis(500)).await;
        peak_rss = peak_rss.max(operator.rss_kib().0);
        if pinned_at.is_none() {
            let pinned = count(&deployments, |d| {
                serde_json::to_string(&d.spec).is_ok_and(|s| s.contains(&digest))
            })
            .await?;
            if pinned == args.functions {
                pinned_at = Some(started.elapsed());
            }
        }
        let ready = count(&functions, |f| {
            f.status.as_ref().is_some_and(|s| {
                s.conditions
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.status == "True")
            })
        })
        .await?;
        if ready == args.functions {
            ready_at = Some(started.elapsed());
        }
    }
    let Some(ready_at) = ready_at else {
        bail!(
            "not every function Ready within {:?}; see {}",
            args.timeout,
            log.display()
        );
    };
    let rollout = requests_by_verb(&client).await?;
    let (_, hwm_rollout) = operator.rss_kib();

    // Steady state: two re-check periods with nothing changing.
    let cpu = operator.cpu();
    tokio::time::sleep(args.recheck * 2).await;
    let steady = requests_by_verb(&client).await?;
    let steady_cpu = operator.cpu() - cpu;
    let (rss, hwm) = operator.rss_kib();
    drop(operator);

    let baseline = baseline(&env, &ns, args.functions, args.timeout).await?;

    println!("| functions | {} |", args.functions);
    println!("|---|---|");
    println!(
        "| created (API calls done) | {:.1} s |",
        created.as_secs_f64()
    );
    match pinned_at {
        Some(t) => println!("| every Deployment pinned | {:.1} s |", t.as_secs_f64()),
        None => println!("| every Deployment pinned | (not seen before Ready) |"),
    }
    println!(
        "| every function Ready (kwok) | {:.1} s |",
        ready_at.as_secs_f64()
    );
    println!(
        "| operator RSS: peak during rollout / peak / at rest | {} / {} / {} MiB |",
        hwm_rollout.max(peak_rss) / 1024,
        hwm / 1024,
        rss / 1024
    );
    println!(
        "| API requests while rolling out (Nur's resources, all clients) | {} |",
        difference(&rollout, &before)
    );
    println!(
        "| API requests in 2 re-check periods of {:?} at steady state | {} |",
        args.recheck,
        difference(&steady, &rollout)
    );
    println!(
        "| operator CPU at steady state | {:.2} s in {:?} |",
        steady_cpu.as_secs_f64(),
        args.recheck * 2
    );
    println!(
        "| baseline: the same Deployments and Services created straight, every one ready | {:.1} s (created in {:.1} s) |",
        baseline.ready.as_secs_f64(),
        baseline.created.as_secs_f64()
    );
    println!(
        "| baseline: API requests (all clients) | {} |",
        baseline.requests
    );
    Ok(())
}

/// Waits until no namespace of an earlier run is left (being deleted, its
/// thousands of objects would load the control plane during this one).
async fn quiet_cluster(client: &Client, timeout: Duration) -> anyhow::Result<()> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let started = Instant::now();
    loop {
        let left = count(&namespaces, |n| {
            n.metadata
                .name
                .as_deref()
                .is_some_and(|n| n.starts_with("nur-test-bench-"))
        })
        .await?;
        if left == 0 {
            return Ok(());
        }
        if started.elapsed() > timeout {
            bail!("{left} namespaces of an earlier run are still there");
        }
        eprintln!("waiting for {left} namespaces of an earlier run to go");
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}

/// How many of `api`'s objects `keep` takes.
async fn count<K>(api: &Api<K>, keep: impl Fn(&K) -> bool) -> anyhow::Result<usize>
where
    K: kube::Resource + Clone + k8s_openapi::serde::de::DeserializeOwned + std::fmt::Debug,
{
    let list = api.list(&ListParams::default()).await?;
    Ok(list.items.iter().filter(|k| keep(k)).count())
}

/// What the control plane alone takes for the same objects.
struct Baseline {
    created: Duration,
    ready: Duration,
    requests: String,
}

/// Copies the Deployments and Services the operator made in `ns`, removes
/// the functions (and, through their owner references, everything they
/// own) and waits until their pods are gone, then creates the copies in a
/// namespace of their own and waits until every Deployment is ready.
async fn baseline(
    env: &TestEnv,
    ns: &nur_testkit::TestNamespace,
    n: usize,
    timeout: Duration,
) -> anyhow::Result<Baseline> {
    let client = env.client().await?;
    let bare = |meta: &ObjectMeta| ObjectMeta {
        name: meta.name.clone(),
        labels: meta.labels.clone(),
        annotations: meta.annotations.clone(),
        ..Default::default()
    };
    let deployments: Vec<Deployment> = ns
        .api::<Deployment>()
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .map(|d| Deployment {
            metadata: bare(&d.metadata),
            spec: d.spec,
            status: None,
        })
        .collect();
    let services: Vec<Service> = ns
        .api::<Service>()
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .map(|s| {
            let mut spec = s.spec.unwrap_or_default();
            if spec.cluster_ip.as_deref() != Some("None") {
                spec.cluster_ip = None;
                spec.cluster_ips = None;
            }
            Service {
                metadata: bare(&s.metadata),
                spec: Some(spec),
                status: None,
            }
        })
        .collect();
    anyhow::ensure!(deployments.len() == n, "{} Deployments", deployments.len());

    // A clean slate: the operator's run removed, its pods gone.
    ns.api::<NurFunction>()
        .delete_collection(&DeleteParams::default(), &ListParams::default())
        .await?;
    let pods: Api<Pod> = ns.api();
    let since = Instant::now();
    while !pods.list(&ListParams::default()).await?.items.is_empty() {
        anyhow::ensure!(since.elapsed() < timeout, "the first run's pods remain");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    let bare_ns = env.namespace("bench-base").await?;
    let before = requests_by_verb(&client).await?;
    let started = Instant::now();
    let (d_api, s_api) = (bare_ns.api::<Deployment>(), bare_ns.api::<Service>());
    futures::stream::iter(deployments.into_iter().zip(services))
        .map(|(d, s)| {
            let (d_api, s_api) = (d_api.clone(), s_api.clone());
            async move {
                d_api.create(&PostParams::default(), &d).await?;
                s_api.create(&PostParams::default(), &s).await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(32)
        .try_collect::<Vec<_>>()
        .await?;
    let created = started.elapsed();
    loop {
        anyhow::ensure!(started.elapsed() < timeout, "baseline not ready");
        tokio::time::sleep(Duration::from_millis(500)).await;
        let ready = count(&d_api, |d| {
            let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
            d.status.as_ref().and_then(|s| s.ready_replicas) == Some(want)
        })
        .await?;
        if ready == n {
            break;
        }
    }
    let ready = started.elapsed();
    let after = requests_by_verb(&client).await?;
    Ok(Baseline {
        created,
        ready,
        requests: difference(&after, &before),
    })
}
