//! HTTP/1.1 routes: each request head is read (bounded, within the header
//! timeout) and parsed (`nur_http`, httparse), routed by method, Host and
//! path, and sent with the rest of the request to a pod of the function,
//! without its hop-by-hop fields, on a connection kept open between
//! requests while the pod's answers allow it ([`crate::upstream`]'s pool).
//! The client's connection stays open for its next request when the answer
//! was length-delimited. Answers of the gateway's own: 400 (a malformed
//! head), 404 (no route, naming host and path), 408 (head too slow), 431
//! (head too large), 502 (the function failed before its first byte), 503
//! (no ready pod within the wake timeout).

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use nur_http::{Body, HeadError, RequestHead, ResponseEnd, parse_request_head};

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

/// Reads one request head into `buf` (which may hold bytes already).
/// `Ok(None)`: the client closed, or idled out, between requests.
async fn read_head<S: AsyncRead + Unpin>(
    client: &mut S,
    buf: &mut Vec<u8>,
    limits: &Limits,
    first: bool,
) -> Result<Option<RequestHead>, HeadError> {
    let mut deadline = Instant::now()
        + if first || !buf.is_empty() {
            limits.header_timeout
        } else {
            limits.idle_timeout
        };
    let mut started = first || !buf.is_empty();
    loop {
        if !buf.is_empty() {
            if let Some(head) = parse_request_head(buf)? {
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
            let close = head.close || head.http10 || head.body != Body::None;
            buf.drain(..head.len);
            if !respond(&mut client, 404, "Not Found", &body, close).await || close {
                return;
            }
            continue;
        };
        let _open = shared.activity.open(&target);
        let request = Request::take(&head, &mut buf);
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
        let mut exchanged = exchange(&mut client, &mut upstream.stream, &request).await;
        if exchanged.received == 0 && upstream.reused && request.may_retry(&head) {
            // A kept-alive connection the pod closed just as this request
            // went out: the request was never served, so it goes once more
            // on a new connection.
            tracing::debug!(function = %target, "kept-alive connection closed by the pod, retrying");
            shared.metrics.upstream_retries(&target).inc();
            upstream = match shared.dialer.connect_new(&shared, &target).await {
                Ok(u) => u,
                Err(e) => {
                    tracing::info!("{e}");
                    respond(&mut client, 502, "Bad Gateway", &format!("{e}\n"), true).await;
                    return;
                }
            };
            exchanged = exchange(&mut client, &mut upstream.stream, &request).await;
        }
        shared.metrics.bytes(&target, "in").inc_by(exchanged.sent);
        shared
            .metrics
            .bytes(&target, "out")
            .inc_by(exchanged.received);
        if exchanged.upstream_reusable && !head.http10 {
            shared.dialer.release(upstream);
        }
        if exchanged.received == 0 {
            let body = format!("function {target} closed the connection without an answer\n");
            respond(&mut client, 502, "Bad Gateway", &body, true).await;
            return;
        }
        // An HTTP/1.0 client keeps its connection only when the answer
        // says `Connection: keep-alive`, which a pod's HTTP/1.1 answer does
        // not: close, or it would wait for the idle timeout.
        if !exchanged.client_keep_alive || head.close || head.http10 {
            let _ = client.shutdown().await;
            return;
        }
    }
}

/// A request as it goes to a pod: its head without hop-by-hop fields and
/// the body bytes already read, then what of the body is still to come
/// from the client.
struct Request {
    first: Vec<u8>,
    /// Body bytes still to be read from the client; `None`: until it
    /// closes (chunked).
    rest: Option<u64>,
}

impl Request {
    /// Takes the head and the body bytes read with it out of `buf`.
    fn take(head: &RequestHead, buf: &mut Vec<u8>) -> Request {
        let mut first = head.forwarded(buf).into_owned();
        buf.drain(..head.len);
        let (from_buf, rest) = match head.body {
            Body::None => (0, Some(0)),
            Body::Length(n) => {
                let from_buf = n.min(buf.len() as u64);
                (from_buf as usize, Some(n - from_buf))
            }
            Body::Chunked => (buf.len(), None),
        };
        first.extend(buf.drain(..from_buf));
        Request { first, rest }
    }

    /// Whether the request may be sent again: all of it is in hand, and
    /// its method is idempotent (RFC 9110, 9.2.2).
    fn may_retry(&self, head: &RequestHead) -> bool {
        self.rest == Some(0)
            && matches!(
                head.method.as_str(),
                "GET" | "HEAD" | "OPTIONS" | "TRACE" | "PUT" | "DELETE"
            )
    }
}

/// What one request's exchange did.
struct Exchanged {
    sent: u64,
    received: u64,
    /// The answer was delimited and the request wholly sent: the client
    /// may send its next request on the same connection.
    client_keep_alive: bool,
    /// The pod's connection ended exactly at a length-delimited answer
    /// that allows another: it may carry the next request.
    upstream_reusable: bool,
}

/// Sends `request` to `upstream` (the rest of its body from `client`),
/// and the answer to `client`, until the answer is complete.
async fn exchange(
    client: &mut TcpStream,
    upstream: &mut TcpStream,
    request: &Request,
) -> Exchanged {
    let (mut cr, mut cw) = client.split();
    let (mut ur, mut uw) = upstream.split();
    let send = async {
        // The head and the body bytes already read go in one write: a
        // function that answers its first chunk sees the whole request.
        uw.write_all(&request.first).await?;
        let mut sent = request.first.len() as u64;
        match request.rest {
            Some(0) => Ok::<_, std::io::Error>((sent, true)),
            Some(rest) => {
                let copied = tokio::io::copy(&mut (&mut cr).take(rest), &mut uw).await?;
                sent += copied;
                Ok((sent, copied == rest))
            }
            None => {
                sent += tokio::io::copy(&mut cr, &mut uw).await?;
                Ok((sent, false))
            }
        }
    };
    let receive = async {
        let mut answer = ResponseEnd::default();
        // Read into spare capacity: no 16 KiB zeroed per request.
        let mut chunk = Vec::with_capacity(16 * 1024);
        let mut client_gone = false;
        while !answer.reached_end() {
            chunk.clear();
            let n = match ur.read_buf(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            answer.see(&chunk[..n]);
            if cw.write_all(&chunk[..n]).await.is_err() {
                client_gone = true;
                break;
            }
        }
        (answer, client_gone)
    };
    tokio::pin!(send);
    tokio::pin!(receive);
    let mut sent = None;
    let (answer, client_gone) = loop {
        tokio::select! {
            s = &mut send, if sent.is_none() => sent = Some(s),
            r = &mut receive => break r,
        }
    };
    let (sent, body_done) = match sent {
        Some(Ok((n, done))) => (n, done),
        // The body was not all sent when the answer ended (or failed).
        _ => (request.first.len() as u64, false),
    };
    let framing = answer.framing();
    Exchanged {
        sent,
        received: answer.seen(),
        client_keep_alive: !client_gone && body_done && framing.is_some_and(|f| f.keep_alive),
        upstream_reusable: body_done && answer.complete_and_kept(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(text: &str) -> (RequestHead, Request, Vec<u8>) {
        let mut buf = text.as_bytes().to_vec();
        let head = nur_http::parse_request_head(&buf).unwrap().unwrap();
        let request = Request::take(&head, &mut buf);
        (head, request, buf)
    }

    #[test]
    fn requests_go_upstream_without_hop_by_hop_fields_and_keep_what_follows() {
        let (head, r, left) = request(
            "POST /x HTTP/1.1\r\nConnection: close\r\nContent-Length: 3\r\n\r\nabcGET / HTTP/1.1\r\n",
        );
        assert_eq!(r.first, b"POST /x HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc");
        assert_eq!(left, b"GET / HTTP/1.1\r\n");
        assert!(!r.may_retry(&head), "POST is not idempotent");
        let (head, r, _) = request("PUT /x HTTP/1.1\r\nContent-Length: 5\r\n\r\nab");
        assert_eq!(r.rest, Some(3));
        assert!(!r.may_retry(&head), "the body is not all in hand");
        let (head, r, _) = request("GET /x HTTP/1.1\r\nHost: a\r\n\r\n");
        assert!(r.may_retry(&head));
    }
}
