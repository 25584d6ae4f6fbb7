//! Fuzz target `core_ops`: bytes → a semaphore configuration and a sequence of operations on
//! `Core`, with the invariants checked after every step through the public API only.
//!
//! Operations: `new_peer`, `acquire` (counts including 0, negatives, `max`, `max + 1`,
//! `i64::MAX`, `i64::MIN`; with and without a new deadline), `release_lock`, `remove_peer`,
//! `heartbeat`, `restore` (including huge and overcommitting counts), `expire` at advancing
//! times, time passing without a sweep (the core must cope with overdue peers), and the read-only
//! queries. Peer ids come from a small range so that operations collide.
//!
//! Invariants, after every step:
//! - per semaphore, `stats` sums equal the sums over the `peers` listing, and `remainder` is
//!   `max - acquired`;
//! - capacity: the acquired counts not handed out by `restore` never exceed `max` (restored
//!   locks are tracked by the harness, and stay "restored" while held, even shrunk);
//! - FIFO: a shadow queue per semaphore, in request order, is kept from the `Pending` answers;
//!   no waiter is granted while an earlier one still waits, the `granted` lists the core returns
//!   name exactly the waiters that were granted, and the queue's head never fits;
//! - a peer waits for at most one lock, never for one it holds; counts are at least 1;
//! - a rejected operation changes nothing; repeating a successful acquire changes nothing;
//! - lock hierarchy: a new lock is only taken below the peer's current level;
//! - `next_deadline` is the earliest deadline; `expire(now)` removes only peers due, and keeps
//!   a due one only if the sweep granted it a lease;
//! - at the end, removing every peer (or expiring them all) leaves nothing: no peer, no
//!   deadline, every remainder equal to `max`, nothing pending.
#![no_main]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use throttle_core::{Core, LockState, PeerId, SemaphoreSettings, Time};
use throttle_core::Error;
use throttle_server::routes::MAX_DURATION;

/// Names the harness uses; `Z` is never configured.
const NAMES: [&str; 5] = ["A", "B", "C", "D", "Z"];
const MAXES: [i64; 9] = [0, 1, 2, 3, 5, 10, 1 << 53, i64::MAX - 1, i64::MAX];
const MAX_STEPS: usize = 300;

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let _ = run(&mut u);
});

fn run(u: &mut Unstructured<'_>) -> Result<()> {
    let mut settings = Vec::new();
    for name in &NAMES[..4] {
        settings.push(SemaphoreSettings {
            name: (*name).to_owned(),
            max: *u.choose(&MAXES)?,
            level: u.int_in_range(0..=2)?,
        });
    }
    // A name given twice keeps its last settings.
    if u.ratio(1, 8)? {
        settings.push(SemaphoreSettings {
            name: "A".to_owned(),
            max: *u.choose(&MAXES)?,
            level: u.int_in_range(0..=2)?,
        });
    }
    let mut h = Harness::new(settings);
    let mut steps = 0;
    while !u.is_empty() && steps < MAX_STEPS {
        steps += 1;
        if h.step(u).is_err() {
            break;
        }
        h.check();
    }
    // Whatever the input was, the server must be able to drain.
    let by_expiry = u.arbitrary::<bool>().unwrap_or(false);
    h.drain(by_expiry);
    Ok(())
}

/// What the listing and the stats show, owned, so two moments can be compared.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Snapshot {
    peers: Vec<PeerView>,
    stats: Vec<(String, i64, i32, i64, i64, Option<Duration>)>,
    next_deadline: Option<Time>,
    num_peers: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct PeerView {
    id: PeerId,
    acquired: BTreeMap<String, i64>,
    pending: Option<(String, i64)>,
    expires_in: Duration,
}

impl Snapshot {
    fn peer(&self, id: PeerId) -> Option<&PeerView> {
        self.peers.iter().find(|p| p.id == id)
    }
}

struct Harness {
    core: Core,
    /// `(name, max, level)` as the core should see them (last settings of a repeated name).
    settings: BTreeMap<String, (i64, i32)>,
    now: Time,
    /// Locks that `restore` created and that are still held: they may overcommit.
    restored: BTreeSet<(PeerId, String)>,
    /// Per semaphore, waiters in request order: `(peer, count)`.
    queues: HashMap<String, Vec<(PeerId, i64)>>,
    expired_total: u64,
}

