//! A recording's two-channel waveform, for the support page: per bucket of
//! `bucket_ms`, the smallest and largest sample of each channel (caller,
//! callee), and each channel's stretches of speech from a simple energy
//! voice-activity detector.
//!
//! Pure: works on an open [`CrecReader`] and streams over its chunks, one
//! decrypted chunk in memory at a time, so a request costs one pass over
//! the recording (O(duration)) and memory for one chunk plus the answer
//! (at most [`MAX_BUCKETS`] buckets). Nothing decrypted is written
//! anywhere. Every chunk is authenticated before it counts (the reader's
//! [`CrecReader::chunks`] order and last-chunk rules), so a changed file
//! fails with its damage instead of drawing forged audio.
//!
//! **The detector.** The audio is cut into frames of [`FRAME_MS`]; a frame
//! is speech when its mean energy is above [`SPEECH_RMS`] (about −36 dBFS,
//! well above G.711 line noise, well below speech). A stretch of speech
//! starts at its first speech frame and ends at its last one; pauses up to
//! [`HANGOVER_MS`] between speech frames do not end it (the hangover), so a
//! sentence is one stretch, not one per syllable.

use serde::Serialize;

use super::crec::{CrecError, SAMPLES_PER_MS};
use super::crec_reader::CrecReader;
use crate::media::g711::Codec;

/// Smallest bucket a client may ask for, in milliseconds.
pub const MIN_BUCKET_MS: u64 = 10;
/// Most buckets in one answer.
pub const MAX_BUCKETS: u64 = 100_000;
/// The detector's frame, in milliseconds.
pub const FRAME_MS: u64 = 20;
/// Root-mean-square amplitude (of 32768) above which a frame is speech.
pub const SPEECH_RMS: f64 = 500.0;
/// Longest pause inside one stretch of speech, in milliseconds.
pub const HANGOVER_MS: u64 = 300;

const FRAME_SAMPLES: u64 = FRAME_MS * SAMPLES_PER_MS;

/// Why no waveform was computed.
#[derive(Debug, thiserror::Error)]
pub enum WaveformError {
    /// The client asked for buckets shorter than [`MIN_BUCKET_MS`].
    #[error("bucket_ms must be at least {MIN_BUCKET_MS} (got {0})")]
    BucketTooSmall(u64),
    /// The answer would have more than [`MAX_BUCKETS`] buckets.
    #[error(
        "a {duration_ms} ms recording in {bucket_ms} ms buckets is {buckets} buckets; \
         at most {MAX_BUCKETS} are answered: ask for bucket_ms of at least {least}"
    )]
    TooManyBuckets {
        duration_ms: u64,
        bucket_ms: u64,
        buckets: u64,
        least: u64,
    },
    /// The recording's file could not be read, or is damaged.
    #[error(transparent)]
    Crec(#[from] CrecError),
}

/// One channel's picture: `min[i]`, `max[i]` are the extreme samples of
/// bucket `i` (0 for silence or a gap), `speech` the stretches of speech
/// as `[start_ms, end_ms]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Channel {
    pub min: Vec<i16>,
    pub max: Vec<i16>,
    pub speech: Vec<[u64; 2]>,
}

/// The answer of `GET /v1/recordings/{id}/waveform`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Waveform {
    pub bucket_ms: u64,
    pub duration_ms: u64,
    pub caller: Channel,
    pub callee: Channel,
}

/// Checks `bucket_ms` against a recording of `duration_ms`: at least
/// [`MIN_BUCKET_MS`], at most [`MAX_BUCKETS`] buckets. Answers the number
/// of buckets.
pub fn buckets_for(duration_ms: u64, bucket_ms: u64) -> Result<u64, WaveformError> {
    if bucket_ms < MIN_BUCKET_MS {
        return Err(WaveformError::BucketTooSmall(bucket_ms));
    }
    let buckets = duration_ms.div_ceil(bucket_ms);
    if buckets > MAX_BUCKETS {
        return Err(WaveformError::TooManyBuckets {
            duration_ms,
            bucket_ms,
            buckets,
            least: duration_ms.div_ceil(MAX_BUCKETS).max(MIN_BUCKET_MS),
        });
    }
    Ok(buckets)
}

/// The waveform of the recording `reader` opened, in buckets of
/// `bucket_ms`. The bucket count is checked first, against the length the
/// chunk index claims (bounded, not yet authenticated), so a refused
/// request decrypts nothing; the answer's `duration_ms` is what the
/// authenticated chunks cover.
pub fn compute(
    reader: &CrecReader<'_>,
    codec: Codec,
    bucket_ms: u64,
) -> Result<Waveform, WaveformError> {
    if let Some(damage) = reader.index_damage() {
        return Err(damage.clone().into());
    }
    let claimed_samples = reader
        .chunk_count()
        .checked_sub(1)
        .and_then(|last| reader.chunk_info(last))
        .map_or(0, |c| c.end_sample());
    let buckets = buckets_for(claimed_samples / SAMPLES_PER_MS, bucket_ms)?;
    let mut w = Builder::new(codec, bucket_ms, buckets);
    for chunk in reader.chunks() {
        let chunk = chunk?;
        w.push(
            chunk.media_start_ms.saturating_mul(SAMPLES_PER_MS),
            &chunk.plaintext,
        );
    }
    Ok(w.finish())
}

/// Builds a [`Waveform`] from the recording's audio pushed in order.
#[derive(Debug)]
pub struct Builder {
    decode: [i16; 256],
    bucket_ms: u64,
    bucket_samples: u64,
    /// Next sample position expected.
    pos: u64,
    channels: [Track; 2],
}

