//! Tests of the WAV layout and of range reads over a CREC file.

use proptest::prelude::*;
use uuid::Uuid;

use super::{ByteRange, Channels, WavLayout};
use crate::keys::Dek;
use crate::media::g711::Codec;
use crate::recording::crec::{self, CrecHeader, CrecWriter};
use crate::recording::crec_reader::CrecReader;
use crate::recording::wav;

const ID: u128 = 42;

fn dek() -> Dek {
    Dek::from_bytes(&mut [9; 32])
}

/// Chunks of `(media_start_ms, frames)`; frame `j` of chunk `i` carries
/// bytes that differ per chunk, frame and side.
fn file(parts: &[(u64, usize)]) -> (Vec<u8>, Vec<u8>) {
    let header = CrecHeader {
        recording_id: Uuid::from_u128(ID),
        call_id: "cal_x".into(),
        epoch_id: "ep-x".into(),
        codec: Codec::Pcmu,
        sample_rate: 8000,
        channels: 2,
        created_ms: 0,
    };
    let (mut w, mut bytes) = CrecWriter::new(&header, &dek()).unwrap();
    // The WAV a full export makes: silence for gaps, then the frames.
    let (mut caller, mut callee) = (Vec::new(), Vec::new());
    for (i, (ms, frames)) in parts.iter().enumerate() {
        let mut plain = Vec::with_capacity(frames * 2);
        for j in 0..*frames {
            plain.push((i * 31 + j) as u8);
            plain.push((i * 17 + j * 3 + 1) as u8);
        }
        while caller.len() < (*ms * 8) as usize {
            caller.push(Codec::Pcmu.silence());
            callee.push(Codec::Pcmu.silence());
        }
        for f in plain.chunks_exact(2) {
            caller.push(f[0]);
            callee.push(f[1]);
        }
        bytes.extend(w.seal_chunk(*ms, &plain, i + 1 == parts.len()).unwrap());
    }
    let pcm = wav::interleave_pcm16(&caller, &callee, Codec::Pcmu);
    let mut full = wav::wav_header(2, 8000, pcm.len() as u32).to_vec();
    full.extend(pcm);
    (bytes, full)
}

/// Ten 2-second chunks, with a 500 ms gap before the eighth.
fn long() -> Vec<(u64, usize)> {
    (0..10u64)
        .map(|i| (i * 2000 + if i >= 7 { 500 } else { 0 }, 16_000))
        .collect()
}

fn read(reader: &CrecReader<'_>, layout: &WavLayout, start: u64, end: u64) -> Vec<u8> {
    layout
        .range(reader, start, end)
        .collect::<Result<Vec<_>, _>>()
        .unwrap()
        .concat()
}

#[test]
fn the_whole_range_is_the_export() {
    let (bytes, full) = file(&long());
    let d = dek();
    let reader = CrecReader::open(&bytes, Uuid::from_u128(ID), &d).unwrap();
    let layout = WavLayout::new(&reader, Codec::Pcmu).unwrap();
    assert_eq!(
        reader.decryptions(),
        1,
        "laying out authenticates the last chunk"
    );
    assert_eq!(layout.len(), full.len() as u64);
    assert_eq!(layout.duration_ms(), 20_500);
    assert!(layout.is_complete());
    assert_eq!(read(&reader, &layout, 0, layout.len()), full);
    assert_eq!(
        reader.decryptions(),
        10,
        "each chunk once: the last is kept"
    );
}

#[test]
fn a_middle_range_decrypts_only_its_chunks() {
    let (bytes, full) = file(&long());
    let d = dek();
    let reader = CrecReader::open(&bytes, Uuid::from_u128(ID), &d).unwrap();
    let layout = WavLayout::new(&reader, Codec::Pcmu).unwrap();
    // 10.5 s to 11.5 s: inside chunk 5 (10 s..12 s) alone.
    let at = |ms: u64| 44 + ms * 32;
    assert_eq!(reader.decryptions(), 1, "the last chunk, for the length");
    let got = read(&reader, &layout, at(10_500), at(11_500));
    assert_eq!(got, full[at(10_500) as usize..at(11_500) as usize]);
    assert_eq!(reader.decryptions(), 2);
    // Across a chunk boundary: two chunks.
    let got = read(&reader, &layout, at(11_900), at(12_100));
    assert_eq!(got, full[at(11_900) as usize..at(12_100) as usize]);
    assert_eq!(reader.decryptions(), 4);
    // Inside the gap: silence, once the chunks on both sides of it
    // authenticate (their ends are the gap's).
    let got = read(&reader, &layout, at(14_100), at(14_400));
    assert_eq!(got, full[at(14_100) as usize..at(14_400) as usize]);
    assert_eq!(reader.decryptions(), 6);
    // Across the gap into the chunk after it: that chunk once.
    let got = read(&reader, &layout, at(14_400), at(14_600));
    assert_eq!(got, full[at(14_400) as usize..at(14_600) as usize]);
    assert_eq!(reader.decryptions(), 8);
    // The header alone (authenticated with the length).
    assert_eq!(read(&reader, &layout, 0, 44), full[..44]);
    assert_eq!(reader.decryptions(), 8);
}

