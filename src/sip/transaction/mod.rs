//! RFC 3261 §17 transactions (updated by RFC 6026) as sans-IO state
//! machines, plus the keys that match messages to them.
//!
//! * [`ClientTransaction`]: INVITE (Calling/Proceeding/Completed/Terminated,
//!   timers A, B, D; ACKs non-2xx itself) and non-INVITE
//!   (Trying/Proceeding/Completed/Terminated, timers E, F, K). A 2xx to an
//!   INVITE is passed up and terminates the transaction (RFC 3261
//!   §17.1.1.2); ACKing 2xx and absorbing 2xx retransmissions is the dialog
//!   layer's job ([`crate::sip::ack_for_2xx`] builds the ACK).
//! * [`ServerTransaction`]: INVITE (Proceeding/Completed/Confirmed plus
//!   RFC 6026 Accepted, timers G, H, I, L; automatic `100 Trying`) and
//!   non-INVITE (Trying/Proceeding/Completed, timer J).
//! * [`TwoXxRetransmitter`]: the UAS core's 2xx retransmission until ACK
//!   (RFC 3261 §13.3.1.4), which the B2BUA runs next to an Accepted server
//!   transaction.
//!
//! * [`LingerTable`]: transactions that only wait out a timer (J, L, I,
//!   K, D) to absorb retransmissions, reduced to a [`Linger`] (a deadline
//!   and the stored bytes to re-send, if any) and kept outside the count
//!   of live transactions, with a bound of their own.
//!
//! There is no table of live transactions here: the driver keeps a map
//! from [`TransactionKey`] to transaction, and moves a transaction to its
//! [`LingerTable`] once [`ServerTransaction::linger`] or
//! [`ClientTransaction::linger`] says it may.
//!
//! # Routing rules for the driver
//!
//! * A request whose [`TransactionKey::server`] matches a live server
//!   transaction goes to its `handle_request` (retransmissions, and the
//!   ACK for a non-2xx, which shares the INVITE's branch). Any other
//!   request except ACK creates a new [`ServerTransaction`] and goes to the
//!   TU. An unmatched ACK is the ACK for a 2xx (new branch): it goes to
//!   the dialog layer, which stops its [`TwoXxRetransmitter`].
//! * A response goes to the client transaction with the same
//!   [`TransactionKey::from_response`]. An unmatched 2xx to an INVITE is a
//!   retransmission (or a forked 2xx) after the client transaction
//!   terminated: the dialog layer re-sends its ACK for it.
//! * CANCEL is its own non-INVITE server transaction;
//!   [`TransactionKey::cancel_target`] finds the INVITE it cancels. If that
//!   INVITE was already answered with a final response (e.g. the CANCEL/200
//!   race: 200 sent, then CANCEL arrives), the INVITE transaction is left
//!   untouched: the B2BUA answers the CANCEL with `200` and sends no `487`
//!   (RFC 3261 §9.2). Only while the INVITE is still Proceeding does the
//!   B2BUA answer the CANCEL `200` and then the INVITE `487`.
//! * An INVITE client transaction in Proceeding runs no timer (Timer B
//!   stops at the first provisional, RFC 3261 §17.1.1.2): the B2BUA must
//!   run its own no-answer timer and CANCEL.

mod client;
mod linger;
mod server;
mod timers;
mod two_xx;

pub use client::{ClientEvent, ClientState, ClientTransaction};
pub use linger::{Linger, LingerAnswer, LingerTable};
pub use server::{ServerEvent, ServerState, ServerTransaction};
pub use timers::Timers;
pub use two_xx::{TwoXxEvent, TwoXxRetransmitter};

use rsip::{Method, Request, Response, SipMessage};

use super::build::MAGIC_COOKIE;
use super::headers::{ViaInfo, core_values, parse_cseq, tag_of, top_via};

/// A message a transaction wants sent to its peer.
///
/// The transaction does not know addresses: the driver sends it to the
/// transaction's remote (client: the resolved next hop; server: the
/// address from the top Via / the connection the request came on).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// The message to send.
    pub message: SipMessage,
}

impl Transmit {
    /// Serialised with a correct Content-Length.
    pub fn to_bytes(&self) -> Vec<u8> {
        super::wire::to_bytes(&self.message)
    }
}

/// Why a message cannot key a transaction.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// No (parseable) Via header.
    #[error("missing or malformed Via")]
    Via,
    /// The top Via has no branch (needed for client-side matching).
    #[error("missing branch")]
    Branch,
    /// No (parseable) CSeq.
    #[error("missing or malformed CSeq")]
    CSeq,
    /// Missing Call-ID or From (needed for RFC 2543 matching).
    #[error("missing Call-ID or From")]
    Dialog,
}

