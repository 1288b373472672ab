//! Tests of the aligner on synthetic packet streams.

use super::*;
use crate::media::g711::{decode_all, encode_all};
use crate::media::rtp::build;
use crate::recording::wav::{deinterleave_pcm16, goertzel_power, interleave_pcm16};
use proptest::prelude::*;

const PCMU: u8 = 0;

fn cfg() -> AlignConfig {
    AlignConfig::default()
}

/// Deterministic xorshift generator for loss and jitter.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// 160 μ-law samples of a `freq` tone, phase-continuous at sample `index`.
fn tone(freq: f64, index: usize, n: usize) -> Vec<u8> {
    let pcm: Vec<i16> = (index..index + n)
        .map(|i| (8000.0 * (2.0 * std::f64::consts::PI * freq * i as f64 / 8000.0).sin()) as i16)
        .collect();
    encode_all(Codec::Pcmu, &pcm)
}

/// Polls every final block, appending to the two planes.
fn drain(al: &mut Aligner, out: &mut (Vec<u8>, Vec<u8>)) -> usize {
    let mut n = 0;
    while let Some(b) = al.poll_block() {
        assert_eq!(b.start_ms * 8, out.0.len() as u64, "blocks are contiguous");
        assert_eq!(b.caller.len(), b.callee.len());
        out.0.extend_from_slice(&b.caller);
        out.1.extend_from_slice(&b.callee);
        n += 1;
    }
    n
}

/// A packet to push: channel, bytes, arrival in µs after t0.
type Event = (Channel, Vec<u8>, u64);

/// Pushes events in arrival order, polling after each; then finishes.
fn run(events: &mut [Event]) -> (Aligner, (Vec<u8>, Vec<u8>)) {
    events.sort_by_key(|e| e.2);
    let t0 = Instant::now();
    let mut al = Aligner::new(Codec::Pcmu, cfg());
    let mut out = (Vec::new(), Vec::new());
    for (ch, bytes, us) in events.iter() {
        al.push_datagram(*ch, bytes, t0 + Duration::from_micros(*us));
        drain(&mut al, &mut out);
    }
    al.finish();
    drain(&mut al, &mut out);
    (al, out)
}

/// `n` in-order 20 ms caller packets arriving on time.
fn simple_stream(n: usize) -> Vec<Event> {
    (0..n)
        .map(|i| {
            let p = build(
                PCMU,
                i == 0,
                i as u16,
                1000 + 160 * i as u32,
                7,
                &tone(440.0, i * 160, 160),
            );
            (Channel::Caller, p, i as u64 * 20_000)
        })
        .collect()
}

#[test]
fn in_order_stream_is_reproduced_exactly() {
    let mut ev = simple_stream(50);
    let expected: Vec<u8> = (0..50).flat_map(|i| tone(440.0, i * 160, 160)).collect();
    let (al, (caller, callee)) = run(&mut ev);
    assert_eq!(caller, expected);
    assert_eq!(
        callee,
        vec![0xFF; 8000],
        "silent channel filled with silence"
    );
    let s = al.stats();
    assert_eq!(s.packets_used, 50);
    assert_eq!(s.silence_samples, [0, 8000]);
}

#[test]
fn loss_becomes_silence_without_shifting() {
    let mut ev = simple_stream(50);
    ev.remove(10);
    let (al, (caller, _)) = run(&mut ev);
    assert_eq!(caller.len(), 8000);
    assert!(caller[1600..1760].iter().all(|&b| b == 0xFF));
    assert_eq!(
        caller[1760..1920],
        tone(440.0, 1760, 160)[..],
        "packet after the gap in place"
    );
    assert_eq!(al.stats().silence_samples[0], 160);
}

#[test]
fn jitter_does_not_move_audio() {
    let mut rng = Rng(42);
    let mut ev = simple_stream(50);
    for e in ev.iter_mut().skip(1) {
        e.2 += rng.below(15_000);
    }
    let (_, (caller, _)) = run(&mut ev);
    let expected: Vec<u8> = (0..50).flat_map(|i| tone(440.0, i * 160, 160)).collect();
    assert_eq!(caller, expected);
}

