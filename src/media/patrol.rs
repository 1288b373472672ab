//! When a relay worker is woken for requests, and when it looks for them
//! by itself.
//!
//! A handle queues a request (a call opens, a remote address is set, a
//! call closes) and wakes the worker with an eventfd write, unless a
//! wake-up is already on its way (`woken`). At a few thousand calls a
//! second that is thousands of wake-ups a second per worker, each a
//! system call for the SIP engine and a trip through the scheduler for
//! the worker, for requests that can wait a millisecond or two.
//!
//! So a worker that has just found requests *patrols*: it leaves `woken`
//! set, which tells the handles not to wake it, and looks at its queue at
//! least every [`PATROL`] by itself. The first pass that finds nothing
//! clears `woken` and looks once more (a request queued in between saw
//! `woken` still set and did not wake it); when that finds nothing too,
//! the worker sleeps until woken, so an idle relay still sleeps. Requests
//! are never reordered with packets: every pass takes the requests before
//! serving the sockets.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// The longest a request waits while the worker patrols.
pub(super) const PATROL: Duration = Duration::from_millis(2);

/// A worker's side of the wake-up protocol.
pub(super) struct Patrol {
    /// Shared with the handles: set while a wake-up is on its way or the
    /// worker patrols; a handle that sets it wakes the worker.
    woken: Arc<AtomicBool>,
    /// The last pass found requests.
    on: bool,
}

impl Patrol {
    pub(super) fn new(woken: Arc<AtomicBool>) -> Patrol {
        Patrol { woken, on: false }
    }

    /// The wait before the next pass: `timer` (none: until woken),
    /// at most [`PATROL`] while patrolling.
    pub(super) fn timeout(&self, timer: Option<Duration>) -> Option<Duration> {
        if self.on {
            Some(timer.map_or(PATROL, |t| t.min(PATROL)))
        } else {
            timer
        }
    }

    /// One pass: `apply` takes every queued request and says how many.
    pub(super) fn take(&mut self, mut apply: impl FnMut() -> usize) {
        if !self.on {
            // Before looking: a request queued after this wakes us.
            self.woken.store(false, Ordering::SeqCst);
        }
        let mut found = apply();
        if self.on && found == 0 {
            self.woken.store(false, Ordering::SeqCst);
            found = apply();
        }
        self.on = found > 0;
        if self.on {
            self.woken.store(true, Ordering::SeqCst);
        }
    }

    /// True while the worker looks for requests by itself.
    #[cfg(test)]
    pub(super) fn patrolling(&self) -> bool {
        self.on
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    /// A handle as `WorkerLink::send` behaves: queue, then wake unless
    /// `woken` was set. Returns whether it woke the worker.
    fn send(tx: &mpsc::Sender<u32>, woken: &AtomicBool, n: u32) -> bool {
        tx.send(n).unwrap();
        !woken.swap(true, Ordering::SeqCst)
    }

    #[test]
    fn a_busy_worker_is_not_woken_and_an_idle_one_sleeps() {
        let woken = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel();
        let mut patrol = Patrol::new(woken.clone());
        let drain = |rx: &mpsc::Receiver<u32>| rx.try_iter().count();
        assert_eq!(patrol.timeout(None), None, "idle: sleeps until woken");
        assert!(send(&tx, &woken, 1), "the first request wakes it");
        patrol.take(|| drain(&rx));
        assert!(patrol.patrolling());
        assert_eq!(patrol.timeout(None), Some(PATROL));
        let soon = Duration::from_micros(300);
        assert_eq!(patrol.timeout(Some(soon)), Some(soon));
        // While it patrols, requests cost no wake-up.
        for n in 0..10 {
            assert!(!send(&tx, &woken, n));
        }
        patrol.take(|| drain(&rx));
        assert!(patrol.patrolling());
        // A pass that finds nothing ends the patrol...
        patrol.take(|| drain(&rx));
        assert!(!patrol.patrolling());
        assert_eq!(patrol.timeout(None), None);
        // ...and the next request wakes it again.
        assert!(send(&tx, &woken, 99));
    }

    #[test]
    fn a_request_queued_as_the_patrol_ends_is_not_missed() {
        let woken = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel();
        let mut patrol = Patrol::new(woken.clone());
        assert!(send(&tx, &woken, 1));
        patrol.take(|| rx.try_iter().count());
        // The pass finds nothing at first; a request arrives before the
        // second look (it does not wake: `woken` is still set).
        let mut looks = 0;
        let mut taken = Vec::new();
        patrol.take(|| {
            looks += 1;
            if looks == 1 {
                assert!(!send(&tx, &woken, 7));
                return 0;
            }
            taken.extend(rx.try_iter());
            taken.len()
        });
        assert_eq!(taken, vec![7], "the second look found it");
        assert!(patrol.patrolling());
    }
}
