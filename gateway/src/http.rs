//! HTTP/1.1 routes: each request head is read (bounded, within the header
//! timeout) and parsed with httparse, routed by method, Host and path, and
//! sent with the rest of the request to a pod of the function on a
//! connection of its own (the worker closes after each answer). The
//! client's connection stays open for its next request when the answer
//! was length-delimited. Answers of the gateway's own: 400 (a malformed
//! head), 404 (no route, naming host and path), 408 (head too slow), 431
//! (head too large), 502 (the function failed before its first byte), 503
//! (no ready pod within the wake timeout).

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::Shared;
use crate::upstream::UpstreamError;

/// Bounds on what a client may make the gateway hold.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most bytes of one request head.
    pub max_head: usize,
    /// Longest a client may take to send a whole head.
    pub header_timeout: Duration,
    /// Longest a keep-alive connection may wait for its next request.
    pub idle_timeout: Duration,
}

/// Most headers a request may have.
const MAX_HEADERS: usize = 100;
/// Most bytes of a response head looked at for its length.
const MAX_RESPONSE_HEAD: usize = 64 * 1024;

/// How the request's body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    None,
    Length(u64),
    /// Chunked: sent on until the client closes; the connection is not
    /// kept for another request.
    Chunked,
}

/// A parsed request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// Bytes of the head in the buffer.
    pub len: usize,
    pub method: String,
    pub path: String,
    /// The Host (or the absolute URI's authority) without a port, lower case.
    pub host: Option<String>,
    pub body: Body,
    /// The client asked to close after this request (or speaks HTTP/1.0).
    pub close: bool,
}

/// Why no head could be read.
#[derive(Debug, PartialEq, Eq)]
pub enum HeadError {
    Malformed(String),
    TooLarge,
    Timeout,
    /// The connection failed or closed within a head.
    Closed,
}

/// Parses a whole request head at the start of `buf`; `Ok(None)` when it
/// is not all there yet.
pub fn parse_head(buf: &[u8]) -> Result<Option<Head>, HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
        Err(e) => return Err(HeadError::Malformed(e.to_string())),
    };
    let method = req.method.unwrap_or_default().to_string();
    let target = req.path.unwrap_or_default();
    let (authority, path) = split_target(target)
        .ok_or_else(|| HeadError::Malformed(format!("request target {target:?}")))?;
    let mut host = authority.map(str::to_string);
    let mut length: Option<u64> = None;
    let mut chunked = false;
    let mut close = req.version == Some(0);
    for h in req.headers.iter() {
        let value = std::str::from_utf8(h.value)
            .map_err(|_| HeadError::Malformed(format!("header {} is not UTF-8", h.name)))?
            .trim();
        if h.name.eq_ignore_ascii_case("host") {
            if host.is_none() {
                host = Some(value.to_string());
            }
        } else if h.name.eq_ignore_ascii_case("content-length") {
            let n: u64 = value
                .parse()
                .map_err(|_| HeadError::Malformed(format!("content-length {value:?}")))?;
            // Two different lengths: which one ends the body is ambiguous
            // (request smuggling), so neither is believed.
            if length.is_some_and(|l| l != n) {
                return Err(HeadError::Malformed("two content-length headers".into()));
            }
            length = Some(n);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            if value
                .to_ascii_lowercase()
                .split(',')
                .any(|t| t.trim() == "chunked")
            {
                chunked = true;
            } else {
                return Err(HeadError::Malformed(format!("transfer-encoding {value:?}")));
            }
        } else if h.name.eq_ignore_ascii_case("connection") {
            let v = value.to_ascii_lowercase();
            if v.split(',').any(|t| t.trim() == "close") {
                close = true;
            } else if v.split(',').any(|t| t.trim() == "keep-alive") && req.version == Some(0) {
                close = false;
            }
        }
    }
    if chunked && length.is_some() {
        return Err(HeadError::Malformed(
            "both transfer-encoding and content-length".into(),
        ));
    }
    let body = match (chunked, length) {
        (true, _) => Body::Chunked,
        (false, Some(0) | None) => Body::None,
        (false, Some(n)) => Body::Length(n),
    };
    let host = host.map(|h| strip_port(&h).to_ascii_lowercase());
    Ok(Some(Head {
        len,
        method,
        path: path.to_string(),
        host,
        body,
        close,
    }))
}

