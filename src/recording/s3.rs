//! Recordings in S3-compatible object storage (AWS S3, Garage, MinIO),
//! through `object_store`.
//!
//! Objects cannot be appended to, so a recording is written exactly as
//! with local files, into a **spool** directory (a [`LocalBlobStore`]: the
//! group commit syncs it, a crash loses at most 2 s), and uploaded when it
//! is finished ([`BlobStore::publish`]): one `PUT` up to [`SINGLE_PUT_MAX`],
//! a multipart upload above. The upload is verified (the object's size by
//! `HEAD`, and its last bytes by a ranged `GET` against the spool file)
//! before the spool file is unlinked. A failed upload leaves the spool file
//! (reads are served from it meanwhile) and is tried again by a background
//! task with a bounded backoff ([`RETRY_MIN`] doubling to [`RETRY_MAX`]),
//! counted in `ansim_recordings_upload_failures_total`. Files a crash left
//! in the spool are uploaded at start-up ([`BlobStore::publish_leftovers`]),
//! after reconciliation has marked their rows `truncated`.
//!
//! Reads ([`BlobStore::open`]) do ranged `GET`s ([`super::s3_read`]).
//! Credentials and the region come from the AWS chain of
//! [`super::s3_profile`] (environment, then the profile files, then
//! `object_store`'s fallbacks).
//!
//! The trait is synchronous and called from blocking threads; the store
//! runs its requests on a small runtime of its own and waits for them, so
//! it never calls `block_on` inside a caller's runtime.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::StreamExt;
use object_store::StaticCredentialProvider;
use object_store::aws::{AmazonS3Builder, AwsCredential};
use object_store::path::Path as ObjectPath;
use object_store::{ClientOptions, ObjectStore, ObjectStoreExt, RetryConfig, WriteMultipart};
use tokio::io::AsyncReadExt;

use super::blob::{BlobError, BlobStore, BlobWriter, LocalBlobStore, validate_blob_name};
use super::crec_source::ReadAt;
use super::s3_profile::{DEFAULT_REGION, Env, read_file, resolve};
use super::service::RecordingCounters;
use crate::config::S3Config;

/// Largest file uploaded with one `PUT`; larger ones go in parts.
pub const SINGLE_PUT_MAX: u64 = 16 << 20;
/// Size of a multipart upload's parts (S3 needs at least 5 MiB).
const PART_SIZE: usize = 8 << 20;
/// Parts in flight at once during a multipart upload.
const PART_CONCURRENCY: usize = 2;
/// Bytes at the end of an uploaded object compared with the spool file.
const VERIFY_TAIL: u64 = 4096;
/// First wait before an upload is tried again.
pub const RETRY_MIN: Duration = Duration::from_secs(1);
/// Longest wait between two tries of one upload.
pub const RETRY_MAX: Duration = Duration::from_secs(60);

/// Where the bucket is: `[store] recordings = "s3://bucket/prefix"` and
/// `[store.s3]`.
#[derive(Debug, Clone)]
pub struct S3Location {
    /// The bucket.
    pub bucket: String,
    /// Key prefix inside it (no trailing `/`), may be empty.
    pub prefix: String,
    /// Endpoint, region, path style and spool.
    pub settings: S3Config,
}

/// What the store's requests and the uploader share.
pub(super) struct Inner {
    /// The bucket.
    pub(super) remote: Arc<dyn ObjectStore>,
    /// Key prefix with its trailing `/` (or empty).
    prefix: String,
    /// Recordings being written, and those waiting for upload.
    spool: LocalBlobStore,
    /// Uploads and failures, for `/metrics`.
    counters: Arc<RecordingCounters>,
    /// Uploads waiting for a retry: name → (tries so far, when next).
    retry: std::sync::Mutex<BTreeMap<String, (u32, tokio::time::Instant)>>,
    /// Wakes the retry task when something is queued.
    wake: tokio::sync::Notify,
    /// Held by an upload and by a delete, so a delete never races an
    /// upload into leaving an object behind.
    busy: tokio::sync::Mutex<()>,
    /// GET requests made by readers, and the bytes they fetched (tests
    /// and the read-by-ranges claim).
    pub(super) gets: std::sync::atomic::AtomicU64,
    /// Bytes fetched by readers' GETs.
    pub(super) bytes_fetched: std::sync::atomic::AtomicU64,
}

