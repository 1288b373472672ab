use super::*;

const MSG1: &[u8] = b"INVITE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/TCP a.example.com;branch=z9hG4bK1\r\nContent-Length: 5\r\n\r\nhello";
const MSG2: &[u8] =
    b"SIP/2.0 200 OK\r\nVia: SIP/2.0/TCP a.example.com;branch=z9hG4bK1\r\nl: 0\r\n\r\n";

fn drain(framer: &mut StreamFramer) -> Vec<Result<Bytes, FramingError>> {
    std::iter::from_fn(|| framer.next_message()).collect()
}

fn stream() -> Vec<u8> {
    [b"\r\n\r\n".as_slice(), MSG1, b"\r\n", MSG2, MSG1].concat()
}

#[test]
fn several_messages_in_one_push_with_keepalives() {
    let mut framer = StreamFramer::new();
    framer.push(&stream());
    let got = drain(&mut framer);
    assert_eq!(
        got,
        vec![
            Ok(Bytes::from_static(MSG1)),
            Ok(Bytes::from_static(MSG2)),
            Ok(Bytes::from_static(MSG1))
        ]
    );
    assert_eq!(framer.buffered(), 0);
}

#[test]
fn split_at_every_byte_boundary() {
    let all = stream();
    for cut in 0..=all.len() {
        let mut framer = StreamFramer::new();
        let mut got = Vec::new();
        framer.push(&all[..cut]);
        got.extend(drain(&mut framer));
        framer.push(&all[cut..]);
        got.extend(drain(&mut framer));
        assert_eq!(got.len(), 3, "cut at {cut}");
        assert!(got.iter().all(Result::is_ok), "cut at {cut}");
    }
}

#[test]
fn one_byte_at_a_time() {
    let all = stream();
    let mut framer = StreamFramer::new();
    let mut got = Vec::new();
    for byte in &all {
        framer.push(std::slice::from_ref(byte));
        got.extend(drain(&mut framer));
    }
    assert_eq!(got.len(), 3);
    assert_eq!(got[1], Ok(Bytes::from_static(MSG2)));
}

#[test]
fn bare_lf_head() {
    let mut framer = StreamFramer::new();
    framer.push(b"OPTIONS sip:a SIP/2.0\nContent-Length : 2\n\nokNEXT");
    assert_eq!(
        framer.next_message(),
        Some(Ok(Bytes::from_static(
            b"OPTIONS sip:a SIP/2.0\nContent-Length : 2\n\nok"
        )))
    );
    assert_eq!(framer.next_message(), None);
    assert_eq!(framer.buffered(), 4);
}

#[test]
fn missing_content_length_is_an_error_once() {
    let mut framer = StreamFramer::new();
    framer.push(b"OPTIONS sip:a SIP/2.0\r\nVia: x\r\n\r\n");
    assert_eq!(
        framer.next_message(),
        Some(Err(FramingError::MissingContentLength))
    );
    assert_eq!(framer.next_message(), None);
    framer.push(MSG1);
    assert_eq!(framer.next_message(), None);
}

#[test]
fn invalid_or_conflicting_content_length() {
    for head in [
        &b"A b SIP/2.0\r\nContent-Length: x\r\n\r\n"[..],
        b"A b SIP/2.0\r\nl: 1\r\nContent-Length: 2\r\n\r\n",
        b"A b SIP/2.0\r\nl: -1\r\n\r\n",
    ] {
        let mut framer = StreamFramer::new();
        framer.push(head);
        assert_eq!(
            framer.next_message(),
            Some(Err(FramingError::InvalidContentLength))
        );
    }
}

#[test]
fn oversize_head_without_end() {
    let mut framer = StreamFramer::with_limits(100, 1000);
    framer.push(b"INVITE sip:a SIP/2.0\r\n");
    assert_eq!(framer.next_message(), None);
    framer.push(&[b'X'; 100]);
    assert_eq!(
        framer.next_message(),
        Some(Err(FramingError::HeaderTooLarge { limit: 100 }))
    );
    assert_eq!(framer.buffered(), 0);
}

#[test]
fn oversize_complete_head() {
    let mut framer = StreamFramer::with_limits(20, 1000);
    framer.push(MSG2);
    assert_eq!(
        framer.next_message(),
        Some(Err(FramingError::HeaderTooLarge { limit: 20 }))
    );
}

#[test]
fn oversize_body() {
    let mut framer = StreamFramer::with_limits(1000, 4);
    framer.push(MSG1);
    assert_eq!(
        framer.next_message(),
        Some(Err(FramingError::BodyTooLarge {
            length: 5,
            limit: 4
        }))
    );
}

#[test]
fn waits_for_body() {
    let mut framer = StreamFramer::new();
    framer.push(&MSG1[..MSG1.len() - 2]);
    assert_eq!(framer.next_message(), None);
    framer.push(&MSG1[MSG1.len() - 2..]);
    assert_eq!(framer.next_message(), Some(Ok(Bytes::from_static(MSG1))));
}

proptest::proptest! {
    #[test]
    fn framer_never_panics(chunks in proptest::collection::vec(proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64), 0..16)) {
        let mut framer = StreamFramer::with_limits(128, 64);
        let mut out = 0;
        let total: usize = chunks.iter().map(Vec::len).sum();
        for chunk in &chunks {
            framer.push(chunk);
            while let Some(Ok(message)) = framer.next_message() {
                out += message.len();
            }
        }
        proptest::prop_assert!(out + framer.buffered() <= total);
    }
}

#[test]
fn framed_messages_parse() {
    let mut framer = StreamFramer::new();
    let text = b"\r\nOPTIONS sip:bob@example.com SIP/2.0\r\nv: SIP/2.0/TCP a;branch=z9hG4bK1\r\nf: <sip:a@b>;tag=1\r\n\
t: <sip:bob@example.com>\r\ni: x\r\nCSeq: 1 OPTIONS\r\nl: 3\r\n\r\nabc";
    framer.push(text);
    let Some(Ok(message)) = framer.next_message() else {
        panic!("no message");
    };
    let parsed = crate::sip::parse_datagram(&message).map(|m| m.body().clone());
    assert_eq!(parsed, Ok(b"abc".to_vec()));
}
