//! Every way a recording can end (the README's table of recording states),
//! on both databases: complete, failed (write-error, unsupported-codec),
//! truncated (no writer), and the epoch its DEK ends under.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use ansim::clock::Clock;
use ansim::keys::epoch_end;
use ansim::recording::EARLY_PACKETS;
use ansim::recording::blob::{BlobError, BlobStore, BlobWriter, LocalBlobStore};
use ansim::retention::{NoFaults, sweep};
use ansim::store::RecordingRow;

use crate::harness::{DAY, Db, T0, TestDb};
use crate::on_both_databases;
use crate::rig::{MAX_CALL, Rig, packet};

/// A blob store whose writers fail every append after the first `ok`
/// (counted over the whole store), as a disk that fills up or goes away.
struct FailingBlobs {
    inner: LocalBlobStore,
    appends: Arc<AtomicUsize>,
    ok: usize,
}

struct FailingWriter {
    inner: Box<dyn BlobWriter>,
    appends: Arc<AtomicUsize>,
    ok: usize,
}

impl BlobWriter for FailingWriter {
    fn append(&mut self, bytes: &[u8]) -> Result<(), BlobError> {
        if self.appends.fetch_add(1, Ordering::SeqCst) >= self.ok {
            return Err(BlobError::Io {
                path: "failing".into(),
                source: std::io::Error::from_raw_os_error(28), // ENOSPC
            });
        }
        self.inner.append(bytes)
    }

    fn sync(&mut self) -> Result<(), BlobError> {
        self.inner.sync()
    }
}

impl BlobStore for FailingBlobs {
    fn create(&self, name: &str) -> Result<Box<dyn BlobWriter>, BlobError> {
        Ok(Box::new(FailingWriter {
            inner: self.inner.create(name)?,
            appends: self.appends.clone(),
            ok: self.ok,
        }))
    }
    fn read(&self, name: &str) -> Result<Vec<u8>, BlobError> {
        self.inner.read(name)
    }
    fn delete(&self, name: &str) -> Result<bool, BlobError> {
        self.inner.delete(name)
    }
    fn list(&self) -> Result<Vec<String>, BlobError> {
        self.inner.list()
    }
}

fn failing_rig(db: &TestDb, ok: usize) -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let inner = LocalBlobStore::new(&dir.path().join("failing")).unwrap();
    let blobs = FailingBlobs {
        inner,
        appends: Arc::default(),
        ok,
    };
    // The blob directory must outlive the rig: keep it with the test.
    std::mem::forget(dir);
    Rig::with_blobs(db.store.clone(), Arc::new(blobs))
}

/// A datagram with payload type `pt` (160 bytes of payload).
fn with_payload_type(seq: u16, pt: u8) -> Vec<u8> {
    let mut p = packet(seq, 0x42);
    p[1] = pt;
    p
}

async fn a_write_error_mid_call_ends_the_recording_failed(db: Db) {
    let db = TestDb::new(db).await;
    // The header and the first 2 s chunk are written, then the disk fails.
    let rig = failing_rig(&db, 2);
    let row = rig
        .record_packets("ses_test", "ad-6m", 250, |i| (packet(i, 1), packet(i, 2)))
        .await;
    assert_eq!(
        (row.state.as_str(), row.failure.map(|f| f.as_str())),
        ("failed", Some("write-error"))
    );
    assert!(
        row.ended_at.is_some() && row.expires_at.is_some(),
        "{row:?}"
    );
    assert_eq!(
        row.duration_ms,
        Some(4000),
        "what was aligned before the failure"
    );
    // What was synced before the failure still reads, as truncated.
    let decrypted = rig.recorder.decrypt(&row.id).await.unwrap();
    assert_eq!(decrypted.duration_ms(), 2000);
    assert_eq!(
        rig.recorder
            .counters()
            .failed_write_error
            .load(Ordering::Relaxed),
        1
    );
    // And it is erased like any other when its time comes.
    rig.clock.set(row.expires_at.unwrap());
    let r = sweep(&rig.recorder, rig.clock.now(), false, &NoFaults)
        .await
        .unwrap();
    let erased: Vec<&str> = r.erased.iter().map(|e| e.recording_id.as_str()).collect();
    assert_eq!(erased, [row.id.as_str()]);
}
on_both_databases!(a_write_error_mid_call_ends_the_recording_failed);

