//! The configuration as written: plain strings, numbers and bools, with the
//! development defaults. [`super::validate`] turns it into typed values.
//!
//! Every struct is `deny_unknown_fields`; the schema check in `schema.rs`
//! runs first and gives the friendlier `unknown key 'x' in [section]` error.
//! A test there keeps the schema and these structs in step.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The whole file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawConfig {
    /// `[sip]`
    pub sip: RawSip,
    /// `[trunk]`: the one-trunk form (absent = the default trunk, unless
    /// `[[trunks]]` is given; both is an error).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trunk: Option<RawTrunk>,
    /// `[[trunks]]`: several trunks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trunks: Option<Vec<RawTrunk>>,
    /// `[media]`
    pub media: RawMedia,
    /// `[routing]`
    pub routing: RawRouting,
    /// `[store]`
    pub store: RawStore,
    /// `[keys]`
    pub keys: RawKeys,
    /// `[retention]`
    pub retention: RawRetention,
    /// `[api]`
    pub api: RawApi,
    /// `[limits]`
    pub limits: RawLimits,
    /// `[webhooks]`
    pub webhooks: super::webhooks::RawWebhooks,
    /// `[node]`
    pub node: super::node::RawNode,
}

impl Default for RawConfig {
    /// The development defaults, with the default `[trunk]` written out
    /// (a file without `[trunk]` or `[[trunks]]` gets it too).
    fn default() -> Self {
        Self {
            sip: RawSip::default(),
            trunk: Some(RawTrunk::default()),
            trunks: None,
            media: RawMedia::default(),
            routing: RawRouting::default(),
            store: RawStore::default(),
            keys: RawKeys::default(),
            retention: RawRetention::default(),
            api: RawApi::default(),
            limits: RawLimits::default(),
            webhooks: super::webhooks::RawWebhooks::default(),
            node: super::node::RawNode::default(),
        }
    }
}

/// `[sip]`: where we listen for SIP and under which domain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawSip {
    /// `"transport:ip:port"` strings.
    pub listen: Vec<String>,
    /// Our SIP domain.
    pub domain: String,
    /// How long a callee may ring before the call is given up (duration).
    pub no_answer_timeout: String,
    /// Longest answered call before both legs are hung up (duration).
    pub max_call_duration: String,
    /// 403s per second per source outside `[trunk] allow` (0 = never).
    pub outsider_replies_per_second: i64,
    /// Most SIP TCP/TLS connections open at once.
    pub max_tcp_connections: i64,
    /// A TCP/TLS connection with no message and no transaction or dialog
    /// for this long is closed (duration).
    pub tcp_idle_timeout: String,
    /// Largest SIP message (bytes): a UDP datagram, or what one TCP/TLS
    /// connection may buffer for one message.
    pub max_message_size: i64,
    /// RFC 4028 session interval we ask for and accept at most (duration).
    pub session_expires: String,
    /// Shortest session interval we accept, our Min-SE (duration).
    pub min_session_expires: String,
    /// In-dialog OPTIONS interval on a leg without a session timer
    /// (duration, "0s" = off).
    pub dialog_probe_interval: String,
    /// SIP switches side by side, each owning the calls whose Call-ID
    /// hashes to it (0 = one per core).
    pub shards: i64,
    /// After SIGTERM, how long calls in progress may finish while new
    /// calls and OPTIONS get 503 (duration, "0s" = end calls at once).
    pub drain_timeout: String,
    /// `[sip.tls]`, needed by `tls:` listen addresses.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<RawTls>,
}

impl Default for RawSip {
    fn default() -> Self {
        Self {
            listen: vec!["udp:0.0.0.0:5060".into(), "tcp:0.0.0.0:5060".into()],
            domain: "ansim.local".into(),
            no_answer_timeout: "60s".into(),
            max_call_duration: "4h".into(),
            outsider_replies_per_second: 2,
            max_tcp_connections: 1024,
            tcp_idle_timeout: "120s".into(),
            max_message_size: 65_535,
            session_expires: "1800s".into(),
            min_session_expires: "90s".into(),
            dialog_probe_interval: "0s".into(),
            shards: 1,
            drain_timeout: "0s".into(),
            tls: None,
        }
    }
}

