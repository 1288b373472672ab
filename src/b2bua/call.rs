//! The [`Call`] value: construction, dispatch, timers and outputs.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use rsip::headers::{Allow, UntypedHeader};
use rsip::{Header, Method, Request, Response, Uri};

/// Re-exported so sibling modules may also name it `call::Leg`.
pub(super) use super::Leg;
use super::dialog::Dialog;
use super::message::{ALLOW, Body, body_of, contact_uri, copy_relayed, header_list, set_body};
use super::session_timer::{Keepalive, Kind, as_uas, uac_headers};
use super::{
    Action, CallConfig, CallError, CallEvent, CallResult, HangupSide, MediaPorts, PeerError,
    Routing, TxnId,
};
use crate::media::sdp::{Origin, Rewritten, Target, rewrite};
use crate::sip::headers::{core_values, parse_cseq, tag_of, top_via};
use crate::sip::new_tag;

/// How long we wait for a CANCELled INVITE or a BYE to complete before
/// we stop waiting (64 × T1, as RFC 3261 §9.1 suggests).
pub(super) const GUARD: Duration = Duration::from_secs(32);

/// Where the call is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// The B-leg INVITE has no final response yet.
    Calling,
    /// We CANCELled the B-leg INVITE and wait for it to end.
    Cancelling,
    /// Both dialogs are confirmed.
    Confirmed,
    /// BYEs are outstanding.
    Ending,
    /// Nothing is outstanding; `Ended` was emitted.
    Finished,
}

/// How the call ended, decided before it is over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Outcome {
    pub(super) result: CallResult,
    pub(super) hangup: Option<HangupSide>,
}

/// A request relayed from one leg to the other, waiting for its answer.
#[derive(Debug, Clone)]
pub(super) struct Relay {
    /// The leg the original request came from.
    pub(super) origin: Leg,
    /// The original request's server transaction, where the answer goes.
    pub(super) txn: TxnId,
    /// The original request, to answer.
    pub(super) request: Request,
    /// The request we sent on the other leg.
    pub(super) sent: Request,
    /// Its CSeq number.
    pub(super) cseq: u32,
}

/// One call: the caller's dialog, the callee's dialog and what joins them.
/// See the [module docs](super) for the protocol choices.
#[derive(Debug)]
pub struct Call {
    pub(super) cfg: CallConfig,
    pub(super) ports: MediaPorts,
    /// Whether the call is recorded ([`super::Routing::record`]).
    pub(super) record: bool,
    pub(super) phase: Phase,
    pub(super) a: Dialog,
    pub(super) b: Dialog,
    /// The server transaction of the caller's INVITE.
    pub(super) a_invite_txn: TxnId,
    pub(super) a_invite: Request,
    pub(super) b_invite: Request,
    /// The position in `cfg.trunks` of the trunk the B-leg INVITE went to.
    pub(super) b_trunk: usize,
    /// The routing decision, to call the next trunk with.
    pub(super) routing: Routing,
    pub(super) a_origin: Origin,
    pub(super) b_origin: Origin,
    /// The last SDP sent to the caller (reused if the 2xx has none; the
    /// body of our session refreshes on A).
    pub(super) a_sdp: Option<Vec<u8>>,
    /// The last SDP sent to the callee (the body of our refreshes on B).
    pub(super) b_sdp: Option<Vec<u8>>,
    /// The CSeq number of the B-leg INVITE (1, more after a 422 retry).
    pub(super) b_invite_cseq: u32,
    /// Retries of the B-leg INVITE after 422.
    pub(super) b_422_retries: u8,
    /// The caller's INVITE had no offer (delayed offer): the callee's 2xx
    /// carries the offer, the caller's ACK the answer.
    pub(super) delayed: bool,
    /// Delayed offer: the callee's 2xx, whose ACK waits for the caller's
    /// answer in its ACK.
    pub(super) b_ack_pending: Option<Response>,
    /// The session timer agreed with the caller, armed at the answer.
    pub(super) a_timer: Option<Kind>,
    /// Each leg's session timer or probe, once answered.
    pub(super) a_keep: Option<Keepalive>,
    pub(super) b_keep: Option<Keepalive>,
    /// Why the call ended, when not a plain hang-up (logged).
    pub(super) end_reason: Option<&'static str>,
    pub(super) relays: Vec<Relay>,
    /// ACKs we sent for 2xx responses, by leg and CSeq, to re-send.
    pub(super) acks: Vec<(Leg, u32, Request)>,
    pub(super) b_provisional: bool,
    /// RSeq of the last reliable provisional we PRACKed.
    pub(super) b_rseq: Option<u32>,
    pub(super) cancel_deferred: bool,
    pub(super) ringing: bool,
    /// Final status sent to the caller's INVITE.
    pub(super) a_final: Option<u16>,
    pub(super) outcome: Option<Outcome>,
    pub(super) pending_byes: Vec<Leg>,
    pub(super) no_answer_at: Option<Instant>,
    pub(super) max_duration_at: Option<Instant>,
    pub(super) guard_at: Option<Instant>,
    pub(super) actions: VecDeque<Action>,
}

