//! A connection to a ready pod of a function: least outstanding
//! connections first, a connection kept open from an earlier HTTP request
//! taken before a new one is made, a pod that refuses (or does not answer
//! the connect in time) skipped for the next, before any byte goes
//! upstream; with no ready pod, the wait for one up to the wake timeout.

use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nur_operator::routes::Target;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::Shared;
use crate::state::{Endpoint, Outstanding};

/// Most idle connections kept per pod.
const MAX_IDLE_PER_POD: usize = 256;

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
    /// Longest a connection to a pod is kept idle for the next request;
    /// zero: a new connection for every request.
    pub keep_alive: Duration,
}

/// An open connection to a pod, counted as outstanding on it.
pub struct Upstream {
    pub stream: TcpStream,
    /// Taken from the pod's idle connections (it served a request before).
    pub reused: bool,
    idle: Arc<Idle>,
    _outstanding: Outstanding,
}

/// A pod's connections kept open between requests, the most recently
/// used last, and whether the pod is known to keep them.
///
/// A pod whose worker does not keep connections (one started before
/// `--keep-alive`, or without it) closes each after its answer; the close
/// can arrive just after the answer, so a connection taken at once could
/// still look open, and a request sent on it would be lost. So a pod's
/// connections are used again only once one of them was seen open
/// [`PROOF_AGE`] after its answer: from then on, the pod keeps them.
#[derive(Debug, Default)]
pub struct Idle {
    connections: Mutex<Vec<(TcpStream, Instant)>>,
    keeps_alive: AtomicBool,
}

/// How long after its answer a kept connection must still be open to show
/// that its pod keeps connections (a pod that does not closes at once).
const PROOF_AGE: Duration = Duration::from_millis(100);

impl Idle {
    /// An idle connection that is still open and was idle for less than
    /// `max_idle`, the most recently used once the pod is known to keep
    /// connections, else one idle for [`PROOF_AGE`] at least; the closed
    /// and expired ones are dropped.
    fn take(&self, max_idle: Duration) -> Option<TcpStream> {
        let mut idle = self.connections.lock().unwrap();
        expire(&mut idle, max_idle);
        if self.keeps_alive.load(Ordering::Relaxed) {
            while let Some((stream, _)) = idle.pop() {
                if still_open(&stream) {
                    return Some(stream);
                }
            }
            return None;
        }
        let now = Instant::now();
        while idle
            .first()
            .is_some_and(|(_, since)| now.duration_since(*since) >= PROOF_AGE)
        {
            let (stream, _) = idle.remove(0);
            if still_open(&stream) {
                self.keeps_alive.store(true, Ordering::Relaxed);
                return Some(stream);
            }
        }
        None
    }

    /// Closes the connections idle for `max_idle` or more.
    pub fn expire(&self, max_idle: Duration) {
        expire(&mut self.connections.lock().unwrap(), max_idle);
    }

    fn put(&self, stream: TcpStream) {
        let mut idle = self.connections.lock().unwrap();
        if idle.len() < MAX_IDLE_PER_POD {
            idle.push((stream, Instant::now()));
        }
    }
}

/// Drops the connections idle for `max_idle` or more: the oldest, at the
/// front, the nearest to the pod's own idle timeout.
fn expire(idle: &mut Vec<(TcpStream, Instant)>, max_idle: Duration) {
    let now = Instant::now();
    let old = idle.partition_point(|(_, since)| now.duration_since(*since) >= max_idle);
    idle.drain(..old);
}

/// An idle connection is still open when nothing is waiting on it: no
/// end of stream (the pod closed it: its idle timeout, its drain), no
/// reset, no stray bytes. One `recv(MSG_PEEK)` that would block.
fn still_open(stream: &TcpStream) -> bool {
    let mut byte = [MaybeUninit::<u8>::uninit(); 1];
    match socket2::SockRef::from(stream).peek(&mut byte) {
        Err(e) => e.kind() == std::io::ErrorKind::WouldBlock,
        Ok(_) => false,
    }
}

