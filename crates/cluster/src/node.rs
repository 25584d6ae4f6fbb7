//! The thread that drives raft-rs for one member: ticks, proposals and messages in; the log to
//! disk, messages out and committed entries to the state machine, in Raft's order.
//!
//! raft-rs is a pure state machine (`RawNode`): it never sleeps, sends or writes. One thread per
//! member owns it and runs the loop of [`Driver::run`]: wait for input until the next tick, feed
//! it in, and handle each `Ready` in the fixed order etcd's README spells out (the numbered steps
//! in [`Driver::handle_ready`]). Nothing else touches the `RawNode`, so no lock guards it.
//!
//! The thread also keeps the log's time: the leader stamps every entry with its [`LogClock`]
//! as the entry enters the log (its own proposals, and the ones followers forward), and every
//! member applies the entry at that time, never reading its own clock while applying.
//!
//! What this is not: the meaning of an entry (the [`Machine`] decides), nor how messages travel
//! (the [`Outbox`] decides: TCP between members, channels in the tests).

use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use raft::prelude::{Entry, EntryType, Message, MessageType};
use raft::{Config, RawNode, StateRole};

use crate::envelope;
use crate::log_store::LogStore;
use crate::slog_log;

/// The replicated state: what committed entries are applied to, in log order, on every member.
pub trait Machine: Send + 'static {
    /// Applies a committed entry. Called once per entry, in log order; never with an index at
    /// or below the last snapshot restored.
    fn apply(&mut self, entry: Committed<'_>);
    /// The whole state, for a snapshot: what [`Machine::restore`] takes back.
    fn snapshot(&self) -> Vec<u8>;
    /// Replaces the state with a snapshot's (at start, or sent by the leader).
    fn restore(&mut self, data: &[u8]);
    /// This member's proposal number `seq` was dropped before it entered any log (no leader
    /// known, or one handing over): it will never be applied, so it may be proposed again.
    fn refused(&mut self, seq: u64);
    /// This member was elected leader: the payload it proposes first in its term, before any
    /// proposal it takes in (the server proposes its configuration's semaphores here).
    fn elected(&mut self) -> Option<Vec<u8>> {
        None
    }
    /// The read `ctx` ([`Input::Read`]) may be answered from this member's state now: the
    /// leader confirmed it still led after the read began, and everything it had committed
    /// then is applied here. A read that is never confirmed (no leader) never gets this call.
    fn readable(&mut self, ctx: u64) {
        let _ = ctx;
    }
}

/// A committed entry, as the machine applies it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Committed<'a> {
    /// Its place in the log.
    pub index: u64,
    /// The log time it happens at: the leader's stamp, or the previous entry's time if that is
    /// later, so log time never goes back along the log.
    pub at: Duration,
    /// Its number from [`Proposer::propose`] if this member proposed it (in this run or an
    /// earlier one: the numbers of a run start at random, so they do not repeat).
    pub mine: Option<u64>,
    /// The bytes proposed.
    pub payload: &'a [u8],
}

/// The leader's clock of the log: log time goes on from `base` (the latest time in the log
/// when this member was elected) at the pace of this member's monotonic clock since `since`.
/// So log time stands still while there is no leader, and a leader change never cuts a lease
/// short.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogClock {
    /// The term this member leads in.
    pub term: u64,
    base: Duration,
    since: Instant,
}

impl LogClock {
    /// The log time now.
    pub fn now(&self) -> Duration {
        self.at(Instant::now())
    }

    /// The log time at `instant` (the log's start of this term for an earlier instant).
    pub fn at(&self, instant: Instant) -> Duration {
        self.base
            .saturating_add(instant.saturating_duration_since(self.since))
    }

    /// The instant at which the log time reaches `at` (now or earlier if it has).
    pub fn instant(&self, at: Duration) -> Instant {
        let ahead = at.saturating_sub(self.base);
        self.since
            .checked_add(ahead)
            .unwrap_or_else(|| self.since + Duration::from_secs(86_400 * 365))
    }
}

/// Proposes entries to the log through a member's thread, numbering them so that the member
/// recognises its own entries when they are applied ([`Committed::mine`]). Cheap to clone.
#[derive(Clone)]
pub struct Proposer {
    inbox: Sender<Input>,
    origin: u64,
    next: Arc<AtomicU64>,
}

