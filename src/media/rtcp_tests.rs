//! Tests of [`super::sanitize`]: the packets are built by hand here, and the
//! output is read back with a parser of the tests' own.

use super::*;
use crate::media::rtp::is_rtcp;
use proptest::prelude::*;

/// The relay's buffer size (`MAX_DATAGRAM + 1`).
const CAPACITY: usize = crate::media::MAX_DATAGRAM + 1;

const NAME: u8 = 2;
const EMAIL: u8 = 3;
const PHONE: u8 = 4;
const LOC: u8 = 5;
const TOOL: u8 = 6;
const NOTE: u8 = 7;
const PRIV: u8 = 8;

fn ours() -> Cname {
    Cname::from_raw([0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef])
}

/// A packet: header (given count and type, V=2, no padding) + body, the
/// body padded with zeros to 32 bits.
fn packet(count: u8, packet_type: u8, body: &[u8]) -> Vec<u8> {
    let mut body = body.to_vec();
    body.resize(pad4(body.len()), 0);
    let words = u16::try_from(body.len() / 4).unwrap();
    let mut p = vec![0x80 | count, packet_type];
    p.extend_from_slice(&words.to_be_bytes());
    p.extend_from_slice(&body);
    p
}

/// Sets the P bit of `p` and appends `n` octets of padding.
fn padded(mut p: Vec<u8>, n: u8) -> Vec<u8> {
    assert!(n > 0 && n.is_multiple_of(4));
    p[0] |= 0x20;
    p.extend(std::iter::repeat_n(0, usize::from(n - 1)));
    p.push(n);
    let words = u16::from_be_bytes([p[2], p[3]]) + u16::from(n / 4);
    p[2..4].copy_from_slice(&words.to_be_bytes());
    p
}

/// An SR with sender info and `blocks` report blocks (recognisable bytes).
fn sr(ssrc: u32, blocks: u8) -> Vec<u8> {
    let mut body = ssrc.to_be_bytes().to_vec();
    body.extend((0..20).map(|i| 0xa0 + i));
    for b in 0..blocks {
        body.extend((0..24).map(|i| b * 24 + i));
    }
    packet(blocks, SR, &body)
}

/// An RR with one report block.
fn rr(ssrc: u32) -> Vec<u8> {
    let mut body = ssrc.to_be_bytes().to_vec();
    body.extend([7; 24]);
    packet(1, RR, &body)
}

/// One SDES chunk: SSRC, items, a null octet, nulls to 32 bits.
fn chunk(ssrc: u32, items: &[(u8, &[u8])]) -> Vec<u8> {
    let mut c = ssrc.to_be_bytes().to_vec();
    for (kind, text) in items {
        c.push(*kind);
        c.push(u8::try_from(text.len()).unwrap());
        c.extend_from_slice(text);
    }
    c.push(0);
    c.resize(pad4(c.len()), 0);
    c
}

fn sdes(chunks: &[Vec<u8>]) -> Vec<u8> {
    packet(u8::try_from(chunks.len()).unwrap(), SDES, &chunks.concat())
}

fn bye(ssrcs: &[u32], reason: Option<&[u8]>) -> Vec<u8> {
    let mut body: Vec<u8> = ssrcs.iter().flat_map(|s| s.to_be_bytes()).collect();
    if let Some(reason) = reason {
        body.push(u8::try_from(reason.len()).unwrap());
        body.extend_from_slice(reason);
    }
    packet(u8::try_from(ssrcs.len()).unwrap(), BYE, &body)
}

fn app(ssrc: u32, name: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut body = ssrc.to_be_bytes().to_vec();
    body.extend_from_slice(name);
    body.extend_from_slice(data);
    packet(0, APP, &body)
}

/// The SDES packet `sanitize` must produce for these SSRCs.
fn our_sdes(ssrcs: &[u32]) -> Vec<u8> {
    let chunks: Vec<Vec<u8>> = ssrcs
        .iter()
        .map(|s| chunk(*s, &[(CNAME_ITEM, ours().as_bytes())]))
        .collect();
    sdes(&chunks)
}

/// Runs `sanitize` on `input` in a relay-sized buffer.
fn run(input: &[u8]) -> Option<Vec<u8>> {
    run_in(input, CAPACITY)
}

