//! Loopback networking for tests: a free port, a raw HTTP/1.1 GET, one
//! request/answer exchange over TCP.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream, ToSocketAddrs};
use std::time::Duration;

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Reads until the peer closes (or resets the connection).
pub fn read_to_close(stream: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = [0; 64 * 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return Ok(out),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Ok(out),
            Err(e) => return Err(e),
        }
    }
}

/// Sends `request` as it is to `addr` (10 s read timeout) and reads the
/// answer until the server closes.
pub fn request(addr: impl ToSocketAddrs, request: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(request)?;
    read_to_close(&mut s)
}

/// Sends `input` to `addr`, half-closes, and reads until the server closes
/// (10 s read timeout).
pub fn exchange(addr: impl ToSocketAddrs, input: &[u8]) -> std::io::Result<Vec<u8>> {
    exchange_within(addr, input, Duration::from_secs(10))
}

/// [`exchange`] with a read timeout of `within`.
pub fn exchange_within(
    addr: impl ToSocketAddrs,
    input: &[u8],
    within: Duration,
) -> std::io::Result<Vec<u8>> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(within))?;
    s.write_all(input)?;
    s.shutdown(Shutdown::Write)?;
    read_to_close(&mut s)
}

/// `GET path` over HTTP/1.1 (`connection: close`): the whole response, or
/// None when the server cannot be reached or the answer is not text.
pub fn http_get(addr: impl ToSocketAddrs, path: &str) -> Option<String> {
    let req = format!("GET {path} HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n");
    String::from_utf8(request(addr, req.as_bytes()).ok()?).ok()
}

/// [`http_get`], split into (status code, body).
pub fn get(addr: impl ToSocketAddrs, path: &str) -> Option<(u16, String)> {
    status_and_body(&http_get(addr, path)?)
}

/// The status code and the body of a whole HTTP/1.1 response.
pub fn status_and_body(response: &str) -> Option<(u16, String)> {
    let code = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Some((code, body))
}
