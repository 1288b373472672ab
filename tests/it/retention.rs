//! Retention and cryptographic erasure, with a clock the test moves.

use std::time::Duration;

use ansim::audit::Actor;
use ansim::clock::Clock;
use ansim::recording::export::ExportError;
use ansim::retention::{
    FaultPoint, NoFaults, RetentionError, Step, erase_subject, hold, release, sweep,
};
use ansim::store::Store;

use crate::harness::{DAY, Db, T0, TestDb, n};
use crate::on_both_databases;
use crate::rig::{Keys, Rig, recorder_on};

async fn time_travel_erases_and_destroys_the_epoch_key(db: Db) {
    time_travel_erases_and_destroys_the_epoch_key_in(db, Keys::Dir).await
}
on_both_databases!(time_travel_erases_and_destroys_the_epoch_key);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_travel_erases_and_destroys_the_epoch_key_in_softhsm() {
    time_travel_erases_and_destroys_the_epoch_key_in(Db::Sqlite, Keys::softhsm()).await
}

async fn time_travel_erases_and_destroys_the_epoch_key_in(db: Db, keys: Keys) {
    let db = TestDb::new(db).await;
    let rig = Rig::with_keys(db.store.clone(), keys);
    let row = rig.record("ad-6m").await;
    assert_eq!(
        rig.recorder
            .decrypt(&row.call_id)
            .await
            .unwrap()
            .duration_ms(),
        1000
    );
    let expires = row.expires_at.unwrap();
    assert_eq!(expires, row.ended_at.unwrap().saturating_add(DAY * 180));

    rig.clock
        .set(expires.saturating_sub(Duration::from_millis(1)));
    let r = sweep(&rig.recorder, rig.clock.now(), false, &NoFaults)
        .await
        .unwrap();
    assert!(r.erased.is_empty(), "nothing is due a millisecond early");

    rig.clock.set(expires);
    let r = sweep(&rig.recorder, rig.clock.now(), false, &NoFaults)
        .await
        .unwrap();
    assert_eq!(r.erased.len(), 1);
    // Its epoch has not ended, but nothing can be assigned to it any more
    // (a recording starting or ending now expires in a later epoch) and it
    // wraps nothing else: its KEK goes with the recording.
    assert_eq!(r.keys_destroyed, vec![row.epoch_id.clone()]);
    match rig.recorder.decrypt(&row.call_id).await {
        Err(ExportError::Erased { id, reason, .. }) => {
            assert_eq!((id, reason.as_str()), (row.id.clone(), "expired"))
        }
        other => panic!("expected Erased, got {:?}", other.err()),
    }
    assert!(rig.blobs().is_empty(), "blob gone");
    assert!(
        db.store.find_recording(&row.id).await.unwrap().is_none(),
        "row and wrapped DEK gone"
    );
    let tomb = db.store.find_tombstone(&row.id).await.unwrap().unwrap();
    assert_eq!(tomb.ciphertext_sha256.as_ref().map(String::len), Some(64));
    assert_eq!(
        db.store
            .audit_events("recording.erase")
            .await
            .unwrap()
            .len(),
        1
    );

    assert!(rig.keks().is_empty());
    let (_, epoch_end) = ansim::keys::epoch_end(&row.epoch_id).unwrap();
    rig.clock.set(epoch_end);
    // Idempotent: nothing left to do, at the epoch's end or later.
    let r = sweep(&rig.recorder, rig.clock.now(), false, &NoFaults)
        .await
        .unwrap();
    assert!(r.erased.is_empty() && r.keys_destroyed.is_empty() && r.orphan_blobs.is_empty());
}

async fn a_dry_run_changes_nothing(db: Db) {
    let db = TestDb::new(db).await;
    let rig = Rig::new(db.store.clone());
    let row = rig.record("ad-6m").await;
    rig.clock
        .set(ansim::keys::epoch_end(&row.epoch_id).unwrap().1);
    let r = sweep(&rig.recorder, rig.clock.now(), true, &NoFaults)
        .await
        .unwrap();
    assert_eq!((r.erased.len(), r.dry_run), (1, true));
    assert!(rig.recorder.decrypt(&row.id).await.is_ok());
    assert_eq!(rig.keks().len(), 1);
}
on_both_databases!(a_dry_run_changes_nothing);

