//! Tests of the SDP rewriter.

use super::*;
use proptest::prelude::*;

const OFFER: &str = "v=0\r\no=alice 2890844526 2890844526 IN IP4 10.9.8.7\r\n\
    s=Alice's phone\r\ni=secret\r\ne=alice@example.com\r\np=+821012345678\r\n\
    c=IN IP4 10.9.8.7\r\nt=0 0\r\na=tool:SuperPhone 1.0\r\n\
    m=audio 40000 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n\
    a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=ptime:20\r\n\
    a=rtcp:40001 IN IP4 10.9.8.7\r\na=candidate:1 1 UDP 2130706431 10.9.8.7 40000 typ host\r\n\
    a=ice-ufrag:abcd\r\na=ice-pwd:secretsecret\r\na=sendrecv\r\n";

fn target() -> Target {
    Target {
        address: "203.0.113.5".parse().unwrap(),
        audio_port: 30000,
    }
}

fn render(body: &str, target: Target) -> (Rewritten, String) {
    let rewritten = rewrite(body.as_bytes(), target).unwrap();
    let text = Origin::new(7).render(&rewritten, target.address);
    (rewritten, String::from_utf8(text).unwrap())
}

#[test]
fn rewrites_addresses_ports_and_drops_identity() {
    let (rewritten, text) = render(OFFER, target());
    assert_eq!(rewritten.remote, Some("10.9.8.7:40000".parse().unwrap()));
    assert_eq!(rewritten.direction, MediaDirection::SendRecv);
    for leak in [
        "10.9.8.7",
        "40000",
        "40001",
        "alice",
        "Alice",
        "821012345678",
        "ice-",
        "candidate",
        "SuperPhone",
        "secret",
    ] {
        assert!(!text.contains(leak), "{leak} leaked in {text}");
    }
    assert!(text.starts_with(
        "v=0\r\no=ansim 7 7 IN IP4 203.0.113.5\r\ns=-\r\nc=IN IP4 203.0.113.5\r\nt=0 0\r\n"
    ));
    assert!(text.contains("m=audio 30000 RTP/AVP 0 8 101\r\n"));
    for kept in [
        "a=rtpmap:0 PCMU/8000",
        "a=rtpmap:101 telephone-event/8000",
        "a=fmtp:101 0-15",
        "a=ptime:20",
        "a=sendrecv",
    ] {
        assert!(text.contains(kept), "{kept} missing in {text}");
    }
}

#[test]
fn ipv6_connection_and_ipv6_target() {
    let body = "v=0\r\no=- 1 1 IN IP6 2001:db8::9\r\ns=x\r\nc=IN IP6 2001:db8::9\r\nt=0 0\r\nm=audio 5004 RTP/AVP 0\r\n";
    let (rewritten, text) = render(body, target());
    assert_eq!(
        rewritten.remote,
        Some("[2001:db8::9]:5004".parse().unwrap())
    );
    assert!(text.contains("c=IN IP4 203.0.113.5") && !text.contains("2001:db8"));
    let v6 = Target {
        address: "2001:db8::5".parse().unwrap(),
        audio_port: 4000,
    };
    let (_, text) = render(OFFER, v6);
    assert!(text.contains("o=ansim 7 7 IN IP6 2001:db8::5\r\n"));
    assert!(text.contains("c=IN IP6 2001:db8::5\r\n") && !text.contains("IP4"));
}

#[test]
fn multiple_media_keep_first_audio_only() {
    let body = "v=0\no=- 1 1 IN IP4 10.0.0.1\ns=-\nt=0 0\n\
        m=video 50000 RTP/AVP 96\nc=IN IP4 10.0.0.2\na=rtpmap:96 H264/90000\n\
        m=audio 50002/2 RTP/AVP 8\nc=IN IP4 10.0.0.3\na=rtcp:50003\na=recvonly\n\
        m=audio 50004 RTP/AVP 0\n";
    let (rewritten, text) = render(body, target());
    assert_eq!(rewritten.remote, Some("10.0.0.3:50002".parse().unwrap()));
    assert_eq!(rewritten.direction, MediaDirection::RecvOnly);
    assert!(text.contains("m=video 0 RTP/AVP 96\r\n"));
    assert!(text.contains("m=audio 30000 RTP/AVP 8\r\nc=IN IP4 203.0.113.5\r\na=recvonly\r\n"));
    assert!(text.contains("m=audio 0 RTP/AVP 0\r\n"));
    assert!(!text.contains("rtcp") && !text.contains("10.0.0"));
    // a session-level c= is added because the session had none
    assert!(text.contains("s=-\r\nc=IN IP4 203.0.113.5\r\nt=0 0"));
}

