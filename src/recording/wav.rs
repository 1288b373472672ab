//! WAV (RIFF, 16-bit PCM) export of recordings, plus a Goertzel tone
//! detector used by tests to check what ended up in each channel.
//!
//! Sizes: the RIFF and `data` chunk sizes are written up front, so a
//! streaming writer must know the total length. When it is unknown (live
//! export), [`WavEncoder`] writes `0xFFFFFFFF` for both sizes; most readers
//! (ffmpeg, sox, libsndfile) then read until end of file. A recording longer
//! than a 32-bit `data` size allows (about 37 h in 16-bit stereo at 8 kHz,
//! 32,000 bytes a second) would be written the same way; recordings are at
//! most 25 h ([`super::crec::MAX_RECORDING_MS`]), so theirs always fits.

use thiserror::Error;

use crate::media::g711::Codec;

pub use crate::media::wav::{HEADER_LEN, UNKNOWN_SIZE, wav_header};

/// Errors of [`WavEncoder`].
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum WavError {
    /// More audio was supplied than the declared length.
    #[error("audio exceeds the declared length of {declared} data bytes")]
    TooLong {
        /// Declared `data` size in bytes.
        declared: u32,
    },
}

/// Decodes two G.711 planes to interleaved little-endian 16-bit stereo,
/// left = caller, right = callee. A shorter plane is padded with silence.
pub fn interleave_pcm16(caller: &[u8], callee: &[u8], codec: Codec) -> Vec<u8> {
    let frames = caller.len().max(callee.len());
    let silence = codec.silence();
    let mut out = Vec::with_capacity(frames * 4);
    for i in 0..frames {
        for plane in [caller, callee] {
            let byte = plane.get(i).copied().unwrap_or(silence);
            out.extend_from_slice(&codec.decode(byte).to_le_bytes());
        }
    }
    out
}

/// Streaming stereo WAV writer: the header comes with the first output,
/// then each block's decoded samples.
#[derive(Debug, Clone)]
pub struct WavEncoder {
    codec: Codec,
    declared: u32,
    written: u64,
    header_done: bool,
}

impl WavEncoder {
    /// A writer for `total_samples` per channel, or an unknown length
    /// (`None`, sizes written as `0xFFFFFFFF`).
    pub fn new(codec: Codec, total_samples: Option<u64>) -> Self {
        let declared = total_samples
            .and_then(|n| n.checked_mul(4))
            .and_then(|n| u32::try_from(n).ok())
            .filter(|&n| n != UNKNOWN_SIZE && n <= UNKNOWN_SIZE - 36)
            .unwrap_or(UNKNOWN_SIZE);
        Self {
            codec,
            declared,
            written: 0,
            header_done: false,
        }
    }

    /// The `data` size declared in the header.
    pub fn declared_data_len(&self) -> u32 {
        self.declared
    }

    fn header_once(&mut self, out: &mut Vec<u8>) {
        if !self.header_done {
            self.header_done = true;
            out.extend_from_slice(&wav_header(
                2,
                crate::media::g711::SAMPLE_RATE,
                self.declared,
            ));
        }
    }

    /// WAV bytes for one block (two planes of G.711 bytes). Fails, writing
    /// nothing, if it would exceed a known declared length.
    pub fn encode(&mut self, caller: &[u8], callee: &[u8]) -> Result<Vec<u8>, WavError> {
        let pcm = interleave_pcm16(caller, callee, self.codec);
        let total = self.written + pcm.len() as u64;
        if self.declared != UNKNOWN_SIZE && total > u64::from(self.declared) {
            return Err(WavError::TooLong {
                declared: self.declared,
            });
        }
        let mut out = Vec::with_capacity(HEADER_LEN + pcm.len());
        self.header_once(&mut out);
        out.extend_from_slice(&pcm);
        self.written = total;
        Ok(out)
    }

    /// Final bytes: the header if nothing was written yet, and silence up
    /// to a known declared length so the file matches its header.
    pub fn finish(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        self.header_once(&mut out);
        if self.declared != UNKNOWN_SIZE {
            let missing = u64::from(self.declared).saturating_sub(self.written) / 4;
            let plane = vec![self.codec.silence(); missing as usize];
            out.extend_from_slice(&interleave_pcm16(&plane, &plane, self.codec));
            self.written += missing * 4;
        }
        out
    }
}