/// The epoch key outlives any recording it still wraps.
async fn a_shared_epoch_key_waits_for_its_last_recording(db: Db) {
    let db = TestDb::new(db).await;
    let rig = Rig::new(db.store.clone());
    let first = rig.record("ad-6m").await;
    rig.clock.advance(Duration::from_secs(3600));
    let second = rig.record("ad-6m").await;
    assert_eq!(
        first.epoch_id, second.epoch_id,
        "same class, same day: one epoch"
    );
    rig.clock.set(first.expires_at.unwrap());
    let r = sweep(&rig.recorder, rig.clock.now(), false, &NoFaults)
        .await
        .unwrap();
    assert_eq!(
        r.erased
            .iter()
            .map(|e| e.recording_id.clone())
            .collect::<Vec<_>>(),
        vec![first.id.clone()]
    );
    assert!(
        rig.recorder.decrypt(&second.id).await.is_ok(),
        "the other recording still plays"
    );
    assert_eq!(db.store.live_in_epoch(&first.epoch_id).await.unwrap(), 1);
}
on_both_databases!(a_shared_epoch_key_waits_for_its_last_recording);

/// Fails once at a given step, like a crash there.
struct CrashAt(Step, std::sync::atomic::AtomicBool);

impl FaultPoint for CrashAt {
    fn at(&self, step: Step) -> Result<(), RetentionError> {
        if step == self.0 && !self.1.swap(true, std::sync::atomic::Ordering::SeqCst) {
            return Err(RetentionError::Injected(step));
        }
        Ok(())
    }
}

async fn an_interrupted_sweep_is_completed_by_the_next(db: Db) {
    for step in [Step::AfterRow, Step::AfterBlob, Step::BeforeKek] {
        let db = TestDb::new(db).await;
        let rig = Rig::new(db.store.clone());
        let row = rig.record("ad-6m").await;
        rig.clock
            .set(ansim::keys::epoch_end(&row.epoch_id).unwrap().1);
        let crash = CrashAt(step, Default::default());
        let err = sweep(&rig.recorder, rig.clock.now(), false, &crash)
            .await
            .unwrap_err();
        assert!(matches!(err, RetentionError::Injected(s) if s == step));
        // Whatever the step, the recording can no longer be read...
        assert!(
            matches!(
                rig.recorder.decrypt(&row.id).await,
                Err(ExportError::Erased { .. })
            ),
            "{step:?}"
        );
        // ...and the next sweep finishes the job.
        let r = sweep(&rig.recorder, rig.clock.now(), false, &NoFaults)
            .await
            .unwrap();
        assert!(r.erased.is_empty(), "{step:?}: erased twice");
        assert_eq!(
            r.orphan_blobs.len(),
            usize::from(step == Step::AfterRow),
            "{step:?}"
        );
        assert!(rig.blobs().is_empty() && rig.keks().is_empty(), "{step:?}");
        assert_eq!(
            db.store
                .audit_events("recording.erase")
                .await
                .unwrap()
                .len(),
            1,
            "{step:?}"
        );
    }
}
on_both_databases!(an_interrupted_sweep_is_completed_by_the_next);

/// A copy of the database and the recordings taken before the sweep is
/// useless once the epoch key is destroyed, even with the master key and
/// the live key store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_backup_cannot_be_decrypted_after_the_epoch_key_is_destroyed() {
    an_old_backup_cannot_be_decrypted_in(Keys::Dir).await
}

/// The same with the KEKs in a (SoftHSM2) token: destruction is the
/// token's `C_DestroyObject`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_backup_cannot_be_decrypted_after_the_epoch_key_is_destroyed_in_softhsm() {
    an_old_backup_cannot_be_decrypted_in(Keys::softhsm()).await
}

