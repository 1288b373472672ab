//! Faults and bad data: disputes and their holds stay consistent, a failed
//! release is finished by resolving again (or by the sweep), and a sweep
//! erases everything it can around one recording it cannot.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use ansim::audit::Actor;
use ansim::clock::Clock;
use ansim::keys::epoch_end;
use ansim::retention::{FaultPoint, Item, NoFaults, RetentionError, Step, sweep};
use ansim::store::Role;
use serde_json::{Value, json};

use crate::harness::{Db, TestDb, count};
use crate::on_both_databases;
use crate::rig::{Api, Rig};

/// Fails the first time the sweep or a hold operation reaches `step`.
struct FailOnce(Step, AtomicBool);

impl FailOnce {
    fn at(step: Step) -> Arc<FailOnce> {
        Arc::new(FailOnce(step, AtomicBool::new(false)))
    }
}

impl FaultPoint for FailOnce {
    fn at(&self, step: Step) -> Result<(), RetentionError> {
        if step == self.0 && !self.1.swap(true, Ordering::SeqCst) {
            return Err(RetentionError::Injected(step));
        }
        Ok(())
    }
}

const STAFF: &[(&str, Role)] = &[("agent", Role::Support), ("boss", Role::Supervisor)];

async fn api(rig: &Rig, db: &TestDb, faults: Arc<dyn FaultPoint>) -> Api {
    rig.api_with(db, STAFF, &[], true, faults).await
}

fn dispute_body(calls: &[&str]) -> Value {
    json!({ "call_ids": calls, "ticket": "CS-7", "reason": "the customer disputes the price" })
}

async fn a_dispute_naming_a_call_twice_holds_it_once(db: Db) {
    let db = TestDb::new(db).await;
    let rig = Rig::new(db.store.clone());
    let rec = rig.record("ad-6m").await;
    let other = rig.record("ad-6m").await;
    let api = api(&rig, &db, Arc::new(NoFaults)).await;

    let body = dispute_body(&[&rec.call_id, &other.call_id, &rec.call_id]);
    let opened = api.post_ok("/v1/disputes", "agent", Some(body), 201).await;
    let d = &opened;
    let mut calls = vec![rec.call_id.clone(), other.call_id.clone()];
    calls.sort();
    assert_eq!(d["call_ids"], json!(calls), "each call once");
    assert_eq!(opened["held_recordings"], json!([rec.id, other.id]));
    let hold = d["hold_id"].as_str().unwrap().to_owned();
    assert_eq!(count(&db, "SELECT COUNT(*) FROM disputes").await, 1);
    assert_eq!(count(&db, "SELECT COUNT(*) FROM holds").await, 1);
    assert_eq!(count(&db, "SELECT COUNT(*) FROM dispute_calls").await, 2);
    for r in [&rec, &other] {
        let now = db.store.find_recording(&r.id).await.unwrap().unwrap();
        assert_eq!(
            (now.held_by.as_deref(), now.epoch_id.as_str()),
            (Some(hold.as_str()), hold.as_str()),
            "held, and the DEK under the hold's KEK"
        );
    }

    let id = d["id"].as_str().unwrap();
    let resolved = api
        .post_ok(&format!("/v1/disputes/{id}/resolve"), "agent", None, 200)
        .await;
    assert_eq!(
        resolved["released"]["returned"].as_array().unwrap().len(),
        2
    );
    let h = db.store.hold_state(&hold).await.unwrap().unwrap();
    assert!(h.released_at.is_some() && !rig.keks().contains(&hold));

    // Released, the recordings are erasable again: once their epochs
    // (the one they returned to, and the one they were first in) have
    // ended, the sweep erases both and destroys every key.
    let back = db.store.find_recording(&rec.id).await.unwrap().unwrap();
    let last_end = [&back.epoch_id, &rec.epoch_id]
        .iter()
        .map(|e| epoch_end(e).unwrap().1)
        .max()
        .unwrap();
    rig.clock.set(last_end);
    let r = sweep(&rig.recorder, rig.clock.now(), false, &NoFaults)
        .await
        .unwrap();
    assert_eq!(r.erased.len(), 2, "{r:?}");
    assert!(r.failures.is_empty(), "{r:?}");
    assert!(rig.keks().is_empty() && rig.blobs().is_empty());
}
on_both_databases!(a_dispute_naming_a_call_twice_holds_it_once);

