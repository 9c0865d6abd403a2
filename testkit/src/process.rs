//! Child processes of a test: killed when dropped, their stderr in a log
//! file; the workspace's built binaries.

use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

/// The workspace binary `name` (`nur-operator`, `nur-worker`): from
/// `$NUR_E2E_BIN_DIR` when set (e.g. the static musl release build that
/// goes into the images), else from the target directory of the running
/// test, built when missing.
pub fn binary(name: &str) -> PathBuf {
    if let Some(dir) = std::env::var_os("NUR_E2E_BIN_DIR") {
        let bin = PathBuf::from(dir).join(name);
        assert!(bin.is_file(), "NUR_E2E_BIN_DIR has no {}", bin.display());
        return bin;
    }
    let exe = std::env::current_exe().unwrap();
    // target/debug/deps/TEST -> target/debug/NAME
    let dir = exe.parent().unwrap().parent().unwrap();
    let bin = dir.join(name);
    if !bin.exists() {
        // The package of each binary is named after it, but `nur`'s.
        let package = if name == "nur" { "nur-cli" } else { name };
        let status = Command::new(env!("CARGO"))
            .args(["build", "-p", package, "--bin", name])
            .status()
            .unwrap();
        assert!(status.success(), "cargo build -p {package} failed");
    }
    bin
}

/// A child process, killed when dropped; its stderr goes to a log file.
pub struct Process {
    child: Child,
    log: PathBuf,
}

impl Process {
    /// Spawns `cmd` with stdout discarded and stderr written to `log`.
    pub fn spawn(mut cmd: Command, log: PathBuf) -> Process {
        let file = std::fs::File::create(&log).unwrap();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
        eprintln!("log: {}", log.display());
        Process { child, log }
    }

    /// The log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its exit status, when it has exited.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().unwrap()
    }

    /// Whether the process has exited.
    pub fn exited(&mut self) -> bool {
        self.try_wait().is_some()
    }

    /// Panics (with the log) when the process has exited.
    pub fn assert_running(&mut self) {
        if let Some(status) = self.try_wait() {
            panic!("process exited with {status}; log:\n{}", self.log());
        }
    }

    /// Polls `GET path` on `port` until it answers 200, for at most
    /// `timeout`; panics with the log when the process dies first.
    pub fn wait_http_ok(&mut self, port: u16, path: &str, timeout: Duration) {
        let start = Instant::now();
        loop {
            if crate::net::http_get(("127.0.0.1", port), path)
                .is_some_and(|r| r.starts_with("HTTP/1.1 200"))
            {
                return;
            }
            self.assert_running();
            assert!(
                start.elapsed() < timeout,
                "GET 127.0.0.1:{port}{path} not 200 after {timeout:?}; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The stdout of a command that had to succeed; otherwise a panic with its
/// stdout and stderr.
pub fn succeeded(out: Output) -> String {
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The stderr of a command that had to fail; otherwise a panic with its
/// stdout.
pub fn failed(out: Output) -> String {
    assert!(
        !out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stderr).unwrap()
}
