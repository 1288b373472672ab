//! The recording announcement (`[media] announcement`): a WAV file loaded
//! once at start-up and played by each call's relay to both parties after
//! the answer, before they hear each other
//! ([`crate::media::MediaHandle::play_then_bridge`]).
//!
//! Accepted: RIFF/WAVE, PCM 16-bit, mono, 8000 Hz, 1 sample to 30 s.
//! Other rates are refused rather than resampled (convert the file first,
//! e.g. `sox in.wav -r 8000 -c 1 -b 16 out.wav`). The samples are kept as
//! linear PCM so each call encodes them in its own codec (PCMU or PCMA).

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::media::g711::{Codec, SAMPLE_RATE};

/// Samples per RTP packet: 20 ms at 8 kHz.
pub const SAMPLES_PER_PACKET: usize = 160;

/// Longest announcement accepted.
pub const MAX_DURATION: Duration = Duration::from_secs(30);

/// Most samples accepted (30 s at 8 kHz).
const MAX_SAMPLES: usize = 30 * SAMPLE_RATE as usize;

/// Largest file read: 30 s of audio plus generous room for metadata chunks.
const MAX_FILE_LEN: u64 = 4 * 1024 * 1024;

/// `WAVE_FORMAT_PCM`.
const FORMAT_PCM: u16 = 1;
/// `WAVE_FORMAT_EXTENSIBLE` (the real format is in the sub-format GUID).
const FORMAT_EXTENSIBLE: u16 = 0xFFFE;

/// Why an announcement file was refused.
#[derive(Debug, thiserror::Error)]
pub enum AnnouncementProblem {
    /// The file could not be read (missing, permissions).
    #[error("cannot read the file: {0}")]
    Read(#[source] std::io::Error),
    /// The file is larger than any accepted announcement can be.
    #[error("file too large ({0} bytes; at most 30 s of 8 kHz mono audio is accepted)")]
    TooLarge(u64),
    /// No RIFF/WAVE header, or its chunks are cut short.
    #[error("not a WAV file ({0})")]
    NotWav(&'static str),
    /// The audio is not integer PCM (e.g. compressed or floating point).
    #[error("not PCM audio (format tag {0:#06x}); only 16-bit PCM is accepted")]
    NotPcm(u16),
    /// More than one channel.
    #[error("{0} channels; only mono is accepted")]
    NotMono(u16),
    /// Another sample rate than 8000 Hz.
    #[error("sample rate {0} Hz; only 8000 Hz is accepted (resample the file first)")]
    WrongRate(u32),
    /// Another sample size than 16 bits.
    #[error("{0} bits per sample; only 16-bit is accepted")]
    WrongBits(u16),
    /// The `data` chunk holds no sample.
    #[error("no audio (empty data chunk)")]
    Empty,
    /// Longer than [`MAX_DURATION`].
    #[error("too long ({0} ms; at most 30 s)")]
    TooLong(u64),
}

/// An announcement that could not be loaded: names the configuration key,
/// the file and the reason.
#[derive(Debug, thiserror::Error)]
#[error("media.announcement: {}: {problem}", path.display())]
pub struct AnnouncementError {
    /// The configured path.
    pub path: PathBuf,
    /// What is wrong with it.
    #[source]
    pub problem: AnnouncementProblem,
}

/// The announcement's audio: 16-bit linear PCM, mono, 8 kHz, shared by all
/// calls.
#[derive(Clone, PartialEq, Eq)]
pub struct Announcement {
    samples: Arc<[i16]>,
}

impl fmt::Debug for Announcement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Announcement")
            .field("samples", &self.samples.len())
            .field("duration", &self.duration())
            .finish()
    }
}

impl Announcement {
    /// Reads and checks the WAV file at `path` (see the module docs).
    pub fn load(path: &Path) -> Result<Announcement, AnnouncementError> {
        let error = |problem| AnnouncementError {
            path: path.to_path_buf(),
            problem,
        };
        let file = std::fs::File::open(path).map_err(|e| error(AnnouncementProblem::Read(e)))?;
        let mut bytes = Vec::new();
        file.take(MAX_FILE_LEN + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| error(AnnouncementProblem::Read(e)))?;
        if bytes.len() as u64 > MAX_FILE_LEN {
            let len = std::fs::metadata(path).map_or(bytes.len() as u64, |m| m.len());
            return Err(error(AnnouncementProblem::TooLarge(len)));
        }
        Announcement::from_wav(&bytes).map_err(error)
    }