impl Call {
    /// Creates the call for a routed initial INVITE, received through
    /// the server transaction `txn`, and queues the B-leg INVITE (and a
    /// `Media` action for the caller's offer).
    ///
    /// Errors: [`CallError::Peer`] if the INVITE cannot be relayed (answer
    /// it with [`CallError::status`]), [`CallError::Local`] if our
    /// configuration cannot form a B-leg Request-URI.
    pub fn new(
        now: Instant,
        txn: TxnId,
        invite: &Request,
        routing: Routing,
        ports: MediaPorts,
        cfg: CallConfig,
    ) -> Result<Call, CallError> {
        if invite.method != Method::Invite {
            return Err(PeerError::NotInvite.into());
        }
        let a = a_dialog(invite, &cfg)?;
        let offer = match body_of(&invite.headers, &invite.body)? {
            Body::Sdp(sdp) => Some(sdp),
            Body::Empty => None,
            Body::Other { .. } => return Err(PeerError::NoOffer.into()),
        };
        let target = Target {
            address: cfg.advertise,
            audio_port: ports.b_side,
        };
        let rewritten = match offer {
            Some(offer) => {
                let mut rewritten = rewrite(&offer, target).map_err(PeerError::from)?;
                if routing.record {
                    recordable_only(&mut rewritten);
                }
                Some(rewritten)
            }
            None => None,
        };
        let first = cfg.trunks.first().ok_or_else(no_trunk)?;
        let mut b = b_dialog(&routing, &cfg, first)?;
        let mut b_origin = Origin::new(u64::from(rand::random::<u32>()));
        let sdp = rewritten
            .as_ref()
            .map(|r| b_origin.render(r, cfg.advertise));
        let timer = (
            cfg.dialog_timers.session_expires.as_secs(),
            cfg.dialog_timers.min_se.as_secs(),
        );
        let b_invite = b_leg_invite(&mut b, invite, sdp.clone(), timer);
        let a_timer = as_uas(&invite.headers, &cfg.dialog_timers);
        let mut call = Call {
            // Config bounds these; an unbounded one never overflows.
            no_answer_at: now.checked_add(cfg.no_answer_timeout),
            cfg,
            ports,
            record: routing.record,
            phase: Phase::Calling,
            a,
            b,
            a_invite_txn: txn,
            a_invite: invite.clone(),
            b_invite: b_invite.clone(),
            b_trunk: 0,
            routing,
            a_origin: Origin::new(u64::from(rand::random::<u32>())),
            b_origin,
            a_sdp: None,
            b_sdp: sdp,
            b_invite_cseq: 1,
            b_422_retries: 0,
            delayed: rewritten.is_none(),
            b_ack_pending: None,
            a_timer,
            a_keep: None,
            b_keep: None,
            end_reason: None,
            relays: Vec::new(),
            acks: Vec::new(),
            b_provisional: false,
            b_rseq: None,
            cancel_deferred: false,
            ringing: false,
            a_final: None,
            outcome: None,
            pending_byes: Vec::new(),
            max_duration_at: None,
            guard_at: None,
            actions: VecDeque::new(),
        };
        if let Some(rewritten) = &rewritten {
            call.media(Leg::A, rewritten);
        }
        call.send(Leg::B, b_invite);
        Ok(call)
    }

    /// A request from the caller (CANCEL, BYE, re-INVITE, UPDATE, INFO,
    /// PRACK, OPTIONS, …), received through the server transaction `txn`:
    /// every response to it is an [`Action::Respond`] naming `txn`. (An
    /// ACK has no transaction: it goes to [`Call::handle_ack`].)
    pub fn handle_a_request(&mut self, now: Instant, txn: TxnId, request: Request) {
        self.handle_request(now, Leg::A, txn, request);
    }

