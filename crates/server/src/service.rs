//! The shared state of a running server: the [`Core`] behind one `parking_lot` mutex, plus the
//! wake-ups around it (one condition variable per waiting peer, one for the expiry thread).
//!
//! Every operation locks, reads the clock once, sweeps expired peers, calls the core and wakes
//! exactly the waiters whose state changed: a release among 500 waiters wakes the one it grants,
//! not 500. No I/O happens under the lock; parsing and answering are `workers.rs`'s job.
//!
//! An acquire never blocks: a long poll that must wait gets a [`Wait`], and only
//! [`Service::wait`] blocks on it, on a thread of the waiting pool (`waiting.rs`). So the
//! workers that serve releases, heartbeats and scrapes are never taken by waiting clients.
//!
//! Every change is an [`Op`] with its deadlines counted from the moment it happens. On a single
//! server [`Service::change`] applies it at once, at the clock's now; on a cluster member it
//! goes through the members' log (`replication.rs`) and is applied, here and on every member,
//! when committed, at the log's time. Only the single server sweeps expired peers on its own;
//! a member expires them when the leader's expiry entry is applied.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use std::ops::{Deref, DerefMut};

use parking_lot::{Condvar, Mutex, MutexGuard};

use crate::clock::Clock;
use crate::error::Error;
use crate::lease_watch::LeaseWatch;
use crate::replication::Replication;
use throttle_core::{Applied, Op, Outcome, Reconfigured};
use throttle_core::{Core, Expired, LockState, PeerId, SemaphoreSettings, Time, Token};

/// Peer ids stay below 2^53 so that JavaScript clients can hold them in a number.
const PEER_ID_LIMIT: u64 = 1 << 53;

/// How often a cluster member's expiry thread looks whether it leads, and what is due: a
/// change of leader does not wake it.
const MEMBER_POLL: Duration = Duration::from_millis(50);

/// A request for a lock, from routing (`routes.rs`) to [`Service::acquire`]. Named fields,
/// because two of them are durations that a positional call could swap unnoticed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acquire {
    /// The peer that asks.
    pub peer: PeerId,
    /// The semaphore's name, percent-decoded.
    pub semaphore: String,
    /// At least 1; checked by the core.
    pub count: i64,
    /// The lease to give the peer: from now, and if the lock queues, again from its grant.
    pub expires_in: Option<Duration>,
    /// How long the request may wait for the grant (a long poll); `None` answers at once.
    pub block_for: Option<Duration>,
}

/// A restore, from routing to [`Service::restore`]: a client re-creates its peer with the
/// locks it holds (semantics 6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restore {
    /// The peer to re-create, with the id the client still holds.
    pub peer: PeerId,
    /// The peer's lease, from now.
    pub expires_in: Duration,
    /// The acquired locks: semaphore to count.
    pub acquired: BTreeMap<String, i64>,
    /// Fencing tokens of (some of) the restored locks; every name is one of `acquired`.
    pub tokens: BTreeMap<String, Token>,
    /// The holder's name, if it gives one.
    pub name: Option<String>,
}

/// The answer of [`Service::acquire`].
#[derive(Debug, PartialEq, Eq)]
pub enum Acquired {
    /// Answer with this now.
    Now(Answer),
    /// Pending, and the request may wait: hand this to [`Service::wait`].
    Wait(Wait),
}

/// What an acquire answers: the lock is held, with its fencing token, or still pending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Acquired(Token),
    Pending,
}

/// A long poll that waits for its lock: what [`Service::wait`] needs to know. Only
/// [`Service::acquire`] makes one, for a lock it found pending.
#[derive(Debug, PartialEq, Eq)]
pub struct Wait {
    peer: PeerId,
    semaphore: String,
    deadline: Instant,
}

impl Wait {
    /// The peer that waits.
    pub fn peer(&self) -> PeerId {
        self.peer
    }
}

/// Counters kept beside the core, for the metrics.
#[derive(Debug, Default, Clone, Copy)]
pub struct LongPolls {
    /// Requests waiting right now.
    pub waiting: usize,
    /// Long polls answered at once because no waiting thread could take them, since start.
    pub refused: u64,
}

