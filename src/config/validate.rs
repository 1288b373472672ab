//! Turns a [`RawConfig`] into a typed [`Config`], checking every rule.
//! The first error found is returned; it names its key as `section.key`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use super::raw::{
    RawApi, RawConfig, RawKeys, RawLimits, RawMedia, RawRetention, RawRouting, RawSip, RawStore,
    RawTls,
};
use super::{
    ApiConfig, Config, ConfigError, DatabaseUrl, KeysConfig, LimitsConfig, MediaConfig,
    OutOfSession, PortRange, RetentionConfig, RoutingConfig, S3Config, SipConfig, StoreConfig,
    TlsFiles, Transport, parse,
};
use crate::duration::parse_duration;
use crate::media::{MediaIo, SourcePolicy};

type Result<T> = std::result::Result<T, ConfigError>;

/// Longest `[sip] no_answer_timeout`: a phone rings for minutes, not days.
const MAX_NO_ANSWER: Duration = Duration::from_secs(3600);
/// Longest `[sip] max_call_duration`: a day (the recording format bounds a
/// recording's length too, and retention epochs count on it).
const MAX_CALL_DURATION: Duration = Duration::from_secs(24 * 3600);
// A call's recording is about as long as the call, and readers refuse a
// recording longer than the format's bound as damaged: keep an hour of
// slack (jitter window, final flush) between the two.
const _: () = assert!(
    (MAX_CALL_DURATION.as_secs() + 3600) * 1000 <= crate::recording::crec::MAX_RECORDING_MS
);

/// Validates `raw` into a typed [`Config`].
pub fn validate(raw: RawConfig) -> Result<Config> {
    let media = media(raw.media)?;
    Ok(Config {
        sip: sip(raw.sip)?,
        trunks: super::trunks::trunks(raw.trunk, raw.trunks)?,
        limits: limits(raw.limits, media.ports)?,
        media,
        routing: routing(raw.routing)?,
        store: store(raw.store)?,
        keys: keys(raw.keys)?,
        retention: retention(raw.retention)?,
        api: api(raw.api)?,
        webhooks: super::webhooks::validate(raw.webhooks)?,
        node: super::node::validate(raw.node)?,
    })
}

/// Wraps a parser's reason with the key.
pub(super) fn at<T>(key: &str, r: std::result::Result<T, String>) -> Result<T> {
    r.map_err(|reason| ConfigError::invalid(key, reason))
}

pub(super) fn duration(key: &str, value: &str) -> Result<Duration> {
    parse_duration(value).map_err(|source| ConfigError::Duration {
        key: key.to_string(),
        value: value.to_string(),
        source,
    })
}

fn positive_duration(key: &str, value: &str) -> Result<Duration> {
    let d = duration(key, value)?;
    if d.is_zero() {
        return Err(ConfigError::invalid(key, "must be greater than 0s"));
    }
    Ok(d)
}

/// An integer setting that must lie in `min..=max`, converted to the type
/// the program uses.
fn int_in<T: TryFrom<i64>>(key: &str, value: i64, min: i64, max: i64) -> Result<T> {
    if value < min || value > max {
        let reason = format!("must be from {min} to {max}, not {value}");
        return Err(ConfigError::invalid(key, reason));
    }
    T::try_from(value)
        .map_err(|_| ConfigError::invalid(key, format!("{value} does not fit this machine")))
}

fn non_empty_path(key: &str, value: &str) -> Result<PathBuf> {
    if value.is_empty() {
        return Err(ConfigError::invalid(key, "must not be empty"));
    }
    Ok(PathBuf::from(value))
}

fn tls(section: &str, raw: Option<RawTls>) -> Result<Option<TlsFiles>> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    let file = |name: &str, value: Option<String>| {
        let key = format!("{section}.tls.{name}");
        match value {
            Some(v) => non_empty_path(&key, &v),
            None => Err(ConfigError::invalid(
                &key,
                format!("required when [{section}.tls] is present"),
            )),
        }
    };
    Ok(Some(TlsFiles {
        cert: file("cert", raw.cert)?,
        key: file("key", raw.key)?,
    }))
}

