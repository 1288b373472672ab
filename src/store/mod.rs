//! Persistence: the only module that contains SQL.
//!
//! One code path serves SQLite (the embedded default) and PostgreSQL
//! (production, several nodes): queries go through sqlx's `Any` driver with
//! `$n` placeholders, which both databases accept. The two schemas live in
//! `migrations/sqlite` and `migrations/postgres` so that they can diverge
//! where a database offers something better.
//!
//! Portability rules (see `CRATES.md`): times are Unix milliseconds in
//! `BIGINT`, ids are `TEXT`, booleans are `BOOLEAN`; no `query!` macros.
//!
//! ## Transactions
//!
//! Most functions here are one statement or one transaction of their own.
//! When a change must be atomic with something another module decides (an
//! action and its audit event, a dispute and its legal hold), the caller
//! opens a [`Tx`] with [`Store::begin`], passes it to the store functions
//! that take `&mut Tx`, and commits it: either everything in it becomes
//! visible or nothing does, and a crash before the commit leaves nothing.
//! On SQLite a [`Tx`] starts with `BEGIN IMMEDIATE`, so it holds the write
//! lock from its first statement and never fails half-way because another
//! writer committed between its reads and its writes.
//!
//! ## Durability
//!
//! SQLite runs with `synchronous = FULL`: a commit returns only once the
//! WAL is synced, so a power cut never loses a committed recording row or
//! audit event (`NORMAL` can lose the last commits; `docs/benchmarks.md`
//! measures what `FULL` costs). PostgreSQL's `synchronous_commit` is the
//! server's setting (on by default).

mod audit;
mod call_batch;
mod calls;
mod disputes;
pub mod idempotency;
mod nodes;
mod numbers;
#[cfg(test)]
mod plan_tests;
mod pseudonyms;
mod recordings;
mod records;
mod retention;
mod sessions;
mod staff;
pub mod webhooks;

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::{Any, AnyConnection, AnyPool, Executor, Transaction};

use crate::phone::{E164, PartyNumber};

pub use audit::{AuditEvent, NewAuditEvent};
pub use call_batch::RecordingWrite;
pub use calls::{CallEnd, CallRecord, CallWrite, NewCall};
pub use disputes::{Dispute, DisputeSearch, DisputeState, Grant, GrantOnCall, NewDispute};
pub use nodes::{Lease, NodeLease, SessionEnd, SessionEnds};
pub use numbers::{AddedNumbers, NumberUsage};
pub use pseudonyms::PseudonymReport;
pub use recordings::{RecordingEnd, RecordingRow};
pub use records::{CallResult, HangupSide, RecordingFailure, RecordingState, UnknownValue};
pub use retention::{BLOB_LOOKUP_BATCH, HoldState, Tombstone};
pub use sessions::{
    CloseReason, CreateSessionError, NewSession, Participant, RouteRow, SessionRecord,
    SessionStatus, Side,
};
pub use staff::{Role, StaffMember};
pub use webhooks::{WebhookEvent, WebhookPolicy};

/// Which database a [`Store`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Embedded, one file; the development default.
    Sqlite,
    /// PostgreSQL; production and multi-node.
    Postgres,
}

/// A database failure. The peer here is the database: whether it refused
/// (constraint, busy) or we asked for something impossible is in the cause.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The URL names no database we support.
    #[error("unsupported database URL scheme (expected sqlite:// or postgres://)")]
    UnsupportedUrl,
    /// The database directory could not be created.
    #[error("cannot create database directory {path}: {source}")]
    CreateDir {
        /// The directory.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A query or connection failed.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// Migrations failed to apply.
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A row held a value the code cannot interpret (a bug or a hand edit).
    #[error("corrupt row in {table}: {what}")]
    Corrupt {
        /// The table.
        table: &'static str,
        /// What was wrong.
        what: String,
    },
    /// Another live process holds this node id on the database (or one
    /// whose id hashes the same).
    #[error(
        "node id '{node}' is in use by another live ansim process on this database; \
         give every node its own [node] id (ANSIM_NODE__ID)"
    )]
    NodeTaken {
        /// The node id.
        node: String,
    },
    /// A test's [`CommitHook`] refused the commit, as a crash just before
    /// it would have; the transaction was rolled back.
    #[error("commit refused by an injected fault: {0}")]
    Injected(String),
}

