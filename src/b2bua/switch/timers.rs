//! One timer queue for every transaction and call of a switch.
//!
//! An ordered set of `(deadline, timer)` plus each timer's current
//! deadline: setting a timer removes its old entry before inserting the new
//! one, and clearing it removes it, so the set holds exactly one entry per
//! armed timer (nothing stale accumulates) and comparing two entries
//! compares an `Instant` and a few integers (nothing allocates).

use std::collections::{BTreeSet, HashMap};
use std::hash::Hash;
use std::time::Instant;

use super::{CallRef, ClientId, TxnId};

/// What a timer belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) enum Timer {
    /// A server transaction.
    Server(TxnId),
    /// A client transaction.
    Client(ClientId),
    /// A call: its own timers and its 2xx retransmitters.
    Call(CallRef),
    /// The trunks' keep-alive probes.
    Trunks,
    /// The earliest deadline of the lingering transactions.
    Linger,
}

/// Deadlines by timer, earliest first.
#[derive(Debug)]
pub(super) struct TimerQueue<K> {
    order: BTreeSet<(Instant, K)>,
    deadlines: HashMap<K, Instant>,
}

impl<K> Default for TimerQueue<K> {
    fn default() -> Self {
        TimerQueue {
            order: BTreeSet::new(),
            deadlines: HashMap::new(),
        }
    }
}

impl<K: Copy + Ord + Hash> TimerQueue<K> {
    /// Arms `key` at `at`, replacing its earlier deadline; `None` disarms.
    pub(super) fn set(&mut self, key: K, at: Option<Instant>) {
        if let Some(old) = self.deadlines.remove(&key) {
            self.order.remove(&(old, key));
        }
        if let Some(at) = at {
            self.order.insert((at, key));
            self.deadlines.insert(key, at);
        }
    }

    /// The earliest deadline.
    pub(super) fn next(&self) -> Option<Instant> {
        self.order.first().map(|(at, _)| *at)
    }

    /// Disarms and returns every timer due at `now`, earliest first. A
    /// timer re-armed while these are handled waits for the next call,
    /// even if it is already due: one call never loops on its own output.
    pub(super) fn expired(&mut self, now: Instant) -> Vec<K> {
        let mut due = Vec::new();
        while let Some(&(at, key)) = self.order.first() {
            if at > now {
                break;
            }
            self.order.pop_first();
            self.deadlines.remove(&key);
            due.push(key);
        }
        due
    }

    /// How many timers are armed.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.deadlines.len()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn rescheduling_replaces_and_clearing_removes() {
        let t0 = Instant::now();
        let s = |n| t0 + Duration::from_secs(n);
        let mut q = TimerQueue::default();
        q.set(1u64, Some(s(5)));
        q.set(2, Some(s(3)));
        q.set(1, Some(s(1)));
        assert_eq!((q.len(), q.order.len(), q.next()), (2, 2, Some(s(1))));
        q.set(2, None);
        q.set(3, None);
        assert_eq!((q.len(), q.order.len()), (1, 1));
        q.set(4, Some(s(1)));
        q.set(5, Some(s(9)));
        assert_eq!(q.expired(s(0)), Vec::<u64>::new());
        assert_eq!(q.expired(s(2)), vec![1, 4]);
        assert_eq!((q.len(), q.next()), (1, Some(s(9))));
        assert_eq!(q.expired(s(10)), vec![5]);
        assert_eq!((q.len(), q.order.len(), q.next()), (0, 0, None));
    }

    #[test]
    fn many_reschedules_keep_one_entry() {
        let t0 = Instant::now();
        let mut q = TimerQueue::default();
        for i in 0..100_000u64 {
            q.set(
                Timer::Call(CallRef(7)),
                Some(t0 + Duration::from_millis(i % 977)),
            );
        }
        assert_eq!((q.len(), q.order.len()), (1, 1));
    }
}
