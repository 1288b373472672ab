//! Benchmark of the recording path (not a test): what recording one call
//! costs per relayed packet, stage by stage, how fast chunks are sealed,
//! and (section 5, `recording/group_commit.rs`) how syncing the chunks of
//! 500 and 2,000 concurrent recordings costs per chunk and per round.
//!
//! ```sh
//! cargo bench --bench recording            # full run, several minutes (shared disks: more)
//! cargo bench --bench recording -- seal    # only measurements whose name contains "seal"
//! ```
//!
//! Without `--bench` (as when `cargo test --all-targets` runs it) every
//! measurement runs a few iterations only, to check that it still works.
//!
//! Every measurement runs for at least [`MIN_TIME`] of timed work, five
//! times; the median, minimum and maximum of the five are printed, both in
//! wall time and in on-CPU time of the measuring thread
//! (`CLOCK_THREAD_CPUTIME_ID`, user + system). On-CPU time excludes time
//! spent waiting for the disk or preempted by other work.
//!
//! Blobs are written to `$ANSIM_BENCH_DIR` if set, else to Cargo's
//! `CARGO_TARGET_TMPDIR` (under `target/`): set it to the file system that
//! holds recordings in production, since `sync()` cost depends on it.
//! Results are documented in `docs/benchmarks.md`.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use ansim::keys::Dek;
use ansim::media::g711::Codec;
use ansim::media::{Leg, MediaTap, Packet, PacketKind, RtpPacket};
use ansim::recording::align::{AlignConfig, Aligner, Block};
use ansim::recording::blob::{BlobStore, BlobWriter, LocalBlobStore};
use ansim::recording::crec::{CrecHeader, CrecWriter};
use ansim::recording::crec_reader::CrecReader;
use ansim::recording::crec_source::ReadAt;
use ansim::recording::{CHUNK_MEDIA, RecordingTap, TapMessage};

#[path = "recording/group_commit.rs"]
mod group_commit;

