//! The chain without the process environment or a home directory: the
//! environment is a map, the files are strings (or read errors).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::*;

const CREDS: &str = "/home/u/.aws/credentials";
const CONFIG: &str = "/home/u/.aws/config";

/// An environment and a file system, both in memory.
#[derive(Default)]
struct World {
    /// Variables.
    env: BTreeMap<String, String>,
    /// Path → contents (`Err`: unreadable).
    files: BTreeMap<PathBuf, Result<String, std::io::ErrorKind>>,
}

impl World {
    fn new() -> World {
        World::default().var("HOME", "/home/u")
    }

    fn var(mut self, k: &str, v: &str) -> World {
        self.env.insert(k.into(), v.into());
        self
    }

    fn file(mut self, path: &str, text: &str) -> World {
        self.files.insert(path.into(), Ok(text.into()));
        self
    }

    fn resolve(&self, config_region: Option<&str>) -> Result<Resolved, ProfileError> {
        let env = |k: &str| self.env.get(k).cloned();
        let read = |p: &Path| match self.files.get(p) {
            None => Ok(None),
            Some(Ok(t)) => Ok(Some(t.clone())),
            Some(Err(kind)) => Err(std::io::Error::from(*kind)),
        };
        resolve(&env, config_region, &read)
    }

    fn keys(&self) -> StaticKeys {
        self.resolve(None)
            .unwrap()
            .credentials
            .expect("no credentials")
    }
}

fn profile(name: &str, files: &[&str]) -> Source {
    Source::Profile {
        name: name.into(),
        files: files.iter().map(PathBuf::from).collect(),
    }
}

#[test]
fn environment_beats_the_files() {
    let w = World::new()
        .var("AWS_ACCESS_KEY_ID", "AKENV")
        .var("AWS_SECRET_ACCESS_KEY", "env-secret")
        .var("AWS_SESSION_TOKEN", "env-token")
        .file(
            CREDS,
            "[default]\naws_access_key_id = AKFILE\naws_secret_access_key = file-secret\n",
        );
    let k = w.keys();
    assert_eq!(k.source, Source::Environment);
    assert_eq!(k.key_id, "AKENV");
    assert_eq!(k.secret.expose(), "env-secret");
    assert_eq!(k.token.as_ref().map(AwsSecret::expose), Some("env-token"));
}

#[test]
fn environment_with_a_region_reads_no_file() {
    // An unreadable file would be an error if it were read.
    let mut w = World::new()
        .var("AWS_ACCESS_KEY_ID", "AKENV")
        .var("AWS_SECRET_ACCESS_KEY", "s")
        .var("AWS_PROFILE", "nowhere");
    w.files
        .insert(CREDS.into(), Err(std::io::ErrorKind::PermissionDenied));
    let r = w.resolve(Some("eu-west-1")).unwrap();
    assert_eq!(r.region, "eu-west-1");
    assert_eq!(r.credentials.unwrap().source, Source::Environment);
}

#[test]
fn half_a_pair_in_the_environment_is_an_error() {
    let w = World::new().var("AWS_ACCESS_KEY_ID", "AK");
    assert_eq!(
        w.resolve(None).unwrap_err(),
        ProfileError::PartialEnv {
            present: "AWS_ACCESS_KEY_ID",
            missing: "AWS_SECRET_ACCESS_KEY"
        }
    );
}

#[test]
fn default_profile_from_the_credentials_file() {
    let w = World::new().file(
        CREDS,
        "[default]\naws_access_key_id = AKDEF\naws_secret_access_key = sec/ret+1\n",
    );
    let k = w.keys();
    assert_eq!(k.source, profile("default", &[CREDS]));
    assert_eq!(
        (k.key_id.as_str(), k.secret.expose()),
        ("AKDEF", "sec/ret+1")
    );
    assert!(k.token.is_none());
}

#[test]
fn credentials_file_beats_config_file_key_by_key() {
    let w = World::new()
        .var("AWS_PROFILE", "work")
        .file(CREDS, "[work]\naws_secret_access_key = from-creds\n")
        .file(
            CONFIG,
            "[profile work]\naws_access_key_id = AKCONF\naws_secret_access_key = from-config\n\
             aws_session_token = tok\nregion = ap-northeast-2\n",
        );
    let r = w.resolve(None).unwrap();
    assert_eq!(r.region, "ap-northeast-2");
    let k = r.credentials.unwrap();
    assert_eq!(k.source, profile("work", &[CREDS, CONFIG]));
    assert_eq!(k.key_id, "AKCONF");
    assert_eq!(k.secret.expose(), "from-creds");
    assert_eq!(k.token.as_ref().map(AwsSecret::expose), Some("tok"));
}