/// The release after a resolve fails (just before the hold's KEK is
/// destroyed): 503, the dispute stays resolved, and resolving again
/// completes it; only then does a resolve answer 409.
async fn a_failed_release_is_completed_by_resolving_again(db: Db) {
    let db = TestDb::new(db).await;
    let rig = Rig::new(db.store.clone());
    let rec = rig.record("ad-6m").await;
    let api = api(&rig, &db, FailOnce::at(Step::BeforeHoldKek)).await;
    let opened = api
        .post_ok(
            "/v1/disputes",
            "agent",
            Some(dispute_body(&[&rec.call_id])),
            201,
        )
        .await;
    let id = opened["id"].as_str().unwrap().to_owned();
    let hold = opened["hold_id"].as_str().unwrap().to_owned();
    let resolve = format!("/v1/disputes/{id}/resolve");

    let failed = api.post_ok(&resolve, "agent", None, 503).await;
    assert!(
        failed["type"]
            .as_str()
            .unwrap()
            .ends_with("release-incomplete"),
        "{failed}"
    );
    assert!(
        failed["detail"].as_str().unwrap().contains("again"),
        "{failed}"
    );
    let d = db.store.get_dispute(&id).await.unwrap().unwrap();
    assert!(d.resolved_at.is_some(), "resolved: it gives no more access");
    let h = db.store.hold_state(&hold).await.unwrap().unwrap();
    assert!(h.release_requested_at.is_some() && h.released_at.is_none());
    assert!(rig.keks().contains(&hold), "the hold's key is still there");
    assert!(rig.recorder.decrypt(&rec.id).await.is_ok());

    let done = api.post_ok(&resolve, "boss", None, 200).await;
    assert_eq!(done["id"], json!(id));
    let h = db.store.hold_state(&hold).await.unwrap().unwrap();
    assert!(h.released_at.is_some(), "released by the retry");
    assert!(!rig.keks().contains(&hold));
    let back = db.store.find_recording(&rec.id).await.unwrap().unwrap();
    assert_eq!(back.held_by, None);
    assert!(
        rig.recorder.decrypt(&rec.id).await.is_ok(),
        "back in retention"
    );

    let again = api.post_ok(&resolve, "agent", None, 409).await;
    assert!(
        again["type"]
            .as_str()
            .unwrap()
            .ends_with("dispute-resolved")
    );
    let events = |a: &'static str| {
        let store = db.store.clone();
        async move { store.audit_events(a).await.unwrap() }
    };
    assert_eq!(events("dispute.resolve").await.len(), 1, "one resolve");
    let released = events("hold.release").await;
    assert_eq!(released.len(), 1);
    assert_eq!(released[0].1, format!("staff:{}", api.id("boss")));
    assert!(ansim::audit::verify(&db.store).await.unwrap().is_ok());
}
on_both_databases!(a_failed_release_is_completed_by_resolving_again);

/// Nobody resolves again: the next sweep completes the release.
async fn the_sweep_completes_a_release_nobody_retried(db: Db) {
    let db = TestDb::new(db).await;
    let rig = Rig::new(db.store.clone());
    let rec = rig.record("ad-6m").await;
    let api = api(&rig, &db, FailOnce::at(Step::BeforeHoldKek)).await;
    let opened = api
        .post_ok(
            "/v1/disputes",
            "agent",
            Some(dispute_body(&[&rec.call_id])),
            201,
        )
        .await;
    let id = opened["id"].as_str().unwrap().to_owned();
    let hold = opened["hold_id"].as_str().unwrap().to_owned();
    api.post_ok(&format!("/v1/disputes/{id}/resolve"), "agent", None, 503)
        .await;

    let r = sweep(&rig.recorder, rig.clock.now(), false, &NoFaults)
        .await
        .unwrap();
    assert_eq!(r.holds_released, vec![hold.clone()]);
    assert!(r.failures.is_empty(), "{r:?}");
    assert!(!rig.keks().contains(&hold));
    let released = db.store.audit_events("hold.release").await.unwrap();
    assert_eq!(released[0].1, Actor::RETENTION.to_string());
    api.post_ok(&format!("/v1/disputes/{id}/resolve"), "agent", None, 409)
        .await;
}
on_both_databases!(the_sweep_completes_a_release_nobody_retried);

