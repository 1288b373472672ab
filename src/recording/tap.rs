//! The recording's side of the media path: a [`MediaTap`] that runs on the
//! relay worker which owns the call, and turns the packets it sees into
//! plaintext chunks for the call's writer.
//!
//! What happens where, and why:
//! - **On the relay worker** (here): find the codec from the first audio
//!   packet (keeping at most [`EARLY_PACKETS`] before), align both
//!   directions ([`Aligner`]), interleave the channels and cut chunks of at
//!   most [`CHUNK_MEDIA`] of audio, and at least every [`FLUSH_EVERY`] of
//!   wall time (the tap's own timer, so a silent hold still comes out). A
//!   packet costs an insertion into the aligner's lane: no lock, no
//!   allocation of its own and no copy to hand it anywhere.
//! - **In the writer task** ([`super::writer`]): the row, the DEK, the
//!   encryption and the blob writes and syncs, once per chunk (every 2 s
//!   per call), off the relay.
//!
//! The queue between them is bounded ([`CHUNK_QUEUE`]); a chunk that finds
//! it full is dropped and counted ([`RecordingTap::dropped`]), so a slow
//! disk never slows the relay (the recording gets a gap, which the CREC
//! format allows: chunks carry their start time).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::align::{AlignConfig, Aligner, Block, Channel};
use crate::media::g711::Codec;
use crate::media::{Leg, MediaTap, Packet, RtpHeader};

/// Audio per chunk at most.
pub const CHUNK_MEDIA: Duration = Duration::from_secs(2);
/// Wall time between flushes at most, even when no audio flows (hold).
pub const FLUSH_EVERY: Duration = Duration::from_secs(2);
/// Packets kept while the codec is not known yet (about 3 s of telephone
/// events, comfort noise or the like at 50 packets a second).
pub const EARLY_PACKETS: usize = 150;
/// Chunks queued for a writer before new ones are dropped (about 2 min of
/// audio): the writer never slows the relay down.
pub const CHUNK_QUEUE: usize = 64;

/// Bytes of one full chunk: two interleaved channels, one byte a sample.
pub(super) const CHUNK_BYTES: usize = 2 * 8 * CHUNK_MEDIA.as_millis() as usize;

/// What the tap tells the writer.
#[derive(Debug)]
pub enum TapMessage {
    /// The first audio packet named this codec (sent before any chunk).
    Codec(Codec),
    /// Audio in a codec we cannot store: the recording ends failed.
    Unsupported,
    /// Interleaved caller/callee bytes (one a sample each) starting at
    /// `start_ms` of media time; `last` for the final one.
    Chunk {
        /// Media time of the first sample, ms since the recording began.
        start_ms: u64,
        /// Interleaved caller, callee bytes.
        bytes: Vec<u8>,
        /// The final chunk of the recording.
        last: bool,
    },
}

/// The sending side's state before the codec is known.
enum Phase {
    /// Waiting for the first audio packet; the packets seen so far.
    Early(Vec<(Channel, RtpHeader, Vec<u8>, Instant)>),
    /// Aligning audio in the call's codec.
    Aligning(Box<Aligning>),
    /// Nothing more to do (unsupported codec, closed, writer gone).
    Done,
}

/// An aligner and the chunk being filled.
struct Aligning {
    aligner: Aligner,
    /// Interleaved bytes not yet sent, and where they start.
    pending: Vec<u8>,
    pending_start_ms: u64,
}

/// One call's recording tap; made by [`super::Recorder::begin`] and
/// attached to the call's media with
/// [`crate::media::MediaHandle::attach_tap`].
pub struct RecordingTap {
    phase: Phase,
    tx: mpsc::Sender<TapMessage>,
    /// When the next flush is due (set by the first packet).
    next_flush: Option<Instant>,
    /// Chunks dropped because the writer fell behind (shared with the
    /// recorder's counters).
    dropped: Arc<AtomicU64>,
}

impl RecordingTap {
    /// A tap and the receiving end of its queue ([`CHUNK_QUEUE`] long),
    /// counting drops in `dropped`. [`super::Recorder::begin`] gives the
    /// queue to a writer; benchmarks read it themselves.
    pub fn channel(dropped: Arc<AtomicU64>) -> (RecordingTap, mpsc::Receiver<TapMessage>) {
        let (tx, rx) = mpsc::channel(CHUNK_QUEUE);
        let tap = RecordingTap {
            phase: Phase::Early(Vec::new()),
            tx,
            next_flush: None,
            dropped,
        };
        (tap, rx)
    }

