//! SIGHUP's new configuration, applied to the live state without a restart: semaphores are
//! added, resized, re-levelled and removed, and waiters that can never be granted are dropped.
//!
//! **Removed semaphores.** A semaphore that a new configuration no longer has (or that a loaded
//! peer holds but the configuration never had, see `export.rs`) stays in the core as removed:
//! its held locks stay counted until released (never revoked), restores of such locks are
//! accepted (the client holds the resource already), new acquires answer `Unknown semaphore`,
//! and it is left out of `stats`. Configured again, it comes back with its locks.
//!
//! Reading and checking the file is the server's job (`reload.rs`); a replicated state applies
//! the same change as [`Op::Reconfigure`](crate::Op::Reconfigure).

use crate::{Core, PeerId, SemaphoreSettings, Time};

/// What applying a new configuration changed, for the log and for waking waiters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reconfigured {
    /// Semaphores that were not configured before.
    pub added: Vec<String>,
    /// Semaphores whose `max` or `level` changed.
    pub changed: Vec<String>,
    /// Semaphores no longer configured, with the count still held on each.
    pub removed: Vec<(String, i64)>,
    /// Peers whose pending lock was granted, because a `max` grew.
    pub granted: Vec<PeerId>,
    /// Peers whose pending lock was dropped: its semaphore was removed, or its count is now
    /// above `max` and could never be granted. They are no longer pending; asking again gets
    /// `Unknown semaphore` or `Count too large`.
    pub cancelled: Vec<PeerId>,
}

impl Core {
    /// Applies a new list of semaphores to the live state: adds, resizes, re-levels and removes
    /// (see the module docs for what removal means). A grown `max` grants waiters at once,
    /// unless a grace period is running.
    pub fn reconfigure(
        &mut self,
        semaphores: impl IntoIterator<Item = SemaphoreSettings>,
        now: Time,
    ) -> Reconfigured {
        let mut result = Reconfigured::default();
        let mut configured = vec![false; self.semaphores.len()];
        for settings in semaphores {
            match self.by_name.get(&settings.name) {
                Some(&index) => {
                    let sem = &mut self.semaphores[index];
                    if sem.removed {
                        result.added.push(settings.name.clone());
                    } else if sem.settings != settings {
                        result.changed.push(settings.name.clone());
                    }
                    sem.removed = false;
                    sem.settings = settings;
                    configured[index] = true;
                }
                None => {
                    result.added.push(settings.name.clone());
                    self.add_semaphore(settings, false);
                    configured.push(true);
                }
            }
        }
        for (index, configured) in configured.into_iter().enumerate() {
            let sem = &mut self.semaphores[index];
            if !configured && !sem.removed {
                sem.removed = true;
                result
                    .removed
                    .push((sem.settings.name.clone(), sem.acquired));
            }
            self.cancel_hopeless(index, &mut result.cancelled);
            self.promote(index, now, &mut result.granted);
        }
        result
    }

