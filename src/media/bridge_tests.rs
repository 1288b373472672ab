//! The bridge's decisions without sockets or a runtime: time is passed in.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::*;

fn at(host: u8, port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, host)), port)
}

fn pcmu(seq: u16) -> Vec<u8> {
    let mut p = vec![0x80, 0];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&[0; 8]);
    p.extend_from_slice(&[0xff; 160]);
    p
}

fn bridge() -> (Bridge, Arc<SharedStats>, Arc<RelayTotals>) {
    let stats = Arc::new(SharedStats::default());
    let totals = Arc::new(RelayTotals::default());
    let b = Bridge::new(SourcePolicy::Sdp, Arc::clone(&stats), Arc::clone(&totals));
    (b, stats, totals)
}

/// Hands `packet` to the bridge as received on `leg`'s RTP socket.
fn feed(b: &mut Bridge, now: Instant, leg: Leg, src: SocketAddr, packet: &[u8]) -> Option<Forward> {
    let mut buf = packet.to_vec();
    buf.resize(2049, 0);
    b.handle_datagram(now, leg, PacketKind::Rtp, src, &mut buf, packet.len())
}

#[test]
fn forwards_to_the_other_legs_sdp_then_its_latched_source() {
    let (mut b, stats, totals) = bridge();
    let now = Instant::now();
    b.handle(
        now,
        Command::Remote(Leg::A, PacketKind::Rtp, Some(at(1, 4000))),
    );
    b.handle(now, Command::OfferAnswer(Leg::A, at(1, 4000)));
    b.handle(
        now,
        Command::Remote(Leg::B, PacketKind::Rtp, Some(at(2, 6000))),
    );
    b.handle(now, Command::OfferAnswer(Leg::B, at(2, 6000)));
    // A sends from another port of its SDP's IP: admitted, latched.
    let f = feed(&mut b, now, Leg::A, at(1, 4010), &pcmu(1)).unwrap();
    assert_eq!(
        (f.via, f.kind, f.to, f.len),
        (Leg::B, PacketKind::Rtp, at(2, 6000), 172)
    );
    // B latched from elsewhere on its IP: A's media now goes there.
    feed(&mut b, now, Leg::B, at(2, 6002), &pcmu(1)).unwrap();
    let f = feed(&mut b, now, Leg::A, at(1, 4010), &pcmu(2)).unwrap();
    assert_eq!(f.to, at(2, 6002));
    // A stranger, and A's IP from another port once latched: foreign.
    assert!(feed(&mut b, now, Leg::A, at(9, 4010), &pcmu(3)).is_none());
    assert!(feed(&mut b, now, Leg::A, at(1, 4012), &pcmu(3)).is_none());
    let s = stats.snapshot();
    assert_eq!((s.a.rtp.foreign, s.a.rtp.packets_in), (2, 2));
    assert_eq!(
        totals
            .foreign_packets
            .load(std::sync::atomic::Ordering::Relaxed),
        2
    );
    b.sent(&f, Some(172));
    b.sent(&f, None);
    let s = stats.snapshot();
    assert_eq!((s.b.rtp.packets_out, s.a.rtp.dropped), (1, 1));
}

#[test]
fn garbage_and_oversized_datagrams_are_dropped_and_counted() {
    let (mut b, stats, _) = bridge();
    let now = Instant::now();
    b.handle(now, Command::OfferAnswer(Leg::A, at(1, 4000)));
    b.handle(
        now,
        Command::Remote(Leg::B, PacketKind::Rtp, Some(at(2, 6000))),
    );
    assert!(feed(&mut b, now, Leg::A, at(1, 4000), &[0, 1, 2]).is_none());
    let mut big = vec![0u8; 2049];
    let n = big.len();
    assert!(
        b.handle_datagram(now, Leg::A, PacketKind::Rtp, at(1, 4000), &mut big, n)
            .is_none()
    );
    assert_eq!(stats.snapshot().a.rtp.dropped, 2);
}

#[test]
fn announcement_packets_come_due_every_20_ms_and_nothing_is_bridged_meanwhile() {
    let (mut b, stats, _) = bridge();
    let t0 = Instant::now();
    b.handle(t0, Command::OfferAnswer(Leg::A, at(1, 4000)));
    b.handle(
        t0,
        Command::Remote(Leg::A, PacketKind::Rtp, Some(at(1, 4000))),
    );
    b.handle(
        t0,
        Command::Remote(Leg::B, PacketKind::Rtp, Some(at(2, 6000))),
    );
    let samples = vec![0i16; 320]; // two packets
    let announcement = Arc::new(Announcement::from_samples(samples).unwrap());
    b.handle(t0, Command::Play(announcement));
    assert_eq!(b.poll_timeout(), Some(t0));
    let (to, packet) = b.poll_announcement(t0, Leg::A).unwrap();
    assert_eq!((to, packet.len()), (Some(at(1, 4000)), 172));
    b.announcement_sent(Leg::A, Some(172));
    b.announcement_sent(Leg::B, None);
    b.announcement_advance();
    assert!(b.poll_announcement(t0, Leg::A).is_none(), "not due yet");
    assert_eq!(b.poll_timeout(), Some(t0 + Duration::from_millis(20)));
    assert!(
        feed(&mut b, t0, Leg::A, at(1, 4000), &pcmu(1)).is_none(),
        "not bridged"
    );
    let t1 = t0 + Duration::from_millis(20);
    assert!(b.poll_announcement(t1, Leg::B).is_some());
    b.announcement_advance();
    assert_eq!(b.poll_timeout(), None, "done");
    assert!(
        feed(&mut b, t1, Leg::A, at(1, 4000), &pcmu(2)).is_some(),
        "bridged again"
    );
    let s = stats.snapshot();
    assert_eq!((s.a.announcement_sent, s.b.announcement_dropped), (1, 1));
    assert_eq!(s.a.dropped_announcing, 1);
}

