//! Members in one process, their messages carried by channels through a switchboard that can cut
//! any member off. Each member's machine records what it applied, so the tests compare logs.

use std::collections::{BTreeSet, HashMap};

use super::*;
use crate::test_support::{PROMPTLY, TempDir, eventually};

const TICK: Duration = Duration::from_millis(10);

/// What the machine was told of one entry: index, log time, own number.
type Seen = (u64, Duration, Option<u64>);

/// The data each member applied, in order, shared with the test; beside it what the machine
/// was told of each entry (index, log time, own number) and of refused proposals.
#[derive(Clone, Default)]
struct Journal {
    data: Arc<Mutex<Vec<Vec<u8>>>>,
    applied: Arc<Mutex<Vec<Seen>>>,
    refused: Arc<Mutex<Vec<u64>>>,
    /// What the member proposes first when elected.
    first: Option<&'static str>,
    /// Reads made readable: (context, entries applied by then).
    reads: Arc<Mutex<Vec<(u64, usize)>>>,
}

impl Journal {
    fn entries(&self) -> Vec<Vec<u8>> {
        self.data.lock().unwrap().clone()
    }

    /// (index, log time, own number) of each entry applied since the machine started.
    fn applied(&self) -> Vec<Seen> {
        self.applied.lock().unwrap().clone()
    }
}

impl Machine for Journal {
    fn apply(&mut self, entry: Committed<'_>) {
        self.data.lock().unwrap().push(entry.payload.to_vec());
        self.applied
            .lock()
            .unwrap()
            .push((entry.index, entry.at, entry.mine));
    }

    fn snapshot(&self) -> Vec<u8> {
        // Entries joined with a separator byte the tests never use.
        self.data.lock().unwrap().join(&0u8)
    }

    fn restore(&mut self, data: &[u8]) {
        let entries = if data.is_empty() {
            Vec::new()
        } else {
            data.split(|&byte| byte == 0).map(<[u8]>::to_vec).collect()
        };
        *self.data.lock().unwrap() = entries;
    }

    fn refused(&mut self, seq: u64) {
        self.refused.lock().unwrap().push(seq);
    }

    fn elected(&mut self) -> Option<Vec<u8>> {
        self.first.map(|first| first.as_bytes().to_vec())
    }

    fn readable(&mut self, ctx: u64) {
        let applied = self.data.lock().unwrap().len();
        self.reads.lock().unwrap().push((ctx, applied));
    }
}

/// Delivers messages between members; a member in `cut` neither sends nor receives.
#[derive(Clone, Default)]
struct Switchboard {
    inboxes: Arc<Mutex<HashMap<u64, Sender<Input>>>>,
    cut: Arc<Mutex<BTreeSet<u64>>>,
}

struct Line {
    from: u64,
    board: Switchboard,
}

impl Outbox for Line {
    fn send(&mut self, message: Message) {
        let cut = self.board.cut.lock().unwrap();
        if cut.contains(&self.from) || cut.contains(&message.to) {
            return;
        }
        if let Some(inbox) = self.board.inboxes.lock().unwrap().get(&message.to) {
            let _ = inbox.send(Input::Step(Box::new(message)));
        }
    }
}

struct Member {
    dir: TempDir,
    journal: Journal,
    node: Option<Node>,
}

struct Cluster {
    board: Switchboard,
    members: Vec<Member>,
    snapshot_every: u64,
    /// What every member proposes first when elected.
    first: Option<&'static str>,
}

impl Cluster {
    fn new(size: u64, snapshot_every: u64) -> Cluster {
        let mut cluster = Cluster {
            board: Switchboard::default(),
            members: Vec::new(),
            snapshot_every,
            first: None,
        };
        for _ in 0..size {
            cluster.members.push(Member {
                dir: TempDir::new(),
                journal: Journal::default(),
                node: None,
            });
        }
        for id in 1..=size {
            cluster.start(id);
        }
        cluster
    }

    /// Starts member `id` on its data directory, with a fresh machine (restored from its disk).
    fn start(&mut self, id: u64) {
        let voters = (1..=self.members.len() as u64).collect();
        let member = &mut self.members[(id - 1) as usize];
        member.journal = Journal {
            first: self.first,
            ..Journal::default()
        };
        let settings = Settings {
            id,
            voters,
            tick: TICK,
            snapshot_every: self.snapshot_every,
        };
        let line = Line {
            from: id,
            board: self.board.clone(),
        };
        let node = Node::start(&member.dir.0, settings, member.journal.clone(), line).unwrap();
        self.board.inboxes.lock().unwrap().insert(id, node.inbox());
        member.node = Some(node);
    }

