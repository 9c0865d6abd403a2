//! `/healthz` is liveness: it fails when the deadline timer no longer runs,
//! since then guests past their deadline are not stopped.

use std::time::{Duration, Instant};

use nur_worker::admin::{self, Status, TIMER_GRACE};
use nur_worker::deadline::Deadlines;

/// Serves the admin endpoints of `status` on a runtime of their own.
fn serve_admin(status: std::sync::Arc<Status>) -> (tokio::runtime::Runtime, std::net::SocketAddr) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    runtime.spawn(admin::serve(listener, status));
    (runtime, addr)
}

fn healthz(addr: std::net::SocketAddr) -> (u16, String) {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    std::io::Write::write_all(
        &mut stream,
        b"GET /healthz HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n",
    )
    .unwrap();
    let mut response = String::new();
    std::io::Read::read_to_string(&mut stream, &mut response).unwrap();
    let status = response[9..12].parse().unwrap();
    let body = response.split_once("\r\n\r\n").unwrap().1.to_string();
    (status, body)
}

fn interrupter() -> wasmer::Interrupter {
    wasmer::Store::default().interrupter()
}

#[test]
fn a_stuck_deadline_timer_fails_healthz() {
    let deadlines = Deadlines::default();
    let watchdog = deadlines.arm(Instant::now() + Duration::from_millis(50), interrupter());
    // The timer thread stops at its next round, the deadline's.
    let stalled = deadlines.stall();
    let status = Status::new();
    status.watch_deadlines(deadlines.clone());
    let (_admin, addr) = serve_admin(status);
    assert_eq!(healthz(addr).0, 200, "within the grace");
    std::thread::sleep(TIMER_GRACE + Duration::from_millis(300));
    let (code, body) = healthz(addr);
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("deadline timer stuck"), "{body}");
    drop(stalled);
    // The timer runs again, interrupting the overdue guest: healthy again,
    // though that deadline is still armed.
    let again = Instant::now();
    while healthz(addr).0 != 200 {
        assert!(again.elapsed() < Duration::from_secs(5), "still 503");
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(watchdog);
    assert_eq!(healthz(addr).0, 200, "nothing overdue once disarmed");
}

#[test]
fn a_running_timer_keeps_healthz_ok_past_an_overdue_deadline() {
    let deadlines = Deadlines::default();
    let status = Status::new();
    status.watch_deadlines(deadlines.clone());
    let (admin, addr) = serve_admin(status);
    // Armed on the admin's runtime, whose timer keeps retrying the interrupt.
    let watchdog = admin.block_on(async {
        deadlines.arm(Instant::now() + Duration::from_millis(10), interrupter())
    });
    std::thread::sleep(TIMER_GRACE + Duration::from_millis(300));
    assert_eq!(healthz(addr).0, 200);
    drop(watchdog);
}
