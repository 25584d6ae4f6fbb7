//! How a cluster member's service changes its state: through the members' log, not at once.
//!
//! A worker turns a request into an [`Op`] whose deadlines count from the entry's own time,
//! proposes it ([`Replication::commit`]) and waits for this member to apply it: then the entry
//! is on a majority's disk, and the [`Applied`] result this member computed is the answer. The
//! member's raft thread applies every committed entry through [`Applier`] (the
//! `throttle_cluster::Machine` of the service), in log order and at the log's time, whoever
//! proposed it; waking waiters and the expiry thread is then the same as on a single server.
//!
//! What this is not: the log, elections or the links (`throttle-cluster`), nor what an entry
//! means (the core's `Core::apply`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use throttle_cluster::node::{Committed, LogClock, Machine, Proposer, Status, StatusHandle};
use throttle_core::{Applied, Core, Op, SemaphoreSettings, Time};

use crate::error::Error;
use crate::service::Service;

/// How long a request waits for its entry to be applied: through an election (a second or
/// so) and then some. A request without an answer by then answers `503 No quorum`.
pub const COMMIT_TIMEOUT: Duration = Duration::from_secs(3);

/// How often a refused proposal (no leader known) is tried again while the request waits.
const RETRY: Duration = Duration::from_millis(20);

/// How often a request waiting for its entry looks whether a new leader was elected meanwhile.
const LOOK_AGAIN: Duration = Duration::from_millis(100);

/// How long a read waits for the leader's confirmation before it asks again: raft drops a read
/// silently when there is no leader, or one that has not committed in its term yet.
const READ_RETRY: Duration = Duration::from_millis(200);

/// The service's side of a member: where it proposes, and what it knows of the cluster.
pub struct Replication {
    proposer: Proposer,
    status: StatusHandle,
    shared: Shared,
    members: usize,
    /// This member's id, its position in `members` from 1.
    id: u64,
}

/// What the service's side and the [`Applier`] share.
#[derive(Clone)]
pub struct Shared {
    proposals: Arc<Proposals>,
    /// The log time of the last entry applied, and when it was applied here: followers read
    /// the time from it (see [`Replication::read_time`]).
    applied_at: Arc<Mutex<(Time, Instant)>>,
    /// This member's configured semaphores (its file's, as last loaded): what it proposes when
    /// it is elected.
    semaphores: Arc<Mutex<Vec<SemaphoreSettings>>>,
}

impl Replication {
    /// A member's way to its log, sharing `shared` with the member's [`Applier`], in a cluster
    /// of `members`.
    pub fn new(
        proposer: Proposer,
        status: StatusHandle,
        shared: Shared,
        members: usize,
    ) -> Replication {
        let id = status.get().id;
        Replication {
            proposer,
            status,
            shared,
            members,
            id,
        }
    }

    /// Records the semaphores of a reloaded configuration file: proposed from now on whenever
    /// this member is elected.
    pub fn configured(&self, semaphores: Vec<SemaphoreSettings>) {
        *self.shared.semaphores.lock() = semaphores;
    }

    /// How many members the cluster has.
    pub fn members(&self) -> usize {
        self.members
    }

    /// This member's id: its position in the cluster's `members`, from 1.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The member that leads as this one knows it (itself, perhaps), `None` during an
    /// election. Cheap enough for every answer: no lock, no copy.
    pub fn leader(&self) -> Option<u64> {
        self.status.leader()
    }

