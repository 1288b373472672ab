//! Shared test harness: a fresh database per test, on SQLite or PostgreSQL.
//!
//! PostgreSQL tests need `ANSIM_TEST_DATABASE_URL` (a role that may create
//! databases; `scripts/test.sh` and `.ci/run` provide one). Each test gets
//! its own database, dropped when the test ends.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use ansim::clock::{ManualClock, SharedClock, Timestamp};
use ansim::phone::E164;
use ansim::routing::{Routing, RoutingPolicy};
use ansim::store::Store;
use sqlx::Connection;

/// Which database a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

/// A fresh, migrated database that is removed when dropped.
pub struct TestDb {
    pub url: String,
    pub store: Store,
    _dir: Option<tempfile::TempDir>,
    pg: Option<(String, String)>,
}

pub const PG_ENV: &str = "ANSIM_TEST_DATABASE_URL";

fn pg_admin_url() -> String {
    std::env::var(PG_ENV).unwrap_or_else(|_| {
        panic!(
            "{PG_ENV} is not set: PostgreSQL tests need a server \
             (run scripts/test.sh, which starts one, or set {PG_ENV}=postgres://user:pw@host/db)"
        )
    })
}

/// `postgres://u:p@h:5432/db?x=y` with the database name replaced.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url, String::new()),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let host_part = match base[scheme_end..].find('/') {
        Some(i) => &base[..scheme_end + i],
        None => base,
    };
    format!("{host_part}/{name}{query}")
}

impl TestDb {
    pub async fn new(db: Db) -> TestDb {
        match db {
            Db::Sqlite => {
                let dir = tempfile::tempdir().expect("tempdir");
                let url = format!("sqlite://{}/ansim.db", dir.path().display());
                let store = Store::connect(&url).await.expect("connect sqlite");
                store.migrate().await.expect("migrate sqlite");
                TestDb {
                    url,
                    store,
                    _dir: Some(dir),
                    pg: None,
                }
            }
            Db::Postgres => {
                let admin = pg_admin_url();
                let name = format!("ansim_t_{}", uuid::Uuid::new_v4().simple());
                let mut conn = sqlx::PgConnection::connect(&admin)
                    .await
                    .expect("connect postgres admin");
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&mut conn)
                    .await
                    .expect("create test database");
                conn.close().await.ok();
                let url = with_database(&admin, &name);
                let store = Store::connect(&url).await.expect("connect postgres");
                store.migrate().await.expect("migrate postgres");
                TestDb {
                    url,
                    store,
                    _dir: None,
                    pg: Some((admin, name)),
                }
            }
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some((admin, name)) = self.pg.take() else {
            return;
        };
        // Drop the database from a thread of its own: Drop cannot await.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            if let Ok(rt) = rt {
                rt.block_on(async {
                    if let Ok(mut c) = sqlx::PgConnection::connect(&admin).await {
                        let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                        let _ = sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut c).await;
                    }
                });
            }
        })
        .join();
    }
}

pub const DAY: Duration = Duration::from_secs(86_400);

/// The policy of the shipped development config.
pub fn policy() -> RoutingPolicy {
    let mut classes = BTreeMap::new();
    classes.insert("ad-6m".to_owned(), DAY * 180);
    classes.insert("dispute-3y".to_owned(), DAY * 1095);
    classes.insert("contract-5y".to_owned(), DAY * 1825);
    RoutingPolicy {
        default_ttl: DAY * 7,
        max_ttl: DAY * 365,
        quarantine: DAY * 30,
        route_cache_ttl: Duration::from_secs(30),
        default_class: "dispute-3y".to_owned(),
        classes,
    }
}

/// 2026-11-29T00:00:00Z.
pub const T0: Timestamp = Timestamp::from_millis(1_795_910_400_000);

/// A routing service on `db` with a manual clock at [`T0`].
pub fn routing(db: &TestDb) -> (Arc<Routing>, ManualClock) {
    routing_on(&db.store)
}

