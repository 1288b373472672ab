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

use std::fmt::{self, Write as _};
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

/// The SDP direction attribute of a leg's audio stream (RFC 4566/3264
/// §6.1), as offered by that leg: `sendonly` means the leg's party sends
/// but does not receive (e.g. putting the other party on hold).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum MediaDirection {
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

impl MediaDirection {
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

impl fmt::Display for MediaDirection {
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
    pub direction: MediaDirection,
    /// Where the relayed audio stream's lines are in `lines` (its `m=`
    /// line first).
    audio: std::ops::Range<usize>,
}

impl Rewritten {
    /// Keeps only the relayed audio stream's formats for which `keep(pt,
    /// encoding)` is true (`encoding`: the lowercase name from its
    /// `a=rtpmap`, if any), with their `rtpmap`, `fmtp` and `rtcp-fb`
    /// lines. Changes nothing and returns `false` if no format for which
    /// `essential(pt)` holds would be left (the stream would carry no
    /// audio).
    pub fn retain_formats(
        &mut self,
        keep: impl Fn(u8, Option<&str>) -> bool,
        essential: impl Fn(u8) -> bool,
    ) -> bool {
        let Some(m_line) = self.lines.get(self.audio.start) else {
            return false;
        };
        let section = self.lines.get(self.audio.clone()).unwrap_or_default();
        let encoding = |pt: u8| {
            section.iter().find_map(|l| {
                let (id, rest) = l.strip_prefix("a=rtpmap:")?.split_once(' ')?;
                (id.trim().parse::<u8>().ok()? == pt)
                    .then(|| rest.split('/').next().unwrap_or("").to_ascii_lowercase())
            })
        };
        let fields: Vec<&str> = m_line.split(' ').collect();
        let Some((head, formats)) = fields.split_at_checked(3) else {
            return false;
        };
        let kept: Vec<&str> = formats
            .iter()
            .copied()
            .filter(|f| {
                f.parse::<u8>()
                    .is_ok_and(|pt| keep(pt, encoding(pt).as_deref()))
            })
            .collect();
        if !kept.iter().any(|f| f.parse::<u8>().is_ok_and(&essential)) {
            return false;
        }
        let line = [head, &kept[..]].concat().join(" ");
        let dropped = |l: &str| {
            ["a=rtpmap:", "a=fmtp:", "a=rtcp-fb:"].iter().any(|prefix| {
                l.strip_prefix(prefix)
                    .and_then(|rest| rest.split([' ', ':']).next())
                    .is_some_and(|id| id != "*" && !kept.contains(&id))
            })
        };
        let mut section: Vec<String> = vec![line];
        let rest = self.lines.get(self.audio.start + 1..self.audio.end);
        section.extend(
            rest.unwrap_or_default()
                .iter()
                .filter(|l| !dropped(l))
                .cloned(),
        );
        let end = self.audio.start + section.len();
        self.lines.splice(self.audio.clone(), section);
        self.audio = self.audio.start..end;
        true
    }
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
        // Only a body that changed is kept (cloned) again.
        if self.last.as_ref() != Some(&sdp.lines) {
            if self.last.is_some() {
                self.version = self.version.wrapping_add(1);
            }
            self.last = Some(sdp.lines.clone());
        }
        let size: usize = sdp.lines.iter().map(|l| l.len() + 2).sum();
        let mut out = String::with_capacity(size + 64);
        for (i, line) in sdp.lines.iter().enumerate() {
            out.push_str(line);
            out.push_str("\r\n");
            if i == 0 {
                let (id, version) = (self.session_id, self.version);
                let kind = addr_type(address);
                let _ = write!(out, "o=ansim {id} {version} IN {kind} {address}\r\n");
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
    /// MediaDirection attribute given in this section, if any.
    direction: Option<MediaDirection>,
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
    direction: Option<MediaDirection>,
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
            if let Some(direction) = MediaDirection::from_attribute(name) {
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
            if let Some(direction) = MediaDirection::from_attribute(name) {
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
    let mut audio = 0..0;
    for section in sections {
        let start = lines.len();
        lines.extend(section.lines);
        if section.relayed {
            lines.push(format!("a={direction}"));
            audio = start..lines.len();
        }
    }
    Ok(Rewritten {
        lines,
        remote,
        direction,
        audio,
    })
}

#[cfg(test)]
#[path = "sdp_tests.rs"]
mod tests;