/// Goertzel power of `freq` Hz in `samples` (sampled at `sample_rate`).
/// Compare powers at a few frequencies to find the dominant tone.
pub fn goertzel_power(samples: &[i16], sample_rate: u32, freq: f64) -> f64 {
    let w = 2.0 * std::f64::consts::PI * freq / f64::from(sample_rate);
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &x in samples {
        let s0 = f64::from(x) + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    s1 * s1 + s2 * s2 - coeff * s1 * s2
}

/// Splits interleaved little-endian 16-bit stereo into (left, right).
pub fn deinterleave_pcm16(data: &[u8]) -> (Vec<i16>, Vec<i16>) {
    let mut left = Vec::with_capacity(data.len() / 4);
    let mut right = Vec::with_capacity(data.len() / 4);
    for frame in data.chunks_exact(4) {
        left.push(i16::from_le_bytes([frame[0], frame[1]]));
        right.push(i16::from_le_bytes([frame[2], frame[3]]));
    }
    (left, right)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(freq: f64, n: usize) -> Vec<i16> {
        (0..n)
            .map(|i| {
                (8000.0 * (2.0 * std::f64::consts::PI * freq * i as f64 / 8000.0).sin()) as i16
            })
            .collect()
    }

    #[test]
    fn header_fields() {
        let h = wav_header(2, 8000, 400);
        assert_eq!(&h[0..4], b"RIFF");
        assert_eq!(u32::from_le_bytes([h[4], h[5], h[6], h[7]]), 436);
        assert_eq!(&h[8..16], b"WAVEfmt ");
        assert_eq!(u16::from_le_bytes([h[22], h[23]]), 2);
        assert_eq!(u32::from_le_bytes([h[24], h[25], h[26], h[27]]), 8000);
        assert_eq!(u32::from_le_bytes([h[28], h[29], h[30], h[31]]), 32000);
        assert_eq!(u16::from_le_bytes([h[32], h[33]]), 4);
        assert_eq!(u16::from_le_bytes([h[34], h[35]]), 16);
        assert_eq!(&h[36..40], b"data");
        assert_eq!(u32::from_le_bytes([h[40], h[41], h[42], h[43]]), 400);
        let u = wav_header(2, 8000, UNKNOWN_SIZE);
        assert_eq!(&u[4..8], &[0xff; 4]);
        assert_eq!(&u[40..44], &[0xff; 4]);
    }

    #[test]
    fn interleaves_left_caller_right_callee() {
        let out = interleave_pcm16(&[0x00, 0xFF], &[0x80], Codec::Pcmu);
        let (l, r) = deinterleave_pcm16(&out);
        assert_eq!(l, vec![-32124, 0]);
        assert_eq!(r, vec![32124, 0]);
    }

    #[test]
    fn encoder_known_length() {
        let mut enc = WavEncoder::new(Codec::Pcma, Some(3));
        let mut file = enc.encode(&[0xD5, 0x55], &[0x55, 0xD5]).unwrap();
        assert_eq!(file.len(), HEADER_LEN + 8);
        assert_eq!(
            enc.encode(&[0; 2], &[0; 2]),
            Err(WavError::TooLong { declared: 12 })
        );
        file.extend(enc.finish());
        assert_eq!(file.len(), HEADER_LEN + 12);
        assert_eq!(&file[40..44], &12u32.to_le_bytes());
        let (l, r) = deinterleave_pcm16(&file[HEADER_LEN..]);
        assert_eq!(l, vec![8, -8, 8]);
        assert_eq!(r, vec![-8, 8, 8]);
    }

    #[test]
    fn encoder_unknown_length() {
        let mut enc = WavEncoder::new(Codec::Pcmu, None);
        assert_eq!(enc.declared_data_len(), UNKNOWN_SIZE);
        let file = enc.encode(&[0xFF; 10], &[0xFF; 10]).unwrap();
        assert_eq!(&file[4..8], &[0xff; 4]);
        assert_eq!(file.len(), HEADER_LEN + 40);
        assert!(enc.finish().is_empty());
        let huge = WavEncoder::new(Codec::Pcmu, Some(u64::from(u32::MAX)));
        assert_eq!(huge.declared_data_len(), UNKNOWN_SIZE);
    }

    #[test]
    fn goertzel_finds_the_tone() {
        let x = tone(440.0, 1600);
        assert!(goertzel_power(&x, 8000, 440.0) > 100.0 * goertzel_power(&x, 8000, 880.0));
        let y = tone(880.0, 1600);
        assert!(goertzel_power(&y, 8000, 880.0) > 100.0 * goertzel_power(&y, 8000, 440.0));
    }
}
