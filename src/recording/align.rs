//! Aligns the two directions of a call onto one recording timeline.
//!
//! [`Aligner`] is sans-IO: it is fed RTP packets with their arrival
//! instants and hands out [`Block`]s of G.711 bytes, one plane per channel
//! (`caller` = packets relayed A→B, `callee` = B→A), 8000 samples/s, one byte
//! per sample. Both planes of a block have the same length.
//!
//! # Timeline
//! * t = 0 is the arrival of the first packet pushed (any channel, any kind).
//!   Positions are counted in samples (1/8000 s).
//! * Each RTP stream (channel + SSRC) is *anchored*: its first packet is
//!   placed at its arrival position; later packets at
//!   `anchor position + (timestamp − anchor timestamp)`, so network jitter
//!   never moves audio and timestamp gaps (loss, silence suppression with a
//!   marker bit, hold) become silence of exactly the right length.
//! * A stream is re-anchored at the arrival position of an in-order packet
//!   when the position predicted from its timestamp is more than 1 s away
//!   from the arrival position (timestamp jump, clock slip), or when
//!   in-order packets have kept arriving too late to be placed for a span of
//!   `jitter_window` of arrival time (timestamps did not advance across a
//!   pause shorter than 1 s). A new SSRC is anchored the same way; up to four
//!   SSRCs per channel are remembered so stragglers of an old one still land
//!   where they belong.
//!
//! # When a block is final
//! The *head* is the latest arrival position seen on either channel. The
//! block `[start, start + block)` is final, and returned by
//! [`Aligner::poll_block`], once `head >= start + block + jitter_window`.
//! Packets for an already emitted block are late: dropped and counted
//! (packets straddling the boundary keep their unemitted tail). A silent
//! channel (hold, sendonly, no packets yet) is filled with silence, so a
//! one-sided call still produces blocks and the other side is never shifted.
//! Time also moves the head without packets: [`Aligner::advance`] (the
//! writer calls it on its flush timer) sets it to the position of `now`,
//! so a long silence on both sides (hold without music, a network cut)
//! comes out as silent blocks while it lasts, not all at once when the
//! next packet arrives.
//! [`Aligner::finish`] makes everything buffered final: the last block ends
//! at the end of the latest buffered audio, rounded up to a whole
//! millisecond, so it may be shorter than `block`. After `finish`, pushes are
//! ignored (counted as late).
//!
//! Ignored packets: non-RTP/RTCP (`malformed`), dynamic payload types
//! 96..=127 (`telephone_events`, RFC 4733), other payload types than the
//! codec's, empty or >1 s payloads, and duplicates (same SSRC, sequence
//! number and timestamp, or same position).

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use crate::media::RtpPacket;
use crate::media::g711::Codec;

/// Samples per millisecond at 8000 Hz.
const SAMPLES_PER_MS: i64 = 8;
/// Distance between predicted and arrival position that forces a re-anchor.
const RESYNC_SAMPLES: i64 = 8000;
/// Largest accepted payload, in samples (1 s).
const MAX_PACKET_SAMPLES: usize = 8000;
/// SSRCs remembered per channel.
const MAX_STREAMS: usize = 4;
/// Recent packets remembered per channel for duplicate detection.
const DUP_HISTORY: usize = 512;
/// Packets buffered per channel before new ones are refused.
const MAX_BUFFERED: usize = 4096;
/// Upper bound for `block` and `jitter_window` (longer values are clamped).
const MAX_CONFIG_MS: u128 = 60_000;

/// Direction of a relayed packet, i.e. the recording channel it feeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Channel {
    /// Channel 0: packets relayed A→B (from the caller).
    Caller,
    /// Channel 1: packets relayed B→A (from the callee).
    Callee,
}

impl Channel {
    /// Channel index: 0 for the caller, 1 for the callee.
    pub fn index(self) -> usize {
        match self {
            Self::Caller => 0,
            Self::Callee => 1,
        }
    }
}

/// Tuning of an [`Aligner`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlignConfig {
    /// Reordering/lateness tolerance (e.g. 100 ms); also the output delay.
    pub jitter_window: Duration,
    /// Duration of each emitted block (e.g. 20 ms), whole milliseconds, >= 1 ms.
    pub block: Duration,
}

impl Default for AlignConfig {
    fn default() -> Self {
        Self {
            jitter_window: Duration::from_millis(100),
            block: Duration::from_millis(20),
        }
    }
}

/// A final stretch of the recording: two parallel planes of G.711 bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    /// Media time of the first sample, in ms since the recording started.
    pub start_ms: u64,
    /// Caller channel, one byte per sample.
    pub caller: Vec<u8>,
    /// Callee channel, same length as `caller`.
    pub callee: Vec<u8>,
}