#[test]
fn reordering_fixed_late_dropped_duplicates_dropped() {
    let mut ev = simple_stream(50);
    ev.swap(5, 6); // swap packets, keep arrival times
    let (a, b) = (ev[5].2, ev[6].2);
    ev[5].2 = b;
    ev[6].2 = a;
    ev[12].2 += 60_000; // within the 100 ms window
    ev[30].2 += 300_000; // beyond it
    let dup = ev[20].clone();
    ev.push((dup.0, dup.1, dup.2 + 30_000));
    let (al, (caller, _)) = run(&mut ev);
    for i in (0..50).filter(|&i| i != 30) {
        assert_eq!(
            caller[i * 160..i * 160 + 160],
            tone(440.0, i * 160, 160)[..],
            "packet {i}"
        );
    }
    assert!(caller[4800..4960].iter().all(|&b| b == 0xFF));
    let s = al.stats();
    assert_eq!((s.late, s.duplicates, s.packets_used), (1, 1, 49));
}

#[test]
fn ssrc_change_reanchors_on_arrival() {
    let mut ev = simple_stream(20);
    for i in 20..40 {
        let p = build(
            PCMU,
            i == 20,
            9000 + i as u16,
            777_777 + 160 * i as u32,
            99,
            &tone(440.0, i * 160, 160),
        );
        ev.push((Channel::Caller, p, i as u64 * 20_000));
    }
    let (al, (caller, _)) = run(&mut ev);
    let expected: Vec<u8> = (0..40).flat_map(|i| tone(440.0, i * 160, 160)).collect();
    assert_eq!(caller, expected);
    assert_eq!(al.stats().ssrc_changes, 1);
}

#[test]
fn old_ssrc_straggler_and_timestamp_wrap() {
    let mut ev: Vec<Event> = (0..40)
        .map(|i| {
            let (ssrc, ts) = if i < 20 {
                (7, 0xFFFF_F000u32)
            } else {
                (8, 0xFFFF_FF00)
            };
            let p = build(
                PCMU,
                false,
                i as u16,
                ts.wrapping_add(160 * i as u32),
                ssrc,
                &tone(440.0, i * 160, 160),
            );
            (Channel::Caller, p, i as u64 * 20_000)
        })
        .collect();
    ev[19].2 += 30_000; // old SSRC's last packet arrives after the new one
    let (al, (caller, _)) = run(&mut ev);
    let expected: Vec<u8> = (0..40).flat_map(|i| tone(440.0, i * 160, 160)).collect();
    assert_eq!(caller, expected);
    let s = al.stats();
    assert_eq!((s.ssrc_changes, s.resyncs, s.packets_used), (1, 0, 40));
}

#[test]
fn telephone_events_and_other_payloads_ignored() {
    let mut ev = simple_stream(30);
    for k in 0..6u16 {
        let event = [5, 0x0a, 0, (k * 160) as u8];
        let p = build(101, k == 0, 500 + k, 1000 + 160 * 10, 7, &event);
        ev.push((Channel::Caller, p, 200_000 + u64::from(k) * 20_000 + 1));
    }
    ev.push((Channel::Caller, build(13, false, 1, 1, 7, &[0x40]), 100_001)); // comfort noise
    ev.push((
        Channel::Caller,
        build(8, false, 1, 1, 7, &[0xD5; 160]),
        100_002,
    )); // PCMA
    let (al, (caller, _)) = run(&mut ev);
    let expected: Vec<u8> = (0..30).flat_map(|i| tone(440.0, i * 160, 160)).collect();
    assert_eq!(caller, expected);
    let s = al.stats();
    assert_eq!((s.telephone_events, s.unexpected_payload_type), (6, 2));
}

