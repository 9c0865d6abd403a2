//! `nur-operator run`: the NurFunction controller; `nur-operator crd`: the
//! CRD YAML.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use k8s_openapi::api::core::v1::ResourceRequirements;
use nur_operator::controller::{self, DEFAULT_MAX_MODULE_BYTES, DEFAULT_WORKER_IMAGE};
use nur_operator::crd::ServiceType;
use nur_operator::health::{self, Metrics};
use nur_operator::leader::{Elector, LeaseConfig};
use nur_operator::spec_policy::SpecPolicy;

#[derive(Parser)]
#[command(name = "nur-operator", version, about = "The NurFunction operator")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the NurFunction CustomResourceDefinition as YAML.
    Crd,
    /// Run the controller (kubeconfig or in-cluster credentials; object-store
    /// credentials from the environment, e.g. AWS_*).
    Run(Box<RunArgs>),
}

/// `nur-operator run`.
#[derive(clap::Args, Debug)]
struct RunArgs {
    /// Worker image for functions that do not set spec.image.
    #[arg(long, env = "NUR_WORKER_IMAGE", default_value = DEFAULT_WORKER_IMAGE)]
    worker_image: String,
    /// Worker container resources (JSON, as in a pod spec) for functions
    /// that do not set spec.resources, e.g.
    /// '{"requests":{"cpu":"100m","memory":"64Mi"},"limits":{"memory":"512Mi"}}'
    /// [default: none].
    #[arg(long, env = "NUR_WORKER_RESOURCES", value_parser = resources)]
    worker_resources: Option<ResourceRequirements>,
    /// Watch only this namespace [default: all namespaces].
    #[arg(long, env = "NUR_WATCH_NAMESPACE")]
    namespace: Option<String>,
    /// Time between re-checks of every function's module, e.g. 60s or 2m
    /// (a bare number is seconds).
    #[arg(long, alias = "recheck-seconds", env = "NUR_RECHECK", default_value = "60s", value_parser = duration)]
    recheck: Duration,
    /// The gateway's TCP route ports, as nur-gateway's --tcp-ports: a
    /// function's TCP route outside them shows Routed=False.
    #[arg(long, env = "NUR_GATEWAY_TCP_PORTS", default_value = "7000-7009", value_parser = nur_operator::routes::parse_port_range)]
    gateway_tcp_ports: std::ops::RangeInclusive<u16>,
    /// Compile each module digest once, in a Job running `nur-worker
    /// compile` in the function's namespace, store the native code beside
    /// the module and have the pods load it instead of compiling (modules
    /// in object storage whose credentials may write there; otherwise the
    /// pods compile, as without this flag).
    #[arg(long, env = "NUR_COMPILE_ARTIFACTS")]
    compile_artifacts: bool,
    /// Functions reconciled at once.
    #[arg(long, env = "NUR_RECONCILE_CONCURRENCY", default_value_t = nur_operator::controller::DEFAULT_CONCURRENCY, value_parser = clap::value_parser!(u16).range(1..))]
    reconcile_concurrency: u16,
    /// Where /healthz, /readyz and /metrics are served.
    #[arg(long, env = "NUR_HEALTH_LISTEN", default_value = "0.0.0.0:8081")]
    health_listen: SocketAddr,
    /// This replica's name in the Lease and in Events [default: host name and pid].
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    #[command(flatten)]
    storage: StorageArgs,
    #[command(flatten)]
    spec: SpecArgs,
    #[command(flatten)]
    lease: LeaseArgs,
}

/// What module checks may reach, and for how long.
#[derive(clap::Args, Debug)]
struct StorageArgs {
    /// Let module URLs be local paths or file:// URLs, read from the
    /// operator's own filesystem.
    #[arg(long, env = "NUR_ALLOW_FILE_MODULES")]
    allow_file_modules: bool,
    /// Let module URLs and credentials Secrets' endpoints reach loopback and
    /// link-local addresses (the operator's own host, cloud metadata).
    #[arg(long, env = "NUR_ALLOW_LOCAL_STORAGE")]
    allow_local_storage: bool,
    /// Longest storage may keep one request waiting (to connect, to answer,
    /// between two reads).
    #[arg(long, env = "NUR_STORAGE_TIMEOUT", default_value = "5s", value_parser = duration)]
    storage_timeout: Duration,
    /// Longest one function's module check may take with storage in all.
    #[arg(long, env = "NUR_CHECK_TIMEOUT", default_value = "30s", value_parser = duration)]
    check_timeout: Duration,
    /// Largest module the operator checks, as stored and decompressed.
    #[arg(long, env = "NUR_MAX_MODULE_SIZE", default_value_t = DEFAULT_MAX_MODULE_BYTES, value_parser = size)]
    max_module_size: u64,
}

/// Which risky spec fields functions may set.
#[derive(clap::Args, Debug)]
struct SpecArgs {
    /// Let functions pick their worker image with spec.image.
    #[arg(long, env = "NUR_ALLOW_IMAGE_OVERRIDE")]
    allow_image_override: bool,
    /// Service types besides ClusterIP that spec.service.type may ask for
    /// (comma-separated: NodePort, LoadBalancer).
    #[arg(long, env = "NUR_ALLOW_SERVICE_TYPES", value_delimiter = ',', value_parser = service_type)]
    allow_service_types: Vec<ServiceType>,
    /// Let functions set annotations on their Service.
    #[arg(long, env = "NUR_ALLOW_SERVICE_ANNOTATIONS")]
    allow_service_annotations: bool,
}