/// The state shared by all worker threads and the expiry thread.
pub struct Service {
    state: Mutex<State>,
    /// Wakes the expiry thread when a deadline earlier than the one it sleeps for appears.
    expiry: Condvar,
    /// Live peers at most: a flood of `new_peer` must not exhaust memory.
    max_peers: usize,
    /// The longest lease granted, for the state file's marker (`persistence.rs`).
    leases: Arc<LeaseWatch>,
    /// Where "now" comes from for the core, on a single server.
    clock: Clock,
    /// Set on a cluster member: changes go through the members' log.
    replication: OnceLock<Replication>,
}

/// The state, locked for the expiry thread: it expires what is due and sleeps on the
/// condition variable that `Service::rearm_expiry` signals when an earlier deadline appears.
pub struct ExpiryWatch<'a> {
    state: Locked<'a>,
    expiry: &'a Condvar,
    clock: Clock,
    replication: Option<&'a Replication>,
}

/// When the expiry thread should look again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alarm {
    /// At the earliest deadline (a peer's, or the end of the grace period).
    At(Instant),
    /// Only when woken: no peer exists, so nothing can expire.
    Never,
    /// The server shuts down: the thread ends.
    Stop,
}

impl ExpiryWatch<'_> {
    /// Releases the locks of every overdue peer, wakes whom that concerns, and says when
    /// there is work again. The alarm is recorded, so a request that moves the earliest
    /// deadline before it knows to wake the thread.
    pub fn expire_due(&mut self) -> Alarm {
        if self.state.shutting_down {
            return Alarm::Stop;
        }
        if let Some(replication) = self.replication {
            return self.propose_due(replication);
        }
        self.state.sweep(self.clock.now());
        self.state.expiry_alarm = self.state.core.next_deadline();
        match self.state.expiry_alarm {
            Some(deadline) => Alarm::At(self.clock.instant(deadline)),
            None => Alarm::Never,
        }
    }

    /// On a cluster member: only the leader expires peers, by proposing an expiry entry at the
    /// earliest deadline of the log's time; every member expires them when it applies that
    /// entry, whose apply wakes this thread again (`Service::apply_committed`).
    fn propose_due(&mut self, replication: &Replication) -> Alarm {
        let poll = Instant::now() + MEMBER_POLL;
        let Some(clock) = replication.leader_clock() else {
            // A follower expires nothing: no deadline is earlier than this alarm, so applied
            // entries never wake the thread; it looks again at the next poll.
            self.state.expiry_alarm = Some(Time::ZERO);
            return Alarm::At(poll);
        };
        // Without an alarm, the next applied entry with a deadline wakes the thread.
        self.state.expiry_alarm = None;
        let Some(deadline) = self.state.core.next_deadline() else {
            return Alarm::At(poll);
        };
        if deadline.since_epoch() <= clock.now() {
            replication.propose(&Op::Expire);
            return Alarm::At(poll);
        }
        self.state.expiry_alarm = Some(deadline);
        Alarm::At(clock.instant(deadline.since_epoch()).min(poll))
    }

    /// Sleeps, with the lock released, until the alarm or until woken (an earlier deadline,
    /// or shutdown). Wake-ups may come early: the caller looks again either way.
    pub fn sleep(&mut self, alarm: Alarm) {
        match alarm {
            Alarm::At(deadline) => {
                self.expiry.wait_until(&mut self.state.guard, deadline);
            }
            Alarm::Never => self.expiry.wait(&mut self.state.guard),
            Alarm::Stop => {}
        }
    }
}

/// The long polls of one peer.
#[derive(Default)]
struct Waiters {
    wake: Arc<Condvar>,
    /// Waits of this peer running now.
    running: usize,
    /// Numbers each wait of this peer; only the newest waits on. A peer is one client with at
    /// most one pending lock, so an older wait is one it gave up on (say, its HTTP client timed
    /// out and asked again): answered 202 at once, it leaves its thread for others instead of
    /// holding it for the rest of its `block_for`.
    newest: u64,
}

struct State {
    core: Core,
    /// One wake-up per peer with requests waiting in [`Service::wait`].
    waiters: HashMap<PeerId, Waiters>,
    long_polls: LongPolls,
    /// The deadline the expiry thread sleeps until; `None` while it sleeps without one.
    expiry_alarm: Option<Time>,
    shutting_down: bool,
}

/// The state, locked. A panic while it is held aborts the process (see [`AbortOnPanic`]).
struct Locked<'a> {
    guard: MutexGuard<'a, State>,
    _abort: AbortOnPanic,
}

