//! Every single-byte change to a recording file makes export and playback
//! fail cleanly or return only authentic audio: never a panic, an abort or
//! a hang (issue 11).
//!
//! A small recording (seven chunks: one ending between two milliseconds,
//! two after a gap, three empty, one of them last) is written with [`CrecWriter`], and
//! its WAV exported once. Then, for each change (every byte of the header
//! and of every chunk's clear fields set to `x ^ 0xff`, `0x00` and `0xff`;
//! the first and last byte of every ciphertext and tag, and every 97th
//! byte of the file, set to `x ^ 0xff`), the changed file goes through
//! every reader: the export ([`Audio::read`]), the playback layout and a
//! handful of byte ranges ([`WavLayout`], [`RangeReader`]), from memory and
//! read at offsets ([`CrecReader::open_at`]). Each must either fail with an
//! error that names damage, or produce bytes that are, at their offsets,
//! the authentic WAV's: a prefix of the authentic audio, under a header
//! that describes exactly what is there. A watchdog fails the test if one
//! change takes longer than [`PER_CASE`].
//!
//! [`RangeReader`]: super::playback::RangeReader

use std::collections::BTreeMap;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use uuid::Uuid;

use super::crec::{CrecError, CrecHeader, CrecWriter};
use super::crec_reader::{Completeness, CrecReader};
use super::export::Audio;
use super::playback::WavLayout;
use super::wav;
use crate::keys::Dek;
use crate::media::g711::Codec;

const ID: u128 = 0x5eed;
/// Longest one change may take (a debug build on a busy machine).
const PER_CASE: Duration = Duration::from_secs(10);

fn dek() -> Dek {
    Dek::from_bytes(&mut [0x33; 32])
}

/// Chunks as `(media_start_ms, samples)`: 200 ms; an empty chunk; 200.6
/// ms; a 3-sample gap, then 199 ms; a 150 ms gap, then 100 ms; two empty
/// chunks, the second marked last (the writer's last chunk is often empty).
const PARTS: [(u64, usize); 7] = [
    (0, 1600),
    (200, 0),
    (200, 1605),
    (401, 1592),
    (750, 800),
    (850, 0),
    (850, 0),
];

/// The file, where each chunk starts, and the authentic WAV (as the
/// export makes it from the untouched file).
struct Recording {
    file: Vec<u8>,
    chunks: Vec<std::ops::Range<usize>>,
    header_len: usize,
    wav: Vec<u8>,
}

fn recording() -> Recording {
    let header = CrecHeader {
        recording_id: Uuid::from_u128(ID),
        call_id: "cal_damage".into(),
        epoch_id: "ep-6m-1".into(),
        codec: Codec::Pcmu,
        sample_rate: 8000,
        channels: 2,
        created_ms: 1_790_000_000_000,
    };
    // Fixed salt and prefix: the same file every run.
    let (mut w, mut file) = CrecWriter::with_randomness(&header, &dek(), [5; 32], [6; 7]).unwrap();
    let header_len = file.len();
    let mut chunks = Vec::new();
    for (i, (ms, samples)) in PARTS.iter().enumerate() {
        // Different bytes at every sample and side, so a shift shows.
        let plain: Vec<u8> = (0..samples * 2).map(|j| (j * 7 + i * 31) as u8).collect();
        let sealed = w.seal_chunk(*ms, &plain, i + 1 == PARTS.len()).unwrap();
        chunks.push(file.len()..file.len() + sealed.len());
        file.extend(sealed);
    }
    let d = dek();
    let reader = CrecReader::open(&file, Uuid::from_u128(ID), &d).unwrap();
    let audio = Audio::read(&reader).unwrap();
    assert_eq!(audio.completeness, Completeness::Complete);
    let wav = audio.to_wav();
    assert_eq!(wav.len(), 44 + 6800 * 4, "850 ms");
    Recording {
        file,
        chunks,
        header_len,
        wav,
    }
}

/// One change: where, and the new byte.
#[derive(Debug, Clone, Copy)]
struct Change {
    at: usize,
    to: u8,
}

