//! Which switch owns a call when several run side by side.
//!
//! A driver may run one [`super::Switch`] per core, each owning the calls
//! whose Call-ID hashes to it: every message of a call (the caller's
//! requests and our responses to them, the callee's responses and
//! requests) carries one of the call's two Call-IDs, so hashing the
//! Call-ID ([`crate::sip::peek::call_id`] finds it without parsing) sends
//! it to the switch that has the call. The caller's Call-ID lands where it
//! lands; the B-leg Call-ID is ours, and [`Shard::new_call_id`] draws it
//! until it hashes to the shard that made it.

use std::sync::atomic::{AtomicUsize, Ordering};

use crate::sip::new_tag;

/// The shard that owns `call_id` among `shards` (0 when `shards` is 0 or
/// 1). Stable across processes and releases (64-bit FNV-1a of the trimmed
/// bytes, modulo `shards`): it must never depend on a per-process seed, or
/// a restarted driver would look for calls in the wrong place.
pub fn shard_of(call_id: impl AsRef<[u8]>, shards: usize) -> usize {
    if shards <= 1 {
        return 0;
    }
    let hash = call_id
        .as_ref()
        .trim_ascii()
        .iter()
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        });
    (hash % shards as u64) as usize
}

/// The shard that owns the raw message `data`, by its Call-ID; shard 0
/// for a message without one (it cannot belong to a call; shard 0 answers
/// it as garbage).
pub fn shard_of_message(data: &[u8], shards: usize) -> usize {
    crate::sip::peek::call_id(data).map_or(0, |id| shard_of(id, shards))
}

/// One switch's place among `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    index: usize,
    count: usize,
}

impl Shard {
    /// The only switch there is.
    pub const SOLE: Shard = Shard { index: 0, count: 1 };

    /// Shard `index` of `count` (a count of 0 counts as 1; an index beyond
    /// the count wraps around).
    pub fn new(index: usize, count: usize) -> Shard {
        let count = count.max(1);
        Shard {
            index: index % count,
            count,
        }
    }

    /// This shard's number.
    pub fn index(self) -> usize {
        self.index
    }

    /// How many shards there are.
    pub fn count(self) -> usize {
        self.count
    }

    /// Whether `call_id` belongs to this shard.
    pub fn owns(self, call_id: impl AsRef<[u8]>) -> bool {
        shard_of(call_id, self.count) == self.index
    }

    /// A fresh random Call-ID (32 alphanumerics) that this shard owns:
    /// drawn again until it hashes here (`count` draws on average).
    pub fn new_call_id(self) -> String {
        loop {
            let id = format!("{}{}", new_tag(), new_tag());
            if self.owns(&id) {
                return id;
            }
        }
    }
}

/// What the shards of one driver have open together, so that
/// `max_calls` and `max_transactions` hold for all of them at once (a
/// shared count rather than a split: one busy shard may use what the
/// others do not). Each switch adds what changed in its own tables after
/// every input ([`super::Switch::share_load`]); while it decides, it sees
/// the others as of their last input, so shards handling new calls at the
/// very same moment may pass a limit by at most one each.
#[derive(Debug, Default)]
pub struct SharedLoad {
    /// Calls in progress and route lookups open, all shards.
    calls: AtomicUsize,
    /// Server and client transactions, all shards.
    transactions: AtomicUsize,
}

/// One switch's view of the [`SharedLoad`]: what it last added.
#[derive(Debug, Default)]
pub(super) struct LoadShare {
    /// The count all switches share; `None` when the switch runs alone.
    shared: Option<std::sync::Arc<SharedLoad>>,
    /// The calls this switch last added to it.
    calls: usize,
    /// The transactions this switch last added to it.
    transactions: usize,
}

impl LoadShare {
    /// Shares `shared` from now on, with nothing added yet.
    pub(super) fn new(shared: std::sync::Arc<SharedLoad>) -> LoadShare {
        LoadShare {
            shared: Some(shared),
            calls: 0,
            transactions: 0,
        }
    }

    /// Calls of all shards, with this one's as `mine` now.
    pub(super) fn calls(&self, mine: usize) -> usize {
        self.total(|s| &s.calls, self.calls, mine)
    }

    /// Transactions of all shards, with this one's as `mine` now.
    pub(super) fn transactions(&self, mine: usize) -> usize {
        self.total(|s| &s.transactions, self.transactions, mine)
    }

    fn total(&self, field: fn(&SharedLoad) -> &AtomicUsize, added: usize, mine: usize) -> usize {
        let Some(shared) = &self.shared else {
            return mine;
        };
        let all = field(shared).load(Ordering::Relaxed);
        all.saturating_sub(added).saturating_add(mine)
    }

    /// Publishes this switch's counts.
    pub(super) fn publish(&mut self, calls: usize, transactions: usize) {
        let Some(shared) = &self.shared else {
            return;
        };
        for (field, was, now) in [
            (&shared.calls, &mut self.calls, calls),
            (&shared.transactions, &mut self.transactions, transactions),
        ] {
            if now > *was {
                field.fetch_add(now - *was, Ordering::Relaxed);
            } else if now < *was {
                field.fetch_sub(*was - now, Ordering::Relaxed);
            }
            *was = now;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_is_stable_and_ignores_padding() {
        // Pinned: a change here moves live calls to other shards.
        assert_eq!(shard_of("a84b4c76e66710@pc33.atlanta.com", 7), 6);
        assert_eq!(shard_of(b"a84b4c76e66710@pc33.atlanta.com ", 7), 6);
        assert_eq!(shard_of("", 4), 1);
        assert_eq!(shard_of("anything", 1), 0);
        assert_eq!(shard_of("anything", 0), 0);
    }

    #[test]
    fn call_ids_spread_over_shards() {
        let mut counts = [0usize; 4];
        for i in 0..4000 {
            counts[shard_of(format!("call-{i}@10.0.0.1"), 4)] += 1;
        }
        assert!(
            counts.iter().all(|&c| (800..1200).contains(&c)),
            "{counts:?}"
        );
    }

    #[test]
    fn our_call_ids_hash_to_their_shard() {
        for index in 0..5 {
            let shard = Shard::new(index, 5);
            for _ in 0..20 {
                let id = shard.new_call_id();
                assert_eq!(shard_of(&id, 5), index, "{id}");
                assert_eq!(id.len(), 32);
            }
        }
        assert_eq!(Shard::new(7, 0), Shard::SOLE);
        assert_eq!(Shard::new(7, 5).index(), 2);
    }

    #[test]
    fn a_raw_message_goes_to_the_shard_of_its_call_id() {
        let id = Shard::new(2, 3).new_call_id();
        let msg = format!("BYE sip:x SIP/2.0\r\nCall-ID: {id}\r\n\r\n");
        assert_eq!(shard_of_message(msg.as_bytes(), 3), 2);
        assert_eq!(shard_of_message(b"garbage", 3), 0);
    }
}