/// `[sip.tls]` / `[api.tls]`: certificate and key files (both required when
/// the table is present; checked in validation to name the missing key).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawTls {
    /// PEM certificate chain path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert: Option<String>,
    /// PEM private key path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// `[trunk]` or one `[[trunks]]` entry: a carrier peer, where B-legs go
/// and who may call us.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawTrunk {
    /// Its name, in logs and `/metrics` (`""` = `trunk`; required in
    /// `[[trunks]]`).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// `ip:port` where B-leg INVITEs go.
    pub address: String,
    /// CIDRs or bare IPs allowed to send INVITEs.
    pub allow: Vec<String>,
    /// `udp`, `tcp` or `tls`: how B-legs reach it.
    pub transport: String,
    /// PEM CA file that verifies its certificate (`tls` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_ca: Option<String>,
    /// `e164` or `national`.
    pub number_format: String,
    /// Country code, digits (`"82"`); needed by `national`.
    pub country: String,
    /// Lower is tried first.
    pub priority: i64,
    /// OPTIONS probe interval (duration; `"0s"` = none).
    pub keepalive: String,
}

impl Default for RawTrunk {
    fn default() -> Self {
        Self {
            name: String::new(),
            address: "127.0.0.1:5080".into(),
            allow: vec!["127.0.0.1/32".into()],
            transport: "udp".into(),
            tls_ca: None,
            number_format: "e164".into(),
            country: String::new(),
            priority: 0,
            keepalive: "0s".into(),
        }
    }
}

/// `[media]`: RTP sockets and SDP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawMedia {
    /// IP the RTP sockets bind to.
    pub bind: String,
    /// IP written into our SDP.
    pub advertise: String,
    /// `"first-last"` port range.
    pub ports: String,
    /// WAV path, or `""` for none.
    pub announcement: String,
    /// `"sdp"` or `"learn"`: who may send media on a leg.
    pub source: String,
    /// With `source = "learn"`: how long after an offer/answer a leg
    /// latches its first source (duration).
    pub learn_window: String,
    /// Relay worker threads; 0 = one per available core.
    pub workers: i64,
    /// `"epoll"` or `"io_uring"`: the relay workers' I/O.
    pub io: String,
}

impl Default for RawMedia {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1".into(),
            advertise: "127.0.0.1".into(),
            ports: "20000-29999".into(),
            announcement: String::new(),
            source: "sdp".into(),
            learn_window: "10s".into(),
            workers: 0,
            io: "epoll".into(),
        }
    }
}

/// `[routing]`: call routing and session lifetimes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawRouting {
    /// SIP status for callers without a route.
    pub unknown_caller_status: i64,
    /// Duration string.
    pub quarantine: String,
    /// Duration string.
    pub default_ttl: String,
    /// Duration string.
    pub max_ttl: String,
    /// Duration string.
    pub route_cache_ttl: String,
    /// `"reject"`, `"announce"` or `"forward"`: calls no session routes.
    pub out_of_session: String,
    /// WAV path played to out-of-session callers, or `""` for none.
    pub out_of_session_announcement: String,
    /// `"answer"` or `"early"`: how an announce-mode call is played.
    pub out_of_session_announce: String,
    /// E.164 customer centre for `"forward"`, or `""`.
    pub fallback_number: String,
    /// Whether forwarded calls are recorded.
    pub fallback_record: bool,
}

impl Default for RawRouting {
    fn default() -> Self {
        Self {
            unknown_caller_status: 404,
            quarantine: "30d".into(),
            default_ttl: "7d".into(),
            max_ttl: "365d".into(),
            route_cache_ttl: "30s".into(),
            out_of_session: "reject".into(),
            out_of_session_announcement: String::new(),
            out_of_session_announce: "answer".into(),
            fallback_number: String::new(),
            fallback_record: true,
        }
    }
}

/// `[store]`: database and recordings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawStore {
    /// `sqlite:` or `postgres://` URL.
    pub database_url: String,
    /// `file://path` or `s3://bucket/prefix`.
    pub recordings: String,
    /// `[store.s3]`: the object store, when `recordings` is `s3://`.
    pub s3: RawS3,
}

impl Default for RawStore {
    fn default() -> Self {
        Self {
            database_url: "sqlite://data/ansim.db".into(),
            recordings: "file://data/recordings".into(),
            s3: RawS3::default(),
        }
    }
}

