//! Tests of the chunk index's bounds: every clear field a writer could not
//! have produced stops the index, with an error naming the chunk, before
//! anything uses it; the chunks before it still read.

use crate::media::g711::Codec;
use uuid::Uuid;

use super::super::crec::{
    CrecError, CrecHeader, CrecWriter, MAX_CHUNKS, MAX_RECORDING_MS, SAMPLES_PER_MS,
};
use super::super::crec_reader::{Completeness, CrecReader};
use super::super::crec_source::{MAX_READ, Source};
use crate::keys::Dek;

const ID: u128 = 77;

fn dek() -> Dek {
    Dek::from_bytes(&mut [7; 32])
}

fn header() -> CrecHeader {
    CrecHeader {
        recording_id: Uuid::from_u128(ID),
        call_id: "cal_i".into(),
        epoch_id: "ep-i".into(),
        codec: Codec::Pcmu,
        sample_rate: 8000,
        channels: 2,
        created_ms: 0,
    }
}

/// A file of chunks `(media_start_ms, samples)`, the last one marked last;
/// and the header's length. Fixed salt and prefix (tests only: never reuse
/// them under one DEK for real), so all files share one header.
fn file(parts: &[(u64, usize)]) -> (Vec<u8>, usize) {
    let (mut w, mut bytes) =
        CrecWriter::with_randomness(&header(), &dek(), [1; 32], [2; 7]).unwrap();
    let head = bytes.len();
    for (i, (ms, samples)) in parts.iter().enumerate() {
        let plain = vec![0x55; samples * 2];
        bytes.extend(w.seal_chunk(*ms, &plain, i + 1 == parts.len()).unwrap());
    }
    (bytes, head)
}

/// Every item the chunk iterator yields: `Ok(index)` or the error.
fn items(bytes: &[u8]) -> Vec<Result<usize, CrecError>> {
    let d = dek();
    let r = CrecReader::open(bytes, Uuid::from_u128(ID), &d).unwrap();
    r.chunks().map(|c| c.map(|c| c.index)).collect()
}

#[test]
fn a_media_start_past_the_longest_recording_stops_the_index() {
    let (bytes, _) = file(&[(0, 80), (MAX_RECORDING_MS + 1, 80)]);
    let got = items(&bytes);
    assert!(matches!(got[0], Ok(0)), "{got:?}");
    assert!(
        matches!(
            got[1],
            Err(CrecError::MediaStartOutOfRange {
                index: 1,
                media_start_ms,
                earliest_ms: 10,
                latest_ms: MAX_RECORDING_MS,
            }) if media_start_ms == MAX_RECORDING_MS + 1
        ),
        "{got:?}"
    );
    assert_eq!(got.len(), 2);
    // The largest possible value too: nothing multiplies it.
    let (bytes, _) = file(&[(u64::MAX, 1)]);
    assert!(matches!(
        items(&bytes)[..],
        [Err(CrecError::MediaStartOutOfRange { index: 0, .. })]
    ));
}

#[test]
fn a_chunk_starting_inside_the_previous_ones_audio_stops_the_index() {
    // Chunk 0 is 2.5 ms long: chunk 1 may start at 3 ms, not at 2.
    let (bytes, _) = file(&[(0, 20), (2, 8)]);
    let got = items(&bytes);
    assert!(
        matches!(
            got[..],
            [
                Ok(0),
                Err(CrecError::MediaStartOutOfRange {
                    index: 1,
                    media_start_ms: 2,
                    earliest_ms: 3,
                    ..
                })
            ]
        ),
        "{got:?}"
    );
    let (bytes, _) = file(&[(0, 20), (3, 8)]);
    assert!(matches!(items(&bytes)[..], [Ok(0), Ok(1)]));
}

#[test]
fn audio_ending_past_the_longest_recording_stops_the_index() {
    let (bytes, _) = file(&[(MAX_RECORDING_MS - 1, 16)]);
    let got = items(&bytes);
    assert!(
        matches!(
            got[..],
            [Err(CrecError::TimelineTooLong { index: 0, end_ms, limit_ms: MAX_RECORDING_MS })]
                if end_ms == MAX_RECORDING_MS + 1
        ),
        "{got:?}"
    );
    // Ending exactly at the limit is fine.
    let (bytes, _) = file(&[(MAX_RECORDING_MS - 2, 16)]);
    assert!(matches!(items(&bytes)[..], [Ok(0)]));
}

