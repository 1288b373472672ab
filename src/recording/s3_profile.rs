//! S3 credentials and region from the AWS environment and the shared
//! profile files, the part of the AWS credential chain `object_store` does
//! not have (it reads `AWS_*` variables and falls back to web identity,
//! ECS and instance metadata, but never `~/.aws/credentials` or
//! `~/.aws/config`).
//!
//! The chain, as the AWS CLI and SDKs walk it:
//!
//! 1. `AWS_ACCESS_KEY_ID` + `AWS_SECRET_ACCESS_KEY` (+ `AWS_SESSION_TOKEN`)
//!    in the environment. Only one of the two is an error.
//! 2. The profile `AWS_PROFILE` (default `default`) in the credentials file
//!    (`AWS_SHARED_CREDENTIALS_FILE`, default `~/.aws/credentials`,
//!    sections `[name]`) and the config file (`AWS_CONFIG_FILE`, default
//!    `~/.aws/config`, sections `[profile name]`, and `[default]`), key by
//!    key, the credentials file winning.
//! 3. Nothing found for the default profile: `object_store`'s own
//!    fallbacks (`credentials: None`).
//!
//! Whatever the chain cannot honour stops start-up with an error naming the
//! profile and the files, never a value: a named profile in neither file, a
//! profile with one key of the pair, a profile that wants
//! `credential_process`, SSO or an assumed role (`role_arn`,
//! `source_profile`, …: not supported here), a file that exists but cannot
//! be read. None of these falls through to instance metadata, which would
//! run the service under credentials nobody chose.
//!
//! The region: `[store.s3] region` if set, else `AWS_REGION` or
//! `AWS_DEFAULT_REGION`, else the profile's `region`, else `us-east-1`.
//! With keys and a region from the configuration or the environment the
//! files are not read at all; with keys but no region they are read for
//! the region only (the profile's credential keys are then not checked).
//!
//! Sans-IO: [`resolve`] takes the environment as a lookup and the files
//! through a read function, so tests need neither the process environment
//! nor a home directory. Secrets are held in [`AwsSecret`] (zeroized on
//! drop, `Debug` redacted, no `Display`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

/// The environment: a variable's value, or `None` when unset.
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Reads a whole file: `Ok(None)` when it does not exist.
pub type ReadFile<'a> = &'a dyn Fn(&Path) -> std::io::Result<Option<String>>;

/// The region requests are signed for when nothing names one.
pub const DEFAULT_REGION: &str = "us-east-1";

/// Profile keys that ask for a credential source this chain does not have.
const UNSUPPORTED: &[&str] = &[
    "credential_process",
    "credential_source",
    "role_arn",
    "source_profile",
    "web_identity_token_file",
];

/// A secret access key or session token. Zeroized on drop; `Debug` prints
/// `<redacted>`; there is no `Display`, so it cannot be formatted into a
/// log line or an error by accident.
pub struct AwsSecret(Zeroizing<String>);

impl AwsSecret {
    /// The secret itself, for the request signer only.
    pub(super) fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for AwsSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AwsSecret(<redacted>)")
    }
}

/// Where a set of credentials came from (logged at start-up).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`.
    Environment,
    /// A profile in the shared files.
    Profile {
        /// The profile's name.
        name: String,
        /// The files it was found in (credentials file first).
        files: Vec<PathBuf>,
    },
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Environment => f.write_str("the environment"),
            Source::Profile { name, files } => {
                write!(f, "profile {name:?} in {}", join(files))
            }
        }
    }
}

/// An access key: the id, its secret and an optional session token.
pub struct StaticKeys {
    /// `aws_access_key_id`. Not a secret by AWS's rules, still never logged.
    pub(super) key_id: String,
    /// `aws_secret_access_key`.
    pub(super) secret: AwsSecret,
    /// `aws_session_token`, for temporary credentials.
    pub(super) token: Option<AwsSecret>,
    /// Where they came from, for the start-up log and tests.
    pub source: Source,
}

impl std::fmt::Debug for StaticKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaticKeys")
            .field("key_id", &"<redacted>")
            .field("secret", &self.secret)
            .field("token", &self.token)
            .field("source", &self.source)
            .finish()
    }
}

