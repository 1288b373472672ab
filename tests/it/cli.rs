//! The `ansim` binary as an operator uses it.

use std::path::Path;
use std::process::{Command, Output};

use crate::harness::{Db, TestDb};

const BIN: &str = env!("CARGO_BIN_EXE_ansim");

/// Runs `ansim args…` in `dir` with only the given ANSIM_ variables.
fn ansim(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.current_dir(dir).args(args).env("ANSIM_LOG", "info");
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("ANSIM_")) {
        cmd.env_remove(k);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run ansim")
}

fn text(out: &[u8]) -> String {
    String::from_utf8_lossy(out).into_owned()
}

#[test]
fn help_lists_every_command_of_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let out = ansim(dir.path(), &[], &["--help"]);
    assert!(out.status.success());
    let help = text(&out.stdout);
    for cmd in [
        "serve",
        "migrate",
        "staff",
        "session",
        "recording",
        "retention",
        "audit",
        "keys",
    ] {
        assert!(
            help.lines().any(|l| l.trim_start().starts_with(cmd)),
            "{cmd} missing from\n{help}"
        );
    }
    for (group, sub) in [
        ("staff", "add"),
        ("session", "create"),
        ("recording", "export"),
        ("retention", "run"),
        ("audit", "verify"),
        ("keys", "status"),
    ] {
        let out = ansim(dir.path(), &[], &[group, "--help"]);
        assert!(
            text(&out.stdout)
                .lines()
                .any(|l| l.trim_start().starts_with(sub)),
            "{group} {sub}"
        );
    }
}

