//! Tests of loading, validation rules and environment overrides.

use std::io::Write as _;
use std::path::Path;
use std::time::Duration;

use super::*;

pub(super) const SHIPPED: &str =
    include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/config/ansim.toml"));

pub(super) fn no_env() -> Vec<(String, String)> {
    Vec::new()
}

pub(super) fn env(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Parses `toml` with no environment and returns the error.
pub(super) fn err(toml: &str) -> ConfigError {
    match Config::from_toml_str(toml, no_env()) {
        Ok(c) => panic!("expected an error for {toml:?}, got {c:?}"),
        Err(e) => e,
    }
}

/// Asserts that `toml` fails with an error about `key` whose message starts
/// with `key` and contains `needle`.
pub(super) fn assert_rejected(toml: &str, key: &str, needle: &str) {
    let e = err(toml);
    let msg = e.to_string();
    assert_eq!(e.key().as_deref(), Some(key), "{msg}");
    assert!(msg.starts_with(&format!("{key}: ")), "{msg}");
    assert!(msg.contains(needle), "{msg:?} lacks {needle:?}");
}

pub(super) fn with_env(toml: &str, vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
    Config::from_toml_str(toml, env(vars))
}

// ---- defaults and loading ----

#[test]
fn empty_file_gives_defaults() {
    assert_eq!(
        Config::from_toml_str("", no_env()).unwrap(),
        Config::default_dev()
    );
    let only_sections = "[sip]\n[trunk]\n[media]\n[routing]\n[store]\n[keys]\n[retention]\n[api]\n";
    assert_eq!(
        Config::from_toml_str(only_sections, no_env()).unwrap(),
        Config::default_dev()
    );
}

#[test]
fn raw_defaults_validate_to_default_dev() {
    assert_eq!(
        validate(RawConfig::default()).unwrap(),
        Config::default_dev()
    );
}

#[test]
fn shipped_file_equals_defaults() {
    let shipped: toml::Table = SHIPPED.parse().unwrap();
    let raw_defaults = toml::Table::try_from(RawConfig::default()).unwrap();
    assert_eq!(
        shipped, raw_defaults,
        "shipped file must list every default"
    );
    assert_eq!(
        Config::from_toml_str(SHIPPED, no_env()).unwrap(),
        Config::default_dev()
    );
}

#[test]
fn default_values() {
    let c = Config::default_dev();
    assert_eq!(c.sip.listen[0].to_string(), "udp:0.0.0.0:5060");
    assert_eq!(c.media.ports.len(), 10_000);
    assert_eq!(
        c.retention.period("dispute-3y"),
        Some(Duration::from_secs(1095 * 86_400))
    );
    assert_eq!(c.retention.period("nope"), None);
    assert!(c.retention.is_legally_required("contract-5y"));
    assert_eq!(c.routing.route_cache_ttl, Duration::from_secs(30));
    assert_eq!(c.api.grant_ttl, Duration::from_secs(4 * 3600));
    assert_eq!(c.api.header_timeout, Duration::from_secs(10));
    assert_eq!(c.api.body_limit, 1 << 20);
    assert_eq!(c.api.max_connections, 1024);
    assert_eq!(c.api.auth_failures_per_minute, 10);
}

#[test]
fn load_explicit_path() {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    writeln!(file, "[routing]\nunknown_caller_status = 480").unwrap();
    let c = Config::load(Some(file.path()), no_env()).unwrap();
    assert_eq!(c.routing.unknown_caller_status, 480);
}

#[test]
fn load_missing_explicit_path_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nope.toml");
    let e = Config::load(Some(&path), no_env()).unwrap_err();
    assert!(matches!(e, ConfigError::Io { .. }));
    assert!(e.to_string().contains(&path.display().to_string()), "{e}");
}