impl Inner {
    /// The object key of the blob `name`.
    pub(super) fn key(&self, name: &str) -> ObjectPath {
        ObjectPath::from(format!("{}{name}", self.prefix))
    }
}

/// Recordings in a bucket, written through a local spool.
pub struct S3BlobStore {
    /// Shared with the uploader task and the readers.
    inner: Arc<Inner>,
    /// The runtime requests run on; shut down in the background on drop
    /// (a runtime may not be dropped inside another one).
    runtime: Option<tokio::runtime::Runtime>,
}

fn remote_err(e: object_store::Error) -> BlobError {
    BlobError::Remote(e.to_string())
}

impl S3BlobStore {
    /// Opens the spool and a client for the bucket. Credentials and the
    /// region come from the AWS chain ([`super::s3_profile`]): the `AWS_*`
    /// environment variables, the profile files, then `object_store`'s
    /// fallbacks (web identity, ECS, instance metadata); the config file
    /// never holds them. Nothing is contacted yet.
    pub fn open(
        loc: &S3Location,
        counters: Arc<RecordingCounters>,
    ) -> Result<S3BlobStore, BlobError> {
        let env = |name: &str| std::env::var(name).ok();
        S3BlobStore::open_chain(loc, counters, AmazonS3Builder::from_env(), &env)
    }

    /// As [`S3BlobStore::open`], with `env` in place of the process
    /// environment, which is not read at all (so `object_store`'s fallbacks
    /// driven by variables are off; instance metadata stays). For tests
    /// and embedding programs that must not depend on the process's
    /// variables.
    pub fn open_with_env(
        loc: &S3Location,
        counters: Arc<RecordingCounters>,
        env: Env,
    ) -> Result<S3BlobStore, BlobError> {
        S3BlobStore::open_chain(loc, counters, AmazonS3Builder::new(), env)
    }

    /// Walks the chain with `env`, then opens with `base` and what it found.
    fn open_chain(
        loc: &S3Location,
        counters: Arc<RecordingCounters>,
        base: AmazonS3Builder,
        env: Env,
    ) -> Result<S3BlobStore, BlobError> {
        let found = resolve(env, loc.settings.region.as_deref(), &read_file)
            .map_err(|e| BlobError::Remote(format!("S3 credentials: {e}")))?;
        let builder = match found.credentials {
            Some(keys) => {
                tracing::info!(source = %keys.source, region = %found.region, "S3 credentials: static keys");
                base.with_credentials(Arc::new(StaticCredentialProvider::new(AwsCredential {
                    key_id: keys.key_id.clone(),
                    secret_key: keys.secret.expose().to_string(),
                    token: keys.token.as_ref().map(|t| t.expose().to_string()),
                })))
            }
            None => {
                tracing::info!(region = %found.region, "S3 credentials: none in the environment or the profile files; object_store's fallbacks (web identity, ECS, instance metadata)");
                base
            }
        };
        S3BlobStore::open_with(loc, counters, builder, &found.region)
    }

    /// As [`S3BlobStore::open`], with these credentials instead of the
    /// chain's (an embedding program, or tests that run several servers
    /// in one process). Neither is ever logged.
    pub fn open_with_key(
        loc: &S3Location,
        counters: Arc<RecordingCounters>,
        key_id: &str,
        secret: &str,
    ) -> Result<S3BlobStore, BlobError> {
        let b = AmazonS3Builder::new()
            .with_access_key_id(key_id)
            .with_secret_access_key(secret);
        let region = loc.settings.region.as_deref().unwrap_or(DEFAULT_REGION);
        S3BlobStore::open_with(loc, counters, b, region)
    }