/// Timed work per measurement, at least.
const MIN_TIME: Duration = Duration::from_secs(1);
/// Measurements repeated this many times.
const REPS: usize = 5;
/// RTP header + 20 ms of G.711.
const PACKET_LEN: usize = 172;
const PAYLOAD_LEN: usize = 160;
/// Packets per second of one call, both directions (2 × 50).
const CALL_PPS: f64 = 100.0;
/// Pending bytes that make the writer seal a chunk: 2 s of audio,
/// 8000 samples/s, two interleaved 1-byte channels = 32,000 bytes
/// (the same expression as `tap::CHUNK_BYTES`).
const CHUNK_BYTES: usize = 2 * 8 * CHUNK_MEDIA.as_millis() as usize;
/// Packets (both directions) per chunk: 2 s × 100 packets/s.
const PACKETS_PER_CHUNK: u64 = 200;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let full = args.iter().any(|a| a == "--bench");
    let filters: Vec<&str> = args
        .iter()
        .filter(|a| !a.starts_with('-'))
        .map(String::as_str)
        .collect();
    let b = Bench {
        full,
        filters,
        dir: bench_dir(),
    };
    if full {
        println!(
            "# recording benchmark: {REPS} runs of >= {} s each; median (min-max)",
            MIN_TIME.as_secs_f64()
        );
        println!("# blob directory: {}", b.dir.display());
    } else {
        println!("# recording benchmark, quick mode (no --bench): a few iterations each");
    }

    b.section(
        "1. whole path per packet: tap (aligner, interleave, chunk) -> queue -> seal -> append",
    );
    b.run("path/no-fsync", "packet", |m| whole_path(m, &b.dir, false));
    b.run("path/fsync", "packet", |m| whole_path(m, &b.dir, true));

    b.section("2. stages");
    b.run(
        "stage/packet-generation (baseline)",
        "packet",
        stage_generate,
    );
    b.run("stage/rtp parse (ours)", "packet", stage_parse_ours);
    b.run("stage/rtp parse (rtp-rs)", "packet", stage_parse_rtp_rs);
    b.run("stage/tap on_packet", "packet", stage_tap);
    b.run("stage/aligner push+poll_block", "packet", stage_aligner);
    b.run("stage/interleave 20 ms block", "block", stage_interleave);
    b.run("stage/seal_chunk 32000 B", "chunk", |m| {
        seal_sizes(m, CHUNK_BYTES, false)
    });
    b.run("stage/append 32 kB chunk", "chunk", |m| {
        stage_append(m, &b.dir, false)
    });
    b.run("stage/append+sync 32 kB chunk", "chunk", |m| {
        stage_append(m, &b.dir, true)
    });

    b.section("3. chunk encryption throughput (MB = 10^6 bytes)");
    for &size in &[16, 64, 256, 1024, 8192, 16384, 32_000, 65_536, 1 << 20] {
        b.run_bytes(&format!("seal_chunk {size} B"), |m| {
            seal_sizes(m, size, true)
        });
    }
    for &size in &[16, 64, 256, 1024, 8192, 16384, 65_536, 1 << 20] {
        b.run_bytes(&format!("aes-gcm crate in place {size} B"), |m| {
            raw_aes_gcm(m, size)
        });
    }

    b.section("4. playback of a long recording (read at offsets, decrypt, PCM)");
    let hours = if full { "4 h" } else { "1 min" };
    let long = LongRecording::write(&b.dir, if full { 7200 } else { 30 });
    b.run(&format!("playback/open+index {hours} file"), "open", |m| {
        long.open_index(m)
    });
    b.run(
        &format!("playback/1 s range mid-file {hours}"),
        "request",
        |m| long.middle_range(m),
    );
    b.run_bytes("playback/stream WAV, 60 s ranges", |m| long.stream(m));
    b.run(
        &format!("playback/read whole {hours} file (for comparison)"),
        "read",
        |m| long.read_whole(m),
    );
    group_commit::section(&b);
    let _ = std::fs::remove_dir_all(&b.dir);
}

// ---------------------------------------------------------------------------
// Harness

struct Bench<'a> {
    full: bool,
    filters: Vec<&'a str>,
    dir: PathBuf,
}

/// One run of one measurement: timed segments and the work they did.
struct Meter {
    full: bool,
    wall: Duration,
    cpu_ns: Option<u64>,
    ops: u64,
    started: Option<(Instant, Option<u64>)>,
}

impl Meter {
    /// True while more timed work is needed.
    fn more(&self) -> bool {
        if self.full {
            self.wall < MIN_TIME
        } else {
            self.ops == 0
        }
    }

    /// Scales a segment size down in quick mode.
    fn n(&self, full: u64, quick: u64) -> u64 {
        if self.full { full } else { quick }
    }

    fn start(&mut self) {
        self.started = Some((Instant::now(), thread_cpu_ns()));
    }

    fn stop(&mut self, ops: u64) {
        let cpu1 = thread_cpu_ns();
        let t1 = Instant::now();
        let (t0, cpu0) = self.started.take().expect("stop without start");
        self.wall += t1 - t0;
        self.cpu_ns = match (self.cpu_ns, cpu0, cpu1) {
            (Some(acc), Some(a), Some(b)) => Some(acc + b.saturating_sub(a)),
            _ => None,
        };
        self.ops += ops;
    }
}

/// On-CPU nanoseconds of the calling thread (`CLOCK_THREAD_CPUTIME_ID`).
#[cfg(unix)]
fn thread_cpu_ns() -> Option<u64> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    (rc == 0).then(|| ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64)
}

#[cfg(not(unix))]
fn thread_cpu_ns() -> Option<u64> {
    None
}

struct Stats {
    median: f64,
    min: f64,
    max: f64,
}