fn sip(raw: RawSip) -> Result<SipConfig> {
    let key = "sip.listen";
    if raw.listen.is_empty() {
        return Err(ConfigError::invalid(
            key,
            "at least one listen address is required",
        ));
    }
    let mut listen = Vec::with_capacity(raw.listen.len());
    for s in &raw.listen {
        let addr = at(key, parse::listen_addr(s))?;
        if listen.contains(&addr) {
            return Err(ConfigError::invalid(key, format!("'{s}' is listed twice")));
        }
        listen.push(addr);
    }
    let (session_expires, min_session_expires, dialog_probe_interval) = session_timers(&raw)?;
    let tls = tls("sip", raw.tls)?;
    if let Some(l) = listen.iter().find(|l| l.transport == Transport::Tls)
        && tls.is_none()
    {
        let reason = format!("'{l}' needs [sip.tls] with cert and key");
        return Err(ConfigError::invalid(key, reason));
    }
    if raw.domain.is_empty()
        || raw
            .domain
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
    {
        let reason = format!("'{}' is not a valid SIP domain", raw.domain);
        return Err(ConfigError::invalid("sip.domain", reason));
    }
    let no_answer_timeout = duration("sip.no_answer_timeout", &raw.no_answer_timeout)?;
    let max_call_duration = duration("sip.max_call_duration", &raw.max_call_duration)?;
    for (key, d, most) in [
        ("sip.no_answer_timeout", no_answer_timeout, MAX_NO_ANSWER),
        (
            "sip.max_call_duration",
            max_call_duration,
            MAX_CALL_DURATION,
        ),
    ] {
        if d.is_zero() {
            return Err(ConfigError::invalid(key, "must be more than 0"));
        }
        if d > most {
            let reason = format!("must be at most {}", crate::duration::format_duration(most));
            return Err(ConfigError::invalid(key, reason));
        }
    }
    Ok(SipConfig {
        listen,
        domain: raw.domain,
        no_answer_timeout,
        max_call_duration,
        outsider_replies_per_second: int_in(
            "sip.outsider_replies_per_second",
            raw.outsider_replies_per_second,
            0,
            1000,
        )?,
        max_tcp_connections: int_in(
            "sip.max_tcp_connections",
            raw.max_tcp_connections,
            1,
            1 << 20,
        )?,
        tcp_idle_timeout: positive_duration("sip.tcp_idle_timeout", &raw.tcp_idle_timeout)?,
        max_message_size: int_in("sip.max_message_size", raw.max_message_size, 4096, 1 << 20)?,
        session_expires,
        min_session_expires,
        dialog_probe_interval,
        shards: int_in("sip.shards", raw.shards, 0, 256)?,
        drain_timeout: drain_timeout(&raw.drain_timeout)?,
        tls,
    })
}

/// `[sip] drain_timeout`: at most a day (the longest call).
fn drain_timeout(value: &str) -> Result<Duration> {
    let d = duration("sip.drain_timeout", value)?;
    if d > MAX_CALL_DURATION {
        return Err(ConfigError::invalid(
            "sip.drain_timeout",
            "must be at most 1d (0s = off)",
        ));
    }
    Ok(d)
}

/// Longest `[sip] session_expires`: a day.
const MAX_SESSION_EXPIRES: Duration = Duration::from_secs(86_400);

/// A SIP interval given in whole seconds (headers carry delta-seconds).
fn seconds(key: &str, value: &str) -> Result<Duration> {
    let d = duration(key, value)?;
    if d.subsec_nanos() != 0 {
        return Err(ConfigError::invalid(key, "must be whole seconds"));
    }
    Ok(d)
}