#[test]
fn missing_connection_and_zero_address_hold() {
    let body = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 5004 RTP/AVP 0\r\n";
    let (rewritten, text) = render(body, target());
    assert_eq!(rewritten.remote, None);
    assert!(text.contains("c=IN IP4 203.0.113.5"));
    let hold = "v=0\r\no=- 1 2 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\nm=audio 5004 RTP/AVP 0\r\n";
    let (rewritten, text) = render(hold, target());
    assert_eq!(rewritten.direction, MediaDirection::SendOnly);
    assert!(text.contains("a=sendonly") && !text.contains("0.0.0.0"));
    let session_inactive =
        "v=0\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\na=inactive\r\nm=audio 5004 RTP/AVP 0\r\n";
    let (rewritten, text) = render(session_inactive, target());
    assert_eq!(rewritten.direction, MediaDirection::Inactive);
    assert!(text.contains("o=ansim") && text.ends_with("a=inactive\r\n"));
}

#[test]
fn rejected_audio_keeps_port_zero() {
    let body = "v=0\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio 0 RTP/AVP 0\r\n";
    let (rewritten, text) = render(body, target());
    assert_eq!(rewritten.remote, None);
    assert!(text.contains("m=audio 0 RTP/AVP 0"));
}

#[test]
fn garbage_is_refused() {
    assert_eq!(rewrite(b"hello", target()), Err(SdpError::NoVersion));
    assert_eq!(rewrite(&[0xff, 0xfe], target()), Err(SdpError::NotText));
    assert_eq!(
        rewrite(b"v=0\r\nnonsense\r\n", target()),
        Err(SdpError::BadLine(2))
    );
    assert_eq!(
        rewrite(b"v=0\r\nm=video 1 RTP/AVP 96\r\n", target()),
        Err(SdpError::NoAudio)
    );
    // An m= line without media, port and protocol (found by fuzzing:
    // `m=` came out as `m= 0`, which reads back as media "0").
    for m in ["m=", "m=audio", "m=audio 4000", "m= 4000 RTP/AVP"] {
        let body = format!("v=0\r\ns=-\r\n{m}\r\n");
        assert_eq!(
            rewrite(body.as_bytes(), target()),
            Err(SdpError::BadLine(3)),
            "{m}"
        );
    }
}

