//! ansim configuration: `config/ansim.toml` plus `ANSIM_<SECTION>__<KEY>`
//! environment overrides, validated into typed values at start-up.
//!
//! Pipeline: TOML text → `toml::Table` → schema check (unknown keys, wrong
//! types) → environment overrides → schema check again (blaming the
//! variable) → [`RawConfig`] → [`validate`] → [`Config`]. Every section and
//! key has a development default, so an empty file is valid.

mod env;
mod error;
pub mod node;
mod parse;
pub mod raw;
#[cfg(test)]
mod rules_tests;
mod schema;
#[cfg(test)]
mod tests;
mod trunks;
mod types;
mod validate;
pub mod webhooks;

use std::path::Path;

pub use error::ConfigError;
pub use raw::RawConfig;
pub use types::*;
pub use validate::validate;

/// Where [`Config::load`] looks when no path is given.
pub const DEFAULT_PATH: &str = "config/ansim.toml";

/// Origin name used in syntax errors for [`Config::from_toml_str`].
const STRING_ORIGIN: &str = "<string>";

impl Config {
    /// Loads the configuration.
    ///
    /// `Some(path)`: that file must exist. `None`: [`DEFAULT_PATH`] if it
    /// exists, otherwise the built-in development defaults. In both cases
    /// `ANSIM_*` overrides from `env` are applied (pass [`process_env`]).
    pub fn load(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        load_with_default(path, Path::new(DEFAULT_PATH), env)
    }

    /// Parses `s` as the config file and applies `ANSIM_*` overrides.
    pub fn from_toml_str(
        s: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        from_source(s, STRING_ORIGIN, env)
    }
}

/// The process environment, skipping variables that are not valid UTF-8
/// (unlike `std::env::vars`, which panics on them).
pub fn process_env() -> impl Iterator<Item = (String, String)> {
    std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
}

/// [`Config::load`] with the fallback path as a parameter (for tests).
fn load_with_default(
    path: Option<&Path>,
    default_path: &Path,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, ConfigError> {
    let (path, required) = match path {
        Some(p) => (p, true),
        None => (default_path, false),
    };
    match std::fs::read_to_string(path) {
        Ok(text) => from_source(&text, &path.display().to_string(), env),
        Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => {
            from_source("", STRING_ORIGIN, env)
        }
        Err(source) => Err(ConfigError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

fn from_source(
    text: &str,
    origin: &str,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, ConfigError> {
    let mut doc: toml::Table = text
        .parse()
        .map_err(|e| ConfigError::syntax(origin, text, &e))?;
    schema::check(&doc)?;
    fill_defaults(&mut doc);
    let overrides = env::collect(env)?;
    env::apply(&mut doc, &overrides)?;
    let blame = |e| env::blame(e, &overrides);
    schema::check(&doc).map_err(blame)?;
    let raw: RawConfig = toml::Value::Table(doc)
        .try_into()
        .map_err(|e: toml::de::Error| ConfigError::invalid("(document)", e.message()))?;
    validate(raw).map_err(blame)
}

/// Adds every section and key missing from `doc` with its default value, so
/// that an override of one entry of a map (`ANSIM_RETENTION__CLASSES__AD-6M`)
/// keeps the other default entries. A key present in the file replaces its
/// default as a whole (a `classes` table in the file is the full set).
fn fill_defaults(doc: &mut toml::Table) {
    let Ok(defaults) = toml::Table::try_from(RawConfig::default()) else {
        return; // cannot happen: RawConfig always serializes; serde defaults apply then
    };
    for (section, default) in defaults {
        // `[[trunks]]` replaces the default `[trunk]`.
        if section == "trunk" && doc.contains_key("trunks") {
            continue;
        }
        let toml::Value::Table(default) = default else {
            continue;
        };
        let entry = doc
            .entry(section)
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if let toml::Value::Table(table) = entry {
            for (key, value) in default {
                table.entry(key).or_insert(value);
            }
        }
    }
}
