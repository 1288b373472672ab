//! Identifiers and ACK construction.

use rand::Rng;
use rand::distr::Alphanumeric;
use rsip::headers::{CSeq, ContentLength, MaxForwards, Route, UntypedHeader, Via};
use rsip::{Header, Headers, Method, Request, Response, Uri};

use super::headers::{ViaInfo, comma_parts, core_values, parse_cseq, split_commas, top_via};

/// The RFC 3261 §8.1.1.7 magic cookie that starts every compliant branch.
pub const MAGIC_COOKIE: &str = "z9hG4bK";

fn random_token(len: usize) -> String {
    rand::rng()
        .sample_iter(Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

/// A fresh Via branch: the magic cookie plus 24 random alphanumerics.
pub fn new_branch() -> String {
    format!("{MAGIC_COOKIE}{}", random_token(24))
}

/// A fresh From/To tag (16 random alphanumerics, RFC 3261 §19.3).
pub fn new_tag() -> String {
    random_token(16)
}

/// Builds the ACK for a non-2xx final response, as the INVITE client
/// transaction must (RFC 3261 §17.1.1.3): same Request-URI, Call-ID, From
/// and CSeq number as the INVITE, method ACK, the INVITE's top Via only
/// (same branch), To from the response (carrying its tag), the INVITE's
/// Route headers, no body.
pub fn ack_for_non_2xx(invite: &Request, response: &Response) -> Request {
    let mut headers = Headers::default();
    if let Some(via) = top_via(&invite.headers) {
        headers.push(Header::Via(Via::new(via)));
    }
    copy_dialog_headers(invite, response, &mut headers);
    for header in invite.headers.iter() {
        if matches!(header, Header::Route(_)) {
            headers.push(header.clone());
        }
    }
    ack_request(invite.uri.clone(), headers)
}

/// Helper for the dialog layer (the transaction layer does *not* ACK 2xx):
/// builds the ACK for a 2xx to `invite` (RFC 3261 §13.2.2.4) with a new
/// transaction `branch`.
///
/// Request-URI is the 2xx's Contact URI (the remote target) when rsip can
/// parse it, else the INVITE's Request-URI; Route headers are the 2xx's
/// Record-Route values in reverse order (loose routing assumed; a strict
/// route set is not handled). The top Via of the INVITE is reused with its
/// branch replaced. Retransmitted 2xx must be answered by re-sending this
/// same ACK; that absorption belongs to the dialog layer.
pub fn ack_for_2xx(invite: &Request, response: &Response, branch: &str) -> Request {
    let mut headers = Headers::default();
    if let Some(via) = top_via(&invite.headers) {
        headers.push(Header::Via(Via::new(replace_branch(via, branch))));
    }
    copy_dialog_headers(invite, response, &mut headers);
    for route in record_routes(response).into_iter().rev() {
        headers.push(Header::Route(Route::new(route)));
    }
    let uri = contact_uri(response).unwrap_or_else(|| invite.uri.clone());
    ack_request(uri, headers)
}

fn ack_request(uri: Uri, mut headers: Headers) -> Request {
    headers.push(Header::MaxForwards(MaxForwards::new("70")));
    headers.push(Header::ContentLength(ContentLength::new("0")));
    Request {
        method: Method::Ack,
        uri,
        version: rsip::Version::V2,
        headers,
        body: Vec::new(),
    }
}

/// From and Call-ID from the INVITE, To from the response, CSeq `n ACK`.
fn copy_dialog_headers(invite: &Request, response: &Response, headers: &mut Headers) {
    for header in invite.headers.iter() {
        if matches!(header, Header::From(_) | Header::CallId(_)) {
            headers.push(header.clone());
        }
    }
    if let Some(to) = response.headers.iter().find(|h| matches!(h, Header::To(_))) {
        headers.push(to.clone());
    }
    let number = core_values(&invite.headers)
        .cseq
        .and_then(parse_cseq)
        .map_or(1, |(n, _)| n);
    headers.push(Header::CSeq(CSeq::new(format!("{number} ACK"))));
}

fn replace_branch(via: &str, branch: &str) -> String {
    let Some(info) = ViaInfo::parse(via) else {
        return via.to_owned();
    };
    let mut out = format!("{} {};branch={branch}", info.protocol, info.sent_by);
    let others = info.params.split(';').map(str::trim);
    for param in others.filter(|p| !p.is_empty() && !p.to_ascii_lowercase().starts_with("branch")) {
        out.push(';');
        out.push_str(param);
    }
    out
}

fn record_routes(response: &Response) -> Vec<String> {
    let mut routes = Vec::new();
    for header in response.headers.iter() {
        if let Header::RecordRoute(rr) = header {
            routes.extend(split_commas(rr.value()).into_iter().map(str::to_owned));
        }
    }
    routes
}

fn contact_uri(response: &Response) -> Option<Uri> {
    let contact = response.headers.iter().find_map(|h| match h {
        Header::Contact(c) => comma_parts(c.value()).next(),
        _ => None,
    })?;
    let uri = match contact.split_once('<') {
        Some((_, rest)) => rest.split_once('>')?.0,
        None => contact.split(';').next()?,
    };
    Uri::try_from(uri.trim()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn branches_and_tags() {
        let a = new_branch();
        assert!(a.starts_with(MAGIC_COOKIE));
        assert_eq!(a.len(), MAGIC_COOKIE.len() + 24);
        assert_ne!(a, new_branch());
        assert_eq!(new_tag().len(), 16);
    }

    #[test]
    fn branch_replacement_keeps_other_params() {
        let via = "SIP/2.0/UDP h:5060;rport;branch=z9hG4bKold;received=1.2.3.4";
        assert_eq!(
            replace_branch(via, "z9hG4bKnew"),
            "SIP/2.0/UDP h:5060;branch=z9hG4bKnew;rport;received=1.2.3.4"
        );
    }

    fn parse(text: &str) -> rsip::SipMessage {
        match crate::sip::parse_datagram(text.as_bytes()) {
            Ok(m) => m,
            Err(e) => panic!("fixture: {e}"),
        }
    }

    #[test]
    fn ack_for_2xx_uses_contact_record_route_and_new_branch() {
        let rsip::SipMessage::Request(invite) = parse(
            "INVITE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP a.example.com;branch=z9hG4bKinv;rport\r\n\
             From: <sip:a@example.com>;tag=f\r\nTo: <sip:bob@example.com>\r\nCall-ID: c\r\nCSeq: 7 INVITE\r\n\r\n",
        ) else {
            panic!("not a request");
        };
        let rsip::SipMessage::Response(ok) = parse(
            "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP a.example.com;branch=z9hG4bKinv\r\n\
             Record-Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>\r\n\
             From: <sip:a@example.com>;tag=f\r\nTo: <sip:bob@example.com>;tag=t\r\nCall-ID: c\r\n\
             CSeq: 7 INVITE\r\nContact: <sip:bob@192.0.2.9:5070>\r\n\r\n",
        ) else {
            panic!("not a response");
        };
        let ack = ack_for_2xx(&invite, &ok, "z9hG4bKack");
        assert_eq!(ack.method, Method::Ack);
        assert_eq!(ack.uri.to_string(), "sip:bob@192.0.2.9:5070");
        let via = top_via(&ack.headers)
            .and_then(ViaInfo::parse)
            .and_then(|v| v.branch());
        assert_eq!(via, Some("z9hG4bKack"));
        let routes: Vec<String> = ack
            .headers
            .iter()
            .filter_map(|h| match h {
                Header::Route(r) => Some(r.value().to_owned()),
                _ => None,
            })
            .collect();
        assert_eq!(
            routes,
            vec!["<sip:p2.example.com;lr>", "<sip:p1.example.com;lr>"]
        );
        let core = core_values(&ack.headers);
        assert_eq!(core.cseq, Some("7 ACK"));
        assert_eq!(core.to, Some("<sip:bob@example.com>;tag=t"));
    }
}
