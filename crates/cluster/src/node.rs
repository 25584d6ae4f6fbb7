//! The thread that drives raft-rs for one member: ticks, proposals and messages in; the log to
//! disk, messages out and committed entries to the state machine, in Raft's order.
//!
//! raft-rs is a pure state machine (`RawNode`): it never sleeps, sends or writes. One thread per
//! member owns it and runs the loop of [`Driver::run`]: wait for input until the next tick, feed
//! it in, and handle each `Ready` in the fixed order etcd's README spells out (the numbered steps
//! in [`Driver::handle_ready`]). Nothing else touches the `RawNode`, so no lock guards it.
//!
//! What this is not: the meaning of an entry (the [`Machine`] decides), nor how messages travel
//! (the [`Outbox`] decides: TCP between members, channels in the tests).

use std::io;
use std::path::Path;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use raft::prelude::{Entry, EntryType, Message};
use raft::{Config, RawNode, StateRole};

use crate::log_store::LogStore;
use crate::slog_log;

/// The replicated state: what committed entries are applied to, in log order, on every member.
pub trait Machine: Send + 'static {
    /// Applies the data of the committed entry at `index`. Called once per entry, in order;
    /// never with an index at or below the last snapshot restored.
    fn apply(&mut self, index: u64, data: &[u8]);
    /// The whole state, for a snapshot: what [`Machine::restore`] takes back.
    fn snapshot(&self) -> Vec<u8>;
    /// Replaces the state with a snapshot's (at start, or sent by the leader).
    fn restore(&mut self, data: &[u8]);
    /// A proposal raft refused (no leader known): whoever proposed it gets no answer from the
    /// log and should hear it here.
    fn refused(&mut self, data: Vec<u8>);
}

/// Where messages to other members go. Sending never blocks the node: a message that cannot be
/// delivered is dropped, and Raft sends again.
pub trait Outbox: Send + 'static {
    fn send(&mut self, message: Message);
}

/// What the node's thread takes in.
#[derive(Debug)]
pub enum Input {
    /// Data to append to the log (only the leader's are kept; raft-rs forwards a follower's).
    Propose(Vec<u8>),
    /// A message from another member.
    Step(Box<Message>),
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
}

/// A running member: its thread and the ways in.
pub struct Node {
    inbox: Sender<Input>,
    status: Arc<Mutex<Status>>,
    thread: JoinHandle<io::Result<()>>,
}

impl Node {
    /// Opens the log in `dir` (creating it for `settings.voters` if new), restores the machine
    /// from the latest snapshot, and starts the thread. The entries committed after the snapshot
    /// are applied again by the thread before anything new.
    pub fn start(
        dir: &Path,
        settings: Settings,
        mut machine: impl Machine,
        outbox: impl Outbox,
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
        if snapshot_index > 0 {
            let snapshot = raft::Storage::snapshot(&store, 0, settings.id).map_err(other)?;
            machine.restore(&snapshot.data);
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
        let (inbox, input) = mpsc::channel();
        let status = Arc::new(Mutex::new(Status {
            id: settings.id,
            applied: snapshot_index,
            ..Status::default()
        }));
        let mut driver = Driver {
            raw,
            machine,
            outbox,
            input,
            status: status.clone(),
            settings,
            applied: snapshot_index,
            snapshot_index,
        };
        let thread = thread::Builder::new()
            .name("raft".into())
            .spawn(move || driver.run())?;
        Ok(Node {
            inbox,
            status,
            thread,
        })
    }

    /// Where the transport delivers messages and the service its proposals.
    pub fn inbox(&self) -> Sender<Input> {
        self.inbox.clone()
    }

    /// A copy of what this member knows now.
    pub fn status(&self) -> Status {
        self.status
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Stops the thread and waits for it; its error, if the log failed.
    pub fn stop(self) -> io::Result<()> {
        let _ = self.inbox.send(Input::Stop);
        self.thread
            .join()
            .map_err(|_| io::Error::other("the raft thread panicked"))?
    }
}

/// The loop's state: everything the thread owns.
struct Driver<M, O> {
    raw: RawNode<LogStore>,
    machine: M,
    outbox: O,
    input: Receiver<Input>,
    status: Arc<Mutex<Status>>,
    settings: Settings,
    applied: u64,
    snapshot_index: u64,
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
            Input::Propose(data) => {
                if self.raw.propose(Vec::new(), data.clone()).is_err() {
                    self.machine.refused(data);
                }
            }
            // A message raft-rs rejects (from an unknown member, say) changes nothing.
            Input::Step(message) => {
                if let Err(error) = self.raw.step(*message) {
                    log::debug!("Raft message ignored: {error}");
                }
            }
            Input::Stop => return false,
        }
        true
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
            self.machine.restore(&snapshot.data);
            self.applied = snapshot.get_metadata().index;
            self.snapshot_index = self.applied;
            self.raw.mut_store().apply_snapshot(snapshot)?;
        }
        // 3. Entries committed before this Ready (they are on a majority's disks) apply in
        //    order.
        self.apply(ready.take_committed_entries());
        // 4. New entries and the hard state go to disk with one fsync for the batch.
        let store = self.raw.mut_store();
        store.append(ready.entries())?;
        if let Some(hard_state) = ready.hs() {
            store.set_hard_state(hard_state)?;
        }
        store.sync()?;
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
        self.maybe_snapshot()
    }

    fn apply(&mut self, entries: Vec<Entry>) {
        for entry in entries {
            // Empty entries are a new leader's first of its term; configuration changes are not
            // used (the member list is fixed).
            if entry.get_entry_type() == EntryType::EntryNormal && !entry.data.is_empty() {
                self.machine.apply(entry.index, &entry.data);
            }
            self.applied = entry.index;
        }
    }

    fn maybe_snapshot(&mut self) -> io::Result<()> {
        if self.applied >= self.snapshot_index + self.settings.snapshot_every.max(1) {
            let data = self.machine.snapshot();
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

    fn publish(&self) {
        let raft = &self.raw.raft;
        let status = Status {
            id: self.settings.id,
            leader: (raft.leader_id != raft::INVALID_ID).then_some(raft.leader_id),
            term: raft.term,
            leading: raft.state == StateRole::Leader,
            commit: raft.raft_log.committed,
            applied: self.applied,
            snapshot: self.snapshot_index,
        };
        *self.status.lock().unwrap_or_else(PoisonError::into_inner) = status;
    }
}

fn other(error: raft::Error) -> io::Error {
    io::Error::other(error.to_string())
}

#[cfg(test)]
mod tests;
