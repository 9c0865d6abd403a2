//! `nur-load`: a load generator for raw TCP functions.
//!
//! `--clients` tasks each loop until the duration is over: connect, write the
//! payload, shut down the write side, read to EOF, close: one connection per
//! request, as Nur serves them. Requests started during the warm-up are not
//! counted. Prints one human line, then one JSON line.
//!
//! With `--keep-alive` each client keeps its connection for its next
//! request, as wrk and browsers do: it reads each answer to the end its
//! HTTP head gives (`nur_http::ResponseEnd`), and connects again when the
//! server closed (a request on a kept connection that the server had
//! closed before answering is sent once more on a new one, as HTTP clients
//! do).
//!
//! With `--rate R` the load is open: R requests a second in all, each
//! client sending on its own schedule (clients × 1/R apart) whether or not
//! the server keeps up, as wrk2 does. A request's latency counts from when
//! it was due when its client is behind schedule (the wait is part of what
//! a user of that rate sees), else from when it was sent. At a rate below
//! what the server can serve, this is how a proxy's added latency is
//! measured: without the queue a saturating closed loop builds.
//!
//! With `--no-shutdown` the write side stays open and the server closes
//! first (as an HTTP client's connection ends): then the server, not this
//! client, holds the TIME_WAIT of each connection. Against an address other
//! than loopback that matters: with `net.ipv4.tcp_tw_reuse=2` (loopback
//! only) every TIME_WAIT the client holds takes one of its ephemeral ports
//! to that address for 60 s, and connect() spends its time searching for a
//! free one.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;
use hdrhistogram::Histogram;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use nur_bench::parse_duration;
use nur_http::ResponseEnd;

#[derive(Parser, Debug)]
#[command(
    name = "nur-load",
    about = "TCP load generator: one connection per request, or HTTP/1.1 keep-alive"
)]
struct Args {
    /// Server address.
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    /// Concurrent clients, each one connection at a time.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Measured time (`10`, `10s`, `500ms`).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// Time before measuring starts (requests in it are not counted).
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    warmup: Duration,
    /// Longest one request may take; more is an error.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    timeout: Duration,
    /// Payload text; `\r`, `\n` and `\\` are unescaped.
    #[arg(long, conflicts_with_all = ["size", "http_get"])]
    payload: Option<String>,
    /// Payload of this many bytes of lowercase letters.
    #[arg(long, conflicts_with = "http_get")]
    size: Option<usize>,
    /// Payload: an HTTP/1.1 GET of this path.
    #[arg(long)]
    http_get: Option<String>,
    /// Write the payload in pieces of this many bytes (0: one write).
    #[arg(long, default_value_t = 0)]
    write_chunk: usize,
    /// Count a response of any other length as an error.
    #[arg(long)]
    expect_len: Option<usize>,
    /// Count a response not starting with this as an error (unescaped like --payload).
    #[arg(long)]
    expect_prefix: Option<String>,
    /// Keep the write side open after the payload; read until the server
    /// closes (for requests the server answers without seeing EOF).
    #[arg(long)]
    no_shutdown: bool,
    /// Name of this run in the output.
    #[arg(long, default_value = "load")]
    label: String,
    /// Tokio worker threads of the generator [default: one per CPU].
    #[arg(long)]
    threads: Option<usize>,
    /// Keep each client's connection for its next request while the
    /// server's answers allow it (HTTP/1.1 keep-alive); implies
    /// --no-shutdown.
    #[arg(long)]
    keep_alive: bool,
    /// Offered load in requests a second, spread over the clients (open
    /// loop); without it each client sends its next request as soon as the
    /// last one is answered.
    #[arg(long)]
    rate: Option<f64>,
}

/// How a request failed.
#[derive(Clone, Copy)]
enum Failure {
    Connect,
    Io,
    Timeout,
    Verify,
}

const FAILURES: [&str; 4] = ["connect", "io", "timeout", "verify"];

struct Plan {
    addr: SocketAddr,
    payload: Vec<u8>,
    write_chunk: usize,
    expect_len: Option<usize>,
    expect_prefix: Vec<u8>,
    timeout: Duration,
    shutdown: bool,
    keep_alive: bool,
}

/// What one client counted.
struct Tally {
    latency: Histogram<u64>,
    failures: [u64; 4],
    bytes_in: u64,
    last: Instant,
}

fn unescape(text: &str) -> Vec<u8> {
    let (mut out, mut chars) = (String::new(), text.chars());
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('r') => out.push('\r'),
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out.into_bytes()
}

