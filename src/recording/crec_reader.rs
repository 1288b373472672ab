//! CREC v1 reader (pure: works on a byte slice, no I/O).
//!
//! [`CrecReader::open`] checks the header and the key commitment, then builds
//! an index of chunk offsets from the chunks' clear fields alone (no
//! decryption; [`super::crec_index`] bounds every field first, since none
//! is authenticated yet), so [`CrecReader::decrypt_chunk`] can decrypt just
//! the chunks a Range request needs. [`CrecReader::chunks`] walks all chunks in order and, once
//! exhausted, tells through [`Chunks::status`] whether the recording is
//! complete. A truncated recording (no chunk with the last flag, or a partial
//! trailing chunk) is never reported as complete.

use std::sync::atomic::{AtomicU64, Ordering};

use uuid::Uuid;

use super::crec::{
    COMMITMENT_LEN, CrecError, CrecHeader, ParsedHeader, chunk_ad, commitment, file_key, nonce,
    parse_header,
};
pub use super::crec_index::ChunkInfo;
use super::crec_index::{Tail, scan};
use super::crec_source::{MAX_READ, ReadAt, Source};
use crate::keys::{AeadKey, Dek};

/// One authentic, decrypted chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// Position (= counter) of the chunk.
    pub index: usize,
    /// Milliseconds of audio from the start of the recording.
    pub media_start_ms: u64,
    /// Decrypted payload.
    pub plaintext: Vec<u8>,
    /// True for the final chunk of a complete recording.
    pub last: bool,
}

/// Whether the recording ended properly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Completeness {
    /// All chunks up to one carrying the last flag were read, nothing after it.
    Complete,
    /// The data ends without a last chunk, or inside a chunk (e.g. a crash
    /// while recording). Every chunk returned is still authentic.
    Truncated,
}

/// A CREC file opened with its DEK.
#[derive(Debug)]
pub struct CrecReader<'a> {
    source: Source<'a>,
    parsed: ParsedHeader,
    key: AeadKey,
    index: Vec<ChunkInfo>,
    tail: Tail,
    decryptions: AtomicU64,
}

/// Longest header a CREC file can have (two u16-length strings and fixed
/// fields), rounded up: what is read to parse it.
const MAX_HEADER_READ: usize = 1 << 18;
const _: () = assert!(MAX_HEADER_READ <= MAX_READ);
/// What is read first to parse a header.
const FIRST_HEADER_READ: usize = 4096;

