//! Section 5 of the recording benchmark: syncing many recordings' chunks.
//!
//! Every recording hands its writer a chunk every 2 s; with N concurrent
//! recordings that is N/2 chunks a second, and in the worst case (calls
//! answered together) all N arrive in the same instant. One *round* here
//! is that worst case: one sealed-size chunk (32,040 B) for each of N
//! files, and the time until every one is durable. Strategies:
//!
//! - `per-chunk`: what the writer did before, one `spawn_blocking` task per
//!   chunk doing append + `fdatasync` (tokio's blocking pool, up to 512
//!   threads), each chunk its own sync;
//! - `group, syncfs`: the writer now ([`GroupCommit`]): one thread appends
//!   every chunk that has arrived, then one `syncfs` for the round;
//! - `group, fdatasync each`: one thread appends all, then `fdatasync`s
//!   each file in turn (the alternative measured and not taken).
//!
//! Printed: ms per round (median, min-max of the rounds), chunks per
//! second that rate sustains, sync calls per second, chunks per sync call
//! and, for the committer, chunks per round as it formed them.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use ansim::recording::blob::{BlobStore, BlobWriter, LocalBlobStore};
use ansim::recording::commit::GroupCommit;

use super::{Bench, fmt, num, stats};

/// Bytes of one sealed 2 s chunk (32,000 B of audio + 40 B of framing).
const CHUNK: usize = 32_040;

#[derive(Clone, Copy, PartialEq)]
enum Strategy {
    PerChunk,
    Group,
    FdatasyncEach,
}

impl Strategy {
    fn name(self) -> &'static str {
        match self {
            Strategy::PerChunk => "per-chunk (before)",
            Strategy::Group => "group, syncfs (now)",
            Strategy::FdatasyncEach => "group, fdatasync each",
        }
    }
}

pub(super) fn section(b: &Bench<'_>) {
    b.section("5. many recordings: one chunk each, until all are durable (noisy: shared disk)");
    let (sizes, rounds): (&[usize], usize) = if b.full {
        (&[500, 2000], 5)
    } else {
        (&[20], 1)
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    for &n in sizes {
        for strategy in [Strategy::PerChunk, Strategy::Group, Strategy::FdatasyncEach] {
            let name = format!("sync/{n} recordings, {}", strategy.name());
            if !b.wanted(&name) {
                continue;
            }
            let dir = b.dir.join(format!("group-{n}"));
            let result = runtime.block_on(measure(&dir, n, rounds, strategy));
            let _ = std::fs::remove_dir_all(&dir);
            print(&name, n, &result);
        }
    }
}

/// What the rounds took.
struct Outcome {
    /// Wall time of each round.
    times: Vec<Duration>,
    /// Sync system calls over all rounds.
    syncs: u64,
    /// Committer rounds (group only), over all rounds.
    commit_rounds: Option<u64>,
}

fn print(name: &str, n: usize, r: &Outcome) {
    let ms = stats(r.times.iter().map(|t| t.as_secs_f64() * 1e3).collect());
    let total: f64 = r.times.iter().map(Duration::as_secs_f64).sum();
    let chunks = (n * r.times.len()) as f64;
    let mut line = format!(
        "{name:<44} ms/round: {:<22} => {} chunks/s, {} syncs/s, {} chunks/sync",
        fmt(&ms),
        num(chunks / total),
        num(r.syncs as f64 / total),
        num(chunks / r.syncs as f64),
    );
    if let Some(rounds) = r.commit_rounds {
        line += &format!(", {} chunks/committer round", num(chunks / rounds as f64));
    }
    println!("{line}");
}

async fn measure(dir: &Path, n: usize, rounds: usize, strategy: Strategy) -> Outcome {
    let store = Arc::new(LocalBlobStore::new(dir).expect("blob dir"));
    let mut blobs: Vec<Box<dyn BlobWriter>> = (0..n)
        .map(|i| store.create(&format!("r{i}.crec")).expect("create"))
        .collect();
    let chunk = vec![0x5a; CHUNK];
    let group = GroupCommit::start(store.clone());
    let mut out = Outcome {
        times: Vec::with_capacity(rounds),
        syncs: 0,
        commit_rounds: (strategy == Strategy::Group).then_some(0),
    };
    for _ in 0..rounds {
        let t0 = Instant::now();
        blobs = match strategy {
            Strategy::PerChunk => per_chunk(blobs, &chunk).await,
            Strategy::Group => grouped(&group, blobs, &chunk).await,
            Strategy::FdatasyncEach => {
                let chunk = chunk.clone();
                tokio::task::spawn_blocking(move || fdatasync_each(blobs, &chunk))
                    .await
                    .expect("join")
            }
        };
        out.times.push(t0.elapsed());
        if strategy != Strategy::Group {
            out.syncs += n as u64;
        }
    }
    if let Some(r) = &mut out.commit_rounds {
        *r = group.stats().rounds.load(Ordering::Relaxed);
        out.syncs = group.stats().syncs.load(Ordering::Relaxed);
    }
    out
}

/// Before: a blocking task per chunk, each appending and syncing its file.
async fn per_chunk(blobs: Vec<Box<dyn BlobWriter>>, chunk: &[u8]) -> Vec<Box<dyn BlobWriter>> {
    let chunk: Arc<[u8]> = chunk.into();
    let tasks: Vec<_> = blobs
        .into_iter()
        .map(|mut blob| {
            let chunk = Arc::clone(&chunk);
            tokio::task::spawn_blocking(move || {
                blob.append(&chunk).expect("append");
                blob.sync().expect("sync");
                blob
            })
        })
        .collect();
    let mut back = Vec::with_capacity(tasks.len());
    for t in tasks {
        back.push(t.await.expect("join"));
    }
    back
}

/// Now: every writer hands its chunk to the group committer.
async fn grouped(
    group: &GroupCommit,
    blobs: Vec<Box<dyn BlobWriter>>,
    chunk: &[u8],
) -> Vec<Box<dyn BlobWriter>> {
    let tasks: Vec<_> = blobs
        .into_iter()
        .map(|blob| {
            let (group, chunk) = (group.clone(), chunk.to_vec());
            tokio::spawn(async move { group.append_sync(blob, chunk).await.expect("commit") })
        })
        .collect();
    let mut back = Vec::with_capacity(tasks.len());
    for t in tasks {
        back.push(t.await.expect("join"));
    }
    back
}

/// One thread: append all, then `fdatasync` each in turn.
fn fdatasync_each(mut blobs: Vec<Box<dyn BlobWriter>>, chunk: &[u8]) -> Vec<Box<dyn BlobWriter>> {
    for blob in &mut blobs {
        blob.append(chunk).expect("append");
    }
    for blob in &mut blobs {
        blob.sync().expect("sync");
    }
    blobs
}
