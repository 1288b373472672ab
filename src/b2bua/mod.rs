//! The back-to-back user agent: one [`Call`] joins the caller's dialog
//! (A-leg, where ansim is the UAS) and the callee's dialog (B-leg, where
//! ansim is the UAC), relaying signalling between them while hiding each
//! side's identity and topology; one [`Switch`] holds every call of a
//! shard and everything between them and the wire; the [`Engine`] drives
//! a switch with sockets and timers.
//!
//! # Layering
//!
//! Three layers, the lower two sans-IO like [`crate::sip`] (inputs with
//! `now`, outputs drained with `poll_*`, no socket, task runtime or clock):
//!
//! * [`Call`] — one call. The switch feeds it the *transaction user*
//!   events (requests with their server transaction's [`TxnId`],
//!   responses, transaction timeouts) and drains [`Call::poll_action`],
//!   re-arming a timer at [`Call::poll_timeout`]. The call never
//!   retransmits requests or non-2xx responses and never reads a clock.
//!   It owns both dialogs (Call-ID, tags, CSeq, remote target, route set),
//!   builds every message, ACKs the callee's 2xx itself and rewrites SDP
//!   ([`crate::media::sdp`]). Every response it sends names the
//!   transaction it answers ([`Action::Respond`]).
//! * [`Switch`] — all calls of one shard: the server and client
//!   transaction tables, the dialog table, CANCEL matching, 2xx
//!   retransmission, route lookups asked of the driver, call records, the
//!   limits (`max_calls`, `max_transactions`) and one timer queue. It
//!   demultiplexes raw messages from flows, like quinn-proto's `Endpoint`,
//!   and says what to transmit where and what the driver must do
//!   ([`SwitchEvent`]). Its Call-IDs hash to its shard ([`shard_of`]).
//! * [`Engine`] (`driver.rs`) — the tokio driver, and the only file here
//!   that uses tokio: sockets, the sleep until [`Switch::poll_timeout`],
//!   spawned route lookups, the call-record writer, media relays and the
//!   port pool, the recorder and announcement, connection leases, metrics.
//!
//! An INVITE's path: transport → `Switch::handle_inbound` (parse, no
//! transaction or dialog matches, a server transaction is opened) →
//! `SwitchEvent::RouteLookup` → the engine looks the route up, starts a
//! relay on two port pairs → `Switch::handle_routed` → [`Call::new`]
//! queues the B-leg INVITE → a client transaction → `poll_transmit` to the
//! trunk. The callee's responses come back through `handle_inbound` to the
//! client transaction, the call, and as responses through the INVITE's
//! server transaction to the caller.
//!
//! # Hiding
//!
//! B-leg messages are built from scratch: fresh Call-ID, tags, branch and
//! Contact, `From` = the proxy number at our domain, and only a whitelist
//! of harmless headers is copied across (`Content-Type`,
//! `Content-Disposition`, `Info-Package`, `Recv-Info`, `Event`,
//! `Retry-After`). SDP origin/connection addresses and ports are ours.
//! The same holds for everything sent to the caller.
//!
//! # Choices
//!
//! * `Event(Answered)` is emitted when the callee's 2xx is relayed (the
//!   answer time of the call record), not when the caller ACKs it.
//! * `Event(Ringing)` is emitted once, at the first 180–189.
//! * A reliable provisional (`Require: 100rel`) from the callee is PRACKed
//!   by us on the B-leg and relayed to the caller unreliably.
//! * Delayed offer (an INVITE without SDP): the B-leg INVITE has no SDP,
//!   the callee's offer in its 2xx is rewritten into the caller's 2xx, and
//!   the B-leg ACK waits for the caller's ACK, whose answer it carries
//!   (`delayed_offer.rs`).
//! * Session timers (RFC 4028) are negotiated on each leg on its own and
//!   refreshed by us where we can be the refresher; a leg without one is
//!   probed with OPTIONS if configured (`session_timer.rs`). A failed
//!   refresh or probe hangs both legs up.
//! * `Ended` is emitted once, when nothing of the call is outstanding any
//!   more (e.g. after the BYE toward the other side was answered or timed
//!   out); then [`Call::is_finished`] is true.

mod announced;
mod call;
mod cdr;
mod delayed_offer;
mod dialog;
mod driver;
mod failover;
mod message;
mod midcall;
mod numbers;
mod session_timer;
mod setup;
mod shard;
mod switch;
#[doc(hidden)]
pub use switch::bench_support as bench;
mod trunks;

#[cfg(test)]
mod test_support;
#[cfg(test)]
mod tests_basic;
#[cfg(test)]
mod tests_delayed;
#[cfg(test)]
mod tests_hiding;
#[cfg(test)]
mod tests_midcall;
#[cfg(test)]
mod tests_timers;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

pub use crate::media::MediaDirection;
pub use crate::media::sdp::SdpError;
pub use announced::{AnnounceMode, AnnouncedCall, PLAYBACK_MARGIN};
pub use call::{Call, DialogId};
pub use driver::{AnnounceSettings, Engine, EngineParts, FallbackSettings, SipSettings};
pub use session_timer::DialogTimers;
pub(crate) use session_timer::{interval_too_brief, too_brief};
pub use shard::{Shard, SharedLoad, shard_of, shard_of_message};
pub use switch::{
    CallRef, CdrOp, Fallback, LookupId, RouteResult, Switch, SwitchConfig, SwitchEvent,
    SwitchStats, Transmit,
};
pub use trunks::{PROBE_TIMEOUT, TrunkPeer};

