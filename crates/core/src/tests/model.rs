//! Randomized model test: thousands of random operation sequences run against `Core` and against
//! a deliberately naive reference that recomputes every sum by scanning all peers. After every
//! step both must agree on results, lock states and sums, and the invariants must hold.
//!
//! Fencing tokens are checked as properties rather than against the model (the order in which
//! one step grants several queues is the core's business): tokens of held locks are distinct, a
//! lock held across a step keeps its token (repeats, shrinks), a lock granted in a step has a
//! token above every token seen before (or the one its restore brought back), and the next token
//! stays above every held one.

use std::collections::BTreeMap;
use std::time::Duration;

use super::super::*;

const SEMAPHORES: [(&str, i64, i32); 4] =
    [("A", 3, 0), ("B", 1, 1), ("C", 5, 2), ("H", i64::MAX, 0)];

/// A small deterministic generator, so a failing seed can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[derive(Clone, Debug)]
struct NaivePeer {
    expires_at: Time,
    acquired: BTreeMap<String, i64>,
    /// Semaphore, count and arrival number.
    pending: Option<(String, i64, u64)>,
    /// The lease the pending lock's request asked for: at the grant, the deadline becomes at
    /// least the grant's instant plus this.
    lease: Option<Duration>,
}

/// The reference: peers only, every figure derived by a scan.
#[derive(Default)]
struct Naive {
    peers: BTreeMap<PeerId, NaivePeer>,
    arrivals: u64,
    /// Semaphores `restore` may have overcommitted.
    restored: Vec<String>,
    /// The end of the grace period: until then nothing is granted.
    grace_until: Option<Time>,
    /// Ids of expired peers and when they are forgotten.
    expired: BTreeMap<PeerId, Time>,
}

fn settings(name: &str) -> Option<(i64, i32)> {
    SEMAPHORES
        .iter()
        .find(|s| s.0 == name)
        .map(|&(_, max, level)| (max, level))
}

impl Naive {
    fn acquired_sum(&self, sem: &str) -> i128 {
        self.peers
            .values()
            .filter_map(|p| p.acquired.get(sem))
            .map(|&c| c as i128)
            .sum()
    }

    fn pending_sum(&self, sem: &str) -> i128 {
        self.peers
            .values()
            .filter_map(|p| p.pending.as_ref())
            .filter(|p| p.0 == sem)
            .map(|p| p.1 as i128)
            .sum()
    }

    /// Grants the oldest pending locks of every semaphore while they fit.
    fn promote(&mut self, now: Time) -> Vec<PeerId> {
        let mut granted = Vec::new();
        if self.grace_until.is_some() {
            return granted;
        }
        for &(sem, max, _) in &SEMAPHORES {
            loop {
                let oldest = self
                    .peers
                    .iter()
                    .filter_map(|(&id, p)| p.pending.as_ref().map(|q| (id, q.clone())))
                    .filter(|(_, q)| q.0 == sem)
                    .min_by_key(|(_, q)| q.2);
                let Some((id, (_, count, _))) = oldest else {
                    break;
                };
                if self.acquired_sum(sem) + count as i128 > max as i128 {
                    break;
                }
                let peer = self.peers.get_mut(&id).unwrap();
                peer.pending = None;
                peer.acquired.insert(sem.to_owned(), count);
                if let Some(lease) = peer.lease.take() {
                    peer.expires_at = peer.expires_at.max(now + lease);
                }
                granted.push(id);
            }
        }
        granted
    }

    /// The error for a peer that is not live.
    fn unknown(&self, id: PeerId) -> Error {
        if self.expired.contains_key(&id) {
            Error::ExpiredPeer
        } else {
            Error::UnknownPeer
        }
    }

    /// Expires the overdue peers one at a time, earliest deadline first, as if each expired
    /// at its deadline: what it frees is granted at that instant (so a lease asked for starts
    /// there). Then ends a grace period that is over and grants at `now`. Returns the expired
    /// peers and the live peers granted.
    fn expire(&mut self, now: Time) -> (Vec<PeerId>, Vec<PeerId>) {
        self.expired.retain(|_, forget_at| *forget_at > now);
        let (mut expired, mut granted) = (Vec::new(), Vec::new());
        while let Some((deadline, id)) = self
            .peers
            .iter()
            .map(|(&id, p)| (p.expires_at, id))
            .filter(|&(deadline, _)| deadline <= now)
            .min()
        {
            self.peers.remove(&id);
            self.expired
                .insert(id, now + super::super::expired::REMEMBER_FOR);
            expired.push(id);
            granted.extend(self.promote(deadline));
        }
        if self.grace_until.is_some_and(|end| end <= now) {
            self.grace_until = None;
            granted.extend(self.promote(now));
        }
        granted.retain(|id| self.peers.contains_key(id));
        (expired, granted)
    }