async fn a_blob_that_cannot_be_created_ends_the_recording_failed(db: Db) {
    let db = TestDb::new(db).await;
    let rig = failing_rig(&db, 0);
    let row = rig
        .record_packets("ses_test", "ad-6m", 10, |i| (packet(i, 1), packet(i, 2)))
        .await;
    assert_eq!(
        (row.state.as_str(), row.failure.map(|f| f.as_str())),
        ("failed", Some("write-error"))
    );
}
on_both_databases!(a_blob_that_cannot_be_created_ends_the_recording_failed);

async fn a_codec_that_cannot_be_stored_ends_failed_with_nothing_buffered(db: Db) {
    let db = TestDb::new(db).await;
    let rig = Rig::new(db.store.clone());
    // G.729 (static type 18): refused at its first packet.
    let row = rig
        .record_packets("ses_test", "ad-6m", 500, |i| {
            (with_payload_type(i, 18), with_payload_type(i, 18))
        })
        .await;
    assert_eq!(
        (
            row.state.as_str(),
            row.failure.map(|f| f.as_str()),
            row.codec.map_or("unsupported", |c| c.as_str())
        ),
        ("failed", Some("unsupported-codec"), "unsupported")
    );
    assert!(rig.blobs().is_empty(), "no blob is written for it");
    // Opus (a dynamic type, like telephone events): given EARLY_PACKETS
    // packets to turn into PCMU/PCMA, then refused; the rest is not kept.
    let packets = u16::try_from(EARLY_PACKETS * 20).unwrap();
    let row = rig
        .record_packets("ses_test", "ad-6m", packets, |i| {
            (with_payload_type(i, 111), with_payload_type(i, 111))
        })
        .await;
    assert_eq!(row.failure.map(|f| f.as_str()), Some("unsupported-codec"));
    assert_eq!(
        rig.recorder
            .counters()
            .failed_unsupported_codec
            .load(Ordering::Relaxed),
        2
    );
    // Telephone events before the audio do not fail a G.711 call.
    let row = rig
        .record_packets("ses_test", "ad-6m", 100, |i| {
            if i < 10 {
                (with_payload_type(i, 101), with_payload_type(i, 101))
            } else {
                (packet(i, 1), packet(i, 2))
            }
        })
        .await;
    assert_eq!(
        (
            row.state.as_str(),
            row.codec.map_or("unsupported", |c| c.as_str())
        ),
        ("complete", "PCMU")
    );
}
on_both_databases!(a_codec_that_cannot_be_stored_ends_failed_with_nothing_buffered);

/// A row left in `recording` by a writer that is gone.
async fn orphan(rig: &Rig, started: ansim::clock::Timestamp) -> RecordingRow {
    let mut row = rig.record("ad-6m").await;
    row.id = uuid::Uuid::new_v4().to_string();
    row.blob = format!("{}.crec", row.id);
    row.started_at = started;
    rig.store.insert_recording(&row).await.unwrap();
    rig.store.find_recording(&row.id).await.unwrap().unwrap()
}

