//! Tests of the CREC writer and reader (unit and property tests).

use crate::media::g711::Codec;
use proptest::prelude::*;
use uuid::Uuid;

use super::crec::{
    CrecError, CrecHeader, CrecWriter, MAX_CHUNK_LEN, MAX_CHUNK_PLAINTEXT, MIN_CHUNK_LEN, nonce,
};
use super::crec_reader::{Chunk, Completeness, CrecReader};
use crate::keys::Dek;

fn dek(b: u8) -> Dek {
    Dek::from_bytes(&mut [b; 32])
}

fn header(id: u128) -> CrecHeader {
    CrecHeader {
        recording_id: Uuid::from_u128(id),
        call_id: "call-7f3a".into(),
        epoch_id: "ep-6m-20581".into(),
        codec: Codec::Pcma,
        sample_rate: 8000,
        channels: 2,
        created_ms: 1_790_000_000_000,
    }
}

/// A file: header bytes, each chunk's bytes.
struct File {
    head: Vec<u8>,
    chunks: Vec<Vec<u8>>,
}

impl File {
    fn bytes(&self) -> Vec<u8> {
        let mut v = self.head.clone();
        self.chunks.iter().for_each(|c| v.extend_from_slice(c));
        v
    }
}

fn payloads(sizes: &[usize]) -> Vec<(u64, Vec<u8>)> {
    sizes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            (
                (i as u64) * 2000,
                (0..*n).map(|j| (j * 7 + i) as u8).collect(),
            )
        })
        .collect()
}

fn build(dek: &Dek, id: u128, parts: &[(u64, Vec<u8>)], finish: bool) -> File {
    let (mut w, head) = CrecWriter::new(&header(id), dek).unwrap();
    let chunks = parts
        .iter()
        .enumerate()
        .map(|(i, (ms, p))| {
            w.seal_chunk(*ms, p, finish && i + 1 == parts.len())
                .unwrap()
        })
        .collect();
    File { head, chunks }
}

fn read(bytes: &[u8], id: u128, dek: &Dek) -> Result<(Vec<Chunk>, Completeness), CrecError> {
    CrecReader::open(bytes, Uuid::from_u128(id), dek)?.read_all()
}

fn three() -> (Dek, File) {
    let d = dek(1);
    let f = build(&d, 1, &payloads(&[5, 0, 9]), true);
    (d, f)
}

#[test]
fn round_trip_and_header() {
    let (d, f) = three();
    let bytes = f.bytes();
    assert_eq!(&bytes[..4], b"CREC");
    assert_eq!(bytes[4..6], [1, 1]);
    assert_eq!(bytes[6..22], *Uuid::from_u128(1).as_bytes());
    let r = CrecReader::open(&bytes, Uuid::from_u128(1), &d).unwrap();
    assert_eq!(r.header(), &header(1));
    let (chunks, status) = r.read_all().unwrap();
    assert_eq!(status, Completeness::Complete);
    let want = payloads(&[5, 0, 9]);
    assert_eq!(chunks.len(), 3);
    for (i, c) in chunks.iter().enumerate() {
        assert_eq!(
            (c.index, c.media_start_ms, &c.plaintext),
            (i, want[i].0, &want[i].1)
        );
        assert_eq!(c.last, i == 2);
    }
}

#[test]
fn unfinished_is_truncated_with_all_chunks() {
    let d = dek(2);
    let f = build(&d, 2, &payloads(&[3, 4]), false);
    let (chunks, status) = read(&f.bytes(), 2, &d).unwrap();
    assert_eq!((chunks.len(), status), (2, Completeness::Truncated));
    let empty = build(&d, 2, &[], false);
    assert_eq!(
        read(&empty.bytes(), 2, &d).unwrap(),
        (vec![], Completeness::Truncated)
    );
}