    fn acquire(
        &mut self,
        id: PeerId,
        sem: &str,
        count: i64,
        expires_at: Option<Time>,
        now: Time,
    ) -> Result<LockState, Error> {
        let (max, level) = settings(sem).ok_or(Error::UnknownSemaphore)?;
        let Some(peer) = self.peers.get(&id).cloned() else {
            return Err(self.unknown(id));
        };
        if count < 1 {
            return Err(Error::InvalidCount);
        }
        let mut state = None;
        if let Some(&held) = peer.acquired.get(sem) {
            if count > held {
                return Err(Error::LockCountChange {
                    held,
                    requested: count,
                });
            }
            self.peers
                .get_mut(&id)
                .unwrap()
                .acquired
                .insert(sem.to_owned(), count);
            state = Some(LockState::Acquired);
        } else if let Some((psem, pcount, _)) = &peer.pending {
            if psem != sem {
                return Err(Error::SecondPendingLock);
            }
            if *pcount != count {
                return Err(Error::LockCountChange {
                    held: *pcount,
                    requested: count,
                });
            }
            if let Some(expires_at) = expires_at {
                self.peers.get_mut(&id).unwrap().lease =
                    Some(expires_at.saturating_duration_since(now));
            }
            state = Some(LockState::Pending);
        } else {
            if count > max {
                return Err(Error::CountTooLarge { count, max });
            }
            let current = peer.acquired.keys().map(|s| settings(s).unwrap().1).min();
            if let Some(current) = current
                && level >= current
            {
                return Err(Error::LockHierarchyViolation { level, current });
            }
        }
        let state = match state {
            Some(state) => state,
            None => {
                let demand = self.acquired_sum(sem) + self.pending_sum(sem) + count as i128;
                if demand <= max as i128 && self.grace_until.is_none() {
                    let peer = self.peers.get_mut(&id).unwrap();
                    peer.acquired.insert(sem.to_owned(), count);
                    LockState::Acquired
                } else {
                    if self.pending_sum(sem) + count as i128 > i64::MAX as i128 {
                        return Err(Error::CountOverflow);
                    }
                    self.arrivals += 1;
                    let peer = self.peers.get_mut(&id).unwrap();
                    peer.pending = Some((sem.to_owned(), count, self.arrivals));
                    peer.lease = expires_at.map(|at| at.saturating_duration_since(now));
                    LockState::Pending
                }
            }
        };
        if let Some(expires_at) = expires_at {
            self.peers.get_mut(&id).unwrap().expires_at = expires_at;
        }
        Ok(state)
    }

    fn release_lock(&mut self, id: PeerId, sem: &str) -> Result<(), Error> {
        settings(sem).ok_or(Error::UnknownSemaphore)?;
        let unknown = self.unknown(id);
        let peer = self.peers.get_mut(&id).ok_or(unknown)?;
        peer.acquired.remove(sem);
        if peer.pending.as_ref().is_some_and(|p| p.0 == sem) {
            peer.pending = None;
        }
        Ok(())
    }

    /// `held` holds the tokens of the core's locks before the step: the model does not track
    /// tokens, but a restore of a live peer must name the ones it holds.
    fn restore(
        &mut self,
        id: PeerId,
        expires_at: Time,
        locks: &BTreeMap<String, i64>,
        tokens: &BTreeMap<String, Token>,
        held: &BTreeMap<(PeerId, String), Token>,
    ) -> Result<(), Error> {
        for (sem, &count) in locks {
            settings(sem).ok_or(Error::UnknownSemaphore)?;
            if count < 1 {
                return Err(Error::InvalidCount);
            }
            if self.acquired_sum(sem) + count as i128 > i64::MAX as i128 {
                return Err(Error::CountOverflow);
            }
            if let Some(&token) = tokens.get(sem).filter(|&&token| token > MAX_TOKEN) {
                return Err(Error::InvalidFencingToken(token));
            }
        }
        if let Some(peer) = self.peers.get_mut(&id) {
            let same_tokens = locks.keys().all(|sem| {
                tokens
                    .get(sem)
                    .is_none_or(|token| held.get(&(id, sem.clone())) == Some(token))
            });
            if peer.pending.is_some() || &peer.acquired != locks || !same_tokens {
                return Err(Error::RestoreConflict);
            }
            peer.expires_at = expires_at;
            return Ok(());
        }
        self.restored.extend(locks.keys().cloned());
        self.expired.remove(&id);
        self.peers.insert(
            id,
            NaivePeer {
                expires_at,
                acquired: locks.clone(),
                pending: None,
                lease: None,
            },
        );
        Ok(())
    }
}