fn stats(mut v: Vec<f64>) -> Stats {
    v.sort_by(f64::total_cmp);
    Stats {
        median: v[v.len() / 2],
        min: v[0],
        max: v[v.len() - 1],
    }
}

fn fmt(s: &Stats) -> String {
    format!("{} ({}-{})", num(s.median), num(s.min), num(s.max))
}

fn num(x: f64) -> String {
    if x >= 100.0 {
        format!("{x:.0}")
    } else if x >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

impl Bench<'_> {
    fn wanted(&self, name: &str) -> bool {
        self.filters.is_empty() || self.filters.iter().any(|f| name.contains(f))
    }

    fn section(&self, title: &str) {
        println!("\n## {title}");
    }

    fn meters(&self, name: &str, mut f: impl FnMut(&mut Meter)) -> Option<Vec<Meter>> {
        if !self.wanted(name) {
            return None;
        }
        let reps = if self.full { REPS } else { 1 };
        let mut out = Vec::with_capacity(reps);
        for _ in 0..reps {
            let mut m = Meter {
                full: self.full,
                wall: Duration::ZERO,
                cpu_ns: Some(0),
                ops: 0,
                started: None,
            };
            f(&mut m);
            assert!(m.ops > 0, "{name}: no work measured");
            out.push(m);
        }
        Some(out)
    }

    /// Prints ns per `unit`, wall and on-CPU; for packets also packets/s
    /// and calls (100 packets/s) per core from the on-CPU median.
    fn run(&self, name: &str, unit: &str, f: impl FnMut(&mut Meter)) {
        let Some(ms) = self.meters(name, f) else {
            return;
        };
        let wall = stats(
            ms.iter()
                .map(|m| m.wall.as_nanos() as f64 / m.ops as f64)
                .collect(),
        );
        let cpu = ms
            .iter()
            .map(|m| m.cpu_ns.map(|c| c as f64 / m.ops as f64))
            .collect::<Option<Vec<f64>>>()
            .map(stats);
        let mut line = format!(
            "{name:<40} wall ns/{unit}: {:<24} cpu ns/{unit}: {}",
            fmt(&wall),
            cpu.as_ref().map_or("-".into(), fmt)
        );
        if unit == "packet" {
            let per_pkt = cpu.as_ref().map_or(wall.median, |c| c.median);
            let pps = 1e9 / per_pkt;
            line += &format!(
                "  => {} packets/s/core, {} calls/core (cpu median)",
                num(pps),
                num(pps / CALL_PPS)
            );
        }
        if unit == "chunk" {
            let per_pkt = cpu.as_ref().map_or(wall.median, |c| c.median) / PACKETS_PER_CHUNK as f64;
            line += &format!(
                "  => {} ns/packet-equivalent (cpu median / {PACKETS_PER_CHUNK})",
                num(per_pkt)
            );
        }
        println!("{line}");
    }

    /// Prints MB/s (10^6 bytes per second) of wall time and of on-CPU time
    /// (`openssl speed` divides by CPU time too); ops are bytes.
    fn run_bytes(&self, name: &str, f: impl FnMut(&mut Meter)) {
        let Some(ms) = self.meters(name, f) else {
            return;
        };
        let wall = stats(
            ms.iter()
                .map(|m| m.ops as f64 / m.wall.as_secs_f64() / 1e6)
                .collect(),
        );
        let cpu = ms
            .iter()
            .map(|m| m.cpu_ns.map(|c| m.ops as f64 / c.max(1) as f64 * 1e3))
            .collect::<Option<Vec<f64>>>()
            .map(stats);
        println!(
            "{name:<40} wall MB/s: {:<24} cpu MB/s: {}",
            fmt(&wall),
            cpu.as_ref().map_or("-".into(), fmt)
        );
    }
}

fn bench_dir() -> PathBuf {
    let base = std::env::var_os("ANSIM_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")));
    base.join(format!("recording-bench-{}", std::process::id()))
}

// ---------------------------------------------------------------------------
// Inputs

