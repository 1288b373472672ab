//! The WAV container (RIFF, 16-bit PCM): its canonical 44-byte header.
//! The announcement is read from a WAV file ([`super::announcement`]);
//! recordings are exported as WAV (`crate::recording::wav`).

/// Size of the canonical WAV header.
pub const HEADER_LEN: usize = 44;
/// Size value meaning "unknown / until end of file".
pub const UNKNOWN_SIZE: u32 = 0xFFFF_FFFF;

/// A 44-byte header for 16-bit PCM with `data_len` bytes of samples.
/// `data_len == UNKNOWN_SIZE` also makes the RIFF size `UNKNOWN_SIZE`.
pub fn wav_header(channels: u16, sample_rate: u32, data_len: u32) -> [u8; HEADER_LEN] {
    let block_align = channels.saturating_mul(2);
    let byte_rate = sample_rate.saturating_mul(u32::from(block_align));
    let riff_len = if data_len == UNKNOWN_SIZE {
        UNKNOWN_SIZE
    } else {
        data_len.saturating_add(36)
    };
    let mut h = [0u8; HEADER_LEN];
    h[0..4].copy_from_slice(b"RIFF");
    h[4..8].copy_from_slice(&riff_len.to_le_bytes());
    h[8..12].copy_from_slice(b"WAVE");
    h[12..16].copy_from_slice(b"fmt ");
    h[16..20].copy_from_slice(&16u32.to_le_bytes());
    h[20..22].copy_from_slice(&1u16.to_le_bytes()); // PCM
    h[22..24].copy_from_slice(&channels.to_le_bytes());
    h[24..28].copy_from_slice(&sample_rate.to_le_bytes());
    h[28..32].copy_from_slice(&byte_rate.to_le_bytes());
    h[32..34].copy_from_slice(&block_align.to_le_bytes());
    h[34..36].copy_from_slice(&16u16.to_le_bytes());
    h[36..40].copy_from_slice(b"data");
    h[40..44].copy_from_slice(&data_len.to_le_bytes());
    h
}