/// A routing service on `store` with a manual clock at [`T0`].
pub fn routing_on(store: &Store) -> (Arc<Routing>, ManualClock) {
    let clock = ManualClock::new(T0);
    let shared: SharedClock = Arc::new(clock.clone());
    (
        Arc::new(Routing::new(store.clone(), shared, policy())),
        clock,
    )
}

pub fn n(s: &str) -> E164 {
    E164::parse(s).expect("test number")
}

/// `count` pool numbers `+8250500000001`, `…02`, ….
pub fn pool_numbers(count: usize) -> Vec<E164> {
    (1..=count).map(|i| n(&format!("+82505{i:08}"))).collect()
}

/// Runs an async test body once per database, as `NAME::sqlite` and
/// `NAME::postgres`.
#[macro_export]
macro_rules! on_both_databases {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name($crate::harness::Db::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name($crate::harness::Db::Postgres).await
            }
        }
    };
}

/// A running `ansim serve` (killed on drop) and its log.
pub struct Served {
    /// The process.
    pub child: tokio::process::Child,
    /// What it logged until its API listened.
    pub log: String,
    /// The rest of its stderr.
    pub lines: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStderr>>,
}

/// Starts `ansim <args…>` (ending in `serve`) in `dir` with `env` added,
/// and waits until it logs that its API is listening.
pub async fn start_serve(
    dir: &std::path::Path,
    args: &[&str],
    env: &[(&str, &std::ffi::OsStr)],
) -> Served {
    use tokio::io::AsyncBufReadExt;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_ansim"))
        .current_dir(dir)
        .args(args)
        .envs(env.iter().copied())
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = tokio::io::BufReader::new(stderr).lines();
    let mut log = String::new();
    while let Some(line) = lines.next_line().await.unwrap() {
        log.push_str(&line);
        log.push('\n');
        if line.contains("API listening") {
            return Served { child, log, lines };
        }
    }
    panic!("serve did not start:\n{log}");
}

/// The ports tests hand out, below Linux's ephemeral range (32768–60999):
/// no socket bound to port 0 (ours, SIPp's, a browser's, a client's) can
/// take one between the pick and the bind of the process it is for.
const TEST_PORTS: std::ops::Range<u32> = 20_000..32_000;

/// Ports reserved per pick: SIPp binds its media port and the next ones.
const PORTS_PER_PICK: u32 = 4;

/// The next pick, offset by the process id so that two test runs on one
/// machine start far apart.
static NEXT_PORT: std::sync::OnceLock<std::sync::atomic::AtomicU32> = std::sync::OnceLock::new();

/// A port on 127.0.0.1, free for both UDP and TCP (with the next three),
/// for a process that binds it itself. Picks come from a range the kernel
/// never hands out on its own, so only another explicit bind can race it.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    let span = TEST_PORTS.end - TEST_PORTS.start;
    let next = NEXT_PORT.get_or_init(|| AtomicU32::new(std::process::id().wrapping_mul(397)));
    for _ in 0..span / PORTS_PER_PICK {
        let n = next.fetch_add(PORTS_PER_PICK, Ordering::Relaxed) % span;
        let port = TEST_PORTS.start + n - n % PORTS_PER_PICK;
        if (port..port + PORTS_PER_PICK).all(|p| is_free(p as u16)) {
            return port as u16;
        }
    }
    panic!("no free test port in {TEST_PORTS:?}");
}

fn is_free(port: u16) -> bool {
    std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok()
        && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// A TCP port on 127.0.0.1 that is free (see [`free_port`]).
pub fn free_tcp_port() -> u16 {
    free_port()
}

/// Runs a `SELECT COUNT(*) …` (or any query answering one integer) on the
/// test database directly, as an auditor with database access would.
pub async fn count(db: &TestDb, sql: &str) -> i64 {
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&db.url).await.unwrap();
    let (n,): (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_one(&pool)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    pool.close().await;
    n
}

/// Runs one statement on the test database directly (a test's set-up or
/// tampering).
pub async fn execute(db: &TestDb, sql: &str) {
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&db.url).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(&pool)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    pool.close().await;
}
