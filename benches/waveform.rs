//! Benchmark of `GET /v1/recordings/{id}/waveform`'s work (not a test):
//! the waveform of a 1-hour recording (1,800 chunks of 2 s, in memory),
//! next to decrypting the same chunks alone, so the analysis' own share is
//! visible.
//!
//! ```sh
//! cargo bench --bench waveform             # full run: 1 h of audio, 5 runs each
//! ```
//!
//! Without `--bench` (as when `cargo test --all-targets` runs it) it uses
//! one minute of audio and one run, to check that it still works.
//! Results are documented in `docs/benchmarks.md`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use ansim::keys::Dek;
use ansim::media::g711::{Codec, encode_all};
use ansim::recording::crec::{CrecHeader, CrecWriter};
use ansim::recording::crec_reader::CrecReader;
use ansim::recording::waveform;
use uuid::Uuid;

const ID: u128 = 1;
const CHUNK_MS: u64 = 2000;
const REPS: usize = 5;

/// On-CPU time of this thread.
fn cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid pointer to a timespec on the stack.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// A dialogue: each side talks (a tone) for 3 s of every 7, in turn.
fn chunk_audio(chunk: u64) -> Vec<u8> {
    let samples = (CHUNK_MS * 8) as usize;
    let start = chunk * CHUNK_MS * 8;
    let side = |offset: u64, freq: f64| -> Vec<i16> {
        (0..samples as u64)
            .map(|i| {
                let s = start + i;
                let talking = ((s / 8 + offset) % 7000) < 3000;
                let v = (s as f64 * freq * std::f64::consts::TAU / 8000.0).sin();
                if talking { (v * 9000.0) as i16 } else { 0 }
            })
            .collect()
    };
    let (a, b) = (
        encode_all(Codec::Pcmu, &side(0, 440.0)),
        encode_all(Codec::Pcmu, &side(3500, 660.0)),
    );
    a.iter().zip(&b).flat_map(|(x, y)| [*x, *y]).collect()
}

fn recording(minutes: u64) -> Vec<u8> {
    let header = CrecHeader {
        recording_id: Uuid::from_u128(ID),
        call_id: "cal_bench".into(),
        epoch_id: "ep-bench".into(),
        codec: Codec::Pcmu,
        sample_rate: 8000,
        channels: 2,
        created_ms: 0,
    };
    let dek = Dek::from_bytes(&mut [3; 32]);
    let (mut w, mut bytes) = CrecWriter::new(&header, &dek).expect("writer");
    let chunks = minutes * 60_000 / CHUNK_MS;
    // Seven distinct chunks cover the 14 s pattern; reused to build fast.
    let audio: Vec<Vec<u8>> = (0..7).map(chunk_audio).collect();
    for c in 0..chunks {
        let plain = &audio[(c % 7) as usize];
        bytes.extend(
            w.seal_chunk(c * CHUNK_MS, plain, c + 1 == chunks)
                .expect("seal"),
        );
    }
    bytes
}

fn measure(name: &str, reps: usize, mut f: impl FnMut()) {
    let mut wall = Vec::new();
    let mut cpu = Vec::new();
    for _ in 0..reps {
        let (w0, c0) = (Instant::now(), cpu_time());
        f();
        wall.push(w0.elapsed());
        cpu.push(cpu_time().saturating_sub(c0));
    }
    wall.sort();
    cpu.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{name:<40} wall {:>8.1} ms ({:.1}-{:.1})   cpu {:>8.1} ms ({:.1}-{:.1})",
        ms(wall[wall.len() / 2]),
        ms(wall[0]),
        ms(wall[wall.len() - 1]),
        ms(cpu[cpu.len() / 2]),
        ms(cpu[0]),
        ms(cpu[cpu.len() - 1]),
    );
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let (minutes, reps) = if full { (60, REPS) } else { (1, 1) };
    println!("# waveform benchmark: {minutes} min of audio, {reps} runs each; median (min-max)");
    let bytes = recording(minutes);
    let dek = Dek::from_bytes(&mut [3; 32]);
    let reader = CrecReader::open(&bytes, Uuid::from_u128(ID), &dek).expect("open");
    println!(
        "# file: {} chunks, {:.1} MB",
        reader.chunk_count(),
        bytes.len() as f64 / 1e6
    );
    measure("decrypt every chunk (no analysis)", reps, || {
        for c in reader.chunks() {
            black_box(c.expect("chunk").plaintext.len());
        }
    });
    for bucket_ms in [50, 1000] {
        let mut json_len = 0;
        let mut speech = 0;
        measure(&format!("waveform, bucket_ms={bucket_ms}"), reps, || {
            let w = waveform::compute(&reader, Codec::Pcmu, bucket_ms).expect("waveform");
            speech = w.caller.speech.len() + w.callee.speech.len();
            json_len = serde_json::to_vec(&w).expect("json").len();
            black_box(&w);
        });
        println!("#   answer: {json_len} bytes of JSON, {speech} stretches of speech");
    }
    let err = waveform::compute(&reader, Codec::Pcmu, 10);
    println!(
        "# bucket_ms=10 on {minutes} min: {}",
        err.map_or_else(
            |e| e.to_string(),
            |w| format!("{} buckets", w.caller.min.len())
        )
    );
}
