//! Long polls (`block_for`): answered as soon as the lock is granted, by a release or an expiry;
//! answered 202 when the time is up or the pending lock is withdrawn; and never allowed to take
//! every worker, so short requests are served while clients wait.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use common::{PROMPTLY, Reply, Server, answered};

const CONFIG: &str = r#"
[semaphores]
mutex = 1
"#;

/// `block_for` in these tests: far longer than any answer that should come "at once".
const LONG: Duration = Duration::from_secs(30);

/// A holder of `mutex`, and a waiter whose long poll for it (`block_for=30s`) the server counts
/// as waiting. Returns both peers and the long poll's answer with the time it took.
fn waiting_behind_a_holder(server: &Server) -> (u64, u64, JoinHandle<(Reply, Duration)>) {
    let holder = server.new_peer();
    let waiter = server.new_peer();
    server.acquire(holder, "mutex", 1, "").expect(200, "");
    let poll = server.acquire_in_background(waiter, "mutex", 1, "?block_for=30s");
    server.wait_for_long_polls(1);
    (holder, waiter, poll)
}

#[test]
fn a_release_answers_the_waiting_long_poll() {
    let server = Server::start(CONFIG);
    let (holder, waiter, poll) = waiting_behind_a_holder(&server);
    server.release(holder, "mutex").expect(200, "");
    let (reply, waited) = answered(poll);
    reply.expect(200, "");
    assert!(waited < LONG / 2, "answered after {waited:?}");
    assert!(server.is_acquired(waiter));
}

#[test]
fn an_expiry_answers_the_waiting_long_poll() {
    let server = Server::start(CONFIG);
    let holder = server.new_peer();
    let waiter = server.new_peer();
    server
        .acquire(holder, "mutex", 1, "?expires_in=500ms")
        .expect(200, "");
    let started = Instant::now();
    let (reply, _) = answered(server.acquire_in_background(waiter, "mutex", 1, "?block_for=30s"));
    reply.expect(200, "");
    let waited = started.elapsed();
    assert!(waited < LONG / 2, "answered after {waited:?}");
    server
        .put(&format!("/peers/{holder}"), r#"{"expires_in": "5m"}"#)
        .expect(400, "Unknown peer");
}

#[test]
fn a_long_poll_that_is_not_granted_gets_202_when_its_time_is_up() {
    let server = Server::start(CONFIG);
    let holder = server.new_peer();
    let waiter = server.new_peer();
    server.acquire(holder, "mutex", 1, "").expect(200, "");
    let started = Instant::now();
    server
        .acquire(waiter, "mutex", 1, "?block_for=300ms")
        .expect(202, "");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(300),
        "answered after {waited:?}"
    );
    assert!(waited < PROMPTLY, "answered after {waited:?}");
    // Still queued: the next release grants it.
    server.release(holder, "mutex").expect(200, "");
    assert!(server.is_acquired(waiter));
}