#[test]
fn configuration_errors_name_the_key_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bad.toml"),
        "[store]\ndatabse_url = \"sqlite://x.db\"\n",
    )
    .unwrap();
    let out = ansim(dir.path(), &[], &["--config", "bad.toml", "migrate"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("unknown key 'databse_url' in [store]"),
        "{}",
        text(&out.stderr)
    );

    let out = ansim(
        dir.path(),
        &[("ANSIM_ROUTING__QUARANTINE", "a month")],
        &["migrate"],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("ANSIM_ROUTING__QUARANTINE") && err.contains("routing.quarantine"),
        "{err}"
    );

    let out = ansim(dir.path(), &[], &["--config", "missing.toml", "migrate"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("missing.toml"));
}

#[test]
fn staff_and_sessions_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = ansim(
        d,
        &[],
        &["staff", "add", "--name", "ops", "--role", "admin"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let token = text(&out.stdout).trim().to_owned();
    assert!(token.starts_with("ansim_") && token.len() == 70, "{token}");
    assert!(
        d.join("data/ansim.db").exists(),
        "embedded defaults use data/ansim.db"
    );

    let out = ansim(
        d,
        &[],
        &["staff", "add", "--name", "ops", "--role", "support"],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--name"));
    let out = ansim(d, &[], &["staff", "add", "--name", "x", "--role", "boss"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("unknown role 'boss'"),
        "{}",
        text(&out.stderr)
    );

    let out = ansim(d, &[], &["staff", "list"]);
    let listing = text(&out.stdout);
    assert!(listing.contains("ops\tadmin\tactive") && !listing.contains(&token));
    assert!(ansim(d, &[], &["staff", "disable", "ops"]).status.success());
    assert!(text(&ansim(d, &[], &["staff", "list"]).stdout).contains("ops\tadmin\tdisabled"));

    let out = ansim(
        d,
        &[],
        &[
            "session",
            "create",
            "--a",
            "010-1234-5678",
            "--b",
            "+821098765432",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("--a: must start with '+'"),
        "{}",
        text(&out.stderr)
    );
    let out = ansim(
        d,
        &[],
        &[
            "session",
            "create",
            "--a",
            "+821012345678",
            "--b",
            "+821098765432",
            "--retention",
            "x",
        ],
    );
    assert!(
        text(&out.stderr).contains("--retention: unknown class 'x'"),
        "{}",
        text(&out.stderr)
    );
    let out = ansim(
        d,
        &[],
        &[
            "session",
            "create",
            "--a",
            "+821012345678",
            "--b",
            "+821098765432",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("the number pool is empty"),
        "{}",
        text(&out.stderr)
    );

    let out = ansim(d, &[], &["audit", "verify"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("audit chain intact: 0 events"));
    let out = ansim(d, &[], &["retention", "run", "--dry-run"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("dry run: 0 recordings, 0 epoch keys"),
        "{}",
        text(&out.stderr)
    );
    let out = ansim(d, &[], &["keys", "status"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("0 epoch keys; 0 recordings past their retention"),
        "{}",
        text(&out.stdout)
    );
    let out = ansim(
        d,
        &[],
        &["recording", "export", "cal_nope", "--out", "y.wav"],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("no recording for 'cal_nope'"),
        "{}",
        text(&out.stderr)
    );
    assert!(!d.join("y.wav").exists());
}

#[tokio::test]
async fn session_create_works_on_postgres_too() {
    let db = TestDb::new(Db::Postgres).await;
    db.store
        .add_numbers(&crate::harness::pool_numbers(1), crate::harness::T0)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let env = [("ANSIM_STORE__DATABASE_URL", db.url.as_str())];
    let out = ansim(
        dir.path(),
        &env,
        &[
            "session",
            "create",
            "--a",
            "+821012345678",
            "--b",
            "+821098765432",
            "--ttl",
            "1d",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["a"]["proxy_number"], "+8250500000001");
    let id = s["id"].as_str().unwrap();
    assert!(db.store.get_session(id).await.unwrap().is_some());
    let out = ansim(dir.path(), &env, &["session", "close", id]);
    assert!(out.status.success());
    assert!(
        db.store
            .get_session(id)
            .await
            .unwrap()
            .unwrap()
            .closed_at
            .is_some()
    );
}

/// `ansim serve` on embedded defaults: answers, masks numbers in its log,
/// and exits 0 on SIGTERM.
#[tokio::test]
async fn serve_runs_on_defaults_and_stops_gracefully() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let admin = text(
        &ansim(
            d,
            &[],
            &["staff", "add", "--name", "ops", "--role", "admin"],
        )
        .stdout,
    )
    .trim()
    .to_owned();
    let prov = text(
        &ansim(
            d,
            &[],
            &["staff", "add", "--name", "app", "--role", "provisioner"],
        )
        .stdout,
    )
    .trim()
    .to_owned();
    let port = crate::harness::free_tcp_port();
    let listen = format!("127.0.0.1:{port}");

    let served = crate::harness::start_serve(
        d,
        &["--log-format", "json", "serve"],
        &[("ANSIM_API__LISTEN", listen.as_ref())],
    )
    .await;
    let (mut child, mut log, mut lines) = (served.child, served.log, served.lines);
    assert!(
        log.contains("HTTP API listening"),
        "serve did not start:\n{log}"
    );

    let http = reqwest::Client::new();
    let base = format!("http://{listen}");
    let r = http
        .post(format!("{base}/v1/numbers"))
        .bearer_auth(&admin)
        .json(&serde_json::json!({"numbers": ["+825050000001"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = http
        .post(format!("{base}/v1/sessions"))
        .bearer_auth(&prov)
        .json(&serde_json::json!({"a": "+821012345678", "b": "+821098765432"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);

    let pid = child.id().unwrap().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    while let Some(line) = lines.next_line().await.unwrap() {
        log.push_str(&line);
        log.push('\n');
    }
    let status = child.wait().await.unwrap();
    assert!(status.success(), "exit {status:?}\n{log}");
    assert!(log.contains("\"message\":\"session opened\""), "{log}");
    assert!(log.contains("+8210****5678"), "{log}");
    assert!(
        !log.contains("821012345678") && !log.contains("821098765432"),
        "real number in log:\n{log}"
    );
    assert!(log.contains("stopped"));
}

/// Without development mode, a missing or weak master key stops start-up
/// with a message that says what to do; nothing is listening afterwards.
#[test]
fn serve_refuses_a_missing_or_weak_master_key_outside_dev() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let env = [
        ("ANSIM_KEYS__DEV", "false"),
        ("ANSIM_API__LISTEN", "127.0.0.1:0"),
        ("ANSIM_SIP__LISTEN", "[\"udp:127.0.0.1:0\"]"),
    ];
    let out = ansim(d, &env, &["serve"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("data/master.key") && err.contains("head -c 32"),
        "{err}"
    );

    std::fs::create_dir_all(d.join("data")).unwrap();
    let key = d.join("data/master.key");
    std::fs::write(&key, [7u8; 32]).unwrap();
    let out = ansim(d, &env, &["serve"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("chmod 600"),
        "{}",
        text(&out.stderr)
    );
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = ansim(d, &env, &["serve"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("master key file") && err.contains("refused"),
        "{err}"
    );
    assert!(
        !err.contains("0707070707"),
        "no key bytes in the message: {err}"
    );
}

/// `ansim serve` with `s3://` recordings walks the AWS chain over its own
/// environment: a profile it cannot honour stops start-up with the profile
/// and the file named (never a key), instead of falling through to the
/// instance's role. Nothing is contacted: the endpoint is a closed port.
#[test]
fn serve_refuses_an_aws_profile_it_cannot_honour() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let aws = d.join("home/.aws");
    std::fs::create_dir_all(&aws).unwrap();
    std::fs::write(
        aws.join("credentials"),
        "[default]\naws_access_key_id = AKIDINFILE\naws_secret_access_key = SECRETINFILE\n",
    )
    .unwrap();
    std::fs::write(
        aws.join("config"),
        "[profile tool]\ncredential_process = /bin/false\n",
    )
    .unwrap();
    let home = d.join("home").display().to_string();
    let run = |profile: &str| {
        let mut cmd = Command::new(BIN);
        cmd.current_dir(d).arg("serve").env("ANSIM_LOG", "info");
        for (k, _) in
            std::env::vars().filter(|(k, _)| k.starts_with("ANSIM_") || k.starts_with("AWS_"))
        {
            cmd.env_remove(k);
        }
        cmd.envs([
            ("HOME", home.as_str()),
            ("AWS_PROFILE", profile),
            ("ANSIM_API__LISTEN", "127.0.0.1:0"),
            ("ANSIM_SIP__LISTEN", "[\"udp:127.0.0.1:0\"]"),
            ("ANSIM_STORE__RECORDINGS", "s3://rec/calls"),
            ("ANSIM_STORE__S3__ENDPOINT", "http://127.0.0.1:1"),
            ("ANSIM_STORE__S3__PATH_STYLE", "true"),
        ]);
        cmd.output().expect("run ansim")
    };
    let out = run("ghost");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("\"ghost\"") && err.contains(&format!("{home}/.aws/credentials")),
        "{err}"
    );
    let out = run("tool");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("credential_process") && err.contains(&format!("{home}/.aws/config")),
        "{err}"
    );
    assert!(
        !err.contains("SECRETINFILE") && !err.contains("AKIDINFILE"),
        "{err}"
    );
}
