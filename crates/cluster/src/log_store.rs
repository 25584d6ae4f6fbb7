//! The durable Raft log of one member: `raft::Storage` over two files in its data directory.
//!
//! - `log`: records appended by [`LogStore::append`] and [`LogStore::set_hard_state`] and made
//!   durable together by one [`LogStore::sync`] per batch (group commit: a Ready of any size
//!   costs one `fsync`). It starts with a base record, the index and term the entries continue
//!   from (the last snapshot's). An entry record truncates whatever the log held at and after
//!   its index, so the file replays Raft's overwrites of uncommitted entries as they happened.
//! - `snapshot`: the latest snapshot (metadata and the state machine's bytes), replaced
//!   atomically (written aside, synced, renamed, directory synced).
//!
//! On open, the snapshot is read, then the log is replayed up to its first damaged record; a
//! torn tail (a crash in the middle of a write) is cut off before anything is appended. What
//! was synced is never lost; what was not was never acknowledged (raft-rs sends the messages
//! that promise an entry only after the sync).
//!
//! What this is not: a state machine. The snapshot's data are opaque bytes here; the node that
//! drives raft-rs decides when to take one and what it holds.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use prost::Message as _;
use raft::prelude::{Entry, HardState, Snapshot, SnapshotMetadata};
use raft::{GetEntriesContext, RaftState, StorageError};

use crate::log_file::{self, Writer};

/// A record that holds a Raft entry.
const ENTRY: u8 = 1;
/// A record that holds the hard state (term, vote, commit).
const HARD_STATE: u8 = 2;
/// The first record of a log: the snapshot metadata its entries continue from.
const BASE: u8 = 3;

/// One member's Raft log and snapshot, in memory and on disk.
pub struct LogStore {
    dir: PathBuf,
    writer: Writer,
    hard_state: HardState,
    /// The latest snapshot. Its metadata is the base of `entries`: they start right after its
    /// index (index 0 and an empty configuration for a fresh log).
    snapshot: Snapshot,
    /// The entries after the snapshot, contiguous.
    entries: Vec<Entry>,
}

/// What [`LogStore::open`] found and did, for the log.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Opened {
    /// Entries read back from the log.
    pub entries: usize,
    /// Bytes of a torn tail cut off the log.
    pub torn: u64,
    /// Entries after the snapshot that no longer matched it and were dropped.
    pub dropped: usize,
}

