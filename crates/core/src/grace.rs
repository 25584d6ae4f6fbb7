//! The grace period: after an unclean stop the server cannot know who still holds what, so for
//! a while it grants nothing new.
//!
//! While it runs, acquires of new locks queue (they answer pending), releases and shrinking locks
//! grant nobody, while heartbeats and restores are served as always, so holders come back with
//! their locks before anyone else gets one. At its end [`Core::expire`] grants every queue from
//! its front, in FIFO order, as far as the count allows; [`Core::next_deadline`] includes the
//! end, so the expiry thread wakes for it.
//!
//! Starting one is a decision taken at start-up (the server's `persistence.rs`), so it is a
//! method, not an [`Op`](crate::Op). Like the rest of the core this reads no clock: the end is
//! a [`Time`] the caller gives.

use std::time::Duration;

use crate::{Core, PeerId, Time};

impl Core {
    /// Starts a grace period that ends at `until`: nothing new is granted before. A grace period
    /// already running is extended, never shortened.
    pub fn begin_grace(&mut self, until: Time) {
        self.grace_until = Some(self.grace_until.map_or(until, |end| end.max(until)));
    }

    /// The time left of the grace period; `None` if there is none.
    pub fn grace_remaining(&self, now: Time) -> Option<Duration> {
        self.grace_until
            .map(|end| end.saturating_duration_since(now))
    }

    /// Ends the grace period and grants every queue from its front.
    pub(crate) fn end_grace(&mut self, now: Time, granted: &mut Vec<PeerId>) {
        self.grace_until = None;
        for semaphore in 0..self.semaphores.len() {
            self.promote(semaphore, now, granted);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use crate::tests::support::*;
    use crate::{Expired, LockState::Pending, PeerId};

    #[test]
    fn the_grace_period_grants_nothing_new_and_then_in_fifo_order() {
        let (mut c, t0) = with_peers(&[("A", 2, 0)], 4);
        c.begin_grace(t0 + secs(5));
        assert_eq!(c.next_deadline(), Some(t0 + secs(5)));
        assert_eq!(acquire(&mut c, 1, "A", 1, t0), Pending);
        assert_eq!(acquire(&mut c, 2, "A", 2, t0), Pending);
        assert_eq!(acquire(&mut c, 3, "A", 1, t0), Pending);
        // A holder restores during the grace period: served at once.
        c.restore(9, t0 + secs(60), &locks(&[("A", 1)]), &BTreeMap::new())
            .unwrap();
        assert_eq!(c.grace_remaining(t0 + secs(2)), Some(secs(3)));
        assert_eq!(c.expire(t0 + secs(4)), Expired::default());
        let ended = c.expire(t0 + secs(5));
        assert!(ended.grace_ended);
        // Only peer 1 fits beside the restored lock; peer 2 (count 2) blocks peer 3.
        assert_eq!(ended.granted, vec![1]);
        assert_eq!(c.grace_remaining(t0 + secs(5)), None);
        assert_eq!(c.release_lock(9, "A", t0), Ok(Vec::<PeerId>::new()));
        assert_eq!(c.release_lock(1, "A", t0), Ok(vec![2]));
        assert_eq!(c.release_lock(2, "A", t0), Ok(vec![3]));
    }

    #[test]
    fn during_the_grace_period_releases_and_shrinks_grant_nobody() {
        let (mut c, t0) = with_peers(&[("A", 2, 0)], 3);
        acquire(&mut c, 1, "A", 2, t0);
        c.begin_grace(t0 + secs(5));
        assert_eq!(acquire(&mut c, 2, "A", 1, t0), Pending);
        assert_eq!(
            c.acquire(1, "A", 1, None, t0).unwrap().granted,
            Vec::<PeerId>::new()
        );
        assert_eq!(c.release_lock(1, "A", t0), Ok(Vec::<PeerId>::new()));
        // Held locks are still reported as held, heartbeats work.
        c.heartbeat(1, t0 + secs(90)).unwrap();
        assert_eq!(c.expire(t0 + secs(6)).granted, vec![2]);
    }

    #[test]
    fn a_grace_period_is_extended_never_shortened() {
        let (mut c, t0) = with_peers(&[("A", 1, 0)], 0);
        c.begin_grace(t0 + secs(5));
        c.begin_grace(t0 + secs(2));
        assert_eq!(c.next_deadline(), Some(t0 + secs(5)));
        c.new_peer(1, t0 + secs(1));
        assert_eq!(c.next_deadline(), Some(t0 + secs(1)));
    }
}
