//! The chunk index of a CREC file: where each chunk is and what its clear
//! fields say, found by reading 24 bytes a chunk and decrypting nothing.
//!
//! A recording file is data at rest: a disk, a backup tool or anyone who
//! can write the file may have changed any of its bytes. Nothing in the
//! index is authenticated until its chunk is decrypted, so the scan's job
//! is to make sure that no number it hands on can do harm before then: no
//! allocation, multiplication, seek or loop may be sized by a field it has
//! not bounded. It reads each chunk's length, counter, media start and
//! file tag, and stops at the first chunk whose fields no writer produces:
//!
//! | check, in order | otherwise |
//! | --- | --- |
//! | at most [`MAX_CHUNKS`] chunks | [`CrecError::TooManyChunks`] |
//! | length ≥ [`MIN_CHUNK_LEN`] | [`CrecError::ChunkTooShort`] |
//! | length ≤ [`MAX_CHUNK_LEN`] | [`CrecError::ChunkTooLong`] |
//! | length ≤ the bytes left in the file | a partial last chunk: the file is *truncated*, as after a crash, not damaged |
//! | file tag = this file's | [`CrecError::ChunkFromAnotherRecording`] |
//! | counter = position | [`CrecError::ChunkOutOfOrder`] |
//! | media start from the end of the previous chunk's audio to [`MAX_RECORDING_MS`] | [`CrecError::MediaStartOutOfRange`] |
//! | its audio ends by [`MAX_RECORDING_MS`] | [`CrecError::TimelineTooLong`] |
//!
//! The entries before the bad one stay in the index, and the bad one is
//! reported after them ([`Tail::Bad`]): damage is reported in file order,
//! and every authentic chunk before it still reads. Passing these checks
//! proves nothing about authenticity; decryption does that, and since each
//! field checked is bound into its chunk's nonce, AD or file key, an entry
//! whose chunk decrypts is exactly what the writer wrote.
//!
//! What the bounds buy: a chunk is at most 1 MiB + 40 bytes and lies inside
//! the file, so reading one allocates at most that; every sample position
//! is at most 25 h × 8000 = 720 M, so sums and products of positions fit a
//! `u64` and the WAV's 32-bit length; and the index holds at most
//! [`MAX_CHUNKS`] entries (8 MiB), whatever the file's size.

use super::crec::{
    CrecError, MAX_CHUNK_LEN, MAX_CHUNKS, MAX_RECORDING_MS, MIN_CHUNK_LEN, SAMPLES_PER_MS,
};
use super::crec_source::Source;

/// Bytes the scan reads of each chunk: length, counter, media start, file tag.
pub(crate) const FIELDS_READ: usize = 4 + 4 + 8 + 8;
/// The longest recording, in samples a channel.
const MAX_RECORDING_SAMPLES: u64 = MAX_RECORDING_MS * SAMPLES_PER_MS;

/// Position and clear fields of a complete chunk found by the scan: within
/// the bounds above, not yet authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkInfo {
    /// Offset of the chunk's length field in the file.
    pub offset: usize,
    /// Total bytes of the chunk, length field included.
    pub len: usize,
    /// Counter field as stored (checked on decryption).
    pub counter: u32,
    /// Media start as stored (authenticated on decryption).
    pub media_start_ms: u64,
}

impl ChunkInfo {
    /// Bytes of plaintext: the chunk less its length field, clear fields
    /// and tag.
    pub fn plaintext_len(&self) -> usize {
        self.len.saturating_sub(4 + MIN_CHUNK_LEN)
    }

    /// Samples a channel (the plaintext interleaves caller and callee; an
    /// odd last byte is no sample).
    pub fn samples(&self) -> u64 {
        (self.plaintext_len() / 2) as u64
    }

    /// The recording's sample at which this chunk's audio starts.
    pub fn start_sample(&self) -> u64 {
        self.media_start_ms.saturating_mul(SAMPLES_PER_MS)
    }

    /// The sample just after this chunk's audio.
    pub fn end_sample(&self) -> u64 {
        self.start_sample().saturating_add(self.samples())
    }
}

/// What follows the last entry of the index.
#[derive(Debug, Clone)]
pub(crate) enum Tail {
    /// Nothing: the file ends after it.
    Clean,
    /// Part of a chunk (a crash while writing, or a length running past the
    /// end of the file): the recording is truncated.
    Partial,
    /// A chunk whose clear fields are out of bounds, and why.
    Bad(CrecError),
}

/// The chunks of a file and what follows them.
#[derive(Debug)]
pub(crate) struct Index {
    /// Complete chunks, in file order, every field within bounds.
    pub(crate) chunks: Vec<ChunkInfo>,
    /// What comes after them.
    pub(crate) tail: Tail,
}

