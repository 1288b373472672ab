//! A small, line-based SDP (RFC 4566 / RFC 3264) rewriter for topology
//! hiding.
//!
//! The B2BUA never forwards a peer's SDP as is: [`rewrite`] replaces every
//! connection address with ours, puts our relay port on the first audio
//! stream, disables every other stream (port 0), anonymises the origin and
//! session name, and keeps only what the other party's phone needs to
//! agree on a codec. It also reads where the peer wants its audio and in
//! which direction ([`Rewritten::remote`], [`Rewritten::direction`]).
//!
//! # What crosses: a whitelist
//! Phones put much more in SDP than codecs: their user and tool names,
//! RTCP CNAMEs and stream ids (`a=ssrc:… cname:`, `a=msid`, `a=label`),
//! DTLS certificate fingerprints (stable per device), SRTP keys
//! (`a=crypto`, `k=`), ICE candidates (their addresses), vendor `a=x-…`
//! lines. New ones appear every year, so rather than listing what to drop,
//! [`rewrite`] keeps only:
//! - lines: `v=` (first), `s=` (as `s=-`), `c=` (ours), `b=`, `t=`, `r=`,
//!   `z=` at session level; `m=` (our port or 0), `c=` (ours), `b=` in a
//!   media section; `o=` is ours ([`Origin::render`]);
//! - attributes in [`ALLOWED_ATTRIBUTES`], at either level, in every
//!   section, plus the direction (`a=sendrecv` … `a=inactive`), which is
//!   read and written again once for the relayed stream.
//!
//! Everything else is dropped: `i=`, `u=`, `e=`, `p=`, `k=`, unknown line
//! types and every other attribute. None of what is dropped can work end to
//! end through ansim anyway: the relay forwards plain RTP (which it records)
//! from its own ports, RTCP on the port above, so ICE, DTLS-SRTP and SDES-SRTP
//! keys, bundling and RTCP multiplexing offered by one party are meaningless
//! to the other. The `m=` line's protocol and format list pass unchanged.
//!
//! A line holding a CR or NUL inside it is refused ([`SdpError::BadLine`]):
//! passed on, a bare CR could end a line for the receiving parser and smuggle
//! in a line of the peer's choosing (a `c=` with its address, say).
//!
//! The origin line is written by [`Origin::render`], which keeps the
//! session id per leg and bumps the version whenever the SDP sent on that
//! leg changes (RFC 3264 §8).

use std::fmt;
use std::net::{IpAddr, SocketAddr};

/// Why an SDP body could not be used. Always the peer's fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdpError {
    /// The body is not UTF-8 text.
    #[error("SDP is not UTF-8")]
    NotText,
    /// The body does not start with `v=0`.
    #[error("SDP does not start with v=0")]
    NoVersion,
    /// A line is not of the form `x=value`.
    #[error("malformed SDP line {0}")]
    BadLine(usize),
    /// There is no `m=audio` line.
    #[error("SDP has no audio stream")]
    NoAudio,
}

/// The SDP direction attribute of the audio stream (RFC 3264 §6.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Direction {
    /// `a=sendrecv` (the default).
    #[default]
    SendRecv,
    /// `a=sendonly`.
    SendOnly,
    /// `a=recvonly`.
    RecvOnly,
    /// `a=inactive`.
    Inactive,
}

impl Direction {
    fn from_attribute(attr: &str) -> Option<Self> {
        match attr {
            "sendrecv" => Some(Self::SendRecv),
            "sendonly" => Some(Self::SendOnly),
            "recvonly" => Some(Self::RecvOnly),
            "inactive" => Some(Self::Inactive),
            _ => None,
        }
    }

    /// RFC 2543 hold (`c=0.0.0.0`): the peer does not want to receive.
    fn without_receiving(self) -> Self {
        match self {
            Self::SendRecv | Self::SendOnly => Self::SendOnly,
            Self::RecvOnly | Self::Inactive => Self::Inactive,
        }
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::SendRecv => "sendrecv",
            Self::SendOnly => "sendonly",
            Self::RecvOnly => "recvonly",
            Self::Inactive => "inactive",
        })
    }
}

/// What to put into the rewritten SDP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    /// Our media address (origin and every connection line).
    pub address: IpAddr,
    /// Our RTP port for the audio stream (RTCP is implicitly port + 1).
    pub audio_port: u16,
}

/// An SDP body with our addresses in it, before the origin line is set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rewritten {
    /// Lines without the origin, which goes after the first (`v=0`).
    lines: Vec<String>,
    /// Where the peer wants its audio, if it gave a numeric address and a
    /// non-zero port.
    pub remote: Option<SocketAddr>,
    /// The peer's direction for the audio stream.
    pub direction: Direction,
}

/// Origin (`o=`) state of the SDP we send on one leg.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The `sess-id` of every SDP sent on this leg.
    session_id: u64,
    /// The `sess-version` of the last SDP rendered.
    version: u64,
    /// The lines of the last SDP rendered, to tell whether the next differs.
    last: Option<Vec<String>>,
}