    /// A response to a request we sent toward the caller.
    pub fn handle_a_response(&mut self, now: Instant, response: Response) {
        self.handle_response(now, Leg::A, response);
    }

    /// A request from the callee, in the B dialog, received through the
    /// server transaction `txn`.
    pub fn handle_b_request(&mut self, now: Instant, txn: TxnId, request: Request) {
        self.handle_request(now, Leg::B, txn, request);
    }

    /// An ACK from `leg` for a 2xx we sent there (initial or relayed). The
    /// driver stops the 2xx retransmission, and `Answered` was already
    /// emitted when the 2xx was relayed; with a delayed offer the caller's
    /// first ACK carries its answer, which the B-leg ACK carries on.
    pub fn handle_ack(&mut self, now: Instant, leg: Leg, ack: Request) {
        if leg == Leg::A {
            self.on_delayed_answer(now, &ack);
        }
    }

    /// A response to a request we sent toward the callee (including
    /// retransmitted 2xx to an INVITE, which we ACK again).
    pub fn handle_b_response(&mut self, now: Instant, response: Response) {
        self.handle_response(now, Leg::B, response);
    }

    /// One of our client transactions on `leg` timed out (Timer B/F), or a
    /// 2xx we sent on `leg` (method INVITE) was never ACKed.
    pub fn handle_transaction_timeout(&mut self, now: Instant, leg: Leg, method: Method) {
        match (self.phase, leg, method) {
            (Phase::Calling, Leg::B, Method::Invite) => {
                if self.fail_over(408) {
                    return;
                }
                self.answer_a_invite(408);
                self.outcome = Some(outcome(CallResult::Timeout, HangupSide::System));
                self.finish();
            }
            (Phase::Cancelling, Leg::B, Method::Invite | Method::Cancel) => self.cancel_done(),
            (Phase::Ending, _, Method::Bye) => self.bye_done(leg),
            (Phase::Confirmed, _, _) => self.confirmed_timeout(now, leg, method),
            _ => {}
        }
    }

    /// Fires our own timers (no answer, maximum duration, guards) if due.
    pub fn handle_timeout(&mut self, now: Instant) {
        let due = |at: Option<Instant>| at.is_some_and(|at| at <= now);
        if self.phase == Phase::Calling && due(self.no_answer_at) {
            self.no_answer_at = None;
            self.start_cancel(
                now,
                outcome(CallResult::NoAnswer, HangupSide::System),
                Some(480),
            );
        } else if self.phase == Phase::Confirmed && due(self.max_duration_at) {
            self.max_duration_at = None;
            self.hang_up(now, HangupSide::System);
        } else if self.phase == Phase::Confirmed {
            self.keepalive_fire(now);
        } else if due(self.guard_at) {
            self.guard_at = None;
            match self.phase {
                Phase::Cancelling => self.cancel_done(),
                Phase::Ending => self.finish(),
                _ => {}
            }
        }
    }

