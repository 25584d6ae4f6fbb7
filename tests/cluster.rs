//! A cluster of one (issue 25): the `[cluster]` table with one member makes a durable single
//! server. Every grant is on disk before it is answered, so kill -9 and a start lose nothing and
//! need no grace period; expiry and fencing tokens go on from the log.
//!
//! Assertions about time have seconds of slack, so the tests hold on a loaded two-core machine.

#![cfg(unix)]

mod common;

use std::thread;
use std::time::{Duration, Instant};

use common::{PROMPTLY, Server, TempDir, answered, run_to_exit};

/// A cluster of one; its log in `data` beside the configuration file. Its only member's
/// address is never bound: a cluster of one has no links.
const ONE: &str = r#"
[semaphores]
M = 1

[cluster]
id = 1
members = ["127.0.0.1:1"]
data_dir = "data"
"#;

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
    let server = Server::start(ONE);
    let status = wait_for_leader(&server);
    assert_eq!(status["cluster"]["id"], 1);
    assert_eq!(status["cluster"]["members"], 1);
    let holder = server.new_peer();
    let first = token(&server.acquire(holder, "M", 1, ""));
    let server = server.kill_and_restart(ONE, &[]);
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
    let server = Server::start(ONE);
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
        let config = dir.write("throttle.toml", ONE);
        let config = config.to_str().expect("UTF-8");
        let mut all = vec!["-c", config, "--port", "0"];
        all.extend_from_slice(args);
        let (status, _, stderr) = run_to_exit(&all, dir.path(), &[]);
        assert!(!status.success(), "{args:?}: {stderr}");
        assert!(stderr.contains("cluster"), "{args:?}: {stderr}");
    }
}
