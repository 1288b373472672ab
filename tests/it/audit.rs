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
