//! Callers after the job (`[routing] out_of_session`): a call no open
//! session routes is forwarded to the customer centre, masked, or hears
//! the out-of-session announcement from ansim itself (answered, or as
//! early media before the status).

use super::announcement::{assert_announcement, tone};
use super::*;
use crate::hook_receiver::{Receiver, secret_file};

/// The platform's customer centre.
const CENTRE: &str = "+8215001234";
/// A caller without a session: a customer whose job is over.
const STRANGER: &str = "+821055556666";

/// The test tone as the announcement WAV `after-the-job.wav` in `dir`, and
/// the μ-law bytes a caller must hear of it.
fn tone_wav(dir: &std::path::Path) -> (std::path::PathBuf, Vec<u8>) {
    let samples = tone();
    let ulaw = samples
        .iter()
        .map(|&s| ansim::media::g711::linear_to_ulaw(s))
        .collect();
    let data: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
    let mut wav = ansim::recording::wav::wav_header(1, 8000, data.len() as u32).to_vec();
    wav.extend(data);
    let path = dir.join("after-the-job.wav");
    std::fs::write(&path, wav).unwrap();
    (path, ulaw)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_caller_hears_the_announcement_and_the_centre_sees_the_safe_number() {
    let wav_dir = tempfile::tempdir().unwrap();
    let (path, ulaw) = tone_wav(wav_dir.path());
    let keys = tempfile::tempdir().unwrap();
    let receiver = Receiver::start().await;
    let hooks = receiver.section(&secret_file(keys.path()), "");
    let sections = format!(
        "{hooks}\n[routing]\nout_of_session = \"forward\"\nfallback_number = \"{CENTRE}\"\n\
         out_of_session_announcement = \"{}\"\n",
        path.display()
    );
    let t = SipTest::start_sections("127.0.0.1/32", "", "", &sections).await;
    let PhoneCall {
        phone_a,
        phone_b,
        relay_a,
        relay_b,
        caller,
        callee,
    } = call_edited(&t, "127.0.0.1", "127.0.0.1", 2500, |s| {
        s.replace("[caller]", STRANGER)
    })
    .await;

    // The caller hears the announcement (so does the centre), then the
    // two are bridged.
    let heard_a = receive_all(&phone_a, 20).await;
    let heard_b = receive_all(&phone_b, 20).await;
    assert_announcement(&heard_a, relay_a, &ulaw, "caller");
    assert_announcement(&heard_b, relay_b, &ulaw, "centre");

    let (uac_ok, uac_log) = caller.finish().await;
    let (uas_ok, uas_log) = callee.finish().await;
    assert!(uac_ok && uas_ok, "caller:\n{uac_log}\ncentre:\n{uas_log}");
    // The centre's INVITE: to the centre, from the dialled safe number,
    // nothing of the caller's own number anywhere in it.
    let proxy = t.session.a.proxy_number.as_str().to_owned();
    let invite = received(&uas_log, "INVITE");
    assert!(
        invite.starts_with(&format!("INVITE sip:{CENTRE}@")),
        "{invite}"
    );
    let from = invite
        .lines()
        .find(|l| l.starts_with("From:"))
        .unwrap_or_default();
    assert!(from.contains(&format!("sip:{proxy}@")), "{from}");
    let digits = STRANGER.trim_start_matches('+');
    assert!(
        !uas_log.contains(digits),
        "the caller's number leaked:\n{uas_log}"
    );

    // The call record: no session, its reason, answered.
    let db = format!("sqlite://{}/ansim.db", t.dir.path().display());
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&db).await.unwrap();
    type Row = (Option<String>, String, Option<String>, Option<String>);
    let mut rows: Vec<Row> = Vec::new();
    for _ in 0..100 {
        rows = sqlx::query_as("SELECT session_id, caller, reason, result FROM calls")
            .fetch_all(&pool)
            .await
            .unwrap();
        if !rows.is_empty() && rows.iter().all(|r| r.3.is_some()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        rows,
        vec![(
            None,
            STRANGER.to_owned(),
            Some("out-of-session-forwarded".to_owned()),
            Some("answered".to_owned())
        )]
    );
    // Recorded (fallback_record's default), under no session.
    let mut recs: Vec<(String, String)> = Vec::new();
    for _ in 0..100 {
        recs = sqlx::query_as("SELECT session_id, state FROM recordings")
            .fetch_all(&pool)
            .await
            .unwrap();
        if recs.iter().any(|r| r.1 != "recording") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(recs, vec![(String::new(), "complete".to_owned())]);
    let text = metrics_text(&t).await;
    assert!(
        text.contains("ansim_out_of_session_total{outcome=\"forwarded\"} 1"),
        "{text}"
    );
    // call.completed says what became of it.
    let got = receiver
        .wait_for("call.completed", |g| {
            g.iter().any(|r| r.kind == "call.completed")
        })
        .await;
    let done = got.iter().find(|r| r.kind == "call.completed").unwrap();
    let data = &done.body["data"];
    assert_eq!(data["reason"], "out-of-session-forwarded", "{data}");
    assert_eq!(data["session_id"], serde_json::Value::Null, "{data}");
    assert_eq!(data["result"], "answered", "{data}");
    t.stop().await;
}

/// A call record: session, direction, reason, result, status, side.
type CallRow = (
    Option<String>,
    String,
    Option<String>,
    Option<String>,
    Option<i64>,
    Option<String>,
);

/// What the caller of an announced call saw and what ansim kept of it.
struct Announced {
    /// The call record: session, direction, reason, result, status, side.
    record: CallRow,
    /// `/metrics`.
    metrics: String,
    /// `call.completed`'s `data`.
    completed: serde_json::Value,
}

/// A stranger calls an ended safe number with `out_of_session =
/// "announce"` in style `style`: the announcement (the tone) must reach
/// the caller's socket, packet by packet, from the relay port our SDP
/// named in `answer` (the 200 or the 183).
async fn announced_call(style: &str, scenario_file: &str, answer: &str) -> Announced {
    let wav_dir = tempfile::tempdir().unwrap();
    let (path, ulaw) = tone_wav(wav_dir.path());
    let keys = tempfile::tempdir().unwrap();
    let receiver = Receiver::start().await;
    let hooks = receiver.section(&secret_file(keys.path()), "");
    let sections = format!(
        "{hooks}\n[routing]\nout_of_session = \"announce\"\nout_of_session_announce = \"{style}\"\n\
         out_of_session_announcement = \"{}\"\n",
        path.display()
    );
    let t = SipTest::start_sections("127.0.0.1/32", "", "", &sections).await;
    let phone = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let rtp_port = phone.local_addr().unwrap().port().to_string();
    let proxy = t.session.a.proxy_number.as_str().to_owned();
    let target = t.sip.to_string();
    let args = [
        "-s", &proxy, "-key", "caller", STRANGER, "-key", "rtp_port", &rtp_port, &target,
    ];
    let file = scenario(scenario_file);
    let mut caller = Sipp::spawn(t.dir.path(), &file, free_udp_port(), &args, "uac").movable();
    let relay = caller.port_in(answer).await;
    let heard = receive_all(&phone, 20).await;
    assert_announcement(&heard, relay, &ulaw, "caller");
    let (ok, log) = caller.finish().await;
    assert!(ok, "caller:\n{log}");
    // Nothing went to the trunk: no B-leg, no callee.
    let db = format!("sqlite://{}/ansim.db", t.dir.path().display());
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&db).await.unwrap();
    let mut rows = Vec::new();
    for _ in 0..100 {
        rows = sqlx::query_as(
            "SELECT session_id, direction, reason, result, sip_status, hangup_side FROM calls",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        if !rows.is_empty()
            && rows
                .iter()
                .all(|r: &(_, _, _, Option<String>, _, _)| r.3.is_some())
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(rows.len(), 1, "{rows:?}");
    let recordings: Vec<(String,)> = sqlx::query_as("SELECT id FROM recordings")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert!(recordings.is_empty(), "an announced call is not recorded");
    let got = receiver
        .wait_for("call.completed", |g| {
            g.iter().any(|r| r.kind == "call.completed")
        })
        .await;
    let completed = got
        .iter()
        .find(|r| r.kind == "call.completed")
        .unwrap()
        .body["data"]
        .clone();
    let metrics = metrics_text(&t).await;
    // The relay's ports are back in the pool.
    for _ in 0..100 {
        if metric(&metrics_text(&t).await, "ansim_media_port_pairs_in_use") == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        metric(&metrics_text(&t).await, "ansim_media_port_pairs_in_use"),
        0
    );
    t.stop().await;
    Announced {
        record: rows.remove(0),
        metrics,
        completed,
    }
}

impl Announced {
    /// The record, metric and `call.completed` of an announced call that
    /// ended with `result` and SIP `status`.
    fn assert_ended(&self, result: &str, status: i64) {
        let reason = Some("out-of-session-announced".to_owned());
        assert_eq!(
            self.record,
            (
                None,
                "unrouted".to_owned(),
                reason,
                Some(result.to_owned()),
                Some(status),
                Some("system".to_owned())
            )
        );
        let counted = "ansim_out_of_session_total{outcome=\"announced\"} 1";
        assert!(self.metrics.contains(counted), "{}", self.metrics);
        let completed = &self.completed;
        assert_eq!(
            completed["reason"], "out-of-session-announced",
            "{completed}"
        );
        assert_eq!(completed["result"], result, "{completed}");
        assert_eq!(completed["session_id"], serde_json::Value::Null);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answered_caller_hears_the_announcement_then_ansim_hangs_up() {
    let a = announced_call("answer", "uac_announced.xml", "SIP/2.0 200").await;
    a.assert_ended("answered", 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_early_caller_hears_the_announcement_then_gets_the_status() {
    let a = announced_call("early", "uac_early_announced.xml", "SIP/2.0 183").await;
    a.assert_ended("rejected", 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unusable_out_of_session_announcement_stops_start_up_naming_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("after-the-job.wav");
    std::fs::write(&path, b"not a wav").unwrap();
    let toml = format!(
        "[sip]\nlisten = [\"udp:127.0.0.1:{}\"]\n\
         [media]\nports = \"3910-3919\"\n\
         [routing]\nout_of_session = \"announce\"\nout_of_session_announcement = \"{}\"\n\
         [store]\ndatabase_url = \"sqlite://{d}/ansim.db\"\nrecordings = \"file://{d}/rec\"\n\
         [keys]\nmaster_key_file = \"{d}/master.key\"\nstore = \"dir:{d}/keys\"\n\
         [api]\nlisten = \"127.0.0.1:0\"\n",
        free_udp_port(),
        path.display(),
        d = dir.path().display(),
    );
    let config = Config::from_toml_str(&toml, Vec::new()).unwrap();
    let e = ansim::server::run(config, std::future::pending())
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("routing.out_of_session_announcement"), "{e}");
    assert!(e.contains("after-the-job.wav"), "{e}");
}