/// What the chain found.
#[derive(Debug)]
pub struct Resolved {
    /// Static keys, or `None`: leave it to `object_store`'s fallbacks.
    pub credentials: Option<StaticKeys>,
    /// The region to sign for.
    pub region: String,
}

/// Why the chain stops start-up. Names profiles, files and keys; never a
/// value.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProfileError {
    /// One variable of the pair is set, the other not.
    #[error("{present} is set in the environment but {missing} is not")]
    PartialEnv {
        /// The variable that is set.
        present: &'static str,
        /// The one that is missing.
        missing: &'static str,
    },
    /// A file exists and cannot be read (permissions, not UTF-8, …).
    #[error("cannot read the AWS {what} file {}: {reason}", path.display())]
    Unreadable {
        /// `credentials` or `config`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error (its text holds no file contents).
        reason: String,
    },
    /// A line that is no section, no `key = value` and no comment.
    #[error("{}: line {line} is not a [section], key = value or comment", path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// Its 1-based line number (the line itself may hold a secret).
        line: usize,
    },
    /// `AWS_PROFILE` names a profile in neither file.
    #[error(
        "AWS_PROFILE names profile {profile:?}, which is not in {}",
        either(files)
    )]
    NoSuchProfile {
        /// The profile.
        profile: String,
        /// The files looked in.
        files: Vec<PathBuf>,
    },
    /// A profile named by `AWS_PROFILE` has no keys at all.
    #[error(
        "profile {profile:?} in {} has no aws_access_key_id / aws_secret_access_key",
        join(files)
    )]
    NoKeys {
        /// The profile.
        profile: String,
        /// The files it is in.
        files: Vec<PathBuf>,
    },
    /// A profile with one key of the pair.
    #[error(
        "profile {profile:?} in {} has {present} but no {missing}",
        join(files)
    )]
    Partial {
        /// The profile.
        profile: String,
        /// The files it is in.
        files: Vec<PathBuf>,
        /// The key it has.
        present: &'static str,
        /// The key it lacks.
        missing: &'static str,
    },
    /// A profile that asks for a credential source not supported here.
    #[error(
        "profile {profile:?} in {} uses {key}, which ansim does not support: \
         put aws_access_key_id / aws_secret_access_key in the profile or the environment",
        join(files)
    )]
    Unsupported {
        /// The profile.
        profile: String,
        /// The files it is in.
        files: Vec<PathBuf>,
        /// The key (`credential_process`, `sso_start_url`, `role_arn`, …).
        key: String,
    },
}

fn join(files: &[PathBuf]) -> String {
    let names: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
    match names.as_slice() {
        [] => "no file (HOME is not set)".into(),
        _ => names.join(" and "),
    }
}

/// `a or b`: the files a profile was looked for in.
fn either(files: &[PathBuf]) -> String {
    let names: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
    match names.as_slice() {
        [] => "any file (HOME is not set)".into(),
        _ => names.join(" or "),
    }
}

/// Reads `path` from the file system; a missing file is `Ok(None)`.
pub fn read_file(path: &Path) -> std::io::Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// A variable's value when set and not empty.
fn var(env: Env, name: &str) -> Option<String> {
    env(name).filter(|v| !v.trim().is_empty())
}

/// Walks the chain. `config_region` is `[store.s3] region` when set.
pub fn resolve(
    env: Env,
    config_region: Option<&str>,
    read: ReadFile,
) -> Result<Resolved, ProfileError> {
    let from_env = env_keys(env)?;
    let region = config_region
        .map(str::to_string)
        .or_else(|| var(env, "AWS_REGION"))
        .or_else(|| var(env, "AWS_DEFAULT_REGION"));
    // Keys and region both known: the files are not read at all.
    if let (Some(_), Some(known)) = (&from_env, &region) {
        let region = known.clone();
        return Ok(Resolved {
            credentials: from_env,
            region,
        });
    }
    let profile = load_profile(env, read)?;
    let region = region
        .or_else(|| profile.as_ref().and_then(|p| p.keys.get("region").cloned()))
        .unwrap_or_else(|| DEFAULT_REGION.to_string());
    let credentials = match (from_env, profile) {
        (Some(keys), _) => Some(keys),
        (None, Some(p)) => p.credentials()?,
        (None, None) => None,
    };
    Ok(Resolved {
        credentials,
        region,
    })
}

