//! Parsers for the structured strings of the config file. Each returns the
//! reason for a rejection; `validate.rs` prefixes it with the key.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use ipnet::IpNet;

use super::{BlobLocation, DatabaseKind, KeyStoreLocation, ListenAddr, PortRange, Transport};

/// `udp:0.0.0.0:5060`, `tcp:[::]:5060`, `tls:0.0.0.0:5061`.
pub(crate) fn listen_addr(s: &str) -> Result<ListenAddr, String> {
    let expected = "expected transport:ip:port, e.g. udp:0.0.0.0:5060";
    let (transport, addr) = s
        .split_once(':')
        .ok_or_else(|| format!("'{s}': missing transport ({expected})"))?;
    let transport = match transport {
        "udp" => Transport::Udp,
        "tcp" => Transport::Tcp,
        "tls" => Transport::Tls,
        other => {
            return Err(format!(
                "'{s}': unknown transport '{other}' (expected udp, tcp or tls)"
            ));
        }
    };
    let addr = socket_addr(addr).map_err(|e| format!("'{s}': {e} ({expected})"))?;
    Ok(ListenAddr { transport, addr })
}

/// `ip:port` or `[ipv6]:port`.
pub(crate) fn socket_addr(s: &str) -> Result<SocketAddr, String> {
    s.parse()
        .map_err(|_| format!("invalid socket address '{s}' (expected ip:port or [ipv6]:port)"))
}

/// A bare IP address.
pub(crate) fn ip_addr(s: &str) -> Result<IpAddr, String> {
    s.parse().map_err(|_| format!("invalid IP address '{s}'"))
}

/// A CIDR (`10.0.0.0/8`) or a bare IP (taken as /32 or /128).
pub(crate) fn ip_net(s: &str) -> Result<IpNet, String> {
    if s.contains('/') {
        s.parse()
            .map_err(|_| format!("invalid CIDR '{s}' (expected e.g. 10.0.0.0/8 or 127.0.0.1)"))
    } else {
        ip_addr(s).map(IpNet::from)
    }
}

/// `first-last`, both >= 1024, at least 4 ports.
pub(crate) fn port_range(s: &str) -> Result<PortRange, String> {
    let (first, last) = s
        .split_once('-')
        .ok_or_else(|| format!("'{s}' is not a range (expected first-last, e.g. 20000-29999)"))?;
    let port = |p: &str| {
        p.trim()
            .parse::<u16>()
            .map_err(|_| format!("'{p}' is not a port number (0-65535)"))
    };
    let range = PortRange {
        first: port(first)?,
        last: port(last)?,
    };
    if range.first > range.last {
        return Err(format!("'{s}': first port is greater than last"));
    }
    if range.first < 1024 {
        return Err(format!("'{s}': ports below 1024 are reserved"));
    }
    if range.len() < 4 {
        return Err(format!("'{s}': need at least 4 ports (2 RTP/RTCP pairs)"));
    }
    Ok(range)
}

/// The scheme of a database URL, case-insensitively.
pub(crate) fn database_kind(url: &str) -> Result<DatabaseKind, String> {
    let expected = "expected sqlite:// or postgres://";
    let Some((scheme, _)) = url.split_once(':') else {
        return Err(format!("missing scheme, {expected}"));
    };
    match scheme.to_ascii_lowercase().as_str() {
        "sqlite" => Ok(DatabaseKind::Sqlite),
        "postgres" | "postgresql" if url[scheme.len()..].starts_with("://") => {
            Ok(DatabaseKind::Postgres)
        }
        "postgres" | "postgresql" => Err(format!("'{scheme}:' must be followed by //")),
        _ => Err(format!("unsupported scheme '{scheme}', {expected}")),
    }
}

/// `file://path` (relative or absolute) or `s3://bucket/prefix`.
pub(crate) fn blob_location(s: &str) -> Result<BlobLocation, String> {
    if let Some(path) = s.strip_prefix("file://") {
        if path.is_empty() {
            return Err("file:// needs a directory path".into());
        }
        return Ok(BlobLocation::File(PathBuf::from(path)));
    }
    if let Some(rest) = s.strip_prefix("s3://") {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        check_bucket(bucket)?;
        return Ok(BlobLocation::S3 {
            bucket: bucket.to_string(),
            prefix: prefix.trim_end_matches('/').to_string(),
        });
    }
    let scheme = s.split_once("://").map_or(s, |(scheme, _)| scheme);
    Err(format!(
        "unsupported location '{scheme}', expected file://<dir> or s3://<bucket>/<prefix>"
    ))
}

/// S3 bucket naming: 3-63 characters of `a-z 0-9 . -`.
fn check_bucket(bucket: &str) -> Result<(), String> {
    let ok_chars = bucket
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
    if (3..=63).contains(&bucket.len()) && ok_chars {
        Ok(())
    } else {
        Err(format!(
            "invalid S3 bucket name '{bucket}' (3-63 characters of a-z, 0-9, '.', '-')"
        ))
    }
}