impl Harness {
    fn new(settings: Vec<SemaphoreSettings>) -> Harness {
        let t0 = Time::from_epoch(Duration::from_secs(1_000));
        let mut by_name = BTreeMap::new();
        for s in &settings {
            by_name.insert(s.name.clone(), (s.max, s.level));
        }
        Harness {
            core: Core::new(settings),
            settings: by_name,
            now: t0,
            restored: BTreeSet::new(),
            queues: HashMap::new(),
            expired_total: 0,
        }
    }

    fn snapshot(&self) -> Snapshot {
        Snapshot {
            peers: self
                .core
                .peers(self.now)
                .into_iter()
                .map(|p| PeerView {
                    id: p.id,
                    acquired: p
                        .acquired
                        .iter()
                        .map(|&(name, count, _token)| (name.to_owned(), count))
                        .collect(),
                    pending: p.pending.map(|(name, count)| (name.to_owned(), count)),
                    expires_in: p.expires_in,
                })
                .collect(),
            stats: self
                .core
                .stats(self.now)
                .into_iter()
                .map(|s| {
                    (
                        s.name.to_owned(),
                        s.max,
                        s.level,
                        s.acquired,
                        s.pending,
                        s.longest_pending,
                    )
                })
                .collect(),
            next_deadline: self.core.next_deadline(),
            num_peers: self.core.num_peers(),
        }
    }

    fn peer_id(u: &mut Unstructured<'_>) -> Result<PeerId> {
        Ok(match u.int_in_range(0..=15u8)? {
            15 => *u.choose(&[u64::MAX, (1 << 53) - 1, 1 << 53])?,
            n => u64::from(n % 8),
        })
    }

