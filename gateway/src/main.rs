//! The `nur-gateway` binary: its flags, logging, the start of the watches
//! and listeners, and the drain on SIGTERM.

use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use nur_gateway::server::{self, Kind};
use nur_gateway::{Shared, admin, http, upstream, watch};

#[derive(Parser)]
#[command(
    name = "nur-gateway",
    version,
    about = "One front door for every Nur function"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Route connections to functions until SIGTERM.
    Run(RunArgs),
}

#[derive(clap::Args)]
struct RunArgs {
    /// Where HTTP/1.1 routes are served.
    #[arg(long, env = "NUR_HTTP_LISTEN", default_value = "0.0.0.0:8000")]
    http_listen: SocketAddr,
    /// Where TLS routes (by server name) are served.
    #[arg(long, env = "NUR_TLS_LISTEN", default_value = "0.0.0.0:8443")]
    tls_listen: SocketAddr,
    /// Where /healthz, /readyz and /metrics are served.
    #[arg(long, env = "NUR_ADMIN_LISTEN", default_value = "0.0.0.0:9091")]
    admin_listen: SocketAddr,
    /// The ports of TCP routes, each listened on (a route outside them is
    /// not taken; the operator's --gateway-tcp-ports must be the same).
    #[arg(long, env = "NUR_TCP_PORTS", default_value = "7000-7009", value_parser = nur_operator::routes::parse_port_range)]
    tcp_ports: RangeInclusive<u16>,
    /// The address the TCP route ports listen on.
    #[arg(long, env = "NUR_TCP_ADDRESS", default_value = "0.0.0.0")]
    tcp_address: IpAddr,
    /// Route only the functions of this namespace [default: all namespaces].
    #[arg(long, env = "NUR_WATCH_NAMESPACE")]
    namespace: Option<String>,
    /// Longest a client may take to send a request head or a ClientHello.
    #[arg(long, env = "NUR_HEADER_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    header_timeout: Duration,
    /// Longest a keep-alive connection waits for its next request.
    #[arg(long, env = "NUR_IDLE_TIMEOUT", default_value = "60s", value_parser = humantime::parse_duration)]
    idle_timeout: Duration,
    /// Most bytes of one HTTP request head (more: 431).
    #[arg(long, env = "NUR_MAX_HEAD_BYTES", default_value_t = 64 * 1024)]
    max_head_bytes: usize,
    /// Longest a connect to a pod may take before the next pod is tried.
    #[arg(long, env = "NUR_CONNECT_TIMEOUT", default_value = "2s", value_parser = humantime::parse_duration)]
    connect_timeout: Duration,
    /// Longest a connection waits for a function with no ready pod (then
    /// 503 for HTTP, a close for TLS and TCP).
    #[arg(long, env = "NUR_WAKE_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    wake_timeout: Duration,
    /// Longest a connection to a pod is kept open, idle, for the next HTTP
    /// request to that pod (keep it below the workers' --idle-timeout); 0s:
    /// a new connection for every request.
    #[arg(long, env = "NUR_UPSTREAM_KEEP_ALIVE", default_value = "4s", value_parser = humantime::parse_duration)]
    upstream_keep_alive: Duration,
    /// How often the activity of functions that scale to zero is written
    /// to them (keep it well below their idleAfter).
    #[arg(long, env = "NUR_ACTIVITY_INTERVAL", default_value = "2s", value_parser = humantime::parse_duration)]
    activity_interval: Duration,
    /// After SIGTERM, not ready but still accepting for this long (so that
    /// Services stop sending here first).
    #[arg(long, env = "NUR_DRAIN_DELAY", default_value = "0s", value_parser = humantime::parse_duration)]
    drain_delay: Duration,
    /// After the drain delay, how long connections in flight may finish.
    #[arg(long, env = "NUR_SHUTDOWN_GRACE", default_value = "30s", value_parser = humantime::parse_duration)]
    shutdown_grace: Duration,
    /// Log lines as text or JSON.
    #[arg(long, env = "NUR_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn main() -> anyhow::Result<()> {
    let Cmd::Run(args) = Cli::parse().command;
    init_logging(args.log_format);
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let runtime = tokio::runtime::Runtime::new()?;
    let result = runtime.block_on(run(args));
    runtime.shutdown_timeout(Duration::from_secs(1));
    result
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

async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    let client = kube::Client::try_default().await.context(
        "connecting to the Kubernetes API (in a pod: its service account; else KUBECONFIG)",
    )?;
    let shared = Shared::new(
        upstream::Dialer {
            connect_timeout: args.connect_timeout,
            wake_timeout: args.wake_timeout,
            keep_alive: args.upstream_keep_alive,
        },
        http::Limits {
            max_head: args.max_head_bytes.max(1024),
            header_timeout: args.header_timeout,
            idle_timeout: args.idle_timeout,
        },
        Some(client.clone()),
    );
    let admin = bind(args.admin_listen).await?;
    tokio::spawn(admin::serve(admin, shared.clone()));
    tokio::spawn(shared.activity.clone().flush_every(args.activity_interval));
    if !args.upstream_keep_alive.is_zero() {
        // Kept connections no request took in time are closed, not left
        // to the pods' idle timeouts.
        let (state, max_idle) = (shared.state.clone(), args.upstream_keep_alive);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(max_idle);
            loop {
                tick.tick().await;
                state.expire_idle(max_idle);
            }
        });
    }
    tokio::spawn(watch::functions(
        client.clone(),
        args.namespace.clone(),
        args.tcp_ports.clone(),
        shared.state.clone(),
    ));
    tokio::spawn(watch::endpoints(
        client,
        args.namespace.clone(),
        shared.state.clone(),
    ));

    let tracker = TaskTracker::new();
    let stop = CancellationToken::new();
    let mut listeners = vec![
        (bind(args.http_listen).await?, Kind::Http),
        (bind(args.tls_listen).await?, Kind::Tls),
    ];
    for port in args.tcp_ports.clone() {
        let addr = SocketAddr::new(args.tcp_address, port);
        listeners.push((bind(addr).await?, Kind::Tcp(port)));
    }
    tracing::info!(
        http = %args.http_listen,
        tls = %args.tls_listen,
        admin = %args.admin_listen,
        tcp_ports = %format!("{}-{}", args.tcp_ports.start(), args.tcp_ports.end()),
        namespace = args.namespace.as_deref().unwrap_or("(all)"),
        "routing"
    );
    let loops: Vec<_> = listeners
        .into_iter()
        .map(|(l, kind)| {
            tokio::spawn(server::accept(
                l,
                kind,
                shared.clone(),
                tracker.clone(),
                stop.clone(),
            ))
        })
        .collect();

    terminated().await;
    shared.stop_serving();
    if !args.drain_delay.is_zero() {
        tracing::info!(
            drain_delay_ms = args.drain_delay.as_millis() as u64,
            "shutting down: not ready, still accepting for the drain delay"
        );
        tokio::time::sleep(args.drain_delay).await;
    }
    tracing::info!("shutting down: no new connections, draining");
    stop.cancel();
    for l in loops {
        let _ = l.await;
    }
    tracker.close();
    if tokio::time::timeout(args.shutdown_grace, tracker.wait())
        .await
        .is_ok()
    {
        tracing::info!("drained");
    } else {
        tracing::warn!(
            connections = tracker.len(),
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