#[test]
fn a_tampered_chunk_fails_the_range_that_needs_it() {
    let (mut bytes, full) = file(&long());
    let d = dek();
    let chunk = |i: usize| {
        let r = CrecReader::open(&bytes, Uuid::from_u128(ID), &d).unwrap();
        r.chunk_info(i).unwrap()
    };
    let five = chunk(5);
    bytes[five.offset + 100] ^= 1; // inside chunk 5's ciphertext
    let reader = CrecReader::open(&bytes, Uuid::from_u128(ID), &d).unwrap();
    let layout = WavLayout::new(&reader, Codec::Pcmu).unwrap();
    let len = layout.len();
    assert_eq!(len, full.len() as u64, "the length is the last chunk's");
    let first: Result<Vec<_>, _> = layout.range(&reader, 0, 1000).collect();
    assert!(first.is_ok(), "the start is intact");
    // The whole file: the authentic pieces, then the error, then nothing.
    let pieces: Vec<_> = layout.range(&reader, 0, len).collect();
    let (good, bad): (Vec<_>, Vec<_>) = pieces.into_iter().partition(Result::is_ok);
    let good: Vec<u8> = good.into_iter().flat_map(Result::unwrap).collect();
    assert_eq!(good, full[..good.len()], "only authentic bytes, in place");
    assert_eq!(
        good.len() as u64,
        44 + 10_000 * 32,
        "everything before chunk 5"
    );
    assert!(matches!(
        bad[..],
        [Err(crec::CrecError::ChunkModified { index: 5 })]
    ));
}

#[test]
fn a_tampered_last_chunk_fails_the_layout() {
    let (mut bytes, _) = file(&long());
    let n = bytes.len();
    bytes[n - 100] ^= 1; // inside the last chunk
    let d = dek();
    let reader = CrecReader::open(&bytes, Uuid::from_u128(ID), &d).unwrap();
    assert!(matches!(
        WavLayout::new(&reader, Codec::Pcmu),
        Err(crec::CrecError::ChunkModified { index: 9 })
    ));
}

#[test]
fn a_forged_gap_is_never_played_as_silence() {
    // Chunk 6 claims to start 300 ms late (12.3 s): that leaves room before
    // chunk 7 (14.5 s), so the index takes it, and the layout has a gap
    // where chunk 6's audio really is.
    let (mut bytes, full) = file(&long());
    let d = dek();
    let six = CrecReader::open(&bytes, Uuid::from_u128(ID), &d)
        .unwrap()
        .chunk_info(6)
        .unwrap();
    bytes[six.offset + 8..six.offset + 16].copy_from_slice(&12_300u64.to_be_bytes());
    let reader = CrecReader::open(&bytes, Uuid::from_u128(ID), &d).unwrap();
    let layout = WavLayout::new(&reader, Codec::Pcmu).unwrap();
    let at = |ms: u64| 44 + ms * 32;
    let gap: Result<Vec<_>, _> = layout.range(&reader, at(12_100), at(12_200)).collect();
    assert!(
        matches!(gap, Err(crec::CrecError::ChunkModified { index: 6 })),
        "{gap:?}"
    );
    // Chunk 7 is authentic and in its place.
    let got = read(&reader, &layout, at(14_600), at(14_700));
    assert_eq!(got, full[at(14_600) as usize..at(14_700) as usize]);
}