/// Constant-time equality of two 32-byte values.
fn ct_eq(a: &[u8; COMMITMENT_LEN], b: &[u8; COMMITMENT_LEN]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl<'a> CrecReader<'a> {
    /// Parses and checks the header of `file_bytes`: magic, version, suite,
    /// `recording_id == expected_recording_id` (else `HeaderMismatch`) and the
    /// key commitment (else `WrongKey`), all before any decryption. Then
    /// indexes the chunks by their length fields.
    pub fn open(
        file_bytes: &'a [u8],
        expected_recording_id: Uuid,
        dek: &Dek,
    ) -> Result<CrecReader<'a>, CrecError> {
        Self::open_source(Source::Bytes(file_bytes), expected_recording_id, dek)
    }

    /// As [`CrecReader::open`], reading the file piece by piece from
    /// `file`: its header, each chunk's length fields, and later only the
    /// chunks decrypted.
    pub fn open_at(
        file: &'a dyn ReadAt,
        expected_recording_id: Uuid,
        dek: &Dek,
    ) -> Result<CrecReader<'a>, CrecError> {
        Self::open_source(Source::At(file), expected_recording_id, dek)
    }

    fn open_source(
        source: Source<'a>,
        expected_recording_id: Uuid,
        dek: &Dek,
    ) -> Result<CrecReader<'a>, CrecError> {
        // Headers are ~150 bytes; read more only for one that needs it.
        let first = source.get(0, source.len().min(FIRST_HEADER_READ))?;
        let parsed = match parse_header(&first) {
            Err(CrecError::HeaderTruncated) if source.len() > FIRST_HEADER_READ => {
                parse_header(&source.get(0, source.len().min(MAX_HEADER_READ))?)?
            }
            other => other?,
        };
        if parsed.header.recording_id != expected_recording_id {
            return Err(CrecError::HeaderMismatch {
                expected: expected_recording_id,
                found: parsed.header.recording_id,
            });
        }
        if !ct_eq(
            &commitment(dek, &parsed.salt, &parsed.h)?,
            &parsed.commitment,
        ) {
            return Err(CrecError::WrongKey);
        }
        let key = file_key(dek, &parsed.salt, &parsed.h)?;
        let mut file_tag = [0u8; 8];
        file_tag.copy_from_slice(&parsed.h[..8]);
        let index = scan(source, parsed.len, &file_tag)?;
        Ok(CrecReader {
            source,
            parsed,
            key,
            index: index.chunks,
            tail: index.tail,
            decryptions: AtomicU64::new(0),
        })
    }

    /// The header fields.
    pub fn header(&self) -> &CrecHeader {
        &self.parsed.header
    }

    /// Number of complete chunks found by the length scan.
    pub fn chunk_count(&self) -> usize {
        self.index.len()
    }

    /// Location and clear fields of chunk `index`, without decrypting.
    pub fn chunk_info(&self, index: usize) -> Option<ChunkInfo> {
        self.index.get(index).copied()
    }

    /// Why the chunk after the last indexed one could not be indexed, if
    /// the scan stopped at a damaged chunk (its length, file tag, counter
    /// or media start out of bounds). [`CrecReader::chunks`] reports it
    /// after every chunk before it.
    pub fn index_damage(&self) -> Option<&CrecError> {
        match &self.tail {
            Tail::Bad(e) => Some(e),
            Tail::Clean | Tail::Partial => None,
        }
    }

    /// True if bytes follow the last indexed chunk (a partial chunk, or a
    /// damaged one): after a chunk marked last, that is
    /// [`CrecError::DataAfterLastChunk`].
    pub fn has_bytes_after_index(&self) -> bool {
        !matches!(self.tail, Tail::Clean)
    }

    /// Index of the chunk whose audio contains `media_ms` (by the stored,
    /// not yet authenticated, media starts; decryption authenticates them).
    pub fn chunk_for_media_ms(&self, media_ms: u64) -> Option<usize> {
        let after = self.index.partition_point(|c| c.media_start_ms <= media_ms);
        after.checked_sub(1)
    }

    /// How many AES-GCM open operations this reader has performed.
    pub fn decryptions(&self) -> u64 {
        self.decryptions.load(Ordering::Relaxed)
    }

    fn try_open(&self, counter: u32, media: u64, last: bool, ct: &[u8]) -> Option<Vec<u8>> {
        self.decryptions.fetch_add(1, Ordering::Relaxed);
        let ad = chunk_ad(&self.parsed.h, counter, media, last);
        self.key
            .open(&nonce(&self.parsed.prefix, counter, last), &ad, ct)
    }

    /// Authenticates and decrypts chunk `index` alone. Checks, in order: the
    /// file tag (`ChunkFromAnotherRecording`), the counter
    /// (`ChunkOutOfOrder`), then the AEAD tag (`ChunkModified`). Whether the
    /// chunk is the last one is learnt from which nonce authenticates it.
    pub fn decrypt_chunk(&self, index: usize) -> Result<Chunk, CrecError> {
        let info = self.index.get(index).ok_or(CrecError::NoSuchChunk(index))?;
        let chunk = self.source.get(info.offset, info.len)?;
        // The scan checked the file tag and counter already; checked again
        // so that this stays correct on its own.
        if chunk.get(16..24) != self.parsed.h.get(..8) {
            return Err(CrecError::ChunkFromAnotherRecording { index });
        }
        let counter_ok = u32::try_from(index).is_ok_and(|i| i == info.counter);
        if !counter_ok {
            return Err(CrecError::ChunkOutOfOrder {
                index,
                found: info.counter,
            });
        }
        let ct = chunk.get(24..).unwrap_or_default();
        // Try the likelier flag first: only the final indexed chunk can be last
        // in a well-formed file.
        let last_first = index + 1 == self.index.len();
        for last in [last_first, !last_first] {
            if let Some(plaintext) = self.try_open(info.counter, info.media_start_ms, last, ct) {
                return Ok(Chunk {
                    index,
                    media_start_ms: info.media_start_ms,
                    plaintext,
                    last,
                });
            }
        }
        Err(CrecError::ChunkModified { index })
    }

    /// Iterates over all chunks in order, stopping after the first error.
    pub fn chunks(&self) -> Chunks<'_, 'a> {
        Chunks {
            reader: self,
            next: 0,
            state: IterState::Running,
        }
    }

    /// Reads everything: all chunks and the completeness, or the first error.
    pub fn read_all(&self) -> Result<(Vec<Chunk>, Completeness), CrecError> {
        let mut it = self.chunks();
        let chunks = it.by_ref().collect::<Result<Vec<_>, _>>()?;
        Ok((chunks, it.status()))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IterState {
    Running,
    /// Last chunk seen; report data after it if any.
    SawLast,
    Done(Completeness),
    Failed,
}

/// Iterator over the chunks of a [`CrecReader`]; see [`Chunks::status`].
#[derive(Debug)]
pub struct Chunks<'r, 'a> {
    reader: &'r CrecReader<'a>,
    next: usize,
    state: IterState,
}

impl Chunks<'_, '_> {
    /// `Complete` only if the iterator ran to its end without error and saw
    /// a chunk with the last flag followed by nothing; `Truncated` otherwise
    /// (including when called before the end or after an error).
    pub fn status(&self) -> Completeness {
        match self.state {
            IterState::Done(c) => c,
            _ => Completeness::Truncated,
        }
    }
}

impl Iterator for Chunks<'_, '_> {
    type Item = Result<Chunk, CrecError>;

    fn next(&mut self) -> Option<Self::Item> {
        let r = self.reader;
        match self.state {
            IterState::Done(_) | IterState::Failed => None,
            IterState::SawLast => {
                if self.next < r.index.len() || r.has_bytes_after_index() {
                    self.state = IterState::Failed;
                    Some(Err(CrecError::DataAfterLastChunk))
                } else {
                    self.state = IterState::Done(Completeness::Complete);
                    None
                }
            }
            IterState::Running if self.next < r.index.len() => {
                let i = self.next;
                self.next += 1;
                match r.decrypt_chunk(i) {
                    Ok(c) => {
                        if c.last {
                            self.state = IterState::SawLast;
                        }
                        Some(Ok(c))
                    }
                    Err(e) => {
                        self.state = IterState::Failed;
                        Some(Err(e))
                    }
                }
            }
            IterState::Running => match &r.tail {
                Tail::Bad(e) => {
                    self.state = IterState::Failed;
                    Some(Err(e.clone()))
                }
                Tail::Clean | Tail::Partial => {
                    self.state = IterState::Done(Completeness::Truncated);
                    None
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::g711::Codec;
    use crate::recording::crec::CrecWriter;
    use proptest::prelude::*;

    fn valid_file(dek: &Dek, id: Uuid) -> Vec<u8> {
        let h = CrecHeader {
            recording_id: id,
            call_id: "c".into(),
            epoch_id: "e".into(),
            codec: Codec::Pcmu,
            sample_rate: 8000,
            channels: 1,
            created_ms: -1,
        };
        let (mut w, mut bytes) = CrecWriter::with_randomness(&h, dek, [3; 32], [4; 7]).unwrap();
        for (i, n) in [10usize, 0, 33].iter().enumerate() {
            bytes.extend(w.seal_chunk(i as u64, &vec![i as u8; *n], i == 2).unwrap());
        }
        bytes
    }

    /// Reads everything the way a caller would; must never panic.
    fn exercise(bytes: &[u8], id: Uuid, dek: &Dek) -> Option<Completeness> {
        let r = CrecReader::open(bytes, id, dek).ok()?;
        for i in 0..r.chunk_count() + 1 {
            let _ = r.decrypt_chunk(i);
            let _ = r.chunk_info(i);
        }
        let _ = r.chunk_for_media_ms(5);
        let mut it = r.chunks();
        for item in it.by_ref() {
            let _ = item;
        }
        Some(it.status())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn arbitrary_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..400)) {
            let dek = Dek::from_bytes(&mut [1; 32]);
            let id = Uuid::from_slice(data.get(6..22).unwrap_or(&[0; 16])).unwrap_or_default();
            prop_assert_ne!(exercise(&data, id, &dek), Some(Completeness::Complete));
        }

        #[test]
        fn mutated_files_never_panic(
            edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..6)
        ) {
            let dek = Dek::from_bytes(&mut [1; 32]);
            let id = Uuid::from_u128(5);
            let mut bytes = valid_file(&dek, id);
            let original = bytes.clone();
            for (at, val, op) in edits {
                let i = at.index(bytes.len() + 1);
                match op {
                    0 if i < bytes.len() => bytes[i] = val,
                    1 => bytes.insert(i, val),
                    _ if i < bytes.len() => { bytes.remove(i); }
                    _ => {}
                }
            }
            let status = exercise(&bytes, id, &dek);
            if bytes != original {
                prop_assert_ne!(status, Some(Completeness::Complete));
            }
        }
    }
}
