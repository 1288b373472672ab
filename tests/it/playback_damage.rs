//! Playback over a damaged recording file: `GET`, `HEAD` and `Range` on a
//! file whose header, chunk fields or last chunk were changed answer
//! `500 recording-damaged`, naming the damage, and audit nothing; damage
//! further in, found while streaming, ends the body early after authentic
//! bytes only.

use ansim::store::RecordingRow;

use crate::harness::{Db, TestDb};
use crate::playback::{STAFF, grant, open_dispute};
use crate::rig::{Api, Rig};

/// The recording's encrypted file on disk.
fn blob_path(rig: &Rig, rec: &RecordingRow) -> std::path::PathBuf {
    rig.dir.path().join("rec").join(&rec.blob)
}

/// Offset in the file of chunk `index`'s length field.
async fn chunk_offset(rig: &Rig, rec: &RecordingRow, index: usize) -> usize {
    let sealed = rig.recorder.open_sealed(&rec.id).await.unwrap();
    let reader = sealed.reader().unwrap();
    reader.chunk_info(index).unwrap().offset
}

/// Status, `Content-Length`, and the body as far as it came (and whether
/// it ended with an error).
async fn fetch(api: &Api, path: &str, range: Option<&str>) -> (u16, Option<u64>, Vec<u8>, bool) {
    let headers: Vec<(&str, &str)> = range.map(|r| ("range", r)).into_iter().collect();
    let mut r = api.get(path, "agent", &headers).await;
    let status = r.status().as_u16();
    let len = r.content_length();
    let mut body = Vec::new();
    let cut = loop {
        match r.chunk().await {
            Ok(Some(piece)) => body.extend_from_slice(&piece),
            Ok(None) => break false,
            Err(_) => break true,
        }
    };
    (status, len, body, cut)
}

async fn problem_of(api: &Api, path: &str, range: Option<&str>) -> (u16, serde_json::Value) {
    let headers: Vec<(&str, &str)> = range.map(|r| ("range", r)).into_iter().collect();
    let r = api.get(path, "agent", &headers).await;
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

async fn plays(db: &TestDb, rec: &RecordingRow) -> usize {
    db.store
        .audit_events_on("recording.play", &rec.id)
        .await
        .unwrap()
        .len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_recording_answers_a_problem_or_ends_early() {
    let db = TestDb::new(Db::Sqlite).await;
    let rig = Rig::new(db.store.clone());
    // 20 s: ten 2-second chunks.
    let rec = rig.record_long("ses_test", "ad-6m", 1000).await;
    let api = rig.api(&db, STAFF, &[], true).await;
    let dispute = open_dispute(&api, &rec.call_id).await;
    grant(&api, &dispute, "agent", "boss").await;
    let path = format!("/v1/recordings/{}/audio", rec.id);
    let (status, _, full, cut) = fetch(&api, &path, None).await;
    assert_eq!((status, cut), (200, false));
    let file = blob_path(&rig, &rec);
    let original = std::fs::read(&file).unwrap();
    let audited = plays(&db, &rec).await;
    let damage = |at: usize, f: &dyn Fn(&mut u8)| {
        let mut bytes = original.clone();
        f(&mut bytes[at]);
        std::fs::write(&file, bytes).unwrap();
    };

    // Damage known before anything is sent: a problem, for GET, HEAD and
    // Range alike, naming what is wrong; nothing audited.
    let third = chunk_offset(&rig, &rec, 3).await;
    let header_len = chunk_offset(&rig, &rec, 0).await;
    // (byte, xor, what the detail says)
    let cases: [(usize, u8, &str); 5] = [
        // The header's recording id, then its nonce prefix.
        (20, 0x01, "header is for recording"),
        (header_len - 40, 0x01, "key commitment"),
        // Chunk 3's length (256 MiB more), then its media start (2^63 ms).
        (third, 0x10, "chunk 3 (at byte"),
        (third + 8, 0x80, "chunk 3 claims to start"),
        // The last chunk's tag (the writer's last chunk is empty: 20 s of
        // audio in chunks 0 to 9, then chunk 10).
        (original.len() - 5, 0x01, "chunk 10 was modified"),
    ];
    for (at, xor, says) in cases {
        damage(at, &|b| *b ^= xor);
        for range in [None, Some("bytes=0-99"), Some("bytes=400000-400099")] {
            let (status, p) = problem_of(&api, &path, range).await;
            assert_eq!(status, 500, "byte {at}: {p}");
            assert_eq!(p["type"], "urn:ansim:problem:recording-damaged", "{p}");
            let detail = p["detail"].as_str().unwrap();
            assert!(detail.contains(says), "byte {at}: {detail}");
        }
        let r = reqwest::Client::new()
            .head(format!("{}{path}", api.base))
            .bearer_auth(api.token("agent"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 500, "HEAD, byte {at}");
    }
    assert_eq!(plays(&db, &rec).await, audited, "no audio, no play event");

    // Damage in chunk 5's ciphertext is found only when it is reached: the
    // response has started, so the body ends early, after the authentic
    // bytes before chunk 5 and nothing else.
    let fifth = chunk_offset(&rig, &rec, 5).await;
    damage(fifth + 1000, &|b| *b ^= 0x01);
    let (status, len, body, cut) = fetch(&api, &path, None).await;
    assert_eq!((status, len), (200, Some(full.len() as u64)));
    assert!(cut, "the body ends with an error, not quietly");
    assert!(body.len() <= 44 + 10_000 * 32, "{} bytes", body.len());
    assert_eq!(body, full[..body.len()], "only authentic bytes, in place");
    // A range that does not need chunk 5 is whole.
    let range = format!("bytes={}-{}", 44 + 14_000 * 32, 44 + 15_000 * 32 - 1);
    let (status, _, body, cut) = fetch(&api, &path, Some(&range)).await;
    assert_eq!((status, cut), (206, false));
    assert_eq!(body, full[44 + 14_000 * 32..44 + 15_000 * 32]);
    // One that does ends early.
    let range = format!("bytes={}-{}", 44 + 9_000 * 32, 44 + 11_000 * 32 - 1);
    let (status, _, body, cut) = fetch(&api, &path, Some(&range)).await;
    assert_eq!((status, cut), (206, true));
    let start = 44 + 9_000 * 32;
    assert_eq!(body, full[start..start + body.len()]);
    assert_eq!(
        plays(&db, &rec).await,
        audited + 3,
        "audio was sent: audited"
    );

    // Repaired, it plays again.
    std::fs::write(&file, &original).unwrap();
    let (status, _, body, cut) = fetch(&api, &path, None).await;
    assert_eq!((status, cut, body == full), (200, false, true));
}