impl Deref for Locked<'_> {
    type Target = State;
    fn deref(&self) -> &State {
        &self.guard
    }
}

impl DerefMut for Locked<'_> {
    fn deref_mut(&mut self) -> &mut State {
        &mut self.guard
    }
}

/// Aborts the process when dropped by a panic. A panic while the bookkeeping is locked may have
/// left it half changed, and serving on from it could hand out more than `max`; a restart (the
/// supervisor's job) and the clients' restore give a consistent state again. Panics anywhere
/// else (parsing, rendering, the HTTP layer) only cost the request they happen in.
struct AbortOnPanic;

impl Drop for AbortOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            log::error!("A panic while the state was locked: aborting to protect the counts");
            std::process::abort();
        }
    }
}

impl State {
    /// Releases the locks of every overdue peer, so no request ever sees a peer past its
    /// deadline, and wakes whom that concerns.
    fn sweep(&mut self, now: Time) {
        self.core.forget_expired(now);
        if self
            .core
            .next_deadline()
            .is_none_or(|deadline| deadline > now)
        {
            return;
        }
        let expired = self.core.expire(now);
        self.log_expired(&expired);
        self.wake(&expired.peers);
        self.wake(&expired.granted);
    }

    /// Logs the peers that expired (debug) and the end of a grace period.
    fn log_expired(&self, expired: &Expired) {
        if log::log_enabled!(log::Level::Debug) {
            for &id in &expired.peers {
                let name = expired.names.iter().find(|(named, _)| *named == id);
                match name {
                    Some((_, name)) => log::debug!("Peer {id} ({name:?}) expired"),
                    None => log::debug!("Peer {id} expired"),
                }
            }
        }
        if expired.grace_ended {
            log::info!(
                "Grace period over: granting new locks again ({} waiting locks granted)",
                expired.granted.len()
            );
        }
    }

    /// Logs a grant (debug), with the holder's name if it has one.
    fn log_grant(&self, id: PeerId, semaphore: &str, token: Token) {
        if log::log_enabled!(log::Level::Debug) {
            match self.core.name_of(id) {
                Some(name) => log::debug!(
                    "Peer {id} ({name:?}) holds {semaphore:?} with fencing token {token}"
                ),
                None => log::debug!("Peer {id} holds {semaphore:?} with fencing token {token}"),
            }
        }
    }

    fn wake(&self, peers: &[PeerId]) {
        for id in peers {
            if let Some(waiters) = self.waiters.get(id) {
                waiters.wake.notify_all();
            }
        }
    }
}

impl Service {
    /// Serves `core`, whose times count on `clock`, with at most `max_peers` peers live.
    pub fn new(core: Core, clock: Clock, max_peers: usize) -> Service {
        Service {
            state: Mutex::new(State {
                core,
                waiters: HashMap::new(),
                long_polls: LongPolls::default(),
                expiry_alarm: None,
                shutting_down: false,
            }),
            expiry: Condvar::new(),
            max_peers,
            leases: Arc::default(),
            clock,
            replication: OnceLock::new(),
        }
    }

    /// The service of a cluster member, to be attached to its log ([`Service::attach`]). Its
    /// core starts empty, without semaphores: everything comes from the log, so that every
    /// member's state is the same.
    pub fn member(max_peers: usize) -> Service {
        Service::new(Core::new([]), Clock::start(), max_peers)
    }

    /// Makes every change go through the members' log from now on. Called once, before any
    /// request is served.
    pub fn attach(&self, replication: Replication) {
        if self.replication.set(replication).is_err() {
            log::error!("The service was attached to a log twice; the second is ignored");
        }
    }

    /// The members' log, on a cluster member.
    pub fn replication(&self) -> Option<&Replication> {
        self.replication.get()
    }

    /// Makes one change: at once, at the clock's now, on a single server; through the log on a
    /// cluster member. `check` runs on the state first (on a member, on its latest applied
    /// state, as an estimate); its refusal changes nothing. `op` counts its deadlines from the
    /// moment it happens ([`Op::later`]). Returns the state, still locked, and what the
    /// operation did.
    fn change(
        &self,
        op: Op,
        check: impl FnOnce(&Core) -> Result<(), Error>,
    ) -> Result<(Locked<'_>, Applied), Error> {
        match self.replication.get() {
            None => {
                let mut state = self.lock();
                let now = self.clock.now();
                state.sweep(now);
                check(&state.core)?;
                let op = op.later(now.since_epoch());
                let applied = state.core.apply(now, &op);
                self.after(&mut state, &op, &applied);
                Ok((state, applied))
            }
            Some(replication) => {
                check(&self.lock().core)?;
                let applied = replication.commit(&op)?;
                Ok((self.lock(), applied))
            }
        }
    }