impl StoreError {
    /// Whether the database refused because of a uniqueness constraint.
    pub fn is_unique_violation(&self) -> bool {
        match self {
            StoreError::Database(sqlx::Error::Database(e)) => e.is_unique_violation(),
            _ => false,
        }
    }
}

/// A handle to the database; cheap to clone (a connection pool).
#[derive(Clone)]
pub struct Store {
    /// The pool every query runs on.
    pool: AnyPool,
    /// SQLite or PostgreSQL, for the few places that differ.
    backend: Backend,
    /// Consulted before every [`Tx`] commits; only tests set one.
    commit_hook: Option<Arc<dyn CommitHook>>,
    /// Which webhook events writes put into the outbox ([`webhooks`]).
    webhooks: Arc<webhooks::WebhookPolicy>,
    /// The node whose calls and recordings this handle writes and
    /// reconciles ([`nodes`]); `""` until [`Store::with_node`]: the one
    /// unnamed node, which also owns rows from before nodes existed.
    node: Arc<str>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend)
            .field("commit_hook", &self.commit_hook.is_some())
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

/// Connection pool size: enough for the API and the SIP layer's lookups.
const MAX_CONNECTIONS: u32 = 16;

/// SQLite's `synchronous` setting. ansim always runs with [`Full`]; the
/// other value exists so that a benchmark can measure what `Full` costs.
///
/// [`Full`]: SqliteSync::Full
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqliteSync {
    /// A commit waits until the WAL is on disk: nothing committed is lost
    /// to a power cut.
    Full,
    /// A commit waits only for the OS: a power cut (not a process crash)
    /// may lose the last commits. For benchmarks only.
    Normal,
}

/// Lets a test fail a [`Tx`] at its commit, after every write in it, as a
/// crash just before the commit would. Production stores have none.
pub trait CommitHook: Send + Sync {
    /// Called before a transaction commits, with the audit actions
    /// (`dispute.open`, …) appended in it. `Err` rolls the transaction back
    /// and is returned from [`Tx::commit`].
    fn before_commit(&self, audited: &[String]) -> Result<(), StoreError>;
}

impl Store {
    /// Connects to `url` (`sqlite://path`, `sqlite::memory:` is refused
    /// because each pooled connection would get its own empty database,
    /// or `postgres://…`). A SQLite file and its directory are created.
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        Store::connect_with(url, SqliteSync::Full).await
    }

    /// As [`Store::connect`], with SQLite's `synchronous` setting chosen
    /// (benchmarks compare the two; everything else uses `connect`).
    pub async fn connect_with(url: &str, sync: SqliteSync) -> Result<Store, StoreError> {
        install_default_drivers();
        let backend = backend_of(url)?;
        let url = match backend {
            Backend::Sqlite => prepare_sqlite(url).await?,
            Backend::Postgres => url.to_owned(),
        };
        let pragmas = match sync {
            SqliteSync::Full => SQLITE_PRAGMAS_FULL,
            SqliteSync::Normal => SQLITE_PRAGMAS_NORMAL,
        };
        let pool = AnyPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        conn.execute(pragmas).await?;
                    }
                    Ok(())
                })
            })
            .connect(&url)
            .await?;
        Ok(Store {
            pool,
            backend,
            commit_hook: None,
            webhooks: Arc::default(),
            node: Arc::from(""),
        })
    }

    /// The same store (same pool) with `hook` consulted before every
    /// commit of a [`Tx`]: for tests that fail a transaction on purpose.
    pub fn with_commit_hook(&self, hook: Arc<dyn CommitHook>) -> Store {
        Store {
            commit_hook: Some(hook),
            ..self.clone()
        }
    }

    /// Opens a transaction (on SQLite, holding the write lock from the
    /// start). Dropping it without [`Tx::commit`] rolls it back.
    pub async fn begin(&self) -> Result<Tx, StoreError> {
        let inner = match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.pool.begin().await?,
        };
        Ok(Tx {
            inner,
            audited: Vec::new(),
            hook: self.commit_hook.clone(),
            webhooks: self.webhooks.clone(),
            node: self.node.clone(),
            backend: self.backend,
        })
    }

    /// Applies every pending migration of this database's schema.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        match self.backend {
            Backend::Sqlite => sqlx::migrate!("migrations/sqlite").run(&self.pool).await?,
            Backend::Postgres => {
                sqlx::migrate!("migrations/postgres")
                    .run(&self.pool)
                    .await?
            }
        }
        Ok(())
    }

    /// SQLite or PostgreSQL.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Whether the database answers (readiness).
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Closes the pool, waiting for connections in use to come back.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }
}

