//! Header and body helpers: raw header access by name, the whitelist of
//! headers copied across legs, status mapping and SDP bodies.

use rsip::headers::{ContentType, UntypedHeader};
use rsip::{Header, Headers, Request, Response, StatusCode};

use super::{CallResult, PeerError};
use crate::sip::headers::{name_value, parse_cseq, split_commas};

/// Headers that may be copied from one leg to the other. Everything else
/// (Via, Route, Contact, identity headers, User-Agent, Server, unknown
/// extension headers, …) is dropped. Content-Type travels with the body.
const RELAYED: [&str; 5] = [
    "Content-Disposition",
    "Info-Package",
    "Recv-Info",
    "Event",
    "Retry-After",
];

/// Methods we accept in a dialog, advertised in `Allow`.
pub(super) const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE";

/// The raw value of the first header called `name` (case-insensitive).
pub(super) fn header_value(headers: &Headers, name: &str) -> Option<String> {
    headers
        .iter()
        .map(name_value)
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.to_owned())
}

/// All comma-separated values of every header called `name`, in order.
pub(super) fn header_list(headers: &Headers, name: &str) -> Vec<String> {
    headers
        .iter()
        .map(name_value)
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .flat_map(|(_, v)| split_commas(v).into_iter().map(str::to_owned))
        .collect()
}

/// Whether a comma-separated option-tag header lists `tag`.
pub(super) fn lists_tag(headers: &Headers, name: &str, tag: &str) -> bool {
    header_list(headers, name)
        .iter()
        .any(|t| t.eq_ignore_ascii_case(tag))
}

/// Copies the whitelisted headers of `from` into `to`.
pub(super) fn copy_relayed(from: &Headers, to: &mut Headers) {
    for header in from.iter() {
        let (name, value) = name_value(header);
        if RELAYED.iter().any(|r| r.eq_ignore_ascii_case(name)) {
            to.push(Header::Other(name.to_owned(), value.to_owned()));
        }
    }
}

/// CSeq number and method of a message.
pub(super) fn cseq(headers: &Headers) -> Option<(u32, String)> {
    let value = crate::sip::headers::core_values(headers).cseq?;
    parse_cseq(value).map(|(n, m)| (n, m.to_ascii_uppercase()))
}

/// A message body as the B2BUA sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Body {
    /// No body.
    Empty,
    /// An SDP body.
    Sdp(Vec<u8>),
    /// Another body that may cross as is (e.g. DTMF INFO).
    Other {
        /// Its Content-Type.
        content_type: String,
        /// Its bytes.
        bytes: Vec<u8>,
    },
}

/// Classifies the body of a message; multipart bodies (which could hide
/// SDP with addresses in them) and bodies without Content-Type are refused.
pub(super) fn body_of(headers: &Headers, body: &[u8]) -> Result<Body, PeerError> {
    if body.is_empty() {
        return Ok(Body::Empty);
    }
    let Some(content_type) = header_value(headers, "Content-Type") else {
        return Err(PeerError::Header("Content-Type"));
    };
    let media = content_type.split(';').next().unwrap_or("").trim();
    if media.eq_ignore_ascii_case("application/sdp") {
        Ok(Body::Sdp(body.to_vec()))
    } else if media.to_ascii_lowercase().starts_with("multipart/") {
        Err(PeerError::Header("Content-Type"))
    } else {
        Ok(Body::Other {
            content_type,
            bytes: body.to_vec(),
        })
    }
}

/// Puts `bytes` with `content_type` into a message's headers and body.
pub(super) fn set_body(
    headers: &mut Headers,
    body: &mut Vec<u8>,
    content_type: &str,
    bytes: Vec<u8>,
) {
    headers.push(Header::ContentType(ContentType::new(content_type)));
    *body = bytes;
}

/// The response to `request` with `code`, adding `to_tag` if the To has
/// none. No Server header, no body.
pub(super) fn respond(request: &Request, code: u16, to_tag: Option<&str>) -> Response {
    crate::sip::response_to(request, StatusCode::from(code), to_tag)
}

/// Maps a callee's final status to the one the caller gets.
pub(super) fn map_status(code: u16) -> u16 {
    match code {
        200..=299 => code,
        300..=399 => 480,
        486 | 600 => 486,
        404 | 410 | 484 | 604 => 404,
        408 | 480 => 480,
        // The callee's session-interval floor is not the caller's to fix.
        422 => 502,
        400..=499 | 600..=699 => code,
        _ => 502,
    }
}

/// The call result for a callee's final failure status.
pub(super) fn result_for(code: u16) -> CallResult {
    match code {
        486 | 600 => CallResult::Busy,
        408 | 480 => CallResult::NoAnswer,
        300..=399 | 401..=404 | 410 | 484 | 603 | 604 | 606 => CallResult::Rejected,
        _ => CallResult::Failed,
    }
}

/// The URI inside the first Contact value, as text.
pub(super) fn contact_uri(headers: &Headers) -> Option<String> {
    let contact = header_list(headers, "Contact").into_iter().next()?;
    let uri = match contact.split_once('<') {
        Some((_, rest)) => rest.split_once('>')?.0,
        None => contact.split(';').next()?,
    };
    Some(uri.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_mapping() {
        let cases = [
            (302, 480),
            (486, 486),
            (600, 486),
            (404, 404),
            (410, 404),
            (484, 404),
            (604, 404),
            (408, 480),
            (480, 480),
            (487, 487),
            (403, 403),
            (488, 488),
            (500, 502),
            (503, 502),
            (603, 603),
            (422, 502),
        ];
        for (from, to) in cases {
            assert_eq!(map_status(from), to, "{from}");
        }
        assert_eq!(result_for(486), CallResult::Busy);
        assert_eq!(result_for(302), CallResult::Rejected);
        assert_eq!(result_for(503), CallResult::Failed);
        assert_eq!(result_for(480), CallResult::NoAnswer);
    }
}
