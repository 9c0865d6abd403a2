//! `nur call NAME`: sends bytes (or an HTTP/1.1 request) to a ready pod
//! of the function through a port-forward via the API server, and returns
//! what the function answers until it closes the connection.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::cluster::{Cluster, ClusterError};
use crate::status::{self, StatusError};

#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error(transparent)]
    Status(#[from] StatusError),
    #[error("function {name} has no ready pod: `nur status {name}` says why")]
    NoReadyPod { name: String },
    #[error("port-forward to pod {pod}: {cause}")]
    Forward { pod: String, cause: String },
    #[error("gateway {gateway}: {cause}")]
    Gateway { gateway: String, cause: String },
    #[error("--http wants `METHOD /path` (e.g. 'GET /hello'), not {0:?}")]
    BadRequestLine(String),
    #[error(
        "header {0:?} is not `Name: value` with a token name (letters, digits, `-`) and a value on one line"
    )]
    BadHeader(String),
    #[error("no answer from {pod} within {timeout:?} (the function's --timeout closes it sooner)")]
    Timeout { pod: String, timeout: Duration },
}

/// What to send.
pub enum Input {
    /// These bytes, as they are.
    Bytes(Vec<u8>),
    /// An HTTP/1.1 request `METHOD /path` with these headers (besides the
    /// ones [`encode`] adds) and these bytes as its body.
    Http {
        request_line: String,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
}

/// The bytes of `input` for function `name` (an HTTP request gets `Host:
/// NAME`, `Connection: close` and, with a body, `Content-Length`).
pub fn encode(input: Input, name: &str) -> Result<Vec<u8>, CallError> {
    match input {
        Input::Bytes(b) => Ok(b),
        Input::Http {
            request_line,
            headers,
            body,
        } => {
            let mut parts = request_line.split_whitespace();
            let (Some(method), Some(path), None) = (parts.next(), parts.next(), parts.next())
            else {
                return Err(CallError::BadRequestLine(request_line));
            };
            if !path.starts_with('/') || !method.bytes().all(|b| b.is_ascii_uppercase()) {
                return Err(CallError::BadRequestLine(request_line));
            }
            let mut out =
                format!("{method} {path} HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n");
            for (key, value) in headers {
                let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
                let framing = ["host", "connection", "content-length", "transfer-encoding"];
                if key.is_empty()
                    || !key.bytes().all(token)
                    || value.contains(['\r', '\n'])
                    || framing.contains(&key.to_ascii_lowercase().as_str())
                {
                    return Err(CallError::BadHeader(format!("{key}: {value}")));
                }
                out.push_str(&format!("{key}: {}\r\n", value.trim()));
            }
            if !body.is_empty() || !matches!(method, "GET" | "HEAD" | "DELETE" | "OPTIONS") {
                out.push_str(&format!("Content-Length: {}\r\n", body.len()));
            }
            out.push_str("\r\n");
            let mut out = out.into_bytes();
            out.extend_from_slice(&body);
            Ok(out)
        }
    }
}

/// The request `nur call --gateway` sends for `input` to a function with
/// HTTP `route`: an HTTP request as given (its Host the route's host when
/// it has one), or the bytes as the body of `POST PREFIX`.
pub fn through_gateway(
    input: Input,
    route: &nur_operator::crd::HttpRoute,
) -> Result<Vec<u8>, CallError> {
    let host = route.host.clone().unwrap_or_else(|| "nur-gateway".into());
    let input = match input {
        Input::Http { .. } => input,
        Input::Bytes(body) => Input::Http {
            request_line: format!("POST {}", route.path_prefix.as_deref().unwrap_or("/")),
            headers: Vec::new(),
            body,
        },
    };
    encode(input, &host)
}

/// Sends `bytes` to `gateway` (HOST:PORT) and reads the answer.
pub async fn call_gateway(
    gateway: &str,
    bytes: &[u8],
    timeout: Duration,
) -> Result<Vec<u8>, CallError> {
    let error = |cause: String| CallError::Gateway {
        gateway: gateway.into(),
        cause,
    };
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(gateway).await?;
        stream.write_all(bytes).await?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await?;
        Ok::<_, std::io::Error>(answer)
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| error(format!("no answer within {timeout:?}")))?
        .map_err(|e| error(e.to_string()))
}