#[test]
fn bad_packets_dropped_and_counted() {
    let mut ev = simple_stream(10);
    let mut rtcp = build(PCMU, false, 0, 0, 7, &[0; 16]);
    rtcp[1] = 201;
    ev.push((Channel::Callee, rtcp, 1));
    ev.push((Channel::Callee, vec![1, 2, 3], 2));
    ev.push((Channel::Callee, build(PCMU, false, 1, 0, 8, &[]), 3));
    ev.push((
        Channel::Callee,
        build(PCMU, false, 2, 0, 8, &[0xFF; 8001]),
        4,
    ));
    let (al, (caller, callee)) = run(&mut ev);
    assert_eq!(caller.len(), 1600);
    assert_eq!(callee.len(), 1600);
    let s = al.stats();
    assert_eq!((s.malformed, s.bad_payload, s.packets_used), (2, 2, 10));
}

#[test]
fn marker_talkspurt_gap_is_silence_in_place() {
    // 10 packets, 500 ms of silence suppression, 10 more with the marker.
    let mut ev = simple_stream(10);
    for i in 35..45 {
        let p = build(
            PCMU,
            i == 35,
            i as u16 - 25,
            1000 + 160 * i as u32,
            7,
            &tone(440.0, i * 160, 160),
        );
        ev.push((Channel::Caller, p, i as u64 * 20_000 + 3_000));
    }
    let (al, (caller, _)) = run(&mut ev);
    assert_eq!(caller.len(), 45 * 160);
    assert!(caller[1600..5600].iter().all(|&b| b == 0xFF));
    assert_eq!(caller[5600..5760], tone(440.0, 5600, 160)[..]);
    let s = al.stats();
    assert_eq!((s.talkspurts, s.resyncs), (1, 0));
}

#[test]
fn blocks_final_after_jitter_window_one_sided() {
    let t0 = Instant::now();
    let mut al = Aligner::new(Codec::Pcmu, cfg());
    let mut out = (Vec::new(), Vec::new());
    for (i, (ch, p, us)) in simple_stream(25).into_iter().enumerate() {
        al.push_datagram(ch, &p, t0 + Duration::from_micros(us));
        drain(&mut al, &mut out);
        // Head = i * 20 ms; final blocks end at or before head − 100 ms.
        let final_ms = (i as u64 * 20).saturating_sub(100) / 20 * 20;
        assert_eq!(out.0.len() as u64, final_ms * 8, "after packet {i}");
    }
    assert!(out.1.iter().all(|&b| b == 0xFF));
}

#[test]
fn hold_resume_without_timestamp_advance() {
    // Caller keeps talking; the callee pauses (2 s, then 500 ms) and resumes
    // with timestamps continuing as if it had never stopped.
    let mut ev = simple_stream(200);
    for (k, i) in (0..20).chain(120..140).chain(165..200).enumerate() {
        let k = k as u32;
        let p = build(
            PCMU,
            false,
            k as u16,
            5000 + 160 * k,
            3,
            &tone(880.0, i * 160, 160),
        );
        ev.push((Channel::Callee, p, i as u64 * 20_000));
    }
    let (al, (_, callee)) = run(&mut ev);
    assert_eq!(callee.len(), 200 * 160);
    for i in (0..20).chain(120..140).chain(170..200) {
        assert_eq!(
            callee[i * 160..i * 160 + 160],
            tone(880.0, i * 160, 160)[..],
            "packet {i}"
        );
    }
    assert!(callee[20 * 160..120 * 160].iter().all(|&b| b == 0xFF));
    assert_eq!(al.stats().resyncs, 2);
}

/// The full scenario: expected placement of every delivered packet, and the
/// slots that must be silent.
struct Scenario {
    events: Vec<Event>,
    placed: Vec<(Channel, usize, Vec<u8>)>,
    silent: Vec<(Channel, usize)>,
}

const PACKETS: usize = 300; // 6 s per channel

