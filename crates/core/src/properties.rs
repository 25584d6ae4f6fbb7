//! The core's one property suite: a [`Checker`] applies `(time, op)` entries to a [`Core`]
//! through [`Core::apply`] and to a deliberately naive reference model, and after every entry
//! checks that both agree and that every invariant holds.
//!
//! Two drivers feed it the same way: the unit test `tests/random_ops.rs` (random sequences from
//! seeds, so a failure replays) and the fuzz target `core_ops` (bytes decoded with `arbitrary`,
//! `fuzz/fuzz_targets/core_ops.rs`). Compiled for tests and under `--cfg fuzzing` only.
//!
//! The model keeps peers only and derives every figure by a scan: sums, queues (by arrival
//! number), levels. It knows removed semaphores, the grace period, leases that start at the
//! grant and the memory of expired peers, but not fencing tokens; those are checked as
//! properties. A step is checked in two halves: the sweep on a copy of the core (so its effect
//! is seen apart from the operation's), then the operation on the core itself.
//!
//! Properties, after every entry:
//! - **Model**: the operation's answer (errors included, `ExpiredPeer` apart from
//!   `UnknownPeer`), the peers the sweep expired (in order) and their names, the peers granted
//!   by the sweep and by the operation, what a reconfiguration added, changed, removed and
//!   cancelled, every peer's locks, pending lock, deadline and name, `lock_state` and
//!   `is_acquired` of every peer on every semaphore name, the sums, and the number of expired
//!   ids remembered all equal the model's.
//! - **Sums**: per semaphore, `stats` equal the sums over the `peers` listing, and `remainder`
//!   is `max - acquired`; a name not configured (never, or no longer) has no remainder.
//! - **Capacity**: the acquired counts never exceed `max`, except locks that `restore` created
//!   or that were held when a reconfiguration happened (a lowered `max`); those stay exempt while
//!   held, even shrunk.
//! - **FIFO**: a shadow queue per semaphore, in request order, is kept from the `Pending`
//!   answers; no waiter is granted while an earlier one still waits, the `granted` lists name
//!   exactly the waiters that were granted, and the queue's head never fits (except during the
//!   grace period); `longest_pending` is there exactly when someone waits.
//! - **Peers**: a peer waits for at most one lock, never for one it holds; counts are at least 1;
//!   the listing is ordered by id.
//! - **Rejections** change nothing (neither do a `NewPeer` of a taken id nor a `RemovePeer` of
//!   an unknown one), and every rejection has a reason the checker can see.
//! - **Repeats**: the same acquire again changes nothing and answers the same state and token.
//! - **Contracts**: an acquire's lock is there afterwards with its count, a deadline given moves
//!   the peer's, a new lock is only taken below the peer's current level; a restore leaves
//!   exactly its locks, with the tokens it brought; a heartbeat sets the deadline.
//! - **Expiry**: the sweep removes only peers due, each once, and keeps a due one only if it
//!   granted it a lease; `expired_total` counts them; `next_deadline` is the earliest peer
//!   deadline or the end of the grace period, and after a sweep it lies ahead.
//! - **Fencing tokens**: every held token is below the next one; a lock held across an entry
//!   keeps its token; a lock granted in an entry has a token above every token seen before
//!   (or the one its restore brought back), and no two new grants share one; an acquire
//!   reports the token the lock holds.
//! - **Replication**: a second core created alike and fed the same entries, each through its
//!   byte encoding (`Op::encode`, `Op::decode`, which must give the entry back), returns the
//!   same results (in the same order) and shows the same state: listing, stats,
//!   `next_deadline`, `next_token`, counters, grace period, export and the snapshot's bytes.
//!   [`Checker::rebuild_twin`] replaces that twin, between entries, with a core rebuilt from the
//!   core's snapshot (as a lagging member is caught up): it must look the same (views, export,
//!   queues, deadlines), encode to the same bytes, and answer the entries that follow alike.
//! - **Drain**, at the end: removing every peer, or letting them all expire, leaves nothing: no
//!   peer, no deadline, nothing pending, every remainder at `max`.
//!
//! Views read at a later time than the last entry (time passed without a sweep, [`Checker::look`])
//! must cope with overdue peers: the same properties hold there.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use crate::expired::REMEMBER_FOR;
use crate::{
    Applied, Core, Error, LockState, MAX_TOKEN, Op, Outcome, PeerId, PeerInfo, Reconfigured,
    SemaphoreSettings, SemaphoreStats, Time, Token,
};

/// Applies entries to a core, its twin and the model, and checks every property (see the
/// module docs) after each. Panics at the first violation, naming the entry.
pub struct Checker {
    core: Core,
    /// Created alike and fed the same entries: the replication property.
    twin: Core,
    model: Model,
    now: Time,
    /// Number of entries applied, for the messages.
    entries: usize,
    /// Every semaphore name seen in a configuration or an entry, for the queries.
    names: BTreeSet<String>,
    /// Per semaphore, the waiters in request order: `(peer, count)`.
    queues: BTreeMap<String, Vec<(PeerId, i64)>>,
    /// Held locks exempt from the capacity property (see the module docs).
    exempt: BTreeSet<(PeerId, String)>,
    /// Tokens of the held locks after the last entry.
    held: BTreeMap<(PeerId, String), Token>,
    /// The highest token granted or restored so far.
    highest: Token,
    expired_total: u64,
}

/// What a caller can observe of a core at one time, owned, so moments and cores can be
/// compared. (The export, which walks every expired id, is compared between the twins only.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    pub peers: Vec<PeerInfo<String>>,
    pub stats: Vec<SemaphoreStats<String>>,
    pub next_deadline: Option<Time>,
    pub next_token: Token,
    pub num_peers: usize,
    pub expired_total: u64,
    pub expired_remembered: usize,
    pub grace_remaining: Option<Duration>,
}

impl Observed {
    /// The core as seen at `now` (which may be later than its last sweep).
    pub fn of(core: &Core, now: Time) -> Observed {
        Observed {
            peers: core
                .peers(now)
                .into_iter()
                .map(PeerInfo::into_owned)
                .collect(),
            stats: core
                .stats(now)
                .into_iter()
                .map(SemaphoreStats::into_owned)
                .collect(),
            next_deadline: core.next_deadline(),
            next_token: core.next_token(),
            num_peers: core.num_peers(),
            expired_total: core.expired_total(),
            expired_remembered: core.expired_remembered(),
            grace_remaining: core.grace_remaining(now),
        }
    }

