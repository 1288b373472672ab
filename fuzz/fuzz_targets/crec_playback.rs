//! Fuzzes playback over damaged recordings: the export, `WavLayout::new`
//! and `RangeReader` over arbitrary byte ranges, with a differential check.
//!
//! Run with `cargo fuzz run crec_playback --sanitizer none` on stable.
//! The first input byte selects the mode:
//! - even: the next bytes describe a valid recording (up to six chunks:
//!   their gaps and sizes, and whether it is complete), written with a
//!   fixed key; then up to eight edits (set a byte, xor a byte, or cut the
//!   file) damage it. The fuzzer cannot forge an authentic chunk, so this is
//!   how it reaches layouts of real chunks with forged clear fields.
//! - odd: the rest follows a valid header (exercises the index over
//!   arbitrary chunk fields).
//!
//! The last 16 bytes are two byte ranges to read besides the whole file.
//! Checked: reading from memory and at offsets agree; every error names
//! damage; when the export and the layout both succeed they agree on the
//! length; every byte a range yields equals the export's at that offset
//! (when the export succeeds) and, in the first mode, the untouched
//! recording's WAV (the header: one that describes the layout); and a
//! changed file never plays as complete.
#![no_main]

use ansim::keys::Dek;
use ansim::media::g711::Codec;
use ansim::recording::crec::{CrecError, CrecHeader, CrecWriter};
use ansim::recording::crec_reader::CrecReader;
use ansim::recording::export::Audio;
use ansim::media::g711;
use ansim::recording::playback::WavLayout;
use ansim::recording::wav;
use libfuzzer_sys::fuzz_target;
use uuid::Uuid;

const ID: Uuid = Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);

fn dek() -> Dek {
    Dek::from_bytes(&mut [0x42; 32])
}

fn writer() -> Option<(CrecWriter, Vec<u8>)> {
    let h = CrecHeader {
        recording_id: ID,
        call_id: "fuzz-call".into(),
        epoch_id: "ep-fuzz".into(),
        codec: Codec::Pcmu,
        sample_rate: 8000,
        channels: 2,
        created_ms: 0,
    };
    CrecWriter::with_randomness(&h, &dek(), [7; 32], [9; 7]).ok()
}

/// Takes bytes from the front of the input, zeros once it is used up.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        let (b, rest) = self.0.split_first().map_or((0, &[][..]), |(b, r)| (*b, r));
        self.0 = rest;
        b
    }
    fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.byte(), self.byte()])
    }
}

/// A valid recording described by the input, damaged by its edits: the
/// changed file and the untouched one.
fn damaged(input: &mut Input<'_>) -> Option<(Vec<u8>, Vec<u8>)> {
    let (mut w, mut file) = writer()?;
    let shape = input.byte();
    let chunks = usize::from(shape % 7);
    let complete = shape & 0x80 != 0;
    let mut end_sample: u64 = 0;
    for i in 0..chunks {
        let gap_ms = u64::from(input.byte() % 4);
        let samples = usize::from(input.u16() % 1200);
        let ms = end_sample.div_ceil(8) + gap_ms;
        let plain: Vec<u8> = (0..samples * 2).map(|j| (j * 7 + i * 31) as u8).collect();
        let last = complete && i + 1 == chunks;
        file.extend(w.seal_chunk(ms, &plain, last).ok()?);
        end_sample = ms * 8 + samples as u64;
    }
    let original = file.clone();
    for _ in 0..input.byte() % 9 {
        let (op, at, value) = (input.byte(), usize::from(input.u16()), input.byte());
        if file.is_empty() {
            break;
        }
        let at = at % file.len();
        match op % 3 {
            0 => file[at] = value,
            1 => file[at] ^= value,
            _ => file.truncate(at),
        }
    }
    Some((file, original))
}

fn clean(e: &CrecError) {
    assert!(e.is_damaged_file(), "not damage: {e:?}");
}

/// Reads `[start, end)` and checks every byte yielded.
fn check_range(
    reader: &CrecReader<'_>,
    layout: &WavLayout,
    (start, end): (u64, u64),
    export: Option<&[u8]>,
    original: Option<&[u8]>,
) -> bool {
    let header = wav::wav_header(2, 8000, (layout.len() - 44) as u32);
    let mut pos = start.min(layout.len());
    for piece in layout.range(reader, start, end) {
        let piece = match piece {
            Ok(p) => p,
            Err(e) => {
                clean(&e);
                return false;
            }
        };
        for byte in piece {
            let o = pos as usize;
            if let Some(export) = export {
                assert_eq!(Some(&byte), export.get(o), "export differs at {o}");
            }
            if let Some(original) = original {
                let want = if o < 44 { header.get(o) } else { original.get(o) };
                assert_eq!(Some(&byte), want, "not authentic at {o}");
            }
            pos += 1;
        }
    }
    assert_eq!(pos, end.min(layout.len()), "range ended early without an error");
    true
}

fn original_wav(file: &[u8]) -> Option<Vec<u8>> {
    let d = dek();
    let reader = CrecReader::open(file, ID, &d).ok()?;
    Some(Audio::read(&reader).ok()?.to_wav())
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let split = rest.len().saturating_sub(16);
    let (body, tail) = rest.split_at(split);
    let mut input = Input(body);
    let (bytes, original) = if mode % 2 == 0 {
        let Some((file, original)) = damaged(&mut input) else {
            return;
        };
        let wav = original_wav(&original);
        (file.clone(), wav.map(|w| (file != original, w)))
    } else {
        let Some((_, mut head)) = writer() else {
            return;
        };
        head.extend_from_slice(body);
        (head, None)
    };
    let mut t = Input(tail);
    let mut range = || {
        let a = u64::from(u32::from_be_bytes([t.byte(), t.byte(), t.byte(), t.byte()]));
        let n = u64::from(u32::from_be_bytes([t.byte(), t.byte(), t.byte(), t.byte()]));
        (a, a.saturating_add(n))
    };
    let ranges = [(0, u64::MAX), range(), range()];

    let d = dek();
    let mem = CrecReader::open(&bytes, ID, &d);
    let at = CrecReader::open_at(&bytes, ID, &d);
    let (mem, at) = match (mem, at) {
        (Ok(m), Ok(a)) => (m, a),
        (Err(m), Err(a)) => {
            assert_eq!(format!("{m:?}"), format!("{a:?}"));
            clean(&m);
            return;
        }
        (m, a) => panic!("memory {m:?}, at offsets {a:?}"),
    };
    for reader in [&mem, &at] {
        let export = Audio::read(reader).map(|a| a.to_wav());
        if let Err(e) = &export {
            clean(e);
        }
        let layout = match WavLayout::new(reader, g711::Codec::Pcmu) {
            Ok(l) => l,
            Err(e) => {
                clean(&e);
                continue;
            }
        };
        if let Ok(wav) = &export {
            assert_eq!(layout.len(), wav.len() as u64, "export and layout disagree");
        }
        let authentic = original.as_ref().map(|(_, w)| w.as_slice());
        if let Some(w) = authentic {
            assert!(layout.len() <= w.len() as u64, "longer than the original");
        }
        let mut whole = false;
        for (i, r) in ranges.iter().enumerate() {
            let ok = check_range(reader, &layout, *r, export.as_deref().ok(), authentic);
            whole |= i == 0 && ok;
        }
        let changed = original.as_ref().is_some_and(|(c, _)| *c);
        assert!(
            !(changed && whole && layout.is_complete()),
            "a changed file played as complete"
        );
    }
});
