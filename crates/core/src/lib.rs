//! The semaphore bookkeeping: peers, their acquired and pending locks, per-semaphore sums and
//! FIFO queues, and the ordered index of peer deadlines.
//!
//! This is a plain data structure. It does no I/O, starts no threads and never reads the clock:
//! every method that depends on time takes `now` (a [`Time`], see `time.rs`), and every method
//! that changes state returns what happened (which peers were granted their pending lock, which
//! peers expired), so the caller knows whom to wake. Locking, waiting and HTTP live in the
//! server crate (`service.rs`, `workers.rs`).
//!
//! **A state machine.** Every change a running server makes is also a value, an [`Op`], and
//! [`Core::apply`] applies one at a given time, deterministically: the same sequence of
//! `(time, op)` gives the same state on every core, so a replicated log can drive several (see
//! `op.rs`). One property suite (`properties.rs`, compiled for tests and the fuzz target
//! `core_ops`) checks every operation against a naive reference model and the invariants.
//!
//! Cost: every operation is O(log n) in the number of peers and waiters, plus the size of what it
//! touches (the locks of one peer, the waiters it grants). Nothing scans all peers, except the
//! listing of peers itself, the export for the state file and the snapshot.
//!
//! The rest of the core, by what it holds: `grace.rs`, the grace period after an unclean stop;
//! `reconfigure.rs`, a new configuration applied to the live state (SIGHUP); `export.rs`, the
//! export and load of peers for the state file; `expired.rs`, the memory of expired peers;
//! `error.rs`, the domain's refusals; `codec.rs`, the byte encoding of an [`Op`];
//! `snapshot.rs`, the whole core as bytes and back, for a replicated log's snapshots.
//!
//! **Fencing tokens.** Every grant of a lock (at once, from a queue, by a restore without a
//! token) takes the next number of one counter, so a token is strictly greater than every token
//! granted before it. The lock keeps its token while it is held: repeating the acquire and
//! shrinking the lock report the same one. A restore may bring a lock's token back; the counter
//! then moves above it. Where the counter starts (the state file, the wall clock) is the
//! caller's decision ([`Core::raise_next_token`]), since the core reads no clock.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

pub use codec::{DecodeError, OP_VERSION};
pub use error::Error;
pub use export::{Export, ExportedPeer};
pub use op::{Applied, Op, Outcome};
pub use reconfigure::Reconfigured;
pub use snapshot::SNAPSHOT_VERSION;
pub use time::Time;

mod codec;
mod error;
pub mod expired;
mod export;
mod grace;
mod op;
#[cfg(any(test, fuzzing))]
pub mod properties;
mod reconfigure;
mod snapshot;
mod time;

use expired::ExpiredPeers;

/// Identifies a peer. Chosen by the caller (the service draws it at random), so the core stays
/// deterministic.
pub type PeerId = u64;

/// A fencing token: the number of a grant, strictly greater than every one granted before.
pub type Token = u64;

/// The largest fencing token accepted from a client or a state file: 2^53 - 1, so that
/// JavaScript (the status page) holds every token exactly. Tokens started from the wall clock in
/// microseconds stay below it until the year 2255.
pub const MAX_TOKEN: Token = (1 << 53) - 1;

/// A semaphore as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SemaphoreSettings {
    /// Name as configured and as clients send it (after percent-decoding).
    pub name: String,
    /// Full count. `1` makes a mutex.
    pub max: i64,
    /// Lock level for deadlock prevention: a peer may only acquire strictly lower levels.
    pub level: i32,
}

/// The state of one lock of a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockState {
    /// Counted against the semaphore: the peer may use the resource.
    Acquired,
    /// Queued behind earlier demand: the peer must wait.
    Pending,
}

/// What a successful acquire did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acquisition {
    /// The state of the requested lock afterwards.
    pub state: LockState,
    /// The lock's fencing token if it is acquired: a new one for a new grant, the one it was
    /// granted with for a repeat or a shrink.
    pub token: Option<Token>,
    /// Other peers whose pending locks were granted, because shrinking a lock freed count.
    pub granted: Vec<PeerId>,
}

/// What an expiry sweep did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expired {
    /// Peers removed because their deadline passed.
    pub peers: Vec<PeerId>,
    /// Peers whose pending locks were granted with the count the expired peers freed, or
    /// because the grace period ended.
    pub granted: Vec<PeerId>,
    /// The grace period ended in this sweep.
    pub grace_ended: bool,
    /// The names of the expired peers that have one, for the log.
    pub names: Vec<(PeerId, Box<str>)>,
}

/// Figures of one semaphore, for metrics and status pages.
///
/// The views ([`SemaphoreStats`], [`PeerInfo`], [`WaiterInfo`]) are the one set of read-only
/// types every renderer uses: metrics, `GET /peers/`, `GET /peers/{id}`, `/status.json` and the
/// status page. `N` is how they hold names. The core hands out `&str` borrowed from itself, so
/// work done under the state lock (metrics, a batch of the peer listing) copies nothing; a
/// renderer that runs after the lock is released takes an owned copy with `into_owned`
/// (`N = String`), since a borrow of the core cannot outlive the lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SemaphoreStats<N> {
    pub name: N,
    pub max: i64,
    pub level: i32,
    /// Sum of the counts of acquired locks.
    pub acquired: i64,
    /// Sum of the counts of pending locks.
    pub pending: i64,
    /// How long the oldest pending lock has waited; `None` without waiters.
    pub longest_pending: Option<Duration>,
}

/// One peer with its locks, as the listings and the status page show it. See
/// [`SemaphoreStats`] for `N`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo<N> {
    pub id: PeerId,
    /// `(semaphore, count, fencing token)` of each acquired lock, in configuration order.
    pub acquired: Vec<(N, i64, Token)>,
    /// `(semaphore, count)` of the pending lock. How long it has waited is
    /// [`Core::waiting_for`], a lookup in the queue that only the status page pays for.
    pub pending: Option<(N, i64)>,
    /// Time left until the peer expires (zero if it is overdue and not yet swept).
    pub expires_in: Duration,
    /// The holder's name, if it gave one.
    pub name: Option<N>,
}

impl SemaphoreStats<&str> {
    /// A copy that outlives the state lock.
    pub fn into_owned(self) -> SemaphoreStats<String> {
        SemaphoreStats {
            name: self.name.to_owned(),
            max: self.max,
            level: self.level,
            acquired: self.acquired,
            pending: self.pending,
            longest_pending: self.longest_pending,
        }
    }
}

impl PeerInfo<&str> {
    /// A copy that outlives the state lock.
    pub fn into_owned(self) -> PeerInfo<String> {
        PeerInfo {
            id: self.id,
            acquired: self
                .acquired
                .into_iter()
                .map(|(name, count, token)| (name.to_owned(), count, token))
                .collect(),
            pending: self.pending.map(|(name, count)| (name.to_owned(), count)),
            expires_in: self.expires_in,
            name: self.name.map(str::to_owned),
        }
    }
}

