//! Cheap looks at a raw message before it is parsed.
//!
//! The transports use these to decide, without parsing, which queue a
//! message goes to: responses and requests inside a dialog (or about one,
//! like CANCEL) must never wait behind, or be shed like, requests that
//! would open something new. A wrong guess (a folded `To` line, say) only
//! moves a message to the other queue; nothing here decides what the
//! message means.

/// Whether `data` is a response (its start line is `SIP/2.0 …`).
pub fn is_response(data: &[u8]) -> bool {
    data.get(..8)
        .is_some_and(|start| start.eq_ignore_ascii_case(b"SIP/2.0 "))
}

/// Whether `data` is a request that would open something new: not a
/// response, not ACK or CANCEL, and no tag on its `To` header.
pub fn opens_new(data: &[u8]) -> bool {
    if is_response(data) {
        return false;
    }
    let method = data.split(|&b| b == b' ').next().unwrap_or_default();
    if method.eq_ignore_ascii_case(b"ACK") || method.eq_ignore_ascii_case(b"CANCEL") {
        return false;
    }
    !to_has_tag(data)
}

/// The Call-ID of a raw message (a `Call-ID` or compact `i` header in its
/// head), trimmed; `None` if the head has none. It is what a driver running
/// several switches hashes ([`crate::b2bua::shard_of`]) to pick the one
/// that owns the call, without parsing. A folded Call-ID line (legal, never
/// seen) yields only its first line: such a message may reach another
/// shard, which answers it as it would a message for no call it knows.
pub fn call_id(data: &[u8]) -> Option<&[u8]> {
    header(data, b"call-id", b"i").map(<[u8]>::trim_ascii)
}

/// Whether the head of `data` has a `To` (or compact `t`) header with a
/// `tag` parameter.
fn to_has_tag(data: &[u8]) -> bool {
    header(data, b"to", b"t").is_some_and(|value| {
        value
            .windows(5)
            .any(|w| w.eq_ignore_ascii_case(b";tag=") || w.eq_ignore_ascii_case(b" tag="))
    })
}

/// The raw value of the first header of the head of `data` called `long`
/// or `compact` (case-insensitive), up to the end of its line.
fn header<'a>(data: &'a [u8], long: &[u8], compact: &[u8]) -> Option<&'a [u8]> {
    for line in data.split(|&b| b == b'\n').skip(1) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let name = line.get(..colon).unwrap_or_default().trim_ascii();
        if name.eq_ignore_ascii_case(long) || name.eq_ignore_ascii_case(compact) {
            return Some(line.get(colon + 1..).unwrap_or_default());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_are_never_new() {
        assert!(is_response(b"SIP/2.0 200 OK\r\n\r\n"));
        assert!(is_response(b"sip/2.0 180 Ringing\r\n"));
        assert!(!is_response(b"SIP/2.0"));
        assert!(!opens_new(b"SIP/2.0 100 Trying\r\nTo: <sip:b@x>\r\n\r\n"));
    }

    #[test]
    fn requests_without_to_tag_are_new() {
        let invite = b"INVITE sip:b@x SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\
            To: <sip:b@x>\r\nFrom: <sip:a@x>;tag=1\r\nContent-Length: 0\r\n\r\n";
        assert!(opens_new(invite));
        let options = b"OPTIONS sip:x SIP/2.0\nt: sip:x\nf: sip:y;tag=2\n\n";
        assert!(opens_new(options));
    }

    #[test]
    fn in_dialog_ack_and_cancel_are_not_new() {
        let bye = b"BYE sip:b@x SIP/2.0\r\nTo: <sip:b@x>;tag=abc\r\n\r\n";
        assert!(!opens_new(bye));
        let spaced = b"INFO sip:b@x SIP/2.0\nt: <sip:b@x> ; TAG=abc\n\n";
        assert!(!opens_new(spaced));
        let compact = b"INFO sip:b@x SIP/2.0\nt: <sip:b@x>;TAG=abc\n\n";
        assert!(!opens_new(compact));
        assert!(!opens_new(
            b"CANCEL sip:b@x SIP/2.0\r\nTo: <sip:b@x>\r\n\r\n"
        ));
        assert!(!opens_new(b"ACK sip:b@x SIP/2.0\r\nTo: <sip:b@x>\r\n\r\n"));
        // A tag in the body does not count.
        let body = b"MESSAGE sip:b@x SIP/2.0\r\nTo: <sip:b@x>\r\n\r\nTo: x;tag=1";
        assert!(opens_new(body));
    }

    #[test]
    fn call_ids_are_found_without_parsing() {
        let invite = b"INVITE sip:b@x SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\
            Call-ID:  abc@10.0.0.1 \r\nTo: <sip:b@x>\r\n\r\nCall-ID: body";
        assert_eq!(call_id(invite), Some(&b"abc@10.0.0.1"[..]));
        assert_eq!(call_id(b"SIP/2.0 200 OK\ni:xyz\n\n"), Some(&b"xyz"[..]));
        assert_eq!(call_id(b"SIP/2.0 200 OK\nCALL-id: Q\n\n"), Some(&b"Q"[..]));
        // Only the head counts, and a value is case-sensitive.
        assert_eq!(call_id(b"BYE sip:x SIP/2.0\r\n\r\nCall-ID: body"), None);
        assert_ne!(call_id(b"X\ni: aB\n\n"), call_id(b"X\ni: ab\n\n"));
    }

    #[test]
    fn garbage_never_panics() {
        for junk in [&b""[..], b"\n", b":", b"X\n:\n\n", &[0xff; 64]] {
            let _ = (is_response(junk), opens_new(junk), call_id(junk));
        }
    }
}