/// Runs `sanitize` on `input` in a buffer of `capacity` bytes (filled with
/// 0xee beyond the input, to catch reads of stale bytes).
fn run_in(input: &[u8], capacity: usize) -> Option<Vec<u8>> {
    let mut buf = vec![0xee; capacity.max(input.len())];
    buf[..input.len()].copy_from_slice(input);
    let n = sanitize(&mut buf[..capacity], input.len(), ours().as_bytes())?;
    assert!(n <= capacity);
    Some(buf[..n].to_vec())
}

/// Checks what every output must be: valid RTCP, and a fixed point (our
/// own validator accepts it and changes nothing).
fn assert_valid(out: &[u8]) {
    assert_valid_with(out, ours().as_bytes());
}

/// [`assert_valid`] for another CNAME than [`ours`].
fn assert_valid_with(out: &[u8], cname: &[u8]) {
    assert!(is_rtcp(out), "not RTCP: {out:02x?}");
    let mut again = out.to_vec();
    let n = sanitize(&mut again, out.len(), cname);
    assert_eq!(n, Some(out.len()), "not a fixed point");
    assert_eq!(again, out, "not a fixed point");
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

/// An SDES chunk's source and items (type, text).
type Chunk = (u32, Vec<(u8, Vec<u8>)>);

/// The items of every SDES chunk in a compound, read back.
fn sdes_items(compound: &[u8]) -> Vec<Chunk> {
    let mut found = Vec::new();
    let mut at = 0;
    while at < compound.len() {
        let len = (usize::from(u16::from_be_bytes([compound[at + 2], compound[at + 3]])) + 1) * 4;
        if compound[at + 1] == SDES {
            let mut c = at + 4;
            for _ in 0..compound[at] & 0x1f {
                let start = c;
                let ssrc = u32::from_be_bytes(compound[c..c + 4].try_into().unwrap());
                c += 4;
                let mut items = Vec::new();
                while compound[c] != 0 {
                    let n = usize::from(compound[c + 1]);
                    items.push((compound[c], compound[c + 2..c + 2 + n].to_vec()));
                    c += 2 + n;
                }
                c = start + pad4(c + 1 - start);
                found.push((ssrc, items));
            }
        }
        at += len;
    }
    found
}

/// A softphone's typical compound: SR with one report block, then SDES
/// with every item a phone may fill in.
fn softphone() -> (Vec<u8>, Vec<&'static [u8]>) {
    let texts: Vec<&'static [u8]> = vec![
        b"alice@192.168.1.23",
        b"Alice Kim",
        b"alice@example.com",
        b"+821012345678",
        b"Seoul, Gangnam-gu",
        b"Linphone Desktop/5.2.1 (Galaxy S23)",
        b"on the phone with mum",
        b"\x0bx-device-idA1B2C3D4E5F6",
    ];
    let items: Vec<(u8, &[u8])> = [CNAME_ITEM, NAME, EMAIL, PHONE, LOC, TOOL, NOTE, PRIV]
        .into_iter()
        .zip(texts.iter().copied())
        .collect();
    let compound = [sr(0x1234_5678, 1), sdes(&[chunk(0x1234_5678, &items)])].concat();
    (compound, texts)
}

#[test]
fn softphone_sdes_keeps_only_our_cname_and_the_sr() {
    let (input, texts) = softphone();
    let out = run(&input).unwrap();
    assert_eq!(out, [sr(0x1234_5678, 1), our_sdes(&[0x1234_5678])].concat());
    assert_eq!(
        sdes_items(&out),
        vec![(0x1234_5678, vec![(CNAME_ITEM, ours().as_bytes().to_vec())])]
    );
    for text in texts {
        assert!(!contains(&out, text), "{text:?} leaked");
    }
    assert_valid(&out);
}

#[test]
fn every_chunk_keeps_its_source_and_gets_our_cname() {
    // SSRC with a long CNAME, a CSRC with a one-byte CNAME (the chunk
    // grows), one with no items at all, one with NAME only.
    let chunks = [
        chunk(1, &[(CNAME_ITEM, b"bob.smith@desk-pc.corp.example")]),
        chunk(2, &[(CNAME_ITEM, b"x")]),
        chunk(3, &[]),
        chunk(4, &[(NAME, b"Bob")]),
    ];
    let input = [rr(1), sdes(&chunks)].concat();
    let out = run(&input).unwrap();
    assert_eq!(out, [rr(1), our_sdes(&[1, 2, 3, 4])].concat());
    assert_valid(&out);
    // The documented bound: at most 16 more bytes per chunk (16-char CNAME).
    assert!(out.len() <= input.len() + chunks.len() * (sdes_chunk_len(16) - 8));
}

