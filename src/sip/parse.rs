//! Datagram parsing: cut the message into start line, headers and body,
//! normalising what RFC 3261 allows, check what every message needs, fill
//! in rsip's model ([`super::assemble`]), and classify failures so that a
//! `400`/`501` can be sent whenever the request can still be addressed.
//!
//! Normalisation (RFC 3261 §7): leading CRLFs skipped, bare LF accepted,
//! folded lines unfolded (§7.3.1), whitespace before `:` removed, compact
//! names expanded (§7.3.3), comma-joined Via values split into separate
//! Via headers, the body truncated to Content-Length (§18.3; a body shorter
//! than Content-Length is an error).

use std::borrow::Cow;

use rsip::SipMessage;

use super::assemble;
use super::headers::{ViaInfo, comma_parts, expand_compact, is_token, parse_cseq};
use super::reply::{ReplyHeaders, ReplyHeadersBuilder};

/// Why a datagram (or a framed stream message) could not be parsed.
///
/// Every variant is the peer's fault. [`ParseError::reply`] tells whether a
/// response can be addressed; [`crate::sip::response_for_error`] builds it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// A malformed request whose Via/From/To/Call-ID/CSeq could be read:
    /// answer `400 Bad Request`.
    #[error("bad request: {reason}")]
    BadRequest {
        /// What was wrong.
        reason: String,
        /// Headers to copy into the `400`.
        reply: Box<ReplyHeaders>,
    },
    /// A well-formed request with a method rsip does not know: answer
    /// `501 Not Implemented`.
    #[error("unknown method {method}")]
    UnknownMethod {
        /// The method token as received.
        method: String,
        /// Headers to copy into the `501`.
        reply: Box<ReplyHeaders>,
    },
    /// A malformed response: drop it (responses are never answered).
    #[error("bad response: {reason}")]
    BadResponse {
        /// What was wrong.
        reason: String,
    },
    /// Garbage, or a request whose Via/From/To/Call-ID/CSeq cannot be
    /// read: no response can be addressed, drop it.
    #[error("unaddressable message: {reason}")]
    Unaddressable {
        /// What was wrong.
        reason: String,
    },
}

impl ParseError {
    /// The headers a `400`/`501` must copy, if the request was addressable.
    pub fn reply(&self) -> Option<&ReplyHeaders> {
        match self {
            Self::BadRequest { reply, .. } | Self::UnknownMethod { reply, .. } => Some(reply),
            Self::BadResponse { .. } | Self::Unaddressable { .. } => None,
        }
    }
}

/// Parses one SIP message received as a datagram (or framed off a stream).
///
/// Never panics. See the module docs for the normalisation applied.
pub fn parse_datagram(bytes: &[u8]) -> Result<SipMessage, ParseError> {
    let raw = RawMessage::read(bytes);
    let start = raw.start_line()?;
    // The headers an error reply needs are only gathered for an error:
    // gathering them for every message was a tenth of its parse.
    let fail = |reason: String| Err(classify(&start, reason, raw.reply_headers()));
    if let Some(problem) = raw.problems.first() {
        return fail(problem.clone());
    }
    if let StartLine::Request { method, .. } = &start
        && assemble::method(method).is_none()
    {
        return Err(unknown_method(method, raw.reply_headers()));
    }
    if let Err(reason) = raw.validate(&start) {
        return fail(reason);
    }
    match raw.assemble(&start) {
        Ok(message) => Ok(message),
        Err(reason) => fail(bounded(reason)),
    }
}

/// Longest reason kept from rsip's errors, which quote the whole input.
const MAX_REASON: usize = 160;

fn bounded(mut reason: String) -> String {
    if let Some((cut, _)) = reason.char_indices().nth(MAX_REASON) {
        reason.truncate(cut);
        reason.push('…');
    }
    reason
}

