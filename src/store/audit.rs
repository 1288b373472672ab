//! Rows of the hash-chained audit log.
//!
//! What an event says and how the chain is hashed and verified is
//! [`crate::audit`]'s business; this file only stores and reads the rows.
//! An append is three statements inside the caller's [`Tx`], the one that
//! makes the change the event records:
//!
//! 1. [`Tx::lock_audit_chain`] takes the chain's lock (a row lock on a
//!    reserved slot of `assignment_locks`, held until the transaction ends)
//!    and reads the hash of the last event. Appenders are thus serialised
//!    on both databases and the chain never forks: a second appender reads
//!    the last event only once the first has committed or rolled back.
//! 2. [`Tx::insert_audit_event`] inserts the event; the database assigns
//!    its `seq`.
//! 3. [`Tx::seal_audit_event`] stores its hash, which covers that `seq`.
//!
//! Events carry ids, never audio, keys or real numbers, so erasing
//! recordings never touches the chain.

use super::{Store, StoreError, Tx};
use crate::clock::Timestamp;

/// The lock slot reserved for audit appends (participants use 0..4096).
const AUDIT_LOCK_SLOT: i64 = -1;

/// One stored audit event.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct AuditEvent {
    /// Position in the chain.
    pub seq: i64,
    /// When.
    pub at: Timestamp,
    /// Who (`staff:<id>`, `cli:<user>`, `system:<job>`).
    pub actor: String,
    /// What (`recording.export`, `recording.erase`, …).
    pub action: String,
    /// On what (an id).
    pub object: String,
    /// Details (no personal data).
    pub detail: String,
    /// Hash of the previous event.
    pub prev_hash: Option<String>,
    /// This event's hash.
    pub hash: Option<String>,
}

/// An event about to be stored: its fields and the hash it chains to.
#[derive(Debug, Clone, Copy)]
pub struct NewAuditEvent<'a> {
    /// When.
    pub at: Timestamp,
    /// Who.
    pub actor: &'a str,
    /// What.
    pub action: &'a str,
    /// On what.
    pub object: &'a str,
    /// Details.
    pub detail: &'a str,
    /// Hash of the event before it (what [`Tx::lock_audit_chain`] read).
    pub prev_hash: &'a str,
}

type EventRow = (
    i64,
    i64,
    String,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
);

fn event(r: EventRow) -> AuditEvent {
    AuditEvent {
        seq: r.0,
        at: Timestamp::from_millis(r.1),
        actor: r.2,
        action: r.3,
        object: r.4,
        detail: r.5,
        prev_hash: r.6,
        hash: r.7,
    }
}

const EVENT_COLUMNS: &str = "seq, at, actor, action, object, detail, prev_hash, hash";

impl Tx {
    /// Takes the audit chain's lock until this transaction ends and returns
    /// the hash of the last event, `None` if there is none yet.
    pub async fn lock_audit_chain(&mut self) -> Result<Option<String>, StoreError> {
        sqlx::query(
            "INSERT INTO assignment_locks (slot, version) VALUES ($1, 1) \
             ON CONFLICT (slot) DO UPDATE SET version = assignment_locks.version + 1",
        )
        .bind(AUDIT_LOCK_SLOT)
        .execute(self.conn())
        .await?;
        let last: Option<(Option<String>,)> =
            sqlx::query_as("SELECT hash FROM audit_events ORDER BY seq DESC LIMIT 1")
                .fetch_optional(self.conn())
                .await?;
        Ok(last.and_then(|(h,)| h))
    }

    /// Inserts an event (after [`Tx::lock_audit_chain`]) and returns the
    /// `seq` the database gave it.
    pub async fn insert_audit_event(&mut self, e: &NewAuditEvent<'_>) -> Result<i64, StoreError> {
        let (seq,): (i64,) = sqlx::query_as(
            "INSERT INTO audit_events (at, actor, action, object, detail, prev_hash) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING seq",
        )
        .bind(e.at.as_millis())
        .bind(e.actor)
        .bind(e.action)
        .bind(e.object)
        .bind(e.detail)
        .bind(e.prev_hash)
        .fetch_one(self.conn())
        .await?;
        self.audited.push(e.action.to_owned());
        Ok(seq)
    }

    /// Stores the hash of event `seq`.
    pub async fn seal_audit_event(&mut self, seq: i64, hash: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE audit_events SET hash = $2 WHERE seq = $1")
            .bind(seq)
            .bind(hash)
            .execute(self.conn())
            .await?;
        Ok(())
    }
}

impl Store {
    /// Events at or after `since`, oldest first (at most `limit`).
    pub async fn list_audit(
        &self,
        since: Timestamp,
        limit: i64,
    ) -> Result<Vec<AuditEvent>, StoreError> {
        self.list_audit_page(since, 0, limit).await
    }

    /// As [`Store::list_audit`], after the event `after_seq` (a page).
    pub async fn list_audit_page(
        &self,
        since: Timestamp,
        after_seq: i64,
        limit: i64,
    ) -> Result<Vec<AuditEvent>, StoreError> {
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT {EVENT_COLUMNS} FROM audit_events WHERE at >= $1 AND seq > $2 \
             ORDER BY seq LIMIT $3"
        ));
        let rows: Vec<EventRow> = sqlx::query_as(sql)
            .bind(since.as_millis())
            .bind(after_seq)
            .bind(limit)
            .fetch_all(self.pool())
            .await?;
        Ok(rows.into_iter().map(event).collect())
    }

    /// Events after `seq` (exclusive), in chain order, at most `limit`: the
    /// chain read a page at a time.
    pub async fn audit_chain_after(
        &self,
        seq: i64,
        limit: i64,
    ) -> Result<Vec<AuditEvent>, StoreError> {
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT {EVENT_COLUMNS} FROM audit_events WHERE seq > $1 ORDER BY seq LIMIT $2"
        ));
        let rows: Vec<EventRow> = sqlx::query_as(sql)
            .bind(seq)
            .bind(limit)
            .fetch_all(self.pool())
            .await?;
        Ok(rows.into_iter().map(event).collect())
    }

    /// Audit events of one action, oldest first: `(at, actor, object)`.
    pub async fn audit_events(
        &self,
        action: &str,
    ) -> Result<Vec<(Timestamp, String, String)>, StoreError> {
        let rows: Vec<(i64, String, String)> = sqlx::query_as(
            "SELECT at, actor, object FROM audit_events WHERE action = $1 ORDER BY seq",
        )
        .bind(action)
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .into_iter()
            .map(|(at, actor, object)| (Timestamp::from_millis(at), actor, object))
            .collect())
    }

    /// Audit events of one action on one object, oldest first:
    /// `(at, actor, detail)`. (Who listened to a recording.)
    pub async fn audit_events_on(
        &self,
        action: &str,
        object: &str,
    ) -> Result<Vec<(Timestamp, String, String)>, StoreError> {
        let rows: Vec<(i64, String, String)> = sqlx::query_as(
            "SELECT at, actor, detail FROM audit_events WHERE action = $1 AND object = $2 \
             ORDER BY seq",
        )
        .bind(action)
        .bind(object)
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .into_iter()
            .map(|(at, actor, detail)| (Timestamp::from_millis(at), actor, detail))
            .collect())
    }
}