#[test]
fn load_without_path_falls_back_to_defaults_and_env() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("ansim.toml");
    let c = load_with_default(None, &missing, no_env()).unwrap();
    assert_eq!(c, Config::default_dev());
    let vars = env(&[("ANSIM_API__FOUR_EYES", "false")]);
    let c = load_with_default(None, &missing, vars).unwrap();
    assert!(!c.api.four_eyes);
}

#[test]
fn load_without_path_uses_default_file_when_present() {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    writeln!(file, "[sip]\ndomain = \"example.org\"").unwrap();
    let c = load_with_default(None, file.path(), no_env()).unwrap();
    assert_eq!(c.sip.domain, "example.org");
    // The real DEFAULT_PATH, if present in the working directory, is valid.
    assert!(Config::load(None, no_env()).is_ok());
    assert_eq!(DEFAULT_PATH, "config/ansim.toml");
    assert!(Path::new(DEFAULT_PATH).is_relative());
}

#[test]
fn toml_syntax_error_gives_line_and_column() {
    let e = err("[sip]\ndomain = \"a\"\nlisten = [\n[api]\n");
    let ConfigError::Syntax { line, column, .. } = &e else {
        panic!("expected a syntax error, got {e}");
    };
    assert_eq!((*line, *column), (4, 6), "{e}");
    assert!(
        e.to_string()
            .starts_with("<string>: TOML syntax error at line 4, column 6"),
        "{e}"
    );
}

#[test]
fn syntax_error_in_file_names_the_file() {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    writeln!(file, "[store\n").unwrap();
    let e = Config::load(Some(file.path()), no_env()).unwrap_err();
    assert!(
        e.to_string().contains(&file.path().display().to_string()),
        "{e}"
    );
    assert!(matches!(e, ConfigError::Syntax { line: 1, .. }), "{e}");
}

// ---- unknown keys and types ----

#[test]
fn unknown_key_in_file_names_key_and_section() {
    let e = err("[store]\ndatabse_url = \"sqlite://x\"");
    assert_eq!(e.to_string(), "unknown key 'databse_url' in [store]");
    assert_eq!(err("[stor]\nx = 1").to_string(), "unknown section [stor]");
    assert_eq!(
        err("[sip.tls]\ncert = \"c\"\nkey = \"k\"\npassword = \"p\"").to_string(),
        "unknown key 'password' in [sip.tls]"
    );
}

#[test]
fn unknown_key_via_env_names_the_variable() {
    let e = with_env("", &[("ANSIM_STORE__DATABSE_URL", "x")]).unwrap_err();
    assert_eq!(e.env_var(), Some("ANSIM_STORE__DATABSE_URL"));
    assert!(
        e.to_string()
            .contains("unknown key 'databse_url' in [store]"),
        "{e}"
    );
    let e = with_env("", &[("ANSIM_STOR__X", "x")]).unwrap_err();
    assert_eq!(e.env_var(), Some("ANSIM_STOR__X"));
    let e = with_env("", &[("ANSIM_API__TLS", "{ cert = \"c\", kee = \"k\" }")]).unwrap_err();
    assert_eq!(e.env_var(), Some("ANSIM_API__TLS"));
    assert!(
        e.to_string().contains("unknown key 'kee' in [api.tls]"),
        "{e}"
    );
}

#[test]
fn wrong_type_names_the_key() {
    let e = err("[api]\nfour_eyes = \"yes\"");
    assert_eq!(e.key().as_deref(), Some("api.four_eyes"));
    let e = err("[routing]\nquarantine = 30");
    assert_eq!(
        e.to_string(),
        "routing.quarantine: expected a string, found integer 30"
    );
}

// ---- environment overrides ----

#[test]
fn env_overrides_string_unquoted() {
    let c = with_env("", &[("ANSIM_STORE__DATABASE_URL", "postgres://u:pw@h/db")]).unwrap();
    assert_eq!(c.store.database_url.kind, DatabaseKind::Postgres);
    assert_eq!(c.store.database_url.url, "postgres://u:pw@h/db");
    assert!(
        !format!("{c:?}").contains("pw"),
        "Debug must hide the password"
    );
    assert_eq!(c.store.database_url.to_string(), "postgres://u:***@h/db");
}

