//! The export and load of peers for the state file: every live peer with its acquired locks,
//! its fencing tokens and the lease it has left, turned into plain data and back.
//!
//! Reading and writing the file is `state_file.rs`'s job (in the server), deciding when to do it
//! `persistence.rs`'s; this file only converts. Loading is start-up work, so it is a set of
//! methods, not an [`Op`](crate::Op). A peer loaded with a lock on a semaphore the configuration
//! no longer has keeps it: the semaphore is added as removed (see `reconfigure.rs`).

use std::collections::BTreeMap;
use std::time::Duration;

use crate::{Core, Error, PeerId, SemaphoreSettings, Time, Token};

/// Every live peer with its acquired locks, as plain data for the state file. Pending locks are
/// not part of it: waiters ask again after a restart.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Export {
    /// Semaphore names; [`ExportedPeer::acquired`] refers to them by position.
    pub semaphores: Vec<String>,
    /// The peers, ordered by id: the same state exports the same data on every machine.
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

    /// Every live peer with its acquired locks and the lease it has left, ordered by id. This
    /// walks and sorts all peers (it serves the state file at shutdown, no request path) and
    /// copies only numbers per peer.
    pub fn export(&self, now: Time) -> Export {
        let mut export = Export {
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
        };
        // The map's order differs from one process to the next; the export's must not.
        export.peers.sort_unstable_by_key(|peer| peer.id);
        export
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
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::tests::support::*;

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
        assert_eq!(
            export.peers,
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
