//! Real life is less tidy than a test call: a long silent hold in the
//! middle of a recorded call, and the disk filling up while one is
//! recorded. SIPp signals, the test's own sockets are the phones.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use ansim::recording::wav::goertzel_power;

use super::recording::{export, finished_recording, read_wav, tone};
use super::*;

/// Sends `ms` of a `freq` tone from `phone` to `to` as paced 20 ms PCMU
/// packets, RTP sequence and timestamp continuing from `seq`.
async fn talk(
    phone: &tokio::net::UdpSocket,
    to: SocketAddr,
    freq: f64,
    ms: u64,
    seq: &mut u16,
    ssrc: u32,
) {
    let audio = tone(freq, ms);
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    for frame in audio.chunks(160) {
        tick.tick().await;
        let mut p = vec![0x80, 0x00];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&(u32::from(*seq) * 160).to_be_bytes());
        p.extend_from_slice(&ssrc.to_be_bytes());
        p.extend_from_slice(frame);
        let _ = phone.send_to(&p, to).await;
        *seq = seq.wrapping_add(1);
    }
}

/// Whether `freq` stands out in `samples` (8 kHz) between `from_ms` and
/// `to_ms`, against `other`.
fn heard(samples: &[i16], from_ms: usize, to_ms: usize, freq: f64, other: f64) -> bool {
    let part = &samples[from_ms * 8..(to_ms * 8).min(samples.len())];
    goertzel_power(part, 8000, freq) > 20.0 * goertzel_power(part, 8000, other)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_70_second_silence_mid_call_is_recorded_whole() {
    const GAP_MS: u64 = 70_000;
    let t = SipTest::start("127.0.0.1/32").await;
    // 1 s of talk, 70 s of nothing from either side, 1 s of talk, BYE.
    let call = call_lasting(&t, "127.0.0.1", "127.0.0.1", 73_500).await;
    let (to_a, to_b) = (
        SocketAddr::from(([127, 0, 0, 1], call.relay_a)),
        SocketAddr::from(([127, 0, 0, 1], call.relay_b)),
    );
    let (mut seq_a, mut seq_b) = (0u16, 0u16);
    let started = Instant::now();
    tokio::join!(
        talk(&call.phone_a, to_a, 440.0, 1000, &mut seq_a, 0xA),
        talk(&call.phone_b, to_b, 880.0, 1000, &mut seq_b, 0xB),
    );
    tokio::time::sleep(Duration::from_millis(GAP_MS)).await;
    // The phones' clocks ran on through the silence (RTP timestamps jump).
    seq_a = seq_a.wrapping_add((GAP_MS / 20) as u16);
    seq_b = seq_b.wrapping_add((GAP_MS / 20) as u16);
    tokio::join!(
        talk(&call.phone_a, to_a, 440.0, 1000, &mut seq_a, 0xA),
        talk(&call.phone_b, to_b, 880.0, 1000, &mut seq_b, 0xB),
    );
    let talked = started.elapsed();
    let (uac_ok, uac_log) = call.caller.finish().await;
    let (uas_ok, uas_log) = call.callee.finish().await;
    assert!(uac_ok && uas_ok, "caller:\n{uac_log}\ncallee:\n{uas_log}");

    let calls = calls_of(&t).await;
    assert_eq!(calls.len(), 1);
    let rec = finished_recording(&t, &calls[0].id).await;
    assert_eq!(rec.state.as_str(), "complete", "{rec:?}");
    let out = t.dir.path().join("call.wav");
    let (code, stderr) = export(&t, &calls[0].id, &out);
    assert_eq!(code, Some(0), "{stderr}");
    let (left, right) = read_wav(&out);
    let total_ms = left.len() / 8;
    assert!(
        total_ms as u128 >= talked.as_millis() - 200,
        "{total_ms} ms recorded of {talked:?}"
    );
    // Both ends of the call, the audio after the gap included, each on
    // its own channel; silence in the middle.
    let after = total_ms - 2500;
    assert!(
        heard(&left, 100, 900, 440.0, 880.0),
        "caller before the gap"
    );
    assert!(
        heard(&right, 100, 900, 880.0, 440.0),
        "callee before the gap"
    );
    let tail_l = &left[after * 8..];
    let tail_r = &right[after * 8..];
    assert!(
        goertzel_power(tail_l, 8000, 440.0) > 20.0 * goertzel_power(tail_l, 8000, 880.0),
        "caller after the gap"
    );
    assert!(
        goertzel_power(tail_r, 8000, 880.0) > 20.0 * goertzel_power(tail_r, 8000, 440.0),
        "callee after the gap"
    );
    let middle = &left[5_000 * 8..60_000 * 8];
    assert!(
        middle.iter().all(|s| s.unsigned_abs() < 100),
        "the gap is silence"
    );
    t.stop().await;
}

/// A small tmpfs mounted over a directory for the length of a test.
struct SmallDisk {
    at: PathBuf,
}

impl SmallDisk {
    /// Mounts `size_kib` of tmpfs at `at` (mode 0700, as ansim wants its
    /// recordings directory) and fills all but `free_kib` of it. Needs
    /// root, as CI has: otherwise the test fails and says so.
    fn mount(at: &Path, size_kib: u64, free_kib: u64) -> SmallDisk {
        std::fs::create_dir_all(at).unwrap();
        let status = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size_kib}k,mode=0700"),
                "tmpfs",
            ])
            .arg(at)
            .status()
            .expect("mount runs");
        assert!(
            status.success(),
            "mounting a tmpfs needs root (CI runs as root)"
        );
        let disk = SmallDisk {
            at: at.to_path_buf(),
        };
        let filler = vec![0u8; ((size_kib - free_kib) * 1024) as usize];
        std::fs::write(at.join("filler"), filler).unwrap();
        disk
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.at).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_mid_call_fails_the_recording_and_not_the_call() {
    let t = SipTest::start("127.0.0.1/32").await;
    // Room for the header and one 2 s chunk (32 KB), not for a second.
    let disk = SmallDisk::mount(&t.dir.path().join("rec"), 256, 44);
    let call = call_lasting(&t, "127.0.0.1", "127.0.0.1", 6_000).await;
    let (to_a, to_b) = (
        SocketAddr::from(([127, 0, 0, 1], call.relay_a)),
        SocketAddr::from(([127, 0, 0, 1], call.relay_b)),
    );
    let (mut seq_a, mut seq_b) = (0u16, 0u16);
    // Meanwhile the call goes on: what each phone says reaches the other.
    let (_, _, heard_by_b) = tokio::join!(
        talk(&call.phone_a, to_a, 440.0, 5000, &mut seq_a, 0xA),
        talk(&call.phone_b, to_b, 880.0, 5000, &mut seq_b, 0xB),
        receive_all(&call.phone_b, 250),
    );
    assert!(
        heard_by_b.len() >= 240,
        "the callee heard {} of 250 packets",
        heard_by_b.len()
    );
    let (uac_ok, uac_log) = call.caller.finish().await;
    let (uas_ok, uas_log) = call.callee.finish().await;
    assert!(
        uac_ok && uas_ok,
        "the call failed:\ncaller:\n{uac_log}\ncallee:\n{uas_log}"
    );

    let calls = calls_of(&t).await;
    assert_eq!(calls[0].result.map(|r| r.as_str()), Some("answered"));
    let rec = finished_recording(&t, &calls[0].id).await;
    assert_eq!(
        (rec.state.as_str(), rec.failure.map(|f| f.as_str())),
        ("failed", Some("write-error")),
        "{rec:?}"
    );
    let text = metrics_text(&t).await;
    assert_eq!(
        metric(&text, "ansim_recordings_failed_write_error_total"),
        1
    );
    // Nothing is left in state recording, and what was synced still reads.
    let out = t.dir.path().join("call.wav");
    let (code, stderr) = export(&t, &calls[0].id, &out);
    assert_eq!(code, Some(0), "{stderr}");
    let (left, _) = read_wav(&out);
    assert!(
        left.len() >= 8 * 1900,
        "the chunk written before the disk filled: {} samples",
        left.len()
    );
    drop(disk);
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_in_a_codec_that_cannot_be_recorded_goes_on_and_its_recording_fails() {
    let t = SipTest::start("127.0.0.1/32").await;
    let g729_only = |text: String| {
        text.replace("RTP/AVP 0", "RTP/AVP 18")
            .replace("a=rtpmap:0 PCMU/8000", "a=rtpmap:18 G729/8000")
    };
    let before = rss_kib();
    let call = call_edited(&t, "127.0.0.1", "127.0.0.1", 4_000, g729_only).await;
    let (to_a, to_b) = (
        SocketAddr::from(([127, 0, 0, 1], call.relay_a)),
        SocketAddr::from(([127, 0, 0, 1], call.relay_b)),
    );
    // 3 s of G.729 both ways (payload type 18): relayed, never buffered.
    let (_, _, heard) = tokio::join!(
        g729(&call.phone_a, to_a, 0xA),
        g729(&call.phone_b, to_b, 0xB),
        receive_all(&call.phone_b, 150),
    );
    assert!(
        heard.len() >= 140,
        "the callee heard {} of 150 packets",
        heard.len()
    );
    let (uac_ok, uac_log) = call.caller.finish().await;
    let (uas_ok, uas_log) = call.callee.finish().await;
    assert!(uac_ok && uas_ok, "caller:\n{uac_log}\ncallee:\n{uas_log}");
    let grown = rss_kib().saturating_sub(before);
    assert!(grown < 8 * 1024, "memory grew by {grown} KiB");
    let calls = calls_of(&t).await;
    let rec = finished_recording(&t, &calls[0].id).await;
    assert_eq!(
        (rec.state.as_str(), rec.failure.map(|f| f.as_str())),
        ("failed", Some("unsupported-codec")),
        "as the README's table of recording states says"
    );
    let text = metrics_text(&t).await;
    assert_eq!(
        metric(&text, "ansim_recordings_failed_unsupported_codec_total"),
        1
    );
    t.stop().await;
}

/// 150 paced G.729 packets (payload type 18) from `phone` to `to`.
async fn g729(phone: &tokio::net::UdpSocket, to: SocketAddr, ssrc: u32) {
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    for seq in 0..150u16 {
        tick.tick().await;
        let mut p = vec![0x80, 18];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
        p.extend_from_slice(&ssrc.to_be_bytes());
        p.extend([0x5a; 20]);
        let _ = phone.send_to(&p, to).await;
    }
}