    /// Chunks dropped because the writer fell behind (process-wide).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    fn send(&mut self, message: TapMessage) {
        match self.tx.try_send(message) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
            // The writer has ended (it failed): nothing more to record.
            Err(mpsc::error::TrySendError::Closed(_)) => self.phase = Phase::Done,
        }
    }

    /// Packets before the codec is known: kept (bounded) until one names it.
    fn early(&mut self, channel: Channel, header: RtpHeader, bytes: &[u8], arrival: Instant) {
        let Phase::Early(early) = &mut self.phase else {
            return;
        };
        let payload_type = header.payload_type;
        if let Some(codec) = Codec::from_payload_type(payload_type) {
            let mut aligning = Aligning {
                aligner: Aligner::new(codec, AlignConfig::default()),
                pending: Vec::with_capacity(CHUNK_BYTES),
                pending_start_ms: 0,
            };
            for (c, h, b, at) in early.drain(..) {
                aligning.aligner.push(c, rtp(h, &b), at);
            }
            aligning.aligner.push(channel, rtp(header, bytes), arrival);
            self.phase = Phase::Aligning(Box::new(aligning));
            self.send(TapMessage::Codec(codec));
            return;
        }
        // Comfort noise (13) and dynamic types (telephone events, or audio
        // in a dynamic codec) may precede the audio; any other static type
        // is audio we cannot store.
        let maybe_later = payload_type == 13 || payload_type >= 96;
        if !maybe_later || early.len() >= EARLY_PACKETS {
            self.phase = Phase::Done;
            self.send(TapMessage::Unsupported);
            return;
        }
        early.push((channel, header, bytes.to_vec(), arrival));
    }

    /// Moves what the aligner released into chunks; sends the full ones,
    /// and the partial one too when `flush`.
    fn cut(&mut self, flush: bool, last: bool) {
        let Phase::Aligning(a) = &mut self.phase else {
            return;
        };
        let mut chunks = Vec::new();
        while let Some(block) = a.aligner.poll_block() {
            append_block(a, &block);
            while a.pending.len() >= CHUNK_BYTES {
                chunks.push(take_chunk(a, CHUNK_BYTES));
            }
        }
        if (flush && !a.pending.is_empty()) || last {
            chunks.push(take_chunk(a, a.pending.len()));
        }
        let count = chunks.len();
        for (i, (start_ms, bytes)) in chunks.into_iter().enumerate() {
            let last = last && i + 1 == count;
            self.send(TapMessage::Chunk {
                start_ms,
                bytes,
                last,
            });
        }
    }
}

fn rtp(header: RtpHeader, bytes: &[u8]) -> crate::media::RtpPacket<'_> {
    crate::media::RtpPacket { header, bytes }
}

fn append_block(a: &mut Aligning, block: &Block) {
    if a.pending.is_empty() {
        a.pending_start_ms = block.start_ms;
    }
    for (c, e) in block.caller.iter().zip(block.callee.iter()) {
        a.pending.push(*c);
        a.pending.push(*e);
    }
}

/// The first `len` pending bytes as a chunk, with its start time.
fn take_chunk(a: &mut Aligning, len: usize) -> (u64, Vec<u8>) {
    let len = len.min(a.pending.len());
    let start = a.pending_start_ms;
    let rest = a.pending.split_off(len);
    let bytes = std::mem::replace(&mut a.pending, rest);
    a.pending.reserve(CHUNK_BYTES);
    a.pending_start_ms += (len / 16) as u64;
    (start, bytes)
}

impl MediaTap for RecordingTap {
    fn on_packet(&mut self, from: Leg, packet: Packet<'_>, arrival: Instant) {
        let Packet::Rtp(rtp) = packet else {
            return;
        };
        let channel = match from {
            Leg::A => Channel::Caller,
            Leg::B => Channel::Callee,
        };
        self.next_flush.get_or_insert(arrival + FLUSH_EVERY);
        match &mut self.phase {
            Phase::Early(_) => self.early(channel, rtp.header, rtp.bytes, arrival),
            Phase::Aligning(a) => {
                a.aligner.push(channel, rtp, arrival);
                self.cut(false, false);
            }
            Phase::Done => {}
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        match self.phase {
            Phase::Done => None,
            _ => self.next_flush,
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.next_flush = Some(now + FLUSH_EVERY);
        if let Phase::Aligning(a) = &mut self.phase {
            // Time passes for the aligner too: silence comes out now.
            a.aligner.advance(now);
            self.cut(true, false);
        }
    }

    fn close(&mut self, _now: Instant) {
        if let Phase::Aligning(a) = &mut self.phase {
            a.aligner.finish();
            self.cut(true, true);
        }
        self.phase = Phase::Done;
    }
}
