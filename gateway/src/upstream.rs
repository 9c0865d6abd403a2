//! A connection to a ready pod of a function: least outstanding
//! connections first, a pod that refuses (or does not answer the connect
//! in time) skipped for the next, before any byte goes upstream; with no
//! ready pod, the wait for one up to the wake timeout.

use std::time::Duration;

use nur_operator::routes::Target;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::Shared;
use crate::state::Outstanding;

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// No pod became ready within the wake timeout.
    #[error("function {target} has no ready pod (waited {waited:?})")]
    NoReadyPod { target: String, waited: Duration },
    /// Every ready pod refused or did not answer.
    #[error("function {target}: every ready pod refused the connection ({last})")]
    Refused { target: String, last: String },
}

/// How connections to pods are made.
#[derive(Debug, Clone, Copy)]
pub struct Dialer {
    pub connect_timeout: Duration,
    pub wake_timeout: Duration,
}

/// An open connection to a pod, counted as outstanding on it.
pub struct Upstream {
    pub stream: TcpStream,
    _outstanding: Outstanding,
}

impl Dialer {
    pub async fn connect(
        &self,
        shared: &Shared,
        target: &Target,
    ) -> Result<Upstream, UpstreamError> {
        let (state, metrics) = (&shared.state, &shared.metrics);
        let started = Instant::now();
        let deadline = started + self.wake_timeout;
        let mut changes = state.subscribe();
        let mut last = None;
        let mut held = false;
        loop {
            changes.borrow_and_update();
            let endpoints = state.endpoints(target);
            for endpoint in &endpoints {
                let outstanding = Outstanding::new(endpoint);
                let connect = TcpStream::connect(endpoint.addr);
                match tokio::time::timeout(self.connect_timeout, connect).await {
                    Ok(Ok(stream)) => {
                        let _ = stream.set_nodelay(true);
                        if held {
                            metrics.waited(target, started.elapsed());
                        }
                        return Ok(Upstream {
                            stream,
                            _outstanding: outstanding,
                        });
                    }
                    Ok(Err(e)) => last = Some(format!("{}: {e}", endpoint.addr)),
                    Err(_) => {
                        last = Some(format!(
                            "{}: no answer within {:?}",
                            endpoint.addr, self.connect_timeout
                        ))
                    }
                }
                metrics.upstream_errors(target).inc();
            }
            if let Some(last) = &last {
                // Ready pods refused: the next change may bring others, but
                // the client should not wait for a pod that refuses.
                if !endpoints.is_empty() {
                    return Err(UpstreamError::Refused {
                        target: target.to_string(),
                        last: last.clone(),
                    });
                }
            }
            // No ready pod: a function at zero is woken; wait for the
            // endpoints to change.
            held = true;
            if target.wakes {
                shared.activity.wake(target).await;
            }
            // Woken again every few seconds, in case a request was lost.
            let next = deadline.min(Instant::now() + Duration::from_secs(5));
            let _ = tokio::time::timeout_at(next, changes.changed()).await;
            if Instant::now() >= deadline {
                return Err(UpstreamError::NoReadyPod {
                    target: target.to_string(),
                    waited: started.elapsed(),
                });
            }
        }
    }
}