    fn peer(&self, id: PeerId) -> Option<&PeerInfo<String>> {
        let i = self.peers.binary_search_by_key(&id, |peer| peer.id).ok()?;
        Some(&self.peers[i])
    }

    /// The count the peer holds on `semaphore`.
    fn held(&self, id: PeerId, semaphore: &str) -> Option<i64> {
        self.peer(id)?
            .acquired
            .iter()
            .find(|(name, _, _)| name == semaphore)
            .map(|&(_, count, _)| count)
    }

    fn tokens(&self) -> BTreeMap<(PeerId, String), Token> {
        let mut tokens = BTreeMap::new();
        for peer in &self.peers {
            for (name, _, token) in &peer.acquired {
                tokens.insert((peer.id, name.clone()), *token);
            }
        }
        tokens
    }
}

/// Names the entry in a failure message. A look or a grace period between entries is checked
/// as if it were an `Expire` entry that changed nothing, and says so.
struct Entry<'a> {
    what: &'static str,
    number: usize,
    at: Time,
    op: &'a Op,
}

impl fmt::Display for Entry<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Entry {
            what,
            number,
            at,
            op,
        } = self;
        write!(f, "{what} {number} at {at:?}: {op:?}")
    }
}

impl Checker {
    /// A checker for cores created with `settings` (a name given twice keeps its last settings).
    pub fn new(settings: Vec<SemaphoreSettings>) -> Checker {
        let names = settings.iter().map(|s| s.name.clone()).collect();
        Checker {
            core: Core::new(settings.iter().cloned()),
            twin: Core::new(settings.iter().cloned()),
            model: Model::new(&settings),
            now: Time::ZERO,
            entries: 0,
            names,
            queues: BTreeMap::new(),
            exempt: BTreeSet::new(),
            held: BTreeMap::new(),
            highest: 0,
            expired_total: 0,
        }
    }

    /// The core under test, for drivers that pick values from its state (a token near the
    /// counter, say). Read-only: every change goes through [`Checker::apply`].
    pub fn core(&self) -> &Core {
        &self.core
    }

    /// The time of the last entry (or look).
    pub fn now(&self) -> Time {
        self.now
    }

    /// Applies `op` at `at` (not before the last entry's time) and checks every property.
    pub fn apply(&mut self, at: Time, op: &Op) -> Applied {
        assert!(
            at >= self.now,
            "time runs backwards: {at:?} < {:?}",
            self.now
        );
        self.entries += 1;
        self.now = at;
        let entry = Entry {
            what: "entry",
            number: self.entries,
            at,
            op,
        };
        self.note_names(op);

        // The sweep, on a copy, so that its effect is checked apart from the operation's.
        let before = Observed::of(&self.core, at);
        let mut swept = self.core.clone();
        let sweep = swept.apply(at, &Op::Expire);
        let mid = Observed::of(&swept, at);
        self.check_sweep(&entry, &before, &sweep, &swept, &mid);

        // The operation, on the core itself: its sweep must be the one just checked.
        let applied = self.core.apply(at, op);
        assert_eq!(applied.expired, sweep.expired, "{entry}: the sweep differs");
        let after = Observed::of(&self.core, at);
        let (expected, model_granted) = self.model.apply(at, op, &mid.tokens());
        self.check_outcome(&entry, &applied, &expected, &model_granted);
        let restored = self.check_contract(&entry, &applied, &mid, &after);
        self.reconcile(&entry, &after, &applied.granted);
        self.held = check_tokens(&entry, &mid.tokens(), self.highest, &restored, &after);
        self.highest = self
            .highest
            .max(self.held.values().copied().max().unwrap_or(0));
        self.check_state(&entry, &self.core, &after, true);

        // Replication: the twin, fed the same entry through its byte encoding (as a log carries
        // it), answers and looks the same, down to the last byte of its snapshot.
        let mut bytes = Vec::new();
        op.encode(&mut bytes);
        let decoded = Op::decode(&bytes).unwrap_or_else(|e| panic!("{entry}: decode: {e}"));
        assert_eq!(&decoded, op, "{entry}: the decoded operation differs");
        let twin = self.twin.apply(at, &decoded);
        assert_eq!(twin, applied, "{entry}: the twin answered differently");
        assert_eq!(
            Observed::of(&self.twin, at),
            after,
            "{entry}: the twin's state differs"
        );
        assert_eq!(
            self.twin.export(at),
            self.core.export(at),
            "{entry}: exports"
        );
        assert!(
            self.twin.encode_snapshot() == self.core.encode_snapshot(),
            "{entry}: the twin's snapshot differs"
        );
        applied
    }

    /// Replaces the twin with a core rebuilt from the core's snapshot, as a member that falls
    /// behind is caught up: the rebuilt core must look the same now (views, export, every
    /// queue) and encode to the same bytes, and the entries that follow check that it also
    /// answers the same.
    pub fn rebuild_twin(&mut self) {
        let bytes = self.core.encode_snapshot();
        let rebuilt = Core::decode_snapshot(&bytes)
            .unwrap_or_else(|e| panic!("snapshot after entry {}: decode: {e}", self.entries));
        assert!(
            rebuilt.encode_snapshot() == bytes,
            "snapshot after entry {}: encodes differently",
            self.entries
        );
        let now = self.now;
        assert_eq!(Observed::of(&rebuilt, now), Observed::of(&self.core, now));
        assert_eq!(rebuilt.export(now), self.core.export(now));
        assert_eq!(
            rebuilt.peers_expiring_first(usize::MAX),
            self.core.peers_expiring_first(usize::MAX)
        );
        for name in &self.names {
            assert_eq!(
                rebuilt.waiters(name, usize::MAX, now),
                self.core.waiters(name, usize::MAX, now),
                "snapshot after entry {}: waiters of {name}",
                self.entries
            );
        }
        self.twin = rebuilt;
    }

    /// Starts (or extends) a grace period on both cores and the model: start-up work, not an
    /// [`Op`], but the properties must hold across one.
    pub fn begin_grace(&mut self, until: Time) {
        self.core.begin_grace(until);
        self.twin.begin_grace(until);
        self.model.grace_until = Some(self.model.grace_until.map_or(until, |end| end.max(until)));
        let op = Op::Expire;
        let entry = Entry {
            what: "grace period after entry",
            number: self.entries,
            at: self.now,
            op: &op,
        };
        let observed = Observed::of(&self.core, self.now);
        self.check_state(&entry, &self.core, &observed, true);
        assert_eq!(Observed::of(&self.twin, self.now), observed);
    }

