//! The shape of the config document: which tables and keys exist and what
//! TOML type each key has. Checked on the merged `toml::Table` (file plus
//! environment) before deserializing, so errors name `section.key` exactly.

use toml::{Table, Value};

use super::ConfigError;

/// What a key holds.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Kind {
    Str,
    Bool,
    Int,
    StrList,
    /// A table with free-form keys and string values (`retention.classes`).
    StrMap,
    Table(&'static [Field]),
    /// An array of tables (`[[trunks]]`).
    TableList(&'static [Field]),
}

/// A named key.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Field {
    pub name: &'static str,
    pub kind: Kind,
}

const fn f(name: &'static str, kind: Kind) -> Field {
    Field { name, kind }
}

use Kind::{Bool, Int, Str, StrList, StrMap};

const TLS: &[Field] = &[f("cert", Str), f("key", Str)];

/// The keys of `[trunk]` and of each `[[trunks]]` entry.
const TRUNK: &[Field] = &[
    f("name", Str),
    f("address", Str),
    f("allow", StrList),
    f("transport", Str),
    f("tls_ca", Str),
    f("number_format", Str),
    f("country", Str),
    f("priority", Int),
    f("keepalive", Str),
];

/// The whole document.
pub(crate) const ROOT: &[Field] = &[
    f(
        "sip",
        Kind::Table(&[
            f("listen", StrList),
            f("domain", Str),
            f("no_answer_timeout", Str),
            f("max_call_duration", Str),
            f("outsider_replies_per_second", Int),
            f("max_tcp_connections", Int),
            f("tcp_idle_timeout", Str),
            f("max_message_size", Int),
            f("session_expires", Str),
            f("min_session_expires", Str),
            f("dialog_probe_interval", Str),
            f("shards", Int),
            f("drain_timeout", Str),
            f("tls", Kind::Table(TLS)),
        ]),
    ),
    f("trunk", Kind::Table(TRUNK)),
    f("trunks", Kind::TableList(TRUNK)),
    f(
        "media",
        Kind::Table(&[
            f("bind", Str),
            f("advertise", Str),
            f("ports", Str),
            f("announcement", Str),
            f("source", Str),
            f("learn_window", Str),
            f("workers", Int),
            f("io", Str),
        ]),
    ),
    f(
        "routing",
        Kind::Table(&[
            f("unknown_caller_status", Int),
            f("quarantine", Str),
            f("default_ttl", Str),
            f("max_ttl", Str),
            f("route_cache_ttl", Str),
            f("out_of_session", Str),
            f("out_of_session_announcement", Str),
            f("out_of_session_announce", Str),
            f("fallback_number", Str),
            f("fallback_record", Bool),
        ]),
    ),
    f(
        "store",
        Kind::Table(&[
            f("database_url", Str),
            f("recordings", Str),
            f(
                "s3",
                Kind::Table(&[
                    f("endpoint", Str),
                    f("region", Str),
                    f("path_style", Bool),
                    f("spool", Str),
                ]),
            ),
        ]),
    ),
    f(
        "keys",
        Kind::Table(&[f("master_key_file", Str), f("store", Str), f("dev", Bool)]),
    ),
    f(
        "retention",
        Kind::Table(&[
            f("default_class", Str),
            f("classes", StrMap),
            f("legally_required", StrList),
            f("epoch", Str),
            f("sweep_interval", Str),
            f("personal_data", Str),
        ]),
    ),
    f(
        "api",
        Kind::Table(&[
            f("listen", Str),
            f("four_eyes", Bool),
            f("grant_ttl", Str),
            f("tls", Kind::Table(TLS)),
            f("allow_plain_http", Bool),
            f("header_timeout", Str),
            f("body_limit", Int),
            f("max_connections", Int),
            f("auth_failures_per_minute", Int),
        ]),
    ),
    f(
        "limits",
        Kind::Table(&[
            f("max_calls", Int),
            f("max_transactions", Int),
            f("max_lingering_transactions", Int),
            f("inbound_queue", Int),
        ]),
    ),
    f("webhooks", Kind::Table(super::webhooks::FIELDS)),
    f("node", Kind::Table(super::node::FIELDS)),
];

/// Checks every key of `table` (the document root) against [`ROOT`].
pub(crate) fn check(table: &Table) -> Result<(), ConfigError> {
    check_table(table, ROOT, "")
}

/// Looks up the kind of the key at `path` (lowercase segments); `Err` is the
/// unknown key error, or an error for a path through a non-table key.
pub(crate) fn lookup(path: &[String]) -> Result<Kind, ConfigError> {
    let mut fields = ROOT;
    let mut kind = Kind::Table(ROOT);
    for (depth, segment) in path.iter().enumerate() {
        let section = path[..depth].join(".");
        kind = match kind {
            Kind::Table(_) => match fields.iter().find(|f| f.name == segment) {
                Some(field) => field.kind,
                None => return Err(unknown(&section, segment)),
            },
            Kind::StrMap => Str,
            _ => {
                return Err(ConfigError::invalid(
                    &section,
                    format!("is not a table, cannot set '{segment}' in it"),
                ));
            }
        };
        if let Kind::Table(inner) = kind {
            fields = inner;
        }
    }
    Ok(kind)
}

