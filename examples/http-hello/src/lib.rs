//! http-hello: a Nur function that waits for a whole HTTP request.
//!
//! Input chunks are accumulated across `poll_stream` calls until `httparse`
//! sees complete headers and the body announced by `content-length` has
//! arrived. The answer is `Hello, <path>!`, with a content-length, and
//! `connection: close` when the client asked for it (or an error ends the
//! exchange); then the function ends, and the worker closes the connection
//! or, with `--keep-alive` and a request that allows it, serves the
//! client's next request in a fresh instance.
//!
//! - a malformed request, or EOF before a whole request: 400
//! - headers larger than [`MAX_REQUEST`]: 431; a larger request body: 413
//! - `transfer-encoding` (a body without a length): 411
//!
//! Each connection gets a fresh instance, so the buffer below is that one
//! connection's state.

use std::cell::UnsafeCell;

#[link(wasm_import_module = "nur")]
unsafe extern "C" {
    fn nur_send(p: *const u8, l: usize);
    fn nur_log(p: *const u8, l: usize);
    fn nur_end();
}

/// The most bytes (headers and body) a request may take.
const MAX_REQUEST: usize = 64 * 1024;
/// The most headers a request may have.
const MAX_HEADERS: usize = 64;

struct State {
    buf: Vec<u8>,
    done: bool,
}

/// The instance's state. A wasm32-unknown-unknown instance runs one thread,
/// and the worker never calls into it re-entrantly.
struct Global(UnsafeCell<State>);
unsafe impl Sync for Global {}

static STATE: Global = Global(UnsafeCell::new(State {
    buf: Vec::new(),
    done: false,
}));

fn send(bytes: &[u8]) {
    unsafe { nur_send(bytes.as_ptr(), bytes.len()) }
}

fn log(line: &str) {
    unsafe { nur_log(line.as_ptr(), line.len()) }
}

/// Sends a whole response (saying `connection: close` when `close`) and
/// ends.
fn respond(state: &mut State, status: &str, body: &str, head_only: bool, close: bool) {
    let connection = if close { "connection: close\r\n" } else { "" };
    let head = format!(
        "HTTP/1.1 {status}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\n{connection}\r\n",
        body.len()
    );
    send(head.as_bytes());
    if !head_only {
        send(body.as_bytes());
    }
    state.done = true;
    state.buf = Vec::new();
    unsafe { nur_end() }
}

fn error(state: &mut State, status: &str, why: &str) {
    log(&format!("http-hello: {status}: {why}"));
    let body = format!("{status}: {why}\n");
    respond(state, status, &body, false, true);
}

/// What the buffer holds so far.
enum Parsed {
    /// Not a whole request yet.
    Partial { headers_done: bool },
    /// A whole request: the response to send, and whether the client
    /// asked to close after it.
    Complete {
        method: String,
        path: String,
        close: bool,
    },
    /// Answer with this error.
    Error(&'static str, String),
}

fn parse(buf: &[u8]) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            return Parsed::Partial {
                headers_done: false,
            };
        }
        Err(httparse::Error::TooManyHeaders) => {
            return Parsed::Error(
                "431 Request Header Fields Too Large",
                "too many headers".into(),
            );
        }
        Err(e) => return Parsed::Error("400 Bad Request", format!("malformed request: {e}")),
    };
    let mut body_len = 0usize;
    let mut close = req.version == Some(0);
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("connection") {
            close |= String::from_utf8_lossy(h.value)
                .split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("close"));
        }
        if h.name.eq_ignore_ascii_case("transfer-encoding") {
            return Parsed::Error(
                "411 Length Required",
                "transfer-encoding is not supported".into(),
            );
        }
        if h.name.eq_ignore_ascii_case("content-length") {
            let n = std::str::from_utf8(h.value)
                .ok()
                .map(str::trim)
                .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|v| v.parse::<usize>().ok());
            match n {
                Some(n) => body_len = n,
                None => return Parsed::Error("400 Bad Request", "invalid content-length".into()),
            }
        }
    }
    if body_len > MAX_REQUEST - head_len.min(MAX_REQUEST) {
        return Parsed::Error(
            "413 Content Too Large",
            format!("a body of {body_len} bytes is too large"),
        );
    }
    if buf.len() < head_len + body_len {
        return Parsed::Partial { headers_done: true };
    }
    Parsed::Complete {
        method: req.method.unwrap_or("GET").to_string(),
        path: req.path.unwrap_or("/").to_string(),
        close,
    }
}

#[unsafe(no_mangle)]
pub extern "C" fn poll_stream(ptr: usize, len: usize) {
    let state = unsafe { &mut *STATE.0.get() };
    if state.done {
        return;
    }
    if len == 0 {
        // The client closed its sending side before a whole request came.
        let why = if state.buf.is_empty() {
            "no request"
        } else {
            "incomplete request"
        };
        return error(state, "400 Bad Request", why);
    }
    // Take the chunk into the request buffer and give its space back.
    let layout = std::alloc::Layout::array::<u8>(len).unwrap();
    unsafe {
        state
            .buf
            .extend_from_slice(std::slice::from_raw_parts(ptr as *const u8, len));
        std::alloc::dealloc(ptr as *mut u8, layout);
    }
    match parse(&state.buf) {
        Parsed::Partial { headers_done } => {
            if state.buf.len() > MAX_REQUEST {
                if headers_done {
                    error(state, "413 Content Too Large", "request too large")
                } else {
                    error(
                        state,
                        "431 Request Header Fields Too Large",
                        "headers too large",
                    )
                }
            }
        }
        Parsed::Error(status, why) => error(state, status, &why),
        Parsed::Complete {
            method,
            path,
            close,
        } => {
            log(&format!("http-hello: {method} {path}"));
            let body = format!("Hello, {path}!\n");
            respond(state, "200 OK", &body, method == "HEAD", close);
        }
    }
}

#[unsafe(no_mangle)]
pub extern "C" fn alloc(len: usize) -> usize {
    // One byte at least: a zero-sized allocation is not allowed.
    let layout = std::alloc::Layout::array::<u8>(len.max(1)).unwrap();
    unsafe { std::alloc::alloc(layout) as usize }
}
