//! Benchmark of the store (not a test): what SQLite's `synchronous = FULL`
//! costs per commit next to `NORMAL`, and how long a retention sweep of
//! many due recordings takes, on SQLite and on PostgreSQL.
//!
//! ```sh
//! cargo bench --bench store                  # full run: 5 × 2,000 commits per case, sweeps of 100,000
//! cargo bench --bench store -- sync          # only the FULL vs NORMAL commits
//! cargo bench --bench store -- sweep         # only the sweeps
//! ANSIM_BENCH_SWEEP=20000 cargo bench --bench store -- sweep   # another sweep size
//! ```
//!
//! Without `--bench` (as when `cargo test --all-targets` runs it) every
//! part runs at a smoke size. The PostgreSQL parts need
//! `ANSIM_TEST_DATABASE_URL` (a role that may create databases; each run
//! makes its own database and drops it) and are skipped without it.
//! Files go to `$ANSIM_BENCH_DIR` if set, else under Cargo's
//! `CARGO_TARGET_TMPDIR`: put it on the file system production uses, since
//! every figure here is mostly `fsync`. Results are in `docs/benchmarks.md`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ansim::audit::{self, Action, Actor, Event};
use ansim::clock::{ManualClock, SharedClock, Timestamp};
use ansim::keys::epoch_id;
use ansim::keys::{DirKeyStore, KeyStore, MasterKey};
use ansim::phone::E164;
use ansim::recording::blob::{BlobStore, LocalBlobStore};
use ansim::recording::{Recorder, RecordingPolicy};
use ansim::retention::{NoFaults, sweep};
use ansim::store::{NewCall, RecordingRow, SqliteSync, Store};

