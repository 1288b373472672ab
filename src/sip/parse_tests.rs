use proptest::prelude::*;
use rsip::headers::UntypedHeader;
use rsip::message::HeadersExt;
use rsip::{Header, SipMessage, StatusCode};

use super::*;
use crate::sip::headers::tag_of;
use crate::sip::{response_for_error, to_bytes};

const INVITE: &str = "INVITE sip:bob@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP pc33.example.com;branch=z9hG4bK776asdhds\r\n\
Max-Forwards: 70\r\n\
To: Bob <sip:bob@example.com>\r\n\
From: Alice <sip:alice@example.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pc33.example.com\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:alice@pc33.example.com>\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 4\r\n\
\r\n\
v=0\n";

fn request(text: &str) -> rsip::Request {
    match parse_datagram(text.as_bytes()) {
        Ok(SipMessage::Request(r)) => r,
        other => panic!("expected a request, got {other:?}"),
    }
}

fn vias(headers: &rsip::Headers) -> Vec<String> {
    headers
        .iter()
        .filter_map(|h| match h {
            Header::Via(v) => Some(v.value().to_owned()),
            _ => None,
        })
        .collect()
}

#[test]
fn plain_invite() {
    let r = request(INVITE);
    assert_eq!(r.method, rsip::Method::Invite);
    assert_eq!(r.body, b"v=0\n");
    assert!(r.via_header().is_ok());
}

#[test]
fn compact_names_are_expanded() {
    let text = "INVITE sip:bob@example.com SIP/2.0\r\n\
v: SIP/2.0/UDP pc33.example.com;branch=z9hG4bK1\r\n\
f: <sip:alice@example.com>;tag=1\r\n\
t: <sip:bob@example.com>\r\n\
i: abc@host\r\n\
m: <sip:alice@pc33.example.com>\r\n\
c: application/sdp\r\n\
k: timer\r\n\
s: hello\r\n\
CSeq: 1 INVITE\r\n\
l: 2\r\n\r\nhi";
    let r = request(text);
    assert!(r.via_header().is_ok());
    assert_eq!(r.call_id_header().unwrap().value(), "abc@host");
    assert!(r.from_header().is_ok() && r.to_header().is_ok() && r.contact_header().is_ok());
    assert!(
        r.headers
            .iter()
            .any(|h| matches!(h, Header::ContentType(_)))
    );
    assert_eq!(r.body, b"hi");
}

#[test]
fn folded_lines_are_unfolded() {
    let text = INVITE.replace(
        "Max-Forwards: 70\r\n",
        "Subject: I know\r\n   you're\r\n\tthere\r\nMax-Forwards: 70\r\n",
    );
    let r = request(&text);
    let subject = r.headers.iter().find_map(|h| match h {
        Header::Subject(s) => Some(s.value().to_owned()),
        _ => None,
    });
    assert_eq!(subject.as_deref(), Some("I know you're there"));
}

#[test]
fn whitespace_before_colon_and_lf_only() {
    let text = INVITE.replace("To: ", "To   \t: ").replace("\r\n", "\n");
    let r = request(&text);
    assert_eq!(r.to_header().unwrap().value(), "Bob <sip:bob@example.com>");
    assert_eq!(r.body, b"v=0\n");
}

#[test]
fn leading_crlf_is_skipped() {
    let r = request(&format!("\r\n\r\n{INVITE}"));
    assert_eq!(r.method, rsip::Method::Invite);
}

#[test]
fn comma_joined_vias_are_split() {
    let text = INVITE.replace(
        "Via: SIP/2.0/UDP pc33.example.com;branch=z9hG4bK776asdhds\r\n",
        "Via: SIP/2.0/UDP p1.example.com;branch=z9hG4bKa, SIP/2.0/TCP [2001:db8::1]:5060;branch=z9hG4bKb\r\nv: SIP/2.0/UDP p3;branch=z9hG4bKc\r\n",
    );
    let r = request(&text);
    assert_eq!(
        vias(&r.headers),
        vec![
            "SIP/2.0/UDP p1.example.com;branch=z9hG4bKa",
            "SIP/2.0/TCP [2001:db8::1]:5060;branch=z9hG4bKb",
            "SIP/2.0/UDP p3;branch=z9hG4bKc"
        ]
    );
}

#[test]
fn body_truncated_to_content_length() {
    let r = request(&format!("{INVITE}garbage after the body"));
    assert_eq!(r.body, b"v=0\n");
}

#[test]
fn short_body_is_a_bad_request() {
    let text = INVITE.replace("Content-Length: 4", "Content-Length: 40");
    let err = parse_datagram(text.as_bytes()).unwrap_err();
    assert!(matches!(&err, ParseError::BadRequest { reason, .. } if reason.contains("shorter")));
    let resp = response_for_error(&err).unwrap();
    assert_eq!(resp.status_code, StatusCode::BadRequest);
}

