//! Streaming a recording as a WAV file, with random access by byte range.
//!
//! Pure: works on an open [`CrecReader`]. [`WavLayout::new`] maps the WAV
//! file a full export would produce (44-byte header, then 16-bit stereo
//! PCM, caller left) onto the recording's chunks from their length fields
//! and clear media starts alone, without decrypting anything. [`RangeReader`]
//! then yields the bytes of any `[start, end)` of that file, decrypting only
//! the chunks that overlap the range, one at a time, so a Range request in
//! the middle of a long recording costs one or two chunk decryptions and
//! memory for one chunk.
//!
//! The layout is the same as [`super::export::Decrypted::to_wav`]: a gap
//! between chunks (none expected) becomes silence on both channels.

use super::crec::{CHUNK_FIELDS_LEN, CrecError, TAG_LEN};
use super::crec_reader::CrecReader;
use super::g711::{Codec, SAMPLE_RATE};
use super::wav;

/// Bytes of PCM per stereo frame (two 16-bit samples).
const FRAME_BYTES: u64 = 4;
/// Bytes of a chunk that are not plaintext: its length field, its clear
/// fields and the AEAD tag.
const CHUNK_OVERHEAD: usize = 4 + CHUNK_FIELDS_LEN + TAG_LEN;

/// What fills one stretch of the WAV's data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fill {
    /// Silence on both channels (a gap between chunks).
    Silence,
    /// The audio of chunk `index`.
    Chunk(usize),
}

/// One stretch of the WAV file's data, in file offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Segment {
    fill: Fill,
    /// Offset in the WAV file of its first byte.
    start: u64,
    /// Its length in bytes (a whole number of frames).
    len: u64,
}

/// Where every byte of a recording's WAV comes from.
#[derive(Debug, Clone)]
pub struct WavLayout {
    codec: Codec,
    header: [u8; wav::HEADER_LEN],
    segments: Vec<Segment>,
    len: u64,
}

impl WavLayout {
    /// Lays out the recording `reader` opened, from its chunk index alone.
    pub fn new(reader: &CrecReader<'_>, codec: Codec) -> WavLayout {
        let mut segments = Vec::with_capacity(reader.chunk_count());
        let mut frames: u64 = 0;
        let mut pos = wav::HEADER_LEN as u64;
        let mut push = |fill, n: u64, pos: &mut u64| {
            let len = n * FRAME_BYTES;
            segments.push(Segment {
                fill,
                start: *pos,
                len,
            });
            *pos += len;
        };
        for index in 0..reader.chunk_count() {
            let Some(info) = reader.chunk_info(index) else {
                break;
            };
            let at = info
                .media_start_ms
                .saturating_mul(u64::from(SAMPLE_RATE) / 1000);
            if at > frames {
                push(Fill::Silence, at - frames, &mut pos);
                frames = at;
            }
            // Plaintext is interleaved caller/callee G.711: 2 bytes a frame.
            let n = (info.len.saturating_sub(CHUNK_OVERHEAD) / 2) as u64;
            push(Fill::Chunk(index), n, &mut pos);
            frames += n;
        }
        let data_len = pos - wav::HEADER_LEN as u64;
        let declared = u32::try_from(data_len).unwrap_or(wav::UNKNOWN_SIZE);
        WavLayout {
            codec,
            header: wav::wav_header(2, SAMPLE_RATE, declared),
            segments,
            len: pos,
        }
    }

    /// Total length of the WAV file in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the file is only a header (a recording with no audio).
    pub fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }

    /// Audio length in milliseconds.
    pub fn duration_ms(&self) -> u64 {
        (self.len - wav::HEADER_LEN as u64) / FRAME_BYTES * 1000 / u64::from(SAMPLE_RATE)
    }

    /// The bytes `[start, end)` of the file (clamped to its length), as
    /// pieces decrypted on demand.
    pub fn range<'l, 'r, 'a>(
        &'l self,
        reader: &'r CrecReader<'a>,
        start: u64,
        end: u64,
    ) -> RangeReader<'l, 'r, 'a> {
        let end = end.min(self.len);
        let next = self.segments.partition_point(|s| s.start + s.len <= start);
        RangeReader {
            layout: self,
            reader,
            pos: start.min(end),
            end,
            next,
        }
    }
}