/// One channel of the scenario; `offset` = arrival of its first packet (µs).
fn scenario_channel(sc: &mut Scenario, rng: &mut Rng, ch: Channel, freq: f64, offset: u64) {
    let caller = ch == Channel::Caller;
    let (mut ssrc, mut seq, mut ts0) = if caller {
        (0x1111, 1000u16, 50_000u32)
    } else {
        (0x2222, 7u16, 9u32)
    };
    let base = offset as usize / 125;
    for i in 0..PACKETS {
        if !caller && (100..150).contains(&i) {
            continue; // one-sided hold: nothing sent, timestamps keep running
        }
        if caller && i == 150 {
            (ssrc, seq, ts0) = (0x3333, 40_000, 1_000_000u32.wrapping_sub(150 * 160));
        }
        let pos = base + i * 160;
        let payload = tone(freq, pos, 160);
        let marker = i == 0 || (!caller && i == 150);
        let p = build(
            PCMU,
            marker,
            seq,
            ts0.wrapping_add(160 * i as u32),
            ssrc,
            &payload,
        );
        seq = seq.wrapping_add(1);
        let anchor = i == 0 || i == 150 || i == PACKETS - 1;
        let mut at = offset + i as u64 * 20_000 + if anchor { 0 } else { rng.below(10_000) };
        if !anchor && rng.below(100) < 5 {
            sc.silent.push((ch, pos));
            continue; // lost
        }
        if caller && (i == 77 || i == 201) {
            at += 60_000; // reordered, within the window
        }
        if caller && i == 233 {
            sc.events.push((ch, p, at + 300_000)); // beyond the window: late
            sc.silent.push((ch, pos));
            continue;
        }
        if caller && i == 42 {
            sc.events.push((ch, p.clone(), at + 30_000)); // duplicate
        }
        sc.events.push((ch, p, at));
        sc.placed.push((ch, pos, payload));
    }
}

fn scenario() -> Scenario {
    let mut sc = Scenario {
        events: Vec::new(),
        placed: Vec::new(),
        silent: Vec::new(),
    };
    let mut rng = Rng(0x5eed);
    scenario_channel(&mut sc, &mut rng, Channel::Caller, 440.0, 0);
    scenario_channel(&mut sc, &mut rng, Channel::Callee, 880.0, 5_000);
    for k in 0..8u16 {
        // RFC 4733 burst on the caller's SSRC at 2.5 s.
        let event = [1, if k == 7 { 0x8a } else { 0x0a }, 0, (k * 20) as u8];
        let p = build(101, k == 0, 30_000 + k, 50_000 + 125 * 160, 0x1111, &event);
        sc.events
            .push((Channel::Caller, p, 2_500_000 + u64::from(k) * 20_000 + 7));
    }
    sc
}

fn plane(out: &(Vec<u8>, Vec<u8>), ch: Channel) -> &[u8] {
    if ch == Channel::Caller {
        &out.0
    } else {
        &out.1
    }
}

#[test]
fn two_tone_call_with_loss_reorder_dup_ssrc_dtmf_and_hold() {
    let mut sc = scenario();
    let (al, out) = run(&mut sc.events);
    let s = al.stats();
    assert_eq!(out.0.len(), out.1.len());
    let sent_ms = PACKETS as i64 * 20;
    assert!(
        (out.0.len() as i64 / 8 - sent_ms).abs() <= 20,
        "duration {}",
        out.0.len() / 8
    );
    for (ch, pos, payload) in &sc.placed {
        assert_eq!(
            &plane(&out, *ch)[*pos..pos + 160],
            &payload[..],
            "{ch:?} at {pos}"
        );
    }
    for (ch, pos) in &sc.silent {
        let pcm = decode_all(Codec::Pcmu, &plane(&out, *ch)[*pos..pos + 160]);
        assert!(pcm.iter().all(|&x| x == 0), "{ch:?} silent at {pos}");
    }
    let hold = &out.1[40 + 100 * 160..40 + 150 * 160];
    assert!(hold.iter().all(|&b| b == 0xFF), "callee on hold is silent");
    assert!(
        s.silence_samples[0]
            >= 160 * sc.silent.iter().filter(|s| s.0 == Channel::Caller).count() as u64
    );
    assert_eq!(
        (s.duplicates, s.late, s.ssrc_changes, s.telephone_events),
        (1, 1, 1, 8)
    );
    assert_eq!((s.talkspurts, s.resyncs), (1, 0));

    let wav = interleave_pcm16(&out.0, &out.1, Codec::Pcmu);
    let (left, right) = deinterleave_pcm16(&wav);
    let p = |x: &[i16], f| goertzel_power(x, 8000, f);
    assert!(
        p(&left, 440.0) > 100.0 * p(&left, 880.0),
        "caller is 440 Hz"
    );
    assert!(
        p(&right, 880.0) > 100.0 * p(&right, 440.0),
        "callee is 880 Hz"
    );
}

