//! Keeping each leg's dialog alive: RFC 4028 session timers, negotiated
//! on each leg on its own, and the in-dialog OPTIONS probe for a leg
//! where no timer was negotiated.
//!
//! A leg has at most one [`Keepalive`]: a session timer (ansim refreshes
//! at half the interval with a re-INVITE carrying the SDP last sent on the
//! leg, or watches the peer refresh and gives up shortly before expiry),
//! or a probe (an OPTIONS every `dialog_probe_interval`). A refresh or
//! probe that fails, or a session the peer lets expire, ends the call on
//! both legs ([`Call::keepalive_failed`]).

use std::time::{Duration, Instant};

use rsip::headers::{Allow, UntypedHeader};
use rsip::{Header, Headers, Method, Request, Response};

use super::call::{Call, Phase};
use super::message::{ALLOW, Body, body_of, header_value, lists_tag, set_body};
use super::{CallResult, HangupSide, Leg};
use crate::media::sdp::{Target, rewrite};
use crate::sip::{ack_for_2xx, new_branch};

/// `[sip]` session timer and probe settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DialogTimers {
    /// The session interval we ask for and accept at most
    /// (`session_expires`).
    pub session_expires: Duration,
    /// The shortest interval we accept (`min_session_expires`, our Min-SE).
    pub min_se: Duration,
    /// In-dialog OPTIONS interval on a leg without a session timer;
    /// zero: no probe (`dialog_probe_interval`).
    pub probe_interval: Duration,
}

impl Default for DialogTimers {
    fn default() -> Self {
        DialogTimers {
            session_expires: Duration::from_secs(1800),
            min_se: Duration::from_secs(90),
            probe_interval: Duration::ZERO,
        }
    }
}

/// Who refreshes a leg's session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refresher {
    /// ansim sends the refreshes.
    Us,
    /// The leg's peer does; we watch for expiry.
    Peer,
}

/// What keeps a leg alive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// An RFC 4028 session timer.
    Timer {
        /// The negotiated session interval.
        interval: Duration,
        /// Who refreshes.
        refresher: Refresher,
    },
    /// An in-dialog OPTIONS every `interval`.
    Probe {
        /// The probe interval.
        interval: Duration,
    },
}

/// A leg's keep-alive state.
#[derive(Debug, Clone)]
pub(super) struct Keepalive {
    pub(super) kind: Kind,
    /// When to refresh or probe next, or (the peer refreshing) when the
    /// session is given up.
    pub(super) due: Instant,
    /// Our refresh or probe in flight: its CSeq and the request.
    pub(super) outstanding: Option<(u32, Request)>,
    /// Retries after 422 or 491 for the request in flight.
    pub(super) retries: u8,
}

/// How often a refresh is retried (422 with a larger Min-SE, 491 glare).
const MAX_RETRIES: u8 = 3;
/// How long after glare (491) a refresh is tried again (RFC 3261 §14.1).
const GLARE_WAIT: Duration = Duration::from_secs(2);
/// The longest interval a peer may ask for (one day).
const MAX_INTERVAL: u64 = 86_400;

impl Kind {
    /// When this kind is next due, counted from `now` (a refresh, a probe
    /// or a new interval just agreed).
    pub(super) fn next_due(self, now: Instant) -> Instant {
        // Validation bounds every interval; a call built with any still
        // never overflows `Instant + Duration`.
        let most = Duration::from_secs(MAX_INTERVAL);
        let kind = match self {
            Kind::Timer {
                interval,
                refresher,
            } => Kind::Timer {
                interval: interval.min(most),
                refresher,
            },
            Kind::Probe { interval } => Kind::Probe {
                interval: interval.min(most),
            },
        };
        match kind {
            Kind::Timer {
                interval,
                refresher: Refresher::Us,
            } => now + interval / 2,
            // RFC 4028 §10: BYE before expiry less min(32 s, interval / 3).
            Kind::Timer {
                interval,
                refresher: Refresher::Peer,
            } => now + interval - (interval / 3).min(Duration::from_secs(32)),
            Kind::Probe { interval } => now + interval,
        }
    }
}

