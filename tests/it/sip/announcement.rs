//! The recording announcement: played to both phones after the answer,
//! before they hear each other.

use super::*;

/// A 400 ms 440 Hz tone at 8 kHz: 3,200 samples, 20 packets.
pub(super) fn tone() -> Vec<i16> {
    (0..3200)
        .map(|i| {
            (12_000.0 * (2.0 * std::f64::consts::PI * 440.0 * f64::from(i) / 8000.0).sin()) as i16
        })
        .collect()
}

/// Checks that `got` is the announcement: from ansim's port `relay`, PCMU,
/// one SSRC, consecutive sequence numbers, timestamps +160, the marker on
/// the first packet, payloads the μ-law frames of `ulaw`.
pub(super) fn assert_announcement(
    got: &[(Vec<u8>, SocketAddr)],
    relay: u16,
    ulaw: &[u8],
    who: &str,
) {
    let frames: Vec<&[u8]> = ulaw.chunks(160).collect();
    assert_eq!(got.len(), frames.len(), "{who}: announcement packets");
    let field = |p: &[u8], at: usize, len: usize| {
        p[at..at + len]
            .iter()
            .fold(0u32, |v, b| (v << 8) | u32::from(*b))
    };
    let (seq0, ts0, ssrc0) = (
        field(&got[0].0, 2, 2),
        field(&got[0].0, 4, 4),
        field(&got[0].0, 8, 4),
    );
    for (i, ((p, from), frame)) in got.iter().zip(&frames).enumerate() {
        assert_eq!(from.port(), relay, "{who}: packet {i} from ansim's port");
        assert_eq!(p.len(), 12 + 160, "{who}: packet {i}");
        assert_eq!(p[0], 0x80, "{who}: RTP v2, no padding/extension/CSRC");
        let marker = if i == 0 { 0x80 } else { 0 };
        assert_eq!(p[1], marker, "{who}: PCMU, marker on the first only ({i})");
        assert_eq!(field(p, 2, 2), (seq0 + i as u32) & 0xffff, "{who}: seq {i}");
        assert_eq!(
            field(p, 4, 4),
            ts0.wrapping_add(160 * i as u32),
            "{who}: ts {i}"
        );
        assert_eq!(field(p, 8, 4), ssrc0, "{who}: one SSRC");
        assert_eq!(&p[12..], *frame, "{who}: payload {i}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn announcement_plays_to_both_phones_before_the_bridge() {
    const PACKETS: u16 = 10;
    let samples = tone();
    let ulaw: Vec<u8> = samples
        .iter()
        .map(|&s| ansim::media::g711::linear_to_ulaw(s))
        .collect();
    let t = SipTest::start_with_announcement("127.0.0.1/32", &samples).await;
    let PhoneCall {
        phone_a,
        phone_b,
        relay_a,
        relay_b,
        caller,
        callee,
    } = call_with_test_phones(&t).await;

    // Once the announcement has started, both phones talk: not relayed.
    let mut buf = [0u8; 2048];
    tokio::time::timeout(Duration::from_secs(3), phone_a.peek_from(&mut buf))
        .await
        .expect("announcement reaches the caller")
        .unwrap();
    phone_a
        .send_to(&rtp_packet(999, 0xA, 0x11), ("127.0.0.1", relay_a))
        .await
        .unwrap();
    phone_b
        .send_to(&rtp_packet(999, 0xB, 0x22), ("127.0.0.1", relay_b))
        .await
        .unwrap();

    let heard_a = receive_all(&phone_a, 20).await;
    let heard_b = receive_all(&phone_b, 20).await;
    assert_announcement(&heard_a, relay_a, &ulaw, "caller");
    assert_announcement(&heard_b, relay_b, &ulaw, "callee");
    assert_ne!(
        heard_a[0].0[8..12],
        heard_b[0].0[8..12],
        "one RTP stream per leg"
    );

    // Then each other's media, unchanged; nothing said during it.
    let a_packets: Vec<_> = (0..PACKETS).map(|s| rtp_packet(s, 0xA, 0x55)).collect();
    let b_packets: Vec<_> = (0..PACKETS).map(|s| rtp_packet(s, 0xB, 0xAA)).collect();
    for p in &b_packets {
        phone_b.send_to(p, ("127.0.0.1", relay_b)).await.unwrap();
    }
    for p in &a_packets {
        phone_a.send_to(p, ("127.0.0.1", relay_a)).await.unwrap();
    }
    let at_b = receive_all(&phone_b, a_packets.len()).await;
    let at_a = receive_all(&phone_a, b_packets.len()).await;
    let payloads =
        |got: &[(Vec<u8>, SocketAddr)]| got.iter().map(|(p, _)| p.clone()).collect::<Vec<_>>();
    assert_eq!(
        payloads(&at_b),
        a_packets,
        "the caller's media reaches the callee"
    );
    assert_eq!(
        payloads(&at_a),
        b_packets,
        "the callee's media reaches the caller"
    );
    assert!(at_b.iter().all(|(_, from)| from.port() == relay_b));
    assert!(at_a.iter().all(|(_, from)| from.port() == relay_a));

    let (uac_ok, uac_log) = caller.finish().await;
    let (uas_ok, uas_log) = callee.finish().await;
    assert!(uac_ok && uas_ok, "caller:\n{uac_log}\ncallee:\n{uas_log}");
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unusable_announcement_stops_start_up_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stereo.wav");
    let mut wav = ansim::recording::wav::wav_header(2, 8000, 640).to_vec();
    wav.extend([0u8; 640]);
    std::fs::write(&path, wav).unwrap();
    let toml = format!(
        "[sip]\nlisten = [\"udp:127.0.0.1:{}\"]\n\
         [media]\nports = \"3900-3909\"\nannouncement = \"{}\"\n\
         [store]\ndatabase_url = \"sqlite://{d}/ansim.db\"\nrecordings = \"file://{d}/rec\"\n\
         [keys]\nmaster_key_file = \"{d}/master.key\"\nstore = \"dir:{d}/keys\"\n\
         [api]\nlisten = \"127.0.0.1:0\"\n",
        free_udp_port(),
        path.display(),
        d = dir.path().display(),
    );
    let config = Config::from_toml_str(&toml, Vec::new()).unwrap();
    let e = ansim::server::run(config, std::future::pending())
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("media.announcement"), "{e}");
    assert!(e.contains("stereo.wav"), "{e}");
    assert!(e.contains("2 channels"), "{e}");
}
