//! The pure rules of proxy-number assignment: which number of the pool a
//! participant may be given, and which one is best. No I/O: the store loads
//! the facts inside its transaction and asks [`choose_proxy`].

use std::collections::HashSet;
use std::fmt;
use std::time::Duration;

use crate::clock::Timestamp;
use crate::phone::E164;

/// A number of the pool and how many active bindings use it now.
#[derive(Debug, Clone)]
pub struct PoolNumber {
    /// The safe number.
    pub number: E164,
    /// Active bindings (any participant) on it: the load-balancing weight.
    pub active: i64,
}

/// A participant's binding to a proxy number, active or past.
#[derive(Debug, Clone)]
pub struct PastBinding {
    /// The proxy number the participant held.
    pub number: E164,
    /// Who the participant reached through it.
    pub counterpart: E164,
    /// When the binding ended; `None` while it is active.
    pub released_at: Option<Timestamp>,
}

/// Why no number of the pool can be given to a participant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoProxy {
    /// Numbers in the pool.
    pub pool_size: usize,
    /// Of those, how many the participant holds in other open sessions.
    pub held: usize,
    /// Of those, how many are quarantined for this participant.
    pub quarantined: usize,
    /// When the first quarantine ends, if any.
    pub next_free_at: Option<Timestamp>,
}

impl fmt::Display for NoProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.pool_size == 0 {
            return f.write_str("the number pool is empty");
        }
        write!(
            f,
            "all {} numbers of the pool are unavailable to this participant: \
             {} held in other open sessions, {} quarantined after earlier sessions \
             with someone else",
            self.pool_size, self.held, self.quarantined
        )?;
        if let Some(t) = self.next_free_at {
            write!(f, " (the first quarantine ends at {})", t.to_rfc3339())?;
        }
        Ok(())
    }
}

/// Chooses the proxy number to give `participant` for a new session with
/// `counterpart`.
///
/// A number is unavailable if the participant holds it in an open session
/// (the routing key `(participant, number)` would be ambiguous), or if the
/// participant held it with a *different* counterpart and released it less
/// than `quarantine` ago (an old counterpart's call must never reach the new
/// one). Among the available numbers, one the participant last used with
/// this same counterpart is preferred (the number they already know), then
/// the least loaded, then the lowest, so the choice is deterministic.
pub fn choose_proxy(
    pool: &[PoolNumber],
    history: &[PastBinding],
    counterpart: &E164,
    now: Timestamp,
    quarantine: Duration,
) -> Result<E164, NoProxy> {
    let held: HashSet<&E164> = history
        .iter()
        .filter(|b| b.released_at.is_none())
        .map(|b| &b.number)
        .collect();
    let quarantine_end = |b: &PastBinding| b.released_at.map(|t| t.saturating_add(quarantine));
    let quarantined: Vec<(&E164, Timestamp)> = history
        .iter()
        .filter(|b| &b.counterpart != counterpart)
        .filter_map(|b| {
            quarantine_end(b)
                .filter(|end| *end > now)
                .map(|e| (&b.number, e))
        })
        .collect();
    let is_quarantined = |n: &E164| quarantined.iter().any(|(q, _)| *q == n);
    let familiar: HashSet<&E164> = history
        .iter()
        .filter(|b| &b.counterpart == counterpart && b.released_at.is_some())
        .map(|b| &b.number)
        .collect();

    pool.iter()
        .filter(|p| !held.contains(&p.number) && !is_quarantined(&p.number))
        .min_by_key(|p| (!familiar.contains(&p.number), p.active, &p.number))
        .map(|p| p.number.clone())
        .ok_or_else(|| {
            let in_pool = |n: &E164| pool.iter().any(|p| &p.number == n);
            let held_in_pool = held.iter().filter(|n| in_pool(n)).count();
            let q_in_pool: HashSet<&E164> = quarantined
                .iter()
                .filter(|(n, _)| in_pool(n) && !held.contains(n))
                .map(|(n, _)| *n)
                .collect();
            NoProxy {
                pool_size: pool.len(),
                held: held_in_pool,
                quarantined: q_in_pool.len(),
                next_free_at: quarantined.iter().map(|(_, end)| *end).min(),
            }
        })
}