/// `session_expires`, `min_session_expires`, `dialog_probe_interval`.
fn session_timers(raw: &RawSip) -> Result<(Duration, Duration, Duration)> {
    let expires = seconds("sip.session_expires", &raw.session_expires)?;
    let min = seconds("sip.min_session_expires", &raw.min_session_expires)?;
    let probe = seconds("sip.dialog_probe_interval", &raw.dialog_probe_interval)?;
    if min.is_zero() {
        return Err(ConfigError::invalid(
            "sip.min_session_expires",
            "must be at least 1s (RFC 4028 asks for 90s)",
        ));
    }
    if expires < min || expires > MAX_SESSION_EXPIRES {
        let reason = "must lie between sip.min_session_expires and 1d";
        return Err(ConfigError::invalid("sip.session_expires", reason));
    }
    if probe > MAX_SESSION_EXPIRES {
        return Err(ConfigError::invalid(
            "sip.dialog_probe_interval",
            "must be at most 1d (0s = off)",
        ));
    }
    Ok((expires, min, probe))
}

fn media(raw: RawMedia) -> Result<MediaConfig> {
    let advertise = at("media.advertise", parse::ip_addr(&raw.advertise))?;
    if advertise.is_unspecified() {
        let reason = format!("'{advertise}' cannot be written into SDP; give a reachable IP");
        return Err(ConfigError::invalid("media.advertise", reason));
    }
    let learn_window = positive_duration("media.learn_window", &raw.learn_window)?;
    let source = match raw.source.as_str() {
        "sdp" => SourcePolicy::Sdp,
        "learn" => SourcePolicy::Learn {
            window: learn_window,
        },
        other => {
            let reason = format!("'{other}' is not a media source policy (sdp or learn)");
            return Err(ConfigError::invalid("media.source", reason));
        }
    };
    let workers = match usize::try_from(raw.workers) {
        Ok(n) if n <= 256 => n,
        _ => {
            let reason = format!("{} workers: give 0 (one per core) to 256", raw.workers);
            return Err(ConfigError::invalid("media.workers", reason));
        }
    };
    let io = match raw.io.as_str() {
        "epoll" => MediaIo::Epoll,
        "io_uring" => MediaIo::IoUring,
        other => {
            let reason = format!("'{other}' is not a media I/O (epoll or io_uring)");
            return Err(ConfigError::invalid("media.io", reason));
        }
    };
    Ok(MediaConfig {
        workers,
        io,
        bind: at("media.bind", parse::ip_addr(&raw.bind))?,
        advertise,
        ports: at("media.ports", parse::port_range(&raw.ports))?,
        announcement: (!raw.announcement.is_empty()).then(|| PathBuf::from(raw.announcement)),
        source,
    })
}

fn limits(raw: RawLimits, ports: PortRange) -> Result<LimitsConfig> {
    let carried = i64::from(ports.calls());
    let max_calls = match raw.max_calls {
        None => carried,
        Some(n) if n > carried => {
            let reason = format!(
                "{n} calls need {} media ports (4 each), but media.ports '{}-{}' carries {carried} calls; \
                 widen media.ports or lower limits.max_calls",
                n * 4,
                ports.first,
                ports.last
            );
            return Err(ConfigError::invalid("limits.max_calls", reason));
        }
        Some(n) => n,
    };
    Ok(LimitsConfig {
        max_calls: int_in("limits.max_calls", max_calls, 1, carried.max(1))?,
        max_transactions: int_in("limits.max_transactions", raw.max_transactions, 16, 1 << 24)?,
        max_lingering_transactions: int_in(
            "limits.max_lingering_transactions",
            raw.max_lingering_transactions,
            16,
            1 << 26,
        )?,
        inbound_queue: int_in("limits.inbound_queue", raw.inbound_queue, 16, 1 << 20)?,
    })
}