#[test]
fn config_file_needs_the_profile_prefix_except_for_default() {
    let pair = "aws_access_key_id = AK\naws_secret_access_key = S\n";
    // A bare [work] in the config file is not the profile work.
    let bare = World::new()
        .var("AWS_PROFILE", "work")
        .file(CONFIG, &format!("[work]\n{pair}"));
    assert!(matches!(
        bare.resolve(None),
        Err(ProfileError::NoSuchProfile { .. })
    ));
    // [profile work] is, with any white space.
    let prefixed = World::new()
        .var("AWS_PROFILE", "work")
        .file(CONFIG, &format!("[ profile \t work ]\n{pair}"));
    assert_eq!(prefixed.keys().source, profile("work", &[CONFIG]));
    // [profile x] in the credentials file is a profile named "profile x".
    let in_creds = World::new()
        .var("AWS_PROFILE", "work")
        .file(CREDS, &format!("[profile work]\n{pair}"));
    assert!(matches!(
        in_creds.resolve(None),
        Err(ProfileError::NoSuchProfile { .. })
    ));
    // [default] and [profile default] are both the default in the config.
    for header in ["[default]", "[profile default]"] {
        let w = World::new().file(CONFIG, &format!("{header}\n{pair}"));
        assert_eq!(w.keys().source, profile("default", &[CONFIG]), "{header}");
    }
}

#[test]
fn a_named_profile_in_neither_file_is_an_error_naming_both() {
    let w = World::new().var("AWS_PROFILE", "ghost").file(
        CREDS,
        "[default]\naws_access_key_id = A\naws_secret_access_key = S\n",
    );
    let e = w.resolve(None).unwrap_err();
    assert_eq!(
        e,
        ProfileError::NoSuchProfile {
            profile: "ghost".into(),
            files: vec![CREDS.into(), CONFIG.into()],
        }
    );
    let text = e.to_string();
    assert!(text.contains("\"ghost\"") && text.contains(CREDS) && text.contains(CONFIG));
    assert!(
        text.contains(&format!("not in {CREDS} or {CONFIG}")),
        "{text}"
    );
}

#[test]
fn no_default_profile_leaves_it_to_object_store() {
    let none = World::new().resolve(None).unwrap();
    assert!(none.credentials.is_none());
    assert_eq!(none.region, DEFAULT_REGION);
    // A default profile with a region but no keys (an instance role).
    let region_only = World::new()
        .file(CONFIG, "[default]\nregion = eu-central-1\n")
        .resolve(None)
        .unwrap();
    assert!(region_only.credentials.is_none());
    assert_eq!(region_only.region, "eu-central-1");
    // No HOME and no variables: no files at all.
    let homeless = World::default().resolve(None).unwrap();
    assert!(homeless.credentials.is_none());
}

#[test]
fn a_named_profile_without_keys_is_an_error() {
    let w = World::new()
        .var("AWS_PROFILE", "r")
        .file(CONFIG, "[profile r]\nregion = eu-central-1\n");
    assert!(matches!(w.resolve(None), Err(ProfileError::NoKeys { .. })));
}

#[test]
fn half_a_pair_in_a_profile_is_an_error_without_the_value() {
    let w = World::new().file(CREDS, "[default]\naws_secret_access_key = TOPSECRET\n");
    let e = w.resolve(None).unwrap_err();
    assert_eq!(
        e,
        ProfileError::Partial {
            profile: "default".into(),
            files: vec![CREDS.into()],
            present: "aws_secret_access_key",
            missing: "aws_access_key_id",
        }
    );
    assert!(!e.to_string().contains("TOPSECRET"));
    assert!(!format!("{e:?}").contains("TOPSECRET"));
}

#[test]
fn unsupported_sources_are_errors() {
    for (key, line) in [
        ("credential_process", "credential_process = /bin/get-creds"),
        (
            "sso_start_url",
            "sso_start_url = https://x.awsapps.com/start",
        ),
        ("sso_session", "sso_session = corp"),
        ("role_arn", "role_arn = arn:aws:iam::1:role/r"),
        ("source_profile", "source_profile = base"),
        ("web_identity_token_file", "web_identity_token_file = /t"),
    ] {
        // Even next to static keys: the profile means something else.
        let w = World::new().var("AWS_PROFILE", "p").file(
            CONFIG,
            &format!("[profile p]\naws_access_key_id = A\naws_secret_access_key = S\n{line}\n"),
        );
        let e = w.resolve(None).unwrap_err();
        assert_eq!(
            e,
            ProfileError::Unsupported {
                profile: "p".into(),
                files: vec![CONFIG.into()],
                key: key.into(),
            },
            "{line}"
        );
        assert!(e.to_string().contains(key) && e.to_string().contains(CONFIG));
    }
}

