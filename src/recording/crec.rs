//! CREC v1: the encrypted recording file format (pure encode/decode, no I/O).
//!
//! ```text
//! header body  = "CREC" ‖ version u8 = 1 ‖ suite u8 = 1 ‖ recording id (16)
//!              ‖ call id (u16 len ‖ UTF-8) ‖ epoch id (u16 len ‖ UTF-8)
//!              ‖ codec u8 (0 PCMU, 8 PCMA) ‖ sample rate u32 ‖ channels u8
//!              ‖ created unix ms i64 ‖ salt (32) ‖ nonce prefix (7)
//! H            = SHA-256(header body)
//! header       = header body ‖ commitment (32)
//! commitment   = HKDF-SHA256(ikm = DEK, salt, info = "ansim/crec/v1/commit" ‖ H)
//! file key     = HKDF-SHA256(ikm = DEK, salt, info = "ansim/crec/v1" ‖ H)
//! chunk        = u32 len (of the rest) ‖ counter u32 ‖ media start ms u64
//!              ‖ file tag (H[..8]) ‖ ciphertext ‖ tag (16)
//! nonce        = prefix (7) ‖ counter u32 ‖ last flag u8   (aead::stream BE32 layout)
//! chunk AD     = H ‖ counter u32 ‖ media start u64 ‖ last flag u8
//! ```
//! All integers are big-endian. Suite 1 = AES-256-GCM + HKDF-SHA256 + STREAM BE32.
//!
//! Compared with DESIGN.md's chunk layout (`u32 length ‖ ciphertext ‖ tag`),
//! each chunk also carries its counter, its media start and an 8-byte file tag
//! in clear. All three are authenticated (counter and media start through the
//! AD and nonce, the file tag because it is part of H, which is in the AD and
//! the file key). They let a reader build an index of chunks without
//! decrypting (for HTTP Range requests), seek by media time, and name each
//! kind of tampering: a chunk from another file (file tag), a reordered,
//! duplicated or dropped chunk (counter), or a modified one (tag).
//!
//! The key commitment is checked before any decryption, so a wrong DEK (or a
//! modified header) is reported as such instead of as a corrupt first chunk.
//!
//! Media time: a chunk's audio starts at sample `media start × 8` (8 kHz)
//! and has one sample per channel for every two plaintext bytes. Chunks
//! never overlap: each starts at or after the end of the previous one's
//! audio (the writer's chunks are contiguous, so exactly there); a stretch
//! between two chunks, which the writer never leaves, is silence. So a
//! chunk's place in the recording follows from its own authenticated
//! fields, whatever the other chunks say. A recording is at most
//! [`MAX_RECORDING_MS`] long and has at most [`MAX_CHUNKS`] chunks;
//! [`super::crec_index`] enforces all of this before anything trusts a
//! clear field.

use crate::media::g711::Codec;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::keys::{AeadKey, Dek, KeyError};

/// File magic.
pub const MAGIC: &[u8; 4] = b"CREC";
/// Format version written and accepted.
pub const VERSION: u8 = 1;
/// Suite 1: AES-256-GCM + HKDF-SHA256 + STREAM BE32 nonces.
pub const SUITE: u8 = 1;
/// Largest plaintext in one chunk (1 MiB).
pub const MAX_CHUNK_PLAINTEXT: usize = 1 << 20;
/// Bytes of the clear fields after the length: counter, media start, file tag.
pub const CHUNK_FIELDS_LEN: usize = 4 + 8 + 8;
/// AES-GCM tag length.
pub const TAG_LEN: usize = 16;
/// Smallest valid value of a chunk's length field (empty plaintext).
pub const MIN_CHUNK_LEN: usize = CHUNK_FIELDS_LEN + TAG_LEN;
/// Largest valid value of a chunk's length field.
pub const MAX_CHUNK_LEN: usize = MIN_CHUNK_LEN + MAX_CHUNK_PLAINTEXT;
/// Length of the key commitment.
pub const COMMITMENT_LEN: usize = 32;
/// Samples per millisecond of media time: every recording is 8 kHz G.711,
/// and a chunk's media start is in milliseconds.
pub const SAMPLES_PER_MS: u64 = 8;
/// Longest recording the format allows, in milliseconds of media time:
/// 25 hours. Calls are cut at `[sip] max_call_duration`, which the
/// configuration caps at 24 h; the extra hour is slack for the jitter
/// window and the final flush. Readers refuse a chunk that starts or ends
/// beyond it, so no unauthenticated media start can make them lay out,
/// allocate or stream more than this: 25 h of 16-bit stereo at 8 kHz is
/// 2.88 GB of WAV data, which a WAV header's 32-bit length still holds
/// exactly, and every offset computed from it fits a `u64` with room to
/// spare.
pub const MAX_RECORDING_MS: u64 = 25 * 3600 * 1000;
/// Most chunks one recording can have: 2^18 (262,144). The writer seals a
/// chunk at most every 2 s of audio and every 2 s of wall time, so a
/// recording of [`MAX_RECORDING_MS`] has at most about 90,000; a reader's
/// index of a file at the limit takes 8 MiB. Without it, a file of
/// minimal 40-byte "chunks" (only their length fields need be plausible)
/// would make the index as large as the file.
pub const MAX_CHUNKS: usize = 1 << 18;

