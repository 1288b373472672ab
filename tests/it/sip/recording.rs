//! Encrypted recording end to end: SIPp plays a 440 Hz tone as the caller
//! and an 880 Hz tone as the callee; ansim records the call; the export of
//! that call is a stereo WAV with 440 Hz on the left and 880 Hz on the
//! right, and no plaintext audio is anywhere on disk.

use std::collections::HashSet;

use ansim::media::g711::{Codec, encode_all};
use ansim::recording::wav::{deinterleave_pcm16, goertzel_power};

use super::*;

/// Seconds of tone each side plays.
const TONE_MS: u64 = 3000;

/// Asserts that no file directly in `dirs` (but the test's own tone,
/// WAV, log and scenario files) holds 24 consecutive bytes of any of
/// `tones`; returns how many files it read.
pub(super) fn assert_no_plaintext(dirs: &[PathBuf], tones: &[&[u8]]) -> usize {
    let windows: HashSet<&[u8]> = tones.iter().flat_map(|t| t.windows(24)).collect();
    let mut scanned = 0;
    let mut todo: Vec<PathBuf> = dirs.to_vec();
    while let Some(dir) = todo.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            if path.is_dir() {
                todo.push(path);
                continue;
            }
            let ours = [".ulaw", ".wav", ".log", ".xml"];
            if !path.is_file() || ours.iter().any(|ext| name.ends_with(ext)) {
                continue;
            }
            let bytes = std::fs::read(&path).unwrap();
            scanned += 1;
            assert!(
                !bytes.windows(24).any(|w| windows.contains(w)),
                "plaintext audio found in {}",
                path.display()
            );
        }
    }
    scanned
}

/// `ms` of a sine at `freq`, μ-law encoded.
pub(super) fn tone(freq: f64, ms: u64) -> Vec<u8> {
    let n = (ms * 8) as usize;
    let pcm: Vec<i16> = (0..n)
        .map(|i| (12000.0 * (2.0 * std::f64::consts::PI * freq * i as f64 / 8000.0).sin()) as i16)
        .collect();
    encode_all(Codec::Pcmu, &pcm)
}

/// A scenario copy that plays `tone_file` and (for the caller) lasts `call_ms`.
pub(super) fn tone_scenario(dir: &Path, name: &str, tone_file: &Path, call_ms: u64) -> PathBuf {
    let text = std::fs::read_to_string(scenario(name))
        .unwrap()
        .replace("TONE_FILE", &tone_file.display().to_string())
        .replace("CALL_MS", &call_ms.to_string());
    let path = dir.join(format!("tone_{name}"));
    std::fs::write(&path, text).unwrap();
    path
}

/// Waits until the call's recording has left state `recording`.
pub(super) async fn finished_recording(t: &SipTest, call_id: &str) -> ansim::store::RecordingRow {
    for _ in 0..250 {
        let found = t.store.find_recording(call_id).await.unwrap();
        if let Some(r) = found.filter(|r| r.state.as_str() != "recording") {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the recording of {call_id} never finished");
}

/// The environment that points the `ansim` binary at a test's files.
pub(super) fn cli_env(t: &SipTest) -> Vec<(String, String)> {
    let d = t.dir.path().display();
    vec![
        (
            "ANSIM_STORE__DATABASE_URL".into(),
            format!("sqlite://{d}/ansim.db"),
        ),
        ("ANSIM_STORE__RECORDINGS".into(), format!("file://{d}/rec")),
        (
            "ANSIM_KEYS__MASTER_KEY_FILE".into(),
            format!("{d}/master.key"),
        ),
        ("ANSIM_KEYS__STORE".into(), format!("dir:{d}/keys")),
        ("ANSIM_KEYS__DEV".into(), "false".into()),
    ]
}

/// Runs `ansim recording export ID --out OUT`; returns (exit code, stderr).
pub(super) fn export(t: &SipTest, id: &str, out: &Path) -> (Option<i32>, String) {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_ansim"));
    cmd.current_dir(t.dir.path())
        .args(["recording", "export", id, "--out"])
        .arg(out);
    for (k, v) in cli_env(t) {
        cmd.env(k, v);
    }
    let o = cmd.output().unwrap();
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Left and right channels of a 16-bit stereo WAV at 8 kHz.
pub(super) fn read_wav(path: &Path) -> (Vec<i16>, Vec<i16>) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..4], b"RIFF");
    assert_eq!(&bytes[8..16], b"WAVEfmt ");
    assert_eq!(u16::from_le_bytes([bytes[22], bytes[23]]), 2, "stereo");
    assert_eq!(
        u32::from_le_bytes([bytes[24], bytes[25], bytes[26], bytes[27]]),
        8000
    );
    assert_eq!(u16::from_le_bytes([bytes[34], bytes[35]]), 16, "16-bit");
    deinterleave_pcm16(&bytes[44..])
}

