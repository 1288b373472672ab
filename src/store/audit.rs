//! The hash-chained access log.
//!
//! Every event stores `prev_hash` (the hash of the event before it, or 64
//! zeros for the first) and `hash = SHA-256(prev_hash ‖ seq ‖ at ‖ actor ‖
//! action ‖ object ‖ detail)`, each field length-prefixed. Appends are
//! serialised (a row lock on a reserved slot of `assignment_locks`) so the
//! chain never forks. [`Store::verify_audit`] recomputes the chain and names
//! the first event that does not fit. Events carry ids, never audio, keys
//! or real numbers, so erasing recordings never touches the chain.

use sha2::{Digest, Sha256};
use sqlx::{Any, Transaction};

use super::{Store, StoreError};
use crate::clock::Timestamp;

/// The lock slot reserved for audit appends (participants use 0..4096).
const AUDIT_LOCK_SLOT: i64 = -1;
/// `prev_hash` of the first event.
const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One audit event.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
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

/// Where the chain breaks.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ChainBreak {
    /// The first event that does not fit.
    pub seq: i64,
    /// Why.
    pub reason: String,
}

fn event_hash(
    prev: &str,
    seq: i64,
    at: i64,
    actor: &str,
    action: &str,
    object: &str,
    detail: &str,
) -> String {
    let mut h = Sha256::new();
    for field in [
        prev.as_bytes(),
        &seq.to_be_bytes(),
        &at.to_be_bytes(),
        actor.as_bytes(),
        action.as_bytes(),
        object.as_bytes(),
        detail.as_bytes(),
    ] {
        h.update((field.len() as u64).to_be_bytes());
        h.update(field);
    }
    hex::encode(h.finalize())
}

/// Appends an event inside `tx`, chained to the last one.
pub(super) async fn append(
    tx: &mut Transaction<'_, Any>,
    at: Timestamp,
    actor: &str,
    action: &str,
    object: &str,
    detail: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO assignment_locks (slot, version) VALUES ($1, 1) \
         ON CONFLICT (slot) DO UPDATE SET version = assignment_locks.version + 1",
    )
    .bind(AUDIT_LOCK_SLOT)
    .execute(&mut **tx)
    .await?;
    let last: Option<(i64, Option<String>)> =
        sqlx::query_as("SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&mut **tx)
            .await?;
    let prev = last
        .as_ref()
        .and_then(|(_, h)| h.clone())
        .unwrap_or_else(|| GENESIS.to_owned());
    let (seq,): (i64,) = sqlx::query_as(
        "INSERT INTO audit_events (at, actor, action, object, detail, prev_hash) \
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING seq",
    )
    .bind(at.as_millis())
    .bind(actor)
    .bind(action)
    .bind(object)
    .bind(detail)
    .bind(&prev)
    .fetch_one(&mut **tx)
    .await?;
    let hash = event_hash(&prev, seq, at.as_millis(), actor, action, object, detail);
    sqlx::query("UPDATE audit_events SET hash = $2 WHERE seq = $1")
        .bind(seq)
        .bind(hash)
        .execute(&mut **tx)
        .await?;
    Ok(())
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

impl Store {
    /// Appends an access event (who did what to which object) to the chain.
    pub async fn insert_audit(
        &self,
        at: Timestamp,
        actor: &str,
        action: &str,
        object: &str,
        detail: &str,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool().begin().await?;
        append(&mut tx, at, actor, action, object, detail).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Events at or after `since`, oldest first (at most `limit`).
    pub async fn list_audit(
        &self,
        since: Timestamp,
        limit: i64,
    ) -> Result<Vec<AuditEvent>, StoreError> {
        let rows: Vec<EventRow> = sqlx::query_as(
            "SELECT seq, at, actor, action, object, detail, prev_hash, hash FROM audit_events \
             WHERE at >= $1 ORDER BY seq LIMIT $2",
        )
        .bind(since.as_millis())
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

    /// Recomputes the whole chain: the number of events if it holds, or the
    /// first event that breaks it.
    pub async fn verify_audit(&self) -> Result<Result<u64, ChainBreak>, StoreError> {
        let rows: Vec<EventRow> = sqlx::query_as(
            "SELECT seq, at, actor, action, object, detail, prev_hash, hash FROM audit_events ORDER BY seq",
        )
        .fetch_all(self.pool())
        .await?;
        let mut prev = GENESIS.to_owned();
        let mut count = 0;
        for r in rows.into_iter().map(event) {
            let fail = |reason: &str| {
                Ok(Err(ChainBreak {
                    seq: r.seq,
                    reason: reason.to_owned(),
                }))
            };
            if r.prev_hash.as_deref() != Some(prev.as_str()) {
                return fail(
                    "does not follow the event before it (an event was deleted, inserted or moved)",
                );
            }
            let expected = event_hash(
                &prev,
                r.seq,
                r.at.as_millis(),
                &r.actor,
                &r.action,
                &r.object,
                &r.detail,
            );
            if r.hash.as_deref() != Some(expected.as_str()) {
                return fail("its content does not match its hash (the event was edited)");
            }
            prev = expected;
            count += 1;
        }
        Ok(Ok(count))
    }
}
