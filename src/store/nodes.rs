//! Node identity on a shared database: which node owns a row, and the
//! lease that keeps two live processes from running as the same node.
//!
//! Every call and recording row carries the `node` of the [`Store`] that
//! wrote it ([`Store::with_node`]); start-up reconciliation ends only the
//! node's own open rows (and the unowned `''` rows from before nodes
//! existed), so a node restarting never interrupts another node's calls.
//!
//! The lease: on PostgreSQL, a session advisory lock on the node id, held
//! by one connection taken out of the pool for the life of the process.
//! The server drops the lock the moment that connection ends, so a node
//! that crashed frees its id at once, and a second process with the same
//! id is refused while the first lives. Two different ids whose 32-bit
//! hashes collide also refuse each other (the error says so): a rename
//! fixes it. On SQLite there is one node by construction (one file, one
//! machine) and the lease is a no-op.

use std::sync::Arc;

use sqlx::AnyConnection;
use sqlx::Connection;

use super::{Backend, Store, StoreError};

/// The advisory-lock namespace of node leases (the first key of the
/// two-key form), so they never meet another application's locks.
const LEASE_NAMESPACE: i32 = 0x616e_7369; // "ansi"
/// The advisory-lock namespace of jobs that must run on one node at a time.
const JOB_NAMESPACE: i32 = 0x616e_736a; // "ansj"

/// A PostgreSQL session advisory lock this process holds (a node id, or a
/// job that runs on one node at a time), until [`Lease::release`] or the
/// process ends; a no-op on SQLite.
pub struct Lease {
    /// The connection holding the advisory lock; `None` on SQLite.
    conn: Option<AnyConnection>,
    /// The lock's namespace, for `release`.
    namespace: i32,
    /// What is leased (node id or job name), for `release`.
    name: Arc<str>,
}

/// This process's hold on its node id.
pub type NodeLease = Lease;

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease")
            .field("name", &self.name)
            .field("held", &self.conn.is_some())
            .finish()
    }
}

impl Store {
    /// The same store writing and reconciling as node `id`.
    pub fn with_node(&self, id: &str) -> Store {
        Store {
            node: Arc::from(id),
            ..self.clone()
        }
    }

    /// The node this handle writes as (`""`: unnamed).
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Takes the lease on this handle's node id, or fails with
    /// [`StoreError::NodeTaken`] while another live process holds it.
    pub async fn lease_node(&self) -> Result<NodeLease, StoreError> {
        self.try_lease(LEASE_NAMESPACE, self.node.clone())
            .await?
            .ok_or_else(|| StoreError::NodeTaken {
                node: self.node.to_string(),
            })
    }

    /// Takes the lock of job `name` (the retention sweep) if no process on
    /// this database holds it; `None`: another node is running the job
    /// now, and this one skips its turn. Always taken on SQLite.
    pub async fn try_job_lock(&self, name: &str) -> Result<Option<Lease>, StoreError> {
        self.try_lease(JOB_NAMESPACE, Arc::from(name)).await
    }

    /// Takes the advisory lock `(namespace, hashtext(name))` on a
    /// connection of its own, or `None` if someone holds it.
    async fn try_lease(&self, namespace: i32, name: Arc<str>) -> Result<Option<Lease>, StoreError> {
        if self.backend == Backend::Sqlite {
            return Ok(Some(Lease {
                conn: None,
                namespace,
                name,
            }));
        }
        let mut conn = self.pool.acquire().await?.detach();
        let (got,): (bool,) = sqlx::query_as("SELECT pg_try_advisory_lock($1, hashtext($2))")
            .bind(namespace)
            .bind(&*name)
            .fetch_one(&mut conn)
            .await?;
        if !got {
            let _ = conn.close().await;
            return Ok(None);
        }
        Ok(Some(Lease {
            conn: Some(conn),
            namespace,
            name,
        }))
    }
}

impl Lease {
    /// Gives the lock up; dropping the lease gives it up too, once the
    /// server notices the connection is gone.
    pub async fn release(self) -> Result<(), StoreError> {
        let Some(mut conn) = self.conn else {
            return Ok(());
        };
        sqlx::query("SELECT pg_advisory_unlock($1, hashtext($2))")
            .bind(self.namespace)
            .bind(&*self.name)
            .execute(&mut conn)
            .await?;
        conn.close().await?;
        Ok(())
    }
}

/// The PostgreSQL channel on which a session's end is announced to every
/// node's route cache; the payload is the session id.
const ROUTE_CHANNEL: &str = "ansim_session_ended";

/// Announces, at the commit of `tx`, that session `id` ended (PostgreSQL
/// delivers notifications only when, and only if, the transaction commits).
pub(super) async fn notify_session_ended(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    id: &str,
) -> Result<(), StoreError> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(ROUTE_CHANNEL)
        .bind(id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// What [`SessionEnds::next`] reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEnd {
    /// This session ended (on any node).
    Ended(String),
    /// The connection was lost and is being re-established: ends announced
    /// meanwhile were missed, so a cache should drop everything.
    Missed,
}

/// Sessions ending on any node, as PostgreSQL announces them.
pub struct SessionEnds {
    /// The connection subscribed to [`ROUTE_CHANNEL`].
    listener: sqlx::postgres::PgListener,
}

impl std::fmt::Debug for SessionEnds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionEnds").finish_non_exhaustive()
    }
}

impl Store {
    /// Subscribes to session ends announced by every node; `None` on
    /// SQLite, where this process is the only node.
    pub async fn session_ends(&self) -> Result<Option<SessionEnds>, StoreError> {
        if self.backend == Backend::Sqlite {
            return Ok(None);
        }
        let url = self.pool.connect_options().database_url.clone();
        let mut listener = sqlx::postgres::PgListener::connect(url.as_str()).await?;
        listener.listen(ROUTE_CHANNEL).await?;
        Ok(Some(SessionEnds { listener }))
    }
}

impl SessionEnds {
    /// The next session end, or [`SessionEnd::Missed`] once after the
    /// connection dropped (the next call reconnects). An error means the
    /// reconnection failed; calling again tries again.
    pub async fn next(&mut self) -> Result<SessionEnd, StoreError> {
        Ok(match self.listener.try_recv().await? {
            Some(n) => SessionEnd::Ended(n.payload().to_owned()),
            None => SessionEnd::Missed,
        })
    }
}