/// `Session-Expires` (or its compact form `x`): seconds and refresher.
pub(super) fn session_expires(headers: &Headers) -> Option<(u64, Option<String>)> {
    let value = header_value(headers, "Session-Expires").or_else(|| header_value(headers, "x"))?;
    let mut parts = value.split(';');
    let secs = parts.next()?.trim().parse::<u64>().ok()?;
    let refresher = parts
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("refresher"))
        .map(|(_, v)| v.trim().to_ascii_lowercase());
    Some((secs.min(MAX_INTERVAL), refresher))
}

/// `Min-SE` in seconds (its parameters ignored).
pub(super) fn min_se(headers: &Headers) -> Option<u64> {
    let value = header_value(headers, "Min-SE")?;
    let secs = value.split(';').next()?.trim().parse::<u64>().ok()?;
    Some(secs.min(MAX_INTERVAL))
}

/// Whether a peer's request shows it knows session timers.
fn supports_timer(headers: &Headers) -> bool {
    lists_tag(headers, "Supported", "timer")
        || lists_tag(headers, "k", "timer")
        || lists_tag(headers, "Require", "timer")
        || session_expires(headers).is_some()
}

/// If the caller's INVITE asks for a session interval below ours, the
/// Min-SE (seconds) to answer it `422` with (RFC 4028 §8.1, §9).
pub(crate) fn too_brief(request: &Request, cfg: &DialogTimers) -> Option<u64> {
    let (secs, _) = session_expires(&request.headers)?;
    let ours = cfg.min_se.as_secs();
    (secs < ours).then_some(ours)
}

/// The session timer we, as UAS, agree to for a request from a peer (its
/// initial INVITE or a refresh), or `None` if the peer shows no support.
/// The interval is the peer's (at most ours, at least both Min-SEs); the
/// refresher is the peer's choice, else us.
pub(super) fn as_uas(headers: &Headers, cfg: &DialogTimers) -> Option<Kind> {
    if !supports_timer(headers) {
        return None;
    }
    let ours = cfg.session_expires.as_secs();
    let (asked, refresher) = match session_expires(headers) {
        Some((secs, refresher)) => (secs.min(ours), refresher),
        None => (ours, None),
    };
    let floor = min_se(headers).unwrap_or(0).max(cfg.min_se.as_secs());
    let refresher = match refresher.as_deref() {
        Some("uac") => Refresher::Peer,
        _ => Refresher::Us,
    };
    Some(Kind::Timer {
        interval: Duration::from_secs(asked.max(floor)),
        refresher,
    })
}

/// The session timer a 2xx to our request (we the UAC) sets up, if any;
/// never shorter than our Min-SE, whatever the peer wrote.
pub(super) fn as_uac(response: &Response, cfg: &DialogTimers) -> Option<Kind> {
    let (secs, refresher) = session_expires(&response.headers)?;
    let refresher = match refresher.as_deref() {
        Some("uas") => Refresher::Peer,
        _ => Refresher::Us,
    };
    Some(Kind::Timer {
        interval: Duration::from_secs(secs.max(cfg.min_se.as_secs()).max(1)),
        refresher,
    })
}

/// The headers of a request we send that asks for a session timer of
/// `secs` with us refreshing.
pub(super) fn uac_headers(headers: &mut Headers, secs: u64, min_se: u64) {
    headers.push(Header::Other("Supported".into(), "timer".into()));
    headers.push(Header::Other(
        "Session-Expires".into(),
        format!("{secs};refresher=uac"),
    ));
    headers.push(Header::Other("Min-SE".into(), min_se.to_string()));
}

/// The headers of our 2xx (we the UAS) agreeing to `kind`.
pub(super) fn uas_headers(headers: &mut Headers, kind: Kind) {
    if let Kind::Timer {
        interval,
        refresher,
    } = kind
    {
        let who = match refresher {
            Refresher::Us => "uas",
            Refresher::Peer => "uac",
        };
        if refresher == Refresher::Peer {
            headers.push(Header::Other("Require".into(), "timer".into()));
        }
        headers.push(Header::Other(
            "Session-Expires".into(),
            format!("{};refresher={who}", interval.as_secs()),
        ));
    }
}

