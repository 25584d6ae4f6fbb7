//! The rules of SPEC "Semantics" as a client sees them over HTTP: capacity, FIFO fairness, the
//! lock hierarchy, idempotence, shrinking, expiry and restore.

mod common;

use std::sync::mpsc;
use std::time::Duration;

use common::{PROMPTLY, Server, answered, join_within};

const CONFIG: &str = r#"
[semaphores]
A = 3
mutex = 1
outer = { max = 1, level = 1 }
"#;

#[test]
fn capacity_is_never_exceeded() {
    let server = Server::start(CONFIG);
    let peers: Vec<u64> = (0..5).map(|_| server.new_peer()).collect();
    let statuses: Vec<u16> = peers
        .iter()
        .map(|&peer| server.acquire(peer, "A", 1, "").status)
        .collect();
    assert_eq!(statuses, [200, 200, 200, 202, 202]);
    assert_eq!(server.remainder("A"), 0);
}

/// Waiters are granted strictly in the order they asked, observed through `is_acquired`.
#[test]
fn waiters_are_granted_in_fifo_order() {
    let server = Server::start(CONFIG);
    let holder = server.new_peer();
    let waiters: Vec<u64> = (0..4).map(|_| server.new_peer()).collect();
    server.acquire(holder, "mutex", 1, "").expect(200, "");
    for &waiter in &waiters {
        server.acquire(waiter, "mutex", 1, "").expect(202, "");
    }
    let mut previous = holder;
    for (i, &waiter) in waiters.iter().enumerate() {
        server.release(previous, "mutex").expect(200, "");
        let granted: Vec<bool> = waiters.iter().map(|&w| server.is_acquired(w)).collect();
        let mut expected = vec![true; waiters.len()];
        for later in &mut expected[i + 1..] {
            *later = false;
        }
        assert_eq!(granted, expected, "after releasing the lock of waiter {i}");
        previous = waiter;
    }
}

/// The same with waiting long polls: each release answers exactly the next waiter in line.
#[test]
fn long_polls_are_answered_in_fifo_order() {
    let server = Server::start(CONFIG);
    let holder = server.new_peer();
    let waiters: Vec<u64> = (0..3).map(|_| server.new_peer()).collect();
    server.acquire(holder, "mutex", 1, "").expect(200, "");
    // Queue in a known order first; the long polls then repeat the same request, which keeps
    // each waiter's place in the queue.
    for &waiter in &waiters {
        server.acquire(waiter, "mutex", 1, "").expect(202, "");
    }
    let (sender, answers) = mpsc::channel();
    let polls: Vec<_> = waiters
        .iter()
        .map(|&waiter| {
            let poll = server.acquire_in_background(waiter, "mutex", 1, "?block_for=60s");
            let sender = sender.clone();
            std::thread::spawn(move || {
                // The test waits for the answers on the channel, each bounded by PROMPTLY.
                let (reply, _) = poll.join().unwrap();
                let _ = sender.send((waiter, reply.status));
            })
        })
        .collect();
    server.wait_for_long_polls(waiters.len());

    let mut previous = holder;
    for &waiter in &waiters {
        server.release(previous, "mutex").expect(200, "");
        let answer = answers
            .recv_timeout(PROMPTLY)
            .expect("a long poll answered");
        assert_eq!(answer, (waiter, 200));
        previous = waiter;
    }
    for poll in polls {
        join_within(poll, PROMPTLY, "a long poll's thread to end");
    }
}

/// A waiter with a large count blocks later small ones, so it is never starved by them.
#[test]
fn a_large_lock_is_not_starved_by_small_ones() {
    let server = Server::start(CONFIG);
    let holder = server.new_peer();
    let big = server.new_peer();
    let small: Vec<u64> = (0..3).map(|_| server.new_peer()).collect();
    server.acquire(holder, "A", 2, "").expect(200, "");
    server.acquire(big, "A", 3, "").expect(202, "");
    // One unit is free, but the big waiter came first.
    for &peer in &small {
        server.acquire(peer, "A", 1, "").expect(202, "");
    }
    assert_eq!(server.remainder("A"), 1);
    server.release(holder, "A").expect(200, "");
    assert!(server.is_acquired(big));
    assert!(small.iter().all(|&peer| !server.is_acquired(peer)));
    server.release(big, "A").expect(200, "");
    assert!(small.iter().all(|&peer| server.is_acquired(peer)));
}

