//! Group commit: one thread appends and syncs the sealed chunks of every
//! recording being written, a round at a time, instead of one blocking
//! task and one `fdatasync` per chunk per call.
//!
//! A round takes every chunk that has arrived (at most [`ROUND_MAX`]),
//! appends each to its file, then makes them all durable at once with
//! [`BlobStore::sync_written`] (`syncfs(2)` for local files: one journal
//! commit and one device flush for the whole round), and only then answers
//! each writer. Measured (`benches/recording.rs`, section 5; see
//! `docs/benchmarks.md`), one `fdatasync` per file in one thread is 3-5
//! times slower than the concurrent `fdatasync`s of one blocking task per
//! chunk it replaces, whereas one `syncfs` a round comes within about 20 %
//! of them in a burst of one chunk per recording, with 190-560 chunks per
//! sync and one thread instead of hundreds blocked in the kernel.
//!
//! Nothing waits to fill a round: a chunk that arrives while a round runs
//! goes into the next one, so a chunk is durable one round after it
//! arrives, and the loss bound on a crash stays the tap's 2 s.
//!
//! Each chunk is answered with its own file's result. A file that fails to
//! append fails alone. When the round's sync fails (or the store cannot
//! sync all at once), every appended file is synced on its own
//! ([`BlobWriter::sync`]), which reports its own write-back error: only
//! the recordings whose files failed end `failed` (`write-error`); the
//! others go on.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;

use super::blob::{BlobError, BlobStore, BlobWriter};

/// Chunks per round at most; more wait for the next round.
pub const ROUND_MAX: usize = 4096;

/// One chunk to make durable, and where to say it is.
struct Job {
    /// The blob it goes to.
    target: Target,
    /// The sealed chunk (or a new blob's header).
    bytes: Vec<u8>,
    /// Gets the blob back once the chunk is durable, or the error.
    done: tokio::sync::oneshot::Sender<Result<Box<dyn BlobWriter>, BlobError>>,
}

/// The blob a job appends to.
enum Target {
    /// A recording's open blob, lent to the committer for the round.
    Open(Box<dyn BlobWriter>),
    /// A blob to create first, under this name: created in the round, so
    /// that its directory entry is made durable by the round's one sync
    /// with everything else, not by a directory fsync of its own.
    New(String),
}

/// What the committer has done, for benchmarks and tests.
#[derive(Debug, Default)]
pub struct CommitStats {
    /// Rounds run.
    pub rounds: AtomicU64,
    /// Chunks appended and synced (or failed) in them.
    pub chunks: AtomicU64,
    /// Sync system calls made (`syncfs`, or `fdatasync` per file).
    pub syncs: AtomicU64,
}

/// The group committer's handle: cheap to clone, shared by every writer.
/// Its thread ends when the last handle is dropped and the queue is empty.
#[derive(Clone)]
pub struct GroupCommit {
    /// The committer thread's queue.
    tx: mpsc::Sender<Job>,
    /// Rounds and chunks so far.
    stats: Arc<CommitStats>,
}

impl GroupCommit {
    /// Starts the committer thread. If it cannot be started (the process
    /// is out of threads), that is logged and every chunk fails, so every
    /// recording ends `failed` (`write-error`) while the calls go on.
    pub fn start(store: Arc<dyn BlobStore>) -> GroupCommit {
        let (tx, rx) = mpsc::channel();
        let stats = Arc::new(CommitStats::default());
        let counted = Arc::clone(&stats);
        let spawned = std::thread::Builder::new()
            .name("ansim-rec-sync".into())
            .spawn(move || run(&*store, &rx, &counted));
        if let Err(e) = spawned {
            // The queue's receiver went with the closure: sends fail.
            tracing::error!(error = %e, "recording committer could not start: recordings will fail");
        }
        GroupCommit { tx, stats }
    }

    /// Appends `bytes` to `blob` and syncs it in the next round; the blob
    /// comes back with the outcome (an error also when the committer is
    /// gone, which only happens at shutdown).
    pub async fn append_sync(
        &self,
        blob: Box<dyn BlobWriter>,
        bytes: Vec<u8>,
    ) -> Result<Box<dyn BlobWriter>, BlobError> {
        self.submit(Target::Open(blob), bytes).await
    }