fn payload(args: &Args) -> Vec<u8> {
    if let Some(path) = &args.http_get {
        format!(
            "GET {path} HTTP/1.1\r\nhost: {}\r\nuser-agent: nur-load\r\n\r\n",
            args.addr
        )
        .into_bytes()
    } else if let Some(size) = args.size {
        (0..size).map(|i| b'a' + (i % 26) as u8).collect()
    } else {
        unescape(args.payload.as_deref().unwrap_or("hello"))
    }
}

/// One request, on `kept` (a connection kept from the last request) or a
/// new connection; returns the bytes read.
async fn request(
    plan: &Plan,
    buf: &mut [u8],
    kept: &mut Option<TcpStream>,
) -> Result<u64, Failure> {
    loop {
        let reused = kept.is_some();
        let mut stream = match kept.take() {
            Some(stream) => stream,
            None => {
                let stream = TcpStream::connect(plan.addr)
                    .await
                    .map_err(|_| Failure::Connect)?;
                let _ = stream.set_nodelay(true);
                stream
            }
        };
        let (written, read) = exchange(plan, &mut stream, buf).await;
        let (total, head, answer, eof) = read.map_err(|_| Failure::Io)?;
        if reused && total == 0 {
            // The server closed the kept connection before this request.
            continue;
        }
        written.map_err(|_| Failure::Io)?;
        let length_ok = plan.expect_len.is_none_or(|want| want == total);
        if !length_ok || !head.starts_with(&plan.expect_prefix) {
            return Err(Failure::Verify);
        }
        if plan.keep_alive && !eof && answer.complete_and_kept() {
            *kept = Some(stream);
        }
        return Ok(total as u64);
    }
}

/// What one exchange read: bytes, the first of them (for
/// `--expect-prefix`), the answer's framing, and whether the server closed.
type Read = (usize, Vec<u8>, ResponseEnd, bool);

/// Writes the payload and reads the answer: to its end with
/// `--keep-alive`, else until the server closes.
async fn exchange(
    plan: &Plan,
    stream: &mut TcpStream,
    buf: &mut [u8],
) -> (std::io::Result<()>, std::io::Result<Read>) {
    let (mut reader, mut writer) = stream.split();
    let piece = if plan.write_chunk == 0 {
        plan.payload.len().max(1)
    } else {
        plan.write_chunk
    };
    let write = async {
        for part in plan.payload.chunks(piece) {
            writer.write_all(part).await?;
        }
        if plan.shutdown {
            writer.shutdown().await?;
        }
        Ok::<_, std::io::Error>(())
    };
    let read = async {
        let (mut total, mut head) = (0usize, Vec::new());
        let mut answer = ResponseEnd::default();
        loop {
            let n = reader.read(buf).await?;
            if n == 0 {
                return Ok::<_, std::io::Error>((total, head, answer, true));
            }
            if head.len() < plan.expect_prefix.len() {
                let want = (plan.expect_prefix.len() - head.len()).min(n);
                head.extend_from_slice(&buf[..want]);
            }
            total += n;
            if plan.keep_alive {
                answer.see(&buf[..n]);
                if answer.reached_end() {
                    return Ok((total, head, answer, false));
                }
            }
        }
    };
    tokio::join!(write, read)
}

/// When a client with `--rate` sends: every `interval` from `next`.
struct Schedule {
    next: Instant,
    interval: Duration,
}

impl Schedule {
    /// Waits for the next request's turn; returns when its latency counts
    /// from: when it was due if the client is behind, else now.
    async fn turn(&mut self) -> Instant {
        let due = self.next;
        self.next += self.interval;
        if Instant::now() >= due {
            return due;
        }
        tokio::time::sleep_until(due.into()).await;
        Instant::now()
    }
}

