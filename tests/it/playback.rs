//! Playback over HTTP: `GET /v1/recordings/{id}/audio` with a grant,
//! Range requests that decrypt only what they need, and erased recordings.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;

use ansim::clock::Clock;
use ansim::media::g711::Codec;
use ansim::retention::{NoFaults, sweep};
use ansim::store::{RecordingRow, Role};
use serde_json::json;

use crate::harness::{DAY, Db, TestDb};
use crate::on_both_databases;
use crate::rig::{Api, Rig};

/// Support user, supervisor, admin.
pub const STAFF: &[(&str, Role)] = &[
    ("agent", Role::Support),
    ("boss", Role::Supervisor),
    ("ops", Role::Admin),
];

/// Opens a dispute on `call_id` as `agent`; returns its id.
pub async fn open_dispute(api: &Api, call_id: &str) -> String {
    let body = json!({"call_ids": [call_id], "ticket": "CS-9", "reason": "no-show"});
    let v = api.post_ok("/v1/disputes", "agent", Some(body), 201).await;
    v["id"].as_str().unwrap().to_owned()
}

/// `who` asks for a grant on `dispute` and `approver` approves it.
pub async fn grant(api: &Api, dispute: &str, who: &str, approver: &str) -> String {
    let path = format!("/v1/disputes/{dispute}/grants");
    let v = api.post_ok(&path, who, None, 201).await;
    let id = v["id"].as_str().unwrap().to_owned();
    api.post_ok(&format!("/v1/grants/{id}/approve"), approver, None, 200)
        .await;
    id
}

fn decrypted(api: &Api) -> u64 {
    api.metrics
        .playback_chunks_decrypted
        .load(Ordering::Relaxed)
}

/// The chunks whose audio a byte range `[start, end)` of the WAV covers.
async fn chunks_of(rig: &Rig, rec: &RecordingRow, start: u64, end: u64) -> BTreeSet<usize> {
    let sealed = rig.recorder.open_sealed(&rec.id).await.unwrap();
    let reader = sealed.reader().unwrap();
    let ms = |byte: u64| (byte - 44) / 32;
    let (a, b) = (
        reader.chunk_for_media_ms(ms(start)).unwrap(),
        reader.chunk_for_media_ms(ms(end - 1)).unwrap(),
    );
    (a..=b).collect()
}