impl Block {
    /// Number of samples per channel.
    pub fn samples(&self) -> usize {
        self.caller.len()
    }
}

/// Counters kept by an [`Aligner`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AlignStats {
    /// Audio packets placed on the timeline.
    pub packets_used: u64,
    /// Packets dropped because their block was already emitted.
    pub late: u64,
    /// Out-of-order packets whose timestamp is over 1 s from their arrival.
    pub misplaced: u64,
    /// Duplicate packets dropped.
    pub duplicates: u64,
    /// Datagrams that are not RTP (including RTCP).
    pub malformed: u64,
    /// Packets with an empty or over-long payload (or a partial sample).
    pub bad_payload: u64,
    /// RFC 4733 telephone-event packets (dynamic payload types) ignored.
    pub telephone_events: u64,
    /// Packets with another static payload type than the codec's.
    pub unexpected_payload_type: u64,
    /// Packets refused because the reorder buffer was full.
    pub overflow: u64,
    /// New SSRCs seen after a channel's first one.
    pub ssrc_changes: u64,
    /// Streams re-anchored after a timestamp jump or persistent lateness.
    pub resyncs: u64,
    /// Marker-bit talkspurt starts after a timestamp gap.
    pub talkspurts: u64,
    /// Samples filled with silence, per channel (caller, callee).
    pub silence_samples: [u64; 2],
}

/// One RTP stream (SSRC) of a channel and its timestamp → position mapping.
#[derive(Debug)]
struct Stream {
    ssrc: u32,
    ref_ts: u32,
    ref_pos: i64,
    highest_seq: u16,
    next_ts: u32,
    late_since: Option<i64>,
}

impl Stream {
    fn new(ssrc: u32, ts: u32, seq: u16, now: i64) -> Self {
        Self {
            ssrc,
            ref_ts: ts,
            ref_pos: now,
            highest_seq: seq.wrapping_sub(1),
            next_ts: ts,
            late_since: None,
        }
    }

    fn predict(&self, ts: u32) -> i64 {
        self.ref_pos + i64::from(ts.wrapping_sub(self.ref_ts) as i32)
    }

    fn is_newer(&self, seq: u16) -> bool {
        let d = seq.wrapping_sub(self.highest_seq);
        d != 0 && d < 0x8000
    }

    /// Tracks lateness of in-order packets; true once it has persisted for
    /// `span` samples of arrival time.
    fn late_for(&mut self, late: bool, now: i64, span: i64) -> bool {
        if !late {
            self.late_since = None;
            return false;
        }
        let since = *self.late_since.get_or_insert(now);
        now - since >= span
    }
}

/// Per-channel state: streams, reorder buffer, duplicate history.
#[derive(Debug, Default)]
struct Lane {
    streams: Vec<Stream>,
    buffer: BTreeMap<i64, Vec<u8>>,
    seen: HashSet<(u32, u16, u32)>,
    seen_order: VecDeque<(u32, u16, u32)>,
}

impl Lane {
    /// Records the packet; true if it was already seen.
    fn is_duplicate(&mut self, rtp: &RtpPacket<'_>) -> bool {
        let key = (rtp.header.ssrc, rtp.header.sequence, rtp.header.timestamp);
        if !self.seen.insert(key) {
            return true;
        }
        self.seen_order.push_back(key);
        if self.seen_order.len() > DUP_HISTORY
            && let Some(old) = self.seen_order.pop_front()
        {
            self.seen.remove(&old);
        }
        false
    }

    fn stream_index(&mut self, rtp: &RtpPacket<'_>, now: i64, stats: &mut AlignStats) -> usize {
        if let Some(i) = self.streams.iter().position(|s| s.ssrc == rtp.header.ssrc) {
            return i;
        }
        if !self.streams.is_empty() {
            stats.ssrc_changes += 1;
        }
        if self.streams.len() == MAX_STREAMS {
            self.streams.remove(0);
        }
        self.streams.push(Stream::new(
            rtp.header.ssrc,
            rtp.header.timestamp,
            rtp.header.sequence,
            now,
        ));
        self.streams.len() - 1
    }