async fn client(
    plan: Arc<Plan>,
    measure_from: Instant,
    end: Instant,
    mut schedule: Option<Schedule>,
) -> Tally {
    let mut tally = Tally {
        latency: Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds"),
        failures: [0; 4],
        bytes_in: 0,
        last: measure_from,
    };
    let mut buf = vec![0u8; 64 * 1024];
    let mut kept = None;
    loop {
        let started = match &mut schedule {
            Some(schedule) => schedule.turn().await,
            None => Instant::now(),
        };
        if started >= end {
            break;
        }
        let outcome =
            match tokio::time::timeout(plan.timeout, request(&plan, &mut buf, &mut kept)).await {
                Ok(outcome) => outcome,
                Err(_) => Err(Failure::Timeout),
            };
        let done = Instant::now();
        if started >= measure_from {
            tally.last = tally.last.max(done);
            match outcome {
                Ok(bytes) => {
                    let micros = (done - started).as_micros().max(1) as u64;
                    tally.latency.saturating_record(micros);
                    tally.bytes_in += bytes;
                }
                Err(failure) => tally.failures[failure as usize] += 1,
            }
        }
        if matches!(outcome, Err(Failure::Connect)) {
            // Refused or out of ports: do not spin.
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    tally
}

async fn run(args: Args) -> anyhow::Result<()> {
    let plan = Arc::new(Plan {
        addr: args.addr,
        payload: payload(&args),
        write_chunk: args.write_chunk,
        expect_len: args.expect_len,
        expect_prefix: args
            .expect_prefix
            .as_deref()
            .map(unescape)
            .unwrap_or_default(),
        timeout: args.timeout,
        shutdown: !args.no_shutdown && !args.keep_alive,
        keep_alive: args.keep_alive,
    });
    let start = Instant::now();
    let measure_from = start + args.warmup;
    let end = measure_from + args.duration;
    let interval = match args.rate {
        Some(rate) if rate > 0.0 => Some(Duration::from_secs_f64(args.clients as f64 / rate)),
        Some(rate) => anyhow::bail!("--rate {rate}: give a number of requests a second above 0"),
        None => None,
    };
    let clients: Vec<_> = (0..args.clients)
        .map(|i| {
            // Clients spread evenly over one interval.
            let schedule = interval.map(|interval| Schedule {
                next: start + interval.mul_f64(i as f64 / args.clients as f64),
                interval,
            });
            tokio::spawn(client(plan.clone(), measure_from, end, schedule))
        })
        .collect();
    let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let (mut failures, mut bytes_in, mut last) = ([0u64; 4], 0u64, measure_from);
    for client in clients {
        let tally = client.await.context("a client task failed")?;
        latency.add(&tally.latency)?;
        for (sum, n) in failures.iter_mut().zip(tally.failures) {
            *sum += n;
        }
        bytes_in += tally.bytes_in;
        last = last.max(tally.last);
    }
    let elapsed = (last - measure_from).as_secs_f64().max(1e-9);
    let requests = latency.len();
    let errors: u64 = failures.iter().sum();
    let rps = requests as f64 / elapsed;
    let q = |quantile: f64| latency.value_at_quantile(quantile);
    println!(
        "{}: {} requests in {:.2}s = {:.0} req/s, {} errors; latency µs p50 {} p90 {} p99 {} p99.9 {} max {}",
        args.label,
        requests,
        elapsed,
        rps,
        errors,
        q(0.5),
        q(0.9),
        q(0.99),
        q(0.999),
        latency.max()
    );
    let percentiles: Vec<_> = [
        50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.95, 99.99, 100.0,
    ]
    .iter()
    .map(|p| json!([p, latency.value_at_percentile(*p)]))
    .collect();
    let by_kind: serde_json::Map<_, _> = FAILURES
        .iter()
        .zip(failures)
        .map(|(name, n)| (name.to_string(), json!(n)))
        .collect();
    let line = json!({
        "label": args.label,
        "addr": args.addr.to_string(),
        "clients": args.clients,
        "duration_s": elapsed,
        "warmup_s": args.warmup.as_secs_f64(),
        "payload_bytes": plan.payload.len(),
        "shutdown_write": plan.shutdown,
        "keep_alive": plan.keep_alive,
        "rate": args.rate,
        "requests": requests,
        "rps": rps,
        "errors": errors,
        "errors_by_kind": by_kind,
        "bytes_in": bytes_in,
        "latency_us": {
            "p50": q(0.5), "p90": q(0.9), "p99": q(0.99), "p99_9": q(0.999),
            "max": latency.max(), "mean": latency.mean(),
        },
        "percentiles_us": percentiles,
    });
    println!("{line}");
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    nur_bench::raise_nofile(args.clients as u64 * 2 + 64)?;
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = args.threads {
        builder.worker_threads(threads);
    }
    builder.enable_all().build()?.block_on(run(args))
}

#[cfg(test)]
mod tests {
    use super::unescape;

    #[test]
    fn unescapes() {
        assert_eq!(
            unescape(r"GET / HTTP/1.1\r\n\r\n"),
            b"GET / HTTP/1.1\r\n\r\n"
        );
        assert_eq!(unescape(r"a\\b"), b"a\\b");
        assert_eq!(unescape("é"), "é".as_bytes());
    }
}
