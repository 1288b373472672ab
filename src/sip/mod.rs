//! SIP protocol core of ansim: parsing, framing, serialisation and
//! RFC 3261 §17 transactions (with the RFC 6026 corrections).
//!
//! # Design: sans-IO
//!
//! Nothing in this module touches a socket, a task runtime or the clock.
//! Like `quinn-proto`, every state machine is a plain value that is fed
//! inputs and then drained of outputs:
//!
//! * inputs: `handle_*` methods, each taking the current time
//!   `now: Instant` from the driver (`handle_response`, `handle_request`,
//!   `send_response`, `handle_timeout`, `handle_transport_error`);
//! * outputs: `poll_transmit()` (messages to send), `poll_event()`
//!   (what the transaction user must learn), `poll_timeout()` (the instant
//!   at which `handle_timeout` must next be called).
//!
//! A driver (the tokio part of ansim) owns sockets and timers. For each
//! datagram (or each message cut by [`StreamFramer`]) it calls
//! [`parse_datagram`]; on error it sends [`response_for_error`] if there is
//! one. It matches the message to a transaction by [`TransactionKey`],
//! calls the matching `handle_*`, then loops on `poll_transmit` (serialise
//! with [`to_bytes`] and send to the transaction's peer), `poll_event`
//! (hand to the B2BUA) and finally re-arms one timer at `poll_timeout`.
//! Because time is an input, every retransmission schedule is tested
//! deterministically with simulated `Instant`s, and the same code runs
//! over UDP, TCP and TLS (`reliable` switches the timers per RFC 3261).
//!
//! # rsip 0.4.0
//!
//! rsip is used for the message model only: [`parse_datagram`] cuts and
//! normalises the message itself (compact names, folding, LF line ends,
//! comma-joined Vias, Content-Length) and fills in rsip's types directly
//! ([`assemble`]; only the Request-URI goes through rsip's tokenizer), and the
//! transaction layer reads Via/CSeq/tags from raw header text
//! ([`headers`]) rather than rsip's typed headers (which fail on IPv6).
//!
//! # Errors
//!
//! [`ParseError`] and [`FramingError`] mean *the peer sent garbage*: answer
//! if possible, drop, maybe close the connection. [`LocalError`] means *we
//! failed*: the TU asked for something the state machine forbids, or gave a
//! message that cannot key a transaction — a bug to log loudly. [`Error`]
//! wraps both with [`Error::is_peer_fault`].

pub mod assemble;
pub mod build;
pub mod framing;
pub mod headers;
pub mod parse;
pub mod peek;
pub mod reply;
pub mod transaction;
pub mod uri;
pub mod wire;

pub use build::{MAGIC_COOKIE, ack_for_2xx, ack_for_non_2xx, new_branch, new_tag};
pub use framing::{FramingError, StreamFramer};
pub use parse::{ParseError, parse_datagram};
pub use reply::{ReplyHeaders, response_for_error, response_to};
pub use transaction::{
    ClientEvent, ClientState, ClientTransaction, KeyError, Linger, LingerAnswer, LingerTable,
    ServerEvent, ServerState, ServerTransaction, Timers, TransactionKey, Transmit, TwoXxEvent,
    TwoXxRetransmitter,
};
pub use wire::to_bytes;

/// A local failure: the transaction user (our code) asked for something
/// invalid. Never caused by peer input alone.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LocalError {
    /// The request cannot key a transaction (no Via, no CSeq, …).
    #[error("request cannot start a transaction: {0}")]
    Key(#[from] KeyError),
    /// ACK never creates a transaction (RFC 3261 §17).
    #[error("ACK does not create a transaction")]
    AckTransaction,
    /// The action is not allowed in the transaction's current state.
    #[error("cannot {action} in state {state}")]
    InvalidState {
        /// What was attempted.
        action: &'static str,
        /// The state at the time, as its `Debug` name.
        state: String,
    },
    /// A response with a status code outside 100–699.
    #[error("invalid status code {0}")]
    InvalidStatus(u16),
}

/// Any error of the SIP core, split by whose fault it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The peer sent an unparseable message.
    #[error("peer sent an invalid message: {0}")]
    Parse(#[from] ParseError),
    /// The peer broke stream framing; close the connection.
    #[error("peer broke stream framing: {0}")]
    Framing(#[from] FramingError),
    /// We failed.
    #[error("local error: {0}")]
    Local(#[from] LocalError),
}

impl Error {
    /// True if the peer caused this error (drop/answer), false if we did
    /// (log as a bug).
    pub fn is_peer_fault(&self) -> bool {
        !matches!(self, Self::Local(_))
    }
}