#[test]
fn bad_content_length_values() {
    for cl in ["Content-Length: x", "Content-Length: 4\r\nl: 5"] {
        let text = INVITE.replace("Content-Length: 4", cl);
        assert!(
            matches!(
                parse_datagram(text.as_bytes()),
                Err(ParseError::BadRequest { .. })
            ),
            "{cl}"
        );
    }
}

#[test]
fn unknown_method_gets_501() {
    let text = INVITE.replace("INVITE", "FOOBAR");
    let err = parse_datagram(text.as_bytes()).unwrap_err();
    assert!(matches!(&err, ParseError::UnknownMethod { method, .. } if method == "FOOBAR"));
    let resp = response_for_error(&err).unwrap();
    assert_eq!(resp.status_code, StatusCode::NotImplemented);
    assert_eq!(
        vias(&resp.headers),
        vec!["SIP/2.0/UDP pc33.example.com;branch=z9hG4bK776asdhds"]
    );
    assert_eq!(
        resp.call_id_header().unwrap().value(),
        "a84b4c76e66710@pc33.example.com"
    );
    assert_eq!(resp.cseq_header().unwrap().value(), "314159 FOOBAR");
    assert!(tag_of(resp.to_header().unwrap().value()).is_some());
    let wire = String::from_utf8(to_bytes(&SipMessage::Response(resp))).unwrap();
    assert!(wire.starts_with("SIP/2.0 501 Not Implemented\r\n"));
    assert!(wire.ends_with("Content-Length: 0\r\n\r\n"));
}

#[test]
fn unknown_method_without_headers_is_unaddressable() {
    let err = parse_datagram(b"FOOBAR sip:x SIP/2.0\r\nVia: SIP/2.0/UDP h\r\n\r\n").unwrap_err();
    assert!(matches!(err, ParseError::Unaddressable { .. }));
    assert_eq!(response_for_error(&err), None);
}

#[test]
fn lowercase_method_is_unknown() {
    let text = INVITE.replacen("INVITE", "invite", 1);
    assert!(matches!(
        parse_datagram(text.as_bytes()),
        Err(ParseError::UnknownMethod { .. })
    ));
}

#[test]
fn non_utf8_header_is_addressable_400() {
    let mut bytes = INVITE
        .replace("Max-Forwards: 70", "Subject: caf\u{1}")
        .into_bytes();
    let pos = bytes.iter().position(|&b| b == 1).unwrap();
    bytes[pos] = 0xE9;
    let err = parse_datagram(&bytes).unwrap_err();
    assert!(matches!(&err, ParseError::BadRequest { reason, .. } if reason.contains("UTF-8")));
    let resp = response_for_error(&err).unwrap();
    let to = resp.to_header().unwrap().value().to_owned();
    assert!(to.starts_with("Bob <sip:bob@example.com>;tag="));
}

#[test]
fn non_utf8_body_is_fine_and_kept_exact() {
    let mut bytes = INVITE.as_bytes().to_vec();
    let len = bytes.len();
    bytes[len - 2] = 0xFF;
    let msg = parse_datagram(&bytes).unwrap();
    assert_eq!(msg.body(), &vec![b'v', b'=', 0xFF, b'\n']);
    let wire = to_bytes(&msg);
    assert!(wire.ends_with(&[b'v', b'=', 0xFF, b'\n']));
    assert_eq!(parse_datagram(&wire), Ok(msg));
}

#[test]
fn control_character_in_header_is_rejected() {
    let text = INVITE.replace("Max-Forwards: 70", "Subject: a\rb");
    assert!(matches!(
        parse_datagram(text.as_bytes()),
        Err(ParseError::BadRequest { .. })
    ));
}

#[test]
fn missing_mandatory_headers() {
    let no_call_id = INVITE.replace("Call-ID: a84b4c76e66710@pc33.example.com\r\n", "");
    let err = parse_datagram(no_call_id.as_bytes()).unwrap_err();
    assert!(matches!(err, ParseError::Unaddressable { .. }), "{err:?}");
    let mismatch = INVITE.replace("314159 INVITE", "314159 BYE");
    let err = parse_datagram(mismatch.as_bytes()).unwrap_err();
    assert!(matches!(&err, ParseError::BadRequest { reason, .. } if reason.contains("CSeq")));
}

#[test]
fn rsip_failure_on_request_uri_is_addressable() {
    let text = INVITE.replacen("sip:bob@example.com", "sip:bob@[2001:db8::1]", 1);
    match parse_datagram(text.as_bytes()) {
        Ok(_) => {}
        Err(err) => assert_eq!(
            response_for_error(&err).map(|r| r.status_code),
            Some(StatusCode::BadRequest)
        ),
    }
}

#[test]
fn malformed_request_line() {
    let text = INVITE.replacen(
        "INVITE sip:bob@example.com SIP/2.0",
        "INVITE  sip:bob@example.com",
        1,
    );
    let err = parse_datagram(text.as_bytes()).unwrap_err();
    assert!(
        matches!(&err, ParseError::BadRequest { reason, .. } if reason.contains("request line"))
    );
}

