//! Idempotency keys: the claim of a `POST` with an `Idempotency-Key`, and
//! its first response, per (staff member, route, key).
//!
//! The claim is an `INSERT` on the primary key, so of two nodes racing
//! with one key exactly one wins; the other reads the row and learns
//! whether the first is still running (409), ran with another body (422)
//! or answered (replayed).

use super::{Store, StoreError};
use crate::clock::Timestamp;

/// Who asks, where, with which key and body.
#[derive(Debug, Clone, Copy)]
pub struct IdempotencyScope<'a> {
    /// Staff id of the token.
    pub staff_id: &'a str,
    /// `METHOD path`.
    pub route: &'a str,
    /// The client's key.
    pub key: &'a str,
    /// Hex SHA-256 of the request body.
    pub body_sha256: &'a str,
}

/// A stored first response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    /// Its status.
    pub status: u16,
    /// Its `Location`, if it had one.
    pub location: Option<String>,
    /// Its `Content-Type`, if it had one.
    pub content_type: Option<String>,
    /// Its body.
    pub body: Vec<u8>,
}

/// What a claim found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The key is ours: run the request, then [`Store::finish_idempotency`].
    New,
    /// The first request with this key is still running.
    InUse,
    /// The key was used with another body.
    Mismatch,
    /// The first request answered this.
    Done(StoredResponse),
}

type KeyRow = (
    String,
    i64,
    Option<i64>,
    Option<i64>,
    Option<String>,
    Option<String>,
    Option<Vec<u8>>,
);

impl Store {
    /// Claims `scope`'s key at `now` for `ttl`, the claim lapsing after
    /// `lock` unless the response is stored first.
    pub async fn claim_idempotency(
        &self,
        scope: &IdempotencyScope<'_>,
        now: Timestamp,
        ttl: std::time::Duration,
        lock: std::time::Duration,
    ) -> Result<Claim, StoreError> {
        for _ in 0..3 {
            let inserted = sqlx::query(
                "INSERT INTO idempotency_keys (staff_id, route, idem_key, body_sha256, \
                    created_at, expires_at, locked_until) VALUES ($1, $2, $3, $4, $5, $6, $7) \
                 ON CONFLICT (staff_id, route, idem_key) DO NOTHING",
            )
            .bind(scope.staff_id)
            .bind(scope.route)
            .bind(scope.key)
            .bind(scope.body_sha256)
            .bind(now.as_millis())
            .bind(now.saturating_add(ttl).as_millis())
            .bind(now.saturating_add(lock).as_millis())
            .execute(self.pool())
            .await?;
            if inserted.rows_affected() == 1 {
                return Ok(Claim::New);
            }
            let row: Option<KeyRow> = sqlx::query_as(
                "SELECT body_sha256, expires_at, locked_until, status, location, content_type, \
                        body FROM idempotency_keys \
                 WHERE staff_id = $1 AND route = $2 AND idem_key = $3",
            )
            .bind(scope.staff_id)
            .bind(scope.route)
            .bind(scope.key)
            .fetch_optional(self.pool())
            .await?;
            let Some((hash, expires_at, locked_until, status, location, content_type, body)) = row
            else {
                continue; // purged in between: claim again
            };
            if expires_at <= now.as_millis() {
                self.drop_idempotency_if(scope, "expires_at <= $4", now)
                    .await?;
                continue;
            }
            if hash != scope.body_sha256 {
                return Ok(Claim::Mismatch);
            }
            match (status, locked_until) {
                (Some(status), _) => {
                    return Ok(Claim::Done(StoredResponse {
                        status: u16::try_from(status).unwrap_or(500),
                        location,
                        content_type,
                        body: body.unwrap_or_default(),
                    }));
                }
                (None, Some(until)) if until > now.as_millis() => return Ok(Claim::InUse),
                // The first request's node died: its claim lapsed.
                (None, _) => {
                    self.drop_idempotency_if(
                        scope,
                        "status IS NULL AND COALESCE(locked_until, 0) <= $4",
                        now,
                    )
                    .await?;
                }
            }
        }
        Ok(Claim::InUse)
    }

    async fn drop_idempotency_if(
        &self,
        scope: &IdempotencyScope<'_>,
        condition: &'static str,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let sql = sqlx::AssertSqlSafe(format!(
            "DELETE FROM idempotency_keys WHERE staff_id = $1 AND route = $2 AND idem_key = $3 \
             AND {condition}"
        ));
        sqlx::query(sql)
            .bind(scope.staff_id)
            .bind(scope.route)
            .bind(scope.key)
            .bind(now.as_millis())
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Stores the first response of a claimed key.
    pub async fn finish_idempotency(
        &self,
        scope: &IdempotencyScope<'_>,
        response: &StoredResponse,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE idempotency_keys SET status = $4, location = $5, content_type = $6, \
                body = $7, locked_until = NULL \
             WHERE staff_id = $1 AND route = $2 AND idem_key = $3",
        )
        .bind(scope.staff_id)
        .bind(scope.route)
        .bind(scope.key)
        .bind(i64::from(response.status))
        .bind(response.location.as_deref())
        .bind(response.content_type.as_deref())
        .bind(response.body.as_slice())
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Gives a claimed key up (the request failed on our side: a retry may
    /// run it again).
    pub async fn release_idempotency(
        &self,
        scope: &IdempotencyScope<'_>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "DELETE FROM idempotency_keys WHERE staff_id = $1 AND route = $2 AND idem_key = $3 \
             AND status IS NULL",
        )
        .bind(scope.staff_id)
        .bind(scope.route)
        .bind(scope.key)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Deletes keys expired by `now`.
    pub async fn purge_idempotency(&self, now: Timestamp) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM idempotency_keys WHERE expires_at <= $1")
            .bind(now.as_millis())
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected())
    }
}
