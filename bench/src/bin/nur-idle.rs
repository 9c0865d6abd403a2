//! `nur-idle`: holds many idle connections to a server and reports the
//! server's resident memory (VmRSS of `--pid`) before, while they are held,
//! and after they are closed, with the growth per connection.
//!
//! With `--send`, each connection first sends those bytes (e.g. half an HTTP
//! request), so the server holds a live, mid-request connection; without it
//! the connections are silent.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
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
}

async fn open(addr: SocketAddr, send: Arc<Vec<u8>>) -> std::io::Result<TcpStream> {
    let connect = async {
        let mut stream = TcpStream::connect(addr).await?;
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
    let send = Arc::new(
        args.send
            .as_deref()
            .unwrap_or("")
            .replace("\\r", "\r")
            .replace("\\n", "\n")
            .into_bytes(),
    );
    let before = rss_kib(args.pid).context("reading the server's RSS")?;
    let threads_before = threads(args.pid)?;
    let started = Instant::now();
    let gate = Arc::new(Semaphore::new(args.parallel.max(1)));
    let tasks: Vec<_> = (0..args.conns)
        .map(|_| {
            let (gate, send) = (gate.clone(), send.clone());
            tokio::spawn(async move {
                let _permit = gate.acquire_owned().await.expect("never closed");
                open(args.addr, send).await
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
    let line = json!({
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