    /// Time passes to `at` without a sweep: the views, read with overdue peers not yet expired,
    /// still show a consistent state, and reading them changes nothing.
    pub fn look(&mut self, at: Time) {
        assert!(
            at >= self.now,
            "time runs backwards: {at:?} < {:?}",
            self.now
        );
        self.now = at;
        let op = Op::Expire;
        let entry = Entry {
            what: "look after entry",
            number: self.entries,
            at,
            op: &op,
        };
        let observed = Observed::of(&self.core, at);
        self.check_state(&entry, &self.core, &observed, true);
        assert_eq!(
            Observed::of(&self.core, at),
            observed,
            "{entry}: a view changed"
        );
        assert_eq!(Observed::of(&self.twin, at), observed, "{entry}: the twin");
    }

    /// Ends the run: removes every peer (or lets them all expire, after the grace period if one
    /// runs), each step checked, and checks that nothing is left.
    pub fn drain(&mut self, by_expiry: bool) {
        if by_expiry {
            // Each round expires every peer due by the latest deadline; a lease granted on the
            // way may outlast it, hence the rounds.
            let mut rounds = 0;
            while self.core.num_peers() > 0 || self.core.grace_remaining(self.now).is_some() {
                rounds += 1;
                assert!(rounds <= 1_000, "peers outlive every sweep");
                let latest = self
                    .core
                    .peers(self.now)
                    .iter()
                    .map(|peer| peer.expires_in)
                    .chain(self.core.grace_remaining(self.now))
                    .max()
                    .unwrap_or_default();
                self.apply(self.now + latest, &Op::Expire);
            }
        } else {
            let end_of_grace = self.core.grace_remaining(self.now).unwrap_or_default();
            self.apply(self.now + end_of_grace, &Op::Expire);
            let ids: Vec<PeerId> = self.core.peers(self.now).iter().map(|p| p.id).collect();
            for id in ids {
                let applied = self.apply(self.now, &Op::RemovePeer { id });
                let expired = applied.expired.peers.contains(&id);
                let removed = applied.outcome == Ok(Outcome::RemovePeer { removed: true });
                assert!(removed || expired, "drain: {id} {applied:?}");
            }
        }
        let core = &self.core;
        assert_eq!(core.num_peers(), 0, "drain left peers");
        assert_eq!(core.next_deadline(), None, "drain left a deadline");
        for stats in core.stats(self.now) {
            assert_eq!((stats.acquired, stats.pending), (0, 0), "{}", stats.name);
            assert_eq!(stats.longest_pending, None, "{}", stats.name);
            assert_eq!(core.remainder(stats.name), Ok(stats.max), "{}", stats.name);
        }
        assert!(self.queues.values().all(Vec::is_empty), "{:?}", self.queues);
        assert!(self.exempt.is_empty(), "{:?}", self.exempt);
    }

    fn note_names(&mut self, op: &Op) {
        match op {
            Op::Acquire { semaphore, .. } | Op::ReleaseLock { semaphore, .. } => {
                self.names.insert(semaphore.clone());
            }
            Op::Restore {
                acquired, tokens, ..
            } => {
                self.names.extend(acquired.keys().cloned());
                self.names.extend(tokens.keys().cloned());
            }
            Op::Reconfigure { semaphores } => {
                self.names.extend(semaphores.iter().map(|s| s.name.clone()));
            }
            Op::NewPeer { .. } | Op::Heartbeat { .. } | Op::RemovePeer { .. } | Op::Expire => {}
        }
    }

    /// The sweep against the model and the expiry properties; the shadow queues and tokens are
    /// brought up to the swept state.
    fn check_sweep(
        &mut self,
        entry: &Entry,
        before: &Observed,
        sweep: &Applied,
        swept: &Core,
        mid: &Observed,
    ) {
        let now = entry.at;
        let expired = &sweep.expired;
        assert_eq!(sweep.outcome, Ok(Outcome::Expire), "{entry}");
        assert!(sweep.granted.is_empty(), "{entry}");
        let model = self.model.sweep(now);
        assert_eq!(expired.peers, model.peers, "{entry}: expired peers");
        assert_eq!(
            sorted(&expired.granted),
            sorted(&model.granted),
            "{entry}: granted by the sweep"
        );
        assert_eq!(expired.grace_ended, model.grace_ended, "{entry}: grace end");
        let names: Vec<(PeerId, String)> = expired
            .names
            .iter()
            .map(|(id, name)| (*id, name.to_string()))
            .collect();
        assert_eq!(names, model.names, "{entry}: names of the expired");

        // Only peers due expire, each once; a due one stays only if the sweep granted it a lease.
        let due: BTreeSet<PeerId> = before
            .peers
            .iter()
            .filter(|peer| peer.expires_in.is_zero())
            .map(|peer| peer.id)
            .collect();
        let removed: BTreeSet<PeerId> = expired.peers.iter().copied().collect();
        assert_eq!(removed.len(), expired.peers.len(), "{entry}: expired twice");
        assert!(removed.is_subset(&due), "{entry}: expired a peer not due");
        for &id in due.difference(&removed) {
            assert!(expired.granted.contains(&id), "{entry}: {id} due, kept");
            assert!(mid.peer(id).is_some_and(|p| !p.expires_in.is_zero()));
        }
        self.expired_total += expired.peers.len() as u64;
        assert_eq!(mid.expired_total, self.expired_total, "{entry}");
        assert!(
            mid.next_deadline.is_none_or(|deadline| deadline > now),
            "{entry}: due after the sweep"
        );

        self.reconcile(entry, mid, &expired.granted);
        self.held = check_tokens(entry, &self.held, self.highest, &BTreeMap::new(), mid);
        self.highest = self
            .highest
            .max(self.held.values().copied().max().unwrap_or(0));
        self.check_state(entry, swept, mid, false);
    }

    /// The operation's answer and grants against the model's.
    fn check_outcome(
        &self,
        entry: &Entry,
        applied: &Applied,
        expected: &Result<Outcome, Error>,
        model_granted: &[PeerId],
    ) {
        match (&applied.outcome, expected) {
            (Ok(Outcome::Acquire { state, .. }), Ok(Outcome::Acquire { state: model, .. })) => {
                assert_eq!(state, model, "{entry}: lock state");
            }
            (Ok(Outcome::Reconfigure(got)), Ok(Outcome::Reconfigure(model))) => {
                assert_eq!(got.added, model.added, "{entry}: added");
                assert_eq!(got.changed, model.changed, "{entry}: changed");
                assert_eq!(got.removed, model.removed, "{entry}: removed");
                assert_eq!(got.cancelled, model.cancelled, "{entry}: cancelled");
                assert_eq!(got.granted, applied.granted, "{entry}: granted twice over");
            }
            (got, model) => assert_eq!(got, model, "{entry}: outcome"),
        }
        assert_eq!(
            sorted(&applied.granted),
            sorted(model_granted),
            "{entry}: granted by the operation"
        );
    }

