//! The safe-number pool.

use super::{Store, StoreError, parse_number};
use crate::clock::Timestamp;
use crate::phone::E164;

/// A pool number with its usage.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NumberUsage {
    /// The safe number.
    pub number: E164,
    /// When it joined the pool.
    pub added_at: Timestamp,
    /// Bindings using it now (each open session uses it for at most two).
    pub active_bindings: i64,
    /// Bindings it has ever served.
    pub total_bindings: i64,
}

/// What adding numbers did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct AddedNumbers {
    /// Numbers new to the pool.
    pub added: Vec<E164>,
    /// Numbers that were in the pool already (left as they were).
    pub existing: Vec<E164>,
}

impl Store {
    /// Adds numbers to the pool; numbers already there are reported, not
    /// duplicated. One transaction: all or nothing.
    pub async fn add_numbers(
        &self,
        numbers: &[E164],
        now: Timestamp,
    ) -> Result<AddedNumbers, StoreError> {
        let mut tx = self.pool().begin().await?;
        let mut out = AddedNumbers::default();
        for n in numbers {
            let done = sqlx::query(
                "INSERT INTO numbers (number, added_at) VALUES ($1, $2) \
                 ON CONFLICT (number) DO NOTHING",
            )
            .bind(n.as_str())
            .bind(now.as_millis())
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() == 1 {
                out.added.push(n.clone());
            } else {
                out.existing.push(n.clone());
            }
        }
        tx.commit().await?;
        Ok(out)
    }

    /// The whole pool with usage counts, ordered by number.
    pub async fn list_numbers(&self) -> Result<Vec<NumberUsage>, StoreError> {
        let rows: Vec<(String, i64, i64, i64)> = sqlx::query_as(
            "SELECT n.number, n.added_at, \
                    (SELECT COUNT(*) FROM bindings b \
                      WHERE b.proxy_number = n.number AND b.released_at IS NULL), \
                    (SELECT COUNT(*) FROM bindings b WHERE b.proxy_number = n.number) \
             FROM numbers n ORDER BY n.number",
        )
        .fetch_all(self.pool())
        .await?;
        rows.into_iter()
            .map(|(number, added_at, active, total)| {
                Ok(NumberUsage {
                    number: parse_number("numbers", &number)?,
                    added_at: Timestamp::from_millis(added_at),
                    active_bindings: active,
                    total_bindings: total,
                })
            })
            .collect()
    }
}
