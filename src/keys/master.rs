//! Loading (and, in development mode, creating) the master key file.

use std::fs;
use std::io::{Read, Write};
use std::path::Path;

use rand::RngCore;
use zeroize::Zeroizing;

use super::{Key32, KeyError, MasterKey};

/// Why 32 bytes are not acceptable as a master key, if they are not.
fn weakness(bytes: &[u8]) -> Option<String> {
    if bytes.len() != 32 {
        return Some(format!(
            "expected exactly 32 raw bytes, found {}",
            bytes.len()
        ));
    }
    if bytes.iter().all(|b| *b == bytes[0]) {
        return Some("all bytes are equal".into());
    }
    let mut seen = [false; 256];
    for b in bytes {
        seen[usize::from(*b)] = true;
    }
    let distinct = seen.iter().filter(|s| **s).count();
    if distinct < 16 {
        return Some(format!(
            "only {distinct} distinct byte values (need at least 16): not random"
        ));
    }
    None
}

impl MasterKey {
    /// Loads the master key from `path`: exactly 32 raw bytes, at least 16
    /// distinct byte values, not all equal, and (on unix) not accessible by
    /// group/other (`mode & 0o077 == 0`).
    ///
    /// A missing file is created with 32 random bytes and mode 0600 (parent
    /// directories 0700) when `dev` is true; otherwise it is
    /// [`KeyError::MasterKeyMissing`], whose message tells the operator how to
    /// create one. Weak keys are refused in both modes.
    pub fn load(path: &Path, dev: bool) -> Result<MasterKey, KeyError> {
        match fs::symlink_metadata(path) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if !dev {
                    return Err(KeyError::MasterKeyMissing {
                        path: path.to_path_buf(),
                    });
                }
                create_dev_key(path)?;
            }
            Err(e) => return Err(KeyError::io(path)(e)),
        }
        read_key(path)
    }
}

fn read_key(path: &Path) -> Result<MasterKey, KeyError> {
    let file = fs::File::open(path).map_err(KeyError::io(path))?;
    let meta = file.metadata().map_err(KeyError::io(path))?;
    let weak = |reason: String| KeyError::MasterKeyWeak {
        path: path.to_path_buf(),
        reason,
    };
    if !meta.is_file() {
        return Err(weak("not a regular file".into()));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(weak(format!(
                "file mode is {mode:o}, accessible by group/other; run `chmod 600` on it"
            )));
        }
    }
    // Read at most 33 bytes: enough to tell "too long" without reading a huge file.
    let mut buf = Zeroizing::new(Vec::with_capacity(33));
    file.take(33)
        .read_to_end(&mut buf)
        .map_err(KeyError::io(path))?;
    if let Some(reason) = weakness(&buf) {
        return Err(weak(reason));
    }
    let mut arr = Zeroizing::new([0u8; 32]);
    arr.copy_from_slice(&buf);
    Ok(MasterKey(Key32::from_array(&mut arr)))
}

/// Development mode only: creates `path` with 32 random bytes, mode 0600.
/// If another process created it first, that file is used.
fn create_dev_key(path: &Path) -> Result<(), KeyError> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        let mut b = fs::DirBuilder::new();
        b.recursive(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            b.mode(0o700);
        }
        b.create(parent).map_err(KeyError::io(parent))?;
    }
    let mut bytes = Zeroizing::new([0u8; 32]);
    // A random key fails the entropy check with negligible probability; retry anyway.
    loop {
        rand::rng().fill_bytes(bytes.as_mut());
        if weakness(bytes.as_ref()).is_none() {
            break;
        }
    }
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut file = match opts.open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => return Err(KeyError::io(path)(e)),
    };
    file.write_all(bytes.as_ref()).map_err(KeyError::io(path))?;
    file.sync_all().map_err(KeyError::io(path))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_key(path: &Path, bytes: &[u8], mode: u32) {
        fs::write(path, bytes).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
        }
        let _ = mode;
    }

    fn good_bytes() -> Vec<u8> {
        (0u8..32)
            .map(|i| i.wrapping_mul(37).wrapping_add(11))
            .collect()
    }

    #[test]
    fn dev_creates_0600_and_reloads_same_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/dir/master.key");
        let k1 = MasterKey::load(&path, true).unwrap();
        let raw = fs::read(&path).unwrap();
        assert_eq!(raw.len(), 32);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
            let pmode = fs::metadata(path.parent().unwrap())
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(pmode & 0o777, 0o700);
        }
        let k2 = MasterKey::load(&path, false).unwrap();
        assert_eq!(k1.0.bytes(), k2.0.bytes());
        assert_eq!(k1.0.bytes().as_slice(), raw.as_slice());
    }

    #[test]
    fn missing_without_dev_is_refused_with_instructions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        let err = MasterKey::load(&path, false).unwrap_err();
        assert!(matches!(err, KeyError::MasterKeyMissing { .. }));
        let msg = err.to_string();
        assert!(msg.contains("head -c 32 /dev/urandom"), "{msg}");
        assert!(msg.contains("chmod 600"), "{msg}");
        assert!(!path.exists());
    }

    #[test]
    fn good_key_loads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        write_key(&path, &good_bytes(), 0o600);
        let k = MasterKey::load(&path, false).unwrap();
        assert_eq!(k.0.bytes().as_slice(), good_bytes().as_slice());
    }

    #[test]
    fn weak_keys_refused_each_way() {
        let dir = tempfile::tempdir().unwrap();
        let cases: Vec<(&str, Vec<u8>, u32)> = vec![
            ("short", good_bytes()[..31].to_vec(), 0o600),
            ("long", [good_bytes(), vec![1]].concat(), 0o600),
            ("empty", vec![], 0o600),
            ("equal", vec![0x41; 32], 0o600),
            ("zeros", vec![0; 32], 0o600),
            ("few-distinct", (0u8..32).map(|i| i % 15).collect(), 0o600),
            #[cfg(unix)]
            ("group-readable", good_bytes(), 0o640),
            #[cfg(unix)]
            ("other-readable", good_bytes(), 0o604),
            #[cfg(unix)]
            ("group-writable", good_bytes(), 0o620),
        ];
        for (name, bytes, mode) in cases {
            let path = dir.path().join(name);
            write_key(&path, &bytes, mode);
            for dev in [false, true] {
                let err = MasterKey::load(&path, dev).unwrap_err();
                assert!(
                    matches!(err, KeyError::MasterKeyWeak { .. }),
                    "{name}: {err:?}"
                );
                if !bytes.is_empty() {
                    assert!(!err.to_string().contains(&hex::encode(&bytes[..4])));
                }
            }
        }
        // Exactly 16 distinct values is accepted.
        let path = dir.path().join("sixteen");
        write_key(&path, &(0u8..32).map(|i| i % 16).collect::<Vec<_>>(), 0o600);
        assert!(MasterKey::load(&path, false).is_ok());
    }

    #[test]
    fn directory_is_not_a_key() {
        let dir = tempfile::tempdir().unwrap();
        let err = MasterKey::load(dir.path(), true).unwrap_err();
        assert!(
            matches!(err, KeyError::MasterKeyWeak { .. } | KeyError::Io { .. }),
            "{err:?}"
        );
    }
}