/// Iterator over the pieces of a byte range of a recording's WAV; see
/// [`WavLayout::range`]. Stops after the first error.
#[derive(Debug)]
pub struct RangeReader<'l, 'r, 'a> {
    layout: &'l WavLayout,
    reader: &'r CrecReader<'a>,
    /// Next file offset to produce.
    pos: u64,
    /// End of the range (exclusive).
    end: u64,
    /// Next segment to look at.
    next: usize,
}

impl RangeReader<'_, '_, '_> {
    /// The whole PCM of one segment.
    fn render(&self, seg: &Segment) -> Result<Vec<u8>, CrecError> {
        let codec = self.layout.codec;
        match seg.fill {
            Fill::Silence => {
                let n = usize::try_from(seg.len / FRAME_BYTES).unwrap_or(0);
                let quiet = vec![codec.silence(); n];
                Ok(wav::interleave_pcm16(&quiet, &quiet, codec))
            }
            Fill::Chunk(index) => {
                let chunk = self.reader.decrypt_chunk(index)?;
                let (caller, callee): (Vec<u8>, Vec<u8>) = chunk
                    .plaintext
                    .chunks_exact(2)
                    .map(|f| (f[0], f[1]))
                    .unzip();
                Ok(wav::interleave_pcm16(&caller, &callee, codec))
            }
        }
    }
}

impl Iterator for RangeReader<'_, '_, '_> {
    type Item = Result<Vec<u8>, CrecError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.pos >= self.end {
            return None;
        }
        let header_len = wav::HEADER_LEN as u64;
        if self.pos < header_len {
            let to = self.end.min(header_len);
            let piece = self.layout.header[self.pos as usize..to as usize].to_vec();
            self.pos = to;
            return Some(Ok(piece));
        }
        let seg = *self.layout.segments.get(self.next)?;
        self.next += 1;
        match self.render(&seg) {
            Ok(pcm) => {
                let from = (self.pos - seg.start) as usize;
                let to = (self.end.min(seg.start + seg.len) - seg.start) as usize;
                self.pos = seg.start + to as u64;
                Some(Ok(pcm.get(from..to).unwrap_or_default().to_vec()))
            }
            Err(e) => {
                self.pos = self.end;
                Some(Err(e))
            }
        }
    }
}

/// A byte range asked for with an HTTP `Range` header (RFC 9110 §14.1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    /// `bytes=a-b` or `bytes=a-`: from `a` to `b` inclusive (or the end).
    From(u64, Option<u64>),
    /// `bytes=-n`: the last `n` bytes.
    Suffix(u64),
}

impl ByteRange {
    /// Parses a `Range` header value. `None` for anything this server does
    /// not serve partially (other units, several ranges, malformed): the
    /// caller then ignores the header and sends the whole file, as RFC 9110
    /// allows.
    pub fn parse(value: &str) -> Option<ByteRange> {
        let spec = value.trim().strip_prefix("bytes=")?.trim();
        if spec.contains(',') {
            return None;
        }
        let (a, b) = spec.split_once('-')?;
        let num = |s: &str| -> Option<u64> {
            let s = s.trim();
            (!s.is_empty() && s.bytes().all(|c| c.is_ascii_digit()))
                .then(|| s.parse().ok())
                .flatten()
        };
        match (a.trim().is_empty(), b.trim().is_empty()) {
            (true, false) => num(b).map(ByteRange::Suffix),
            (false, true) => num(a).map(|a| ByteRange::From(a, None)),
            (false, false) => {
                let (a, b) = (num(a)?, num(b)?);
                (a <= b).then_some(ByteRange::From(a, Some(b)))
            }
            (true, true) => None,
        }
    }

    /// The `[start, end)` this range means in a file of `len` bytes, or
    /// `None` if it is unsatisfiable (416).
    pub fn resolve(self, len: u64) -> Option<(u64, u64)> {
        match self {
            ByteRange::From(a, _) if a >= len => None,
            ByteRange::From(a, b) => Some((a, b.map_or(len, |b| b.saturating_add(1).min(len)))),
            ByteRange::Suffix(0) => None,
            ByteRange::Suffix(n) => Some((len.saturating_sub(n), len)),
        }
    }
}

#[cfg(test)]
#[path = "playback_tests.rs"]
mod tests;