/// An offer shaped like a WebRTC softphone's (Chrome, JsSIP, SIP.js):
/// every line below but codecs, `b=` and timing identifies the device,
/// the user or the stream.
const WEBRTC_OFFER: &str = "v=0\r\n\
    o=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
    a=group:BUNDLE 0\r\na=extmap-allow-mixed\r\n\
    a=msid-semantic: WMS StreamLeakMsid\r\n\
    a=fingerprint:sha-256 7B:8B:F0:65:5F:78:E2:51:3B:AC:6F:F3:3F:46:1B:35\r\n\
    a=setup:actpass\r\na=tool:JsSIP 3.10.1 Leaky Browser\r\n\
    k=clear:LeakKeyMaterial\r\n\
    m=audio 59414 UDP/TLS/RTP/SAVPF 111 0 8 126\r\nc=IN IP4 198.51.100.77\r\n\
    b=AS:64\r\n\
    a=rtcp:9 IN IP4 0.0.0.0\r\n\
    a=candidate:842163049 1 udp 1677729535 198.51.100.77 59414 typ srflx raddr 192.168.1.5 rport 59414\r\n\
    a=ice-ufrag:LeakUfrag\r\na=ice-pwd:LeakIcePassword0123456789\r\na=ice-options:trickle\r\n\
    a=fingerprint:sha-256 DE:AD:BE:EF:00:11:22:33\r\na=setup:actpass\r\na=mid:0\r\n\
    a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\n\
    a=extmap:2 urn:ietf:params:rtp-hdrext:sdes:mid\r\n\
    a=sendrecv\r\na=msid:StreamLeakMsid TrackLeak-6b3b\r\na=rtcp-mux\r\n\
    a=rtpmap:111 opus/48000/2\r\na=rtcp-fb:111 transport-cc\r\n\
    a=fmtp:111 minptime=10;useinbandfec=1\r\na=rtpmap:0 PCMU/8000\r\n\
    a=rtpmap:8 PCMA/8000\r\na=rtpmap:126 telephone-event/8000\r\n\
    a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:LeakSrtpKeyBase64\r\n\
    a=ssrc-group:FID 3735928559 3735928560\r\n\
    a=ssrc:3735928559 cname:LeakCnameXy7s\r\n\
    a=ssrc:3735928559 msid:StreamLeakMsid TrackLeak-6b3b\r\n\
    a=ssrc:3735928559 mslabel:StreamLeakMsid\r\n\
    a=ssrc:3735928559 label:TrackLeak-6b3b\r\n\
    a=label:LeakLabel\r\na=x-device-id:LeakGalaxyS23-IMEI\r\n\
    a=X-nat:0\r\n\
    m=video 59416 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 198.51.100.77\r\n\
    a=mid:1\r\na=ssrc:4242 cname:LeakCnameXy7s\r\na=rtpmap:96 VP8/90000\r\n";

/// Whether every line of `text` is one the whitelist lets through, and
/// every connection and origin line names `target`.
fn assert_whitelisted(text: &str, target: Target) {
    let ours = target.address.to_string();
    for line in text.split("\r\n").filter(|l| !l.is_empty()) {
        let (kind, value) = line.split_at(2);
        match kind {
            "v=" | "s=" | "t=" | "r=" | "z=" | "b=" | "m=" => {}
            "o=" | "c=" => assert!(value.ends_with(&format!(" {ours}")), "{line}"),
            "a=" => {
                let name = attribute(value).0;
                assert!(
                    MediaDirection::from_attribute(name).is_some()
                        || ALLOWED_ATTRIBUTES
                            .iter()
                            .any(|a| a.eq_ignore_ascii_case(name)),
                    "attribute {line} crossed"
                );
            }
            _ => panic!("line {line} crossed"),
        }
    }
}

#[test]
fn webrtc_offer_leaks_none_of_its_identifiers() {
    let (rewritten, text) = render(WEBRTC_OFFER, target());
    assert_eq!(
        rewritten.remote,
        Some("198.51.100.77:59414".parse().unwrap())
    );
    for leak in [
        "Leak",
        "3735928559",
        "4242",
        "7B:8B",
        "DE:AD",
        "198.51.100.77",
        "192.168.1.5",
        "59414",
        "59416",
        "BUNDLE",
        "extmap",
        "mid:",
        "msid",
        "ssrc",
        "fingerprint",
        "setup",
        "crypto",
        "inline",
        "ice-",
        "candidate",
        "rtcp-mux",
        "a=rtcp:",
        "JsSIP",
        "x-device",
        "X-nat",
        "label",
        "k=",
        "127.0.0.1",
        "4611731400430051336",
    ] {
        assert!(!text.contains(leak), "{leak} leaked in {text}");
    }
    for kept in [
        "m=audio 30000 UDP/TLS/RTP/SAVPF 111 0 8 126\r\nc=IN IP4 203.0.113.5\r\nb=AS:64\r\n",
        "a=rtpmap:111 opus/48000/2\r\n",
        "a=rtcp-fb:111 transport-cc\r\n",
        "a=fmtp:111 minptime=10;useinbandfec=1\r\n",
        "a=rtpmap:126 telephone-event/8000\r\n",
        "m=video 0 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 203.0.113.5\r\na=rtpmap:96 VP8/90000\r\n",
    ] {
        assert!(text.contains(kept), "{kept} missing in {text}");
    }
    assert!(text.ends_with("a=rtpmap:96 VP8/90000\r\n"));
    assert_eq!(text.matches("a=sendrecv").count(), 1);
    assert_whitelisted(&text, target());
    let (_, text) = render(OFFER, target());
    assert_whitelisted(&text, target());
}

