//! A worker in a cgroup with a memory limit warns at start when its
//! instances together (--max-connections × --memory-limit) can exceed it.
//! Needs a writable cgroup v1 memory hierarchy (root); skipped without one.

mod support;

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use support::{Worker, wat};

const ECHO: &str = r#"
  (func (export "poll_stream") (param $ptr i32) (param $len i32)
    (call $send (local.get $ptr) (local.get $len))
    (call $end))"#;

/// A child of this process's memory cgroup, removed when dropped.
struct Cgroup(PathBuf);

impl Cgroup {
    /// A new child cgroup limited to `bytes`, or `None` without a writable v1 hierarchy.
    fn limited(bytes: u64) -> Option<Self> {
        let cgroups = std::fs::read_to_string("/proc/self/cgroup").ok()?;
        let own = cgroups.lines().find_map(|line| {
            let mut fields = line.splitn(3, ':');
            let controllers = fields.nth(1)?;
            let path = fields.next()?;
            controllers
                .split(',')
                .any(|c| c == "memory")
                .then(|| path.to_string())
        })?;
        let dir = Path::new("/sys/fs/cgroup/memory")
            .join(own.trim_start_matches('/'))
            .join(format!("nur-test-{}", std::process::id()));
        std::fs::create_dir(&dir).ok()?;
        let cgroup = Self(dir);
        std::fs::write(cgroup.0.join("memory.limit_in_bytes"), bytes.to_string()).ok()?;
        Some(cgroup)
    }

    /// `command`, started inside this cgroup.
    fn enter(&self, command: &mut std::process::Command) {
        let procs = CString::new(self.0.join("cgroup.procs").as_os_str().as_bytes()).unwrap();
        // SAFETY: between fork and exec, only open/write/close on memory prepared before.
        unsafe {
            command.pre_exec(move || {
                let fd = libc::open(procs.as_ptr(), libc::O_WRONLY);
                if fd < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                let written = libc::write(fd, b"0".as_ptr().cast(), 1);
                libc::close(fd);
                if written != 1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        // Empty once its processes are reaped; rmdir may need a moment after.
        for _ in 0..100 {
            if std::fs::remove_dir(&self.0).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("could not remove {}", self.0.display());
    }
}

#[test]
fn instances_that_can_outgrow_the_cgroup_memory_limit_are_warned_about() {
    let Some(cgroup) = Cgroup::limited(256 << 20) else {
        eprintln!("skipped: no writable cgroup v1 memory hierarchy");
        return;
    };
    let module = support::module_file(&wat(ECHO), ".wat");
    let start = |connections: &str| {
        let args = ["--max-connections", connections, "--memory-limit", "128Mi"];
        let mut command = Worker::command(module.as_os_str(), &args);
        cgroup.enter(&mut command);
        Worker::spawn(command).unwrap()
    };
    let over = start("4");
    let line = over
        .wait_log(&["cgroup's memory limit"], Duration::from_secs(5))
        .expect("warned");
    assert!(line.contains("\"level\":\"WARN\""), "{line}");
    assert!(
        line.contains("536870912 bytes") && line.contains("268435456 bytes"),
        "{line}"
    );
    let own = std::fs::read_to_string(format!("/proc/{}/cgroup", over.pid())).unwrap();
    assert!(own.contains("nur-test-"), "not in the test cgroup: {own}");
    assert_eq!(over.request(b"served"), b"served");
    let within = start("2");
    assert!(within.serving_line().contains("\"max_connections\":2"));
    assert!(
        within
            .wait_log(&["cgroup's memory limit"], Duration::from_millis(300))
            .is_none(),
        "2 x 128 MiB fit 256 MiB"
    );
    drop((over, within));
}