#[test]
fn status_is_truncated_until_exhausted() {
    let (d, f) = three();
    let bytes = f.bytes();
    let r = CrecReader::open(&bytes, Uuid::from_u128(1), &d).unwrap();
    let mut it = r.chunks();
    assert_eq!(it.status(), Completeness::Truncated);
    for _ in 0..3 {
        assert!(it.next().unwrap().is_ok());
    }
    assert_eq!(it.status(), Completeness::Truncated);
    assert!(it.next().is_none());
    assert_eq!(it.status(), Completeness::Complete);
}

#[test]
fn header_errors() {
    let (d, f) = three();
    let good = f.bytes();
    let mut b = good.clone();
    b[0] = b'X';
    assert!(matches!(read(&b, 1, &d), Err(CrecError::BadMagic)));
    assert!(matches!(read(b"RIFF....", 1, &d), Err(CrecError::BadMagic)));
    let mut b = good.clone();
    b[4] = 2;
    assert!(matches!(
        read(&b, 1, &d),
        Err(CrecError::UnsupportedVersion(2))
    ));
    let mut b = good.clone();
    b[5] = 9;
    assert!(matches!(
        read(&b, 1, &d),
        Err(CrecError::UnsupportedSuite(9))
    ));
    // codec byte: after magic, version, suite, id, two length-prefixed ids.
    let codec_at = 4 + 2 + 16 + 2 + "call-7f3a".len() + 2 + "ep-6m-20581".len();
    assert_eq!(good[codec_at], 8);
    let mut b = good.clone();
    b[codec_at] = 3;
    assert!(matches!(read(&b, 1, &d), Err(CrecError::HeaderCorrupt(_))));
    let mut b = good.clone();
    b[codec_at - 1] = 0xff; // invalid UTF-8 in the epoch id
    assert!(matches!(read(&b, 1, &d), Err(CrecError::HeaderCorrupt(_))));
    assert!(matches!(
        read(&good[..30], 1, &d),
        Err(CrecError::HeaderTruncated)
    ));
    assert!(matches!(
        read(b"CR", 1, &d),
        Err(CrecError::HeaderTruncated)
    ));
    // Wrong expected id.
    assert!(matches!(
        read(&good, 99, &d),
        Err(CrecError::HeaderMismatch { found, .. }) if found == Uuid::from_u128(1)
    ));
    // Wrong DEK: detected by the commitment, before any decryption.
    let r = CrecReader::open(&good, Uuid::from_u128(1), &dek(3));
    assert!(matches!(r, Err(CrecError::WrongKey)));
    // A modified header field also breaks the commitment.
    let mut b = good.clone();
    b[codec_at] = 0; // PCMA → PCMU, still a valid codec
    assert!(matches!(read(&b, 1, &d), Err(CrecError::WrongKey)));
}

#[test]
fn swapped_header_from_another_recording() {
    let (d, a) = three();
    let b = build(&d, 2, &payloads(&[5, 0, 9]), true);
    let mut spliced = b.head.clone();
    a.chunks.iter().for_each(|c| spliced.extend_from_slice(c));
    assert!(matches!(
        read(&spliced, 1, &d),
        Err(CrecError::HeaderMismatch { .. })
    ));
    // Same recording id, header of another file (same DEK): the chunks no longer match.
    let c = build(&d, 1, &payloads(&[5, 0, 9]), true);
    let mut spliced = c.head.clone();
    a.chunks.iter().for_each(|ch| spliced.extend_from_slice(ch));
    assert!(matches!(
        read(&spliced, 1, &d),
        Err(CrecError::ChunkFromAnotherRecording { index: 0 })
    ));
}

