//! Test harness: runs the real `nur-worker` binary on loopback ports and
//! talks to it over real sockets.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_nur-worker");

/// Wraps a `poll_stream` body in a module with the three imports, two pages
/// of exported memory and an `alloc` that always answers 1024.
pub fn wat(body: &str) -> String {
    format!(
        r#"(module
  (import "nur" "nur_send" (func $send (param i32 i32)))
  (import "nur" "nur_log" (func $log (param i32 i32)))
  (import "nur" "nur_end" (func $end))
  (memory (export "memory") 2)
  (func (export "alloc") (param i32) (result i32) (i32.const 1024))
  {body})"#
    )
}

/// Writes a module to a temporary file.
pub fn module_file(text: &str, extension: &str) -> tempfile::TempPath {
    let mut file = tempfile::Builder::new()
        .suffix(extension)
        .tempfile()
        .unwrap();
    file.write_all(text.as_bytes()).unwrap();
    file.into_temp_path()
}

/// A running worker process.
pub struct Worker {
    child: Child,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    logs: Arc<Mutex<Vec<String>>>,
    _module: Option<tempfile::TempPath>,
}

/// A worker that exited before it was ready.
#[derive(Debug)]
pub struct Failed {
    pub status: ExitStatus,
    pub logs: String,
}

impl Failed {
    /// Asserts the worker exited 1 and logged `message`.
    pub fn assert_refused(&self, message: &str) {
        assert_eq!(self.status.code(), Some(1), "{}", self.logs);
        assert!(
            self.logs.contains(message),
            "{message:?} missing from\n{}",
            self.logs
        );
    }
}

impl Worker {
    /// Sends `n` requests at once, the i-th `"{prefix} {i}"`, and hands each
    /// input and response to `check`.
    pub fn concurrently(&self, n: usize, prefix: &str, check: impl Fn(&[u8], Vec<u8>) + Sync) {
        std::thread::scope(|scope| {
            let requests: Vec<_> = (0..n)
                .map(|i| {
                    let check = &check;
                    scope.spawn(move || {
                        let input = format!("{prefix} {i}").into_bytes();
                        check(&input, self.request(&input));
                    })
                })
                .collect();
            for request in requests {
                request.join().unwrap();
            }
        });
    }

    /// Serves a WAT module given as text.
    pub fn wat(text: &str, args: &[&str]) -> Self {
        let file = module_file(text, ".wat");
        let mut worker = Self::start(&file, args);
        worker._module = Some(file);
        worker
    }

    /// Serves the module at `path`; panics unless it becomes ready.
    pub fn start(path: &Path, args: &[&str]) -> Self {
        Self::try_start(path, args).unwrap_or_else(|f| panic!("worker failed: {f:?}"))
    }

    pub fn try_start(path: &Path, args: &[&str]) -> Result<Self, Failed> {
        Self::spawn(Self::command(path.as_os_str(), args))
    }

    /// The `nur-worker serve` command for `module` on loopback ports, JSON logs.
    pub fn command(module: &std::ffi::OsStr, args: &[&str]) -> Command {
        let mut command = Command::new(BIN);
        command
            .arg("serve")
            .arg("--module")
            .arg(module)
            .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
            .args(["--log-format", "json"])
            .args(args);
        command
    }

    /// The `"serving"` log line.
    pub fn serving_line(&self) -> String {
        self.wait_log(&["\"message\":\"serving\""], Duration::from_secs(1))
            .unwrap()
    }