/// Moving the DEKs under the hold's KEK fails after the dispute is
/// written: the dispute and its hold exist (201), the recording is held
/// and still playable, and the sweep finishes the move, so its epoch key
/// can go on time.
async fn a_hold_whose_keys_did_not_move_is_finished_by_the_sweep(db: Db) {
    let db = TestDb::new(db).await;
    let rig = Rig::new(db.store.clone());
    let rec = rig.record("ad-6m").await;
    let api = api(&rig, &db, FailOnce::at(Step::HoldRewrap)).await;
    let opened = api
        .post_ok(
            "/v1/disputes",
            "agent",
            Some(dispute_body(&[&rec.call_id])),
            201,
        )
        .await;
    let hold = opened["hold_id"].as_str().unwrap().to_owned();
    let row = db.store.find_recording(&rec.id).await.unwrap().unwrap();
    assert_eq!(row.held_by.as_deref(), Some(hold.as_str()), "held");
    assert_eq!(row.epoch_id, rec.epoch_id, "its DEK has not moved yet");
    assert!(rig.recorder.decrypt(&rec.id).await.is_ok());

    // At the epoch's end the held recording is neither erased nor lost:
    // the sweep first moves its DEK, then destroys the epoch key.
    rig.clock.set(epoch_end(&rec.epoch_id).unwrap().1);
    let r = sweep(&rig.recorder, rig.clock.now(), false, &NoFaults)
        .await
        .unwrap();
    assert_eq!(r.holds_applied, vec![hold.clone()]);
    assert!(r.erased.is_empty(), "held: not erased");
    assert_eq!(r.keys_destroyed, vec![rec.epoch_id.clone()]);
    let row = db.store.find_recording(&rec.id).await.unwrap().unwrap();
    assert_eq!(row.epoch_id, hold);
    assert!(
        rig.recorder.decrypt(&rec.id).await.is_ok(),
        "through the hold key"
    );
}
on_both_databases!(a_hold_whose_keys_did_not_move_is_finished_by_the_sweep);

