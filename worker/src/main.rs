//! The `nur-worker` command line: `serve` and `check` (see the crate's lib.rs for its layout).

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};

use nur_worker::admin::{self, Status};
use nur_worker::check;
use nur_worker::config::{DEFAULT_MAX_OPEN_CONNECTIONS, Limits, ServeArgs};
use nur_worker::connection::Context;
use nur_worker::guest::Function;
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
    Compile {
        /// The module: a path or URL (file, s3, gs, az, http(s)) to .wasm, .wasm.zst or .wat.
        url: String,
        /// Where to write the artifact.
        #[arg(short, long)]
        output: std::path::PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    match cli.command {
        Command::Check { url } => match check(&url) {
            Ok(summary) => {
                print!("{summary}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::Compile { url, output } => match compile(&url, &output) {
            Ok(line) => {
                println!("{line}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::Serve(args) => match serve(*args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!("{e:#}");
                ExitCode::FAILURE
            }
        },
    }
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

fn compile(url: &str, output: &std::path::Path) -> anyhow::Result<String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let module = runtime.block_on(nur_module::load(url))?;
    let engine = Function::engine(&nur_worker::config::Limits::default());
    let (compiled, took) = Function::compile(&engine, &module)?;
    let bytes = nur_worker::artifact::encode(&engine, &module.sha256, &compiled)?;
    std::fs::write(output, &bytes).with_context(|| format!("writing {}", output.display()))?;
    Ok(format!(
        "{}: {} bytes, sha256 {} (module sha256 {}, compiled in {} ms)",
        output.display(),
        bytes.len(),
        nur_module::sha256_hex(&bytes),
        module.sha256,
        took.as_millis()
    ))
}

fn serve(mut args: ServeArgs) -> anyhow::Result<()> {
    let nofile = capacity::raise_nofile();
    let limits = &mut args.limits;
    let open = capacity::open_connections(limits.max_open_connections, nofile);
    if open < limits.max_open_connections
        && limits.max_open_connections != DEFAULT_MAX_OPEN_CONNECTIONS
    {
        tracing::warn!(
            requested = limits.max_open_connections,
            open,
            nofile,
            "--max-open-connections lowered to what RLIMIT_NOFILE allows"
        );
    }
    limits.max_open_connections = open;
    // --max-connections is clamped once the module is known; never above this.
    let threads = limits.max_connections.min(open) as usize + 4;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(threads)
        .build()?;
    let result = runtime.block_on(serve_until_drained(args));
    // Connections still running after the grace period end with the process.
    runtime.shutdown_background();
    result
}

/// Lowers `--max-connections` to what `vm.max_map_count` allows for live
/// instances of `module` (one memory, its tables) and to `--max-open-connections`.
fn clamp_active(limits: &mut Limits, module: &nur_module::Module) {
    let maps = capacity::max_map_count();
    let per_active = capacity::maps_per_active(1, module.summary.tables.len() as u64);
    let active = capacity::active_connections(
        limits.max_connections,
        maps,
        limits.max_open_connections,
        per_active,
    );
    if active < limits.max_connections {
        tracing::warn!(
            requested = limits.max_connections,
            active,
            max_map_count = maps,
            maps_per_connection = per_active,
            "--max-connections lowered to what vm.max_map_count and --max-open-connections allow"
        );
    }
    limits.max_connections = active;
}

/// Warns when the instances at once, each up to `--memory-limit`, can use
/// more memory than this process's cgroup allows: the kernel would OOM-kill
/// the worker, and every connection with it.
fn warn_if_above_cgroup(limits: &Limits) {
    let Some(cgroup) = capacity::cgroup_memory_limit() else {
        return;
    };
    let instances = u64::from(limits.max_connections).saturating_mul(limits.memory_limit);
    if instances > cgroup {
        tracing::warn!(
            max_connections = limits.max_connections,
            memory_limit = limits.memory_limit,
            cgroup_memory_limit = cgroup,
            "--max-connections x --memory-limit ({instances} bytes) is above the cgroup's memory \
             limit ({cgroup} bytes): guests together can get the worker OOM-killed; lower either \
             flag or raise the limit"
        );
    }
}

async fn serve_until_drained(mut args: ServeArgs) -> anyhow::Result<()> {
    let status = Status::new();
    let admin = TcpListener::bind(args.admin_listen)
        .await
        .with_context(|| format!("binding the admin address {}", args.admin_listen))?;
    let admin_addr = admin.local_addr()?;
    tokio::spawn(admin::serve(admin, status.clone()));

    let module = tokio::select! {
        module = startup::load_module(&args.module, args.static_credentials) => module?,
        () = terminated() => return Ok(()),
    };
    startup::verify_digest(&args.module, &module.sha256, args.sha256.as_deref())?;
    clamp_active(&mut args.limits, &module);
    warn_if_above_cgroup(&args.limits);
    let name = args
        .function_name
        .clone()
        .unwrap_or_else(|| function_name(&args.module));
    let (function, origin, took) = startup::function(&args, &module, &name).await?;
    status.metrics.compile_seconds.set(took.as_secs_f64());

    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    tracing::info!(
        function = %function.name,
        listen = %listener.local_addr()?,
        admin = %admin_addr,
        native_code = origin.as_str(),
        load_ms = took.as_millis() as u64,
        max_connections = args.limits.max_connections,
        max_open_connections = args.limits.max_open_connections,
        "serving"
    );
    status.watch_deadlines(function.deadlines().clone());
    let ctx = Arc::new(Context {
        function: Arc::new(function),
        limits: args.limits.clone(),
        status: status.clone(),
    });
    status.set_ready(true);
    let drain_delay = args.drain_delay;
    let shutdown = async {
        terminated().await;
        status.set_ready(false);
        if !drain_delay.is_zero() {
            tracing::info!(
                drain_delay_ms = drain_delay.as_millis() as u64,
                "shutting down: not ready, still accepting for the drain delay"
            );
            tokio::time::sleep(drain_delay).await;
        }
        tracing::info!("shutting down: not ready, no new connections, draining");
    };
    let max = args.limits.max_open_connections;
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

/// `examples/build/echo.wasm` -> `echo`.
fn function_name(url: &str) -> String {
    let file = url.rsplit('/').next().unwrap_or(url);
    file.split('.')
        .next()
        .filter(|s| !s.is_empty())
        .unwrap_or("function")
        .to_string()
}
