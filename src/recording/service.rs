//! The recording service: keys, blobs and the database, and starting a
//! writer for each answered call.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::clock::{SharedClock, Timestamp};
use crate::keys::epoch_id;
use crate::keys::{KeyError, KeyStore};
use crate::recording::blob::BlobStore;
use crate::recording::tap::RecordingTap;
use crate::store::{RecordingEnd, RecordingRow, RecordingWrite, Store, StoreError};

/// Retention settings a recording needs when it starts.
#[derive(Debug, Clone)]
pub struct RecordingPolicy {
    /// Retention class → how long its recordings are kept.
    pub classes: BTreeMap<String, Duration>,
    /// Width of a KEK epoch.
    pub epoch: Duration,
    /// Longest call: a recording ends at most this long after it starts.
    pub max_call: Duration,
    /// `[retention] personal_data`: how long after a session closes its
    /// real numbers are replaced by pseudonyms.
    pub personal_data: Duration,
    /// `[routing] quarantine`: pseudonymisation waits for it too, because
    /// quarantine compares the real numbers of recently released bindings.
    pub quarantine: Duration,
}

impl RecordingPolicy {
    /// The cut-off of pseudonymisation at `now`: sessions (and session-less
    /// calls) that ended before it lose their real numbers. It is
    /// `now − max(personal_data, quarantine)`, so that a binding still inside
    /// its quarantine keeps the real numbers quarantine compares.
    pub fn pseudonymise_before(&self, now: Timestamp) -> Timestamp {
        now.saturating_sub(self.personal_data.max(self.quarantine))
    }

    /// The epoch whose KEK wraps the DEK of a recording of `class` started
    /// at `start`, and when that epoch ends.
    ///
    /// The recording's real expiry is its end plus the class's period; at
    /// the start only an upper bound is known (start + longest call +
    /// period). The epoch containing that bound ends after the real expiry,
    /// so destroying the KEK at the epoch's end never cuts a retention
    /// short; it erases at most one epoch width plus one call length late.
    pub fn epoch_for(&self, class: &str, start: Timestamp) -> Option<(String, Timestamp)> {
        let period = *self.classes.get(class)?;
        let bound = start.saturating_add(self.max_call).saturating_add(period);
        let width = i64::try_from(self.epoch.as_millis()).ok()?.max(1);
        let index = bound.as_millis().div_euclid(width);
        let end = Timestamp::from_millis(index.saturating_add(1).saturating_mul(width));
        Some((epoch_id(class, end), end))
    }

    /// The epoch of a recording of `class` that expires at `expires_at`:
    /// the one ending at the first epoch boundary after the expiry (as
    /// [`RecordingPolicy::epoch_for`] counts them), so its KEK is destroyed
    /// within one epoch width of it.
    pub fn epoch_of_expiry(&self, class: &str, expires_at: Timestamp) -> String {
        let width = i64::try_from(self.epoch.as_millis())
            .unwrap_or(i64::MAX)
            .max(1);
        let index = expires_at.as_millis().div_euclid(width);
        let end = index.saturating_add(1).saturating_mul(width);
        epoch_id(class, Timestamp::from_millis(end))
    }

    /// How long recordings of `class` are kept (0 for an unknown class).
    pub fn period_of(&self, class: &str) -> Duration {
        self.classes.get(class).copied().unwrap_or_default()
    }
}

/// The recordings this process is writing now, so reconciliation can tell
/// a live recording from one whose writer is gone.
#[derive(Debug, Default)]
pub struct LiveWriters {
    /// Recording ids with a writer task.
    ids: Mutex<HashSet<String>>,
}

/// Removes its recording from [`LiveWriters`] when dropped.
#[derive(Debug)]
pub struct LiveGuard<'a> {
    writers: &'a LiveWriters,
    id: String,
}

impl LiveWriters {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.ids.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Marks `id` as being written until the guard is dropped.
    pub fn register(&self, id: String) -> LiveGuard<'_> {
        self.lock().insert(id.clone());
        LiveGuard { writers: self, id }
    }

    /// Whether a writer of this process writes `id` now.
    pub fn contains(&self, id: &str) -> bool {
        self.lock().contains(id)
    }

    /// How many recordings are being written now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no recording is being written.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for LiveGuard<'_> {
    fn drop(&mut self) {
        self.writers.lock().remove(&self.id);
    }
}