async fn an_old_backup_cannot_be_decrypted_in(keys: Keys) {
    let db = TestDb::new(Db::Sqlite).await;
    let rig = Rig::with_keys(db.store.clone(), keys);
    let row = rig.record("ad-6m").await;
    // The backup: database (with its WAL) and recordings, before the sweep.
    let backup = rig.dir.path().join("backup");
    std::fs::create_dir_all(backup.join("rec")).unwrap();
    let db_path = db.url.trim_start_matches("sqlite://").to_owned();
    for suffix in ["", "-wal"] {
        let src = format!("{db_path}{suffix}");
        if std::path::Path::new(&src).exists() {
            std::fs::copy(&src, backup.join(format!("ansim.db{suffix}"))).unwrap();
        }
    }
    for blob in rig.blobs() {
        std::fs::copy(
            rig.dir.path().join("rec").join(&blob),
            backup.join("rec").join(&blob),
        )
        .unwrap();
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(backup.join("rec"), std::fs::Permissions::from_mode(0o700)).unwrap();

    rig.clock
        .set(ansim::keys::epoch_end(&row.epoch_id).unwrap().1);
    let r = sweep(&rig.recorder, rig.clock.now(), false, &NoFaults)
        .await
        .unwrap();
    assert_eq!(r.keys_destroyed, vec![row.epoch_id.clone()]);

    // A fresh ansim on the restored copy, with the same master key and the
    // live key store: the wrapped DEK is there, the key that opens it is not.
    let restored = Store::connect(&format!("sqlite://{}/ansim.db", backup.display()))
        .await
        .unwrap();
    assert!(
        restored.find_recording(&row.id).await.unwrap().is_some(),
        "the backup still has the row"
    );
    let old = recorder_on(
        &restored,
        rig.dir.path(),
        "backup/rec",
        &rig.clock,
        &rig.keys,
    );
    match old.decrypt(&row.id).await {
        Err(ExportError::KeyDestroyed(id, key)) => {
            assert_eq!((id, key.as_str()), (row.id.clone(), row.epoch_id.as_str()));
            let msg = ExportError::KeyDestroyed(row.id.clone(), key.clone()).to_string();
            assert!(msg.contains("erased") && msg.contains("destroyed"), "{msg}");
        }
        other => panic!("expected KeyDestroyed, got {:?}", other.err()),
    }
}

async fn a_held_recording_outlives_its_epoch_and_goes_when_released(db: Db) {
    let db = TestDb::new(db).await;
    let rig = Rig::new(db.store.clone());
    let row = rig.record("ad-6m").await;
    let hold_id = hold(
        &rig.recorder,
        "CS-123",
        std::slice::from_ref(&row.id),
        rig.clock.now(),
    )
    .await
    .unwrap();

    let (_, epoch_end) = ansim::keys::epoch_end(&row.epoch_id).unwrap();
    rig.clock.set(epoch_end.saturating_add(DAY));
    let r = sweep(&rig.recorder, rig.clock.now(), false, &NoFaults)
        .await
        .unwrap();
    assert!(r.erased.is_empty(), "held recordings are not erased");
    assert_eq!(
        r.keys_destroyed,
        vec![row.epoch_id.clone()],
        "the epoch key goes on time"
    );
    assert!(
        rig.recorder.decrypt(&row.id).await.is_ok(),
        "still playable through the hold key"
    );

    let released = release(
        &rig.recorder,
        &hold_id,
        rig.clock.now(),
        &Actor::RETENTION,
        &NoFaults,
    )
    .await
    .unwrap();
    assert_eq!(
        released.erased,
        vec![row.id.clone()],
        "past its retention: erased at once"
    );
    assert!(matches!(
        rig.recorder.decrypt(&row.id).await,
        Err(ExportError::Erased { .. })
    ));
    assert!(rig.keks().is_empty(), "the hold key is destroyed");
}
on_both_databases!(a_held_recording_outlives_its_epoch_and_goes_when_released);

async fn a_hold_released_early_returns_to_a_live_epoch(db: Db) {
    let db = TestDb::new(db).await;
    let rig = Rig::new(db.store.clone());
    let row = rig.record("ad-6m").await;
    let hold_id = hold(
        &rig.recorder,
        "CS-9",
        std::slice::from_ref(&row.id),
        rig.clock.now(),
    )
    .await
    .unwrap();
    rig.clock.advance(DAY);
    let released = release(
        &rig.recorder,
        &hold_id,
        rig.clock.now(),
        &Actor::RETENTION,
        &NoFaults,
    )
    .await
    .unwrap();
    assert_eq!(released.returned.len(), 1);
    let back = db.store.find_recording(&row.id).await.unwrap().unwrap();
    assert_eq!(
        (back.held_by, back.epoch_id.starts_with("ep-ad-6m-")),
        (None, true)
    );
    let (_, end) = ansim::keys::epoch_end(&back.epoch_id).unwrap();
    assert!(
        end >= row.expires_at.unwrap(),
        "the epoch ends after the recording expires"
    );
    assert!(rig.recorder.decrypt(&row.id).await.is_ok());
    assert!(!rig.keks().contains(&hold_id));
}
on_both_databases!(a_hold_released_early_returns_to_a_live_epoch);

/// A subject's erasure request: their recording goes now, another one in
/// the same epoch still plays, and a backup from before the request cannot
/// open the erased one (its epoch was rotated).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn early_erasure_rotates_the_epoch_against_old_backups() {
    let db = TestDb::new(Db::Sqlite).await;
    let rig = Rig::new(db.store.clone());
    db.store
        .add_numbers(&crate::harness::pool_numbers(2), T0)
        .await
        .unwrap();
    let (subject, other) = (n("+821011112222"), n("+821033334444"));
    let mk = |a: &ansim::phone::E164, b: &str| ansim::store::NewSession {
        a: a.clone(),
        b: n(b),
        ttl: DAY,
        retention_class: "ad-6m".into(),
        record: true,
    };
    let s1 = db
        .store
        .create_session(&mk(&subject, "+821055556666"), T0, DAY)
        .await
        .unwrap();
    let s2 = db
        .store
        .create_session(&mk(&other, "+821077778888"), T0, DAY)
        .await
        .unwrap();
    let s3 = db
        .store
        .create_session(
            &ansim::store::NewSession {
                retention_class: "contract-5y".into(),
                ..mk(&subject, "+821099990000")
            },
            T0,
            DAY,
        )
        .await
        .unwrap();
    let mine = rig.record_in(&s1.id, "ad-6m").await;
    let theirs = rig.record_in(&s2.id, "ad-6m").await;
    let contract = rig.record_in(&s3.id, "contract-5y").await;
    assert_eq!(mine.epoch_id, theirs.epoch_id);

    let backup = rig.dir.path().join("backup.db");
    let db_path = db.url.trim_start_matches("sqlite://").to_owned();
    {
        use sqlx::Connection;
        let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{db_path}"))
            .await
            .unwrap();
        let vacuum = format!("VACUUM INTO '{}'", backup.display());
        sqlx::query(sqlx::AssertSqlSafe(vacuum))
            .execute(&mut conn)
            .await
            .unwrap();
    }
    let backup_blobs = rig.dir.path().join("backup-rec");
    std::fs::create_dir_all(&backup_blobs).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&backup_blobs, std::fs::Permissions::from_mode(0o700)).unwrap();
    for b in rig.blobs() {
        std::fs::copy(rig.dir.path().join("rec").join(&b), backup_blobs.join(&b)).unwrap();
    }

    let legally = vec!["contract-5y".to_owned()];
    let done = erase_subject(
        &rig.recorder,
        &subject,
        &legally,
        rig.clock.now(),
        &Actor::RETENTION,
    )
    .await
    .unwrap();
    assert_eq!(done.erased, vec![mine.id.clone()]);
    assert_eq!(done.kept.len(), 1);
    assert_eq!(done.kept[0].recording_id, contract.id);
    assert!(
        done.kept[0].reason.contains("contract-5y"),
        "{:?}",
        done.kept
    );
    assert_eq!(done.rotated.len(), 1);
    assert_eq!(done.rotated[0].0, mine.epoch_id);

    assert!(matches!(
        rig.recorder.decrypt(&mine.id).await,
        Err(ExportError::Erased { .. })
    ));
    assert_eq!(
        rig.recorder
            .decrypt(&theirs.id)
            .await
            .unwrap()
            .duration_ms(),
        1000,
        "the other recording still plays"
    );
    assert!(rig.recorder.decrypt(&contract.id).await.is_ok());
    assert!(
        !rig.keks().contains(&mine.epoch_id),
        "the old epoch key is gone"
    );

    let restored = Store::connect(&format!("sqlite://{}", backup.display()))
        .await
        .unwrap();
    let old = recorder_on(
        &restored,
        rig.dir.path(),
        "backup-rec",
        &rig.clock,
        &rig.keys,
    );
    assert!(
        matches!(
            old.decrypt(&mine.id).await,
            Err(ExportError::KeyDestroyed(..))
        ),
        "the pre-request backup cannot open it"
    );
}

