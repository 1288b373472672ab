//! `kill -9` in the middle of a recorded call, then a restart: the
//! recording decrypts up to its last flushed chunk and says it is
//! truncated, the call record says the call was interrupted.

use super::recording::{audible_ms, dominated_by, read_wav, tone, tone_scenario};
use super::*;

/// What a test needs to run `ansim serve` as a child process: the files
/// set up by an in-process start (stopped again), and the environment
/// that points the child at the same database, keys and ports.
struct Child {
    sip: SocketAddr,
    dir: PathBuf,
    uas_port: u16,
    proxy: String,
    store: ansim::store::Store,
    session_id: String,
    env: Vec<(String, String)>,
    /// Keeps the test's directory.
    _keep: tempfile::TempDir,
}

impl Child {
    async fn set_up(media_ports: &str) -> Child {
        let t = SipTest::start("127.0.0.1/32").await;
        let (sip, uas_port, api) = (t.sip, t.uas_port, t.api);
        let mut env = super::recording::cli_env(&t);
        env.push(("ANSIM_SIP__LISTEN".into(), format!("[\"udp:{sip}\"]")));
        env.push((
            "ANSIM_TRUNK__ADDRESS".into(),
            format!("127.0.0.1:{uas_port}"),
        ));
        env.push(("ANSIM_API__LISTEN".into(), api.to_string()));
        env.push(("ANSIM_MEDIA__PORTS".into(), media_ports.into()));
        let (dir, proxy) = (
            t.dir.path().to_owned(),
            t.session.a.proxy_number.as_str().to_owned(),
        );
        let (store, session_id) = (t.store.clone(), t.session.id.clone());
        let _keep = t.stop_keeping_files().await;
        Child {
            sip,
            dir,
            uas_port,
            proxy,
            store,
            session_id,
            env,
            _keep,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_call_leaves_a_truncated_but_readable_recording() {
    let Child {
        sip,
        dir,
        uas_port,
        proxy,
        store,
        session_id,
        env,
        _keep,
    } = Child::set_up("41800-41839").await;

    let mut ansim = serve_process(&dir, &env);
    wait_for_options(sip).await;
    let (a_file, b_file) = (dir.join("a.ulaw"), dir.join("b.ulaw"));
    std::fs::write(&a_file, tone(440.0, 10_000)).unwrap();
    std::fs::write(&b_file, tone(880.0, 10_000)).unwrap();
    let uas_file = tone_scenario(&dir, "uas_tone.xml", &b_file, 0);
    let uac_file = tone_scenario(&dir, "uac_tone.xml", &a_file, 10_000);
    let callee = Sipp::spawn(
        &dir,
        &uas_file,
        uas_port,
        &["-mp", &free_udp_port().to_string()],
        "uas",
    );
    let caller = Sipp::spawn(
        &dir,
        &uac_file,
        free_udp_port(),
        &[
            "-s",
            &proxy,
            "-key",
            "caller",
            CUSTOMER,
            "-mp",
            &free_udp_port().to_string(),
            &sip.to_string(),
        ],
        "uac",
    )
    .movable();

    // Wait until at least two chunks (4 s of audio) are on disk.
    let rec_dir = dir.join("rec");
    let mut blob_len = 0;
    for _ in 0..500 {
        blob_len = std::fs::read_dir(&rec_dir)
            .map(|d| {
                d.filter_map(|e| e.ok()?.metadata().ok())
                    .map(|m| m.len())
                    .max()
                    .unwrap_or(0)
            })
            .unwrap_or(0);
        if blob_len > 2 * 2 * 16_000 + 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        blob_len > 64_000,
        "recording never reached two chunks ({blob_len} bytes)"
    );
    ansim.start_kill().unwrap(); // SIGKILL
    ansim.wait().await.unwrap();
    drop((caller, callee));

    // Start again: start-up marks what was left half-done.
    let mut again = serve_process(&dir, &env);
    wait_for_options(sip).await;
    let pid = again.id().unwrap().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    assert!(again.wait().await.unwrap().success());

    let calls = store.list_calls(&session_id).await.unwrap();
    assert_eq!(calls.len(), 1);
    assert_eq!(
        (
            calls[0].result.map(|r| r.as_str()),
            calls[0].hangup_side.map(|h| h.as_str())
        ),
        (Some("interrupted"), Some("system"))
    );
    let rec = store.find_recording(&calls[0].id).await.unwrap().unwrap();
    assert_eq!(rec.state.as_str(), "truncated");

    // The export still works, says truncated, and holds the flushed audio.
    let out = dir.join("crash.wav");
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_ansim"));
    cmd.current_dir(&dir)
        .args(["recording", "export", &calls[0].id, "--out"])
        .arg(&out);
    for (k, v) in &env {
        cmd.env(k, v);
    }
    let o = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert!(stderr.contains("truncated"), "{stderr}");
    let (left, right) = read_wav(&out);
    assert!(
        audible_ms(&left) >= 3900,
        "only {} ms survived",
        audible_ms(&left)
    );
    assert!(dominated_by(&left, 440.0, 880.0) && dominated_by(&right, 880.0, 440.0));
}

/// Call records are written behind the calls, in batches: a `kill -9`
/// shortly after calls ended loses none of their records (the README's
/// bound is 100 ms at a steady load; the margin here is for a busy CI
/// machine).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_right_after_calls_keeps_their_records() {
    const CALLS: usize = 10;
    let Child {
        sip,
        dir,
        uas_port,
        proxy,
        store,
        session_id,
        env,
        _keep,
    } = Child::set_up("41840-41899").await;

    let mut ansim = serve_process(&dir, &env);
    wait_for_options(sip).await;
    let count = CALLS.to_string();
    let callee = Sipp::spawn(
        &dir,
        &scenario("uas_answer.xml"),
        uas_port,
        &["-m", &count],
        "uas",
    );
    let caller = Sipp::spawn(
        &dir,
        &scenario("uac_call.xml"),
        free_udp_port(),
        &[
            "-s",
            &proxy,
            "-key",
            "caller",
            CUSTOMER,
            "-m",
            &count,
            "-r",
            "20",
            &sip.to_string(),
        ],
        "uac",
    )
    .movable();
    let (uac_ok, uac_log) = caller.finish().await;
    assert!(uac_ok, "caller failed:\n{uac_log}");
    let (uas_ok, uas_log) = callee.finish().await;
    assert!(uas_ok, "callee failed:\n{uas_log}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    ansim.start_kill().unwrap(); // SIGKILL
    ansim.wait().await.unwrap();

    let calls = store.list_calls(&session_id).await.unwrap();
    assert_eq!(calls.len(), CALLS, "{calls:?}");
    for call in &calls {
        assert_eq!(
            call.result.map(|r| r.as_str()),
            Some("answered"),
            "{call:?}"
        );
        assert!(
            call.answer_at.is_some() && call.end_at.is_some(),
            "{call:?}"
        );
    }
}