// The longest recording's WAV (44-byte header, 4 bytes a stereo sample)
// fits the header's 32-bit lengths, below the "unknown size" marker.
const _: () = assert!(44 + MAX_RECORDING_MS * SAMPLES_PER_MS * 4 < u32::MAX as u64);
const SALT_LEN: usize = 32;
const PREFIX_LEN: usize = 7;
const INFO_KEY: &[u8] = b"ansim/crec/v1";
const INFO_COMMIT: &[u8] = b"ansim/crec/v1/commit";

/// The descriptive fields of a CREC header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrecHeader {
    /// The recording's id (the blob and the wrapped DEK are keyed by it).
    pub recording_id: Uuid,
    /// The call's id (at most 65535 bytes of UTF-8).
    pub call_id: String,
    /// The retention epoch id (at most 65535 bytes of UTF-8).
    pub epoch_id: String,
    /// Payload codec.
    pub codec: Codec,
    /// Sample rate in Hz (non-zero).
    pub sample_rate: u32,
    /// Number of channels (non-zero).
    pub channels: u8,
    /// Creation time, unix milliseconds.
    pub created_ms: i64,
}

/// Errors of CREC encoding and decoding. Every error about a file's
/// content names what is wrong and, for a chunk, its position.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CrecError {
    /// The data does not start with `CREC`.
    #[error("not a CREC file (bad magic)")]
    BadMagic,
    /// Unknown format version.
    #[error("unsupported CREC version {0}")]
    UnsupportedVersion(u8),
    /// Unknown cipher suite.
    #[error("unsupported CREC cipher suite {0}")]
    UnsupportedSuite(u8),
    /// The data ends inside the header or the commitment.
    #[error("CREC header is truncated")]
    HeaderTruncated,
    /// A header field is invalid.
    #[error("CREC header is corrupt: {0}")]
    HeaderCorrupt(&'static str),
    /// The header belongs to another recording.
    #[error("CREC header is for recording {found}, expected {expected}")]
    HeaderMismatch {
        /// The recording id the caller asked for.
        expected: Uuid,
        /// The recording id in the header.
        found: Uuid,
    },
    /// The key commitment does not match: wrong DEK, or the header was modified.
    #[error("key commitment mismatch: wrong DEK for this recording, or header modified")]
    WrongKey,
    /// A chunk's file tag is not this file's: spliced in from another recording.
    #[error("chunk {index} comes from another recording")]
    ChunkFromAnotherRecording {
        /// Position of the chunk.
        index: usize,
    },
    /// A chunk's counter is not its position: reordered, duplicated or dropped chunk.
    #[error(
        "chunk at position {index} has counter {found}: reordered, duplicated or dropped chunk"
    )]
    ChunkOutOfOrder {
        /// Position of the chunk.
        index: usize,
        /// Counter found in the chunk.
        found: u32,
    },
    /// A chunk failed authentication.
    #[error("chunk {index} was modified (authentication failed)")]
    ChunkModified {
        /// Position of the chunk.
        index: usize,
    },
    /// A chunk's length field is less than its clear fields and tag.
    #[error(
        "chunk {index} (at byte {offset}) has length {length}, less than the minimum {minimum}"
    )]
    ChunkTooShort {
        /// Position of the chunk.
        index: usize,
        /// Offset of its length field in the file.
        offset: usize,
        /// The length field.
        length: u32,
        /// The smallest valid length ([`MIN_CHUNK_LEN`]).
        minimum: usize,
    },
    /// A chunk's length field is more than the largest chunk the format allows.
    #[error("chunk {index} (at byte {offset}) has length {length}, more than the limit {limit}")]
    ChunkTooLong {
        /// Position of the chunk.
        index: usize,
        /// Offset of its length field in the file.
        offset: usize,
        /// The length field.
        length: u32,
        /// The largest valid length ([`MAX_CHUNK_LEN`]).
        limit: usize,
    },
    /// The file holds more chunks than any recording can have.
    #[error("more than {limit} chunks: longer than any recording")]
    TooManyChunks {
        /// [`MAX_CHUNKS`].
        limit: usize,
    },
    /// A chunk's media start lies inside the previous chunk's audio (chunks
    /// never overlap), or after the longest recording the format allows.
    #[error(
        "chunk {index} claims to start at {media_start_ms} ms, outside {earliest_ms}..={latest_ms} ms"
    )]
    MediaStartOutOfRange {
        /// Position of the chunk.
        index: usize,
        /// The media start field.
        media_start_ms: u64,
        /// Where the previous chunk's audio ends (rounded up to a millisecond).
        earliest_ms: u64,
        /// [`MAX_RECORDING_MS`].
        latest_ms: u64,
    },
    /// A chunk's audio would end after the longest recording the format allows.
    #[error(
        "chunk {index}'s audio would end at {end_ms} ms, past the longest recording ({limit_ms} ms)"
    )]
    TimelineTooLong {
        /// Position of the chunk.
        index: usize,
        /// Where its audio would end (rounded up to a millisecond).
        end_ms: u64,
        /// [`MAX_RECORDING_MS`].
        limit_ms: u64,
    },
    /// Data follows the chunk marked last.
    #[error("data after the last chunk")]
    DataAfterLastChunk,
    /// No chunk with this index.
    #[error("no chunk {0}")]
    NoSuchChunk(usize),
    /// Writer: the last chunk was already sealed.
    #[error("the last chunk was already written")]
    AfterLastChunk,
    /// Writer: 2^32 chunks written.
    #[error("chunk counter overflow")]
    CounterOverflow,
    /// Writer: plaintext larger than [`MAX_CHUNK_PLAINTEXT`].
    #[error("chunk plaintext of {0} bytes exceeds 1 MiB")]
    ChunkTooLarge(usize),
    /// Writer: a header field cannot be encoded.
    #[error("invalid header field: {0}")]
    InvalidHeaderField(&'static str),
    /// Key derivation or sealing failed (shared, so that the error can be
    /// kept and reported again, as the chunk index does).
    #[error(transparent)]
    Key(Arc<KeyError>),
    /// The file could not be read (only when read piece by piece).
    #[error("reading the recording failed: {0}")]
    Read(String),
}