/// One call's RTP: 20 ms PCMU packets, A→B and B→A alternating, the B→A
/// packet of each 20 ms frame arriving 3 ms after the A→B one.
struct Source {
    base: Instant,
    n: u64,
    seq: [u16; 2],
    ts: [u32; 2],
    buf: [u8; PACKET_LEN],
}

impl Source {
    fn new() -> Source {
        let mut buf = [0u8; PACKET_LEN];
        for (i, b) in buf[12..].iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(37) ^ 0x55;
        }
        Source {
            base: Instant::now(),
            n: 0,
            seq: [1000, 2000],
            ts: [160_000, 320_000],
            buf,
        }
    }

    fn next(&mut self) -> (Leg, Instant, &[u8]) {
        let d = (self.n & 1) as usize;
        let frame = self.n >> 1;
        self.n += 1;
        let arrival = self.base + Duration::from_micros(frame * 20_000 + d as u64 * 3_000);
        let b = &mut self.buf;
        b[0] = 0x80;
        b[1] = 0; // PCMU
        b[2..4].copy_from_slice(&self.seq[d].to_be_bytes());
        b[4..8].copy_from_slice(&self.ts[d].to_be_bytes());
        b[8..12].copy_from_slice(&(0x1234_5600 + d as u32).to_be_bytes());
        b[12] = frame as u8;
        self.seq[d] = self.seq[d].wrapping_add(1);
        self.ts[d] = self.ts[d].wrapping_add(PAYLOAD_LEN as u32);
        let dir = if d == 0 { Leg::A } else { Leg::B };
        (dir, arrival, &self.buf)
    }
}

/// The relay's one parse of a datagram (counted in the stage that hands
/// it on, as in production).
fn parsed(data: &[u8]) -> Packet<'_> {
    Packet::parse(PacketKind::Rtp, data).expect("the source makes RTP")
}

/// As [`parsed`], for the aligner, which takes RTP only.
fn parsed_rtp(data: &[u8]) -> RtpPacket<'_> {
    RtpPacket::parse(data).expect("the source makes RTP")
}

fn header() -> CrecHeader {
    CrecHeader {
        recording_id: uuid::Uuid::new_v4(),
        call_id: "bench-call-0123456789abcdef".into(),
        epoch_id: "2026-12".into(),
        codec: Codec::Pcmu,
        sample_rate: 8000,
        channels: 2,
        created_ms: 0,
    }
}

/// A new recording file: CREC writer plus blob with its header synced, as
/// `writer::start` does (not timed).
fn new_recording(store: &LocalBlobStore) -> (CrecWriter, Box<dyn BlobWriter>, String) {
    let h = header();
    let name = format!("{}.crec", h.recording_id);
    let (crec, header_bytes) = CrecWriter::new(&h, &Dek::generate()).expect("crec header");
    let mut blob = store.create(&name).expect("blob create");
    blob.append(&header_bytes).expect("blob append");
    blob.sync().expect("blob sync");
    (crec, blob, name)
}

fn remove_blob(dir: &Path, name: &str) {
    // Plain unlink: `BlobStore::delete` overwrites with zeros first.
    let _ = std::fs::remove_file(dir.join(name));
}

/// `writer::append_block`: interleaves caller/callee bytes into `pending`.
fn append_block(pending: &mut Vec<u8>, pending_start_ms: &mut u64, block: &Block) {
    if pending.is_empty() {
        *pending_start_ms = block.start_ms;
    }
    for (c, e) in block.caller.iter().zip(block.callee.iter()) {
        pending.push(*c);
        pending.push(*e);
    }
}

// ---------------------------------------------------------------------------
// 1. The whole path

