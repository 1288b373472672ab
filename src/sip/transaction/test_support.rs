//! Message fixtures for transaction tests.

use std::time::{Duration, Instant};

use rsip::{Request, Response, SipMessage, StatusCode};

use crate::sip::{parse_datagram, response_to};

/// A request with the given method and branch, parsed from text.
pub(crate) fn request(method: &str, branch: &str) -> Request {
    let text = format!(
        "{method} sip:bob@example.com SIP/2.0\r\n\
         Via: SIP/2.0/UDP 192.0.2.1:5060;branch={branch}\r\n\
         Max-Forwards: 70\r\n\
         From: Alice <sip:alice@example.com>;tag=fromtag\r\n\
         To: Bob <sip:bob@example.com>\r\n\
         Call-ID: call-1@example.com\r\n\
         CSeq: 1 {method}\r\n\
         Route: <sip:proxy.example.com;lr>\r\n\
         Content-Length: 0\r\n\r\n"
    );
    match parse_datagram(text.as_bytes()) {
        Ok(SipMessage::Request(r)) => r,
        other => panic!("fixture did not parse: {other:?}"),
    }
}

/// An INVITE with branch `z9hG4bKinv`.
pub(crate) fn invite() -> Request {
    request("INVITE", "z9hG4bKinv")
}

/// A response to `request` with status `code`, To tag `totag`.
pub(crate) fn response(request: &Request, code: u16) -> Response {
    response_to(request, StatusCode::from(code), Some("totag"))
}

/// Milliseconds after `t0`.
pub(crate) fn ms(t0: Instant, millis: u64) -> Instant {
    t0 + Duration::from_millis(millis)
}
