//! Call records, written behind the calls.
//!
//! Every shard queues its switch's [`CdrOp`]s on one bounded queue
//! ([`CdrQueue`]) and never waits for it: a full queue drops the write and
//! counts it. One writer task ([`run_writer`]) takes what has queued up,
//! lets the batch gather for [`CDR_LINGER`] after its first write, and
//! stores it in one transaction ([`Store::write_calls`], which folds a
//! call started in the batch into one row). So at any load the records are
//! at most `CDR_LINGER` plus one commit behind the calls, and the database
//! sees a few statements per batch rather than four per call.
//!
//! Something that needs a call's row to exist (a recording's row refers to
//! it) takes a [`CallRecordsWritten`] from the queue and waits on it: it
//! is ready once the writer has stored everything queued before it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use super::CdrOp;
use crate::metrics::Metrics;
use crate::store::{CallRecordsWritten, Store};

/// Call-record writes queued before new ones are dropped (and counted):
/// at 5 writes a call, about 10 s of 1,000 calls per second.
const CDR_QUEUE: usize = 50_000;
/// Call-record writes per transaction at most.
const CDR_MAX_BATCH: usize = 1_000;
/// How long a batch gathers after its first write: at 1,000 calls per
/// second about 20 calls' writes, most of a short call in one row. The
/// README promises records at most 100 ms behind the calls.
pub(super) const CDR_LINGER: Duration = Duration::from_millis(20);

/// The shards' end of the call-record queue; cheap to clone.
#[derive(Debug, Clone)]
pub(super) struct CdrQueue {
    /// The writes, in order.
    tx: mpsc::Sender<CdrOp>,
    /// Writes counted before they were queued (a failed queueing takes its
    /// count back): at any moment at least every write in the queue.
    queued: Arc<AtomicU64>,
    /// Writes the writer has stored (or given up on), in queue order.
    written: watch::Receiver<u64>,
    /// Where dropped writes are counted.
    metrics: Arc<Metrics>,
}

impl CdrQueue {
    /// A queue and the writer that empties it into `store`; the writer
    /// ends once every clone of the queue is gone and it has stored the
    /// rest.
    pub(super) fn start(
        store: Store,
        metrics: Arc<Metrics>,
    ) -> (CdrQueue, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(CDR_QUEUE);
        let (written_tx, written) = watch::channel(0);
        let writer = tokio::spawn(run_writer(store, rx, written_tx, metrics.clone()));
        let queue = CdrQueue {
            tx,
            queued: Arc::default(),
            written,
            metrics,
        };
        (queue, writer)
    }

    /// Queues `op`; if the database is so far behind that the queue is
    /// full, the call goes on and its record loses this step (counted,
    /// never waited for).
    pub(super) fn push(&self, op: CdrOp) {
        self.queued.fetch_add(1, Ordering::SeqCst);
        if self.tx.try_send(op).is_err() {
            self.queued.fetch_sub(1, Ordering::SeqCst);
            self.metrics.cdr_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Ready once everything queued so far has been stored.
    pub(super) fn written(&self) -> CallRecordsWritten {
        CallRecordsWritten::new(self.written.clone(), self.queued.load(Ordering::SeqCst))
    }
}

/// Stores the queued writes in batches until every sender is gone:
/// whatever queued up during [`CDR_LINGER`] after a batch's first write
/// goes in one transaction. A `kill -9` loses at most what was queued or
/// being committed then.
async fn run_writer(
    store: Store,
    mut ops: mpsc::Receiver<CdrOp>,
    written: watch::Sender<u64>,
    metrics: Arc<Metrics>,
) {
    let mut batch = Vec::with_capacity(CDR_MAX_BATCH);
    while ops.recv_many(&mut batch, CDR_MAX_BATCH).await > 0 {
        // One timer for the batch, not one wake-up per write.
        tokio::time::sleep(CDR_LINGER).await;
        while batch.len() < CDR_MAX_BATCH {
            match ops.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        write_batch(&store, &batch, &metrics).await;
        written.send_modify(|n| *n += batch.len() as u64);
        batch.clear();
    }
}

/// Writes one batch; if it fails, one write at a time, so one bad write
/// does not take the others with it.
async fn write_batch(store: &Store, batch: &[CdrOp], metrics: &Metrics) {
    if let Err(e) = store.write_calls(batch).await {
        tracing::warn!(error = %e, writes = batch.len(), "call record batch failed; writing one by one");
        for op in batch {
            if let Err(e) = store.write_calls(std::slice::from_ref(op)).await {
                tracing::warn!(error = %e, "call record write failed");
                metrics.cdr_failed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    metrics.cdr_batches.fetch_add(1, Ordering::Relaxed);
}