#[test]
fn responses() {
    let text =
        "SIP/2.0 180 Ringing\r\nv: SIP/2.0/UDP h;branch=z9hG4bK1\r\nCSeq: 1 INVITE\r\nl: 0\r\n\r\n";
    let Ok(SipMessage::Response(r)) = parse_datagram(text.as_bytes()) else {
        panic!("response did not parse");
    };
    assert_eq!(r.status_code.code(), 180);
    let no_via = "SIP/2.0 180 Ringing\r\nCSeq: 1 INVITE\r\n\r\n";
    let err = parse_datagram(no_via.as_bytes()).unwrap_err();
    assert!(matches!(err, ParseError::BadResponse { .. }));
    assert_eq!(response_for_error(&err), None);
    let bad_code = text.replace("180", "700");
    assert!(matches!(
        parse_datagram(bad_code.as_bytes()),
        Err(ParseError::BadResponse { .. })
    ));
}

#[test]
fn status_lines_are_read_strictly() {
    let rest = "\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nCSeq: 1 INVITE\r\n\r\n";
    for line in [
        "SIP/2.0 20 OK",
        "SIP/2.0 2000 OK",
        "SIP/3.0 200 OK",
        "SIP/2.0",
        "SIP/2.0 2x0 OK",
    ] {
        let text = format!("{line}{rest}");
        assert!(
            matches!(
                parse_datagram(text.as_bytes()),
                Err(ParseError::BadResponse { .. })
            ),
            "{line:?} was accepted"
        );
    }
    let odd = format!("SIP/2.0 299 Odd One{rest}");
    let Ok(SipMessage::Response(r)) = parse_datagram(odd.as_bytes()) else {
        panic!("an unnamed code in range did not parse");
    };
    assert_eq!(r.status_code, StatusCode::Other(299, "Odd One".into()));
    let bare = format!("SIP/2.0 200{rest}");
    let Ok(SipMessage::Response(r)) = parse_datagram(bare.as_bytes()) else {
        panic!("a status line without a reason did not parse");
    };
    assert_eq!(r.status_code.code(), 200);
}

#[test]
fn garbage_is_unaddressable() {
    for input in [
        &b""[..],
        b"\r\n\r\n",
        b"hello",
        b"\xff\xfe\r\n\r\n",
        b" INVITE",
    ] {
        let err = parse_datagram(input).unwrap_err();
        assert!(err.reply().is_none(), "{input:?} -> {err:?}");
    }
}

#[test]
fn to_bytes_writes_correct_content_length() {
    let mut msg = parse_datagram(INVITE.as_bytes()).unwrap();
    *msg.body_mut() = b"longer body".to_vec();
    let wire = String::from_utf8(to_bytes(&msg)).unwrap();
    assert_eq!(wire.matches("Content-Length").count(), 1);
    assert!(wire.ends_with("Content-Length: 11\r\n\r\nlonger body"));
    assert_eq!(
        parse_datagram(wire.as_bytes()).unwrap().body(),
        b"longer body"
    );
}

#[test]
fn to_bytes_round_trips() {
    let msg = parse_datagram(INVITE.as_bytes()).unwrap();
    assert_eq!(parse_datagram(&to_bytes(&msg)), Ok(msg));
}

fn mutate(base: &[u8], edits: &[(usize, u8, u8)]) -> Vec<u8> {
    let mut bytes = base.to_vec();
    for &(pos, op, value) in edits {
        let at = pos % (bytes.len() + 1);
        match op % 4 {
            0 if at < bytes.len() => bytes[at] = value,
            1 => bytes.insert(at, value),
            2 if at < bytes.len() => {
                bytes.remove(at);
            }
            _ => bytes.truncate(at.max(1)),
        }
    }
    bytes
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse_datagram(&bytes);
    }

    #[test]
    fn never_panics_on_mutated_messages(edits in proptest::collection::vec((any::<usize>(), any::<u8>(), prop::sample::select(b"\r\n :;,<>\"\\\t=@zv\xff\x00".to_vec())), 1..6)) {
        let bytes = mutate(INVITE.as_bytes(), &edits);
        match parse_datagram(&bytes) {
            Ok(msg) => {
                let again = parse_datagram(&to_bytes(&msg));
                prop_assert!(again.is_ok(), "re-parse failed: {:?}", again);
            }
            Err(err) => {
                let _ = response_for_error(&err).map(|r| to_bytes(&SipMessage::Response(r)));
            }
        }
    }
}

#[test]
fn rsip_reasons_are_bounded() {
    let text = INVITE.replacen("sip:bob@example.com", "sip:bob@example.com;foo=a:b", 1);
    let err = parse_datagram(text.as_bytes()).unwrap_err();
    let ParseError::BadRequest { reason, .. } = err else {
        panic!("expected 400, got {err:?}");
    };
    assert!(reason.chars().count() <= 161, "{reason}");
}
