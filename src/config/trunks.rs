//! `[trunk]` (one trunk) or `[[trunks]]` (several): validated into the
//! list of [`TrunkConfig`] B-legs try, best first.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use super::raw::RawTrunk;
use super::validate::{at, duration};
use super::{ConfigError, Transport, TrunkConfig, parse};
use crate::phone::{NumberFormat, NumberPlan};

type Result<T> = std::result::Result<T, ConfigError>;

/// Most `[[trunks]]` entries.
const MAX_TRUNKS: usize = 32;

/// Shortest `keepalive` other than `0s`.
const MIN_KEEPALIVE: Duration = Duration::from_secs(1);

/// The trunks, sorted by `priority` (then as written).
pub(super) fn trunks(
    one: Option<RawTrunk>,
    many: Option<Vec<RawTrunk>>,
) -> Result<Vec<TrunkConfig>> {
    let mut out = match (one, many) {
        (Some(_), Some(_)) => {
            let reason = "both [trunk] and [[trunks]] are given: write one trunk as [trunk] \
                          or several as [[trunks]], not both";
            return Err(ConfigError::invalid("trunks", reason));
        }
        (one, None) => vec![trunk("trunk", one.unwrap_or_default(), "trunk")?],
        (None, Some(many)) => {
            if many.is_empty() {
                return Err(ConfigError::invalid("trunks", "needs at least one trunk"));
            }
            if many.len() > MAX_TRUNKS {
                let reason = format!("{} trunks; at most {MAX_TRUNKS}", many.len());
                return Err(ConfigError::invalid("trunks", reason));
            }
            let mut out = Vec::with_capacity(many.len());
            for (i, raw) in many.into_iter().enumerate() {
                let key = format!("trunks[{i}]");
                if raw.name.is_empty() {
                    return Err(ConfigError::invalid(&format!("{key}.name"), "is required"));
                }
                out.push(trunk(&key, raw, "")?);
            }
            out
        }
    };
    let mut names = HashSet::new();
    for (i, t) in out.iter().enumerate() {
        if !names.insert(t.name.clone()) {
            let reason = format!("'{}' names two trunks", t.name);
            return Err(ConfigError::invalid(&format!("trunks[{i}].name"), reason));
        }
    }
    out.sort_by_key(|t| t.priority);
    Ok(out)
}

/// One trunk; its keys are named `{key}.…`; `default_name` stands in for
/// an empty name.
fn trunk(key: &str, raw: RawTrunk, default_name: &str) -> Result<TrunkConfig> {
    let k = |field: &str| format!("{key}.{field}");
    let name = if raw.name.is_empty() {
        default_name.to_owned()
    } else {
        raw.name.clone()
    };
    let good_name = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !good_name {
        let reason = format!("'{name}': use 1-64 letters, digits, '-' or '_'");
        return Err(ConfigError::invalid(&k("name"), reason));
    }
    let address = at(&k("address"), parse::socket_addr(&raw.address))?;
    if address.ip().is_unspecified() || address.port() == 0 {
        let reason = format!("'{address}' is not a destination (needs a real IP and port)");
        return Err(ConfigError::invalid(&k("address"), reason));
    }
    let allow = raw
        .allow
        .iter()
        .map(|s| at(&k("allow"), parse::ip_net(s)))
        .collect::<Result<_>>()?;
    let transport = match raw.transport.as_str() {
        "udp" => Transport::Udp,
        "tcp" => Transport::Tcp,
        "tls" => Transport::Tls,
        other => {
            let reason = format!("unknown transport '{other}' (expected udp, tcp or tls)");
            return Err(ConfigError::invalid(&k("transport"), reason));
        }
    };
    let tls_ca = match (transport, raw.tls_ca) {
        (Transport::Tls, Some(ca)) if !ca.is_empty() => Some(PathBuf::from(ca)),
        (Transport::Tls, _) => {
            let reason =
                "transport = \"tls\" needs the CA file that verifies the trunk's certificate";
            return Err(ConfigError::invalid(&k("tls_ca"), reason));
        }
        (_, Some(_)) => {
            let reason = "is only used with transport = \"tls\"";
            return Err(ConfigError::invalid(&k("tls_ca"), reason));
        }
        (_, None) => None,
    };
    Ok(TrunkConfig {
        name,
        address,
        allow,
        transport,
        tls_ca,
        numbers: numbers(key, &raw.number_format, &raw.country)?,
        priority: priority(&k("priority"), raw.priority)?,
        keepalive: keepalive(&k("keepalive"), &raw.keepalive)?,
    })
}

fn numbers(key: &str, format: &str, country: &str) -> Result<NumberPlan> {
    let format = match format {
        "e164" => NumberFormat::E164,
        "national" => NumberFormat::National,
        other => {
            let reason = format!("unknown number format '{other}' (expected e164 or national)");
            return Err(ConfigError::invalid(
                &format!("{key}.number_format"),
                reason,
            ));
        }
    };
    let country = if country.is_empty() {
        None
    } else if country.len() <= 3
        && country.chars().all(|c| c.is_ascii_digit())
        && !country.starts_with('0')
    {
        Some(country.to_owned())
    } else {
        let reason = format!("'{country}' is not a country code (1-3 digits, e.g. \"82\")");
        return Err(ConfigError::invalid(&format!("{key}.country"), reason));
    };
    if format == NumberFormat::National && country.is_none() {
        let reason = "number_format = \"national\" needs the trunk's country code, e.g. \"82\"";
        return Err(ConfigError::invalid(&format!("{key}.country"), reason));
    }
    Ok(NumberPlan { format, country })
}

fn priority(key: &str, value: i64) -> Result<u32> {
    u32::try_from(value)
        .ok()
        .filter(|p| *p <= 1_000_000)
        .ok_or_else(|| ConfigError::invalid(key, format!("{value} is not in 0..=1000000")))
}

fn keepalive(key: &str, value: &str) -> Result<Option<Duration>> {
    let d = duration(key, value)?;
    if d.is_zero() {
        return Ok(None);
    }
    if d < MIN_KEEPALIVE {
        let reason = format!("'{value}' is too short (at least 1s, or \"0s\" for none)");
        return Err(ConfigError::invalid(key, reason));
    }
    Ok(Some(d))
}
