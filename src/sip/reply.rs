//! Building responses: stateless `400`/`501` for unparseable requests and
//! the usual "copy Via/From/To/Call-ID/CSeq" response to a parsed request
//! (RFC 3261 §8.2.6.2).

use rsip::headers::{CSeq, CallId, ContentLength, From, To, UntypedHeader, Via};
use rsip::{Header, Headers, Request, Response, StatusCode, Version};

use super::build::new_tag;
use super::headers::tag_of;
use super::parse::ParseError;

/// The raw header values a response to a request must copy, captured from
/// a request that could not be fully parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyHeaders {
    /// Every Via value, topmost first, one value per entry.
    pub vias: Vec<String>,
    /// From value.
    pub from: String,
    /// To value (may lack a tag).
    pub to: String,
    /// Call-ID value.
    pub call_id: String,
    /// CSeq value.
    pub cseq: String,
}

impl ReplyHeaders {
    /// Builds a response with these headers, adding a fresh To tag when the
    /// request had none, and `Content-Length: 0`.
    pub fn response(&self, status: StatusCode) -> Response {
        let mut headers = Headers::default();
        for via in &self.vias {
            headers.push(Header::Via(Via::new(via.as_str())));
        }
        headers.push(Header::From(From::new(self.from.as_str())));
        headers.push(Header::To(To::new(with_tag(&self.to, Some(&new_tag())))));
        headers.push(Header::CallId(CallId::new(self.call_id.as_str())));
        headers.push(Header::CSeq(CSeq::new(self.cseq.as_str())));
        headers.push(Header::ContentLength(ContentLength::new("0")));
        Response {
            status_code: status,
            version: Version::V2,
            headers,
            body: Vec::new(),
        }
    }
}

/// Collects the reply headers while a raw message is being read.
#[derive(Debug, Default)]
pub(crate) struct ReplyHeadersBuilder {
    vias: Vec<String>,
    from: Option<String>,
    to: Option<String>,
    call_id: Option<String>,
    cseq: Option<String>,
}

impl ReplyHeadersBuilder {
    /// Offers one (already expanded) header; the first of each kind wins.
    pub(crate) fn offer(&mut self, name: &str, value: &str) {
        let slot = match name.to_ascii_lowercase().as_str() {
            "via" => {
                self.vias.push(value.to_owned());
                return;
            }
            "from" => &mut self.from,
            "to" => &mut self.to,
            "call-id" => &mut self.call_id,
            "cseq" => &mut self.cseq,
            _ => return,
        };
        if slot.is_none() && !value.is_empty() {
            *slot = Some(value.to_owned());
        }
    }

    /// The reply headers, if every one of them was seen.
    pub(crate) fn build(self) -> Option<ReplyHeaders> {
        if self.vias.is_empty() {
            return None;
        }
        Some(ReplyHeaders {
            vias: self.vias,
            from: self.from?,
            to: self.to?,
            call_id: self.call_id?,
            cseq: self.cseq?,
        })
    }
}

/// Builds the response owed for a parse error: `501 Not Implemented` for an
/// unknown method, `400 Bad Request` for other addressable requests, `None`
/// when nothing can be addressed (garbage, malformed responses).
pub fn response_for_error(err: &ParseError) -> Option<Response> {
    let status = match err {
        ParseError::UnknownMethod { .. } => StatusCode::NotImplemented,
        _ => StatusCode::BadRequest,
    };
    err.reply().map(|reply| reply.response(status))
}

/// Builds a response to `request` (RFC 3261 §8.2.6.2): all Vias, From,
/// Call-ID and CSeq copied, To copied with `to_tag` added if it has no tag
/// yet (pass `None` for `100 Trying`), `Content-Length: 0`, no body.
pub fn response_to(request: &Request, status: StatusCode, to_tag: Option<&str>) -> Response {
    let mut headers = Headers::default();
    for header in request.headers.iter() {
        match header {
            Header::Via(_) | Header::From(_) | Header::CallId(_) | Header::CSeq(_) => {
                headers.push(header.clone())
            }
            Header::To(to) => headers.push(Header::To(To::new(with_tag(to.value(), to_tag)))),
            _ => {}
        }
    }
    headers.push(Header::ContentLength(ContentLength::new("0")));
    Response {
        status_code: status,
        version: Version::V2,
        headers,
        body: Vec::new(),
    }
}

/// Appends `;tag=` to a To value that has no tag yet.
fn with_tag(to: &str, tag: Option<&str>) -> String {
    match tag {
        Some(tag) if tag_of(to).is_none() => format!("{to};tag={tag}"),
        _ => to.to_owned(),
    }
}