    /// Where the packet goes on the timeline; `None` if it is misplaced.
    fn position(
        &mut self,
        rtp: &RtpPacket<'_>,
        now: i64,
        ctx: &Ctx,
        stats: &mut AlignStats,
    ) -> Option<i64> {
        let index = self.stream_index(rtp, now, stats);
        let stream = &mut self.streams[index];
        let mut pos = stream.predict(rtp.header.timestamp);
        if !stream.is_newer(rtp.header.sequence) {
            if (pos - now).abs() > RESYNC_SAMPLES {
                stats.misplaced += 1;
                return None;
            }
            return Some(pos);
        }
        let late = stream.late_for(pos < ctx.frontier, now, ctx.window.max(ctx.block));
        if late || (pos - now).abs() > RESYNC_SAMPLES {
            stats.resyncs += 1;
            stream.late_since = None;
            pos = now;
        } else if rtp.header.marker && rtp.header.timestamp != stream.next_ts {
            stats.talkspurts += 1;
        }
        let samples = rtp.payload().len() / ctx.bytes_per_sample;
        stream.highest_seq = rtp.header.sequence;
        stream.ref_ts = rtp.header.timestamp;
        stream.ref_pos = pos;
        stream.next_ts = rtp.header.timestamp.wrapping_add(samples as u32);
        Some(pos)
    }

    /// Buffers `payload` at `pos`, trimming anything before `frontier`.
    fn insert(&mut self, pos: i64, payload: &[u8], frontier: i64, stats: &mut AlignStats) {
        let len = payload.len() as i64;
        if pos + len <= frontier {
            stats.late += 1;
            return;
        }
        if self.buffer.len() >= MAX_BUFFERED {
            stats.overflow += 1;
            return;
        }
        let skip = (frontier - pos).max(0);
        match self.buffer.entry(pos + skip) {
            std::collections::btree_map::Entry::Occupied(_) => stats.duplicates += 1,
            std::collections::btree_map::Entry::Vacant(slot) => {
                slot.insert(payload[skip as usize..].to_vec());
                stats.packets_used += 1;
            }
        }
    }

    /// Removes and renders `[start, end)`; returns the plane and the number
    /// of samples filled with silence.
    fn take(&mut self, start: i64, end: i64, silence: u8) -> (Vec<u8>, u64) {
        let mut out = vec![silence; (end - start) as usize];
        let rest = self.buffer.split_off(&end);
        let due = std::mem::replace(&mut self.buffer, rest);
        let mut filled_to = start;
        let mut covered = 0;
        for (pos, data) in due {
            let data_end = pos + data.len() as i64;
            let from = pos.max(start);
            let to = data_end.min(end);
            if from < to {
                let src = &data[(from - pos) as usize..(to - pos) as usize];
                out[(from - start) as usize..(to - start) as usize].copy_from_slice(src);
                covered += (to - from.max(filled_to)).max(0);
                filled_to = filled_to.max(to);
            }
            if data_end > end {
                let tail = data[(end - pos) as usize..].to_vec();
                self.buffer.entry(end).or_insert(tail);
            }
        }
        (out, (end - start - covered) as u64)
    }

    fn buffered_end(&self) -> Option<i64> {
        self.buffer.iter().map(|(p, d)| p + d.len() as i64).max()
    }
}

/// Parameters the lanes need from the aligner.
struct Ctx {
    frontier: i64,
    window: i64,
    block: i64,
    bytes_per_sample: usize,
}

/// Turns the RTP packets of both directions of a call into aligned blocks.
#[derive(Debug)]
pub struct Aligner {
    codec: Codec,
    window: i64,
    block: i64,
    origin: Option<Instant>,
    head: i64,
    next_start: i64,
    flush_to: Option<i64>,
    lanes: [Lane; 2],
    stats: AlignStats,
}

/// Converts a duration to samples, whole milliseconds, clamped.
fn duration_samples(d: Duration, min_ms: u128) -> i64 {
    d.as_millis().clamp(min_ms, MAX_CONFIG_MS) as i64 * SAMPLES_PER_MS
}

impl Aligner {
    /// Creates an aligner for `codec`; durations are rounded down to whole
    /// milliseconds and clamped to 60 s (`block` to at least 1 ms).
    pub fn new(codec: Codec, config: AlignConfig) -> Self {
        Self {
            codec,
            window: duration_samples(config.jitter_window, 0),
            block: duration_samples(config.block, 1),
            origin: None,
            head: 0,
            next_start: 0,
            flush_to: None,
            lanes: [Lane::default(), Lane::default()],
            stats: AlignStats::default(),
        }
    }

    /// The codec of the recorded payload.
    pub fn codec(&self) -> Codec {
        self.codec
    }

    /// Counters so far.
    pub fn stats(&self) -> AlignStats {
        self.stats.clone()
    }

    /// The timeline position of `at`, in samples since the origin.
    fn position_of(&self, origin: Instant, at: Instant) -> i64 {
        let nanos = at.saturating_duration_since(origin).as_nanos();
        i64::try_from(nanos / 125_000)
            .unwrap_or(i64::MAX / 4)
            .min(i64::MAX / 4)
    }