fn routing(raw: RawRouting) -> Result<RoutingConfig> {
    let status = raw.unknown_caller_status;
    let unknown_caller_status = u16::try_from(status)
        .ok()
        .filter(|s| (400..=699).contains(s))
        .ok_or_else(|| {
            let reason = format!("{status} is not a SIP error status (400..=699)");
            ConfigError::invalid("routing.unknown_caller_status", reason)
        })?;
    let default_ttl = positive_duration("routing.default_ttl", &raw.default_ttl)?;
    let max_ttl = positive_duration("routing.max_ttl", &raw.max_ttl)?;
    if default_ttl > max_ttl {
        let reason = format!(
            "'{}' is longer than routing.max_ttl '{}'",
            raw.default_ttl, raw.max_ttl
        );
        return Err(ConfigError::invalid("routing.default_ttl", reason));
    }
    let out_of_session = out_of_session(&raw)?;
    Ok(RoutingConfig {
        out_of_session,
        unknown_caller_status,
        quarantine: duration("routing.quarantine", &raw.quarantine)?,
        default_ttl,
        max_ttl,
        route_cache_ttl: duration("routing.route_cache_ttl", &raw.route_cache_ttl)?,
    })
}

/// `out_of_session` and the keys its mode needs: a mode without what it
/// needs is an error now rather than a surprise at the first such call.
fn out_of_session(raw: &RawRouting) -> Result<OutOfSession> {
    let announcement = (!raw.out_of_session_announcement.is_empty())
        .then(|| PathBuf::from(&raw.out_of_session_announcement));
    let early = match raw.out_of_session_announce.as_str() {
        "answer" => false,
        "early" => true,
        other => {
            let reason = format!("'{other}': give \"answer\" or \"early\"");
            return Err(ConfigError::invalid(
                "routing.out_of_session_announce",
                reason,
            ));
        }
    };
    match raw.out_of_session.as_str() {
        "reject" => Ok(OutOfSession::Reject),
        "announce" => {
            let Some(announcement) = announcement else {
                let reason = "out_of_session = \"announce\" needs routing.out_of_session_announcement (a WAV file)";
                return Err(ConfigError::invalid(
                    "routing.out_of_session_announcement",
                    reason.to_owned(),
                ));
            };
            Ok(OutOfSession::Announce {
                announcement,
                early,
            })
        }
        "forward" => {
            if raw.fallback_number.is_empty() {
                let reason = "out_of_session = \"forward\" needs routing.fallback_number (the customer centre, E.164)";
                return Err(ConfigError::invalid(
                    "routing.fallback_number",
                    reason.to_owned(),
                ));
            }
            let to = crate::phone::E164::parse(&raw.fallback_number).map_err(|e| {
                ConfigError::invalid(
                    "routing.fallback_number",
                    format!("not an E.164 number: {e}"),
                )
            })?;
            let record = raw.fallback_record;
            Ok(OutOfSession::Forward {
                to,
                announcement,
                record,
            })
        }
        other => {
            let reason = format!("'{other}': give \"reject\", \"announce\" or \"forward\"");
            Err(ConfigError::invalid("routing.out_of_session", reason))
        }
    }
}

fn store(raw: RawStore) -> Result<StoreConfig> {
    let kind = at(
        "store.database_url",
        parse::database_kind(&raw.database_url),
    )?;
    Ok(StoreConfig {
        database_url: DatabaseUrl {
            url: raw.database_url,
            kind,
        },
        recordings: at("store.recordings", parse::blob_location(&raw.recordings))?,
        s3: s3(raw.s3)?,
    })
}

fn s3(raw: super::raw::RawS3) -> Result<S3Config> {
    let endpoint = match raw.endpoint.trim() {
        "" => None,
        e if e.starts_with("http://") || e.starts_with("https://") => Some(e.to_string()),
        _ => {
            return Err(ConfigError::invalid(
                "store.s3.endpoint",
                "expected an http:// or https:// URL",
            ));
        }
    };
    let region = Some(raw.region.trim().to_string()).filter(|r| !r.is_empty());
    Ok(S3Config {
        endpoint,
        region,
        path_style: raw.path_style,
        spool: non_empty_path("store.s3.spool", &raw.spool)?,
    })
}

