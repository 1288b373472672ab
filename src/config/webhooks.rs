//! `[webhooks]`: where events are delivered, signed with which secret.
//!
//! Raw form, schema fields, typed form and validation in one place.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ConfigError;
use super::schema::{Field, Kind};

/// `[webhooks]` as written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawWebhooks {
    /// `https://…` or `http://` to a loopback address; empty: off.
    pub url: String,
    /// File holding the signing secret (`whsec_<base64>` or raw text).
    pub secret_file: String,
    /// Event types to send; absent: all.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub events: Option<Vec<String>>,
    /// Put participants' and callers' real numbers into payloads.
    pub include_numbers: bool,
    /// First wait before a retry (duration).
    pub retry_initial: String,
    /// Longest wait between retries (duration).
    pub retry_max: String,
    /// How long an event is retried before it is given up (≥ 24 h).
    pub give_up_after: String,
    /// Longest a delivery may take (duration).
    pub timeout: String,
    /// PEM file of the CAs trusted for `https://` receivers.
    pub ca_file: String,
}

impl Default for RawWebhooks {
    fn default() -> Self {
        Self {
            url: String::new(),
            secret_file: String::new(),
            events: None,
            include_numbers: false,
            retry_initial: "2s".into(),
            retry_max: "5m".into(),
            give_up_after: "72h".into(),
            timeout: "10s".into(),
            ca_file: "/etc/ssl/certs/ca-certificates.crt".into(),
        }
    }
}

/// The schema of `[webhooks]`.
pub(crate) const FIELDS: &[Field] = &[
    Field {
        name: "url",
        kind: Kind::Str,
    },
    Field {
        name: "secret_file",
        kind: Kind::Str,
    },
    Field {
        name: "events",
        kind: Kind::StrList,
    },
    Field {
        name: "include_numbers",
        kind: Kind::Bool,
    },
    Field {
        name: "retry_initial",
        kind: Kind::Str,
    },
    Field {
        name: "retry_max",
        kind: Kind::Str,
    },
    Field {
        name: "give_up_after",
        kind: Kind::Str,
    },
    Field {
        name: "timeout",
        kind: Kind::Str,
    },
    Field {
        name: "ca_file",
        kind: Kind::Str,
    },
];

/// Where deliveries go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookTarget {
    /// The URL as configured.
    pub url: String,
    /// `https` (true) or plain `http` to loopback (false).
    pub tls: bool,
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Path and query, at least `/`.
    pub path: String,
}

/// `[webhooks]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhooksConfig {
    /// `None`: webhooks are off.
    pub target: Option<WebhookTarget>,
    /// The secret's file (required with a target).
    pub secret_file: Option<PathBuf>,
    /// Event types sent; `None`: all.
    pub events: Option<Vec<String>>,
    /// Whether real numbers go into payloads.
    pub include_numbers: bool,
    /// First wait before a retry.
    pub retry_initial: Duration,
    /// Longest wait between retries.
    pub retry_max: Duration,
    /// How long an event is retried.
    pub give_up_after: Duration,
    /// Longest one delivery may take.
    pub timeout: Duration,
    /// CAs trusted for `https://` receivers.
    pub ca_file: PathBuf,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        validate(RawWebhooks::default()).unwrap_or_else(|_| unreachable!("defaults are valid"))
    }
}

/// Shortest `give_up_after`: a receiver down for a day loses nothing.
const MIN_GIVE_UP: Duration = Duration::from_secs(24 * 3600);

/// Validates `[webhooks]` as written (for tools and tests that build one
/// without a whole config file).
pub fn validate_raw(raw: RawWebhooks) -> Result<WebhooksConfig, ConfigError> {
    validate(raw)
}

