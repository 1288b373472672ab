//! The announcement played by the relay before bridging, on real sockets.

use super::*;
use crate::media::g711::{Codec, linear_to_ulaw};

/// 200 ms of a varying signal: 1,600 samples, 10 packets.
fn samples(n: usize) -> Vec<i16> {
    (0..n)
        .map(|i| ((i * 1237) % 30_000) as i16 - 15_000)
        .collect()
}

/// Receives `count` announcement packets on `phone` and checks them: all
/// from the relay's RTP port `from`, valid RTP with payload type `pt`,
/// consecutive sequence numbers, timestamps +160, the marker on the first
/// only, one SSRC, and the payloads `expected` cut in 160-byte frames.
/// Returns the SSRC.
async fn expect_announcement(phone: &UdpSocket, from: SocketAddr, pt: u8, expected: &[u8]) -> u32 {
    let mut first: Option<RtpHeader> = None;
    for (i, frame) in expected.chunks(160).enumerate() {
        let (packet, src) = recv(phone).await;
        assert_eq!(src, from, "packet {i} from the relay's RTP port");
        let h = RtpHeader::parse(&packet).expect("valid RTP");
        assert_eq!(packet[0] >> 6, 2, "version");
        assert_eq!(h.payload_type, pt, "packet {i}");
        assert_eq!(h.marker, i == 0, "marker on the first packet only ({i})");
        assert_eq!(
            (h.csrc_count, h.has_extension, h.has_padding),
            (0, false, false)
        );
        assert_eq!(h.payload(&packet), frame, "payload of packet {i}");
        let f = *first.get_or_insert(h);
        assert_eq!(h.ssrc, f.ssrc);
        assert_eq!(h.sequence, f.sequence.wrapping_add(i as u16), "packet {i}");
        assert_eq!(
            h.timestamp,
            f.timestamp.wrapping_add(160 * i as u32),
            "packet {i}"
        );
    }
    first.map(|h| h.ssrc).unwrap_or_default()
}

on_both_backends!(
    #[tokio::test]
    plays_to_both_legs_then_bridges
);
async fn plays_to_both_legs_then_bridges(io: MediaIo) {
    let tap = Arc::new(RecordingTap::default());
    let c = call(31460, relay_config(io), SharedTap::boxed(&tap));
    let audio = samples(1600);
    let expected: Vec<u8> = audio.iter().map(|&s| linear_to_ulaw(s)).collect();
    let announcement = Arc::new(Announcement::from_samples(audio).unwrap());
    let (to_a, to_b) = (
        c.relay_addr(Leg::A, PacketKind::Rtp),
        c.relay_addr(Leg::B, PacketKind::Rtp),
    );
    c.relay.play_then_bridge(announcement);

    // As soon as the first packet is out, both phones talk: not relayed.
    let mut first = [0u8; 2048];
    timeout(GUARD, c.phone_a.rtp.peek_from(&mut first))
        .await
        .expect("hang guard")
        .unwrap();
    send(&c.phone_a.rtp, &rtp(1, 0xa), to_a).await;
    send(&c.phone_b.rtp, &rtp(1, 0xb), to_b).await;
    send(
        &c.phone_b.rtcp,
        &rtcp(0xb),
        c.relay_addr(Leg::B, PacketKind::Rtcp),
    )
    .await;

    let ssrc_a = expect_announcement(&c.phone_a.rtp, to_a, 0, &expected).await;
    let ssrc_b = expect_announcement(&c.phone_b.rtp, to_b, 0, &expected).await;
    assert_ne!(ssrc_a, ssrc_b, "one stream per leg");
    assert!(![0xa, 0xb].contains(&ssrc_a) && ![0xa, 0xb].contains(&ssrc_b));
    // Exactly 10: nothing more, and what the phones said was not relayed.
    tokio::time::sleep(Duration::from_millis(60)).await;
    assert_nothing_pending(&c.phone_a.rtp);
    assert_nothing_pending(&c.phone_b.rtp);
    assert_nothing_pending(&c.phone_a.rtcp);

    // Bridged again, both ways, unchanged.
    send(&c.phone_a.rtp, &rtp(2, 0xa), to_a).await;
    assert_eq!(recv(&c.phone_b.rtp).await, (rtp(2, 0xa), to_b));
    send(&c.phone_b.rtp, &rtp(2, 0xb), to_b).await;
    assert_eq!(recv(&c.phone_a.rtp).await, (rtp(2, 0xb), to_a));

    until(&c.relay, |s| {
        s.a.rtp.packets_out == 11 && s.b.rtp.packets_out == 11
    })
    .await;
    let stats = c.relay.stats();
    for leg in [&stats.a, &stats.b] {
        assert_eq!(leg.announcement_sent, 10);
        assert_eq!(leg.announcement_dropped, 0);
        assert_eq!(leg.rtp.packets_out, 11, "10 announcement + 1 relayed");
        assert_eq!(leg.rtp.packets_in, 2);
    }
    assert_eq!((stats.a.dropped_announcing, stats.a.rtp.dropped), (1, 1));
    assert_eq!((stats.b.dropped_announcing, stats.b.rtp.dropped), (2, 1));
    assert_eq!(stats.b.rtcp.dropped, 1);
    // Held packets still latch.
    assert_eq!(stats.b.rtcp_latched, Some(addr(&c.phone_b.rtcp)));
    // The tap saw what the phones sent, never the announcement.
    let said = [
        rtp(1, 0xa),
        rtp(1, 0xb),
        rtcp(0xb),
        rtp(2, 0xa),
        rtp(2, 0xb),
    ];
    let seen = tap.packets.lock().unwrap();
    assert_eq!(seen.len(), said.len());
    assert!(seen.iter().all(|(_, _, p)| said.contains(p)));
}

