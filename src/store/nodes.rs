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

/// This process's hold on its node id, until [`NodeLease::release`] or
/// the process ends.
pub struct NodeLease {
    /// The connection holding the advisory lock; `None` on SQLite.
    conn: Option<AnyConnection>,
    /// The id leased, for `release`.
    node: Arc<str>,
}

impl std::fmt::Debug for NodeLease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeLease")
            .field("node", &self.node)
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
        if self.backend == Backend::Sqlite {
            return Ok(NodeLease {
                conn: None,
                node: self.node.clone(),
            });
        }
        let mut conn = self.pool.acquire().await?.detach();
        let (got,): (bool,) = sqlx::query_as("SELECT pg_try_advisory_lock($1, hashtext($2))")
            .bind(LEASE_NAMESPACE)
            .bind(&*self.node)
            .fetch_one(&mut conn)
            .await?;
        if !got {
            let _ = conn.close().await;
            return Err(StoreError::NodeTaken {
                node: self.node.to_string(),
            });
        }
        Ok(NodeLease {
            conn: Some(conn),
            node: self.node.clone(),
        })
    }
}

impl NodeLease {
    /// Gives the node id up (at shutdown, or in tests); dropping the lease
    /// gives it up too, once the server notices the connection is gone.
    pub async fn release(self) -> Result<(), StoreError> {
        let Some(mut conn) = self.conn else {
            return Ok(());
        };
        sqlx::query("SELECT pg_advisory_unlock($1, hashtext($2))")
            .bind(LEASE_NAMESPACE)
            .bind(&*self.node)
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
