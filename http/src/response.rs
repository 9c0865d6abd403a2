//! Answers: their framing from their head, and where one ends.

use crate::{MAX_HEADERS, has_token};

/// Most bytes of an answer's head looked at for its framing.
pub const MAX_RESPONSE_HEAD: usize = 64 * 1024;

/// How an answer ends, from its head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseFraming {
    /// Bytes of the head.
    pub head_len: usize,
    /// The body's length, when a length (or the status) gives it.
    pub content_length: Option<u64>,
    /// The client may send another request after this answer: it is
    /// delimited (a length, or chunked) and does not ask to close.
    pub keep_alive: bool,
}

impl ResponseFraming {
    /// The whole answer's length, when its head gives it.
    pub fn total(&self) -> Option<u64> {
        self.content_length.map(|c| self.head_len as u64 + c)
    }
}

/// The framing of a whole answer head at the start of `bytes`, else `None`
/// (not all there yet, or not an HTTP/1.x answer).
pub fn response_framing(bytes: &[u8]) -> Option<ResponseFraming> {
    parse(bytes).ok().flatten()
}

/// [`response_framing`], telling a head not all there yet (`Ok(None)`)
/// from bytes that are no HTTP answer (`Err`).
fn parse(bytes: &[u8]) -> Result<Option<ResponseFraming>, httparse::Error> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    let head_len = match resp.parse(bytes)? {
        httparse::Status::Complete(len) => len,
        httparse::Status::Partial => return Ok(None),
    };
    let mut content_length = None;
    let mut chunked = false;
    let mut close = resp.version == Some(0);
    for h in resp.headers.iter() {
        let value = String::from_utf8_lossy(h.value);
        if h.name.eq_ignore_ascii_case("content-length") {
            content_length = value.trim().parse().ok();
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = has_token(&value, "chunked");
        } else if h.name.eq_ignore_ascii_case("connection") && has_token(&value, "close") {
            close = true;
        }
    }
    let code = resp.code.unwrap_or(200);
    if code < 200 {
        // 1xx: an interim answer, or 101 and another protocol from here on.
        return Ok(Some(ResponseFraming {
            head_len,
            content_length: None,
            keep_alive: false,
        }));
    }
    // 204 and 304 have no body.
    let content_length = if code == 204 || code == 304 {
        Some(0)
    } else if chunked {
        None
    } else {
        content_length
    };
    let delimited = content_length.is_some() || chunked;
    Ok(Some(ResponseFraming {
        head_len,
        content_length,
        keep_alive: delimited && !close,
    }))
}

/// Follows one answer's bytes, as they are sent, to its end.
#[derive(Debug, Default)]
pub struct ResponseEnd {
    /// The head so far, when it came in more than one piece.
    head: Vec<u8>,
    framing: Option<ResponseFraming>,
    /// Bytes of the answer seen.
    seen: u64,
    /// Its head could not be read: not an HTTP answer, or too large.
    unframed: bool,
}

impl ResponseEnd {
    /// Counts `bytes`, the answer's next ones.
    pub fn see(&mut self, bytes: &[u8]) {
        self.seen += bytes.len() as u64;
        if self.framing.is_some() || self.unframed || bytes.is_empty() {
            return;
        }
        let parsed = if self.head.is_empty() {
            parse(bytes)
        } else {
            self.head.extend_from_slice(bytes);
            parse(&self.head)
        };
        let Ok(framing) = parsed else {
            self.unframed = true;
            self.head = Vec::new();
            return;
        };
        self.framing = framing;
        if self.framing.is_some() {
            self.head = Vec::new();
        } else if self.head.is_empty() {
            self.head.extend_from_slice(bytes);
        }
        if self.framing.is_none() && self.head.len() >= MAX_RESPONSE_HEAD {
            self.unframed = true;
        }
    }

    /// The answer's framing, once its head was seen.
    pub fn framing(&self) -> Option<ResponseFraming> {
        self.framing
    }

    /// Bytes seen so far.
    pub fn seen(&self) -> u64 {
        self.seen
    }

    /// All of a length-delimited answer has been seen (nothing past it),
    /// so the connection may carry another exchange, and the answer
    /// allows that.
    pub fn complete_and_kept(&self) -> bool {
        self.framing
            .is_some_and(|f| f.keep_alive && f.total() == Some(self.seen))
    }

    /// All of a length-delimited answer has been seen, or more.
    pub fn reached_end(&self) -> bool {
        self.framing
            .and_then(|f| f.total())
            .is_some_and(|t| self.seen >= t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_say_where_they_end() {
        let f = response_framing(b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nabc").unwrap();
        assert_eq!(
            (f.head_len, f.content_length, f.keep_alive),
            (38, Some(3), true)
        );
        let f = response_framing(b"HTTP/1.1 200 OK\r\n\r\n").unwrap();
        assert!(!f.keep_alive, "delimited by close");
        let f =
            response_framing(b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\nconnection: close\r\n\r\n")
                .unwrap();
        assert!(!f.keep_alive);
        let f = response_framing(b"HTTP/1.1 204 No Content\r\n\r\n").unwrap();
        assert_eq!((f.content_length, f.keep_alive), (Some(0), true));
        let f = response_framing(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n").unwrap();
        assert_eq!((f.content_length, f.keep_alive), (None, true));
        let f =
            response_framing(b"HTTP/1.1 101 Switching Protocols\r\nupgrade: x\r\n\r\n").unwrap();
        assert!(!f.keep_alive, "another protocol follows");
        assert!(response_framing(b"HTTP/1.1 200 OK\r\n").is_none());
    }

    #[test]
    fn an_answer_is_followed_through_its_pieces() {
        let mut r = ResponseEnd::default();
        r.see(b"HTTP/1.1 200 OK\r\ncontent-");
        assert!(r.framing().is_none());
        r.see(b"length: 5\r\n\r\nhel");
        assert!(!r.complete_and_kept() && !r.reached_end());
        r.see(b"lo");
        assert!(r.complete_and_kept() && r.reached_end());
        r.see(b"!");
        assert!(!r.complete_and_kept(), "a byte past the length");

        let mut r = ResponseEnd::default();
        r.see(b"hello, not HTTP at all");
        assert!(!r.complete_and_kept() && !r.reached_end());
    }
}
