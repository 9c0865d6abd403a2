//! `nur-native`: the example functions compiled natively, the baseline.
//!
//! The same accept loop shape as the worker (accept, wait for bytes, read a
//! chunk, answer, close with a FIN and a short linger), but the function is
//! plain Rust on a tokio task: no wasm instance and no thread hand-off.
//! Scenarios answer byte for byte like the examples:
//! - `echo`: examples/echo: the first chunk back as an HTTP/1.1 200 body;
//! - `http-hello`: examples/http-hello: `Hello, <path>!` once a whole request
//!   has arrived (httparse); with `--keep-alive`, request after request on a
//!   connection, as the worker's `--keep-alive`;
//! - `stream`: examples/stream/stream.wat: every chunk uppercased back at once,
//!   and `\n-- N bytes\n` on EOF.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, timeout, timeout_at};

use nur_bench::parse_duration;

/// Largest chunk read at once, as the worker's default `--max-chunk`.
const MAX_CHUNK: usize = 64 * 1024;
/// How long a closed connection keeps draining the client's input.
const LINGER: Duration = Duration::from_secs(1);
/// http-hello: the most bytes (headers and body) a request may take.
const MAX_REQUEST: usize = 64 * 1024;
/// http-hello: the most headers a request may have.
const MAX_HEADERS: usize = 64;

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Scenario {
    Echo,
    HttpHello,
    Stream,
}

#[derive(Parser, Debug)]
#[command(
    name = "nur-native",
    about = "Native baseline servers for the Nur benchmarks"
)]
struct Args {
    /// Which function to serve.
    #[arg(long)]
    scenario: Scenario,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8180")]
    listen: SocketAddr,
    /// Longest the server waits for a client to send or to take output.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    idle_timeout: Duration,
    /// Tokio worker threads [default: one per CPU].
    #[arg(long)]
    threads: Option<usize>,
    /// http-hello: serve the next request of a connection whose request
    /// allows it (HTTP/1.1 keep-alive), like the worker's --keep-alive.
    #[arg(long)]
    keep_alive: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    nur_bench::raise_nofile(65_536)?;
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = args.threads {
        builder.worker_threads(threads);
    }
    builder.enable_all().build()?.block_on(serve(args))
}

