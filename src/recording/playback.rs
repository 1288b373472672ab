//! Streaming a recording as a WAV file, with random access by byte range.
//!
//! Pure: works on an open [`CrecReader`]. [`WavLayout::new`] maps the WAV
//! file a full export would produce (44-byte header, then 16-bit stereo
//! PCM, caller left; or one side alone, mono: [`Channels`]) onto the
//! recording's chunks from their index, then
//! decrypts one chunk, the last, to authenticate the file's length.
//! [`RangeReader`] then yields the bytes of any `[start, end)` of that file,
//! decrypting only the chunks that overlap the range, one at a time, so a
//! Range request in the middle of a long recording costs one or two chunk
//! decryptions (and the last chunk's) and memory for a chunk or two.
//!
//! The layout is the same as [`super::export::Audio::to_wav`]: each chunk's
//! audio at its media start, and silence for a gap between chunks (none
//! expected).
//!
//! **Nothing unauthenticated is sent.** The index is built from clear fields
//! a changed file may have forged, bounded by [`super::crec_index`] but not
//! authenticated. Every byte a [`RangeReader`] yields is authentic anyway,
//! because of the format's rule that a chunk's place on the timeline is its
//! own media start (chunks never overlap):
//! - a chunk's bytes: yielded only once the chunk decrypts, which
//!   authenticates its media start (its place) and its length;
//! - a gap's silence: yielded only once the chunks on both sides of it
//!   decrypt, since their authenticated ends are the gap's ends;
//! - the header, and the length ([`WavLayout::len`], the `Content-Length`):
//!   from the last chunk, which [`WavLayout::new`] decrypts;
//! - an empty chunk (no bytes) is authenticated when a range reads through
//!   it, so reading the whole file authenticates every chunk, as the export
//!   does: a changed file never plays to the end as if it were whole.
//!
//! A chunk that does not authenticate ends the range with its error; what
//! came before it was authentic. A recording cut short (a crash, or a last
//! chunk whose length runs past the end of the file) is laid out up to its
//! last complete chunk, as a full export reads it; [`WavLayout::is_complete`]
//! tells. Damage the index already knows of (a chunk whose clear fields are
//! out of bounds) fails [`WavLayout::new`] itself.

use super::crec::{CrecError, SAMPLES_PER_MS};
use super::crec_reader::{Chunk, CrecReader};
use super::wav;
use crate::media::g711::{Codec, SAMPLE_RATE};

/// Which side(s) of the call a WAV carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Channels {
    /// Stereo: the caller left, the callee right.
    #[default]
    Both,
    /// Mono: the caller alone.
    Caller,
    /// Mono: the callee alone.
    Callee,
}

impl Channels {
    /// `caller`, `callee` or `both`, as `?channels=` names them.
    pub fn from_name(name: &str) -> Option<Channels> {
        match name {
            "both" => Some(Channels::Both),
            "caller" => Some(Channels::Caller),
            "callee" => Some(Channels::Callee),
            _ => None,
        }
    }

    /// The name `?channels=` takes.
    pub fn as_str(self) -> &'static str {
        match self {
            Channels::Both => "both",
            Channels::Caller => "caller",
            Channels::Callee => "callee",
        }
    }

    fn count(self) -> u16 {
        match self {
            Channels::Both => 2,
            Channels::Caller | Channels::Callee => 1,
        }
    }

    /// Bytes of PCM per frame (one 16-bit sample per channel).
    fn frame_bytes(self) -> u64 {
        u64::from(self.count()) * 2
    }
}
/// Most bytes of silence in one piece: a long gap is sent in pieces.
const SILENCE_PIECE: u64 = 64 * 1024;
/// Bytes of the WAV header.
const HEADER_LEN: u64 = wav::HEADER_LEN as u64;

/// What fills one stretch of the WAV's data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fill {
    /// Silence on both channels: a gap (none expected) before chunk
    /// `after`, following chunk `before` if there is one. Both are
    /// authenticated before the silence is sent.
    Gap { before: Option<usize>, after: usize },
    /// The audio of chunk `index`.
    Chunk(usize),
}

/// One stretch of the WAV file's data, in file offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Segment {
    fill: Fill,
    /// Offset in the WAV file of its first byte.
    start: u64,
    /// Offset just after its last byte.
    end: u64,
}

