//! The switch's side of the trunks: keep-alive probes on the timer queue,
//! their answers, and transport errors toward a trunk.

use std::time::Instant;

use rsip::Response;

use super::timers::Timer;
use super::{Switch, Transmit};
use crate::b2bua::trunks::call_id_of;
use crate::clock::Timestamp;
use crate::transport::Flow;

impl Switch {
    /// Starts the trunks' OPTIONS keep-alives: the first probes go out at
    /// `now` (call [`Switch::handle_timeout`] at [`Switch::poll_timeout`]).
    pub fn start_keepalives(&mut self, now: Instant) {
        self.trunks.start(now);
        self.arm_trunks();
    }

    /// The transports could not reach trunk `trunk` (its connection could
    /// not be opened): every client transaction toward it fails at once
    /// (a B-leg INVITE moves to the next trunk) and the trunk is down.
    pub fn handle_trunk_failure(&mut self, now: Instant, wall: Timestamp, trunk: usize) {
        self.wall = wall;
        self.trunks.transport_failed(trunk);
        let failed: Vec<_> = self
            .clients
            .iter()
            .filter(|(_, e)| matches!(e.flow, Flow::Trunk { trunk: t, .. } if t == trunk))
            .map(|(id, _)| *id)
            .collect();
        for id in failed {
            if let Some(e) = self.clients.get_mut(&id) {
                e.txn.handle_transport_error(now);
            }
            self.flush_client(now, id);
        }
        self.drain_work(now);
    }

    /// Each trunk's name and whether it is up, in priority order.
    pub fn trunk_states(&self) -> Vec<(String, bool)> {
        self.trunks
            .states()
            .map(|(name, up)| (name.to_owned(), up))
            .collect()
    }

    /// The keep-alive timer: probes timed out and probes due.
    pub(super) fn trunks_timeout(&mut self, now: Instant) {
        for probe in self.trunks.handle_timeout(now) {
            if let Some(flow) = self.trunk_flow(probe.trunk) {
                let bytes = probe.bytes;
                self.transmits.push_back(Transmit { flow, bytes });
            }
        }
        self.arm_trunks();
    }

    /// Whether `resp` answers a keep-alive probe (then it is used up).
    pub(super) fn probe_answered(&mut self, resp: &Response) -> bool {
        let Some(call_id) = call_id_of(&resp.headers) else {
            return false;
        };
        let code = resp.status_code.code();
        let ours = self.trunks.on_response(call_id, code);
        if ours {
            self.arm_trunks();
        }
        ours
    }

    fn arm_trunks(&mut self) {
        self.timers.set(Timer::Trunks, self.trunks.poll_timeout());
    }
}