/// The 422 for a request whose interval is below `min_se` seconds.
pub(crate) fn interval_too_brief(mut response: Response, min_se: u64) -> Response {
    response
        .headers
        .push(Header::Other("Min-SE".into(), min_se.to_string()));
    response
}

impl Call {
    pub(super) fn keepalive(&mut self, leg: Leg) -> &mut Option<Keepalive> {
        match leg {
            Leg::A => &mut self.a_keep,
            Leg::B => &mut self.b_keep,
        }
    }

    /// Arms `leg`'s keep-alive at the answer: the negotiated timer, else
    /// the probe if one is configured.
    pub(super) fn arm_keepalive(&mut self, now: Instant, leg: Leg, timer: Option<Kind>) {
        let probe = self.cfg.dialog_timers.probe_interval;
        let kind = timer.or_else(|| (!probe.is_zero()).then_some(Kind::Probe { interval: probe }));
        *self.keepalive(leg) = kind.map(|kind| Keepalive {
            kind,
            due: kind.next_due(now),
            outstanding: None,
            retries: 0,
        });
    }

    /// `leg`'s session was refreshed (a re-INVITE or UPDATE answered 2xx,
    /// either way), with `kind` newly agreed if given.
    pub(super) fn refreshed(&mut self, now: Instant, leg: Leg, kind: Option<Kind>) {
        if let Some(keep) = self.keepalive(leg) {
            if let Some(kind) = kind {
                keep.kind = kind;
            }
            if matches!(keep.kind, Kind::Timer { .. }) {
                keep.due = keep.kind.next_due(now);
            }
        }
    }

    /// The earliest keep-alive deadline with nothing in flight.
    pub(super) fn keepalive_timeout(&self) -> Option<Instant> {
        [&self.a_keep, &self.b_keep]
            .into_iter()
            .flatten()
            .filter(|k| k.outstanding.is_none())
            .map(|k| k.due)
            .min()
    }

    /// Fires the keep-alives due at `now`.
    pub(super) fn keepalive_fire(&mut self, now: Instant) {
        for leg in [Leg::A, Leg::B] {
            if self.phase != Phase::Confirmed {
                return;
            }
            let Some(keep) = self.keepalive(leg).clone() else {
                continue;
            };
            if keep.outstanding.is_some() || keep.due > now {
                continue;
            }
            match keep.kind {
                Kind::Timer {
                    refresher: Refresher::Peer,
                    ..
                } => {
                    tracing::info!(?leg, "the peer let the session expire");
                    self.keepalive_failed(now, "session-expired");
                }
                Kind::Timer { interval, .. } => {
                    let secs = interval.as_secs();
                    self.send_keepalive(now, leg, Method::Invite, secs);
                }
                Kind::Probe { .. } => self.send_keepalive(now, leg, Method::Options, 0),
            }
        }
    }

    /// Sends a refresh re-INVITE (asking for `secs`) or a probe OPTIONS
    /// on `leg`; a relayed re-INVITE in flight there puts it off.
    fn send_keepalive(&mut self, now: Instant, leg: Leg, method: Method, secs: u64) {
        let busy = self
            .relays
            .iter()
            .any(|r| r.origin == leg.other() && r.sent.method == Method::Invite);
        if busy {
            if let Some(keep) = self.keepalive(leg) {
                keep.due = now + GLARE_WAIT;
            }
            return;
        }
        let sdp = match leg {
            Leg::A => self.a_sdp.clone(),
            Leg::B => self.b_sdp.clone(),
        };
        let min_se = self.cfg.dialog_timers.min_se.as_secs();
        let dialog = self.dialog(leg);
        let mut request = dialog.request(method);
        let cseq = dialog.local_cseq;
        if method == Method::Invite {
            request.headers.push(dialog.contact());
            request.headers.push(Header::Allow(Allow::new(ALLOW)));
            uac_headers(&mut request.headers, secs, min_se);
            if let Some(sdp) = sdp {
                set_body(
                    &mut request.headers,
                    &mut request.body,
                    "application/sdp",
                    sdp,
                );
            }
        }
        if let Some(keep) = self.keepalive(leg) {
            keep.outstanding = Some((cseq, request.clone()));
        }
        self.send(leg, request);
    }