    /// Creates the blob `name` with `header` as its first bytes, durable
    /// (entry and content) in the next round: no blocking task and no sync
    /// of its own. Fails as [`BlobStore::create`] does.
    pub async fn create(
        &self,
        name: String,
        header: Vec<u8>,
    ) -> Result<Box<dyn BlobWriter>, BlobError> {
        self.submit(Target::New(name), header).await
    }

    async fn submit(
        &self,
        target: Target,
        bytes: Vec<u8>,
    ) -> Result<Box<dyn BlobWriter>, BlobError> {
        let (done, wait) = tokio::sync::oneshot::channel();
        let job = Job {
            target,
            bytes,
            done,
        };
        if self.tx.send(job).is_err() {
            return Err(gone());
        }
        wait.await.unwrap_or_else(|_| Err(gone()))
    }

    /// Rounds and chunks so far.
    pub fn stats(&self) -> &CommitStats {
        &self.stats
    }
}

impl std::fmt::Debug for GroupCommit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCommit")
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

fn gone() -> BlobError {
    BlobError::Io {
        path: std::path::PathBuf::new(),
        source: std::io::Error::other("recording committer stopped"),
    }
}

/// The committer thread: a round for whatever has arrived, until every
/// handle is gone.
fn run(store: &dyn BlobStore, rx: &mpsc::Receiver<Job>, stats: &CommitStats) {
    while let Ok(first) = rx.recv() {
        let mut round = vec![first];
        while round.len() < ROUND_MAX {
            match rx.try_recv() {
                Ok(job) => round.push(job),
                Err(_) => break,
            }
        }
        stats.rounds.fetch_add(1, Ordering::Relaxed);
        stats
            .chunks
            .fetch_add(round.len() as u64, Ordering::Relaxed);
        let mut open = open_blobs(store, round);
        let jobs = open
            .iter_mut()
            .map(|(blob, bytes, _)| (&mut **blob, &bytes[..]));
        let (outcomes, syncs) = commit(store, jobs);
        stats.syncs.fetch_add(syncs, Ordering::Relaxed);
        for ((blob, _, done), outcome) in open.into_iter().zip(outcomes) {
            // A writer that went away (its call's task ended) drops the blob.
            let _ = done.send(outcome.map(|()| blob));
        }
    }
}

/// A round's jobs with their blobs open: the new ones created here. A
/// blob that cannot be created is answered at once and leaves the round.
type Ready = (
    Box<dyn BlobWriter>,
    Vec<u8>,
    tokio::sync::oneshot::Sender<Result<Box<dyn BlobWriter>, BlobError>>,
);

fn open_blobs(store: &dyn BlobStore, round: Vec<Job>) -> Vec<Ready> {
    let mut open = Vec::with_capacity(round.len());
    for job in round {
        let blob = match job.target {
            Target::Open(blob) => blob,
            Target::New(name) => match store.create(&name) {
                Ok(blob) => blob,
                Err(e) => {
                    let _ = job.done.send(Err(e));
                    continue;
                }
            },
        };
        open.push((blob, job.bytes, job.done));
    }
    open
}

