//! The route lookup runs on every INVITE: it must never scan a table.

use sqlx::Row;

use super::Store;
use super::sessions::ROUTE_SQL;

#[tokio::test]
async fn route_lookup_uses_indexes_only_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::connect(&format!("sqlite://{}/plan.db", dir.path().display()))
        .await
        .unwrap();
    store.migrate().await.unwrap();
    let explain = sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {ROUTE_SQL}"));
    let rows = sqlx::query(explain)
        .bind("+821012345678")
        .bind("+82505000001")
        .bind(0_i64)
        .fetch_all(store.pool())
        .await
        .unwrap();
    let plan: Vec<String> = rows.iter().map(|r| r.get::<String, _>("detail")).collect();
    assert!(
        plan.iter().any(|l| l.contains("bindings_active_key")),
        "{plan:#?}"
    );
    for line in &plan {
        assert!(
            line.starts_with("SEARCH"),
            "a scan in the route lookup: {plan:#?}"
        );
    }
}

/// Deleted rows (wrapped DEKs above all) are overwritten in the SQLite file,
/// not left in free pages.
#[tokio::test]
async fn sqlite_runs_with_secure_delete() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::connect(&format!("sqlite://{}/sd.db", dir.path().display()))
        .await
        .unwrap();
    for _ in 0..3 {
        // Every pooled connection, not just the first.
        let row = sqlx::query("PRAGMA secure_delete")
            .fetch_one(store.pool())
            .await
            .unwrap();
        assert_eq!(row.get::<i64, _>(0), 1);
    }
}

/// Every pooled connection commits durably: a power cut loses nothing
/// committed (`synchronous = FULL`, 2), and `secure_delete` stays on.
#[tokio::test]
async fn sqlite_runs_with_synchronous_full() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::connect(&format!("sqlite://{}/sync.db", dir.path().display()))
        .await
        .unwrap();
    let mut conns = Vec::new();
    for _ in 0..3 {
        // Hold each connection so the next query gets a new one.
        let mut c = store.pool().acquire().await.unwrap();
        let row = sqlx::query("PRAGMA synchronous")
            .fetch_one(&mut *c)
            .await
            .unwrap();
        assert_eq!(row.get::<i64, _>(0), 2, "FULL");
        let row = sqlx::query("PRAGMA secure_delete")
            .fetch_one(&mut *c)
            .await
            .unwrap();
        assert_eq!(row.get::<i64, _>(0), 1);
        conns.push(c);
    }
}