#[test]
fn a_length_past_the_end_of_the_file_is_truncation_not_damage() {
    let (mut bytes, head) = file(&[(0, 80), (10, 80)]);
    let second = head + (bytes.len() - head) / 2;
    bytes[second..second + 4].copy_from_slice(&(1u32 << 20).to_be_bytes());
    let d = dek();
    let r = CrecReader::open(&bytes, Uuid::from_u128(ID), &d).unwrap();
    assert_eq!(r.chunk_count(), 1);
    assert!(r.index_damage().is_none());
    assert!(r.has_bytes_after_index());
    assert_eq!(r.read_all().unwrap().1, Completeness::Truncated);
}

#[test]
fn the_index_stops_at_max_chunks() {
    // Fake chunks: plausible clear fields, no valid tag. The scan reads
    // only clear fields, so it indexes them until the limit.
    let (mut bytes, head) = file(&[(0, 0)]);
    let tag = bytes[head + 16..head + 24].to_vec();
    bytes.truncate(head);
    let d = dek();
    for i in 0..=MAX_CHUNKS as u32 {
        bytes.extend_from_slice(&36u32.to_be_bytes());
        bytes.extend_from_slice(&i.to_be_bytes());
        bytes.extend_from_slice(&0u64.to_be_bytes());
        bytes.extend_from_slice(&tag);
        bytes.extend_from_slice(&[0; 16]);
    }
    let r = CrecReader::open(&bytes, Uuid::from_u128(ID), &d).unwrap();
    assert_eq!(r.chunk_count(), MAX_CHUNKS);
    assert!(matches!(
        r.index_damage(),
        Some(CrecError::TooManyChunks { limit: MAX_CHUNKS })
    ));
}

#[test]
fn max_chunks_leaves_room_for_the_writers_cadence() {
    // The writer seals a chunk every CHUNK_MEDIA of audio and every
    // FLUSH_EVERY of wall time at most; a recording's wall time is its
    // media time (the aligner's clock is the packets' arrival).
    let ms = |d: std::time::Duration| d.as_millis() as u64;
    let most = MAX_RECORDING_MS / ms(crate::recording::CHUNK_MEDIA)
        + MAX_RECORDING_MS / ms(crate::recording::FLUSH_EVERY)
        + 1;
    assert!(most * 2 < MAX_CHUNKS as u64, "{most} chunks");
    // And the longest recording's WAV has an exact 32-bit length.
    assert!(44 + MAX_RECORDING_MS * SAMPLES_PER_MS * 4 < u64::from(u32::MAX));
}

#[test]
fn reads_are_bounded_before_anything_is_allocated() {
    let bytes = vec![0u8; 100];
    let s = Source::Bytes(&bytes);
    assert!(s.get(90, 10).is_ok());
    assert!(matches!(s.get(91, 10), Err(CrecError::Read(_))));
    assert!(matches!(s.get(usize::MAX, 2), Err(CrecError::Read(_))));

    /// Claims to be 1 TiB; any read beyond what a reader needs would be a bug.
    struct Huge;
    impl super::super::crec_source::ReadAt for Huge {
        fn size(&self) -> u64 {
            1 << 40
        }
        fn read_exact_at(&self, _: u64, buf: &mut [u8]) -> std::io::Result<()> {
            buf.fill(0);
            Ok(())
        }
    }
    let s = Source::At(&Huge);
    assert!(s.get(0, MAX_READ).is_ok());
    assert!(matches!(s.get(0, MAX_READ + 1), Err(CrecError::Read(_))));
    assert!(matches!(s.get(0, usize::MAX), Err(CrecError::Read(_))));
    // A file of zeros is no CREC file, however long it claims to be.
    let d = dek();
    assert!(matches!(
        CrecReader::open_at(&Huge, Uuid::from_u128(ID), &d),
        Err(CrecError::BadMagic)
    ));
}