use crate::phone::E164;

/// Per-call configuration, from `[sip]`, `[trunk]` and `[media]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallConfig {
    /// Our SIP domain, used as the host of the B-leg `From`.
    pub domain: String,
    /// Our SIP address, written into Via and Contact.
    pub local_sip: SocketAddr,
    /// The trunks the B-leg tries, in order (at least one): it goes to the
    /// first, and on to the next on `503`, `408` or a transport error.
    pub trunks: Vec<TrunkTarget>,
    /// Our media address, written into every SDP we send.
    pub advertise: IpAddr,
    /// Longest a call may last after the answer before we hang up.
    pub max_duration: Duration,
    /// How long the callee may take to answer before we give up.
    pub no_answer_timeout: Duration,
    /// Session timers and the in-dialog probe, per leg.
    pub dialog_timers: DialogTimers,
    /// The shard of the switch that owns the call: the B-leg Call-ID is
    /// drawn to hash to it ([`Shard::new_call_id`]).
    pub shard: Shard,
}

/// A trunk a B-leg may go to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrunkTarget {
    /// The trunk's index in the switch's trunks (`[[trunks]]` order).
    pub index: usize,
    /// Where its requests go (Request-URI and To host).
    pub address: SocketAddr,
    /// How (the Via transport, and Contact's `transport=`).
    pub transport: crate::config::Transport,
    /// How it writes numbers (the B-leg's Request-URI, To and From users).
    pub numbers: crate::phone::NumberPlan,
}

/// Who the B-leg calls and as whom, decided by routing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routing {
    /// The callee's real number: B-leg Request-URI and To user.
    pub callee: E164,
    /// The number the callee sees: B-leg From user.
    pub caller_id: E164,
    /// Whether the call is recorded: then every SDP crossing legs offers
    /// only codecs the recorder can store (PCMU, PCMA; with comfort noise
    /// and telephone events), where the offer has one of them.
    pub record: bool,
}

/// Our relay ports for the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaPorts {
    /// Our RTP port offered to the caller.
    pub a_side: u16,
    /// Our RTP port offered to the callee.
    pub b_side: u16,
}

/// One side of the call: `A` the caller's dialog (we are its UAS), `B` the
/// callee's (we are its UAC); the same legs the relay carries media on.
pub use crate::media::Leg;

/// A server transaction, as the driver numbers them: handed to the call
/// with each request ([`Call::handle_a_request`]) and carried back in
/// [`Action::Respond`], so that a response finds its transaction without
/// the driver rebuilding a key from the response's headers (which cannot
/// work for every key, e.g. an RFC 2543 caller's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TxnId(pub u64);

/// Something the driver must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Answer a request received on `leg` through its server transaction.
    Respond {
        /// The leg the request came from.
        leg: Leg,
        /// The server transaction of the request answered.
        txn: TxnId,
        /// The response.
        response: rsip::Response,
    },
    /// Send a new request on `leg`: through a new client transaction,
    /// except ACK, which is sent bare. B-leg requests go to the trunk,
    /// A-leg requests to where the caller's INVITE came from.
    Send {
        /// The leg to send on.
        leg: Leg,
        /// The request.
        request: rsip::Request,
    },
    /// The remote party of `leg` announced where it wants media.
    Media {
        /// Whose SDP this came from.
        leg: Leg,
        /// Its RTP address (`0.0.0.0` for RFC 2543 hold).
        remote: SocketAddr,
        /// Its direction for the audio stream.
        direction: MediaDirection,
    },
    /// Play the out-of-session announcement to the caller now, encoded in
    /// `codec` (the one our SDP answer chose); only an
    /// [`AnnouncedCall`] asks for it.
    Play {
        /// PCMU or PCMA.
        codec: crate::media::g711::Codec,
    },
    /// A call-record milestone.
    Event(CallEvent),
}

/// Call-record milestones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallEvent {
    /// The callee is ringing (first 18x).
    Ringing,
    /// The callee answered.
    Answered,
    /// The call is over; emitted once.
    Ended {
        /// How it went.
        result: CallResult,
        /// Who hung up, when anyone did.
        hangup: Option<HangupSide>,
        /// The final status the caller got for its INVITE.
        status: u16,
    },
}

/// How a call went and who hung up: the call record's vocabulary.
pub use crate::store::{CallResult, HangupSide};

/// Why a call could not be created from an INVITE.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The caller sent something we cannot relay (the peer's fault).
    #[error("cannot relay the caller's INVITE: {0}")]
    Peer(#[from] PeerError),
    /// We failed (configuration or a bug).
    #[error("local failure: {0}")]
    Local(String),
}

impl CallError {
    /// The status to answer the INVITE with.
    pub fn status(&self) -> u16 {
        match self {
            Self::Peer(PeerError::Sdp(_) | PeerError::NoOffer) => 488,
            Self::Peer(_) => 400,
            Self::Local(_) => 500,
        }
    }
}

/// Peer garbage in the caller's INVITE.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerError {
    /// Not an INVITE.
    #[error("not an INVITE")]
    NotInvite,
    /// A dialog header (From, To, Call-ID, CSeq, Via) is missing or bad.
    #[error("missing or malformed {0}")]
    Header(&'static str),
    /// The body is not SDP (an offerless INVITE is a delayed offer).
    #[error("no SDP offer")]
    NoOffer,
    /// The SDP offer cannot be read.
    #[error("bad SDP: {0}")]
    Sdp(#[from] SdpError),
}