#[test]
fn growing_chunks_are_written_over_their_own_input_correctly() {
    // Every chunk grows from 8 to 24 bytes, and an APP after them shrinks
    // the total: the in-place rewrite must shift the input first.
    let ssrcs: Vec<u32> = (10..41).collect();
    let chunks: Vec<Vec<u8>> = ssrcs.iter().map(|s| chunk(*s, &[])).collect();
    let input = [
        rr(9),
        sdes(&chunks),
        app(9, b"PIIX", &[0x55; 600]),
        bye(&[9], Some(b"bye")),
    ]
    .concat();
    let expected = [rr(9), our_sdes(&ssrcs), bye(&[9], None)].concat();
    assert!(expected.len() < input.len());
    assert_eq!(run(&input), Some(expected.clone()));
    // The output would fit in the input's own length, but the lead (output
    // ahead of input by 31 × 16 bytes before the APP) does not: refused
    // rather than written past the buffer.
    assert_eq!(run_in(&input, input.len()), None);
    assert_eq!(run_in(&input, input.len() + 31 * 16), Some(expected));
}

#[test]
fn no_room_to_grow_is_refused() {
    let input = [rr(1), sdes(&[chunk(1, &[(CNAME_ITEM, b"ab")])])].concat();
    let out_len = rr(1).len() + our_sdes(&[1]).len();
    assert!(out_len > input.len());
    assert_eq!(run_in(&input, input.len()), None);
    assert_eq!(run_in(&input, out_len - 1), None);
    assert_eq!(run_in(&input, out_len).map(|o| o.len()), Some(out_len));
}

#[test]
fn bye_loses_its_reason() {
    let reason: &[u8] = b"Alice Kim hung up, call her back on +821012345678";
    let input = [rr(5), bye(&[5, 6], Some(reason))].concat();
    let out = run(&input).unwrap();
    assert_eq!(out, [rr(5), bye(&[5, 6], None)].concat());
    assert!(!contains(&out, b"Alice") && !contains(&out, b"8210"));
    assert_valid(&out);
    // A padded BYE (last packet) loses the padding with the reason.
    let input = [rr(5), padded(bye(&[5], Some(b"gone")), 8)].concat();
    assert_eq!(run(&input), Some([rr(5), bye(&[5], None)].concat()));
    // A BYE alone is relayed (a phone leaving without a report).
    assert_eq!(run(&bye(&[5], Some(b"x"))), Some(bye(&[5], None)));
}

#[test]
fn app_and_unknown_types_are_removed() {
    let input = [
        rr(1),
        app(1, b"QTSS", b"alice's device id 0042"),
        packet(0, 199, b"unknown!"),
        sdes(&[chunk(1, &[(CNAME_ITEM, b"a@b")])]),
        packet(3, 220, &[1, 2, 3, 4]),
    ]
    .concat();
    let out = run(&input).unwrap();
    assert_eq!(out, [rr(1), our_sdes(&[1])].concat());
    assert!(!contains(&out, b"QTSS") && !contains(&out, b"unknown"));
    assert_valid(&out);
    // Nothing left to relay: dropped.
    assert_eq!(run(&app(1, b"QTSS", b"data")), None);
}

#[test]
fn reports_and_feedback_pass_unchanged() {
    let xr = packet(0, XR, &[0, 0, 0, 1, 4, 0, 0, 2, 1, 2, 3, 4, 5, 6, 7, 8]);
    let nack = packet(1, RTPFB, &[0, 0, 0, 1, 0, 0, 0, 2, 0, 7, 0, 0]);
    let pli = packet(1, PSFB, &[0, 0, 0, 1, 0, 0, 0, 2]);
    let input = [sr(1, 2), xr, nack, padded(pli, 4)].concat();
    assert_eq!(run(&input).as_deref(), Some(&input[..]));
    assert_valid(&input);
}

