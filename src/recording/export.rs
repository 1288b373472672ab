//! Reading a recording back: unwrap its DEK, decrypt its chunks, and turn
//! them into a 2-channel WAV (caller left, callee right). Nothing decrypted
//! is written anywhere but the caller's output.

use super::crec_reader::{Completeness, CrecReader};
use super::crec_source::ReadAt;
use super::service::Recorder;
use super::wav;
use crate::keys::{DekBinding, KeyError, WrappedDek};
use crate::media::g711::Codec;
use crate::store::RecordingRow;

/// Why a recording cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// No recording or call with that id has a recording.
    #[error("no recording for '{0}'")]
    NotFound(String),
    /// The recording existed and has been erased (its tombstone remains).
    #[error("recording {id} was erased at {} ({reason})", at.to_rfc3339())]
    Erased {
        /// The recording.
        id: String,
        /// When.
        at: crate::clock::Timestamp,
        /// `expired` or `subject-request`.
        reason: String,
    },
    /// The epoch key that wrapped the recording's key no longer exists:
    /// the recording has been erased cryptographically.
    #[error("recording {0} is erased: its epoch key {1} has been destroyed")]
    KeyDestroyed(String, String),
    /// The row is not what a recording row should be.
    #[error("recording {0} is corrupt in the database: {1}")]
    Corrupt(String, String),
    /// Keys failed (wrong master key, corrupt KEK, DEK that does not unwrap).
    #[error("keys: {0}")]
    Keys(#[from] crate::keys::KeyError),
    /// The blob failed to read.
    #[error("blob: {0}")]
    Blob(#[from] super::blob::BlobError),
    /// The file failed authentication or is malformed.
    #[error("recording file: {0}")]
    Crec(#[from] super::crec::CrecError),
    /// The database failed.
    #[error("store: {0}")]
    Store(#[from] crate::store::StoreError),
}

/// A decrypted recording, held in memory only.
pub struct Decrypted {
    /// The recording's row.
    pub row: RecordingRow,
    /// G.711 bytes of the caller's side.
    pub caller: Vec<u8>,
    /// G.711 bytes of the callee's side.
    pub callee: Vec<u8>,
    /// Their codec.
    pub codec: Codec,
    /// Whether the file ended properly or was cut short (a crash).
    pub completeness: Completeness,
}

/// A recording's encrypted file with its unwrapped DEK, ready to be read
/// (all of it with [`Recorder::decrypt`], or by range for playback). The
/// file is read piece by piece as chunks are needed; nothing decrypted is
/// kept here.
pub struct Sealed {
    /// The recording's row.
    pub row: RecordingRow,
    /// The recording id as written in the file's header.
    pub recording_id: uuid::Uuid,
    /// The encrypted CREC file, read at offsets on demand.
    pub file: Box<dyn ReadAt>,
    /// Its data key (zeroized on drop, redacted in `Debug`).
    pub dek: crate::keys::Dek,
}

impl Sealed {
    /// Opens the file: checks its header and key commitment, indexes its
    /// chunks. Decrypts nothing yet.
    pub fn reader(&self) -> Result<CrecReader<'_>, super::crec::CrecError> {
        CrecReader::open_at(&*self.file, self.recording_id, &self.dek)
    }
}

/// The G.711 codec a recording's header names.
pub fn codec_of(reader: &CrecReader<'_>) -> Codec {
    reader.header().codec
}

impl Recorder {
    /// Finds the recording `id` (a recording id, or a call id), unwraps its
    /// DEK and reads its encrypted file. Tells an erased recording (by its
    /// tombstone, or by its destroyed epoch key) from one that never was.
    pub async fn open_sealed(&self, id: &str) -> Result<Sealed, ExportError> {
        let Some(row) = self.store.find_recording(id).await? else {
            return Err(match self.store.find_tombstone(id).await? {
                Some(t) => ExportError::Erased {
                    id: t.recording_id,
                    at: t.erased_at,
                    reason: t.reason,
                },
                None => ExportError::NotFound(id.to_owned()),
            });
        };
        self.unseal(row)
    }

    /// As [`Recorder::open_sealed`], for a recording row already found.
    pub fn unseal(&self, row: RecordingRow) -> Result<Sealed, ExportError> {
        let recording_id = uuid::Uuid::parse_str(&row.id)
            .map_err(|e| ExportError::Corrupt(row.id.clone(), e.to_string()))?;
        let binding = DekBinding {
            call_id: row.call_id.clone(),
            recording_id,
            epoch_id: row.epoch_id.clone(),
        };
        let wrapped = WrappedDek(row.wrapped_dek.clone());
        let dek = match self.keys.unwrap_dek(&row.epoch_id, &wrapped, &binding) {
            Ok(dek) => dek,
            Err(KeyError::KekNotFound { .. }) => {
                return Err(ExportError::KeyDestroyed(
                    row.id.clone(),
                    row.epoch_id.clone(),
                ));
            }
            Err(e) => return Err(e.into()),
        };
        let file = self.blobs.open(&row.blob)?;
        Ok(Sealed {
            row,
            recording_id,
            file,
            dek,
        })
    }

    /// Decrypts the recording `id` (a recording id, or a call id).
    pub async fn decrypt(&self, id: &str) -> Result<Decrypted, ExportError> {
        let sealed = self.open_sealed(id).await?;
        let reader = sealed.reader()?;
        let audio = Audio::read(&reader)?;
        drop(reader);
        Ok(Decrypted {
            row: sealed.row,
            caller: audio.caller,
            callee: audio.callee,
            codec: audio.codec,
            completeness: audio.completeness,
        })
    }
}

/// A recording's audio, decrypted: both channels on one timeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Audio {
    /// G.711 bytes of the caller's side.
    pub caller: Vec<u8>,
    /// G.711 bytes of the callee's side.
    pub callee: Vec<u8>,
    /// Their codec.
    pub codec: Codec,
    /// Whether the file ended properly or was cut short (a crash).
    pub completeness: Completeness,
}

impl Audio {
    /// Decrypts every chunk of `reader` in order, or fails with the first
    /// damage found (a chunk that does not authenticate, or one the index
    /// refused: see [`super::crec_index`]). Each chunk is placed at its own
    /// authenticated media start, after silence for a gap (none expected);
    /// the index guarantees chunks never overlap and end within
    /// [`super::crec::MAX_RECORDING_MS`], so the channels grow only with
    /// authenticated audio, up to that bound.
    pub fn read(reader: &CrecReader<'_>) -> Result<Audio, super::crec::CrecError> {
        let codec = codec_of(reader);
        let (mut caller, mut callee) = (Vec::new(), Vec::new());
        let mut chunks = reader.chunks();
        for chunk in chunks.by_ref() {
            let chunk = chunk?;
            let at = chunk
                .media_start_ms
                .saturating_mul(super::crec::SAMPLES_PER_MS);
            let at = usize::try_from(at).unwrap_or(usize::MAX);
            if at < caller.len() {
                // The index refuses overlapping chunks; kept as a check.
                return Err(super::crec::CrecError::MediaStartOutOfRange {
                    index: chunk.index,
                    media_start_ms: chunk.media_start_ms,
                    earliest_ms: (caller.len() as u64).div_ceil(super::crec::SAMPLES_PER_MS),
                    latest_ms: super::crec::MAX_RECORDING_MS,
                });
            }
            caller.resize(at, codec.silence());
            callee.resize(at, codec.silence());
            for frame in chunk.plaintext.chunks_exact(2) {
                if let [a, b] = frame {
                    caller.push(*a);
                    callee.push(*b);
                }
            }
        }
        Ok(Audio {
            caller,
            callee,
            codec,
            completeness: chunks.status(),
        })
    }

    /// The audio as a 16-bit PCM stereo WAV file (caller left).
    pub fn to_wav(&self) -> Vec<u8> {
        wav_file(&self.caller, &self.callee, self.codec)
    }
}

/// Two channels of G.711 as a whole 16-bit stereo WAV file (caller left).
/// Its `data` length is exact: a recording is at most
/// [`super::crec::MAX_RECORDING_MS`] long, which fits 32 bits.
fn wav_file(caller: &[u8], callee: &[u8], codec: Codec) -> Vec<u8> {
    let pcm = wav::interleave_pcm16(caller, callee, codec);
    let len = u32::try_from(pcm.len()).unwrap_or(wav::UNKNOWN_SIZE);
    let mut out = Vec::with_capacity(pcm.len().saturating_add(wav::HEADER_LEN));
    out.extend_from_slice(&wav::wav_header(2, crate::media::g711::SAMPLE_RATE, len));
    out.extend_from_slice(&pcm);
    out
}

impl Decrypted {
    /// The recording as a 16-bit PCM stereo WAV file (caller left).
    pub fn to_wav(&self) -> Vec<u8> {
        wav_file(&self.caller, &self.callee, self.codec)
    }

    /// Audio length in milliseconds.
    pub fn duration_ms(&self) -> u64 {
        self.caller.len() as u64 / super::crec::SAMPLES_PER_MS
    }
}