/// The environment's pair, if set.
fn env_keys(env: Env) -> Result<Option<StaticKeys>, ProfileError> {
    const ID: &str = "AWS_ACCESS_KEY_ID";
    const SECRET: &str = "AWS_SECRET_ACCESS_KEY";
    match (var(env, ID), var(env, SECRET)) {
        (Some(key_id), Some(secret)) => Ok(Some(StaticKeys {
            key_id,
            secret: AwsSecret(Zeroizing::new(secret)),
            token: var(env, "AWS_SESSION_TOKEN").map(|t| AwsSecret(Zeroizing::new(t))),
            source: Source::Environment,
        })),
        (Some(_), None) => Err(ProfileError::PartialEnv {
            present: ID,
            missing: SECRET,
        }),
        (None, Some(_)) => Err(ProfileError::PartialEnv {
            present: SECRET,
            missing: ID,
        }),
        (None, None) => Ok(None),
    }
}

/// A profile's keys merged from both files.
struct Profile {
    /// Its name.
    name: String,
    /// Whether `AWS_PROFILE` named it (an empty one is then an error).
    named: bool,
    /// The files it is in.
    files: Vec<PathBuf>,
    /// Lower-case key → value, the credentials file's winning.
    keys: BTreeMap<String, String>,
}

impl Profile {
    /// The profile's static keys; `None` for a default profile without any.
    fn credentials(mut self) -> Result<Option<StaticKeys>, ProfileError> {
        const ID: &str = "aws_access_key_id";
        const SECRET: &str = "aws_secret_access_key";
        if let Some(key) = self
            .keys
            .keys()
            .find(|k| UNSUPPORTED.contains(&k.as_str()) || k.starts_with("sso_"))
        {
            return Err(ProfileError::Unsupported {
                profile: self.name,
                files: self.files,
                key: key.clone(),
            });
        }
        let id = self.keys.remove(ID).filter(|v| !v.is_empty());
        let secret = self.keys.remove(SECRET).filter(|v| !v.is_empty());
        let token = self.keys.remove("aws_session_token");
        let (name, files) = (self.name, self.files);
        match (id, secret) {
            (Some(key_id), Some(secret)) => Ok(Some(StaticKeys {
                key_id,
                secret: AwsSecret(Zeroizing::new(secret)),
                token: token
                    .filter(|t| !t.is_empty())
                    .map(|t| AwsSecret(Zeroizing::new(t))),
                source: Source::Profile { name, files },
            })),
            (Some(_), None) => Err(ProfileError::Partial {
                profile: name,
                files,
                present: ID,
                missing: SECRET,
            }),
            (None, Some(_)) => Err(ProfileError::Partial {
                profile: name,
                files,
                present: SECRET,
                missing: ID,
            }),
            (None, None) if self.named => Err(ProfileError::NoKeys {
                profile: name,
                files,
            }),
            (None, None) => Ok(None),
        }
    }
}

/// The two files' paths: the variable, else under `$HOME/.aws`. A leading
/// `~/` is the home directory, as the AWS tools read it.
fn file_path(env: Env, variable: &str, default: &str) -> Option<PathBuf> {
    let home = var(env, "HOME");
    match var(env, variable) {
        Some(p) => match (p.strip_prefix("~/"), &home) {
            (Some(rest), Some(h)) => Some(Path::new(h).join(rest)),
            _ => Some(PathBuf::from(p)),
        },
        None => home.map(|h| Path::new(&h).join(".aws").join(default)),
    }
}

/// Which section layout a file has.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `[name]`.
    Credentials,
    /// `[profile name]`, and `[default]`.
    Config,
}