#[test]
fn malformed_compounds_are_refused() {
    let good = [rr(1), sdes(&[chunk(1, &[(CNAME_ITEM, b"a@b")])])].concat();
    assert!(run(&good).is_some());
    let refused = |bytes: &[u8], why: &str| assert_eq!(run(bytes), None, "{why}");
    refused(&[], "empty");
    refused(&good[..3], "header cut");
    refused(&[&good[..], &[0, 0, 0, 0]].concat(), "trailing bytes");
    let mut v1 = good.clone();
    v1[8 + 24] = 0x41; // second packet's version 1
    refused(&v1, "version");
    let mut long = good.clone();
    long[3] += 1;
    refused(&long, "first length past the second packet's header");
    refused(
        &[padded(rr(1), 4), rr(2)].concat(),
        "padding not on the last packet",
    );
    let mut zero_pad = padded(rr(1), 4);
    *zero_pad.last_mut().unwrap() = 0;
    refused(&zero_pad, "padding count 0");
    let mut big_pad = padded(rr(1), 4);
    *big_pad.last_mut().unwrap() = 40;
    refused(&big_pad, "padding count beyond the packet");
    refused(&packet(1, RR, &[0; 8]), "RR's report block missing");
    refused(&packet(0, SR, &[0; 16]), "SR's sender info missing");
    refused(&packet(1, RTPFB, &[0; 4]), "feedback without media SSRC");
    refused(&packet(0, 72, &[0; 4]), "type outside 192..=223");
    refused(
        &[rr(1), packet(0, 100, &[])].concat(),
        "second type not RTCP",
    );
    refused(
        &packet(3, BYE, &[0; 8]),
        "BYE lists more sources than it has",
    );
    // SDES: a count above the chunks present, an item past the packet, no
    // terminating null, a chunk that is only an SSRC, stray words after the
    // chunks.
    refused(&packet(2, SDES, &chunk(1, &[])), "SDES count");
    refused(
        &packet(1, SDES, &[0, 0, 0, 1, 1, 9, b'a', b'b']),
        "item overrun",
    );
    refused(
        &packet(1, SDES, &[0, 0, 0, 1, 1, 2, b'a', b'b']),
        "no null octet",
    );
    refused(&packet(1, SDES, &[0, 0, 0, 1]), "SSRC only");
    refused(
        &packet(1, SDES, &[chunk(1, &[]), vec![0; 4]].concat()),
        "words after the last chunk",
    );
    // The caller's mistakes: a length beyond the buffer, a CNAME too long.
    let mut buf = good.clone();
    assert_eq!(sanitize(&mut buf, good.len() + 1, b"x"), None);
    buf.resize(CAPACITY, 0);
    assert_eq!(sanitize(&mut buf, good.len(), &[b'x'; 256]), None);
    buf[..good.len()].copy_from_slice(&good);
    let n = sanitize(&mut buf, good.len(), &[b'x'; 255]).unwrap();
    assert_eq!(
        n,
        good.len() - chunk(1, &[(CNAME_ITEM, b"a@b")]).len() + sdes_chunk_len(255)
    );
    assert_valid_with(&buf[..n], &[b'x'; 255]);
}

#[test]
fn padded_sdes_is_rewritten_unpadded() {
    let input = [rr(1), padded(sdes(&[chunk(1, &[(NAME, b"Eve")])]), 12)].concat();
    assert_eq!(run(&input), Some([rr(1), our_sdes(&[1])].concat()));
}

#[test]
fn empty_sdes_is_kept_empty() {
    let input = [rr(1), sdes(&[])].concat();
    assert_eq!(run(&input), Some(input.clone()));
}

#[test]
fn every_truncation_is_refused_or_valid() {
    let (softphone, texts) = softphone();
    let input = [softphone, bye(&[0x1234_5678], Some(b"Alice left"))].concat();
    for len in 0..=input.len() {
        for capacity in [len, CAPACITY] {
            let mut buf = vec![0; capacity];
            buf[..len].copy_from_slice(&input[..len]);
            if let Some(n) = sanitize(&mut buf, len, ours().as_bytes()) {
                let out = &buf[..n];
                assert_valid(out);
                assert!(texts.iter().all(|t| !contains(out, t)));
                assert!(!contains(out, b"Alice"));
            }
        }
    }
}

#[test]
fn bit_flips_are_refused_or_valid() {
    let (softphone, _) = softphone();
    let input = [
        softphone,
        app(1, b"ABCD", b"xyz"),
        bye(&[0x1234_5678], Some(b"bye")),
    ]
    .concat();
    let mut accepted = 0;
    for bit in 0..input.len() * 8 {
        let mut flipped = input.clone();
        flipped[bit / 8] ^= 1 << (bit % 8);
        if let Some(out) = run(&flipped) {
            assert_valid(&out);
            accepted += 1;
        }
    }
    // Flips inside SSRCs, reports and texts still give valid packets.
    assert!(accepted > input.len());
}

