//! Disputes and playback grants.

use super::{Store, StoreError, new_id};
use crate::clock::Timestamp;

/// A dispute on one or more calls.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Dispute {
    /// `dsp_…`.
    pub id: String,
    /// The support ticket it belongs to.
    pub ticket: String,
    /// Why it was opened.
    pub reason: String,
    /// Staff id of who opened it.
    pub opened_by: String,
    /// When.
    pub opened_at: Timestamp,
    /// The legal hold on its recordings, if they had any.
    pub hold_id: Option<String>,
    /// Staff id of who resolved it.
    pub resolved_by: Option<String>,
    /// When it was resolved.
    pub resolved_at: Option<Timestamp>,
    /// Its calls.
    pub call_ids: Vec<String>,
}

/// A request for playback of a dispute's recordings.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Grant {
    /// `gnt_…`.
    pub id: String,
    /// The dispute it covers (and nothing else).
    pub dispute_id: String,
    /// Staff id of the requester (the only one who may use it).
    pub requested_by: String,
    /// When requested.
    pub requested_at: Timestamp,
    /// Staff id of the approver.
    pub approved_by: Option<String>,
    /// When approved.
    pub approved_at: Option<Timestamp>,
    /// When it stops working.
    pub expires_at: Option<Timestamp>,
}

type DisputeRow = (
    String,
    String,
    String,
    String,
    i64,
    Option<String>,
    Option<String>,
    Option<i64>,
);
type GrantRow = (
    String,
    String,
    String,
    i64,
    Option<String>,
    Option<i64>,
    Option<i64>,
);

impl Store {
    /// Opens a dispute on `call_ids` (which must exist).
    pub async fn create_dispute(
        &self,
        ticket: &str,
        reason: &str,
        opened_by: &str,
        call_ids: &[String],
        hold_id: Option<&str>,
        now: Timestamp,
    ) -> Result<Dispute, StoreError> {
        let id = new_id("dsp");
        let mut tx = self.pool().begin().await?;
        sqlx::query(
            "INSERT INTO disputes (id, ticket, reason, opened_by, opened_at, hold_id) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&id)
        .bind(ticket)
        .bind(reason)
        .bind(opened_by)
        .bind(now.as_millis())
        .bind(hold_id)
        .execute(&mut *tx)
        .await?;
        for c in call_ids {
            sqlx::query("INSERT INTO dispute_calls (dispute_id, call_id) VALUES ($1, $2)")
                .bind(&id)
                .bind(c)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        self.get_dispute(&id).await?.ok_or(StoreError::Corrupt {
            table: "disputes",
            what: "vanished".into(),
        })
    }

    /// A dispute with its calls.
    pub async fn get_dispute(&self, id: &str) -> Result<Option<Dispute>, StoreError> {
        let row: Option<DisputeRow> = sqlx::query_as(
            "SELECT id, ticket, reason, opened_by, opened_at, hold_id, resolved_by, resolved_at \
             FROM disputes WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(self.pool())
        .await?;
        let Some(r) = row else { return Ok(None) };
        let calls: Vec<(String,)> = sqlx::query_as(
            "SELECT call_id FROM dispute_calls WHERE dispute_id = $1 ORDER BY call_id",
        )
        .bind(id)
        .fetch_all(self.pool())
        .await?;
        Ok(Some(Dispute {
            id: r.0,
            ticket: r.1,
            reason: r.2,
            opened_by: r.3,
            opened_at: Timestamp::from_millis(r.4),
            hold_id: r.5,
            resolved_by: r.6,
            resolved_at: r.7.map(Timestamp::from_millis),
            call_ids: calls.into_iter().map(|(c,)| c).collect(),
        }))
    }

    /// Marks a dispute resolved (once).
    pub async fn resolve_dispute(
        &self,
        id: &str,
        by: &str,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE disputes SET resolved_by = $2, resolved_at = $3 WHERE id = $1 AND resolved_at IS NULL",
        )
        .bind(id)
        .bind(by)
        .bind(now.as_millis())
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Whether a call exists.
    pub async fn call_exists(&self, id: &str) -> Result<bool, StoreError> {
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM calls WHERE id = $1")
            .bind(id)
            .fetch_one(self.pool())
            .await?;
        Ok(n > 0)
    }

    /// Requests a grant on a dispute.
    pub async fn create_grant(
        &self,
        dispute_id: &str,
        requested_by: &str,
        now: Timestamp,
    ) -> Result<Grant, StoreError> {
        let id = new_id("gnt");
        sqlx::query("INSERT INTO grants (id, dispute_id, requested_by, requested_at) VALUES ($1, $2, $3, $4)")
            .bind(&id)
            .bind(dispute_id)
            .bind(requested_by)
            .bind(now.as_millis())
            .execute(self.pool())
            .await?;
        self.get_grant(&id).await?.ok_or(StoreError::Corrupt {
            table: "grants",
            what: "vanished".into(),
        })
    }

    /// Approves a grant (once) until `expires_at`.
    pub async fn approve_grant(
        &self,
        id: &str,
        by: &str,
        now: Timestamp,
        expires_at: Timestamp,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE grants SET approved_by = $2, approved_at = $3, expires_at = $4 \
             WHERE id = $1 AND approved_at IS NULL",
        )
        .bind(id)
        .bind(by)
        .bind(now.as_millis())
        .bind(expires_at.as_millis())
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// A grant.
    pub async fn get_grant(&self, id: &str) -> Result<Option<Grant>, StoreError> {
        let row: Option<GrantRow> = sqlx::query_as(
            "SELECT id, dispute_id, requested_by, requested_at, approved_by, approved_at, expires_at \
             FROM grants WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.map(|r| Grant {
            id: r.0,
            dispute_id: r.1,
            requested_by: r.2,
            requested_at: Timestamp::from_millis(r.3),
            approved_by: r.4,
            approved_at: r.5.map(Timestamp::from_millis),
            expires_at: r.6.map(Timestamp::from_millis),
        }))
    }
}
