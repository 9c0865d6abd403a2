//! markdown: renders the Markdown body of an HTTP request to HTML.
//!
//! A function with real dependencies (httparse, pulldown-cmark), about a
//! megabyte of wasm, used to measure cold starts. Chunks accumulate until the
//! request is whole (headers plus `content-length` bytes of body), then the
//! body is rendered with every CommonMark extension pulldown-cmark has, and
//! the connection ends. Bare `http(s)://` URLs in text become links (regex).
//! An incomplete or malformed request gets 400.

use std::cell::RefCell;

use pulldown_cmark::{Event, Options, Parser, html};
use regex::Regex;

#[link(wasm_import_module = "nur")]
unsafe extern "C" {
    fn nur_send(p: *const u8, l: usize);
    fn nur_end();
}

thread_local! {
    /// This connection's request so far (each connection has its own instance).
    static REQUEST: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

const MAX_REQUEST: usize = 1 << 20;

fn respond(status: &str, content_type: &str, body: &str) {
    let head = format!(
        "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    unsafe {
        nur_send(head.as_ptr(), head.len());
        nur_send(body.as_ptr(), body.len());
        nur_end();
    }
}

/// `Some(body range)` once the request is whole, `None` while it is not.
fn whole(request: &[u8]) -> Result<Option<std::ops::Range<usize>>, String> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut parsed = httparse::Request::new(&mut headers);
    let start = match parsed.parse(request).map_err(|e| e.to_string())? {
        httparse::Status::Complete(start) => start,
        httparse::Status::Partial => return Ok(None),
    };
    let length = parsed
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .map(|h| std::str::from_utf8(h.value).ok().and_then(|v| v.trim().parse::<usize>().ok()))
        .unwrap_or(Some(0))
        .ok_or("bad content-length")?;
    Ok((request.len() >= start + length).then_some(start..start + length))
}

#[unsafe(no_mangle)]
pub extern "C" fn poll_stream(ptr: usize, len: usize) {
    let chunk = unsafe { std::slice::from_raw_parts(ptr as *const u8, len) };
    REQUEST.with_borrow_mut(|request| {
        request.extend_from_slice(chunk);
        let verdict = if request.len() > MAX_REQUEST {
            Err("request too large".to_string())
        } else {
            whole(request)
        };
        match verdict {
            Ok(Some(body)) => {
                let markdown = String::from_utf8_lossy(&request[body]);
                let url = Regex::new(r"https?://[^\s<>()]+").unwrap();
                let events = Parser::new_ext(&markdown, Options::all()).map(|event| match event {
                    Event::Text(text) if url.is_match(&text) => {
                        let escaped = text.replace('&', "&amp;").replace('<', "&lt;");
                        Event::InlineHtml(url.replace_all(&escaped, r#"<a href="$0">$0</a>"#).into_owned().into())
                    }
                    other => other,
                });
                let mut out = String::new();
                html::push_html(&mut out, events);
                respond("200 OK", "text/html; charset=utf-8", &out);
            }
            Ok(None) if len > 0 => {}
            Ok(None) => respond("400 Bad Request", "text/plain", "incomplete request\n"),
            Err(why) => respond("400 Bad Request", "text/plain", &format!("{why}\n")),
        }
    });
}

#[unsafe(no_mangle)]
pub extern "C" fn alloc(len: usize) -> usize {
    let layout = std::alloc::Layout::array::<u8>(len.max(1)).unwrap();
    unsafe { std::alloc::alloc(layout) as usize }
}