/// Where every byte of a recording's WAV comes from.
#[derive(Debug, Clone)]
pub struct WavLayout {
    codec: Codec,
    channels: Channels,
    header: [u8; wav::HEADER_LEN],
    segments: Vec<Segment>,
    len: u64,
    /// The last chunk, decrypted to authenticate the length; kept so that a
    /// range that reaches it does not decrypt it again.
    final_chunk: Option<Chunk>,
}

/// The WAV file offset of a sample position, with `frame` bytes a frame.
/// Positions are bounded by the index (at most 25 h × 8000), so this cannot
/// overflow; saturating anyway.
fn offset_of(sample: u64, frame: u64) -> u64 {
    sample.saturating_mul(frame).saturating_add(HEADER_LEN)
}

impl WavLayout {
    /// Lays out the recording `reader` opened and authenticates its length
    /// by decrypting its last chunk (one decryption). Fails with the first
    /// damage known: the last chunk does not authenticate, the index
    /// stopped at a damaged chunk, or data follows the chunk marked last.
    pub fn new(reader: &CrecReader<'_>, codec: Codec) -> Result<WavLayout, CrecError> {
        WavLayout::of_channels(reader, codec, Channels::Both)
    }

    /// As [`WavLayout::new`], for the WAV of `channels`: stereo, or one
    /// side alone as a mono file.
    pub fn of_channels(
        reader: &CrecReader<'_>,
        codec: Codec,
        channels: Channels,
    ) -> Result<WavLayout, CrecError> {
        let frame = channels.frame_bytes();
        let offset_of = |sample| offset_of(sample, frame);
        let count = reader.chunk_count();
        let mut segments = Vec::with_capacity(count.saturating_mul(2));
        let mut end_sample = 0;
        for index in 0..count {
            let info = reader
                .chunk_info(index)
                .ok_or(CrecError::NoSuchChunk(index))?;
            if info.start_sample() > end_sample {
                let before = index.checked_sub(1);
                segments.push(Segment {
                    fill: Fill::Gap {
                        before,
                        after: index,
                    },
                    start: offset_of(end_sample),
                    end: offset_of(info.start_sample()),
                });
            }
            segments.push(Segment {
                fill: Fill::Chunk(index),
                start: offset_of(info.start_sample()),
                end: offset_of(info.end_sample()),
            });
            end_sample = info.end_sample();
        }
        let final_chunk = match count.checked_sub(1) {
            Some(last) => Some(reader.decrypt_chunk(last)?),
            None => None,
        };
        if let Some(damage) = reader.index_damage() {
            return Err(damage.clone());
        }
        let last_flag = final_chunk.as_ref().is_some_and(|c| c.last);
        if last_flag && reader.has_bytes_after_index() {
            return Err(CrecError::DataAfterLastChunk);
        }
        let len = offset_of(end_sample);
        let data_len = len.saturating_sub(HEADER_LEN);
        let declared = u32::try_from(data_len).unwrap_or(wav::UNKNOWN_SIZE);
        Ok(WavLayout {
            codec,
            channels,
            header: wav::wav_header(channels.count(), SAMPLE_RATE, declared),
            segments,
            len,
            final_chunk,
        })
    }

    /// Total length of the WAV file in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the file is only a header (a recording with no audio).
    pub fn is_empty(&self) -> bool {
        self.len <= HEADER_LEN
    }

    /// Whether the recording ended properly: its last chunk carries the
    /// last flag. False for a recording cut short.
    pub fn is_complete(&self) -> bool {
        self.final_chunk.as_ref().is_some_and(|c| c.last)
    }