    /// Each operation's own contract, seen through the views (`mid` is the state after the
    /// sweep, before the operation). Returns the tokens a successful restore brought back.
    fn check_contract(
        &mut self,
        entry: &Entry,
        applied: &Applied,
        mid: &Observed,
        after: &Observed,
    ) -> BTreeMap<(PeerId, String), Token> {
        let now = entry.at;
        let unchanged = match (entry.op, &applied.outcome) {
            (_, Err(error)) => {
                self.check_refusal(entry, error, mid);
                true
            }
            (
                Op::NewPeer {
                    id,
                    expires_at,
                    name,
                },
                Ok(Outcome::NewPeer { created }),
            ) => {
                assert_eq!(*created, mid.peer(*id).is_none(), "{entry}");
                if *created {
                    let peer = after.peer(*id).expect("created");
                    assert!(peer.acquired.is_empty() && peer.pending.is_none());
                    assert_eq!(peer.expires_in, expires_at.saturating_duration_since(now));
                    assert_eq!(&peer.name, name, "{entry}");
                }
                !created
            }
            (Op::RemovePeer { id }, Ok(Outcome::RemovePeer { removed })) => {
                assert_eq!(*removed, mid.peer(*id).is_some(), "{entry}");
                assert!(after.peer(*id).is_none(), "{entry}");
                !removed
            }
            (Op::Heartbeat { id, expires_at }, Ok(Outcome::Heartbeat)) => {
                let expires_in = after.peer(*id).map(|p| p.expires_in);
                assert_eq!(expires_in, Some(expires_at.saturating_duration_since(now)));
                false
            }
            (Op::ReleaseLock { id, semaphore }, Ok(Outcome::ReleaseLock)) => {
                let peer = after.peer(*id).expect("released by a live peer");
                assert_eq!(after.held(*id, semaphore), None, "{entry}");
                assert!(peer.pending.as_ref().is_none_or(|p| &p.0 != semaphore));
                false
            }
            (Op::Acquire { .. }, Ok(Outcome::Acquire { .. })) => {
                self.check_acquire(entry, applied, mid, after);
                false
            }
            (
                Op::Restore {
                    id,
                    expires_at,
                    acquired,
                    tokens,
                    ..
                },
                Ok(Outcome::Restore),
            ) => {
                let peer = after.peer(*id).expect("restored");
                let locks: BTreeMap<String, i64> = peer
                    .acquired
                    .iter()
                    .map(|(name, count, _)| (name.clone(), *count))
                    .collect();
                assert_eq!(&locks, acquired, "{entry}");
                assert_eq!(peer.pending, None, "{entry}");
                assert_eq!(peer.expires_in, expires_at.saturating_duration_since(now));
                let mut restored = BTreeMap::new();
                for (name, _, token) in &peer.acquired {
                    if let Some(given) = tokens.get(name) {
                        assert_eq!(token, given, "{entry}: restored token of {name}");
                        restored.insert((*id, name.clone()), *given);
                    }
                }
                match mid.peer(*id) {
                    // A new peer: its locks may overcommit.
                    None => {
                        for name in acquired.keys() {
                            self.exempt.insert((*id, name.clone()));
                        }
                    }
                    // A live one is only prolonged.
                    Some(old) => assert_eq!(old.acquired, peer.acquired, "{entry}"),
                }
                return restored;
            }
            (Op::Reconfigure { .. }, Ok(Outcome::Reconfigure(_))) => {
                // Held locks stay, above a lowered `max` too: exempt from capacity from now on.
                for peer in &after.peers {
                    for (name, _, _) in &peer.acquired {
                        self.exempt.insert((peer.id, name.clone()));
                    }
                }
                false
            }
            (Op::Expire, Ok(Outcome::Expire)) => true,
            (op, outcome) => panic!("{entry}: {op:?} answered {outcome:?}"),
        };
        if unchanged {
            assert_eq!(after, mid, "{entry}: changed the state");
        }
        BTreeMap::new()
    }

    /// Every refusal has a reason the views show.
    fn check_refusal(&self, entry: &Entry, error: &Error, mid: &Observed) {
        let configured = |name: &str| mid.stats.iter().any(|s| s.name == name);
        let max = |name: &str| {
            mid.stats
                .iter()
                .find(|s| s.name == name)
                .map_or(i64::MAX, |s| s.max)
        };
        let peer = entry.op.peer().and_then(|id| mid.peer(id));
        match (entry.op, error) {
            (_, Error::UnknownPeer | Error::ExpiredPeer) => assert!(peer.is_none(), "{entry}"),
            (Op::Acquire { semaphore, .. }, Error::UnknownSemaphore) => {
                assert!(!configured(semaphore), "{entry}");
            }
            (Op::Acquire { count, .. }, Error::InvalidCount) => assert!(*count < 1, "{entry}"),
            (
                Op::Acquire {
                    semaphore, count, ..
                },
                Error::CountTooLarge { .. },
            ) => {
                assert!(*count > max(semaphore), "{entry}");
            }
            (
                Op::Acquire {
                    semaphore, count, ..
                },
                Error::LockCountChange { .. },
            ) => {
                let peer = peer.expect("a live peer");
                let held = mid.held(peer.id, semaphore);
                assert!(
                    held.is_some_and(|held| *count > held)
                        || peer
                            .pending
                            .as_ref()
                            .is_some_and(|p| &p.0 == semaphore && p.1 != *count),
                    "{entry}"
                );
            }
            (Op::Acquire { semaphore, .. }, Error::SecondPendingLock) => {
                let pending = peer.and_then(|p| p.pending.as_ref());
                assert!(pending.is_some_and(|p| &p.0 != semaphore), "{entry}");
            }
            (Op::Acquire { .. }, Error::LockHierarchyViolation { .. } | Error::CountOverflow) => {}
            (Op::ReleaseLock { semaphore, .. }, Error::UnknownSemaphore) => {
                assert!(!configured(semaphore), "{entry}");
            }
            (Op::Restore { acquired, .. }, Error::UnknownSemaphore) => {
                assert!(acquired.keys().any(|s| !configured(s)), "{entry}");
            }
            (Op::Restore { acquired, .. }, Error::InvalidCount) => {
                assert!(acquired.values().any(|&c| c < 1), "{entry}");
            }
            (Op::Restore { .. }, Error::RestoreConflict) => assert!(peer.is_some(), "{entry}"),
            (Op::Restore { .. }, Error::CountOverflow) => {}
            (Op::Restore { tokens, .. }, Error::InvalidFencingToken(token)) => {
                assert!(*token > MAX_TOKEN && tokens.values().any(|t| t == token));
            }
            (op, error) => panic!("{entry}: {op:?} refused with {error:?}"),
        }
    }