    /// The next thing the driver must do, if any.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When [`Call::handle_timeout`] must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let timers = match self.phase {
            Phase::Calling => [self.no_answer_at, None],
            Phase::Confirmed => [self.max_duration_at, self.keepalive_timeout()],
            Phase::Cancelling | Phase::Ending => [self.guard_at, None],
            Phase::Finished => [None, None],
        };
        timers.into_iter().flatten().min()
    }

    /// Whether the call is over and `Ended` was emitted.
    pub fn is_finished(&self) -> bool {
        self.phase == Phase::Finished
    }

    /// Why ansim ended the call itself, beyond a plain hang-up: a session
    /// that expired or whose refresh failed, a failed dialog probe, a
    /// delayed offer whose 2xx has no offer or whose ACK has no answer (the
    /// call record's `end_reason`).
    pub fn end_reason(&self) -> Option<&'static str> {
        self.end_reason
    }

    /// Call-ID of the caller's dialog.
    pub fn a_call_id(&self) -> &str {
        &self.a.call_id
    }

    /// Call-ID of the callee's dialog.
    pub fn b_call_id(&self) -> &str {
        &self.b.call_id
    }

    /// Which dialog of ours `leg` is: its Call-ID and our tag in it.
    /// Requests the other side sends in it carry our tag in `To`.
    pub fn dialog_id(&self, leg: Leg) -> DialogId {
        let d = match leg {
            Leg::A => &self.a,
            Leg::B => &self.b,
        };
        DialogId {
            call_id: d.call_id.clone(),
            local_tag: d.local_tag().to_owned(),
        }
    }

    fn handle_response(&mut self, now: Instant, leg: Leg, response: Response) {
        let Some((number, method)) = super::message::cseq(&response.headers) else {
            return;
        };
        let code = response.status_code.code();
        if leg == Leg::B && method == "INVITE" && number == self.b_invite_cseq {
            return self.on_invite_response(now, response);
        }
        if self.keepalive_response(now, leg, number, &response) {
            return;
        }
        if method == "BYE" && code >= 200 {
            self.bye_done(leg);
        } else {
            self.on_relay_response(now, leg, number, &method, response);
        }
    }

    fn handle_request(&mut self, now: Instant, leg: Leg, txn: TxnId, request: Request) {
        if request.method == Method::Ack {
            return self.handle_ack(now, leg, request);
        }
        if self.phase == Phase::Finished {
            self.reply(leg, txn, &request, 481);
            return;
        }
        match request.method {
            Method::Cancel if leg == Leg::A => self.on_cancel(now, txn, &request),
            // Only the caller's INVITE can be cancelled.
            Method::Cancel => self.reply(leg, txn, &request, 481),
            _ => self.on_dialog_request(now, leg, txn, request),
        }
    }

    // ---- shared helpers used by the other files ----

    pub(super) fn dialog(&mut self, leg: Leg) -> &mut Dialog {
        match leg {
            Leg::A => &mut self.a,
            Leg::B => &mut self.b,
        }
    }

    pub(super) fn send(&mut self, leg: Leg, request: Request) {
        self.actions.push_back(Action::Send { leg, request });
    }

    pub(super) fn respond(&mut self, leg: Leg, txn: TxnId, response: Response) {
        self.actions
            .push_back(Action::Respond { leg, txn, response });
    }

    pub(super) fn event(&mut self, event: CallEvent) {
        self.actions.push_back(Action::Event(event));
    }

    /// Answers `request` from `leg` (server transaction `txn`) with a
    /// bodiless `code`.
    pub(super) fn reply(&mut self, leg: Leg, txn: TxnId, request: &Request, code: u16) {
        let mut response = super::message::respond(request, code, None);
        if code == 405 {
            response.headers.push(Header::Allow(Allow::new(ALLOW)));
        }
        self.respond(leg, txn, response);
    }

    /// Emits `Media` for `leg` if its SDP named an address.
    pub(super) fn media(&mut self, leg: Leg, sdp: &Rewritten) {
        if let Some(remote) = sdp.remote {
            self.actions.push_back(Action::Media {
                leg,
                remote,
                direction: sdp.direction,
            });
        }
    }

    /// Rewrites an SDP body received on `from` for sending on the other
    /// leg, emitting `Media` for `from`.
    pub(super) fn cross_sdp(&mut self, from: Leg, sdp: &[u8]) -> Result<Vec<u8>, PeerError> {
        let to = from.other();
        let audio_port = match to {
            Leg::A => self.ports.a_side,
            Leg::B => self.ports.b_side,
        };
        let target = Target {
            address: self.cfg.advertise,
            audio_port,
        };
        let mut rewritten = rewrite(sdp, target)?;
        if self.record {
            recordable_only(&mut rewritten);
        }
        self.media(from, &rewritten);
        let origin = match to {
            Leg::A => &mut self.a_origin,
            Leg::B => &mut self.b_origin,
        };
        let body = origin.render(&rewritten, self.cfg.advertise);
        match to {
            Leg::A => self.a_sdp = Some(body.clone()),
            Leg::B => self.b_sdp = Some(body.clone()),
        }
        Ok(body)
    }

    /// Emits `Ended` (once) and stops everything.
    pub(super) fn finish(&mut self) {
        if self.phase == Phase::Finished {
            return;
        }
        self.phase = Phase::Finished;
        if let Some(reason) = self.end_reason {
            tracing::info!(reason, "call ended by ansim");
        }
        let outcome = self
            .outcome
            .unwrap_or(outcome(CallResult::Failed, HangupSide::System));
        self.event(CallEvent::Ended {
            result: outcome.result,
            hangup: outcome.hangup,
            status: self.a_final.unwrap_or(500),
        });
    }
}

pub(super) fn outcome(result: CallResult, hangup: HangupSide) -> Outcome {
    Outcome {
        result,
        hangup: Some(hangup),
    }
}

