//! A rollout under constant load, the way a Deployment does it: two workers
//! behind a Service, a new one starts, becomes ready and joins, then an old
//! one is told to drain (SIGTERM). The Service is a small TCP balancer in
//! this test: round-robin over the ready backends, each probed on /readyz
//! like a readiness probe, a backend dropped from the rotation once it
//! answers 503 (or stops answering). No client connection may fail.
//!
//! The workers run with `--drain-delay` longer than the probe period: they
//! keep accepting while /readyz says 503. Without it the listener closes at
//! SIGTERM, and whatever the balancer routes there before its next probe is
//! refused (about 70 of 1,000 connections here).

mod support;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nur_testkit::examples;
use nur_testkit::store::proxy::pipe;
use support::Worker;

/// How often the balancer probes each backend's /readyz.
const PROBE_PERIOD: Duration = Duration::from_millis(200);

struct Backend {
    addr: SocketAddr,
    admin: SocketAddr,
    ready: bool,
    routed: usize,
}

/// The Service: accepts on `addr`, forwards each connection to the next
/// ready backend. A connection to a backend that refuses it is not retried
/// elsewhere (as with kube-proxy): the client sees its connection closed.
struct Balancer {
    addr: SocketAddr,
    backends: Arc<Mutex<Vec<Backend>>>,
    refused: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Balancer {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let backends: Arc<Mutex<Vec<Backend>>> = Arc::default();
        let refused = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (routes, failures) = (backends.clone(), refused.clone());
        std::thread::spawn(move || {
            let mut next = 0;
            for client in listener.incoming().map_while(Result::ok) {
                let target = {
                    let mut backends = routes.lock().unwrap();
                    let ready: Vec<usize> =
                        (0..backends.len()).filter(|&i| backends[i].ready).collect();
                    if ready.is_empty() {
                        None
                    } else {
                        next += 1;
                        let chosen = &mut backends[ready[next % ready.len()]];
                        chosen.routed += 1;
                        Some(chosen.addr)
                    }
                };
                let server = target.and_then(|addr| {
                    TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()
                });
                let Some(server) = server else {
                    failures.fetch_add(1, Ordering::SeqCst);
                    continue;
                };
                pipe(client.try_clone().unwrap(), server.try_clone().unwrap());
                pipe(server, client);
            }
        });
        let (probed, stopped) = (backends.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stopped.load(Ordering::SeqCst) {
                let admins: Vec<SocketAddr> =
                    probed.lock().unwrap().iter().map(|b| b.admin).collect();
                let ready: Vec<bool> = admins.iter().map(|&a| probe(a)).collect();
                for (backend, ready) in probed.lock().unwrap().iter_mut().zip(ready) {
                    backend.ready = ready;
                }
                std::thread::sleep(PROBE_PERIOD);
            }
        });
        Self {
            addr,
            backends,
            refused,
            stop,
        }
    }

    /// Adds a backend; it takes traffic once its /readyz answers 200.
    fn add(&self, worker: &Worker) {
        self.backends.lock().unwrap().push(Backend {
            addr: worker.addr,
            admin: worker.admin,
            ready: false,
            routed: 0,
        });
    }

    fn ready(&self, worker: &Worker) -> bool {
        let backends = self.backends.lock().unwrap();
        backends.iter().any(|b| b.addr == worker.addr && b.ready)
    }

    fn routed(&self, worker: &Worker) -> usize {
        let backends = self.backends.lock().unwrap();
        let backend = backends.iter().find(|b| b.addr == worker.addr);
        backend.map_or(0, |b| b.routed)
    }

    /// Waits up to 10 s for `worker` to be in (or out of) the rotation.
    fn wait_ready(&self, worker: &Worker, ready: bool) {
        let until = Instant::now() + Duration::from_secs(10);
        while self.ready(worker) != ready {
            assert!(
                Instant::now() < until,
                "the balancer never saw ready={ready}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// A readiness probe: 200 within a second.
fn probe(admin: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&admin, Duration::from_secs(1)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let request = "GET /readyz HTTP/1.1\r\nhost: probe\r\nconnection: close\r\n\r\n";
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    response.starts_with(b"HTTP/1.1 200")
}

fn echo_response(input: &[u8]) -> Vec<u8> {
    let mut response =
        format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", input.len()).into_bytes();
    response.extend_from_slice(input);
    response
}

/// Clients looping echo requests through the balancer until `stop`.
struct Load {
    ok: Arc<AtomicUsize>,
    failed: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    clients: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(addr: SocketAddr, clients: usize) -> Self {
        let ok = Arc::new(AtomicUsize::new(0));
        let failed: Arc<Mutex<Vec<String>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let clients = (0..clients)
            .map(|c| {
                let (ok, failed, stop) = (ok.clone(), failed.clone(), stop.clone());
                std::thread::spawn(move || {
                    let mut i = 0;
                    while !stop.load(Ordering::SeqCst) {
                        let input = format!("client {c} request {i}");
                        match request(addr, input.as_bytes()) {
                            Ok(output) if output == echo_response(input.as_bytes()) => {
                                ok.fetch_add(1, Ordering::SeqCst);
                            }
                            Ok(output) => failed.lock().unwrap().push(format!(
                                "{input}: got {:?}",
                                String::from_utf8_lossy(&output)
                            )),
                            Err(e) => failed.lock().unwrap().push(format!("{input}: {e}")),
                        }
                        i += 1;
                    }
                })
            })
            .collect();
        Self {
            ok,
            failed,
            stop,
            clients,
        }
    }

    fn ok(&self) -> usize {
        self.ok.load(Ordering::SeqCst)
    }

    /// Waits up to 20 s for `more` further successful requests.
    fn wait_for(&self, more: usize) {
        let target = self.ok() + more;
        let until = Instant::now() + Duration::from_secs(20);
        while self.ok() < target {
            assert!(Instant::now() < until, "the load stalled at {}", self.ok());
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Stops the clients; (succeeded, failures).
    fn finish(self) -> (usize, Vec<String>) {
        self.stop.store(true, Ordering::SeqCst);
        for client in self.clients {
            client.join().unwrap();
        }
        let failed = self.failed.lock().unwrap().clone();
        (self.ok.load(Ordering::SeqCst), failed)
    }
}

fn request(addr: SocketAddr, input: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.write_all(input)?;
    stream.shutdown(Shutdown::Write)?;
    let mut output = Vec::new();
    stream.read_to_end(&mut output)?;
    Ok(output)
}

#[test]
fn a_rolling_update_under_constant_load_fails_no_connection() {
    // As long as the operator gives real pods: many probe periods, however
    // slow the machine.
    let args = ["--shutdown-grace", "10s", "--drain-delay", "5s"];
    let echo = examples::path("echo.wasm");
    let old = Worker::start(&echo, &args);
    let mut draining = Worker::start(&echo, &args);
    let balancer = Balancer::start();
    balancer.add(&old);
    balancer.add(&draining);
    balancer.wait_ready(&old, true);
    balancer.wait_ready(&draining, true);

    let load = Load::start(balancer.addr, 4);
    load.wait_for(200);

    // maxSurge 1: the new pod starts and joins once ready...
    let new = Worker::start(&echo, &args);
    balancer.add(&new);
    balancer.wait_ready(&new, true);
    load.wait_for(200);
    let before = load.ok();

    // ...then an old one is terminated and leaves the rotation as its
    // readiness fails, while its in-flight connections finish.
    draining.signal(libc::SIGTERM);
    balancer.wait_ready(&draining, false);
    let status = draining
        .wait_exit(Duration::from_secs(20))
        .expect("the drained worker exits");
    assert_eq!(status.code(), Some(0), "the drained worker exits 0");
    load.wait_for(200);

    let (ok, failed) = load.finish();
    let routed = [&old, &draining, &new].map(|w| balancer.routed(w));
    eprintln!(
        "rollout: {ok} connections succeeded ({} after SIGTERM), {} failed, \
         {} refused by a backend; routed to old/drained/new: {routed:?}",
        ok - before,
        failed.len(),
        balancer.refused.load(Ordering::SeqCst),
    );
    assert!(
        failed.is_empty(),
        "{} of {} connections failed, e.g. {:?}",
        failed.len(),
        ok + failed.len(),
        &failed[..failed.len().min(5)]
    );
    assert_eq!(balancer.refused.load(Ordering::SeqCst), 0);
    assert!(routed.iter().all(|&n| n > 0), "{routed:?}");
    // The survivors still serve.
    for worker in [&old, &new] {
        assert_eq!(worker.request(b"after"), echo_response(b"after"));
    }
}