#[test]
fn an_announcement_to_the_caller_alone_goes_to_leg_a_in_its_codec_and_nothing_is_relayed() {
    let (mut b, stats, _) = bridge();
    let t0 = Instant::now();
    b.handle(t0, Command::OfferAnswer(Leg::A, at(1, 4000)));
    b.handle(
        t0,
        Command::Remote(Leg::A, PacketKind::Rtp, Some(at(1, 4000))),
    );
    let samples = vec![0i16; 320]; // two packets
    let announcement = Arc::new(Announcement::from_samples(samples).unwrap());
    b.handle(t0, Command::Announce(announcement, Codec::Pcma));
    // PCMA (payload type 8), the marker on the first, to A only.
    let (to, packet) = b.poll_announcement(t0, Leg::A).unwrap();
    assert_eq!(
        (to, packet.len(), packet[1]),
        (Some(at(1, 4000)), 172, 0x80 | 8)
    );
    assert!(b.poll_announcement(t0, Leg::B).is_none(), "no B-leg");
    b.announcement_sent(Leg::A, Some(172));
    b.announcement_advance();
    let t1 = t0 + Duration::from_millis(20);
    assert!(b.poll_announcement(t1, Leg::A).is_some());
    b.announcement_advance();
    assert_eq!(b.poll_timeout(), None, "done");
    // Neither during nor after the playback is anything relayed.
    assert!(feed(&mut b, t1, Leg::A, at(1, 4000), &pcmu(2)).is_none());
    let s = stats.snapshot();
    assert_eq!((s.a.announcement_sent, s.b.announcement_dropped), (1, 0));
    assert_eq!(s.a.rtp.dropped, 1);
}

/// A tap that records what it sees, or panics on its second packet.
struct Spy {
    seen: Arc<Mutex<Vec<Leg>>>,
    panic_on_second: bool,
    wake: Option<Instant>,
}

impl MediaTap for Spy {
    fn on_packet(&mut self, from: Leg, _packet: Packet<'_>, _arrival: Instant) {
        let count = {
            let mut seen = self.seen.lock().unwrap();
            seen.push(from);
            seen.len()
        };
        assert!(!(self.panic_on_second && count == 2), "tap bug");
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.wake
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.wake = Some(now + Duration::from_secs(2));
    }
}

#[test]
fn the_tap_sees_admitted_packets_its_timer_is_polled_and_a_panic_detaches_it() {
    let (mut b, _, _) = bridge();
    let t0 = Instant::now();
    b.handle(t0, Command::OfferAnswer(Leg::A, at(1, 4000)));
    b.handle(
        t0,
        Command::Remote(Leg::B, PacketKind::Rtp, Some(at(2, 6000))),
    );
    let seen = Arc::new(Mutex::new(Vec::new()));
    let spy = Spy {
        seen: Arc::clone(&seen),
        panic_on_second: true,
        wake: Some(t0 + Duration::from_secs(2)),
    };
    b.handle(t0, Command::AttachTap(Box::new(spy)));
    assert_eq!(b.poll_timeout(), Some(t0 + Duration::from_secs(2)));
    b.handle_timeout(t0 + Duration::from_secs(2));
    assert_eq!(b.poll_timeout(), Some(t0 + Duration::from_secs(4)));
    assert!(
        feed(&mut b, t0, Leg::A, at(9, 1), &pcmu(1)).is_none(),
        "foreign: not tapped"
    );
    assert!(feed(&mut b, t0, Leg::A, at(1, 4000), &pcmu(1)).is_some());
    // The tap panics on this one: detached, and the packet still relayed.
    assert!(feed(&mut b, t0, Leg::A, at(1, 4000), &pcmu(2)).is_some());
    assert!(feed(&mut b, t0, Leg::A, at(1, 4000), &pcmu(3)).is_some());
    assert_eq!(*seen.lock().unwrap(), [Leg::A, Leg::A]);
    assert_eq!(b.poll_timeout(), None, "no tap, no timer");
}
