//! KEK storage: the [`KeyStore`] trait and the local [`DirKeyStore`].

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use rand::RngCore;

use super::wrap::{DekBinding, OpenError, WrappedDek, open_key, seal_key};
use super::{Dek, Kek, KeyError, MasterKey};

/// Label of the associated data of a KEK file: `"ansim/kek/v1" ‖ id`.
const KEK_LABEL: &[u8] = b"ansim/kek/v1";
const KEK_EXT: &str = ".kek";

/// Where KEKs live, separate from the database. Object-safe and synchronous.
///
/// A KEK never leaves its store: callers only ask the store to wrap a DEK
/// under a KEK ([`KeyStore::wrap_dek`]) or to unwrap one
/// ([`KeyStore::unwrap_dek`]). [`DirKeyStore`] does that in software with
/// the KEK read from its file; [`super::Pkcs11KeyStore`] does it inside the
/// token (`C_Encrypt`/`C_Decrypt`), where the KEK is not extractable. Both
/// produce the same [`WrappedDek`] format (AES-256-GCM, 12-byte random
/// nonce, the binding as associated data).
///
/// Ids must match `[a-z0-9-]{1,80}` (e.g. `ep-dispute-3y-20581`, `hold-<uuid>`);
/// anything else is [`KeyError::BadKeyId`].
pub trait KeyStore: Send + Sync {
    /// Creates a fresh random KEK under `id`; fails with [`KeyError::KekExists`] if it exists.
    fn create(&self, id: &str) -> Result<(), KeyError>;
    /// Whether the KEK `id` exists (`false` once destroyed).
    fn exists(&self, id: &str) -> Result<bool, KeyError>;
    /// Destroys the KEK `id`; `true` if it existed.
    fn destroy(&self, id: &str) -> Result<bool, KeyError>;
    /// Ids of all stored KEKs, sorted.
    fn list(&self) -> Result<Vec<String>, KeyError>;
    /// Wraps `dek` under the KEK `id`, bound to `binding`.
    /// [`KeyError::KekNotFound`] if that KEK does not exist.
    fn wrap_dek(&self, id: &str, dek: &Dek, binding: &DekBinding) -> Result<WrappedDek, KeyError>;
    /// Unwraps a DEK wrapped under the KEK `id`. [`KeyError::KekNotFound`]
    /// if that KEK does not exist (destroyed: the DEK is gone for good);
    /// [`KeyError::UnwrapFailed`] for a wrong binding or a modified
    /// ciphertext; [`KeyError::WrappedDekCorrupt`] for a bad length/version.
    fn unwrap_dek(
        &self,
        id: &str,
        wrapped: &WrappedDek,
        binding: &DekBinding,
    ) -> Result<Dek, KeyError>;
    /// A keyed pseudorandom function: AES-256 under the KEK `id` applied to
    /// the two 16-byte halves of `input` (ECB of one 32-byte value, which is
    /// a PRF for a fixed input length). Deterministic, so a pseudonym made
    /// with it is the same every time; without the key it cannot be
    /// computed or inverted. In a token, the key never leaves it.
    fn prf(&self, id: &str, input: &[u8; 32]) -> Result<[u8; 32], KeyError>;
}

/// Checks that `id` matches `[a-z0-9-]{1,80}`.
pub fn validate_key_id(id: &str) -> Result<(), KeyError> {
    let ok = (1..=80).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(KeyError::BadKeyId {
            id: id.chars().take(100).collect(),
        })
    }
}

/// Local key directory: one file `<dir>/<id>.kek` per KEK, holding the KEK
/// wrapped by the master key (AES-256-GCM, random nonce, AD = `"ansim/kek/v1" ‖ id`,
/// so a file renamed to another id does not unwrap). Directory mode 0700,
/// files 0600, writes atomic (temp file, fsync, link into place, fsync dir).
///
/// `destroy` overwrites the file with zeros, fsyncs and removes it. On
/// copy-on-write or flash storage the overwrite is best effort; what makes the
/// KEK unrecoverable in backups is that the key directory is not backed up
/// beyond a short grace period (see DESIGN.md).
#[derive(Debug)]
pub struct DirKeyStore {
    dir: PathBuf,
    master: MasterKey,
}

impl DirKeyStore {
    /// Opens (creating with mode 0700 if needed) the key directory `dir`.
    /// An existing directory accessible by group/other is refused.
    pub fn open(dir: &Path, master: MasterKey) -> Result<DirKeyStore, KeyError> {
        let mut b = fs::DirBuilder::new();
        b.recursive(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            b.mode(0o700);
        }
        b.create(dir).map_err(KeyError::io(dir))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let meta = fs::metadata(dir).map_err(KeyError::io(dir))?;
            if meta.permissions().mode() & 0o077 != 0 {
                return Err(KeyError::KeyDirInsecure {
                    path: dir.to_path_buf(),
                });
            }
        }
        Ok(DirKeyStore {
            dir: dir.to_path_buf(),
            master,
        })
    }

    fn path_of(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}{KEK_EXT}"))
    }

    fn ad(id: &str) -> Vec<u8> {
        [KEK_LABEL, id.as_bytes()].concat()
    }

    fn sync_dir(&self) -> Result<(), KeyError> {
        #[cfg(unix)]
        fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(KeyError::io(&self.dir))?;
        Ok(())
    }
}

