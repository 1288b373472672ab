//! A small, line-based SDP (RFC 4566 / RFC 3264) rewriter for topology
//! hiding.
//!
//! The B2BUA never forwards a peer's SDP as is: [`rewrite`] replaces every
//! connection address with ours, puts our relay port on the first audio
//! stream, disables every other stream (port 0), drops ICE and RTCP
//! address attributes, anonymises the origin and session name and drops
//! the lines that may carry identity (`i=`, `u=`, `e=`, `p=`,
//! `a=tool`). Codecs (`rtpmap`, `fmtp`, `ptime`, …) are kept. It also
//! reads where the peer wants its audio and in which direction
//! ([`Rewritten::remote`], [`Rewritten::direction`]).
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
    session_id: u64,
    version: u64,
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

/// Attributes that carry transport addresses or tool names: dropped.
fn is_dropped_attribute(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    name.starts_with("ice-")
        || matches!(
            name.as_str(),
            "candidate" | "remote-candidates" | "end-of-candidates" | "rtcp" | "rtcp-mux" | "tool"
        )
}

/// One `m=` section being read.
#[derive(Debug, Default)]
struct Section {
    /// The section's lines as rewritten so far (the `m=` line first).
    lines: Vec<String>,
    /// Port from the `m=` line, before rewriting.
    port: u16,
    /// Connection address given in this section, if any.
    address: Option<Option<IpAddr>>,
    /// Direction attribute given in this section, if any.
    direction: Option<Direction>,
    /// Whether this is the audio stream we relay.
    relayed: bool,
}

/// Session-level facts gathered while reading.
#[derive(Debug, Default)]
struct Session {
    lines: Vec<String>,
    address: Option<Option<IpAddr>>,
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
        let (kind, value) = split_line(line).ok_or(SdpError::BadLine(number + 1))?;
        if kind == 'm' {
            let relayed = !sections.iter().any(|s| s.relayed);
            sections.push(media_section(value, target, relayed));
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

fn session_line(session: &mut Session, kind: char, value: &str, target: Target) {
    match kind {
        'o' | 'i' | 'u' | 'e' | 'p' => {}
        's' => session.lines.push("s=-".to_owned()),
        'c' => {
            session.address = Some(parse_address(value));
            session.lines.push(connection_line(target.address));
        }
        'a' => {
            let (name, _) = attribute(value);
            if let Some(direction) = Direction::from_attribute(name) {
                session.direction = Some(direction);
            } else if !is_dropped_attribute(name) {
                session.lines.push(format!("a={value}"));
            }
        }
        _ => session.lines.push(format!("{kind}={value}")),
    }
}

fn media_section(value: &str, target: Target, first_audio: bool) -> Section {
    let fields: Vec<&str> = value.split_ascii_whitespace().collect();
    let media = fields.first().copied().unwrap_or("");
    let port = fields
        .get(1)
        .and_then(|p| p.split('/').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    let relayed = first_audio && media.eq_ignore_ascii_case("audio");
    let new_port = if relayed && port != 0 {
        target.audio_port
    } else {
        0
    };
    let rest = fields.get(2..).map(|f| f.join(" ")).unwrap_or_default();
    Section {
        lines: vec![format!("m={media} {new_port} {rest}").trim_end().to_owned()],
        port,
        relayed,
        ..Section::default()
    }
}

fn section_line(section: &mut Section, kind: char, value: &str, target: Target) {
    match kind {
        'i' => {}
        'c' => {
            section.address = Some(parse_address(value));
            section.lines.push(connection_line(target.address));
        }
        'a' => {
            let (name, _) = attribute(value);
            if let Some(direction) = Direction::from_attribute(name) {
                section.direction = Some(direction);
            } else if !is_dropped_attribute(name) {
                section.lines.push(format!("a={value}"));
            }
        }
        _ => section.lines.push(format!("{kind}={value}")),
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