impl Builder {
    /// A builder for at most `buckets` buckets of `bucket_ms` (at least
    /// [`MIN_BUCKET_MS`]; see [`buckets_for`]).
    pub fn new(codec: Codec, bucket_ms: u64, buckets: u64) -> Builder {
        let mut decode = [0i16; 256];
        for (byte, d) in (0u8..=255).zip(decode.iter_mut()) {
            *d = codec.decode(byte);
        }
        let buckets = usize::try_from(buckets.min(MAX_BUCKETS)).unwrap_or(0);
        let bucket_ms = bucket_ms.max(MIN_BUCKET_MS);
        Builder {
            decode,
            bucket_ms,
            bucket_samples: bucket_ms * SAMPLES_PER_MS,
            pos: 0,
            channels: [Track::new(buckets), Track::new(buckets)],
        }
    }

    /// Audio from sample position `start`: `frames` is G.711 in pairs
    /// (caller, callee), as a chunk's plaintext holds it. A gap before
    /// `start` is silence; audio before the position already pushed (none
    /// in a well-formed file, where chunks never overlap) is ignored.
    pub fn push(&mut self, start: u64, frames: &[u8]) {
        while self.pos < start {
            let [a, b] = &mut self.channels;
            a.sample(self.pos, self.bucket_samples, 0);
            b.sample(self.pos, self.bucket_samples, 0);
            self.pos += 1;
        }
        let skip = usize::try_from(self.pos - start).unwrap_or(usize::MAX);
        for pair in frames.chunks_exact(2).skip(skip) {
            if let [caller, callee] = pair {
                let [a, b] = &mut self.channels;
                a.sample(
                    self.pos,
                    self.bucket_samples,
                    self.decode[usize::from(*caller)],
                );
                b.sample(
                    self.pos,
                    self.bucket_samples,
                    self.decode[usize::from(*callee)],
                );
            }
            self.pos += 1;
        }
    }

    /// The waveform of what was pushed.
    pub fn finish(self) -> Waveform {
        let duration_ms = self.pos / SAMPLES_PER_MS;
        let buckets = usize::try_from(duration_ms.div_ceil(self.bucket_ms)).unwrap_or(0);
        let [caller, callee] = self.channels;
        Waveform {
            bucket_ms: self.bucket_ms,
            duration_ms,
            caller: caller.finish(buckets, duration_ms),
            callee: callee.finish(buckets, duration_ms),
        }
    }
}

/// One channel being built.
#[derive(Debug)]
struct Track {
    min: Vec<i16>,
    max: Vec<i16>,
    vad: Vad,
}

impl Track {
    fn new(buckets: usize) -> Track {
        Track {
            min: vec![0; buckets],
            max: vec![0; buckets],
            vad: Vad::default(),
        }
    }

    fn sample(&mut self, pos: u64, bucket_samples: u64, s: i16) {
        let b = usize::try_from(pos / bucket_samples).unwrap_or(usize::MAX);
        if let (Some(lo), Some(hi)) = (self.min.get_mut(b), self.max.get_mut(b)) {
            *lo = (*lo).min(s);
            *hi = (*hi).max(s);
        }
        self.vad.sample(s);
    }

    fn finish(mut self, buckets: usize, duration_ms: u64) -> Channel {
        self.min.truncate(buckets);
        self.max.truncate(buckets);
        Channel {
            min: self.min,
            max: self.max,
            speech: self.vad.finish(duration_ms),
        }
    }
}

/// The energy detector of one channel (see the module doc).
#[derive(Debug, Default)]
struct Vad {
    /// Frames completed so far.
    frame: u64,
    /// Samples in the current frame, and their summed squares.
    in_frame: u64,
    energy: f64,
    /// The stretch open: its first and last speech frames.
    open: Option<(u64, u64)>,
    done: Vec<[u64; 2]>,
}

impl Vad {
    fn sample(&mut self, s: i16) {
        let v = f64::from(s);
        self.energy += v * v;
        self.in_frame += 1;
        if self.in_frame == FRAME_SAMPLES {
            self.end_frame();
        }
    }

    fn end_frame(&mut self) {
        // `in_frame` is at most FRAME_SAMPLES (160): exact as a float.
        let mean = self.energy / self.in_frame.max(1) as f64;
        let speech = self.in_frame > 0 && mean > SPEECH_RMS * SPEECH_RMS;
        let f = self.frame;
        self.frame += 1;
        self.in_frame = 0;
        self.energy = 0.0;
        if speech {
            self.open = match self.open {
                Some((first, last)) if (f - last - 1) * FRAME_MS <= HANGOVER_MS => Some((first, f)),
                Some((first, last)) => {
                    self.close(first, last);
                    Some((f, f))
                }
                None => Some((f, f)),
            };
        }
    }

    fn close(&mut self, first: u64, last: u64) {
        self.done
            .push([first * FRAME_MS, (last + 1).saturating_mul(FRAME_MS)]);
    }

    fn finish(mut self, duration_ms: u64) -> Vec<[u64; 2]> {
        if self.in_frame > 0 {
            self.end_frame();
        }
        if let Some((first, last)) = self.open.take() {
            self.close(first, last);
        }
        for s in &mut self.done {
            s[1] = s[1].min(duration_ms);
        }
        self.done
    }
}

#[cfg(test)]
#[path = "waveform_tests.rs"]
mod tests;
