//! Personal-data retention in the database: the real numbers of sessions
//! closed long ago, of their bindings and of their calls are replaced by
//! pseudonyms (`h:<hex>`, a keyed hash the caller computes; the key is not
//! in the database). The rows themselves stay, for statistics and disputes.
//!
//! A session is pseudonymised in one transaction together with its bindings
//! and calls, so a session row that reads as a pseudonym has no real number
//! left in the rows that belong to it. Rows already pseudonymised are
//! skipped, so a second run (or a run after an interruption) only does what
//! is left.

use std::collections::HashMap;

use sqlx::{Any, Transaction};

use super::{Store, StoreError, Tx};
use crate::clock::Timestamp;
use crate::phone::{E164, PSEUDONYM_PREFIX, is_pseudonym};

/// Sessions (or session-less calls) rewritten per transaction.
const BATCH: i64 = 100;

/// How many rows had their real numbers replaced (or, for
/// [`Store::count_pseudonymisable`], still hold real numbers past the cut-off).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct PseudonymReport {
    /// Rows of `sessions`.
    pub sessions: usize,
    /// Rows of `bindings` (the quarantine history).
    pub bindings: usize,
    /// Rows of `calls`, with or without a session.
    pub calls: usize,
}

impl PseudonymReport {
    /// All rows together.
    pub fn total(&self) -> usize {
        self.sessions + self.bindings + self.calls
    }
}

/// Computes (and remembers, within a batch) the pseudonyms of stored values.
struct Hasher<'a, F: Fn(&E164) -> String> {
    keyed_hash: &'a F,
    table: &'static str,
    memo: HashMap<String, String>,
}

impl<F: Fn(&E164) -> String> Hasher<'_, F> {
    /// The pseudonym of the stored value `raw`, or `None` if it already is one.
    fn of(&mut self, raw: &str) -> Result<Option<String>, StoreError> {
        if is_pseudonym(raw) {
            return Ok(None);
        }
        if let Some(h) = self.memo.get(raw) {
            return Ok(Some(h.clone()));
        }
        let number = super::parse_number(self.table, raw)?;
        let h = (self.keyed_hash)(&number);
        if !is_pseudonym(&h) {
            return Err(StoreError::Corrupt {
                table: self.table,
                what: format!("keyed hash is not of the form {PSEUDONYM_PREFIX}<64 hex digits>"),
            });
        }
        self.memo.insert(raw.to_owned(), h.clone());
        Ok(Some(h))
    }

    /// The pseudonym of `raw`, or `raw` itself if it already is one.
    fn or_keep(&mut self, raw: String) -> Result<String, StoreError> {
        Ok(self.of(&raw)?.unwrap_or(raw))
    }
}

impl Store {
    /// Replaces the real numbers of sessions closed before `before` with
    /// their pseudonyms `keyed_hash(number)` (which must be `h:` and 64
    /// lowercase hex digits), together with those of their bindings
    /// released before `before` and of their calls; also those of calls
    /// without a session (refused calls) that ended before `before`.
    ///
    /// Idempotent, in batches of one transaction each. The caller chooses
    /// `before` so that no binding still inside its quarantine is touched
    /// (quarantine reads the real numbers of recently released bindings).
    pub async fn pseudonymise_closed(
        &self,
        before: Timestamp,
        keyed_hash: impl Fn(&E164) -> String,
    ) -> Result<PseudonymReport, StoreError> {
        let mut report = PseudonymReport::default();
        loop {
            let n = self
                .pseudonymise_sessions(before, &keyed_hash, &mut report)
                .await?;
            if n < BATCH as usize {
                break;
            }
        }
        loop {
            let n = self.pseudonymise_refused_calls(before, &keyed_hash).await?;
            report.calls += n;
            if n < BATCH as usize {
                break;
            }
        }
        Ok(report)
    }

    /// One batch of sessions with their bindings and calls; returns how many
    /// sessions it rewrote.
    async fn pseudonymise_sessions<F: Fn(&E164) -> String>(
        &self,
        before: Timestamp,
        keyed_hash: &F,
        report: &mut PseudonymReport,
    ) -> Result<usize, StoreError> {
        let mut tx = self.pool().begin().await?;
        let due: Vec<(String, String, String)> = sqlx::query_as(
            "SELECT id, a_number, b_number FROM sessions \
             WHERE closed_at < $1 AND (a_number NOT LIKE 'h:%' OR b_number NOT LIKE 'h:%') \
             LIMIT $2",
        )
        .bind(before.as_millis())
        .bind(BATCH)
        .fetch_all(&mut *tx)
        .await?;
        let mut h = Hasher {
            keyed_hash,
            table: "sessions",
            memo: HashMap::new(),
        };
        for (id, a, b) in &due {
            let (a, b) = (h.or_keep(a.clone())?, h.or_keep(b.clone())?);
            sqlx::query("UPDATE sessions SET a_number = $2, b_number = $3 WHERE id = $1")
                .bind(id)
                .bind(a)
                .bind(b)
                .execute(&mut *tx)
                .await?;
            report.bindings += pseudonymise_bindings(&mut tx, id, before, &mut h).await?;
            report.calls += pseudonymise_session_calls(&mut tx, id, &mut h).await?;
        }
        tx.commit().await?;
        report.sessions += due.len();
        Ok(due.len())
    }