/// One round: appends every chunk to its blob, then syncs the store at
/// once, or (when it cannot, or that fails) each appended blob; the
/// outcome per chunk, in order, and the sync calls made.
pub fn commit<'a>(
    store: &dyn BlobStore,
    jobs: impl Iterator<Item = (&'a mut (dyn BlobWriter + 'static), &'a [u8])>,
) -> (Vec<Result<(), BlobError>>, u64) {
    let mut jobs: Vec<_> = jobs
        .map(|(blob, bytes)| {
            let appended = blob.append(bytes);
            (blob, appended)
        })
        .collect();
    if !jobs.iter().any(|(_, appended)| appended.is_ok()) {
        return (jobs.into_iter().map(|(_, r)| r).collect(), 0);
    }
    match store.sync_written() {
        Ok(true) => return (jobs.into_iter().map(|(_, r)| r).collect(), 1),
        Ok(false) => {}
        Err(e) => {
            tracing::warn!(error = %e, "recording round's sync failed: syncing each file to find which")
        }
    }
    let mut syncs = 1;
    for (blob, outcome) in &mut jobs {
        if outcome.is_ok() {
            syncs += 1;
            *outcome = blob.sync();
        }
    }
    (jobs.into_iter().map(|(_, r)| r).collect(), syncs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recording::blob::{BlobStore, LocalBlobStore};

    /// A blob on a file opened read-only: every append really fails (EBADF).
    struct ReadOnly(std::fs::File);

    impl BlobWriter for ReadOnly {
        fn append(&mut self, bytes: &[u8]) -> Result<(), BlobError> {
            use std::io::Write;
            self.0.write_all(bytes).map_err(|source| BlobError::Io {
                path: "read-only".into(),
                source,
            })
        }

        fn sync(&mut self) -> Result<(), BlobError> {
            Ok(())
        }
    }

    #[test]
    fn a_failing_file_fails_alone_and_the_others_are_synced() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalBlobStore::new(&dir.path().join("blobs")).unwrap();
        let mut a = store.create("a").unwrap();
        let mut b = store.create("b").unwrap();
        std::fs::write(dir.path().join("ro"), b"").unwrap();
        let mut bad: Box<dyn BlobWriter> = Box::new(ReadOnly(
            std::fs::File::open(dir.path().join("ro")).unwrap(),
        ));
        let jobs: Vec<(&mut dyn BlobWriter, &[u8])> = vec![
            (&mut *a, b"chunk a"),
            (&mut *bad, b"chunk x"),
            (&mut *b, b"chunk b"),
        ];
        let (outcomes, syncs) = commit(&store, jobs.into_iter());
        assert_eq!(syncs, 1, "one syncfs for the round");
        assert!(outcomes[0].is_ok() && outcomes[2].is_ok(), "{outcomes:?}");
        assert!(matches!(outcomes[1], Err(BlobError::Io { .. })));
        assert_eq!(store.read("a").unwrap(), b"chunk a");
        assert_eq!(store.read("b").unwrap(), b"chunk b");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn blobs_are_created_in_rounds_and_a_clash_fails_alone() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(LocalBlobStore::new(&dir.path().join("blobs")).unwrap());
        drop(store.create("taken").unwrap());
        let commit = GroupCommit::start(store.clone());
        let mut starts = Vec::new();
        for i in 0..40 {
            let commit = commit.clone();
            starts.push(tokio::spawn(async move {
                let blob = commit.create(format!("n{i}"), vec![i; 8]).await?;
                commit.append_sync(blob, vec![0xEE; 4]).await.map(drop)
            }));
        }
        let clash = commit.create("taken".into(), b"header".to_vec()).await;
        assert!(matches!(clash, Err(BlobError::AlreadyExists(_))));
        for s in starts {
            s.await.unwrap().unwrap();
        }
        for i in 0..40u8 {
            let mut want = vec![i; 8];
            want.extend([0xEE; 4]);
            assert_eq!(store.read(&format!("n{i}")).unwrap(), want);
        }
        assert!(
            store.read("taken").unwrap().is_empty(),
            "the clash wrote nothing"
        );
        let stats = commit.stats();
        // At most one syncfs a round (none for a round holding only the
        // clash), and no sync of its own per created blob.
        let (syncs, rounds) = (
            stats.syncs.load(Ordering::Relaxed),
            stats.rounds.load(Ordering::Relaxed),
        );
        assert!(syncs <= rounds, "{syncs} syncs in {rounds} rounds");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn chunks_of_many_recordings_share_rounds() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(LocalBlobStore::new(&dir.path().join("blobs")).unwrap());
        let commit = GroupCommit::start(store.clone());
        let mut writers = Vec::new();
        for i in 0..50 {
            let (commit, store) = (commit.clone(), Arc::clone(&store));
            writers.push(tokio::spawn(async move {
                let mut blob = store.create(&format!("r{i}")).unwrap();
                for n in 0..4u8 {
                    blob = commit.append_sync(blob, vec![n; 100]).await.unwrap();
                }
            }));
        }
        for w in writers {
            w.await.unwrap();
        }
        for i in 0..50 {
            let bytes = store.read(&format!("r{i}")).unwrap();
            let want: Vec<u8> = (0..4u8).flat_map(|n| vec![n; 100]).collect();
            assert_eq!(bytes, want);
        }
        let (rounds, chunks) = (
            commit.stats().rounds.load(Ordering::Relaxed),
            commit.stats().chunks.load(Ordering::Relaxed),
        );
        assert_eq!(chunks, 200);
        assert_eq!(commit.stats().syncs.load(Ordering::Relaxed), rounds);
        // Fifty writers waiting on the disk together: far fewer rounds
        // than chunks (one round per chunk would be 200).
        assert!(rounds < 100, "{rounds} rounds for {chunks} chunks");
    }
}
