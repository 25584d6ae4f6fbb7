use raft::Storage as _;
use raft::storage::MemStorage;

use super::*;
use crate::test_support::TempDir;

fn entry(index: u64, term: u64) -> Entry {
    Entry {
        index,
        term,
        data: format!("op {index}/{term}").into_bytes(),
        ..Entry::default()
    }
}

fn entries(range: std::ops::RangeInclusive<u64>, term: u64) -> Vec<Entry> {
    range.map(|index| entry(index, term)).collect()
}

fn hard_state(term: u64, vote: u64, commit: u64) -> HardState {
    HardState { term, vote, commit }
}

fn open(dir: &TempDir) -> (LogStore, Opened) {
    LogStore::open(&dir.0, &[1, 2, 3]).unwrap()
}

/// Everything raft-rs can read from a store, for comparing two.
fn view(store: &impl raft::Storage) -> (u64, u64, Vec<Entry>, HardState, Vec<u64>) {
    let first = store.first_index().unwrap();
    let last = store.last_index().unwrap();
    let held = store
        .entries(first, last + 1, None, GetEntriesContext::empty(false))
        .unwrap();
    let state = store.initial_state().unwrap();
    (first, last, held, state.hard_state, state.conf_state.voters)
}

#[test]
fn a_fresh_log_is_empty_and_has_the_voters() {
    let dir = TempDir::new();
    let (store, opened) = open(&dir);
    assert_eq!(opened, Opened::default());
    let state = store.initial_state().unwrap();
    assert_eq!(state.conf_state.voters, [1, 2, 3]);
    assert_eq!(store.first_index().unwrap(), 1);
    assert_eq!(store.last_index().unwrap(), 0);
    assert_eq!(store.term(0).unwrap(), 0);
    // The voters are on disk, and the first configuration wins over later ones.
    drop(store);
    let (again, _) = LogStore::open(&dir.0, &[7]).unwrap();
    assert_eq!(again.initial_state().unwrap().conf_state.voters, [1, 2, 3]);
}

#[test]
fn what_was_synced_reads_back_after_a_restart() {
    let dir = TempDir::new();
    let (mut store, _) = open(&dir);
    store.append(&entries(1..=5, 1)).unwrap();
    store.set_hard_state(&hard_state(1, 2, 3)).unwrap();
    store.sync().unwrap();
    let before = view(&store);
    drop(store);
    let (again, opened) = open(&dir);
    assert_eq!(opened.entries, 5);
    assert_eq!(opened.torn, 0);
    assert_eq!(view(&again), before);
    assert_eq!(again.hard_state(), &hard_state(1, 2, 3));
}

#[test]
fn an_overwrite_replaces_the_tail_on_disk_too() {
    let dir = TempDir::new();
    let (mut store, _) = open(&dir);
    store.append(&entries(1..=5, 1)).unwrap();
    store.append(&entries(3..=4, 2)).unwrap();
    store.sync().unwrap();
    assert_eq!(store.last_index().unwrap(), 4);
    assert_eq!(store.term(3).unwrap(), 2);
    let before = view(&store);
    drop(store);
    assert_eq!(view(&open(&dir).0), before);
}

#[test]
fn appends_that_leave_a_gap_or_reach_into_the_snapshot_are_refused() {
    let dir = TempDir::new();
    let (mut store, _) = open(&dir);
    store.append(&entries(1..=3, 1)).unwrap();
    assert!(store.append(&entries(5..=6, 1)).is_err());
    store.compact(2, b"state".to_vec()).unwrap();
    assert!(store.append(&entries(2..=4, 2)).is_err());
    assert_eq!(store.last_index().unwrap(), 3);
    assert_eq!(store.first_index().unwrap(), 3);
}

#[test]
fn a_torn_tail_is_cut_off_and_the_log_goes_on() {
    let dir = TempDir::new();
    let (mut store, _) = open(&dir);
    store.append(&entries(1..=4, 1)).unwrap();
    store.sync().unwrap();
    drop(store);
    let path = dir.0.join("log");
    let length = fs::metadata(&path).unwrap().len();
    OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(length - 3)
        .unwrap();
    let (mut store, opened) = open(&dir);
    assert_eq!(opened.entries, 3);
    assert!(opened.torn > 0);
    assert_eq!(store.last_index().unwrap(), 3);
    store.append(&entries(4..=6, 2)).unwrap();
    store.sync().unwrap();
    drop(store);
    let (store, opened) = open(&dir);
    assert_eq!(opened.torn, 0);
    assert_eq!(store.last_index().unwrap(), 6);
    assert_eq!(store.term(4).unwrap(), 2);
}