/// `[store.s3]`: where the bucket is and where recordings wait for it.
/// Credentials are never here (the AWS environment or profile files).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawS3 {
    /// Endpoint URL of an S3-compatible server; empty: AWS for `region`.
    pub endpoint: String,
    /// Region the requests are signed for; empty: the AWS chain's.
    pub region: String,
    /// Path-style URLs (`endpoint/bucket/key`) instead of virtual hosts.
    pub path_style: bool,
    /// Local directory of recordings being written or not yet uploaded.
    pub spool: String,
}

impl Default for RawS3 {
    fn default() -> Self {
        Self {
            endpoint: String::new(),
            region: String::new(),
            path_style: false,
            spool: "data/spool".into(),
        }
    }
}

/// `[keys]`: key management.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawKeys {
    /// Master key file path.
    pub master_key_file: String,
    /// `dir:path` or `pkcs11:module?slot=N&pin-file=path`.
    pub store: String,
    /// Development mode.
    pub dev: bool,
}

impl Default for RawKeys {
    fn default() -> Self {
        Self {
            master_key_file: "data/master.key".into(),
            store: "dir:data/keys".into(),
            dev: true,
        }
    }
}

/// What `[retention] legally_required` is when the file does not set it.
pub const DEFAULT_LEGALLY_REQUIRED: &[&str] = &["contract-5y"];

/// `[retention]`: how long recordings and personal data are kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawRetention {
    /// Class used when none is given.
    pub default_class: String,
    /// Class name to duration string.
    pub classes: BTreeMap<String, String>,
    /// Classes whose retention is a legal obligation; absent = the
    /// default ([`DEFAULT_LEGALLY_REQUIRED`], those of them that are
    /// classes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub legally_required: Option<Vec<String>>,
    /// Duration string.
    pub epoch: String,
    /// Duration string.
    pub sweep_interval: String,
    /// Duration string.
    pub personal_data: String,
}

impl Default for RawRetention {
    fn default() -> Self {
        let classes = [
            ("ad-6m", "180d"),
            ("dispute-3y", "1095d"),
            ("contract-5y", "1825d"),
        ];
        Self {
            default_class: "dispute-3y".into(),
            classes: classes
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            legally_required: None,
            epoch: "1d".into(),
            sweep_interval: "1h".into(),
            personal_data: "180d".into(),
        }
    }
}

/// `[api]`: the management HTTP API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawApi {
    /// `ip:port` to listen on.
    pub listen: String,
    /// Require a second person to approve sensitive actions.
    pub four_eyes: bool,
    /// Duration string.
    pub grant_ttl: String,
    /// `[api.tls]`
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<RawTls>,
    /// Allow plain HTTP on a non-loopback address.
    pub allow_plain_http: bool,
    /// Longest a client may take to send a request's headers (duration).
    pub header_timeout: String,
    /// Largest request body accepted, in bytes.
    pub body_limit: i64,
    /// Most API connections open at once.
    pub max_connections: i64,
    /// Failed bearer-token attempts allowed per client address per minute.
    pub auth_failures_per_minute: i64,
}

impl Default for RawApi {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            four_eyes: true,
            grant_ttl: "4h".into(),
            tls: None,
            allow_plain_http: false,
            header_timeout: "10s".into(),
            body_limit: 1_048_576,
            max_connections: 1024,
            auth_failures_per_minute: 10,
        }
    }
}

/// `[limits]`: capacity bounds, so a flood meets a precise refusal instead
/// of exhausting memory or file descriptors.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLimits {
    /// Most calls at once; absent = what `[media] ports` carries.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_calls: Option<i64>,
    /// Most SIP transactions (server and client) at once.
    pub max_transactions: i64,
    /// Most SIP transactions lingering only to absorb retransmissions.
    pub max_lingering_transactions: i64,
    /// SIP messages waiting for the engine, per queue.
    pub inbound_queue: i64,
}

impl Default for RawLimits {
    fn default() -> Self {
        Self {
            max_calls: None,
            max_transactions: 20_000,
            max_lingering_transactions: super::types::DEFAULT_MAX_LINGERING as i64,
            inbound_queue: 4096,
        }
    }
}