    fn open_with(
        loc: &S3Location,
        counters: Arc<RecordingCounters>,
        builder: AmazonS3Builder,
        region: &str,
    ) -> Result<S3BlobStore, BlobError> {
        // reqwest is built without a provider of its own: ring is the
        // process's one rustls provider (an error means one is installed).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let spool = LocalBlobStore::new(&loc.settings.spool)?;
        let mut b = builder
            .with_bucket_name(&loc.bucket)
            .with_region(region)
            .with_virtual_hosted_style_request(!loc.settings.path_style)
            .with_retry(RetryConfig {
                max_retries: 2,
                retry_timeout: Duration::from_secs(10),
                ..RetryConfig::default()
            })
            .with_client_options(
                ClientOptions::new()
                    .with_connect_timeout(Duration::from_secs(3))
                    .with_timeout(Duration::from_secs(60)),
            );
        if let Some(endpoint) = &loc.settings.endpoint {
            b = b
                .with_endpoint(endpoint)
                .with_allow_http(endpoint.starts_with("http://"));
        }
        let remote = b.build().map_err(remote_err)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("ansim-s3")
            .enable_all()
            .build()
            .map_err(|e| BlobError::Remote(format!("starting the S3 runtime: {e}")))?;
        let prefix = match loc.prefix.as_str() {
            "" => String::new(),
            p => format!("{p}/"),
        };
        let inner = Arc::new(Inner {
            remote: Arc::new(remote),
            prefix,
            spool,
            counters,
            retry: std::sync::Mutex::default(),
            wake: tokio::sync::Notify::new(),
            busy: tokio::sync::Mutex::new(()),
            gets: Default::default(),
            bytes_fetched: Default::default(),
        });
        runtime.spawn(retry_task(Arc::downgrade(&inner)));
        Ok(S3BlobStore {
            inner,
            runtime: Some(runtime),
        })
    }

    /// Runs `fut` on the store's runtime and waits for it.
    fn run<T: Send + 'static>(
        &self,
        fut: impl Future<Output = Result<T, BlobError>> + Send + 'static,
    ) -> Result<T, BlobError> {
        run_on(self.handle()?, fut)
    }

    fn handle(&self) -> Result<tokio::runtime::Handle, BlobError> {
        self.runtime
            .as_ref()
            .map(|r| r.handle().clone())
            .ok_or_else(|| BlobError::Remote("the store is closed".into()))
    }

    /// Readers' GET requests and bytes fetched so far.
    pub fn read_stats(&self) -> (u64, u64) {
        (
            self.inner.gets.load(Ordering::Relaxed),
            self.inner.bytes_fetched.load(Ordering::Relaxed),
        )
    }

    /// Uploads waiting for a retry.
    pub fn pending_uploads(&self) -> usize {
        lock(&self.inner.retry).len()
    }
}

impl Drop for S3BlobStore {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Runs `fut` on `handle`'s runtime and waits on this thread (which must
/// not be one of that runtime's).
pub(super) fn run_on<T: Send + 'static>(
    handle: tokio::runtime::Handle,
    fut: impl Future<Output = Result<T, BlobError>> + Send + 'static,
) -> Result<T, BlobError> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    handle.spawn(async move {
        let _ = tx.send(fut.await);
    });
    rx.recv()
        .map_err(|_| BlobError::Remote("the S3 runtime stopped".into()))?
}

impl BlobStore for S3BlobStore {
    fn create(&self, name: &str) -> Result<Box<dyn BlobWriter>, BlobError> {
        self.inner.spool.create(name)
    }

    fn read(&self, name: &str) -> Result<Vec<u8>, BlobError> {
        match self.inner.spool.read(name) {
            Err(BlobError::NotFound(_)) => {}
            other => return other,
        }
        let inner = Arc::clone(&self.inner);
        let name = name.to_string();
        self.run(async move {
            let got = inner.remote.get(&inner.key(&name)).await;
            match got {
                Ok(r) => Ok(r.bytes().await.map_err(remote_err)?.to_vec()),
                Err(object_store::Error::NotFound { .. }) => Err(BlobError::NotFound(name)),
                Err(e) => Err(remote_err(e)),
            }
        })
    }

    fn open(&self, name: &str) -> Result<Box<dyn ReadAt>, BlobError> {
        validate_blob_name(name)?;
        match self.inner.spool.open(name) {
            Err(BlobError::NotFound(_)) => {}
            other => return other,
        }
        let reader = super::s3_read::RemoteReader::open(&self.inner, self.handle()?, name)?;
        Ok(Box::new(reader))
    }

