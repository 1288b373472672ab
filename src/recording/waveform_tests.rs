//! Tests of the waveform: buckets, the speech detector, and a real CREC
//! file (streamed, authenticated, damage refused).

use uuid::Uuid;

use super::*;
use crate::keys::Dek;
use crate::media::g711::{Codec, encode_all};
use crate::recording::crec::{CrecHeader, CrecWriter};

const ID: u128 = 7;

fn dek() -> Dek {
    Dek::from_bytes(&mut [5; 32])
}

/// `ms` of a tone (amplitude 12000) or, with `freq` 0, of silence.
fn side(freq: f64, ms: u64) -> Vec<i16> {
    (0..ms * 8)
        .map(|i| {
            let t = i as f64 / 8000.0;
            (12000.0 * (2.0 * std::f64::consts::PI * freq * t).sin()) as i16
        })
        .collect()
}

/// G.711 pairs (caller, callee) of two sides of equal length.
fn pairs(caller: &[i16], callee: &[i16]) -> Vec<u8> {
    let (a, b) = (
        encode_all(Codec::Pcmu, caller),
        encode_all(Codec::Pcmu, callee),
    );
    a.iter().zip(&b).flat_map(|(x, y)| [*x, *y]).collect()
}

/// The caller talks 0–1000 ms, the callee 1500–3000 ms.
fn dialogue() -> Vec<u8> {
    let caller = [side(440.0, 1000), side(0.0, 2000)].concat();
    let callee = [side(0.0, 1500), side(880.0, 1500)].concat();
    pairs(&caller, &callee)
}

fn built(frames: &[u8], bucket_ms: u64) -> Waveform {
    let buckets = buckets_for((frames.len() / 2) as u64 / 8, bucket_ms).unwrap();
    let mut b = Builder::new(Codec::Pcmu, bucket_ms, buckets);
    b.push(0, frames);
    b.finish()
}

fn crec(parts: &[(u64, &[u8])]) -> Vec<u8> {
    let header = CrecHeader {
        recording_id: Uuid::from_u128(ID),
        call_id: "cal_w".into(),
        epoch_id: "ep-w".into(),
        codec: Codec::Pcmu,
        sample_rate: 8000,
        channels: 2,
        created_ms: 0,
    };
    let (mut w, mut bytes) = CrecWriter::new(&header, &dek()).unwrap();
    for (i, (ms, plain)) in parts.iter().enumerate() {
        bytes.extend(w.seal_chunk(*ms, plain, i + 1 == parts.len()).unwrap());
    }
    bytes
}

#[test]
fn each_side_speaks_on_its_own_channel_at_its_own_time() {
    let w = built(&dialogue(), 50);
    assert_eq!(w.duration_ms, 3000);
    assert_eq!(w.caller.min.len(), 60);
    assert_eq!(w.callee.max.len(), 60);
    assert_eq!(w.caller.speech, vec![[0, 1000]]);
    assert_eq!(w.callee.speech, vec![[1500, 3000]]);
    // Peaks: loud where the side talks, zero where it is silent.
    assert!(w.caller.max[5] > 10_000 && w.caller.min[5] < -10_000);
    assert_eq!((w.caller.min[30], w.caller.max[30]), (0, 0));
    assert_eq!((w.callee.min[10], w.callee.max[10]), (0, 0));
    assert!(w.callee.max[40] > 10_000);
}

#[test]
fn a_short_pause_is_bridged_and_a_long_one_splits() {
    let caller = [
        side(300.0, 500),
        side(0.0, HANGOVER_MS - 40),
        side(300.0, 500),
        side(0.0, HANGOVER_MS + 200),
        side(300.0, 200),
    ]
    .concat();
    let silent = vec![0i16; caller.len()];
    let w = built(&pairs(&caller, &silent), 10);
    let second = 500 + HANGOVER_MS - 40 + 500;
    let third = second + HANGOVER_MS + 200;
    assert_eq!(w.caller.speech, vec![[0, second], [third, third + 200]]);
    assert!(w.callee.speech.is_empty());
}