/// The subject endpoints over HTTP, with a recorder behind them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subject_requests_over_http() {
    use ansim::store::Role;
    let db = TestDb::new(Db::Sqlite).await;
    let rig = Rig::new(db.store.clone());
    db.store
        .add_numbers(&crate::harness::pool_numbers(2), T0)
        .await
        .unwrap();
    let subject = "+821011112222";
    let new = ansim::store::NewSession {
        a: n(subject),
        b: n("+821055556666"),
        ttl: DAY,
        retention_class: "ad-6m".into(),
        record: true,
    };
    let s = db.store.create_session(&new, T0, DAY).await.unwrap();
    let kept = ansim::store::NewSession {
        retention_class: "contract-5y".into(),
        b: n("+821077778888"),
        ..new.clone()
    };
    let s2 = db.store.create_session(&kept, T0, DAY).await.unwrap();
    let r1 = rig.record_in(&s.id, "ad-6m").await;
    let r2 = rig.record_in(&s2.id, "contract-5y").await;

    let (base, staff) = rig
        .serve_api(
            &db,
            &[("admin", Role::Admin), ("app", Role::Provisioner)],
            &["contract-5y"],
        )
        .await;
    let tokens: std::collections::HashMap<Role, String> = [
        (Role::Admin, staff["admin"].0.clone()),
        (Role::Provisioner, staff["app"].0.clone()),
    ]
    .into();
    let http = reqwest::Client::new();
    let url = |p: &str| format!("{base}/v1/subjects/{}{p}", subject.replace('+', "%2B"));

    let r = http
        .get(url(""))
        .bearer_auth(&tokens[&Role::Provisioner])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = http
        .get(format!("{base}/v1/subjects/12"))
        .bearer_auth(&tokens[&Role::Admin])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);

    let held: serde_json::Value = http
        .get(url(""))
        .bearer_auth(&tokens[&Role::Admin])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(held["sessions"].as_array().unwrap().len(), 2, "{held}");
    assert_eq!(held["calls"].as_array().unwrap().len(), 2, "{held}");
    let recs = held["recordings"].as_array().unwrap();
    assert_eq!(recs.len(), 2);
    assert_eq!(
        recs.iter()
            .filter(|r| r["legally_required"] == true)
            .count(),
        1
    );
    assert!(recs.iter().all(|r| r["expires_at"].is_string()));

    let r = http
        .post(url("/erase"))
        .bearer_auth(&tokens[&Role::Admin])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let done: serde_json::Value = r.json().await.unwrap();
    assert_eq!(done["erased"]["recordings"], serde_json::json!([r1.id]));
    let remaining = &done["remaining"]["recordings"][0];
    assert_eq!(remaining["recording_id"], serde_json::json!(r2.id));
    assert!(
        remaining["reason"]
            .as_str()
            .unwrap()
            .contains("contract-5y")
    );
    assert_eq!(done["rotated_epoch_keys"], 1);

    let after: serde_json::Value = http
        .get(url(""))
        .bearer_auth(&tokens[&Role::Admin])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(after["recordings"].as_array().unwrap().len(), 1);
    assert_eq!(
        after["sessions"].as_array().unwrap().len(),
        2,
        "still listed, closed and pseudonymised: {after}"
    );
    assert!(
        after["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["open"] == false)
    );
    assert_eq!(done["sessions_closed"].as_array().unwrap().len(), 2);
    assert!(
        done["erased"]["number_replaced_in_rows"].as_u64().unwrap() >= 4,
        "{done}"
    );
    for id in [&s.id, &s2.id] {
        let stored = db.store.get_session(id).await.unwrap().unwrap();
        assert!(stored.a.number.is_pseudonym(), "{:?}", stored.a.number);
        assert!(
            !stored.b.number.is_pseudonym(),
            "the counterpart's own number is theirs, not the subject's"
        );
    }
    let audit = db.store.audit_events("subject.erase").await.unwrap();
    assert_eq!(audit.len(), 1);
    assert!(
        !audit[0].2.contains("11112222"),
        "the audit log holds the number masked: {}",
        audit[0].2
    );
}