async fn range_requests_decrypt_only_the_chunks_they_need(db: Db) {
    let db = TestDb::new(db).await;
    let rig = Rig::new(db.store.clone());
    // 20 s of audio: ten 2-second chunks.
    let rec = rig.record_long("ses_test", "ad-6m", 1000).await;
    let api = rig.api(&db, STAFF, &[], true).await;
    let dispute = open_dispute(&api, &rec.call_id).await;
    let gid = grant(&api, &dispute, "agent", "boss").await;
    let path = format!("/v1/recordings/{}/audio", rec.id);

    let r = api.get(&path, "agent", &[]).await;
    assert_eq!(r.status(), 200);
    let h = r.headers().clone();
    assert_eq!(h["content-type"], "audio/wav");
    assert_eq!(h["accept-ranges"], "bytes");
    assert_eq!(h["cache-control"], "no-store");
    let full = r.bytes().await.unwrap();
    assert_eq!(
        full.len(),
        44 + 20 * 32_000,
        "20 s of 16-bit stereo at 8 kHz"
    );
    assert_eq!(h["content-length"], full.len().to_string().as_str());
    assert_eq!(&full[..4], b"RIFF");
    let all_chunks = decrypted(&api);
    // Ten chunks of 2 s, and the writer's last chunk, empty.
    let chunks = {
        let sealed = rig.recorder.open_sealed(&rec.id).await.unwrap();
        sealed.reader().unwrap().chunk_count() as u64
    };
    assert_eq!(chunks, 11);
    assert_eq!(
        all_chunks, chunks,
        "a full download decrypts every chunk once"
    );
    // The audio is what was sent: at 10.01 s (packet 500) the caller sent
    // byte 500 % 97 + 1 and the callee 500 % 89 + 128.
    let at = 44 + 10_010 * 32;
    let sample = |o: usize| i16::from_le_bytes([full[o], full[o + 1]]);
    assert_eq!(sample(at), Codec::Pcmu.decode((500 % 97) as u8 + 1));
    assert_eq!(sample(at + 2), Codec::Pcmu.decode((500 % 89) as u8 + 128));

    // HEAD: the same headers, no audio, nothing audited; the last chunk
    // alone is decrypted, to authenticate the length.
    let r = reqwest::Client::new()
        .head(format!("{}{path}", api.base))
        .bearer_auth(api.token("agent"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-length"],
        full.len().to_string().as_str()
    );
    assert_eq!(decrypted(&api), all_chunks + 1);
    let all_chunks = all_chunks + 1;

    // One second from the middle: exactly the full download's bytes there,
    // for the one chunk it covers.
    let (start, end) = (44 + 10_500 * 32, 44 + 11_500 * 32);
    let range = format!("bytes={start}-{}", end - 1);
    let r = api.get(&path, "agent", &[("range", &range)]).await;
    assert_eq!(r.status(), 206);
    assert_eq!(
        r.headers()["content-range"],
        format!("bytes {start}-{}/{}", end - 1, full.len()).as_str()
    );
    let part = r.bytes().await.unwrap();
    assert_eq!(part, full[start as usize..end as usize]);
    let needed = chunks_of(&rig, &rec, start, end).await;
    assert_eq!(needed.len(), 1);
    assert_eq!(
        decrypted(&api) - all_chunks,
        2,
        "only chunk {needed:?}, and the last one for the length"
    );

    // Across a chunk boundary: two chunks.
    let before = decrypted(&api);
    let (start, end) = (44 + 11_900 * 32, 44 + 12_100 * 32);
    let r = api
        .get(
            &path,
            "agent",
            &[("range", &format!("bytes={start}-{}", end - 1))],
        )
        .await;
    assert_eq!(r.bytes().await.unwrap(), full[start as usize..end as usize]);
    let needed = chunks_of(&rig, &rec, start, end).await;
    assert_eq!(decrypted(&api) - before, needed.len() as u64 + 1);
    assert_eq!(needed.len(), 2);

    // The last 100 bytes; an open-ended range; past the end.
    let r = api.get(&path, "agent", &[("range", "bytes=-100")]).await;
    assert_eq!(r.status(), 206);
    assert_eq!(r.bytes().await.unwrap(), full[full.len() - 100..]);
    let r = api.get(&path, "agent", &[("range", "bytes=640000-")]).await;
    assert_eq!(r.bytes().await.unwrap(), full[640_000..]);
    let r = api
        .get(&path, "agent", &[("range", "bytes=999999999-")])
        .await;
    assert_eq!(r.status(), 416);
    assert_eq!(
        r.headers()["content-range"],
        format!("bytes */{}", full.len()).as_str()
    );
    let p: serde_json::Value = r.json().await.unwrap();
    assert_eq!(p["type"], "urn:ansim:problem:range-not-satisfiable");

    // Every request that sent audio is in the audit log, with its grant.
    let plays = db
        .store
        .audit_events_on("recording.play", &rec.id)
        .await
        .unwrap();
    assert_eq!(plays.len(), 5);
    assert!(plays.iter().all(|(_, actor, detail)| {
        actor == &format!("staff:{}", api.id("agent")) && detail.contains(&gid)
    }));
    assert!(ansim::audit::verify(&db.store).await.unwrap().is_ok());

    // Who listened, as the dispute shows it.
    let v: serde_json::Value = api
        .get(&format!("/v1/disputes/{dispute}"), "boss", &[])
        .await
        .json()
        .await
        .unwrap();
    let listened = &v["recordings"][0]["listened"];
    assert_eq!(listened.as_array().unwrap().len(), 1, "{v}");
    assert_eq!(listened[0]["name"], "agent");
    assert_eq!(listened[0]["requests"], 5);
    assert!(
        v["calls"][0].get("caller").is_none(),
        "no real number for support: {v}"
    );
}
on_both_databases!(range_requests_decrypt_only_the_chunks_they_need);

/// A recording erased before anyone disputed its call answers 410 with a
/// problem of its own; an id that never was answers 404.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erased_recording_is_gone_not_missing() {
    let db = TestDb::new(Db::Sqlite).await;
    let rig = Rig::new(db.store.clone());
    let rec = rig.record_long("ses_test", "ad-6m", 100).await;
    rig.clock.advance(DAY * 200);
    let swept = sweep(&rig.recorder, rig.clock.now(), false, &NoFaults)
        .await
        .unwrap();
    assert_eq!(swept.erased.len(), 1, "{swept:?}");

    let api = rig.api(&db, STAFF, &[], true).await;
    let dispute = open_dispute(&api, &rec.call_id).await;
    grant(&api, &dispute, "agent", "boss").await;
    let r = api
        .get(&format!("/v1/recordings/{}/audio", rec.id), "agent", &[])
        .await;
    assert_eq!(r.status(), 410);
    let p: serde_json::Value = r.json().await.unwrap();
    assert_eq!(p["type"], "urn:ansim:problem:recording-erased");
    assert!(p["detail"].as_str().unwrap().contains("erased"), "{p}");

    let r = api
        .get(
            &format!("/v1/recordings/{}/audio", uuid::Uuid::new_v4()),
            "agent",
            &[],
        )
        .await;
    assert_eq!(r.status(), 404);

    let v: serde_json::Value = api
        .get(&format!("/v1/disputes/{dispute}"), "agent", &[])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["recordings"][0]["state"], "erased", "{v}");
    assert_eq!(decrypted(&api), 0);

    // The chain holds across the erasure, and names ids, never the number.
    let events = db
        .store
        .list_audit(ansim::clock::Timestamp::from_millis(0), 1000)
        .await
        .unwrap();
    let actions: Vec<&str> = events.iter().map(|e| e.action.as_str()).collect();
    for a in [
        "recording.erase",
        "dispute.open",
        "grant.request",
        "grant.approve",
        "recording.list",
    ] {
        assert!(actions.contains(&a), "{a} missing from {actions:?}");
    }
    assert!(ansim::audit::verify(&db.store).await.unwrap().is_ok());
    for e in &events {
        let text = format!("{} {} {}", e.actor, e.object, e.detail);
        assert!(
            !text.contains("1012345678"),
            "a real number in the audit log: {text}"
        );
    }
}

