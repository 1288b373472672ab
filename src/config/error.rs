//! Errors from loading and validating the configuration.

use std::path::PathBuf;

use crate::duration::DurationError;

/// Why the configuration could not be loaded. Every variant about a setting
/// names it as `section.key` (or `[section]`); environment problems name the
/// variable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read (missing, unreadable, not UTF-8).
    #[error("cannot read config file {}: {source}", path.display())]
    Io {
        /// The file that was asked for.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file is not valid TOML.
    #[error("{origin}: TOML syntax error at line {line}, column {column}: {message}")]
    Syntax {
        /// The file path, or `<string>` for [`super::Config::from_toml_str`].
        origin: String,
        /// 1-based line of the error.
        line: usize,
        /// 1-based column (in characters) of the error.
        column: usize,
        /// The parser's description.
        message: String,
    },
    /// A key that no setting has. `section` is empty for a top-level key.
    #[error("{}", unknown_key_message(section, key))]
    UnknownKey {
        /// Dotted table name, e.g. `store` or `api.tls`; empty at top level.
        section: String,
        /// The unknown key as written.
        key: String,
    },
    /// A value of the wrong TOML type (e.g. a string where a bool belongs).
    #[error("{key}: expected {expected}, found {found}")]
    Type {
        /// Dotted key, e.g. `api.four_eyes`.
        key: String,
        /// What the setting needs, e.g. `a boolean`.
        expected: &'static str,
        /// What was found, e.g. `string "maybe"`.
        found: String,
    },
    /// A duration setting that does not parse.
    #[error("{key}: invalid duration '{value}': {source}")]
    Duration {
        /// Dotted key, e.g. `routing.quarantine`.
        key: String,
        /// The value as written.
        value: String,
        /// What is wrong with it.
        source: DurationError,
    },
    /// A value of the right type that is not acceptable.
    #[error("{key}: {reason}")]
    Invalid {
        /// Dotted key, e.g. `store.database_url`.
        key: String,
        /// What is wrong and what is expected.
        reason: String,
    },
    /// An `ANSIM_*` variable whose name cannot be applied (empty segment,
    /// or a path through a value that is not a table).
    #[error("environment variable {var}: {reason}")]
    EnvName {
        /// The variable name as given.
        var: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An error caused by the value or name of an `ANSIM_*` variable.
    #[error("environment variable {var}: {source}")]
    Env {
        /// The variable name as given.
        var: String,
        /// The error its value caused.
        source: Box<ConfigError>,
    },
}

fn unknown_key_message(section: &str, key: &str) -> String {
    if section.is_empty() {
        format!("unknown section [{key}]")
    } else {
        format!("unknown key '{key}' in [{section}]")
    }
}

impl ConfigError {
    /// The dotted key this error is about (`store.database_url`), if any.
    pub fn key(&self) -> Option<String> {
        match self {
            Self::UnknownKey { section, key } if section.is_empty() => Some(key.clone()),
            Self::UnknownKey { section, key } => Some(format!("{section}.{key}")),
            Self::Type { key, .. } | Self::Duration { key, .. } | Self::Invalid { key, .. } => {
                Some(key.clone())
            }
            Self::Env { source, .. } => source.key(),
            Self::Io { .. } | Self::Syntax { .. } | Self::EnvName { .. } => None,
        }
    }

    /// The environment variable this error is blamed on, if any.
    pub fn env_var(&self) -> Option<&str> {
        match self {
            Self::Env { var, .. } | Self::EnvName { var, .. } => Some(var),
            _ => None,
        }
    }

    pub(crate) fn invalid(key: &str, reason: impl Into<String>) -> Self {
        Self::Invalid {
            key: key.to_string(),
            reason: reason.into(),
        }
    }

    /// Builds a [`ConfigError::Syntax`] from a TOML parse error on `text`.
    pub(crate) fn syntax(origin: &str, text: &str, err: &toml::de::Error) -> Self {
        let offset = err.span().map_or(0, |span| span.start);
        let (line, column) = line_column(text, offset);
        Self::Syntax {
            origin: origin.to_string(),
            line,
            column,
            message: err.message().trim().to_string(),
        }
    }
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut end = offset.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let before = &text[..end];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_column_counts_from_one() {
        assert_eq!(line_column("abc", 0), (1, 1));
        assert_eq!(line_column("a\nbc", 3), (2, 2));
        assert_eq!(line_column("é\nx", 1), (1, 1));
        assert_eq!(line_column("ab", 99), (1, 3));
    }

    #[test]
    fn messages_name_the_key() {
        let e = ConfigError::UnknownKey {
            section: "store".into(),
            key: "databse_url".into(),
        };
        assert_eq!(e.to_string(), "unknown key 'databse_url' in [store]");
        assert_eq!(e.key().as_deref(), Some("store.databse_url"));
        let e = ConfigError::UnknownKey {
            section: String::new(),
            key: "stor".into(),
        };
        assert_eq!(e.to_string(), "unknown section [stor]");
    }
}
