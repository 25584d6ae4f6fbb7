//! The client against a real three-member cluster (started by the harness): kill -9 of the
//! leader under a held lock, under a waiting one and under `rate_limit`, every member down, a member without a
//! quorum; a client finding the leader from the members' answers. Each client of the other
//! tests lists the leader first, so the kill hits the member it talks to.
//!
//! Assertions about time have seconds of slack, for a loaded two-core machine.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use throttle_client::{Client, Error};
use throttle_harness::{Cluster, Launch};

use crate::support::{eventually, join_within, member_reasons, secs, someone_waits, throughout};

const CONFIG: &str = "[semaphores]\nM = 1\nR = 2\n";

/// Three members, and which of them still run.
struct Three {
    cluster: Cluster,
    running: [bool; 3],
}

impl Three {
    fn start() -> Three {
        let launch = Launch::new().config(CONFIG).env("THROTTLE_LOG", "INFO");
        Three {
            cluster: Cluster::members(&launch, 3),
            running: [true; 3],
        }
    }

    fn url(&self, index: usize) -> String {
        self.cluster[index].url()
    }

    /// The index of the member every running member follows, once they agree on a running one.
    #[track_caller]
    fn leader(&self) -> usize {
        let deadline = Instant::now() + secs(20);
        loop {
            let leaders: Vec<Option<u64>> = self
                .running()
                .map(|index| {
                    let client = Client::new(&self.url(index)).with_retry_budget(Duration::ZERO);
                    let status = client.status_json().ok()?;
                    let status: serde_json::Value = serde_json::from_str(&status).ok()?;
                    status["cluster"]["leader"].as_u64()
                })
                .collect();
            if let Some(Some(id)) = leaders.first()
                && leaders.iter().all(|leader| *leader == Some(*id))
                && self.running[(*id - 1) as usize]
            {
                return (*id - 1) as usize;
            }
            assert!(Instant::now() < deadline, "no agreed leader: {leaders:?}");
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn running(&self) -> impl Iterator<Item = usize> + '_ {
        (0..3).filter(|&index| self.running[index])
    }

    /// kill -9 of one member.
    fn kill(&mut self, index: usize) {
        self.cluster.server_mut(index).process.kill();
        self.running[index] = false;
    }

    /// SIGSTOP of one member: its connections stay open and nothing answers, as when its
    /// machine is gone.
    fn pause(&mut self, index: usize) {
        self.cluster.server_mut(index).process.signal("STOP");
        self.running[index] = false;
    }

    fn resume(&mut self, index: usize) {
        self.cluster.server_mut(index).process.signal("CONT");
        self.running[index] = true;
    }

    /// A client of all three members that asks `first` first.
    fn client_asking_first(&self, first: usize) -> Client {
        Client::for_members((0..3).map(|offset| self.url((first + offset) % 3)))
    }

    /// A client of the members that run.
    fn client_of_the_running(&self) -> Client {
        Client::for_members(self.running().map(|index| self.url(index)))
    }
}

/// Whether `peer` holds its lock on M, as `client` sees it.
fn holds(client: &Client, peer: throttle_client::PeerId) -> bool {
    client
        .peer_state(peer)
        .is_ok_and(|state| state.acquired.contains_key("M"))
}

#[test]
fn a_client_finds_the_leader_from_the_answers_and_follows_a_new_one() {
    let mut three = Three::start();
    let leader = three.leader();
    // The leader listed last: the client hears from both followers before it knows its URL.
    let client = three.client_asking_first((leader + 1) % 3);
    assert_eq!(client.base_url(), three.url((leader + 1) % 3));
    let mut requests = 0;
    while client.base_url() != three.url(leader) {
        assert!(requests < 2, "not on the leader after {requests} requests");
        client.health().unwrap();
        requests += 1;
    }
    // The leader's own answers keep the client there.
    client.remainder("M").unwrap();
    assert_eq!(client.base_url(), three.url(leader));
    three.kill(leader);
    let new = three.leader();
    eventually(secs(20), "the client follows the new leader", || {
        client.health().is_ok() && client.base_url() == three.url(new)
    });
    client.remainder("M").unwrap();
    assert_eq!(client.base_url(), three.url(new));
}

#[test]
fn a_held_lock_rides_through_the_loss_of_the_leader() {
    let mut three = Three::start();
    let leader = three.leader();
    let client = three.client_asking_first(leader);
    let lost = Arc::new(AtomicBool::new(false));
    let flag = lost.clone();
    let lease = secs(4);
    let guard = client
        .lock("M")
        .expires_in(lease)
        .on_lost(move |_| flag.store(true, Ordering::SeqCst))
        .acquire()
        .unwrap();
    let first = guard.fencing_token().expect("a fencing token");
    three.kill(leader);
    let observer = three.client_of_the_running();
    // More than two leases: without heartbeats reaching the new leader, the lock would expire.
    throughout(2 * lease + secs(1), "the lock stays held", || {
        holds(&observer, guard.peer_id())
    });
    assert!(!lost.load(Ordering::SeqCst) && !guard.is_lost());
    assert_ne!(client.base_url(), three.url(leader), "the client moved on");
    let state = observer.peer_state(guard.peer_id()).unwrap();
    assert_eq!(state.fencing_tokens.get("M"), Some(&first), "not restored");
    guard.release().unwrap();
    let next = client.lock("M").acquire().unwrap();
    assert!(
        next.fencing_token().expect("a fencing token") > first,
        "fencing tokens keep growing across leaders"
    );
}

#[test]
fn a_held_lock_rides_through_a_leader_that_falls_silent() {
    let mut three = Three::start();
    let leader = three.leader();
    let client = three.client_asking_first(leader);
    // Heartbeats every 5 s; the one sent to the silent leader moves on after 5 s more (not the
    // 30 s a client of one server waits), well within the lease.
    let lease = secs(15);
    let guard = client.lock("M").expires_in(lease).acquire().unwrap();
    three.pause(leader);
    let observer = Client::new(&three.url(three.leader()));
    // A stopped member that the test leaves stopped is killed with the others at its end.
    throughout(lease + secs(2), "the lock stays held", || {
        holds(&observer, guard.peer_id())
    });
    three.resume(leader);
    assert!(!guard.is_lost());
    guard.release().unwrap();
}

#[test]
fn a_waiting_lock_keeps_its_place_through_the_loss_of_the_leader() {
    let mut three = Three::start();
    let leader = three.leader();
    let observer = three.client_asking_first((leader + 1) % 3);
    let holder = three
        .client_asking_first(leader)
        .lock("M")
        .acquire()
        .unwrap();
    let held = holder.fencing_token().expect("a fencing token");
    // Two waiters in line, both talking to the leader.
    let timeout = secs(60);
    let wait = |client: Client| {
        thread::spawn(move || {
            let called = Instant::now();
            let guard = client.lock("M").timeout(timeout).acquire();
            (guard, called.elapsed(), Instant::now())
        })
    };
    let first = wait(three.client_asking_first(leader));
    eventually(secs(20), "the first waiter is queued", || {
        someone_waits(&observer)
    });
    let second = wait(three.client_asking_first(leader));
    eventually(secs(20), "the second waiter is queued", || {
        observer
            .list_peers()
            .unwrap()
            .iter()
            .filter(|peer| !peer.pending.is_empty())
            .count()
            == 2
    });
    three.kill(leader);
    let killed = Instant::now();
    holder.release().unwrap();
    let released = Instant::now();
    let (guard, waited, granted) = join_within(first, secs(40), "the first waiter's grant");
    let guard = guard.unwrap();
    assert!(waited < timeout, "granted after {waited:?}");
    let token = guard.fencing_token().expect("a fencing token");
    assert!(token > held, "{token} after {held}");
    eprintln!(
        "a blocked lock() was granted {:?} after the leader's kill, {:?} after the holder's \
         release (which took {:?})",
        granted - killed,
        granted.saturating_duration_since(released),
        released - killed
    );
    // FIFO: the second waiter still waits behind the first.
    assert!(someone_waits(&observer));
    assert!(!second.is_finished());
    drop(guard);
    let (second, waited, _) = join_within(second, secs(40), "the second waiter's grant");
    let second = second.unwrap();
    assert!(waited < timeout, "granted after {waited:?}");
    assert!(second.fencing_token().expect("a fencing token") > token);
}

#[test]
fn rate_limit_keeps_its_rate_through_the_loss_of_the_leader() {
    let mut three = Three::start();
    let leader = three.leader();
    let client = three.client_asking_first(leader);
    let (per, limit) = (secs(1), 2); // R = 2 in CONFIG.
    let stop = Instant::now() + secs(6);
    let workers: Vec<_> = (0..3)
        .map(|_| {
            let client = client.clone();
            thread::spawn(move || {
                let mut calls = Vec::new();
                while Instant::now() < stop {
                    let called = Instant::now();
                    client.rate_limit("R", per)?;
                    calls.push((called, Instant::now()));
                }
                Ok::<_, Error>(calls)
            })
        })
        .collect();
    thread::sleep(secs(2));
    three.kill(leader);
    let mut calls = Vec::new();
    for worker in workers {
        let done = join_within(worker, secs(60), "a rate-limited worker");
        calls.extend(done.expect("rate_limit through the failover"));
    }
    assert!(calls.len() >= 6, "{} calls", calls.len());
    // Each grant fell between its call and its return, and the server lets no more than
    // `limit` grants fall within `per` of each other: no `limit + 1` calls span less.
    for (a, first) in calls.iter().enumerate() {
        for (b, second) in calls.iter().enumerate().skip(a + 1) {
            for third in calls.iter().skip(b + 1) {
                let group = [first, second, third];
                let called = group.iter().map(|(called, _)| *called).min().unwrap();
                let returned = group.iter().map(|(_, returned)| *returned).max().unwrap();
                assert!(
                    returned - called >= per,
                    "{limit} + 1 grants within {per:?}"
                );
            }
        }
    }
}

#[test]
fn with_every_member_down_the_error_names_each_after_the_budget() {
    let mut three = Three::start();
    let client = three.client_asking_first(0).with_retry_budget(secs(1));
    for index in 0..3 {
        three.kill(index);
    }
    let started = Instant::now();
    let error = client.lock("M").acquire().unwrap_err();
    let elapsed = started.elapsed();
    let Error::Transport(unreachable) = &error else {
        panic!("not the crate's transport error: {error:?}");
    };
    let attempts = member_reasons(unreachable);
    let urls: Vec<String> = (0..3).map(|index| three.url(index)).collect();
    let expected: Vec<(&str, &str)> = urls
        .iter()
        .map(|url| (url.as_str(), "connection refused"))
        .collect();
    assert_eq!(attempts, expected);
    let text = error.to_string();
    assert!(
        text.starts_with("no member reachable within 1s (")
            && urls.iter().all(|u| text.contains(u)),
        "{text}"
    );
    assert!(elapsed >= secs(1) && elapsed < secs(10), "{elapsed:?}");
}

#[test]
fn a_member_without_a_quorum_grants_nothing_and_the_error_says_why() {
    let mut three = Three::start();
    let leader = three.leader();
    let client = three.client_asking_first(leader).with_retry_budget(secs(2));
    let peer = client.new_peer(secs(60)).unwrap();
    for index in (0..3).filter(|&index| index != leader) {
        three.kill(index);
    }
    let error = client.acquire(peer, "M", 1, None, None).unwrap_err();
    let Error::Transport(unreachable) = &error else {
        panic!("not the crate's transport error: {error:?}");
    };
    let survivor = three.url(leader);
    let reason = unreachable
        .attempts()
        .iter()
        .find(|attempt| attempt.member() == survivor)
        .map(|attempt| attempt.reason().to_owned())
        .unwrap_or_default();
    assert!(reason.starts_with("no quorum ("), "{error}");
    // A client of the survivor alone says the same, not `Error::Server`.
    let alone = Client::new(&survivor).with_retry_budget(Duration::ZERO);
    let error = alone.acquire(peer, "M", 1, None, None).unwrap_err();
    assert!(
        matches!(&error, Error::Transport(unreachable) if unreachable.reason().starts_with("no quorum")),
        "{error:?}"
    );
}
