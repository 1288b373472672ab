//! The support page's API additions over HTTP: the waveform
//! (`GET /v1/recordings/{id}/waveform`: grant, audit, bucket limits, the
//! peaks and speech of a known recording), one side alone
//! (`GET …/audio?channels=caller|callee`, with Range), the search of
//! disputes by ticket and state, the page's message catalogues.

use ansim::media::g711::Codec;
use ansim::store::RecordingRow;
use serde_json::{Value, json};

use crate::harness::{Db, TestDb};
use crate::on_both_databases;
use crate::playback::{STAFF, grant, open_dispute};
use crate::rig::{Api, Rig};

/// μ-law bytes: the loudest negative and positive samples, and silence.
const LOUD_LOW: u8 = 0x00;
const LOUD_HIGH: u8 = 0x80;
const QUIET: u8 = 0xFF;

/// 3 s: the caller talks for the first second, the callee from 1.5 s on.
async fn dialogue(rig: &Rig) -> RecordingRow {
    rig.record_media("ses_test", "ad-6m", 150, |i| {
        let caller = if i < 50 { LOUD_LOW } else { QUIET };
        let callee = if i >= 75 { LOUD_HIGH } else { QUIET };
        (caller, callee)
    })
    .await
}

async fn json_of(api: &Api, path: &str, who: &str) -> (u16, Value) {
    let r = api.get(path, who, &[]).await;
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn the_waveform_needs_a_grant_is_audited_and_bounded(db: Db) {
    let db = TestDb::new(db).await;
    let rig = Rig::new(db.store.clone());
    let rec = dialogue(&rig).await;
    let api = rig.api(&db, STAFF, &[], true).await;
    let path = format!("/v1/recordings/{}/waveform?bucket_ms=100", rec.id);

    // No grant: refused, nothing decrypted, nothing audited.
    let before = api
        .metrics
        .playback_chunks_decrypted
        .load(std::sync::atomic::Ordering::Relaxed);
    let (status, p) = json_of(&api, &path, "agent").await;
    assert_eq!(status, 403, "{p}");
    assert_eq!(p["type"], "urn:ansim:problem:no-grant");
    let (status, _) = json_of(&api, &path, "ops").await;
    assert_eq!(status, 403, "an admin is not support");
    let dispute = open_dispute(&api, &rec.call_id).await;
    let (status, p) = json_of(&api, &path, "agent").await;
    assert_eq!(status, 403, "{p}");
    assert_eq!(p["type"], "urn:ansim:problem:no-grant");
    let after = api
        .metrics
        .playback_chunks_decrypted
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(before, after, "a refusal decrypts nothing");
    assert!(
        db.store
            .audit_events_on("recording.waveform", &rec.id)
            .await
            .unwrap()
            .is_empty()
    );

    // With a grant: the known dialogue, each side on its own channel.
    let gid = grant(&api, &dispute, "agent", "boss").await;
    let r = api.get(&path, "agent", &[]).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let w: Value = r.json().await.unwrap();
    assert_eq!(w["bucket_ms"], 100);
    assert_eq!(w["duration_ms"], 3000);
    assert_eq!(w["caller"]["speech"], json!([[0, 1000]]));
    assert_eq!(w["callee"]["speech"], json!([[1500, 3000]]));
    let peak = |side: &str, which: &str, i: usize| w[side][which][i].as_i64().unwrap();
    assert_eq!(w["caller"]["min"].as_array().unwrap().len(), 30);
    assert_eq!(
        peak("caller", "min", 5),
        i64::from(Codec::Pcmu.decode(LOUD_LOW))
    );
    assert_eq!(peak("caller", "max", 20), 0, "the caller is silent at 2 s");
    assert_eq!(
        peak("callee", "max", 20),
        i64::from(Codec::Pcmu.decode(LOUD_HIGH))
    );
    assert_eq!(peak("callee", "max", 5), 0, "the callee is silent at 0.5 s");

    // Audited, under the grant, with the bucket size.
    let events = db
        .store
        .audit_events_on("recording.waveform", &rec.id)
        .await
        .unwrap();
    assert_eq!(events.len(), 1);
    let (_, actor, detail) = &events[0];
    assert_eq!(actor, &format!("staff:{}", api.id("agent")));
    assert!(
        detail.contains(&gid) && detail.contains("bucket_ms=100"),
        "{detail}"
    );

    // The default bucket is 50 ms.
    let (status, w) = json_of(
        &api,
        &format!("/v1/recordings/{}/waveform", rec.id),
        "agent",
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(w["bucket_ms"], 50);
    assert_eq!(w["caller"]["max"].as_array().unwrap().len(), 60);

    // Bucket limits: a problem naming bucket_ms, nothing audited.
    for bad in ["9", "0", "-5", "abc"] {
        let p = format!("/v1/recordings/{}/waveform?bucket_ms={bad}", rec.id);
        let (status, body) = json_of(&api, &p, "agent").await;
        assert_eq!(status, 422, "bucket_ms={bad}: {body}");
        assert!(
            body["detail"]
                .as_str()
                .unwrap_or("")
                .starts_with("bucket_ms"),
            "{body}"
        );
    }
    let (status, body) = json_of(
        &api,
        &format!("/v1/recordings/{}/waveform?bucket_ms=10&extra=1", rec.id),
        "agent",
    )
    .await;
    assert_eq!(status, 422, "unknown parameter: {body}");
    let events = db
        .store
        .audit_events_on("recording.waveform", &rec.id)
        .await
        .unwrap();
    assert_eq!(events.len(), 2, "only the two answers are audited");

    // Once the dispute is resolved, the grant no longer lets anyone look.
    api.post_ok(
        &format!("/v1/disputes/{dispute}/resolve"),
        "agent",
        None,
        200,
    )
    .await;
    let (status, p) = json_of(&api, &path, "agent").await;
    assert_eq!(status, 403);
    assert_eq!(p["type"], "urn:ansim:problem:dispute-resolved");
    assert!(ansim::audit::verify(&db.store).await.unwrap().is_ok());
}
on_both_databases!(the_waveform_needs_a_grant_is_audited_and_bounded);

async fn one_side_alone_is_a_mono_wav_with_ranges(db: Db) {
    let db = TestDb::new(db).await;
    let rig = Rig::new(db.store.clone());
    let rec = dialogue(&rig).await;
    let api = rig.api(&db, STAFF, &[], true).await;
    let dispute = open_dispute(&api, &rec.call_id).await;
    grant(&api, &dispute, "agent", "boss").await;
    let base = format!("/v1/recordings/{}/audio", rec.id);
    let sample = |wav: &[u8], ms: usize| {
        let o = 44 + ms * 16;
        i16::from_le_bytes([wav[o], wav[o + 1]])
    };
    for (channels, talks_at, silent_at, value) in [
        ("caller", 500, 2000, LOUD_LOW),
        ("callee", 2000, 500, LOUD_HIGH),
    ] {
        let r = api
            .get(&format!("{base}?channels={channels}"), "agent", &[])
            .await;
        assert_eq!(r.status(), 200);
        let wav = r.bytes().await.unwrap();
        assert_eq!(wav.len(), 44 + 3 * 16_000, "3 s of 16-bit mono");
        assert_eq!(u16::from_le_bytes([wav[22], wav[23]]), 1, "one channel");
        assert_eq!(sample(&wav, talks_at), Codec::Pcmu.decode(value));
        assert_eq!(sample(&wav, silent_at), 0);
        // A range of the mono file is those bytes.
        let r = api
            .get(
                &format!("{base}?channels={channels}"),
                "agent",
                &[("range", "bytes=16044-16099")],
            )
            .await;
        assert_eq!(r.status(), 206);
        assert_eq!(
            r.headers()["content-range"],
            format!("bytes 16044-16099/{}", wav.len()).as_str()
        );
        assert_eq!(r.bytes().await.unwrap(), wav[16_044..16_100]);
    }
    let r = api
        .get(&format!("{base}?channels=both"), "agent", &[])
        .await;
    assert_eq!(r.bytes().await.unwrap().len(), 44 + 3 * 32_000);
    let (status, p) = json_of(&api, &format!("{base}?channels=left"), "agent").await;
    assert_eq!(status, 422, "{p}");
    let plays = db
        .store
        .audit_events_on("recording.play", &rec.id)
        .await
        .unwrap();
    assert_eq!(plays.len(), 5);
    assert_eq!(
        plays
            .iter()
            .filter(|(_, _, d)| d.contains("channels=caller"))
            .count(),
        2,
        "the side heard is in the audit log"
    );
}
on_both_databases!(one_side_alone_is_a_mono_wav_with_ranges);

async fn disputes_are_found_by_ticket_and_state(db: Db) {
    let db = TestDb::new(db).await;
    let rig = Rig::new(db.store.clone());
    let api = rig.api(&db, STAFF, &[], true).await;
    let open = |ticket: &'static str| {
        let (api, rig) = (&api, &rig);
        async move {
            let call = rig.record("ad-6m").await.call_id;
            let body = json!({"call_ids": [call], "ticket": ticket, "reason": "price"});
            let v = api.post_ok("/v1/disputes", "agent", Some(body), 201).await;
            v["id"].as_str().unwrap().to_owned()
        }
    };
    let a = open("CS-1001").await;
    let b = open("CS-1002").await;
    let c = open("OPS_7%").await;
    api.post_ok(&format!("/v1/disputes/{b}/resolve"), "agent", None, 200)
        .await;
    // The test clock stands still: the order of disputes opened at the
    // same instant is by id, so the tickets are compared sorted.
    let tickets = |v: &Value| -> Vec<String> {
        let mut t: Vec<String> = v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["ticket"].as_str().unwrap().to_owned())
            .collect();
        t.sort();
        t
    };
    let find = |q: &'static str| {
        let api = &api;
        async move {
            let (status, v) = json_of(api, &format!("/v1/disputes{q}"), "boss").await;
            assert_eq!(status, 200, "{q}: {v}");
            v
        }
    };
    assert_eq!(
        tickets(&find("").await),
        ["CS-1001", "OPS_7%"],
        "the open ones"
    );
    assert_eq!(
        tickets(&find("?state=all").await),
        ["CS-1001", "CS-1002", "OPS_7%"]
    );
    assert_eq!(
        tickets(&find("?all=true").await).len(),
        3,
        "the older spelling"
    );
    assert_eq!(tickets(&find("?state=resolved").await), ["CS-1002"]);
    assert_eq!(
        tickets(&find("?ticket=cs-100").await),
        ["CS-1001"],
        "part of it, any case"
    );
    assert_eq!(
        tickets(&find("?ticket=CS-100&state=all").await),
        ["CS-1001", "CS-1002"]
    );
    assert_eq!(
        tickets(&find("?ticket=1002&state=open").await),
        Vec::<String>::new()
    );
    // `%` and `_` are themselves, not wildcards.
    assert_eq!(tickets(&find("?ticket=%25").await), ["OPS_7%"]);
    assert_eq!(tickets(&find("?ticket=S_7").await), ["OPS_7%"]);
    assert_eq!(tickets(&find("?ticket=S-1_").await), Vec::<String>::new());
    let (status, p) = json_of(&api, "/v1/disputes?state=closed", "boss").await;
    assert_eq!(status, 422, "{p}");
    let (status, _) = json_of(&api, "/v1/disputes?ticket=CS", "ops").await;
    assert_eq!(status, 403, "support and supervisors only");
    let _ = (a, c);
}
on_both_databases!(disputes_are_found_by_ticket_and_state);

#[tokio::test]
async fn the_page_speaks_the_browsers_language() {
    let db = TestDb::new(Db::Sqlite).await;
    let rig = Rig::new(db.store.clone());
    let api = rig.api(&db, STAFF, &[], true).await;
    let http = reqwest::Client::new();
    for (accept, lang) in [
        ("ko-KR,ko;q=0.9,en;q=0.8", "ko"),
        ("en-US,en;q=0.9", "en"),
        ("fr", "ko"),
    ] {
        let r = http
            .get(format!("{}/", api.base))
            .header("accept-language", accept)
            .send()
            .await
            .unwrap();
        assert_eq!(r.headers()["vary"], "Accept-Language");
        assert!(
            r.headers()["content-security-policy"]
                .to_str()
                .unwrap()
                .contains("script-src 'self'")
        );
        let page = r.text().await.unwrap();
        assert!(
            page.contains(&format!("<html lang=\"{lang}\">")),
            "{accept}"
        );
    }
    for (file, word) in [("ko.json", "로그인"), ("en.json", "Sign in")] {
        let r = http
            .get(format!("{}/assets/i18n/{file}", api.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["signin.submit"], word);
    }
    let r = http
        .get(format!("{}/assets/i18n/fr.json", api.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}
