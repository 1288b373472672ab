//! `ANSIM_<SECTION>__<KEY>[__<SUBKEY>]` environment overrides.
//!
//! Names: the `ANSIM_` prefix is case-sensitive; the rest is split on `__`
//! and each segment lowercased (`ANSIM_API__TLS__CERT` sets `api.tls.cert`).
//! `ANSIM_` variables without `__` (e.g. `ANSIM_LOG`) belong to other tools
//! and are ignored, as is everything without the prefix.
//!
//! Values: parsed as a TOML value when they parse as a boolean, integer,
//! array, inline table or quoted string; anything else (and anything for a
//! string-valued key) is taken as the literal string, so
//! `ANSIM_STORE__DATABASE_URL=postgres://u@h/db` needs no quotes.

use std::collections::BTreeMap;

use toml::{Table, Value};

use super::ConfigError;
use super::schema::{self, Kind};

const PREFIX: &str = "ANSIM_";

/// One variable that applies to the config.
#[derive(Debug, Clone)]
pub(crate) struct EnvOverride {
    /// The variable name as given.
    pub var: String,
    /// Lowercased key path, e.g. `["api", "tls", "cert"]`.
    pub path: Vec<String>,
    /// The value to set.
    pub value: Value,
}

/// Picks the `ANSIM_*__*` variables out of `env`, in name order, checking
/// each path against the schema.
pub(crate) fn collect(
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Vec<EnvOverride>, ConfigError> {
    let ours: BTreeMap<String, String> = env
        .into_iter()
        .filter(|(name, _)| name.starts_with(PREFIX) && name.contains("__"))
        .collect();
    let mut out: Vec<EnvOverride> = Vec::with_capacity(ours.len());
    for (var, raw) in ours {
        let path = split_name(&var)?;
        if let Some(other) = out.iter().find(|o| o.path == path) {
            return Err(ConfigError::EnvName {
                reason: format!("sets the same key as {}", other.var),
                var,
            });
        }
        let kind = schema::lookup(&path).map_err(|e| blame_on(&var, e))?;
        let value = parse_value(&raw, kind);
        out.push(EnvOverride { var, path, value });
    }
    Ok(out)
}

/// `ANSIM_API__TLS__CERT` → `["api", "tls", "cert"]`.
fn split_name(var: &str) -> Result<Vec<String>, ConfigError> {
    let rest = var.strip_prefix(PREFIX).unwrap_or(var);
    let path: Vec<String> = rest.split("__").map(str::to_lowercase).collect();
    if path.iter().any(String::is_empty) {
        return Err(ConfigError::EnvName {
            var: var.to_string(),
            reason: "empty section or key (expected ANSIM_<SECTION>__<KEY>)".into(),
        });
    }
    Ok(path)
}

/// Interprets a variable's value for a key of kind `kind` (see module docs).
fn parse_value(raw: &str, kind: Kind) -> Value {
    let literal = || Value::String(raw.to_string());
    match raw.parse::<Value>() {
        Ok(v @ Value::String(_)) => v,
        Ok(_) if matches!(kind, Kind::Str) => literal(),
        Ok(v @ (Value::Boolean(_) | Value::Integer(_) | Value::Array(_) | Value::Table(_))) => v,
        Ok(Value::Float(_) | Value::Datetime(_)) | Err(_) => literal(),
    }
}

/// Sets every override in `doc`, creating missing tables on the way.
pub(crate) fn apply(doc: &mut Table, overrides: &[EnvOverride]) -> Result<(), ConfigError> {
    for o in overrides {
        set(doc, o)?;
    }
    Ok(())
}

fn set(doc: &mut Table, o: &EnvOverride) -> Result<(), ConfigError> {
    let Some((last, parents)) = o.path.split_last() else {
        return Ok(());
    };
    let mut table = doc;
    for (depth, segment) in parents.iter().enumerate() {
        let entry = table
            .entry(segment.clone())
            .or_insert_with(|| Value::Table(Table::new()));
        table = match entry {
            Value::Table(t) => t,
            _ => {
                return Err(ConfigError::EnvName {
                    var: o.var.clone(),
                    reason: format!("{} is not a table", o.path[..=depth].join(".")),
                });
            }
        };
    }
    table.insert(last.clone(), o.value.clone());
    Ok(())
}

/// Wraps `err` in [`ConfigError::Env`] when its key was set (or lies inside
/// a table set) by one of `overrides`; the most specific variable wins.
pub(crate) fn blame(err: ConfigError, overrides: &[EnvOverride]) -> ConfigError {
    let Some(key) = err.key() else {
        return err;
    };
    let culprit = overrides
        .iter()
        .filter(|o| covers(&o.path.join("."), &key))
        .max_by_key(|o| o.path.len());
    match culprit {
        Some(o) => blame_on(&o.var, err),
        None => err,
    }
}

/// Whether the override of `path` explains an error at `key`
/// (`api.tls` covers `api.tls`, `api.tls.cert` and `sip.listen` covers
/// `sip.listen[1]`).
fn covers(path: &str, key: &str) -> bool {
    match key.strip_prefix(path) {
        Some(rest) => rest.is_empty() || rest.starts_with('.') || rest.starts_with('['),
        None => false,
    }
}

fn blame_on(var: &str, err: ConfigError) -> ConfigError {
    ConfigError::Env {
        var: var.to_string(),
        source: Box::new(err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn ignores_foreign_and_plain_ansim_vars() {
        let got = collect(vars(&[
            ("PATH", "/bin"),
            ("ANSIM_LOG", "debug"),
            ("XANSIM_STORE__DATABASE_URL", "x"),
        ]))
        .unwrap();
        assert!(got.is_empty());
    }

    #[test]
    fn values_are_typed_by_toml_or_literal() {
        let got = collect(vars(&[
            ("ANSIM_API__FOUR_EYES", "false"),
            ("ANSIM_ROUTING__UNKNOWN_CALLER_STATUS", "480"),
            ("ANSIM_SIP__LISTEN", r#"["udp:127.0.0.1:5070"]"#),
            ("ANSIM_SIP__DOMAIN", "12345"),
            ("ANSIM_STORE__DATABASE_URL", "postgres://u@h/db"),
            ("ANSIM_MEDIA__BIND", "\"10.0.0.1\""),
        ]))
        .unwrap();
        let value = |var: &str| got.iter().find(|o| o.var == var).unwrap().value.clone();
        assert_eq!(value("ANSIM_API__FOUR_EYES"), Value::Boolean(false));
        assert_eq!(
            value("ANSIM_ROUTING__UNKNOWN_CALLER_STATUS"),
            Value::Integer(480)
        );
        assert!(matches!(value("ANSIM_SIP__LISTEN"), Value::Array(_)));
        assert_eq!(value("ANSIM_SIP__DOMAIN"), Value::String("12345".into()));
        assert_eq!(
            value("ANSIM_STORE__DATABASE_URL"),
            Value::String("postgres://u@h/db".into())
        );
        assert_eq!(value("ANSIM_MEDIA__BIND"), Value::String("10.0.0.1".into()));
    }

    #[test]
    fn bad_names_are_errors() {
        let err = collect(vars(&[("ANSIM_STORE__", "x")])).unwrap_err();
        assert_eq!(err.env_var(), Some("ANSIM_STORE__"));
        let err = collect(vars(&[("ANSIM_STORE__DATABSE_URL", "x")])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "environment variable ANSIM_STORE__DATABSE_URL: unknown key 'databse_url' in [store]"
        );
        let err = collect(vars(&[("ANSIM_NOPE__X", "x")])).unwrap_err();
        assert_eq!(err.env_var(), Some("ANSIM_NOPE__X"));
        let err = collect(vars(&[("ANSIM_SIP__DOMAIN__X", "x")])).unwrap_err();
        assert_eq!(err.env_var(), Some("ANSIM_SIP__DOMAIN__X"));
    }

    #[test]
    fn same_key_twice_is_an_error() {
        let err = collect(vars(&[
            ("ANSIM_API__LISTEN", "a"),
            ("ANSIM_api__listen", "b"),
        ]));
        assert!(matches!(err, Err(ConfigError::EnvName { .. })));
    }

    #[test]
    fn path_through_a_scalar_is_an_error() {
        let overrides = collect(vars(&[
            ("ANSIM_API__TLS", "5"),
            ("ANSIM_API__TLS__CERT", "/x"),
        ]))
        .unwrap();
        let err = apply(&mut Table::new(), &overrides).unwrap_err();
        assert_eq!(err.env_var(), Some("ANSIM_API__TLS__CERT"));
    }

    #[test]
    fn covers_respects_segment_boundaries() {
        assert!(covers("sip.listen", "sip.listen"));
        assert!(covers("sip.listen", "sip.listen[0]"));
        assert!(covers("api.tls", "api.tls.cert"));
        assert!(!covers("api.tls", "api.tls_x"));
        assert!(!covers("api.tls.cert", "api.tls"));
    }
}
