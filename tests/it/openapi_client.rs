//! A client generated from `GET /openapi.json` (by `openapi-python-client`,
//! which `scripts/install-test-deps.sh` puts in `target/openapi-venv`) opens
//! a session and reads its calls against a real server: the document is
//! good enough for a platform team to generate its client from it.

use std::ffi::{OsStr, OsString};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ansim::api::{self, AppState, auth};
use ansim::metrics::Metrics;
use ansim::phone::E164;
use ansim::store::{NewCall, Role};

use crate::harness::{Db, T0, TestDb, routing};

const VENV: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/target/openapi-venv/bin");

/// Uses the generated package only (no raw HTTP): `create` opens a session
/// and prints its id and safe numbers; `calls` lists a session's calls.
const SCRIPT: &str = r#"
import sys
from ansim_client import AuthenticatedClient
from ansim_client.api.sessions import sessions_create, sessions_read
from ansim_client.api.calls import calls_list
from ansim_client.models import CreateBody, SessionView

base, token, verb = sys.argv[1:4]
client = AuthenticatedClient(base_url=base, token=token, raise_on_unexpected_status=True)
if verb == "create":
    a, b = sys.argv[4:6]
    r = sessions_create.sync_detailed(client=client, body=CreateBody(a=a, b=b, ttl="2d"))
    s = r.parsed
    assert isinstance(s, SessionView), (r.status_code, r.content)
    print("status", int(r.status_code))
    print("id", s.id)
    print("a", s.a.number, s.a.proxy_number)
    print("b", s.b.number, s.b.proxy_number)
    again = sessions_read.sync(client=client, id=s.id)
    assert isinstance(again, SessionView), again
    print("read", again.id, again.status)
elif verb == "calls":
    session = sys.argv[4]
    page = calls_list.sync(client=client, session=session)
    for c in page.items:
        print("call", c.id, c.session_id, c.direction)
else:
    raise SystemExit("unknown verb " + verb)
"#;

async fn run(program: &Path, args: &[&OsStr], env: &[(&str, OsString)]) -> String {
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args).kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = tokio::time::timeout(Duration::from_secs(120), cmd.output())
        .await
        .unwrap_or_else(|_| panic!("{} finished in time", program.display()))
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e} (run scripts/install-test-deps.sh)",
                program.display()
            )
        });
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{} {args:?}: {stdout}{}",
        program.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The value after `key ` on the line that starts with it.
fn field<'a>(out: &'a str, key: &str) -> Vec<&'a str> {
    out.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {key} in {out}"))
        .split(' ')
        .collect()
}

#[tokio::test]
async fn a_generated_python_client_opens_a_session_and_reads_its_calls() {
    let db = TestDb::new(Db::Sqlite).await;
    let (routing, _clock) = routing(&db);
    let token = auth::new_token();
    db.store
        .add_staff("backend", Role::Provisioner, &auth::hash_token(&token), T0)
        .await
        .unwrap();
    let proxy = E164::parse("+825050000001").unwrap();
    let proxy_b = E164::parse("+825050000002").unwrap();
    db.store
        .add_numbers(&[proxy.clone(), proxy_b.clone()], T0)
        .await
        .unwrap();
    let state = AppState::new(routing, Arc::new(Metrics::default()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(api::serve(
        listener,
        state,
        api::ConnectionLimits::default(),
        async move {
            let _ = stopped.await;
        },
    ));

    // The document, as a client's build would fetch it.
    let r = reqwest::get(format!("{base}/openapi.json")).await.unwrap();
    assert_eq!(r.status(), 200);
    let dir = tempfile::tempdir().unwrap();
    let doc = dir.path().join("openapi.json");
    std::fs::write(&doc, r.bytes().await.unwrap()).unwrap();
    let generated = dir.path().join("ansim_client");
    // The generator reads only JSON bodies, text and application/octet-stream;
    // the recording's audio/wav is bytes to a client too. No post-generation
    // formatting (ruff): the package is imported, not read.
    let config = dir.path().join("generator.json");
    std::fs::write(
        &config,
        r#"{"content_type_overrides": {"audio/wav": "application/octet-stream"}, "post_hooks": []}"#,
    )
    .unwrap();
    run(
        &Path::new(VENV).join("openapi-python-client"),
        &[
            "generate".as_ref(),
            "--path".as_ref(),
            doc.as_os_str(),
            "--output-path".as_ref(),
            generated.as_os_str(),
            "--config".as_ref(),
            config.as_os_str(),
            "--meta".as_ref(),
            "none".as_ref(),
            // A skipped part of the document fails here: fix the document.
            "--fail-on-warning".as_ref(),
        ],
        &[],
    )
    .await;
    let script = dir.path().join("use_client.py");
    std::fs::write(&script, SCRIPT).unwrap();
    let python = Path::new(VENV).join("python3");
    let pythonpath = [("PYTHONPATH", dir.path().as_os_str().to_owned())];
    let (a, b) = ("+821012345678", "+821098765432");
    let py = |verb: &'static str, rest: Vec<String>| {
        let mut args = vec![
            script.clone().into_os_string(),
            base.clone().into(),
            token.clone().into(),
            verb.into(),
        ];
        args.extend(rest.into_iter().map(Into::into));
        args
    };

    let args = py("create", vec![a.to_owned(), b.to_owned()]);
    let refs: Vec<&OsStr> = args.iter().map(|s| s.as_os_str()).collect();
    let out = run(&python, &refs, &pythonpath).await;
    assert_eq!(field(&out, "status"), ["201"], "{out}");
    let id = field(&out, "id")[0].to_owned();
    assert!(
        id.strip_prefix("ses_")
            .is_some_and(|r| !r.is_empty() && r.chars().all(|c| c.is_ascii_alphanumeric())),
        "{out}"
    );
    let proxies = [field(&out, "a")[1], field(&out, "b")[1]];
    assert_eq!(field(&out, "a")[0], a, "{out}");
    assert_eq!(field(&out, "b")[0], b, "{out}");
    assert!(
        proxies
            .iter()
            .all(|p| [proxy.as_str(), proxy_b.as_str()].contains(p)),
        "{out}"
    );
    assert_eq!(field(&out, "read"), [id.as_str(), "open"], "{out}");

    // A call on it, as the SIP side records one; the client lists it.
    let call = NewCall {
        id: ansim::store::new_id("cal"),
        session_id: Some(id.clone()),
        direction: "a_to_b",
        caller: Some(E164::parse(a).unwrap()),
        dialled: E164::parse(proxies[0]).unwrap(),
        invite_at: T0,
        reason: None,
    };
    db.store.insert_call(&call).await.unwrap();
    let args = py("calls", vec![id.clone()]);
    let refs: Vec<&OsStr> = args.iter().map(|s| s.as_os_str()).collect();
    let out = run(&python, &refs, &pythonpath).await;
    let calls: Vec<&str> = out.lines().filter(|l| l.starts_with("call ")).collect();
    assert_eq!(
        calls,
        [format!("call {} {id} a_to_b", call.id).as_str()],
        "{out}"
    );
}