/// Disputes and grants over HTTP: the hold, four-eyes, the audit trail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disputes_hold_recordings_and_grants_need_a_second_person() {
    use ansim::store::Role;
    let db = TestDb::new(Db::Sqlite).await;
    let rig = Rig::new(db.store.clone());
    db.store
        .add_numbers(&crate::harness::pool_numbers(1), T0)
        .await
        .unwrap();
    let new = ansim::store::NewSession {
        a: n("+821011112222"),
        b: n("+821055556666"),
        ttl: DAY,
        retention_class: "ad-6m".into(),
        record: true,
    };
    let s = db.store.create_session(&new, T0, DAY).await.unwrap();
    let rec = rig.record_in(&s.id, "ad-6m").await;

    let (base, staff) = rig
        .serve_api(
            &db,
            &[
                ("agent", Role::Support),
                ("boss", Role::Supervisor),
                ("app", Role::Provisioner),
            ],
            &[],
        )
        .await;
    let tokens: std::collections::HashMap<&str, String> =
        staff.iter().map(|(k, (t, _))| (*k, t.clone())).collect();
    let ids: std::collections::HashMap<&str, String> =
        staff.iter().map(|(k, (_, id))| (*k, id.clone())).collect();
    let http = reqwest::Client::new();
    let post = |path: &str, who: &str, body: Option<serde_json::Value>| {
        let mut r = http.post(format!("{base}{path}")).bearer_auth(&tokens[who]);
        if let Some(b) = body {
            r = r.json(&b);
        }
        r.send()
    };

    let body = serde_json::json!({"call_ids": [rec.call_id], "ticket": "CS-123", "reason": "price disagreement"});
    assert_eq!(
        post("/v1/disputes", "app", Some(body.clone()))
            .await
            .unwrap()
            .status(),
        403
    );
    let bad = serde_json::json!({"call_ids": ["cal_nope"], "ticket": "CS-1", "reason": "x"});
    let r = post("/v1/disputes", "agent", Some(bad)).await.unwrap();
    assert_eq!(r.status(), 422);
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["field"],
        "call_ids[0]"
    );
    let r = post("/v1/disputes", "agent", Some(body)).await.unwrap();
    assert_eq!(r.status(), 201);
    let opened: serde_json::Value = r.json().await.unwrap();
    assert_eq!(opened["held_recordings"], serde_json::json!([rec.id]));
    let dispute = opened["id"].as_str().unwrap().to_owned();
    assert!(
        db.store
            .find_recording(&rec.id)
            .await
            .unwrap()
            .unwrap()
            .held_by
            .is_some(),
        "the recording is on hold"
    );

    let r = post(&format!("/v1/disputes/{dispute}/grants"), "agent", None)
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let g: serde_json::Value = r.json().await.unwrap();
    assert_eq!(g["status"], "pending");
    let grant = g["id"].as_str().unwrap().to_owned();
    assert_eq!(
        post(&format!("/v1/grants/{grant}/approve"), "agent", None)
            .await
            .unwrap()
            .status(),
        403,
        "support cannot approve"
    );
    // A supervisor may ask too, but never approve their own request.
    let own: serde_json::Value = post(&format!("/v1/disputes/{dispute}/grants"), "boss", None)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let own_id = own["id"].as_str().unwrap();
    let r = post(&format!("/v1/grants/{own_id}/approve"), "boss", None)
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(
        r.json::<serde_json::Value>().await.unwrap()["detail"]
            .as_str()
            .unwrap()
            .contains("four-eyes")
    );

    let r = post(&format!("/v1/grants/{grant}/approve"), "boss", None)
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let approved: serde_json::Value = r.json().await.unwrap();
    assert_eq!(approved["status"], "approved");
    assert_eq!(approved["approved_by"], serde_json::json!(ids["boss"]));
    assert_eq!(
        post(&format!("/v1/grants/{grant}/approve"), "boss", None)
            .await
            .unwrap()
            .status(),
        409
    );

    let r = post(&format!("/v1/disputes/{dispute}/resolve"), "agent", None)
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let resolved: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        resolved["released"]["returned"].as_array().unwrap().len(),
        1,
        "not expired: back to a live epoch"
    );
    assert!(
        db.store
            .find_recording(&rec.id)
            .await
            .unwrap()
            .unwrap()
            .held_by
            .is_none()
    );
    assert_eq!(
        post(&format!("/v1/disputes/{dispute}/grants"), "agent", None)
            .await
            .unwrap()
            .status(),
        409
    );

    let actions: Vec<String> = db
        .store
        .list_audit(T0, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect();
    for a in [
        "dispute.open",
        "grant.request",
        "grant.approve",
        "dispute.resolve",
    ] {
        assert!(
            actions.iter().any(|x| x == a),
            "{a} not audited: {actions:?}"
        );
    }
    assert!(ansim::audit::verify(&db.store).await.unwrap().is_ok());
}