#[test]
fn a_long_poll_whose_pending_lock_is_released_gets_202() {
    let server = Server::start(CONFIG);
    let (_holder, waiter, poll) = waiting_behind_a_holder(&server);
    server.release(waiter, "mutex").expect(200, "");
    let (reply, waited) = answered(poll);
    reply.expect(202, "");
    assert!(waited < LONG / 2, "answered after {waited:?}");
    assert_eq!(
        server.metric(r#"throttle_pending{semaphore="mutex"}"#),
        Some(0.0)
    );
}

/// A long poll whose client closes its connection ends within a second or so: its waiting
/// thread goes back to the pool (with room for one waiter, the next long poll waits rather than
/// being refused). Its pending lock stays, as when `block_for` ends: the next release grants it.
#[test]
fn a_long_poll_whose_client_goes_away_ends_and_its_lock_stays_pending() {
    let server = Server::start_with(CONFIG, &["--max-waiters", "1"], &[]);
    let holder = server.new_peer();
    let waiter = server.new_peer();
    server.acquire(holder, "mutex", 1, "").expect(200, "");
    let mut client = TcpStream::connect(server.addr).expect("connect");
    write!(
        client,
        "PUT /peers/{waiter}/mutex?block_for=10m HTTP/1.1\r\nHost: throttle\r\n\
         Content-Length: 1\r\n\r\n1"
    )
    .expect("send the long poll");
    server.wait_for_long_polls(1);

    let closed = Instant::now();
    drop(client);
    let deadline = closed + PROMPTLY;
    while server.metric("throttle_long_polls") != Some(0.0) {
        assert!(Instant::now() < deadline, "the long poll still waits");
        thread::sleep(Duration::from_millis(10));
    }
    let ended = closed.elapsed();
    // Within a second of the close in principle; generous for a loaded machine.
    assert!(
        ended < Duration::from_secs(5),
        "ended {ended:?} after the close"
    );

    assert_eq!(
        server.metric(r#"throttle_pending{semaphore="mutex"}"#),
        Some(1.0)
    );
    let next = server.acquire_in_background(waiter, "mutex", 1, "?block_for=30s");
    server.wait_for_long_polls(1);
    assert_eq!(
        server.metric("throttle_long_polls_refused_total"),
        Some(0.0)
    );
    server.release(holder, "mutex").expect(200, "");
    let (reply, _) = answered(next);
    reply.expect(200, "");
    assert!(server.is_acquired(waiter));
}

#[test]
fn a_long_poll_whose_peer_is_removed_gets_unknown_peer() {
    let server = Server::start(CONFIG);
    let (_holder, waiter, poll) = waiting_behind_a_holder(&server);
    server.delete(&format!("/peers/{waiter}")).expect(200, "");
    let (reply, waited) = answered(poll);
    reply.expect(400, "Unknown peer");
    assert!(waited < LONG / 2, "answered after {waited:?}");
}

/// Long polls wait on threads of their own: with a single worker and room for two waiters,
/// the two wait while releases, heartbeats and scrapes are served by the one worker. A third
/// long poll is beyond `--max-waiters` and is answered at once with 202.
#[test]
fn waiting_requests_never_occupy_every_worker() {
    let server = Server::start_with(CONFIG, &["--workers", "1", "--max-waiters", "2"], &[]);
    let holder = server.new_peer();
    let waiters: Vec<u64> = (0..5).map(|_| server.new_peer()).collect();
    server.acquire(holder, "mutex", 1, "").expect(200, "");
    for &waiter in &waiters {
        server.acquire(waiter, "mutex", 1, "").expect(202, "");
    }
    let first = server.acquire_in_background(waiters[0], "mutex", 1, "?block_for=60s");
    let second = server.acquire_in_background(waiters[1], "mutex", 1, "?block_for=60s");
    server.wait_for_long_polls(2);

    // Beyond the bound: answered at once with the current state.
    for &waiter in &waiters[2..] {
        let started = Instant::now();
        server
            .acquire(waiter, "mutex", 1, "?block_for=60s")
            .expect(202, "");
        let waited = started.elapsed();
        assert!(waited < PROMPTLY, "an extra long poll waited {waited:?}");
    }
    assert_eq!(
        server.metric("throttle_long_polls_refused_total"),
        Some(3.0)
    );

    // Short requests are served while the two wait.
    let timed = |what: &str, f: &dyn Fn()| {
        let started = Instant::now();
        f();
        let took = started.elapsed();
        assert!(took < PROMPTLY, "{what} took {took:?}");
    };
    for _ in 0..5 {
        timed("a scrape", &|| {
            server.metrics();
        });
        timed("a heartbeat", &|| {
            server
                .put(&format!("/peers/{holder}"), r#"{"expires_in": "5m"}"#)
                .expect(200, "");
        });
        timed("a new peer", &|| {
            server.new_peer();
        });
    }
    assert_eq!(server.metric("throttle_long_polls"), Some(2.0));
    timed("a release", &|| {
        server.release(holder, "mutex").expect(200, "");
    });
    let (reply, waited) = answered(first);
    reply.expect(200, "");
    assert!(
        waited < Duration::from_secs(50),
        "answered after {waited:?}"
    );
    server.release(waiters[0], "mutex").expect(200, "");
    let (reply, waited) = answered(second);
    reply.expect(200, "");
    assert!(
        waited < Duration::from_secs(50),
        "answered after {waited:?}"
    );
    // The two extra waiters kept their places in the queue.
    server.release(waiters[1], "mutex").expect(200, "");
    assert!(server.is_acquired(waiters[2]));
    assert!(!server.is_acquired(waiters[3]));
}

/// Many clients waiting at once on the default pool are all answered, in order, by releases.
#[test]
fn many_waiters_are_all_answered() {
    let server = Server::start(CONFIG);
    let holder = server.new_peer();
    let waiters: Vec<u64> = (0..20).map(|_| server.new_peer()).collect();
    server.acquire(holder, "mutex", 1, "").expect(200, "");
    for &waiter in &waiters {
        server.acquire(waiter, "mutex", 1, "").expect(202, "");
    }
    let polls: Vec<_> = waiters
        .iter()
        .map(|&waiter| server.acquire_in_background(waiter, "mutex", 1, "?block_for=60s"))
        .collect();
    server.wait_for_long_polls(waiters.len());
    let mut previous = holder;
    for (&waiter, poll) in waiters.iter().zip(polls) {
        server.release(previous, "mutex").expect(200, "");
        let (reply, _) = answered(poll);
        reply.expect(200, "");
        previous = waiter;
    }
}