impl LogStore {
    /// Opens the log in `dir`, creating the directory and an empty log whose configuration is
    /// `voters` if there is none yet. An existing log keeps the configuration it has.
    pub fn open(dir: &Path, voters: &[u64]) -> io::Result<(LogStore, Opened)> {
        fs::create_dir_all(dir)?;
        let mut snapshot = match fs::read(dir.join("snapshot")) {
            Ok(bytes) => Snapshot::decode(bytes.as_slice())
                .map_err(|error| corrupt(format!("{}: {error}", dir.join("snapshot").display())))?,
            Err(error) if error.kind() == io::ErrorKind::NotFound => Snapshot::default(),
            Err(error) => return Err(error),
        };
        let path = dir.join("log");
        let fresh = !path.exists() && snapshot.get_metadata().index == 0;
        if fresh {
            snapshot.mut_metadata().mut_conf_state().voters = voters.to_vec();
        }
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)?;
        let contents = log_file::read(&mut file)?;
        if contents.torn > 0 {
            file.set_len(contents.valid_len)?;
            file.sync_all()?;
        }
        let mut opened = Opened {
            torn: contents.torn,
            ..Opened::default()
        };
        let mut store = LogStore {
            dir: dir.to_owned(),
            writer: Writer::new(file),
            hard_state: HardState::default(),
            snapshot,
            entries: Vec::new(),
        };
        for record in contents.records {
            store.replay(record)?;
        }
        opened.entries = store.entries.len();
        opened.dropped = store.drop_entries_that_miss_the_snapshot();
        if fresh {
            // The configuration lives in the snapshot's metadata: write it before anything.
            store.write_snapshot()?;
            store.rewrite()?;
        }
        Ok((store, opened))
    }

    /// Appends entries from a Ready, replacing any the log holds at and after the first one's
    /// index. Not durable before [`LogStore::sync`].
    pub fn append(&mut self, entries: &[Entry]) -> io::Result<()> {
        let Some(first) = entries.first() else {
            return Ok(());
        };
        if first.index < self.first_held() || first.index > self.last_held() + 1 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "entries from index {} do not continue the log ({} to {})",
                    first.index,
                    self.first_held(),
                    self.last_held()
                ),
            ));
        }
        for entry in entries {
            self.writer.append(ENTRY, &entry.encode_to_vec())?;
        }
        self.truncate_from(first.index);
        self.entries.extend_from_slice(entries);
        Ok(())
    }

    /// Records a new hard state. Not durable before [`LogStore::sync`].
    pub fn set_hard_state(&mut self, hard_state: &HardState) -> io::Result<()> {
        if *hard_state != self.hard_state {
            self.writer
                .append(HARD_STATE, &hard_state.encode_to_vec())?;
            self.hard_state = hard_state.clone();
        }
        Ok(())
    }

    /// Records a new commit index (from a `LightReady`). Not durable before [`LogStore::sync`].
    pub fn set_commit(&mut self, commit: u64) -> io::Result<()> {
        let mut hard_state = self.hard_state.clone();
        hard_state.commit = commit;
        self.set_hard_state(&hard_state)
    }

    /// Makes everything appended so far durable, with one `fsync` (none if nothing was
    /// appended since the last); says whether it synced.
    pub fn sync(&mut self) -> io::Result<bool> {
        self.writer.sync()
    }

    /// Installs a snapshot the leader sent: the state machine will be replaced by its data, so
    /// the log restarts after it. Durable when this returns.
    pub fn apply_snapshot(&mut self, snapshot: Snapshot) -> io::Result<()> {
        let meta = snapshot.get_metadata();
        if meta.index < self.snapshot.get_metadata().index {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "snapshot at {} is older than the one held, at {}",
                    meta.index,
                    self.snapshot.get_metadata().index
                ),
            ));
        }
        self.hard_state.term = self.hard_state.term.max(meta.term);
        self.hard_state.commit = self.hard_state.commit.max(meta.index);
        self.entries.clear();
        self.snapshot = snapshot;
        self.write_snapshot()?;
        self.rewrite()
    }

    /// Takes a snapshot of the state machine as of `applied` (its bytes are `data`) and drops
    /// the log before it. Durable when this returns.
    pub fn compact(&mut self, applied: u64, data: Vec<u8>) -> io::Result<()> {
        if applied <= self.snapshot.get_metadata().index {
            return Ok(());
        }
        let term = self.term_of(applied).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("cannot compact to {applied}: the log does not hold it"),
            )
        })?;
        let conf_state = self.snapshot.get_metadata().get_conf_state().clone();
        let mut snapshot = Snapshot {
            data,
            ..Snapshot::default()
        };
        let meta = snapshot.mut_metadata();
        meta.index = applied;
        meta.term = term;
        meta.set_conf_state(conf_state);
        self.entries.retain(|entry| entry.index > applied);
        self.snapshot = snapshot;
        self.write_snapshot()?;
        self.rewrite()
    }

    /// The index of the latest snapshot: the log holds the entries after it.
    pub fn snapshot_index(&self) -> u64 {
        self.snapshot.get_metadata().index
    }

    /// The hard state as recorded.
    pub fn hard_state(&self) -> &HardState {
        &self.hard_state
    }

    fn first_held(&self) -> u64 {
        self.snapshot.get_metadata().index + 1
    }

    fn last_held(&self) -> u64 {
        self.entries
            .last()
            .map_or(self.snapshot.get_metadata().index, |entry| entry.index)
    }

    fn term_of(&self, index: u64) -> Option<u64> {
        let meta = self.snapshot.get_metadata();
        if index == meta.index {
            return Some(meta.term);
        }
        let offset = index.checked_sub(self.first_held())?;
        self.entries
            .get(usize::try_from(offset).ok()?)
            .map(|entry| entry.term)
    }

    /// Drops the entries at and after `index`.
    fn truncate_from(&mut self, index: u64) {
        let keep = index.saturating_sub(self.first_held());
        self.entries
            .truncate(usize::try_from(keep).unwrap_or(usize::MAX));
    }

    fn replay(&mut self, record: log_file::Record) -> io::Result<()> {
        let payload = record.payload.as_slice();
        match record.kind {
            ENTRY => {
                let entry = Entry::decode(payload).map_err(|e| corrupt(e.to_string()))?;
                if entry.index <= self.snapshot.get_metadata().index {
                    return Ok(());
                }
                if entry.index > self.last_held() + 1 {
                    // Entries the snapshot made obsolete leave a gap; what follows it is only
                    // kept if it continues the snapshot (`drop_entries_that_miss_the_snapshot`).
                    self.entries.clear();
                }
                self.truncate_from(entry.index);
                self.entries.push(entry);
            }
            HARD_STATE => {
                self.hard_state = HardState::decode(payload).map_err(|e| corrupt(e.to_string()))?;
            }
            BASE => {
                let base = SnapshotMetadata::decode(payload).map_err(|e| corrupt(e.to_string()))?;
                if base.index > self.snapshot.get_metadata().index {
                    return Err(corrupt(format!(
                        "the log continues from index {}, but the snapshot is at {}",
                        base.index,
                        self.snapshot.get_metadata().index
                    )));
                }
            }
            kind => return Err(corrupt(format!("unknown record kind {kind}"))),
        }
        Ok(())
    }

    /// After a crash between writing a snapshot and rewriting the log, the log may hold entries
    /// that do not continue the snapshot: keep them only if they start right after it.
    fn drop_entries_that_miss_the_snapshot(&mut self) -> usize {
        let continues = self
            .entries
            .first()
            .is_none_or(|first| first.index == self.first_held());
        if continues {
            return 0;
        }
        let dropped = self.entries.len();
        self.entries.clear();
        dropped
    }

    fn write_snapshot(&self) -> io::Result<()> {
        replace(&self.dir, "snapshot", &self.snapshot.encode_to_vec())
    }

    /// Writes a new log file (base, hard state, the entries held) in place of the old one.
    fn rewrite(&mut self) -> io::Result<()> {
        let path = self.dir.join("log.new");
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)?;
        let mut writer = Writer::new(file);
        writer.append(BASE, &self.snapshot.get_metadata().encode_to_vec())?;
        writer.append(HARD_STATE, &self.hard_state.encode_to_vec())?;
        for entry in &self.entries {
            writer.append(ENTRY, &entry.encode_to_vec())?;
        }
        writer.sync()?;
        fs::rename(&path, self.dir.join("log"))?;
        sync_dir(&self.dir)?;
        let file = OpenOptions::new().append(true).open(self.dir.join("log"))?;
        self.writer = Writer::new(file);
        Ok(())
    }
}