/// All semaphores, peers and locks of one server.
///
/// Cloned only by the property suite (to look at a state between a sweep and an operation, and
/// to repeat an operation without touching the original); a server never copies its state.
#[cfg_attr(any(test, fuzzing), derive(Clone))]
#[derive(Debug, Default)]
pub struct Core {
    semaphores: Vec<Semaphore>,
    by_name: HashMap<String, usize>,
    peers: HashMap<PeerId, Peer>,
    /// Every peer's deadline, ordered, so expiry finds the overdue ones without a scan.
    deadlines: BTreeSet<(Time, PeerId)>,
    /// Source of queue tickets; increasing, so queue order is request order.
    next_ticket: u64,
    /// Peers expired since start, for the metrics.
    expired_total: u64,
    /// While set, nothing new is granted: acquires queue, releases grant nobody. `expire` ends
    /// it at this instant and grants the queues in FIFO order (see `grace.rs`).
    grace_until: Option<Time>,
    /// The fencing token of the next grant. Starts at 1; the caller raises it at start.
    next_token: Token,
    /// Ids of peers that expired recently, bounded (see `core/expired.rs`).
    expired_peers: ExpiredPeers,
}

#[cfg_attr(any(test, fuzzing), derive(Clone))]
#[derive(Debug)]
struct Semaphore {
    settings: SemaphoreSettings,
    /// Sum of acquired counts. May exceed `max` only through `restore`.
    acquired: i64,
    /// Sum of pending counts.
    pending: i64,
    /// Pending locks in request order.
    queue: BTreeMap<u64, Waiter>,
    /// No longer in the configuration: held locks stay counted until released, new acquires
    /// answer `Unknown semaphore`, and it is left out of `stats`.
    removed: bool,
}

#[cfg_attr(any(test, fuzzing), derive(Clone))]
#[derive(Debug)]
struct Waiter {
    peer: PeerId,
    count: i64,
    since: Time,
    /// The lease the request asked for: at the grant the peer's deadline becomes the grant's
    /// instant plus this, so the lock lasts that long once held (see [`Core::acquire`]).
    lease: Option<Duration>,
}

#[cfg_attr(any(test, fuzzing), derive(Clone))]
#[derive(Debug)]
struct Peer {
    expires_at: Time,
    acquired: Held,
    /// At most one pending lock, by construction.
    pending: Option<PendingLock>,
    /// The holder's name, if it gave one: shown in listings and logs, never interpreted.
    name: Option<Box<str>>,
}

/// The acquired locks of one peer, sorted by semaphore index. A peer holds few locks (one per
/// lock level, more only after a restore), so a short vector is as fast as a map and saves the
/// map's node allocation per peer: with 100,000 peers that is the difference between about 25 and
/// 45 MB (measured with `scripts/bench`).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Held(Vec<HeldLock>);

/// One acquired lock of a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct HeldLock {
    semaphore: usize,
    count: i64,
    token: Token,
}

impl Held {
    fn find(&self, semaphore: usize) -> Result<usize, usize> {
        self.0
            .binary_search_by_key(&semaphore, |lock| lock.semaphore)
    }

    fn get(&self, semaphore: usize) -> Option<HeldLock> {
        let i = self.find(semaphore).ok()?;
        Some(self.0[i])
    }

    /// Adds a lock, replacing the one the peer held on that semaphore, if any.
    fn insert(&mut self, lock: HeldLock) {
        match self.find(lock.semaphore) {
            Ok(i) => self.0[i] = lock,
            Err(i) => self.0.insert(i, lock),
        }
    }

    /// Changes the count of a held lock; its token stays.
    fn set_count(&mut self, semaphore: usize, count: i64) {
        if let Ok(i) = self.find(semaphore) {
            self.0[i].count = count;
        }
    }

    fn remove(&mut self, semaphore: usize) -> Option<i64> {
        let i = self.find(semaphore).ok()?;
        Some(self.0.remove(i).count)
    }

    fn iter(&self) -> impl Iterator<Item = HeldLock> + '_ {
        self.0.iter().copied()
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the counts are those of `locks` (semaphore index to count), tokens aside.
    fn same_counts(&self, locks: &BTreeMap<usize, (i64, Option<Token>)>) -> bool {
        self.len() == locks.len()
            && self
                .iter()
                .zip(locks)
                .all(|(held, (&semaphore, &(count, _)))| {
                    held.semaphore == semaphore && held.count == count
                })
    }
}

#[derive(Debug, Clone, Copy)]
struct PendingLock {
    semaphore: usize,
    count: i64,
    ticket: u64,
}

impl Core {
    /// A core serving the given semaphores. A name given twice keeps its last settings.
    pub fn new(semaphores: impl IntoIterator<Item = SemaphoreSettings>) -> Core {
        let mut core = Core::default();
        for settings in semaphores {
            match core.by_name.get(&settings.name) {
                Some(&index) => core.semaphores[index].settings = settings,
                None => core.add_semaphore(settings, false),
            }
        }
        core.next_token = 1;
        core
    }

    /// Adds a semaphore after the ones there are, configured or `removed`.
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

    /// Makes the next fencing token at least `floor`: at start, from the state file and the wall
    /// clock, so a restarted server's tokens are larger than its previous run's. Never lowers it.
    pub fn raise_next_token(&mut self, floor: Token) {
        self.next_token = self.next_token.max(floor);
    }

    /// The fencing token the next grant gets.
    pub fn next_token(&self) -> Token {
        self.next_token
    }

    /// Sets the holder's name of a live peer (`None` keeps the name it has).
    pub fn set_name(&mut self, id: PeerId, name: Option<&str>) {
        if let (Some(peer), Some(name)) = (self.peers.get_mut(&id), name) {
            peer.name = Some(name.into());
        }
    }

    /// The holder's name of a live peer, if it gave one.
    pub fn name_of(&self, id: PeerId) -> Option<&str> {
        self.peers.get(&id)?.name.as_deref()
    }

    /// Forgets the ids of expired peers remembered long enough. O(1) amortized: it looks at the
    /// oldest only. `expire` does it too; the service calls it before every request.
    pub fn forget_expired(&mut self, now: Time) {
        self.expired_peers.forget_due(now);
    }

    /// Number of expired peers remembered.
    pub fn expired_remembered(&self) -> usize {
        self.expired_peers.len()
    }

    /// Registers a peer without locks. Returns `false`, changing nothing, if the id is taken.
    pub fn new_peer(&mut self, id: PeerId, expires_at: Time) -> bool {
        if self.peers.contains_key(&id) {
            return false;
        }
        self.expired_peers.forget(id);
        self.insert_peer(id, expires_at, Held::default());
        true
    }

    /// Moves a peer's deadline (a heartbeat).
    pub fn heartbeat(&mut self, id: PeerId, expires_at: Time) -> Result<(), Error> {
        if !self.peers.contains_key(&id) {
            return Err(self.unknown_peer(id));
        }
        self.set_deadline(id, expires_at);
        Ok(())
    }

    /// Removes a peer and all its locks. Returns the peers granted with the freed count, or
    /// `None` if the peer was not known.
    pub fn remove_peer(&mut self, id: PeerId, now: Time) -> Option<Vec<PeerId>> {
        let peer = self.peers.remove(&id)?;
        self.deadlines.remove(&(peer.expires_at, id));
        let mut touched: Vec<usize> = Vec::with_capacity(peer.acquired.len() + 1);
        for lock in peer.acquired.iter() {
            self.semaphores[lock.semaphore].acquired -= lock.count;
            touched.push(lock.semaphore);
        }
        if let Some(pending) = peer.pending {
            self.dequeue(pending);
            touched.push(pending.semaphore);
        }
        let mut granted = Vec::new();
        for semaphore in touched {
            self.promote(semaphore, now, &mut granted);
        }
        Some(granted)
    }

