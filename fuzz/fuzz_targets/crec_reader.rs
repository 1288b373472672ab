//! Fuzzes the CREC reader with a fixed key.
//!
//! Run with `cargo fuzz run crec_reader --sanitizer none` on stable.
//! The first input byte selects the mode:
//! - even: the rest is a whole file (exercises header parsing; the recording
//!   id is taken from the input so `HeaderMismatch` does not stop it early);
//! - odd: the rest follows a valid header written with the fixed key, salt
//!   and prefix (exercises chunk indexing, random access and the iterator
//!   past the key commitment).
#![no_main]

use ansim::keys::Dek;
use ansim::media::g711::Codec;
use ansim::recording::crec::{CrecHeader, CrecWriter};
use ansim::recording::crec_reader::CrecReader;
use libfuzzer_sys::fuzz_target;
use uuid::Uuid;

const ID: Uuid = Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);

fn dek() -> Dek {
    Dek::from_bytes(&mut [0x42; 32])
}

fn fixed_header() -> Option<Vec<u8>> {
    let h = CrecHeader {
        recording_id: ID,
        call_id: "fuzz-call".into(),
        epoch_id: "ep-fuzz".into(),
        codec: Codec::Pcma,
        sample_rate: 8000,
        channels: 2,
        created_ms: 0,
    };
    CrecWriter::with_randomness(&h, &dek(), [7; 32], [9; 7])
        .ok()
        .map(|(_, head)| head)
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let dek = dek();
    let (bytes, id) = if mode % 2 == 0 {
        let id = rest
            .get(6..22)
            .and_then(|b| Uuid::from_slice(b).ok())
            .unwrap_or(ID);
        (rest.to_vec(), id)
    } else {
        let Some(mut head) = fixed_header() else {
            return;
        };
        head.extend_from_slice(rest);
        (head, ID)
    };
    // Reading at offsets (as playback does) must agree with reading from
    // memory, whatever the input.
    let mem = CrecReader::open(&bytes, id, &dek).and_then(|r| r.read_all());
    let at = CrecReader::open_at(&bytes, id, &dek).and_then(|r| r.read_all());
    assert_eq!(format!("{mem:?}"), format!("{at:?}"));
    let Ok(reader) = CrecReader::open(&bytes, id, &dek) else {
        return;
    };
    for i in 0..=reader.chunk_count() {
        let _ = reader.decrypt_chunk(i);
    }
    let mut chunks = reader.chunks();
    for item in chunks.by_ref() {
        let _ = item;
    }
    let _ = chunks.status();
});
