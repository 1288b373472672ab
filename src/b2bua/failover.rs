//! Moving a B-leg INVITE to the next trunk when its trunk fails it.
//!
//! A `503`, a `408` or a transport error (reported as a transaction
//! timeout) to the B-leg INVITE, while the call is still being set up,
//! sends the INVITE to the next trunk of [`super::CallConfig::trunks`],
//! like a proxy's serial forking: the same Call-ID, From tag and SDP (none
//! for a delayed offer), a new branch, and the Request-URI and To of the next trunk,
//! its numbers in that trunk's format. The caller hears nothing of it
//! (a `183` relayed from the first trunk stays the last it heard). When
//! no trunk is left, the failure goes to the caller as before.

use super::call::{Call, Phase, b_dialog, b_leg_invite};

impl Call {
    /// On a failure `code` of the B-leg INVITE: sends it to the next trunk
    /// and returns true, or returns false when there is none (or the
    /// code or phase does not call for it).
    pub(super) fn fail_over(&mut self, code: u16) -> bool {
        if self.phase != Phase::Calling || !matches!(code, 408 | 503) {
            return false;
        }
        let next = self.b_trunk + 1;
        let Some(trunk) = self.cfg.trunks.get(next).cloned() else {
            return false;
        };
        let Ok(mut b) = b_dialog(&self.routing, &self.cfg, &trunk) else {
            return false;
        };
        // The same dialog identity as the first attempt: the switch knows
        // the call by it.
        b.call_id = self.b.call_id.clone();
        b.local = self.b.local.clone();
        // A delayed offer stays one: the next trunk gets no body either
        // (never an empty `application/sdp`).
        let sdp = if self.delayed {
            None
        } else {
            self.b_sdp.clone()
        };
        let timers = &self.cfg.dialog_timers;
        let timer = (timers.session_expires.as_secs(), timers.min_se.as_secs());
        let invite = b_leg_invite(&mut b, &self.a_invite, sdp, timer);
        tracing::info!(
            code,
            trunk = trunk.index,
            "B-leg INVITE failed: trying the next trunk"
        );
        self.b = b;
        self.b_trunk = next;
        self.b_invite_cseq = self.b.local_cseq;
        self.b_422_retries = 0;
        self.b_invite = invite.clone();
        self.b_provisional = false;
        self.b_rseq = None;
        self.send(super::Leg::B, invite);
        true
    }

    /// The index (in the switch's trunks) of the trunk the B-leg goes to.
    pub fn b_trunk(&self) -> Option<usize> {
        self.cfg.trunks.get(self.b_trunk).map(|t| t.index)
    }
}