#[test]
fn a_compacted_log_keeps_the_snapshot_and_what_follows() {
    let dir = TempDir::new();
    let (mut store, _) = open(&dir);
    store.append(&entries(1..=10, 3)).unwrap();
    store.set_hard_state(&hard_state(3, 1, 8)).unwrap();
    store.sync().unwrap();
    store.compact(6, b"state at 6".to_vec()).unwrap();
    assert_eq!(store.first_index().unwrap(), 7);
    assert_eq!(store.term(6).unwrap(), 3);
    assert_eq!(
        store.term(5),
        Err(raft::Error::Store(StorageError::Compacted))
    );
    assert_eq!(
        store.entries(5, 8, None, GetEntriesContext::empty(false)),
        Err(raft::Error::Store(StorageError::Compacted))
    );
    let snapshot = store.snapshot(6, 2).unwrap();
    assert_eq!(snapshot.get_metadata().index, 6);
    assert_eq!(&snapshot.data[..], b"state at 6");
    assert_eq!(
        store.snapshot(9, 2),
        Err(raft::Error::Store(
            StorageError::SnapshotTemporarilyUnavailable
        ))
    );
    let before = view(&store);
    drop(store);
    let (again, _) = open(&dir);
    assert_eq!(view(&again), before);
    assert_eq!(&again.snapshot(0, 2).unwrap().data[..], b"state at 6");
}

#[test]
fn a_snapshot_from_the_leader_restarts_the_log_after_it() {
    let dir = TempDir::new();
    let (mut store, _) = open(&dir);
    store.append(&entries(1..=4, 1)).unwrap();
    store.sync().unwrap();
    let mut snapshot = Snapshot {
        data: b"leader's state".to_vec(),
        ..Snapshot::default()
    };
    snapshot.mut_metadata().index = 20;
    snapshot.mut_metadata().term = 4;
    snapshot.mut_metadata().mut_conf_state().voters = vec![1, 2, 3];
    store.apply_snapshot(snapshot).unwrap();
    assert_eq!(store.first_index().unwrap(), 21);
    assert_eq!(store.last_index().unwrap(), 20);
    assert_eq!(store.hard_state().commit, 20);
    store.append(&entries(21..=22, 4)).unwrap();
    store.sync().unwrap();
    let before = view(&store);
    drop(store);
    assert_eq!(view(&open(&dir).0), before);
}

#[test]
fn a_crash_between_snapshot_and_log_rewrite_keeps_only_what_continues_the_snapshot() {
    for (snapshot_index, kept) in [(8, 2), (15, 0)] {
        let dir = TempDir::new();
        let (mut store, _) = open(&dir);
        store.append(&entries(1..=10, 1)).unwrap();
        store.sync().unwrap();
        drop(store);
        // The snapshot file is replaced, the log is not (the crash came in between).
        let mut snapshot = Snapshot::default();
        snapshot.mut_metadata().index = snapshot_index;
        snapshot.mut_metadata().term = 1;
        snapshot.mut_metadata().mut_conf_state().voters = vec![1, 2, 3];
        replace(&dir.0, "snapshot", &snapshot.encode_to_vec()).unwrap();
        let (store, _) = open(&dir);
        assert_eq!(store.first_index().unwrap(), snapshot_index + 1);
        assert_eq!(
            store.last_index().unwrap(),
            snapshot_index + kept,
            "snapshot at {snapshot_index}"
        );
    }
}

#[test]
fn garbage_in_the_snapshot_file_is_an_error_not_a_panic() {
    let dir = TempDir::new();
    fs::write(dir.0.join("snapshot"), b"\xff\xff\xff not a snapshot").unwrap();
    let error = LogStore::open(&dir.0, &[1]).err().expect("refused");
    assert_eq!(error.kind(), io::ErrorKind::InvalidData);
}

/// The same appends, with overwrites, give the same log as raft-rs's own `MemStorage`, in
/// memory and after a restart.
#[test]
fn it_agrees_with_raft_rs_memory_storage() {
    let mut seed: u64 = 0x2545_F491_4F6C_DD1D;
    let mut next = move |below: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % below
    };
    for round in 0..20 {
        let dir = TempDir::new();
        let (mut store, _) = LogStore::open(&dir.0, &[1]).unwrap();
        let memory = MemStorage::new_with_conf_state((vec![1], vec![]));
        let mut term = 1;
        for _ in 0..50 {
            let last = store.last_index().unwrap();
            // Start anywhere from the first index to right after the last: raft overwrites
            // uncommitted entries this way.
            let from = 1 + next(last + 1);
            let count = 1 + next(5);
            if next(4) == 0 {
                term += 1;
            }
            let batch = entries(from..=from + count - 1, term);
            store.append(&batch).unwrap();
            memory.wl().append(&batch).unwrap();
            let hard_state = hard_state(term, next(3), 0);
            store.set_hard_state(&hard_state).unwrap();
            memory.wl().set_hardstate(hard_state);
            store.sync().unwrap();
            assert_eq!(view(&store), view(&memory), "round {round}");
        }
        drop(store);
        let (again, _) = LogStore::open(&dir.0, &[1]).unwrap();
        assert_eq!(view(&again), view(&memory), "round {round} after a restart");
    }
}
