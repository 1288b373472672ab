//! A private SoftHSM2 for the tests: one configuration and token directory
//! per test process (`SOFTHSM2_CONF` is process-wide and read by the module
//! when it is initialized, so it is set once, before any test touches the
//! module), and one fresh token per test, so tests running in parallel never
//! see each other's keys. Each token's slot is found by its label.
//!
//! The tests need Debian's `softhsm2` (scripts/install-test-deps.sh installs
//! it); without it they fail, saying so, rather than being skipped.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock, PoisonError};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::session::UserType;
use cryptoki::types::AuthPin;

/// Debian's SoftHSM2 PKCS#11 module.
pub const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
/// The user PIN of every test token.
pub const PIN: &str = "1234";
const SO_PIN: &str = "5678";

/// The process's SoftHSM2 directory (configuration, tokens, PIN files).
fn home() -> &'static Path {
    static HOME: OnceLock<PathBuf> = OnceLock::new();
    HOME.get_or_init(|| {
        assert!(
            Path::new(MODULE).exists(),
            "SoftHSM2 is not installed ({MODULE} is missing): the PKCS#11 key store \
             tests need it: apt-get install -y softhsm2 (scripts/install-test-deps.sh does)"
        );
        // Under target/tmp: kept until `cargo clean`, never in the checkout.
        let dir = tempfile::Builder::new()
            .prefix("softhsm-")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .expect("softhsm tempdir")
            .keep();
        std::fs::create_dir(dir.join("tokens")).expect("tokens dir");
        let conf = dir.join("softhsm2.conf");
        std::fs::write(
            &conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                dir.join("tokens").display()
            ),
        )
        .expect("write softhsm2.conf");
        // SAFETY: done once, inside the OnceLock, before this process loads
        // the module; the tests read no other variable concurrently through libc.
        unsafe { std::env::set_var("SOFTHSM2_CONF", &conf) };
        dir
    })
}

/// The test process's own context on the module (to find slots and poke
/// at objects the way an attacker with the PIN would).
pub fn context() -> &'static Pkcs11 {
    static CTX: OnceLock<Pkcs11> = OnceLock::new();
    CTX.get_or_init(|| {
        home();
        let ctx = Pkcs11::new(MODULE).expect("load SoftHSM2");
        match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
            Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
            Err(e) => panic!("initialize SoftHSM2: {e}"),
        }
        ctx
    })
}

/// A fresh token of this process's SoftHSM2.
#[derive(Debug, Clone)]
pub struct Token {
    /// Its slot id.
    pub slot: u64,
    /// A file holding [`PIN`] (with a trailing newline, as editors leave it).
    pub pin_file: PathBuf,
}

impl Token {
    /// Initializes a new token in the free slot, with user PIN [`PIN`].
    ///
    /// In this process, not with `softhsm2-util --init-token --free`:
    /// SoftHSM2 reads its token directory when the module is initialized and
    /// never again, so a token another process creates afterwards stays
    /// invisible here (its label is never found). `C_InitToken` in this
    /// process updates the module's own view, and SoftHSM2 then offers a new
    /// free slot.
    pub fn create() -> Token {
        static INIT: Mutex<()> = Mutex::new(());
        let ctx = context();
        let label = format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..24]);
        let so_pin = AuthPin::from(SO_PIN);
        let slot = {
            // One free slot at a time: two tests must not both take it.
            let _one = INIT.lock().unwrap_or_else(PoisonError::into_inner);
            let free = ctx
                .get_slots_with_token()
                .expect("list slots")
                .into_iter()
                .find(|s| {
                    ctx.get_token_info(*s)
                        .map(|t| !t.token_initialized())
                        .unwrap_or(false)
                })
                .expect("SoftHSM2 offers no free slot");
            ctx.init_token(free, &so_pin, &label).expect("C_InitToken");
            free
        };
        let session = ctx.open_rw_session(slot).expect("open session");
        session
            .login(UserType::So, Some(&so_pin))
            .expect("SO login");
        session.init_pin(&AuthPin::from(PIN)).expect("C_InitPIN");
        session.logout().expect("SO logout");
        drop(session);
        assert_eq!(find_slot(&label), slot.id());
        let pin_file = home().join(format!("{label}.pin"));
        std::fs::write(&pin_file, format!("{PIN}\n")).expect("write pin file");
        Token {
            slot: slot.id(),
            pin_file,
        }
    }

    /// A key store on this token, logged in with its PIN file.
    pub fn open(&self) -> ansim::keys::Pkcs11KeyStore {
        ansim::keys::Pkcs11KeyStore::open(Path::new(MODULE), self.slot, Some(&self.pin_file))
            .expect("open the SoftHSM2 key store")
    }
}

/// The slot id of the token labelled `label`.
fn find_slot(label: &str) -> u64 {
    let ctx = context();
    let slots = ctx.get_slots_with_token().expect("list slots");
    slots
        .into_iter()
        .find(|s| {
            ctx.get_token_info(*s)
                .map(|t| t.label() == label)
                .unwrap_or(false)
        })
        .unwrap_or_else(|| panic!("no SoftHSM2 slot has the token {label}"))
        .id()
}
