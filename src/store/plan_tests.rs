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

/// A fresh migrated database of each kind: SQLite in `dir`, and PostgreSQL
/// (a database of its own, dropped at the end by the caller) when
/// `ANSIM_TEST_DATABASE_URL` names a server.
async fn fresh_stores(dir: &std::path::Path) -> Vec<(Store, Option<PgDb>)> {
    let sqlite = Store::connect(&format!("sqlite://{}/plan.db", dir.display()))
        .await
        .unwrap();
    sqlite.migrate().await.unwrap();
    let mut out = vec![(sqlite, None)];
    if let Ok(admin) = std::env::var("ANSIM_TEST_DATABASE_URL") {
        let pg = PgDb::create(&admin).await;
        let store = Store::connect(&pg.url).await.unwrap();
        store.migrate().await.unwrap();
        out.push((store, Some(pg)));
    }
    out
}

/// A PostgreSQL database made for one test.
struct PgDb {
    admin: String,
    name: String,
    url: String,
}

impl PgDb {
    async fn create(admin: &str) -> PgDb {
        sqlx::any::install_default_drivers();
        let name = format!("ansim_plan_{}", uuid::Uuid::new_v4().simple());
        let pool = sqlx::AnyPool::connect(admin).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
        let (base, query) = admin.split_once('?').unwrap_or((admin, ""));
        let host = base.rsplit_once('/').map_or(base, |(h, _)| h);
        let url = if query.is_empty() {
            format!("{host}/{name}")
        } else {
            format!("{host}/{name}?{query}")
        };
        PgDb {
            admin: admin.to_owned(),
            name,
            url,
        }
    }

    async fn drop(self, store: Store) {
        store.close().await;
        let pool = sqlx::AnyPool::connect(&self.admin).await.unwrap();
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        let _ = sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&pool).await;
        pool.close().await;
    }
}

/// The plan of `sql` (with its parameters bound by `bind`): SQLite's
/// `EXPLAIN QUERY PLAN`, or PostgreSQL's `EXPLAIN` with sequential scans
/// priced out, so that an index shows up if the query can use one even on
/// an empty table.
async fn plan(store: &Store, sql: &str, binds: &[Bind<'_>]) -> Vec<String> {
    let mut conn = store.pool().acquire().await.unwrap();
    let explain = match store.backend() {
        super::Backend::Sqlite => format!("EXPLAIN QUERY PLAN {sql}"),
        super::Backend::Postgres => {
            sqlx::query("SET enable_seqscan = off")
                .execute(&mut *conn)
                .await
                .unwrap();
            format!("EXPLAIN {sql}")
        }
    };
    let mut q = sqlx::query(sqlx::AssertSqlSafe(explain));
    for b in binds {
        q = match b {
            Bind::Int(i) => q.bind(*i),
            Bind::Text(t) => q.bind(*t),
        };
    }
    let rows = q.fetch_all(&mut *conn).await.unwrap();
    let column = match store.backend() {
        super::Backend::Sqlite => "detail",
        super::Backend::Postgres => "QUERY PLAN",
    };
    rows.iter().map(|r| r.get::<String, _>(column)).collect()
}

enum Bind<'a> {
    Int(i64),
    Text(&'a str),
}

/// The sweep's two per-item reads use indexes: the due recordings (a range
/// of the partial index `recordings_due`, in its order, no sort) and
/// whether a blob is still named (`recordings_by_blob`); so is the read of
/// a hold's recordings. Before, each was a full scan, which made a sweep
/// of N recordings O(N²).
#[tokio::test]
async fn the_sweep_reads_through_indexes_on_both_databases() {
    let dir = tempfile::tempdir().unwrap();
    for (store, pg) in fresh_stores(dir.path()).await {
        let due = format!(
            "SELECT {} {}",
            super::recordings::COLUMNS,
            super::retention::DUE_SQL
        );
        let p = plan(
            &store,
            &due,
            &[Bind::Int(0), Bind::Int(0), Bind::Text(""), Bind::Int(200)],
        )
        .await;
        assert!(p.iter().any(|l| l.contains("recordings_due")), "{p:#?}");
        assert!(
            !p.iter()
                .any(|l| l.contains("TEMP B-TREE") || l.contains("Sort")),
            "the index gives the order: {p:#?}"
        );
        let p = plan(
            &store,
            "SELECT DISTINCT blob FROM recordings WHERE blob IN ($1, $2)",
            &[Bind::Text("a.crec"), Bind::Text("b.crec")],
        )
        .await;
        assert!(p.iter().any(|l| l.contains("recordings_by_blob")), "{p:#?}");
        let p = plan(
            &store,
            "SELECT id FROM recordings WHERE held_by = $1 AND epoch_id <> $1",
            &[Bind::Text("hold-x")],
        )
        .await;
        assert!(p.iter().any(|l| l.contains("recordings_held")), "{p:#?}");
        if let Some(pg) = pg {
            pg.drop(store).await;
        }
    }
}