#[test]
fn env_overrides_bool_integer_array() {
    let c = with_env(
        "[api]\nfour_eyes = true",
        &[
            ("ANSIM_API__FOUR_EYES", "false"),
            ("ANSIM_ROUTING__UNKNOWN_CALLER_STATUS", "480"),
            ("ANSIM_SIP__LISTEN", r#"["udp:127.0.0.1:5070"]"#),
            ("ANSIM_LOG", "debug"),
            ("PATH", "/usr/bin"),
        ],
    )
    .unwrap();
    assert!(!c.api.four_eyes);
    assert_eq!(c.routing.unknown_caller_status, 480);
    assert_eq!(c.sip.listen.len(), 1);
    assert_eq!(c.sip.listen[0].to_string(), "udp:127.0.0.1:5070");
}

#[test]
fn env_overrides_nested_key() {
    let c = with_env(
        "",
        &[
            ("ANSIM_API__TLS__CERT", "/x/cert.pem"),
            ("ANSIM_API__TLS__KEY", "/x/key.pem"),
            ("ANSIM_API__LISTEN", "0.0.0.0:8443"),
            ("ANSIM_RETENTION__CLASSES__AD-6M", "90d"),
        ],
    )
    .unwrap();
    let tls = c.api.tls.unwrap();
    assert_eq!(tls.cert, Path::new("/x/cert.pem"));
    assert_eq!(tls.key, Path::new("/x/key.pem"));
    assert_eq!(
        c.retention.period("ad-6m"),
        Some(Duration::from_secs(90 * 86_400))
    );
    assert_eq!(c.retention.classes.len(), 3);
}

#[test]
fn classes_in_file_replace_the_defaults() {
    let toml = "[retention]\nclasses = { x = \"1d\" }\ndefault_class = \"x\"";
    let c = Config::from_toml_str(toml, no_env()).unwrap();
    assert_eq!(c.retention.classes.len(), 1);
    let c = with_env(toml, &[("ANSIM_RETENTION__CLASSES__Y", "2d")]).unwrap();
    assert_eq!(c.retention.classes.len(), 2);
}

#[test]
fn env_bad_value_names_the_variable() {
    let e = with_env("", &[("ANSIM_API__FOUR_EYES", "maybe")]).unwrap_err();
    assert_eq!(e.env_var(), Some("ANSIM_API__FOUR_EYES"));
    assert!(
        e.to_string()
            .starts_with("environment variable ANSIM_API__FOUR_EYES: api.four_eyes:")
    );
    let e = with_env("", &[("ANSIM_ROUTING__QUARANTINE", "30x")]).unwrap_err();
    assert_eq!(e.env_var(), Some("ANSIM_ROUTING__QUARANTINE"));
    assert!(
        e.to_string()
            .contains("routing.quarantine: invalid duration '30x'"),
        "{e}"
    );
    let e = with_env("", &[("ANSIM_SIP__LISTEN", "udp:127.0.0.1:5070")]).unwrap_err();
    assert_eq!(e.env_var(), Some("ANSIM_SIP__LISTEN"));
    let e = with_env("", &[("ANSIM_SIP__LISTEN", "[\"bogus\"]")]).unwrap_err();
    assert_eq!(e.env_var(), Some("ANSIM_SIP__LISTEN"));
    assert_eq!(e.key().as_deref(), Some("sip.listen"));
}

#[test]
fn file_errors_are_not_blamed_on_unrelated_env() {
    let e = with_env(
        "[media]\nports = \"1-2\"",
        &[("ANSIM_API__FOUR_EYES", "false")],
    );
    let e = e.unwrap_err();
    assert_eq!(e.env_var(), None);
    assert_eq!(e.key().as_deref(), Some("media.ports"));
}
