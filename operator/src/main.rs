//! `nur-operator run`: the NurFunction controller; `nur-operator crd`: the
//! CRD YAML.

use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use nur_operator::controller::{self, DEFAULT_WORKER_IMAGE};

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
    Run {
        /// Worker image for functions that do not set spec.image.
        #[arg(long, env = "NUR_WORKER_IMAGE", default_value = DEFAULT_WORKER_IMAGE)]
        worker_image: String,
        /// Watch only this namespace [default: all namespaces].
        #[arg(long, env = "NUR_WATCH_NAMESPACE")]
        namespace: Option<String>,
        /// Seconds between re-checks of every function's module.
        #[arg(long, env = "NUR_RECHECK_SECONDS", default_value_t = 60)]
        recheck_seconds: u64,
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
            namespace,
            recheck_seconds,
        } => {
            tracing_subscriber::fmt()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_env("NUR_LOG")
                        .unwrap_or_else(|_| "info".into()),
                )
                .with_writer(std::io::stderr)
                .init();
            let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
            let client = kube::Client::try_default()
                .await
                .context("connect to the Kubernetes API")?;
            let config = controller::Config {
                worker_image,
                namespace,
                recheck: Duration::from_secs(recheck_seconds.max(1)),
            };
            tracing::info!(?config, "nur-operator starting");
            controller::run(client, config).await;
            Ok(())
        }
    }
}