    /// Proposes `op` and waits until this member applied it: the result, once the entry is
    /// on a majority's disk. A proposal refused for want of a leader is tried again until
    /// [`COMMIT_TIMEOUT`], and so is one still waiting when a new leader is elected (it may
    /// have been lost with the old one; if not, it is applied twice, which changes nothing
    /// more: every operation is idempotent but a new peer's, whose first id then stays unused
    /// until its lease ends). An entry neither applied nor refused by the timeout answers `No
    /// quorum`, and may still be applied later.
    pub fn commit(&self, op: &Op) -> Result<Applied, Error> {
        let mut payload = Vec::new();
        op.encode(&mut payload);
        let deadline = Instant::now() + COMMIT_TIMEOUT;
        'propose: loop {
            let term = self.status.read(|status| status.term);
            let seq = self.shared.proposals.propose(&self.proposer, &payload)?;
            loop {
                let until = (Instant::now() + LOOK_AGAIN).min(deadline);
                match self.shared.proposals.wait(seq, until) {
                    Waited::Applied(applied) => return Ok(*applied),
                    Waited::Refused if Instant::now() + RETRY < deadline => {
                        std::thread::sleep(RETRY);
                        continue 'propose;
                    }
                    Waited::Refused => {
                        return Err(Error::NoQuorum(format!(
                            "no leader elected within {}s",
                            COMMIT_TIMEOUT.as_secs()
                        )));
                    }
                    Waited::Pending if Instant::now() >= deadline => {
                        self.shared.proposals.forget(seq);
                        return Err(Error::NoQuorum(format!(
                            "the change was not committed within {}s",
                            COMMIT_TIMEOUT.as_secs()
                        )));
                    }
                    Waited::Pending if self.status.read(|status| status.term) != term => {
                        self.shared.proposals.forget(seq);
                        continue 'propose;
                    }
                    Waited::Pending => {}
                    Waited::Stopped | Waited::Readable => {
                        return Err(Error::NoQuorum("the member is stopping".into()));
                    }
                }
            }
        }
    }

    /// Waits until this member's state is at least as new as the cluster's was when the call
    /// began (Raft's read index), so that a read after it sees every change acknowledged
    /// before, whichever member acknowledged it. `No quorum` if no leader confirms within
    /// [`COMMIT_TIMEOUT`].
    pub fn catch_up(&self) -> Result<(), Error> {
        let deadline = Instant::now() + COMMIT_TIMEOUT;
        loop {
            let ctx = self.shared.proposals.read(&self.proposer)?;
            let attempt = (Instant::now() + READ_RETRY).min(deadline);
            let waited = self.shared.proposals.wait(ctx, attempt);
            if matches!(waited, Waited::Pending) {
                self.shared.proposals.forget(ctx);
            }
            match waited {
                Waited::Readable => return Ok(()),
                Waited::Pending | Waited::Refused if Instant::now() < deadline => {}
                Waited::Pending | Waited::Refused => {
                    return Err(Error::NoQuorum(format!(
                        "no leader confirmed the read within {}s",
                        COMMIT_TIMEOUT.as_secs()
                    )));
                }
                Waited::Applied(_) | Waited::Stopped => {
                    return Err(Error::NoQuorum("the member is stopping".into()));
                }
            }
        }
    }

    /// Proposes `op` and does not wait: the expiry thread's expiries.
    pub fn propose(&self, op: &Op) {
        let mut payload = Vec::new();
        op.encode(&mut payload);
        // A proposal that goes nowhere is proposed again at the next alarm.
        let _ = self.proposer.propose(&payload);
    }

    /// The log's clock while this member leads.
    pub fn leader_clock(&self) -> Option<LogClock> {
        self.status.read(|status| status.clock)
    }

    /// What this member knows of the cluster.
    pub fn status(&self) -> Status {
        self.status.get()
    }

    /// The log time now, as well as this member knows it: the leader's clock on the leader;
    /// elsewhere the last applied entry's time plus the time since it was applied here. Only
    /// for showing leases (`expires_in`); nothing is decided on it.
    pub fn read_time(&self) -> Time {
        if let Some(clock) = self.leader_clock() {
            return Time::from_epoch(clock.now());
        }
        let (at, applied) = *self.shared.applied_at.lock();
        at + applied.elapsed()
    }

    /// Refuses every proposal from now on, and answers any request still waiting for its
    /// entry: the member stops.
    pub fn shut_down(&self) {
        self.shared.proposals.shut_down();
    }
}

/// The service as the raft thread's state machine: applies committed entries to the core,
/// takes and restores snapshots, and hands each proposer its result.
pub struct Applier {
    service: Arc<Service>,
    shared: Shared,
}

impl Applier {
    /// The machine of `service`, which a cluster member starts empty: its state comes from the
    /// log and its snapshots only, so every member's is the same.
    pub fn new(service: Arc<Service>, semaphores: Vec<SemaphoreSettings>) -> Applier {
        Applier {
            service,
            shared: Shared {
                proposals: Arc::default(),
                applied_at: Arc::new(Mutex::new((Time::ZERO, Instant::now()))),
                semaphores: Arc::new(Mutex::new(semaphores)),
            },
        }
    }

