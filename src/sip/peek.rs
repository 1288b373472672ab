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

/// Whether the head of `data` has a `To` (or compact `t`) header with a
/// `tag` parameter.
fn to_has_tag(data: &[u8]) -> bool {
    for line in data.split(|&b| b == b'\n').skip(1) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let name = line.get(..colon).unwrap_or_default().trim_ascii();
        if name.eq_ignore_ascii_case(b"to") || name.eq_ignore_ascii_case(b"t") {
            let value = line.get(colon + 1..).unwrap_or_default();
            return value
                .windows(5)
                .any(|w| w.eq_ignore_ascii_case(b";tag=") || w.eq_ignore_ascii_case(b" tag="));
        }
    }
    false
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
    fn garbage_never_panics() {
        for junk in [&b""[..], b"\n", b":", b"X\n:\n\n", &[0xff; 64]] {
            let _ = (is_response(junk), opens_new(junk));
        }
    }
}
