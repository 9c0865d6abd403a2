//! The `nur-worker` command line: `serve` and `check` (see the crate's lib.rs for its layout).

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};

use nur_worker::admin::{self, Status};
use nur_worker::check;
use nur_worker::config::ServeArgs;
use nur_worker::connection::Context;
use nur_worker::{capacity, server, startup};

#[derive(Parser)]
#[command(
    name = "nur-worker",
    version,
    about = "Serves a Nur WebAssembly function over TCP"
)]
struct Cli {
    /// Log format.
    #[arg(long, global = true, env = "NUR_LOG_FORMAT", default_value = "text")]
    log_format: LogFormat,

    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the function: a fresh instance for every TCP connection.
    Serve(Box<ServeArgs>),
    /// Check a module against the Nur ABI and print a summary.
    Check {
        /// The module: a path or URL (file, s3, gs, az, http(s)) to .wasm, .wasm.zst or .wat.
        url: String,
    },
    /// Compile a module ahead of time into an artifact for `serve --artifact`.
    Compile(nur_worker::compile::CompileArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    // The worker provides WASI preview 1 (`nur_worker::wasi`): its imports pass the check.
    nur_module::abi::allow_wasi_preview1();
    match cli.command {
        Command::Check { url } => match check(&url) {
            Ok(summary) => {
                print!("{summary}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {}", causes(&e));
                ExitCode::FAILURE
            }
        },
        Command::Compile(args) => match compile(&args) {
            Ok(line) => {
                println!("{line}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {}", causes(&e));
                ExitCode::FAILURE
            }
        },
        Command::Serve(args) => match serve(*args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!("{}", causes(&e));
                ExitCode::FAILURE
            }
        },
    }
}

/// `e` and its causes, as `{e:#}` prints them, but a cause whose text the
/// error before it already ends with is not repeated (a module's
/// `LoadError` names its `AbiError`, which is also its source).
fn causes(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.ends_with(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("NUR_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

fn check(url: &str) -> anyhow::Result<String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let module = runtime.block_on(nur_module::load(url))?;
    Ok(check::summary(&module))
}

fn compile(args: &nur_worker::compile::CompileArgs) -> anyhow::Result<String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(nur_worker::compile::run(args))
}

fn serve(mut args: ServeArgs) -> anyhow::Result<()> {
    capacity::clamp_open(&mut args.limits);
    let limits = &args.limits;
    // --max-connections is clamped once the module is known; never above this.
    let threads = limits.max_connections.min(limits.max_open_connections) as usize + 4;
    // One runtime thread more than CPUs: all but one may run guests in
    // place (`nur_worker::spare`), so as many guests as CPUs skip the
    // hand-off to the blocking pool, and the one kept back mostly sleeps
    // in the I/O driver (2 on a one-CPU pod).
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get() + 1);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .worker_threads(workers)
        .max_blocking_threads(threads)
        .build()?;
    let result = runtime.block_on(serve_until_drained(args));
    // Connections still running after the grace period end with the process.
    runtime.shutdown_background();
    result
}

async fn serve_until_drained(args: ServeArgs) -> anyhow::Result<()> {
    let status = Status::new();
    let admin = TcpListener::bind(args.admin_listen)
        .await
        .with_context(|| format!("binding the admin address {}", args.admin_listen))?;
    let admin_addr = admin.local_addr()?;
    tokio::spawn(admin::serve(admin, status.clone()));

    let Some(prepared) = startup::prepare(&args, terminated()).await? else {
        return Ok(());
    };
    status
        .metrics
        .compile_seconds
        .set(prepared.took.as_secs_f64());
    let (function, limits) = (prepared.function, prepared.limits);

    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    tracing::info!(
        function = %function.name,
        listen = %listener.local_addr()?,
        admin = %admin_addr,
        native_code = prepared.origin.as_str(),
        load_ms = prepared.took.as_millis() as u64,
        max_connections = limits.max_connections,
        max_open_connections = limits.max_open_connections,
        "serving"
    );
    status.watch_deadlines(function.deadlines().clone());
    let ctx = Arc::new(Context {
        function: Arc::new(function),
        limits: limits.clone(),
        status: status.clone(),
    });
    status.set_ready(true);
    let drain_delay = args.drain_delay;
    let shutdown = async {
        terminated().await;
        status.start_draining();
        if !drain_delay.is_zero() {
            tracing::info!(
                drain_delay_ms = drain_delay.as_millis() as u64,
                "shutting down: not ready, still accepting for the drain delay"
            );
            tokio::time::sleep(drain_delay).await;
        }
        tracing::info!("shutting down: not ready, no new connections, draining");
    };
    let max = limits.max_open_connections;
    let permits = server::run(listener, ctx, max, shutdown).await;
    if server::drain(&permits, max, args.shutdown_grace).await {
        tracing::info!("drained");
    } else {
        let left = max as usize - permits.available_permits();
        tracing::warn!(
            connections = left,
            "grace period over, closing what is left"
        );
    }
    Ok(())
}

/// Completes on SIGTERM or SIGINT.
async fn terminated() {
    let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("installing a SIGINT handler");
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
}
