//! What is left of a transaction once it has nothing more to decide: the
//! retransmission-absorption table.
//!
//! After its final word a transaction only waits out a timer (J, L, I, K,
//! D: up to 32 s on UDP) to absorb retransmissions: re-send its stored
//! final response to a retransmitted request, re-send its ACK to a
//! retransmitted non-2xx, pass an ACK to the TU, or just swallow. At a
//! thousand calls a second that is tens of thousands of transactions doing
//! nothing; kept as full [`super::ServerTransaction`]s they filled
//! `max_transactions` and new calls got `503`. A [`Linger`] is the compact
//! form ([`ServerTransaction::linger`], [`ClientTransaction::linger`]);
//! a [`LingerTable`] holds them outside the count of live transactions,
//! with a bound of its own: when full, the entry nearest its deadline is
//! evicted (and counted), so a flood of distinct transactions costs at
//! most the table's bound in memory.
//!
//! The table is keyed by a 128-bit keyed hash of the [`TransactionKey`]
//! (two SipHash-1-3 with random keys), not the key's strings: 16 bytes
//! instead of ~200. A peer cannot aim at a collision without the keys,
//! and an accidental one among `n` entries has probability about
//! n² / 2¹²⁹ (10⁻²⁷ at half a million).
//!
//! [`ServerTransaction::linger`]: super::ServerTransaction::linger
//! [`ClientTransaction::linger`]: super::ClientTransaction::linger

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, RandomState};
use std::time::{Duration, Instant};

use super::TransactionKey;

/// What a lingering transaction does with a message that matches it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LingerAnswer {
    /// Swallow it (ACK retransmissions in Confirmed, response
    /// retransmissions to a completed non-INVITE client transaction).
    Absorb,
    /// Re-send these bytes: the final response of a non-INVITE server
    /// transaction to a retransmitted request, or the ACK of an INVITE
    /// client transaction to a retransmitted non-2xx.
    Resend(Box<[u8]>),
    /// RFC 6026 Accepted: an ACK goes to the TU, a retransmitted INVITE
    /// is absorbed (the TU's 2xx retransmission answers it).
    PassAck,
}

/// A transaction reduced to what absorbing retransmissions needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Linger {
    /// When it is forgotten (the timer that was running).
    pub until: Instant,
    /// What a matching message gets.
    pub answer: LingerAnswer,
}

/// A 128-bit keyed hash of a transaction key, as two words (8-byte
/// aligned, where a `u128` would pad every slot to 16).
type Fingerprint = [u64; 2];

/// Most distinct linger spans kept as separate queues; a further span
/// shares the queue of the nearest one (inserted in order there).
const MAX_QUEUES: usize = 8;

/// Most entries a table makes room for when it is made (its bound, up to
/// this). Growing as it fills would rehash the whole table, and double a
/// deadline queue, into fresh memory each time it doubles: at 6,000 calls
/// a second that is a stall of milliseconds on the switch's thread every
/// few seconds for the first half-minute (5 of every 9 page faults of the
/// SIP thread under a cold start), while the socket's queue fills. Room
/// made up front is address space: pages are touched only as entries
/// land in them.
const ROOM_MAX: usize = 1 << 20;

/// One lingering entry.
#[derive(Debug)]
struct Slot<V> {
    /// Its deadline, to tell its queue entry from a stale one.
    until: Instant,
    /// What a match gets.
    answer: LingerAnswer,
    /// The owner's data (the switch: flow and call).
    value: V,
}

/// Deadlines of one linger span, in order (FIFO for a steady clock).
#[derive(Debug)]
struct SpanQueue {
    /// The span (deadline − insertion time) this queue was made for.
    span: Duration,
    /// `(deadline, fingerprint)`, earliest first.
    order: VecDeque<(Instant, Fingerprint)>,
}

/// Lingering transactions by key, bounded; see the module docs.
#[derive(Debug)]
pub struct LingerTable<V> {
    /// The two keyed hashers of the fingerprint.
    hashers: (RandomState, RandomState),
    /// Entries by fingerprint.
    slots: HashMap<Fingerprint, Slot<V>>,
    /// One deadline queue per linger span (J/L/D, I/K): each is in order,
    /// so expiring and evicting look at queue fronts only.
    queues: Vec<SpanQueue>,
    /// Most entries; inserting beyond evicts.
    cap: usize,
    /// Entries a deadline queue has room for when it is made (see
    /// [`ROOM_MAX`]).
    room: usize,
    /// Entries evicted to make room, ever.
    evicted: u64,
}

impl<V> LingerTable<V> {
    /// An empty table of at most `cap` entries (at least one), with room
    /// made for them up front (up to [`ROOM_MAX`]).
    pub fn new(cap: usize) -> Self {
        let cap = cap.max(1);
        let room = cap.min(ROOM_MAX);
        Self {
            hashers: (RandomState::new(), RandomState::new()),
            slots: HashMap::with_capacity(room),
            queues: Vec::new(),
            cap,
            room,
            evicted: 0,
        }
    }

    fn fingerprint(&self, key: &TransactionKey) -> Fingerprint {
        let half = |s: &RandomState| s.hash_one(key);
        [half(&self.hashers.0), half(&self.hashers.1)]
    }