/// Runs of each commit measurement.
const REPS: usize = 5;
/// 2026-11-29T00:00:00Z.
const T0: i64 = 1_795_910_400_000;
const DAY: Duration = Duration::from_secs(86_400);
/// Rows per multi-row INSERT when filling a database for the sweep.
const FILL_BATCH: usize = 500;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let full = args.iter().any(|a| a == "--bench");
    let filters: Vec<String> = args.into_iter().filter(|a| !a.starts_with('-')).collect();
    let wanted = |name: &str| filters.is_empty() || filters.iter().any(|f| name.contains(f));
    let dir = std::env::var_os("ANSIM_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")))
        .join(format!("store-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("bench directory");
    let commits = if full { 2_000 } else { 20 };
    let sweep_size = std::env::var("ANSIM_BENCH_SWEEP")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(if full { 100_000 } else { 300 });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let pg = std::env::var("ANSIM_TEST_DATABASE_URL").ok();
    println!(
        "# store benchmark{}; files in {}",
        if full {
            ""
        } else {
            ", quick mode (no --bench)"
        },
        dir.display()
    );
    rt.block_on(async {
        if wanted("sync") {
            println!("\n## commits, one client, {REPS} runs of {commits}; median (min-max)");
            let sqlite = |sync| {
                let url = format!("sqlite://{}/sync-{sync:?}.db", dir.display());
                async move { Store::connect_with(&url, sync).await.expect("sqlite") }
            };
            commit_costs("SQLite FULL", sqlite(SqliteSync::Full).await, commits).await;
            commit_costs("SQLite NORMAL", sqlite(SqliteSync::Normal).await, commits).await;
            if let Some(admin) = &pg {
                let db = PgDb::create(admin).await;
                let store = Store::connect(&db.url).await.expect("postgres");
                commit_costs("PostgreSQL", store.clone(), commits).await;
                db.drop(store).await;
            }
        }
        if wanted("sweep") {
            println!("\n## retention sweep of {sweep_size} due recordings (1 KiB blobs)");
            let url = format!("sqlite://{}/sweep.db", dir.display());
            let store = Store::connect(&url).await.expect("sqlite");
            sweep_bench("SQLite", store, &url, &dir.join("sqlite"), sweep_size).await;
            match &pg {
                Some(admin) => {
                    let db = PgDb::create(admin).await;
                    let store = Store::connect(&db.url).await.expect("postgres");
                    sweep_bench(
                        "PostgreSQL",
                        store.clone(),
                        &db.url,
                        &dir.join("pg"),
                        sweep_size,
                    )
                    .await;
                    db.drop(store).await;
                }
                None => println!("PostgreSQL: skipped (set ANSIM_TEST_DATABASE_URL)"),
            }
        }
    });
    let _ = std::fs::remove_dir_all(&dir);
}

fn number(i: usize) -> E164 {
    E164::parse(&format!("+8210{:08}", i % 100_000_000)).expect("number")
}

/// Median (min–max) of `REPS` runs of `n` commits of each kind: a call
/// record (one INSERT), a recording row (an INSERT and an UPDATE in one
/// transaction) and an audit event (lock, INSERT, UPDATE in one
/// transaction).
async fn commit_costs(name: &str, store: Store, n: usize) {
    store.migrate().await.expect("migrate");
    let mut calls = Vec::new();
    let mut recordings = Vec::new();
    let mut events = Vec::new();
    for rep in 0..REPS {
        let ids: Vec<String> = (0..n).map(|i| format!("cal_{rep}_{i}")).collect();
        let start = Instant::now();
        for (i, id) in ids.iter().enumerate() {
            let c = NewCall {
                id: id.clone(),
                session_id: None,
                direction: "a_to_b",
                caller: Some(number(i)),
                reason: None,
                dialled: number(i + 1),
                invite_at: Timestamp::from_millis(T0),
            };
            store.insert_call(&c).await.expect("insert call");
        }
        calls.push(start.elapsed());
        let start = Instant::now();
        for (i, id) in ids.iter().enumerate() {
            store
                .insert_recording(&recording(&format!("{rep}-{i}"), id, 0))
                .await
                .expect("insert recording");
        }
        recordings.push(start.elapsed());
        let start = Instant::now();
        for i in 0..n {
            let e = Event::new(
                Timestamp::from_millis(T0),
                Actor::staff("stf_bench"),
                Action::RecordingPlay,
                format!("rec-{i}"),
                "bytes=0-1/2",
            );
            audit::record(&store, &e).await.expect("audit");
        }
        events.push(start.elapsed());
    }
    for (what, runs) in [
        ("call record", calls),
        ("recording row", recordings),
        ("audit event", events),
    ] {
        let per: Vec<f64> = runs
            .iter()
            .map(|d| d.as_secs_f64() * 1e6 / n as f64)
            .collect();
        let s = stats(per);
        println!(
            "{name:<14} {what:<14} {:>8.0} µs/commit ({:.0}-{:.0})  {:>7.0} commits/s",
            s.0,
            s.1,
            s.2,
            1e6 / s.0
        );
    }
    store.close().await;
}

fn stats(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

/// A finished recording row of call `call`, expiring `expires` ms after T0.
fn recording(id: &str, call: &str, expires: i64) -> RecordingRow {
    let at = Timestamp::from_millis(T0);
    RecordingRow {
        id: format!("rec-{id}"),
        call_id: call.to_owned(),
        session_id: "ses_bench".into(),
        retention_class: "ad-6m".into(),
        epoch_id: "ep-ad-6m-1".into(),
        wrapped_dek: vec![0; 60],
        blob: format!("rec-{id}.crec"),
        codec: Some(ansim::media::g711::Codec::Pcmu),
        state: ansim::store::RecordingState::Complete,
        failure: None,
        started_at: at,
        ended_at: Some(at),
        duration_ms: Some(1000),
        expires_at: Some(Timestamp::from_millis(T0 + expires)),
        held_by: None,
    }
}

/// Fills a database with `n` due recordings (their calls, rows and 1 KiB
/// blobs), times blob look-ups with and without `recordings_by_blob`, then
/// times one sweep that erases them all.
async fn sweep_bench(name: &str, store: Store, url: &str, dir: &Path, n: usize) {
    store.migrate().await.expect("migrate");
    let epoch = epoch_id("ad-6m", Timestamp::from_millis(T0 + DAY.as_millis() as i64));
    let start = Instant::now();
    fill(url, &epoch, n).await;
    let blobs = LocalBlobStore::new(&dir.join("rec")).expect("blob dir");
    for i in 0..n {
        std::fs::write(dir.join("rec").join(format!("rec-{i}.crec")), [7u8; 1024]).expect("blob");
    }
    let master = MasterKey::load(&dir.join("master.key"), true).expect("master key");
    let keys = DirKeyStore::open(&dir.join("keys"), master).expect("key store");
    keys.create(&epoch).expect("epoch key");
    println!(
        "{name}: filled {n} calls, rows and blobs in {:.1} s",
        start.elapsed().as_secs_f64()
    );

    let names: Vec<String> = (0..100)
        .map(|i| format!("rec-{}.crec", i * n / 100))
        .collect();
    let indexed = time_lookups(&store, &names).await;
    sql(url, "DROP INDEX recordings_by_blob").await;
    let scanned = time_lookups(&store, &names[..10]).await;
    sql(url, "CREATE INDEX recordings_by_blob ON recordings (blob)").await;
    println!(
        "{name}: one blob look-up {:.3} ms with recordings_by_blob, {:.1} ms without \
         (the old sweep did one per blob: {:.0} s of look-ups for {n} blobs)",
        indexed * 1e3,
        scanned * 1e3,
        scanned * n as f64
    );

    let deletes = time_blob_deletes(&dir.join("spare"), 200);
    println!(
        "{name}: one blob delete alone (overwrite, fsync, unlink, fsync dir) {:.2} ms",
        deletes * 1e3
    );

    let now = Timestamp::from_millis(T0 + 2 * DAY.as_millis() as i64);
    let clock: SharedClock = Arc::new(ManualClock::new(now));
    let policy = RecordingPolicy {
        classes: [("ad-6m".to_owned(), DAY * 180)].into(),
        epoch: DAY,
        max_call: Duration::from_secs(4 * 3600),
        personal_data: DAY * 180,
        quarantine: DAY * 30,
    };
    let rec = Recorder::new(
        store.clone(),
        Arc::new(keys),
        Arc::new(blobs),
        policy,
        clock,
    );
    let start = Instant::now();
    let report = sweep(&rec, now, false, &NoFaults).await.expect("sweep");
    let took = start.elapsed().as_secs_f64();
    assert_eq!(report.erased.len(), n, "every recording erased");
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    assert_eq!(report.keys_destroyed, vec![epoch]);
    assert_eq!(store.count_due(now).await.expect("count"), 0);
    println!(
        "{name}: sweep erased {n} recordings in {took:.1} s ({:.2} ms each, {:.0}/s)",
        took * 1e3 / n as f64,
        n as f64 / took
    );
    store.close().await;
}

/// Mean seconds per [`BlobStore::delete`] of `n` fresh 1 KiB blobs, what
/// the sweep does to each erased recording's file.
fn time_blob_deletes(dir: &Path, n: usize) -> f64 {
    let blobs = LocalBlobStore::new(dir).expect("spare blob dir");
    for i in 0..n {
        std::fs::write(dir.join(format!("b{i}")), [7u8; 1024]).expect("blob");
    }
    let start = Instant::now();
    for i in 0..n {
        blobs.delete(&format!("b{i}")).expect("delete");
    }
    start.elapsed().as_secs_f64() / n as f64
}

/// Mean seconds per look-up of each of `names`.
async fn time_lookups(store: &Store, names: &[String]) -> f64 {
    let start = Instant::now();
    for name in names {
        let used = store
            .blobs_in_use(std::slice::from_ref(name))
            .await
            .expect("look-up");
        assert!(used.contains(name));
    }
    start.elapsed().as_secs_f64() / names.len() as f64
}

/// Inserts `n` session-less calls and their due recordings under `epoch`,
/// many rows per statement in one transaction (set-up, not measured).
async fn fill(url: &str, epoch: &str, n: usize) {
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(url).await.expect("fill pool");
    let mut tx = pool.begin().await.expect("fill tx");
    for first in (0..n).step_by(FILL_BATCH) {
        let rows: Vec<usize> = (first..n.min(first + FILL_BATCH)).collect();
        let values = |k: usize, width: usize| {
            (0..k)
                .map(|r| {
                    let p: Vec<String> =
                        (1..=width).map(|c| format!("${}", r * width + c)).collect();
                    format!("({})", p.join(", "))
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        let calls = format!(
            "INSERT INTO calls (id, direction, caller, dialled, invite_at) VALUES {}",
            values(rows.len(), 5)
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(calls));
        for &i in &rows {
            q = q
                .bind(format!("cal_{i}"))
                .bind("a_to_b")
                .bind(number(i).as_str().to_owned())
                .bind(number(i + 1).as_str().to_owned())
                .bind(T0);
        }
        q.execute(&mut *tx).await.expect("fill calls");
        let recs = format!(
            "INSERT INTO recordings (id, call_id, session_id, retention_class, epoch_id, \
             wrapped_dek, blob, codec, state, started_at, ended_at, duration_ms, expires_at) \
             VALUES {}",
            values(rows.len(), 13)
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(recs));
        for &i in &rows {
            let r = recording(&i.to_string(), &format!("cal_{i}"), i as i64);
            q = q
                .bind(r.id)
                .bind(r.call_id)
                .bind(r.session_id)
                .bind(r.retention_class)
                .bind(epoch.to_owned())
                .bind(r.wrapped_dek)
                .bind(r.blob)
                .bind(r.codec.map_or("unsupported", |c| c.as_str()))
                .bind(r.state.as_str())
                .bind(T0)
                .bind(T0)
                .bind(1000_i64)
                .bind(T0 + i as i64);
        }
        q.execute(&mut *tx).await.expect("fill recordings");
    }
    tx.commit().await.expect("fill commit");
    pool.close().await;
}

async fn sql(url: &str, statement: &str) {
    let pool = sqlx::AnyPool::connect(url).await.expect("pool");
    sqlx::query(sqlx::AssertSqlSafe(statement.to_owned()))
        .execute(&pool)
        .await
        .expect(statement);
    pool.close().await;
}

/// A PostgreSQL database made for one run.
struct PgDb {
    admin: String,
    name: String,
    url: String,
}

impl PgDb {
    async fn create(admin: &str) -> PgDb {
        sqlx::any::install_default_drivers();
        let name = format!("ansim_bench_{}", std::process::id());
        sql(admin, &format!("DROP DATABASE IF EXISTS {name}")).await;
        sql(admin, &format!("CREATE DATABASE {name}")).await;
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
        sql(
            &self.admin,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        )
        .await;
    }
}
