//! Errors of the key hierarchy. No variant ever carries key bytes.

use std::path::PathBuf;

/// Everything that can go wrong in [`crate::keys`].
///
/// Variants fall into five groups: operator/configuration problems
/// (`MasterKey*`, `KeyDirInsecure`, `BadKeyId`, `KekExists`, `KekNotFound`),
/// corrupt stored data (`WrappedDekCorrupt`, `KekCorrupt`), cryptographic
/// failures (`UnwrapFailed`, `Crypto`), I/O (`Io`, always with the path) and
/// PKCS#11 token failures (`Pkcs11`, naming the module and slot, never the PIN).
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The master key file does not exist and development mode is off.
    #[error(
        "master key file {path:?} does not exist; create one with \
         `head -c 32 /dev/urandom > {path:?}; chmod 600 {path:?}` \
         (or run in development mode to generate it)"
    )]
    MasterKeyMissing {
        /// Where the master key was expected.
        path: PathBuf,
    },
    /// The master key file exists but is unusable (length, entropy or permissions).
    #[error("master key file {path:?} refused: {reason}")]
    MasterKeyWeak {
        /// The master key file.
        path: PathBuf,
        /// Why it was refused (never contains key bytes).
        reason: String,
    },
    /// The key directory is accessible by group or other users.
    #[error("key directory {path:?} is accessible by group/other; run `chmod 700 {path:?}`")]
    KeyDirInsecure {
        /// The key directory.
        path: PathBuf,
    },
    /// A KEK id does not match `[a-z0-9-]{{1,80}}`.
    #[error("invalid key id {id:?}: expected 1 to 80 characters of [a-z0-9-]")]
    BadKeyId {
        /// The refused id (escaped when displayed).
        id: String,
    },
    /// `create` was called for a KEK id that already exists.
    #[error("key {id} already exists")]
    KekExists {
        /// The KEK id.
        id: String,
    },
    /// A DEK was to be wrapped or unwrapped under a KEK that does not exist
    /// (never created, or destroyed).
    #[error("key {id} does not exist (never created, or destroyed)")]
    KekNotFound {
        /// The KEK id.
        id: String,
    },
    /// A stored KEK could not be parsed or authenticated.
    #[error("KEK {id} is corrupt: {detail}")]
    KekCorrupt {
        /// The KEK id.
        id: String,
        /// What was wrong.
        detail: &'static str,
    },
    /// A wrapped DEK has the wrong length or an unknown version.
    #[error("wrapped DEK is corrupt: {detail}")]
    WrappedDekCorrupt {
        /// What was wrong.
        detail: &'static str,
    },
    /// A wrapped DEK did not authenticate: wrong KEK or wrong binding
    /// (call id, recording id, epoch), or the ciphertext was modified.
    #[error("DEK unwrap failed: wrong KEK or wrong call/recording/epoch binding")]
    UnwrapFailed,
    /// An internal cryptographic operation failed (should not happen).
    #[error("cryptographic operation failed: {0}")]
    Crypto(&'static str),
    /// A PKCS#11 module or token failed or refused an operation. The
    /// message names the module, the slot and the operation (and the PIN
    /// file for a login), never the PIN.
    #[error("PKCS#11 module {module:?}, slot {slot}: {op}: {detail}")]
    Pkcs11 {
        /// Path of the PKCS#11 module.
        module: PathBuf,
        /// The slot id.
        slot: u64,
        /// What was being done.
        op: String,
        /// What the module said.
        detail: String,
    },
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

impl KeyError {
    /// Builds a closure mapping an [`std::io::Error`] to [`KeyError::Io`] for `path`.
    pub(crate) fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> KeyError + '_ {
        move |source| KeyError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}
