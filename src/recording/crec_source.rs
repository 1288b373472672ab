//! Where a [`super::crec_reader::CrecReader`]'s bytes come from: a slice in
//! memory, or anything that reads at an offset (a file on disk), so that
//! playing the middle of a four-hour recording reads its header, the chunk
//! length fields and the chunks asked for, not the whole file.

use std::borrow::Cow;

use super::crec::{CrecError, MAX_CHUNK_LEN};

/// Largest piece a reader asks for: a whole chunk with its length field
/// (the header read, at most 256 KiB, is smaller).
pub(crate) const MAX_READ: usize = 4 + MAX_CHUNK_LEN;

/// Random access to bytes kept elsewhere.
pub trait ReadAt: Send + Sync {
    /// Length in bytes, fixed for the reader's life (a file still being
    /// written is read as it was when opened).
    fn size(&self) -> u64;
    /// Fills `buf` with the bytes from `offset`.
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()>;
}

impl ReadAt for Vec<u8> {
    fn size(&self) -> u64 {
        self.len() as u64
    }

    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        let part = start
            .checked_add(buf.len())
            .and_then(|end| self.get(start..end))
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::UnexpectedEof))?;
        buf.copy_from_slice(part);
        Ok(())
    }
}

/// The bytes of one CREC file.
#[derive(Clone, Copy)]
pub(crate) enum Source<'a> {
    /// All of it in memory.
    Bytes(&'a [u8]),
    /// Read piece by piece.
    At(&'a dyn ReadAt),
}

impl std::fmt::Debug for Source<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Bytes(b) => write!(f, "Bytes({} bytes)", b.len()),
            Source::At(r) => write!(f, "At({} bytes)", r.size()),
        }
    }
}

impl<'a> Source<'a> {
    /// Total length.
    pub(crate) fn len(&self) -> usize {
        match self {
            Source::Bytes(b) => b.len(),
            Source::At(r) => usize::try_from(r.size()).unwrap_or(usize::MAX),
        }
    }

    /// `len` bytes from `offset`: borrowed from memory, or read. Refuses,
    /// before allocating anything, a piece past the end or larger than any
    /// read a reader makes ([`MAX_READ`]).
    pub(crate) fn get(&self, offset: usize, len: usize) -> Result<Cow<'a, [u8]>, CrecError> {
        let past_end = offset.checked_add(len).is_none_or(|end| end > self.len());
        if past_end || len > MAX_READ {
            let size = self.len();
            return Err(CrecError::Read(format!(
                "{len} bytes at {offset}: past the end ({size} bytes) or more than {MAX_READ}"
            )));
        }
        match self {
            Source::Bytes(b) => offset
                .checked_add(len)
                .and_then(|end| b.get(offset..end))
                .map(Cow::Borrowed)
                .ok_or_else(|| CrecError::Read(format!("{len} bytes at {offset}: past the end"))),
            Source::At(r) => {
                let mut buf = vec![0; len];
                r.read_exact_at(offset as u64, &mut buf)
                    .map_err(|e| CrecError::Read(format!("{len} bytes at {offset}: {e}")))?;
                Ok(Cow::Owned(buf))
            }
        }
    }
}
