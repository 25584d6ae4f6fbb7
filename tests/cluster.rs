//! A cluster of one (issue 25): the `[cluster]` table with one member makes a durable single
//! server. Every grant is on disk before it is answered, so kill -9 and a start lose nothing and
//! need no grace period; expiry and fencing tokens go on from the log.
//!
//! Assertions about time have seconds of slack, so the tests hold on a loaded two-core machine.

#![cfg(unix)]

mod common;

use std::thread;
use std::time::{Duration, Instant};

use common::{CLUSTER_OF_ONE, PROMPTLY, Server, TempDir, answered, run_to_exit};

/// The fencing token of a granted acquire.
#[track_caller]
fn token(reply: &common::Reply) -> u64 {
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply
        .header("Fencing-Token")
        .and_then(|token| token.parse().ok())
        .expect("a granted acquire carries its fencing token")
}

/// Waits until the member leads (`cluster.leader` of `/status.json`).
#[track_caller]
fn wait_for_leader(server: &Server) -> serde_json::Value {
    let deadline = Instant::now() + PROMPTLY;
    loop {
        let status = server.get("/status.json").json();
        if status["cluster"]["leader"] == 1 {
            return status;
        }
        assert!(Instant::now() < deadline, "no leader: {status}");
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_cluster_of_one_keeps_its_locks_across_kill_nine_without_a_grace_period() {
    let server = Server::start(CLUSTER_OF_ONE);
    let status = wait_for_leader(&server);
    assert_eq!(status["cluster"]["id"], 1);
    assert_eq!(status["cluster"]["members"], 1);
    let holder = server.new_peer();
    let first = token(&server.acquire(holder, "M", 1, ""));
    let server = server.kill_and_restart(CLUSTER_OF_ONE, &[]);
    let client = &server.client;
    // Served at once: the lock is still held, so a newcomer waits (and is not granted twice).
    let newcomer = server.new_peer();
    let reply = client.put(&format!("/peers/{newcomer}/M"), "1");
    assert_eq!(reply.status, 202, "{}", reply.text());
    assert_eq!(
        client.get(&format!("/peers/{holder}/is_acquired")).text(),
        "true"
    );
    assert_eq!(client.get("/remainder?semaphore=M").text(), "0");
    // The holder releases: the newcomer's long poll is granted at once, with a larger token.
    let poll = {
        let client = client.clone();
        thread::spawn(move || {
            let started = Instant::now();
            let reply = client.put(&format!("/peers/{newcomer}/M?block_for=30s"), "1");
            (reply, started.elapsed())
        })
    };
    server.wait_for_long_polls(1);
    assert_eq!(client.delete(&format!("/peers/{holder}/M")).status, 200);
    let (reply, waited) = answered(poll);
    assert!(token(&reply) > first);
    assert!(waited < Duration::from_secs(10), "{waited:?}");
    assert!(
        !server
            .process
            .lines
            .all()
            .iter()
            .any(|line| line.contains("Grace period")),
        "a cluster member has no grace period"
    );
}

#[test]
fn expiry_in_a_cluster_of_one_grants_the_waiter() {
    let server = Server::start(CLUSTER_OF_ONE);
    wait_for_leader(&server);
    let client = &server.client;
    let holder = client
        .post("/new_peer", r#"{"expires_in": "300ms"}"#)
        .json()
        .as_u64()
        .expect("a peer id");
    token(&client.put(&format!("/peers/{holder}/M"), "1"));
    let waiter = server.new_peer();
    let started = Instant::now();
    let reply = client.put(&format!("/peers/{waiter}/M?block_for=20s"), "1");
    token(&reply);
    let waited = started.elapsed();
    assert!(waited < Duration::from_secs(10), "granted after {waited:?}");
    assert_eq!(
        client.get(&format!("/peers/{holder}/is_acquired")).status,
        400,
        "the expired holder is gone"
    );
}

#[test]
fn a_cluster_member_refuses_a_state_file_and_a_grace_period() {
    for args in [&["--state-file", "state.json"][..], &["--grace", "5s"]] {
        let dir = TempDir::new();
        let config = dir.write("throttle.toml", CLUSTER_OF_ONE);
        let config = config.to_str().expect("UTF-8");
        let mut all = vec!["-c", config, "--port", "0"];
        all.extend_from_slice(args);
        let (status, _, stderr) = run_to_exit(&all, dir.path(), &[]);
        assert!(!status.success(), "{args:?}: {stderr}");
        assert!(stderr.contains("cluster"), "{args:?}: {stderr}");
    }
}

/// The secret the three members of these tests share.
const SECRET: &str = "a secret of the tests, 32 bytes.";

/// Three members on loopback: their configurations (by index, member id = index + 1) and the
/// running servers (`None` while one is down).
struct Three {
    configs: Vec<String>,
    /// The address each member hears the others on.
    links: Vec<String>,
    servers: Vec<Option<Server>>,
    /// The directory and HTTP port of each member that was killed, for its restart.
    down: Vec<Option<(TempDir, u16)>>,
}

impl Three {
    fn start() -> Three {
        Three::start_with("")
    }

    /// Three members whose `[cluster]` tables end with `extra` (more keys).
    fn start_with(extra: &str) -> Three {
        let ports = common::free_ports(3);
        let links: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let members: Vec<String> = links.iter().map(|link| format!("\"{link}\"")).collect();
        let configs: Vec<String> = (1..=3)
            .map(|id| {
                format!(
                    "[semaphores]\nM = 1\n\n[cluster]\nid = {id}\nmembers = [{}]\n\
                     data_dir = \"data\"\nsecret = \"{SECRET}\"\n{extra}",
                    members.join(", ")
                )
            })
            .collect();
        let servers = configs.iter().map(|c| Some(Server::start(c))).collect();
        Three {
            configs,
            links,
            servers,
            down: (0..3).map(|_| None).collect(),
        }
    }

    fn member(&self, index: usize) -> &Server {
        self.servers[index].as_ref().expect("the member runs")
    }

    fn running(&self) -> impl Iterator<Item = usize> + '_ {
        (0..3).filter(|&index| self.servers[index].is_some())
    }

    /// The index of the member every running member follows, once they agree on a running one.
    #[track_caller]
    fn leader(&self) -> usize {
        let deadline = Instant::now() + PROMPTLY;
        loop {
            let leaders: Vec<serde_json::Value> = self
                .running()
                .map(|index| {
                    self.member(index).get("/status.json").json()["cluster"]["leader"].clone()
                })
                .collect();
            if let Some(id) = leaders[0].as_u64()
                && leaders.iter().all(|leader| *leader == leaders[0])
            {
                let index = (id - 1) as usize;
                if self.servers[index].is_some() {
                    return index;
                }
            }
            assert!(Instant::now() < deadline, "no agreed leader: {leaders:?}");
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// kill -9 of one member; its directory (with its log) is kept for [`Three::restart`].
    fn kill(&mut self, index: usize) {
        let server = self.servers[index].take().expect("the member runs");
        let port = server.addr.port();
        self.down[index] = Some((server.process.kill_keeping_dir(), port));
    }

    fn restart(&mut self, index: usize) {
        let (dir, port) = self.down[index].take().expect("the member was killed");
        self.servers[index] = Some(Server::start_in(dir, port, &self.configs[index], &[]));
    }
}

#[test]
fn three_members_answer_every_route_alike_whichever_is_asked() {
    let three = Three::start();
    let leader = three.leader();
    let (a, b) = match leader {
        0 => (1, 2),
        1 => (0, 2),
        _ => (0, 1),
    };
    // A lock taken through one follower is seen held through the other at once.
    let holder = three.member(a).new_peer();
    let first = token(&three.member(a).acquire(holder, "M", 1, ""));
    assert!(three.member(b).is_acquired(holder));
    for index in 0..3 {
        assert_eq!(
            three.member(index).remainder("M"),
            0,
            "member {}",
            index + 1
        );
    }
    // A waiter on the other follower is granted when the holder releases through the leader.
    let waiter = three.member(b).new_peer();
    let poll = {
        let client = three.member(b).client.clone();
        thread::spawn(move || {
            let started = Instant::now();
            let reply = client.put(&format!("/peers/{waiter}/M?block_for=30s"), "1");
            (reply, started.elapsed())
        })
    };
    three.member(b).wait_for_long_polls(1);
    assert_eq!(three.member(leader).release(holder, "M").status, 200);
    let (reply, _) = answered(poll);
    assert!(token(&reply) > first);
    let listed = three.member(a).get("/peers/").json();
    assert_eq!(listed.as_array().map(Vec::len), Some(2), "{listed}");
}

#[test]
fn the_loss_of_the_leader_keeps_every_lock_and_grants_resume() {
    let mut three = Three::start();
    let old = three.leader();
    let follower = (old + 1) % 3;
    let holder = three.member(follower).new_peer();
    let first = token(&three.member(follower).acquire(holder, "M", 1, ""));
    three.kill(old);
    let killed = Instant::now();
    let new = three.leader();
    assert_ne!(new, old);
    let elected = killed.elapsed();
    assert!(
        elected < Duration::from_secs(10),
        "a new leader after {elected:?}"
    );
    // The lock survived; nobody else gets it while it is held.
    assert!(three.member(new).is_acquired(holder));
    let newcomer = three.member(new).new_peer();
    assert_eq!(three.member(new).acquire(newcomer, "M", 1, "").status, 202);
    assert_eq!(three.member(follower).release(holder, "M").status, 200);
    let reply = three
        .member(new)
        .acquire(newcomer, "M", 1, "?block_for=20s");
    assert!(
        token(&reply) > first,
        "fencing tokens keep growing across leaders"
    );
    // The old leader comes back, catches up, and answers as the others do.
    three.restart(old);
    assert!(three.member(old).is_acquired(newcomer));
    assert_eq!(three.member(old).remainder("M"), 0);
}

/// The member and the leader a reply names (`Throttle-Member`, `Throttle-Leader`).
fn named(reply: &common::Reply) -> (Option<u64>, Option<u64>) {
    let id = |name| reply.header(name).map(|id| id.parse().expect("an id"));
    (id("Throttle-Member"), id("Throttle-Leader"))
}

#[test]
fn every_answer_of_a_member_names_it_and_the_leader_and_follows_a_new_leader() {
    let mut three = Three::start();
    let old = three.leader();
    let leader_id = old as u64 + 1;
    for index in 0..3 {
        let member = three.member(index);
        let id = Some(index as u64 + 1);
        // Any route, answered by the service or refused, fast or after a wait.
        for reply in [
            member.get("/health"),
            member.get("/status.json"),
            member.get("/no/such/route"),
            member.get("/peers/12345/is_acquired"),
            member.get("/remainder?semaphore=M"),
        ] {
            assert_eq!(named(&reply), (id, Some(leader_id)), "{}", reply.text());
        }
    }
    three.kill(old);
    let new = three.leader();
    assert_ne!(new, old);
    for index in three.running().collect::<Vec<_>>() {
        let reply = three.member(index).get("/health");
        assert_eq!(
            named(&reply),
            (Some(index as u64 + 1), Some(new as u64 + 1))
        );
    }
}

#[test]
fn only_cluster_members_name_themselves() {
    let single = Server::start("[semaphores]\nM = 1\n");
    for path in ["/health", "/no/such/route", "/remainder?semaphore=M"] {
        let reply = single.get(path);
        assert_eq!(named(&reply), (None, None), "{path}: {:?}", reply.headers);
    }
    let one = Server::start(CLUSTER_OF_ONE);
    wait_for_leader(&one);
    assert_eq!(named(&one.get("/health")), (Some(1), Some(1)));
}

#[test]
fn a_member_without_a_quorum_grants_nothing_and_says_why() {
    let mut three = Three::start();
    let leader = three.leader();
    let peer = three.member(leader).new_peer();
    let others: Vec<usize> = (0..3).filter(|&index| index != leader).collect();
    for index in others {
        three.kill(index);
    }
    let started = Instant::now();
    let reply = three.member(leader).acquire(peer, "M", 1, "");
    reply.expect(503, "No quorum");
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_eq!(
        three.member(leader).get("/health").status,
        200,
        "the process is alive"
    );
}

#[test]
fn a_change_of_leader_never_cuts_a_lease_short() {
    let mut three = Three::start();
    let old = three.leader();
    let follower = (old + 1) % 3;
    let holder = three.member(follower).new_peer();
    // The lease counts from before the request was sent, as the client's does.
    let asked = Instant::now();
    token(
        &three
            .member(follower)
            .acquire(holder, "M", 1, "?expires_in=4s"),
    );
    three.kill(old);
    let new = three.leader();
    // Whatever the election took, the lease still runs: the log's time stood still meanwhile.
    let checked = asked.elapsed();
    if checked < Duration::from_millis(3_500) {
        assert!(
            three.member(new).is_acquired(holder),
            "the lease of 4 s ended after {checked:?}"
        );
    }
    // And it does end: expiry goes on under the new leader.
    let deadline = Instant::now() + PROMPTLY;
    while three
        .member(new)
        .get(&format!("/peers/{holder}/is_acquired"))
        .status
        == 200
    {
        assert!(Instant::now() < deadline, "the lease never ended");
        thread::sleep(Duration::from_millis(50));
    }
    assert!(asked.elapsed() >= Duration::from_secs(4));
}

#[test]
fn the_members_port_closes_on_garbage_and_strangers_and_changes_nothing() {
    use std::io::{Read, Write};
    let three = Three::start();
    let leader = three.leader();
    let peer = three.member(leader).new_peer();
    token(&three.member(leader).acquire(peer, "M", 1, ""));
    for bytes in [
        &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..],
        &[0xff; 4096],
        // A frame claiming 4 GiB.
        &[0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0],
    ] {
        let mut stream = std::net::TcpStream::connect(&three.links[leader]).expect("connect");
        stream
            .set_read_timeout(Some(PROMPTLY))
            .expect("a read timeout");
        let _ = stream.write_all(bytes);
        let mut rest = Vec::new();
        // The member sends its challenge, then closes (or resets) the connection.
        if let Err(error) = stream.read_to_end(&mut rest) {
            assert!(
                !matches!(
                    error.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ),
                "the connection is still open after {PROMPTLY:?}"
            );
        }
    }
    three
        .member(leader)
        .process
        .lines
        .wait_for(PROMPTLY, |line| line.contains("Cluster link from"))
        .expect("the refusal is logged");
    // Nothing changed: the same leader, the lock still held, the members still replicate.
    assert_eq!(three.leader(), leader);
    assert!(three.member((leader + 1) % 3).is_acquired(peer));
    assert_eq!(three.member(leader).release(peer, "M").status, 200);
    assert_eq!(three.member((leader + 2) % 3).remainder("M"), 1);
}

#[test]
fn a_reload_on_any_member_changes_the_semaphores_of_all() {
    let mut three = Three::start();
    let leader = three.leader();
    let follower = (leader + 1) % 3;
    three.configs[follower] = three.configs[follower].replace("M = 1", "M = 1\nN = 5");
    let dir = three.member(follower).process.dir.path().to_owned();
    std::fs::write(dir.join("throttle.toml"), &three.configs[follower]).expect("write");
    three.member(follower).process.signal("HUP");
    let deadline = Instant::now() + PROMPTLY;
    for index in 0..3 {
        while three.member(index).get("/remainder?semaphore=N").text() != "5" {
            assert!(
                Instant::now() < deadline,
                "member {} never knew N",
                index + 1
            );
            thread::sleep(Duration::from_millis(20));
        }
    }
}

#[test]
fn a_member_replaced_with_an_empty_data_dir_catches_up_from_a_snapshot() {
    // A snapshot every 20 entries, so the leader's log is compacted past what a new member
    // could replay.
    let mut three = Three::start_with("snapshot_every = 20\n");
    let leader = three.leader();
    let lost = (leader + 1) % 3;
    three.kill(lost);
    // The machine is lost: its disk with it.
    let (dir, _) = three.down[lost].as_ref().expect("killed");
    std::fs::remove_dir_all(dir.path().join("data")).expect("remove the data directory");
    let holder = three.member(leader).new_peer();
    for _ in 0..30 {
        assert_eq!(
            three
                .member(leader)
                .put(&format!("/peers/{holder}"), r#"{"expires_in": "5m"}"#)
                .status,
            200
        );
    }
    token(&three.member(leader).acquire(holder, "M", 1, ""));
    three.restart(lost);
    assert!(three.member(lost).is_acquired(holder));
    assert_eq!(three.member(lost).remainder("M"), 0);
    let status = three.member(lost).get("/status.json").json();
    assert_eq!(status["num_peers"], 1, "{status}");
}

#[test]
fn a_member_with_another_member_list_is_refused_saying_why() {
    let mut three = Three::start();
    let leader = three.leader();
    let odd = (leader + 1) % 3;
    let other = (leader + 2) % 3;
    three.kill(odd);
    // Its list names another address for the third member.
    let wrong = three.configs[odd].replace(&three.links[other], "127.0.0.1:9");
    three.configs[odd] = wrong;
    three.restart(odd);
    three
        .member(odd)
        .process
        .lines
        .wait_for(PROMPTLY, |line| line.contains("member list"))
        .expect("the refusal says why");
    // It joins nothing: it never learns of a leader, and the others go on.
    let status = three.member(odd).get("/status.json").json();
    assert!(status["cluster"]["leader"].is_null(), "{status}");
    let peer = three.member(leader).new_peer();
    token(&three.member(leader).acquire(peer, "M", 1, ""));
}

#[test]
fn a_leader_stopped_gracefully_hands_over_the_lead() {
    let mut three = Three::start();
    let leader = three.leader();
    let follower = (leader + 1) % 3;
    let holder = three.member(follower).new_peer();
    token(&three.member(follower).acquire(holder, "M", 1, ""));
    let mut server = three.servers[leader].take().expect("the leader runs");
    server.process.signal("TERM");
    let status = server
        .process
        .wait_exit(PROMPTLY)
        .expect("the leader stops within 10 s");
    assert!(status.success(), "{status:?}");
    server
        .process
        .lines
        .assert_logged(|line| line.contains("handing the lead to member"));
    let new = three.leader();
    assert_ne!(new, leader);
    assert!(three.member(new).is_acquired(holder));
}
