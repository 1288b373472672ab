//! Webhooks: events from the outbox (`store::webhooks`) delivered to the
//! platform's backend, signed per the Standard Webhooks specification.
//!
//! At least once: a row is marked delivered only after a 2xx; any other
//! answer, or none, schedules a retry with exponential backoff (from
//! `[webhooks] retry_initial`, doubling, capped at `retry_max`) until
//! `give_up_after` (at least 24 h) has passed since the event. Every try
//! of one event carries the same `webhook-id` and body; the timestamp and
//! signature are those of the try. A worker that dies mid-try leaves its
//! lease to expire and the row is tried again, by this node or another.

mod client;
pub mod sign;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::watch;

use crate::clock::{SharedClock, Timestamp};
use crate::config::webhooks::WebhooksConfig;
use crate::metrics::Metrics;
use crate::store::webhooks::Claimed;
use crate::store::{Store, StoreError, WebhookPolicy};

pub use client::{Client, ClientError, Outcome};
pub use sign::{Secret, SecretError};

/// How often the outbox is looked at for due rows.
const POLL: Duration = Duration::from_millis(500);
/// Rows claimed at once.
const BATCH: i64 = 32;
/// Delivered or given-up rows are kept this long for the deliveries list.
const KEEP_FINISHED: Duration = Duration::from_secs(7 * 24 * 3600);

/// Why webhooks could not start.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// The secret file could not be read.
    #[error("webhooks.secret_file {path}: {source}")]
    SecretFile {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The secret file's content is not a usable secret.
    #[error("webhooks.secret_file {path}: {source}")]
    Secret {
        /// The file.
        path: String,
        /// Why.
        source: SecretError,
    },
    /// The HTTP client could not be set up.
    #[error(transparent)]
    Client(#[from] ClientError),
}

/// What the store writes into the outbox under `config`.
pub fn policy(config: &WebhooksConfig) -> WebhookPolicy {
    WebhookPolicy {
        enabled: config.target.is_some(),
        events: config.events.clone(),
        include_numbers: config.include_numbers,
    }
}

/// The delivery task's parts.
pub struct Deliverer {
    store: Store,
    client: Client,
    secret: Secret,
    clock: SharedClock,
    metrics: Arc<Metrics>,
    retry_initial: Duration,
    retry_max: Duration,
    give_up_after: Duration,
    lease: Duration,
}

impl Deliverer {
    /// The deliverer of `config`, or `None` when webhooks are off.
    pub fn new(
        config: &WebhooksConfig,
        store: Store,
        clock: SharedClock,
        metrics: Arc<Metrics>,
    ) -> Result<Option<Deliverer>, WebhookError> {
        let (Some(target), Some(file)) = (&config.target, &config.secret_file) else {
            return Ok(None);
        };
        let path = file.display().to_string();
        let text = zeroize::Zeroizing::new(std::fs::read(file).map_err(|source| {
            WebhookError::SecretFile {
                path: path.clone(),
                source,
            }
        })?);
        let secret =
            Secret::parse(&text).map_err(|source| WebhookError::Secret { path, source })?;
        let client = Client::new(target.clone(), &config.ca_file, config.timeout)?;
        Ok(Some(Deliverer {
            store,
            client,
            secret,
            clock,
            metrics,
            retry_initial: config.retry_initial,
            retry_max: config.retry_max,
            give_up_after: config.give_up_after,
            lease: config.timeout * 2 + Duration::from_secs(5),
        }))
    }

    /// Delivers until `stop` turns true; a try in progress then finishes.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_purge: Option<Timestamp> = None;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            if let Err(e) = self.deliver_due().await {
                tracing::warn!(error = %e, "webhook delivery pass failed; will retry");
            }
            let now = self.clock.now();
            if last_purge.is_none_or(|t| now.saturating_sub(Duration::from_secs(3600)) > t) {
                last_purge = Some(now);
                if let Err(e) = self
                    .store
                    .purge_webhooks(now.saturating_sub(KEEP_FINISHED))
                    .await
                {
                    tracing::warn!(error = %e, "webhook outbox purge failed");
                }
            }
        }
    }

    /// Claims the due rows and tries each once; returns how many it tried.
    pub async fn deliver_due(&self) -> Result<usize, StoreError> {
        let now = self.clock.now();
        let claimed = self
            .store
            .claim_webhooks(now, now.saturating_add(self.lease), BATCH)
            .await?;
        for row in &claimed {
            self.deliver(row).await?;
        }
        Ok(claimed.len())
    }

    async fn deliver(&self, row: &Claimed) -> Result<(), StoreError> {
        let now = self.clock.now();
        let ts = now.as_millis().div_euclid(1000);
        let headers = [
            ("webhook-id", row.id.clone()),
            ("webhook-timestamp", ts.to_string()),
            (
                "webhook-signature",
                self.secret.sign(&row.id, ts, row.payload.as_bytes()),
            ),
        ];
        let outcome = self.client.post(&headers, row.payload.clone()).await;
        let done = self.clock.now();
        let (status, error) = match outcome {
            Outcome::Status(s) if (200..300).contains(&s) => {
                self.metrics
                    .webhooks_delivered
                    .fetch_add(1, Ordering::Relaxed);
                return self.store.webhook_delivered(&row.id, s, done).await;
            }
            Outcome::Status(s) => (Some(s), format!("receiver answered {s}")),
            Outcome::Failed(e) => (None, e),
        };
        self.metrics
            .webhooks_failed_attempts
            .fetch_add(1, Ordering::Relaxed);
        let retry_at = done.saturating_add(self.backoff(row.attempts + 1));
        let give_up = retry_at > row.created_at.saturating_add(self.give_up_after);
        if give_up {
            self.metrics
                .webhooks_given_up
                .fetch_add(1, Ordering::Relaxed);
            tracing::warn!(webhook = %row.id, tries = row.attempts + 1, error = %error, "webhook given up");
        } else {
            tracing::info!(webhook = %row.id, tries = row.attempts + 1, error = %error, "webhook delivery failed; will retry");
        }
        let retry_at = (!give_up).then_some(retry_at);
        self.store
            .webhook_failed(&row.id, status, &error, done, retry_at)
            .await
    }

    /// The wait after the `tries`-th failed try.
    fn backoff(&self, tries: i64) -> Duration {
        backoff(self.retry_initial, self.retry_max, tries)
    }
}

/// `initial`, doubling with each failed try, capped at `max`.
pub fn backoff(initial: Duration, max: Duration, tries: i64) -> Duration {
    let doublings = u32::try_from(tries.saturating_sub(1).clamp(0, 30)).unwrap_or(30);
    initial.saturating_mul(1u32 << doublings).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_then_caps() {
        let (i, m) = (Duration::from_secs(2), Duration::from_secs(300));
        let waits: Vec<u64> = (1..=10).map(|n| backoff(i, m, n).as_secs()).collect();
        assert_eq!(waits, [2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
        assert_eq!(backoff(i, m, i64::MAX), m);
        // Retried for a day at the default settings: hundreds of tries.
        let mut t = Duration::ZERO;
        let mut n = 0;
        while t < Duration::from_secs(24 * 3600) {
            n += 1;
            t += backoff(i, m, n);
        }
        assert!(n > 280, "{n} tries in a day");
    }
}