    /// Asks for a lock of `count` on `semaphore` for peer `id`.
    ///
    /// Granted at once (with a new fencing token) if the semaphore's demand (acquired plus
    /// pending) leaves room for it, queued otherwise. Repeating a request changes nothing and
    /// reports the same token; asking for less of a held lock releases the difference and keeps
    /// the token. Every check happens before anything changes.
    ///
    /// `expires_at`, if given, becomes the peer's new deadline when the request succeeds. The
    /// lease it gives (`expires_at - now`) counts from the grant: a lock that queues keeps it,
    /// and whichever change grants it later moves the peer's deadline to at least that instant
    /// plus the lease (never earlier than it is, so a longer heartbeat since still holds). A
    /// rate limiter that never releases relies on that: its slot is held for the whole lease
    /// however long it waited. A repeated request for the pending lock replaces the lease it
    /// carries, if it gives one.
    pub fn acquire(
        &mut self,
        id: PeerId,
        semaphore: &str,
        count: i64,
        expires_at: Option<Time>,
        now: Time,
    ) -> Result<Acquisition, Error> {
        let index = self.index(semaphore)?;
        let sem = &self.semaphores[index];
        let Some(peer) = self.peers.get(&id) else {
            return Err(if sem.removed {
                Error::UnknownSemaphore
            } else {
                self.unknown_peer(id)
            });
        };
        if count < 1 {
            return Err(Error::InvalidCount);
        }

        // A lock the peer holds is checked against what it holds, not against `max`: a restore
        // may have handed out more than `max`, and repeating that acquire must still report it.
        if let Some(HeldLock {
            count: held, token, ..
        }) = peer.acquired.get(index)
        {
            if count > held {
                return Err(Error::LockCountChange {
                    held,
                    requested: count,
                });
            }
            self.prolong(id, expires_at);
            let mut granted = Vec::new();
            if count < held {
                if let Some(peer) = self.peers.get_mut(&id) {
                    peer.acquired.set_count(index, count);
                }
                self.semaphores[index].acquired -= held - count;
                self.promote(index, now, &mut granted);
            }
            return Ok(Acquisition {
                state: LockState::Acquired,
                token: Some(token),
                granted,
            });
        }

        if let Some(pending) = peer.pending {
            if pending.semaphore != index {
                return Err(Error::SecondPendingLock);
            }
            if pending.count != count {
                return Err(Error::LockCountChange {
                    held: pending.count,
                    requested: count,
                });
            }
            self.prolong(id, expires_at);
            if let Some(expires_at) = expires_at
                && let Some(waiter) = self.semaphores[index].queue.get_mut(&pending.ticket)
            {
                waiter.lease = Some(expires_at.saturating_duration_since(now));
            }
            return Ok(Acquisition {
                state: LockState::Pending,
                token: None,
                granted: Vec::new(),
            });
        }

        // A removed semaphore keeps the locks it had, but takes no new ones.
        if sem.removed {
            return Err(Error::UnknownSemaphore);
        }
        if count > sem.settings.max {
            return Err(Error::CountTooLarge {
                count,
                max: sem.settings.max,
            });
        }
        if let Some(current) = self.level_of(peer)
            && sem.settings.level >= current
        {
            return Err(Error::LockHierarchyViolation {
                level: sem.settings.level,
                current,
            });
        }

        let fits = sem
            .acquired
            .checked_add(sem.pending)
            .and_then(|demand| demand.checked_add(count))
            .is_some_and(|demand| demand <= sem.settings.max);
        let mut token = None;
        let state = if fits && self.grace_until.is_none() {
            let granted = self.take_token();
            token = Some(granted);
            let sem = &mut self.semaphores[index];
            sem.acquired += count;
            if let Some(peer) = self.peers.get_mut(&id) {
                peer.acquired.insert(HeldLock {
                    semaphore: index,
                    count,
                    token: granted,
                });
            }
            LockState::Acquired
        } else {
            let pending_sum = sem.pending.checked_add(count).ok_or(Error::CountOverflow)?;
            let ticket = self.next_ticket;
            self.next_ticket += 1;
            let sem = &mut self.semaphores[index];
            sem.pending = pending_sum;
            sem.queue.insert(
                ticket,
                Waiter {
                    peer: id,
                    count,
                    since: now,
                    lease: expires_at.map(|at| at.saturating_duration_since(now)),
                },
            );
            if let Some(peer) = self.peers.get_mut(&id) {
                peer.pending = Some(PendingLock {
                    semaphore: index,
                    count,
                    ticket,
                });
            }
            LockState::Pending
        };
        self.prolong(id, expires_at);
        Ok(Acquisition {
            state,
            token,
            granted: Vec::new(),
        })
    }

    /// Releases the peer's lock on `semaphore`, acquired or pending. Releasing a lock the peer
    /// does not hold is not an error. Returns the peers granted with the freed count.
    pub fn release_lock(
        &mut self,
        id: PeerId,
        semaphore: &str,
        now: Time,
    ) -> Result<Vec<PeerId>, Error> {
        let index = self.index(semaphore)?;
        let Some(peer) = self.peers.get_mut(&id) else {
            return Err(self.unknown_peer(id));
        };
        let mut granted = Vec::new();
        if let Some(count) = peer.acquired.remove(index) {
            self.semaphores[index].acquired -= count;
        } else if let Some(pending) = peer.pending.filter(|p| p.semaphore == index) {
            peer.pending = None;
            self.dequeue(pending);
        } else {
            return Ok(granted);
        }
        self.promote(index, now, &mut granted);
        Ok(granted)
    }

    /// Re-creates a peer the server forgot (it expired, or the server restarted) with its
    /// acquired locks, even if that overcommits a semaphore: the client holds the resource
    /// already. A lock named in `tokens` keeps that fencing token (the counter moves above it);
    /// one without gets a new token. Tokens of locks not in `acquired` are ignored.
    ///
    /// Restoring an existing peer with the same counts only prolongs it; other counts, a pending
    /// lock, or a token other than the one the lock holds are a conflict.
    pub fn restore(
        &mut self,
        id: PeerId,
        expires_at: Time,
        acquired: &BTreeMap<String, i64>,
        tokens: &BTreeMap<String, Token>,
    ) -> Result<(), Error> {
        let mut locks = BTreeMap::new();
        for (name, &count) in acquired {
            let index = self.index(name)?;
            if count < 1 {
                return Err(Error::InvalidCount);
            }
            self.semaphores[index]
                .acquired
                .checked_add(count)
                .ok_or(Error::CountOverflow)?;
            let token = tokens.get(name).copied();
            if let Some(token) = token.filter(|&token| token > MAX_TOKEN) {
                return Err(Error::InvalidFencingToken(token));
            }
            locks.insert(index, (count, token));
        }
        if let Some(peer) = self.peers.get(&id) {
            let same_tokens = locks.iter().all(|(&index, &(_, token))| {
                token.is_none_or(|token| {
                    peer.acquired
                        .get(index)
                        .is_some_and(|held| held.token == token)
                })
            });
            if peer.pending.is_some() || !peer.acquired.same_counts(&locks) || !same_tokens {
                return Err(Error::RestoreConflict);
            }
            self.set_deadline(id, expires_at);
            return Ok(());
        }
        // The counter first moves above every token brought back, so the new ones below are
        // greater than all of them.
        for &(_, token) in locks.values() {
            if let Some(token) = token {
                self.raise_next_token(token + 1);
            }
        }
        let mut held = Held::default();
        for (&index, &(count, token)) in &locks {
            self.semaphores[index].acquired += count;
            let token = token.unwrap_or_else(|| self.take_token());
            held.insert(HeldLock {
                semaphore: index,
                count,
                token,
            });
        }
        self.expired_peers.forget(id);
        self.insert_peer(id, expires_at, held);
        Ok(())
    }

