//! Call records (and recordings' rows), written behind the calls.
//!
//! Every shard queues its switch's [`CdrOp`]s on one bounded queue
//! ([`CdrQueue`]) and never waits for it: a full queue drops the write and
//! counts it. One writer task ([`run_writer`]) takes what has queued up,
//! lets the batch gather for [`CDR_LINGER`] after its first write, and
//! stores it in one transaction ([`Store::write_rows`], which folds a call
//! started in the batch into one row). So at any load the records are at
//! most `CDR_LINGER` plus one commit behind the calls, and the database
//! sees a few statements per batch rather than four per call.
//!
//! The recorder sends its rows' writes through the same queue
//! ([`RowSink`]): they are applied after the call records queued before
//! them (a recording's row refers to its call's, which may still be
//! queued), and their writers wait for the answer, given once the batch
//! is durable, so a blob still never exists without its row. They are
//! never dropped: a full queue makes the recording wait for room.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::CdrOp;
use crate::metrics::Metrics;
use crate::recording::{RowFuture, RowSink};
use crate::store::{RecordingWrite, Store, StoreError};

/// Writes queued before new call-record steps are dropped (and counted):
/// at 5 writes a call, about 10 s of 1,000 calls per second.
const CDR_QUEUE: usize = 50_000;
/// Writes per transaction at most.
const CDR_MAX_BATCH: usize = 1_000;
/// How long a batch gathers after its first write: at 1,000 calls per
/// second about 20 calls' writes, most of a short call in one row. The
/// README promises records at most 100 ms behind the calls.
const CDR_LINGER: Duration = Duration::from_millis(20);

/// One queued write.
enum Pending {
    /// A step of a call record.
    Call(CdrOp),
    /// A recording's row, and who waits for it to be stored.
    Recording(RecordingWrite, oneshot::Sender<Result<bool, StoreError>>),
}

/// The shards' end of the queue; cheap to clone. The writer ends once
/// every clone is gone and it has stored the rest.
#[derive(Debug, Clone)]
pub(super) struct CdrQueue {
    /// The writes, in order.
    tx: mpsc::Sender<Pending>,
    /// Where dropped writes are counted.
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Pending::Call(op) => op.fmt(f),
            Pending::Recording(w, _) => w.fmt(f),
        }
    }
}

impl CdrQueue {
    /// A queue and the writer that empties it into `store`, a task on
    /// `runtime`.
    pub(super) fn start(
        store: Store,
        metrics: Arc<Metrics>,
        runtime: &tokio::runtime::Handle,
    ) -> (CdrQueue, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(CDR_QUEUE);
        let writer = runtime.spawn(run_writer(store, rx, metrics.clone()));
        (CdrQueue { tx, metrics }, writer)
    }

