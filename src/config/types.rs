//! The validated, typed configuration.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;

/// The whole validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `[sip]`: SIP listeners and domain.
    pub sip: SipConfig,
    /// `[trunk]` or `[[trunks]]`: the carrier peers B-legs go to, and who
    /// may call us; at least one, in the order B-legs try them
    /// (`priority`, then as written).
    pub trunks: Vec<TrunkConfig>,
    /// `[media]`: RTP sockets and SDP.
    pub media: MediaConfig,
    /// `[routing]`: routing behaviour and session lifetimes.
    pub routing: RoutingConfig,
    /// `[store]`: database and recording storage.
    pub store: StoreConfig,
    /// `[keys]`: key management.
    pub keys: KeysConfig,
    /// `[retention]`: retention classes and the sweeper.
    pub retention: RetentionConfig,
    /// `[api]`: the management HTTP API.
    pub api: ApiConfig,
    /// `[limits]`: capacity bounds.
    pub limits: LimitsConfig,
    /// `[webhooks]`: event delivery.
    pub webhooks: super::webhooks::WebhooksConfig,
    /// `[node]`: this node's id among several on one database.
    pub node: super::node::NodeConfig,
}

/// `[sip]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipConfig {
    /// Sockets to receive SIP on (at least one, no duplicates).
    pub listen: Vec<ListenAddr>,
    /// Our SIP domain, used in From/Contact headers we generate.
    pub domain: String,
    /// How long a callee may ring before the call is given up (480).
    pub no_answer_timeout: Duration,
    /// Longest answered call; both legs are hung up then.
    pub max_call_duration: Duration,
    /// 403s per second per source outside `[trunk] allow`; 0 = never.
    pub outsider_replies_per_second: u32,
    /// Most SIP TCP/TLS connections open at once (>= 1).
    pub max_tcp_connections: usize,
    /// Idle TCP/TLS connections (no message, no transaction or dialog)
    /// are closed after this long (> 0).
    pub tcp_idle_timeout: Duration,
    /// Largest SIP message in bytes (UDP datagram, TCP/TLS framing buffer).
    pub max_message_size: usize,
    /// RFC 4028 session interval asked for and accepted at most (whole
    /// seconds, >= `min_session_expires`).
    pub session_expires: Duration,
    /// Shortest session interval accepted, our Min-SE (whole seconds,
    /// >= 1s; below 90s breaks RFC 4028 §4 and is for tests only).
    pub min_session_expires: Duration,
    /// In-dialog OPTIONS interval on a leg without a session timer (whole
    /// seconds; zero = off).
    pub dialog_probe_interval: Duration,
    /// SIP switches side by side (`shards`), each on its own task owning
    /// the calls whose Call-ID hashes to it; 0 = one per available core.
    pub shards: usize,
    /// After SIGTERM, how long calls in progress may finish while new
    /// calls and OPTIONS get `503` (zero: calls end `interrupted` at once).
    pub drain_timeout: Duration,
    /// Certificate for `tls:` listeners; required when one is configured.
    pub tls: Option<TlsFiles>,
}

/// One SIP listener, written `transport:ip:port`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ListenAddr {
    /// The SIP transport of this socket.
    pub transport: Transport,
    /// The local address to bind (port 0 = any free port).
    pub addr: SocketAddr,
}

/// SIP transport of a listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// SIP over UDP.
    Udp,
    /// SIP over TCP.
    Tcp,
    /// SIP over TLS (needs `[sip.tls]`).
    Tls,
}

/// A certificate chain and its private key (PEM files).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM certificate chain file.
    pub cert: PathBuf,
    /// PEM private key file.
    pub key: PathBuf,
}

/// One trunk (`[trunk]`, or an entry of `[[trunks]]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrunkConfig {
    /// Its name (unique; letters, digits, `-`, `_`), in logs and metrics.
    pub name: String,
    /// Where B-leg INVITEs are sent (a real IP and a non-zero port).
    pub address: SocketAddr,
    /// Source networks allowed to send us INVITEs; empty means nobody.
    pub allow: Vec<IpNet>,
    /// How B-legs reach it.
    pub transport: Transport,
    /// The CA certificates (PEM) that verify its certificate; set exactly
    /// when `transport` is TLS.
    pub tls_ca: Option<PathBuf>,
    /// How it writes numbers, both ways.
    pub numbers: crate::phone::NumberPlan,
    /// Lower is tried first.
    pub priority: u32,
    /// OPTIONS probe interval; `None` = not probed.
    pub keepalive: Option<Duration>,
}

impl Config {
    /// Every trunk's `allow`, for the source gate.
    pub fn trunk_allow(&self) -> Vec<IpNet> {
        self.trunks
            .iter()
            .flat_map(|t| t.allow.iter().copied())
            .collect()
    }
}