/// Compares every observable figure and checks the invariants.
#[track_caller]
fn compare(core: &Core, naive: &Naive, now: Time, context: &str) {
    assert_eq!(core.num_peers(), naive.peers.len(), "{context}");
    for stats in core.stats(now) {
        let sem = stats.name;
        let (max, _) = settings(sem).unwrap();
        assert_eq!(
            stats.acquired as i128,
            naive.acquired_sum(sem),
            "{context}: {sem}"
        );
        assert_eq!(
            stats.pending as i128,
            naive.pending_sum(sem),
            "{context}: {sem}"
        );
        // Capacity: only restore may overcommit.
        if !naive.restored.iter().any(|s| s == sem) {
            assert!(stats.acquired <= max, "{context}: capacity of {sem}");
        }
    }
    for (&id, peer) in &naive.peers {
        for &(sem, _, _) in &SEMAPHORES {
            let expected = if peer.acquired.contains_key(sem) {
                Some(LockState::Acquired)
            } else if peer.pending.as_ref().is_some_and(|p| p.0 == sem) {
                Some(LockState::Pending)
            } else {
                None
            };
            assert_eq!(
                core.lock_state(id, sem),
                Ok(expected),
                "{context}: {id} {sem}"
            );
        }
        // Hierarchy: acquired levels of a peer are pairwise distinct (each acquired strictly
        // lower than the last), except for restored ones.
        assert_eq!(
            core.is_acquired(id),
            Ok(peer.pending.is_none()),
            "{context}"
        );
    }
}

/// The fencing tokens of every lock the core holds, by peer and semaphore.
fn tokens(core: &Core) -> BTreeMap<(PeerId, String), Token> {
    let mut tokens = BTreeMap::new();
    for id in core.peer_ids() {
        for &(sem, _, _) in &SEMAPHORES {
            if let Some(token) = core.token(id, sem) {
                tokens.insert((id, sem.to_owned()), token);
            }
        }
    }
    tokens
}

/// Checks the token properties (see the module docs) from before a step to after it.
#[track_caller]
fn check_tokens(
    core: &Core,
    before: &BTreeMap<(PeerId, String), Token>,
    highest_before: Token,
    restored: &BTreeMap<(PeerId, String), Token>,
    context: &str,
) -> BTreeMap<(PeerId, String), Token> {
    let after = tokens(core);
    // New grants of one step are distinct; a restored token is the client's word and may
    // repeat one the server granted before.
    let mut granted = std::collections::BTreeSet::new();
    for (lock, &token) in &after {
        assert!(
            token < core.next_token(),
            "{context}: {lock:?} above the counter"
        );
        match before.get(lock) {
            Some(&earlier) => assert_eq!(token, earlier, "{context}: {lock:?} changed its token"),
            None if restored.get(lock) == Some(&token) => {}
            None => {
                assert!(
                    token > highest_before,
                    "{context}: {lock:?} granted {token}, not above {highest_before}"
                );
                assert!(
                    granted.insert(token),
                    "{context}: token {token} granted twice"
                );
            }
        }
    }
    after
}

fn sorted(mut ids: Vec<PeerId>) -> Vec<PeerId> {
    ids.sort_unstable();
    ids
}