/// Two open disputes on one call: resolving either keeps the recording
/// held for the other; resolving both releases it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recording_stays_held_while_any_dispute_on_it_is_open() {
    let db = TestDb::new(Db::Sqlite).await;
    let rig = Rig::new(db.store.clone());
    let rec = rig.record_long("ses_test", "ad-6m", 50).await;
    let api = rig.api(&db, STAFF, &[], true).await;
    let held = || async {
        db.store
            .find_recording(&rec.id)
            .await
            .unwrap()
            .unwrap()
            .held_by
    };
    let first = open_dispute(&api, &rec.call_id).await;
    let second = open_dispute(&api, &rec.call_id).await;
    api.post_ok(
        &format!("/v1/disputes/{second}/resolve"),
        "agent",
        None,
        200,
    )
    .await;
    let hold = held().await.expect("still held for the first dispute");
    let d = db.store.get_dispute(&first).await.unwrap().unwrap();
    assert_eq!(Some(hold), d.hold_id);
    grant(&api, &first, "agent", "boss").await;
    let path = format!("/v1/recordings/{}/audio", rec.id);
    assert_eq!(api.get(&path, "agent", &[]).await.status(), 200);
    api.post_ok(&format!("/v1/disputes/{first}/resolve"), "agent", None, 200)
        .await;
    assert_eq!(held().await, None, "released with the last dispute");
}
