//! Relay tests on real UDP sockets on 127.0.0.1. Each test has its own port
//! range, below Linux's ephemeral range (32768..) so that sockets bound to
//! port 0 here or elsewhere do not squat them; timeouts are only hang guards.

use std::io::ErrorKind;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::time::timeout;

use super::*;

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// Runs a test `fn name(io: MediaIo)` on both relay backends, as
/// `name::epoll` and `name::io_uring` (the second on ports shifted by
/// [`at`], so the two run in parallel).
macro_rules! on_both_backends {
    ($(#[$attr:meta])* $name:ident) => {
        mod $name {
            use crate::media::MediaIo;
            $(#[$attr])*
            async fn epoll() {
                super::$name(MediaIo::Epoll).await;
            }
            $(#[$attr])*
            async fn io_uring() {
                super::$name(MediaIo::IoUring).await;
            }
        }
    };
}

/// Where a test's port `port` is for backend `io`: as written for epoll,
/// 6000 below for io_uring (a range no other test uses).
fn at(io: MediaIo, port: u16) -> u16 {
    match io {
        MediaIo::Epoll => port,
        MediaIo::IoUring => port - 6000,
    }
}

/// The default relay settings on backend `io`.
fn relay_config(io: MediaIo) -> RelayConfig {
    RelayConfig {
        io,
        ..RelayConfig::default()
    }
}
const GUARD: Duration = Duration::from_secs(5);

/// A call: its media handle, the relay (declared after the handle, so it
/// drops last), and two phones (port pairs of their own, so a phone's
/// RTCP is on its RTP port + 1 as SDP implies).
struct Call {
    relay: MediaHandle,
    pool: Relay,
    phone_a: Phone,
    phone_b: Phone,
}

/// A phone's RTP and RTCP sockets.
struct Phone {
    rtp: UdpSocket,
    rtcp: UdpSocket,
}

/// A phone on the even port `port` and the one above.
fn phone(port: u16) -> Phone {
    let bind = |port| {
        let socket = std::net::UdpSocket::bind((LOCALHOST, port)).unwrap();
        socket.set_nonblocking(true).unwrap();
        UdpSocket::from_std(socket).unwrap()
    };
    Phone {
        rtp: bind(port),
        rtcp: bind(port + 1),
    }
}

/// A relay with one call on `base..base+10`, phone ports in
/// `base+10..base+20`.
fn call(base: u16, config: RelayConfig, tap: Option<Box<dyn MediaTap>>) -> Call {
    let (base, io) = (at(config.io, base), config.io);
    let pool = Relay::new(LOCALHOST, base, base + 9, config).unwrap();
    // Not a silent fallback: each backend is the one tested.
    assert_eq!(pool.io(), io, "the relay fell back from io_uring");
    let relay = pool.open().unwrap();
    if let Some(tap) = tap {
        relay.attach_tap(tap);
    }
    let (phone_a, phone_b) = (phone(base + 10), phone(base + 12));
    relay.set_remote(Leg::A, addr(&phone_a.rtp));
    relay.set_remote(Leg::B, addr(&phone_b.rtp));
    Call {
        relay,
        pool,
        phone_a,
        phone_b,
    }
}

impl Call {
    /// Where a phone on `leg` sends its `kind` packets.
    fn relay_addr(&self, leg: Leg, kind: PacketKind) -> SocketAddr {
        let port = self.relay.local_port(leg);
        SocketAddr::new(
            LOCALHOST,
            if kind == PacketKind::Rtp {
                port
            } else {
                port + 1
            },
        )
    }
}

fn addr(socket: &UdpSocket) -> SocketAddr {
    socket.local_addr().unwrap()
}

async fn send(from: &UdpSocket, packet: &[u8], to: SocketAddr) {
    assert_eq!(from.send_to(packet, to).await.unwrap(), packet.len());
}

async fn recv(socket: &UdpSocket) -> (Vec<u8>, SocketAddr) {
    let mut buf = [0u8; 4096];
    let (len, src) = timeout(GUARD, socket.recv_from(&mut buf))
        .await
        .expect("hang guard")
        .unwrap();
    (buf[..len].to_vec(), src)
}

fn assert_nothing_pending(socket: &UdpSocket) {
    let mut buf = [0u8; 64];
    let err = socket.try_recv_from(&mut buf).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::WouldBlock);
}

/// PCMU packet: 12-byte header + 160 bytes of pattern.
fn rtp(seq: u16, ssrc: u32) -> Vec<u8> {
    let mut p = vec![0x80, 0];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend((0..160u16).map(|i| (i.wrapping_mul(7) ^ seq) as u8));
    p
}

/// RTCP receiver report without report blocks.
fn rtcp(ssrc: u32) -> Vec<u8> {
    let mut p = vec![0x80, 201, 0, 1];
    p.extend_from_slice(&ssrc.to_be_bytes());
    p
}

on_both_backends!(
    #[tokio::test]
    relays_rtp_both_ways_unchanged
);
async fn relays_rtp_both_ways_unchanged(io: MediaIo) {
    let c = call(31200, relay_config(io), None);
    let to_a = c.relay_addr(Leg::A, PacketKind::Rtp);
    let to_b = c.relay_addr(Leg::B, PacketKind::Rtp);
    for (from, to, dest, ssrc) in [
        (&c.phone_a, to_a, &c.phone_b, 0xa),
        (&c.phone_b, to_b, &c.phone_a, 0xb),
    ] {
        for seq in 0..50 {
            send(&from.rtp, &rtp(seq, ssrc), to).await;
            let (got, src) = recv(&dest.rtp).await;
            assert_eq!(got, rtp(seq, ssrc));
            assert_eq!(
                src.port(),
                if ssrc == 0xa {
                    to_b.port()
                } else {
                    to_a.port()
                }
            );
        }
    }
    assert_nothing_pending(&c.phone_a.rtp);
    assert_nothing_pending(&c.phone_b.rtp);
    // The worker counts a send once `sendmmsg` returns: maybe just after
    // the phone got it.
    until(&c.relay, |s| {
        s.a.rtp.packets_out == 50 && s.b.rtp.packets_out == 50
    })
    .await;
    let stats = c.relay.stats();
    for leg in [&stats.a, &stats.b] {
        let bytes = 50 * 172;
        let expect = Counters {
            packets_in: 50,
            bytes_in: bytes,
            packets_out: 50,
            bytes_out: bytes,
            dropped: 0,
            foreign: 0,
        };
        assert_eq!(leg.rtp, expect);
        assert_eq!(leg.rtcp, Counters::default());
    }
    assert_eq!(stats.a.rtp_latched, Some(addr(&c.phone_a.rtp)));
    assert_eq!(stats.b.rtp_latched, Some(addr(&c.phone_b.rtp)));
    assert_eq!(stats.a.rtcp_latched, None);
}

/// Waits (bounded) until the relay's counters satisfy `done`.
async fn until(relay: &MediaHandle, done: impl Fn(&MediaStats) -> bool) {
    timeout(GUARD, async {
        while !done(&relay.stats()) {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await
    .expect("hang guard");
}

/// A socket on another loopback address (Linux routes 127.0.0.0/8 to lo).
async fn stranger(host: u8) -> UdpSocket {
    UdpSocket::bind((Ipv4Addr::new(127, 0, 0, host), 0))
        .await
        .unwrap()
}

on_both_backends!(
    #[tokio::test]
    sdp_policy_admits_the_sdp_ip_and_latches_its_port
);
async fn sdp_policy_admits_the_sdp_ip_and_latches_its_port(io: MediaIo) {
    let config = relay_config(io);
    let totals = config.totals.clone();
    let c = call(31220, config, None);
    let decoy = UdpSocket::bind((LOCALHOST, 0)).await.unwrap();
    c.relay.set_remote(Leg::B, addr(&decoy)); // SDP says decoy; B sends from phone_b
    let to_a = c.relay_addr(Leg::A, PacketKind::Rtp);
    let to_b = c.relay_addr(Leg::B, PacketKind::Rtp);

    send(&c.phone_a.rtp, &rtp(1, 0xa), to_a).await;
    assert_eq!(
        recv(&decoy).await.0,
        rtp(1, 0xa),
        "before latching: SDP address"
    );
    // Same IP as the SDP, another port: admitted until a port is latched.
    send(&c.phone_b.rtp, &rtp(1, 0xb), to_b).await;
    assert_eq!(recv(&c.phone_a.rtp).await.0, rtp(1, 0xb));
    send(&c.phone_a.rtp, &rtp(2, 0xa), to_a).await;
    assert_eq!(
        recv(&c.phone_b.rtp).await.0,
        rtp(2, 0xa),
        "after latching: real source"
    );
    assert_nothing_pending(&decoy);
    assert_eq!(c.relay.stats().b.rtp_latched, Some(addr(&c.phone_b.rtp)));

    // A stranger on another address, and one on the SDP's address but
    // another port, are dropped before anything else: not relayed.
    let outsider = stranger(2).await;
    send(&outsider, &rtp(9, 0x5), to_b).await;
    let same_ip = UdpSocket::bind((LOCALHOST, 0)).await.unwrap();
    send(&same_ip, &rtp(9, 0x6), to_b).await;
    send(&c.phone_b.rtp, &rtp(2, 0xb), to_b).await;
    assert_eq!(
        recv(&c.phone_a.rtp).await.0,
        rtp(2, 0xb),
        "the strangers' packets, sent first, were not relayed"
    );
    let stats = c.relay.stats();
    assert_eq!((stats.b.rtp.foreign, stats.b.rtp.packets_in), (2, 2));
    assert_eq!(stats.b.rtp_latched, Some(addr(&c.phone_b.rtp)));
    assert_eq!(totals.foreign_packets.load(Ordering::Relaxed), 2);
    assert_nothing_pending(&outsider);
    assert_nothing_pending(&same_ip);

    // A new SDP naming another address: only that address is admitted.
    let moved = stranger(3).await;
    c.relay.set_remote(Leg::B, addr(&moved));
    send(&c.phone_b.rtp, &rtp(3, 0xb), to_b).await;
    send(&moved, &rtp(1, 0xc), to_b).await;
    assert_eq!(recv(&c.phone_a.rtp).await.0, rtp(1, 0xc));
    send(&c.phone_a.rtp, &rtp(3, 0xa), to_a).await;
    assert_eq!(recv(&moved).await.0, rtp(3, 0xa));
    assert_nothing_pending(&c.phone_b.rtp);
    assert_eq!(c.relay.stats().b.rtp.foreign, 3);
}

on_both_backends!(
    #[tokio::test]
    learn_policy_latches_the_first_source_after_an_offer_answer
);
async fn learn_policy_latches_the_first_source_after_an_offer_answer(io: MediaIo) {
    let config = RelayConfig {
        source: SourcePolicy::Learn {
            window: Duration::from_secs(30),
        },
        ..relay_config(io)
    };
    let c = call(31240, config, None);
    let (to_a, to_b) = (
        c.relay_addr(Leg::A, PacketKind::Rtp),
        c.relay_addr(Leg::B, PacketKind::Rtp),
    );
    // Behind NAT: B really sends from another address than its SDP's.
    let natted = stranger(4).await;
    send(&natted, &rtp(1, 0xb), to_b).await;
    assert_eq!(recv(&c.phone_a.rtp).await.0, rtp(1, 0xb));
    send(&c.phone_a.rtp, &rtp(1, 0xa), to_a).await;
    assert_eq!(recv(&natted).await.0, rtp(1, 0xa), "latched");
    // Strict from now on: not even the SDP's own address.
    send(&c.phone_b.rtp, &rtp(9, 0x9), to_b).await;
    send(&natted, &rtp(2, 0xb), to_b).await;
    assert_eq!(recv(&c.phone_a.rtp).await.0, rtp(2, 0xb));
    assert_eq!(c.relay.stats().b.rtp.foreign, 1);
    // A new offer/answer (on either leg) lets B's source be learnt again.
    c.relay.set_remote(Leg::A, addr(&c.phone_a.rtp));
    let moved = stranger(5).await;
    send(&moved, &rtp(1, 0xc), to_b).await;
    assert_eq!(recv(&c.phone_a.rtp).await.0, rtp(1, 0xc));
    send(&natted, &rtp(3, 0xb), to_b).await;
    send(&moved, &rtp(2, 0xc), to_b).await;
    assert_eq!(recv(&c.phone_a.rtp).await.0, rtp(2, 0xc));
    assert_eq!(c.relay.stats().b.rtp_latched, Some(addr(&moved)));
    assert_eq!(c.relay.stats().b.rtp.foreign, 2);
}

on_both_backends!(
    #[tokio::test]
    relays_rtcp_on_its_own_ports
);
async fn relays_rtcp_on_its_own_ports(io: MediaIo) {
    let c = call(31260, relay_config(io), None);
    let to_a = c.relay_addr(Leg::A, PacketKind::Rtcp);
    let to_b = c.relay_addr(Leg::B, PacketKind::Rtcp);
    send(&c.phone_a.rtcp, &rtcp(0xa), to_a).await;
    let (got, src) = recv(&c.phone_b.rtcp).await; // SDP port + 1
    assert_eq!((got, src), (rtcp(0xa), to_b));
    send(&c.phone_b.rtcp, &rtcp(0xb), to_b).await;
    let (got, src) = recv(&c.phone_a.rtcp).await;
    assert_eq!((got, src), (rtcp(0xb), to_a));
    assert_nothing_pending(&c.phone_a.rtp);
    assert_nothing_pending(&c.phone_b.rtp);

    until(&c.relay, |s| {
        s.a.rtcp.packets_out == 1 && s.b.rtcp.packets_out == 1
    })
    .await;
    let stats = c.relay.stats();
    for leg in [&stats.a, &stats.b] {
        assert_eq!(leg.rtp, Counters::default());
        assert_eq!(
            (leg.rtcp.packets_in, leg.rtcp.packets_out, leg.rtcp.dropped),
            (1, 1, 0)
        );
        assert_eq!(leg.rtp_latched, None, "RTCP latches apart from RTP");
    }
    assert_eq!(stats.a.rtcp_latched, Some(addr(&c.phone_a.rtcp)));

    // An explicit a=rtcp address is honoured until latching.
    let other = UdpSocket::bind((LOCALHOST, 0)).await.unwrap();
    let c2 = call(31280, relay_config(io), None);
    c2.relay.set_remote_rtcp(Leg::B, addr(&other));
    send(
        &c2.phone_a.rtcp,
        &rtcp(0xa),
        c2.relay_addr(Leg::A, PacketKind::Rtcp),
    )
    .await;
    assert_eq!(recv(&other).await.0, rtcp(0xa));
}

on_both_backends!(
    #[tokio::test]
    drops_and_counts_garbage_and_keeps_working
);
async fn drops_and_counts_garbage_and_keeps_working(io: MediaIo) {
    let c = call(31300, relay_config(io), None);
    let to_a = c.relay_addr(Leg::A, PacketKind::Rtp);
    let mut version0 = rtp(1, 0xa);
    version0[0] = 0x00;
    let mut truncated_csrc = rtp(1, 0xa)[..12].to_vec();
    truncated_csrc[0] = 0x81;
    let too_long = [rtp(1, 0xa), vec![0; MAX_DATAGRAM]].concat();
    for garbage in [
        &[0x80, 0][..],
        &[][..],
        &version0,
        &truncated_csrc,
        &too_long,
    ] {
        send(&c.phone_a.rtp, garbage, to_a).await;
    }
    // RTP on the RTCP socket, RTCP with a length beyond the datagram.
    let to_a_rtcp = c.relay_addr(Leg::A, PacketKind::Rtcp);
    send(&c.phone_a.rtcp, &rtp(1, 0xa), to_a_rtcp).await;
    send(&c.phone_a.rtcp, &[0x80, 201, 0, 9, 0, 0, 0, 0], to_a_rtcp).await;

    send(&c.phone_a.rtp, &rtp(2, 0xa), to_a).await;
    assert_eq!(recv(&c.phone_b.rtp).await.0, rtp(2, 0xa));
    send(&c.phone_a.rtcp, &rtcp(0xa), to_a_rtcp).await;
    assert_eq!(recv(&c.phone_b.rtcp).await.0, rtcp(0xa));
    assert_nothing_pending(&c.phone_b.rtp);

    until(&c.relay, |s| {
        s.b.rtp.packets_out == 1 && s.b.rtcp.packets_out == 1
    })
    .await;
    let stats = c.relay.stats();
    assert_eq!((stats.a.rtp.packets_in, stats.a.rtp.dropped), (6, 5));
    assert_eq!((stats.a.rtcp.packets_in, stats.a.rtcp.dropped), (3, 2));
    assert_eq!((stats.b.rtp.packets_out, stats.b.rtcp.packets_out), (1, 1));
}

on_both_backends!(
    #[tokio::test]
    admits_nothing_before_sdp_and_drops_when_no_target_is_known
);
async fn admits_nothing_before_sdp_and_drops_when_no_target_is_known(io: MediaIo) {
    let pool = Relay::new(LOCALHOST, at(io, 31320), at(io, 31329), relay_config(io)).unwrap();
    let relay = pool.open().unwrap();
    let phone = UdpSocket::bind((LOCALHOST, 0)).await.unwrap();
    let phone_b = UdpSocket::bind((LOCALHOST, 0)).await.unwrap();
    let to_a = SocketAddr::new(LOCALHOST, relay.local_port(Leg::A));
    let to_b = SocketAddr::new(LOCALHOST, relay.local_port(Leg::B));
    // No SDP for either leg yet: nobody is admitted.
    send(&phone, &rtp(1, 1), to_a).await;
    send(&phone_b, &rtp(1, 2), to_b).await;
    // (Commands overtake packets still in the socket: wait for these two.)
    until(&relay, |s| s.a.rtp.foreign + s.b.rtp.foreign == 2).await;
    // A's SDP: A is admitted, but B's address is unknown: dropped.
    relay.set_remote(Leg::A, SocketAddr::new(LOCALHOST, 9));
    send(&phone, &rtp(2, 1), to_a).await;
    send(&phone, &rtp(3, 1), to_a).await;
    until(&relay, |s| s.a.rtp.dropped == 2).await;
    // B's SDP: B gets through to A, latched by its packets.
    relay.set_remote(Leg::B, addr(&phone_b));
    send(&phone_b, &rtp(2, 2), to_b).await;
    assert_eq!(recv(&phone).await.0, rtp(2, 2));
    let stats = relay.stats();
    assert_eq!((stats.a.rtp.foreign, stats.b.rtp.foreign), (1, 1));
    assert_eq!((stats.a.rtp.packets_in, stats.a.rtp.dropped), (2, 2));
    assert_eq!(stats.a.rtp_latched, Some(addr(&phone)));
}

type Seen = Vec<(Leg, PacketKind, Vec<u8>)>;

#[derive(Default)]
struct RecordingTap {
    packets: Mutex<Seen>,
    directions: Mutex<Vec<(Leg, MediaDirection)>>,
}

/// Lets a test keep a [`RecordingTap`] while the relay owns the tap.
struct SharedTap(Arc<RecordingTap>);

impl SharedTap {
    fn boxed(tap: &Arc<RecordingTap>) -> Option<Box<dyn MediaTap>> {
        Some(Box::new(SharedTap(Arc::clone(tap))))
    }
}

impl MediaTap for SharedTap {
    fn on_packet(&mut self, from: Leg, packet: Packet<'_>, arrival: Instant) {
        self.0.on_packet(from, packet, arrival);
    }

    fn on_media_direction(&mut self, leg: Leg, direction: MediaDirection) {
        self.0.on_media_direction(leg, direction);
    }
}

impl RecordingTap {
    fn on_packet(&self, from: Leg, packet: Packet<'_>, arrival: Instant) {
        assert!(arrival <= Instant::now());
        self.packets
            .lock()
            .unwrap()
            .push((from, packet.kind(), packet.bytes().to_vec()));
    }

    fn on_media_direction(&self, leg: Leg, direction: MediaDirection) {
        self.directions.lock().unwrap().push((leg, direction));
    }
}

on_both_backends!(
    #[tokio::test]
    tap_sees_every_relayed_packet
);
async fn tap_sees_every_relayed_packet(io: MediaIo) {
    let tap = Arc::new(RecordingTap::default());
    let c = call(31340, relay_config(io), SharedTap::boxed(&tap));
    use PacketKind::{Rtcp, Rtp};
    let mut expected: Seen = Vec::new();
    let steps = [
        (Leg::A, Rtp, rtp(1, 0xa)),
        (Leg::B, Rtp, rtp(1, 0xb)),
        (Leg::A, Rtcp, rtcp(0xa)),
        (Leg::B, Rtcp, rtcp(0xb)),
        (Leg::A, Rtp, rtp(2, 0xa)),
    ];
    for (leg, kind, packet) in steps {
        let (from, to) = match leg {
            Leg::A => (&c.phone_a, &c.phone_b),
            Leg::B => (&c.phone_b, &c.phone_a),
        };
        let (out, inn) = match kind {
            Rtp => (&from.rtp, &to.rtp),
            Rtcp => (&from.rtcp, &to.rtcp),
        };
        send(out, &[0x00, 0x01], c.relay_addr(leg, kind)).await; // garbage: not tapped
        let intruder = stranger(6).await;
        send(&intruder, &packet, c.relay_addr(leg, kind)).await; // foreign: not tapped
        send(out, &packet, c.relay_addr(leg, kind)).await;
        recv(inn).await;
        expected.push((leg, kind, packet));
    }
    // RFC 5761 multiplexed RTCP on the RTP port: tapped as RTCP.
    send(&c.phone_b.rtp, &rtcp(0xb), c.relay_addr(Leg::B, Rtp)).await;
    assert_eq!(recv(&c.phone_a.rtp).await.0, rtcp(0xb));
    expected.push((Leg::B, Rtcp, rtcp(0xb)));
    assert_eq!(*tap.packets.lock().unwrap(), expected);

    c.relay.set_direction(Leg::B, MediaDirection::SendOnly);
    // Commands are applied in order with packets: relay one more to sync.
    send(&c.phone_a.rtp, &rtp(3, 0xa), c.relay_addr(Leg::A, Rtp)).await;
    assert_eq!(
        recv(&c.phone_b.rtp).await.0,
        rtp(3, 0xa),
        "hold does not filter"
    );
    assert_eq!(
        *tap.directions.lock().unwrap(),
        [(Leg::B, MediaDirection::SendOnly)]
    );
    assert_eq!(c.relay.stats().b.direction, MediaDirection::SendOnly);
    assert_eq!(c.relay.stats().a.direction, MediaDirection::SendRecv);
}

mod announcement;
mod io;
mod lifecycle;

/// An SR without report blocks followed by an SDES chunk of `items`
/// (type, text), as a softphone sends them.
fn sr_with_sdes(ssrc: u32, items: &[(u8, &[u8])]) -> Vec<u8> {
    let mut sr = vec![0x80, 200, 0, 6];
    sr.extend_from_slice(&ssrc.to_be_bytes());
    sr.extend([0x11; 20]);
    let mut chunk = ssrc.to_be_bytes().to_vec();
    for (kind, text) in items {
        chunk.push(*kind);
        chunk.push(u8::try_from(text.len()).unwrap());
        chunk.extend_from_slice(text);
    }
    chunk.push(0);
    while !chunk.len().is_multiple_of(4) {
        chunk.push(0);
    }
    let words = u16::try_from(chunk.len() / 4).unwrap();
    let mut sdes = vec![0x81, 202];
    sdes.extend_from_slice(&words.to_be_bytes());
    sdes.extend(chunk);
    [sr, sdes].concat()
}

on_both_backends!(
    #[tokio::test]
    rtcp_reaches_the_other_leg_without_the_senders_identity
);
async fn rtcp_reaches_the_other_leg_without_the_senders_identity(io: MediaIo) {
    let config = relay_config(io);
    let totals = config.totals.clone();
    let c = call(31540, config, None);
    let to_a = c.relay_addr(Leg::A, PacketKind::Rtcp);
    let identity: [(u8, &[u8]); 4] = [
        (1, b"kim@10.9.8.7"),
        (2, b"Kim Minsu"),
        (4, b"+821012345678"),
        (6, b"KimPhone 1.0"),
    ];
    send(&c.phone_a.rtcp, &sr_with_sdes(0xa, &identity), to_a).await;
    let (got, _) = recv(&c.phone_b.rtcp).await;
    assert!(is_rtcp(&got));
    for (_, text) in identity {
        assert!(
            !got.windows(text.len()).any(|w| w == text),
            "{text:?} crossed"
        );
    }
    assert_eq!(
        &got[..28],
        &sr_with_sdes(0xa, &identity)[..28],
        "the SR itself is relayed"
    );
    // Twice the same CNAME of ours toward B (one per leg, kept for the call).
    send(&c.phone_a.rtcp, &sr_with_sdes(0xa, &identity), to_a).await;
    let (again, _) = recv(&c.phone_b.rtcp).await;
    assert_eq!(got, again);
    // Something that cannot be scrubbed (APP only) is dropped and counted.
    let app = [0x80, 204, 0, 2, 0, 0, 0, 0xa, b'n', b'a', b'm', b'e'];
    send(&c.phone_a.rtcp, &app, to_a).await;
    send(&c.phone_a.rtcp, &rtcp(0xa), to_a).await;
    assert_eq!(
        recv(&c.phone_b.rtcp).await.0,
        rtcp(0xa),
        "the APP was not relayed"
    );
    assert_eq!(totals.rtcp_unscrubbable.load(Ordering::Relaxed), 1);
}