impl raft::Storage for LogStore {
    fn initial_state(&self) -> raft::Result<RaftState> {
        Ok(RaftState::new(
            self.hard_state.clone(),
            self.snapshot.get_metadata().get_conf_state().clone(),
        ))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        if low < self.first_held() {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if high > self.last_held() + 1 || low > high {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        let from = (low - self.first_held()) as usize;
        let to = (high - self.first_held()) as usize;
        let mut entries = self.entries[from..to].to_vec();
        raft::util::limit_size(&mut entries, max_size.into());
        Ok(entries)
    }

    fn term(&self, index: u64) -> raft::Result<u64> {
        if index < self.snapshot.get_metadata().index {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        self.term_of(index)
            .ok_or(raft::Error::Store(StorageError::Unavailable))
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.first_held())
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.last_held())
    }

    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        if self.snapshot.get_metadata().index < request_index {
            // The node takes a newer one soon; raft-rs asks again.
            return Err(raft::Error::Store(
                StorageError::SnapshotTemporarilyUnavailable,
            ));
        }
        Ok(self.snapshot.clone())
    }
}

fn corrupt(what: String) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("corrupt Raft log: {what}"),
    )
}

/// Replaces `dir/name` with `bytes` atomically: a crash leaves the old file or the new one.
fn replace(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    let temporary = dir.join(format!("{name}.new"));
    {
        let mut file = File::create(&temporary)?;
        io::Write::write_all(&mut file, bytes)?;
        file.sync_all()?;
    }
    fs::rename(&temporary, dir.join(name))?;
    sync_dir(dir)
}

/// Makes a rename in `dir` durable. A no-op where directories cannot be opened (Windows).
fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

#[cfg(test)]
mod tests;
