//! The PKCS#11 key store on a private SoftHSM2 token.

use std::path::Path;

use ansim::keys::{Dek, DekBinding, KeyError, KeyStore, Pkcs11KeyStore, WrappedDek};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass};
use cryptoki::session::UserType;
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;

use crate::softhsm::{MODULE, PIN, Token, context};

fn binding(epoch: &str) -> DekBinding {
    DekBinding {
        call_id: "cal_1".into(),
        recording_id: uuid::Uuid::from_u128(42),
        epoch_id: epoch.into(),
    }
}

/// A public fingerprint of a DEK (the DEK's bytes are not accessible).
fn fingerprint(dek: &Dek) -> [u8; 32] {
    dek.derive_commitment(b"test", &[b"fingerprint"]).unwrap()
}

#[test]
fn create_list_wrap_unwrap_destroy() {
    let token = Token::create();
    let s = token.open();
    assert!(s.list().unwrap().is_empty());
    s.create("ep-ad-6m-100").unwrap();
    let hold = format!("hold-{}", uuid::Uuid::new_v4());
    s.create(&hold).unwrap();
    assert!(s.exists("ep-ad-6m-100").unwrap());
    assert!(!s.exists("ep-other").unwrap());
    let mut expect = vec!["ep-ad-6m-100".to_owned(), hold.clone()];
    expect.sort();
    assert_eq!(s.list().unwrap(), expect);
    assert!(matches!(
        s.create("ep-ad-6m-100"),
        Err(KeyError::KekExists { .. })
    ));
    assert!(matches!(s.create("Ep/1"), Err(KeyError::BadKeyId { .. })));

    let dek = Dek::generate();
    let b = binding("ep-ad-6m-100");
    let w = s.wrap_dek("ep-ad-6m-100", &dek, &b).unwrap();
    assert_eq!(w.as_bytes().len(), 1 + 12 + 32 + 16);
    assert_eq!(w.as_bytes()[0], 1);
    assert_ne!(s.wrap_dek("ep-ad-6m-100", &dek, &b).unwrap(), w, "fresh IV");
    let back = s.unwrap_dek("ep-ad-6m-100", &w, &b).unwrap();
    assert_eq!(fingerprint(&back), fingerprint(&dek));

    // Another store on the same token (a restart) sees the same key.
    let again = token.open();
    let back = again.unwrap_dek("ep-ad-6m-100", &w, &b).unwrap();
    assert_eq!(fingerprint(&back), fingerprint(&dek));

    // Wrong binding, wrong key, tampering, bad encoding.
    for wrong in [
        DekBinding {
            call_id: "cal_2".into(),
            ..b.clone()
        },
        DekBinding {
            recording_id: uuid::Uuid::from_u128(43),
            ..b.clone()
        },
        binding("ep-other"),
    ] {
        assert!(matches!(
            s.unwrap_dek("ep-ad-6m-100", &w, &wrong),
            Err(KeyError::UnwrapFailed)
        ));
    }
    assert!(matches!(
        s.unwrap_dek(&hold, &w, &b),
        Err(KeyError::UnwrapFailed)
    ));
    let mut tampered = w.clone();
    tampered.0[20] ^= 1;
    assert!(matches!(
        s.unwrap_dek("ep-ad-6m-100", &tampered, &b),
        Err(KeyError::UnwrapFailed)
    ));
    let short = WrappedDek(w.as_bytes()[..60].to_vec());
    assert!(matches!(
        s.unwrap_dek("ep-ad-6m-100", &short, &b),
        Err(KeyError::WrappedDekCorrupt { .. })
    ));
    // The session is still usable after the failures.
    assert!(s.unwrap_dek("ep-ad-6m-100", &w, &b).is_ok());

    // Destruction: C_DestroyObject, and the wrapped DEK is useless.
    assert!(s.destroy("ep-ad-6m-100").unwrap());
    assert!(!s.exists("ep-ad-6m-100").unwrap());
    assert!(!again.exists("ep-ad-6m-100").unwrap());
    assert!(matches!(
        s.unwrap_dek("ep-ad-6m-100", &w, &b),
        Err(KeyError::KekNotFound { .. })
    ));
    assert!(matches!(
        s.wrap_dek("ep-ad-6m-100", &dek, &b),
        Err(KeyError::KekNotFound { .. })
    ));
    assert!(!s.destroy("ep-ad-6m-100").unwrap());
    assert_eq!(s.list().unwrap(), vec![hold]);
    assert!(format!("{s:?}").contains("libsofthsm2"));
}

