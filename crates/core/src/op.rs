//! Operations as values: every change a running server makes to the core, as an [`Op`] that can
//! be written down, sent and applied in order with [`Core::apply`].
//!
//! This is the shape a replicated state needs: a log of `(time, op)` entries, stamped once and
//! applied by every member to its own core, gives every member the same state. The single
//! server's `service.rs` may call the core's methods directly; `apply` is a thin dispatcher over
//! the same methods, so both paths share one implementation.
//!
//! Not here: start-up work (loading the state file, starting a grace period, raising the token
//! counter) stays methods of [`Core`], and so do the read-only queries. Serialization is the
//! caller's: every field is a plain value (numbers, strings, [`Time`]), never a reference or an
//! `Instant`.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::{
    Core, Error, Expired, LockState, PeerId, Reconfigured, SemaphoreSettings, Time, Token,
};

/// One state change, with every argument it needs except the time it happens at (which
/// [`Core::apply`] takes beside it). Deadlines are absolute, on the same clock as that time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Registers a peer without locks ([`Core::new_peer`]), with the holder's name if it gives
    /// one. The id is the caller's choice (the server draws it at random before proposing).
    NewPeer {
        id: PeerId,
        expires_at: Time,
        name: Option<String>,
    },
    /// Moves a peer's deadline ([`Core::heartbeat`]).
    Heartbeat { id: PeerId, expires_at: Time },
    /// Removes a peer and its locks ([`Core::remove_peer`]).
    RemovePeer { id: PeerId },
    /// Asks for a lock ([`Core::acquire`]); `expires_at`, if given, is the peer's new deadline
    /// and the lease a queued lock keeps for its grant.
    Acquire {
        id: PeerId,
        semaphore: String,
        count: i64,
        expires_at: Option<Time>,
    },
    /// Releases one lock, acquired or pending ([`Core::release_lock`]).
    ReleaseLock { id: PeerId, semaphore: String },
    /// Re-creates a peer with its acquired locks and their fencing tokens where given
    /// ([`Core::restore`]), and sets the holder's name if it gives one.
    Restore {
        id: PeerId,
        expires_at: Time,
        acquired: BTreeMap<String, i64>,
        tokens: BTreeMap<String, Token>,
        name: Option<String>,
    },
    /// Nothing but the sweep that precedes every operation: the expiry thread's tick.
    Expire,
    /// Applies a new list of semaphores to the live state ([`Core::reconfigure`]).
    Reconfigure { semaphores: Vec<SemaphoreSettings> },
}

/// What one [`Core::apply`] did: the sweep, then the operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    /// The sweep before the operation: the peers that expired at the entry's time, the waiters
    /// that this granted, the end of a grace period.
    pub expired: Expired,
    /// The operation's own answer. An `Err` means the operation changed nothing (the sweep
    /// before it stands).
    pub outcome: Result<Outcome, Error>,
    /// Peers whose pending lock the operation granted: a release, a shrink, a removal or a
    /// grown `max` freed count. The sweep's grants are in [`Applied::expired`].
    pub granted: Vec<PeerId>,
}

/// The answer of each [`Op`], as its method gives it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// [`Op::NewPeer`]: `false` if the id was taken, which changed nothing.
    NewPeer {
        created: bool,
    },
    Heartbeat,
    /// [`Op::RemovePeer`]: `false` if the peer was not live, which is not an error.
    RemovePeer {
        removed: bool,
    },
    /// [`Op::Acquire`]: the lock's state, and its fencing token if it is held.
    Acquire {
        state: LockState,
        token: Option<Token>,
    },
    ReleaseLock,
    Restore,
    Expire,
    /// [`Op::Reconfigure`]: what changed (its `granted` is also [`Applied::granted`]).
    Reconfigure(Reconfigured),
}

impl Op {
    /// The peer the operation is about, if it is about one.
    pub fn peer(&self) -> Option<PeerId> {
        match *self {
            Op::NewPeer { id, .. }
            | Op::Heartbeat { id, .. }
            | Op::RemovePeer { id }
            | Op::Acquire { id, .. }
            | Op::ReleaseLock { id, .. }
            | Op::Restore { id, .. } => Some(id),
            Op::Expire | Op::Reconfigure { .. } => None,
        }
    }
}

impl Op {
    /// The same operation with every deadline moved `by` later. A replicated log carries
    /// operations whose deadlines count from the entry's own time (the proposer cannot know
    /// the time the leader will stamp): `op.later(at)` places them on the log's clock.
    pub fn later(mut self, by: Duration) -> Op {
        match &mut self {
            Op::NewPeer { expires_at, .. }
            | Op::Heartbeat { expires_at, .. }
            | Op::Restore { expires_at, .. } => *expires_at += by,
            Op::Acquire { expires_at, .. } => {
                if let Some(expires_at) = expires_at {
                    *expires_at += by;
                }
            }
            Op::RemovePeer { .. }
            | Op::ReleaseLock { .. }
            | Op::Expire
            | Op::Reconfigure { .. } => {}
        }
        self
    }
}