/// Acquiring a held lock with a smaller count releases the difference and wakes a waiter.
#[test]
fn shrinking_a_held_lock_releases_the_difference_and_wakes_a_waiter() {
    let server = Server::start(CONFIG);
    let holder = server.new_peer();
    let waiter = server.new_peer();
    server.acquire(holder, "A", 3, "").expect(200, "");
    server.acquire(waiter, "A", 2, "").expect(202, "");
    let poll = server.acquire_in_background(waiter, "A", 2, "?block_for=60s");
    server.wait_for_long_polls(1);
    server.acquire(holder, "A", 1, "").expect(200, "");
    let (reply, waited) = answered(poll);
    reply.expect(200, "");
    assert!(
        waited < Duration::from_secs(30),
        "answered after {waited:?}"
    );
    assert_eq!(server.remainder("A"), 0);
    let state = server.state();
    let holder_locks = state
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == holder)
        .unwrap();
    assert_eq!(holder_locks["acquired"], serde_json::json!({"A": 1}));
}

#[test]
fn lock_hierarchy_allows_descending_levels_only() {
    let server = Server::start(CONFIG);
    let nested = server.new_peer();
    server.acquire(nested, "outer", 1, "").expect(200, "");
    server.acquire(nested, "mutex", 1, "").expect(200, "");
    let reverse = server.new_peer();
    server.acquire(reverse, "A", 1, "").expect(200, "");
    let before = server.state();
    server
        .acquire(reverse, "outer", 1, "")
        .expect(409, "Lock hierarchy violation");
    // Rejected before anything changed: the semaphore was not even queued for.
    assert_eq!(server.state(), before);
    assert_eq!(server.remainder("outer"), 0);
}

#[test]
fn repeating_an_acquire_is_idempotent() {
    let server = Server::start(CONFIG);
    let peer = server.new_peer();
    for _ in 0..3 {
        server.acquire(peer, "A", 2, "").expect(200, "");
    }
    assert_eq!(server.remainder("A"), 1);
    let waiter = server.new_peer();
    for _ in 0..3 {
        server.acquire(waiter, "A", 2, "").expect(202, "");
    }
    assert_eq!(
        server.metric(r#"throttle_pending{semaphore="A"}"#),
        Some(2.0)
    );
}

/// The rate-limit use: a lease of a fraction of a second frees its slot by itself.
#[test]
fn an_expired_peer_releases_its_locks() {
    let server = Server::start(CONFIG);
    let peer = server.new_peer();
    server
        .acquire(peer, "mutex", 1, "?expires_in=300ms")
        .expect(200, "");
    let waiter = server.new_peer();
    let (reply, waited) =
        answered(server.acquire_in_background(waiter, "mutex", 1, "?block_for=30s"));
    reply.expect(200, "");
    assert!(
        waited < Duration::from_secs(20),
        "answered after {waited:?}"
    );
    server
        .put(&format!("/peers/{peer}"), r#"{"expires_in": "5m"}"#)
        .expect(400, "Unknown peer");
    assert!(server.state().as_array().unwrap().len() == 1);
}

/// After a server restart a client restores its peer with the same id and locks.
#[test]
fn restore_after_a_restart_recreates_peer_and_locks() {
    let (peer, locks) = {
        let server = Server::start(CONFIG);
        let peer = server.new_peer();
        server.acquire(peer, "outer", 1, "").expect(200, "");
        server.acquire(peer, "A", 2, "").expect(200, "");
        (peer, server.state()[0]["acquired"].clone())
    };
    let server = Server::start(CONFIG);
    server
        .acquire(peer, "mutex", 1, "")
        .expect(400, "Unknown peer");
    let body = serde_json::json!({"expires_in": "5m", "peer_id": peer, "acquired": locks});
    server.post("/restore", &body.to_string()).expect(200, "");
    assert_eq!(server.remainder("A"), 1);
    assert_eq!(server.remainder("outer"), 0);
    // The restored peer goes on as before: the hierarchy still knows its level.
    server.acquire(peer, "outer", 1, "").expect(200, "");
    server
        .acquire(peer, "mutex", 1, "")
        .expect(409, "Lock hierarchy violation");
}
