//! The audit log: who did what to which object, hash-chained so that an
//! edited, deleted or reordered event is found.
//!
//! ## No action without its event, no event without its action
//!
//! An event is appended with [`append`] **inside the transaction of the
//! change it records** (a dispute opened, a grant approved, a recording
//! erased…): both are committed together or neither is, so a crash or an
//! error anywhere in between leaves no trace of either. Append the event
//! last in the transaction: it takes the chain's lock, which is then held
//! only for the moment until the commit.
//!
//! For reads (listing recordings, playing, exporting) the "change" is the
//! read itself: the caller [`record`]s the event in a transaction of its
//! own and returns the data only once that has committed. A failed commit
//! means no data goes out.
//!
//! ## The chain
//!
//! Every event stores `prev_hash` (the hash of the event before it, or 64
//! zeros for the first) and `hash = SHA-256(prev_hash ‖ seq ‖ at ‖ actor ‖
//! action ‖ object ‖ detail)`, each field length-prefixed (8 bytes, big
//! endian). Appends are serialised by a lock in the database
//! ([`crate::store::Tx::lock_audit_chain`]), so two concurrent appends never
//! chain to the same event, on SQLite or PostgreSQL. [`verify`] recomputes
//! the chain (`ansim audit verify`) and names the first event that does not
//! fit.
//!
//! This module builds events ([`Event`]'s constructors, one per audited
//! action, so a detail is formatted in one place) and hashes them; the rows
//! are stored by [`crate::store`], which has the SQL. Its only failures are
//! the database's, so it returns [`StoreError`].

mod event;

pub use event::{Action, Actor, Event};

use sha2::{Digest, Sha256};

use crate::store::{NewAuditEvent, Store, StoreError, Tx};

/// `prev_hash` of the first event.
const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Events read per query when verifying the chain.
const VERIFY_PAGE: i64 = 10_000;

/// Appends `event` to the chain inside `tx`, the transaction of the change
/// it records; returns its `seq`. It becomes visible when `tx` commits.
pub async fn append(tx: &mut Tx, event: &Event) -> Result<i64, StoreError> {
    let prev = tx
        .lock_audit_chain()
        .await?
        .unwrap_or_else(|| GENESIS.to_owned());
    let (actor, action) = (event.actor.to_string(), event.action.as_str());
    let seq = tx
        .insert_audit_event(&NewAuditEvent {
            at: event.at,
            actor: &actor,
            action,
            object: &event.object,
            detail: &event.detail,
            prev_hash: &prev,
        })
        .await?;
    let hash = hash_of(
        &prev,
        seq,
        event.at.as_millis(),
        &actor,
        action,
        &event.object,
        &event.detail,
    );
    tx.seal_audit_event(seq, &hash).await?;
    Ok(seq)
}

/// Records a read (a listing, a play, an export) in a transaction of its
/// own. The caller hands out the data only after this has returned `Ok`.
pub async fn record(store: &Store, event: &Event) -> Result<(), StoreError> {
    let mut tx = store.begin().await?;
    append(&mut tx, event).await?;
    tx.commit().await
}

/// The audit service the API and the CLI hold: appends every event of
/// theirs, in the transaction of the change ([`Audit::append`]) or, for a
/// read, committed before the data is handed out ([`Audit::record`]).
#[derive(Clone)]
pub struct Audit {
    /// Where the chain lives.
    store: Store,
}

impl Audit {
    /// The audit log in `store`.
    pub fn new(store: Store) -> Audit {
        Audit { store }
    }

    /// See [`append`].
    pub async fn append(&self, tx: &mut Tx, event: &Event) -> Result<i64, StoreError> {
        append(tx, event).await
    }

    /// See [`record`].
    pub async fn record(&self, event: &Event) -> Result<(), StoreError> {
        record(&self.store, event).await
    }

    /// See [`verify`].
    pub async fn verify(&self) -> Result<Result<u64, ChainBreak>, StoreError> {
        verify(&self.store).await
    }
}

/// Where the chain breaks.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ChainBreak {
    /// The first event that does not fit.
    pub seq: i64,
    /// Why.
    pub reason: String,
}

/// Recomputes the whole chain: the number of events if it holds, or the
/// first event that breaks it.
pub async fn verify(store: &Store) -> Result<Result<u64, ChainBreak>, StoreError> {
    let mut prev = GENESIS.to_owned();
    let mut count = 0;
    let mut after = i64::MIN;
    loop {
        let page = store.audit_chain_after(after, VERIFY_PAGE).await?;
        let Some(last) = page.last() else {
            return Ok(Ok(count));
        };
        after = last.seq;
        for e in page {
            let broken = |reason: &str| {
                Ok(Err(ChainBreak {
                    seq: e.seq,
                    reason: reason.to_owned(),
                }))
            };
            if e.prev_hash.as_deref() != Some(prev.as_str()) {
                return broken(
                    "does not follow the event before it (an event was deleted, inserted or moved)",
                );
            }
            let expected = hash_of(
                &prev,
                e.seq,
                e.at.as_millis(),
                &e.actor,
                &e.action,
                &e.object,
                &e.detail,
            );
            if e.hash.as_deref() != Some(expected.as_str()) {
                return broken("its content does not match its hash (the event was edited)");
            }
            prev = expected;
            count += 1;
        }
    }
}

/// The hash of one event, chained to `prev`.
fn hash_of(
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The hash of a known event never changes: chains written by earlier
    /// versions must keep verifying.
    #[test]
    fn the_hash_of_an_event_is_stable() {
        let h = hash_of(GENESIS, 1, 0, "cli:test", "recording.export", "r0", "");
        assert_eq!(
            h,
            "9991055f83b2eded3a1835fb67d2d9bc30f38aa7dbf7f6b13af4a30f6b18432c"
        );
        assert_ne!(
            h,
            hash_of(GENESIS, 2, 0, "cli:test", "recording.export", "r0", "")
        );
        // Length prefixes: moving a byte from one field to the next changes it.
        assert_ne!(
            hash_of(GENESIS, 1, 0, "ab", "c", "", ""),
            hash_of(GENESIS, 1, 0, "a", "bc", "", "")
        );
    }
}