    /// Adds `key`, lingering as `linger` from `now`. Returns the values
    /// that left the table: an evicted entry's when it was full, or
    /// `value` itself if `key` is lingering already (the first one stays).
    pub fn insert(
        &mut self,
        now: Instant,
        key: &TransactionKey,
        linger: Linger,
        value: V,
    ) -> Option<V> {
        let fp = self.fingerprint(key);
        if self.slots.contains_key(&fp) {
            return Some(value);
        }
        let evicted = (self.slots.len() >= self.cap)
            .then(|| self.evict())
            .flatten();
        let until = linger.until;
        self.queue_for(until.saturating_duration_since(now))
            .push(until, fp);
        let answer = linger.answer;
        self.slots.insert(
            fp,
            Slot {
                until,
                answer,
                value,
            },
        );
        evicted
    }

    /// What a message with `key` gets, and the owner's data, if `key` is
    /// lingering.
    pub fn get(&self, key: &TransactionKey) -> Option<(&LingerAnswer, &V)> {
        let slot = self.slots.get(&self.fingerprint(key))?;
        Some((&slot.answer, &slot.value))
    }

    /// Whether `key` is lingering.
    pub fn contains(&self, key: &TransactionKey) -> bool {
        self.slots.contains_key(&self.fingerprint(key))
    }

    /// Removes every entry due at `now`, returning their values.
    pub fn expire(&mut self, now: Instant) -> Vec<V> {
        let mut gone = Vec::new();
        for i in 0..self.queues.len() {
            while let Some(&(at, fp)) = self.queues[i].order.front() {
                if at > now {
                    break;
                }
                self.queues[i].order.pop_front();
                if let Some(v) = self.take_if_current(fp, at) {
                    gone.push(v);
                }
            }
        }
        gone
    }

    /// The earliest deadline, if any entry lingers.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.queues
            .iter()
            .filter_map(|q| q.order.front().map(|(at, _)| *at))
            .min()
    }

    /// Entries now.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether nothing lingers.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Entries evicted to make room, ever.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// Bytes per entry of the table when full, with the allocators' slack
    /// estimated (hash-table buckets at the load factor, queue capacity)
    /// and the resent bytes averaged over the entries now: what `[limits]
    /// max_lingering_transactions` multiplies.
    pub fn bytes_per_entry(&self) -> usize {
        let n = self.slots.len().max(1);
        let full = self.slots.capacity().max(n);
        let slot = std::mem::size_of::<(Fingerprint, Slot<V>)>() + 1;
        let buckets = full * 8 / 7;
        let queued: usize = self.queues.iter().map(|q| q.order.capacity()).sum();
        let queue_entry = std::mem::size_of::<(Instant, Fingerprint)>();
        let resent: usize = self
            .slots
            .values()
            .map(|s| match &s.answer {
                LingerAnswer::Resend(b) => b.len(),
                LingerAnswer::Absorb | LingerAnswer::PassAck => 0,
            })
            .sum();
        (buckets * slot + queued * queue_entry) / full + resent / n
    }

    /// Evicts the entry nearest its deadline; its value.
    fn evict(&mut self) -> Option<V> {
        loop {
            let i = self
                .queues
                .iter()
                .enumerate()
                .filter_map(|(i, q)| q.order.front().map(|(at, _)| (*at, i)))
                .min()?
                .1;
            let (at, fp) = self.queues[i].order.pop_front()?;
            if let Some(v) = self.take_if_current(fp, at) {
                self.evicted += 1;
                return Some(v);
            }
        }
    }

    /// Removes the entry `fp` if its deadline is `at` (else the queue
    /// entry was stale).
    fn take_if_current(&mut self, fp: Fingerprint, at: Instant) -> Option<V> {
        if self.slots.get(&fp).is_some_and(|s| s.until == at) {
            return self.slots.remove(&fp).map(|s| s.value);
        }
        None
    }

    /// The queue for entries lingering `span`.
    fn queue_for(&mut self, span: Duration) -> &mut SpanQueue {
        let found = self.queues.iter().position(|q| q.span == span);
        // An emptied queue keeps its room and takes the next new span.
        let idle = || self.queues.iter().position(|q| q.order.is_empty());
        let i = match found.or_else(idle) {
            Some(i) => {
                self.queues[i].span = span;
                i
            }
            None if self.queues.len() < MAX_QUEUES => {
                self.queues.push(SpanQueue {
                    span,
                    order: VecDeque::with_capacity(self.room),
                });
                self.queues.len() - 1
            }
            None => {
                let distance = |q: &SpanQueue| q.span.abs_diff(span);
                (0..self.queues.len())
                    .min_by_key(|&i| distance(&self.queues[i]))
                    .unwrap_or(0)
            }
        };
        &mut self.queues[i]
    }
}

impl SpanQueue {
    /// Adds a deadline, keeping the queue in order (at the back for a
    /// steady clock).
    fn push(&mut self, at: Instant, fp: Fingerprint) {
        if self.order.back().is_none_or(|(last, _)| *last <= at) {
            self.order.push_back((at, fp));
        } else {
            let i = self.order.partition_point(|(t, _)| *t <= at);
            self.order.insert(i, (at, fp));
        }
    }
}

#[cfg(test)]
#[path = "linger_tests.rs"]
mod tests;