/// How recordings ended, for `/metrics`.
#[derive(Debug, Default)]
pub struct RecordingCounters {
    /// Recordings finished `complete`.
    pub complete: AtomicU64,
    /// Recordings ended `failed` because writing failed.
    pub failed_write_error: AtomicU64,
    /// Recordings ended `failed` because their codec cannot be stored.
    pub failed_unsupported_codec: AtomicU64,
    /// Recordings found without a writer and marked `truncated`.
    pub truncated: AtomicU64,
    /// Chunks dropped because a writer fell behind (its queue was full).
    pub tap_dropped: Arc<AtomicU64>,
    /// Recordings uploaded to the object store and verified there.
    pub uploaded: AtomicU64,
    /// Upload tries that failed (each is tried again, with backoff).
    pub upload_failures: AtomicU64,
}

impl RecordingCounters {
    pub(super) fn completed(&self) {
        self.complete.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn failed(&self, why: crate::store::RecordingFailure) {
        let counter = match why {
            crate::store::RecordingFailure::WriteError => &self.failed_write_error,
            crate::store::RecordingFailure::UnsupportedCodec => &self.failed_unsupported_codec,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// What a writer needs to know about the call it records.
#[derive(Debug, Clone)]
pub struct RecordingMeta {
    /// The call record's id.
    pub call_id: String,
    /// The session of the call.
    pub session_id: String,
    /// Retention class of the session.
    pub retention_class: String,
}

/// Where the recorder's row writes go instead of straight to the store:
/// the SIP engine's write-behind batches of call records, after the
/// records queued so far (a recording's row refers to its call's, which
/// may still be queued).
pub trait RowSink: Send + Sync {
    /// Queues `write`; resolves once its batch is stored, with what
    /// [`Store::write_rows`] said of it. `None` if the sink has stopped
    /// (before storing it): the write then goes straight to the store.
    fn queue(&self, write: RecordingWrite) -> RowFuture;
}

/// What [`RowSink::queue`] returns.
pub type RowFuture =
    std::pin::Pin<Box<dyn std::future::Future<Output = Option<Result<bool, StoreError>>> + Send>>;

/// Starts and finishes recordings. Shared by the SIP engine.
pub struct Recorder {
    /// Recording rows and wrapped DEKs.
    pub(super) store: Store,
    /// Epoch KEKs, apart from the database.
    pub(super) keys: Arc<dyn KeyStore>,
    /// Encrypted blobs.
    pub(super) blobs: Arc<dyn BlobStore>,
    /// Retention classes and epochs.
    pub(super) policy: RecordingPolicy,
    /// Wall-clock time for rows and epochs.
    pub(super) clock: SharedClock,
    /// Recordings being written now.
    writers: LiveWriters,
    /// How recordings ended.
    counters: Arc<RecordingCounters>,
    /// Appends and syncs every writer's chunks, many recordings a round.
    pub(super) commit: super::commit::GroupCommit,
    /// Where row writes go if not straight to the store ([`RowSink`]).
    rows: Mutex<Option<Arc<dyn RowSink>>>,
    /// The runtime the recorder was made on, where writers run: the SIP
    /// engine calls [`Recorder::begin`] from its own one-thread runtime,
    /// and the writers' sealing must not take that thread's time.
    runtime: Option<tokio::runtime::Handle>,
}

impl Recorder {
    /// A recorder over these stores.
    pub fn new(
        store: Store,
        keys: Arc<dyn KeyStore>,
        blobs: Arc<dyn BlobStore>,
        policy: RecordingPolicy,
        clock: SharedClock,
    ) -> Self {
        let commit = super::commit::GroupCommit::start(Arc::clone(&blobs));
        Recorder {
            store,
            keys,
            blobs,
            policy,
            clock,
            writers: LiveWriters::default(),
            counters: Arc::default(),
            commit,
            rows: Mutex::new(None),
            runtime: tokio::runtime::Handle::try_current().ok(),
        }
    }

    /// Sends the recordings' row writes to `sink` from now on.
    pub fn send_rows_to(&self, sink: Arc<dyn RowSink>) {
        *self.rows.lock().unwrap_or_else(|e| e.into_inner()) = Some(sink);
    }

    /// Stores `row` (state `recording`), through the [`RowSink`] if one
    /// is set and running, else straight.
    pub(super) async fn insert_row(&self, row: &RecordingRow) -> Result<(), StoreError> {
        match self
            .through_sink(RecordingWrite::Started(row.clone()))
            .await
        {
            Some(done) => done.map(drop),
            None => self.store.insert_recording(row).await,
        }
    }

    /// Ends recording `id` as `end` says ([`Store::finish_recording`]),
    /// through the [`RowSink`] if one is set and running, else straight.
    pub(super) async fn finish_row(
        &self,
        id: &str,
        end: &RecordingEnd,
    ) -> Result<bool, StoreError> {
        let write = RecordingWrite::Ended(id.to_owned(), end.clone());
        match self.through_sink(write).await {
            Some(done) => done,
            None => self.store.finish_recording(id, end).await,
        }
    }

    /// `write`'s outcome through the sink; `None` if there is none, or it
    /// stopped before answering (the write is then made straight).
    async fn through_sink(&self, write: RecordingWrite) -> Option<Result<bool, StoreError>> {
        let sink = self
            .rows
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()?;
        sink.queue(write).await
    }

    /// The same recorder counting into `counters` (shared with `/metrics`).
    pub fn with_counters(mut self, counters: Arc<RecordingCounters>) -> Self {
        self.counters = counters;
        self
    }

    /// The retention settings recordings start with.
    pub fn policy(&self) -> &RecordingPolicy {
        &self.policy
    }

    /// How recordings ended so far.
    pub fn counters(&self) -> &RecordingCounters {
        &self.counters
    }

    /// The recordings being written now.
    pub fn writers(&self) -> &LiveWriters {
        &self.writers
    }

    /// How long recordings of `class` are kept.
    pub(crate) fn period_of(&self, class: &str) -> Duration {
        self.policy.period_of(class)
    }

    /// Marks `truncated` every recording left in state `recording` that no
    /// writer of this process is writing: one of a process that died, or
    /// one whose writer could not finish it. A recording cannot have run
    /// longer than the longest call, so it is taken to have ended at
    /// `min(now, start + max_call)` and expires a retention period after
    /// that, inside the epoch its DEK was wrapped for. Returns them.
    pub async fn reconcile(
        &self,
    ) -> Result<Vec<crate::store::RecordingRow>, crate::store::StoreError> {
        let now = self.clock.now();
        let truncated = self
            .store
            .truncate_unfinished_recordings(
                |id| self.writers.contains(id),
                |row| {
                    let ended = now.min(row.started_at.saturating_add(self.policy.max_call));
                    (
                        ended,
                        ended.saturating_add(self.period_of(&row.retention_class)),
                    )
                },
            )
            .await?;
        self.counters
            .truncated
            .fetch_add(truncated.len() as u64, Ordering::Relaxed);
        Ok(truncated)
    }

    /// Starts recording a call: spawns its writer task and returns the tap
    /// to attach to the call's media
    /// ([`crate::media::MediaHandle::attach_tap`]); closing the tap ends
    /// the recording. Failures are logged by the writer and never disturb
    /// the call. The writer is a task on the runtime the recorder was
    /// made on (else on the caller's, which must then be inside one).
    pub fn begin(self: &Arc<Self>, meta: RecordingMeta) -> RecordingTap {
        let (tap, rx) = RecordingTap::channel(Arc::clone(&self.counters.tap_dropped));
        let this = self.clone();
        let writer = async move { super::writer::run(this, meta, rx).await };
        match &self.runtime {
            Some(runtime) => drop(runtime.spawn(writer)),
            None => drop(tokio::spawn(writer)),
        }
        tap
    }

    /// The pseudonym of `number` under the pseudonym key (which must exist:
    /// see [`Recorder::ensure_key`]).
    pub fn pseudonym(&self, number: &crate::phone::E164) -> Result<String, KeyError> {
        crate::keys::pseudonym(&*self.keys, number)
    }

    /// The pseudonym of `number`, if the pseudonym key exists (looking
    /// never creates it).
    pub fn existing_pseudonym(
        &self,
        number: &crate::phone::E164,
    ) -> Result<Option<String>, KeyError> {
        if !self.keys.exists(crate::keys::PSEUDONYM_KEY_ID)? {
            return Ok(None);
        }
        crate::keys::pseudonym(&*self.keys, number).map(Some)
    }

    /// The database of recording rows (shared with the rest of ansim).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Wall-clock time now.
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// Ids of every key in the key store.
    pub fn key_ids(&self) -> Result<Vec<String>, KeyError> {
        self.keys.list()
    }

    /// Whether the key `id` exists.
    pub fn key_exists(&self, id: &str) -> Result<bool, KeyError> {
        self.keys.exists(id)
    }

    /// Creates the key `id` (an error if it exists).
    pub fn create_key(&self, id: &str) -> Result<(), KeyError> {
        self.keys.create(id)
    }

    /// Destroys the key `id`: every DEK it wraps, in any copy of the
    /// database, becomes useless. `true` if it existed.
    pub fn destroy_key(&self, id: &str) -> Result<bool, KeyError> {
        self.keys.destroy(id)
    }

    /// `row`'s DEK, wrapped anew under the KEK `to` (which must exist);
    /// the DEK is in the clear only inside the key store.
    pub fn wrapped_under(
        &self,
        row: &crate::store::RecordingRow,
        to: &str,
    ) -> Result<crate::keys::WrappedDek, super::rewrap::RewrapError> {
        super::rewrap::wrapped_under(self, row, to)
    }

    /// Runs `f` on the blob store off the async workers: a store may be
    /// a disk that stalls or an object store across the network.
    async fn on_blobs<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn BlobStore) -> Result<T, super::blob::BlobError> + Send + 'static,
    ) -> Result<T, super::blob::BlobError> {
        let blobs = Arc::clone(&self.blobs);
        match tokio::task::spawn_blocking(move || f(&*blobs)).await {
            Ok(r) => r,
            Err(e) => Err(super::blob::BlobError::Blocking(e.to_string())),
        }
    }

    /// Overwrites and deletes the blob `name`; `true` if it existed.
    pub async fn delete_blob(&self, name: &str) -> Result<bool, super::blob::BlobError> {
        let name = name.to_owned();
        self.on_blobs(move |b| b.delete(&name)).await
    }

    /// Publishes the blobs a crash left in the spool (object storage):
    /// `ansim serve` calls it once, after reconciliation.
    pub async fn publish_leftovers(&self) -> Result<usize, super::blob::BlobError> {
        self.on_blobs(|b| b.publish_leftovers()).await
    }

    /// Names of every blob, sorted.
    pub async fn blob_names(&self) -> Result<Vec<String>, super::blob::BlobError> {
        self.on_blobs(|b| b.list()).await
    }

    /// The hex SHA-256 of the blob `name` (its ciphertext), or `None` if
    /// there is no such blob.
    pub async fn blob_sha256(&self, name: &str) -> Result<Option<String>, super::blob::BlobError> {
        use sha2::{Digest, Sha256};
        let name = name.to_owned();
        self.on_blobs(move |b| match b.read(&name) {
            Ok(bytes) => Ok(Some(hex::encode(Sha256::digest(&bytes)))),
            Err(super::blob::BlobError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        })
        .await
    }

    /// Makes sure the key `epoch_id` exists, creating it on first use.
    /// Two calls racing to create it both end up using the one that won.
    pub fn ensure_key(&self, epoch_id: &str) -> Result<(), KeyError> {
        if self.keys.exists(epoch_id)? {
            return Ok(());
        }
        match self.keys.create(epoch_id) {
            Ok(()) | Err(KeyError::KekExists { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::epoch_end;

    #[test]
    fn the_epoch_ends_after_the_latest_possible_expiry() {
        let day = Duration::from_secs(86_400);
        let mut classes = BTreeMap::new();
        classes.insert("dispute-3y".to_owned(), day * 1095);
        let p = RecordingPolicy {
            classes,
            epoch: day,
            max_call: Duration::from_secs(4 * 3600),
            personal_data: day * 180,
            quarantine: day * 30,
        };
        let start = Timestamp::from_millis(1_795_910_400_000);
        let (id, end) = p.epoch_for("dispute-3y", start).unwrap();
        let latest_expiry = start.saturating_add(day * 1095 + Duration::from_secs(4 * 3600));
        assert!(end > latest_expiry, "{id}");
        assert!(end.as_millis() - latest_expiry.as_millis() <= 86_400_000);
        assert!(id.starts_with("ep-dispute-3y-"));
        assert_eq!(epoch_end(&id), Some(("dispute-3y".to_owned(), end)));
        let odd = Timestamp::from_millis(1_500);
        assert_eq!(
            epoch_end(&epoch_id("ad-6m", odd)).unwrap().1,
            Timestamp::from_millis(2_000)
        );
        assert_eq!(epoch_end("hold-1234"), None);
        assert_eq!(
            epoch_end(&format!("{id}-g3")),
            Some(("dispute-3y".to_owned(), end))
        );
        assert_eq!(epoch_end("ep-x-notanumber"), None);
        assert_eq!(
            p.epoch_for("dispute-3y", start.saturating_add(Duration::from_secs(60)))
                .unwrap()
                .0,
            id
        );
        assert!(p.epoch_for("nope", start).is_none());
        let before = start.as_millis() - p.pseudonymise_before(start).as_millis();
        assert_eq!(before, 180 * 86_400_000);
        let long_quarantine = RecordingPolicy {
            quarantine: day * 400,
            ..p
        };
        let before = start.as_millis() - long_quarantine.pseudonymise_before(start).as_millis();
        assert_eq!(before, 400 * 86_400_000);
    }
}