impl Applied {
    /// Every peer whose waiting requests must look again after `op` was applied (with the
    /// result `self`): the expired, the granted, the cancelled, and the peer of a successful
    /// removal or release (its own long poll ends). In a fixed order; an id may appear twice.
    pub fn to_wake(&self, op: &Op) -> Vec<PeerId> {
        let mut peers = Vec::new();
        peers.extend(&self.expired.peers);
        peers.extend(&self.expired.granted);
        peers.extend(&self.granted);
        match (&self.outcome, op) {
            (Ok(Outcome::Reconfigure(result)), _) => peers.extend(&result.cancelled),
            (Ok(Outcome::RemovePeer { removed: true }), &Op::RemovePeer { id })
            | (Ok(Outcome::ReleaseLock), &Op::ReleaseLock { id, .. }) => peers.push(id),
            _ => {}
        }
        peers
    }
}

impl Core {
    /// Applies `op` at the time `at`: first the sweep every request of the server gets (every
    /// peer whose deadline is at or before `at` expires, exactly as [`Core::expire`]), then the
    /// operation itself, with `at` as its `now`.
    ///
    /// **Deterministic.** The state afterwards and the returned [`Applied`] depend on nothing
    /// but the state before, `at` and `op`: no clock, no randomness, and no hash map's
    /// iteration order reaches a result or the state (maps are only looked up; lists come from
    /// ordered indexes: deadlines, queues, the configuration). So the same sequence of
    /// `(at, op)` applied to cores created alike gives the same state and the same results on
    /// every machine, which is what lets a replicated log drive several cores. The property
    /// suite (`properties.rs`) checks it by feeding two cores the same entries.
    ///
    /// The memory of expired peers (`expired.rs`) is trimmed at `at` too, so it is the same
    /// on every machine.
    ///
    /// The times of a sequence should not decrease: an `at` earlier than the last one sweeps
    /// nothing, and the operation then happens at that earlier time.
    pub fn apply(&mut self, at: Time, op: &Op) -> Applied {
        self.forget_expired(at);
        let expired = self.expire(at);
        let mut granted = Vec::new();
        let outcome = match op {
            Op::NewPeer {
                id,
                expires_at,
                name,
            } => {
                let created = self.new_peer(*id, *expires_at);
                if created {
                    self.set_name(*id, name.as_deref());
                }
                Ok(Outcome::NewPeer { created })
            }
            Op::Heartbeat { id, expires_at } => self
                .heartbeat(*id, *expires_at)
                .map(|()| Outcome::Heartbeat),
            Op::RemovePeer { id } => {
                let removed = self.remove_peer(*id, at);
                let outcome = Outcome::RemovePeer {
                    removed: removed.is_some(),
                };
                granted = removed.unwrap_or_default();
                Ok(outcome)
            }
            Op::Acquire {
                id,
                semaphore,
                count,
                expires_at,
            } => self
                .acquire(*id, semaphore, *count, *expires_at, at)
                .map(|acquisition| {
                    granted = acquisition.granted;
                    Outcome::Acquire {
                        state: acquisition.state,
                        token: acquisition.token,
                    }
                }),
            Op::ReleaseLock { id, semaphore } => {
                self.release_lock(*id, semaphore, at).map(|freed| {
                    granted = freed;
                    Outcome::ReleaseLock
                })
            }
            Op::Restore {
                id,
                expires_at,
                acquired,
                tokens,
                name,
            } => self.restore(*id, *expires_at, acquired, tokens).map(|()| {
                self.set_name(*id, name.as_deref());
                Outcome::Restore
            }),
            Op::Expire => Ok(Outcome::Expire),
            Op::Reconfigure { semaphores } => {
                let result = self.reconfigure(semaphores.iter().cloned(), at);
                granted.clone_from(&result.granted);
                Ok(Outcome::Reconfigure(result))
            }
        };
        Applied {
            expired,
            outcome,
            granted,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::support::*;

    fn acquire(id: PeerId, semaphore: &str, count: i64) -> Op {
        Op::Acquire {
            id,
            semaphore: semaphore.to_owned(),
            count,
            expires_at: None,
        }
    }

    #[test]
    fn apply_sweeps_before_the_operation() {
        let (mut c, t0) = with_peers(&[("A", 1, 0)], 2);
        c.apply(t0, &acquire(1, "A", 1));
        c.apply(
            t0,
            &Op::Heartbeat {
                id: 1,
                expires_at: t0 + secs(1),
            },
        );
        // Peer 1 is due at 1 s: the sweep frees A for peer 2's request at that time.
        let applied = c.apply(t0 + secs(1), &acquire(2, "A", 1));
        assert_eq!(applied.expired.peers, vec![1]);
        assert_eq!(
            applied.outcome,
            Ok(Outcome::Acquire {
                state: LockState::Acquired,
                token: Some(2)
            })
        );
        assert_eq!(applied.to_wake(&acquire(2, "A", 1)), vec![1]);
    }

    #[test]
    fn apply_reports_the_grants_and_whom_to_wake() {
        let (mut c, t0) = with_peers(&[("A", 1, 0)], 3);
        c.apply(t0, &acquire(1, "A", 1));
        c.apply(t0, &acquire(2, "A", 1));
        let release = Op::ReleaseLock {
            id: 1,
            semaphore: "A".to_owned(),
        };
        let applied = c.apply(t0, &release);
        assert_eq!(
            (applied.outcome.clone(), applied.granted.clone()),
            (Ok(Outcome::ReleaseLock), vec![2])
        );
        assert_eq!(applied.to_wake(&release), vec![2, 1]);
        // A refusal changes nothing and wakes nobody.
        let refused = c.apply(t0, &acquire(3, "Z", 1));
        assert_eq!(refused.outcome, Err(Error::UnknownSemaphore));
        assert!(refused.to_wake(&acquire(3, "Z", 1)).is_empty());
    }

    #[test]
    fn later_moves_every_deadline_and_nothing_else() {
        let at = secs(7);
        let t = |s| Time::from_epoch(secs(s));
        let cases = [
            (
                Op::NewPeer {
                    id: 1,
                    expires_at: t(5),
                    name: None,
                },
                Op::NewPeer {
                    id: 1,
                    expires_at: t(12),
                    name: None,
                },
            ),
            (
                Op::Heartbeat {
                    id: 1,
                    expires_at: t(1),
                },
                Op::Heartbeat {
                    id: 1,
                    expires_at: t(8),
                },
            ),
            (
                Op::Acquire {
                    id: 1,
                    semaphore: "A".into(),
                    count: 1,
                    expires_at: Some(t(2)),
                },
                Op::Acquire {
                    id: 1,
                    semaphore: "A".into(),
                    count: 1,
                    expires_at: Some(t(9)),
                },
            ),
            (acquire(1, "A", 1), acquire(1, "A", 1)),
            (Op::RemovePeer { id: 3 }, Op::RemovePeer { id: 3 }),
            (Op::Expire, Op::Expire),
        ];
        for (op, expected) in cases {
            assert_eq!(op.later(at), expected);
        }
        let restore = Op::Restore {
            id: 2,
            expires_at: Time::from_epoch(Duration::MAX),
            acquired: BTreeMap::new(),
            tokens: BTreeMap::new(),
            name: None,
        };
        // Saturates instead of overflowing.
        assert_eq!(restore.clone().later(at), restore);
    }

    #[test]
    fn apply_forgets_expired_peers_at_its_time() {
        let (mut c, t0) = with_peers(&[("A", 1, 0)], 1);
        c.apply(
            t0,
            &Op::Heartbeat {
                id: 1,
                expires_at: t0 + secs(1),
            },
        );
        c.apply(t0 + secs(1), &Op::Expire);
        assert_eq!(c.expired_remembered(), 1);
        c.apply(t0 + secs(100_000), &Op::Expire);
        assert_eq!(c.expired_remembered(), 0);
    }

    #[test]
    fn new_peer_and_restore_set_the_name() {
        let t0 = Time::from_epoch(secs(1_000));
        let mut c = core(&[("A", 1, 0)]);
        let new_peer = |name: &str| Op::NewPeer {
            id: 1,
            expires_at: t0 + secs(5),
            name: Some(name.to_owned()),
        };
        let applied = c.apply(t0, &new_peer("first"));
        assert_eq!(applied.outcome, Ok(Outcome::NewPeer { created: true }));
        // A taken id changes nothing, not even the name.
        let applied = c.apply(t0, &new_peer("second"));
        assert_eq!(applied.outcome, Ok(Outcome::NewPeer { created: false }));
        assert_eq!(c.name_of(1), Some("first"));
        let restore = Op::Restore {
            id: 2,
            expires_at: t0 + secs(5),
            acquired: locks(&[("A", 1)]),
            tokens: BTreeMap::new(),
            name: Some("restored".to_owned()),
        };
        assert_eq!(c.apply(t0, &restore).outcome, Ok(Outcome::Restore));
        assert_eq!(c.name_of(2), Some("restored"));
    }

    #[test]
    fn reconfigure_reports_its_grants_and_cancels_as_wake_ups() {
        let (mut c, t0) = with_peers(&[("A", 1, 0), ("B", 1, 0)], 4);
        for (id, sem) in [(1, "A"), (2, "A"), (3, "B"), (4, "B")] {
            c.apply(t0, &acquire(id, sem, 1));
        }
        // A grows (peer 2 is granted), B goes (peer 4 stops waiting).
        let op = Op::Reconfigure {
            semaphores: settings(&[("A", 2, 0)]),
        };
        let applied = c.apply(t0, &op);
        assert_eq!(applied.granted, vec![2]);
        let Ok(Outcome::Reconfigure(result)) = &applied.outcome else {
            panic!("{applied:?}");
        };
        assert_eq!((&result.granted, &result.cancelled), (&vec![2], &vec![4]));
        assert_eq!(applied.to_wake(&op), vec![2, 4]);
    }
}
