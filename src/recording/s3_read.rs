//! Reading an uploaded recording by ranges: a [`ReadAt`] whose reads are
//! ranged `GET`s, so playback reads the CREC header, the chunks' clear
//! fields (the index scan) and the chunks a range needs, never the whole
//! object.
//!
//! Small reads (the header, the 24 bytes of clear fields a chunk) are
//! served from [`BLOCK`]-sized aligned blocks, kept (at most
//! [`CACHED_BLOCKS`]) for the reader's life; a larger read (a chunk) is one
//! `GET` of exactly its bytes.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use object_store::ObjectStoreExt;
use object_store::path::Path as ObjectPath;

use super::blob::BlobError;
use super::crec_source::ReadAt;
use super::s3::{Inner, run_on};

/// Size of the aligned blocks small reads are served from.
const BLOCK: u64 = 4096;
/// Blocks a reader keeps.
const CACHED_BLOCKS: usize = 256;

/// An object read at offsets.
pub(super) struct RemoteReader {
    /// The bucket and the counters of GETs.
    inner: Arc<Inner>,
    /// The store's runtime, where the requests run.
    handle: tokio::runtime::Handle,
    /// The object's key.
    key: ObjectPath,
    /// Its size (by `HEAD` when opened).
    size: u64,
    /// Blocks fetched for small reads, by block number.
    blocks: Mutex<HashMap<u64, Bytes>>,
}

impl RemoteReader {
    /// `HEAD`s the object `name` for its size.
    pub(super) fn open(
        inner: &Arc<Inner>,
        handle: tokio::runtime::Handle,
        name: &str,
    ) -> Result<RemoteReader, BlobError> {
        let key = inner.key(name);
        let remote = Arc::clone(&inner.remote);
        let head_key = key.clone();
        let missing = name.to_string();
        let size = run_on(handle.clone(), async move {
            match remote.head(&head_key).await {
                Ok(meta) => Ok(meta.size),
                Err(object_store::Error::NotFound { .. }) => Err(BlobError::NotFound(missing)),
                Err(e) => Err(BlobError::Remote(e.to_string())),
            }
        })?;
        Ok(RemoteReader {
            inner: Arc::clone(inner),
            handle,
            key,
            size,
            blocks: Mutex::default(),
        })
    }

    /// One ranged GET, counted.
    fn get(&self, from: u64, to: u64) -> std::io::Result<Bytes> {
        let remote = Arc::clone(&self.inner.remote);
        let key = self.key.clone();
        let got = run_on(self.handle.clone(), async move {
            remote
                .get_range(&key, from..to)
                .await
                .map_err(|e| BlobError::Remote(e.to_string()))
        })
        .map_err(std::io::Error::other)?;
        self.inner.gets.fetch_add(1, Ordering::Relaxed);
        self.inner
            .bytes_fetched
            .fetch_add(got.len() as u64, Ordering::Relaxed);
        if got.len() as u64 != to - from {
            return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof));
        }
        Ok(got)
    }

    /// The block `n` (cached).
    fn block(&self, n: u64) -> std::io::Result<Bytes> {
        if let Some(b) = self.lock().get(&n) {
            return Ok(b.clone());
        }
        let from = n.saturating_mul(BLOCK);
        let to = from.saturating_add(BLOCK).min(self.size);
        let b = self.get(from, to)?;
        let mut blocks = self.lock();
        if blocks.len() >= CACHED_BLOCKS {
            blocks.clear();
        }
        blocks.insert(n, b.clone());
        Ok(b)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Bytes>> {
        self.blocks.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl ReadAt for RemoteReader {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        let len = buf.len() as u64;
        let end = offset
            .checked_add(len)
            .filter(|e| *e <= self.size)
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::UnexpectedEof))?;
        if len == 0 {
            return Ok(());
        }
        if len > BLOCK {
            buf.copy_from_slice(&self.get(offset, end)?);
            return Ok(());
        }
        // At most two blocks hold a small read.
        let mut filled = 0usize;
        let mut at = offset;
        while at < end {
            let n = at / BLOCK;
            let block = self.block(n)?;
            let start = usize::try_from(at - n * BLOCK).unwrap_or(usize::MAX);
            let take = usize::try_from((end - at).min(BLOCK - (at - n * BLOCK))).unwrap_or(0);
            let part = start
                .checked_add(take)
                .and_then(|e| block.get(start..e))
                .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::UnexpectedEof))?;
            let dest = buf
                .get_mut(filled..filled + take)
                .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::UnexpectedEof))?;
            dest.copy_from_slice(part);
            filled += take;
            at += take as u64;
        }
        Ok(())
    }
}