/// The whole recording path per packet, synchronously: the tap on the
/// relay worker (codec, aligner, interleave, chunk cut) and what the
/// writer does with each chunk (seal, append, optionally sync). The writer
/// task's wake-ups and `spawn_blocking` (once per 2 s chunk) are not
/// included.
fn whole_path(m: &mut Meter, dir: &Path, fsync: bool) {
    let store = LocalBlobStore::new(dir).expect("blob dir");
    let dropped = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut src = Source::new();
    // Long segments (many chunks) so timer reads are negligible.
    let chunks = m.n(if fsync { 20 } else { 100 }, 2);
    let packets = chunks * PACKETS_PER_CHUNK;
    let mut sealed = 0u64;
    while m.more() {
        let (mut tap, mut rx) = RecordingTap::channel(Arc::clone(&dropped));
        let (mut crec, mut blob, name) = new_recording(&store);
        m.start();
        for _ in 0..packets {
            let (d, arrival, data) = src.next();
            tap.on_packet(d, parsed(data), arrival);
            while let Ok(message) = rx.try_recv() {
                if let TapMessage::Chunk {
                    start_ms,
                    bytes,
                    last,
                } = message
                {
                    let chunk = crec.seal_chunk(start_ms, &bytes, last).expect("seal");
                    blob.append(&chunk).expect("append");
                    if fsync {
                        blob.sync().expect("sync");
                    }
                    sealed += 1;
                }
            }
        }
        m.stop(packets);
        drop(blob);
        remove_blob(dir, &name);
    }
    assert!(sealed > 0, "no chunk came out");
    assert_eq!(dropped.load(std::sync::atomic::Ordering::Relaxed), 0);
}

// ---------------------------------------------------------------------------
// 2. Stages

/// The relay's one parse of an RTP packet: our header (bounds, padding,
/// RTCP range checked) and its payload slice.
fn stage_parse_ours(m: &mut Meter) {
    let mut src = Source::new();
    let n = m.n(1_000_000, 100);
    while m.more() {
        m.start();
        for _ in 0..n {
            let (_, _, data) = src.next();
            let p = RtpPacket::parse(data).expect("the source makes RTP");
            black_box((p.header.sequence, p.payload().len()));
        }
        m.stop(n);
    }
}

/// The same with the `rtp-rs` zero-copy reader the design card names
/// (which would still need our RTCP and padding checks).
fn stage_parse_rtp_rs(m: &mut Meter) {
    let mut src = Source::new();
    let n = m.n(1_000_000, 100);
    while m.more() {
        m.start();
        for _ in 0..n {
            let (_, _, data) = src.next();
            let r = rtp_rs::RtpReader::new(data).expect("the source makes RTP");
            black_box((r.sequence_number(), r.payload().len()));
        }
        m.stop(n);
    }
}

fn stage_generate(m: &mut Meter) {
    let mut src = Source::new();
    let n = m.n(1_000_000, 100);
    while m.more() {
        m.start();
        for _ in 0..n {
            let (d, a, data) = src.next();
            black_box((d, a, data));
        }
        m.stop(n);
    }
}

/// The tap's `on_packet` alone, as the relay worker calls it: aligner
/// insertion, block release, interleave, and a chunk queued every 2 s
/// (the queue is drained outside the timed part).
fn stage_tap(m: &mut Meter) {
    let dropped = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let (mut tap, mut rx) = RecordingTap::channel(Arc::clone(&dropped));
    let mut src = Source::new();
    let n = m.n(4000, 100);
    while m.more() {
        m.start();
        for _ in 0..n {
            let (d, a, data) = src.next();
            tap.on_packet(d, parsed(data), a);
        }
        m.stop(n);
        while rx.try_recv().is_ok() {}
    }
    assert_eq!(dropped.load(std::sync::atomic::Ordering::Relaxed), 0);
}