/// `[media]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaConfig {
    /// Local IP the RTP sockets bind to.
    pub bind: IpAddr,
    /// IP written into our SDP (never unspecified).
    pub advertise: IpAddr,
    /// Local UDP ports for RTP/RTCP.
    pub ports: PortRange,
    /// WAV file played to both parties after the answer, before they are
    /// bridged, if any (`""` in the file = none); see
    /// [`crate::media::Announcement`].
    pub announcement: Option<PathBuf>,
    /// Who may send media on a leg (`source`, `learn_window`).
    pub source: crate::media::SourcePolicy,
    /// Relay worker threads (`workers`); 0 = one per available core.
    pub workers: usize,
    /// The relay workers' I/O (`io`): epoll, or io_uring (which falls back
    /// to epoll where the kernel refuses it).
    pub io: crate::media::MediaIo,
}

/// `[limits]`
/// Default `[limits] max_lingering_transactions`: 6,000 calls a second
/// each leave two transactions lingering 32 s (the INVITE's, Timer L; the
/// BYE's, Timer J) and one 5 s (our BYE's, Timer K): 414,000, plus room
/// for OPTIONS probes.
pub const DEFAULT_MAX_LINGERING: usize = 500_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitsConfig {
    /// Most calls at once (>= 1, at most what `[media] ports` carries);
    /// INVITEs beyond get `503` with `Retry-After`.
    pub max_calls: usize,
    /// Most SIP transactions at once; new requests beyond get `503`.
    /// Those that only absorb retransmissions are not counted here.
    pub max_transactions: usize,
    /// Most SIP transactions lingering only to absorb retransmissions
    /// (timers J, L, I, K, D), all switches together; beyond, the one
    /// nearest its deadline is evicted (counted).
    pub max_lingering_transactions: usize,
    /// Capacity of each inbound SIP queue (new requests; in-dialog
    /// requests and responses).
    pub inbound_queue: usize,
}

/// An inclusive port range, written `first-last`. Both ends are >= 1024 and
/// it holds at least 4 ports; an even `first` is recommended (RTP/RTCP pairs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PortRange {
    /// First port of the range (inclusive).
    pub first: u16,
    /// Last port of the range (inclusive).
    pub last: u16,
}

impl PortRange {
    /// Number of ports in the range (0 if `first > last`).
    pub fn len(&self) -> u32 {
        (u32::from(self.last) + 1).saturating_sub(u32::from(self.first))
    }

    /// Whether the range holds no port (only for unvalidated values).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether `port` lies in the range.
    pub fn contains(&self, port: u16) -> bool {
        (self.first..=self.last).contains(&port)
    }

    /// RTP/RTCP pairs the range holds: even ports `p` with `p + 1` in it.
    pub fn pairs(&self) -> u32 {
        let base = u32::from(self.first) + u32::from(self.first % 2);
        (u32::from(self.last) + 1).saturating_sub(base) / 2
    }

    /// Calls the range carries: two pairs (four ports) each.
    pub fn calls(&self) -> u32 {
        self.pairs() / 2
    }
}

/// `[routing]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutingConfig {
    /// SIP status (400..=699) answered to callers that have no route.
    pub unknown_caller_status: u16,
    /// How long a closed number stays blocked before it can be reused.
    pub quarantine: Duration,
    /// Session lifetime when the API/CLI gives none (> 0, <= `max_ttl`).
    pub default_ttl: Duration,
    /// Upper bound for any session lifetime (> 0).
    pub max_ttl: Duration,
    /// How long a positive route lookup may be cached; zero disables caching.
    pub route_cache_ttl: Duration,
    /// What a call no open session routes gets (`out_of_session` and the
    /// keys that go with its mode).
    pub out_of_session: OutOfSession,
}

/// `[routing] out_of_session`: what happens to a call that matches no open
/// session. Never a bridge to a former counterpart; always a call record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutOfSession {
    /// `"reject"`: `unknown_caller_status`, as before.
    Reject,
    /// `"announce"`: `out_of_session_announcement` is played to the caller,
    /// then the call ends.
    Announce {
        /// The WAV (same rules as `[media] announcement`).
        announcement: PathBuf,
        /// `out_of_session_announce = "early"`: played as early media
        /// (183) and then `unknown_caller_status`; else (`"answer"`)
        /// answered, played and hung up.
        early: bool,
    },
    /// `"forward"`: the caller is connected to `fallback_number`, which
    /// sees the dialled safe number as the caller.
    Forward {
        /// The platform's customer centre.
        to: crate::phone::E164,
        /// Played to the caller (and the centre) before they are bridged.
        announcement: Option<PathBuf>,
        /// `fallback_record`: whether the forwarded call is recorded.
        record: bool,
    },
}