    /// What the member's [`Replication`] shares with this machine.
    pub fn shared(&self) -> Shared {
        self.shared.clone()
    }
}

impl Machine for Applier {
    fn apply(&mut self, entry: Committed<'_>) {
        let at = Time::from_epoch(entry.at);
        *self.shared.applied_at.lock() = (at, Instant::now());
        let op = match Op::decode(entry.payload) {
            Ok(op) => op.later(entry.at),
            Err(error) => {
                // Every member skips it alike, so their states stay the same.
                log::error!("Log entry {} is unreadable, skipped: {error}", entry.index);
                return;
            }
        };
        if let Op::Reconfigure { semaphores } = &op
            && *semaphores != *self.shared.semaphores.lock()
        {
            log::warn!(
                "The cluster's semaphores (log entry {}) differ from this member's \
                 configuration file: following the log",
                entry.index
            );
        }
        let applied = self.service.apply_committed(at, &op);
        if let Some(seq) = entry.mine {
            self.shared.proposals.fulfil(seq, applied);
        }
    }

    fn snapshot(&self) -> Vec<u8> {
        self.service.inspect_core(Core::encode_snapshot)
    }

    fn restore(&mut self, data: &[u8]) {
        match Core::decode_snapshot(data) {
            Ok(core) => self.service.replace_core(core),
            // A snapshot this member wrote or a member sent it: unreadable means another
            // version or a broken disk, and going on from an empty state would be wrong.
            Err(error) => {
                log::error!("The snapshot is unreadable: {error}; stopping");
                std::process::exit(1);
            }
        }
    }

    fn refused(&mut self, seq: u64) {
        self.shared.proposals.refuse(seq);
    }

    fn readable(&mut self, ctx: u64) {
        self.shared.proposals.fill(ctx, Slot::Readable);
    }

    fn elected(&mut self) -> Option<Vec<u8>> {
        log::info!("Elected leader: proposing this member's semaphores");
        let mut payload = Vec::new();
        Op::Reconfigure {
            semaphores: self.shared.semaphores.lock().clone(),
        }
        .encode(&mut payload);
        Some(payload)
    }
}

/// The proposals of this member that someone waits for, by number.
#[derive(Default)]
struct Proposals {
    slots: Mutex<Slots>,
    /// Signalled when any slot is filled; each waiter looks at its own.
    filled: Condvar,
}

#[derive(Default)]
struct Slots {
    waiting: HashMap<u64, Slot>,
    stopped: bool,
}

enum Slot {
    Waiting,
    Applied(Box<Applied>),
    Refused,
    Readable,
}

/// How a wait for an entry ended.
enum Waited {
    Applied(Box<Applied>),
    Refused,
    Readable,
    /// Not yet: the slot stays until [`Proposals::forget`].
    Pending,
    Stopped,
}

impl Proposals {
    /// Proposes `payload` with a slot for its result, made before the proposal can be applied.
    fn propose(&self, proposer: &Proposer, payload: &[u8]) -> Result<u64, Error> {
        let mut slots = self.slots.lock();
        if slots.stopped {
            return Err(Error::NoQuorum("the member is stopping".into()));
        }
        let seq = proposer
            .propose(payload)
            .map_err(|_| Error::NoQuorum("the member's log has stopped".into()))?;
        slots.waiting.insert(seq, Slot::Waiting);
        Ok(seq)
    }

    /// Begins a read with a slot for its confirmation, as [`Proposals::propose`] does.
    fn read(&self, proposer: &Proposer) -> Result<u64, Error> {
        let mut slots = self.slots.lock();
        if slots.stopped {
            return Err(Error::NoQuorum("the member is stopping".into()));
        }
        let ctx = proposer
            .read()
            .map_err(|_| Error::NoQuorum("the member's log has stopped".into()))?;
        slots.waiting.insert(ctx, Slot::Waiting);
        Ok(ctx)
    }