fn keys(raw: RawKeys) -> Result<KeysConfig> {
    Ok(KeysConfig {
        master_key_file: non_empty_path("keys.master_key_file", &raw.master_key_file)?,
        store: at("keys.store", parse::key_store(&raw.store))?,
        dev: raw.dev,
    })
}

fn retention(raw: RawRetention) -> Result<RetentionConfig> {
    let mut classes = BTreeMap::new();
    for (name, value) in &raw.classes {
        let key = format!("retention.classes.{name}");
        if !parse::is_class_name(name) {
            let reason = "class names are 1-32 characters of a-z, 0-9 and '-'";
            return Err(ConfigError::invalid(&key, reason));
        }
        classes.insert(name.clone(), positive_duration(&key, value)?);
    }
    let known = |key: &str, name: &str| {
        if classes.contains_key(name) {
            return Ok(());
        }
        let names: Vec<&str> = classes.keys().map(String::as_str).collect();
        let reason = format!(
            "'{name}' is not a class in retention.classes ({})",
            names.join(", ")
        );
        Err(ConfigError::invalid(key, reason))
    };
    known("retention.default_class", &raw.default_class)?;
    let legally_required = match raw.legally_required {
        // Written by the user: every name must be a class.
        Some(names) => {
            for name in &names {
                known("retention.legally_required", name)?;
            }
            names
        }
        // The default refers to classes the user may have replaced: keep
        // those that exist, and say which were dropped.
        None => {
            let (kept, dropped): (Vec<&str>, Vec<&str>) = super::raw::DEFAULT_LEGALLY_REQUIRED
                .iter()
                .partition(|name| classes.contains_key(**name));
            if !dropped.is_empty() {
                tracing::warn!(
                    dropped = ?dropped,
                    "retention.legally_required is not set and its default names classes that retention.classes does not define: they are left out"
                );
            }
            kept.into_iter().map(str::to_owned).collect()
        }
    };
    let epoch = duration("retention.epoch", &raw.epoch)?;
    if epoch < Duration::from_secs(1) {
        return Err(ConfigError::invalid(
            "retention.epoch",
            "must be at least 1s",
        ));
    }
    Ok(RetentionConfig {
        default_class: raw.default_class,
        classes,
        legally_required,
        epoch,
        sweep_interval: positive_duration("retention.sweep_interval", &raw.sweep_interval)?,
        personal_data: duration("retention.personal_data", &raw.personal_data)?,
    })
}

fn api(raw: RawApi) -> Result<ApiConfig> {
    let listen = at("api.listen", parse::socket_addr(&raw.listen))?;
    let tls = tls("api", raw.tls)?;
    if tls.is_none() && !listen.ip().is_loopback() && !raw.allow_plain_http {
        let reason = format!(
            "plain HTTP on non-loopback address {listen} is refused; \
             configure [api.tls] or set api.allow_plain_http = true"
        );
        return Err(ConfigError::invalid("api.listen", reason));
    }
    Ok(ApiConfig {
        listen,
        four_eyes: raw.four_eyes,
        grant_ttl: positive_duration("api.grant_ttl", &raw.grant_ttl)?,
        tls,
        allow_plain_http: raw.allow_plain_http,
        header_timeout: positive_duration("api.header_timeout", &raw.header_timeout)?,
        body_limit: int_in("api.body_limit", raw.body_limit, 1024, 1 << 30)?,
        max_connections: int_in("api.max_connections", raw.max_connections, 1, 1_000_000)?,
        auth_failures_per_minute: int_in(
            "api.auth_failures_per_minute",
            raw.auth_failures_per_minute,
            1,
            1_000_000,
        )?,
    })
}
