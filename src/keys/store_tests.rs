//! Tests of the directory key store.

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
    let k1 = s.create_kek("ep-dispute-3y-20581").unwrap();
    let hold = format!("hold-{}", uuid::Uuid::new_v4());
    let k2 = s.create_kek(&hold).unwrap();
    assert_ne!(k1.0.bytes(), k2.0.bytes());
    let got = s.get_kek("ep-dispute-3y-20581").unwrap().unwrap();
    assert_eq!(got.0.bytes(), k1.0.bytes());
    let mut expect = vec!["ep-dispute-3y-20581".to_string(), hold.clone()];
    expect.sort();
    assert_eq!(s.list().unwrap(), expect);
    assert!(matches!(
        s.create_kek("ep-dispute-3y-20581"),
        Err(KeyError::KekExists { .. })
    ));
    // Still the original after a refused create.
    let again = s.get_kek("ep-dispute-3y-20581").unwrap().unwrap();
    assert_eq!(again.0.bytes(), k1.0.bytes());

    assert!(s.destroy("ep-dispute-3y-20581").unwrap());
    assert!(!s.path_of("ep-dispute-3y-20581").exists());
    assert!(s.get_kek("ep-dispute-3y-20581").unwrap().is_none());
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
    s.create_kek("ep-1").unwrap();
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
    let k = s.create_kek("ep-1").unwrap();
    let raw = fs::read(s.path_of("ep-1")).unwrap();
    assert_eq!(raw.len(), super::super::wrap::WRAPPED_LEN);
    assert!(!raw.windows(32).any(|w| w == k.0.bytes()));
}

#[test]
fn destroy_overwrites_with_zeros() {
    let (d, s) = store();
    s.create_kek("ep-z").unwrap();
    // A second link to the same inode shows what destroy wrote.
    let link = d.path().join("link");
    fs::hard_link(s.path_of("ep-z"), &link).unwrap();
    assert!(s.destroy("ep-z").unwrap());
    assert_eq!(
        fs::read(&link).unwrap(),
        vec![0u8; super::super::wrap::WRAPPED_LEN]
    );
    assert!(s.get_kek("ep-z").unwrap().is_none());
    assert!(s.list().unwrap().is_empty());
}

#[test]
fn renamed_file_fails() {
    let (_d, s) = store();
    s.create_kek("ep-a").unwrap();
    fs::rename(s.path_of("ep-a"), s.path_of("ep-b")).unwrap();
    assert!(matches!(
        s.get_kek("ep-b"),
        Err(KeyError::KekCorrupt { .. })
    ));
}

#[test]
fn corrupt_file_fails() {
    let (_d, s) = store();
    s.create_kek("ep-a").unwrap();
    let p = s.path_of("ep-a");
    let mut raw = fs::read(&p).unwrap();
    raw[30] ^= 0x10;
    fs::write(&p, &raw).unwrap();
    assert!(matches!(
        s.get_kek("ep-a"),
        Err(KeyError::KekCorrupt { .. })
    ));
    fs::write(&p, &raw[..10]).unwrap();
    let err = s.get_kek("ep-a").unwrap_err();
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
    s1.create_kek("ep-1").unwrap();
    let s2 = DirKeyStore::open(&kd, MasterKey(Key32::random())).unwrap();
    assert!(matches!(
        s2.get_kek("ep-1"),
        Err(KeyError::KekCorrupt { .. })
    ));
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
            matches!(s.create_kek(id), Err(KeyError::BadKeyId { .. })),
            "{id}"
        );
        assert!(
            matches!(s.get_kek(id), Err(KeyError::BadKeyId { .. })),
            "{id}"
        );
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
    s.create_kek("ep-1").unwrap();
    fs::write(s.dir.join("README"), b"x").unwrap();
    fs::write(s.dir.join("UPPER.kek"), b"x").unwrap();
    fs::write(s.dir.join(".ep-2.tmp-0000"), b"x").unwrap();
    assert_eq!(s.list().unwrap(), vec!["ep-1".to_string()]);
}

#[test]
fn trait_is_object_safe() {
    let (_d, s) = store();
    let dynstore: &dyn KeyStore = &s;
    assert!(!dynstore.exists("ep-x").unwrap());
    assert!(dynstore.create("ep-x").is_ok());
    assert!(dynstore.exists("ep-x").unwrap());
    assert!(matches!(
        dynstore.create("ep-x"),
        Err(KeyError::KekExists { .. })
    ));
    assert!(matches!(
        dynstore.exists("Ep-x"),
        Err(KeyError::BadKeyId { .. })
    ));
}

fn binding(epoch: &str) -> DekBinding {
    DekBinding {
        call_id: "cal-1".into(),
        recording_id: uuid::Uuid::from_u128(7),
        epoch_id: epoch.into(),
    }
}

#[test]
fn wrap_and_unwrap_through_the_trait() {
    let (_d, s) = store();
    let dynstore: &dyn KeyStore = &s;
    let dek = Dek::generate();
    assert!(matches!(
        dynstore.wrap_dek("ep-w", &dek, &binding("ep-w")),
        Err(KeyError::KekNotFound { .. })
    ));
    dynstore.create("ep-w").unwrap();
    let w = dynstore.wrap_dek("ep-w", &dek, &binding("ep-w")).unwrap();
    assert_eq!(w.as_bytes().len(), super::super::wrap::WRAPPED_LEN);
    let back = dynstore.unwrap_dek("ep-w", &w, &binding("ep-w")).unwrap();
    assert_eq!(back.0.bytes(), dek.0.bytes());
    // Same bytes as the software functions with the KEK itself.
    let kek = s.get_kek("ep-w").unwrap().unwrap();
    let soft = super::super::wrap::unwrap_dek(&kek, &w, &binding("ep-w")).unwrap();
    assert_eq!(soft.0.bytes(), dek.0.bytes());
    assert!(matches!(
        dynstore.unwrap_dek("ep-w", &w, &binding("ep-v")),
        Err(KeyError::UnwrapFailed)
    ));
    assert!(dynstore.destroy("ep-w").unwrap());
    assert!(matches!(
        dynstore.unwrap_dek("ep-w", &w, &binding("ep-w")),
        Err(KeyError::KekNotFound { .. })
    ));
}
