//! `nur-operator run`: the NurFunction controller; `nur-operator crd`: the
//! CRD YAML.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use k8s_openapi::api::core::v1::ResourceRequirements;
use nur_operator::controller::{self, DEFAULT_WORKER_IMAGE};
use nur_operator::health::{self, Metrics};
use nur_operator::leader::{Elector, LeaseConfig};

#[derive(Parser)]
#[command(name = "nur-operator", version, about = "The NurFunction operator")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once at start
enum Command {
    /// Print the NurFunction CustomResourceDefinition as YAML.
    Crd,
    /// Run the controller (kubeconfig or in-cluster credentials; object-store
    /// credentials from the environment, e.g. AWS_*).
    Run {
        /// Worker image for functions that do not set spec.image.
        #[arg(long, env = "NUR_WORKER_IMAGE", default_value = DEFAULT_WORKER_IMAGE)]
        worker_image: String,
        /// Worker container resources (JSON, as in a pod spec) for functions
        /// that do not set spec.resources, e.g.
        /// '{"requests":{"cpu":"100m","memory":"64Mi"}}' [default: none].
        #[arg(long, env = "NUR_WORKER_RESOURCES", value_parser = resources)]
        worker_resources: Option<ResourceRequirements>,
        /// Watch only this namespace [default: all namespaces].
        #[arg(long, env = "NUR_WATCH_NAMESPACE")]
        namespace: Option<String>,
        /// Seconds between re-checks of every function's module.
        #[arg(long, env = "NUR_RECHECK_SECONDS", default_value_t = 60)]
        recheck_seconds: u64,
        /// Where /healthz, /readyz and /metrics are served.
        #[arg(long, env = "NUR_HEALTH_LISTEN", default_value = "0.0.0.0:8081")]
        health_listen: SocketAddr,
        /// Reconcile only while holding the leader Lease.
        #[arg(long, env = "NUR_LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
        leader_election: bool,
        /// Name of the leader Lease.
        #[arg(long, env = "NUR_LEASE_NAME", default_value = "nur-operator")]
        lease_name: String,
        /// Namespace of the leader Lease [default: --namespace, else POD_NAMESPACE, else default].
        #[arg(long, env = "NUR_LEASE_NAMESPACE")]
        lease_namespace: Option<String>,
        /// Seconds a Lease stays held without renewal.
        #[arg(long, env = "NUR_LEASE_SECONDS", default_value_t = 15)]
        lease_seconds: u64,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Crd => {
            print!("{}", nur_operator::crd::crd_yaml());
            Ok(())
        }
        Command::Run {
            worker_image,
            worker_resources,
            namespace,
            recheck_seconds,
            health_listen,
            leader_election,
            lease_name,
            lease_namespace,
            lease_seconds,
        } => {
            tracing_subscriber::fmt()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_env("NUR_LOG")
                        .unwrap_or_else(|_| "info".into()),
                )
                .with_writer(std::io::stderr)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                .init();
            let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
            let metrics = Arc::new(Metrics::default());
            let listener = tokio::net::TcpListener::bind(health_listen)
                .await
                .with_context(|| format!("bind {health_listen}"))?;
            tracing::info!(addr = %listener.local_addr()?, "admin endpoints");
            tokio::spawn(health::serve(listener, metrics.clone()));
            let client = kube::Client::try_default()
                .await
                .context("connect to the Kubernetes API")?;
            client
                .apiserver_version()
                .await
                .context("reach the Kubernetes API")?;
            metrics.ready.store(true, Ordering::Relaxed);
            let lease = LeaseConfig {
                namespace: lease_namespace
                    .or_else(|| namespace.clone())
                    .or_else(|| std::env::var("POD_NAMESPACE").ok())
                    .unwrap_or_else(|| "default".into()),
                name: lease_name,
                identity: std::env::var("POD_NAME").unwrap_or_else(|_| {
                    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "nur-operator".into());
                    format!("{host}-{}", std::process::id())
                }),
                duration: Duration::from_secs(lease_seconds.max(1)),
            };
            let config = controller::Config {
                worker_image,
                worker_resources,
                namespace,
                recheck: Duration::from_secs(recheck_seconds.max(1)),
            };
            tracing::info!(?config, "nur-operator starting");
            if !leader_election {
                metrics.leader.store(true, Ordering::Relaxed);
                controller::run(client, config, metrics).await;
                return Ok(());
            }
            let elector = Elector::new(client.clone(), lease);
            elector.acquire().await?;
            metrics.leader.store(true, Ordering::Relaxed);
            tokio::select! {
                () = controller::run(client, config, metrics.clone()) => {
                    elector.release().await?;
                    Ok(())
                }
                lost = elector.hold() => {
                    metrics.leader.store(false, Ordering::Relaxed);
                    Err(lost.into())
                }
            }
        }
    }
}

/// Parses `--worker-resources`.
fn resources(json: &str) -> Result<ResourceRequirements, String> {
    let value: serde_json::Value = serde_json::from_str(json).map_err(|e| e.to_string())?;
    let parsed: ResourceRequirements = serde_json::from_value(value.clone())
        .map_err(|e| format!("not a ResourceRequirements object: {e}"))?;
    // serde skips unknown keys: a misspelt "request" would be lost silently.
    if serde_json::to_value(&parsed).map_err(|e| e.to_string())? != value {
        return Err(format!(
            "{json}: only claims, limits and requests, with quantities as strings"
        ));
    }
    Ok(parsed)
}