    fn check_acquire(
        &mut self,
        entry: &Entry,
        applied: &Applied,
        mid: &Observed,
        after: &Observed,
    ) {
        let Op::Acquire {
            id,
            ref semaphore,
            count,
            expires_at,
        } = *entry.op
        else {
            unreachable!("an acquire");
        };
        let Ok(Outcome::Acquire { state, token }) = applied.outcome else {
            unreachable!("an acquisition");
        };
        let previous = mid.peer(id).expect("acquired by a live peer");
        let had_lock = mid.held(id, semaphore).is_some()
            || previous.pending.as_ref().is_some_and(|p| &p.0 == semaphore);
        if !had_lock {
            // A new lock: only strictly below the peer's current level.
            let level = self.model.known(semaphore).expect("configured").level;
            let current = previous
                .acquired
                .iter()
                .map(|(name, _, _)| self.model.known(name).expect("known").level)
                .min();
            assert!(current.is_none_or(|c| level < c), "{entry}: hierarchy");
            if state == LockState::Pending {
                self.queues
                    .entry(semaphore.clone())
                    .or_default()
                    .push((id, count));
            }
        }
        let peer = after.peer(id).expect("live");
        match state {
            LockState::Acquired => {
                assert_eq!(after.held(id, semaphore), Some(count), "{entry}");
                let held = peer.acquired.iter().find(|(name, _, _)| name == semaphore);
                assert_eq!(token, held.map(|&(_, _, token)| token), "{entry}: token");
            }
            LockState::Pending => {
                assert_eq!(peer.pending, Some((semaphore.clone(), count)), "{entry}");
                assert_eq!(token, None, "{entry}");
            }
        }
        if let Some(expires_at) = expires_at {
            let lease = expires_at.saturating_duration_since(entry.at);
            assert_eq!(peer.expires_in, lease, "{entry}: deadline");
        }

        // The same request again changes nothing and answers the same.
        let mut copy = self.core.clone();
        let again = copy
            .acquire(id, semaphore, count, None, entry.at)
            .expect("a repeat");
        assert_eq!(
            (again.state, again.token),
            (state, token),
            "{entry}: repeat"
        );
        assert!(again.granted.is_empty(), "{entry}: a repeat granted");
        assert_eq!(
            &Observed::of(&copy, entry.at),
            after,
            "{entry}: a repeat changed"
        );
    }

    /// Brings the shadow queues and the exempt locks up to `after`, and checks FIFO: waiters
    /// leave a queue either granted (only past nobody still waiting) or dropped; `granted` is
    /// what the core said it granted.
    fn reconcile(&mut self, entry: &Entry, after: &Observed, granted: &[PeerId]) {
        let mut seen = Vec::new();
        for (sem, queue) in &mut self.queues {
            let mut still_waiting = false;
            queue.retain(|&(id, count)| {
                let peer = after.peer(id);
                let pending = peer.and_then(|p| p.pending.as_ref());
                if pending.is_some_and(|p| &p.0 == sem && p.1 == count) {
                    still_waiting = true;
                    return true;
                }
                if after.held(id, sem) == Some(count) {
                    assert!(!still_waiting, "{entry}: {id} granted {sem} past a waiter");
                    seen.push(id);
                }
                false
            });
        }
        assert_eq!(sorted(granted), sorted(&seen), "{entry}: granted list");
        self.exempt
            .retain(|(id, sem)| after.held(*id, sem).is_some());
    }

