//! Webhooks end to end: `ansim serve` with `[webhooks]` pointing at a real
//! HTTP receiver that checks every signature. A full flow (a session over
//! the API, a recorded SIPp call, a dispute, an erasure) is seen as its
//! events; a receiver down for a while, and a `kill -9` of ansim with
//! events pending and in flight, lose none of them.

use std::collections::{BTreeSet, HashMap};

use ansim::api::auth;
use ansim::store::Role;
use serde_json::{Value, json};

use super::recording::{finished_recording, tone, tone_scenario};
use super::*;
use crate::hook_receiver::{Mode, Received, Receiver, secret_file, section_for};

const SUBJECT: &str = "+821055550001";
const OTHER: &str = "+821055550002";

/// Staff of the API under test: provisioner, support, admin.
async fn add_staff(store: &Store) -> HashMap<&'static str, String> {
    let mut tokens = HashMap::new();
    for (name, role) in [
        ("prov", Role::Provisioner),
        ("sup", Role::Support),
        ("adm", Role::Admin),
    ] {
        let t = auth::new_token();
        store
            .add_staff(name, role, &auth::hash_token(&t), SystemClock.now())
            .await
            .unwrap();
        tokens.insert(name, t);
    }
    tokens
}

/// One API request; answers (status, JSON body).
pub(crate) async fn call_api(
    api: SocketAddr,
    method: &str,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let url = format!("http://{api}{path}");
    let http = reqwest::Client::new();
    let mut r = match method {
        "POST" => http.post(url),
        "DELETE" => http.delete(url),
        _ => http.get(url),
    }
    .bearer_auth(token);
    if let Some(b) = body {
        r = r.json(&b);
    }
    let resp = tokio::time::timeout(Duration::from_secs(20), r.send())
        .await
        .expect("API answered in time")
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// A session SUBJECT ↔ OTHER through the API; answers its JSON.
async fn open_session(api: SocketAddr, token: &str) -> Value {
    let body = json!({ "a": SUBJECT, "b": OTHER });
    let (status, v) = call_api(api, "POST", "/v1/sessions", token, Some(body)).await;
    assert_eq!(status, 201, "{v}");
    v
}

fn kinds(got: &[Received]) -> Vec<&str> {
    got.iter().map(|r| r.kind.as_str()).collect()
}

fn has(got: &[Received], kind: &str) -> bool {
    got.iter().any(|r| r.kind == kind)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_flow_is_seen_as_signed_events_without_real_numbers() {
    let keys = tempfile::tempdir().unwrap();
    let secret = secret_file(keys.path());
    let receiver = Receiver::start().await;
    let t = SipTest::start_sections("127.0.0.1/32", "", "", &receiver.section(&secret, "")).await;
    let tokens = add_staff(&t.store).await;
    t.store
        .add_numbers(&[n("+8250599999901")], SystemClock.now())
        .await
        .unwrap();

    let session = open_session(t.api, &tokens["prov"]).await;
    let sid = session["id"].as_str().unwrap().to_owned();
    let proxy = session["a"]["proxy_number"].as_str().unwrap().to_owned();

    // A recorded call from the subject, a tone each way.
    let (a_file, b_file) = (t.dir.path().join("a.ulaw"), t.dir.path().join("b.ulaw"));
    std::fs::write(&a_file, tone(440.0, 1000)).unwrap();
    std::fs::write(&b_file, tone(880.0, 1000)).unwrap();
    let uas_file = tone_scenario(t.dir.path(), "uas_tone.xml", &b_file, 0);
    let uac_file = tone_scenario(t.dir.path(), "uac_tone.xml", &a_file, 1300);
    let port = free_udp_port().to_string();
    let callee = Sipp::spawn(t.dir.path(), &uas_file, t.uas_port, &["-mp", &port], "uas");
    let caller = uac(&t, &uac_file, SUBJECT, &proxy, "uac");
    let (uac_ok, uac_log) = caller.finish().await;
    let (uas_ok, uas_log) = callee.finish().await;
    assert!(uac_ok && uas_ok, "caller:\n{uac_log}\ncallee:\n{uas_log}");
    let call = t.store.list_calls(&sid).await.unwrap().remove(0);
    let rec = finished_recording(&t, &call.id).await;
    receiver
        .wait_for("the call's events", |g| {
            has(g, "call.completed") && has(g, "recording.completed")
        })
        .await;

    // A dispute on the call, resolved; then the subject's erasure.
    let body = json!({ "call_ids": [call.id], "ticket": "T-1", "reason": "no-show" });
    let (status, d) = call_api(t.api, "POST", "/v1/disputes", &tokens["sup"], Some(body)).await;
    assert_eq!(status, 201, "{d}");
    let did = d["id"].as_str().unwrap().to_owned();
    let path = format!("/v1/disputes/{did}/resolve");
    let (status, v) = call_api(t.api, "POST", &path, &tokens["sup"], None).await;
    assert_eq!(status, 200, "{v}");
    let path = format!("/v1/subjects/{}/erase", SUBJECT.replace('+', "%2B"));
    let (status, v) = call_api(t.api, "POST", &path, &tokens["adm"], None).await;
    assert_eq!(status, 200, "{v}");

    let got = receiver
        .wait_for("the whole flow", |g| {
            [
                "session.opened",
                "call.completed",
                "recording.completed",
                "dispute.opened",
                "dispute.resolved",
                "recording.erased",
                "session.closed",
            ]
            .iter()
            .all(|k| has(g, k))
        })
        .await;
    assert!(got.len() >= 7, "{:?}", kinds(&got));
    assert_eq!(receiver.bad_signatures(), 0);
    let by_kind = |k: &str| got.iter().find(|r| r.kind == k).unwrap().body["data"].clone();
    assert_eq!(by_kind("session.opened")["id"], sid.as_str());
    assert_eq!(by_kind("session.closed")["reason"], "erased");
    assert_eq!(by_kind("call.completed")["id"], call.id.as_str());
    assert_eq!(by_kind("call.completed")["recording_id"], rec.id.as_str());
    let recording = by_kind("recording.completed");
    assert_eq!(
        (recording["id"].clone(), recording["state"].clone()),
        (json!(rec.id), json!("complete"))
    );
    assert!(
        recording["duration_ms"].as_i64().unwrap() > 500,
        "{recording}"
    );
    assert_eq!(by_kind("dispute.opened")["id"], did.as_str());
    assert_eq!(by_kind("dispute.resolved")["id"], did.as_str());
    assert_eq!(by_kind("recording.erased")["id"], rec.id.as_str());
    // No real number in any payload (include_numbers is off).
    for r in &got {
        for number in [SUBJECT, OTHER, &SUBJECT[1..], &OTHER[1..]] {
            assert!(
                !r.raw.contains(number),
                "{} carries {number}: {}",
                r.kind,
                r.raw
            );
        }
    }
    // Every event once per id (the receiver accepted each on its first try).
    let ids: BTreeSet<&str> = got.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids.len(), got.len());
    let m = metrics_text(&t).await;
    assert!(metric(&m, "ansim_webhook_deliveries_total") >= 7, "{m}");
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_arrives_after_the_receiver_was_down() {
    let keys = tempfile::tempdir().unwrap();
    let secret = secret_file(keys.path());
    // Nothing listens on the port at first: connections are refused.
    let port = crate::harness::free_tcp_port();
    let section = section_for(port, &secret, "include_numbers = true");
    let t = SipTest::start_sections("127.0.0.1/32", "", "", &section).await;
    let tokens = add_staff(&t.store).await;
    t.store
        .add_numbers(&[n("+8250599999901")], SystemClock.now())
        .await
        .unwrap();
    let session = open_session(t.api, &tokens["prov"]).await;
    let sid = session["id"].as_str().unwrap();
    let (status, _) = call_api(
        t.api,
        "DELETE",
        &format!("/v1/sessions/{sid}"),
        &tokens["prov"],
        None,
    )
    .await;
    assert_eq!(status, 200);

    // Failures pile up and show in the deliveries list and the metrics.
    let failed = |v: &Value| {
        v["items"].as_array().is_some_and(|items| {
            items.len() == 2
                && items
                    .iter()
                    .all(|d| d["state"] == "pending" && d["attempts"].as_i64() >= Some(2))
        })
    };
    let mut list = Value::Null;
    for _ in 0..200 {
        list = call_api(
            t.api,
            "GET",
            "/v1/webhooks/deliveries",
            &tokens["adm"],
            None,
        )
        .await
        .1;
        if failed(&list) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(failed(&list), "{list}");
    assert!(
        list["items"][0]["last_error"]
            .as_str()
            .unwrap()
            .contains("connect"),
        "{list}"
    );
    let (status, _) = call_api(
        t.api,
        "GET",
        "/v1/webhooks/deliveries",
        &tokens["prov"],
        None,
    )
    .await;
    assert_eq!(status, 403, "deliveries are the admin's");
    assert!(
        metric(
            &metrics_text(&t).await,
            "ansim_webhook_delivery_failures_total"
        ) >= 4
    );

    // The receiver comes up: both events arrive, with their first ids.
    let receiver = Receiver::start_on(port, Mode::Accept).await;
    let got = receiver.wait_for("both events", |g| g.len() >= 2).await;
    let got_kinds: BTreeSet<&str> = kinds(&got).into_iter().collect();
    assert_eq!(
        got_kinds,
        BTreeSet::from(["session.opened", "session.closed"])
    );
    let ids: BTreeSet<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        got.iter().map(|r| r.id.as_str()).collect::<BTreeSet<_>>(),
        ids
    );
    let of = |k: &str| got.iter().find(|r| r.kind == k).unwrap().body["data"].clone();
    assert_eq!(of("session.closed")["reason"], "closed");
    assert_eq!(
        of("session.opened")["a"]["number"],
        SUBJECT,
        "include_numbers = true"
    );
    for _ in 0..100 {
        let v = call_api(
            t.api,
            "GET",
            "/v1/webhooks/deliveries",
            &tokens["adm"],
            None,
        )
        .await
        .1;
        if v["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["state"] == "delivered")
        {
            t.stop().await;
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("deliveries never all read delivered");
}

/// `ansim serve` as a child process with a test's files and ports.
fn serve(dir: &Path, env: &[(String, String)]) -> tokio::process::Child {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_ansim"));
    cmd.current_dir(dir)
        .arg("serve")
        .env("ANSIM_LOG", "info")
        .stdout(Stdio::null())
        .stderr(
            std::fs::File::create(dir.join(format!("serve-{}.log", uuid::Uuid::new_v4().simple())))
                .unwrap(),
        )
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_with_events_pending_and_in_flight_loses_none() {
    let keys = tempfile::tempdir().unwrap();
    let secret = secret_file(keys.path());
    // The receiver hangs: the first event is in flight when ansim dies,
    // the others wait behind it.
    let receiver = Receiver::start_on(0, Mode::Hang).await;
    let t = SipTest::start("127.0.0.1/32").await;
    let (dir, sip, api) = (t.dir.path().to_owned(), t.sip, t.api);
    let store = t.store.clone();
    let tokens = add_staff(&store).await;
    store
        .add_numbers(&[n("+8250599999901")], SystemClock.now())
        .await
        .unwrap();
    let mut env = super::recording::cli_env(&t);
    env.extend([
        ("ANSIM_SIP__LISTEN".into(), format!("[\"udp:{sip}\"]")),
        ("ANSIM_API__LISTEN".into(), api.to_string()),
        (
            "ANSIM_TRUNK__ADDRESS".into(),
            format!("127.0.0.1:{}", t.uas_port),
        ),
        ("ANSIM_MEDIA__PORTS".into(), "41840-41879".into()),
        (
            "ANSIM_WEBHOOKS__URL".into(),
            format!("http://{}/hooks", receiver.addr),
        ),
        (
            "ANSIM_WEBHOOKS__SECRET_FILE".into(),
            secret.display().to_string(),
        ),
        ("ANSIM_WEBHOOKS__RETRY_INITIAL".into(), "100ms".into()),
        ("ANSIM_WEBHOOKS__RETRY_MAX".into(), "500ms".into()),
        ("ANSIM_WEBHOOKS__TIMEOUT".into(), "1s".into()),
    ]);
    let _keep = t.stop_keeping_files().await;

    let mut ansim = serve(&dir, &env);
    wait_for_options(sip).await;
    let mut opened = Vec::new();
    for _ in 0..3 {
        let s = open_session(api, &tokens["prov"]).await;
        let sid = s["id"].as_str().unwrap().to_owned();
        let (status, _) = call_api(
            api,
            "DELETE",
            &format!("/v1/sessions/{sid}"),
            &tokens["prov"],
            None,
        )
        .await;
        assert_eq!(status, 200);
        opened.push(sid);
    }
    // Wait until a delivery is in flight (the receiver holds it), then kill.
    for _ in 0..200 {
        if receiver.total_tries() > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(receiver.total_tries(), 1, "one delivery in flight");
    ansim.start_kill().unwrap();
    let _ = ansim.wait().await;
    assert!(
        receiver.accepted().is_empty(),
        "nothing was accepted before the kill"
    );

    receiver.set_mode(Mode::Accept);
    let mut ansim = serve(&dir, &env);
    let got = receiver.wait_for("all six events", |g| g.len() >= 6).await;
    ansim.start_kill().unwrap();
    let _ = ansim.wait().await;
    assert_eq!(receiver.bad_signatures(), 0);
    let ids: BTreeSet<&str> = got.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids.len(), 6, "each event once: {:?}", kinds(&got));
    let sessions: BTreeSet<&str> = got
        .iter()
        .map(|r| r.body["data"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(sessions, opened.iter().map(String::as_str).collect());
    assert!(
        got.iter().any(|r| receiver.tries(&r.id) >= 2),
        "the in-flight one was tried again with its id"
    );
}