/// Leader election.
#[derive(clap::Args, Debug)]
struct LeaseArgs {
    /// Reconcile only while holding the leader Lease.
    #[arg(long, env = "NUR_LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    leader_election: bool,
    /// Name of the leader Lease.
    #[arg(long, env = "NUR_LEASE_NAME", default_value = "nur-operator")]
    lease_name: String,
    /// Namespace of the leader Lease [default: --namespace, else POD_NAMESPACE, else default].
    #[arg(long, env = "NUR_LEASE_NAMESPACE")]
    lease_namespace: Option<String>,
    /// How long a Lease stays held without renewal, e.g. 15s (a bare
    /// number is seconds); the leader steps down when it has not renewed
    /// within two thirds of it.
    #[arg(long, alias = "lease-seconds", env = "NUR_LEASE_DURATION", default_value = "15s", value_parser = duration)]
    lease_duration: Duration,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Crd => {
            print!("{}", nur_operator::crd::crd_yaml());
            Ok(())
        }
        Command::Run(args) => run(*args).await,
    }
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    // Modules may use WASI preview 1: the worker of this release serves it.
    nur_module::abi::allow_wasi_preview1();
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
    let listener = tokio::net::TcpListener::bind(args.health_listen)
        .await
        .with_context(|| format!("bind {}", args.health_listen))?;
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
    let identity = args.identity.clone().unwrap_or_else(|| {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "nur-operator".into());
        format!("{host}-{}", std::process::id())
    });
    let lease = LeaseConfig {
        namespace: args
            .lease
            .lease_namespace
            .clone()
            .or_else(|| args.namespace.clone())
            .or_else(|| std::env::var("POD_NAMESPACE").ok())
            .unwrap_or_else(|| "default".into()),
        name: args.lease.lease_name.clone(),
        identity: identity.clone(),
        duration: args.lease.lease_duration.max(Duration::from_secs(1)),
    };
    let config = config(&args);
    tracing::info!(?config, "nur-operator starting");
    if !args.lease.leader_election {
        metrics.set_leader(true);
        controller::run(client, config, metrics, identity).await;
        return Ok(());
    }
    let elector = Elector::new(client.clone(), lease);
    elector.acquire().await?;
    metrics.set_leader(true);
    tokio::select! {
        () = controller::run(client, config, metrics.clone(), identity) => {
            elector.release().await?;
            Ok(())
        }
        lost = elector.hold() => {
            metrics.set_leader(false);
            // Gone at once: nothing may be written after the Lease is lost,
            // and a return would wait for the runtime's blocking tasks (and
            // capture a backtrace when RUST_BACKTRACE is set) first.
            tracing::error!(error = %lost, "stepping down");
            eprintln!("Error: {lost}");
            std::process::exit(1)
        }
    }
}

fn config(args: &RunArgs) -> controller::Config {
    let storage = nur_module::Policy {
        allow_files: args.storage.allow_file_modules,
        allow_local_addresses: args.storage.allow_local_storage,
        timeout: args.storage.storage_timeout,
        max_bytes: args.storage.max_module_size,
        ..controller::Config::tenant_storage()
    };
    controller::Config {
        worker_image: args.worker_image.clone(),
        worker_resources: args.worker_resources.clone(),
        namespace: args.namespace.clone(),
        recheck: args.recheck,
        storage,
        storage_bound: args.storage.check_timeout,
        spec_policy: SpecPolicy {
            allow_image_override: args.spec.allow_image_override,
            service_types: args.spec.allow_service_types.clone(),
            allow_service_annotations: args.spec.allow_service_annotations,
        },
        tcp_ports: args.gateway_tcp_ports.clone(),
        compile_artifacts: args.compile_artifacts,
        concurrency: args.reconcile_concurrency,
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

/// Parses `5s`, `500ms`, `1m`, or a bare number of seconds.
fn duration(text: &str) -> Result<Duration, String> {
    let parsed = match text.parse::<u64>() {
        Ok(seconds) => Ok(Duration::from_secs(seconds)),
        Err(_) => humantime::parse_duration(text),
    };
    match parsed {
        Ok(d) if !d.is_zero() => Ok(d),
        Ok(_) => Err(format!("{text:?}: must be more than zero")),
        Err(e) => Err(format!("{text:?}: {e}")),
    }
}

/// Parses `64Mi`, `1048576`.
fn size(text: &str) -> Result<u64, String> {
    match text.parse::<bytesize::ByteSize>() {
        Ok(b) if b.as_u64() > 0 => Ok(b.as_u64()),
        Ok(_) => Err(format!("{text:?}: must be more than zero")),
        Err(e) => Err(format!("{text:?}: {e}")),
    }
}

/// Parses a Service type of `--allow-service-types`.
fn service_type(text: &str) -> Result<ServiceType, String> {
    match text {
        "ClusterIP" => Ok(ServiceType::ClusterIP),
        "NodePort" => Ok(ServiceType::NodePort),
        "LoadBalancer" => Ok(ServiceType::LoadBalancer),
        other => Err(format!(
            "{other:?}: not a Service type; use NodePort or LoadBalancer"
        )),
    }
}
