//! [`AnnouncedCall`]: a caller no open session routes hears the
//! out-of-session announcement from ansim itself (`[routing]
//! out_of_session = "announce"`). One leg, ansim its UAS; no B-leg at
//! all.
//!
//! ```text
//! answer:  INVITE → 200 (SDP: our A-side port) … ACK → play → BYE → 200
//! early:   INVITE → 183 (SDP) → play → final status (404) … ACK (absorbed)
//! ```
//!
//! Sans-IO like [`super::Call`]: the switch feeds it requests with their
//! server transaction, responses, transaction timeouts and its timer, and
//! drains [`AnnouncedCall::poll_action`]. It never plays anything itself:
//! [`Action::Play`] asks the driver to start the relay's playback, and the
//! call's own timer (the announcement's length and a margin) ends it, so
//! playback is bounded by the WAV whatever the network does. The switch
//! retransmits the 2xx (Timer G) and reports a 2xx never ACKed (Timer H)
//! as a transaction timeout: the call then sends BYE.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use rsip::{Header, Method, Request, Response};

use super::call::{GUARD, Outcome, a_dialog, outcome};
use super::dialog::Dialog;
use super::message::{Body, body_of, respond, set_body};
use super::{Action, CallConfig, CallError, CallEvent, CallResult, HangupSide, PeerError, TxnId};
use crate::media::g711::Codec;
use crate::media::sdp::{Origin, Target, rewrite};

/// Time after the announcement's last packet is due before the call ends
/// it: the relay's worker starts the playback a little after the switch
/// asks, and the last packet must leave before the media is closed.
pub const PLAYBACK_MARGIN: Duration = Duration::from_millis(100);

/// How the out-of-session announcement is played (`out_of_session_announce`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnnounceMode {
    /// `"early"`: 183 with SDP, the announcement as early media, then
    /// the final status (`unknown_caller_status`); else (`"answer"`) 200,
    /// the announcement, BYE.
    pub early: bool,
    /// How long the announcement plays (its whole packets of 20 ms).
    pub length: Duration,
}

/// Where the call is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Answered (200 sent), waiting for the ACK.
    AwaitingAck,
    /// The announcement is playing until `end_at`.
    Playing,
    /// Our BYE is out.
    Ending,
    /// Over; `Ended` was emitted.
    Finished,
}

/// A caller hearing the out-of-session announcement; see the module docs.
#[derive(Debug)]
pub struct AnnouncedCall {
    /// How it plays, and for how long.
    mode: AnnounceMode,
    /// The final status after early media.
    status: u16,
    /// The caller's dialog (our tag, its tag, our CSeq for the BYE).
    a: Dialog,
    /// The caller's INVITE and its server transaction, answered by us.
    invite: Request,
    invite_txn: TxnId,
    /// The codec of our SDP answer: what the announcement is encoded in.
    codec: Codec,
    phase: Phase,
    /// When the announcement is over (Playing).
    end_at: Option<Instant>,
    /// When we stop waiting for the answer to our BYE (Ending).
    guard_at: Option<Instant>,
    /// The final status the INVITE got.
    a_final: Option<u16>,
    /// How it ended, once decided.
    outcome: Option<Outcome>,
    actions: VecDeque<Action>,
}

