//! The access log's hash chain: tampering anywhere is found and named.

use ansim::audit::{self, Action, Actor, Event};
use ansim::clock::Timestamp;
use sqlx::Executor;

use crate::harness::{Db, T0, TestDb};
use crate::on_both_databases;

async fn with_events(db: &TestDb, n: i64) {
    for i in 0..n {
        let at = Timestamp::from_millis(T0.as_millis() + i);
        let e = Event::new(
            at,
            Actor::staff("stf_x"),
            Action::RecordingPlay,
            format!("rec-{i}"),
            "range=0-",
        );
        audit::record(&db.store, &e).await.unwrap();
    }
}

/// Runs raw SQL on the test database, as someone with database access would.
async fn tamper(db: &TestDb, sql: &str) {
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&db.url).await.unwrap();
    pool.execute(sqlx::AssertSqlSafe(sql.to_owned()))
        .await
        .unwrap();
    pool.close().await;
}

async fn an_intact_chain_verifies(db: Db) {
    let db = TestDb::new(db).await;
    with_events(&db, 5).await;
    assert_eq!(ansim::audit::verify(&db.store).await.unwrap(), Ok(5));
    let listed = db
        .store
        .list_audit(Timestamp::from_millis(T0.as_millis() + 3), 10)
        .await
        .unwrap();
    assert_eq!(
        listed.iter().map(|e| e.object.as_str()).collect::<Vec<_>>(),
        ["rec-3", "rec-4"]
    );
    assert_ne!(listed[0].hash, listed[1].hash);
}
on_both_databases!(an_intact_chain_verifies);

async fn editing_deleting_or_reordering_breaks_it_at_the_first_bad_event(db: Db) {
    for (sql, first_bad, why) in [
        (
            "UPDATE audit_events SET detail = 'range=9-' WHERE seq = 3",
            3,
            "edited",
        ),
        (
            "UPDATE audit_events SET actor = 'staff:someone_else' WHERE seq = 2",
            2,
            "edited",
        ),
        ("DELETE FROM audit_events WHERE seq = 2", 3, "deleted"),
        // Swap the contents of events 2 and 4 (a reorder keeping seq).
        (
            "UPDATE audit_events SET object = CASE seq WHEN 2 THEN 'rec-3' WHEN 4 THEN 'rec-1' ELSE object END",
            2,
            "edited",
        ),
    ] {
        let db = TestDb::new(db).await;
        with_events(&db, 5).await;
        tamper(&db, sql).await;
        let b = ansim::audit::verify(&db.store).await.unwrap().unwrap_err();
        assert_eq!(b.seq, first_bad, "{sql}: {b:?}");
        assert!(b.reason.contains(why), "{sql}: {}", b.reason);
    }
}
on_both_databases!(editing_deleting_or_reordering_breaks_it_at_the_first_bad_event);

/// Many writers appending at once, each in a transaction that also writes
/// something else: one chain, no event lost, none chained twice to the
/// same predecessor.
async fn concurrent_appends_keep_one_chain(db: Db) {
    let db = TestDb::new(db).await;
    let new = ansim::store::NewDispute {
        ticket: "CS-1",
        reason: "r",
        opened_by: "stf_x",
        call_ids: &[],
        hold_id: None,
    };
    let mut tx = db.store.begin().await.unwrap();
    let dispute = tx.insert_dispute(&new, T0).await.unwrap().id;
    tx.commit().await.unwrap();
    let mut tasks = Vec::new();
    for w in 0..8 {
        let (store, dispute) = (db.store.clone(), dispute.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..20 {
                let mut tx = store.begin().await.unwrap();
                let g = tx
                    .insert_grant(&dispute, &format!("stf_{w}"), T0)
                    .await
                    .unwrap();
                let e = Event::grant_requested(T0, &format!("stf_{w}"), &g);
                audit::append(&mut tx, &e).await.unwrap();
                // Half of them roll back: their events must vanish too.
                if i % 2 == 0 {
                    tx.commit().await.unwrap();
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(audit::verify(&db.store).await.unwrap(), Ok(80));
    let events = db.store.audit_events("grant.request").await.unwrap();
    assert_eq!(events.len(), 80);
    let grants = crate::harness::count(&db, "SELECT COUNT(*) FROM grants").await;
    assert_eq!(grants, 80, "one grant per event, none without");
}
on_both_databases!(concurrent_appends_keep_one_chain);

#[test]
fn audit_verify_exits_non_zero_and_names_the_event() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_ansim"))
            .current_dir(dir.path())
            .args(args)
            .output()
            .unwrap()
    };
    assert!(run(&["migrate"]).status.success());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let url = format!("sqlite://{}/data/ansim.db", dir.path().display());
    rt.block_on(async {
        let store = ansim::store::Store::connect(&url).await.unwrap();
        for i in 0..3 {
            let e = Event::new(
                T0,
                Actor::Cli("test".into()),
                Action::RecordingExport,
                format!("r{i}"),
                "",
            );
            audit::record(&store, &e).await.unwrap();
        }
        store.close().await;
    });
    let ok = run(&["audit", "verify"]);
    assert!(ok.status.success());
    assert_eq!(
        String::from_utf8_lossy(&ok.stdout).trim(),
        "audit chain intact: 3 events"
    );
    rt.block_on(async {
        sqlx::any::install_default_drivers();
        let pool = sqlx::AnyPool::connect(&url).await.unwrap();
        pool.execute("UPDATE audit_events SET object = 'r9' WHERE seq = 2")
            .await
            .unwrap();
    });
    let bad = run(&["audit", "verify"]);
    assert_eq!(bad.status.code(), Some(1));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("broken at event 2"), "{err}");
}