    /// Audio length in milliseconds.
    pub fn duration_ms(&self) -> u64 {
        self.len.saturating_sub(HEADER_LEN) / self.channels.frame_bytes() / SAMPLES_PER_MS
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
        let next = self.segments.partition_point(|s| s.end <= start);
        RangeReader {
            layout: self,
            reader,
            pos: start.min(end),
            end,
            next,
            held: None,
            failed: false,
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
    /// The chunk decrypted last, so that a gap and the chunk after it cost
    /// one decryption.
    held: Option<Chunk>,
    /// An error was yielded: nothing more is.
    failed: bool,
}

impl RangeReader<'_, '_, '_> {
    /// Chunk `index`, authenticated: from the layout, held, or decrypted.
    fn authentic(&mut self, index: usize) -> Result<&Chunk, CrecError> {
        let layout = self.layout;
        if let Some(c) = layout.final_chunk.as_ref().filter(|c| c.index == index) {
            return Ok(c);
        }
        if self.held.as_ref().is_none_or(|c| c.index != index) {
            let chunk = self.reader.decrypt_chunk(index)?;
            // Only the final chunk may be marked last (handled above).
            if chunk.last {
                return Err(CrecError::DataAfterLastChunk);
            }
            self.held = Some(chunk);
        }
        self.held.as_ref().ok_or(CrecError::NoSuchChunk(index))
    }

    /// The bytes `[self.pos, to)` of segment `seg`, authenticated.
    fn render(&mut self, seg: Segment, to: u64) -> Result<Vec<u8>, CrecError> {
        let codec = self.layout.codec;
        let from = self.pos.saturating_sub(seg.start);
        let to = to.saturating_sub(seg.start);
        match seg.fill {
            Fill::Gap { before, after } => {
                if let Some(before) = before {
                    self.authentic(before)?;
                }
                self.authentic(after)?;
                // Every sample of silence is the same two bytes; segments
                // start on a frame, so the byte's parity picks which.
                let sample = codec.decode(codec.silence()).to_le_bytes();
                Ok((from..to)
                    .map(|o| if o % 2 == 0 { sample[0] } else { sample[1] })
                    .collect())
            }
            Fill::Chunk(index) => {
                let chunk = self.authentic(index)?;
                let (caller, callee): (Vec<u8>, Vec<u8>) = chunk
                    .plaintext
                    .chunks_exact(2)
                    .filter_map(|f| match f {
                        [a, b] => Some((*a, *b)),
                        _ => None,
                    })
                    .unzip();
                let pcm = match self.layout.channels {
                    Channels::Both => wav::interleave_pcm16(&caller, &callee, codec),
                    Channels::Caller => mono_pcm16(&caller, codec),
                    Channels::Callee => mono_pcm16(&callee, codec),
                };
                let piece = usize::try_from(from)
                    .ok()
                    .zip(usize::try_from(to).ok())
                    .and_then(|(a, b)| pcm.get(a..b));
                // An authenticated chunk has exactly the length laid out.
                piece.map(<[u8]>::to_vec).ok_or_else(|| {
                    CrecError::Read(format!("chunk {index}: audio shorter than laid out"))
                })
            }
        }
    }
}

impl Iterator for RangeReader<'_, '_, '_> {
    type Item = Result<Vec<u8>, CrecError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        if self.pos < HEADER_LEN && self.pos < self.end {
            let to = self.end.min(HEADER_LEN);
            let piece = usize::try_from(self.pos)
                .ok()
                .zip(usize::try_from(to).ok())
                .and_then(|(a, b)| self.layout.header.get(a..b))
                .map(<[u8]>::to_vec)
                .unwrap_or_default();
            self.pos = to;
            return Some(Ok(piece));
        }
        // Past the segments the position has left behind. An empty chunk
        // has no bytes, but a range that reads through it (or to the end
        // of the file, where empty chunks sit at the end) authenticates it:
        // a whole-file read then vouches for every chunk, as the export
        // does.
        while let Some(passed) = self
            .layout
            .segments
            .get(self.next)
            .filter(|s| s.end <= self.pos)
        {
            if let Fill::Chunk(index) = passed.fill
                && passed.start == passed.end
                && let Err(e) = self.authentic(index)
            {
                self.failed = true;
                return Some(Err(e));
            }
            self.next += 1;
        }
        if self.pos >= self.end {
            return None;
        }
        let seg = *self.layout.segments.get(self.next)?;
        let mut to = self.end.min(seg.end);
        if matches!(seg.fill, Fill::Gap { .. }) {
            to = to.min(self.pos.saturating_add(SILENCE_PIECE));
        }
        match self.render(seg, to) {
            Ok(piece) => {
                self.pos = to;
                Some(Ok(piece))
            }
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

/// One side's G.711 as 16-bit little-endian PCM.
fn mono_pcm16(side: &[u8], codec: Codec) -> Vec<u8> {
    side.iter()
        .flat_map(|b| codec.decode(*b).to_le_bytes())
        .collect()
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