    /// Waits until the slot of `seq` is filled, or `until`; a slot filled as the time runs
    /// out still counts.
    fn wait(&self, seq: u64, until: Instant) -> Waited {
        let mut slots = self.slots.lock();
        let mut timed_out = false;
        loop {
            if slots.stopped {
                slots.waiting.remove(&seq);
                return Waited::Stopped;
            }
            match slots.waiting.get(&seq) {
                Some(Slot::Waiting) => {}
                Some(_) => {
                    return match slots.waiting.remove(&seq) {
                        Some(Slot::Applied(applied)) => Waited::Applied(applied),
                        Some(Slot::Refused) => Waited::Refused,
                        Some(Slot::Readable) => Waited::Readable,
                        Some(Slot::Waiting) | None => Waited::Stopped,
                    };
                }
                None => return Waited::Stopped,
            }
            if timed_out {
                return Waited::Pending;
            }
            timed_out = self.filled.wait_until(&mut slots, until).timed_out();
        }
    }

    /// Gives up on an entry: applied later, it is dropped.
    fn forget(&self, seq: u64) {
        self.slots.lock().waiting.remove(&seq);
    }

    fn fulfil(&self, seq: u64, applied: Applied) {
        self.fill(seq, Slot::Applied(Box::new(applied)));
    }

    fn refuse(&self, seq: u64) {
        self.fill(seq, Slot::Refused);
    }

    /// Fills a slot someone waits in; an entry nobody waits for any more is dropped.
    fn fill(&self, seq: u64, result: Slot) {
        let mut slots = self.slots.lock();
        if let Some(slot) = slots.waiting.get_mut(&seq) {
            *slot = result;
            self.filled.notify_all();
        }
    }

    fn shut_down(&self) {
        self.slots.lock().stopped = true;
        self.filled.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::thread;
    use throttle_core::{Expired, Outcome};

    fn applied() -> Applied {
        Applied {
            expired: Expired::default(),
            outcome: Ok(Outcome::Expire),
            granted: Vec::new(),
        }
    }

    /// Proposals with a slot for `seq`, as `Proposals::propose` leaves them.
    fn waiting_for(seq: u64) -> Arc<Proposals> {
        let proposals = Arc::new(Proposals::default());
        proposals.slots.lock().waiting.insert(seq, Slot::Waiting);
        proposals
    }

    const SOON: Duration = Duration::from_secs(10);

    #[test]
    fn a_wait_ends_with_the_result_filled_from_another_thread() {
        let proposals = waiting_for(7);
        let filler = proposals.clone();
        let thread = thread::spawn(move || filler.fulfil(7, applied()));
        assert!(matches!(
            proposals.wait(7, Instant::now() + SOON),
            Waited::Applied(result) if *result == applied()
        ));
        thread.join().unwrap();
        assert!(
            proposals.slots.lock().waiting.is_empty(),
            "the slot is taken"
        );
    }

    #[test]
    fn a_wait_that_runs_out_keeps_the_slot_until_forgotten() {
        let proposals = waiting_for(7);
        assert!(matches!(proposals.wait(7, Instant::now()), Waited::Pending));
        // Still waiting: a result that comes now is found by the next wait.
        proposals.refuse(7);
        assert!(matches!(proposals.wait(7, Instant::now()), Waited::Refused));
        // Forgotten, a later result is dropped.
        proposals.slots.lock().waiting.insert(8, Slot::Waiting);
        proposals.forget(8);
        proposals.fulfil(8, applied());
        assert!(proposals.slots.lock().waiting.is_empty());
    }

    #[test]
    fn results_reach_only_their_own_slot() {
        let proposals = waiting_for(7);
        proposals.slots.lock().waiting.insert(9, Slot::Waiting);
        proposals.fill(9, Slot::Readable);
        proposals.fulfil(123, applied());
        assert!(matches!(proposals.wait(7, Instant::now()), Waited::Pending));
        assert!(matches!(
            proposals.wait(9, Instant::now()),
            Waited::Readable
        ));
        assert!(!proposals.slots.lock().waiting.contains_key(&123));
    }

    #[test]
    fn shutting_down_ends_every_wait() {
        let proposals = waiting_for(7);
        let stopper = proposals.clone();
        let thread = thread::spawn(move || stopper.shut_down());
        assert!(matches!(
            proposals.wait(7, Instant::now() + SOON),
            Waited::Stopped
        ));
        thread.join().unwrap();
    }
}