    /// Applies a committed entry of the members' log at its time (the raft thread's call,
    /// through `replication::Applier`), and wakes whom it concerns.
    pub fn apply_committed(&self, at: Time, op: &Op) -> Applied {
        let mut state = self.lock();
        let applied = state.core.apply(at, op);
        self.after(&mut state, op, &applied);
        applied
    }

    /// Replaces the whole state with a snapshot's, and wakes every waiter to look again.
    pub fn replace_core(&self, core: Core) {
        let mut state = self.lock();
        state.core = core;
        for waiters in state.waiters.values() {
            waiters.wake.notify_all();
        }
        self.expiry.notify_all();
    }

    /// Runs `f` on the core as it is, without a sweep: a snapshot of a member's state.
    pub fn inspect_core<T>(&self, f: impl FnOnce(&Core) -> T) -> T {
        f(&self.lock().core)
    }

    /// What follows every applied operation: the expiries logged, whom it concerns woken, the
    /// expiry thread told of an earlier deadline.
    fn after(&self, state: &mut State, op: &Op, applied: &Applied) {
        state.log_expired(&applied.expired);
        state.wake(&applied.to_wake(op));
        self.rearm_expiry(state);
    }

    /// The time reads see, after expiring what is due on a single server (a cluster member
    /// expires nothing on its own).
    fn settle(&self, state: &mut State) -> Time {
        match self.replication.get() {
            None => {
                let now = self.clock.now();
                state.sweep(now);
                now
            }
            Some(replication) => replication.read_time(),
        }
    }

    /// The longest lease granted so far, with a wake-up when it grows.
    pub fn leases(&self) -> &Arc<LeaseWatch> {
        &self.leases
    }

    /// Applies a reloaded configuration's semaphores to the live state (see
    /// [`Core::reconfigure`]) and wakes the waiters it granted or cancelled.
    pub fn reconfigure(
        &self,
        semaphores: impl IntoIterator<Item = SemaphoreSettings>,
    ) -> Result<Reconfigured, Error> {
        let semaphores: Vec<SemaphoreSettings> = semaphores.into_iter().collect();
        if let Some(replication) = self.replication.get() {
            replication.configured(semaphores.clone());
        }
        let op = Op::Reconfigure { semaphores };
        match self.change(op, |_| Ok(()))?.1.outcome? {
            Outcome::Reconfigure(result) => Ok(result),
            other => unreachable!("a reconfiguration answered {other:?}"),
        }
    }

    /// Creates a peer with a fresh random id and the holder's name, if given.
    pub fn new_peer(&self, expires_in: Duration, name: Option<&str>) -> Result<PeerId, Error> {
        self.leases.note(expires_in);
        loop {
            let id = rand::random_range(0..PEER_ID_LIMIT);
            let op = Op::NewPeer {
                id,
                expires_at: Time::ZERO + expires_in,
                name: name.map(str::to_owned),
            };
            let (_, applied) = self.change(op, |core| self.check_peer_limit(core))?;
            // A taken id (one in 2^53) changed nothing: draw another.
            if applied.outcome? == (Outcome::NewPeer { created: true }) {
                return Ok(id);
            }
        }
    }

    pub fn heartbeat(&self, id: PeerId, expires_in: Duration) -> Result<(), Error> {
        self.leases.note(expires_in);
        let op = Op::Heartbeat {
            id,
            expires_at: Time::ZERO + expires_in,
        };
        self.change(op, |_| Ok(()))?.1.outcome?;
        Ok(())
    }

    /// Removes the peer and its locks. Unknown peers are fine: the result is the same.
    pub fn remove_peer(&self, id: PeerId) -> Result<(), Error> {
        self.change(Op::RemovePeer { id }, |_| Ok(()))?.1.outcome?;
        Ok(())
    }