/// Sends `bytes` to a ready pod of `name` and reads the answer until the
/// function ends the connection, or `timeout`.
pub async fn call(
    cluster: &Cluster,
    name: &str,
    bytes: &[u8],
    timeout: Duration,
) -> Result<Vec<u8>, CallError> {
    let f = status::get(cluster, name).await?;
    let pod = status::pods(cluster, name)
        .await
        .map_err(StatusError::from)?
        .into_iter()
        .find(status::pod_ready)
        .and_then(|p| p.metadata.name)
        .ok_or_else(|| CallError::NoReadyPod { name: name.into() })?;
    let port = u16::try_from(f.spec.port).unwrap_or(8080);
    let forward_error = |cause: String| CallError::Forward {
        pod: pod.clone(),
        cause,
    };
    let mut forwarder = cluster
        .api::<Pod>()
        .portforward(&pod, &[port])
        .await
        .map_err(|e| match e {
            kube::Error::Api(s) => forward_error(s.message),
            other => forward_error(crate::cluster::chain(&other)),
        })?;
    let mut stream = forwarder
        .take_stream(port)
        .ok_or_else(|| forward_error("no stream for the port".into()))?;
    let exchange = async {
        stream.write_all(bytes).await?;
        stream.flush().await?;
        // The API server's port-forward relays the worker's close only
        // once the worker has stopped lingering (a second), so an HTTP
        // answer ends where its length says.
        let mut answer = Vec::new();
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            answer.extend_from_slice(&chunk[..n]);
            if http_answer_complete(&answer) {
                break;
            }
        }
        Ok::<_, std::io::Error>(answer)
    };
    let answer = tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| CallError::Timeout {
            pod: pod.clone(),
            timeout,
        })?
        .map_err(|e| forward_error(e.to_string()))?;
    drop(stream);
    forwarder.abort();
    Ok(answer)
}

/// Whether `answer` is a whole HTTP/1.x response delimited by its
/// `Content-Length` (an answer without one ends when the function closes).
fn http_answer_complete(answer: &[u8]) -> bool {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut response = httparse::Response::new(&mut headers);
    let Ok(httparse::Status::Complete(head)) = response.parse(answer) else {
        return false;
    };
    let length = response
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .and_then(|h| {
            std::str::from_utf8(h.value)
                .ok()?
                .trim()
                .parse::<usize>()
                .ok()
        });
    length.is_some_and(|length| answer.len() >= head + length)
}

impl From<ClusterError> for CallError {
    fn from(e: ClusterError) -> Self {
        CallError::Status(StatusError::Cluster(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_http_answer_ends_at_its_content_length() {
        let head = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n";
        assert!(!http_answer_complete(&head[..10]), "half a head");
        assert!(
            !http_answer_complete(&[&head[..], b"hel"].concat()),
            "half a body"
        );
        assert!(http_answer_complete(&[&head[..], b"hello"].concat()));
        let no_length = b"HTTP/1.1 200 OK\r\n\r\nhello";
        assert!(
            !http_answer_complete(no_length),
            "no length: until the close"
        );
        assert!(!http_answer_complete(b"hello"), "not HTTP: until the close");
    }

    #[test]
    fn http_requests_are_well_formed_and_bad_ones_named() {
        let get = encode(
            Input::Http {
                request_line: "GET /hello".into(),
                headers: vec![],
                body: vec![],
            },
            "cowsay",
        )
        .unwrap();
        assert_eq!(
            get,
            b"GET /hello HTTP/1.1\r\nHost: cowsay\r\nConnection: close\r\n\r\n"
        );
        let post = encode(
            Input::Http {
                request_line: "POST /moo".into(),
                headers: vec![("X-Cow".into(), "moo".into())],
                body: b"hi".to_vec(),
            },
            "cowsay",
        )
        .unwrap();
        assert!(post.ends_with(b"X-Cow: moo\r\nContent-Length: 2\r\n\r\nhi"));
        for bad in [("X Y", "1"), ("X", "a\r\nEvil: 1"), ("Content-Length", "9")] {
            let e = encode(
                Input::Http {
                    request_line: "GET /".into(),
                    headers: vec![(bad.0.into(), bad.1.into())],
                    body: vec![],
                },
                "x",
            )
            .unwrap_err();
            assert!(matches!(e, CallError::BadHeader(_)), "{bad:?}: {e}");
        }
        for bad in ["/hello", "get /x", "GET hello", "GET /a b"] {
            let e = encode(
                Input::Http {
                    request_line: bad.into(),
                    headers: vec![],
                    body: vec![],
                },
                "x",
            )
            .unwrap_err();
            assert!(e.to_string().contains("METHOD /path"), "{bad}: {e}");
        }
    }
}