    /// Removes every peer whose deadline is at or before `now`, releasing its locks.
    /// Their ids are remembered for a while (see `core/expired.rs`), and ids remembered long
    /// enough are forgotten.
    ///
    /// Peers expire one at a time in deadline order, each as if at its deadline: the count it
    /// frees is granted at that instant, so a lease the waiter asked for starts there, however
    /// late the sweep runs. A peer granted so whose new deadline has also passed expires in the
    /// same sweep. A grace period that is over ends last, granting at `now`.
    pub fn expire(&mut self, now: Time) -> Expired {
        let mut expired = Expired::default();
        self.expired_peers.forget_due(now);
        while let Some(&(deadline, id)) = self.deadlines.first() {
            if deadline > now {
                break;
            }
            if let Some(name) = self.peers.get_mut(&id).and_then(|peer| peer.name.take()) {
                expired.names.push((id, name));
            }
            if let Some(granted) = self.remove_peer(id, deadline) {
                expired.granted.extend(granted);
            }
            self.expired_peers.remember(id, now);
            expired.peers.push(id);
        }
        // A peer granted by an earlier expiry in this sweep may have expired itself since.
        expired.granted.retain(|id| self.peers.contains_key(id));
        self.expired_total += expired.peers.len() as u64;
        if self.grace_until.is_some_and(|end| end <= now) {
            self.end_grace(now, &mut expired.granted);
            expired.grace_ended = true;
        }
        expired
    }

    /// The earliest peer deadline, or the end of the grace period if that comes first: when
    /// `expire` next has work.
    pub fn next_deadline(&self) -> Option<Time> {
        let peer = self.deadlines.first().map(|&(deadline, _)| deadline);
        match (peer, self.grace_until) {
            (Some(peer), Some(grace)) => Some(peer.min(grace)),
            (peer, grace) => peer.or(grace),
        }
    }

    /// The state of the peer's lock on `semaphore`, `None` if it holds none.
    /// A semaphore removed from the configuration is unknown to a peer that holds nothing there.
    pub fn lock_state(&self, id: PeerId, semaphore: &str) -> Result<Option<LockState>, Error> {
        let index = self.index(semaphore)?;
        let peer = self.peers.get(&id).ok_or_else(|| self.unknown_peer(id))?;
        if peer.acquired.get(index).is_some() {
            Ok(Some(LockState::Acquired))
        } else if peer.pending.is_some_and(|p| p.semaphore == index) {
            Ok(Some(LockState::Pending))
        } else if self.semaphores[index].removed {
            Err(Error::UnknownSemaphore)
        } else {
            Ok(None)
        }
    }

    /// `true` if the peer waits for nothing.
    pub fn is_acquired(&self, id: PeerId) -> Result<bool, Error> {
        let peer = self.peers.get(&id).ok_or_else(|| self.unknown_peer(id))?;
        Ok(peer.pending.is_none())
    }

    /// `max - acquired`; negative if `restore` overcommitted the semaphore.
    pub fn remainder(&self, semaphore: &str) -> Result<i64, Error> {
        let sem = &self.semaphores[self.configured(semaphore)?];
        Ok(sem.settings.max - sem.acquired)
    }

    /// Every peer with its locks, ordered by id. This scans all peers, so only tests and the
    /// fuzz targets use it; the listing route takes [`Core::peer_ids`] and looks peers up in
    /// batches.
    #[cfg(any(test, fuzzing))]
    pub fn peers(&self, now: Time) -> Vec<PeerInfo<&str>> {
        let mut peers: Vec<PeerInfo<&str>> = self
            .peers
            .iter()
            .map(|(&id, peer)| self.info(id, peer, now))
            .collect();
        peers.sort_unstable_by_key(|peer| peer.id);
        peers
    }

    /// Figures of every configured semaphore, in configuration order (semaphores added by a
    /// reload last). Costs one step per semaphore.
    pub fn stats(&self, now: Time) -> Vec<SemaphoreStats<&str>> {
        self.semaphores
            .iter()
            .filter(|sem| !sem.removed)
            .map(|sem| SemaphoreStats {
                name: sem.settings.name.as_str(),
                max: sem.settings.max,
                level: sem.settings.level,
                acquired: sem.acquired,
                pending: sem.pending,
                longest_pending: sem
                    .queue
                    .first_key_value()
                    .map(|(_, waiter)| now.saturating_duration_since(waiter.since)),
            })
            .collect()
    }

    /// `true` if the peer is live.
    pub fn has_peer(&self, id: PeerId) -> bool {
        self.peers.contains_key(&id)
    }

    /// Number of live peers.
    pub fn num_peers(&self) -> usize {
        self.peers.len()
    }

    /// Number of peers expired since start.
    pub fn expired_total(&self) -> u64 {
        self.expired_total
    }

    /// The fencing token of the peer's acquired lock on `semaphore`; `None` if it holds none.
    pub fn token(&self, id: PeerId, semaphore: &str) -> Option<Token> {
        let index = self.index(semaphore).ok()?;
        Some(self.peers.get(&id)?.acquired.get(index)?.token)
    }

    /// The error for a peer that is not live: `ExpiredPeer` if it expired recently.
    pub fn unknown_peer(&self, id: PeerId) -> Error {
        if self.expired_peers.contains(id) {
            Error::ExpiredPeer
        } else {
            Error::UnknownPeer
        }
    }

    /// Takes the next fencing token.
    fn take_token(&mut self) -> Token {
        let token = self.next_token;
        self.next_token += 1;
        token
    }

    /// The index of a semaphore, configured or removed with locks still held on it.
    fn index(&self, semaphore: &str) -> Result<usize, Error> {
        self.by_name
            .get(semaphore)
            .copied()
            .ok_or(Error::UnknownSemaphore)
    }

    /// The index of a semaphore in the current configuration.
    fn configured(&self, semaphore: &str) -> Result<usize, Error> {
        let index = self.index(semaphore)?;
        if self.semaphores[index].removed {
            return Err(Error::UnknownSemaphore);
        }
        Ok(index)
    }

    fn name(&self, index: usize) -> &str {
        &self.semaphores[index].settings.name
    }

    /// The peer's current level: the lowest level among its acquired locks.
    fn level_of(&self, peer: &Peer) -> Option<i32> {
        peer.acquired
            .iter()
            .map(|lock| self.semaphores[lock.semaphore].settings.level)
            .min()
    }

    fn insert_peer(&mut self, id: PeerId, expires_at: Time, acquired: Held) {
        self.peers.insert(
            id,
            Peer {
                expires_at,
                acquired,
                pending: None,
                name: None,
            },
        );
        self.deadlines.insert((expires_at, id));
    }

    fn prolong(&mut self, id: PeerId, expires_at: Option<Time>) {
        if let Some(expires_at) = expires_at {
            self.set_deadline(id, expires_at);
        }
    }

    fn set_deadline(&mut self, id: PeerId, expires_at: Time) {
        if let Some(peer) = self.peers.get_mut(&id) {
            self.deadlines.remove(&(peer.expires_at, id));
            peer.expires_at = expires_at;
            self.deadlines.insert((expires_at, id));
        }
    }