impl AnnouncedCall {
    /// Answers the caller's INVITE (server transaction `txn`) on our RTP
    /// port `port`: 200 or 183 with an SDP answer of one codec (PCMU if
    /// offered, else PCMA), and `Media` for the caller's address; with
    /// early media, `status` is the final response after the playback.
    ///
    /// Errors: [`CallError::Peer`] if the INVITE offers neither PCMU nor
    /// PCMA, or no SDP, or is malformed (answer with
    /// [`CallError::status`]).
    pub fn new(
        now: Instant,
        txn: TxnId,
        invite: &Request,
        port: u16,
        cfg: &CallConfig,
        mode: AnnounceMode,
        status: u16,
    ) -> Result<AnnouncedCall, CallError> {
        if invite.method != Method::Invite {
            return Err(PeerError::NotInvite.into());
        }
        let a = a_dialog(invite, cfg)?;
        let Body::Sdp(offer) = body_of(&invite.headers, &invite.body)? else {
            return Err(PeerError::NoOffer.into());
        };
        let target = Target {
            address: cfg.advertise,
            audio_port: port,
        };
        let mut answer = rewrite(&offer, target).map_err(PeerError::from)?;
        let codec = [Codec::Pcmu, Codec::Pcma]
            .into_iter()
            .find(|c| {
                let pt = c.payload_type();
                answer.retain_formats(|p, _| p == pt, |p| p == pt)
            })
            .ok_or(PeerError::NoOffer)?;
        let body = Origin::new(u64::from(rand::random::<u32>())).render(&answer, cfg.advertise);
        let mut call = AnnouncedCall {
            mode,
            status,
            a,
            invite: invite.clone(),
            invite_txn: txn,
            codec,
            phase: Phase::AwaitingAck,
            end_at: None,
            guard_at: None,
            a_final: None,
            outcome: None,
            actions: VecDeque::new(),
        };
        if let Some(remote) = answer.remote {
            let direction = answer.direction;
            let leg = super::Leg::A;
            call.actions.push_back(Action::Media {
                leg,
                remote,
                direction,
            });
        }
        let code = if mode.early { 183 } else { 200 };
        let mut response = call.dialog_response(code);
        set_body(
            &mut response.headers,
            &mut response.body,
            "application/sdp",
            body,
        );
        call.respond(txn, response);
        if mode.early {
            call.play(now);
        } else {
            call.a_final = Some(200);
            call.actions.push_back(Action::Event(CallEvent::Answered));
        }
        Ok(call)
    }

    /// A request from the caller through server transaction `txn` (an ACK
    /// has none: [`AnnouncedCall::handle_ack`]).
    pub fn handle_request(&mut self, now: Instant, txn: TxnId, request: Request) {
        if request.method == Method::Ack {
            return self.handle_ack(now);
        }
        if self.phase == Phase::Finished {
            return self.reply(txn, &request, 481);
        }
        match request.method {
            Method::Cancel => self.on_cancel(txn, &request),
            Method::Bye => self.on_bye(txn, &request),
            Method::Options => self.reply(txn, &request, 200),
            // No re-negotiation of a one-way announcement.
            Method::Invite | Method::Update => self.reply(txn, &request, 488),
            _ => self.reply(txn, &request, 405),
        }
    }

    /// The ACK for our 200: the announcement starts.
    pub fn handle_ack(&mut self, now: Instant) {
        if self.phase == Phase::AwaitingAck {
            self.play(now);
        }
    }

    /// A response to our BYE.
    pub fn handle_response(&mut self, response: &Response) {
        let bye = super::message::cseq(&response.headers).is_some_and(|(_, m)| m == "BYE");
        if bye && response.status_code.code() >= 200 && self.phase == Phase::Ending {
            self.finish();
        }
    }

    /// Our BYE got no answer (Timer F), or our 200 was never ACKed (Timer
    /// H, `method` INVITE): the call is hung up.
    pub fn handle_transaction_timeout(&mut self, now: Instant, method: Method) {
        match (self.phase, method) {
            (Phase::AwaitingAck, Method::Invite) => {
                tracing::info!("the caller never ACKed the announcement's 200: BYE");
                self.bye(now, outcome(CallResult::Failed, HangupSide::System));
            }
            (Phase::Ending, Method::Bye) => self.finish(),
            _ => {}
        }
    }

    /// Fires the call's timer: the announcement is over, or our BYE's
    /// guard ran out.
    pub fn handle_timeout(&mut self, now: Instant) {
        let due = |at: Option<Instant>| at.is_some_and(|at| at <= now);
        match self.phase {
            Phase::Playing if due(self.end_at) => self.played(now),
            Phase::Ending if due(self.guard_at) => self.finish(),
            _ => {}
        }
    }