fn unknown_method(method: &str, reply: Option<ReplyHeaders>) -> ParseError {
    match reply {
        Some(reply) => ParseError::UnknownMethod {
            method: bounded(method.to_owned()),
            reply: Box::new(reply),
        },
        None => ParseError::Unaddressable {
            reason: format!("unknown method {method} without Via/From/To/Call-ID/CSeq"),
        },
    }
}

fn classify(start: &StartLine, reason: String, reply: Option<ReplyHeaders>) -> ParseError {
    match (start, reply) {
        (StartLine::Response { .. }, _) => ParseError::BadResponse { reason },
        (StartLine::Request { .. }, Some(reply)) => ParseError::BadRequest {
            reason,
            reply: Box::new(reply),
        },
        (StartLine::Request { .. }, None) => ParseError::Unaddressable { reason },
    }
}

/// What the start line says.
#[derive(Debug, Clone)]
enum StartLine<'a> {
    Request {
        /// The method token as received.
        method: &'a str,
        /// The Request-URI as received.
        uri: &'a str,
    },
    Response {
        /// The status code, 100 to 699 (checked by [`RawMessage::validate`]).
        code: u16,
        /// The reason phrase, possibly empty.
        reason: &'a str,
    },
}

/// One message split into start line, normalised headers and body.
struct RawMessage<'a> {
    start: &'a [u8],
    /// Names and values borrowed from the datagram (owned only where a
    /// folded line had to be joined), instead of a copied line and two
    /// `String`s per header.
    headers: Vec<(Cow<'a, str>, Cow<'a, str>)>,
    body: &'a [u8],
    problems: Vec<String>,
}

