//! The connection's socket, non-blocking, read and written by a serving
//! thread: each read or write that would block waits in `poll(2)` for at
//! most the idle timeout, and never past the connection's deadline. Used by
//! the Nur ABI's loop (`connection.rs`) and by a WASI command's stdin and
//! stdout (`wasi.rs`).

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use crate::connection::Close;
use crate::sys;

/// Longest the worker keeps reading and discarding a client's leftover input
/// after closing its own side, so that the close is a FIN and not a reset.
pub(crate) const LINGER: Duration = Duration::from_secs(1);

pub(crate) fn timed_out(deadline: Instant) -> Close {
    if Instant::now() >= deadline {
        Close::Timeout
    } else {
        Close::Idle
    }
}

/// Waits until `stream` is ready for `events` (POLLIN or POLLOUT), at most
/// `idle` and never past `until`; false when that time has passed.
fn wait(stream: &TcpStream, events: libc::c_short, idle: Duration, until: Instant) -> bool {
    let started = Instant::now();
    let limit = until.saturating_duration_since(started).min(idle);
    let end = started + limit;
    loop {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        // Rounded up, so that a wait never ends early and spins.
        let ms = left.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as i32;
        match sys::poll(stream.as_fd(), events, ms) {
            // Ready, or an error/hang-up that the next read or write reports.
            Ok(true) => return true,
            Ok(false) => continue,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return true,
        }
    }
}

/// Whether the client sends more within `within`: `Some(true)` when bytes
/// wait to be read, `Some(false)` when it closed or reset, `None` when
/// nothing came. With no time to wait, only what is there already counts.
pub(crate) fn next_bytes_within(stream: &TcpStream, within: Duration) -> Option<bool> {
    if !within.is_zero() && !wait(stream, libc::POLLIN, within, Instant::now() + within) {
        return None;
    }
    match stream.peek(&mut [0u8; 1]) {
        Ok(n) => Some(n > 0),
        Err(e) if e.kind() == ErrorKind::WouldBlock => None,
        Err(_) => Some(false),
    }
}

/// Reads at most `buf.capacity()` bytes into `buf` (replacing its contents).
pub(crate) fn read(
    stream: &TcpStream,
    buf: &mut Vec<u8>,
    idle: Duration,
    deadline: Instant,
) -> Result<usize, Close> {
    read_within(stream, buf, idle, deadline)?.ok_or(Close::Idle)
}

/// [`read`], waiting at most `within` for bytes: `None` when none came
/// (the caller waits for them another way).
pub(crate) fn read_within(
    stream: &TcpStream,
    buf: &mut Vec<u8>,
    within: Duration,
    deadline: Instant,
) -> Result<Option<usize>, Close> {
    buf.clear();
    loop {
        match sys::read_spare(stream.as_fd(), buf) {
            Ok(read) => return Ok(Some(read)),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                if !wait(stream, libc::POLLIN, within, deadline) {
                    return match timed_out(deadline) {
                        Close::Timeout => Err(Close::Timeout),
                        _ => Ok(None),
                    };
                }
            }
            Err(_) => return Err(Close::ClientGone),
        }
    }
}

/// Waits until `stream` has bytes (or EOF) to read, at most `idle` and
/// never past `deadline`; false when that time passed.
pub(crate) fn readable(stream: &TcpStream, idle: Duration, deadline: Instant) -> bool {
    wait(stream, libc::POLLIN, idle, deadline)
}

/// Writes all of `bytes`.
pub(crate) fn write(
    mut stream: &TcpStream,
    mut bytes: &[u8],
    idle: Duration,
    deadline: Instant,
) -> Result<(), Close> {
    while !bytes.is_empty() {
        match stream.write(bytes) {
            Ok(0) => return Err(Close::ClientGone),
            Ok(written) => bytes = &bytes[written..],
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                if !wait(stream, libc::POLLOUT, idle, deadline) {
                    return Err(timed_out(deadline));
                }
            }
            Err(_) => return Err(Close::ClientGone),
        }
    }
    Ok(())
}

/// Sends FIN, then reads and drops what the client still sends (for at most
/// [`LINGER`]) so that closing does not reset the connection and destroy
/// output the client has not read yet.
pub(crate) fn linger(stream: &TcpStream) {
    if stream.shutdown(Shutdown::Write).is_err() {
        return;
    }
    let until = Instant::now() + LINGER;
    while drop_arrived(stream).is_err() {
        if !wait(stream, libc::POLLIN, LINGER, until) {
            return;
        }
    }
}

/// Reads and drops what the client has sent so far: `Ok` once its FIN (or
/// an error) ends the connection, `WouldBlock` while it has not. The
/// lingers on a thread ([`linger`]) and on tokio (`server.rs`) both use it;
/// its buffer lives only for the call, never in a connection's task.
pub(crate) fn drop_arrived(mut stream: &TcpStream) -> std::io::Result<()> {
    let mut sink = [0; 4096];
    loop {
        match stream.read(&mut sink) {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Err(e),
            Err(_) => return Ok(()),
        }
    }
}