/// Found by the `crec_playback` fuzz target: an empty chunk's tag could
/// be changed and the whole file still played as complete (its bytes were
/// all authentic, but the damage went unnoticed).
#[test]
fn reading_through_an_empty_chunk_authenticates_it() {
    let (mut bytes, full) = file(&[(0, 104), (13, 0), (13, 0), (13, 4)]);
    let d = dek();
    let one = CrecReader::open(&bytes, Uuid::from_u128(ID), &d)
        .unwrap()
        .chunk_info(1)
        .unwrap();
    bytes[one.offset + 30] ^= 1; // its tag: it has no ciphertext
    let reader = CrecReader::open(&bytes, Uuid::from_u128(ID), &d).unwrap();
    let layout = WavLayout::new(&reader, Codec::Pcmu).unwrap();
    let pieces: Vec<_> = layout.range(&reader, 0, layout.len()).collect();
    let good: Vec<u8> = pieces
        .iter()
        .filter_map(|p| p.as_ref().ok())
        .flatten()
        .copied()
        .collect();
    assert_eq!(good, full[..good.len()]);
    assert!(
        matches!(
            pieces.last(),
            Some(Err(crec::CrecError::ChunkModified { index: 1 }))
        ),
        "{pieces:?}"
    );
    // A range that does not reach it is whole.
    assert_eq!(read(&reader, &layout, 0, 44 + 400), full[..444]);

    // Found by the fuzz target next: an empty chunk at the very end of the
    // audio (before an empty last chunk) is read through by any range that
    // reaches the end of the file.
    let (mut bytes, full) = file(&[(0, 104), (13, 0), (13, 0)]);
    let one = CrecReader::open(&bytes, Uuid::from_u128(ID), &d)
        .unwrap()
        .chunk_info(1)
        .unwrap();
    bytes[one.offset + 30] ^= 1;
    let reader = CrecReader::open(&bytes, Uuid::from_u128(ID), &d).unwrap();
    let layout = WavLayout::new(&reader, Codec::Pcmu).unwrap();
    assert_eq!(layout.len(), full.len() as u64);
    for start in [0, 44, 400, layout.len() - 1] {
        let pieces: Vec<_> = layout.range(&reader, start, layout.len()).collect();
        assert!(
            matches!(
                pieces.last(),
                Some(Err(crec::CrecError::ChunkModified { index: 1 }))
            ),
            "from {start}: {pieces:?}"
        );
    }
}

#[test]
fn an_empty_recording_is_a_header() {
    let (bytes, full) = file(&[]);
    let d = dek();
    let reader = CrecReader::open(&bytes, Uuid::from_u128(ID), &d).unwrap();
    let layout = WavLayout::new(&reader, Codec::Pcmu).unwrap();
    assert!(layout.is_empty());
    assert_eq!(read(&reader, &layout, 0, u64::MAX), full);
}

#[test]
fn range_headers() {
    use ByteRange::*;
    assert_eq!(ByteRange::parse("bytes=0-99"), Some(From(0, Some(99))));
    assert_eq!(ByteRange::parse("bytes=100-"), Some(From(100, None)));
    assert_eq!(ByteRange::parse("bytes=-500"), Some(Suffix(500)));
    assert_eq!(ByteRange::parse(" bytes= 5 - 9 "), Some(From(5, Some(9))));
    for junk in [
        "bytes=9-5",
        "bytes=0-1,5-9",
        "items=0-9",
        "bytes=-",
        "bytes=a-9",
        "bytes=+1-9",
        "bytes=99999999999999999999999-",
        "",
    ] {
        assert_eq!(ByteRange::parse(junk), None, "{junk}");
    }
    assert_eq!(From(0, Some(99)).resolve(50), Some((0, 50)));
    assert_eq!(From(10, None).resolve(50), Some((10, 50)));
    assert_eq!(From(50, None).resolve(50), None);
    assert_eq!(Suffix(10).resolve(50), Some((40, 50)));
    assert_eq!(Suffix(99).resolve(50), Some((0, 50)));
    assert_eq!(Suffix(0).resolve(50), None);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// Any range is the same bytes as the full file at that offset.
    #[test]
    fn any_range_is_a_slice_of_the_whole(
        chunks in proptest::collection::vec((0usize..900, 0u64..3), 0..6),
        a in 0u64..12_000,
        n in 0u64..6_000,
    ) {
        // Each chunk starts where the previous ends (rounded up to a
        // millisecond), after a gap of 0 to 2 ms.
        let mut parts = Vec::new();
        let mut end_ms = 0;
        for (samples, gap) in chunks {
            let ms = end_ms + gap;
            parts.push((ms, samples));
            end_ms = (ms * 8 + samples as u64).div_ceil(8);
        }
        let (bytes, full) = file(&parts);
        let d = dek();
        let reader = CrecReader::open(&bytes, Uuid::from_u128(ID), &d).unwrap();
        let layout = WavLayout::new(&reader, Codec::Pcmu).unwrap();
        prop_assert_eq!(layout.len(), full.len() as u64);
        let (start, end) = (a.min(layout.len()), (a + n).min(layout.len()));
        let got = read(&reader, &layout, start, end);
        prop_assert_eq!(&got[..], &full[start as usize..end as usize]);
    }
}