impl Dialer {
    /// A connection to a ready pod of `target`: a kept one if a pod has
    /// one, else a new one; with no ready pod, waits (and wakes a function
    /// at zero) up to the wake timeout.
    pub async fn connect(
        &self,
        shared: &Shared,
        target: &Target,
    ) -> Result<Upstream, UpstreamError> {
        self.dial(shared, target, !self.keep_alive.is_zero()).await
    }

    /// [`Dialer::connect`], always with a new connection.
    pub async fn connect_new(
        &self,
        shared: &Shared,
        target: &Target,
    ) -> Result<Upstream, UpstreamError> {
        self.dial(shared, target, false).await
    }

    /// Keeps `upstream` for the next request to its pod.
    pub fn release(&self, upstream: Upstream) {
        if !self.keep_alive.is_zero() {
            upstream.idle.put(upstream.stream);
        }
    }

    async fn dial(
        &self,
        shared: &Shared,
        target: &Target,
        reuse: bool,
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
            if reuse {
                for endpoint in &endpoints {
                    if let Some(stream) = endpoint.idle.take(self.keep_alive) {
                        let outstanding = Outstanding::new(endpoint);
                        return Ok(Upstream::new(stream, true, endpoint, outstanding));
                    }
                }
            }
            for endpoint in &endpoints {
                let outstanding = Outstanding::new(endpoint);
                let connect = TcpStream::connect(endpoint.addr);
                match tokio::time::timeout(self.connect_timeout, connect).await {
                    Ok(Ok(stream)) => {
                        let _ = stream.set_nodelay(true);
                        if held {
                            metrics.waited(target, started.elapsed());
                        }
                        return Ok(Upstream::new(stream, false, endpoint, outstanding));
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

impl Upstream {
    fn new(
        stream: TcpStream,
        reused: bool,
        endpoint: &Endpoint,
        outstanding: Outstanding,
    ) -> Upstream {
        Upstream {
            stream,
            reused,
            idle: endpoint.idle.clone(),
            _outstanding: outstanding,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A connection to a server that, after accepting, closes at once
    /// (`close`) or keeps the connection open.
    async fn connection(close: bool) -> TcpStream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            socket.write_all(b"answer").await.unwrap();
            if close {
                drop(socket);
            } else {
                tokio::time::sleep(Duration::from_secs(30)).await;
            }
        });
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let mut answer = [0u8; 6];
        stream.read_exact(&mut answer).await.unwrap();
        stream
    }

    #[tokio::test]
    async fn a_pods_connections_are_used_again_once_it_showed_it_keeps_them() {
        let max_idle = Duration::from_secs(4);
        // A pod that closes after each answer: never used again.
        let closing = Idle::default();
        closing.put(connection(true).await);
        assert!(closing.take(max_idle).is_none(), "too young to tell");
        tokio::time::sleep(PROOF_AGE + Duration::from_millis(50)).await;
        assert!(closing.take(max_idle).is_none(), "closed by the pod");
        assert!(!closing.keeps_alive.load(Ordering::Relaxed));

        // A pod that keeps them: the first once it is old enough, the next
        // at once.
        let keeping = Idle::default();
        keeping.put(connection(false).await);
        assert!(keeping.take(max_idle).is_none(), "too young to tell");
        tokio::time::sleep(PROOF_AGE + Duration::from_millis(50)).await;
        assert!(keeping.take(max_idle).is_some());
        keeping.put(connection(false).await);
        assert!(keeping.take(max_idle).is_some(), "known to keep them");
        // One closed by the pod since (its idle timeout) is dropped.
        keeping.put(connection(true).await);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(keeping.take(max_idle).is_none());
        // So is one idle for too long.
        keeping.put(connection(false).await);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(keeping.take(Duration::from_millis(10)).is_none());
    }
}