/// Milliseconds between the first and the last loud sample.
pub(super) fn audible_ms(samples: &[i16]) -> u64 {
    let loud = |s: &&i16| s.unsigned_abs() > 2000;
    let first = samples.iter().position(|s| loud(&s)).unwrap_or(0);
    let last = samples.iter().rposition(|s| loud(&s)).unwrap_or(0);
    ((last.saturating_sub(first)) / 8) as u64
}

/// Whether `freq` dominates `other` in `samples` (by a factor of 20).
pub(super) fn dominated_by(samples: &[i16], freq: f64, other: f64) -> bool {
    goertzel_power(samples, 8000, freq) > 20.0 * goertzel_power(samples, 8000, other)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorded_call_exports_caller_left_callee_right() {
    let t = SipTest::start("127.0.0.1/32").await;
    let (a_tone, b_tone) = (tone(440.0, TONE_MS), tone(880.0, TONE_MS));
    let (a_file, b_file) = (t.dir.path().join("a.ulaw"), t.dir.path().join("b.ulaw"));
    std::fs::write(&a_file, &a_tone).unwrap();
    std::fs::write(&b_file, &b_tone).unwrap();
    let uas_file = tone_scenario(t.dir.path(), "uas_tone.xml", &b_file, 0);
    let uac_file = tone_scenario(t.dir.path(), "uac_tone.xml", &a_file, TONE_MS + 300);
    let callee = Sipp::spawn(
        t.dir.path(),
        &uas_file,
        t.uas_port,
        &["-mp", &free_udp_port().to_string()],
        "uas",
    );
    let proxy = t.session.a.proxy_number.as_str().to_owned();
    let caller = uac(&t, &uac_file, CUSTOMER, &proxy, "uac");
    let (uac_ok, uac_log) = caller.finish().await;
    let (uas_ok, uas_log) = callee.finish().await;
    assert!(uac_ok && uas_ok, "caller:\n{uac_log}\ncallee:\n{uas_log}");

    let call_id = calls_of(&t).await.remove(0).id;
    let rec = finished_recording(&t, &call_id).await;
    assert_eq!(
        (
            rec.state.as_str(),
            rec.codec.map_or("unsupported", |c| c.as_str())
        ),
        ("complete", "PCMU")
    );
    let call = calls_of(&t).await.remove(0);
    assert_eq!(
        call.recording_id.as_deref(),
        Some(rec.id.as_str()),
        "the call record names its recording"
    );

    let out = t.dir.path().join("call.wav");
    // Even over a file readable by all, the export is the owner's only.
    std::fs::write(&out, b"old").unwrap();
    std::fs::set_permissions(&out, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let (code, stderr) = export(&t, &call.id, &out);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("complete"), "{stderr}");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&out).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600, "the clear WAV is readable by others");
    let (left, right) = read_wav(&out);
    assert!(
        dominated_by(&left, 440.0, 880.0),
        "left channel is not the caller's 440 Hz"
    );
    assert!(
        dominated_by(&right, 880.0, 440.0),
        "right channel is not the callee's 880 Hz"
    );
    for (side, ch) in [("caller", &left), ("callee", &right)] {
        let heard = audible_ms(ch);
        assert!(
            heard.abs_diff(TONE_MS) <= 100,
            "{side}: {heard} ms of audio, sent {TONE_MS} ms"
        );
    }
    let audits = t.store.audit_events("recording.export").await.unwrap();
    assert_eq!(audits.len(), 1);
    assert_eq!(audits[0].2, rec.id);

    // Nothing that was sent is on disk in the clear: not in the recordings,
    // the key store, the database or its WAL.
    let dirs = ["rec", "keys", "."].map(|d| t.dir.path().join(d));
    let scanned = assert_no_plaintext(&dirs, &[&a_tone, &b_tone]);
    assert!(scanned >= 4, "scanned only {scanned} files");
    t.stop().await;
}
