//! KEK storage: the [`KeyStore`] trait and the local [`DirKeyStore`].

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use rand::RngCore;

use super::wrap::{OpenError, open_key, seal_key};
use super::{Kek, KeyError, MasterKey};

/// Label of the associated data of a KEK file: `"ansim/kek/v1" ‖ id`.
const KEK_LABEL: &[u8] = b"ansim/kek/v1";
const KEK_EXT: &str = ".kek";

/// Where KEKs live, separate from the database. Object-safe and synchronous.
///
/// Ids must match `[a-z0-9-]{1,80}` (e.g. `ep-dispute-3y-20581`, `hold-<uuid>`);
/// anything else is [`KeyError::BadKeyId`].
pub trait KeyStore: Send + Sync {
    /// Creates a fresh random KEK under `id`; fails with [`KeyError::KekExists`] if it exists.
    fn create(&self, id: &str) -> Result<Kek, KeyError>;
    /// Returns the KEK `id`, or `None` if it does not exist (e.g. destroyed).
    fn get(&self, id: &str) -> Result<Option<Kek>, KeyError>;
    /// Destroys the KEK `id`; `true` if it existed.
    fn destroy(&self, id: &str) -> Result<bool, KeyError>;
    /// Ids of all stored KEKs, sorted.
    fn list(&self) -> Result<Vec<String>, KeyError>;
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

impl KeyStore for DirKeyStore {
    fn create(&self, id: &str) -> Result<Kek, KeyError> {
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

    fn get(&self, id: &str) -> Result<Option<Kek>, KeyError> {
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
mod tests {
    use super::*;
    use crate::keys::Key32;

    fn store() -> (tempfile::TempDir, DirKeyStore) {
        let dir = tempfile::tempdir().unwrap();
        let master = MasterKey(Key32::random());
        let s = DirKeyStore::open(&dir.path().join("keys"), master).unwrap();
        (dir, s)
    }

    #[test]
    fn create_get_list_destroy() {
        let (_d, s) = store();
        assert!(s.list().unwrap().is_empty());
        let k1 = s.create("ep-dispute-3y-20581").unwrap();
        let hold = format!("hold-{}", uuid::Uuid::new_v4());
        let k2 = s.create(&hold).unwrap();
        assert_ne!(k1.0.bytes(), k2.0.bytes());
        let got = s.get("ep-dispute-3y-20581").unwrap().unwrap();
        assert_eq!(got.0.bytes(), k1.0.bytes());
        let mut expect = vec!["ep-dispute-3y-20581".to_string(), hold.clone()];
        expect.sort();
        assert_eq!(s.list().unwrap(), expect);
        assert!(matches!(
            s.create("ep-dispute-3y-20581"),
            Err(KeyError::KekExists { .. })
        ));
        // Still the original after a refused create.
        let again = s.get("ep-dispute-3y-20581").unwrap().unwrap();
        assert_eq!(again.0.bytes(), k1.0.bytes());

        assert!(s.destroy("ep-dispute-3y-20581").unwrap());
        assert!(!s.path_of("ep-dispute-3y-20581").exists());
        assert!(s.get("ep-dispute-3y-20581").unwrap().is_none());
        assert!(!s.destroy("ep-dispute-3y-20581").unwrap());
        assert_eq!(s.list().unwrap(), vec![hold]);
        // No temp files left behind.
        assert_eq!(fs::read_dir(&s.dir).unwrap().count(), 1);
    }

    #[cfg(unix)]
    #[test]
    fn modes() {
        use std::os::unix::fs::PermissionsExt;
        let (_d, s) = store();
        s.create("ep-1").unwrap();
        let dmode = fs::metadata(&s.dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(dmode, 0o700);
        let fmode = fs::metadata(s.path_of("ep-1"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(fmode, 0o600);
    }

    #[cfg(unix)]
    #[test]
    fn insecure_dir_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let kd = dir.path().join("keys");
        fs::create_dir(&kd).unwrap();
        fs::set_permissions(&kd, fs::Permissions::from_mode(0o755)).unwrap();
        let err = DirKeyStore::open(&kd, MasterKey(Key32::random())).unwrap_err();
        assert!(matches!(err, KeyError::KeyDirInsecure { .. }));
    }

    #[test]
    fn file_format_and_no_plain_key() {
        let (_d, s) = store();
        let k = s.create("ep-1").unwrap();
        let raw = fs::read(s.path_of("ep-1")).unwrap();
        assert_eq!(raw.len(), super::super::wrap::WRAPPED_LEN);
        assert!(!raw.windows(32).any(|w| w == k.0.bytes()));
    }

    #[test]
    fn destroy_overwrites_with_zeros() {
        let (d, s) = store();
        s.create("ep-z").unwrap();
        // A second link to the same inode shows what destroy wrote.
        let link = d.path().join("link");
        fs::hard_link(s.path_of("ep-z"), &link).unwrap();
        assert!(s.destroy("ep-z").unwrap());
        assert_eq!(
            fs::read(&link).unwrap(),
            vec![0u8; super::super::wrap::WRAPPED_LEN]
        );
        assert!(s.get("ep-z").unwrap().is_none());
        assert!(s.list().unwrap().is_empty());
    }

    #[test]
    fn renamed_file_fails() {
        let (_d, s) = store();
        s.create("ep-a").unwrap();
        fs::rename(s.path_of("ep-a"), s.path_of("ep-b")).unwrap();
        assert!(matches!(s.get("ep-b"), Err(KeyError::KekCorrupt { .. })));
    }

    #[test]
    fn corrupt_file_fails() {
        let (_d, s) = store();
        s.create("ep-a").unwrap();
        let p = s.path_of("ep-a");
        let mut raw = fs::read(&p).unwrap();
        raw[30] ^= 0x10;
        fs::write(&p, &raw).unwrap();
        assert!(matches!(s.get("ep-a"), Err(KeyError::KekCorrupt { .. })));
        fs::write(&p, &raw[..10]).unwrap();
        let err = s.get("ep-a").unwrap_err();
        assert!(matches!(
            err,
            KeyError::KekCorrupt {
                detail: "wrong length",
                ..
            }
        ));
    }

    #[test]
    fn other_master_key_fails() {
        let dir = tempfile::tempdir().unwrap();
        let kd = dir.path().join("keys");
        let s1 = DirKeyStore::open(&kd, MasterKey(Key32::random())).unwrap();
        s1.create("ep-1").unwrap();
        let s2 = DirKeyStore::open(&kd, MasterKey(Key32::random())).unwrap();
        assert!(matches!(s2.get("ep-1"), Err(KeyError::KekCorrupt { .. })));
    }

    #[test]
    fn bad_ids_refused() {
        let (_d, s) = store();
        let long = "a".repeat(81);
        for id in [
            "",
            "../x",
            "a/b",
            "Ep-1",
            "ep_1",
            "ep.1",
            "ep 1",
            "ép",
            long.as_str(),
            "..",
        ] {
            assert!(
                matches!(s.create(id), Err(KeyError::BadKeyId { .. })),
                "{id}"
            );
            assert!(matches!(s.get(id), Err(KeyError::BadKeyId { .. })), "{id}");
            assert!(
                matches!(s.destroy(id), Err(KeyError::BadKeyId { .. })),
                "{id}"
            );
        }
        assert!(validate_key_id(&"a".repeat(80)).is_ok());
        assert!(validate_key_id("0-9-z").is_ok());
    }

    #[test]
    fn list_ignores_foreign_files() {
        let (_d, s) = store();
        s.create("ep-1").unwrap();
        fs::write(s.dir.join("README"), b"x").unwrap();
        fs::write(s.dir.join("UPPER.kek"), b"x").unwrap();
        fs::write(s.dir.join(".ep-2.tmp-0000"), b"x").unwrap();
        assert_eq!(s.list().unwrap(), vec!["ep-1".to_string()]);
    }

    #[test]
    fn trait_is_object_safe() {
        let (_d, s) = store();
        let dynstore: &dyn KeyStore = &s;
        assert!(dynstore.create("ep-x").is_ok());
        assert!(dynstore.get("ep-x").unwrap().is_some());
    }
}