    /// Asks for a lock. Never blocks: when the lock is pending and the request may wait
    /// (`block_for`), the answer is a [`Wait`] for [`Service::wait`], which only the pool of
    /// waiting threads calls (`waiting.rs`), so a worker serving short requests never waits.
    pub fn acquire(&self, request: Acquire) -> Result<Acquired, Error> {
        let Acquire {
            peer: id,
            semaphore,
            count,
            expires_in,
            block_for,
        } = request;
        if let Some(lease) = expires_in {
            self.leases.note(lease);
        }
        let started = Instant::now();
        let op = Op::Acquire {
            id,
            semaphore: semaphore.clone(),
            count,
            expires_at: expires_in.map(|lease| Time::ZERO + lease),
        };
        let (state, applied) = self.change(op, |_| Ok(()))?;
        let (lock, token) = match applied.outcome? {
            Outcome::Acquire { state, token } => (state, token),
            other => unreachable!("an acquire answered {other:?}"),
        };
        if let Some(token) = token {
            state.log_grant(id, &semaphore, token);
        }
        match block_for {
            Some(block_for)
                if lock == LockState::Pending && !block_for.is_zero() && !state.shutting_down =>
            {
                Ok(Acquired::Wait(Wait {
                    peer: id,
                    semaphore,
                    // A deadline rather than a duration, so early wake-ups don't extend it;
                    // saturating, because `block_for` is capped far below the clock's end.
                    deadline: started.checked_add(block_for).unwrap_or(started),
                }))
            }
            _ => Ok(Acquired::Now(match token {
                Some(token) => Answer::Acquired(token),
                None => Answer::Pending,
            })),
        }
    }

    /// Waits until the lock is granted or the deadline has passed. Ends early if the peer
    /// disappears (`Unknown peer`), if its pending lock is released by another request or a
    /// newer long poll of the same peer starts waiting (both answered as still pending), or at
    /// shutdown. The lease asked for was started at the grant by the core.
    ///
    /// Also ends, answered as still pending, once `client_gone` says the client closed its
    /// connection, so that its thread goes back to the pool; the pending lock stays, as when
    /// `block_for` ends. The caller arranges for [`Service::client_left`] to be called when
    /// that happens, which wakes this wait; `client_gone` is asked at every wake-up.
    pub fn wait(&self, wait: Wait, client_gone: impl Fn() -> bool) -> Result<Answer, Error> {
        let Wait {
            peer: id,
            semaphore,
            deadline,
        } = wait;
        let mut state = self.lock();
        self.settle(&mut state);
        let (waiter, ticket) = {
            let waiters = state.waiters.entry(id).or_default();
            waiters.running += 1;
            waiters.newest += 1;
            // An older wait of the same peer ends now (see `Waiters::newest`).
            waiters.wake.notify_all();
            (waiters.wake.clone(), waiters.newest)
        };
        state.long_polls.waiting += 1;
        let mut timed_out = false;
        let outcome = loop {
            match state.core.lock_state(id, &semaphore) {
                Err(error) => break Err(error),
                Ok(Some(LockState::Acquired)) => match state.core.token(id, &semaphore) {
                    Some(token) => {
                        state.log_grant(id, &semaphore, token);
                        break Ok(Answer::Acquired(token));
                    }
                    None => break Ok(Answer::Pending),
                },
                Ok(None) => break Ok(Answer::Pending),
                Ok(Some(LockState::Pending))
                    if timed_out || state.shutting_down || client_gone() =>
                {
                    break Ok(Answer::Pending);
                }
                Ok(Some(LockState::Pending))
                    if state.waiters.get(&id).is_some_and(|w| w.newest != ticket) =>
                {
                    break Ok(Answer::Pending);
                }
                Ok(Some(LockState::Pending)) => {}
            }
            timed_out = waiter.wait_until(&mut state.guard, deadline).timed_out();
            self.settle(&mut state);
        };
        state.long_polls.waiting -= 1;
        if let Entry::Occupied(mut entry) = state.waiters.entry(id) {
            entry.get_mut().running -= 1;
            if entry.get().running == 0 {
                entry.remove();
            }
        }
        outcome.map_err(Error::from)
    }

    /// Wakes the long polls of `peer` to look whether their client is still there: called by
    /// the HTTP layer's loop when a waiting request's client closes its connection. It takes
    /// the state's lock (so the wake-up cannot fall between a wait's check and its sleep),
    /// which the loop may: nobody holding that lock ever waits for the loop.
    pub fn client_left(&self, peer: PeerId) {
        let state = self.lock();
        if let Some(waiters) = state.waiters.get(&peer) {
            waiters.wake.notify_all();
        }
    }