    /// A response on `leg` to our refresh or probe: true if it was one.
    pub(super) fn keepalive_response(
        &mut self,
        now: Instant,
        leg: Leg,
        number: u32,
        response: &Response,
    ) -> bool {
        let Some(keep) = self.keepalive(leg).clone() else {
            return false;
        };
        let Some((cseq, sent)) = keep.outstanding.clone().filter(|(n, _)| *n == number) else {
            return false;
        };
        let code = response.status_code.code();
        if code < 200 {
            return true;
        }
        let refresh = sent.method == Method::Invite;
        if refresh && (200..300).contains(&code) {
            self.refresh_answered(now, leg, cseq, &sent, response);
            return true;
        }
        let retry = keep.retries < MAX_RETRIES && self.phase == Phase::Confirmed;
        match (refresh, code) {
            (true, 422) if retry => {
                let secs = min_se(&response.headers)
                    .unwrap_or(0)
                    .max(self.cfg.dialog_timers.min_se.as_secs());
                self.retry_keepalive(now, leg, None);
                self.send_keepalive(now, leg, Method::Invite, secs);
            }
            (true, 491) if retry => self.retry_keepalive(now, leg, Some(now + GLARE_WAIT)),
            (true, _) => {
                tracing::info!(?leg, code, "session refresh refused");
                self.keepalive_failed(now, "session-refresh-failed");
            }
            (false, 481 | 408) => {
                tracing::info!(?leg, code, "dialog probe: the dialog is gone");
                self.keepalive_failed(now, "dialog-probe-failed");
            }
            (false, _) => {
                if let Some(keep) = self.keepalive(leg) {
                    keep.outstanding = None;
                    keep.due = keep.kind.next_due(now);
                }
            }
        }
        true
    }

    fn retry_keepalive(&mut self, now: Instant, leg: Leg, due: Option<Instant>) {
        if let Some(keep) = self.keepalive(leg) {
            keep.outstanding = None;
            keep.retries += 1;
            keep.due = due.unwrap_or(now);
        }
    }

    /// Our refresh was answered 2xx: ACK it, take the interval it sets
    /// (none: the peer dropped the timer, the probe takes over), and learn
    /// where the peer now wants media.
    fn refresh_answered(
        &mut self,
        now: Instant,
        leg: Leg,
        cseq: u32,
        sent: &Request,
        response: &Response,
    ) {
        let ack = ack_for_2xx(sent, response, &new_branch());
        self.acks.push((leg, cseq, ack.clone()));
        self.send(leg, ack);
        self.dialog(leg).refresh_target(&response.headers);
        self.arm_keepalive(now, leg, as_uac(response, &self.cfg.dialog_timers));
        if let Ok(Body::Sdp(sdp)) = body_of(&response.headers, &response.body) {
            let audio_port = match leg {
                Leg::A => self.ports.a_side,
                Leg::B => self.ports.b_side,
            };
            let target = Target {
                address: self.cfg.advertise,
                audio_port,
            };
            if let Ok(rewritten) = rewrite(&sdp, target) {
                self.media(leg, &rewritten);
            }
        }
    }

    /// A client transaction on `leg` of a confirmed call timed out: our
    /// refresh or probe, or a relayed request (`midcall.rs`).
    pub(super) fn confirmed_timeout(&mut self, now: Instant, leg: Leg, method: Method) {
        if !self.keepalive_timeout_on(now, leg, &method) {
            self.relay_timeout(now, leg, method);
        }
    }