    fn name(u: &mut Unstructured<'_>) -> Result<&'static str> {
        u.choose(&NAMES).copied()
    }

    fn ttl(u: &mut Unstructured<'_>) -> Result<Duration> {
        Ok(match u.int_in_range(0..=7u8)? {
            0 => Duration::ZERO,
            1 => Duration::from_millis(1),
            2 => Duration::from_secs(1),
            3 => Duration::from_secs(60),
            4 => MAX_DURATION,
            _ => Duration::from_millis(u.int_in_range(0..=10_000u64)?),
        })
    }

    fn count(&self, u: &mut Unstructured<'_>, semaphore: &str) -> Result<i64> {
        let max = self.settings.get(semaphore).map_or(3, |s| s.0);
        Ok(match u.int_in_range(0..=11u8)? {
            0 => 0,
            1 => -1,
            2 => i64::MIN,
            3 => i64::MAX,
            4 => max,
            5 => max.saturating_add(1),
            6 => max.saturating_sub(1),
            7 => u.arbitrary()?,
            8 => 2,
            9 => 3,
            _ => 1,
        })
    }

    /// One operation, checked against its own contract. The global invariants come after.
    fn step(&mut self, u: &mut Unstructured<'_>) -> Result<()> {
        let before = self.snapshot();
        let op = u.int_in_range(0..=11u8)?;
        match op {
            0 | 1 => {
                let id = Self::peer_id(u)?;
                let ttl = Self::ttl(u)?;
                let created = self.core.new_peer(id, self.now + ttl);
                assert_eq!(created, before.peer(id).is_none(), "new_peer {id}");
                if !created {
                    assert_eq!(
                        self.snapshot(),
                        before,
                        "new_peer of a taken id changed state"
                    );
                }
            }
            2..=4 => {
                let id = Self::peer_id(u)?;
                let sem = Self::name(u)?;
                let count = self.count(u, sem)?;
                let expires_at = if u.arbitrary()? {
                    Some(self.now + Self::ttl(u)?)
                } else {
                    None
                };
                self.acquire(&before, id, sem, count, expires_at);
            }
            5 => {
                let id = Self::peer_id(u)?;
                let sem = Self::name(u)?;
                let result = self.core.release_lock(id, sem, self.now);
                match result {
                    Ok(granted) => self.reconcile(&before, Some(&granted)),
                    Err(_) => assert_eq!(self.snapshot(), before, "failed release changed state"),
                }
            }
            6 => {
                let id = Self::peer_id(u)?;
                match self.core.remove_peer(id, self.now) {
                    Some(granted) => {
                        assert!(self.snapshot().peer(id).is_none());
                        self.reconcile(&before, Some(&granted));
                    }
                    None => {
                        assert!(
                            before.peer(id).is_none(),
                            "remove_peer of a known peer: None"
                        );
                        assert_eq!(self.snapshot(), before);
                    }
                }
            }
            7 => {
                let id = Self::peer_id(u)?;
                let ttl = Self::ttl(u)?;
                match self.core.heartbeat(id, self.now + ttl) {
                    Ok(()) => {
                        let after = self.snapshot();
                        assert_eq!(after.peer(id).map(|p| p.expires_in), Some(ttl));
                    }
                    Err(error) => {
                        assert!(unknown(&error), "{error:?}");
                        assert!(before.peer(id).is_none());
                        assert_eq!(self.snapshot(), before);
                    }
                }
            }
            8 => {
                let id = Self::peer_id(u)?;
                let ttl = Self::ttl(u)?;
                let mut locks = BTreeMap::new();
                for _ in 0..u.int_in_range(0..=3u8)? {
                    let sem = Self::name(u)?;
                    let count = self.count(u, sem)?;
                    locks.insert(sem.to_owned(), count);
                }
                self.restore(&before, id, ttl, &locks);
            }
            9 | 10 => {
                let advance = match u.int_in_range(0..=3u8)? {
                    0 => Duration::ZERO,
                    1 => Duration::from_secs(60),
                    _ => Duration::from_millis(u.int_in_range(0..=3_000u64)?),
                };
                self.now += advance;
                if op == 9 {
                    self.expire();
                }
            }
            _ => {
                // Read-only queries change nothing and agree with the listing.
                let id = Self::peer_id(u)?;
                let sem = Self::name(u)?;
                let peer = before.peer(id);
                match self.core.is_acquired(id) {
                    Ok(acquired) => assert_eq!(acquired, peer.unwrap().pending.is_none()),
                    Err(error) => assert!(unknown(&error) && peer.is_none()),
                }
                let state = self.core.lock_state(id, sem);
                match (&state, peer, self.settings.contains_key(sem)) {
                    (Err(Error::UnknownSemaphore), _, false) => {}
                    (Err(error), None, true) if unknown(error) => {}
                    (Ok(state), Some(peer), true) => {
                        let expected = if peer.acquired.contains_key(sem) {
                            Some(LockState::Acquired)
                        } else if peer.pending.as_ref().is_some_and(|p| p.0 == sem) {
                            Some(LockState::Pending)
                        } else {
                            None
                        };
                        assert_eq!(*state, expected);
                    }
                    other => panic!("lock_state({id}, {sem}): {other:?}"),
                }
                assert_eq!(self.snapshot(), before);
            }
        }
        Ok(())
    }

    fn acquire(
        &mut self,
        before: &Snapshot,
        id: PeerId,
        sem: &str,
        count: i64,
        expires_at: Option<Time>,
    ) {
        let result = self.core.acquire(id, sem, count, expires_at, self.now);
        let acquisition = match result {
            Ok(acquisition) => acquisition,
            Err(error) => {
                assert_eq!(
                    self.snapshot(),
                    *before,
                    "failed acquire changed state: {error:?}"
                );
                // Every rejection has a reason the harness can see.
                let peer = before.peer(id);
                match &error {
                    Error::UnknownSemaphore => assert!(!self.settings.contains_key(sem)),
                    Error::UnknownPeer | Error::ExpiredPeer => assert!(peer.is_none()),
                    Error::InvalidCount => assert!(count < 1),
                    Error::CountTooLarge { .. } => assert!(count > self.settings[sem].0),
                    Error::LockCountChange { .. } => assert!(
                        peer.unwrap()
                            .acquired
                            .get(sem)
                            .is_some_and(|&held| count > held)
                            || peer
                                .unwrap()
                                .pending
                                .as_ref()
                                .is_some_and(|p| p.0 == sem && p.1 != count)
                    ),
                    Error::SecondPendingLock => {
                        assert!(peer.unwrap().pending.as_ref().is_some_and(|p| p.0 != sem))
                    }
                    Error::LockHierarchyViolation { .. } => {}
                    Error::CountOverflow => {}
                    other => panic!("acquire: unexpected {other:?}"),
                }
                return;
            }
        };
        let previous = before
            .peer(id)
            .expect("acquire succeeded for an unknown peer");
        let had_lock = previous.acquired.contains_key(sem)
            || previous.pending.as_ref().is_some_and(|p| p.0 == sem);
        if !had_lock {
            // A new lock: the hierarchy allows only strictly lower levels than the current one.
            let level = self.settings[sem].1;
            let current = previous
                .acquired
                .keys()
                .map(|name| self.settings[name].1)
                .min();
            assert!(current.is_none_or(|current| level < current), "hierarchy");
            if acquisition.state == LockState::Pending {
                self.queues
                    .entry(sem.to_owned())
                    .or_default()
                    .push((id, count));
            }
        }
        let after = self.snapshot();
        let peer = after.peer(id).unwrap();
        match acquisition.state {
            LockState::Acquired => assert_eq!(peer.acquired.get(sem), Some(&count)),
            LockState::Pending => assert_eq!(peer.pending, Some((sem.to_owned(), count))),
        }
        if let Some(expires_at) = expires_at {
            assert_eq!(
                peer.expires_in,
                expires_at.saturating_duration_since(self.now)
            );
        }
        self.reconcile(before, Some(&acquisition.granted));

        // Idempotence: the same request again changes nothing and reports the same state.
        let again = self.snapshot();
        let repeat = self.core.acquire(id, sem, count, None, self.now).unwrap();
        assert_eq!(repeat.state, acquisition.state);
        assert!(repeat.granted.is_empty());
        assert_eq!(self.snapshot(), again, "repeated acquire changed state");
    }

    fn restore(
        &mut self,
        before: &Snapshot,
        id: PeerId,
        ttl: Duration,
        locks: &BTreeMap<String, i64>,
    ) {
        match self
            .core
            .restore(id, self.now + ttl, locks, &BTreeMap::new())
        {
            Ok(()) => {
                let after = self.snapshot();
                let peer = after.peer(id).unwrap();
                assert_eq!(&peer.acquired, locks);
                assert_eq!(peer.pending, None);
                assert_eq!(peer.expires_in, ttl);
                match before.peer(id) {
                    // A new peer: its locks may overcommit.
                    None => {
                        for sem in locks.keys() {
                            self.restored.insert((id, sem.clone()));
                        }
                    }
                    // An existing one: only prolonged.
                    Some(old) => assert_eq!(&old.acquired, locks),
                }
                self.reconcile(before, Some(&[]));
            }
            Err(error) => {
                assert_eq!(self.snapshot(), *before, "failed restore changed state");
                match error {
                    Error::UnknownSemaphore => {
                        assert!(locks.keys().any(|s| !self.settings.contains_key(s)))
                    }
                    Error::InvalidCount => assert!(locks.values().any(|&c| c < 1)),
                    Error::CountOverflow => {}
                    Error::RestoreConflict => assert!(before.peer(id).is_some()),
                    other => panic!("restore: unexpected {other:?}"),
                }
            }
        }
    }

    fn expire(&mut self) {
        let before = self.snapshot();
        let due: BTreeSet<PeerId> = before
            .peers
            .iter()
            .filter(|p| p.expires_in.is_zero())
            .map(|p| p.id)
            .collect();
        let expired = self.core.expire(self.now);
        let removed: BTreeSet<PeerId> = expired.peers.iter().copied().collect();
        assert_eq!(removed.len(), expired.peers.len(), "a peer expired twice");
        assert!(removed.is_subset(&due), "expire removed a peer not due");
        // A due peer survives only if an earlier expiry in the sweep granted its pending lock,
        // whose lease then started at that peer's deadline (`Core::expire`).
        let after = self.snapshot();
        for &id in due.difference(&removed) {
            assert!(expired.granted.contains(&id), "due peer {id} kept without a grant");
            assert!(after.peer(id).is_some_and(|p| !p.expires_in.is_zero()));
        }
        self.expired_total += expired.peers.len() as u64;
        assert_eq!(self.core.expired_total(), self.expired_total);
        assert!(self.core.next_deadline().is_none_or(|d| d > self.now));
        self.reconcile(&before, Some(&expired.granted));
    }

    /// Brings the shadow queues and the restored set up to date after a change, and checks FIFO:
    /// waiters leave the queue either granted (only from the front, past nobody still waiting)
    /// or removed. `granted` is what the core said it granted.
    fn reconcile(&mut self, _before: &Snapshot, granted: Option<&[PeerId]>) {
        let after = self.snapshot();
        let mut seen_granted: Vec<PeerId> = Vec::new();
        for (sem, queue) in &mut self.queues {
            let mut still_waiting = false;
            queue.retain(|&(id, count)| {
                let peer = after.peer(id);
                if peer.and_then(|p| p.pending.as_ref()) == Some(&(sem.clone(), count)) {
                    still_waiting = true;
                    return true;
                }
                if peer.is_some_and(|p| p.acquired.get(sem) == Some(&count)) {
                    assert!(
                        !still_waiting,
                        "{id} granted on {sem} before an earlier waiter"
                    );
                    seen_granted.push(id);
                }
                false
            });
        }
        if let Some(granted) = granted {
            let mut reported = granted.to_vec();
            reported.sort_unstable();
            seen_granted.sort_unstable();
            assert_eq!(
                reported, seen_granted,
                "granted list differs from the grants"
            );
        }
        self.restored.retain(|(id, sem)| {
            after
                .peer(*id)
                .is_some_and(|peer| peer.acquired.contains_key(sem))
        });
    }

    /// The global invariants.
    fn check(&self) {
        let snap = self.snapshot();
        assert_eq!(snap.num_peers, snap.peers.len());
        assert!(
            snap.peers.windows(2).all(|w| w[0].id < w[1].id),
            "listing order"
        );
        for (name, max, level, acquired, pending, longest) in &snap.stats {
            assert_eq!(self.settings[name], (*max, *level));
            let mut acquired_sum: i128 = 0;
            let mut unrestored_sum: i128 = 0;
            let mut pending_sum: i128 = 0;
            for peer in &snap.peers {
                if let Some(&count) = peer.acquired.get(name) {
                    assert!(count >= 1);
                    acquired_sum += i128::from(count);
                    if !self.restored.contains(&(peer.id, name.clone())) {
                        unrestored_sum += i128::from(count);
                    }
                }
                if let Some((sem, count)) = &peer.pending
                    && sem == name
                {
                    assert!(*count >= 1);
                    pending_sum += i128::from(*count);
                }
            }
            assert_eq!(
                i128::from(*acquired),
                acquired_sum,
                "acquired sum of {name}"
            );
            assert_eq!(i128::from(*pending), pending_sum, "pending sum of {name}");
            assert!(unrestored_sum <= i128::from(*max), "capacity of {name}");
            assert_eq!(
                self.core.remainder(name),
                Ok(max - acquired),
                "remainder of {name}"
            );
            let queue = self.queues.get(name).map_or(&[][..], Vec::as_slice);
            let queued: i128 = queue.iter().map(|&(_, c)| i128::from(c)).sum();
            assert_eq!(queued, pending_sum, "shadow queue of {name}");
            assert_eq!(longest.is_some(), !queue.is_empty());
            if let Some(&(head, count)) = queue.first() {
                assert!(
                    i128::from(*acquired) + i128::from(count) > i128::from(*max),
                    "the head {head} of {name} fits but waits"
                );
            }
        }
        assert_eq!(self.core.remainder("Z"), Err(Error::UnknownSemaphore));
        for peer in &snap.peers {
            if let Some((sem, _)) = &peer.pending {
                assert!(
                    !peer.acquired.contains_key(sem),
                    "waits for a lock it holds"
                );
            }
        }
        let earliest = snap.peers.iter().map(|p| p.expires_in).min();
        assert_eq!(
            snap.next_deadline
                .map(|d| d.saturating_duration_since(self.now)),
            earliest
        );
    }

    /// Removes every peer (or lets them all expire) and checks that nothing is left.
    fn drain(&mut self, by_expiry: bool) {
        if by_expiry {
            self.now += MAX_DURATION + Duration::from_secs(1);
            self.expire();
        } else {
            let ids: Vec<PeerId> = self.snapshot().peers.iter().map(|p| p.id).collect();
            for id in ids {
                let before = self.snapshot();
                let granted = self.core.remove_peer(id, self.now).expect("listed peer unknown");
                self.reconcile(&before, Some(&granted));
                self.check();
            }
        }
        assert_eq!(self.core.num_peers(), 0);
        assert_eq!(self.core.next_deadline(), None);
        for stats in self.core.stats(self.now) {
            assert_eq!((stats.acquired, stats.pending), (0, 0), "{}", stats.name);
            assert_eq!(stats.longest_pending, None);
            assert_eq!(self.core.remainder(stats.name), Ok(stats.max));
        }
        assert!(self.queues.values().all(Vec::is_empty));
        assert!(self.restored.is_empty());
    }
}

/// A peer the core does not know: never created, removed, or expired (which the core
/// remembers for a while and reports as `ExpiredPeer`, the same `Unknown peer` on the wire).
fn unknown(error: &Error) -> bool {
    matches!(error, Error::UnknownPeer | Error::ExpiredPeer)
}