#[test]
fn chunk_errors() {
    let (d, f) = three();
    let other = build(&d, 1, &payloads(&[5, 0, 9]), true);
    let with = |chunks: Vec<Vec<u8>>| {
        let g = File {
            head: f.head.clone(),
            chunks,
        };
        read(&g.bytes(), 1, &d)
    };
    let c = &f.chunks;
    assert!(matches!(
        with(vec![c[0].clone(), other.chunks[1].clone(), c[2].clone()]),
        Err(CrecError::ChunkFromAnotherRecording { index: 1 })
    ));
    assert!(matches!(
        with(vec![c[1].clone(), c[0].clone(), c[2].clone()]),
        Err(CrecError::ChunkOutOfOrder { index: 0, found: 1 })
    ));
    assert!(matches!(
        with(vec![c[0].clone(), c[0].clone(), c[1].clone(), c[2].clone()]),
        Err(CrecError::ChunkOutOfOrder { index: 1, found: 0 })
    ));
    assert!(matches!(
        with(vec![c[0].clone(), c[2].clone()]),
        Err(CrecError::ChunkOutOfOrder { index: 1, found: 2 })
    ));
    // Dropping the final chunk is indistinguishable from truncation.
    assert_eq!(
        with(vec![c[0].clone(), c[1].clone()]).unwrap().1,
        Completeness::Truncated
    );
    let mut m = c[2].clone();
    m[30] ^= 0x01; // ciphertext
    assert!(matches!(
        with(vec![c[0].clone(), c[1].clone(), m]),
        Err(CrecError::ChunkModified { index: 2 })
    ));
    let mut m = c[1].clone();
    m[15] ^= 0x01; // media start
    assert!(matches!(
        with(vec![c[0].clone(), m, c[2].clone()]),
        Err(CrecError::ChunkModified { index: 1 })
    ));
    let at = f.head.len() + c[0].len();
    let mut m = c[1].clone();
    m[0..4].copy_from_slice(&u32::MAX.to_be_bytes());
    assert!(matches!(
        with(vec![c[0].clone(), m]),
        Err(CrecError::ChunkTooLong {
            index: 1,
            offset,
            length: u32::MAX,
            limit: MAX_CHUNK_LEN,
        }) if offset == at
    ));
    let mut m = c[1].clone();
    m[0..4].copy_from_slice(&3u32.to_be_bytes());
    assert!(matches!(
        with(vec![c[0].clone(), m]),
        Err(CrecError::ChunkTooShort {
            index: 1,
            length: 3,
            minimum: MIN_CHUNK_LEN,
            ..
        })
    ));
    for extra in [vec![0u8], vec![0u8; 100], c[2].clone()] {
        let mut bytes = f.bytes();
        bytes.extend_from_slice(&extra);
        let r = CrecReader::open(&bytes, Uuid::from_u128(1), &d).unwrap();
        let items: Vec<_> = r.chunks().collect();
        assert_eq!(
            items.iter().filter(|i| i.is_ok()).count(),
            3,
            "authentic chunks come first"
        );
        assert!(matches!(
            items.last(),
            Some(Err(CrecError::DataAfterLastChunk))
        ));
    }
}

#[test]
fn truncation_at_every_offset() {
    let (d, f) = three();
    let bytes = f.bytes();
    let ends: Vec<usize> = f
        .chunks
        .iter()
        .scan(f.head.len(), |pos, c| {
            *pos += c.len();
            Some(*pos)
        })
        .collect();
    for cut in 0..bytes.len() {
        let res = read(&bytes[..cut], 1, &d);
        if cut < f.head.len() {
            assert!(res.is_err(), "cut {cut}");
            continue;
        }
        let (chunks, status) = res.unwrap_or_else(|e| panic!("cut {cut}: {e}"));
        assert_eq!(status, Completeness::Truncated, "cut {cut}");
        assert_eq!(
            chunks.len(),
            ends.iter().filter(|e| **e <= cut).count(),
            "cut {cut}"
        );
    }
    assert_eq!(read(&bytes, 1, &d).unwrap().1, Completeness::Complete);
}

/// True when a read of `bytes` is exactly the original, complete recording.
fn reads_as_original(bytes: &[u8], d: &Dek, want: &[(u64, Vec<u8>)]) -> bool {
    match read(bytes, 1, d) {
        Ok((chunks, Completeness::Complete)) => {
            chunks.len() == want.len()
                && chunks
                    .iter()
                    .zip(want)
                    .all(|(c, (ms, p))| c.media_start_ms == *ms && &c.plaintext == p)
        }
        _ => false,
    }
}