/// The authority (of an absolute URI) and the path of a request target.
fn split_target(target: &str) -> Option<(Option<&str>, &str)> {
    if target.starts_with('/') {
        return Some((None, target));
    }
    if target == "*" {
        return Some((None, "*"));
    }
    let rest = target
        .strip_prefix("http://")
        .or_else(|| target.strip_prefix("https://"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    Some((Some(authority), path))
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host
            .split(']')
            .next()
            .map_or(host, |h| &host[..h.len() + 1]);
    }
    host.rsplit_once(':')
        .filter(|(_, p)| p.bytes().all(|b| b.is_ascii_digit()))
        .map_or(host, |(h, _)| h)
}

/// Reads one request head into `buf` (which may hold bytes already).
/// `Ok(None)`: the client closed, or idled out, between requests.
async fn read_head<S: AsyncRead + Unpin>(
    client: &mut S,
    buf: &mut Vec<u8>,
    limits: &Limits,
    first: bool,
) -> Result<Option<Head>, HeadError> {
    let mut deadline = Instant::now()
        + if first || !buf.is_empty() {
            limits.header_timeout
        } else {
            limits.idle_timeout
        };
    let mut started = first || !buf.is_empty();
    loop {
        if !buf.is_empty() {
            if let Some(head) = parse_head(buf)? {
                return Ok(Some(head));
            }
            if buf.len() >= limits.max_head {
                return Err(HeadError::TooLarge);
            }
        }
        let mut chunk = [0u8; 8192];
        let room = (limits.max_head - buf.len()).min(chunk.len());
        let read = tokio::time::timeout_at(deadline, client.read(&mut chunk[..room])).await;
        match read {
            Err(_) if !started => return Ok(None),
            Err(_) => return Err(HeadError::Timeout),
            Ok(Ok(0)) if buf.is_empty() => return Ok(None),
            Ok(Ok(0)) | Ok(Err(_)) => return Err(HeadError::Closed),
            Ok(Ok(n)) => {
                if !started {
                    started = true;
                    deadline = Instant::now() + limits.header_timeout;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
        }
    }
}

/// A response of the gateway's own.
async fn respond<W: AsyncWrite + Unpin>(
    client: &mut W,
    status: u16,
    reason: &str,
    body: &str,
    close: bool,
) -> bool {
    let connection = if close { "connection: close\r\n" } else { "" };
    let text = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: text/plain; charset=utf-8\r\n\
         content-length: {}\r\n{connection}server: nur-gateway\r\n\r\n{body}",
        body.len()
    );
    client.write_all(text.as_bytes()).await.is_ok()
}

/// Serves one client connection, request after request.
pub async fn handle(mut client: TcpStream, shared: Arc<Shared>) {
    let limits = shared.http_limits;
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut first = true;
    loop {
        let head = match read_head(&mut client, &mut buf, &limits, first).await {
            Ok(Some(head)) => head,
            Ok(None) => return,
            Err(e) => {
                let (status, reason, why, label) = match e {
                    HeadError::Malformed(why) => (400, "Bad Request", why, "bad_request"),
                    HeadError::TooLarge => (
                        431,
                        "Request Header Fields Too Large",
                        format!("the request head is over {} bytes", limits.max_head),
                        "head_too_large",
                    ),
                    HeadError::Timeout => (
                        408,
                        "Request Timeout",
                        format!("no whole request head within {:?}", limits.header_timeout),
                        "header_timeout",
                    ),
                    HeadError::Closed => {
                        shared.metrics.rejected("http", "closed_in_head");
                        return;
                    }
                };
                tracing::debug!(status, "{why}");
                shared.metrics.rejected("http", label);
                respond(&mut client, status, reason, &format!("{why}\n"), true).await;
                return;
            }
        };
        first = false;
        let table = shared.state.table();
        let host = head.host.as_deref();
        let Some(target) = table.http_route(&head.method, host, &head.path).cloned() else {
            shared.metrics.route_miss("http");
            let body = format!(
                "no route for {} {}{}\n",
                head.method,
                host.unwrap_or("(no host)"),
                head.path
            );
            // The body of a request no one takes is not read: close.
            let close = head.close || head.body != Body::None;
            buf.drain(..head.len);
            if !respond(&mut client, 404, "Not Found", &body, close).await || close {
                return;
            }
            continue;
        };
        let _open = shared.activity.open(&target);
        let mut upstream = match shared.dialer.connect(&shared, &target).await {
            Ok(u) => u,
            Err(e) => {
                let (status, reason) = match e {
                    UpstreamError::NoReadyPod { .. } => {
                        shared.metrics.no_ready_pod(&target);
                        (503, "Service Unavailable")
                    }
                    UpstreamError::Refused { .. } => (502, "Bad Gateway"),
                };
                tracing::info!("{e}");
                respond(&mut client, status, reason, &format!("{e}\n"), true).await;
                return;
            }
        };
        let _active = shared.metrics.connection(&target);
        let exchanged = exchange(&mut client, &mut upstream.stream, &mut buf, &head).await;
        shared.metrics.bytes(&target, "in").inc_by(exchanged.sent);
        shared
            .metrics
            .bytes(&target, "out")
            .inc_by(exchanged.received);
        if exchanged.received == 0 {
            let body = format!("function {target} closed the connection without an answer\n");
            respond(&mut client, 502, "Bad Gateway", &body, true).await;
            return;
        }
        if !exchanged.keep_alive {
            let _ = client.shutdown().await;
            return;
        }
    }
}

/// What one request's exchange did.
struct Exchanged {
    sent: u64,
    received: u64,
    keep_alive: bool,
}

/// Sends the head at the start of `buf` and the request's body to
/// `upstream`, and its answer to `client`, until the answer is complete.
async fn exchange(
    client: &mut TcpStream,
    upstream: &mut TcpStream,
    buf: &mut Vec<u8>,
    head: &Head,
) -> Exchanged {
    let (mut cr, mut cw) = client.split();
    let (mut ur, mut uw) = upstream.split();
    let head_bytes: Vec<u8> = buf.drain(..head.len).collect();
    let body = head.body;
    let send = async {
        // The head and the body bytes already read go in one write: a
        // function that answers its first chunk sees the whole request.
        let mut first = head_bytes;
        let from_buf = match body {
            Body::Length(n) => n.min(buf.len() as u64) as usize,
            Body::Chunked => buf.len(),
            Body::None => 0,
        };
        first.extend(buf.drain(..from_buf));
        uw.write_all(&first).await?;
        let mut sent = first.len() as u64;
        match body {
            Body::None => Ok::<_, std::io::Error>((sent, true)),
            Body::Length(n) => {
                let rest = n - from_buf as u64;
                let copied = tokio::io::copy(&mut (&mut cr).take(rest), &mut uw).await?;
                sent += copied;
                Ok((sent, copied == rest))
            }
            Body::Chunked => {
                sent += tokio::io::copy(&mut cr, &mut uw).await?;
                Ok((sent, false))
            }
        }
    };
    let receive = async {
        let mut received: u64 = 0;
        let mut response_head = Vec::new();
        // The answer's end, once its head says: head + content-length.
        let mut expected: Option<u64> = None;
        let mut keep_alive = false;
        let mut parsed = false;
        let mut chunk = vec![0u8; 16 * 1024];
        loop {
            let n = match ur.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if cw.write_all(&chunk[..n]).await.is_err() {
                keep_alive = false;
                break;
            }
            received += n as u64;
            if !parsed && response_head.len() < MAX_RESPONSE_HEAD {
                response_head.extend_from_slice(&chunk[..n]);
                if let Some((len, framing)) = response_framing(&response_head) {
                    parsed = true;
                    keep_alive = framing.keep_alive;
                    expected = framing.content_length.map(|c| len as u64 + c);
                }
            }
            if expected.is_some_and(|e| received >= e) {
                break;
            }
        }
        (received, keep_alive)
    };
    tokio::pin!(send);
    tokio::pin!(receive);
    let mut sent = None;
    let (received, response_keep_alive) = loop {
        tokio::select! {
            s = &mut send, if sent.is_none() => sent = Some(s),
            r = &mut receive => break r,
        }
    };
    let (sent, body_done) = match sent {
        Some(Ok((n, done))) => (n, done),
        // The body was not all sent when the answer ended (or failed).
        _ => (head.len as u64, false),
    };
    Exchanged {
        sent,
        received,
        keep_alive: response_keep_alive && body_done && !head.close,
    }
}

/// How a response ends, from its head.
struct Framing {
    content_length: Option<u64>,
    /// The client may send another request after it.
    keep_alive: bool,
}

/// The head length and framing of a whole response head, else `None`.
fn response_framing(bytes: &[u8]) -> Option<(usize, Framing)> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    let len = match resp.parse(bytes) {
        Ok(httparse::Status::Complete(len)) => len,
        _ => return None,
    };
    let mut content_length = None;
    let mut chunked = false;
    let mut close = resp.version == Some(0);
    for h in resp.headers.iter() {
        let value = String::from_utf8_lossy(h.value).to_ascii_lowercase();
        if h.name.eq_ignore_ascii_case("content-length") {
            content_length = value.trim().parse().ok();
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.contains("chunked");
        } else if h.name.eq_ignore_ascii_case("connection") && value.contains("close") {
            close = true;
        }
    }
    // 1xx, 204 and 304 have no body.
    let code = resp.code.unwrap_or(200);
    let no_body = code < 200 || code == 204 || code == 304;
    let content_length = if no_body { Some(0) } else { content_length };
    let delimited = content_length.is_some() || chunked;
    Some((
        len,
        Framing {
            content_length: if chunked { None } else { content_length },
            keep_alive: delimited && !close,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(text: &str) -> Result<Option<Head>, HeadError> {
        parse_head(text.as_bytes())
    }

    #[test]
    fn heads_give_method_host_path_and_body() {
        let h = head(
            "POST /hello/x?y HTTP/1.1\r\nHost: Example.COM:8000\r\nContent-Length: 5\r\n\r\nhello",
        )
        .unwrap()
        .unwrap();
        assert_eq!(h.method, "POST");
        assert_eq!(h.path, "/hello/x?y");
        assert_eq!(h.host.as_deref(), Some("example.com"));
        assert_eq!(h.body, Body::Length(5));
        assert!(!h.close);
        assert_eq!(
            h.len,
            "POST /hello/x?y HTTP/1.1\r\nHost: Example.COM:8000\r\nContent-Length: 5\r\n\r\n".len()
        );
        let h = head("GET http://a.example/x HTTP/1.0\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(
            (h.host.as_deref(), h.path.as_str(), h.close),
            (Some("a.example"), "/x", true)
        );
        assert_eq!(head("GET / HTTP/1.1\r\nHost: a").unwrap(), None);
    }

    #[test]
    fn ambiguous_bodies_are_refused() {
        for bad in [
            "POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
            "GET nowhere HTTP/1.1\r\n\r\n",
            "\x16\x03\x01 garbage\r\n\r\n",
        ] {
            assert!(matches!(head(bad), Err(HeadError::Malformed(_))), "{bad:?}");
        }
    }

    #[test]
    fn responses_say_where_they_end() {
        let (len, f) =
            response_framing(b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nabc").unwrap();
        assert_eq!((len, f.content_length, f.keep_alive), (38, Some(3), true));
        let (_, f) = response_framing(b"HTTP/1.1 200 OK\r\n\r\n").unwrap();
        assert!(!f.keep_alive, "delimited by close");
        let (_, f) =
            response_framing(b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\nconnection: close\r\n\r\n")
                .unwrap();
        assert!(!f.keep_alive);
        let (_, f) = response_framing(b"HTTP/1.1 204 No Content\r\n\r\n").unwrap();
        assert_eq!((f.content_length, f.keep_alive), (Some(0), true));
        assert!(response_framing(b"HTTP/1.1 200 OK\r\n").is_none());
    }
}