#[test]
fn an_unreadable_file_is_an_error() {
    let mut w = World::new().file(CONFIG, "[default]\n");
    w.files
        .insert(CREDS.into(), Err(std::io::ErrorKind::PermissionDenied));
    match w.resolve(None).unwrap_err() {
        ProfileError::Unreadable { what, path, .. } => {
            assert_eq!((what, path), ("credentials", PathBuf::from(CREDS)));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn comments_whitespace_and_key_case() {
    let text = "# a comment\n; another\n\n  [default]   # trailing comment\n\
                \tAWS_Access_Key_ID=AKCASE ; mine\n\
                \taws_secret_access_key   =   a#b;c   # not part of it\n\
                \ts3 =\n    max_concurrent_requests = 10\n    aws_session_token = nested\n";
    let k = World::new().file(CREDS, text).keys();
    assert_eq!(k.key_id, "AKCASE");
    // `#` and `;` only start a comment after white space.
    assert_eq!(k.secret.expose(), "a#b;c");
    // Lines indented deeper than `s3 =` belong to it: no token here.
    assert!(k.token.is_none());
}

#[test]
fn section_names_are_case_sensitive_and_duplicates_merge() {
    let w = World::new().var("AWS_PROFILE", "Work").file(
        CREDS,
        "[work]\naws_access_key_id = lower\naws_secret_access_key = s\n\
         [Work]\naws_access_key_id = A1\n[other]\nx = y\n[Work]\naws_secret_access_key = S2\n",
    );
    let k = w.keys();
    assert_eq!((k.key_id.as_str(), k.secret.expose()), ("A1", "S2"));
}

#[test]
fn a_malformed_line_names_its_number_not_its_text() {
    let w = World::new().file(CREDS, "[default]\naws_access_key_id = A\nAKSECRETLINE\n");
    let e = w.resolve(None).unwrap_err();
    assert_eq!(
        e,
        ProfileError::Malformed {
            path: CREDS.into(),
            line: 3
        }
    );
    assert!(!e.to_string().contains("AKSECRETLINE"));
}

#[test]
fn file_variables_and_tilde() {
    let w = World::new()
        .var("AWS_SHARED_CREDENTIALS_FILE", "~/secrets/aws")
        .var("AWS_CONFIG_FILE", "/etc/ansim/aws-config")
        .file("/home/u/secrets/aws", "[default]\naws_access_key_id = A\n")
        .file(
            "/etc/ansim/aws-config",
            "[default]\naws_secret_access_key = S\n",
        );
    assert_eq!(
        w.keys().source,
        profile("default", &["/home/u/secrets/aws", "/etc/ansim/aws-config"])
    );
}

#[test]
fn region_order() {
    let w = World::new()
        .file(CONFIG, "[default]\nregion = from-profile\n")
        .var("AWS_DEFAULT_REGION", "from-default-region");
    assert_eq!(
        w.resolve(Some("from-config")).unwrap().region,
        "from-config"
    );
    assert_eq!(w.resolve(None).unwrap().region, "from-default-region");
    let w = w.var("AWS_REGION", "from-region");
    assert_eq!(w.resolve(None).unwrap().region, "from-region");
    let w = World::new().file(CONFIG, "[default]\nregion = from-profile\n");
    assert_eq!(w.resolve(None).unwrap().region, "from-profile");
}

#[test]
fn debug_never_shows_secrets() {
    let w = World::new()
        .var("AWS_ACCESS_KEY_ID", "AKIDVISIBLE")
        .var("AWS_SECRET_ACCESS_KEY", "SUPERSECRET")
        .var("AWS_SESSION_TOKEN", "TOKENSECRET");
    let shown = format!("{:?}", w.resolve(Some("r")).unwrap());
    for s in ["AKIDVISIBLE", "SUPERSECRET", "TOKENSECRET"] {
        assert!(!shown.contains(s), "{shown}");
    }
    assert!(shown.contains("<redacted>"));
}

#[test]
fn byte_order_mark_and_crlf() {
    let text = "\u{feff}[default]\r\naws_access_key_id = AKW\r\naws_secret_access_key = SW\r\n";
    let k = World::new().file(CREDS, text).keys();
    assert_eq!((k.key_id.as_str(), k.secret.expose()), ("AKW", "SW"));
}

#[test]
fn environment_keys_without_a_region_take_the_profiles_region() {
    let w = World::new()
        .var("AWS_ACCESS_KEY_ID", "AKENV")
        .var("AWS_SECRET_ACCESS_KEY", "s")
        .var("AWS_PROFILE", "p")
        // Its keys are unsupported, but only its region is wanted here.
        .file(
            CONFIG,
            "[profile p]\nregion = sa-east-1\ncredential_process = /bin/x\n",
        );
    let r = w.resolve(None).unwrap();
    assert_eq!(r.region, "sa-east-1");
    assert_eq!(r.credentials.unwrap().source, Source::Environment);
    // The files are read for the region, so a missing named profile stops
    // start-up here as everywhere.
    let w = w.var("AWS_PROFILE", "ghost");
    assert!(matches!(
        w.resolve(None),
        Err(ProfileError::NoSuchProfile { .. })
    ));
}