    /// Parses a WAV file's bytes (see the module docs for what is accepted).
    pub fn from_wav(bytes: &[u8]) -> Result<Announcement, AnnouncementProblem> {
        let data = pcm_data(bytes)?;
        let samples: Vec<i16> = data
            .chunks_exact(2)
            .map(|s| i16::from_le_bytes([s[0], s[1]]))
            .collect();
        Announcement::from_samples(samples)
    }

    /// An announcement of 8 kHz samples; refused when empty or longer than
    /// [`MAX_DURATION`].
    pub fn from_samples(
        samples: impl Into<Arc<[i16]>>,
    ) -> Result<Announcement, AnnouncementProblem> {
        let samples = samples.into();
        if samples.is_empty() {
            return Err(AnnouncementProblem::Empty);
        }
        if samples.len() > MAX_SAMPLES {
            let ms = samples.len() as u64 * 1000 / u64::from(SAMPLE_RATE);
            return Err(AnnouncementProblem::TooLong(ms));
        }
        Ok(Announcement { samples })
    }

    /// The samples (16-bit linear PCM at 8 kHz).
    #[must_use]
    pub fn samples(&self) -> &[i16] {
        &self.samples
    }

    /// How long it plays.
    #[must_use]
    pub fn duration(&self) -> Duration {
        Duration::from_micros(self.samples.len() as u64 * 1_000_000 / u64::from(SAMPLE_RATE))
    }

    /// How many 20 ms RTP packets it takes (the last one padded with
    /// silence).
    #[must_use]
    pub fn packets(&self) -> usize {
        self.samples.len().div_ceil(SAMPLES_PER_PACKET)
    }

    /// The whole announcement encoded in `codec`, padded with the codec's
    /// silence to [`Announcement::packets`] × [`SAMPLES_PER_PACKET`] bytes.
    #[must_use]
    pub fn encode(&self, codec: Codec) -> Box<[u8]> {
        let mut out = Vec::with_capacity(self.packets() * SAMPLES_PER_PACKET);
        out.extend(self.samples.iter().map(|&s| codec.encode(s)));
        out.resize(self.packets() * SAMPLES_PER_PACKET, codec.silence());
        out.into_boxed_slice()
    }
}

/// Little-endian `u16` at `at`.
fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

/// Little-endian `u32` at `at`.
fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Checks the format of a WAV file and returns its `data` chunk's bytes.
/// A `data` size beyond the end of the file (streamed WAVs write
/// `0xFFFFFFFF`) is read up to the end of the file.
fn pcm_data(bytes: &[u8]) -> Result<&[u8], AnnouncementProblem> {
    use AnnouncementProblem as P;
    if bytes.get(0..4) != Some(b"RIFF") || bytes.get(8..12) != Some(b"WAVE") {
        return Err(P::NotWav("no RIFF/WAVE header"));
    }
    let mut at = 12;
    let mut format_seen = false;
    while let (Some(id), Some(len)) = (bytes.get(at..at + 4), u32_at(bytes, at + 4)) {
        let body = at + 8;
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        match id {
            b"fmt " => {
                let fmt = bytes
                    .get(body..body.saturating_add(len))
                    .ok_or(P::NotWav("fmt chunk cut short"))?;
                check_format(fmt)?;
                format_seen = true;
            }
            b"data" => {
                if !format_seen {
                    return Err(P::NotWav("data chunk before fmt chunk"));
                }
                let end = body.saturating_add(len).min(bytes.len());
                return Ok(&bytes[body..end]);
            }
            _ => {}
        }
        // Chunks are padded to an even length.
        at = body.saturating_add(len).saturating_add(len % 2);
    }
    Err(P::NotWav(if format_seen {
        "no data chunk"
    } else {
        "no fmt chunk"
    }))
}