on_both_backends!(
    #[tokio::test]
    uses_the_codec_seen_and_drops_without_target
);
async fn uses_the_codec_seen_and_drops_without_target(io: MediaIo) {
    let pool = Relay::new(LOCALHOST, at(io, 31480), at(io, 31489), relay_config(io)).unwrap();
    let relay = pool.open().unwrap();
    // Only A is known, by its SDP and a latched PCMA packet (B's SDP is
    // not known yet).
    let phone_a = UdpSocket::bind((LOCALHOST, 0)).await.unwrap();
    relay.set_remote(Leg::A, SocketAddr::new(LOCALHOST, 9));
    let to_a = SocketAddr::new(LOCALHOST, relay.local_port(Leg::A));
    let mut pcma = rtp(1, 0xa);
    pcma[1] = 8;
    send(&phone_a, &pcma, to_a).await;
    timeout(GUARD, async {
        while relay.stats().a.rtp_latched.is_none() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("latched");
    let audio = samples(170); // 2 packets, the second padded with silence
    let mut expected: Vec<u8> = audio.iter().map(|&s| Codec::Pcma.encode(s)).collect();
    expected.resize(320, Codec::Pcma.silence());
    relay.play_then_bridge(Arc::new(Announcement::from_samples(audio).unwrap()));
    expect_announcement(&phone_a, to_a, 8, &expected).await;
    until(&relay, |s| {
        s.a.announcement_sent == 2 && s.b.announcement_dropped == 2
    })
    .await;
    let stats = relay.stats();
    assert_eq!(
        (stats.a.announcement_sent, stats.a.announcement_dropped),
        (2, 0)
    );
    assert_eq!(
        (stats.b.announcement_sent, stats.b.announcement_dropped),
        (0, 2)
    );
}

on_both_backends!(
    #[tokio::test]
    defaults_to_pcmu_before_any_packet
);
async fn defaults_to_pcmu_before_any_packet(io: MediaIo) {
    let c = call(31500, relay_config(io), None);
    let audio = samples(160);
    let expected: Vec<u8> = audio.iter().map(|&s| linear_to_ulaw(s)).collect();
    c.relay
        .play_then_bridge(Arc::new(Announcement::from_samples(audio).unwrap()));
    let to_b = c.relay_addr(Leg::B, PacketKind::Rtp);
    expect_announcement(&c.phone_b.rtp, to_b, 0, &expected).await;
}
