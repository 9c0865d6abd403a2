//! A connection to a ready pod of a function: least outstanding
//! connections first, a connection kept open from an earlier HTTP request
//! taken before a new one is made, a pod that refuses (or does not answer
//! the connect in time) skipped for the next, before any byte goes
//! upstream; with no ready pod, the wait for one up to the wake timeout.

use std::mem::MaybeUninit;
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
/// used last.
#[derive(Debug, Default)]
pub struct Idle(Mutex<Vec<(TcpStream, Instant)>>);

impl Idle {
    /// The most recently used idle connection that is still open and was
    /// idle for less than `max_idle`; the others are closed.
    fn take(&self, max_idle: Duration) -> Option<TcpStream> {
        let mut idle = self.0.lock().unwrap();
        expire(&mut idle, max_idle);
        while let Some((stream, _)) = idle.pop() {
            if still_open(&stream) {
                return Some(stream);
            }
        }
        None
    }

    /// Closes the connections idle for `max_idle` or more.
    pub fn expire(&self, max_idle: Duration) {
        expire(&mut self.0.lock().unwrap(), max_idle);
    }

    fn put(&self, stream: TcpStream) {
        let mut idle = self.0.lock().unwrap();
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