impl Origin {
    /// A fresh origin with the given session id (version starts equal to
    /// it, as RFC 4566 suggests for NTP-based ids).
    pub fn new(session_id: u64) -> Self {
        Self {
            session_id,
            version: session_id,
            last: None,
        }
    }

    /// The version the last rendered SDP carried.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Serialises `sdp` with our origin line, incrementing the version if
    /// the body differs from the last one rendered.
    pub fn render(&mut self, sdp: &Rewritten, address: IpAddr) -> Vec<u8> {
        match &self.last {
            Some(last) if *last != sdp.lines => self.version = self.version.wrapping_add(1),
            _ => {}
        }
        self.last = Some(sdp.lines.clone());
        let origin = format!(
            "o=ansim {} {} IN {} {address}",
            self.session_id,
            self.version,
            addr_type(address)
        );
        let mut out = String::new();
        for (i, line) in sdp.lines.iter().enumerate() {
            out.push_str(line);
            out.push_str("\r\n");
            if i == 0 {
                out.push_str(&origin);
                out.push_str("\r\n");
            }
        }
        out.into_bytes()
    }
}

fn addr_type(address: IpAddr) -> &'static str {
    match address {
        IpAddr::V4(_) => "IP4",
        IpAddr::V6(_) => "IP6",
    }
}

fn connection_line(address: IpAddr) -> String {
    format!("c=IN {} {address}", addr_type(address))
}

/// The attributes that may cross legs (compared without regard to case):
/// codec descriptions (RFC 4566 `rtpmap`, `fmtp`), packetisation times,
/// RTCP feedback capabilities (RFC 4585) and silence suppression (RFC 3108).
/// The direction attributes are handled apart (see the module docs).
pub const ALLOWED_ATTRIBUTES: [&str; 6] = [
    "rtpmap",
    "fmtp",
    "ptime",
    "maxptime",
    "rtcp-fb",
    "silenceSupp",
];

/// Whether attribute `name` may cross legs.
fn is_allowed_attribute(name: &str) -> bool {
    ALLOWED_ATTRIBUTES
        .iter()
        .any(|allowed| allowed.eq_ignore_ascii_case(name))
}

/// One `m=` section being read.
#[derive(Debug, Default)]
struct Section {
    /// The section's lines as rewritten so far (the `m=` line first).
    lines: Vec<String>,
    /// Port from the `m=` line, before rewriting.
    port: u16,
    /// Connection address given in this section, if any (`Some(None)`:
    /// given but not a numeric address).
    address: Option<Option<IpAddr>>,
    /// Direction attribute given in this section, if any.
    direction: Option<Direction>,
    /// Whether this is the audio stream we relay.
    relayed: bool,
}

/// Session-level facts gathered while reading.
#[derive(Debug, Default)]
struct Session {
    /// The session-level lines as rewritten so far (no `v=`, no `o=`).
    lines: Vec<String>,
    /// The session-level connection address, if a `c=` line was given
    /// (`Some(None)`: given but not a numeric address).
    address: Option<Option<IpAddr>>,
    /// The session-level direction attribute, if any.
    direction: Option<Direction>,
}

/// Rewrites `body` for sending to the other leg (see the module docs).
pub fn rewrite(body: &[u8], target: Target) -> Result<Rewritten, SdpError> {
    let text = std::str::from_utf8(body).map_err(|_| SdpError::NotText)?;
    let lines: Vec<&str> = text
        .split('\n')
        .map(|l| l.trim_end_matches('\r').trim())
        .filter(|l| !l.is_empty())
        .collect();
    if lines.first() != Some(&"v=0") {
        return Err(SdpError::NoVersion);
    }
    let mut session = Session::default();
    let mut sections: Vec<Section> = Vec::new();
    for (number, line) in lines.iter().enumerate().skip(1) {
        let bad = || SdpError::BadLine(number + 1);
        if line.contains(['\r', '\0']) {
            return Err(bad());
        }
        let (kind, value) = split_line(line).ok_or_else(bad)?;
        if kind == 'm' {
            let relayed = !sections.iter().any(|s| s.relayed);
            sections.push(media_section(value, target, relayed).ok_or_else(bad)?);
            continue;
        }
        match sections.last_mut() {
            Some(section) => section_line(section, kind, value, target),
            None => session_line(&mut session, kind, value, target),
        }
    }
    assemble(session, sections, target)
}

fn split_line(line: &str) -> Option<(char, &str)> {
    let mut chars = line.chars();
    let kind = chars.next().filter(char::is_ascii_lowercase)?;
    let value = chars.as_str().strip_prefix('=')?;
    Some((kind, value))
}

fn parse_address(value: &str) -> Option<IpAddr> {
    let mut parts = value.split_ascii_whitespace();
    let _net = parts.next()?;
    let _kind = parts.next()?;
    let address = parts.next()?.split('/').next()?;
    address.parse().ok()
}