/// `[store]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    /// Database connection URL.
    pub database_url: DatabaseUrl,
    /// Where call recordings are stored.
    pub recordings: BlobLocation,
    /// `[store.s3]`: used when `recordings` is [`BlobLocation::S3`].
    pub s3: S3Config,
}

/// `[store.s3]`: the object store's address and the local spool. No
/// credentials: they come from the AWS environment variables, the AWS
/// profile files or the instance's role
/// ([`crate::recording::s3_profile`]), never from the config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Config {
    /// Endpoint URL of an S3-compatible server (Garage, MinIO, Ceph);
    /// `None`: AWS S3 in `region`.
    pub endpoint: Option<String>,
    /// Region requests are signed for (`garage` for Garage); `None`: the
    /// AWS chain's (`AWS_REGION`, `AWS_DEFAULT_REGION`, the profile's
    /// `region`, else `us-east-1`).
    pub region: Option<String>,
    /// `endpoint/bucket/key` URLs, which most self-hosted servers need,
    /// instead of `bucket.endpoint/key`.
    pub path_style: bool,
    /// Where recordings are written and synced while their calls run, and
    /// wait until they are uploaded and verified: the crash-safety of local
    /// files, whatever the bucket does.
    pub spool: PathBuf,
}

/// A database URL with its recognised kind. `Debug` and `Display` hide the
/// password; use `url` to connect.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl {
    /// The URL exactly as configured (may contain a password).
    pub url: String,
    /// Which database the scheme selects.
    pub kind: DatabaseKind,
}

/// Supported databases.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DatabaseKind {
    /// `sqlite:` URLs.
    Sqlite,
    /// `postgres://` or `postgresql://` URLs.
    Postgres,
}

impl DatabaseUrl {
    /// The URL with any `user:password@` password replaced by `***`
    /// (errs on the side of hiding too much for malformed URLs).
    pub fn redacted(&self) -> String {
        let Some((scheme, rest)) = self.url.split_once("://") else {
            return self.url.clone();
        };
        let before_query = rest.find(['?', '#']).map_or(rest, |end| &rest[..end]);
        let Some(at) = before_query.rfind('@') else {
            return self.url.clone();
        };
        match rest[..at].split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***{}", &rest[at..]),
            None => self.url.clone(),
        }
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseUrl")
            .field("url", &self.redacted())
            .field("kind", &self.kind)
            .finish()
    }
}

/// Where recordings (blobs) live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobLocation {
    /// `file://<dir>`: a local directory (relative paths are relative to the
    /// working directory).
    File(PathBuf),
    /// `s3://<bucket>/<prefix>`: an S3 bucket and key prefix (no trailing `/`).
    S3 {
        /// Bucket name.
        bucket: String,
        /// Key prefix inside the bucket; may be empty.
        prefix: String,
    },
}

/// `[keys]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeysConfig {
    /// File holding the master key that wraps the stored keys.
    pub master_key_file: PathBuf,
    /// Where the wrapped keys are kept.
    pub store: KeyStoreLocation,
    /// Development mode: keys may be generated on first start.
    pub dev: bool,
}

/// Where keys are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyStoreLocation {
    /// `dir:<path>`: files in a directory.
    Dir(PathBuf),
    /// `pkcs11:<module>?slot=<n>[&pin-file=<path>]`: a PKCS#11 token.
    Pkcs11 {
        /// Path of the PKCS#11 module (shared library).
        module: PathBuf,
        /// Token slot number.
        slot: u64,
        /// File holding the user PIN, if the token needs one.
        pin_file: Option<PathBuf>,
    },
}

/// `[retention]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionConfig {
    /// Class applied to recordings that are given none (names a class).
    pub default_class: String,
    /// Retention class name (`[a-z0-9-]{1,32}`) → how long data is kept (> 0).
    pub classes: BTreeMap<String, Duration>,
    /// Classes whose retention is a legal obligation (each names a class).
    pub legally_required: Vec<String>,
    /// Granularity of expiry times (>= 1s).
    pub epoch: Duration,
    /// How often the retention sweeper runs (> 0).
    pub sweep_interval: Duration,
    /// After a session closes, real numbers are replaced by keyed hashes
    /// after this long.
    pub personal_data: Duration,
}

impl RetentionConfig {
    /// The retention period of `class`, if it is a configured class.
    pub fn period(&self, class: &str) -> Option<Duration> {
        self.classes.get(class).copied()
    }

    /// Whether `class` is listed in `legally_required`.
    pub fn is_legally_required(&self, class: &str) -> bool {
        self.legally_required.iter().any(|c| c == class)
    }
}