    /// Deletes the spool file (overwritten first) and the object. A bucket
    /// that keeps versions keeps the old ones: `object_store` cannot list
    /// versions (see the README); crypto-erasure covers them.
    fn delete(&self, name: &str) -> Result<bool, BlobError> {
        validate_blob_name(name)?;
        let inner = Arc::clone(&self.inner);
        let name = name.to_string();
        self.run(async move {
            let _busy = inner.busy.lock().await;
            lock(&inner.retry).remove(&name);
            let local = inner.spool.delete(&name)?;
            let key = inner.key(&name);
            let remote = match inner.remote.head(&key).await {
                Ok(_) => true,
                Err(object_store::Error::NotFound { .. }) => false,
                Err(e) => return Err(remote_err(e)),
            };
            if remote {
                inner.remote.delete(&key).await.map_err(remote_err)?;
            }
            Ok(local || remote)
        })
    }

    fn list(&self) -> Result<Vec<String>, BlobError> {
        let mut names = self.inner.spool.list()?;
        let inner = Arc::clone(&self.inner);
        let remote = self.run(async move {
            let prefix = (!inner.prefix.is_empty())
                .then(|| ObjectPath::from(inner.prefix.trim_end_matches('/')));
            let mut stream = inner.remote.list(prefix.as_ref());
            let mut names = Vec::new();
            while let Some(meta) = stream.next().await {
                let meta = meta.map_err(remote_err)?;
                let key = meta.location.as_ref();
                if let Some(n) = key.strip_prefix(inner.prefix.as_str())
                    && validate_blob_name(n).is_ok()
                {
                    names.push(n.to_string());
                }
            }
            Ok(names)
        })?;
        names.extend(remote);
        names.sort();
        names.dedup();
        Ok(names)
    }

    fn sync_written(&self) -> Result<bool, BlobError> {
        self.inner.spool.sync_written()
    }

    fn publish(&self, name: &str) -> Result<(), BlobError> {
        validate_blob_name(name)?;
        let inner = Arc::clone(&self.inner);
        let name = name.to_string();
        self.run(async move { upload_or_queue(&inner, &name, 0).await })
    }

    fn publish_leftovers(&self) -> Result<usize, BlobError> {
        let names = self.inner.spool.list()?;
        let now = tokio::time::Instant::now();
        let mut queue = lock(&self.inner.retry);
        for n in &names {
            queue.entry(n.clone()).or_insert((0, now));
        }
        drop(queue);
        self.inner.wake.notify_one();
        Ok(names.len())
    }
}

/// Uploads `name`; on failure counts it and queues a retry after the
/// backoff for `tries` failures so far.
async fn upload_or_queue(inner: &Inner, name: &str, tries: u32) -> Result<(), BlobError> {
    match upload(inner, name).await {
        Ok(()) => Ok(()),
        Err(e) => {
            inner
                .counters
                .upload_failures
                .fetch_add(1, Ordering::Relaxed);
            let wait = backoff(tries);
            let at = tokio::time::Instant::now() + wait;
            lock(&inner.retry).insert(name.to_string(), (tries.saturating_add(1), at));
            inner.wake.notify_one();
            tracing::warn!(blob = %name, error = %e, retry_in_s = wait.as_secs(), "recording upload failed; the spool file stays and is tried again");
            Err(e)
        }
    }
}

/// The wait after `tries` failed tries: [`RETRY_MIN`] doubling, at most
/// [`RETRY_MAX`].
pub fn backoff(tries: u32) -> Duration {
    RETRY_MIN
        .saturating_mul(1u32 << tries.min(16))
        .min(RETRY_MAX)
}