    /// When [`AnnouncedCall::handle_timeout`] must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.phase {
            Phase::Playing => self.end_at,
            Phase::Ending => self.guard_at,
            Phase::AwaitingAck | Phase::Finished => None,
        }
    }

    /// The next thing the switch must do.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// Whether the call is over and `Ended` was emitted.
    pub fn is_finished(&self) -> bool {
        self.phase == Phase::Finished
    }

    /// The caller's dialog: its Call-ID and our tag.
    pub fn dialog_id(&self) -> super::DialogId {
        super::DialogId {
            call_id: self.a.call_id.clone(),
            local_tag: self.a.local_tag().to_owned(),
        }
    }

    /// Starts the playback, to end after the announcement's length.
    fn play(&mut self, now: Instant) {
        self.phase = Phase::Playing;
        self.end_at = now.checked_add(self.mode.length + PLAYBACK_MARGIN);
        let codec = self.codec;
        self.actions.push_back(Action::Play { codec });
    }

    /// The announcement is over: BYE (answered) or the final status
    /// (early media).
    fn played(&mut self, now: Instant) {
        self.end_at = None;
        if self.mode.early {
            self.answer_invite(self.status);
            self.outcome = Some(outcome(CallResult::Rejected, HangupSide::System));
            self.finish();
        } else {
            self.bye(now, outcome(CallResult::Answered, HangupSide::System));
        }
    }

    fn on_cancel(&mut self, txn: TxnId, cancel: &Request) {
        if !self.a.matches(cancel, true) {
            return self.reply(txn, cancel, 481);
        }
        self.reply(txn, cancel, 200);
        // A CANCEL after our 200 changes nothing (RFC 3261 §9.2).
        if self.a_final.is_none() {
            self.answer_invite(487);
            self.outcome = Some(outcome(CallResult::Cancelled, HangupSide::Caller));
            self.finish();
        }
    }

    fn on_bye(&mut self, txn: TxnId, bye: &Request) {
        let cseq = super::message::cseq(&bye.headers).map(|(n, _)| n);
        if !self.a.matches(bye, false) || cseq.is_none() {
            return self.reply(txn, bye, 481);
        }
        self.reply(txn, bye, 200);
        if self.phase == Phase::Ending {
            // Our BYE and theirs crossed.
            return self.finish();
        }
        let result = if self.a_final == Some(200) {
            CallResult::Answered
        } else {
            CallResult::Cancelled
        };
        self.answer_invite(487);
        self.outcome = Some(outcome(result, HangupSide::Caller));
        self.finish();
    }

    fn bye(&mut self, now: Instant, why: Outcome) {
        self.outcome = Some(why);
        let bye = self.a.request(Method::Bye);
        self.actions.push_back(Action::Send {
            leg: super::Leg::A,
            request: bye,
        });
        self.phase = Phase::Ending;
        self.guard_at = now.checked_add(GUARD);
    }

    /// A final response to the INVITE, unless it has one.
    fn answer_invite(&mut self, code: u16) {
        if self.a_final.is_some() {
            return;
        }
        let response = respond(&self.invite, code, Some(self.a.local_tag()));
        self.respond(self.invite_txn, response);
        self.a_final = Some(code);
    }

    /// A dialog-creating response: our tag and Contact, the caller's
    /// Record-Route copied back (RFC 3261 §12.1.1).
    fn dialog_response(&self, code: u16) -> Response {
        let mut out = respond(&self.invite, code, Some(self.a.local_tag()));
        for header in self.invite.headers.iter() {
            if matches!(header, Header::RecordRoute(_)) {
                out.headers.push(header.clone());
            }
        }
        out.headers.push(self.a.contact());
        out
    }

    fn reply(&mut self, txn: TxnId, request: &Request, code: u16) {
        let response = respond(request, code, Some(self.a.local_tag()));
        self.respond(txn, response);
    }

    fn respond(&mut self, txn: TxnId, response: Response) {
        let leg = super::Leg::A;
        self.actions
            .push_back(Action::Respond { leg, txn, response });
    }

    /// Emits `Ended` (once).
    fn finish(&mut self) {
        if self.phase == Phase::Finished {
            return;
        }
        self.phase = Phase::Finished;
        self.end_at = None;
        self.guard_at = None;
        let o = self
            .outcome
            .unwrap_or(outcome(CallResult::Failed, HangupSide::System));
        self.actions.push_back(Action::Event(CallEvent::Ended {
            result: o.result,
            hangup: o.hangup,
            status: self.a_final.unwrap_or(500),
        }));
    }
}