    /// Queues `op`; if the database is so far behind that the queue is
    /// full, the call goes on and its record loses this step (counted,
    /// never waited for).
    pub(super) fn push(&self, op: CdrOp) {
        if self.tx.try_send(Pending::Call(op)).is_err() {
            self.metrics.cdr_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The recorder's way in; it does not keep the writer running.
    pub(super) fn row_sink(&self) -> Arc<dyn RowSink> {
        Arc::new(Rows(self.tx.downgrade()))
    }
}

/// [`RowSink`] over the queue, holding it weakly: once the engine has
/// stopped, recordings write their rows straight to the store.
struct Rows(mpsc::WeakSender<Pending>);

impl RowSink for Rows {
    fn queue(&self, write: RecordingWrite) -> RowFuture {
        let tx = self.0.upgrade();
        Box::pin(async move {
            let tx = tx?;
            let (done, answer) = oneshot::channel();
            // Waits for room rather than dropping a recording's row: the
            // recording's own writer task waits, never a call.
            tx.send(Pending::Recording(write, done)).await.ok()?;
            drop(tx); // waiting for the answer must not keep the writer alive
            answer.await.ok()
        })
    }
}

/// Stores the queued writes in batches until every sender is gone:
/// whatever queued up during [`CDR_LINGER`] after a batch's first write
/// goes in one transaction. A `kill -9` loses at most what was queued or
/// being committed then.
async fn run_writer(store: Store, mut queue: mpsc::Receiver<Pending>, metrics: Arc<Metrics>) {
    let mut batch = Vec::with_capacity(CDR_MAX_BATCH);
    while gather(&mut queue, &mut batch).await > 0 {
        write_batch(&store, std::mem::take(&mut batch), &metrics).await;
        metrics.cdr_batches.fetch_add(1, Ordering::Relaxed);
    }
}

/// Takes the next batch into `batch`: what has queued up, and, unless that
/// is already a full batch, what queues during [`CDR_LINGER`] after it (one
/// timer for the batch, not one wake-up per write). A full batch goes at
/// once: lingering then would only cap the writer at one batch per
/// `CDR_LINGER` while the queue fills behind it (at 4,000 recorded calls a
/// second it filled and dropped records). Returns the batch's length, 0
/// once every sender is gone and the queue is empty.
async fn gather<T>(queue: &mut mpsc::Receiver<T>, batch: &mut Vec<T>) -> usize {
    if queue.recv_many(batch, CDR_MAX_BATCH).await == 0 {
        return 0;
    }
    if batch.len() < CDR_MAX_BATCH {
        tokio::time::sleep(CDR_LINGER).await;
        while batch.len() < CDR_MAX_BATCH {
            match queue.try_recv() {
                Ok(p) => batch.push(p),
                Err(_) => break,
            }
        }
    }
    batch.len()
}

/// Writes one batch and answers the recordings in it; if the batch
/// fails, one write at a time, so one bad write does not take the others
/// with it.
async fn write_batch(store: &Store, batch: Vec<Pending>, metrics: &Metrics) {
    let mut calls = Vec::with_capacity(batch.len());
    let mut recordings = Vec::new();
    for p in batch {
        match p {
            Pending::Call(op) => calls.push(op),
            Pending::Recording(w, done) => recordings.push((w, done)),
        }
    }
    let writes: Vec<&RecordingWrite> = recordings.iter().map(|(w, _)| w).collect();
    match store.write_rows(&calls, &writes).await {
        Ok(done) => {
            for ((_, answer), done) in recordings.into_iter().zip(done) {
                let _ = answer.send(Ok(done));
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, writes = calls.len() + recordings.len(), "call record batch failed; writing one by one");
            for op in &calls {
                if let Err(e) = store.write_calls(std::slice::from_ref(op)).await {
                    tracing::warn!(error = %e, "call record write failed");
                    metrics.cdr_failed.fetch_add(1, Ordering::Relaxed);
                }
            }
            for (w, answer) in recordings {
                let done = store.write_rows(&[], &[&w]).await;
                let _ = answer.send(done.map(|d| d.first().copied().unwrap_or(false)));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Timestamp;
    use crate::store::{CallWrite, NewCall, RecordingEnd, RecordingRow, RecordingState};

    fn call(id: &str) -> CdrOp {
        CallWrite::Insert(NewCall {
            id: id.into(),
            session_id: None,
            direction: "unrouted",
            caller: None,
            dialled: "+82505000001".parse().unwrap(),
            invite_at: Timestamp::from_millis(1),
            reason: None,
        })
    }

    fn recording(call_id: &str) -> RecordingRow {
        RecordingRow {
            id: format!("rec-{call_id}"),
            call_id: call_id.into(),
            session_id: "ses_x".into(),
            retention_class: "default".into(),
            epoch_id: "epoch".into(),
            wrapped_dek: vec![1, 2, 3],
            blob: "b.crec".into(),
            codec: None,
            state: RecordingState::Recording,
            failure: None,
            started_at: Timestamp::from_millis(2),
            ended_at: None,
            duration_ms: None,
            expires_at: None,
            held_by: None,
        }
    }

    /// A batch that is not full gathers for `CDR_LINGER`; a full one, or
    /// a backlog, goes at once, batch after batch.
    #[tokio::test(start_paused = true)]
    async fn only_a_batch_with_room_lingers() {
        let (tx, mut rx) = mpsc::channel(CDR_QUEUE);
        let mut batch = Vec::new();
        tx.send(1).await.unwrap();
        let start = tokio::time::Instant::now();
        assert_eq!(gather(&mut rx, &mut batch).await, 1);
        assert_eq!(start.elapsed(), CDR_LINGER);

        batch.clear();
        for i in 0..CDR_MAX_BATCH * 2 + 1 {
            tx.send(i).await.unwrap();
        }
        let start = tokio::time::Instant::now();
        for _ in 0..2 {
            assert_eq!(gather(&mut rx, &mut batch).await, CDR_MAX_BATCH);
            batch.clear();
        }
        assert_eq!(start.elapsed(), Duration::ZERO, "full batches do not wait");
        drop(tx);
        assert_eq!(gather(&mut rx, &mut batch).await, 1);
        batch.clear();
        assert_eq!(
            gather(&mut rx, &mut batch).await,
            0,
            "ends once the senders are gone"
        );
    }

    /// A recording's row queued right after its call's start (still
    /// queued, not stored) is stored after it, in order, and its writer
    /// hears so only once it is; after the engine stops, the sink says so
    /// and the recorder writes straight to the store.
    #[tokio::test]
    async fn a_recording_row_follows_its_call_record_and_is_answered_once_stored() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::connect(&format!("sqlite://{}/cdr.db", dir.path().display()))
            .await
            .unwrap();
        store.migrate().await.unwrap();
        let (queue, writer) = CdrQueue::start(
            store.clone(),
            Arc::default(),
            &tokio::runtime::Handle::current(),
        );
        let sink = queue.row_sink();
        queue.push(call("cal_1"));
        let started = sink.queue(RecordingWrite::Started(recording("cal_1")));
        assert!(started.await.unwrap().unwrap());
        let row = store.find_recording("rec-cal_1").await.unwrap().unwrap();
        assert_eq!(row.call_id, "cal_1");
        let end = RecordingEnd {
            state: RecordingState::Complete,
            failure: None,
            ended_at: Timestamp::from_millis(3),
            duration_ms: Some(0),
            expires_at: Timestamp::from_millis(4),
        };
        let ended = sink.queue(RecordingWrite::Ended("rec-cal_1".into(), end.clone()));
        assert!(ended.await.unwrap().unwrap());
        // Ended twice: the second finds it no longer recording.
        let again = sink.queue(RecordingWrite::Ended("rec-cal_1".into(), end));
        assert!(!again.await.unwrap().unwrap());
        // A row whose call never was: the batch fails, the one-by-one
        // retry gives this writer its own error and the calls theirs.
        queue.push(call("cal_2"));
        let orphan = sink.queue(RecordingWrite::Started(recording("cal_none")));
        assert!(orphan.await.unwrap().is_err());
        assert!(store.get_call("cal_2").await.unwrap().is_some());
        drop(queue);
        writer.await.unwrap();
        let after = sink.queue(RecordingWrite::Started(recording("cal_1")));
        assert!(
            after.await.is_none(),
            "the sink must not outlive the writer"
        );
    }
}