#[test]
fn cname_is_16_hex_characters_fresh_per_leg() {
    assert_eq!(ours().to_string(), "0123456789abcdef");
    assert_eq!(format!("{:?}", ours()), "Cname(0123456789abcdef)");
    let (a, b) = (Cname::random(), Cname::random());
    assert_ne!(a, b);
    for c in [a, b] {
        assert_eq!(c.as_bytes().len(), 16);
        assert!(c.as_bytes().iter().all(|b| b.is_ascii_hexdigit()));
    }
    assert_eq!(sdes_chunk_len(16), 24);
    assert_eq!(sdes_chunk_len(0), 8);
    assert_eq!(sdes_chunk_len(1), 8);
    assert_eq!(sdes_chunk_len(2), 12);
}

/// A packet of a generated compound, with the identity texts it carries.
#[derive(Debug, Clone)]
enum Part {
    Sr(u32, u8),
    Rr(u32),
    Sdes(Vec<Chunk>),
    Bye(Vec<u32>, Option<Vec<u8>>),
    App(u32, Vec<u8>),
}

/// Text an identity item might hold: "PII-" and capitals, which nothing
/// else in the packets (random SSRCs, our lowercase hex CNAME) spells out.
fn pii() -> impl Strategy<Value = Vec<u8>> {
    "PII-[A-Z]{2,12}".prop_map(String::into_bytes)
}

fn part() -> impl Strategy<Value = Part> {
    let item = (1u8..=12, pii());
    let chunk = (any::<u32>(), proptest::collection::vec(item, 0..4));
    prop_oneof![
        (any::<u32>(), 0u8..3).prop_map(|(s, n)| Part::Sr(s, n)),
        any::<u32>().prop_map(Part::Rr),
        proptest::collection::vec(chunk, 0..4).prop_map(Part::Sdes),
        (
            proptest::collection::vec(any::<u32>(), 0..3),
            proptest::option::of(pii())
        )
            .prop_map(|(s, r)| Part::Bye(s, r)),
        (any::<u32>(), pii()).prop_map(|(s, d)| Part::App(s, d)),
    ]
}

impl Part {
    /// The packet as a phone sends it, and as `sanitize` must pass it on.
    fn build(&self) -> (Vec<u8>, Vec<u8>) {
        match self {
            Part::Sr(s, n) => (sr(*s, *n), sr(*s, *n)),
            Part::Rr(s) => (rr(*s), rr(*s)),
            Part::Sdes(chunks) => {
                let input: Vec<Vec<u8>> = chunks
                    .iter()
                    .map(|(s, items)| {
                        let items: Vec<(u8, &[u8])> =
                            items.iter().map(|(k, t)| (*k, &t[..])).collect();
                        chunk(*s, &items)
                    })
                    .collect();
                let ssrcs: Vec<u32> = chunks.iter().map(|(s, _)| *s).collect();
                (sdes(&input), our_sdes(&ssrcs))
            }
            Part::Bye(s, r) => (bye(s, r.as_deref()), bye(s, None)),
            Part::App(s, d) => (app(*s, b"VEND", d), Vec::new()),
        }
    }

    fn texts(&self) -> Vec<Vec<u8>> {
        match self {
            Part::Sdes(chunks) => chunks
                .iter()
                .flat_map(|(_, items)| items.iter().map(|(_, t)| t.clone()))
                .collect(),
            Part::Bye(_, Some(r)) => vec![r.clone()],
            Part::App(_, d) => vec![d.clone()],
            _ => Vec::new(),
        }
    }
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..300),
        room in 0usize..64,
    ) {
        let mut buf = bytes.clone();
        buf.resize(bytes.len() + room, 0);
        if let Some(n) = sanitize(&mut buf, bytes.len(), ours().as_bytes()) {
            prop_assert!(n <= buf.len());
            assert_valid(&buf[..n]);
        }
    }

    #[test]
    fn output_is_valid_and_carries_no_identity_text(
        parts in proptest::collection::vec(part(), 1..6),
    ) {
        let (input, expected): (Vec<Vec<u8>>, Vec<Vec<u8>>) =
            parts.iter().map(Part::build).unzip();
        let (input, expected) = (input.concat(), expected.concat());
        let out = run(&input);
        if expected.is_empty() {
            prop_assert_eq!(out, None);
        } else {
            let out = out.unwrap();
            prop_assert_eq!(&out, &expected);
            assert_valid(&out);
            for text in parts.iter().flat_map(Part::texts) {
                prop_assert!(!contains(&out, &text), "{:?} leaked", text);
            }
        }
    }
}