    /// Takes a pending lock out of its semaphore's queue. The peer's own record is the caller's.
    fn dequeue(&mut self, pending: PendingLock) {
        let sem = &mut self.semaphores[pending.semaphore];
        if sem.queue.remove(&pending.ticket).is_some() {
            sem.pending -= pending.count;
        }
    }

    /// Grants pending locks of `semaphore` from the front of its queue while they fit, at
    /// `now`: a lease the request asked for starts here. Grants nothing during the grace period.
    fn promote(&mut self, semaphore: usize, now: Time, granted: &mut Vec<PeerId>) {
        if self.grace_until.is_some() {
            return;
        }
        let mut sem = &mut self.semaphores[semaphore];
        while let Some(entry) = sem.queue.first_entry() {
            let waiter = entry.get();
            let fits = sem
                .acquired
                .checked_add(waiter.count)
                .is_some_and(|sum| sum <= sem.settings.max);
            if !fits {
                break;
            }
            let waiter = entry.remove();
            sem.acquired += waiter.count;
            sem.pending -= waiter.count;
            let token = self.next_token;
            self.next_token += 1;
            if let Some(peer) = self.peers.get_mut(&waiter.peer) {
                peer.pending = None;
                peer.acquired.insert(HeldLock {
                    semaphore,
                    count: waiter.count,
                    token,
                });
            }
            // The lease runs from the grant, but a grant never shortens what a later heartbeat
            // asked for; so deadlines only move later here, and the expiry thread's alarm stays
            // early enough.
            let lease_end = waiter.lease.map(|lease| now + lease);
            if let Some(lease_end) = lease_end
                && self
                    .peers
                    .get(&waiter.peer)
                    .is_some_and(|peer| peer.expires_at < lease_end)
            {
                self.set_deadline(waiter.peer, lease_end);
            }
            granted.push(waiter.peer);
            sem = &mut self.semaphores[semaphore];
        }
    }
}

/// One pending lock in a semaphore's queue, as the status page shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaiterInfo {
    pub peer: PeerId,
    pub count: i64,
    /// How long the lock has been pending.
    pub waited: Duration,
}

/// Read-only views for the status page. Each is a bounded walk of an ordered index (a queue, the
/// deadlines) or a lookup by id, never a scan of all peers, so a snapshot stays cheap however
/// many peers are live.
impl Core {
    /// The first `limit` waiters of `semaphore` in queue (request) order: the oldest first.
    /// Costs O(log n + limit).
    pub fn waiters(
        &self,
        semaphore: &str,
        limit: usize,
        now: Time,
    ) -> Result<Vec<WaiterInfo>, Error> {
        let sem = &self.semaphores[self.configured(semaphore)?];
        Ok(sem
            .queue
            .values()
            .take(limit)
            .map(|waiter| WaiterInfo {
                peer: waiter.peer,
                count: waiter.count,
                waited: now.saturating_duration_since(waiter.since),
            })
            .collect())
    }

    /// The ids of up to `limit` peers whose deadlines come first, soonest first (ties by id).
    /// Costs O(log n + limit).
    pub fn peers_expiring_first(&self, limit: usize) -> Vec<PeerId> {
        self.deadlines
            .iter()
            .take(limit)
            .map(|&(_, id)| id)
            .collect()
    }

    /// The ids of every peer, in no particular order: the listing route takes them at once and
    /// then looks peers up in batches, so it never holds the state for long.
    pub fn peer_ids(&self) -> Vec<PeerId> {
        self.peers.keys().copied().collect()
    }

    /// One peer with its locks, `None` if it is not known. Costs O(1) plus its locks.
    pub fn peer(&self, id: PeerId, now: Time) -> Option<PeerInfo<&str>> {
        let peer = self.peers.get(&id)?;
        Some(self.info(id, peer, now))
    }

    /// A peer as the listings show it: semaphore names instead of indices, time left.
    fn info<'a>(&'a self, id: PeerId, peer: &'a Peer, now: Time) -> PeerInfo<&'a str> {
        PeerInfo {
            id,
            acquired: peer
                .acquired
                .iter()
                .map(|lock| (self.name(lock.semaphore), lock.count, lock.token))
                .collect(),
            pending: peer.pending.map(|p| (self.name(p.semaphore), p.count)),
            expires_in: peer.expires_at.saturating_duration_since(now),
            name: peer.name.as_deref(),
        }
    }