/// What matches a message to a transaction.
///
/// ACK maps to the INVITE it acknowledges; CANCEL is a transaction of its
/// own ([`TransactionKey::cancel_target`] finds the INVITE it cancels).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TransactionKey {
    /// Server side, RFC 3261 §17.2.3: top-Via branch (with magic cookie),
    /// sent-by (lower-cased) and method (ACK counted as INVITE).
    Server {
        /// Branch parameter, compared exactly.
        branch: String,
        /// `host[:port]` of the top Via, lower-cased.
        sent_by: String,
        /// Request method.
        method: String,
    },
    /// Server side for RFC 2543 peers (branch without magic cookie).
    /// Simplified from §17.2.3: Request-URI, From tag, Call-ID, CSeq
    /// number, method and top Via; the To tag is left out so an ACK to a
    /// non-2xx still matches its INVITE.
    Legacy {
        /// Request-URI as printed by rsip.
        request_uri: String,
        /// From tag (empty if absent).
        from_tag: String,
        /// Call-ID.
        call_id: String,
        /// CSeq number.
        cseq: u32,
        /// Request method (ACK counted as INVITE).
        method: String,
        /// Raw top Via value.
        via: String,
    },
    /// Client side, RFC 3261 §17.1.3: branch of the top Via and CSeq method.
    Client {
        /// Branch parameter.
        branch: String,
        /// CSeq method.
        method: String,
    },
}

fn key_method(method: &Method) -> String {
    match method {
        Method::Ack => Method::Invite.to_string(),
        other => other.to_string(),
    }
}

impl TransactionKey {
    /// Key of a received request, for server transactions (§17.2.3).
    pub fn server(request: &Request) -> Result<Self, KeyError> {
        let via_raw = top_via(&request.headers).ok_or(KeyError::Via)?;
        let via = ViaInfo::parse(via_raw).ok_or(KeyError::Via)?;
        let method = key_method(&request.method);
        match via.branch().filter(|b| b.starts_with(MAGIC_COOKIE)) {
            Some(branch) => Ok(Self::Server {
                branch: branch.to_owned(),
                sent_by: via.sent_by.to_ascii_lowercase(),
                method,
            }),
            None => Self::legacy(request, via_raw, method),
        }
    }

    fn legacy(request: &Request, via: &str, method: String) -> Result<Self, KeyError> {
        let core = core_values(&request.headers);
        let (cseq, _) = core.cseq.and_then(parse_cseq).ok_or(KeyError::CSeq)?;
        let (Some(call_id), Some(from)) = (core.call_id, core.from) else {
            return Err(KeyError::Dialog);
        };
        Ok(Self::Legacy {
            request_uri: request.uri.to_string(),
            from_tag: tag_of(from).unwrap_or_default().to_owned(),
            call_id: call_id.to_owned(),
            cseq,
            method,
            via: via.to_owned(),
        })
    }

    /// Key of a request we send, for client transactions.
    pub fn client(request: &Request) -> Result<Self, KeyError> {
        let branch = top_branch(&request.headers)?;
        Ok(Self::Client {
            branch,
            method: request.method.to_string(),
        })
    }

    /// Key of a received response, matching a client transaction (§17.1.3).
    pub fn from_response(response: &Response) -> Result<Self, KeyError> {
        let branch = top_branch(&response.headers)?;
        let cseq = core_values(&response.headers).cseq;
        let (_, method) = cseq.and_then(parse_cseq).ok_or(KeyError::CSeq)?;
        Ok(Self::Client {
            branch,
            method: method.to_owned(),
        })
    }

    /// For the key of a CANCEL, the key of the INVITE server transaction it
    /// cancels (RFC 3261 §9.2); `None` for any other key.
    pub fn cancel_target(&self) -> Option<Self> {
        let mut target = self.clone();
        let method = match &mut target {
            Self::Server { method, .. } | Self::Legacy { method, .. } => method,
            Self::Client { .. } => return None,
        };
        if method != "CANCEL" {
            return None;
        }
        *method = Method::Invite.to_string();
        Some(target)
    }
}

fn top_branch(headers: &rsip::Headers) -> Result<String, KeyError> {
    let via = top_via(headers)
        .and_then(ViaInfo::parse)
        .ok_or(KeyError::Via)?;
    via.branch().map(str::to_owned).ok_or(KeyError::Branch)
}

/// Whether `code` is a provisional (1xx) status.
pub(crate) fn is_provisional(code: u16) -> bool {
    (100..200).contains(&code)
}

/// Whether `code` is a success (2xx) status.
pub(crate) fn is_success(code: u16) -> bool {
    (200..300).contains(&code)
}

#[cfg(test)]
pub(crate) mod test_support;

#[cfg(test)]
mod key_tests;