    /// One batch of session-less calls that ended before `before`.
    async fn pseudonymise_refused_calls<F: Fn(&E164) -> String>(
        &self,
        before: Timestamp,
        keyed_hash: &F,
    ) -> Result<usize, StoreError> {
        let mut tx = self.pool().begin().await?;
        let due: Vec<(String, String)> = sqlx::query_as(
            "SELECT id, caller FROM calls \
             WHERE session_id IS NULL AND end_at < $1 AND caller NOT LIKE 'h:%' AND caller <> '' LIMIT $2",
        )
        .bind(before.as_millis())
        .bind(BATCH)
        .fetch_all(&mut *tx)
        .await?;
        let mut h = Hasher {
            keyed_hash,
            table: "calls",
            memo: HashMap::new(),
        };
        for (id, caller) in &due {
            let caller = h.or_keep(caller.clone())?;
            update_caller(&mut tx, id, &caller).await?;
        }
        tx.commit().await?;
        Ok(due.len())
    }

    /// What [`Store::pseudonymise_closed`] would rewrite now (a dry run).
    pub async fn count_pseudonymisable(
        &self,
        before: Timestamp,
    ) -> Result<PseudonymReport, StoreError> {
        let count = |sql: &'static str| async move {
            let (n,): (i64,) = sqlx::query_as(sql)
                .bind(before.as_millis())
                .fetch_one(self.pool())
                .await?;
            Ok::<usize, StoreError>(usize::try_from(n).unwrap_or(0))
        };
        Ok(PseudonymReport {
            sessions: count(
                "SELECT COUNT(*) FROM sessions WHERE closed_at < $1 \
                 AND (a_number NOT LIKE 'h:%' OR b_number NOT LIKE 'h:%')",
            )
            .await?,
            bindings: count(
                "SELECT COUNT(*) FROM bindings b JOIN sessions s ON s.id = b.session_id \
                 WHERE s.closed_at < $1 AND b.released_at < $1 \
                   AND (s.a_number NOT LIKE 'h:%' OR s.b_number NOT LIKE 'h:%') \
                   AND (b.participant NOT LIKE 'h:%' OR b.counterpart NOT LIKE 'h:%')",
            )
            .await?,
            calls: count(
                "SELECT COUNT(*) FROM calls c LEFT JOIN sessions s ON s.id = c.session_id \
                 WHERE c.caller NOT LIKE 'h:%' AND c.caller <> '' AND ((c.session_id IS NULL AND c.end_at < $1) \
                   OR (s.closed_at < $1 AND (s.a_number NOT LIKE 'h:%' OR s.b_number NOT LIKE 'h:%')))",
            )
            .await?,
        })
    }
}

/// The session's bindings released before `before`; returns how many.
async fn pseudonymise_bindings<F: Fn(&E164) -> String>(
    tx: &mut Transaction<'_, Any>,
    session_id: &str,
    before: Timestamp,
    h: &mut Hasher<'_, F>,
) -> Result<usize, StoreError> {
    let rows: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT side, participant, counterpart FROM bindings \
         WHERE session_id = $1 AND released_at < $2 \
           AND (participant NOT LIKE 'h:%' OR counterpart NOT LIKE 'h:%')",
    )
    .bind(session_id)
    .bind(before.as_millis())
    .fetch_all(&mut **tx)
    .await?;
    for (side, participant, counterpart) in &rows {
        let (p, c) = (
            h.or_keep(participant.clone())?,
            h.or_keep(counterpart.clone())?,
        );
        sqlx::query(
            "UPDATE bindings SET participant = $3, counterpart = $4 \
             WHERE session_id = $1 AND side = $2",
        )
        .bind(session_id)
        .bind(side)
        .bind(p)
        .bind(c)
        .execute(&mut **tx)
        .await?;
    }
    Ok(rows.len())
}

/// The callers of the session's calls; returns how many calls.
async fn pseudonymise_session_calls<F: Fn(&E164) -> String>(
    tx: &mut Transaction<'_, Any>,
    session_id: &str,
    h: &mut Hasher<'_, F>,
) -> Result<usize, StoreError> {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT id, caller FROM calls WHERE session_id = $1 AND caller NOT LIKE 'h:%' AND caller <> ''",
    )
    .bind(session_id)
    .fetch_all(&mut **tx)
    .await?;
    for (id, caller) in &rows {
        let caller = h.or_keep(caller.clone())?;
        update_caller(tx, id, &caller).await?;
    }
    Ok(rows.len())
}

async fn update_caller(
    tx: &mut Transaction<'_, Any>,
    id: &str,
    caller: &str,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE calls SET caller = $2 WHERE id = $1")
        .bind(id)
        .bind(caller)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

impl Tx {
    /// A data subject's erasure: replaces `number` by `pseudonym` wherever
    /// it appears in closed sessions, their bindings and calls, and in calls
    /// it placed. Open sessions are left alone (close them first). Returns
    /// how many rows changed. Inside the caller's transaction, so that the
    /// erasure's audit event commits with it.
    pub async fn pseudonymise_number(
        &mut self,
        number: &E164,
        pseudonym: &str,
    ) -> Result<usize, StoreError> {
        let n = number.as_str();
        let mut changed = 0;
        for sql in [
            "UPDATE sessions SET a_number = $2 WHERE a_number = $1 AND closed_at IS NOT NULL",
            "UPDATE sessions SET b_number = $2 WHERE b_number = $1 AND closed_at IS NOT NULL",
            "UPDATE bindings SET participant = $2 WHERE participant = $1 AND released_at IS NOT NULL",
            "UPDATE bindings SET counterpart = $2 WHERE counterpart = $1 AND released_at IS NOT NULL",
            "UPDATE calls SET caller = $2 WHERE caller = $1 AND end_at IS NOT NULL",
        ] {
            let done = sqlx::query(sql)
                .bind(n)
                .bind(pseudonym)
                .execute(self.conn())
                .await?;
            changed += done.rows_affected() as usize;
        }
        Ok(changed)
    }
}