/// `[api]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiConfig {
    /// Address the HTTP API listens on.
    pub listen: SocketAddr,
    /// Whether sensitive actions need approval by a second person.
    pub four_eyes: bool,
    /// Lifetime of an approval grant (> 0).
    pub grant_ttl: Duration,
    /// Certificate for HTTPS; `None` means plain HTTP.
    pub tls: Option<TlsFiles>,
    /// Allow plain HTTP on a non-loopback `listen` address.
    pub allow_plain_http: bool,
    /// Longest a client may take to send a request's headers, and how long
    /// an idle connection stays open: slow or silent clients (slowloris)
    /// cannot hold connections for longer (> 0).
    pub header_timeout: Duration,
    /// Largest request body accepted, in bytes (at least 1024); larger
    /// ones get 413 before the body is read.
    pub body_limit: usize,
    /// Most API connections open at once, TLS handshakes included (≥ 1);
    /// beyond it a new connection is closed at once.
    pub max_connections: usize,
    /// Failed bearer-token attempts (unknown or disabled token) allowed per
    /// client address per minute before its token requests get 429 (≥ 1).
    pub auth_failures_per_minute: u32,
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
        })
    }
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.transport, self.addr)
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

const DAY: u64 = 86_400;

fn days(n: u64) -> Duration {
    Duration::from_secs(n * DAY)
}

fn listen(transport: Transport, port: u16) -> ListenAddr {
    let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port);
    ListenAddr { transport, addr }
}

impl Config {
    /// The built-in development defaults (what an empty file gives).
    pub fn default_dev() -> Config {
        let localhost = IpAddr::V4(Ipv4Addr::LOCALHOST);
        Config {
            sip: SipConfig {
                listen: vec![listen(Transport::Udp, 5060), listen(Transport::Tcp, 5060)],
                domain: "ansim.local".into(),
                no_answer_timeout: Duration::from_secs(60),
                max_call_duration: Duration::from_secs(4 * 3600),
                outsider_replies_per_second: 2,
                max_tcp_connections: 1024,
                tcp_idle_timeout: Duration::from_secs(120),
                max_message_size: 65_535,
                session_expires: Duration::from_secs(1800),
                min_session_expires: Duration::from_secs(90),
                dialog_probe_interval: Duration::ZERO,
                shards: 1,
                drain_timeout: Duration::ZERO,
                tls: None,
            },
            trunks: vec![TrunkConfig {
                name: "trunk".into(),
                address: SocketAddr::new(localhost, 5080),
                allow: vec![IpNet::from(localhost)],
                transport: Transport::Udp,
                tls_ca: None,
                numbers: crate::phone::NumberPlan::default(),
                priority: 0,
                keepalive: None,
            }],
            media: MediaConfig {
                bind: localhost,
                advertise: localhost,
                ports: PortRange {
                    first: 20000,
                    last: 29999,
                },
                announcement: None,
                source: crate::media::SourcePolicy::Sdp,
                workers: 0,
                io: crate::media::MediaIo::Epoll,
            },
            routing: RoutingConfig {
                unknown_caller_status: 404,
                quarantine: days(30),
                default_ttl: days(7),
                max_ttl: days(365),
                route_cache_ttl: Duration::from_secs(30),
                out_of_session: OutOfSession::Reject,
            },
            store: StoreConfig {
                database_url: DatabaseUrl {
                    url: "sqlite://data/ansim.db".into(),
                    kind: DatabaseKind::Sqlite,
                },
                recordings: BlobLocation::File("data/recordings".into()),
                s3: S3Config {
                    endpoint: None,
                    region: None,
                    path_style: false,
                    spool: "data/spool".into(),
                },
            },
            keys: KeysConfig {
                master_key_file: "data/master.key".into(),
                store: KeyStoreLocation::Dir("data/keys".into()),
                dev: true,
            },
            retention: default_retention(),
            api: ApiConfig {
                listen: SocketAddr::new(localhost, 8080),
                four_eyes: true,
                grant_ttl: Duration::from_secs(4 * 3_600),
                tls: None,
                allow_plain_http: false,
                header_timeout: Duration::from_secs(10),
                body_limit: 1_048_576,
                max_connections: 1024,
                auth_failures_per_minute: 10,
            },
            limits: LimitsConfig {
                max_calls: 2500,
                max_transactions: 20_000,
                max_lingering_transactions: DEFAULT_MAX_LINGERING,
                inbound_queue: 4096,
            },
            webhooks: super::webhooks::WebhooksConfig::default(),
            node: super::node::NodeConfig::default(),
        }
    }
}

fn default_retention() -> RetentionConfig {
    let classes = [("ad-6m", 180), ("dispute-3y", 1095), ("contract-5y", 1825)];
    RetentionConfig {
        default_class: "dispute-3y".into(),
        classes: classes
            .iter()
            .map(|(name, n)| (name.to_string(), days(*n)))
            .collect(),
        legally_required: vec!["contract-5y".into()],
        epoch: days(1),
        sweep_interval: Duration::from_secs(3_600),
        personal_data: days(180),
    }
}