fn attribute(value: &str) -> (&str, &str) {
    value.split_once(':').unwrap_or((value, ""))
}

/// Takes in a session-level line (see the module docs for what is kept).
fn session_line(session: &mut Session, kind: char, value: &str, target: Target) {
    match kind {
        's' => session.lines.push("s=-".to_owned()),
        'c' => {
            session.address = Some(parse_address(value));
            session.lines.push(connection_line(target.address));
        }
        'b' | 't' | 'r' | 'z' => session.lines.push(format!("{kind}={value}")),
        'a' => {
            let (name, _) = attribute(value);
            if let Some(direction) = Direction::from_attribute(name) {
                session.direction = Some(direction);
            } else if is_allowed_attribute(name) {
                session.lines.push(format!("a={value}"));
            }
        }
        // o= is ours; i= u= e= p= k=, a repeated v= and unknown types go.
        _ => {}
    }
}

/// Starts a media section from its `m=` line's value, `None` if that lacks
/// the media, port or protocol field. The port is ours on the relayed
/// stream (0 if the peer refused it), 0 on every other one; a port that is
/// not a number counts as 0.
fn media_section(value: &str, target: Target, first_audio: bool) -> Option<Section> {
    let fields: Vec<&str> = value.split_ascii_whitespace().collect();
    let [media, port, proto, formats @ ..] = fields.as_slice() else {
        return None;
    };
    let port = port
        .split('/')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    let relayed = first_audio && media.eq_ignore_ascii_case("audio");
    let new_port = if relayed && port != 0 {
        target.audio_port
    } else {
        0
    };
    let mut line = format!("m={media} {new_port} {proto}");
    for format in formats {
        line.push(' ');
        line.push_str(format);
    }
    Some(Section {
        lines: vec![line],
        port,
        relayed,
        ..Section::default()
    })
}

/// Takes in a line of a media section (see the module docs for what is
/// kept).
fn section_line(section: &mut Section, kind: char, value: &str, target: Target) {
    match kind {
        'c' => {
            section.address = Some(parse_address(value));
            section.lines.push(connection_line(target.address));
        }
        'b' => section.lines.push(format!("b={value}")),
        'a' => {
            let (name, _) = attribute(value);
            if let Some(direction) = Direction::from_attribute(name) {
                section.direction = Some(direction);
            } else if is_allowed_attribute(name) {
                section.lines.push(format!("a={value}"));
            }
        }
        // i= k= and session-level or unknown types in a section go.
        _ => {}
    }
}

fn assemble(
    mut session: Session,
    sections: Vec<Section>,
    target: Target,
) -> Result<Rewritten, SdpError> {
    let audio = sections
        .iter()
        .find(|s| s.relayed)
        .ok_or(SdpError::NoAudio)?;
    let address = audio.address.or(session.address).flatten();
    let mut direction = audio.direction.or(session.direction).unwrap_or_default();
    if address.is_some_and(|a| a.is_unspecified()) {
        direction = direction.without_receiving();
    }
    let remote = address
        .filter(|_| audio.port != 0)
        .map(|a| SocketAddr::new(a, audio.port));
    if session.address.is_none() {
        let at = session
            .lines
            .iter()
            .position(|l| l.starts_with("b=") || l.starts_with("t="))
            .unwrap_or(session.lines.len());
        session.lines.insert(at, connection_line(target.address));
    }
    let mut lines = vec!["v=0".to_owned()];
    if !session.lines.iter().any(|l| l.starts_with("s=")) {
        lines.push("s=-".to_owned());
    }
    lines.extend(session.lines);
    for section in sections {
        lines.extend(section.lines);
        if section.relayed {
            lines.push(format!("a={direction}"));
        }
    }
    Ok(Rewritten {
        lines,
        remote,
        direction,
    })
}

impl From<Direction> for super::MediaDirection {
    fn from(d: Direction) -> Self {
        match d {
            Direction::SendRecv => super::MediaDirection::SendRecv,
            Direction::SendOnly => super::MediaDirection::SendOnly,
            Direction::RecvOnly => super::MediaDirection::RecvOnly,
            Direction::Inactive => super::MediaDirection::Inactive,
        }
    }
}

#[cfg(test)]
mod tests {
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
        assert_eq!(rewritten.direction, Direction::SendRecv);
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
        assert_eq!(rewritten.direction, Direction::RecvOnly);
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
        assert_eq!(rewritten.direction, Direction::SendOnly);
        assert!(text.contains("a=sendonly") && !text.contains("0.0.0.0"));
        let session_inactive =
            "v=0\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\na=inactive\r\nm=audio 5004 RTP/AVP 0\r\n";
        let (rewritten, text) = render(session_inactive, target());
        assert_eq!(rewritten.direction, Direction::Inactive);
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
                        Direction::from_attribute(name).is_some()
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
        assert_eq!(rewritten.direction, Direction::RecvOnly);
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
}
