//! `[node]`: which ansim node this process is, among several on one
//! database.
//!
//! Raw form, schema fields, typed form and validation in one place.

use serde::{Deserialize, Serialize};

use super::ConfigError;
use super::schema::{Field, Kind};

/// `[node]` as written.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawNode {
    /// The node's id; empty: the host name.
    pub id: String,
}

/// The schema of `[node]`.
pub(crate) const FIELDS: &[Field] = &[Field {
    name: "id",
    kind: Kind::Str,
}];

/// Longest node id: it goes into every call and recording row.
const MAX_ID_LEN: usize = 63;

/// `[node]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeConfig {
    /// This node's id: owns the calls and recordings it writes, and only
    /// those are reconciled at its start-up. `[A-Za-z0-9._-]`, 1–63 long.
    pub id: String,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self { id: host_name() }
    }
}

/// Validates `[node]`: an empty id becomes the host name.
pub(crate) fn validate(raw: RawNode) -> Result<NodeConfig, ConfigError> {
    if raw.id.is_empty() {
        return Ok(NodeConfig::default());
    }
    check_id(&raw.id).map_err(|why| ConfigError::invalid("node.id", why))?;
    Ok(NodeConfig { id: raw.id })
}

/// Whether `id` is a usable node id (letters, digits, `.`, `_`, `-`; at
/// most [`MAX_ID_LEN`] long).
fn check_id(id: &str) -> Result<(), String> {
    if id.len() > MAX_ID_LEN {
        return Err(format!("is longer than {MAX_ID_LEN} characters"));
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err("may hold only letters, digits, '.', '_' and '-'".into());
    }
    Ok(())
}

/// The host name, cut to a valid node id; `"ansim"` when it has none
/// usable (an empty or exotic host name).
fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: `buf` is writable for its whole length, which is passed.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let name = if rc == 0 {
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        String::from_utf8_lossy(&buf[..end]).into_owned()
    } else {
        String::new()
    };
    let name: String = name.chars().take(MAX_ID_LEN).collect();
    if name.is_empty() || check_id(&name).is_err() {
        "ansim".into()
    } else {
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_checked_and_default_to_the_host_name() {
        let ok = validate(RawNode {
            id: "n1.eu-west_2".into(),
        })
        .unwrap();
        assert_eq!(ok.id, "n1.eu-west_2");
        for bad in ["n 1", "n/1", "ü", &"x".repeat(64)] {
            let e = validate(RawNode { id: bad.into() }).unwrap_err();
            assert!(e.to_string().contains("node.id"), "{bad}: {e}");
        }
        let default = validate(RawNode::default()).unwrap();
        assert!(!default.id.is_empty());
        assert!(check_id(&default.id).is_ok());
    }
}