impl<'a> RawMessage<'a> {
    fn read(bytes: &'a [u8]) -> Self {
        let bytes = skip_leading_crlf(bytes);
        let (head, body) = split_head_body(bytes);
        let mut lines = lines(head);
        let start = lines.next().unwrap_or_default();
        let mut raw = Self {
            start,
            headers: Vec::with_capacity(16),
            body,
            problems: Vec::new(),
        };
        // One UTF-8 check for the whole head; line by line only when that
        // fails, to keep the lines that are text for an error reply.
        let text = std::str::from_utf8(head).ok();
        let as_text = |line: &'a [u8]| match text {
            Some(text) => Ok(sub_str(text, head, line)),
            None => std::str::from_utf8(line).map_err(|_| ()),
        };
        for line in unfold(lines.map(as_text), &mut raw.problems) {
            match line {
                Cow::Borrowed(line) => raw.add_header(line, Cow::Borrowed),
                Cow::Owned(line) => raw.add_header(&line, |s: &str| Cow::Owned(s.to_owned())),
            }
        }
        raw.apply_content_length();
        raw
    }

    /// Adds the header `line`, its parts kept with `keep` (borrowed from
    /// the datagram when they can be).
    fn add_header<'s>(&mut self, line: &'s str, keep: impl Fn(&'s str) -> Cow<'a, str>) {
        let Some((name, value)) = line.split_once(':') else {
            self.problems.push("header line without colon".into());
            return;
        };
        let name = name.trim_end_matches([' ', '\t']);
        if !is_token(name) {
            self.problems.push("invalid header name".into());
            return;
        }
        let name = expand_compact(name);
        let value = value.trim_matches([' ', '\t']);
        if has_control(value) {
            self.problems.push("control character in a header".into());
            return;
        }
        if name.eq_ignore_ascii_case("Via") {
            for part in comma_parts(value) {
                self.headers.push((Cow::Borrowed("Via"), keep(part)));
            }
        } else {
            self.headers.push((keep(name), keep(value)));
        }
    }

    fn apply_content_length(&mut self) {
        let values: Vec<&str> = self
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("Content-Length"))
            .map(|(_, v)| v.as_ref())
            .collect();
        let Some(first) = values.first() else {
            return;
        };
        if values.iter().any(|v| v != first) {
            self.problems
                .push("conflicting Content-Length headers".into());
            return;
        }
        match first.parse::<usize>() {
            Ok(len) if len <= self.body.len() => {
                self.body = self.body.get(..len).unwrap_or_default()
            }
            Ok(_) => self
                .problems
                .push("body shorter than Content-Length".into()),
            Err(_) => self.problems.push("invalid Content-Length".into()),
        }
    }

    fn start_line(&self) -> Result<StartLine<'a>, ParseError> {
        if self.start.starts_with(b"SIP/") {
            return self.status_line();
        }
        let Ok(line) = std::str::from_utf8(self.start) else {
            return Err(self.bad_request_line());
        };
        let mut parts = line.split(' ');
        let (Some(method), Some(uri), Some(version), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(self.bad_request_line());
        };
        if !is_token(method) || !version.eq_ignore_ascii_case("SIP/2.0") {
            return Err(self.bad_request_line());
        }
        Ok(StartLine::Request { method, uri })
    }

    /// `SIP/2.0 SP 3DIGIT SP reason`; anything else is a bad response.
    fn status_line(&self) -> Result<StartLine<'a>, ParseError> {
        let bad = |reason: &str| ParseError::BadResponse {
            reason: reason.into(),
        };
        let line = std::str::from_utf8(self.start).map_err(|_| bad("non-UTF-8 status line"))?;
        let (version, rest) = line
            .split_once(' ')
            .ok_or_else(|| bad("malformed status line"))?;
        if !version.eq_ignore_ascii_case("SIP/2.0") {
            return Err(bad("not SIP/2.0"));
        }
        let rest = rest.trim_start_matches(' ');
        let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
        if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad("malformed status code"));
        }
        let code = code.parse().map_err(|_| bad("malformed status code"))?;
        Ok(StartLine::Response { code, reason })
    }

    /// A request line that is not `Method SP URI SP SIP/2.0`: 400 if the
    /// headers allow it (a line that does not look like SIP at all is
    /// still answered only when the SIP headers are there).
    fn bad_request_line(&self) -> ParseError {
        let reason = "malformed request line".to_owned();
        match self.reply_headers() {
            Some(reply) => ParseError::BadRequest {
                reason,
                reply: Box::new(reply),
            },
            None => ParseError::Unaddressable { reason },
        }
    }

    fn reply_headers(&self) -> Option<ReplyHeaders> {
        let mut builder = ReplyHeadersBuilder::default();
        for (name, value) in &self.headers {
            builder.offer(name, value);
        }
        builder.build()
    }

    /// The first value of header `name` (names are already expanded).
    fn first(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_ref())
    }

    /// Checks what every message needs: a readable top Via and a CSeq;
    /// From, To, Call-ID and a CSeq method matching the request's; a status
    /// code in range.
    fn validate(&self, start: &StartLine) -> Result<(), String> {
        let via = self.first("Via").ok_or("missing Via")?;
        ViaInfo::parse(via).ok_or("malformed top Via")?;
        let cseq = self.first("CSeq").ok_or("missing CSeq")?;
        let (_, cseq_method) = parse_cseq(cseq).ok_or("malformed CSeq")?;
        match start {
            StartLine::Request { method, .. } => {
                self.first("From").ok_or("missing From")?;
                self.first("To").ok_or("missing To")?;
                self.first("Call-ID").ok_or("missing Call-ID")?;
                (cseq_method == *method)
                    .then_some(())
                    .ok_or_else(|| "CSeq method mismatch".into())
            }
            StartLine::Response { code, .. } => (100..700)
                .contains(code)
                .then_some(())
                .ok_or_else(|| format!("status code {code} out of range")),
        }
    }

    /// The rsip message of a validated start line and these headers.
    fn assemble(&self, start: &StartLine) -> Result<SipMessage, String> {
        let headers: Vec<rsip::Header> = self
            .headers
            .iter()
            .map(|(name, value)| assemble::header(name, value))
            .collect();
        let body = self.body.to_vec();
        Ok(match start {
            StartLine::Request { method, uri } => SipMessage::Request(rsip::Request {
                method: assemble::method(method).ok_or("unknown method")?,
                uri: assemble::request_uri(&super::uri::normalise_request_uri(uri))?,
                version: rsip::Version::V2,
                headers: headers.into(),
                body,
            }),
            StartLine::Response { code, reason } => SipMessage::Response(rsip::Response {
                status_code: assemble::status(*code, reason),
                version: rsip::Version::V2,
                headers: headers.into(),
                body,
            }),
        })
    }
}