/// `dir:<path>` or `pkcs11:<module>?slot=<n>[&pin-file=<path>]`.
pub(crate) fn key_store(s: &str) -> Result<KeyStoreLocation, String> {
    if let Some(path) = s.strip_prefix("dir:") {
        if path.is_empty() {
            return Err("dir: needs a directory path".into());
        }
        return Ok(KeyStoreLocation::Dir(PathBuf::from(path)));
    }
    if let Some(rest) = s.strip_prefix("pkcs11:") {
        return pkcs11(rest);
    }
    Err(format!(
        "unsupported key store '{s}', expected dir:<path> or pkcs11:<module>?slot=<n>&pin-file=<path>"
    ))
}

fn pkcs11(rest: &str) -> Result<KeyStoreLocation, String> {
    let (module, query) = rest.split_once('?').unwrap_or((rest, ""));
    if module.is_empty() {
        return Err("pkcs11: needs the module path".into());
    }
    let mut slot = None;
    let mut pin_file = None;
    for param in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = param.split_once('=').unwrap_or((param, ""));
        match (name, value) {
            (_, "") => return Err(format!("pkcs11 parameter '{name}' has no value")),
            ("slot", v) if slot.is_none() => {
                let n = v.parse::<u64>();
                slot = Some(n.map_err(|_| format!("pkcs11 slot '{v}' is not a number"))?);
            }
            ("pin-file", v) if pin_file.is_none() => pin_file = Some(PathBuf::from(v)),
            ("slot" | "pin-file", _) => return Err(format!("pkcs11 parameter '{name}' repeated")),
            _ => {
                return Err(format!(
                    "unknown pkcs11 parameter '{name}' (expected slot, pin-file)"
                ));
            }
        }
    }
    Ok(KeyStoreLocation::Pkcs11 {
        module: PathBuf::from(module),
        slot: slot.ok_or("pkcs11 key store needs ?slot=<n>")?,
        pin_file,
    })
}

/// Retention class names: `[a-z0-9-]{1,32}`.
pub(crate) fn is_class_name(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addrs() {
        let l = listen_addr("tcp:[::1]:5060").unwrap();
        assert_eq!(l.transport, Transport::Tcp);
        assert_eq!(l.addr, "[::1]:5060".parse().unwrap());
        assert!(listen_addr("sctp:0.0.0.0:5060").is_err());
        assert!(listen_addr("udp:0.0.0.0").is_err());
        assert!(listen_addr("0.0.0.0:5060").is_err());
        assert!(listen_addr("").is_err());
    }

    #[test]
    fn nets() {
        assert_eq!(ip_net("10.1.2.3").unwrap(), "10.1.2.3/32".parse().unwrap());
        assert_eq!(ip_net("::1").unwrap(), "::1/128".parse().unwrap());
        assert!(ip_net("10.0.0.0/33").is_err());
        assert!(ip_net("example.com").is_err());
    }

    #[test]
    fn port_ranges() {
        assert_eq!(
            port_range("20000-20003").unwrap(),
            PortRange {
                first: 20000,
                last: 20003
            }
        );
        for bad in [
            "20000",
            "20003-20000",
            "80-2000",
            "20000-20002",
            "x-y",
            "1-70000",
        ] {
            assert!(port_range(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn database_kinds() {
        assert_eq!(database_kind("sqlite::memory:"), Ok(DatabaseKind::Sqlite));
        assert_eq!(database_kind("SQLite://x.db"), Ok(DatabaseKind::Sqlite));
        assert_eq!(
            database_kind("postgresql://u@h/db"),
            Ok(DatabaseKind::Postgres)
        );
        assert!(database_kind("postgres:u@h").is_err());
        assert!(database_kind("data/ansim.db").is_err());
    }

    #[test]
    fn blob_locations() {
        assert_eq!(
            blob_location("file:///var/rec").unwrap(),
            BlobLocation::File("/var/rec".into())
        );
        assert_eq!(
            blob_location("s3://my-bucket").unwrap(),
            BlobLocation::S3 {
                bucket: "my-bucket".into(),
                prefix: String::new()
            }
        );
        assert_eq!(
            blob_location("s3://b.x/a/b/").unwrap(),
            BlobLocation::S3 {
                bucket: "b.x".into(),
                prefix: "a/b".into()
            }
        );
        for bad in [
            "file://",
            "s3://",
            "s3://UPPER/x",
            "data/recordings",
            "gs://b/p",
        ] {
            assert!(blob_location(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn key_stores() {
        assert_eq!(
            key_store("pkcs11:/lib/p.so?slot=3&pin-file=/run/pin").unwrap(),
            KeyStoreLocation::Pkcs11 {
                module: "/lib/p.so".into(),
                slot: 3,
                pin_file: Some("/run/pin".into())
            }
        );
        for bad in [
            "dir:",
            "pkcs11:",
            "pkcs11:/m.so",
            "pkcs11:/m.so?slot=x",
            "pkcs11:/m.so?slot=1&slot=2",
            "pkcs11:/m.so?slot=1&pin=1234",
            "pkcs11:/m.so?slot=",
            "file:/x",
        ] {
            assert!(key_store(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn class_names() {
        assert!(is_class_name("dispute-3y"));
        assert!(!is_class_name(""));
        assert!(!is_class_name("Ad"));
        assert!(!is_class_name(&"a".repeat(33)));
    }
}