/// Uploads the spool file `name`, verifies the object and unlinks the
/// spool file. A name no longer in the spool (uploaded, or erased) is done.
async fn upload(inner: &Inner, name: &str) -> Result<(), BlobError> {
    let _busy = inner.busy.lock().await;
    let path = inner.spool.path_of(name)?;
    let io = |source| BlobError::Io {
        path: path.clone(),
        source,
    };
    let mut file = match tokio::fs::File::open(&path).await {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io(e)),
    };
    let size = file.metadata().await.map_err(io)?.len();
    let key = inner.key(name);
    if size <= SINGLE_PUT_MAX {
        let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        file.read_to_end(&mut bytes).await.map_err(io)?;
        inner
            .remote
            .put(&key, bytes.into())
            .await
            .map_err(remote_err)?;
    } else {
        let up = inner.remote.put_multipart(&key).await.map_err(remote_err)?;
        let mut w = WriteMultipart::new_with_chunk_size(up, PART_SIZE);
        let mut buf = vec![0u8; PART_SIZE];
        loop {
            let n = file.read(&mut buf).await.map_err(io)?;
            if n == 0 {
                break;
            }
            if let Err(e) = w.wait_for_capacity(PART_CONCURRENCY).await {
                return Err(remote_err(e));
            }
            w.write(buf.get(..n).unwrap_or_default());
        }
        w.finish().await.map_err(remote_err)?;
    }
    verify(inner, &key, &path, size).await?;
    // Counted once verified, before the spool file goes: whoever sees the
    // spool empty sees the upload counted.
    inner.counters.uploaded.fetch_add(1, Ordering::Relaxed);
    inner.spool.remove(name)?;
    tracing::info!(blob = %name, bytes = size, "recording uploaded and verified; spool file removed");
    Ok(())
}

/// The object has `size` bytes and ends with the spool file's last bytes.
async fn verify(
    inner: &Inner,
    key: &ObjectPath,
    path: &std::path::Path,
    size: u64,
) -> Result<(), BlobError> {
    let meta = inner.remote.head(key).await.map_err(remote_err)?;
    if meta.size != size {
        return Err(BlobError::Remote(format!(
            "verification: the object has {} bytes, the spool file {size}",
            meta.size
        )));
    }
    let from = size.saturating_sub(VERIFY_TAIL);
    if from == size {
        return Ok(());
    }
    let theirs = inner
        .remote
        .get_range(key, from..size)
        .await
        .map_err(remote_err)?;
    let mut ours = vec![0u8; usize::try_from(size - from).unwrap_or(0)];
    let mut f = tokio::fs::File::open(path)
        .await
        .map_err(|source| BlobError::Io {
            path: path.to_path_buf(),
            source,
        })?;
    use tokio::io::AsyncSeekExt;
    f.seek(std::io::SeekFrom::Start(from))
        .await
        .and(f.read_exact(&mut ours).await.map(|_| ()))
        .map_err(|source| BlobError::Io {
            path: path.to_path_buf(),
            source,
        })?;
    if theirs.as_ref() != ours.as_slice() {
        return Err(BlobError::Remote(
            "verification: the object's last bytes differ from the spool file's".into(),
        ));
    }
    Ok(())
}

/// Tries queued uploads when they are due, until the store is dropped.
async fn retry_task(inner: std::sync::Weak<Inner>) {
    loop {
        let Some(strong) = inner.upgrade() else {
            return;
        };
        let now = tokio::time::Instant::now();
        let next = {
            let queue = lock(&strong.retry);
            let due: Vec<(String, u32)> = queue
                .iter()
                .filter(|(_, (_, at))| *at <= now)
                .map(|(n, (t, _))| (n.clone(), *t))
                .collect();
            let next = queue
                .values()
                .map(|(_, at)| *at)
                .filter(|at| *at > now)
                .min();
            (due, next)
        };
        let (due, next) = next;
        for (name, tries) in due {
            lock(&strong.retry).remove(&name);
            let _ = upload_or_queue(&strong, &name, tries).await;
        }
        let wait = next.map_or(RETRY_MAX, |at| at.saturating_duration_since(now));
        let wake = async { strong.wake.notified().await };
        tokio::select! {
            _ = wake => {}
            _ = tokio::time::sleep(wait.min(RETRY_MAX)) => {}
        }
        drop(strong);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_bounded() {
        assert_eq!(backoff(0), RETRY_MIN);
        assert_eq!(backoff(1), RETRY_MIN * 2);
        assert_eq!(backoff(3), RETRY_MIN * 8);
        assert_eq!(backoff(10), RETRY_MAX);
        assert_eq!(backoff(u32::MAX), RETRY_MAX);
    }
}