    /// A refresh or probe in flight on `leg` timed out: true if it was one
    /// (the call is then ending).
    fn keepalive_timeout_on(&mut self, now: Instant, leg: Leg, method: &Method) -> bool {
        let ours = self
            .keepalive(leg)
            .as_ref()
            .and_then(|k| k.outstanding.as_ref())
            .is_some_and(|(_, sent)| sent.method == *method);
        if ours {
            tracing::info!(?leg, %method, "session refresh or dialog probe timed out");
            let reason = match method {
                Method::Options => "dialog-probe-failed",
                _ => "session-refresh-failed",
            };
            self.keepalive_failed(now, reason);
        }
        ours
    }

    /// A leg is dead: hang both up (BYE both ways), the call failed.
    pub(super) fn keepalive_failed(&mut self, now: Instant, reason: &'static str) {
        self.a_keep = None;
        self.b_keep = None;
        self.end_reason = Some(reason);
        self.hang_up(now, HangupSide::System);
        if let Some(outcome) = self.outcome.as_mut() {
            outcome.result = CallResult::Failed;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::b2bua::test_support::request;

    fn req(extra: &str) -> Request {
        request(&format!(
            "INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1\r\n\
             From: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\n\
             {extra}Content-Length: 0\r\n\r\n"
        ))
    }

    #[test]
    fn reads_session_expires_and_min_se() {
        let r = req("Session-Expires: 1200 ; refresher=UAC\r\nMin-SE: 120;x=1\r\n");
        assert_eq!(
            session_expires(&r.headers),
            Some((1200, Some("uac".into())))
        );
        assert_eq!(min_se(&r.headers), Some(120));
        let r = req("x: 99999999\r\n");
        assert_eq!(session_expires(&r.headers), Some((MAX_INTERVAL, None)));
        assert_eq!(
            session_expires(&req("Session-Expires: soon\r\n").headers),
            None
        );
    }

    #[test]
    fn uas_negotiation() {
        let cfg = DialogTimers::default();
        assert_eq!(as_uas(&req("").headers, &cfg), None);
        let timer = |secs, refresher| {
            Some(Kind::Timer {
                interval: Duration::from_secs(secs),
                refresher,
            })
        };
        let supported = req("Supported: 100rel, timer\r\n");
        assert_eq!(as_uas(&supported.headers, &cfg), timer(1800, Refresher::Us));
        let asked = req("Session-Expires: 600;refresher=uac\r\nMin-SE: 300\r\n");
        assert_eq!(as_uas(&asked.headers, &cfg), timer(600, Refresher::Peer));
        let long = req("Session-Expires: 7200;refresher=uas\r\n");
        assert_eq!(as_uas(&long.headers, &cfg), timer(1800, Refresher::Us));
        let floor = req("Supported: timer\r\nMin-SE: 3600\r\n");
        assert_eq!(as_uas(&floor.headers, &cfg), timer(3600, Refresher::Us));
        assert_eq!(too_brief(&req("Session-Expires: 60\r\n"), &cfg), Some(90));
        let brief = crate::b2bua::test_support::response(
            "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\n\
             To: <sip:c@d>;tag=2\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\n\
             Session-Expires: 1;refresher=uac\r\nContent-Length: 0\r\n\r\n",
        );
        assert_eq!(as_uac(&brief, &cfg), timer(90, Refresher::Us));
        assert_eq!(too_brief(&req("Session-Expires: 90\r\n"), &cfg), None);
        assert_eq!(too_brief(&req(""), &cfg), None);
    }

    #[test]
    fn deadlines() {
        let now = Instant::now();
        let s = Duration::from_secs;
        let us = Kind::Timer {
            interval: s(1800),
            refresher: Refresher::Us,
        };
        let peer = Kind::Timer {
            interval: s(1800),
            refresher: Refresher::Peer,
        };
        let short = Kind::Timer {
            interval: s(6),
            refresher: Refresher::Peer,
        };
        assert_eq!(us.next_due(now), now + s(900));
        assert_eq!(peer.next_due(now), now + s(1768));
        assert_eq!(short.next_due(now), now + s(4));
        assert_eq!(Kind::Probe { interval: s(30) }.next_due(now), now + s(30));
    }
}
