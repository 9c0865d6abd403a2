//! A TCP proxy in front of a real server (MinIO), to play storage outages
//! without stopping the server other tests share: it can be down (every
//! connection cut, new ones closed at once) and come back, and it can cut one
//! response partway, after running a hook (e.g. replacing the object).

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

type Hook = Box<dyn FnOnce() + Send>;

#[derive(Default)]
struct State {
    down: AtomicBool,
    accepted: AtomicUsize,
    /// Both ends of every forwarded connection, to cut them when going down.
    live: Mutex<Vec<TcpStream>>,
    /// Cut the next response that passes this many bytes, after the hook.
    cut: Mutex<Option<(usize, Hook)>>,
}

/// The proxy; clones share it.
#[derive(Clone)]
pub struct Proxy {
    pub addr: SocketAddr,
    state: Arc<State>,
}

impl Proxy {
    /// A proxy to `target` (`host:port`) on a free loopback port, forwarding.
    pub fn start(target: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State::default());
        let (shared, target) = (state.clone(), target.to_string());
        std::thread::spawn(move || {
            for client in listener.incoming().map_while(Result::ok) {
                shared.accepted.fetch_add(1, Ordering::SeqCst);
                if shared.down.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let Ok(server) = TcpStream::connect(&target) else {
                    continue;
                };
                {
                    let mut live = shared.live.lock().unwrap();
                    live.push(client.try_clone().unwrap());
                    live.push(server.try_clone().unwrap());
                }
                pipe(client.try_clone().unwrap(), server.try_clone().unwrap());
                forward_response(server, client, shared.clone());
            }
        });
        Self { addr, state }
    }

    /// `http://127.0.0.1:PORT`, for AWS_ENDPOINT_URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Down: cuts every forwarded connection and closes new ones at once,
    /// before any answer, as a stopping server does. Up: forwards again.
    pub fn set_down(&self, down: bool) {
        self.state.down.store(down, Ordering::SeqCst);
        if down {
            for stream in self.state.live.lock().unwrap().drain(..) {
                let _ = stream.shutdown(Shutdown::Both);
            }
        }
    }

    /// Connections accepted so far, refused ones included.
    pub fn accepted(&self) -> usize {
        self.state.accepted.load(Ordering::SeqCst)
    }

    /// The next response to pass `bytes` bytes runs `hook`, then its
    /// connection is cut: the client gets part of a body.
    pub fn cut_response_after(&self, bytes: usize, hook: impl FnOnce() + Send + 'static) {
        *self.state.cut.lock().unwrap() = Some((bytes, Box::new(hook)));
    }

    /// Whether the armed cut has happened.
    pub fn cut_done(&self) -> bool {
        self.state.cut.lock().unwrap().is_none()
    }
}

/// Server to client, counting bytes for [`Proxy::cut_response_after`].
fn forward_response(mut from: TcpStream, mut to: TcpStream, state: Arc<State>) {
    std::thread::spawn(move || {
        let mut buf = [0; 16 * 1024];
        let mut passed = 0;
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 {
                break;
            }
            let armed = {
                let mut cut = state.cut.lock().unwrap();
                match cut.as_ref() {
                    Some((after, _)) if passed + n > *after => cut.take(),
                    _ => None,
                }
            };
            if let Some((after, hook)) = armed {
                let keep = after.saturating_sub(passed);
                let _ = to.write_all(&buf[..keep]);
                hook();
                let _ = to.shutdown(Shutdown::Both);
                let _ = from.shutdown(Shutdown::Both);
                return;
            }
            if to.write_all(&buf[..n]).is_err() {
                break;
            }
            passed += n;
        }
        let _ = to.shutdown(Shutdown::Write);
    });
}

/// Copies `from` to `to` until EOF, then half-closes `to`.
pub fn pipe(mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let mut buf = [0; 16 * 1024];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 || to.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
}
