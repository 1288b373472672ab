//! ITU-T G.711 μ-law (PCMU) and A-law (PCMA) codecs, by bit arithmetic
//! (the classic Sun reference algorithm). Decoding yields 16-bit linear PCM.

/// Audio codec of a recorded call, as negotiated in SDP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// G.711 μ-law, static RTP payload type 0.
    Pcmu,
    /// G.711 A-law, static RTP payload type 8.
    Pcma,
}

/// Sample rate of G.711 audio (Hz).
pub const SAMPLE_RATE: u32 = 8000;

impl Codec {
    /// Its name in SDP and in stored records: `PCMU` or `PCMA`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pcmu => "PCMU",
            Self::Pcma => "PCMA",
        }
    }

    /// The codec named `name` (`PCMU`/`PCMA`, as [`Codec::as_str`] writes).
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "PCMU" => Some(Self::Pcmu),
            "PCMA" => Some(Self::Pcma),
            _ => None,
        }
    }

    /// Static RTP payload type of the codec (0 or 8).
    pub fn payload_type(self) -> u8 {
        match self {
            Self::Pcmu => 0,
            Self::Pcma => 8,
        }
    }

    /// The codec for a static payload type (0 or 8), if any.
    pub fn from_payload_type(pt: u8) -> Option<Self> {
        match pt {
            0 => Some(Self::Pcmu),
            8 => Some(Self::Pcma),
            _ => None,
        }
    }

    /// Encoded bytes per sample (1 for G.711).
    pub fn bytes_per_sample(self) -> usize {
        1
    }

    /// The encoded byte of digital silence (μ-law 0xFF, A-law 0xD5).
    pub fn silence(self) -> u8 {
        match self {
            Self::Pcmu => 0xFF,
            Self::Pcma => 0xD5,
        }
    }

    /// Decodes one encoded byte to 16-bit linear PCM.
    pub fn decode(self, byte: u8) -> i16 {
        match self {
            Self::Pcmu => ulaw_to_linear(byte),
            Self::Pcma => alaw_to_linear(byte),
        }
    }

    /// Encodes one 16-bit linear PCM sample.
    pub fn encode(self, sample: i16) -> u8 {
        match self {
            Self::Pcmu => linear_to_ulaw(sample),
            Self::Pcma => linear_to_alaw(sample),
        }
    }
}

/// μ-law byte → 16-bit linear PCM (range ±32124).
pub fn ulaw_to_linear(byte: u8) -> i16 {
    let u = !byte;
    let t = ((i32::from(u & 0x0f) << 3) + 0x84) << ((u & 0x70) >> 4);
    let v = if u & 0x80 != 0 { 0x84 - t } else { t - 0x84 };
    // |v| <= 32124 by construction.
    v as i16
}

/// A-law byte → 16-bit linear PCM (range ±32256).
pub fn alaw_to_linear(byte: u8) -> i16 {
    let a = byte ^ 0x55;
    let mut t = i32::from(a & 0x0f) << 4;
    let seg = (a & 0x70) >> 4;
    match seg {
        0 => t += 8,
        1 => t += 0x108,
        _ => t = (t + 0x108) << (seg - 1),
    }
    let v = if a & 0x80 != 0 { t } else { -t };
    v as i16
}

/// Index of the first segment end `>= value`, or 8 if beyond the last.
fn segment(value: i32, ends: &[i32; 8]) -> u8 {
    ends.iter().position(|&end| value <= end).unwrap_or(8) as u8
}

/// 16-bit linear PCM → μ-law byte.
pub fn linear_to_ulaw(sample: i16) -> u8 {
    const ENDS: [i32; 8] = [0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF];
    let mut pcm = i32::from(sample) >> 2;
    let mask: u8 = if pcm < 0 {
        pcm = -pcm;
        0x7F
    } else {
        0xFF
    };
    pcm = pcm.min(8159) + (0x84 >> 2);
    let seg = segment(pcm, &ENDS);
    if seg >= 8 {
        return 0x7F ^ mask;
    }
    let mantissa = ((pcm >> (seg + 1)) & 0x0f) as u8;
    ((seg << 4) | mantissa) ^ mask
}

/// 16-bit linear PCM → A-law byte.
pub fn linear_to_alaw(sample: i16) -> u8 {
    const ENDS: [i32; 8] = [0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF];
    let mut pcm = i32::from(sample) >> 3;
    let mask: u8 = if pcm >= 0 {
        0xD5
    } else {
        pcm = -pcm - 1;
        0x55
    };
    let seg = segment(pcm, &ENDS);
    if seg >= 8 {
        return 0x7F ^ mask;
    }
    let shift = if seg < 2 { 1 } else { seg };
    let mantissa = ((pcm >> shift) & 0x0f) as u8;
    ((seg << 4) | mantissa) ^ mask
}

/// Decodes a buffer of encoded bytes to linear PCM.
pub fn decode_all(codec: Codec, bytes: &[u8]) -> Vec<i16> {
    bytes.iter().map(|&b| codec.decode(b)).collect()
}

/// Encodes a buffer of linear PCM samples.
pub fn encode_all(codec: Codec, samples: &[i16]) -> Vec<u8> {
    samples.iter().map(|&s| codec.encode(s)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_values() {
        assert_eq!(ulaw_to_linear(0xFF), 0);
        assert_eq!(ulaw_to_linear(0x7F), 0);
        assert_eq!(ulaw_to_linear(0x00), -32124);
        assert_eq!(ulaw_to_linear(0x80), 32124);
        assert_eq!(alaw_to_linear(0xD5), 8);
        assert_eq!(alaw_to_linear(0x55), -8);
        assert_eq!(alaw_to_linear(0xAA), 32256);
        assert_eq!(alaw_to_linear(0x2A), -32256);
        assert_eq!(linear_to_ulaw(0), 0xFF);
        assert_eq!(linear_to_alaw(0), 0xD5);
        assert_eq!(Codec::Pcmu.silence(), linear_to_ulaw(0));
        assert_eq!(Codec::Pcma.silence(), linear_to_alaw(0));
    }

    #[test]
    fn encode_is_left_inverse_of_decode() {
        for codec in [Codec::Pcmu, Codec::Pcma] {
            for b in 0..=255u8 {
                let x = codec.decode(b);
                assert_eq!(codec.decode(codec.encode(x)), x, "{codec:?} {b:#04x}");
            }
        }
    }

    #[test]
    fn payload_types_round_trip() {
        for codec in [Codec::Pcmu, Codec::Pcma] {
            assert_eq!(Codec::from_payload_type(codec.payload_type()), Some(codec));
        }
        assert_eq!(Codec::from_payload_type(101), None);
    }

    proptest! {
        #[test]
        fn round_trip_is_close(x in any::<i16>()) {
            for codec in [Codec::Pcmu, Codec::Pcma] {
                let y = i32::from(codec.decode(codec.encode(x)));
                let x = i32::from(x);
                // Logarithmic quantisation: error within ~1/16 of the
                // magnitude, plus a small absolute step near zero and
                // the clipping range at full scale.
                let tol = (x.abs() / 16).max(16) + if x.abs() > 32000 { 700 } else { 0 };
                prop_assert!((x - y).abs() <= tol, "{:?}: {} -> {}", codec, x, y);
            }
        }
    }
}