#[test]
fn every_single_bit_flip_is_detected() {
    let (d, f) = three();
    let bytes = f.bytes();
    let want = payloads(&[5, 0, 9]);
    for bit in 0..bytes.len() * 8 {
        let mut b = bytes.clone();
        b[bit / 8] ^= 1 << (bit % 8);
        if bit / 8 < f.head.len() {
            assert!(
                CrecReader::open(&b, Uuid::from_u128(1), &d).is_err(),
                "bit {bit}"
            );
        }
        assert!(!reads_as_original(&b, &d, &want), "bit {bit} undetected");
    }
}

#[test]
fn random_access_decrypts_only_what_is_asked() {
    let d = dek(4);
    let f = build(&d, 1, &payloads(&[64; 10]), true);
    let bytes = f.bytes();
    let r = CrecReader::open(&bytes, Uuid::from_u128(1), &d).unwrap();
    assert_eq!((r.chunk_count(), r.decryptions()), (10, 0));
    let c = r.decrypt_chunk(5).unwrap();
    assert_eq!((c.index, c.media_start_ms, c.last), (5, 10_000, false));
    assert_eq!(c.plaintext, payloads(&[64; 10])[5].1);
    assert_eq!(r.decryptions(), 1);
    assert!(r.decrypt_chunk(9).unwrap().last);
    assert_eq!(r.decryptions(), 2);
    assert!(matches!(
        r.decrypt_chunk(10),
        Err(CrecError::NoSuchChunk(10))
    ));
    assert_eq!(r.chunk_for_media_ms(0), Some(0));
    assert_eq!(r.chunk_for_media_ms(11_999), Some(5));
    assert_eq!(r.chunk_for_media_ms(1_000_000), Some(9));
    let info = r.chunk_info(5).unwrap();
    assert_eq!(
        info.offset,
        f.head.len() + f.chunks[..5].iter().map(Vec::len).sum::<usize>()
    );
    assert_eq!(info.len, f.chunks[5].len());
}

#[test]
fn writer_limits() {
    let d = dek(5);
    let (mut w, _) = CrecWriter::new(&header(1), &d).unwrap();
    assert!(matches!(
        w.seal_chunk(0, &vec![0; MAX_CHUNK_PLAINTEXT + 1], false),
        Err(CrecError::ChunkTooLarge(_))
    ));
    assert!(
        w.seal_chunk(0, &vec![0; MAX_CHUNK_PLAINTEXT], false)
            .is_ok()
    );
    w.seal_chunk(1, b"x", true).unwrap();
    assert!(w.is_finished());
    assert!(matches!(
        w.seal_chunk(2, b"y", false),
        Err(CrecError::AfterLastChunk)
    ));

    let (mut w, _) = CrecWriter::new(&header(1), &d).unwrap();
    w.set_next_counter(u64::from(u32::MAX));
    assert!(w.seal_chunk(0, b"x", false).is_ok());
    assert!(matches!(
        w.seal_chunk(0, b"x", false),
        Err(CrecError::CounterOverflow)
    ));

    let mut h = header(1);
    h.call_id = "x".repeat(70_000);
    assert!(matches!(
        CrecWriter::new(&h, &d),
        Err(CrecError::InvalidHeaderField(_))
    ));
    let mut h = header(1);
    h.channels = 0;
    assert!(matches!(
        CrecWriter::new(&h, &d),
        Err(CrecError::InvalidHeaderField(_))
    ));
    // Fresh salt and prefix per file.
    let (_, h1) = CrecWriter::new(&header(1), &d).unwrap();
    let (_, h2) = CrecWriter::new(&header(1), &d).unwrap();
    assert_ne!(h1, h2);
}