    /// Drops the pending locks of `semaphore` that can never be granted: all of them if it is
    /// removed, those above `max` otherwise.
    fn cancel_hopeless(&mut self, semaphore: usize, cancelled: &mut Vec<PeerId>) {
        let sem = &mut self.semaphores[semaphore];
        let (removed, max) = (sem.removed, sem.settings.max);
        let hopeless: Vec<u64> = sem
            .queue
            .iter()
            .filter(|(_, waiter)| removed || waiter.count > max)
            .map(|(&ticket, _)| ticket)
            .collect();
        for ticket in hopeless {
            if let Some(waiter) = sem.queue.remove(&ticket) {
                sem.pending -= waiter.count;
                if let Some(peer) = self.peers.get_mut(&waiter.peer) {
                    peer.pending = None;
                }
                cancelled.push(waiter.peer);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::tests::support::*;
    use crate::{Error, LockState::Acquired, PeerId};

    #[test]
    fn a_grown_max_grants_waiters_at_once() {
        let (mut c, t0) = with_peers(&[("A", 1, 0)], 3);
        acquire(&mut c, 1, "A", 1, t0);
        acquire(&mut c, 2, "A", 1, t0);
        acquire(&mut c, 3, "A", 1, t0);
        let result = c.reconfigure(settings(&[("A", 3, 0)]), t0);
        assert_eq!(result.changed, vec!["A".to_owned()]);
        assert_eq!(result.granted, vec![2, 3]);
        assert_eq!(c.remainder("A"), Ok(0));
    }

    #[test]
    fn a_shrunk_max_keeps_held_locks_and_blocks_what_does_not_fit() {
        let (mut c, t0) = with_peers(&[("A", 3, 0)], 4);
        acquire(&mut c, 1, "A", 2, t0);
        acquire(&mut c, 2, "A", 1, t0);
        acquire(&mut c, 3, "A", 3, t0);
        acquire(&mut c, 4, "A", 1, t0);
        let result = c.reconfigure(settings(&[("A", 1, 0)]), t0);
        // Peer 3's count of 3 can never fit now; peer 4 still waits.
        assert_eq!(result.cancelled, vec![3]);
        assert_eq!(result.granted, Vec::<PeerId>::new());
        assert_eq!(c.remainder("A"), Ok(-2));
        assert_eq!(c.overcommitted(), vec![("A", 3, 1)]);
        assert_eq!(c.lock_state(3, "A"), Ok(None));
        assert_eq!(c.release_lock(1, "A", t0), Ok(Vec::<PeerId>::new()));
        assert_eq!(c.release_lock(2, "A", t0), Ok(vec![4]));
    }

    #[test]
    fn a_removed_semaphore_keeps_its_locks_until_released() {
        let (mut c, t0) = with_peers(&[("A", 2, 1), ("B", 1, 0)], 3);
        acquire(&mut c, 1, "A", 1, t0);
        acquire(&mut c, 2, "A", 1, t0);
        acquire(&mut c, 3, "A", 1, t0);
        let result = c.reconfigure(settings(&[("B", 1, 0)]), t0);
        assert_eq!(result.removed, vec![("A".to_owned(), 2)]);
        assert_eq!(result.cancelled, vec![3]);
        // Held: repeated and shrunk as before. New: unknown.
        assert_eq!(acquire(&mut c, 1, "A", 1, t0), Acquired);
        assert_eq!(c.lock_state(3, "A"), Err(Error::UnknownSemaphore));
        assert_eq!(c.acquire(3, "A", 1, None, t0), Err(Error::UnknownSemaphore));
        assert_eq!(
            c.acquire(42, "A", 1, None, t0),
            Err(Error::UnknownSemaphore)
        );
        assert_eq!(c.remainder("A"), Err(Error::UnknownSemaphore));
        assert_eq!(c.stats(t0).len(), 1);
        // The holder's level still counts: B (level 0) is below A (level 1).
        assert_eq!(acquire(&mut c, 1, "B", 1, t0), Acquired);
        assert_eq!(c.release_lock(1, "A", t0), Ok(Vec::<PeerId>::new()));
        // Configured again, it comes back with the lock peer 2 still holds.
        let result = c.reconfigure(settings(&[("A", 2, 1), ("B", 1, 0)]), t0);
        assert_eq!(result.added, vec!["A".to_owned()]);
        assert_eq!(c.remainder("A"), Ok(1));
    }

    #[test]
    fn an_added_semaphore_serves_at_once() {
        let (mut c, t0) = with_peers(&[("A", 1, 0)], 1);
        let result = c.reconfigure(settings(&[("A", 1, 0), ("Z", 2, 0)]), t0);
        assert_eq!(result.added, vec!["Z".to_owned()]);
        assert_eq!(result.changed, Vec::<String>::new());
        assert_eq!(acquire(&mut c, 1, "Z", 2, t0), Acquired);
        let names: Vec<&str> = c.stats(t0).iter().map(|s| s.name).collect();
        assert_eq!(names, vec!["A", "Z"]);
    }
}