fn unknown(section: &str, key: &str) -> ConfigError {
    ConfigError::UnknownKey {
        section: section.to_string(),
        key: key.to_string(),
    }
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

fn check_table(table: &Table, fields: &[Field], section: &str) -> Result<(), ConfigError> {
    for (key, value) in table {
        let field = fields
            .iter()
            .find(|f| f.name == key)
            .ok_or_else(|| unknown(section, key))?;
        check_value(value, field.kind, &join(section, key))?;
    }
    Ok(())
}

fn check_value(value: &Value, kind: Kind, key: &str) -> Result<(), ConfigError> {
    match (kind, value) {
        (Str, Value::String(_)) | (Bool, Value::Boolean(_)) | (Int, Value::Integer(_)) => Ok(()),
        (StrList, Value::Array(items)) => items
            .iter()
            .enumerate()
            .try_for_each(|(i, item)| check_value(item, Str, &format!("{key}[{i}]"))),
        (StrMap, Value::Table(map)) => map
            .iter()
            .try_for_each(|(k, v)| check_value(v, Str, &join(key, k))),
        (Kind::Table(fields), Value::Table(table)) => check_table(table, fields, key),
        (Kind::TableList(fields), Value::Array(items)) => {
            items.iter().enumerate().try_for_each(|(i, item)| {
                check_value(item, Kind::Table(fields), &format!("{key}[{i}]"))
            })
        }
        (kind, value) => Err(ConfigError::Type {
            key: key.to_string(),
            expected: expected(kind),
            found: describe(value),
        }),
    }
}

fn expected(kind: Kind) -> &'static str {
    match kind {
        Str => "a string",
        Bool => "a boolean (true or false)",
        Int => "an integer",
        StrList => "an array of strings",
        StrMap => "a table of strings",
        Kind::Table(_) => "a table",
        Kind::TableList(_) => "an array of tables ([[section]])",
    }
}

fn describe(value: &Value) -> String {
    let type_name = value.type_str();
    match value {
        Value::Array(_) | Value::Table(_) => type_name.to_string(),
        _ => {
            let mut shown = value.to_string();
            if shown.chars().count() > 40 {
                shown = shown.chars().take(40).collect::<String>() + "…";
            }
            format!("{type_name} {shown}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::raw::{RawConfig, RawTls};
    use super::*;

    /// A raw config with every optional table present, as a TOML table.
    fn full_raw_table() -> Table {
        let tls = RawTls {
            cert: Some("c".into()),
            key: Some("k".into()),
        };
        let mut raw = RawConfig::default();
        raw.sip.tls = Some(tls.clone());
        raw.api.tls = Some(tls);
        raw.limits.max_calls = Some(1);
        raw.retention.legally_required = Some(Vec::new());
        let trunk = super::super::raw::RawTrunk {
            name: "t".into(),
            tls_ca: Some("ca.pem".into()),
            ..Default::default()
        };
        raw.trunk = Some(trunk.clone());
        raw.trunks = Some(vec![trunk]);
        raw.webhooks.events = Some(Vec::new());
        Table::try_from(raw).expect("serializes")
    }

    fn same_keys(table: &Table, fields: &[Field], at: &str) {
        let mut from_serde: Vec<&str> = table.keys().map(String::as_str).collect();
        let mut from_schema: Vec<&str> = fields.iter().map(|f| f.name).collect();
        from_serde.sort_unstable();
        from_schema.sort_unstable();
        assert_eq!(from_serde, from_schema, "keys of [{at}]");
        for field in fields {
            match (field.kind, table.get(field.name)) {
                (Kind::Table(inner), Some(Value::Table(t))) => same_keys(t, inner, field.name),
                (Kind::TableList(inner), Some(Value::Array(items))) => {
                    for item in items {
                        let t = item.as_table().expect("a table");
                        same_keys(t, inner, field.name);
                    }
                }
                _ => {}
            }
        }
    }

    #[test]
    fn schema_matches_raw_structs() {
        let table = full_raw_table();
        same_keys(&table, ROOT, "");
        check(&table).expect("serialized defaults pass the schema");
    }

    #[test]
    fn wrong_types_name_the_key() {
        let table: Table = "[api]\nfour_eyes = \"maybe\"".parse().unwrap();
        let err = check(&table).unwrap_err();
        assert_eq!(
            err.to_string(),
            "api.four_eyes: expected a boolean (true or false), found string \"maybe\""
        );
        let table: Table = "[sip]\nlisten = [\"udp:1.2.3.4:5\", 5]".parse().unwrap();
        let err = check(&table).unwrap_err();
        assert_eq!(err.key().as_deref(), Some("sip.listen[1]"));
        let table: Table = "sip = 5".parse().unwrap();
        assert_eq!(check(&table).unwrap_err().key().as_deref(), Some("sip"));
    }

    #[test]
    fn unknown_nested_key_names_its_table() {
        let table: Table = "[api.tls]\ncert = \"c\"\nkee = \"k\"".parse().unwrap();
        assert_eq!(
            check(&table).unwrap_err().to_string(),
            "unknown key 'kee' in [api.tls]"
        );
    }

    #[test]
    fn lookup_follows_paths() {
        let path = |s: &str| s.split('.').map(String::from).collect::<Vec<_>>();
        assert!(matches!(lookup(&path("api.tls.cert")), Ok(Kind::Str)));
        assert!(matches!(
            lookup(&path("retention.classes.x")),
            Ok(Kind::Str)
        ));
        assert!(lookup(&path("store.databse_url")).is_err());
        assert!(lookup(&path("sip.domain.x")).is_err());
        assert!(lookup(&path("nope.x")).is_err());
        assert!(matches!(lookup(&path("trunks")), Ok(Kind::TableList(_))));
        assert!(lookup(&path("trunks.address")).is_err());
    }

    #[test]
    fn trunk_entries_are_checked_by_index() {
        let table: Table = "[[trunks]]\nname = \"a\"\n[[trunks]]\nadress = \"x\""
            .parse()
            .unwrap();
        assert_eq!(
            check(&table).unwrap_err().to_string(),
            "unknown key 'adress' in [trunks[1]]"
        );
        let table: Table = "trunks = 5".parse().unwrap();
        assert_eq!(check(&table).unwrap_err().key().as_deref(), Some("trunks"));
    }
}
