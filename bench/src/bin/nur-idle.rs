//! `nur-idle`: holds many idle connections to a server and reports the
//! server's resident memory (VmRSS of `--pid`) before, while they are held,
//! and after they are closed, with the growth per connection.
//!
//! With `--send`, each connection first sends those bytes (e.g. half an HTTP
//! request), so the server holds a live, mid-request connection; without it
//! the connections are silent.
//!
//! With `--then-request`, once everything is measured, every held connection
//! sends those bytes, closes its sending side and reads the answer to EOF,
//! all at once: the server must answer each (`--expect-prefix`), however few
//! it serves at a time. `--source-ips N` spreads the connections over source
//! addresses 127.0.0.1..127.0.0.N, so that more than one address's ephemeral
//! ports (about 28,000) can be open.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::Semaphore;

use nur_bench::{parse_duration, rss_kib, threads};

#[derive(Parser, Debug)]
#[command(
    name = "nur-idle",
    about = "Holds idle connections and reports a server's RSS"
)]
struct Args {
    /// Server address.
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    /// Process id of the server, for /proc/PID/status.
    #[arg(long)]
    pid: u32,
    /// Connections to open and hold.
    #[arg(long, default_value_t = 10_000)]
    conns: usize,
    /// Bytes each connection sends once open (`\r` and `\n` unescaped).
    #[arg(long)]
    send: Option<String>,
    /// Connects in flight at once.
    #[arg(long, default_value_t = 128)]
    parallel: usize,
    /// Wait after the last connect before measuring, and after closing.
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    settle: Duration,
    /// Name of this run in the output.
    #[arg(long, default_value = "idle")]
    label: String,
    /// Spread connections over source addresses 127.0.0.1..127.0.0.N (loopback only).
    #[arg(long, default_value_t = 1)]
    source_ips: u8,
    /// After measuring, send this on every held connection, close the
    /// sending side and read the answer (`\r` and `\n` unescaped).
    #[arg(long)]
    then_request: Option<String>,
    /// What every answer must start with (`\r` and `\n` unescaped).
    #[arg(long, default_value = "")]
    expect_prefix: String,
    /// Longest the request phase may take.
    #[arg(long, default_value = "300s", value_parser = parse_duration)]
    request_timeout: Duration,
}

fn unescape(text: &str) -> Vec<u8> {
    text.replace("\\r", "\r").replace("\\n", "\n").into_bytes()
}

/// Sends `request`, half-closes, reads to EOF; true if the answer starts with `prefix`.
async fn answer(mut stream: TcpStream, request: Arc<Vec<u8>>, prefix: Arc<Vec<u8>>) -> bool {
    if stream.write_all(&request).await.is_err() || stream.shutdown().await.is_err() {
        return false;
    }
    let mut got = Vec::new();
    stream.read_to_end(&mut got).await.is_ok() && !got.is_empty() && got.starts_with(&prefix)
}

async fn open(
    addr: SocketAddr,
    source: Option<std::net::Ipv4Addr>,
    send: Arc<Vec<u8>>,
) -> std::io::Result<TcpStream> {
    let connect = async {
        let mut stream = match source {
            None => TcpStream::connect(addr).await?,
            Some(ip) => {
                let socket = TcpSocket::new_v4()?;
                socket.bind(SocketAddr::from((ip, 0)))?;
                socket.connect(addr).await?
            }
        };
        if !send.is_empty() {
            stream.write_all(&send).await?;
        }
        Ok(stream)
    };
    tokio::time::timeout(Duration::from_secs(10), connect)
        .await
        .map_err(|_| std::io::Error::other("connect timed out"))?
}

/// Counts streams still open: no data and no EOF waiting to be read.
fn still_open(streams: &[TcpStream]) -> (usize, usize) {
    let (mut open, mut answered) = (0, 0);
    let mut byte = [0u8; 1];
    for stream in streams {
        match stream.try_read(&mut byte) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => open += 1,
            Ok(n) if n > 0 => answered += 1,
            _ => {}
        }
    }
    (open, answered)
}

