//! The memory of expired peers: which ids expired recently, so that a request for one is
//! answered `Unknown peer` *and* told that the peer expired (`Throttle-Peer-State: expired`), and
//! a client learns that its lease was lost instead of restoring it as after a server restart.
//!
//! **Bounds.** An id is remembered for [`REMEMBER_FOR`] after it expired, and at most
//! [`REMEMBER_AT_MOST`] ids are kept: beyond that the oldest is forgotten first. The ids sit in a
//! FIFO queue (in order of expiry) and a hash map (id to the instant it is forgotten), so
//! remembering, forgetting and looking up cost O(1) amortized, and nothing ever scans the
//! memory. At its bound it takes about 4 MB (a queue entry of 24 bytes, a map entry of about 24
//! plus the map's overhead, for 100,000 ids).
//!
//! An id that expired twice (restored in between) is in the queue twice; the map keeps the later
//! instant, and popping the earlier entry leaves the map alone. A peer that comes back (restore
//! with the same id) is forgotten at once: it is live again, and if it is later removed by a
//! `DELETE`, it did not expire.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use crate::Time;

use super::PeerId;

/// How long an expired id is remembered.
pub const REMEMBER_FOR: Duration = Duration::from_secs(10 * 60);

/// How many expired ids are remembered at most.
pub const REMEMBER_AT_MOST: usize = 100_000;

/// The ids of peers that expired recently. See the module docs for the bounds.
#[cfg_attr(any(test, fuzzing), derive(Clone))]
#[derive(Debug, Default)]
pub struct ExpiredPeers {
    /// `(forget at, id)` in the order the ids were remembered, so the front is forgotten first.
    queue: VecDeque<(Time, PeerId)>,
    /// The instant each remembered id is forgotten; the latest if it is in the queue twice.
    forget_at: HashMap<PeerId, Time>,
}

impl ExpiredPeers {
    /// Remembers that `id` expired at `now`.
    pub fn remember(&mut self, id: PeerId, now: Time) {
        self.remember_until(id, now + REMEMBER_FOR);
    }

    /// Remembers `id` until `forget_at` (for ids loaded from the state file, whose time left is
    /// shortened by the downtime).
    pub fn remember_until(&mut self, id: PeerId, forget_at: Time) {
        self.queue.push_back((forget_at, id));
        self.forget_at.insert(id, forget_at);
        while self.queue.len() > REMEMBER_AT_MOST {
            self.pop_front();
        }
    }

    /// Forgets `id` (it is live again).
    pub fn forget(&mut self, id: PeerId) {
        self.forget_at.remove(&id);
    }

    /// Forgets the ids whose time is up at `now`. O(1) amortized: it only looks at the front.
    pub fn forget_due(&mut self, now: Time) {
        while self.queue.front().is_some_and(|&(at, _)| at <= now) {
            self.pop_front();
        }
    }

    /// Whether `id` expired recently.
    pub fn contains(&self, id: PeerId) -> bool {
        self.forget_at.contains_key(&id)
    }

    /// Number of ids remembered.
    pub fn len(&self) -> usize {
        self.forget_at.len()
    }

    /// Whether no id is remembered.
    pub fn is_empty(&self) -> bool {
        self.forget_at.is_empty()
    }

    /// Every remembered id with the instant it is forgotten, oldest first (for the state file).
    pub fn iter(&self) -> impl Iterator<Item = (PeerId, Time)> + '_ {
        self.queue
            .iter()
            .filter(|&&(at, id)| self.forget_at.get(&id) == Some(&at))
            .map(|&(at, id)| (id, at))
    }

    /// Every entry of the queue in order, `(forget at, id)`, including those whose id is no
    /// longer remembered by them (forgotten, or remembered again later): the snapshot keeps
    /// the queue as it is, since its entries decide what is dropped at the bound.
    pub(crate) fn queue(&self) -> impl ExactSizeIterator<Item = (Time, PeerId)> + '_ {
        self.queue.iter().copied()
    }

    /// The remembered ids, ascending (for the snapshot). Each is remembered until the time of
    /// its last entry in the queue.
    pub(crate) fn remembered_ids(&self) -> Vec<PeerId> {
        let mut ids: Vec<PeerId> = self.forget_at.keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    /// The memory with this queue and these remembered ids, for a snapshot that checked them:
    /// the queue within the bound, every remembered id in it with the time of its last entry.
    pub(crate) fn from_parts(
        queue: VecDeque<(Time, PeerId)>,
        forget_at: HashMap<PeerId, Time>,
    ) -> ExpiredPeers {
        ExpiredPeers { queue, forget_at }
    }

    fn pop_front(&mut self) {
        if let Some((at, id)) = self.queue.pop_front()
            && self.forget_at.get(&id) == Some(&at)
        {
            self.forget_at.remove(&id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_forgotten_after_their_time() {
        let t0 = Time::from_epoch(std::time::Duration::from_secs(1_000));
        let mut memory = ExpiredPeers::default();
        memory.remember(1, t0);
        memory.remember(2, t0 + Duration::from_secs(1));
        memory.forget_due(t0 + REMEMBER_FOR);
        assert!(!memory.contains(1));
        assert!(memory.contains(2));
        memory.forget_due(t0 + REMEMBER_FOR + Duration::from_secs(1));
        assert_eq!(memory.len(), 0);
    }

    #[test]
    fn at_most_the_bound_is_kept_oldest_forgotten_first() {
        let t0 = Time::from_epoch(std::time::Duration::from_secs(1_000));
        let mut memory = ExpiredPeers::default();
        let n = REMEMBER_AT_MOST as u64 + 10;
        for id in 0..n {
            memory.remember(id, t0);
        }
        assert_eq!(memory.len(), REMEMBER_AT_MOST);
        assert_eq!(memory.queue.len(), REMEMBER_AT_MOST);
        assert!(!memory.contains(9));
        assert!(memory.contains(10));
        assert!(memory.contains(n - 1));
    }

    #[test]
    fn an_id_expired_twice_is_remembered_by_its_later_expiry() {
        let t0 = Time::from_epoch(std::time::Duration::from_secs(1_000));
        let mut memory = ExpiredPeers::default();
        memory.remember(7, t0);
        memory.forget(7);
        assert!(!memory.contains(7));
        memory.remember(7, t0 + Duration::from_secs(60));
        // The first entry's time is up; the second keeps the id.
        memory.forget_due(t0 + REMEMBER_FOR);
        assert!(memory.contains(7));
        assert_eq!(
            memory.iter().collect::<Vec<_>>(),
            vec![(7, t0 + Duration::from_secs(60) + REMEMBER_FOR)]
        );
    }
}