/// Validates `[webhooks]`.
pub(crate) fn validate(raw: RawWebhooks) -> Result<WebhooksConfig, ConfigError> {
    let dur = |key: &str, v: &str| {
        crate::duration::parse_duration(v)
            .ok()
            .filter(|d| !d.is_zero())
            .ok_or_else(|| ConfigError::invalid(key, format!("'{v}' is not a positive duration")))
    };
    let target = (!raw.url.is_empty())
        .then(|| target(&raw.url))
        .transpose()?;
    let secret_file = (!raw.secret_file.is_empty()).then(|| PathBuf::from(&raw.secret_file));
    if target.is_some() && secret_file.is_none() {
        return Err(ConfigError::invalid(
            "webhooks.secret_file",
            "is required when webhooks.url is set",
        ));
    }
    if let Some(events) = &raw.events {
        let known = crate::store::webhooks::EVENT_TYPES;
        if let Some(bad) = events.iter().find(|e| !known.contains(&e.as_str())) {
            return Err(ConfigError::invalid(
                "webhooks.events",
                format!("unknown event '{bad}' (known: {})", known.join(", ")),
            ));
        }
    }
    let give_up_after = dur("webhooks.give_up_after", &raw.give_up_after)?;
    if give_up_after < MIN_GIVE_UP {
        return Err(ConfigError::invalid(
            "webhooks.give_up_after",
            "must be at least 24h",
        ));
    }
    let retry_initial = dur("webhooks.retry_initial", &raw.retry_initial)?;
    let retry_max = dur("webhooks.retry_max", &raw.retry_max)?;
    if retry_max < retry_initial {
        return Err(ConfigError::invalid(
            "webhooks.retry_max",
            "must not be shorter than webhooks.retry_initial",
        ));
    }
    Ok(WebhooksConfig {
        target,
        secret_file,
        events: raw.events,
        include_numbers: raw.include_numbers,
        retry_initial,
        retry_max,
        give_up_after,
        timeout: dur("webhooks.timeout", &raw.timeout)?,
        ca_file: PathBuf::from(raw.ca_file),
    })
}

/// `https://host[:port]/path`, or `http://` to a loopback address only.
fn target(url: &str) -> Result<WebhookTarget, ConfigError> {
    let bad = |why: &str| ConfigError::invalid("webhooks.url", why.to_string());
    let (tls, rest) = if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else {
        return Err(bad(
            "must start with https:// (or http:// to a loopback address)",
        ));
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.contains('@') || authority.is_empty() {
        return Err(bad("needs a host, and no user info"));
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => {
            let port = p.parse::<u16>().map_err(|_| bad("has an invalid port"))?;
            (h, port)
        }
        _ => (authority, if tls { 443 } else { 80 }),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if !tls {
        let loopback =
            host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
        if !loopback {
            return Err(bad(
                "plain http:// is allowed to a loopback address only; use https://",
            ));
        }
    }
    Ok(WebhookTarget {
        url: url.to_owned(),
        tls,
        host: host.to_owned(),
        port,
        path: path.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_url(url: &str) -> RawWebhooks {
        RawWebhooks {
            url: url.into(),
            secret_file: "s".into(),
            ..RawWebhooks::default()
        }
    }

    #[test]
    fn urls_are_https_or_loopback_http() {
        let t = validate(with_url("https://hooks.example.com/in?x=1")).unwrap();
        let t = t.target.unwrap();
        assert_eq!(
            (t.tls, t.host.as_str(), t.port),
            (true, "hooks.example.com", 443)
        );
        assert_eq!(t.path, "/in?x=1");
        let t = validate(with_url("http://127.0.0.1:9000")).unwrap();
        assert_eq!(t.target.unwrap().port, 9000);
        for bad in [
            "http://10.0.0.1/x",
            "ftp://a",
            "https://u@h/",
            "https://h:99999/",
        ] {
            assert!(validate(with_url(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn secret_events_and_give_up_are_checked() {
        let mut r = with_url("https://h/");
        r.secret_file = String::new();
        assert!(validate(r).is_err());
        let mut r = with_url("https://h/");
        r.events = Some(vec!["call.completed".into(), "call.started".into()]);
        assert!(
            validate(r)
                .unwrap_err()
                .to_string()
                .contains("call.started")
        );
        let mut r = with_url("https://h/");
        r.give_up_after = "23h".into();
        assert!(validate(r).is_err());
        assert!(WebhooksConfig::default().target.is_none());
    }
}
