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

mod audit;
mod calls;
mod disputes;
mod numbers;
#[cfg(test)]
mod plan_tests;
mod pseudonyms;
mod recordings;
mod retention;
mod sessions;
mod staff;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::{AnyPool, Executor};

use crate::phone::{E164, PartyNumber};

pub use audit::{AuditEvent, ChainBreak};
pub use calls::{CallEnd, CallRecord, NewCall};
pub use disputes::{Dispute, Grant, GrantOnCall};
pub use numbers::{AddedNumbers, NumberUsage};
pub use pseudonyms::PseudonymReport;
pub use recordings::RecordingRow;
pub use retention::Tombstone;
pub use sessions::{
    CloseReason, CreateSessionError, NewSession, Participant, RouteRow, SessionRecord, Side,
};
pub use staff::{Role, StaffMember};

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
#[derive(Clone, Debug)]
pub struct Store {
    /// The pool every query runs on.
    pool: AnyPool,
    /// SQLite or PostgreSQL, for the few places that differ.
    backend: Backend,
}

/// Connection pool size: enough for the API and the SIP layer's lookups.
const MAX_CONNECTIONS: u32 = 16;

impl Store {
    /// Connects to `url` (`sqlite://path`, `sqlite::memory:` is refused
    /// because each pooled connection would get its own empty database,
    /// or `postgres://…`). A SQLite file and its directory are created.
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        install_default_drivers();
        let backend = backend_of(url)?;
        let url = match backend {
            Backend::Sqlite => prepare_sqlite(url).await?,
            Backend::Postgres => url.to_owned(),
        };
        let pool = AnyPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        conn.execute(SQLITE_PRAGMAS).await?;
                    }
                    Ok(())
                })
            })
            .connect(&url)
            .await?;
        Ok(Store { pool, backend })
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

/// Per-connection SQLite settings. `secure_delete` overwrites freed pages so
/// deleted rows do not linger in the file; `busy_timeout` makes concurrent
/// writers wait for the lock instead of failing at once; `synchronous =
/// FULL` makes a commit return only once the WAL is on disk, so a power cut
/// never loses a committed recording row or audit event.
const SQLITE_PRAGMAS: &str = "PRAGMA foreign_keys = ON; PRAGMA secure_delete = ON; \
     PRAGMA busy_timeout = 10000; PRAGMA synchronous = FULL;";

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
