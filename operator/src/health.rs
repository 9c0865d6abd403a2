//! The operator's own admin endpoints: `GET /healthz` (the process runs),
//! `GET /readyz` (the API server answered), `GET /metrics` (Prometheus text).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Counters and flags shown on /metrics and /readyz.
#[derive(Debug, Default)]
pub struct Metrics {
    pub ready: AtomicBool,
    pub leader: AtomicBool,
    pub reconciles: AtomicU64,
    pub reconcile_errors: AtomicU64,
    pub module_problems: AtomicU64,
    pub applies: AtomicU64,
}

impl Metrics {
    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        let g = |b: &AtomicBool| u8::from(b.load(Ordering::Relaxed));
        let c = |n: &AtomicU64| n.load(Ordering::Relaxed);
        format!(
            "# HELP nur_operator_reconciles_total Reconciles run.\n\
             # TYPE nur_operator_reconciles_total counter\n\
             nur_operator_reconciles_total {}\n\
             # HELP nur_operator_reconcile_errors_total Reconciles that failed (retried or waiting for a change).\n\
             # TYPE nur_operator_reconcile_errors_total counter\n\
             nur_operator_reconcile_errors_total {}\n\
             # HELP nur_operator_module_problems_total Reconciles that found a module that cannot be served.\n\
             # TYPE nur_operator_module_problems_total counter\n\
             nur_operator_module_problems_total {}\n\
             # HELP nur_operator_applies_total Objects applied server-side.\n\
             # TYPE nur_operator_applies_total counter\n\
             nur_operator_applies_total {}\n\
             # HELP nur_operator_leader Whether this replica holds the leader Lease.\n\
             # TYPE nur_operator_leader gauge\n\
             nur_operator_leader {}\n",
            c(&self.reconciles),
            c(&self.reconcile_errors),
            c(&self.module_problems),
            c(&self.applies),
            g(&self.leader),
        )
    }
}

/// Serves the endpoints on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            continue;
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            let mut n = 0;
            // Read up to the end of the request line.
            while n < buf.len() {
                match stream.read(&mut buf[n..]).await {
                    Ok(0) | Err(_) => break,
                    Ok(m) => n += m,
                }
                if buf[..n].windows(2).any(|w| w == b"\r\n") {
                    break;
                }
            }
            let line = String::from_utf8_lossy(&buf[..n]);
            let path = line.split_whitespace().nth(1).unwrap_or("");
            let (code, body) = route(path, &metrics);
            let reason = match code {
                200 => "OK",
                404 => "Not Found",
                _ => "Service Unavailable",
            };
            let response = format!(
                "HTTP/1.1 {code} {reason}\r\ncontent-type: text/plain; version=0.0.4\r\n\
                 content-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
            let _ = stream.shutdown().await;
        });
    }
}

fn route(path: &str, metrics: &Metrics) -> (u16, String) {
    match path {
        "/healthz" => (200, "ok\n".into()),
        "/readyz" if metrics.ready.load(Ordering::Relaxed) => (200, "ready\n".into()),
        "/readyz" => (503, "not ready\n".into()),
        "/metrics" => (200, metrics.render()),
        _ => (404, "not found\n".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        let m = Metrics::default();
        assert_eq!(route("/healthz", &m).0, 200);
        assert_eq!(route("/readyz", &m).0, 503);
        m.ready.store(true, Ordering::Relaxed);
        m.reconciles.store(3, Ordering::Relaxed);
        assert_eq!(route("/readyz", &m).0, 200);
        let (code, text) = route("/metrics", &m);
        assert_eq!(code, 200);
        assert!(text.contains("nur_operator_reconciles_total 3\n"), "{text}");
        assert!(text.contains("nur_operator_leader 0\n"), "{text}");
        assert_eq!(route("/x", &m).0, 404);
    }
}