fn open_options_0600() -> fs::OpenOptions {
    let mut o = fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    o
}

impl DirKeyStore {
    /// Creates a fresh random KEK under `id` and returns it.
    pub(super) fn create_kek(&self, id: &str) -> Result<Kek, KeyError> {
        validate_key_id(id)?;
        let target = self.path_of(id);
        if target.exists() {
            return Err(KeyError::KekExists { id: id.into() });
        }
        let kek = Kek::generate();
        let wrapped = seal_key(&self.master.0, &kek.0, &Self::ad(id))?;
        let tmp = self
            .dir
            .join(format!(".{id}.tmp-{:016x}", rand::rng().next_u64()));
        let write = || -> std::io::Result<()> {
            let mut f = open_options_0600().open(&tmp)?;
            f.write_all(&wrapped)?;
            f.sync_all()
        };
        if let Err(e) = write() {
            let _ = fs::remove_file(&tmp);
            return Err(KeyError::io(&tmp)(e));
        }
        // hard_link never replaces an existing file: concurrent creates of the
        // same id cannot overwrite each other (rename would).
        let linked = fs::hard_link(&tmp, &target);
        let _ = fs::remove_file(&tmp);
        match linked {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(KeyError::KekExists { id: id.into() });
            }
            Err(e) => return Err(KeyError::io(&target)(e)),
        }
        self.sync_dir()?;
        Ok(kek)
    }

    /// The KEK `id`, or `None` if it does not exist (e.g. destroyed).
    pub(super) fn get_kek(&self, id: &str) -> Result<Option<Kek>, KeyError> {
        validate_key_id(id)?;
        let path = self.path_of(id);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(KeyError::io(&path)(e)),
        };
        match open_key(&self.master.0, &bytes, &Self::ad(id)) {
            Ok(k) => Ok(Some(Kek(k))),
            Err(OpenError::Malformed(detail)) => Err(KeyError::KekCorrupt {
                id: id.into(),
                detail,
            }),
            Err(OpenError::Auth) => Err(KeyError::KekCorrupt {
                id: id.into(),
                detail: "authentication failed (file modified or renamed, or another master key)",
            }),
        }
    }

    /// The KEK `id`, or [`KeyError::KekNotFound`].
    fn need_kek(&self, id: &str) -> Result<Kek, KeyError> {
        self.get_kek(id)?
            .ok_or_else(|| KeyError::KekNotFound { id: id.into() })
    }
}

impl KeyStore for DirKeyStore {
    fn create(&self, id: &str) -> Result<(), KeyError> {
        self.create_kek(id).map(drop)
    }

    fn exists(&self, id: &str) -> Result<bool, KeyError> {
        validate_key_id(id)?;
        let path = self.path_of(id);
        match fs::symlink_metadata(&path) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(KeyError::io(&path)(e)),
        }
    }

    fn wrap_dek(&self, id: &str, dek: &Dek, binding: &DekBinding) -> Result<WrappedDek, KeyError> {
        super::wrap::wrap_dek(&self.need_kek(id)?, dek, binding)
    }

    fn unwrap_dek(
        &self,
        id: &str,
        wrapped: &WrappedDek,
        binding: &DekBinding,
    ) -> Result<Dek, KeyError> {
        super::wrap::unwrap_dek(&self.need_kek(id)?, wrapped, binding)
    }

    fn prf(&self, id: &str, input: &[u8; 32]) -> Result<[u8; 32], KeyError> {
        Ok(self.need_kek(id)?.aes_ecb_32(input))
    }

    fn destroy(&self, id: &str) -> Result<bool, KeyError> {
        validate_key_id(id)?;
        let path = self.path_of(id);
        let file = match fs::OpenOptions::new().write(true).open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(KeyError::io(&path)(e)),
        };
        let overwrite = || -> std::io::Result<()> {
            let len = file.metadata()?.len();
            let zeros = vec![0u8; usize::try_from(len).unwrap_or(0).min(1 << 16)];
            let mut f = &file;
            let mut left = len;
            while left > 0 && !zeros.is_empty() {
                let n = zeros.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                f.write_all(&zeros[..n])?;
                left -= n as u64;
            }
            file.sync_all()
        };
        overwrite().map_err(KeyError::io(&path))?;
        drop(file);
        fs::remove_file(&path).map_err(KeyError::io(&path))?;
        self.sync_dir()?;
        Ok(true)
    }

    fn list(&self) -> Result<Vec<String>, KeyError> {
        let mut ids = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(KeyError::io(&self.dir))? {
            let entry = entry.map_err(KeyError::io(&self.dir))?;
            let name = entry.file_name();
            let Some(id) = name.to_str().and_then(|n| n.strip_suffix(KEK_EXT)) else {
                continue;
            };
            if validate_key_id(id).is_ok() {
                ids.push(id.to_string());
            }
        }
        ids.sort();
        Ok(ids)
    }
}

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;