/// `Aligner::push` + `poll_block` (blocks dropped).
fn stage_aligner(m: &mut Meter) {
    let mut src = Source::new();
    let mut aligner = Aligner::new(Codec::Pcmu, AlignConfig::default());
    let n = m.n(100_000, 400);
    let mut blocks = 0u64;
    while m.more() {
        m.start();
        for _ in 0..n {
            let (d, a, data) = src.next();
            let ch = match d {
                Leg::A => ansim::recording::align::Channel::Caller,
                Leg::B => ansim::recording::align::Channel::Callee,
            };
            aligner.push(ch, parsed_rtp(data), a);
            while let Some(b) = aligner.poll_block() {
                blocks += 1;
                black_box(&b);
            }
        }
        m.stop(n);
    }
    assert!(blocks > 0);
    assert_eq!(aligner.stats().packets_used, src.n);
}

/// `writer::append_block` on 20 ms blocks (160 samples per channel), i.e.
/// once per two packets; `pending` is cleared every 2 s of audio.
fn stage_interleave(m: &mut Meter) {
    let block = Block {
        start_ms: 0,
        caller: vec![0x55; 160],
        callee: vec![0xd5; 160],
    };
    let mut pending = Vec::new();
    let mut start = 0u64;
    let n = m.n(100_000, 100);
    while m.more() {
        m.start();
        for _ in 0..n {
            append_block(&mut pending, &mut start, black_box(&block));
            if pending.len() >= CHUNK_BYTES {
                black_box(&pending);
                pending.clear();
            }
        }
        m.stop(n);
    }
}

/// `CrecWriter::seal_chunk` on `size` bytes; ops are chunks, or bytes if
/// `count_bytes` (for `run_bytes`).
fn seal_sizes(m: &mut Meter, size: usize, count_bytes: bool) {
    let plain: Vec<u8> = (0..size).map(|i| i as u8).collect();
    let (mut crec, _) = CrecWriter::new(&header(), &Dek::generate()).expect("crec");
    let per_seg = m.n(((8 << 20) / size as u64).clamp(1, 10_000), 2);
    let mut t = 0u64;
    while m.more() {
        m.start();
        for _ in 0..per_seg {
            let c = crec.seal_chunk(t, black_box(&plain), false).expect("seal");
            t += 2000;
            black_box(&c);
        }
        m.stop(if count_bytes {
            per_seg * size as u64
        } else {
            per_seg
        });
        // Fresh writer long before the 32-bit chunk counter could run out.
        if crec.chunks_written() > 1 << 30 {
            crec = CrecWriter::new(&header(), &Dek::generate())
                .expect("crec")
                .0;
        }
    }
}

/// The aes-gcm crate directly, in place, detached tag, no allocation: the
/// floor under `seal_chunk` (which also builds AD and nonce and copies).
fn raw_aes_gcm(m: &mut Meter, size: usize) {
    let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&[7u8; 32]));
    let mut buf: Vec<u8> = (0..size).map(|i| i as u8).collect();
    let ad = [0u8; 45];
    let per_seg = m.n(((8 << 20) / size as u64).clamp(1, 10_000), 2);
    let mut counter = 0u64;
    while m.more() {
        m.start();
        for _ in 0..per_seg {
            let mut nonce = [0u8; 12];
            nonce[4..].copy_from_slice(&counter.to_be_bytes());
            counter += 1;
            let tag = cipher
                .encrypt_in_place_detached(Nonce::from_slice(&nonce), &ad, &mut buf)
                .expect("encrypt");
            black_box(&tag);
        }
        m.stop(per_seg * size as u64);
    }
}