/// Number of assignment lock slots (see [`lock_slot`]).
pub const LOCK_SLOTS: u64 = 4096;

/// The lock slot of a participant: assignments touching the same
/// participant take the same database row lock, so they run one after the
/// other. A slot is a hash of the number, so the lock table holds no number.
pub fn lock_slot(number: &E164) -> i64 {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(number.as_str().as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    (u64::from_be_bytes(first) % LOCK_SLOTS) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(86_400);

    fn n(s: &str) -> E164 {
        E164::parse(s).unwrap()
    }

    fn pool(numbers: &[(&str, i64)]) -> Vec<PoolNumber> {
        numbers
            .iter()
            .map(|(s, active)| PoolNumber {
                number: n(s),
                active: *active,
            })
            .collect()
    }

    fn past(number: &str, counterpart: &str, released: Option<i64>) -> PastBinding {
        PastBinding {
            number: n(number),
            counterpart: n(counterpart),
            released_at: released.map(Timestamp::from_millis),
        }
    }

    const P1: &str = "+82505000001";
    const P2: &str = "+82505000002";
    const MASTER: &str = "+821011112222";
    const OTHER: &str = "+821033334444";

    #[test]
    fn picks_least_loaded_then_lowest() {
        let now = Timestamp::from_millis(0);
        let p = pool(&[(P2, 0), (P1, 3)]);
        assert_eq!(choose_proxy(&p, &[], &n(MASTER), now, DAY).unwrap(), n(P2));
        let p = pool(&[(P2, 1), (P1, 1)]);
        assert_eq!(choose_proxy(&p, &[], &n(MASTER), now, DAY).unwrap(), n(P1));
    }

    #[test]
    fn a_number_held_in_an_open_session_is_never_given_again() {
        let now = Timestamp::from_millis(0);
        let p = pool(&[(P1, 0), (P2, 5)]);
        let h = [past(P1, OTHER, None)];
        assert_eq!(choose_proxy(&p, &h, &n(MASTER), now, DAY).unwrap(), n(P2));
        let h = [past(P1, OTHER, None), past(P2, MASTER, None)];
        let err = choose_proxy(&p, &h, &n(MASTER), now, DAY).unwrap_err();
        assert_eq!((err.held, err.quarantined, err.pool_size), (2, 0, 2));
    }

    #[test]
    fn quarantine_blocks_another_counterpart_until_it_ends() {
        let released = 1_000;
        let p = pool(&[(P1, 0)]);
        let h = [past(P1, OTHER, Some(released))];
        let just_before = Timestamp::from_millis(released).saturating_add(DAY * 30);
        let err = choose_proxy(
            &p,
            &h,
            &n(MASTER),
            just_before.saturating_sub(Duration::from_millis(1)),
            DAY * 30,
        )
        .unwrap_err();
        assert_eq!(err.quarantined, 1);
        assert_eq!(err.next_free_at, Some(just_before));
        assert!(err.to_string().contains("quarantined"), "{err}");
        assert_eq!(
            choose_proxy(&p, &h, &n(MASTER), just_before, DAY * 30).unwrap(),
            n(P1)
        );
    }

    #[test]
    fn the_same_counterpart_may_have_the_number_back_and_prefers_it() {
        let now = Timestamp::from_millis(5_000);
        let p = pool(&[(P1, 9), (P2, 0)]);
        let h = [past(P1, MASTER, Some(4_000))];
        assert_eq!(choose_proxy(&p, &h, &n(MASTER), now, DAY).unwrap(), n(P1));
    }

    #[test]
    fn empty_pool_says_so() {
        let err = choose_proxy(&[], &[], &n(MASTER), Timestamp::from_millis(0), DAY).unwrap_err();
        assert_eq!(err.pool_size, 0);
        assert_eq!(err.to_string(), "the number pool is empty");
    }

    #[test]
    fn lock_slots_are_stable_and_in_range() {
        let a = lock_slot(&n(MASTER));
        assert_eq!(a, lock_slot(&n(MASTER)));
        assert!((0..LOCK_SLOTS as i64).contains(&a));
    }
}