#[test]
fn keys_are_sensitive_and_not_extractable() {
    let token = Token::create();
    let s = token.open();
    s.create("ep-secret-1").unwrap();
    let ctx = context();
    let session = ctx
        .open_rw_session(Slot::try_from(token.slot).unwrap())
        .unwrap();
    // Already logged in through the store (login is per process and token).
    match session.login(UserType::User, Some(&AuthPin::from(PIN))) {
        Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
        Err(e) => panic!("login: {e}"),
    }
    let found = session
        .find_objects(&[Attribute::Label(b"ep-secret-1".to_vec())])
        .unwrap();
    assert_eq!(found.len(), 1);
    let attrs = session
        .get_attributes(
            found[0],
            &[
                AttributeType::Class,
                AttributeType::KeyType,
                AttributeType::ValueLen,
                AttributeType::Token,
                AttributeType::Sensitive,
                AttributeType::Extractable,
                AttributeType::NeverExtractable,
            ],
        )
        .unwrap();
    for a in &attrs {
        match a {
            Attribute::Class(c) => assert_eq!(*c, ObjectClass::SECRET_KEY),
            Attribute::KeyType(k) => assert_eq!(*k, KeyType::AES),
            Attribute::ValueLen(l) => assert_eq!(u64::from(*l), 32),
            Attribute::Token(t) | Attribute::Sensitive(t) | Attribute::NeverExtractable(t) => {
                assert!(*t, "{a:?}")
            }
            Attribute::Extractable(e) => assert!(!*e),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(attrs.len(), 7);
    // C_GetAttributeValue(CKA_VALUE) is refused: no key bytes come out.
    match session.get_attributes(found[0], &[AttributeType::Value]) {
        Err(CkError::Pkcs11(RvError::AttributeSensitive, _)) => {}
        Ok(attrs) => assert!(
            !attrs.iter().any(|a| matches!(a, Attribute::Value(_))),
            "the KEK's value was readable"
        ),
        Err(e) => panic!("unexpected error {e}"),
    }
    // Nor can it be made extractable afterwards.
    assert!(
        session
            .update_attributes(found[0], &[Attribute::Extractable(true)])
            .is_err()
    );
}

#[test]
fn list_ignores_foreign_keys() {
    let token = Token::create();
    let s = token.open();
    s.create("ep-1").unwrap();
    let session = context()
        .open_rw_session(Slot::try_from(token.slot).unwrap())
        .unwrap();
    session
        .generate_key(
            &Mechanism::AesKeyGen,
            &[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::ValueLen(32.into()),
                Attribute::Token(true),
                Attribute::Label(b"Someone Else's Key".to_vec()),
            ],
        )
        .unwrap();
    assert_eq!(s.list().unwrap(), vec!["ep-1".to_owned()]);
}

#[test]
fn a_wrong_pin_is_refused_without_showing_it() {
    let token = Token::create();
    let dir = tempfile::tempdir().unwrap();
    let wrong = dir.path().join("wrong.pin");
    std::fs::write(&wrong, "98765\n").unwrap();
    let err = Pkcs11KeyStore::open(Path::new(MODULE), token.slot, Some(&wrong)).unwrap_err();
    let msg = format!("{err} {err:?}");
    assert!(!msg.contains("98765"), "{msg}");
    assert!(msg.contains("libsofthsm2.so"), "{msg}");
    assert!(msg.contains(&token.slot.to_string()), "{msg}");
    assert!(msg.contains("wrong.pin"), "{msg}");
    assert!(msg.contains("PinIncorrect"), "{msg}");

    let missing = dir.path().join("missing.pin");
    let err = Pkcs11KeyStore::open(Path::new(MODULE), token.slot, Some(&missing)).unwrap_err();
    assert!(matches!(err, KeyError::Io { .. }), "{err}");
    assert!(err.to_string().contains("missing.pin"), "{err}");

    let err = Pkcs11KeyStore::open(Path::new(MODULE), token.slot, None).unwrap_err();
    assert!(err.to_string().contains("pin-file"), "{err}");

    let err =
        Pkcs11KeyStore::open(Path::new(MODULE), 999_999_999, Some(&token.pin_file)).unwrap_err();
    assert!(err.to_string().contains("slot 999999999"), "{err}");

    let err = Pkcs11KeyStore::open(Path::new("/nonexistent/libpkcs11.so"), 0, None).unwrap_err();
    assert!(
        err.to_string().contains("/nonexistent/libpkcs11.so"),
        "{err}"
    );

    // The right PIN (trailing newline trimmed) still works.
    token.open().create("ep-1").unwrap();
}

/// `[keys] store = "pkcs11:…"` opens the token; no master key is involved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_opens_a_pkcs11_key_store_from_the_config() {
    use ansim::config::{BlobLocation, Config, KeyStoreLocation};
    let token = Token::create();
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default_dev();
    config.keys.dev = false;
    config.keys.master_key_file = dir.path().join("absent.key");
    config.keys.store = KeyStoreLocation::Pkcs11 {
        module: MODULE.into(),
        slot: token.slot,
        pin_file: Some(token.pin_file.clone()),
    };
    config.store.recordings = BlobLocation::File(dir.path().join("rec"));
    let db = crate::harness::TestDb::new(crate::harness::Db::Sqlite).await;
    let clock: ansim::clock::SharedClock =
        std::sync::Arc::new(ansim::clock::ManualClock::new(crate::harness::T0));
    assert!(ansim::server::open_recorder(&config, db.store.clone(), clock.clone()).is_ok());
    assert!(!config.keys.master_key_file.exists());

    let dir2 = tempfile::tempdir().unwrap();
    let wrong = dir2.path().join("wrong.pin");
    std::fs::write(&wrong, "24680").unwrap();
    let other = Token::create();
    config.keys.store = KeyStoreLocation::Pkcs11 {
        module: MODULE.into(),
        slot: other.slot,
        pin_file: Some(wrong),
    };
    let err = ansim::server::open_recorder(&config, db.store.clone(), clock)
        .err()
        .map(|e| e.to_string())
        .unwrap();
    assert!(err.contains("wrong.pin") && !err.contains("24680"), "{err}");
}

/// Pseudonyms with a key in the token: deterministic, keyed, and the same
/// from another session on the token; gone with the key.
#[test]
fn keyed_pseudonyms_are_computed_inside_the_token() {
    let token = Token::create();
    let store = token.open();
    let id = ansim::retention::PSEUDONYM_KEY_ID;
    store.create(id).unwrap();
    let n = ansim::phone::E164::parse("+821012345678").unwrap();
    let a = ansim::retention::pseudonym(&store, &n).unwrap();
    assert!(ansim::phone::is_pseudonym(&a), "{a}");
    assert_eq!(a, ansim::retention::pseudonym(&token.open(), &n).unwrap());
    let other = ansim::phone::E164::parse("+821012345679").unwrap();
    assert_ne!(a, ansim::retention::pseudonym(&store, &other).unwrap());
    let elsewhere = Token::create().open();
    elsewhere.create(id).unwrap();
    assert_ne!(
        a,
        ansim::retention::pseudonym(&elsewhere, &n).unwrap(),
        "another key, another pseudonym"
    );
    assert!(store.destroy(id).unwrap());
    assert!(ansim::retention::pseudonym(&store, &n).is_err());
}