/// A control character other than HT: C0, DEL, or C1 (U+0080–U+009F,
/// which UTF-8 writes after a 0xC2 byte, so plain ASCII skips the slow
/// check).
fn has_control(value: &str) -> bool {
    value.bytes().any(|b| b < 0x20 || b == 0x7f || b == 0xc2)
        && value.chars().any(|c| c.is_control() && c != '\t')
}

fn skip_leading_crlf(bytes: &[u8]) -> &[u8] {
    let n = bytes
        .iter()
        .take_while(|&&b| b == b'\r' || b == b'\n')
        .count();
    bytes.get(n..).unwrap_or_default()
}

fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// The lines of `head`, LF-separated, a CR before the LF dropped.
fn lines(head: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(head);
    std::iter::from_fn(move || {
        let text = rest?;
        let (line, after) = match memchr::memchr(b'\n', text) {
            Some(i) => (text.get(..i), text.get(i + 1..)),
            None => (Some(text), None),
        };
        rest = after;
        line.map(strip_cr)
    })
}

/// `part` (a slice of `bytes`, which `text` is) as a slice of `text`: no
/// second UTF-8 check, since `part` starts and ends at line breaks.
fn sub_str<'a>(text: &'a str, bytes: &[u8], part: &[u8]) -> &'a str {
    let from = (part.as_ptr() as usize).saturating_sub(bytes.as_ptr() as usize);
    text.get(from..from + part.len()).unwrap_or_default()
}

/// Splits at the first empty line (CRLF or bare LF). Without an empty line
/// the whole input is the head and the body is empty.
pub(crate) fn split_head_body(bytes: &[u8]) -> (&[u8], &[u8]) {
    for i in memchr::memchr_iter(b'\n', bytes) {
        let body_at = match bytes.get(i + 1..) {
            Some([b'\n', ..]) => i + 2,
            Some([b'\r', b'\n', ..]) => i + 3,
            _ => continue,
        };
        let head = bytes.get(..i + 1).unwrap_or_default();
        return (head, bytes.get(body_at..).unwrap_or_default());
    }
    (bytes, &[])
}

/// Joins continuation lines (starting with SP/HT) onto the previous line;
/// a line is copied only when something is joined onto it. A line that is
/// not text (`Err`) is dropped with a problem.
fn unfold<'a>(
    lines: impl Iterator<Item = Result<&'a str, ()>>,
    problems: &mut Vec<String>,
) -> Vec<Cow<'a, str>> {
    let mut out: Vec<Cow<'a, str>> = Vec::new();
    for line in lines {
        let Ok(line) = line else {
            problems.push("non-UTF-8 byte in a header".into());
            continue;
        };
        if line.is_empty() {
            continue;
        }
        let folded = line.starts_with([' ', '\t']);
        match (folded, out.last_mut()) {
            (true, Some(previous)) => {
                let previous = previous.to_mut();
                let trimmed_len = previous.trim_ascii_end().len();
                previous.truncate(trimmed_len);
                previous.push(' ');
                previous.push_str(line.trim_ascii_start());
            }
            (true, None) => problems.push("continuation line before the first header".into()),
            (false, _) => out.push(Cow::Borrowed(line)),
        }
    }
    out
}

#[cfg(test)]
#[path = "parse_tests.rs"]
mod tests;