/// `BlobWriter::append` of a sealed 2 s chunk, with or without `sync()`;
/// a new blob every 1000 chunks (not timed).
fn stage_append(m: &mut Meter, dir: &Path, fsync: bool) {
    let store = LocalBlobStore::new(dir).expect("blob dir");
    let (mut crec, _) = CrecWriter::new(&header(), &Dek::generate()).expect("crec");
    let chunk = crec
        .seal_chunk(0, &vec![0x55; CHUNK_BYTES], false)
        .expect("seal");
    let per_seg = m.n(if fsync { 20 } else { 200 }, 2);
    let mut in_blob = 0;
    let (_, mut blob, mut name) = new_recording(&store);
    while m.more() {
        m.start();
        for _ in 0..per_seg {
            blob.append(&chunk).expect("append");
            if fsync {
                blob.sync().expect("sync");
            }
        }
        m.stop(per_seg);
        in_blob += per_seg;
        if in_blob >= 1000 {
            drop(blob);
            remove_blob(dir, &name);
            (_, blob, name) = new_recording(&store);
            in_blob = 0;
        }
    }
    drop(blob);
    remove_blob(dir, &name);
}

// ---------------------------------------------------------------------------
// 4. Playback

/// A recording of 2-second chunks on disk, as playback finds it.
struct LongRecording {
    store: LocalBlobStore,
    name: String,
    id: uuid::Uuid,
    dek: Dek,
}

impl LongRecording {
    /// Writes `chunks` chunks of 32,000 bytes (not timed).
    fn write(dir: &Path, chunks: u64) -> LongRecording {
        let store = LocalBlobStore::new(dir).expect("blob dir");
        let h = header();
        let dek = Dek::generate();
        let name = format!("{}.crec", h.recording_id);
        let (mut crec, head) = CrecWriter::new(&h, &dek).expect("crec header");
        let mut blob = store.create(&name).expect("blob create");
        blob.append(&head).expect("append");
        let audio: Vec<u8> = (0..CHUNK_BYTES).map(|i| (i * 7) as u8).collect();
        for i in 0..chunks {
            let sealed = crec
                .seal_chunk(i * 2000, &audio, i + 1 == chunks)
                .expect("seal");
            blob.append(&sealed).expect("append");
        }
        blob.sync().expect("sync");
        LongRecording {
            store,
            name,
            id: h.recording_id,
            dek,
        }
    }

    /// What every audio request does first: open the file, check the
    /// header and key commitment, index the chunks, lay out the WAV and
    /// authenticate its length (one chunk decrypted).
    fn layout(&self) -> (Box<dyn ReadAt>, ansim::recording::playback::WavLayout) {
        let file = self.store.open(&self.name).expect("open");
        let layout = {
            let reader = CrecReader::open_at(&*file, self.id, &self.dek).expect("reader");
            ansim::recording::playback::WavLayout::new(&reader, Codec::Pcmu).expect("layout")
        };
        (file, layout)
    }

    fn open_index(&self, m: &mut Meter) {
        while m.more() {
            m.start();
            black_box(self.layout());
            m.stop(1);
        }
    }

    /// One request for one second from the middle, from opening the file
    /// to the last PCM byte.
    fn middle_range(&self, m: &mut Meter) {
        while m.more() {
            m.start();
            let (file, layout) = self.layout();
            let reader = CrecReader::open_at(&*file, self.id, &self.dek).expect("reader");
            let mid = layout.len() / 2 / 4 * 4;
            for piece in layout.range(&reader, mid, mid + 32_000) {
                black_box(piece.expect("piece"));
            }
            m.stop(1);
        }
    }

    /// Reading the whole file, as playback did before it read at offsets.
    fn read_whole(&self, m: &mut Meter) {
        while m.more() {
            m.start();
            black_box(self.store.read(&self.name).expect("read"));
            m.stop(1);
        }
    }

    /// WAV bytes produced per second while streaming.
    fn stream(&self, m: &mut Meter) {
        let (file, layout) = self.layout();
        let reader = CrecReader::open_at(&*file, self.id, &self.dek).expect("reader");
        let span = (60 * 32_000).min(layout.len() - 44);
        let mut at = 44;
        while m.more() {
            if at + span > layout.len() {
                at = 44;
            }
            m.start();
            let mut n = 0;
            for piece in layout.range(&reader, at, at + span) {
                n += black_box(piece.expect("piece")).len() as u64;
            }
            m.stop(n);
            at += span;
        }
    }
}