    /// The invariants of one state (`observed` of `core`), and its agreement with the model;
    /// with `queries`, also `lock_state` and `is_acquired` of every live peer (and the entry's)
    /// on every name.
    fn check_state(&self, entry: &Entry, core: &Core, observed: &Observed, queries: bool) {
        let now = entry.at;
        assert_eq!(observed.num_peers, observed.peers.len(), "{entry}");
        assert!(
            observed.peers.windows(2).all(|w| w[0].id < w[1].id),
            "{entry}: listing order"
        );
        let configured: Vec<&ModelSemaphore> = self
            .model
            .semaphores
            .iter()
            .filter(|s| !s.removed)
            .collect();
        assert_eq!(
            observed.stats.len(),
            configured.len(),
            "{entry}: stats rows"
        );
        let grace = self.model.grace_until.is_some();
        for (stats, sem) in observed.stats.iter().zip(configured) {
            let name = &stats.name;
            assert_eq!(
                (name, stats.max, stats.level),
                (&sem.name, sem.max, sem.level),
                "{entry}: settings"
            );
            let (mut acquired, mut exempt, mut pending) = (0i128, 0i128, 0i128);
            for peer in &observed.peers {
                for (_, count, _) in peer.acquired.iter().filter(|(n, _, _)| n == name) {
                    assert!(*count >= 1, "{entry}");
                    acquired += i128::from(*count);
                    if self.exempt.contains(&(peer.id, name.clone())) {
                        exempt += i128::from(*count);
                    }
                }
                if let Some((_, count)) = peer.pending.as_ref().filter(|p| &p.0 == name) {
                    assert!(*count >= 1, "{entry}");
                    pending += i128::from(*count);
                }
            }
            assert_eq!(
                i128::from(stats.acquired),
                acquired,
                "{entry}: sum of {name}"
            );
            assert_eq!(
                i128::from(stats.pending),
                pending,
                "{entry}: pending of {name}"
            );
            assert_eq!(
                acquired,
                self.model.acquired_sum(name),
                "{entry}: model {name}"
            );
            assert_eq!(
                pending,
                self.model.pending_sum(name),
                "{entry}: model {name}"
            );
            assert!(
                acquired - exempt <= i128::from(stats.max),
                "{entry}: capacity of {name}"
            );
            assert_eq!(
                core.remainder(name),
                Ok(stats.max - stats.acquired),
                "{entry}"
            );
            let queue = self.queues.get(name).map_or(&[][..], Vec::as_slice);
            let queued: i128 = queue.iter().map(|&(_, c)| i128::from(c)).sum();
            assert_eq!(queued, pending, "{entry}: shadow queue of {name}");
            assert_eq!(
                stats.longest_pending.is_some(),
                !queue.is_empty(),
                "{entry}"
            );
            if let Some(&(head, count)) = queue.first() {
                let fits = i128::from(stats.acquired) + i128::from(count) <= i128::from(stats.max);
                assert!(
                    !fits || grace,
                    "{entry}: the head {head} of {name} fits but waits"
                );
            }
        }
        for name in &self.names {
            if !observed.stats.iter().any(|s| &s.name == name) {
                assert_eq!(
                    core.remainder(name),
                    Err(Error::UnknownSemaphore),
                    "{entry}: {name}"
                );
            }
        }

        // Peers, against the model.
        assert_eq!(observed.num_peers, self.model.peers.len(), "{entry}: peers");
        for (&id, model) in &self.model.peers {
            let peer = observed.peer(id).unwrap_or_else(|| panic!("{entry}: {id}"));
            let acquired: BTreeMap<String, i64> = peer
                .acquired
                .iter()
                .map(|(name, count, _)| (name.clone(), *count))
                .collect();
            assert_eq!(acquired, model.acquired, "{entry}: locks of {id}");
            let pending = model.pending.as_ref().map(|(s, c, _)| (s.clone(), *c));
            assert_eq!(peer.pending, pending, "{entry}: pending lock of {id}");
            if let Some((sem, _)) = &peer.pending {
                assert!(
                    !acquired.contains_key(sem),
                    "{entry}: {id} waits for a held lock"
                );
            }
            let expires_in = model.expires_at.saturating_duration_since(now);
            assert_eq!(peer.expires_in, expires_in, "{entry}: deadline of {id}");
            assert_eq!(peer.name, model.name, "{entry}: name of {id}");
        }
        let mut ids: BTreeSet<PeerId> = self.model.peers.keys().copied().collect();
        ids.extend(entry.op.peer());
        for id in ids.into_iter().filter(|_| queries) {
            assert_eq!(
                core.is_acquired(id),
                self.model.is_acquired(id),
                "{entry}: is_acquired({id})"
            );
            for name in &self.names {
                assert_eq!(
                    core.lock_state(id, name),
                    self.model.lock_state(id, name),
                    "{entry}: lock_state({id}, {name})"
                );
            }
        }
        assert_eq!(
            observed.expired_remembered,
            self.model.expired.len(),
            "{entry}: expired ids remembered"
        );

        // The next deadline: the earliest peer's, or the end of the grace period.
        let grace_left = self
            .model
            .grace_until
            .map(|end| end.saturating_duration_since(now));
        assert_eq!(observed.grace_remaining, grace_left, "{entry}: grace");
        let earliest = observed
            .peers
            .iter()
            .map(|p| p.expires_in)
            .chain(grace_left)
            .min();
        assert_eq!(
            observed
                .next_deadline
                .map(|d| d.saturating_duration_since(now)),
            earliest,
            "{entry}: next deadline"
        );
        for &token in observed.tokens().values() {
            assert!(
                token < observed.next_token,
                "{entry}: token above the counter"
            );
        }
    }
}

/// Checks the token properties (module docs) from `before` to `after` and returns the tokens
/// held after.
#[track_caller]
fn check_tokens(
    entry: &Entry,
    before: &BTreeMap<(PeerId, String), Token>,
    highest_before: Token,
    restored: &BTreeMap<(PeerId, String), Token>,
    after: &Observed,
) -> BTreeMap<(PeerId, String), Token> {
    let tokens = after.tokens();
    // New grants of one entry are distinct; a restored token is the client's word and may
    // repeat one granted before.
    let mut granted = BTreeSet::new();
    for (lock, &token) in &tokens {
        assert!(
            token < after.next_token,
            "{entry}: {lock:?} above the counter"
        );
        match before.get(lock) {
            Some(&earlier) => assert_eq!(token, earlier, "{entry}: {lock:?} changed its token"),
            None if restored.get(lock) == Some(&token) => {}
            None => {
                assert!(
                    token > highest_before,
                    "{entry}: {lock:?} granted {token}, not above {highest_before}"
                );
                assert!(
                    granted.insert(token),
                    "{entry}: token {token} granted twice"
                );
            }
        }
    }
    tokens
}

fn sorted(ids: &[PeerId]) -> Vec<PeerId> {
    let mut ids = ids.to_vec();
    ids.sort_unstable();
    ids
}

/// A semaphore of the model: its settings as they are now, and whether a reconfiguration
/// removed it.
#[derive(Debug, Clone)]
struct ModelSemaphore {
    name: String,
    max: i64,
    level: i32,
    removed: bool,
}

#[derive(Debug, Clone)]
struct ModelPeer {
    expires_at: Time,
    acquired: BTreeMap<String, i64>,
    /// Semaphore, count and arrival number.
    pending: Option<(String, i64, u64)>,
    /// The lease the pending lock's request asked for: at the grant, the deadline becomes at
    /// least the grant's time plus this.
    lease: Option<Duration>,
    name: Option<String>,
}

/// The reference: semaphores in configuration order and peers, every figure derived by a scan.
#[derive(Debug, Default)]
struct Model {
    semaphores: Vec<ModelSemaphore>,
    peers: BTreeMap<PeerId, ModelPeer>,
    arrivals: u64,
    /// The end of the grace period: until then nothing is granted.
    grace_until: Option<Time>,
    /// Ids of expired peers and when they are forgotten.
    expired: BTreeMap<PeerId, Time>,
}

/// What the model's sweep did.
struct ModelSweep {
    peers: Vec<PeerId>,
    granted: Vec<PeerId>,
    grace_ended: bool,
    names: Vec<(PeerId, String)>,
}

impl Model {
    fn new(settings: &[SemaphoreSettings]) -> Model {
        let mut model = Model::default();
        for s in settings {
            match model.position(&s.name) {
                Some(i) => (model.semaphores[i].max, model.semaphores[i].level) = (s.max, s.level),
                None => model.semaphores.push(ModelSemaphore {
                    name: s.name.clone(),
                    max: s.max,
                    level: s.level,
                    removed: false,
                }),
            }
        }
        model
    }

    fn position(&self, name: &str) -> Option<usize> {
        self.semaphores.iter().position(|s| s.name == name)
    }

    /// A semaphore configured or removed (still known to the peers that hold it).
    fn known(&self, name: &str) -> Option<&ModelSemaphore> {
        self.semaphores.iter().find(|s| s.name == name)
    }

    fn acquired_sum(&self, name: &str) -> i128 {
        self.peers
            .values()
            .filter_map(|p| p.acquired.get(name))
            .map(|&c| i128::from(c))
            .sum()
    }