    fn stop(&mut self, id: u64) {
        self.board.inboxes.lock().unwrap().remove(&id);
        let node = self.members[(id - 1) as usize].node.take().unwrap();
        node.stop().unwrap();
    }

    fn node(&self, id: u64) -> &Node {
        self.members[(id - 1) as usize].node.as_ref().unwrap()
    }

    fn journal(&self, id: u64) -> Vec<Vec<u8>> {
        self.members[(id - 1) as usize].journal.entries()
    }

    fn running(&self) -> impl Iterator<Item = u64> + '_ {
        (1..=self.members.len() as u64).filter(|&id| self.members[(id - 1) as usize].node.is_some())
    }

    /// The member that leads, once the running members that are not cut off agree on one.
    fn leader(&self) -> u64 {
        let cut = self.board.cut.lock().unwrap().clone();
        eventually("a leader", || {
            let leaders: BTreeSet<_> = self
                .running()
                .filter(|id| !cut.contains(id))
                .map(|id| self.node(id).status())
                .filter(|status| status.leading)
                .map(|status| status.id)
                .collect();
            (leaders.len() == 1).then(|| *leaders.first().unwrap())
        })
    }

    fn propose(&self, id: u64, data: &str) -> u64 {
        self.node(id).proposer().propose(data.as_bytes()).unwrap()
    }

    fn applied(&self, id: u64) -> Vec<Seen> {
        self.members[(id - 1) as usize].journal.applied()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for member in &mut self.members {
            if let Some(node) = member.node.take() {
                let _ = node.stop();
            }
        }
    }
}

fn texts(entries: &[&str]) -> Vec<Vec<u8>> {
    entries
        .iter()
        .map(|text| text.as_bytes().to_vec())
        .collect()
}

#[track_caller]
fn wait_for_journal(cluster: &Cluster, id: u64, expected: &[&str]) {
    let expected = texts(expected);
    eventually(&format!("member {id} applies {expected:?}"), || {
        (cluster.journal(id) == expected).then_some(())
    });
}

#[test]
fn a_cluster_of_one_leads_applies_in_order_and_keeps_it_across_a_restart() {
    let mut cluster = Cluster::new(1, 1_000);
    assert_eq!(cluster.leader(), 1);
    for data in ["a", "b", "c"] {
        cluster.propose(1, data);
    }
    wait_for_journal(&cluster, 1, &["a", "b", "c"]);
    cluster.stop(1);
    cluster.start(1);
    // The committed entries are applied again to the fresh machine, from the log on disk.
    wait_for_journal(&cluster, 1, &["a", "b", "c"]);
    assert_eq!(cluster.leader(), 1);
    cluster.propose(1, "d");
    wait_for_journal(&cluster, 1, &["a", "b", "c", "d"]);
}

#[test]
fn three_members_apply_the_same_entries_in_the_same_order() {
    let cluster = Cluster::new(3, 1_000);
    let leader = cluster.leader();
    let follower = (1..=3).find(|&id| id != leader).unwrap();
    cluster.propose(leader, "from the leader");
    // A follower's proposal is forwarded to the leader by raft-rs.
    cluster.propose(follower, "via a follower");
    let expected = ["from the leader", "via a follower"];
    for id in 1..=3 {
        wait_for_journal(&cluster, id, &expected);
    }
    for id in 1..=3 {
        // A follower learns the commit index with the leader's next message.
        eventually("every member knows the leader and the commit", || {
            let status = cluster.node(id).status();
            (status.leader == Some(leader) && status.commit >= 3 && status.applied >= 3)
                .then_some(())
        });
        // The leader read on its own (for every HTTP answer) is the status's.
        assert_eq!(cluster.node(id).status_handle().leader(), Some(leader));
    }
}

#[test]
fn the_loss_of_the_leader_elects_another_and_loses_nothing_committed() {
    let mut cluster = Cluster::new(3, 1_000);
    let first = cluster.leader();
    cluster.propose(first, "before");
    for id in 1..=3 {
        wait_for_journal(&cluster, id, &["before"]);
    }
    cluster.stop(first);
    let second = cluster.leader();
    assert_ne!(second, first);
    eventually("the survivors' handles name the new leader", || {
        cluster
            .running()
            .all(|id| cluster.node(id).status_handle().leader() == Some(second))
            .then_some(())
    });
    assert!(cluster.node(second).status().term > 1);
    cluster.propose(second, "after");
    for id in cluster.running().collect::<Vec<_>>() {
        wait_for_journal(&cluster, id, &["before", "after"]);
    }
    // The old leader comes back as a follower and catches up.
    cluster.start(first);
    wait_for_journal(&cluster, first, &["before", "after"]);
}