    /// Runs `command` (a `nur-worker serve` with JSON logs) until it serves.
    pub fn spawn(mut command: Command) -> Result<Self, Failed> {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let logs = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        let started = Instant::now();
        loop {
            let serving = logs
                .lock()
                .unwrap()
                .iter()
                .find(|l| l.contains("\"message\":\"serving\"") || l.contains(" serving "))
                .cloned();
            if let Some(line) = serving {
                let field = |name: &str| -> SocketAddr {
                    let json = format!("\"{name}\":\"");
                    let (start, end) = match line.find(&json) {
                        Some(at) => (at + json.len(), '"'),
                        None => (
                            line.find(&format!(" {name}=")).unwrap() + name.len() + 2,
                            ' ',
                        ),
                    };
                    let end = start
                        + line[start..]
                            .find([end, '\n'])
                            .unwrap_or(line.len() - start);
                    line[start..end].parse().unwrap()
                };
                let (addr, admin) = (field("listen"), field("admin"));
                return Ok(Self {
                    child,
                    addr,
                    admin,
                    logs,
                    _module: None,
                });
            }
            if let Some(status) = child.try_wait().unwrap() {
                std::thread::sleep(Duration::from_millis(100));
                let logs = logs.lock().unwrap().join("\n");
                return Err(Failed { status, logs });
            }
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "worker did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A connection with a 10 s read timeout.
    pub fn connect(&self) -> TcpStream {
        let stream = TcpStream::connect(self.addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream
    }

    /// Sends `input`, closes the sending side, reads until the worker closes.
    pub fn request(&self, input: &[u8]) -> Vec<u8> {
        let mut stream = self.connect();
        stream.write_all(input).unwrap();
        stream.shutdown(Shutdown::Write).unwrap();
        read_to_close(&mut stream)
    }

    pub fn logs(&self) -> Vec<String> {
        self.logs.lock().unwrap().clone()
    }

    /// Waits up to `timeout` for a log line containing every needle.
    pub fn wait_log(&self, needles: &[&str], timeout: Duration) -> Option<String> {
        let until = Instant::now() + timeout;
        loop {
            if let Some(line) = self
                .logs()
                .into_iter()
                .find(|l| needles.iter().all(|n| l.contains(n)))
            {
                return Some(line);
            }
            if Instant::now() > until {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// GET on the admin port: (status, body).
    pub fn admin_get(&self, path: &str) -> (u16, String) {
        nur_testkit::net::get(self.admin, path).expect("GET on the admin port")
    }

    /// The value of one metric sample, e.g. `nur_guest_traps_total{kind="unreachable"}`.
    pub fn metric(&self, sample: &str) -> f64 {
        let (_, body) = self.admin_get("/metrics");
        body.lines()
            .find_map(|l| l.strip_prefix(sample)?.strip_prefix(' '))
            .map_or(0.0, |v| v.trim().parse().unwrap())
    }

    /// Waits up to 5 s for a metric sample to reach `value`; returns the last value seen.
    pub fn wait_metric(&self, sample: &str, value: f64) -> f64 {
        let until = Instant::now() + Duration::from_secs(5);
        loop {
            let seen = self.metric(sample);
            if seen == value || Instant::now() > until {
                return seen;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    /// The worker's thread count (`Threads:` of /proc/PID/status).
    pub fn threads(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("Threads:"))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .unwrap()
            .count()
    }

    pub fn signal(&self, signal: i32) {
        assert_eq!(unsafe { libc::kill(self.pid() as i32, signal) }, 0);
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let until = Instant::now() + timeout;
        while Instant::now() < until {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads until the peer closes (or resets); panics on a read timeout.
pub fn read_to_close(stream: &mut TcpStream) -> Vec<u8> {
    nur_testkit::net::read_to_close(stream)
        .unwrap_or_else(|e| panic!("reading from the worker: {e}"))
}

/// Runs `nur-worker check` on a file: (exit code, stdout + stderr).
pub fn check(path: &Path) -> (i32, String) {
    let out = Command::new(BIN).arg("check").arg(path).output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

/// Closes with SO_LINGER 0: the kernel sends RST instead of FIN.
pub fn reset(stream: TcpStream) {
    use std::os::fd::AsRawFd;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket and a `linger` that outlives the call.
    let rc = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&raw const linger).cast(),
            size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "setsockopt(SO_LINGER)");
    drop(stream);
}
