//! What the core needs so that restarts never hand a lock out twice: the grace period, a new
//! configuration applied to the live state, and the export and load of peers for the state file.
//!
//! Like the rest of the core this is pure bookkeeping: no clock (every method that depends on time
//! takes `now`), no files, no logging. Reading and writing the state file is `state_file.rs`'s
//! job, deciding when to do it `restart.rs`'s; this file only turns peers into plain data and
//! back.
//!
//! **The grace period.** After an unclean stop the server cannot know who still holds what, so
//! for a while it grants nothing new: acquires of new locks queue (they answer pending), releases
//! and shrinking locks grant nobody, while heartbeats and restores are served as always. At its
//! end [`Core::expire`] grants every queue from its front, in FIFO order, as far as the count
//! allows; [`Core::next_deadline`] includes the end, so the expiry thread wakes for it.
//!
//! **Removed semaphores.** A semaphore that a new configuration no longer has (or that a loaded
//! peer holds but the configuration never had) stays in the core as removed: its held locks stay
//! counted until released (never revoked), restores of such locks are accepted (the client holds
//! the resource already), new acquires answer `Unknown semaphore`, and it is left out of
//! `stats`. Configured again, it comes back with its locks.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::Time;

use super::{Core, PeerId, Semaphore, SemaphoreSettings, Token};
use crate::Error;

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

/// Every live peer with its acquired locks, as plain data for the state file. Pending locks are
/// not part of it: waiters ask again after a restart.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Export {
    /// Semaphore names; [`ExportedPeer::acquired`] refers to them by position.
    pub semaphores: Vec<String>,
    /// The peers, in no particular order.
    pub peers: Vec<ExportedPeer>,
    /// The fencing token of the next grant: a restarted server starts at least there.
    pub next_token: Token,
    /// Ids of recently expired peers with the time each is still remembered, oldest first, so
    /// that after a restart their clients still learn that they expired.
    pub expired: Vec<(PeerId, Duration)>,
}

