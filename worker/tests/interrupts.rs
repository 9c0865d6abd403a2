//! The deadline interrupt never unwinds a guest inside host code: a guest
//! that calls host functions in a tight loop past a short timeout ends at a
//! safe point, connection after connection, and the worker goes on.

mod support;

use std::io::Write;
use std::net::Shutdown;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use support::{Worker, read_to_close, wat};

/// `l` logs an empty line forever; anything else is echoed.
const LOGGER: &str = r#"
  (func (export "poll_stream") (param $ptr i32) (param $len i32)
    (if (i32.eqz (local.get $len)) (then (call $end) (return)))
    (if (i32.eq (i32.load8_u (local.get $ptr)) (i32.const 108))
      (then (loop $forever (call $log (local.get $ptr) (i32.const 0)) (br $forever))))
    (call $send (local.get $ptr) (local.get $len))
    (call $end))"#;

/// One connection of the logging loop: it gets nothing and is closed.
fn log_forever(worker: &Worker) {
    let Ok(mut stream) = std::net::TcpStream::connect(worker.addr) else {
        let logs = worker.logs();
        let last = &logs[logs.len().saturating_sub(20)..];
        panic!("the worker stopped accepting:\n{}", last.join("\n"));
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(b"l").unwrap();
    let _ = stream.shutdown(Shutdown::Write);
    assert_eq!(read_to_close(&mut stream), b"");
}

#[test]
fn a_thousand_host_call_loops_past_a_5ms_timeout_leave_the_worker_serving() {
    let module = support::module_file(&wat(LOGGER), ".wat");
    let mut command = Worker::command(module.as_os_str(), &["--timeout", "5ms"]);
    // nur_log lines are not written (below INFO), so the loop is all host calls.
    command.env("NUR_LOG", "info,nur::function=warn");
    let mut worker = Worker::spawn(command).unwrap();
    let done = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let monitor = scope.spawn(|| {
            let mut checks = 0;
            while !done.load(Ordering::SeqCst) {
                assert_eq!(worker.admin_get("/readyz").0, 200, "not ready while loaded");
                assert_eq!(
                    worker.admin_get("/healthz").0,
                    200,
                    "not healthy while loaded"
                );
                checks += 1;
                std::thread::sleep(Duration::from_millis(50));
            }
            checks
        });
        // 16 at once: enough to keep both CPUs in guests, few enough that
        // nearly every guest starts before its 5 ms deadline.
        let clients: Vec<_> = (0..16)
            .map(|client| {
                let worker = &worker;
                scope.spawn(move || {
                    for _ in (client..1000).step_by(16) {
                        log_forever(worker);
                    }
                })
            })
            .collect();
        for client in clients {
            client.join().unwrap();
        }
        done.store(true, Ordering::SeqCst);
        assert!(monitor.join().unwrap() > 0);
    });
    // Each loop ended by its deadline: closed for timeout, as a timeout
    // trap at a safe point, or, when the deadline passed before the guest
    // ran at all (a loaded machine), without one; the wait for a client's
    // first byte ends at the deadline too, as `idle`.
    // Every connection is closed, nearly all by their deadline (a loop
    // the deadline caught inside a host call on a loaded machine may
    // close as a fault of kind timeout: seen once in 1000), none by a bug.
    let close = |reason: &str| {
        worker.metric(&format!(
            "nur_connection_closes_total{{reason=\"{reason}\"}}"
        ))
    };
    let all = [
        "timeout",
        "ended",
        "eof",
        "client_gone",
        "idle",
        "fault",
        "internal",
    ];
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while all.iter().map(|r| close(r)).sum::<f64>() < 1000.0 && std::time::Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    let timeouts = close("timeout");
    let traps = worker.metric("nur_guest_traps_total{kind=\"timeout\"}");
    let closed: Vec<(&str, f64)> = all.iter().map(|r| (*r, close(r))).collect();
    assert_eq!(
        closed.iter().map(|(_, n)| n).sum::<f64>(),
        1000.0,
        "{closed:?}"
    );
    assert_eq!(close("internal"), 0.0, "{closed:?}");
    assert!(timeouts + close("idle") >= 990.0, "{closed:?}");
    assert!(traps > 900.0, "{traps} timeout traps");
    assert!(
        worker.alive(),
        "the worker died: {}",
        worker.logs().join("\n")
    );
    let panics: Vec<_> = worker
        .logs()
        .into_iter()
        .filter(|l| l.contains("panicked"))
        .collect();
    assert!(panics.is_empty(), "{panics:?}");
    // Still answering: an echo within 5 ms, given a few tries on a busy machine.
    let answered = (0..50).any(|_| worker.request(b"echo") == b"echo");
    assert!(answered, "no echo answered after the loops");
}

#[test]
fn a_spinning_guest_is_interrupted_with_native_code_compiled_or_from_the_cache() {
    // The interrupt unwinds only inside the module's compiled functions, as
    // found in the artifact: loaded from the cache, they must be found too.
    let body = r#"
      (func (export "poll_stream") (param $ptr i32) (param $len i32)
        (loop $forever (br $forever)))"#;
    let module = support::module_file(&wat(body), ".wat");
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "--timeout",
        "300ms",
        "--cache-dir",
        dir.path().to_str().unwrap(),
    ];
    for native_code in ["compiled", "cache"] {
        let worker = Worker::start(&module, &args);
        assert!(
            worker
                .serving_line()
                .contains(&format!("\"native_code\":\"{native_code}\""))
        );
        let started = std::time::Instant::now();
        assert_eq!(worker.request(b"spin"), b"");
        assert!(started.elapsed() < Duration::from_secs(3), "{native_code}");
        assert_eq!(
            worker.wait_metric("nur_guest_traps_total{kind=\"timeout\"}", 1.0),
            1.0,
            "{native_code}"
        );
    }
}