#[test]
fn a_member_cut_off_grants_nothing_and_the_majority_goes_on() {
    let cluster = Cluster::new(3, 1_000);
    let leader = cluster.leader();
    cluster.board.cut.lock().unwrap().insert(leader);
    // The majority elects a new leader; the cut-off one steps down (check quorum).
    let new = cluster.leader();
    assert_ne!(new, leader);
    eventually("the cut-off leader steps down", || {
        (!cluster.node(leader).status().leading).then_some(())
    });
    cluster.propose(leader, "lost");
    cluster.propose(new, "kept");
    let others: Vec<u64> = (1..=3).filter(|&id| id != leader).collect();
    for &id in &others {
        wait_for_journal(&cluster, id, &["kept"]);
    }
    assert!(cluster.journal(leader).is_empty());
    // Healed, it follows the majority's log.
    cluster.board.cut.lock().unwrap().clear();
    wait_for_journal(&cluster, leader, &["kept"]);
}

#[test]
fn a_member_that_stayed_down_catches_up_from_a_snapshot() {
    let mut cluster = Cluster::new(3, 5);
    let leader = cluster.leader();
    let absent = (1..=3).find(|&id| id != leader).unwrap();
    cluster.stop(absent);
    let expected: Vec<String> = (0..30).map(|n| format!("entry {n}")).collect();
    let expected: Vec<&str> = expected.iter().map(String::as_str).collect();
    for data in &expected {
        cluster.propose(leader, data);
    }
    wait_for_journal(&cluster, leader, &expected);
    // The leader's log was compacted past what the absent member holds (its log ends at the
    // first leader's empty entry), so only a snapshot can bring it up to date.
    eventually("the leader compacts its log", || {
        (cluster.node(leader).status().snapshot >= 10).then_some(())
    });
    cluster.start(absent);
    wait_for_journal(&cluster, absent, &expected);
}

#[test]
fn entries_carry_the_leaders_log_time_and_their_proposers_number() {
    let cluster = Cluster::new(3, 1_000);
    let leader = cluster.leader();
    let follower = (1..=3).find(|&id| id != leader).unwrap();
    let first = cluster.propose(leader, "one");
    thread::sleep(Duration::from_millis(30));
    let second = cluster.propose(follower, "two");
    for id in 1..=3 {
        wait_for_journal(&cluster, id, &["one", "two"]);
    }
    // Every member applies the same entries at the same log times.
    let applied = cluster.applied(leader);
    let times: Vec<_> = applied.iter().map(|&(index, at, _)| (index, at)).collect();
    for id in 1..=3 {
        let other: Vec<_> = cluster
            .applied(id)
            .iter()
            .map(|&(i, at, _)| (i, at))
            .collect();
        assert_eq!(other, times, "member {id}");
    }
    // Stamped by the leader's clock, which ran while the test slept.
    assert!(
        times[1].1 >= times[0].1 + Duration::from_millis(30),
        "{times:?}"
    );
    // Each entry is "mine" on its proposer only.
    assert_eq!(applied[0].2, Some(first));
    assert_eq!(applied[1].2, None);
    assert_eq!(cluster.applied(follower)[1].2, Some(second));
    let third = (1..=3).find(|&id| id != leader && id != follower).unwrap();
    assert!(
        cluster
            .applied(third)
            .iter()
            .all(|&(_, _, mine)| mine.is_none())
    );
    let clock = cluster
        .node(leader)
        .status()
        .clock
        .expect("the leader has a clock");
    assert!(clock.now() >= times[1].1);
    assert_eq!(cluster.node(follower).status().clock, None);
}

#[test]
fn log_time_stands_still_between_leaders() {
    let mut cluster = Cluster::new(3, 1_000);
    let first = cluster.leader();
    cluster.propose(first, "before");
    for id in 1..=3 {
        wait_for_journal(&cluster, id, &["before"]);
    }
    let stamped = Instant::now();
    let before = cluster.applied(first)[0].1;
    cluster.stop(first);
    let second = cluster.leader();
    thread::sleep(Duration::from_millis(50));
    let asked = Instant::now();
    cluster.propose(second, "after");
    wait_for_journal(&cluster, second, &["before", "after"]);
    let after = cluster.applied(second)[1].1;
    assert!(after >= before);
    // The election's time is not counted: at most the time the new leader has led.
    let election = asked - stamped;
    assert!(
        after - before <= election,
        "log time moved {:?} in {election:?}",
        after - before
    );
}