impl Proposer {
    /// Hands `payload` to the member's thread and returns its number. `Err` if the thread has
    /// stopped.
    pub fn propose(&self, payload: &[u8]) -> Result<u64, Stopped> {
        let seq = self.next.fetch_add(1, Ordering::Relaxed);
        let data = envelope::wrap(self.origin, seq, payload);
        self.inbox
            .send(Input::Propose(Proposal { seq, data }))
            .map_err(|_| Stopped)?;
        Ok(seq)
    }
}

impl Proposer {
    /// Begins a linearizable read ([`Input::Read`]) and returns its context, numbered as the
    /// proposals are. `Err` if the thread has stopped.
    pub fn read(&self) -> Result<u64, Stopped> {
        let ctx = self.next.fetch_add(1, Ordering::Relaxed);
        self.inbox.send(Input::Read(ctx)).map_err(|_| Stopped)?;
        Ok(ctx)
    }
}

/// The member's thread has stopped (its log failed, or it was stopped).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stopped;

/// A proposal on its way to the member's thread; only a [`Proposer`] makes one.
#[derive(Debug)]
pub struct Proposal {
    seq: u64,
    data: Vec<u8>,
}

/// Where messages to other members go. Sending never blocks the node: a message that cannot be
/// delivered is dropped, and Raft sends again.
pub trait Outbox: Send + 'static {
    fn send(&mut self, message: Message);
}

/// What the node's thread takes in.
#[derive(Debug)]
pub enum Input {
    /// Data to append to the log (only the leader appends; raft-rs forwards a follower's).
    Propose(Proposal),
    /// A message from another member.
    Step(Box<Message>),
    /// A linearizable read begins: [`Machine::readable`] is called with this context once the
    /// member's state is at least as new as the cluster's when the read began (Raft's read
    /// index: the leader confirms it leads with a round of heartbeats).
    Read(u64),
    /// If this member leads, hand the lead to the follower whose log reaches furthest (it is
    /// elected at once, without waiting for an election timeout): before a graceful stop.
    HandOver,
    /// End the thread.
    Stop,
}

/// How a member runs.
#[derive(Debug, Clone)]
pub struct Settings {
    /// This member, from 1.
    pub id: u64,
    /// Every member's id, this one's included.
    pub voters: Vec<u64>,
    /// The length of one tick. Heartbeats go every tick; an election starts after 10 to 20
    /// ticks without a leader's word.
    pub tick: Duration,
    /// Take a snapshot (and drop the log before it) every this many applied entries.
    pub snapshot_every: u64,
}

/// What a member knows of the cluster right now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Status {
    pub id: u64,
    /// The leader this member follows, or itself; `None` during an election.
    pub leader: Option<u64>,
    pub term: u64,
    /// Whether this member leads.
    pub leading: bool,
    /// The highest index known to be on a majority's disk.
    pub commit: u64,
    /// The highest index applied to the machine.
    pub applied: u64,
    /// The index of the latest snapshot: the log on disk starts after it.
    pub snapshot: u64,
    /// The log's clock while this member leads.
    pub clock: Option<LogClock>,
    /// How often the leader this member knows changed (to another, or to none) since start.
    pub leader_changes: u64,
    /// On the leader: how far each member's log is known to reach (its match index), by id,
    /// this member's included; empty elsewhere. A member's lag is `commit` minus its match.
    pub matched: Vec<(u64, u64)>,
    /// The log's fsyncs since start, and the time they took together.
    pub syncs: u64,
    pub sync_time: Duration,
}

/// A running member: its thread and the ways in.
pub struct Node {
    inbox: Sender<Input>,
    proposer: Proposer,
    status: StatusHandle,
    thread: JoinHandle<io::Result<()>>,
}

impl Node {
    /// Opens the log in `dir` (creating it for `settings.voters` if new), restores the machine
    /// from the latest snapshot, and starts the thread. The entries committed after the snapshot
    /// are applied again by the thread before anything new.
    pub fn start(
        dir: &Path,
        settings: Settings,
        machine: impl Machine,
        outbox: impl Outbox,
    ) -> io::Result<Node> {
        Node::start_with_inbox(dir, settings, machine, outbox, mpsc::channel())
    }