    fn pending_sum(&self, name: &str) -> i128 {
        self.peers
            .values()
            .filter_map(|p| p.pending.as_ref())
            .filter(|p| p.0 == name)
            .map(|p| i128::from(p.1))
            .sum()
    }

    fn unknown(&self, id: PeerId) -> Error {
        if self.expired.contains_key(&id) {
            Error::ExpiredPeer
        } else {
            Error::UnknownPeer
        }
    }

    fn lock_state(&self, id: PeerId, name: &str) -> Result<Option<LockState>, Error> {
        let sem = self.known(name).ok_or(Error::UnknownSemaphore)?;
        let peer = self.peers.get(&id).ok_or_else(|| self.unknown(id))?;
        if peer.acquired.contains_key(name) {
            Ok(Some(LockState::Acquired))
        } else if peer.pending.as_ref().is_some_and(|p| p.0 == name) {
            Ok(Some(LockState::Pending))
        } else if sem.removed {
            Err(Error::UnknownSemaphore)
        } else {
            Ok(None)
        }
    }

    fn is_acquired(&self, id: PeerId) -> Result<bool, Error> {
        let peer = self.peers.get(&id).ok_or_else(|| self.unknown(id))?;
        Ok(peer.pending.is_none())
    }

    /// Grants the oldest pending locks of every semaphore while they fit, at `now`.
    fn promote(&mut self, now: Time) -> Vec<PeerId> {
        let mut granted = Vec::new();
        if self.grace_until.is_some() {
            return granted;
        }
        for i in 0..self.semaphores.len() {
            let (name, max) = (self.semaphores[i].name.clone(), self.semaphores[i].max);
            loop {
                let oldest = self
                    .peers
                    .iter()
                    .filter_map(|(&id, p)| p.pending.clone().map(|q| (id, q)))
                    .filter(|(_, q)| q.0 == name)
                    .min_by_key(|(_, q)| q.2);
                let Some((id, (_, count, _))) = oldest else {
                    break;
                };
                if self.acquired_sum(&name) + i128::from(count) > i128::from(max) {
                    break;
                }
                let peer = self.peers.get_mut(&id).expect("a waiter");
                peer.pending = None;
                peer.acquired.insert(name.clone(), count);
                if let Some(lease) = peer.lease.take() {
                    peer.expires_at = peer.expires_at.max(now + lease);
                }
                granted.push(id);
            }
        }
        granted
    }

    /// Expires the overdue peers one at a time, earliest deadline (then id) first, each as if
    /// at its deadline: what it frees is granted then. Then ends a grace period that is over.
    fn sweep(&mut self, now: Time) -> ModelSweep {
        self.expired.retain(|_, forget_at| *forget_at > now);
        let mut sweep = ModelSweep {
            peers: Vec::new(),
            granted: Vec::new(),
            grace_ended: false,
            names: Vec::new(),
        };
        while let Some((deadline, id)) = self
            .peers
            .iter()
            .map(|(&id, p)| (p.expires_at, id))
            .filter(|&(deadline, _)| deadline <= now)
            .min()
        {
            let peer = self.peers.remove(&id).expect("listed");
            if let Some(name) = peer.name {
                sweep.names.push((id, name));
            }
            self.expired.insert(id, now + REMEMBER_FOR);
            sweep.peers.push(id);
            let granted = self.promote(deadline);
            sweep.granted.extend(granted);
        }
        sweep.granted.retain(|id| self.peers.contains_key(id));
        if self.grace_until.is_some_and(|end| end <= now) {
            self.grace_until = None;
            sweep.grace_ended = true;
            let granted = self.promote(now);
            sweep.granted.extend(granted);
        }
        sweep
    }

    /// The operation, after the sweep. `held` holds the core's tokens after the sweep: the
    /// model does not track tokens, but a restore of a live peer must name the ones it holds.
    /// Returns the answer (an acquire's token is not the model's business: `None`) and the
    /// peers granted.
    fn apply(
        &mut self,
        at: Time,
        op: &Op,
        held: &BTreeMap<(PeerId, String), Token>,
    ) -> (Result<Outcome, Error>, Vec<PeerId>) {
        let outcome = match op {
            Op::NewPeer {
                id,
                expires_at,
                name,
            } => {
                let created = !self.peers.contains_key(id);
                if created {
                    self.expired.remove(id);
                    self.peers.insert(
                        *id,
                        ModelPeer {
                            expires_at: *expires_at,
                            acquired: BTreeMap::new(),
                            pending: None,
                            lease: None,
                            name: name.clone(),
                        },
                    );
                }
                Ok(Outcome::NewPeer { created })
            }
            Op::Heartbeat { id, expires_at } => match self.peers.get_mut(id) {
                Some(peer) => {
                    peer.expires_at = *expires_at;
                    Ok(Outcome::Heartbeat)
                }
                None => Err(self.unknown(*id)),
            },
            Op::RemovePeer { id } => Ok(Outcome::RemovePeer {
                removed: self.peers.remove(id).is_some(),
            }),
            Op::Acquire {
                id,
                semaphore,
                count,
                expires_at,
            } => self
                .acquire(*id, semaphore, *count, *expires_at, at)
                .map(|state| Outcome::Acquire { state, token: None }),
            Op::ReleaseLock { id, semaphore } => self
                .release_lock(*id, semaphore)
                .map(|()| Outcome::ReleaseLock),
            Op::Restore {
                id,
                expires_at,
                acquired,
                tokens,
                name,
            } => self
                .restore(*id, *expires_at, acquired, tokens, held)
                .map(|()| {
                    if let (Some(peer), Some(name)) = (self.peers.get_mut(id), name) {
                        peer.name = Some(name.clone());
                    }
                    Outcome::Restore
                }),
            Op::Expire => Ok(Outcome::Expire),
            Op::Reconfigure { semaphores } => {
                Ok(Outcome::Reconfigure(self.reconfigure(semaphores)))
            }
        };
        let granted = self.promote(at);
        match outcome {
            Ok(Outcome::Reconfigure(mut result)) => {
                result.granted.clone_from(&granted);
                (Ok(Outcome::Reconfigure(result)), granted)
            }
            outcome => (outcome, granted),
        }
    }

