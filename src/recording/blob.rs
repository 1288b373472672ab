//! Blob storage for recording files.
//!
//! The [`BlobStore`] trait is synchronous (std::fs): callers on a tokio
//! runtime run it inside `spawn_blocking`. Writers are append-only; `sync`
//! makes everything appended so far durable, so a crash loses at most what
//! was appended since the last `sync` (a truncated CREC file, which the
//! reader reports as such).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::crec_source::ReadAt;

/// Errors of blob storage.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// The name does not match `[A-Za-z0-9._-]{1,120}` (or is `.`/`..`).
    #[error("invalid blob name {0:?}")]
    BadName(String),
    /// `create` on a name that exists.
    #[error("blob {0} already exists")]
    AlreadyExists(String),
    /// `read` of a name that does not exist.
    #[error("blob {0} not found")]
    NotFound(String),
    /// The object store failed (unreachable, refused, or a verification
    /// after an upload did not match).
    #[error("object store: {0}")]
    Remote(String),
    /// The blocking task that ran a blob operation off the async workers
    /// panicked or was cancelled (a bug or a shutdown, not the peer).
    #[error("blob operation did not complete: {0}")]
    Blocking(String),
    /// The blob directory is accessible by group/other.
    #[error("blob directory {0:?} is accessible by group/other; run `chmod 700` on it")]
    InsecureDir(PathBuf),
    /// A file system operation failed.
    #[error("I/O error on {path:?}: {source}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BlobError + '_ {
    move |source| BlobError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// An append-only blob being written.
pub trait BlobWriter: Send {
    /// Appends `bytes` (buffered by the OS until [`BlobWriter::sync`]).
    fn append(&mut self, bytes: &[u8]) -> Result<(), BlobError>;
    /// Makes everything appended so far durable (fsync).
    fn sync(&mut self) -> Result<(), BlobError>;
}

/// Where recording blobs live. Object-safe and synchronous.
pub trait BlobStore: Send + Sync {
    /// Creates a new, empty blob; fails with [`BlobError::AlreadyExists`]
    /// if `name` exists. The blob's existence is made durable with its
    /// content: by its writer's first [`BlobWriter::sync`], or by
    /// [`BlobStore::sync_written`], never later than its first chunk.
    fn create(&self, name: &str) -> Result<Box<dyn BlobWriter>, BlobError>;
    /// Reads a whole blob.
    fn read(&self, name: &str) -> Result<Vec<u8>, BlobError>;
    /// Opens a blob for reads at any offset (playback reads only the parts
    /// it needs). The default reads it whole.
    fn open(&self, name: &str) -> Result<Box<dyn ReadAt>, BlobError> {
        Ok(Box::new(self.read(name)?))
    }
    /// Deletes a blob; `true` if it existed.
    fn delete(&self, name: &str) -> Result<bool, BlobError>;
    /// Names of all blobs, sorted.
    fn list(&self) -> Result<Vec<String>, BlobError>;
    /// Makes everything appended to every blob of this store durable in
    /// one operation, if the store can: `Ok(true)`. `Ok(false)` when it
    /// cannot (the default): each writer must [`BlobWriter::sync`]. An
    /// error says only that *something* failed: the caller syncs each
    /// writer to learn which.
    fn sync_written(&self) -> Result<bool, BlobError> {
        Ok(false)
    }
    /// Says the blob `name` is finished (never appended again): a store
    /// that writes to a spool first moves it to its final place now. An
    /// error is logged by the caller; the store keeps the blob readable
    /// and tries again by itself. The default has nothing to do.
    fn publish(&self, _name: &str) -> Result<(), BlobError> {
        Ok(())
    }
    /// Publishes every finished blob a crash left behind; called once by
    /// `ansim serve` at start-up, after reconciliation and before any
    /// recording starts. Returns how many were handed on.
    fn publish_leftovers(&self) -> Result<usize, BlobError> {
        Ok(0)
    }
}