fn run(seed: u64, steps: usize) {
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let t0 = Time::from_epoch(Duration::from_secs(1_000));
    let mut now = t0;
    let mut core = Core::new(
        SEMAPHORES
            .iter()
            .map(|&(name, max, level)| SemaphoreSettings {
                name: name.to_owned(),
                max,
                level,
            }),
    );
    let mut naive = Naive::default();
    let mut held = BTreeMap::new();
    // The highest token ever granted or restored so far.
    let mut highest: Token = 0;
    let names = ["A", "B", "C", "H", "nope"];
    let counts = [1, 1, 1, 2, 3, 0, -1, 6, i64::MAX];

    for step in 0..steps {
        now += Duration::from_millis(rng.below(400));
        // The service sweeps before every operation; so does the test.
        let expired = core.expire(now);
        let (naive_expired, granted) = naive.expire(now);
        assert_eq!(
            sorted(expired.peers),
            sorted(naive_expired),
            "seed {seed} step {step}"
        );
        assert_eq!(
            sorted(expired.granted),
            sorted(granted),
            "seed {seed} step {step}"
        );
        let context = format!("seed {seed} step {step} (sweep)");
        held = check_tokens(&core, &held, highest, &BTreeMap::new(), &context);
        highest = highest.max(held.values().copied().max().unwrap_or(0));
        let mut restored = BTreeMap::new();

        let id = 1 + rng.below(6);
        let sem = names[rng.below(names.len() as u64) as usize];
        let ttl = now + Duration::from_millis(200 + rng.below(3000));
        let context = format!("seed {seed} step {step}");
        match rng.below(10) {
            0 => {
                let fresh = core.new_peer(id, ttl);
                assert_eq!(fresh, !naive.peers.contains_key(&id), "{context}");
                if fresh {
                    naive.expired.remove(&id);
                    naive.peers.insert(
                        id,
                        NaivePeer {
                            expires_at: ttl,
                            acquired: BTreeMap::new(),
                            pending: None,
                            lease: None,
                        },
                    );
                }
            }
            1..=4 => {
                let count = counts[rng.below(counts.len() as u64) as usize];
                let expires_at = (rng.below(2) == 0).then_some(ttl);
                let got = core.acquire(id, sem, count, expires_at, now);
                let expected = naive.acquire(id, sem, count, expires_at, now);
                let granted = naive.promote(now);
                match got {
                    Ok(acquisition) => {
                        assert_eq!(Ok(acquisition.state), expected, "{context}");
                        assert_eq!(sorted(acquisition.granted), sorted(granted), "{context}");
                    }
                    Err(error) => assert_eq!(Err(error), expected, "{context}"),
                }
            }
            5 => {
                let got = core.release_lock(id, sem, now);
                let expected = naive.release_lock(id, sem);
                let granted = naive.promote(now);
                assert_eq!(
                    got.map(sorted),
                    expected.map(|()| sorted(granted)),
                    "{context}"
                );
            }
            6 => {
                let got = core.remove_peer(id, now);
                let existed = naive.peers.remove(&id).is_some();
                let granted = naive.promote(now);
                assert_eq!(
                    got.map(sorted),
                    existed.then(|| sorted(granted)),
                    "{context}"
                );
            }
            7 => {
                let got = core.heartbeat(id, ttl);
                let expected = match naive.peers.get_mut(&id) {
                    Some(peer) => {
                        peer.expires_at = ttl;
                        Ok(())
                    }
                    None => Err(naive.unknown(id)),
                };
                assert_eq!(got, expected, "{context}");
            }
            8 => {
                let mut locks = BTreeMap::new();
                for _ in 0..rng.below(3) {
                    let sem = names[rng.below(names.len() as u64) as usize];
                    let count = counts[rng.below(counts.len() as u64) as usize];
                    locks.insert(sem.to_owned(), count);
                }
                // Some locks bring a token back: an old one, one above the counter, or one
                // that is out of range.
                let mut given = BTreeMap::new();
                for sem in locks.keys() {
                    let token = match rng.below(5) {
                        0 => highest.saturating_sub(rng.below(5)),
                        1 => core.next_token() + rng.below(100),
                        2 if rng.below(10) == 0 => MAX_TOKEN + 1,
                        _ => continue,
                    };
                    given.insert(sem.clone(), token);
                }
                let got = core.restore(id, ttl, &locks, &given);
                let expected = naive.restore(id, ttl, &locks, &given, &held);
                assert_eq!(got, expected, "{context}");
                if got.is_ok() {
                    restored = given.into_iter().map(|(sem, t)| ((id, sem), t)).collect();
                }
            }
            _ if rng.below(4) == 0 => {
                // A grace period (as after an unclean restart): nothing new is granted until
                // it ends, then the queues are granted in order.
                let until = now + Duration::from_millis(rng.below(3000));
                core.begin_grace(until);
                naive.grace_until = Some(naive.grace_until.map_or(until, |end| end.max(until)));
            }
            _ => {
                // Time passes further: a long jump, to let peers expire.
                now += Duration::from_millis(rng.below(2000));
            }
        }
        compare(&core, &naive, now, &context);
        held = check_tokens(&core, &held, highest, &restored, &context);
        highest = highest.max(held.values().copied().max().unwrap_or(0));
    }

    // Nothing is left once every peer is gone.
    now += Duration::from_secs(10);
    core.expire(now);
    for id in 1..=6 {
        core.remove_peer(id, now);
    }
    for stats in core.stats(now) {
        assert_eq!(
            (stats.acquired, stats.pending),
            (0, 0),
            "seed {seed}: {}",
            stats.name
        );
        assert_eq!(stats.longest_pending, None);
    }
    assert_eq!(core.next_deadline(), None);
}

#[test]
fn core_agrees_with_a_naive_model_on_random_sequences() {
    for seed in 0..3000 {
        run(seed, 200);
    }
}