async fn reconciliation_truncates_recordings_without_a_writer_and_only_those(db: Db) {
    let db = TestDb::new(db).await;
    let rig = Rig::new(db.store.clone());
    let dead = orphan(&rig, T0).await;
    let alive = orphan(&rig, T0).await;
    assert_eq!(
        (dead.state.as_str(), alive.state.as_str()),
        ("recording", "recording")
    );
    let _writer = rig.recorder.writers().register(alive.id.clone());
    // Found a day later: it cannot have lasted longer than the longest call.
    rig.clock.set(T0.saturating_add(DAY));
    let truncated = rig.recorder.reconcile().await.unwrap();
    assert_eq!(
        truncated.iter().map(|r| r.id.clone()).collect::<Vec<_>>(),
        vec![dead.id.clone()]
    );
    let dead = rig.store.find_recording(&dead.id).await.unwrap().unwrap();
    assert_eq!(dead.state.as_str(), "truncated");
    assert_eq!(dead.ended_at, Some(T0.saturating_add(MAX_CALL)));
    assert_eq!(
        dead.expires_at,
        Some(T0.saturating_add(MAX_CALL + DAY * 180))
    );
    let alive = rig.store.find_recording(&alive.id).await.unwrap().unwrap();
    assert_eq!(
        alive.state.as_str(),
        "recording",
        "a live writer's recording is left alone"
    );
    assert_eq!(rig.recorder.counters().truncated.load(Ordering::Relaxed), 1);
    // Idempotent.
    assert!(rig.recorder.reconcile().await.unwrap().is_empty());
}
on_both_databases!(reconciliation_truncates_recordings_without_a_writer_and_only_those);

async fn a_finished_recording_dek_moves_to_the_epoch_of_its_expiry(db: Db) {
    let db = TestDb::new(db).await;
    let rig = Rig::new(db.store.clone());
    // Late in the day: start + longest call + retention falls in the next
    // epoch, the real expiry (the call ends at once) in this one.
    let start = T0.saturating_add(Duration::from_secs(22 * 3600));
    rig.clock.set(start);
    let (start_epoch, start_end) = rig.recorder.policy().epoch_for("ad-6m", start).unwrap();
    let row = rig.record("ad-6m").await;
    assert_eq!(row.state.as_str(), "complete");
    let expires = row.expires_at.unwrap();
    let (_, end) = epoch_end(&row.epoch_id).unwrap();
    assert_ne!(row.epoch_id, start_epoch, "the DEK left its start epoch");
    assert!(end > expires && end.as_millis() - expires.as_millis() <= DAY.as_millis() as i64);
    assert!(rig.keks().contains(&start_epoch), "created at the start");

    // The start epoch's KEK wraps nothing now; it goes once no recording
    // can be assigned its epoch any more (retention from now reaches past
    // its end), with five minutes' grace: a backup taken during the call
    // is useless long before the recording expires.
    let last = start_end.saturating_sub(DAY * 180);
    rig.clock.set(last);
    let r = sweep(&rig.recorder, rig.clock.now(), false, &NoFaults)
        .await
        .unwrap();
    assert!(r.keys_destroyed.is_empty(), "{r:?}");
    rig.clock.set(last.saturating_add(Duration::from_secs(301)));
    let r = sweep(&rig.recorder, rig.clock.now(), false, &NoFaults)
        .await
        .unwrap();
    assert_eq!(r.keys_destroyed, vec![start_epoch.clone()]);
    assert_eq!(
        rig.recorder.decrypt(&row.id).await.unwrap().duration_ms(),
        1000
    );

    // Its own KEK lives while it does and goes with it, at its expiry:
    // well within one epoch width of it.
    rig.clock
        .set(expires.saturating_sub(Duration::from_millis(1)));
    let r = sweep(&rig.recorder, rig.clock.now(), false, &NoFaults)
        .await
        .unwrap();
    assert!(r.erased.is_empty() && r.keys_destroyed.is_empty(), "{r:?}");
    rig.clock.set(expires);
    let r = sweep(&rig.recorder, rig.clock.now(), false, &NoFaults)
        .await
        .unwrap();
    let erased: Vec<&str> = r.erased.iter().map(|e| e.recording_id.as_str()).collect();
    assert_eq!(erased, [row.id.as_str()]);
    assert_eq!(r.keys_destroyed, vec![row.epoch_id.clone()]);
    assert!(rig.keks().is_empty());
}
on_both_databases!(a_finished_recording_dek_moves_to_the_epoch_of_its_expiry);