/// The caller's dialog as we, its UAS, see it.
pub(super) fn a_dialog(invite: &Request, cfg: &CallConfig) -> Result<Dialog, CallError> {
    let core = core_values(&invite.headers);
    let call_id = core.call_id.ok_or(PeerError::Header("Call-ID"))?;
    let from = core.from.ok_or(PeerError::Header("From"))?;
    let to = core.to.ok_or(PeerError::Header("To"))?;
    if tag_of(to).is_some() {
        return Err(PeerError::Header("To").into());
    }
    let (cseq, _) = core
        .cseq
        .and_then(parse_cseq)
        .ok_or(PeerError::Header("CSeq"))?;
    top_via(&invite.headers).ok_or(PeerError::Header("Via"))?;
    let trunk = cfg.trunks.first().ok_or_else(no_trunk)?;
    let fallback = uri(&format!("sip:{}", trunk.address))?;
    Ok(Dialog {
        call_id: call_id.to_owned(),
        local: format!("{to};tag={}", new_tag()),
        remote: from.to_owned(),
        local_cseq: 0,
        remote_cseq: Some(cseq),
        target: contact_uri(&invite.headers).and_then(|u| Uri::try_from(u.as_str()).ok()),
        fallback,
        routes: header_list(&invite.headers, "Record-Route"),
        local_sip: cfg.local_sip,
        transport: "UDP",
    })
}

/// The callee's dialog through `trunk`, before any response; numbers
/// written in the trunk's format.
pub(super) fn b_dialog(
    routing: &Routing,
    cfg: &CallConfig,
    trunk: &super::TrunkTarget,
) -> Result<Dialog, CallError> {
    let callee = format!(
        "sip:{}@{}",
        trunk.numbers.write(&routing.callee),
        trunk.address
    );
    Ok(Dialog {
        call_id: cfg.shard.new_call_id(),
        local: format!(
            "<sip:{}@{}>;tag={}",
            trunk.numbers.write(&routing.caller_id),
            cfg.domain,
            new_tag()
        ),
        remote: format!("<{callee}>"),
        local_cseq: 0,
        remote_cseq: None,
        target: None,
        fallback: uri(&callee)?,
        routes: Vec::new(),
        local_sip: cfg.local_sip,
        transport: super::trunks::via_transport(trunk.transport),
    })
}

fn no_trunk() -> CallError {
    CallError::Local("no trunk to send the B-leg to".into())
}

/// The B-leg INVITE: built from scratch, only whitelisted headers copied,
/// asking for a session timer of `secs` seconds with us refreshing (Min-SE
/// `min_se`); without SDP for a delayed offer.
pub(super) fn b_leg_invite(
    b: &mut Dialog,
    invite: &Request,
    sdp: Option<Vec<u8>>,
    (secs, min_se): (u64, u64),
) -> Request {
    let mut b_invite = b.request(Method::Invite);
    b_invite.headers.push(b.contact());
    b_invite.headers.push(Header::Allow(Allow::new(ALLOW)));
    uac_headers(&mut b_invite.headers, secs, min_se);
    copy_relayed(&invite.headers, &mut b_invite.headers);
    if let Some(sdp) = sdp {
        set_body(
            &mut b_invite.headers,
            &mut b_invite.body,
            "application/sdp",
            sdp,
        );
    }
    b_invite
}

fn uri(text: &str) -> Result<Uri, CallError> {
    // The text holds a real number: keep it out of the error.
    Uri::try_from(text)
        .map_err(|_| CallError::Local("cannot form a SIP URI from the configuration".into()))
}

/// A dialog of ours, as RFC 3261 §12 identifies it from our side: the
/// Call-ID and our local tag (unique to the dialog, so the remote tag is not
/// needed). Two callers reusing one Call-ID are two dialogs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DialogId {
    /// The dialog's Call-ID.
    pub call_id: String,
    /// Our tag in it.
    pub local_tag: String,
}

/// Narrows an SDP of a recorded call to what the recorder can store:
/// PCMU (0) and PCMA (8), plus comfort noise and telephone events. An SDP
/// offering neither PCMU nor PCMA is left as it is: the call goes on, and
/// its recording ends `failed` (`unsupported-codec`).
fn recordable_only(sdp: &mut Rewritten) {
    let narrowed = sdp.retain_formats(
        |pt, encoding| {
            matches!(pt, 0 | 8 | 13) || matches!(encoding, Some("telephone-event" | "cn"))
        },
        |pt| pt == 0 || pt == 8,
    );
    if !narrowed {
        tracing::info!("the SDP of a recorded call offers no codec the recorder can store");
    }
}