    /// As [`Node::start`], with the thread's input channel made beforehand: the links between
    /// members deliver into it, and they start before the node.
    pub fn start_with_inbox(
        dir: &Path,
        settings: Settings,
        mut machine: impl Machine,
        outbox: impl Outbox,
        (inbox, input): (Sender<Input>, Receiver<Input>),
    ) -> io::Result<Node> {
        let (store, opened) = LogStore::open(dir, &settings.voters)?;
        if opened.torn > 0 {
            log::warn!(
                "Raft log {}: cut off a torn tail of {} bytes (a write the crash interrupted)",
                dir.display(),
                opened.torn
            );
        }
        let snapshot_index = store.snapshot_index();
        let mut log_time = Duration::ZERO;
        if snapshot_index > 0 {
            let snapshot = raft::Storage::snapshot(&store, 0, settings.id).map_err(other)?;
            let (at, state) = envelope::open_snapshot(&snapshot.data)
                .ok_or_else(|| io::Error::other("the snapshot is of another format"))?;
            machine.restore(state);
            log_time = at;
        }
        let config = Config {
            id: settings.id,
            election_tick: 10,
            heartbeat_tick: 1,
            applied: snapshot_index,
            check_quorum: true,
            pre_vote: true,
            ..Config::default()
        };
        config.validate().map_err(other)?;
        let logger = slog_log::logger();
        let raw = RawNode::new(&config, store, &logger).map_err(other)?;
        let status = StatusHandle::new(Status {
            id: settings.id,
            applied: snapshot_index,
            ..Status::default()
        });
        let id = settings.id;
        let mut driver = Driver {
            raw,
            machine,
            outbox,
            input,
            status: status.clone(),
            settings,
            applied: snapshot_index,
            snapshot_index,
            log_time,
            latest: log_time,
            clock: None,
            leader: None,
            leader_changes: 0,
            reads: Vec::new(),
            syncs: 0,
            sync_time: Duration::ZERO,
        };
        let thread = thread::Builder::new().name("raft".into()).spawn(move || {
            // A member whose Raft state panicked or whose log cannot be written must not
            // go on answering: the process ends, and its supervisor starts it again.
            match panic::catch_unwind(AssertUnwindSafe(|| driver.run())) {
                Ok(Ok(())) => Ok(()),
                Ok(Err(error)) => {
                    log::error!("The Raft log failed: {error}; the member stops");
                    std::process::exit(1);
                }
                Err(_) => {
                    log::error!("The Raft thread panicked; the member stops");
                    std::process::abort();
                }
            }
        })?;
        let proposer = Proposer {
            inbox: inbox.clone(),
            origin: id,
            next: Arc::new(AtomicU64::new(rand::random::<u64>() >> 1)),
        };
        Ok(Node {
            inbox,
            proposer,
            status,
            thread,
        })
    }

    /// Where the service proposes entries.
    pub fn proposer(&self) -> Proposer {
        self.proposer.clone()
    }

    /// Where the transport delivers messages and the service its proposals.
    pub fn inbox(&self) -> Sender<Input> {
        self.inbox.clone()
    }

    /// A copy of what this member knows now.
    pub fn status(&self) -> Status {
        self.status.get()
    }

    /// Where to read the status from elsewhere, after the node is handed to its owner.
    pub fn status_handle(&self) -> StatusHandle {
        self.status.clone()
    }

    /// If this member leads, hands the lead to another member and waits (at most `within`)
    /// until it is no longer the leader. Says whether another member leads now. For a graceful
    /// stop: the cluster goes on without waiting for an election timeout.
    pub fn hand_over(&self, within: Duration) -> bool {
        let id = self.status.get().id;
        if self.status.get().leader != Some(id) {
            return true;
        }
        if self.inbox.send(Input::HandOver).is_err() {
            return false;
        }
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            let status = self.status.get();
            if status.leader.is_some_and(|leader| leader != id) {
                return true;
            }
            thread::sleep(Duration::from_millis(5));
        }
        false
    }

    /// Stops the thread and waits for it; its error, if the log failed.
    pub fn stop(self) -> io::Result<()> {
        let _ = self.inbox.send(Input::Stop);
        self.thread
            .join()
            .map_err(|_| io::Error::other("the raft thread panicked"))?
    }
}

/// Reads a member's [`Status`], as the thread last published it. Cheap to clone.
#[derive(Clone, Debug)]
pub struct StatusHandle(Arc<Published>);

/// What the thread publishes: the whole status, and the leader on its own, which the HTTP
/// workers read with every answer (see [`StatusHandle::leader`]).
#[derive(Debug)]
struct Published {
    status: Mutex<Status>,
    /// `status.leader`, 0 for none (raft's ids start at 1).
    leader: AtomicU64,
}

