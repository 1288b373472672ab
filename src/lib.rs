//! # ansim — a secure call relay
//!
//! Customers and tradespeople ("masters") on a marketplace call each other
//! through virtual **safe numbers**, so neither learns the other's real
//! number. ansim sits in the middle as a SIP back-to-back user agent and RTP
//! relay: it maps safe numbers to real ones, records every call encrypted
//! under a key of its own, lets a few support staff listen when a dispute
//! needs it, and destroys keys when retention ends.
//!
//! ## How the crate is laid out
//!
//! | module | responsibility |
//! | --- | --- |
//! | [`config`] | TOML + environment → validated, typed configuration |
//! | [`phone`] | E.164 numbers; masked by default wherever they are printed |
//! | [`clock`] | injectable time, so rules are tested without sleeping |
//! | [`store`] | the only module with SQL: SQLite and PostgreSQL via sqlx |
//! | [`pool`] | the number pool's rules (which safe number, quarantine), pure; `store` and `routing` use them |
//! | [`routing`] | sessions, the number pool, quarantine, `route()` for INVITEs |
//! | [`sip`] | SIP parsing, framing and RFC 3261 transactions, sans-IO |
//! | [`transport`] | SIP over UDP and TCP sockets |
//! | [`b2bua`] | the per-call B2BUA state machine, the sans-IO switch of all calls, and the tokio engine driving it |
//! | [`media`] | RTP port pool, relay with latching, SDP rewriting |
//! | [`keys`] | master key, epoch KEKs in a key store apart from the database, DEKs |
//! | [`recording`] | the recorder, the CREC encrypted file format, export to WAV |
//! | [`audit`] | the hash-chained audit log, appended in the transaction of each change |
//! | [`retention`] | the sweeper (erasing expired recordings, destroying spent epoch keys), legal holds, early erasure |
//! | [`api`] | the HTTP API (axum), problem documents, auth |
//! | [`server`] | `ansim serve`: wires the parts together, graceful shutdown |
//! | [`fd_limit`] | file descriptors the configuration needs, raised at start-up |
//! | [`cli`] | the `ansim` command line |
//!
//! ## Design rules
//!
//! - Protocol and business logic never touch a socket or a clock: they take
//!   inputs and `now` and return what to do. Thin drivers own the I/O.
//! - One error enum per module; errors separate "the peer sent garbage"
//!   (an HTTP 4xx problem, a SIP 4xx) from "we failed" (5xx, logged).
//! - Real phone numbers are personal data: [`phone::E164`] prints masked,
//!   and the log writer masks any digit run that slipped through.

pub mod api;
pub mod audit;
pub mod b2bua;
pub mod cli;
pub mod clock;
pub mod config;
pub mod duration;
pub mod fd_limit;
pub mod keys;
pub mod logging;
pub mod media;
pub mod metrics;
pub mod phone;
pub mod pool;
pub mod recording;
pub mod retention;
pub mod routing;
pub mod server;
pub mod sip;
pub mod store;
pub mod transport;
pub mod webhooks;