/// A file read at offsets that counts what it reads.
struct Counting(Vec<u8>, std::sync::atomic::AtomicU64);

impl crate::recording::crec_source::ReadAt for Counting {
    fn size(&self) -> u64 {
        self.0.len() as u64
    }
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        self.1
            .fetch_add(buf.len() as u64, std::sync::atomic::Ordering::Relaxed);
        self.0.read_exact_at(offset, buf)
    }
}

#[test]
fn read_at_offsets_a_middle_range_reads_little_of_the_file() {
    use crate::recording::crec_source::ReadAt as _;
    let (bytes, full) = file(&long());
    let total = bytes.len() as u64;
    let f = Counting(bytes, Default::default());
    let d = dek();
    let reader = CrecReader::open_at(&f, Uuid::from_u128(ID), &d).unwrap();
    let indexed = f.1.load(std::sync::atomic::Ordering::Relaxed);
    // The header read is capped by the file's size; then 24 bytes a chunk.
    assert!(indexed <= total.min(1 << 18) + 10 * 24, "{indexed}");
    let layout = WavLayout::new(&reader, Codec::Pcmu).unwrap();
    let laid_out = f.1.load(std::sync::atomic::Ordering::Relaxed) - indexed;
    assert!(laid_out < 33_000, "the last chunk alone: {laid_out}");
    let at = |ms: u64| 44 + ms * 32;
    let before = f.1.load(std::sync::atomic::Ordering::Relaxed);
    let got = read(&reader, &layout, at(10_500), at(11_500));
    assert_eq!(got, full[at(10_500) as usize..at(11_500) as usize]);
    let chunk_read = f.1.load(std::sync::atomic::Ordering::Relaxed) - before;
    assert!(
        chunk_read < 33_000,
        "one chunk, not the file: {chunk_read} of {f_len}",
        f_len = f.size()
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// Reading at offsets and reading from memory agree, however the file
    /// was damaged.
    #[test]
    fn read_at_offsets_agrees_with_memory(
        sizes in proptest::collection::vec(0usize..300, 0..4),
        cut in any::<prop::sample::Index>(),
        flip in any::<prop::sample::Index>(),
        damage in 0u8..3,
    ) {
        let parts: Vec<(u64, usize)> = sizes.iter().enumerate().map(|(i, s)| (i as u64 * 40, *s)).collect();
        let (mut bytes, _) = file(&parts);
        match damage {
            0 => bytes.truncate(cut.index(bytes.len() + 1)),
            1 => { let i = flip.index(bytes.len()); bytes[i] ^= 0x40; }
            _ => {}
        }
        let d = dek();
        let id = Uuid::from_u128(ID);
        let mem = CrecReader::open(&bytes, id, &d).and_then(|r| r.read_all());
        let at = CrecReader::open_at(&bytes, id, &d).and_then(|r| r.read_all());
        prop_assert_eq!(format!("{mem:?}"), format!("{at:?}"));
    }
}

#[test]
fn one_side_alone_is_that_channel_of_the_export_as_mono() {
    let (bytes, full) = file(&long());
    let (left, right) = wav::deinterleave_pcm16(&full[44..]);
    let d = dek();
    let reader = CrecReader::open(&bytes, Uuid::from_u128(ID), &d).unwrap();
    for (channels, side) in [(Channels::Caller, &left), (Channels::Callee, &right)] {
        let layout = WavLayout::of_channels(&reader, Codec::Pcmu, channels).unwrap();
        let both = WavLayout::new(&reader, Codec::Pcmu).unwrap();
        assert_eq!(layout.duration_ms(), both.duration_ms());
        assert_eq!(layout.len() - 44, (both.len() - 44) / 2);
        let mono = read(&reader, &layout, 0, layout.len());
        assert_eq!(
            &mono[..44],
            &wav::wav_header(1, 8000, (side.len() * 2) as u32)
        );
        let pcm: Vec<i16> = mono[44..]
            .chunks_exact(2)
            .map(|b| i16::from_le_bytes([b[0], b[1]]))
            .collect();
        assert_eq!(&pcm, side, "{channels:?}");
        // A range in the middle (across the gap) is the same bytes.
        let (a, b) = (30_001 * 2 + 44, 31_000 * 2 + 44 + 9000);
        assert_eq!(read(&reader, &layout, a, b), mono[a as usize..b as usize]);
    }
    assert_eq!(Channels::from_name("caller"), Some(Channels::Caller));
    assert_eq!(Channels::from_name("left"), None);
}
