//! What only the I/O underneath could get wrong, on both backends: more
//! datagrams queued than the io_uring worker has receive buffers, and a
//! call closed while its packets are still coming in and going out.

use std::sync::atomic::AtomicBool;
use std::sync::mpsc;

use super::*;

/// A tap that holds the worker in its first packet until told to go: the
/// worker keeps that packet's buffer meanwhile.
struct GateTap {
    /// Told when the first packet is in the tap.
    entered: mpsc::Sender<()>,
    /// Waited on (bounded) in the first packet.
    go: mpsc::Receiver<()>,
    /// The first packet has been held.
    held: bool,
}

impl MediaTap for GateTap {
    fn on_packet(&mut self, _: Leg, _: Packet<'_>, _: Instant) {
        if !self.held {
            self.held = true;
            let _ = self.entered.send(());
            let _ = self.go.recv_timeout(GUARD);
        }
    }
}

on_both_backends!(
    #[tokio::test]
    more_datagrams_than_buffers_wait_and_none_is_lost
);
async fn more_datagrams_than_buffers_wait_and_none_is_lost(io: MediaIo) {
    // One receive buffer: held by the packet in the tap, so the 20 sent
    // meanwhile find the ring empty.
    let config = RelayConfig {
        ring_buffers: 1,
        ..relay_config(io)
    };
    let totals = Arc::clone(&config.totals);
    let (entered_tx, entered) = mpsc::channel();
    let (go, go_rx) = mpsc::channel();
    let gate = GateTap {
        entered: entered_tx,
        go: go_rx,
        held: false,
    };
    let c = call(31560, config, Some(Box::new(gate)));
    let to_a = c.relay_addr(Leg::A, PacketKind::Rtp);
    send(&c.phone_a.rtp, &rtp(0, 0xa), to_a).await;
    entered
        .recv_timeout(GUARD)
        .expect("the first packet reaches the tap");
    for seq in 1..=20 {
        send(&c.phone_a.rtp, &rtp(seq, 0xa), to_a).await;
    }
    go.send(()).unwrap();
    for seq in 0..=20 {
        assert_eq!(recv(&c.phone_b.rtp).await.0, rtp(seq, 0xa), "packet {seq}");
    }
    until(&c.relay, |s| s.b.rtp.packets_out == 21).await;
    let starved = totals.ring_starved.load(Ordering::Relaxed);
    match io {
        // Counted each time the receive waited for a buffer.
        MediaIo::IoUring => assert!(starved >= 1, "starved {starved}"),
        MediaIo::Epoll => assert_eq!(starved, 0),
    }
    // And the call goes on as before.
    send(
        &c.phone_b.rtp,
        &rtp(1, 0xb),
        c.relay_addr(Leg::B, PacketKind::Rtp),
    )
    .await;
    assert_eq!(recv(&c.phone_a.rtp).await.0, rtp(1, 0xb));
}

on_both_backends!(
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    closing_while_packets_fly_frees_the_ports
);
async fn closing_while_packets_fly_frees_the_ports(io: MediaIo) {
    let config = RelayConfig {
        ring_buffers: 4,
        ..relay_config(io)
    };
    let Call {
        relay,
        pool,
        phone_a,
        phone_b,
    } = call(31580, config, None);
    let to_a = SocketAddr::new(LOCALHOST, relay.local_port(Leg::A));
    let to_b = SocketAddr::new(LOCALHOST, relay.local_port(Leg::B));
    // Both phones send as fast as they can (from their own sockets, the
    // latched sources) until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let senders = [
        (phone_a.rtp.into_std().unwrap(), to_a, 0xa),
        (phone_b.rtp.into_std().unwrap(), to_b, 0xb),
    ];
    let threads: Vec<_> = senders
        .into_iter()
        .map(|(sender, to, ssrc)| {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut seq = 0u16;
                while !stop.load(Ordering::Relaxed) {
                    // A full buffer or a closed port: the next one goes.
                    let _ = sender.send_to(&rtp(seq, ssrc), to);
                    seq = seq.wrapping_add(1);
                }
            })
        })
        .collect();
    until(&relay, |s| {
        s.a.rtp.packets_out > 100 && s.b.rtp.packets_out > 100
    })
    .await;
    timeout(GUARD, relay.stop())
        .await
        .expect("stop returns while packets fly");
    assert_eq!(pool.in_use(), 0, "the ports are back when stop returns");
    stop.store(true, Ordering::Relaxed);
    for thread in threads {
        thread.join().unwrap();
    }
    // The pool hands the same ports to a call that relays.
    let next = pool.open().unwrap();
    let (a, b) = (phone(at(io, 31594)), phone(at(io, 31596)));
    next.set_remote(Leg::A, addr(&a.rtp));
    next.set_remote(Leg::B, addr(&b.rtp));
    let to_a = SocketAddr::new(LOCALHOST, next.local_port(Leg::A));
    send(&a.rtp, &rtp(7, 0xc), to_a).await;
    assert_eq!(recv(&b.rtp).await.0, rtp(7, 0xc));
}
