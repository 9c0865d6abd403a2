//! Only the console's own page may use the console: it acts with the
//! user's credentials, so a page of another site must not reach it. On a
//! loopback address the Host header must name it (a DNS-rebinding page
//! sends its own name), and every write carries `X-Nur-Console: 1`, which
//! a cross-site form cannot send and a cross-site script may not without
//! a CORS preflight the console never answers. Every answer carries a
//! Content-Security-Policy that allows the console's own files only.

use std::net::SocketAddr;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// The header every write must carry.
pub const WRITE_HEADER: &str = "x-nur-console";

#[derive(Clone)]
pub struct Guard {
    /// Host headers accepted; empty when listening beyond loopback (the
    /// user chose to expose it: any name may reach it).
    hosts: Vec<String>,
}

impl Guard {
    pub fn new(listen: SocketAddr) -> Guard {
        let port = listen.port();
        let hosts = if listen.ip().is_loopback() {
            vec![
                listen.to_string(),
                format!("localhost:{port}"),
                format!("127.0.0.1:{port}"),
                format!("[::1]:{port}"),
            ]
        } else {
            Vec::new()
        };
        Guard { hosts }
    }

    fn host_allowed(&self, host: Option<&str>) -> bool {
        self.hosts.is_empty() || host.is_some_and(|h| self.hosts.iter().any(|a| a == h))
    }
}

pub async fn check(State(guard): State<Guard>, request: Request, next: Next) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok());
    if !guard.host_allowed(host) {
        return (
            StatusCode::FORBIDDEN,
            format!(
                "nur console answers only to its own address ({}), not to Host {host:?}",
                guard.hosts.join(", ")
            ),
        )
            .into_response();
    }
    let write = !matches!(*request.method(), Method::GET | Method::HEAD);
    if write && request.headers().get(WRITE_HEADER).is_none_or(|v| v != "1") {
        return (
            StatusCode::FORBIDDEN,
            format!("a write to nur console needs the header `{WRITE_HEADER}: 1` its page sends"),
        )
            .into_response();
    }
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    for (name, value) in [
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'",
        ),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::CACHE_CONTROL, "no-store"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_consoles_answer_their_own_names_only() {
        let g = Guard::new("127.0.0.1:8090".parse().unwrap());
        assert!(g.host_allowed(Some("127.0.0.1:8090")));
        assert!(g.host_allowed(Some("localhost:8090")));
        assert!(!g.host_allowed(Some("evil.example:8090")));
        assert!(!g.host_allowed(None));
        let open = Guard::new("0.0.0.0:8090".parse().unwrap());
        assert!(open.host_allowed(Some("console.example:8090")));
    }
}