/// Finds the profile in both files. `None`: the default profile is in
/// neither (or there are no files).
fn load_profile(env: Env, read: ReadFile) -> Result<Option<Profile>, ProfileError> {
    let named = var(env, "AWS_PROFILE");
    let name = named.clone().unwrap_or_else(|| "default".into());
    let sources = [
        (
            "credentials",
            Kind::Credentials,
            file_path(env, "AWS_SHARED_CREDENTIALS_FILE", "credentials"),
        ),
        (
            "config",
            Kind::Config,
            file_path(env, "AWS_CONFIG_FILE", "config"),
        ),
    ];
    let mut looked = Vec::new();
    let mut files = Vec::new();
    let mut keys = BTreeMap::new();
    // The config file first, so the credentials file's keys overwrite.
    for (what, kind, path) in sources.into_iter().rev() {
        let Some(path) = path else { continue };
        looked.insert(0, path.clone());
        let text = read(&path).map_err(|e| ProfileError::Unreadable {
            what,
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let Some(text) = text else { continue };
        if let Some(section) = parse(&text, kind, &path)?.remove(&name) {
            files.insert(0, path);
            keys.extend(section);
        }
    }
    if files.is_empty() {
        return match named {
            Some(profile) => Err(ProfileError::NoSuchProfile {
                profile,
                files: looked,
            }),
            None => Ok(None),
        };
    }
    Ok(Some(Profile {
        name,
        named: named.is_some(),
        files,
        keys,
    }))
}

/// Profile name → its keys (lower case) → values.
type Sections = BTreeMap<String, BTreeMap<String, String>>;

/// Parses one file as the AWS SDKs do: `#` and `;` start comments (in a
/// value only after white space, so a value may contain them), keys are
/// case-insensitive, section names are not, a line indented deeper than
/// the property before it continues that property (nested `s3 =` blocks),
/// sections that are no profile (`[sso-session x]`, `[services x]`, or a
/// bare `[x]` in the config file) are skipped, a section seen twice is
/// merged. CRLF line ends and a leading byte-order mark are accepted.
fn parse(text: &str, kind: Kind, path: &Path) -> Result<Sections, ProfileError> {
    let mut sections = Sections::new();
    let mut current: Option<String> = None;
    // The indentation of the last property line, while in a section.
    let mut last_indent: Option<usize> = None;
    // A byte-order mark, as Windows editors write one.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    for (i, raw) in text.lines().enumerate() {
        let indent = raw.len() - raw.trim_start().len();
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if last_indent.is_some_and(|l| indent > l) {
            continue;
        }
        if let Some(header) = line.strip_prefix('[') {
            let Some((inside, _)) = header.split_once(']') else {
                return Err(malformed(path, i));
            };
            current = profile_name(inside.trim(), kind);
            last_indent = None;
            if let Some(name) = &current {
                sections.entry(name.clone()).or_default();
            }
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(malformed(path, i));
        };
        last_indent = Some(indent);
        if let Some(section) = current.as_ref().and_then(|n| sections.get_mut(n)) {
            section.insert(key.trim().to_ascii_lowercase(), strip_comment(value));
        }
    }
    Ok(sections)
}

fn malformed(path: &Path, index: usize) -> ProfileError {
    ProfileError::Malformed {
        path: path.to_path_buf(),
        line: index + 1,
    }
}

/// The profile a section header names, if it names one.
fn profile_name(inside: &str, kind: Kind) -> Option<String> {
    match kind {
        Kind::Credentials => Some(inside.to_string()).filter(|n| !n.is_empty()),
        Kind::Config if inside == "default" => Some(inside.to_string()),
        Kind::Config => inside
            .strip_prefix("profile")
            .filter(|rest| rest.starts_with([' ', '\t']))
            .map(|rest| rest.trim().to_string())
            .filter(|n| !n.is_empty()),
    }
}

/// The value without a trailing comment (`#` or `;` after white space).
fn strip_comment(value: &str) -> String {
    let bytes = value.as_bytes();
    let cut = (1..bytes.len())
        .find(|&i| {
            matches!(bytes.get(i), Some(b'#' | b';'))
                && bytes.get(i - 1).is_some_and(u8::is_ascii_whitespace)
        })
        .unwrap_or(bytes.len());
    value.get(..cut).unwrap_or(value).trim().to_string()
}

#[cfg(test)]
#[path = "s3_profile_tests.rs"]
mod tests;