/// One fuzz step: a packet (well-formed-ish or raw bytes) or a poll.
fn op() -> impl Strategy<Value = (bool, u8, u16, u32, u32, usize, u64, bool, Vec<u8>)> {
    (
        any::<bool>(),
        prop_oneof![Just(0u8), Just(8), Just(101), Just(13), any::<u8>()],
        0u16..64,
        prop_oneof![0u32..20_000, any::<u32>()],
        0u32..3,
        prop_oneof![Just(160usize), 0..400usize, Just(8001)],
        0u64..3_000,
        any::<bool>(),
        proptest::collection::vec(any::<u8>(), 0..24),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]
    #[test]
    fn arbitrary_input_never_panics_and_channels_stay_equal(
        ops in proptest::collection::vec(op(), 0..120),
        window in 0u64..300,
        block in 0u64..50,
    ) {
        let t0 = Instant::now();
        let config = AlignConfig { jitter_window: Duration::from_millis(window), block: Duration::from_millis(block) };
        let mut al = Aligner::new(Codec::Pcmu, config);
        let mut out = (Vec::new(), Vec::new());
        for (callee, pt, seq, ts, ssrc, len, ms, raw, bytes) in ops {
            let ch = if callee { Channel::Callee } else { Channel::Caller };
            let packet = if raw && len % 3 == 0 { bytes } else { build(pt & 0x7f, seq % 2 == 0, seq, ts, ssrc, &vec![0x55; len]) };
            al.push_datagram(ch, &packet, t0 + Duration::from_millis(ms));
            if raw { drain(&mut al, &mut out); }
        }
        al.finish();
        drain(&mut al, &mut out);
        prop_assert_eq!(out.0.len(), out.1.len());
        prop_assert!(out.0.len() <= 8 * 5_000, "bounded by arrivals + 1 s + window");
        prop_assert!(al.poll_block().is_none());
    }
}

#[test]
fn time_alone_turns_a_long_silence_into_blocks_as_it_passes() {
    let t0 = Instant::now();
    let mut al = Aligner::new(Codec::Pcmu, cfg());
    let mut out = (Vec::new(), Vec::new());
    // Before any packet, time moves nothing: there is no timeline yet.
    al.advance(t0 + Duration::from_secs(5));
    assert_eq!(drain(&mut al, &mut out), 0);
    let packet = |seq: u16, ts: u32| build(PCMU, false, seq, ts, 7, &tone(440.0, 0, 160));
    al.push_datagram(Channel::Caller, &packet(0, 0), t0);
    // 70 s of hold with no packet at all, the flush timer ticking every 2 s:
    // each tick releases about 2 s of silence, never the whole gap at once.
    let mut largest = 0;
    for tick in 1..=35u64 {
        al.advance(t0 + Duration::from_secs(2 * tick));
        let before = out.0.len();
        drain(&mut al, &mut out);
        largest = largest.max(out.0.len() - before);
    }
    assert!(
        largest <= 2 * 8000 + 160,
        "one tick released {largest} samples"
    );
    assert!(
        out.0.len() >= 69 * 8000,
        "only {} samples after 70 s",
        out.0.len()
    );
    // The audio after the gap lands at its arrival time.
    let after = t0 + Duration::from_secs(70);
    al.push_datagram(Channel::Caller, &packet(1, 70 * 8000), after);
    al.finish();
    drain(&mut al, &mut out);
    let at = 70 * 8000;
    assert_eq!(&out.0[at..at + 160], &tone(440.0, 0, 160)[..]);
    assert!(out.1.iter().all(|&b| b == Codec::Pcmu.silence()));
}
