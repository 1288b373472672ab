//! Stream framing for SIP over TCP/TLS (RFC 3261 §18.3).
//!
//! On a stream, Content-Length is the only message delimiter, so it is
//! mandatory; a message without it, or over the size caps, is a framing
//! error after which the stream cannot be resynchronised: the driver must
//! close the connection (optionally after a `400`/`413`, which needs no
//! framing of the peer's bytes). CR/LF between messages (RFC 5626
//! keep-alives) are skipped.

use bytes::{Bytes, BytesMut};

/// Default cap on the size of a message head (start line + headers).
pub const DEFAULT_MAX_HEADER: usize = 64 * 1024;
/// Default cap on Content-Length.
pub const DEFAULT_MAX_BODY: usize = 1024 * 1024;

/// Why a stream cannot be framed any more. Always the peer's fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    /// No end of headers within the cap.
    #[error("message head exceeds {limit} bytes")]
    HeaderTooLarge {
        /// The cap in force.
        limit: usize,
    },
    /// Content-Length above the cap.
    #[error("Content-Length {length} exceeds {limit} bytes")]
    BodyTooLarge {
        /// The announced body length.
        length: usize,
        /// The cap in force.
        limit: usize,
    },
    /// A message on a stream without Content-Length (§18.3).
    #[error("missing Content-Length on a stream")]
    MissingContentLength,
    /// Content-Length that is not a number, or several that disagree.
    #[error("invalid Content-Length")]
    InvalidContentLength,
    /// Head and body together above the cap on one message.
    #[error("message of {length} bytes exceeds {limit} bytes")]
    MessageTooLarge {
        /// The message's length (head plus Content-Length).
        length: usize,
        /// The cap in force.
        limit: usize,
    },
}

/// Splits a byte stream into whole SIP messages by Content-Length.
///
/// Each message comes out as one `Bytes` (head and exactly Content-Length
/// body bytes), ready for [`crate::sip::parse_datagram`].
#[derive(Debug)]
pub struct StreamFramer {
    buf: BytesMut,
    /// Bytes of the current head already searched for the blank line.
    scanned: usize,
    /// Total length of the current message once its head is complete.
    pending: Option<usize>,
    failed: bool,
    max_header: usize,
    max_body: usize,
    /// Cap on head and body together.
    max_total: usize,
}

impl Default for StreamFramer {
    fn default() -> Self {
        Self::new()
    }
}

impl StreamFramer {
    /// A framer with the default caps (64 KiB head, 1 MiB body).
    pub fn new() -> Self {
        Self::with_limits(DEFAULT_MAX_HEADER, DEFAULT_MAX_BODY)
    }

    /// A framer with explicit caps on head size and Content-Length.
    pub fn with_limits(max_header: usize, max_body: usize) -> Self {
        Self {
            buf: BytesMut::new(),
            scanned: 0,
            pending: None,
            failed: false,
            max_header,
            max_body,
            max_total: max_header.saturating_add(max_body),
        }
    }

    /// A framer that buffers at most `max` bytes for one message, head and
    /// body together (what a connection may make us hold).
    pub fn with_max_message(max: usize) -> Self {
        Self {
            max_total: max,
            ..Self::with_limits(max, max)
        }
    }

    /// Appends bytes read from the stream. Ignored after a framing error.
    pub fn push(&mut self, data: &[u8]) {
        if !self.failed {
            self.buf.extend_from_slice(data);
        }
    }

    /// Bytes buffered and not yet returned.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next complete message, `None` if more bytes are needed, or a
    /// framing error (returned once; afterwards always `None`).
    pub fn next_message(&mut self) -> Option<Result<Bytes, FramingError>> {
        if self.failed {
            return None;
        }
        let total = match self.pending {
            Some(total) => total,
            None => match self.read_head()? {
                Ok(total) => total,
                Err(e) => return Some(Err(self.fail(e))),
            },
        };
        if self.buf.len() < total {
            self.pending = Some(total);
            return None;
        }
        self.pending = None;
        self.scanned = 0;
        Some(Ok(self.buf.split_to(total).freeze()))
    }

    /// Looks for a complete head; yields the whole message length.
    fn read_head(&mut self) -> Option<Result<usize, FramingError>> {
        self.skip_keepalives();
        let from = self.scanned.saturating_sub(3);
        let Some(head_end) = find_head_end(&self.buf, from) else {
            self.scanned = self.buf.len();
            let too_big = self.buf.len() > self.max_header;
            return too_big.then_some(Err(FramingError::HeaderTooLarge {
                limit: self.max_header,
            }));
        };
        if head_end > self.max_header {
            return Some(Err(FramingError::HeaderTooLarge {
                limit: self.max_header,
            }));
        }
        let head = self.buf.get(..head_end).unwrap_or_default();
        Some(content_length(head).and_then(|length| {
            if length > self.max_body {
                return Err(FramingError::BodyTooLarge {
                    length,
                    limit: self.max_body,
                });
            }
            let total = head_end.saturating_add(length);
            if total > self.max_total {
                return Err(FramingError::MessageTooLarge {
                    length: total,
                    limit: self.max_total,
                });
            }
            Ok(total)
        }))
    }

    fn skip_keepalives(&mut self) {
        if self.scanned == 0 {
            let n = self
                .buf
                .iter()
                .take_while(|&&b| b == b'\r' || b == b'\n')
                .count();
            let _ = self.buf.split_to(n);
        }
    }

    fn fail(&mut self, e: FramingError) -> FramingError {
        self.failed = true;
        self.buf.clear();
        e
    }
}

/// Index just past the empty line ending the head, searching from `from`.
fn find_head_end(buf: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while let Some(offset) = buf.get(i..)?.iter().position(|&b| b == b'\n') {
        let nl = i + offset;
        match (buf.get(nl + 1), buf.get(nl + 2)) {
            (Some(b'\n'), _) => return Some(nl + 2),
            (Some(b'\r'), Some(b'\n')) => return Some(nl + 3),
            _ => i = nl + 1,
        }
    }
    None
}

/// The Content-Length of a head (full or compact `l` name).
fn content_length(head: &[u8]) -> Result<usize, FramingError> {
    let mut found: Option<usize> = None;
    for line in head.split(|&b| b == b'\n').skip(1) {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let name = line.get(..colon).unwrap_or_default().trim_ascii();
        if !(name.eq_ignore_ascii_case(b"content-length") || name.eq_ignore_ascii_case(b"l")) {
            continue;
        }
        let value = line.get(colon + 1..).unwrap_or_default().trim_ascii();
        let length = parse_decimal(value).ok_or(FramingError::InvalidContentLength)?;
        if found.is_some_and(|previous| previous != length) {
            return Err(FramingError::InvalidContentLength);
        }
        found = Some(length);
    }
    found.ok_or(FramingError::MissingContentLength)
}

fn parse_decimal(digits: &[u8]) -> Option<usize> {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

#[cfg(test)]
#[path = "framing_tests.rs"]
mod tests;