/// Every change the test makes (no-ops left out), in file order.
fn changes(r: &Recording) -> Vec<Change> {
    let mut at: Vec<(usize, bool)> = Vec::new(); // (offset, all three values)
    at.extend((0..r.header_len).map(|i| (i, true)));
    for c in &r.chunks {
        // Length, counter, media start, file tag.
        at.extend((c.start..c.start + 24).map(|i| (i, true)));
        // First and last bytes of the ciphertext and the tag.
        at.extend([c.start + 24, c.end - 17, c.end - 16, c.end - 1].map(|i| (i, false)));
    }
    at.extend((0..r.file.len()).step_by(97).map(|i| (i, false)));
    at.sort_unstable();
    at.dedup_by_key(|(i, _)| *i);
    let mut out = Vec::new();
    for (i, all) in at {
        let old = r.file[i];
        let values = if all {
            vec![old ^ 0xff, 0x00, 0xff]
        } else {
            vec![old ^ 0xff]
        };
        for to in values {
            if to != old && !out.iter().any(|c: &Change| c.at == i && c.to == to) {
                out.push(Change { at: i, to });
            }
        }
    }
    out
}

/// What a changed file did in each reader, for the summary.
type Outcomes = BTreeMap<String, usize>;

/// The error's variant name.
fn kind(e: &CrecError) -> String {
    let s = format!("{e:?}");
    s.split([' ', '(', '{'])
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// A reader's error must name damage: not a read past the end of the file
/// (a missing bound), nor anything else.
fn clean(e: &CrecError, what: &str, change: Change) -> String {
    assert!(e.is_damaged_file(), "{change:?} {what}: {e}");
    kind(e)
}

/// The export of the changed file: fails, or is a truncated prefix of the
/// authentic WAV (never complete: every byte of the file is authenticated).
fn check_export(reader: &CrecReader<'_>, r: &Recording, change: Change) -> String {
    match Audio::read(reader) {
        Err(e) => clean(&e, "export", change),
        Ok(audio) => {
            let wav = audio.to_wav();
            assert_eq!(audio.completeness, Completeness::Truncated, "{change:?}");
            assert!(wav.len() <= r.wav.len(), "{change:?}");
            assert_eq!(wav[44..], r.wav[44..wav.len()], "{change:?}: export");
            "truncated".into()
        }
    }
}

/// Playback of the changed file: the layout fails, or it describes an
/// authentic prefix and every range yields only authentic bytes (the
/// header's at offsets below 44, the authentic WAV's above), in order,
/// then possibly an error that names damage.
fn check_playback(reader: &CrecReader<'_>, r: &Recording, change: Change) -> String {
    let layout = match WavLayout::new(reader, Codec::Pcmu) {
        Err(e) => return format!("layout {}", clean(&e, "layout", change)),
        Ok(l) => l,
    };
    let len = layout.len();
    assert!(len <= r.wav.len() as u64, "{change:?}: {len}");
    assert!(
        !layout.is_complete() || len == r.wav.len() as u64,
        "{change:?}: complete but short"
    );
    let header = wav::wav_header(2, 8000, (len - 44) as u32);
    let at = |ms: u64| 44 + ms * 32;
    let ranges = [
        (0, len),
        (0, 44),
        (40, at(10)),
        (at(190), at(210)), // chunks 0 and 1
        (at(400), at(402)), // the 3-sample gap
        (at(650), at(700)), // inside the 150 ms gap
        (at(740), at(760)), // into the last chunk
        (len.saturating_sub(100), u64::MAX),
    ];
    let mut failed = None;
    for (start, end) in ranges {
        let mut pos = start.min(len);
        for piece in layout.range(reader, start, end) {
            let piece = match piece {
                Ok(p) => p,
                Err(e) => {
                    failed = Some(clean(&e, "range", change));
                    break;
                }
            };
            for byte in piece {
                let want = match usize::try_from(pos).unwrap() {
                    o if o < 44 => header[o],
                    o => r.wav[o],
                };
                assert_eq!(byte, want, "{change:?}: range {start}..{end}, byte {pos}");
                pos += 1;
            }
        }
        if failed.is_none() {
            assert_eq!(
                pos,
                end.min(len),
                "{change:?}: range {start}..{end} ends early"
            );
        }
    }
    match failed {
        Some(e) => format!("range {e}"),
        None if layout.is_complete() => "plays".into(),
        None => "plays truncated".into(),
    }
}

/// All readers over one changed file; its outcomes.
fn check(bytes: &[u8], r: &Recording, change: Change) -> [String; 3] {
    let d = dek();
    let id = Uuid::from_u128(ID);
    let mem = CrecReader::open(bytes, id, &d);
    let owned = bytes.to_vec();
    let at = CrecReader::open_at(&owned, id, &d);
    let (mem, at) = match (mem, at) {
        (Ok(mem), Ok(at)) => (mem, at),
        (Err(m), Err(a)) => {
            assert_eq!(format!("{m:?}"), format!("{a:?}"), "{change:?}");
            let k = clean(&m, "open", change);
            return [format!("open {k}"), String::new(), String::new()];
        }
        (m, a) => panic!("{change:?}: memory {m:?}, at offsets {a:?}"),
    };
    let export = check_export(&mem, r, change);
    assert_eq!(export, check_export(&at, r, change), "{change:?}");
    let play = check_playback(&mem, r, change);
    assert_eq!(play, check_playback(&at, r, change), "{change:?}");
    // Whenever both read the file, they agree on its length.
    if let (Ok(audio), Ok(layout)) = (Audio::read(&mem), WavLayout::new(&mem, Codec::Pcmu)) {
        assert_eq!(audio.to_wav().len() as u64, layout.len(), "{change:?}");
    }
    [
        String::new(),
        format!("export {export}"),
        format!("play {play}"),
    ]
}

#[test]
fn every_single_byte_change_fails_cleanly_or_returns_only_authentic_audio() {
    let r = recording();
    let all = changes(&r);
    assert!(all.len() > 600, "{} changes", all.len());
    let (tx, rx) = mpsc::channel::<usize>();
    let started = Instant::now();
    let worker = std::thread::spawn(move || {
        let mut outcomes = Outcomes::new();
        let mut slowest = Duration::ZERO;
        for (i, &change) in all.iter().enumerate() {
            let _ = tx.send(i);
            let t = Instant::now();
            let mut bytes = r.file.clone();
            bytes[change.at] = change.to;
            for o in check(&bytes, &r, change) {
                if !o.is_empty() {
                    *outcomes.entry(o).or_default() += 1;
                }
            }
            slowest = slowest.max(t.elapsed());
        }
        (all.len(), outcomes, slowest)
    });
    // The watchdog: each change must finish within PER_CASE.
    let mut current = 0;
    loop {
        match rx.recv_timeout(PER_CASE) {
            Ok(i) => current = i,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                panic!("change #{current} has run for more than {PER_CASE:?}: a hang")
            }
        }
    }
    let (n, outcomes, slowest) = match worker.join() {
        Ok(v) => v,
        Err(panic) => std::panic::resume_unwind(panic),
    };
    eprintln!(
        "{n} single-byte changes in {:?} (slowest {slowest:?}):",
        started.elapsed()
    );
    for (o, count) in &outcomes {
        eprintln!("  {count:5}  {o}");
    }
    // Each kind of damage is met, and some changes leave authentic audio
    // to play (damage after it, or a recording cut short).
    for expected in [
        "open WrongKey",
        "open HeaderMismatch",
        "export ChunkModified",
        "play layout ChunkModified",
        "play range ChunkModified",
        "play plays truncated",
    ] {
        assert!(
            outcomes.contains_key(expected),
            "no {expected:?}: {outcomes:?}"
        );
    }
    // And none goes unnoticed: every byte of the file is authenticated.
    assert!(!outcomes.contains_key("play plays"), "{outcomes:?}");
}