#[test]
fn whitelist_covers_session_lines_and_keeps_the_allowed() {
    let body = "v=0\r\nv=0\r\no=x 1 1 IN IP4 10.1.1.1\r\ns=Bob\r\nu=http://bob.example/\r\n\
        k=prompt\r\nx=unknown line type\r\nc=IN IP4 10.1.1.1\r\nb=CT:128\r\n\
        t=3034423619 3042462419\r\nr=7d 1h 0 25h\r\nz=2882844526 -1h 2898848070 0\r\n\
        a=x-secret-session:42\r\na=ptime:30\r\na=recvonly\r\n\
        m=audio 4000 RTP/AVP 0 13\r\nk=base64:AAAA\r\nt=0 0\r\nb=TIAS:64000\r\n\
        a=maxptime:40\r\na=silenceSupp:off - - - -\r\na=RTPMAP:13 CN/8000\r\n\
        a=ssrc:1 cname:bob\r\n";
    let (rewritten, text) = render(body, target());
    assert_eq!(rewritten.direction, MediaDirection::RecvOnly);
    assert_eq!(
        text,
        "v=0\r\no=ansim 7 7 IN IP4 203.0.113.5\r\ns=-\r\nc=IN IP4 203.0.113.5\r\n\
         b=CT:128\r\nt=3034423619 3042462419\r\nr=7d 1h 0 25h\r\n\
         z=2882844526 -1h 2898848070 0\r\na=ptime:30\r\n\
         m=audio 30000 RTP/AVP 0 13\r\nb=TIAS:64000\r\na=maxptime:40\r\n\
         a=silenceSupp:off - - - -\r\na=RTPMAP:13 CN/8000\r\na=recvonly\r\n"
    );
}

#[test]
fn bare_cr_or_nul_inside_a_line_is_refused() {
    // Passed on, the CR would end the line for some parsers and make
    // the rest a connection line with the peer's address.
    let smuggled = "v=0\r\ns=-\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n\
        a=rtpmap:0 PCMU/8000\rc=IN IP4 10.6.6.6\r\n";
    assert_eq!(
        rewrite(smuggled.as_bytes(), target()),
        Err(SdpError::BadLine(5))
    );
    let nul = "v=0\r\ns=-\0\r\nm=audio 4000 RTP/AVP 0\r\n";
    assert_eq!(rewrite(nul.as_bytes(), target()), Err(SdpError::BadLine(2)));
}

/// Lines a fuzzer of SDP would try: every type letter, known and
/// unknown attributes, odd spacing.
fn sdp_line() -> impl Strategy<Value = String> {
    let name = prop_oneof![
        Just("rtpmap".to_owned()),
        Just("sendonly".to_owned()),
        Just("ssrc".to_owned()),
        Just("Fmtp".to_owned()),
        "[a-zA-Z-]{1,12}",
    ];
    prop_oneof![
        "[a-z]=[ -~]{0,30}",
        (name, "(:[ -~]{0,20})?").prop_map(|(n, v)| format!("a={n}{v}")),
        "c=IN IP[46] [0-9a-f.:]{1,20}(/[0-9]{1,3})?",
        "m=(audio|video) [0-9]{1,6}(/2)? RTP/AVP( [0-9]{1,3}){0,3}",
    ]
}