#[test]
fn a_proposal_without_a_leader_is_refused_with_its_number() {
    let cluster = Cluster::new(3, 1_000);
    let leader = cluster.leader();
    for id in 1..=3 {
        cluster.board.cut.lock().unwrap().insert(id);
    }
    // Alone, the leader steps down (check quorum), and then nobody leads.
    eventually("no member leads or knows a leader", || {
        (1..=3)
            .all(|id| cluster.node(id).status().leader.is_none())
            .then_some(())
    });
    let seq = cluster.propose(leader, "nowhere");
    eventually("the proposal is refused", || {
        cluster.members[(leader - 1) as usize]
            .journal
            .refused
            .lock()
            .unwrap()
            .contains(&seq)
            .then_some(())
    });
}

#[test]
fn a_new_leader_proposes_its_first_entry_before_anything_else() {
    let mut cluster = Cluster::new(1, 1_000);
    cluster.stop(1);
    cluster.first = Some("configuration");
    cluster.start(1);
    // Proposed before the election is over: refused, or queued behind the first entry.
    cluster.leader();
    cluster.propose(1, "a");
    wait_for_journal(&cluster, 1, &["configuration", "a"]);
    // Each term begins with it.
    cluster.stop(1);
    cluster.start(1);
    cluster.leader();
    cluster.propose(1, "b");
    wait_for_journal(&cluster, 1, &["configuration", "a", "configuration", "b"]);
    // Nobody waits for it: it is nobody's own entry (the log is applied again at a start).
    let mine: Vec<bool> = cluster
        .applied(1)
        .iter()
        .map(|seen| seen.2.is_some())
        .collect();
    assert_eq!(mine, [false, true, false, true]);
}

#[test]
fn a_read_on_a_follower_waits_for_what_the_leader_committed() {
    let cluster = Cluster::new(3, 1_000);
    let leader = cluster.leader();
    let follower = (1..=3).find(|&id| id != leader).unwrap();
    for n in 0..20 {
        cluster.propose(leader, &format!("entry {n}"));
    }
    // Wait until the leader applied them all; the follower may still be behind.
    eventually("the leader applies every entry", || {
        (cluster.journal(leader).len() == 20).then_some(())
    });
    cluster.node(follower).inbox().send(Input::Read(7)).unwrap();
    let reads = &cluster.members[(follower - 1) as usize].journal.reads;
    let applied = eventually("the read is confirmed", || {
        reads.lock().unwrap().first().copied()
    });
    assert_eq!(
        applied,
        (7, 20),
        "the read saw everything committed before it began"
    );
}

#[test]
fn a_read_without_a_leader_is_never_confirmed() {
    let cluster = Cluster::new(3, 1_000);
    let leader = cluster.leader();
    for id in 1..=3 {
        cluster.board.cut.lock().unwrap().insert(id);
    }
    eventually("no member knows a leader", || {
        (1..=3)
            .all(|id| cluster.node(id).status().leader.is_none())
            .then_some(())
    });
    cluster.node(leader).inbox().send(Input::Read(9)).unwrap();
    thread::sleep(Duration::from_millis(300));
    let reads = &cluster.members[(leader - 1) as usize].journal.reads;
    assert!(reads.lock().unwrap().is_empty());
}

#[test]
fn a_member_that_lost_its_disk_catches_up() {
    let mut cluster = Cluster::new(3, 5);
    let leader = cluster.leader();
    let lost = (1..=3).find(|&id| id != leader).unwrap();
    let expected: Vec<String> = (0..12).map(|n| format!("entry {n}")).collect();
    let expected: Vec<&str> = expected.iter().map(String::as_str).collect();
    for data in &expected[..6] {
        cluster.propose(leader, data);
    }
    wait_for_journal(&cluster, lost, &expected[..6]);
    cluster.stop(lost);
    // A new machine in its place: an empty data directory, the same id. The leader still
    // believes its log reaches index 7 and says so in every heartbeat.
    cluster.members[(lost - 1) as usize].dir = TempDir::new();
    cluster.start(lost);
    for data in &expected[6..] {
        cluster.propose(leader, data);
    }
    wait_for_journal(&cluster, lost, &expected);
    assert!(cluster.node(lost).status().leader == Some(leader));
}

#[test]
fn a_leader_hands_over_to_another_member() {
    let cluster = Cluster::new(3, 1_000);
    let leader = cluster.leader();
    cluster.propose(leader, "before");
    for id in 1..=3 {
        wait_for_journal(&cluster, id, &["before"]);
    }
    assert!(cluster.node(leader).hand_over(PROMPTLY));
    let new = cluster.leader();
    assert_ne!(new, leader);
    cluster.propose(leader, "after");
    for id in 1..=3 {
        wait_for_journal(&cluster, id, &["before", "after"]);
    }
    // A follower has nothing to hand over.
    let follower = (1..=3).find(|&id| id != new).unwrap();
    assert!(cluster.node(follower).hand_over(Duration::ZERO));
}