/// Replaces a blob by a directory of the same name: it exists, but it
/// can be neither read nor deleted (whoever runs the test, root included).
fn break_blob(rig: &Rig, name: &str) -> Vec<u8> {
    let path = rig.dir.path().join("rec").join(name);
    let bytes = std::fs::read(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    std::fs::create_dir(&path).unwrap();
    bytes
}

fn mend_blob(rig: &Rig, name: &str, bytes: &[u8]) {
    let path = rig.dir.path().join("rec").join(name);
    std::fs::remove_dir(&path).unwrap();
    std::fs::write(&path, bytes).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// One unreadable blob among many erasable recordings: the others are
/// erased, the bad one is reported, kept, and erased by the next sweep
/// once its blob can be read.
async fn one_unreadable_blob_does_not_stop_the_sweep(db: Db) {
    let db = TestDb::new(db).await;
    let rig = Rig::new(db.store.clone());
    let mut rows = Vec::new();
    for _ in 0..6 {
        rows.push(rig.record("ad-6m").await);
    }
    // Before, the first failing recording stopped every sweep there.
    let bad = rows[0].clone();
    let saved = break_blob(&rig, &bad.blob);

    rig.clock.set(epoch_end(&bad.epoch_id).unwrap().1);
    let r = sweep(&rig.recorder, rig.clock.now(), false, &NoFaults)
        .await
        .unwrap();
    let erased: Vec<&str> = r.erased.iter().map(|e| e.recording_id.as_str()).collect();
    assert_eq!(erased.len(), 5, "{r:?}");
    assert!(!erased.contains(&bad.id.as_str()));
    assert_eq!(r.failures.len(), 1, "{r:?}");
    assert_eq!(r.failures[0].item, Item::Recording(bad.id.clone()));
    assert!(!r.failures[0].error.is_empty());
    assert!(
        r.keys_destroyed.is_empty(),
        "its epoch still has a live row"
    );
    assert!(db.store.find_recording(&bad.id).await.unwrap().is_some());
    assert!(db.store.find_tombstone(&bad.id).await.unwrap().is_none());
    assert_eq!(
        db.store
            .audit_events("recording.erase")
            .await
            .unwrap()
            .len(),
        5
    );

    // Still unreadable: reported again, nothing else changes.
    let r = sweep(&rig.recorder, rig.clock.now(), false, &NoFaults)
        .await
        .unwrap();
    assert_eq!((r.erased.len(), r.failures.len()), (0, 1), "{r:?}");

    mend_blob(&rig, &bad.blob, &saved);
    let r = sweep(&rig.recorder, rig.clock.now(), false, &NoFaults)
        .await
        .unwrap();
    assert_eq!(r.erased.len(), 1, "{r:?}");
    assert_eq!(r.erased[0].recording_id, bad.id);
    assert!(r.failures.is_empty(), "{r:?}");
    assert_eq!(r.keys_destroyed, vec![bad.epoch_id.clone()]);
    assert!(rig.blobs().is_empty() && rig.keks().is_empty());
}
on_both_databases!(one_unreadable_blob_does_not_stop_the_sweep);

/// `ansim retention run` lists what it could not erase and exits 3; run
/// again once the blob is readable, it erases it and exits 0.
async fn retention_run_reports_what_it_could_not_erase(db: Db) {
    let db = TestDb::new(db).await;
    let rig = Rig::new(db.store.clone());
    let rows = [rig.record("ad-6m").await, rig.record("ad-6m").await];
    let saved = break_blob(&rig, &rows[1].blob);
    // Due by the real clock the command runs with.
    crate::harness::execute(&db, "UPDATE recordings SET expires_at = 1").await;
    let d = rig.dir.path().display();
    let run = || {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_ansim"));
        cmd.current_dir(rig.dir.path()).args(["retention", "run"]);
        for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("ANSIM_")) {
            cmd.env_remove(k);
        }
        cmd.env("ANSIM_STORE__DATABASE_URL", &db.url)
            .env("ANSIM_STORE__RECORDINGS", format!("file://{d}/rec"))
            .env("ANSIM_KEYS__MASTER_KEY_FILE", format!("{d}/master.key"))
            .env("ANSIM_KEYS__STORE", format!("dir:{d}/keys"))
            .env("ANSIM_KEYS__DEV", "false");
        cmd.output().unwrap()
    };
    let out = run();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stdout}\n{stderr}");
    assert!(
        stdout.contains(&format!("erased recording {}", rows[0].id)),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("FAILED recording {}", rows[1].id)),
        "{stdout}"
    );
    assert!(
        stderr.contains("the next sweep tries them again"),
        "{stderr}"
    );

    mend_blob(&rig, &rows[1].blob, &saved);
    let out = run();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains(&format!("erased recording {}", rows[1].id)),
        "{stdout}"
    );
    assert!(!stdout.contains("FAILED"), "{stdout}");
}
on_both_databases!(retention_run_reports_what_it_could_not_erase);

/// `/metrics` exposes the count of items sweeps could not finish.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_expose_retention_failures() {
    let db = TestDb::new(Db::Sqlite).await;
    let rig = Rig::new(db.store.clone());
    let api = api(&rig, &db, Arc::new(NoFaults)).await;
    api.metrics
        .retention_erase_failures
        .fetch_add(2, Ordering::Relaxed);
    let text = api
        .get("/metrics", "agent", &[])
        .await
        .text()
        .await
        .unwrap();
    assert!(
        text.contains("# TYPE ansim_retention_erase_failures_total counter")
            && text.contains("ansim_retention_erase_failures_total 2"),
        "{text}"
    );
}