/// A database transaction that store functions taking `&mut Tx` write
/// into. Nothing in it is visible to others before [`Tx::commit`]; dropped
/// uncommitted (an error, a crash), it leaves nothing behind.
pub struct Tx {
    inner: Transaction<'static, Any>,
    /// Audit actions appended in this transaction, for the [`CommitHook`].
    audited: Vec<String>,
    hook: Option<Arc<dyn CommitHook>>,
    /// The store's webhook policy, for [`Tx::enqueue_webhook`].
    webhooks: Arc<webhooks::WebhookPolicy>,
    /// The store's node, written into the call rows the transaction adds.
    node: Arc<str>,
    /// Which database: multi-row statements number their parameters the
    /// way it binds them fastest.
    backend: Backend,
}

impl Tx {
    /// Makes everything written in the transaction visible, at once.
    pub async fn commit(self) -> Result<(), StoreError> {
        if let Some(hook) = &self.hook
            && let Err(e) = hook.before_commit(&self.audited)
        {
            self.inner.rollback().await?;
            return Err(e);
        }
        self.inner.commit().await?;
        Ok(())
    }

    /// The connection the transaction runs on, for this module's queries.
    fn conn(&mut self) -> &mut AnyConnection {
        &mut self.inner
    }
}

/// Per-connection SQLite settings. `secure_delete` overwrites freed pages so
/// deleted rows do not linger in the file; `busy_timeout` makes concurrent
/// writers wait for the lock instead of failing at once; `synchronous =
/// FULL` makes every commit durable before it returns (see "Durability").
const SQLITE_PRAGMAS_FULL: &str = "PRAGMA foreign_keys = ON; PRAGMA secure_delete = ON; \
     PRAGMA busy_timeout = 10000; PRAGMA synchronous = FULL;";
/// [`SQLITE_PRAGMAS_FULL`] with `synchronous = NORMAL`, for benchmarks.
const SQLITE_PRAGMAS_NORMAL: &str = "PRAGMA foreign_keys = ON; PRAGMA secure_delete = ON; \
     PRAGMA busy_timeout = 10000; PRAGMA synchronous = NORMAL;";

fn backend_of(url: &str) -> Result<Backend, StoreError> {
    if url.starts_with("sqlite:") {
        if url.contains(":memory:") || url.contains("mode=memory") {
            return Err(StoreError::UnsupportedUrl);
        }
        Ok(Backend::Sqlite)
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Backend::Postgres)
    } else {
        Err(StoreError::UnsupportedUrl)
    }
}

/// Creates the directory of a SQLite file, switches the file to WAL once
/// (it is persistent, and doing it per connection would race for the lock),
/// and returns the URL with `mode=rwc` so that the file is created.
async fn prepare_sqlite(url: &str) -> Result<String, StoreError> {
    let path = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:");
    let path = path.split('?').next().unwrap_or(path);
    if let Some(dir) = Path::new(path)
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
    {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
            path: dir.display().to_string(),
            source,
        })?;
    }
    let url = if url.contains("mode=") {
        url.to_owned()
    } else if url.contains('?') {
        format!("{url}&mode=rwc")
    } else {
        format!("{url}?mode=rwc")
    };
    let opts = sqlx::sqlite::SqliteConnectOptions::from_str(&url)?
        .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal);
    let conn = sqlx::ConnectOptions::connect(&opts).await?;
    sqlx::Connection::close(conn).await?;
    Ok(url)
}

/// A fresh random id with a readable prefix: `ses_0193…`. UUIDv7, so ids
/// sort by creation time.
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::now_v7().simple())
}

/// Reads a real phone number from a column that never holds a pseudonym.
fn parse_number(table: &'static str, raw: &str) -> Result<E164, StoreError> {
    E164::parse(raw).map_err(|e| StoreError::Corrupt {
        table,
        what: format!("phone number {e}"),
    })
}

/// Reads a party's number: real, or pseudonymised by the retention sweep.
fn parse_party(table: &'static str, raw: &str) -> Result<PartyNumber, StoreError> {
    PartyNumber::parse_stored(raw).map_err(|e| StoreError::Corrupt {
        table,
        what: format!("phone number {e}"),
    })
}
