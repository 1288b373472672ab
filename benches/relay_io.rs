//! CPU per relayed packet of the media relay workers, epoll against
//! io_uring, without SIPp: `calls` calls on loopback, each phone sending
//! a 172-byte RTP packet every 20 ms (50 packets/s per stream, both
//! directions), for `seconds`. Prints the worker threads' CPU time (from
//! `/proc/self/task/*/schedstat`, in ns) per million packets relayed.
//!
//! `cargo bench --bench relay_io -- <epoll|io_uring> [calls] [seconds]`

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use ansim::media::{Leg, MediaIo, Relay, RelayConfig};

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// CPU time (ns) of the relay worker threads so far.
fn worker_ns() -> u64 {
    std::fs::read_dir("/proc/self/task")
        .expect("procfs")
        .filter_map(|t| {
            let dir = t.ok()?.path();
            let comm = std::fs::read_to_string(dir.join("comm")).ok()?;
            if !comm.starts_with("ansim-media") {
                return None;
            }
            let stat = std::fs::read_to_string(dir.join("schedstat")).ok()?;
            stat.split_whitespace().next()?.parse::<u64>().ok()
        })
        .sum()
}

fn main() {
    let args: Vec<String> = std::env::args().filter(|a| a != "--bench").collect();
    let io = match args.get(1).map(String::as_str) {
        Some("io_uring") => MediaIo::IoUring,
        _ => MediaIo::Epoll,
    };
    let calls: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(100);
    let seconds: u64 = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(10);
    let config = RelayConfig {
        io,
        ..RelayConfig::default()
    };
    let relay = Relay::new(LOCALHOST, 40000, 40000 + 4 * calls as u16 + 3, config).expect("relay");
    println!(
        "backend {:?}, {} workers, {calls} calls",
        relay.io(),
        relay.workers()
    );
    let mut handles = Vec::new();
    let mut phones = Vec::new();
    for _ in 0..calls {
        let h = relay.open().expect("call");
        for leg in [Leg::A, Leg::B] {
            let phone = UdpSocket::bind((LOCALHOST, 0)).expect("phone");
            phone.set_nonblocking(true).expect("nonblocking");
            h.set_remote(leg, phone.local_addr().expect("addr"));
            let to = SocketAddr::new(LOCALHOST, h.local_port(leg));
            phones.push((phone, to));
        }
        handles.push(h);
    }
    let mut packet = vec![0x80u8, 0];
    packet.resize(172, 0x55);
    let mut buf = [0u8; 2048];
    let (mut sent, mut received) = (0u64, 0u64);
    let tick = Duration::from_millis(20);
    // A second of warm-up (latching), then the measured run.
    let mut run = |secs: u64, sent: &mut u64, received: &mut u64| {
        let start = Instant::now();
        let mut next = start;
        let mut seq = 0u16;
        while start.elapsed() < Duration::from_secs(secs) {
            seq = seq.wrapping_add(1);
            packet[2..4].copy_from_slice(&seq.to_be_bytes());
            for (phone, to) in &phones {
                if phone.send_to(&packet, to).is_ok() {
                    *sent += 1;
                }
            }
            for (phone, _) in &phones {
                while phone.recv_from(&mut buf).is_ok() {
                    *received += 1;
                }
            }
            next += tick;
            std::thread::sleep(next.saturating_duration_since(Instant::now()));
        }
    };
    run(1, &mut sent, &mut received);
    let (cpu0, out0) = (worker_ns(), relayed(&handles));
    let (s0, r0) = (sent, received);
    run(seconds, &mut sent, &mut received);
    let (cpu, out) = (worker_ns() - cpu0, relayed(&handles) - out0);
    println!(
        "sent {} received {} relayed {out} worker CPU {:.3} s: {:.2} CPU-s per Mpkt",
        sent - s0,
        received - r0,
        cpu as f64 / 1e9,
        cpu as f64 / 1e9 / (out as f64 / 1e6)
    );
}

/// Packets the relay has sent on, over every call.
fn relayed(handles: &[ansim::media::MediaHandle]) -> u64 {
    handles
        .iter()
        .map(|h| {
            let s = h.stats();
            s.a.rtp.packets_out + s.b.rtp.packets_out
        })
        .sum()
}