    fn acquire(
        &mut self,
        id: PeerId,
        name: &str,
        count: i64,
        expires_at: Option<Time>,
        now: Time,
    ) -> Result<LockState, Error> {
        let sem = self.known(name).ok_or(Error::UnknownSemaphore)?.clone();
        let Some(peer) = self.peers.get(&id).cloned() else {
            return Err(if sem.removed {
                Error::UnknownSemaphore
            } else {
                self.unknown(id)
            });
        };
        if count < 1 {
            return Err(Error::InvalidCount);
        }
        let state = if let Some(&held) = peer.acquired.get(name) {
            if count > held {
                return Err(Error::LockCountChange {
                    held,
                    requested: count,
                });
            }
            let peer = self.peers.get_mut(&id).expect("live");
            peer.acquired.insert(name.to_owned(), count);
            LockState::Acquired
        } else if let Some((pending, pending_count, _)) = &peer.pending {
            if pending != name {
                return Err(Error::SecondPendingLock);
            }
            if *pending_count != count {
                return Err(Error::LockCountChange {
                    held: *pending_count,
                    requested: count,
                });
            }
            if let Some(expires_at) = expires_at {
                self.peers.get_mut(&id).expect("live").lease =
                    Some(expires_at.saturating_duration_since(now));
            }
            LockState::Pending
        } else {
            if sem.removed {
                return Err(Error::UnknownSemaphore);
            }
            if count > sem.max {
                return Err(Error::CountTooLarge {
                    count,
                    max: sem.max,
                });
            }
            let current = peer
                .acquired
                .keys()
                .map(|held| self.known(held).expect("known").level)
                .min();
            if let Some(current) = current
                && sem.level >= current
            {
                return Err(Error::LockHierarchyViolation {
                    level: sem.level,
                    current,
                });
            }
            let pending = self.pending_sum(name);
            let demand = self.acquired_sum(name) + pending + i128::from(count);
            if demand <= i128::from(sem.max) && self.grace_until.is_none() {
                let peer = self.peers.get_mut(&id).expect("live");
                peer.acquired.insert(name.to_owned(), count);
                LockState::Acquired
            } else {
                if pending + i128::from(count) > i128::from(i64::MAX) {
                    return Err(Error::CountOverflow);
                }
                self.arrivals += 1;
                let arrival = self.arrivals;
                let peer = self.peers.get_mut(&id).expect("live");
                peer.pending = Some((name.to_owned(), count, arrival));
                peer.lease = expires_at.map(|at| at.saturating_duration_since(now));
                LockState::Pending
            }
        };
        if let Some(expires_at) = expires_at {
            self.peers.get_mut(&id).expect("live").expires_at = expires_at;
        }
        Ok(state)
    }

    fn release_lock(&mut self, id: PeerId, name: &str) -> Result<(), Error> {
        self.known(name).ok_or(Error::UnknownSemaphore)?;
        let unknown = self.unknown(id);
        let peer = self.peers.get_mut(&id).ok_or(unknown)?;
        peer.acquired.remove(name);
        if peer.pending.as_ref().is_some_and(|p| p.0 == name) {
            peer.pending = None;
            peer.lease = None;
        }
        Ok(())
    }

    fn restore(
        &mut self,
        id: PeerId,
        expires_at: Time,
        locks: &BTreeMap<String, i64>,
        tokens: &BTreeMap<String, Token>,
        held: &BTreeMap<(PeerId, String), Token>,
    ) -> Result<(), Error> {
        for (name, &count) in locks {
            self.known(name).ok_or(Error::UnknownSemaphore)?;
            if count < 1 {
                return Err(Error::InvalidCount);
            }
            if self.acquired_sum(name) + i128::from(count) > i128::from(i64::MAX) {
                return Err(Error::CountOverflow);
            }
            if let Some(&token) = tokens.get(name).filter(|&&token| token > MAX_TOKEN) {
                return Err(Error::InvalidFencingToken(token));
            }
        }
        if let Some(peer) = self.peers.get_mut(&id) {
            let same_tokens = locks.keys().all(|name| {
                tokens
                    .get(name)
                    .is_none_or(|token| held.get(&(id, name.clone())) == Some(token))
            });
            if peer.pending.is_some() || &peer.acquired != locks || !same_tokens {
                return Err(Error::RestoreConflict);
            }
            peer.expires_at = expires_at;
            return Ok(());
        }
        self.expired.remove(&id);
        self.peers.insert(
            id,
            ModelPeer {
                expires_at,
                acquired: locks.clone(),
                pending: None,
                lease: None,
                name: None,
            },
        );
        Ok(())
    }

    /// The new configuration: settings replaced in place, new names appended, missing ones
    /// removed; waiters that can never be granted dropped. Grants come after, from `apply`.
    fn reconfigure(&mut self, settings: &[SemaphoreSettings]) -> Reconfigured {
        let mut result = Reconfigured::default();
        let mut configured = vec![false; self.semaphores.len()];
        for s in settings {
            match self.position(&s.name) {
                Some(i) => {
                    let sem = &mut self.semaphores[i];
                    if sem.removed {
                        result.added.push(s.name.clone());
                    } else if (sem.max, sem.level) != (s.max, s.level) {
                        result.changed.push(s.name.clone());
                    }
                    (sem.max, sem.level, sem.removed) = (s.max, s.level, false);
                    configured[i] = true;
                }
                None => {
                    result.added.push(s.name.clone());
                    self.semaphores.push(ModelSemaphore {
                        name: s.name.clone(),
                        max: s.max,
                        level: s.level,
                        removed: false,
                    });
                    configured.push(true);
                }
            }
        }
        for (i, configured) in configured.into_iter().enumerate() {
            if !configured && !self.semaphores[i].removed {
                self.semaphores[i].removed = true;
                let name = self.semaphores[i].name.clone();
                let held = i64::try_from(self.acquired_sum(&name)).expect("a sum in range");
                result.removed.push((name, held));
            }
            let sem = self.semaphores[i].clone();
            let mut hopeless: Vec<(u64, PeerId)> = self
                .peers
                .iter()
                .filter_map(|(&id, p)| {
                    let (name, count, arrival) = p.pending.as_ref()?;
                    (name == &sem.name && (sem.removed || *count > sem.max))
                        .then_some((*arrival, id))
                })
                .collect();
            hopeless.sort_unstable();
            for (_, id) in hopeless {
                let peer = self.peers.get_mut(&id).expect("a waiter");
                peer.pending = None;
                peer.lease = None;
                result.cancelled.push(id);
            }
        }
        result
    }
}

/// Settings rows for drivers: `(name, max, level)`.
pub fn settings(rows: &[(&str, i64, i32)]) -> Vec<SemaphoreSettings> {
    rows.iter()
        .map(|&(name, max, level)| SemaphoreSettings {
            name: name.to_owned(),
            max,
            level,
        })
        .collect()
}