impl StatusHandle {
    fn new(status: Status) -> StatusHandle {
        StatusHandle(Arc::new(Published {
            leader: AtomicU64::new(status.leader.unwrap_or(0)),
            status: Mutex::new(status),
        }))
    }

    /// A copy of what the member knows now.
    pub fn get(&self) -> Status {
        self.0
            .status
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// `look` applied to what the member knows now, under the lock and without a copy: for
    /// callers that need one field with every request (the term, the clock).
    pub fn read<T>(&self, look: impl FnOnce(&Status) -> T) -> T {
        look(&self.0.status.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// The leader this member follows, or itself; `None` during an election: what
    /// [`Status::leader`] says, read without a lock or a copy, for a caller that asks with
    /// every request.
    pub fn leader(&self) -> Option<u64> {
        Some(self.0.leader.load(Ordering::Relaxed)).filter(|&id| id != 0)
    }

    fn set(&self, status: Status) {
        self.0
            .leader
            .store(status.leader.unwrap_or(0), Ordering::Relaxed);
        *self.0.status.lock().unwrap_or_else(PoisonError::into_inner) = status;
    }
}

/// The loop's state: everything the thread owns.
struct Driver<M, O> {
    raw: RawNode<LogStore>,
    machine: M,
    outbox: O,
    input: Receiver<Input>,
    status: StatusHandle,
    settings: Settings,
    applied: u64,
    snapshot_index: u64,
    /// The log time of the last entry applied.
    log_time: Duration,
    /// The latest log time in this member's log (applied or not): where a new term's clock
    /// starts, so log time never goes back.
    latest: Duration,
    /// The log's clock, while this member leads.
    clock: Option<LogClock>,
    /// The leader last published, and how often that changed.
    leader: Option<u64>,
    leader_changes: u64,
    /// Confirmed reads waiting for their index to be applied: (index, context).
    reads: Vec<(u64, u64)>,
    syncs: u64,
    sync_time: Duration,
}

impl<M: Machine, O: Outbox> Driver<M, O> {
    /// Until [`Input::Stop`] (or every sender is gone): inputs as they come, a tick every
    /// `settings.tick`, and a Ready whenever raft-rs has one. A failing disk ends the loop with
    /// its error: a member that cannot persist must not vote or acknowledge.
    fn run(&mut self) -> io::Result<()> {
        let mut next_tick = Instant::now() + self.settings.tick;
        loop {
            let wait = next_tick.saturating_duration_since(Instant::now());
            match self.input.recv_timeout(wait) {
                Ok(input) => {
                    if !self.take(input) {
                        return Ok(());
                    }
                    // Take whatever else is queued before the Ready: one fsync for all of it.
                    while let Ok(input) = self.input.try_recv() {
                        if !self.take(input) {
                            return Ok(());
                        }
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return Ok(()),
            }
            if Instant::now() >= next_tick {
                self.raw.tick();
                next_tick += self.settings.tick;
            }
            if self.raw.has_ready() {
                self.handle_ready()?;
            }
            self.publish();
        }
    }

    /// Feeds one input to raft-rs; `false` to stop.
    fn take(&mut self, input: Input) -> bool {
        match input {
            Input::Propose(Proposal { seq, mut data }) => {
                if let Some(at) = self.stamp_time() {
                    envelope::stamp(&mut data, at);
                }
                if self.raw.propose(Vec::new(), data).is_err() {
                    self.machine.refused(seq);
                }
            }
            // A message raft-rs rejects (from an unknown member, say) changes nothing.
            Input::Step(mut message) => {
                // A member that lost its log (a machine replaced with an empty data directory)
                // hears heartbeats whose commit index its log does not reach, which raft-rs
                // treats as a broken invariant and stops on. Capped at what the log holds, the
                // heartbeat is answered; the leader's next append is refused and brings the
                // missing entries, or a snapshot.
                if message.get_msg_type() == MessageType::MsgHeartbeat {
                    let last = self.raw.raft.raft_log.last_index();
                    if message.commit > last {
                        message.commit = last;
                    }
                }
                self.notice_lost_log(&message);
                // A follower's proposal enters the log here, if this member leads.
                if message.get_msg_type() == MessageType::MsgPropose
                    && let Some(at) = self.stamp_time()
                {
                    for entry in message.mut_entries() {
                        envelope::stamp(&mut entry.data, at);
                    }
                }
                if let Err(error) = self.raw.step(*message) {
                    log::debug!("Raft message ignored: {error}");
                }
            }
            Input::Read(ctx) => self.raw.read_index(ctx.to_le_bytes().to_vec()),
            Input::HandOver => {
                let raft = &self.raw.raft;
                let id = self.settings.id;
                let best = (raft.state == StateRole::Leader)
                    .then(|| {
                        raft.prs()
                            .iter()
                            .filter(|&(&member, _)| member != id)
                            .max_by_key(|&(&member, progress)| (progress.matched, member))
                            .map(|(&member, _)| member)
                    })
                    .flatten();
                if let Some(member) = best {
                    log::info!("Cluster: handing the lead to member {member}");
                    self.raw.transfer_leader(member);
                }
            }
            Input::Stop => return false,
        }
        true
    }

    /// On the leader: a member whose refusal says its log ends before what it once
    /// acknowledged lost its disk (a machine replaced). raft-rs would take the refusal for a
    /// stale one and never send the entries again, so the member's progress is set back to
    /// what its log holds: the leader probes from there, and sends a snapshot if its log was
    /// compacted. Only ever lowers what the leader counts as replicated.
    fn notice_lost_log(&mut self, message: &Message) {
        if message.get_msg_type() != MessageType::MsgAppendResponse || !message.reject {
            return;
        }
        let raft = &mut self.raw.raft;
        if raft.state != StateRole::Leader {
            return;
        }
        let hint = message.reject_hint;
        if let Some(progress) = raft.mut_prs().get_mut(message.from)
            && hint < progress.matched
        {
            log::warn!(
                "Cluster: member {}'s log ends at {hint}, before the {} it acknowledged: it \
                 lost its disk; sending it the log again",
                message.from,
                progress.matched
            );
            progress.matched = hint;
            progress.become_probe();
        }
    }

    /// The log's clock if this member leads. The clock of a new term starts at the latest time
    /// in the log.
    fn leader_clock(&mut self) -> Option<LogClock> {
        let raft = &self.raw.raft;
        if raft.state != StateRole::Leader {
            self.clock = None;
            return None;
        }
        match self.clock {
            Some(clock) if clock.term == raft.term => Some(clock),
            _ => {
                let clock = LogClock {
                    term: raft.term,
                    base: self.latest,
                    since: Instant::now(),
                };
                self.clock = Some(clock);
                self.propose_first_of_term(clock);
                Some(clock)
            }
        }
    }

    /// The machine's first entry of a new term, ahead of anything proposed in it.
    fn propose_first_of_term(&mut self, clock: LogClock) {
        let Some(payload) = self.machine.elected() else {
            return;
        };
        // Numbered outside any proposer's range: nobody waits for it.
        let mut data = envelope::wrap(0, 0, &payload);
        let at = clock.now().max(self.latest);
        self.latest = at;
        envelope::stamp(&mut data, at);
        if let Err(error) = self.raw.propose(Vec::new(), data) {
            log::warn!(
                "The first entry of term {} was dropped: {error}",
                clock.term
            );
        }
    }

    /// The log time to stamp on an entry entering the log now, if this member leads.
    fn stamp_time(&mut self) -> Option<Duration> {
        let at = self.leader_clock()?.now().max(self.latest);
        self.latest = at;
        Some(at)
    }

    /// One Ready, in Raft's order. Each step's promise holds before the next one starts.
    fn handle_ready(&mut self) -> io::Result<()> {
        let mut ready = self.raw.ready();
        // 1. Messages that promise nothing about this member's disk go out first (the leader's
        //    appends: followers write their logs while the leader writes its own).
        self.send(ready.take_messages());
        // 2. A snapshot from the leader replaces the state before any later entry applies.
        if !ready.snapshot().is_empty() {
            let snapshot = ready.snapshot().clone();
            let (at, state) = envelope::open_snapshot(&snapshot.data)
                .ok_or_else(|| io::Error::other("the leader's snapshot is of another format"))?;
            self.machine.restore(state);
            self.log_time = at;
            self.latest = self.latest.max(at);
            self.applied = snapshot.get_metadata().index;
            self.snapshot_index = self.applied;
            self.raw.mut_store().apply_snapshot(snapshot)?;
        }
        // 3. Entries committed before this Ready (they are on a majority's disks) apply in
        //    order.
        self.apply(ready.take_committed_entries());
        // Reads the leader confirmed: answered once their index is applied (below).
        let ready_reads = ready.take_read_states();
        // 4. New entries and the hard state go to disk with one fsync for the batch.
        for entry in ready.entries() {
            if let Some(opened) = envelope::open(&entry.data) {
                self.latest = self.latest.max(opened.at);
            }
        }
        let store = self.raw.mut_store();
        store.append(ready.entries())?;
        if let Some(hard_state) = ready.hs() {
            store.set_hard_state(hard_state)?;
        }
        let started = Instant::now();
        if store.sync()? {
            self.syncs += 1;
            self.sync_time += started.elapsed();
        }
        // 5. Messages that promise what is now on disk (votes, append acknowledgements).
        self.send(ready.take_persisted_messages());
        // 6. Tell raft-rs; what that commits applies now.
        let mut light = self.raw.advance(ready);
        if let Some(commit) = light.commit_index() {
            // Not synced here: a commit index lost in a crash is learned again from the leader.
            self.raw.mut_store().set_commit(commit)?;
        }
        self.send(light.take_messages());
        self.apply(light.take_committed_entries());
        self.raw.advance_apply();
        self.release_reads(ready_reads);
        self.maybe_snapshot()
    }

    fn apply(&mut self, entries: Vec<Entry>) {
        for entry in entries {
            // Empty entries are a new leader's first of its term; configuration changes are not
            // used (the member list is fixed).
            if entry.get_entry_type() == EntryType::EntryNormal && !entry.data.is_empty() {
                match envelope::open(&entry.data) {
                    Some(opened) => {
                        self.log_time = self.log_time.max(opened.at);
                        self.latest = self.latest.max(self.log_time);
                        self.machine.apply(Committed {
                            index: entry.index,
                            at: self.log_time,
                            mine: (opened.origin == self.settings.id).then_some(opened.seq),
                            payload: opened.payload,
                        });
                    }
                    // Every member skips it alike, so the states stay the same.
                    None => log::error!("Raft entry {} is of another format: skipped", entry.index),
                }
            }
            self.applied = entry.index;
        }
    }

    /// Tells the machine of every confirmed read whose index is applied now; keeps the others.
    fn release_reads(&mut self, confirmed: Vec<raft::ReadState>) {
        for state in confirmed {
            let Ok(bytes) = <[u8; 8]>::try_from(state.request_ctx.as_slice()) else {
                continue;
            };
            self.reads.push((state.index, u64::from_le_bytes(bytes)));
        }
        let applied = self.applied;
        let machine = &mut self.machine;
        self.reads.retain(|&(index, ctx)| {
            if index <= applied {
                machine.readable(ctx);
                return false;
            }
            true
        });
    }

    fn maybe_snapshot(&mut self) -> io::Result<()> {
        if self.applied >= self.snapshot_index + self.settings.snapshot_every.max(1) {
            let data = envelope::wrap_snapshot(self.log_time, &self.machine.snapshot());
            self.raw.mut_store().compact(self.applied, data)?;
            self.snapshot_index = self.applied;
        }
        Ok(())
    }

    fn send(&mut self, messages: Vec<Message>) {
        for message in messages {
            self.outbox.send(message);
        }
    }

    fn publish(&mut self) {
        let clock = self.leader_clock();
        let raft = &self.raw.raft;
        let leader = (raft.leader_id != raft::INVALID_ID).then_some(raft.leader_id);
        if leader != self.leader {
            match leader {
                Some(leader) if leader == self.settings.id => {
                    log::info!("Cluster: this member ({leader}) leads, term {}", raft.term);
                }
                Some(leader) => log::info!("Cluster: member {leader} leads, term {}", raft.term),
                None => log::info!("Cluster: no leader, term {}", raft.term),
            }
            self.leader = leader;
            self.leader_changes += 1;
        }
        let status = Status {
            id: self.settings.id,
            leader,
            leader_changes: self.leader_changes,
            matched: if raft.state == StateRole::Leader {
                let mut matched: Vec<(u64, u64)> = raft
                    .prs()
                    .iter()
                    .map(|(&id, progress)| (id, progress.matched))
                    .collect();
                matched.sort_unstable();
                matched
            } else {
                Vec::new()
            },
            syncs: self.syncs,
            sync_time: self.sync_time,
            term: raft.term,
            leading: raft.state == StateRole::Leader,
            commit: raft.raft_log.committed,
            applied: self.applied,
            snapshot: self.snapshot_index,
            clock,
        };
        self.status.set(status);
    }
}

fn other(error: raft::Error) -> io::Error {
    io::Error::other(error.to_string())
}

#[cfg(test)]
mod tests;