#[test]
fn quiet_noise_is_not_speech() {
    // ±200 is about −44 dBFS: line noise, not speech.
    let noise: Vec<i16> = (0..8000)
        .map(|i| if i % 2 == 0 { 200 } else { -200 })
        .collect();
    let w = built(&pairs(&noise, &noise), 100);
    assert!(w.caller.speech.is_empty() && w.callee.speech.is_empty());
    assert!(w.caller.max[0] > 150, "the peaks still show it");
}

#[test]
fn bucket_limits() {
    assert!(matches!(
        buckets_for(1000, 9),
        Err(WaveformError::BucketTooSmall(9))
    ));
    assert_eq!(buckets_for(1000, 10).unwrap(), 100);
    assert_eq!(buckets_for(1001, 10).unwrap(), 101);
    // 1000 s in 10 ms buckets is exactly the most.
    assert_eq!(buckets_for(1_000_000, 10).unwrap(), MAX_BUCKETS);
    let e = buckets_for(1_000_001, 10).unwrap_err();
    assert!(matches!(
        e,
        WaveformError::TooManyBuckets {
            buckets: 100_001,
            least: 11,
            ..
        }
    ));
    assert!(e.to_string().contains("at least 11"), "{e}");
}

#[test]
fn a_crec_file_streams_chunk_by_chunk_with_a_gap_as_silence() {
    let talk = dialogue();
    // Two chunks of 1.5 s, the second 500 ms late (a gap).
    let (first, second) = talk.split_at(talk.len() / 2);
    let bytes = crec(&[(0, first), (2000, second)]);
    let d = dek();
    let reader = CrecReader::open(&bytes, Uuid::from_u128(ID), &d).unwrap();
    let w = compute(&reader, Codec::Pcmu, 100).unwrap();
    assert_eq!(reader.decryptions(), 2, "each chunk once");
    assert_eq!(w.duration_ms, 3500);
    assert_eq!(w.caller.min.len(), 35);
    assert_eq!(w.caller.speech, vec![[0, 1000]]);
    // The callee's tone starts at 1500 ms of audio, which is 2000 ms on
    // the timeline (after the gap).
    assert_eq!(w.callee.speech, vec![[2000, 3500]]);
    assert_eq!((w.callee.min[17], w.callee.max[17]), (0, 0), "the gap");
}

#[test]
fn too_many_buckets_decrypts_nothing() {
    let talk = dialogue();
    let bytes = crec(&[(0, &talk)]);
    let d = dek();
    let reader = CrecReader::open(&bytes, Uuid::from_u128(ID), &d).unwrap();
    assert!(matches!(
        compute(&reader, Codec::Pcmu, 5),
        Err(WaveformError::BucketTooSmall(5))
    ));
    assert_eq!(reader.decryptions(), 0);
}

#[test]
fn a_changed_byte_fails_with_its_damage() {
    let talk = dialogue();
    let mut bytes = crec(&[(0, &talk)]);
    let at = bytes.len() - 100;
    bytes[at] ^= 1;
    let d = dek();
    let reader = CrecReader::open(&bytes, Uuid::from_u128(ID), &d).unwrap();
    let e = compute(&reader, Codec::Pcmu, 50).unwrap_err();
    assert!(
        matches!(e, WaveformError::Crec(ref c) if c.is_damaged_file()),
        "{e}"
    );
}

#[test]
fn the_answer_has_the_documented_shape() {
    let w = built(&dialogue(), 1000);
    let v = serde_json::to_value(&w).unwrap();
    assert_eq!(v["bucket_ms"], 1000);
    assert_eq!(v["duration_ms"], 3000);
    assert_eq!(v["caller"]["speech"], serde_json::json!([[0, 1000]]));
    assert_eq!(v["callee"]["min"].as_array().unwrap().len(), 3);
}
