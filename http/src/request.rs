//! Request heads: parsed for routing, forwarded without their hop-by-hop
//! fields, and followed to the request's end on a kept-alive connection.

use std::borrow::Cow;
use std::ops::Range;

use crate::{MAX_HEADERS, has_token};

/// How the request's body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    None,
    Length(u64),
    /// Chunked: its end is not followed here, so the connection carries
    /// no other request after it.
    Chunked,
}

/// A parsed request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    /// Bytes of the head in the buffer.
    pub len: usize,
    pub method: String,
    pub path: String,
    /// The Host (or the absolute URI's authority) without a port, lower case.
    pub host: Option<String>,
    pub body: Body,
    /// The client asked to close after this request (or speaks HTTP/1.0
    /// without keep-alive).
    pub close: bool,
    /// The request line says HTTP/1.0.
    pub http10: bool,
    /// The byte ranges of the head's hop-by-hop fields (`Connection`,
    /// `Keep-Alive`, `Proxy-Connection`), each with its line end.
    hop_by_hop: Vec<Range<usize>>,
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
pub fn parse_request_head(buf: &[u8]) -> Result<Option<RequestHead>, HeadError> {
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
    let http10 = req.version == Some(0);
    let mut close = http10;
    let mut hop_by_hop = Vec::new();
    for h in req.headers.iter() {
        let value = std::str::from_utf8(h.value)
            .map_err(|_| HeadError::Malformed(format!("header {} is not UTF-8", h.name)))?
            .trim();
        let name = h.name;
        if name.eq_ignore_ascii_case("host") {
            if host.is_none() {
                host = Some(value.to_string());
            }
        } else if name.eq_ignore_ascii_case("content-length") {
            let n: u64 = value
                .parse()
                .map_err(|_| HeadError::Malformed(format!("content-length {value:?}")))?;
            // Two different lengths: which one ends the body is ambiguous
            // (request smuggling), so neither is believed.
            if length.is_some_and(|l| l != n) {
                return Err(HeadError::Malformed("two content-length headers".into()));
            }
            length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            if has_token(value, "chunked") {
                chunked = true;
            } else {
                return Err(HeadError::Malformed(format!("transfer-encoding {value:?}")));
            }
        } else if name.eq_ignore_ascii_case("connection") {
            if has_token(value, "close") {
                close = true;
            } else if has_token(value, "keep-alive") && http10 {
                close = false;
            }
            hop_by_hop.push(line_of(buf, h, len));
        } else if name.eq_ignore_ascii_case("keep-alive")
            || name.eq_ignore_ascii_case("proxy-connection")
        {
            hop_by_hop.push(line_of(buf, h, len));
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
    Ok(Some(RequestHead {
        len,
        method,
        path: path.to_string(),
        host,
        body,
        close,
        http10,
        hop_by_hop,
    }))
}

/// The range of a header's whole line in `buf` (name to line end), found
/// from where httparse's slices point.
fn line_of(buf: &[u8], header: &httparse::Header, head_len: usize) -> Range<usize> {
    let start = header.name.as_ptr() as usize - buf.as_ptr() as usize;
    let value_end = header.value.as_ptr() as usize - buf.as_ptr() as usize + header.value.len();
    let end = buf[value_end..head_len]
        .iter()
        .position(|&b| b == b'\n')
        .map_or(head_len, |i| value_end + i + 1);
    start..end
}

impl RequestHead {
    /// The head (the first `len` bytes of `buf`) as a proxy forwards it on
    /// a connection of its own: without the client's hop-by-hop fields
    /// (RFC 9110, 7.6.1), so that a client's `Connection: close` does not
    /// close the proxy's connection to the server.
    pub fn forwarded<'a>(&self, buf: &'a [u8]) -> Cow<'a, [u8]> {
        let head = &buf[..self.len];
        if self.hop_by_hop.is_empty() {
            return Cow::Borrowed(head);
        }
        let mut out = Vec::with_capacity(head.len());
        let mut at = 0;
        for line in &self.hop_by_hop {
            out.extend_from_slice(&head[at..line.start]);
            at = line.end;
        }
        out.extend_from_slice(&head[at..]);
        Cow::Owned(out)
    }
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

/// Follows one request through the bytes of a connection: which of them
/// belong to it, and whether it allows another request after it.
#[derive(Debug)]
pub struct RequestEnd {
    state: State,
    max_head: usize,
}

#[derive(Debug)]
enum State {
    /// The head so far, when it came in more than one piece.
    Head(Vec<u8>),
    /// Body bytes still to come, and whether another request may follow.
    Body { left: u64, keep_alive: bool },
    /// Not HTTP/1.1 that can be followed: every byte belongs to this
    /// request, and no other comes after it.
    Unframed,
}

impl RequestEnd {
    /// A request whose head may take at most `max_head` bytes.
    pub fn new(max_head: usize) -> RequestEnd {
        RequestEnd {
            state: State::Head(Vec::new()),
            max_head,
        }
    }

    /// How many leading bytes of `bytes` belong to this request; those
    /// after them begin the next one.
    pub fn take(&mut self, bytes: &[u8]) -> usize {
        match &mut self.state {
            State::Unframed => bytes.len(),
            State::Body { left, .. } => {
                let n = (*left).min(bytes.len() as u64);
                *left -= n;
                n as usize
            }
            State::Head(earlier) => {
                let had = earlier.len();
                let parsed = if had == 0 {
                    parse_request_head(bytes)
                } else {
                    earlier.extend_from_slice(bytes);
                    parse_request_head(earlier)
                };
                match parsed {
                    Ok(Some(head)) => {
                        let keep_alive = !head.close;
                        self.state = match head.body {
                            Body::None => State::Body {
                                left: 0,
                                keep_alive,
                            },
                            Body::Length(left) => State::Body { left, keep_alive },
                            Body::Chunked => State::Unframed,
                        };
                        let in_head = head.len - had;
                        in_head + self.take(&bytes[in_head..])
                    }
                    Ok(None) => {
                        if had == 0 {
                            earlier.extend_from_slice(bytes);
                        }
                        if earlier.len() > self.max_head {
                            self.state = State::Unframed;
                        }
                        bytes.len()
                    }
                    Err(_) => {
                        self.state = State::Unframed;
                        bytes.len()
                    }
                }
            }
        }
    }

    /// The whole request has been taken.
    pub fn complete(&self) -> bool {
        matches!(self.state, State::Body { left: 0, .. })
    }

    /// The whole request has been taken, and it allows another after it.
    pub fn complete_and_kept(&self) -> bool {
        matches!(
            self.state,
            State::Body {
                left: 0,
                keep_alive: true
            }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(text: &str) -> Result<Option<RequestHead>, HeadError> {
        parse_request_head(text.as_bytes())
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
    fn forwarded_heads_lose_hop_by_hop_fields_only() {
        let text = "GET /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\nX-Keep: 1\r\n\
                    keep-alive: timeout=5\r\nProxy-Connection: x\r\n\r\nbody";
        let h = head(text).unwrap().unwrap();
        assert!(h.close);
        assert_eq!(
            &*h.forwarded(text.as_bytes()),
            b"GET /x HTTP/1.1\r\nHost: a\r\nX-Keep: 1\r\n\r\n"
        );
        let plain = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
        let h = head(plain).unwrap().unwrap();
        assert!(matches!(h.forwarded(plain.as_bytes()), Cow::Borrowed(_)));
    }

    #[test]
    fn a_request_ends_at_its_length_and_the_next_begins() {
        let two = b"POST /a HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcGET /b HTTP/1.1\r\n\r\n";
        let mut r = RequestEnd::new(1024);
        let first = r.take(two);
        assert_eq!(
            &two[..first],
            b"POST /a HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"
        );
        assert!(r.complete_and_kept());

        // A head and a body in pieces.
        let mut r = RequestEnd::new(1024);
        assert_eq!(r.take(b"POST / HTTP/1.1\r\nContent-"), 25);
        assert!(!r.complete());
        assert_eq!(r.take(b"Length: 4\r\n\r\nab"), 15);
        assert!(!r.complete());
        assert_eq!(r.take(b"cdNEXT"), 2);
        assert!(r.complete_and_kept());
    }

    #[test]
    fn requests_that_cannot_be_followed_take_everything_and_keep_nothing() {
        for (text, complete) in [
            ("GET / HTTP/1.1\r\nConnection: close\r\n\r\nrest", true),
            ("GET / HTTP/1.0\r\n\r\nrest", true),
            (
                "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                false,
            ),
            ("\x16\x03\x01 a TLS hello, not HTTP", false),
        ] {
            let mut r = RequestEnd::new(1024);
            let taken = r.take(text.as_bytes());
            assert!(!r.complete_and_kept(), "{text:?}");
            assert_eq!(r.complete(), complete, "{text:?}");
            if !complete {
                assert_eq!(taken, text.len(), "{text:?}");
            }
        }
        let mut r = RequestEnd::new(16);
        r.take(b"GET / HTTP/1.1\r\nX: ");
        assert_eq!(r.take(b"a long header, past the limit"), 29);
        assert!(!r.complete());
    }
}