impl From<KeyError> for CrecError {
    fn from(e: KeyError) -> Self {
        CrecError::Key(Arc::new(e))
    }
}

impl CrecError {
    /// True when the error says the file's bytes are not what the writer
    /// wrote: damaged, truncated in the header, modified or swapped. False
    /// for failures to read it, key failures and the writer's own errors.
    pub fn is_damaged_file(&self) -> bool {
        use CrecError::*;
        match self {
            BadMagic
            | UnsupportedVersion(_)
            | UnsupportedSuite(_)
            | HeaderTruncated
            | HeaderCorrupt(_)
            | HeaderMismatch { .. }
            | WrongKey
            | ChunkFromAnotherRecording { .. }
            | ChunkOutOfOrder { .. }
            | ChunkModified { .. }
            | ChunkTooShort { .. }
            | ChunkTooLong { .. }
            | TooManyChunks { .. }
            | MediaStartOutOfRange { .. }
            | TimelineTooLong { .. }
            | DataAfterLastChunk => true,
            NoSuchChunk(_)
            | AfterLastChunk
            | CounterOverflow
            | ChunkTooLarge(_)
            | InvalidHeaderField(_)
            | Key(_)
            | Read(_) => false,
        }
    }
}

/// Header fields plus the per-file randomness, as stored.
#[derive(Debug, Clone)]
pub(crate) struct ParsedHeader {
    pub(crate) header: CrecHeader,
    pub(crate) salt: [u8; SALT_LEN],
    pub(crate) prefix: [u8; PREFIX_LEN],
    /// SHA-256 of the header body.
    pub(crate) h: [u8; 32],
    pub(crate) commitment: [u8; COMMITMENT_LEN],
    /// Total header length including the commitment.
    pub(crate) len: usize,
}

