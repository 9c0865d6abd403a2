//! `nur-http`: where HTTP/1.1 messages end on a connection, shared by the
//! worker (which serves each request of a kept-alive connection in a fresh
//! instance) and the gateway (which routes request heads and keeps its
//! connections to pods open between requests).
//!
//! Layout:
//! - [`request`]: a request head parsed with httparse (method, host, path,
//!   body framing, close), the head as forwarded by a proxy (hop-by-hop
//!   fields removed), and [`RequestEnd`], which tells which bytes of a
//!   stream belong to the current request.
//! - [`response`]: an answer's framing from its head, and [`ResponseEnd`],
//!   which follows an answer's bytes to its end.
//!
//! Parsing is httparse's; what is written here is only the framing rules
//! of RFC 9112 that both sides need, kept strict: anything ambiguous (two
//! lengths, chunked with a length, an answer without a length) ends the
//! connection after the exchange rather than guessing where the next
//! message starts.
#![forbid(unsafe_code)]

pub mod request;
pub mod response;

pub use request::{Body, HeadError, RequestEnd, RequestHead, parse_request_head};
pub use response::{ResponseEnd, ResponseFraming, response_framing};

/// Most header fields a message may have.
pub const MAX_HEADERS: usize = 100;

/// Whether a comma-separated field value names `token` (case-insensitive).
fn has_token(value: &str, token: &str) -> bool {
    value
        .split(',')
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}