    /// How long the peer's pending lock has waited; `None` if it waits for nothing or is not
    /// known. Costs O(log n).
    pub fn waiting_for(&self, id: PeerId, now: Time) -> Option<Duration> {
        let pending = self.peers.get(&id)?.pending?;
        let waiter = self.semaphores[pending.semaphore]
            .queue
            .get(&pending.ticket)?;
        Some(now.saturating_duration_since(waiter.since))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use support::*;

    /// Checks the peers' states on one semaphore: `Some(Acquired)`, `Some(Pending)` or `None`.
    #[track_caller]
    fn check(core: &Core, sem: &str, expected: &[(PeerId, Option<LockState>)]) {
        for &(id, state) in expected {
            assert_eq!(
                core.lock_state(id, sem).unwrap(),
                state,
                "peer {id} on {sem}"
            );
        }
    }

    use LockState::{Acquired, Pending};

    #[test]
    fn grants_while_capacity_lasts_then_queues() {
        let (mut c, t0) = with_peers(&[("A", 3, 0)], 3);
        assert_eq!(acquire(&mut c, 1, "A", 2, t0), Acquired);
        assert_eq!(acquire(&mut c, 2, "A", 1, t0), Acquired);
        assert_eq!(acquire(&mut c, 3, "A", 1, t0), Pending);
        assert_eq!(c.remainder("A"), Ok(0));
        assert_eq!(c.is_acquired(3), Ok(false));
    }

    #[test]
    fn big_waiter_blocks_later_small_ones() {
        let (mut c, t0) = with_peers(&[("A", 3, 0)], 3);
        assert_eq!(acquire(&mut c, 1, "A", 2, t0), Acquired);
        assert_eq!(acquire(&mut c, 2, "A", 2, t0), Pending);
        // One unit is free, but peer 2 asked first.
        assert_eq!(acquire(&mut c, 3, "A", 1, t0), Pending);
        assert_eq!(c.release_lock(1, "A", t0), Ok(vec![2, 3]));
        check(
            &c,
            "A",
            &[(1, None), (2, Some(Acquired)), (3, Some(Acquired))],
        );
    }

    #[test]
    fn waiters_are_granted_in_request_order() {
        let (mut c, t0) = with_peers(&[("A", 1, 0)], 4);
        acquire(&mut c, 1, "A", 1, t0);
        acquire(&mut c, 3, "A", 1, t0);
        acquire(&mut c, 2, "A", 1, t0);
        acquire(&mut c, 4, "A", 1, t0);
        assert_eq!(c.remove_peer(1, t0), Some(vec![3]));
        assert_eq!(c.release_lock(3, "A", t0), Ok(vec![2]));
        assert_eq!(c.release_lock(2, "A", t0), Ok(vec![4]));
    }

    #[test]
    fn releasing_a_pending_head_lets_the_next_waiter_in() {
        let (mut c, t0) = with_peers(&[("A", 3, 0)], 3);
        acquire(&mut c, 1, "A", 2, t0);
        acquire(&mut c, 2, "A", 3, t0);
        acquire(&mut c, 3, "A", 1, t0);
        assert_eq!(c.release_lock(2, "A", t0), Ok(vec![3]));
        assert_eq!(c.is_acquired(2), Ok(true));
    }

    #[test]
    fn lock_hierarchy_allows_only_strictly_lower_levels() {
        let t0 = Time::from_epoch(std::time::Duration::from_secs(1_000));
        let mut c = core(&[("A", 1, 1), ("B", 1, 0), ("C", 1, 0)]);
        c.new_peer(1, t0 + secs(60));
        c.new_peer(2, t0 + secs(60));
        assert_eq!(acquire(&mut c, 1, "A", 1, t0), Acquired);
        assert_eq!(acquire(&mut c, 1, "B", 1, t0), Acquired);
        assert_eq!(
            c.acquire(1, "C", 1, None, t0),
            Err(Error::LockHierarchyViolation {
                level: 0,
                current: 0
            })
        );
        assert_eq!(acquire(&mut c, 2, "C", 1, t0), Acquired);
        assert_eq!(
            c.acquire(2, "A", 1, None, t0),
            Err(Error::LockHierarchyViolation {
                level: 1,
                current: 0
            })
        );
        // The violation changed nothing.
        assert_eq!(c.remainder("A"), Ok(0));
        assert_eq!(c.lock_state(2, "A"), Ok(None));
    }

    #[test]
    fn repeating_an_acquire_changes_nothing() {
        let t0 = Time::from_epoch(std::time::Duration::from_secs(1_000));
        let mut c = core(&[("A", 2, 0)]);
        c.new_peer(1, t0 + secs(60));
        c.new_peer(2, t0 + secs(60));
        assert_eq!(acquire(&mut c, 1, "A", 2, t0), Acquired);
        assert_eq!(acquire(&mut c, 1, "A", 2, t0), Acquired);
        assert_eq!(acquire(&mut c, 2, "A", 1, t0), Pending);
        assert_eq!(acquire(&mut c, 2, "A", 1, t0), Pending);
        assert_eq!(c.remainder("A"), Ok(0));
        assert_eq!(c.stats(t0)[0].pending, 1);
    }

    #[test]
    fn shrinking_a_lock_releases_the_difference() {
        let t0 = Time::from_epoch(std::time::Duration::from_secs(1_000));
        let mut c = core(&[("A", 3, 0)]);
        c.new_peer(1, t0 + secs(60));
        c.new_peer(2, t0 + secs(60));
        acquire(&mut c, 1, "A", 3, t0);
        acquire(&mut c, 2, "A", 2, t0);
        let shrunk = c.acquire(1, "A", 1, None, t0).unwrap();
        assert_eq!(shrunk.granted, vec![2]);
        assert_eq!(c.remainder("A"), Ok(0));
        assert_eq!(
            c.acquire(1, "A", 2, None, t0),
            Err(Error::LockCountChange {
                held: 1,
                requested: 2
            })
        );
    }

    #[test]
    fn requests_that_cannot_be_served_are_rejected() {
        let t0 = Time::from_epoch(std::time::Duration::from_secs(1_000));
        let mut c = core(&[("A", 2, 0), ("B", 1, 0)]);
        c.new_peer(1, t0 + secs(60));
        c.new_peer(2, t0 + secs(60));
        let count_too_large = Error::CountTooLarge { count: 3, max: 2 };
        assert_eq!(c.acquire(1, "A", 3, None, t0), Err(count_too_large));
        assert_eq!(c.acquire(1, "A", 0, None, t0), Err(Error::InvalidCount));
        assert_eq!(c.acquire(1, "A", -1, None, t0), Err(Error::InvalidCount));
        assert_eq!(c.acquire(1, "Z", 1, None, t0), Err(Error::UnknownSemaphore));
        assert_eq!(c.acquire(9, "A", 1, None, t0), Err(Error::UnknownPeer));
        acquire(&mut c, 2, "B", 1, t0);
        assert_eq!(acquire(&mut c, 1, "B", 1, t0), Pending);
        assert_eq!(
            c.acquire(1, "A", 1, None, t0),
            Err(Error::SecondPendingLock)
        );
        assert_eq!(c.remainder("A"), Ok(2));
    }

    #[test]
    fn locks_of_expired_peers_are_released_at_their_deadline() {
        let t0 = Time::from_epoch(std::time::Duration::from_secs(1_000));
        let mut c = core(&[("A", 1, 0)]);
        c.new_peer(1, t0 + secs(1));
        c.new_peer(2, t0 + secs(60));
        acquire(&mut c, 1, "A", 1, t0);
        acquire(&mut c, 2, "A", 1, t0);
        assert_eq!(c.next_deadline(), Some(t0 + secs(1)));
        assert_eq!(
            c.expire(t0 + Duration::from_millis(999)),
            Expired::default()
        );
        let expired = c.expire(t0 + secs(1));
        assert_eq!(expired.peers, vec![1]);
        assert_eq!(expired.granted, vec![2]);
        // Expired, not unknown: the error says so (and the server adds the header).
        assert_eq!(c.heartbeat(1, t0 + secs(5)), Err(Error::ExpiredPeer));
        assert_eq!(c.heartbeat(9, t0 + secs(5)), Err(Error::UnknownPeer));
        assert_eq!(c.expired_total(), 1);
        assert_eq!(c.next_deadline(), Some(t0 + secs(60)));
    }

    /// The peer's deadline, read through the listing (`expires_in` counted from `now`).
    #[track_caller]
    fn deadline(core: &Core, id: PeerId, now: Time) -> Time {
        now + core.peer(id, now).expect("a live peer").expires_in
    }

    #[test]
    fn a_lease_asked_for_with_a_queued_lock_starts_at_the_grant() {
        let (mut c, t0) = with_peers(&[("A", 1, 0)], 3);
        acquire(&mut c, 1, "A", 1, t0);
        // Peer 2 asks for 10 s with its lock and queues; peer 3 asks without a lease.
        let request = c.acquire(2, "A", 1, Some(t0 + secs(10)), t0).unwrap();
        assert_eq!(request.state, Pending);
        assert_eq!(deadline(&c, 2, t0), t0 + secs(10));
        acquire(&mut c, 3, "A", 1, t0);
        // Granted by a release 5 s later: 10 s from then.
        let t5 = t0 + secs(5);
        assert_eq!(c.release_lock(1, "A", t5), Ok(vec![2]));
        assert_eq!(deadline(&c, 2, t5), t5 + secs(10));
        // A lock queued without a lease keeps the deadline it has.
        assert_eq!(c.remove_peer(2, t0 + secs(6)), Some(vec![3]));
        assert_eq!(deadline(&c, 3, t5), t0 + secs(60));
    }

    #[test]
    fn a_lease_granted_by_an_expiry_starts_at_the_expired_peers_deadline() {
        let (mut c, t0) = with_peers(&[("A", 1, 0)], 3);
        acquire(&mut c, 1, "A", 1, t0);
        c.heartbeat(1, t0 + secs(1)).unwrap();
        c.acquire(2, "A", 1, Some(t0 + secs(2)), t0).unwrap();
        c.acquire(3, "A", 1, Some(t0 + secs(30)), t0).unwrap();
        // The sweep runs late, at 4 s: peer 1 expired at 1 s and granted peer 2 then, for 2 s,
        // so peer 2 expired at 3 s and granted peer 3 then, for 30 s.
        let expired = c.expire(t0 + secs(4));
        assert_eq!(expired.peers, vec![1, 2]);
        assert_eq!(expired.granted, vec![3]);
        assert_eq!(deadline(&c, 3, t0 + secs(4)), t0 + secs(33));
    }

    #[test]
    fn a_grant_never_shortens_the_lease() {
        let (mut c, t0) = with_peers(&[("A", 1, 0)], 2);
        acquire(&mut c, 1, "A", 1, t0);
        c.acquire(2, "A", 1, Some(t0 + secs(5)), t0).unwrap();
        // A heartbeat after the request asks for an hour: the grant's 5 s do not cut it short.
        c.heartbeat(2, t0 + secs(3600)).unwrap();
        assert_eq!(c.release_lock(1, "A", t0 + secs(1)), Ok(vec![2]));
        assert_eq!(deadline(&c, 2, t0), t0 + secs(3600));
    }

    #[test]
    fn a_repeated_request_for_a_queued_lock_replaces_its_lease() {
        let (mut c, t0) = with_peers(&[("A", 1, 0)], 2);
        acquire(&mut c, 1, "A", 1, t0);
        c.acquire(2, "A", 1, Some(t0 + secs(10)), t0).unwrap();
        c.acquire(2, "A", 1, Some(t0 + secs(21)), t0 + secs(1))
            .unwrap();
        // A repeat without a lease keeps the last one.
        acquire(&mut c, 2, "A", 1, t0 + secs(2));
        let t3 = t0 + secs(3);
        assert_eq!(c.release_lock(1, "A", t3), Ok(vec![2]));
        assert_eq!(deadline(&c, 2, t3), t3 + secs(20));
    }

    #[test]
    fn heartbeat_and_acquire_postpone_expiry() {
        let t0 = Time::from_epoch(std::time::Duration::from_secs(1_000));
        let mut c = core(&[("A", 1, 0)]);
        c.new_peer(1, t0 + secs(1));
        c.heartbeat(1, t0 + secs(10)).unwrap();
        assert!(c.expire(t0 + secs(5)).peers.is_empty());
        c.acquire(1, "A", 1, Some(t0 + secs(20)), t0).unwrap();
        assert!(c.expire(t0 + secs(15)).peers.is_empty());
        assert_eq!(c.expire(t0 + secs(20)).peers, vec![1]);
        assert_eq!(c.next_deadline(), None);
    }

    #[test]
    fn a_failed_acquire_does_not_prolong_the_peer() {
        let t0 = Time::from_epoch(std::time::Duration::from_secs(1_000));
        let mut c = core(&[("A", 1, 0)]);
        c.new_peer(1, t0 + secs(1));
        assert!(c.acquire(1, "A", 2, Some(t0 + secs(20)), t0).is_err());
        assert_eq!(c.next_deadline(), Some(t0 + secs(1)));
    }

    #[test]
    fn restore_recreates_a_peer_even_if_that_overcommits() {
        let t0 = Time::from_epoch(std::time::Duration::from_secs(1_000));
        let mut c = core(&[("A", 1, 0), ("B", 5, 1)]);
        c.new_peer(1, t0 + secs(60));
        acquire(&mut c, 1, "A", 1, t0);
        let locks = BTreeMap::from([("A".to_owned(), 1), ("B".to_owned(), 3)]);
        c.restore(42, t0 + secs(60), &locks, &BTreeMap::new())
            .unwrap();
        assert_eq!(c.remainder("A"), Ok(-1));
        assert_eq!(c.remainder("B"), Ok(2));
        // Same locks again: idempotent. Other locks: conflict.
        c.restore(42, t0 + secs(90), &locks, &BTreeMap::new())
            .unwrap();
        let other = BTreeMap::from([("A".to_owned(), 1)]);
        assert_eq!(
            c.restore(42, t0, &other, &BTreeMap::new()),
            Err(Error::RestoreConflict)
        );
        assert_eq!(c.remove_peer(1, t0), Some(vec![]));
        assert_eq!(c.remainder("A"), Ok(0));
    }

    #[test]
    fn a_restored_lock_above_max_is_reported_when_asked_for_again() {
        let t0 = Time::from_epoch(std::time::Duration::from_secs(1_000));
        let mut c = core(&[("A", 2, 0)]);
        let locks = BTreeMap::from([("A".to_owned(), 5)]);
        c.restore(1, t0 + secs(60), &locks, &BTreeMap::new())
            .unwrap();
        assert_eq!(acquire(&mut c, 1, "A", 5, t0), Acquired);
        // Shrinking it is fine too; a new lock above max is not.
        assert_eq!(acquire(&mut c, 1, "A", 3, t0), Acquired);
        assert_eq!(c.remainder("A"), Ok(-1));
        c.new_peer(2, t0 + secs(60));
        let too_large = Error::CountTooLarge { count: 3, max: 2 };
        assert_eq!(c.acquire(2, "A", 3, None, t0), Err(too_large));
    }

    #[test]
    fn restore_rejects_bad_input_without_change() {
        let t0 = Time::from_epoch(std::time::Duration::from_secs(1_000));
        let mut c = core(&[("A", i64::MAX, 0)]);
        let huge = BTreeMap::from([("A".to_owned(), i64::MAX)]);
        c.restore(1, t0 + secs(60), &huge, &BTreeMap::new())
            .unwrap();
        let one = BTreeMap::from([("A".to_owned(), 1)]);
        assert_eq!(
            c.restore(2, t0, &one, &BTreeMap::new()),
            Err(Error::CountOverflow)
        );
        let zero = BTreeMap::from([("A".to_owned(), 0)]);
        assert_eq!(
            c.restore(3, t0, &zero, &BTreeMap::new()),
            Err(Error::InvalidCount)
        );
        let unknown = BTreeMap::from([("Z".to_owned(), 1)]);
        assert_eq!(
            c.restore(4, t0, &unknown, &BTreeMap::new()),
            Err(Error::UnknownSemaphore)
        );
        assert_eq!(c.num_peers(), 1);
        assert_eq!(c.remainder("A"), Ok(0));
    }

    #[test]
    fn pending_sums_that_would_overflow_are_rejected() {
        let (mut c, t0) = with_peers(&[("A", i64::MAX, 0)], 3);
        acquire(&mut c, 1, "A", i64::MAX, t0);
        acquire(&mut c, 2, "A", i64::MAX, t0);
        assert_eq!(
            c.acquire(3, "A", i64::MAX, None, t0),
            Err(Error::CountOverflow)
        );
        assert_eq!(c.remove_peer(1, t0), Some(vec![2]));
    }

    #[test]
    fn stats_report_sums_and_the_longest_wait() {
        let (mut c, t0) = with_peers(&[("A", 2, 3)], 3);
        acquire(&mut c, 1, "A", 2, t0);
        acquire(&mut c, 2, "A", 1, t0 + secs(1));
        acquire(&mut c, 3, "A", 2, t0 + secs(2));
        let stats = c.stats(t0 + secs(5));
        assert_eq!(
            stats,
            vec![SemaphoreStats {
                name: "A",
                max: 2,
                level: 3,
                acquired: 2,
                pending: 3,
                longest_pending: Some(secs(4)),
            }]
        );
        let peers = c.peers(t0 + secs(10));
        assert_eq!(peers[0].acquired, vec![("A", 2, 1)]);
        assert_eq!(peers[2].pending, Some(("A", 2)));
        assert_eq!(peers[2].expires_in, secs(50));
    }

    #[test]
    fn releasing_unknown_things() {
        let t0 = Time::from_epoch(std::time::Duration::from_secs(1_000));
        let mut c = core(&[("A", 1, 0)]);
        c.new_peer(1, t0 + secs(60));
        assert_eq!(c.release_lock(1, "A", t0), Ok(vec![]));
        assert_eq!(c.release_lock(2, "A", t0), Err(Error::UnknownPeer));
        assert_eq!(c.release_lock(1, "Z", t0), Err(Error::UnknownSemaphore));
        assert_eq!(c.remove_peer(2, t0), None);
        assert!(!c.new_peer(1, t0));
    }

    #[test]
    fn status_views_walk_the_queue_and_the_deadlines() {
        let t0 = Time::from_epoch(std::time::Duration::from_secs(1_000));
        let mut c = core(&[("A", 1, 0)]);
        for id in 1..=4 {
            c.new_peer(id, t0 + secs(100 - id));
        }
        acquire(&mut c, 1, "A", 1, t0);
        acquire(&mut c, 3, "A", 1, t0 + secs(1));
        acquire(&mut c, 2, "A", 1, t0 + secs(2));
        let now = t0 + secs(5);
        let waiters = c.waiters("A", 1, now).unwrap();
        assert_eq!(
            waiters,
            vec![WaiterInfo {
                peer: 3,
                count: 1,
                waited: secs(4)
            }]
        );
        assert_eq!(c.waiters("A", 10, now).unwrap().len(), 2);
        assert_eq!(c.waiters("Z", 10, now), Err(Error::UnknownSemaphore));
        assert_eq!(c.peers_expiring_first(3), vec![4, 3, 2]);
        assert_eq!(c.peer(2, now).unwrap().pending, Some(("A", 1)));
        assert_eq!(c.peer(1, now).unwrap().expires_in, secs(94));
        assert_eq!(c.peer(9, now), None);
        assert_eq!(c.waiting_for(2, now), Some(secs(3)));
        assert_eq!(c.waiting_for(1, now), None);
    }

    #[test]
    fn every_grant_gets_a_larger_token_and_keeps_it_while_held() {
        let (mut c, t0) = with_peers(&[("A", 2, 0)], 3);
        c.raise_next_token(100);
        let first = c.acquire(1, "A", 2, None, t0).unwrap();
        assert_eq!(first.token, Some(100));
        // Pending: no token yet.
        assert_eq!(c.acquire(2, "A", 1, None, t0).unwrap().token, None);
        assert_eq!(c.acquire(3, "A", 1, None, t0).unwrap().token, None);
        // A repeat reports the same token; a shrink keeps it and grants peer 2 a new one.
        assert_eq!(c.acquire(1, "A", 2, None, t0).unwrap().token, Some(100));
        let shrunk = c.acquire(1, "A", 1, None, t0).unwrap();
        assert_eq!((shrunk.token, shrunk.granted), (Some(100), vec![2]));
        assert_eq!(c.token(2, "A"), Some(101));
        // Released and asked for again: a new, larger token.
        c.release_lock(1, "A", t0).unwrap();
        assert_eq!(c.token(3, "A"), Some(102));
        c.release_lock(2, "A", t0).unwrap();
        assert_eq!(c.acquire(1, "A", 1, None, t0).unwrap().token, Some(103));
        // The counter is never lowered.
        c.raise_next_token(5);
        assert_eq!(c.next_token(), 104);
        assert_eq!(c.peer(1, t0).unwrap().acquired, vec![("A", 1, 103)]);
    }

    #[test]
    fn restored_locks_keep_their_tokens_and_the_counter_moves_above() {
        let t0 = Time::from_epoch(std::time::Duration::from_secs(1_000));
        let mut c = core(&[("A", 5, 1), ("B", 5, 0)]);
        let locks = BTreeMap::from([("A".to_owned(), 1), ("B".to_owned(), 2)]);
        let tokens = BTreeMap::from([("A".to_owned(), 500)]);
        c.restore(1, t0 + secs(60), &locks, &tokens).unwrap();
        assert_eq!(c.token(1, "A"), Some(500));
        // B came without a token: a new one, above the restored one.
        assert_eq!(c.token(1, "B"), Some(501));
        c.new_peer(2, t0 + secs(60));
        assert_eq!(c.acquire(2, "A", 1, None, t0).unwrap().token, Some(502));
        // Again with the same tokens (or none): idempotent. Another token: a conflict.
        c.restore(1, t0 + secs(60), &locks, &tokens).unwrap();
        c.restore(1, t0 + secs(60), &locks, &BTreeMap::new())
            .unwrap();
        let other = BTreeMap::from([("B".to_owned(), 7)]);
        assert_eq!(
            c.restore(1, t0, &locks, &other),
            Err(Error::RestoreConflict)
        );
        // Out of range: refused before anything changes.
        let huge = BTreeMap::from([("A".to_owned(), MAX_TOKEN + 1)]);
        let one = BTreeMap::from([("A".to_owned(), 1)]);
        assert_eq!(
            c.restore(3, t0, &one, &huge),
            Err(Error::InvalidFencingToken(MAX_TOKEN + 1))
        );
        assert!(!c.has_peer(3));
        assert_eq!(c.next_token(), 503);
    }

    #[test]
    fn expired_peers_are_told_apart_until_restored_or_forgotten() {
        let t0 = Time::from_epoch(std::time::Duration::from_secs(1_000));
        let mut c = core(&[("A", 1, 0)]);
        c.new_peer(1, t0 + secs(1));
        c.new_peer(2, t0 + secs(60));
        c.expire(t0 + secs(1));
        assert_eq!(c.acquire(1, "A", 1, None, t0), Err(Error::ExpiredPeer));
        assert_eq!(c.release_lock(1, "A", t0), Err(Error::ExpiredPeer));
        assert_eq!(c.is_acquired(1), Err(Error::ExpiredPeer));
        assert_eq!(c.lock_state(1, "A"), Err(Error::ExpiredPeer));
        // Removed by a release, not expired.
        c.remove_peer(2, t0);
        assert_eq!(c.is_acquired(2), Err(Error::UnknownPeer));
        // A restore brings it back; removed afterwards, it is plain unknown.
        c.restore(1, t0 + secs(60), &BTreeMap::new(), &BTreeMap::new())
            .unwrap();
        c.remove_peer(1, t0);
        assert_eq!(c.is_acquired(1), Err(Error::UnknownPeer));
        // Forgotten after its time.
        c.new_peer(3, t0 + secs(2));
        c.expire(t0 + secs(2));
        assert_eq!(c.expired_remembered(), 1);
        c.forget_expired(t0 + secs(2) + expired::REMEMBER_FOR);
        assert_eq!(c.heartbeat(3, t0), Err(Error::UnknownPeer));
        assert_eq!(c.expired_remembered(), 0);
    }

    #[test]
    fn names_are_kept_and_shown() {
        let (mut c, t0) = with_peers(&[("A", 1, 0)], 1);
        assert_eq!(c.peer(1, t0).unwrap().name, None);
        c.set_name(1, Some("build-7:4242"));
        c.set_name(1, None);
        assert_eq!(c.name_of(1), Some("build-7:4242"));
        assert_eq!(c.peer(1, t0).unwrap().name, Some("build-7:4242"));
        c.heartbeat(1, t0 + secs(1)).unwrap();
        let expired = c.expire(t0 + secs(1));
        assert_eq!(expired.names, vec![(1, "build-7:4242".into())]);
    }

    mod random_ops;
    pub(crate) mod support;
}