proptest! {
    #[test]
    fn output_keeps_to_the_whitelist(
        lines in proptest::collection::vec(sdp_line(), 0..20),
        line_end in prop_oneof![Just("\r\n"), Just("\n")],
    ) {
        let body = format!("v=0{line_end}{}", lines.join(line_end));
        if let Ok(rewritten) = rewrite(body.as_bytes(), target()) {
            let text = Origin::new(1).render(&rewritten, target().address);
            let text = String::from_utf8(text).unwrap();
            assert_whitelisted(&text, target());
            prop_assert!(text.starts_with("v=0\r\no=ansim 1 1 IN IP4 203.0.113.5\r\n"));
        }
    }
}

#[test]
fn version_increments_only_on_change() {
    let mut origin = Origin::new(100);
    let first = rewrite(OFFER.as_bytes(), target()).unwrap();
    let _ = origin.render(&first, target().address);
    let _ = origin.render(&first, target().address);
    assert_eq!(origin.version(), 100);
    let held = OFFER.replace("a=sendrecv", "a=sendonly");
    let second = rewrite(held.as_bytes(), target()).unwrap();
    let text = String::from_utf8(origin.render(&second, target().address)).unwrap();
    assert_eq!(origin.version(), 101);
    assert!(text.contains("o=ansim 100 101 IN IP4"));
}

/// What a recorded call may offer: PCMU, PCMA, comfort noise, DTMF events.
fn recordable(pt: u8, encoding: Option<&str>) -> bool {
    matches!(pt, 0 | 8 | 13) || matches!(encoding, Some("telephone-event" | "cn"))
}

#[test]
fn retain_formats_keeps_only_what_is_asked_with_its_attributes() {
    let offer = "v=0\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n\
        m=audio 5004 RTP/AVP 18 0 111 8 101\r\na=rtpmap:18 G729/8000\r\na=fmtp:18 annexb=no\r\n\
        a=rtpmap:0 PCMU/8000\r\na=rtpmap:111 opus/48000/2\r\na=fmtp:111 minptime=10\r\n\
        a=rtcp-fb:111 transport-cc\r\na=rtcp-fb:* nack\r\na=rtpmap:8 PCMA/8000\r\n\
        a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=ptime:20\r\n\
        m=video 5006 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n";
    let mut sdp = rewrite(offer.as_bytes(), target()).unwrap();
    assert!(sdp.retain_formats(recordable, |pt| pt == 0 || pt == 8));
    let text = String::from_utf8(Origin::new(1).render(&sdp, target().address)).unwrap();
    assert!(text.contains("m=audio 30000 RTP/AVP 0 8 101\r\n"), "{text}");
    for gone in ["G729", "annexb", "opus", "minptime", "transport-cc"] {
        assert!(!text.contains(gone), "{gone} in {text}");
    }
    for kept in [
        "a=rtpmap:0 PCMU/8000",
        "a=rtpmap:8 PCMA/8000",
        "a=rtpmap:101 telephone-event/8000",
        "a=fmtp:101 0-15",
        "a=rtcp-fb:* nack",
        "a=ptime:20",
        "a=sendrecv",
        "m=video 0 RTP/AVP 96",
        "a=rtpmap:96 H264/90000",
    ] {
        assert!(text.contains(kept), "{kept} missing in {text}");
    }
    // Idempotent.
    let again = sdp.clone();
    assert!(sdp.retain_formats(recordable, |pt| pt == 0 || pt == 8));
    assert_eq!(sdp, again);
}

#[test]
fn retain_formats_changes_nothing_when_no_audio_would_be_left() {
    let offer = "v=0\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n\
        m=audio 5004 RTP/AVP 18 101\r\na=rtpmap:18 G729/8000\r\na=rtpmap:101 telephone-event/8000\r\n";
    let mut sdp = rewrite(offer.as_bytes(), target()).unwrap();
    let before = sdp.clone();
    assert!(!sdp.retain_formats(recordable, |pt| pt == 0 || pt == 8));
    assert_eq!(sdp, before);
    // And an SDP whose audio was refused (port 0) has nothing to narrow.
    let refused = "v=0\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio 0 RTP/AVP 0\r\n";
    let mut sdp = rewrite(refused.as_bytes(), target()).unwrap();
    assert!(sdp.retain_formats(recordable, |pt| pt == 0));
}