    /// Moves the head to `now` without a packet: blocks whose time has
    /// passed become final (silence where nothing arrived). Does nothing
    /// before the first packet (the timeline has no origin yet) or after
    /// [`finish`](Self::finish).
    pub fn advance(&mut self, now: Instant) {
        if self.flush_to.is_some() {
            return;
        }
        if let Some(origin) = self.origin {
            self.head = self.head.max(self.position_of(origin, now));
        }
    }

    /// Feeds one datagram relayed in `channel`'s direction, received at
    /// `arrival`, parsing it first (for callers that hold raw bytes; the
    /// recorder is handed packets the relay parsed, [`Aligner::push`]).
    /// Anything that is not RTP counts as `malformed`.
    pub fn push_datagram(&mut self, channel: Channel, datagram: &[u8], arrival: Instant) {
        match RtpPacket::parse(datagram) {
            Some(packet) => self.push(channel, packet, arrival),
            None => {
                self.note_arrival(arrival);
                self.stats.malformed += 1;
            }
        }
    }

    /// Moves the head to `arrival` (the first call sets the origin);
    /// returns its position.
    fn note_arrival(&mut self, arrival: Instant) -> i64 {
        let origin = *self.origin.get_or_insert(arrival);
        let now = self.position_of(origin, arrival);
        self.head = self.head.max(now);
        now
    }

    /// Feeds one RTP packet relayed in `channel`'s direction, received at
    /// `arrival`. Never panics; anything unusable is counted and ignored.
    pub fn push(&mut self, channel: Channel, packet: RtpPacket<'_>, arrival: Instant) {
        if self.flush_to.is_some() {
            self.stats.late += 1;
            return;
        }
        let now = self.note_arrival(arrival);
        let Some(rtp) = self.classify(packet) else {
            return;
        };
        let ctx = Ctx {
            frontier: self.next_start,
            window: self.window,
            block: self.block,
            bytes_per_sample: self.codec.bytes_per_sample(),
        };
        let lane = &mut self.lanes[channel.index()];
        if lane.is_duplicate(&rtp) {
            self.stats.duplicates += 1;
            return;
        }
        if let Some(pos) = lane.position(&rtp, now, &ctx, &mut self.stats) {
            lane.insert(pos, rtp.payload(), ctx.frontier, &mut self.stats);
        }
    }

    /// Filters a packet: only the codec's audio passes.
    fn classify<'a>(&mut self, rtp: RtpPacket<'a>) -> Option<RtpPacket<'a>> {
        if rtp.header.payload_type != self.codec.payload_type() {
            if (96..=127).contains(&rtp.header.payload_type) {
                self.stats.telephone_events += 1;
            } else {
                self.stats.unexpected_payload_type += 1;
            }
            return None;
        }
        let bps = self.codec.bytes_per_sample();
        let len = rtp.payload().len();
        if len == 0 || !len.is_multiple_of(bps) || len / bps > MAX_PACKET_SAMPLES {
            self.stats.bad_payload += 1;
            return None;
        }
        Some(rtp)
    }

    /// Returns the next final block, in timeline order, if any.
    pub fn poll_block(&mut self) -> Option<Block> {
        let start = self.next_start;
        let full_end = start + self.block;
        let end = match self.flush_to {
            Some(limit) if start < limit => full_end.min(limit),
            Some(_) => return None,
            None if full_end + self.window <= self.head => full_end,
            None => return None,
        };
        self.next_start = end;
        let silence = self.codec.silence();
        let (caller, gap0) = self.lanes[0].take(start, end, silence);
        let (callee, gap1) = self.lanes[1].take(start, end, silence);
        self.stats.silence_samples[0] += gap0;
        self.stats.silence_samples[1] += gap1;
        Some(Block {
            start_ms: (start / SAMPLES_PER_MS) as u64,
            caller,
            callee,
        })
    }

    /// Ends the recording: everything buffered becomes final and is
    /// returned by further [`poll_block`](Self::poll_block) calls.
    pub fn finish(&mut self) {
        if self.flush_to.is_some() {
            return;
        }
        let buffered = self.lanes.iter().filter_map(Lane::buffered_end).max();
        let final_blocks = (self.head - self.window - self.next_start).max(0) / self.block;
        let end = buffered
            .unwrap_or(0)
            .max(self.next_start + final_blocks * self.block);
        let rounded = (end + SAMPLES_PER_MS - 1) / SAMPLES_PER_MS * SAMPLES_PER_MS;
        self.flush_to = Some(rounded);
    }
}

#[cfg(test)]
#[path = "align_tests.rs"]
mod tests;