    /// Counts a long poll answered at once because no thread could wait for it.
    pub fn refused_long_poll(&self) {
        self.lock().long_polls.refused += 1;
    }

    pub fn release_lock(&self, id: PeerId, semaphore: &str) -> Result<(), Error> {
        let op = Op::ReleaseLock {
            id,
            semaphore: semaphore.to_owned(),
        };
        self.change(op, |_| Ok(()))?.1.outcome?;
        Ok(())
    }

    /// Re-creates a peer with its acquired locks, their fencing tokens where given, and the
    /// holder's name (see [`Core::restore`]). A peer that expired may be restored: whether that
    /// is safe is the client's decision, which the `Throttle-Peer-State: expired` header informs.
    pub fn restore(&self, request: &Restore) -> Result<(), Error> {
        let Restore {
            peer: id,
            expires_in,
            ref acquired,
            ref tokens,
            ref name,
        } = *request;
        self.leases.note(expires_in);
        let op = Op::Restore {
            id,
            expires_at: Time::ZERO + expires_in,
            acquired: acquired.clone(),
            tokens: tokens.clone(),
            name: name.clone(),
        };
        let check = |core: &Core| {
            if core.has_peer(id) {
                return Ok(());
            }
            self.check_peer_limit(core)
        };
        self.change(op, check)?.1.outcome?;
        Ok(())
    }

    /// Runs `f` on the current state, after a sweep. For reads: the remainder, the listing of
    /// peers, the metrics. Keep `f` short: every other request waits for it.
    pub fn inspect<T>(&self, f: impl FnOnce(&Core, LongPolls, Time) -> T) -> T {
        let mut state = self.lock();
        let now = self.settle(&mut state);
        f(&state.core, state.long_polls, now)
    }

    /// As [`Service::inspect`], for the answers of the API (`is_acquired`, a peer's state, the
    /// listing of peers, a remainder): on a cluster member only once its state has caught up
    /// with every change acknowledged before, on any member (`Replication::catch_up`).
    pub fn read<T>(&self, f: impl FnOnce(&Core, LongPolls, Time) -> T) -> Result<T, Error> {
        if let Some(replication) = self.replication.get() {
            replication.catch_up()?;
        }
        Ok(self.inspect(f))
    }

    /// The clock the core's times count on.
    pub fn clock(&self) -> Clock {
        self.clock
    }