/// Checks that `name` matches `[A-Za-z0-9._-]{1,120}` and is not `.` or `..`.
pub fn validate_blob_name(name: &str) -> Result<(), BlobError> {
    let ok = (1..=120).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        && name != "."
        && name != "..";
    if ok {
        Ok(())
    } else {
        Err(BlobError::BadName(name.chars().take(130).collect()))
    }
}

/// Blobs as files in one directory (mode 0700; files 0600).
///
/// `delete` overwrites the file with zeros, fsyncs and removes it. On
/// copy-on-write file systems and flash this is best effort: the recording
/// is erased cryptographically by destroying its key, not by this overwrite.
#[derive(Debug, Clone)]
pub struct LocalBlobStore {
    /// The directory holding the blobs.
    dir: PathBuf,
    /// The directory, open: `syncfs` on it syncs its file system, and
    /// reports the write-back errors there since it was opened.
    handle: std::sync::Arc<fs::File>,
}

impl LocalBlobStore {
    /// Opens (creating with mode 0700 if needed) the blob directory.
    /// An existing directory accessible by group/other is refused.
    pub fn new(dir: &Path) -> Result<LocalBlobStore, BlobError> {
        let mut b = fs::DirBuilder::new();
        b.recursive(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            b.mode(0o700);
        }
        b.create(dir).map_err(io(dir))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir).map_err(io(dir))?.permissions().mode();
            if mode & 0o077 != 0 {
                return Err(BlobError::InsecureDir(dir.to_path_buf()));
            }
        }
        let handle = std::sync::Arc::new(fs::File::open(dir).map_err(io(dir))?);
        Ok(LocalBlobStore {
            dir: dir.to_path_buf(),
            handle,
        })
    }

    /// The file of the blob `name` (checked).
    pub(crate) fn path_of(&self, name: &str) -> Result<PathBuf, BlobError> {
        validate_blob_name(name)?;
        Ok(self.dir.join(name))
    }

    /// Unlinks the blob `name` without overwriting it (a copy lives on
    /// elsewhere, and readers that opened it keep reading); `true` if it
    /// existed.
    pub(crate) fn remove(&self, name: &str) -> Result<bool, BlobError> {
        let path = self.path_of(name)?;
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(io(&path)(e)),
        }
        self.sync_dir()?;
        Ok(true)
    }

    fn sync_dir(&self) -> Result<(), BlobError> {
        sync_dir(&self.handle, &self.dir)
    }
}

/// Makes the entries of the directory open as `handle` durable.
fn sync_dir(handle: &fs::File, dir: &Path) -> Result<(), BlobError> {
    #[cfg(unix)]
    handle.sync_all().map_err(io(dir))?;
    Ok(())
}

struct LocalWriter {
    file: fs::File,
    path: PathBuf,
    /// The blob directory, open: its entry for this file is synced by the
    /// first [`BlobWriter::sync`], not at creation, so that a round's one
    /// `syncfs` covers the entries of all the blobs it starts.
    dir: std::sync::Arc<fs::File>,
    /// The directory has not been synced by this writer yet.
    entry_pending: bool,
}

impl BlobWriter for LocalWriter {
    fn append(&mut self, bytes: &[u8]) -> Result<(), BlobError> {
        self.file.write_all(bytes).map_err(io(&self.path))
    }

    fn sync(&mut self) -> Result<(), BlobError> {
        self.file.sync_data().map_err(io(&self.path))?;
        if self.entry_pending {
            let parent = self.path.parent().unwrap_or(Path::new("."));
            sync_dir(&self.dir, parent)?;
            self.entry_pending = false;
        }
        Ok(())
    }
}

/// A blob file read at offsets (`pread`), its size fixed at opening.
#[cfg(unix)]
struct LocalReader {
    file: fs::File,
    size: u64,
}

#[cfg(unix)]
impl ReadAt for LocalReader {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt;
        self.file.read_exact_at(buf, offset)
    }
}