/// Accepts PCM (plain or extensible), mono, 8000 Hz, 16-bit.
fn check_format(fmt: &[u8]) -> Result<(), AnnouncementProblem> {
    use AnnouncementProblem as P;
    let short = P::NotWav("fmt chunk too short");
    let tag = u16_at(fmt, 0).ok_or(short)?;
    let tag = if tag == FORMAT_EXTENSIBLE {
        // cbSize(2) validBits(2) channelMask(4), then the GUID whose first
        // two bytes are the real format tag.
        u16_at(fmt, 24).ok_or(P::NotWav("extensible fmt chunk too short"))?
    } else {
        tag
    };
    if tag != FORMAT_PCM {
        return Err(P::NotPcm(tag));
    }
    let (Some(channels), Some(rate), Some(bits)) =
        (u16_at(fmt, 2), u32_at(fmt, 4), u16_at(fmt, 14))
    else {
        return Err(P::NotWav("fmt chunk too short"));
    };
    if channels != 1 {
        return Err(P::NotMono(channels));
    }
    if rate != SAMPLE_RATE {
        return Err(P::WrongRate(rate));
    }
    if bits != 16 {
        return Err(P::WrongBits(bits));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::wav::{UNKNOWN_SIZE, wav_header};

    fn wav(channels: u16, rate: u32, samples: &[i16]) -> Vec<u8> {
        let data: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
        let mut file = wav_header(channels, rate, data.len() as u32).to_vec();
        file.extend(data);
        file
    }

    fn tone(n: usize) -> Vec<i16> {
        (0..n)
            .map(|i| ((i * 997) % 20_000) as i16 - 10_000)
            .collect()
    }

    fn problem(bytes: &[u8]) -> AnnouncementProblem {
        Announcement::from_wav(bytes).unwrap_err()
    }

    #[test]
    fn loads_8khz_mono_pcm16() {
        let samples = tone(1600);
        let a = Announcement::from_wav(&wav(1, 8000, &samples)).unwrap();
        assert_eq!(a.samples(), &samples[..]);
        assert_eq!(a.duration(), Duration::from_millis(200));
        assert_eq!(a.packets(), 10);
    }

    #[test]
    fn loads_from_a_file_and_skips_other_chunks() {
        let samples = tone(170);
        let plain = wav(1, 8000, &samples);
        // RIFF header, an odd-sized LIST chunk (padded), then fmt and data.
        let mut file = plain[..12].to_vec();
        file.extend_from_slice(b"LIST");
        file.extend_from_slice(&3u32.to_le_bytes());
        file.extend_from_slice(&[1, 2, 3, 0]);
        file.extend_from_slice(&plain[12..]);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.wav");
        std::fs::write(&path, &file).unwrap();
        let a = Announcement::load(&path).unwrap();
        assert_eq!(a.samples(), &samples[..]);
        assert_eq!(a.packets(), 2);
    }

    #[test]
    fn streamed_data_size_reads_to_end_of_file() {
        let samples = tone(320);
        let mut file = wav(1, 8000, &samples);
        file[40..44].copy_from_slice(&UNKNOWN_SIZE.to_le_bytes());
        file.push(0x7f); // a trailing odd byte is ignored
        let a = Announcement::from_wav(&file).unwrap();
        assert_eq!(a.samples(), &samples[..]);
    }

    #[test]
    fn extensible_pcm_is_accepted() {
        let samples = tone(160);
        let plain = wav(1, 8000, &samples);
        let mut fmt = plain[20..36].to_vec();
        fmt[0..2].copy_from_slice(&FORMAT_EXTENSIBLE.to_le_bytes());
        fmt.extend_from_slice(&22u16.to_le_bytes()); // cbSize
        fmt.extend_from_slice(&16u16.to_le_bytes()); // valid bits
        fmt.extend_from_slice(&4u32.to_le_bytes()); // channel mask
        fmt.extend_from_slice(&1u16.to_le_bytes()); // GUID: PCM …
        fmt.extend_from_slice(&[0; 14]);
        let mut file = b"RIFF\0\0\0\0WAVEfmt ".to_vec();
        file.extend_from_slice(&(fmt.len() as u32).to_le_bytes());
        file.extend(fmt);
        file.extend_from_slice(&plain[36..]);
        assert_eq!(
            Announcement::from_wav(&file).unwrap().samples(),
            &samples[..]
        );
    }

    #[test]
    fn refuses_what_is_not_a_wav() {
        for bytes in [
            &b""[..],
            b"RIFF",
            b"ID3\x03 mp3 data here",
            b"RIFF\0\0\0\0AVI ",
        ] {
            assert!(matches!(problem(bytes), AnnouncementProblem::NotWav(_)));
        }
        let good = wav(1, 8000, &tone(10));
        assert!(matches!(
            problem(&good[..30]),
            AnnouncementProblem::NotWav("fmt chunk cut short")
        ));
        assert!(matches!(
            problem(&good[..36]),
            AnnouncementProblem::NotWav("no data chunk")
        ));
        let mut no_fmt = good[..12].to_vec();
        no_fmt.extend_from_slice(&good[36..]);
        assert!(matches!(
            problem(&no_fmt),
            AnnouncementProblem::NotWav("data chunk before fmt chunk")
        ));
    }

    #[test]
    fn refuses_other_formats_with_their_reason() {
        let samples = tone(160);
        let mut float = wav(1, 8000, &samples);
        float[20..22].copy_from_slice(&3u16.to_le_bytes());
        assert!(matches!(problem(&float), AnnouncementProblem::NotPcm(3)));
        assert!(matches!(
            problem(&wav(2, 8000, &samples)),
            AnnouncementProblem::NotMono(2)
        ));
        assert!(matches!(
            problem(&wav(1, 16000, &samples)),
            AnnouncementProblem::WrongRate(16000)
        ));
        let mut eight_bit = wav(1, 8000, &samples);
        eight_bit[34..36].copy_from_slice(&8u16.to_le_bytes());
        assert!(matches!(
            problem(&eight_bit),
            AnnouncementProblem::WrongBits(8)
        ));
        assert!(matches!(
            problem(&wav(1, 8000, &[])),
            AnnouncementProblem::Empty
        ));
        assert!(matches!(
            problem(&wav(1, 8000, &vec![0; MAX_SAMPLES + 1])),
            AnnouncementProblem::TooLong(30_000)
        ));
        assert!(Announcement::from_wav(&wav(1, 8000, &vec![0; MAX_SAMPLES])).is_ok());
    }

    #[test]
    fn errors_name_the_key_the_path_and_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.wav");
        let e = Announcement::load(&missing).unwrap_err();
        let text = e.to_string();
        assert!(text.starts_with("media.announcement: "), "{text}");
        assert!(text.contains("missing.wav"), "{text}");
        assert!(text.contains("cannot read the file"), "{text}");

        let stereo = dir.path().join("stereo.wav");
        std::fs::write(&stereo, wav(2, 8000, &tone(320))).unwrap();
        let text = Announcement::load(&stereo).unwrap_err().to_string();
        assert!(
            text.contains("stereo.wav") && text.contains("2 channels; only mono"),
            "{text}"
        );

        let big = dir.path().join("big.wav");
        std::fs::write(&big, vec![0u8; MAX_FILE_LEN as usize + 10]).unwrap();
        let e = Announcement::load(&big).unwrap_err();
        assert!(matches!(e.problem, AnnouncementProblem::TooLarge(n) if n == MAX_FILE_LEN + 10));
    }

    #[test]
    fn encodes_padded_to_whole_packets() {
        let samples = tone(170);
        let a = Announcement::from_samples(samples.clone()).unwrap();
        for codec in [Codec::Pcmu, Codec::Pcma] {
            let encoded = a.encode(codec);
            assert_eq!(encoded.len(), 320);
            for (i, s) in samples.iter().enumerate() {
                assert_eq!(encoded[i], codec.encode(*s));
            }
            assert!(encoded[170..].iter().all(|&b| b == codec.silence()));
        }
    }
}