    /// The expiry thread's hold on the state (see `expiry.rs`, which runs the loop).
    pub fn expiry_watch(&self) -> ExpiryWatch<'_> {
        ExpiryWatch {
            state: self.lock(),
            expiry: &self.expiry,
            clock: self.clock,
            replication: self.replication.get(),
        }
    }

    /// Answers every waiting long poll and stops the expiry thread. Requests arriving after
    /// this are still served, but no longer wait.
    pub fn shut_down(&self) {
        let mut state = self.lock();
        state.shutting_down = true;
        for waiters in state.waiters.values() {
            waiters.wake.notify_all();
        }
        self.expiry.notify_all();
    }

    fn check_peer_limit(&self, core: &Core) -> Result<(), Error> {
        if core.num_peers() >= self.max_peers {
            return Err(Error::TooManyPeers {
                limit: self.max_peers,
            });
        }
        Ok(())
    }

    fn lock(&self) -> Locked<'_> {
        Locked {
            guard: self.state.lock(),
            _abort: AbortOnPanic,
        }
    }

    /// Wakes the expiry thread if the earliest deadline moved before its alarm.
    fn rearm_expiry(&self, state: &State) {
        let earliest = state.core.next_deadline();
        let sooner = match (earliest, state.expiry_alarm) {
            (Some(earliest), Some(alarm)) => earliest < alarm,
            (Some(_), None) => true,
            (None, _) => false,
        };
        if sooner {
            self.expiry.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::thread;
    use throttle_core::SemaphoreSettings;

    fn service(max: i64) -> Arc<Service> {
        let core = Core::new([SemaphoreSettings {
            name: "A".into(),
            max,
            level: 0,
        }]);
        Arc::new(Service::new(core, Clock::start(), 3))
    }

    const MINUTE: Duration = Duration::from_secs(60);

    /// How long a test waits for something that should happen at once before it fails: far
    /// beyond what a loaded machine needs, far below the minute-long waits of the requests.
    const PROMPTLY: Duration = Duration::from_secs(10);

    /// A request for one unit of `A`.
    fn one_of_a(
        peer: PeerId,
        expires_in: Option<Duration>,
        block_for: Option<Duration>,
    ) -> Acquire {
        Acquire {
            peer,
            semaphore: "A".into(),
            count: 1,
            expires_in,
            block_for,
        }
    }

    /// Two peers, the first holding `A` (a mutex in these tests).
    fn holder_and_waiter(service: &Service) -> (PeerId, PeerId) {
        let holder = service.new_peer(MINUTE, None).unwrap();
        let waiter = service.new_peer(MINUTE, None).unwrap();
        assert!(matches!(
            service.acquire(one_of_a(holder, None, None)),
            Ok(Acquired::Now(Answer::Acquired(_)))
        ));
        (holder, waiter)
    }

    /// A long poll running on another thread; its answer arrives on a channel, so a test can
    /// give up on it after a deadline instead of joining a thread that may never end.
    struct Background(mpsc::Receiver<Result<Answer, Error>>);

    impl Background {
        /// The long poll's answer, or a failed test if none arrives within [`PROMPTLY`].
        #[track_caller]
        fn answer(self) -> Result<Answer, Error> {
            match self.0.recv_timeout(PROMPTLY) {
                Ok(answer) => answer,
                Err(_) => panic!("the long poll was not answered within {PROMPTLY:?}"),
            }
        }
    }

    /// Starts `waiter`'s long poll (a minute) for one unit of `A` on another thread and returns
    /// once it waits in the service.
    #[track_caller]
    fn wait_in_background(
        service: &Arc<Service>,
        waiter: PeerId,
        expires_in: Option<Duration>,
    ) -> Background {
        let waiting_before = service.inspect(|_, polls, _| polls.waiting);
        let (send, answered) = mpsc::channel();
        let background = service.clone();
        thread::spawn(move || {
            let answer = match background.acquire(one_of_a(waiter, expires_in, Some(MINUTE))) {
                Ok(Acquired::Wait(wait)) => background.wait(wait, || false),
                Ok(Acquired::Now(state)) => panic!("answered at once: {state:?}"),
                Err(error) => Err(error),
            };
            let _ = send.send(answer);
        });
        let deadline = Instant::now() + PROMPTLY;
        while service.inspect(|_, polls, _| polls.waiting) == waiting_before {
            assert!(Instant::now() < deadline, "the long poll never waited");
            thread::sleep(Duration::from_millis(1));
        }
        Background(answered)
    }

    #[test]
    fn a_release_answers_the_waiting_request() {
        let service = service(1);
        let (holder, waiter) = holder_and_waiter(&service);
        let waiting = wait_in_background(&service, waiter, None);
        service.release_lock(holder, "A").unwrap();
        // Within `PROMPTLY`, not at the end of the minute-long `block_for`.
        assert!(matches!(waiting.answer(), Ok(Answer::Acquired(_))));
    }

    #[test]
    fn a_lease_asked_for_in_a_long_poll_starts_at_the_grant() {
        let service = service(1);
        let (holder, waiter) = holder_and_waiter(&service);
        let lease = Duration::from_secs(3600);
        let waiting = wait_in_background(&service, waiter, Some(lease));
        thread::sleep(Duration::from_millis(50));
        let released = service.clock().now();
        service.release_lock(holder, "A").unwrap();
        assert!(matches!(waiting.answer(), Ok(Answer::Acquired(_))));
        let expires_in = service.inspect(|core, _, now| {
            let info = core.peer(waiter, now).expect("the waiter is live");
            info.expires_in + now.saturating_duration_since(released)
        });
        // Counted from the request, the lease would end at least 50 ms earlier.
        assert!(expires_in >= lease, "{expires_in:?}");
    }

    #[test]
    fn peers_beyond_the_limit_are_refused() {
        let service = service(1);
        let ids: Vec<PeerId> = (0..3)
            .map(|_| service.new_peer(MINUTE, None).unwrap())
            .collect();
        assert_eq!(
            service.new_peer(MINUTE, None),
            Err(Error::TooManyPeers { limit: 3 })
        );
        let restore = |peer| Restore {
            peer,
            expires_in: MINUTE,
            acquired: BTreeMap::new(),
            tokens: BTreeMap::new(),
            name: None,
        };
        assert_eq!(
            service.restore(&restore(42)),
            Err(Error::TooManyPeers { limit: 3 })
        );
        // Restoring a peer that exists creates nothing, so it is fine at the limit.
        assert_eq!(service.restore(&restore(ids[0])), Ok(()));
        service.remove_peer(ids[1]).unwrap();
        assert!(service.new_peer(MINUTE, None).is_ok());
    }

    #[test]
    fn acquire_never_blocks_and_waits_only_when_asked_to() {
        let service = service(1);
        let holder = service.new_peer(MINUTE, None).unwrap();
        let waiter = service.new_peer(MINUTE, None).unwrap();
        assert!(matches!(
            service.acquire(one_of_a(holder, None, Some(MINUTE))),
            Ok(Acquired::Now(Answer::Acquired(_)))
        ));
        let state = service.acquire(one_of_a(waiter, None, None));
        assert_eq!(state, Ok(Acquired::Now(Answer::Pending)));
        let state = service.acquire(one_of_a(waiter, None, Some(Duration::ZERO)));
        assert_eq!(state, Ok(Acquired::Now(Answer::Pending)));
        let Ok(Acquired::Wait(wait)) = service.acquire(one_of_a(waiter, None, Some(MINUTE))) else {
            panic!("a long poll for a pending lock waits");
        };
        // Its time is up at once if the deadline has passed.
        let expired = Wait {
            deadline: Instant::now(),
            ..wait
        };
        assert_eq!(service.wait(expired, || false), Ok(Answer::Pending));
        service.refused_long_poll();
        assert_eq!(service.inspect(|_, polls, _| polls.refused), 1);
    }

    #[test]
    fn a_newer_long_poll_of_the_same_peer_ends_the_older_one() {
        let service = service(1);
        let (holder, waiter) = holder_and_waiter(&service);
        let older = wait_in_background(&service, waiter, None);
        // The client gave up on the first request and asks again. (Not `wait_in_background`:
        // the number of waiting polls goes up and down again at once, so it cannot tell.)
        let Ok(Acquired::Wait(newer)) = service.acquire(one_of_a(waiter, None, Some(MINUTE)))
        else {
            panic!("the repeated long poll waits");
        };
        let (send, answered) = mpsc::channel();
        {
            let service = service.clone();
            thread::spawn(move || send.send(service.wait(newer, || false)));
        }
        let newer = Background(answered);
        assert_eq!(older.answer(), Ok(Answer::Pending));
        service.release_lock(holder, "A").unwrap();
        assert!(matches!(newer.answer(), Ok(Answer::Acquired(_))));
        assert_eq!(service.inspect(|_, polls, _| polls.waiting), 0);
    }

    #[test]
    fn removing_the_waiting_peer_answers_unknown_peer() {
        let service = service(1);
        let (_holder, waiter) = holder_and_waiter(&service);
        let waiting = wait_in_background(&service, waiter, None);
        service.remove_peer(waiter).unwrap();
        assert_eq!(
            waiting.answer(),
            Err(Error::Refused(throttle_core::Error::UnknownPeer))
        );
    }

    #[test]
    fn expiry_thread_releases_at_the_deadline_and_shutdown_stops_it() {
        let service = service(1);
        let (stopped, expiry_ended) = mpsc::channel();
        {
            let service = service.clone();
            thread::spawn(move || {
                crate::expiry::run(&service);
                let _ = stopped.send(());
            });
        }
        let (holder, waiter) = holder_and_waiter(&service);
        let waiting = wait_in_background(&service, waiter, None);
        service
            .heartbeat(holder, Duration::from_millis(50))
            .unwrap();
        // Only the expiry thread can grant it before the minute of `block_for` is over: no
        // other request arrives, and the waiter sweeps only when woken or timed out. So a
        // broken expiry loop fails here after `PROMPTLY`, not after a minute.
        assert!(matches!(waiting.answer(), Ok(Answer::Acquired(_))));
        service.shut_down();
        assert!(
            expiry_ended.recv_timeout(PROMPTLY).is_ok(),
            "the expiry thread did not stop at shutdown"
        );
    }

    #[test]
    fn shutdown_answers_waiting_requests() {
        let service = service(1);
        let (_holder, waiter) = holder_and_waiter(&service);
        let waiting = wait_in_background(&service, waiter, None);
        service.shut_down();
        assert_eq!(waiting.answer(), Ok(Answer::Pending));
    }
}