impl BlobStore for LocalBlobStore {
    fn create(&self, name: &str) -> Result<Box<dyn BlobWriter>, BlobError> {
        let path = self.path_of(name)?;
        let mut o = fs::OpenOptions::new();
        o.append(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            o.mode(0o600);
        }
        let file = match o.open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(BlobError::AlreadyExists(name.into()));
            }
            Err(e) => return Err(io(&path)(e)),
        };
        Ok(Box::new(LocalWriter {
            file,
            path,
            dir: std::sync::Arc::clone(&self.handle),
            entry_pending: true,
        }))
    }

    fn read(&self, name: &str) -> Result<Vec<u8>, BlobError> {
        let path = self.path_of(name)?;
        fs::read(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => BlobError::NotFound(name.into()),
            _ => io(&path)(e),
        })
    }

    #[cfg(unix)]
    fn open(&self, name: &str) -> Result<Box<dyn ReadAt>, BlobError> {
        let path = self.path_of(name)?;
        let file = fs::File::open(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => BlobError::NotFound(name.into()),
            _ => io(&path)(e),
        })?;
        let size = file.metadata().map_err(io(&path))?.len();
        Ok(Box::new(LocalReader { file, size }))
    }

    fn delete(&self, name: &str) -> Result<bool, BlobError> {
        let path = self.path_of(name)?;
        let file = match fs::OpenOptions::new().write(true).open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(io(&path)(e)),
        };
        let overwrite = || -> std::io::Result<()> {
            let mut left = file.metadata()?.len();
            let zeros = vec![0u8; 1 << 16];
            let mut f = &file;
            while left > 0 {
                let n = usize::try_from(left).map_or(zeros.len(), |l| l.min(zeros.len()));
                f.write_all(&zeros[..n])?;
                left -= n as u64;
            }
            file.sync_all()
        };
        overwrite().map_err(io(&path))?;
        drop(file);
        fs::remove_file(&path).map_err(io(&path))?;
        self.sync_dir()?;
        Ok(true)
    }

    fn list(&self) -> Result<Vec<String>, BlobError> {
        let mut names = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(io(&self.dir))? {
            let entry = entry.map_err(io(&self.dir))?;
            if let Some(n) = entry.file_name().to_str()
                && validate_blob_name(n).is_ok()
            {
                names.push(n.to_string());
            }
        }
        names.sort();
        Ok(names)
    }

    /// `syncfs(2)` on the blob directory's file system: every blob's data
    /// and size, in one journal commit and one device flush, however many
    /// blobs were written. (It also flushes whatever else is dirty on that
    /// file system.) Linux reports write-back errors through it since 5.8.
    #[cfg(target_os = "linux")]
    fn sync_written(&self) -> Result<bool, BlobError> {
        use std::os::fd::AsRawFd;
        // SAFETY: syncfs takes one descriptor, ours and open; no memory.
        let rc = unsafe { libc::syncfs(self.handle.as_raw_fd()) };
        if rc != 0 {
            return Err(io(&self.dir)(std::io::Error::last_os_error()));
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, LocalBlobStore) {
        let d = tempfile::tempdir().unwrap();
        let s = LocalBlobStore::new(&d.path().join("blobs")).unwrap();
        (d, s)
    }

    #[test]
    fn create_append_read_list_delete() {
        let (_d, s) = store();
        let mut w = s.create("rec-1.crec").unwrap();
        w.append(b"hello ").unwrap();
        w.sync().unwrap();
        w.append(b"world").unwrap();
        w.sync().unwrap();
        drop(w);
        assert_eq!(s.read("rec-1.crec").unwrap(), b"hello world");
        s.create("a_2").unwrap();
        assert_eq!(
            s.list().unwrap(),
            vec!["a_2".to_string(), "rec-1.crec".to_string()]
        );
        assert!(matches!(s.create("a_2"), Err(BlobError::AlreadyExists(_))));
        assert!(s.delete("rec-1.crec").unwrap());
        assert!(!s.delete("rec-1.crec").unwrap());
        assert!(matches!(s.read("rec-1.crec"), Err(BlobError::NotFound(_))));
        assert_eq!(s.list().unwrap(), vec!["a_2".to_string()]);
    }

    #[test]
    fn delete_overwrites_with_zeros() {
        let (d, s) = store();
        let mut w = s.create("x").unwrap();
        let data = vec![0xa5u8; 200_000];
        w.append(&data).unwrap();
        w.sync().unwrap();
        // A second link to the same inode shows what delete wrote.
        let link = d.path().join("link");
        fs::hard_link(s.dir.join("x"), &link).unwrap();
        assert!(s.delete("x").unwrap());
        assert!(!s.dir.join("x").exists());
        assert_eq!(fs::read(&link).unwrap(), vec![0u8; data.len()]);
    }

    #[cfg(unix)]
    #[test]
    fn modes() {
        use std::os::unix::fs::PermissionsExt;
        let (_d, s) = store();
        s.create("m").unwrap();
        let dm = fs::metadata(&s.dir).unwrap().permissions().mode() & 0o777;
        let fm = fs::metadata(s.dir.join("m")).unwrap().permissions().mode() & 0o777;
        assert_eq!((dm, fm), (0o700, 0o600));
        let open = tempfile::tempdir().unwrap();
        fs::set_permissions(open.path(), fs::Permissions::from_mode(0o755)).unwrap();
        assert!(matches!(
            LocalBlobStore::new(open.path()),
            Err(BlobError::InsecureDir(_))
        ));
    }

    #[test]
    fn bad_names_refused() {
        let (_d, s) = store();
        let long = "a".repeat(121);
        for n in [
            "",
            ".",
            "..",
            "../x",
            "a/b",
            "a b",
            "é",
            "x\0",
            long.as_str(),
        ] {
            assert!(matches!(s.create(n), Err(BlobError::BadName(_))), "{n:?}");
            assert!(matches!(s.read(n), Err(BlobError::BadName(_))), "{n:?}");
            assert!(matches!(s.delete(n), Err(BlobError::BadName(_))), "{n:?}");
        }
        assert!(validate_blob_name(&"a".repeat(120)).is_ok());
        assert!(validate_blob_name("A.z_0-9").is_ok());
    }

    #[test]
    fn object_safe_and_crec_round_trip() {
        use crate::keys::Dek;
        use crate::media::g711::Codec;
        use crate::recording::crec::{CrecHeader, CrecWriter};
        use crate::recording::crec_reader::{Completeness, CrecReader};
        let (_d, s) = store();
        let store: &dyn BlobStore = &s;
        let id = uuid::Uuid::new_v4();
        let dek = Dek::generate();
        let h = CrecHeader {
            recording_id: id,
            call_id: "c".into(),
            epoch_id: "ep-1".into(),
            codec: Codec::Pcmu,
            sample_rate: 8000,
            channels: 2,
            created_ms: 0,
        };
        let (mut cw, head) = CrecWriter::new(&h, &dek).unwrap();
        let mut w = store.create(&format!("{id}.crec")).unwrap();
        w.append(&head).unwrap();
        w.append(&cw.seal_chunk(0, &[1; 160], false).unwrap())
            .unwrap();
        w.sync().unwrap();
        let partial = store.read(&format!("{id}.crec")).unwrap();
        let r = CrecReader::open(&partial, id, &dek).unwrap();
        assert_eq!(r.read_all().unwrap().1, Completeness::Truncated);
        w.append(&cw.seal_chunk(20, &[2; 160], true).unwrap())
            .unwrap();
        w.sync().unwrap();
        let full = store.read(&format!("{id}.crec")).unwrap();
        let r = CrecReader::open(&full, id, &dek).unwrap();
        let (chunks, status) = r.read_all().unwrap();
        assert_eq!((chunks.len(), status), (2, Completeness::Complete));
    }
}