async fn run(args: Args) -> anyhow::Result<()> {
    let send = Arc::new(unescape(args.send.as_deref().unwrap_or("")));
    let before = rss_kib(args.pid).context("reading the server's RSS")?;
    let threads_before = threads(args.pid)?;
    let started = Instant::now();
    let gate = Arc::new(Semaphore::new(args.parallel.max(1)));
    let ips = args.source_ips.max(1);
    let tasks: Vec<_> = (0..args.conns)
        .map(|i| {
            let (gate, send) = (gate.clone(), send.clone());
            let source =
                (ips > 1).then(|| std::net::Ipv4Addr::new(127, 0, 0, 1 + (i % ips as usize) as u8));
            tokio::spawn(async move {
                let _permit = gate.acquire_owned().await.expect("never closed");
                open(args.addr, source, send).await
            })
        })
        .collect();
    let (mut streams, mut failed, mut first_error) = (Vec::new(), 0usize, None);
    for task in tasks {
        match task.await? {
            Ok(stream) => streams.push(stream),
            Err(e) => {
                failed += 1;
                first_error.get_or_insert(e.to_string());
            }
        }
    }
    let connect_s = started.elapsed().as_secs_f64();
    tokio::time::sleep(args.settle).await;
    let (held, threads_held) = match (rss_kib(args.pid), threads(args.pid)) {
        (Ok(rss), Ok(threads)) => (rss, threads),
        (Err(e), _) | (_, Err(e)) => {
            let (open, _) = still_open(&streams);
            println!(
                "{}: the server (pid {}) is gone after {} connects ({failed} failed, {open} still open): {e}",
                args.label,
                args.pid,
                streams.len()
            );
            let line = json!({
                "label": args.label, "addr": args.addr.to_string(), "conns": args.conns,
                "open": open, "failed": failed, "error": "server exited while connections were held",
                "rss_before_kib": before, "threads_before": threads_before,
            });
            println!("{line}");
            return Ok(());
        }
    };
    let (open, answered) = still_open(&streams);
    // The request phase: every held connection asks at once.
    let mut requests = None;
    if let Some(request) = &args.then_request {
        let (request, prefix) = (
            Arc::new(unescape(request)),
            Arc::new(unescape(&args.expect_prefix)),
        );
        let started = Instant::now();
        let asked = streams.len();
        let tasks: Vec<_> = streams
            .drain(..)
            .map(|stream| tokio::spawn(answer(stream, request.clone(), prefix.clone())))
            .collect();
        let mut ok = 0usize;
        let all = async {
            for task in tasks {
                if task.await.unwrap_or(false) {
                    ok += 1;
                }
            }
        };
        let finished = tokio::time::timeout(args.request_timeout, all)
            .await
            .is_ok();
        let took = started.elapsed().as_secs_f64();
        println!(
            "{}: request phase: {ok}/{asked} answered as expected in {took:.1}s{}",
            args.label,
            if finished { "" } else { " (timed out)" }
        );
        requests = Some((asked, ok, took));
    }
    drop(streams);
    tokio::time::sleep(args.settle).await;
    let after = rss_kib(args.pid)?;
    let per_conn = (held.saturating_sub(before) * 1024) as f64 / open.max(1) as f64;
    println!(
        "{}: {open}/{} connections held ({failed} failed, {answered} answered) in {connect_s:.1}s; server RSS {before} KiB -> {held} KiB ({:.1} KiB per connection), {after} KiB after closing; threads {threads_before} -> {threads_held}",
        args.label,
        args.conns,
        per_conn / 1024.0
    );
    if let Some(e) = first_error {
        println!("{}: first connect error: {e}", args.label);
    }
    let mut line = json!({
        "label": args.label,
        "addr": args.addr.to_string(),
        "conns": args.conns,
        "open": open,
        "failed": failed,
        "answered": answered,
        "send_bytes": send.len(),
        "connect_s": connect_s,
        "rss_before_kib": before,
        "rss_held_kib": held,
        "rss_after_close_kib": after,
        "bytes_per_conn": per_conn,
        "threads_before": threads_before,
        "threads_held": threads_held,
    });
    if let Some((asked, ok, took)) = requests {
        line["requests"] = json!(asked);
        line["requests_ok"] = json!(ok);
        line["requests_failed"] = json!(asked - ok);
        line["requests_s"] = json!(took);
    }
    println!("{line}");
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let limit = nur_bench::raise_nofile(args.conns as u64 + 256)?;
    anyhow::ensure!(
        limit >= args.conns as u64 + 16,
        "RLIMIT_NOFILE is {limit}, too low for {} connections (raise the hard limit)",
        args.conns
    );
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(args))
}