fn put_str(out: &mut Vec<u8>, s: &str, what: &'static str) -> Result<(), CrecError> {
    let len = u16::try_from(s.len()).map_err(|_| CrecError::InvalidHeaderField(what))?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

fn encode_body(
    h: &CrecHeader,
    salt: &[u8; SALT_LEN],
    prefix: &[u8; PREFIX_LEN],
) -> Result<Vec<u8>, CrecError> {
    if h.sample_rate == 0 {
        return Err(CrecError::InvalidHeaderField("sample rate is zero"));
    }
    if h.channels == 0 {
        return Err(CrecError::InvalidHeaderField("channels is zero"));
    }
    let mut out = Vec::with_capacity(128 + h.call_id.len() + h.epoch_id.len());
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    out.push(SUITE);
    out.extend_from_slice(h.recording_id.as_bytes());
    put_str(&mut out, &h.call_id, "call id longer than 65535 bytes")?;
    put_str(&mut out, &h.epoch_id, "epoch id longer than 65535 bytes")?;
    out.push(h.codec.payload_type());
    out.extend_from_slice(&h.sample_rate.to_be_bytes());
    out.push(h.channels);
    out.extend_from_slice(&h.created_ms.to_be_bytes());
    out.extend_from_slice(salt);
    out.extend_from_slice(prefix);
    Ok(out)
}

/// A cursor over a byte slice that fails with `HeaderTruncated` at the end.
struct Cur<'a>(&'a [u8], usize);

impl<'a> Cur<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], CrecError> {
        let end = self.1.checked_add(n).ok_or(CrecError::HeaderTruncated)?;
        let s = self.0.get(self.1..end).ok_or(CrecError::HeaderTruncated)?;
        self.1 = end;
        Ok(s)
    }
    fn arr<const N: usize>(&mut self) -> Result<[u8; N], CrecError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    fn string(&mut self) -> Result<String, CrecError> {
        let len = u16::from_be_bytes(self.arr()?);
        let bytes = self.take(usize::from(len))?;
        String::from_utf8(bytes.to_vec()).map_err(|_| CrecError::HeaderCorrupt("id is not UTF-8"))
    }
}

/// Parses the header at the start of `bytes` (no key needed).
pub(crate) fn parse_header(bytes: &[u8]) -> Result<ParsedHeader, CrecError> {
    let n = bytes.len().min(MAGIC.len());
    if bytes[..n] != MAGIC[..n] {
        return Err(CrecError::BadMagic);
    }
    let mut c = Cur(bytes, 0);
    c.take(4)?;
    let [version] = c.arr()?;
    if version != VERSION {
        return Err(CrecError::UnsupportedVersion(version));
    }
    let [suite] = c.arr()?;
    if suite != SUITE {
        return Err(CrecError::UnsupportedSuite(suite));
    }
    let recording_id = Uuid::from_bytes(c.arr()?);
    let call_id = c.string()?;
    let epoch_id = c.string()?;
    let [codec] = c.arr()?;
    let codec = Codec::from_payload_type(codec).ok_or(CrecError::HeaderCorrupt("unknown codec"))?;
    let sample_rate = u32::from_be_bytes(c.arr()?);
    let [channels] = c.arr()?;
    let created_ms = i64::from_be_bytes(c.arr()?);
    let salt = c.arr()?;
    let prefix = c.arr()?;
    if sample_rate == 0 || channels == 0 {
        return Err(CrecError::HeaderCorrupt("zero sample rate or channels"));
    }
    let h: [u8; 32] = Sha256::digest(&bytes[..c.1]).into();
    let commitment = c.arr()?;
    Ok(ParsedHeader {
        header: CrecHeader {
            recording_id,
            call_id,
            epoch_id,
            codec,
            sample_rate,
            channels,
            created_ms,
        },
        salt,
        prefix,
        h,
        commitment,
        len: c.1,
    })
}

/// The key commitment for a header hash.
pub(crate) fn commitment(dek: &Dek, salt: &[u8], h: &[u8; 32]) -> Result<[u8; 32], CrecError> {
    Ok(dek.derive_commitment(salt, &[INFO_COMMIT, h])?)
}

/// The file key for a header hash.
pub(crate) fn file_key(dek: &Dek, salt: &[u8], h: &[u8; 32]) -> Result<AeadKey, CrecError> {
    Ok(dek.derive_aead_key(salt, &[INFO_KEY, h])?)
}