async fn serve(args: Args) -> anyhow::Result<()> {
    let listener = TcpListener::bind(args.listen).await?;
    eprintln!(
        "nur-native: serving {:?} on {}",
        args.scenario,
        listener.local_addr()?
    );
    loop {
        let socket = match listener.accept().await {
            Ok((socket, _)) => socket,
            Err(e) => {
                eprintln!("nur-native: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let (scenario, idle, keep_alive) = (args.scenario, args.idle_timeout, args.keep_alive);
        tokio::spawn(async move {
            let _ = socket.set_nodelay(true);
            if connection(socket, scenario, idle, keep_alive)
                .await
                .is_err()
            {
                // Client gone or idle: the connection just ends, as in the worker.
            }
        });
    }
}

type Result<T> = std::result::Result<T, std::io::Error>;

fn idle_error() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::TimedOut, "idle")
}

async fn read(socket: &mut TcpStream, buf: &mut [u8], idle: Duration) -> Result<usize> {
    timeout(idle, socket.read(buf))
        .await
        .map_err(|_| idle_error())?
}

async fn write(socket: &mut TcpStream, bytes: &[u8], idle: Duration) -> Result<()> {
    timeout(idle, socket.write_all(bytes))
        .await
        .map_err(|_| idle_error())?
}

/// The bytes after `request` when it allows another request on its
/// connection (HTTP/1.1 keep-alive); `None` when it does not.
fn next_request(request: &[u8]) -> Option<Vec<u8>> {
    let mut end = nur_http::RequestEnd::new(MAX_REQUEST);
    let taken = end.take(request);
    end.complete_and_kept().then(|| request[taken..].to_vec())
}

async fn connection(
    mut socket: TcpStream,
    scenario: Scenario,
    idle: Duration,
    keep_alive: bool,
) -> Result<()> {
    let mut chunk = vec![0u8; MAX_CHUNK];
    match scenario {
        Scenario::Echo => {
            let n = read(&mut socket, &mut chunk, idle).await?;
            let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {n}\r\n\r\n");
            write(&mut socket, head.as_bytes(), idle).await?;
            write(&mut socket, &chunk[..n], idle).await?;
        }
        Scenario::HttpHello => {
            let mut request = Vec::new();
            loop {
                let answer = loop {
                    if let Some(answer) = hello(&request) {
                        break answer;
                    }
                    let n = read(&mut socket, &mut chunk, idle).await?;
                    if n == 0 {
                        let why = if request.is_empty() {
                            "no request"
                        } else {
                            "incomplete request"
                        };
                        break error("400 Bad Request", why);
                    }
                    request.extend_from_slice(&chunk[..n]);
                };
                write(&mut socket, &answer, idle).await?;
                // --keep-alive: the next request on the same connection, as
                // the worker's --keep-alive serves it.
                match keep_alive.then(|| next_request(&request)).flatten() {
                    Some(rest) => request = rest,
                    None => break,
                }
                if request.is_empty() {
                    let n = read(&mut socket, &mut chunk, idle).await?;
                    if n == 0 {
                        return Ok(());
                    }
                    request.extend_from_slice(&chunk[..n]);
                }
            }
        }
        Scenario::Stream => {
            let mut total = 0u64;
            loop {
                let n = read(&mut socket, &mut chunk, idle).await?;
                if n == 0 {
                    let trailer = format!("\n-- {total} bytes\n");
                    write(&mut socket, trailer.as_bytes(), idle).await?;
                    break;
                }
                chunk[..n].make_ascii_uppercase();
                total += n as u64;
                write(&mut socket, &chunk[..n], idle).await?;
            }
        }
    }
    linger(socket, &mut chunk).await
}

/// Sends FIN, then drops what the client still sends for at most [`LINGER`].
async fn linger(mut socket: TcpStream, sink: &mut [u8]) -> Result<()> {
    socket.shutdown().await?;
    let until = Instant::now() + LINGER;
    while let Ok(read) = timeout_at(until, socket.read(sink)).await {
        if read? == 0 {
            break;
        }
    }
    Ok(())
}

/// examples/http-hello's response (`connection: close` when `close`).
fn respond(status: &str, body: &str, head_only: bool, close: bool) -> Vec<u8> {
    let connection = if close { "connection: close\r\n" } else { "" };
    let mut out = format!(
        "HTTP/1.1 {status}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\n{connection}\r\n",
        body.len()
    )
    .into_bytes();
    if !head_only {
        out.extend_from_slice(body.as_bytes());
    }
    out
}

fn error(status: &str, why: &str) -> Vec<u8> {
    respond(status, &format!("{status}: {why}\n"), false, true)
}

/// The answer once `buf` holds a whole request (or a bad one); `None` while
/// more is needed. The same rules as examples/http-hello/src/lib.rs.
fn hello(buf: &[u8]) -> Option<Vec<u8>> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let too_large = |headers_done| {
        (buf.len() > MAX_REQUEST).then(|| {
            if headers_done {
                error("413 Content Too Large", "request too large")
            } else {
                error("431 Request Header Fields Too Large", "headers too large")
            }
        })
    };
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return too_large(false),
        Err(httparse::Error::TooManyHeaders) => {
            return Some(error(
                "431 Request Header Fields Too Large",
                "too many headers",
            ));
        }
        Err(e) => {
            return Some(error("400 Bad Request", &format!("malformed request: {e}")));
        }
    };
    let mut body_len = 0usize;
    let mut close = req.version == Some(0);
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("connection") {
            close |= String::from_utf8_lossy(h.value)
                .split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("close"));
        }
        if h.name.eq_ignore_ascii_case("transfer-encoding") {
            return Some(error(
                "411 Length Required",
                "transfer-encoding is not supported",
            ));
        }
        if h.name.eq_ignore_ascii_case("content-length") {
            let n = std::str::from_utf8(h.value)
                .ok()
                .map(str::trim)
                .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|v| v.parse::<usize>().ok());
            match n {
                Some(n) => body_len = n,
                None => return Some(error("400 Bad Request", "invalid content-length")),
            }
        }
    }
    if body_len > MAX_REQUEST - head_len.min(MAX_REQUEST) {
        return Some(error(
            "413 Content Too Large",
            &format!("a body of {body_len} bytes is too large"),
        ));
    }
    if buf.len() < head_len + body_len {
        return too_large(true);
    }
    let path = req.path.unwrap_or("/");
    let body = format!("Hello, {path}!\n");
    Some(respond("200 OK", &body, req.method == Some("HEAD"), close))
}

#[cfg(test)]
mod tests {
    use super::hello;

    #[test]
    fn hello_answers_like_the_example() {
        assert_eq!(hello(b""), None);
        assert_eq!(hello(b"GET /x HTTP/1.1\r\n"), None);
        let answer = hello(b"GET /x HTTP/1.1\r\nhost: a\r\n\r\n").unwrap();
        assert_eq!(
            answer,
            b"HTTP/1.1 200 OK\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: 11\r\n\r\nHello, /x!\n"
        );
        let closing = hello(b"GET /x HTTP/1.1\r\nConnection: close\r\n\r\n").unwrap();
        assert!(closing.ends_with(b"content-length: 11\r\nconnection: close\r\n\r\nHello, /x!\n"));
        let bad = hello(b"GET /x HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n").unwrap();
        assert!(bad.starts_with(b"HTTP/1.1 411 Length Required\r\n"));
    }
}