/// One peer of an [`Export`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportedPeer {
    pub id: PeerId,
    /// The lease left at the time of the export.
    pub expires_in: Duration,
    /// `(position in Export::semaphores, count, fencing token)` of each acquired lock.
    pub acquired: Vec<(usize, i64, Token)>,
    /// The holder's name, if it gave one.
    pub name: Option<Box<str>>,
}

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

    /// Re-creates a peer from the state file with its acquired locks and their fencing tokens,
    /// like `restore`, but a lock on a semaphore the configuration does not have is kept too: the
    /// semaphore is added as removed (and with no lock level, so it does not constrain the peer's
    /// next acquire).
    pub fn load_peer(
        &mut self,
        id: PeerId,
        expires_at: Time,
        acquired: &BTreeMap<String, i64>,
        tokens: &BTreeMap<String, Token>,
    ) -> Result<(), Error> {
        if self.peers.contains_key(&id) {
            return Err(Error::RestoreConflict);
        }
        for name in acquired.keys() {
            if !self.by_name.contains_key(name) {
                let settings = SemaphoreSettings {
                    name: name.clone(),
                    max: 0,
                    level: i32::MAX,
                };
                self.add_semaphore(settings, true);
            }
        }
        self.restore(id, expires_at, acquired, tokens)
    }

    /// Remembers a peer of the state file that expired before the restart, until `forget_at`.
    pub fn load_expired(&mut self, id: PeerId, forget_at: Time) {
        if !self.peers.contains_key(&id) {
            self.expired_peers.remember_until(id, forget_at);
        }
    }

    /// Every live peer with its acquired locks and the lease it has left. This walks all peers
    /// (it serves the state file at shutdown, no request path) and copies only numbers per peer.
    pub fn export(&self, now: Time) -> Export {
        Export {
            semaphores: self
                .semaphores
                .iter()
                .map(|sem| sem.settings.name.clone())
                .collect(),
            peers: self
                .peers
                .iter()
                .map(|(&id, peer)| ExportedPeer {
                    id,
                    expires_in: peer.expires_at.saturating_duration_since(now),
                    acquired: peer
                        .acquired
                        .iter()
                        .map(|lock| (lock.semaphore, lock.count, lock.token))
                        .collect(),
                    name: peer.name.clone(),
                })
                .collect(),
            next_token: self.next_token,
            expired: self
                .expired_peers
                .iter()
                .filter(|&(_, forget_at)| forget_at > now)
                .map(|(id, forget_at)| (id, forget_at.saturating_duration_since(now)))
                .collect(),
        }
    }

    /// Semaphores whose acquired count is above `max` (a lowered `max`, a restore) or that are
    /// removed with locks held: `(name, acquired, max)`, `max` 0 for removed ones. For the log
    /// after loading the state file. Costs one step per semaphore.
    pub fn overcommitted(&self) -> Vec<(&str, i64, i64)> {
        self.semaphores
            .iter()
            .filter(|sem| sem.acquired > 0 && (sem.removed || sem.acquired > sem.settings.max))
            .map(|sem| {
                let max = if sem.removed { 0 } else { sem.settings.max };
                (sem.settings.name.as_str(), sem.acquired, max)
            })
            .collect()
    }

    fn add_semaphore(&mut self, settings: SemaphoreSettings, removed: bool) {
        self.by_name
            .insert(settings.name.clone(), self.semaphores.len());
        self.semaphores.push(Semaphore {
            settings,
            acquired: 0,
            pending: 0,
            queue: BTreeMap::new(),
            removed,
        });
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

    /// Ends the grace period and grants every queue from its front.
    pub(super) fn end_grace(&mut self, now: Time, granted: &mut Vec<PeerId>) {
        self.grace_until = None;
        for semaphore in 0..self.semaphores.len() {
            self.promote(semaphore, now, granted);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Expired;
    use crate::LockState::{self, Acquired, Pending};

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn settings(semaphores: &[(&str, i64, i32)]) -> Vec<SemaphoreSettings> {
        semaphores
            .iter()
            .map(|&(name, max, level)| SemaphoreSettings {
                name: name.to_owned(),
                max,
                level,
            })
            .collect()
    }

    /// A core with the given semaphores and peers `1..=peers`, each living for a minute.
    fn with_peers(semaphores: &[(&str, i64, i32)], peers: PeerId) -> (Core, Time) {
        let t0 = Time::from_epoch(std::time::Duration::from_secs(1_000));
        let mut c = Core::new(settings(semaphores));
        for id in 1..=peers {
            c.new_peer(id, t0 + secs(60));
        }
        (c, t0)
    }

    #[track_caller]
    fn acquire(core: &mut Core, id: PeerId, sem: &str, count: i64, now: Time) -> LockState {
        core.acquire(id, sem, count, None, now).unwrap().state
    }

    fn locks(pairs: &[(&str, i64)]) -> BTreeMap<String, i64> {
        pairs.iter().map(|&(s, c)| (s.to_owned(), c)).collect()
    }

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

    #[test]
    fn loaded_peers_keep_locks_on_semaphores_the_configuration_lost() {
        let t0 = Time::from_epoch(std::time::Duration::from_secs(1_000));
        let mut c = Core::new(settings(&[("A", 1, 0)]));
        c.load_peer(
            1,
            t0 + secs(30),
            &locks(&[("A", 1), ("gone", 4)]),
            &BTreeMap::new(),
        )
        .unwrap();
        c.load_peer(2, t0 + secs(30), &locks(&[("A", 1)]), &BTreeMap::new())
            .unwrap();
        assert_eq!(
            c.load_peer(2, t0 + secs(30), &locks(&[]), &BTreeMap::new()),
            Err(Error::RestoreConflict)
        );
        assert_eq!(
            c.load_peer(3, t0, &locks(&[("A", 0)]), &BTreeMap::new()),
            Err(Error::InvalidCount)
        );
        assert_eq!(c.overcommitted(), vec![("A", 2, 1), ("gone", 4, 0)]);
        c.new_peer(4, t0 + secs(30));
        assert_eq!(
            c.acquire(4, "gone", 1, None, t0),
            Err(Error::UnknownSemaphore)
        );
        // The removed semaphore sets no level: peer 1 could still take a level-0 lock.
        assert_eq!(c.release_lock(1, "A", t0), Ok(Vec::<PeerId>::new()));
        assert_eq!(c.release_lock(1, "gone", t0), Ok(Vec::<PeerId>::new()));
        assert!(c.overcommitted().is_empty());
    }

    #[test]
    fn export_lists_every_peer_with_its_acquired_locks_and_lease() {
        let (mut c, t0) = with_peers(&[("A", 1, 1), ("B", 5, 0)], 2);
        acquire(&mut c, 1, "A", 1, t0);
        acquire(&mut c, 1, "B", 3, t0);
        // A pending lock is not exported.
        acquire(&mut c, 2, "A", 1, t0);
        let export = c.export(t0 + secs(10));
        assert_eq!(export.semaphores, vec!["A".to_owned(), "B".to_owned()]);
        let mut peers = export.peers;
        peers.sort_by_key(|p| p.id);
        assert_eq!(
            peers,
            vec![
                ExportedPeer {
                    id: 1,
                    expires_in: secs(50),
                    acquired: vec![(0, 1, 1), (1, 3, 2)],
                    name: None,
                },
                ExportedPeer {
                    id: 2,
                    expires_in: secs(50),
                    acquired: vec![],
                    name: None,
                },
            ]
        );
    }
}