/// STREAM BE32 nonce: prefix ‖ counter ‖ last flag.
pub(crate) fn nonce(prefix: &[u8; PREFIX_LEN], counter: u32, last: bool) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[..7].copy_from_slice(prefix);
    n[7..11].copy_from_slice(&counter.to_be_bytes());
    n[11] = u8::from(last);
    n
}

/// Chunk AD: H ‖ counter ‖ media start ‖ last flag.
pub(crate) fn chunk_ad(h: &[u8; 32], counter: u32, media_start_ms: u64, last: bool) -> [u8; 45] {
    let mut ad = [0u8; 45];
    ad[..32].copy_from_slice(h);
    ad[32..36].copy_from_slice(&counter.to_be_bytes());
    ad[36..44].copy_from_slice(&media_start_ms.to_be_bytes());
    ad[44] = u8::from(last);
    ad
}

/// Sans-IO CREC writer: produces the header, then one sealed chunk per call.
#[derive(Debug)]
pub struct CrecWriter {
    key: AeadKey,
    h: [u8; 32],
    prefix: [u8; PREFIX_LEN],
    next_counter: u64,
    finished: bool,
}

impl CrecWriter {
    /// Starts a recording with a fresh random salt and nonce prefix. Returns
    /// the writer and the header bytes (including the key commitment).
    pub fn new(header: &CrecHeader, dek: &Dek) -> Result<(CrecWriter, Vec<u8>), CrecError> {
        use rand::RngCore;
        let mut salt = [0u8; SALT_LEN];
        let mut prefix = [0u8; PREFIX_LEN];
        let mut rng = rand::rng();
        rng.fill_bytes(&mut salt);
        rng.fill_bytes(&mut prefix);
        Self::with_randomness(header, dek, salt, prefix)
    }

    /// Deterministic construction for test vectors and fuzzing. Never use the
    /// same salt and prefix twice with one DEK: that reuses GCM nonces.
    #[doc(hidden)]
    pub fn with_randomness(
        header: &CrecHeader,
        dek: &Dek,
        salt: [u8; SALT_LEN],
        prefix: [u8; PREFIX_LEN],
    ) -> Result<(CrecWriter, Vec<u8>), CrecError> {
        let mut bytes = encode_body(header, &salt, &prefix)?;
        let h: [u8; 32] = Sha256::digest(&bytes).into();
        bytes.extend_from_slice(&commitment(dek, &salt, &h)?);
        let key = file_key(dek, &salt, &h)?;
        let w = CrecWriter {
            key,
            h,
            prefix,
            next_counter: 0,
            finished: false,
        };
        Ok((w, bytes))
    }

    /// Seals one chunk of at most 1 MiB of plaintext. `last` marks the final
    /// chunk; afterwards every call fails with [`CrecError::AfterLastChunk`].
    pub fn seal_chunk(
        &mut self,
        media_start_ms: u64,
        plaintext: &[u8],
        last: bool,
    ) -> Result<Vec<u8>, CrecError> {
        if self.finished {
            return Err(CrecError::AfterLastChunk);
        }
        if plaintext.len() > MAX_CHUNK_PLAINTEXT {
            return Err(CrecError::ChunkTooLarge(plaintext.len()));
        }
        let counter = u32::try_from(self.next_counter).map_err(|_| CrecError::CounterOverflow)?;
        let ad = chunk_ad(&self.h, counter, media_start_ms, last);
        let ct = self
            .key
            .seal(&nonce(&self.prefix, counter, last), &ad, plaintext)?;
        let rest = CHUNK_FIELDS_LEN + ct.len();
        let rest_u32 =
            u32::try_from(rest).map_err(|_| CrecError::ChunkTooLarge(plaintext.len()))?;
        let mut out = Vec::with_capacity(4 + rest);
        out.extend_from_slice(&rest_u32.to_be_bytes());
        out.extend_from_slice(&counter.to_be_bytes());
        out.extend_from_slice(&media_start_ms.to_be_bytes());
        out.extend_from_slice(&self.h[..8]);
        out.extend_from_slice(&ct);
        self.next_counter += 1;
        self.finished = last;
        Ok(out)
    }

    /// Number of chunks sealed so far.
    pub fn chunks_written(&self) -> u64 {
        self.next_counter
    }

    /// True once the last chunk was sealed.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    #[cfg(test)]
    pub(crate) fn set_next_counter(&mut self, c: u64) {
        self.next_counter = c;
    }
}