#[test]
fn nonce_is_stream_be32_layout() {
    let p = [1, 2, 3, 4, 5, 6, 7];
    assert_eq!(
        nonce(&p, 0x0a0b0c0d, true),
        [1, 2, 3, 4, 5, 6, 7, 10, 11, 12, 13, 1]
    );
    assert_eq!(nonce(&p, 1, false)[7..], [0, 0, 0, 1, 0]);
}

#[test]
fn max_size_chunk_round_trips() {
    let d = dek(6);
    let f = build(&d, 1, &payloads(&[MAX_CHUNK_PLAINTEXT]), true);
    let (chunks, status) = read(&f.bytes(), 1, &d).unwrap();
    assert_eq!(
        (chunks[0].plaintext.len(), status),
        (MAX_CHUNK_PLAINTEXT, Completeness::Complete)
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn prop_round_trip(sizes in prop::collection::vec(0usize..3000, 1..8), finish: bool, key: u8) {
        let d = dek(key);
        let parts = payloads(&sizes);
        let f = build(&d, 7, &parts, finish);
        let (chunks, status) = read(&f.bytes(), 7, &d).unwrap();
        let expect = if finish { Completeness::Complete } else { Completeness::Truncated };
        prop_assert_eq!(status, expect);
        prop_assert_eq!(chunks.len(), parts.len());
        for (c, (ms, p)) in chunks.iter().zip(&parts) {
            prop_assert_eq!(c.media_start_ms, *ms);
            prop_assert_eq!(&c.plaintext, p);
        }
    }

    #[test]
    fn prop_bit_flip_detected(sizes in prop::collection::vec(0usize..300, 1..5), pick in any::<prop::sample::Index>()) {
        let d = dek(9);
        let parts = payloads(&sizes);
        let f = build(&d, 1, &parts, true);
        let mut b = f.bytes();
        let bit = pick.index(b.len() * 8);
        b[bit / 8] ^= 1 << (bit % 8);
        prop_assert!(!reads_as_original(&b, &d, &parts), "bit {} undetected", bit);
    }

    #[test]
    fn prop_truncation_never_complete(sizes in prop::collection::vec(0usize..300, 1..5), pick in any::<prop::sample::Index>()) {
        let d = dek(10);
        let f = build(&d, 1, &payloads(&sizes), true);
        let b = f.bytes();
        let cut = pick.index(b.len());
        let ok_complete = matches!(read(&b[..cut], 1, &d), Ok((_, Completeness::Complete)));
        prop_assert!(!ok_complete, "cut {} read as complete", cut);
    }

    #[test]
    fn prop_tampering_cases_have_their_own_error(sizes in prop::collection::vec(1usize..200, 3..6), which in 0usize..5) {
        let d = dek(11);
        let parts = payloads(&sizes);
        let f = build(&d, 1, &parts, true);
        let other = build(&d, 1, &parts, true);
        let mut chunks = f.chunks.clone();
        let n = chunks.len();
        match which {
            0 => chunks[1] = other.chunks[1].clone(),
            1 => chunks.swap(0, 1),
            2 => { let c = chunks[0].clone(); chunks.insert(1, c); }
            3 => { chunks.remove(1); }
            _ => { let l = chunks[n - 1].len(); chunks[n - 1][l - 1] ^= 0x80; }
        }
        let g = File { head: f.head.clone(), chunks };
        let res = read(&g.bytes(), 1, &d);
        let ok = match which {
            0 => matches!(res, Err(CrecError::ChunkFromAnotherRecording { index: 1 })),
            1 => matches!(res, Err(CrecError::ChunkOutOfOrder { index: 0, found: 1 })),
            2 => matches!(res, Err(CrecError::ChunkOutOfOrder { index: 1, found: 0 })),
            3 => matches!(res, Err(CrecError::ChunkOutOfOrder { index: 1, found: 2 })),
            _ => matches!(res, Err(CrecError::ChunkModified { index }) if index == n - 1),
        };
        prop_assert!(ok, "case {}: {:?}", which, res.map(|r| r.1));
    }
}