fn be_u32(b: &[u8], at: usize) -> Option<u32> {
    let bytes = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes(bytes.try_into().ok()?))
}

fn be_u64(b: &[u8], at: usize) -> Option<u64> {
    let bytes = b.get(at..at.checked_add(8)?)?;
    Some(u64::from_be_bytes(bytes.try_into().ok()?))
}

/// Milliseconds, rounded up, of a sample position.
fn ceil_ms(samples: u64) -> u64 {
    samples.div_ceil(SAMPLES_PER_MS)
}

/// What the scan finds at one position.
enum Entry {
    Chunk(ChunkInfo),
    Partial,
    Bad(CrecError),
}

/// Checks the chunk at position `index` and file offset `offset`, whose
/// first bytes are `head`, with `rest` bytes left in the file and the
/// previous chunk's audio ending at `earliest_sample`.
fn entry(
    head: &[u8],
    index: usize,
    offset: usize,
    rest: usize,
    file_tag: &[u8; 8],
    earliest_sample: u64,
) -> Entry {
    let Some(length) = be_u32(head, 0) else {
        return Entry::Partial;
    };
    let body = usize::try_from(length).unwrap_or(usize::MAX);
    if body < MIN_CHUNK_LEN {
        let minimum = MIN_CHUNK_LEN;
        return Entry::Bad(CrecError::ChunkTooShort {
            index,
            offset,
            length,
            minimum,
        });
    }
    if body > MAX_CHUNK_LEN {
        let limit = MAX_CHUNK_LEN;
        return Entry::Bad(CrecError::ChunkTooLong {
            index,
            offset,
            length,
            limit,
        });
    }
    if rest.saturating_sub(4) < body {
        return Entry::Partial;
    }
    // A complete chunk is at least 40 bytes, so all 24 were read.
    let (Some(counter), Some(media_start_ms), Some(tag)) =
        (be_u32(head, 4), be_u64(head, 8), head.get(16..24))
    else {
        return Entry::Partial;
    };
    if tag != file_tag {
        return Entry::Bad(CrecError::ChunkFromAnotherRecording { index });
    }
    if u32::try_from(index).ok() != Some(counter) {
        return Entry::Bad(CrecError::ChunkOutOfOrder {
            index,
            found: counter,
        });
    }
    let info = ChunkInfo {
        offset,
        len: 4 + body,
        counter,
        media_start_ms,
    };
    if media_start_ms > MAX_RECORDING_MS || info.start_sample() < earliest_sample {
        return Entry::Bad(CrecError::MediaStartOutOfRange {
            index,
            media_start_ms,
            earliest_ms: ceil_ms(earliest_sample),
            latest_ms: MAX_RECORDING_MS,
        });
    }
    if info.end_sample() > MAX_RECORDING_SAMPLES {
        return Entry::Bad(CrecError::TimelineTooLong {
            index,
            end_ms: ceil_ms(info.end_sample()),
            limit_ms: MAX_RECORDING_MS,
        });
    }
    Entry::Chunk(info)
}

/// Indexes the chunks from `pos` (just after the header) to the end of
/// `source`. Fails only if the file cannot be read; a bad chunk ends the
/// index with [`Tail::Bad`].
pub(crate) fn scan(
    source: Source<'_>,
    mut pos: usize,
    file_tag: &[u8; 8],
) -> Result<Index, CrecError> {
    let total = source.len();
    let mut chunks: Vec<ChunkInfo> = Vec::new();
    let mut earliest_sample = 0;
    loop {
        let rest = total.saturating_sub(pos);
        let tail = if rest == 0 {
            Some(Tail::Clean)
        } else if rest < 4 {
            Some(Tail::Partial)
        } else if chunks.len() >= MAX_CHUNKS {
            let limit = MAX_CHUNKS;
            Some(Tail::Bad(CrecError::TooManyChunks { limit }))
        } else {
            None
        };
        if let Some(tail) = tail {
            return Ok(Index { chunks, tail });
        }
        let head = source.get(pos, rest.min(FIELDS_READ))?;
        let index = chunks.len();
        match entry(&head, index, pos, rest, file_tag, earliest_sample) {
            Entry::Chunk(info) => {
                earliest_sample = info.end_sample();
                pos = pos.saturating_add(info.len);
                chunks.push(info);
            }
            Entry::Partial => {
                let tail = Tail::Partial;
                return Ok(Index { chunks, tail });
            }
            Entry::Bad(e) => {
                let tail = Tail::Bad(e);
                return Ok(Index { chunks, tail });
            }
        }
    }
}

#[cfg(test)]
#[path = "crec_index_tests.rs"]
mod tests;
