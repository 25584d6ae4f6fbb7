//! Server behaviour seen through the repository's Rust client (`clients/rust`), where guards
//! and peers say more clearly than HTTP requests what is being tested: mutual exclusion, FIFO
//! order, the lock hierarchy, a rate-limit window, and access control.
//!
//! The server is the real binary started by the harness in `common`; the client talks to it as
//! any program would.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::{PROMPTLY, Server};
use throttle_client::{Client, Error};

const CONFIG: &str = r#"
[semaphores]
mutex = 1
pool = 3
api = 3
outer = { max = 1, level = 1 }
inner = 1
"#;

fn client_of(server: &Server) -> Client {
    // Failures should fail the test, not be retried for half a minute.
    Client::new(&format!("http://{}", server.addr)).with_retry_budget(Duration::from_secs(2))
}

/// Many threads, each with its own guard, never hold a mutex together, and everyone gets a turn.
#[test]
fn guards_exclude_each_other_across_threads() {
    let server = Server::start(CONFIG);
    let client = client_of(&server);
    let inside = Arc::new(AtomicUsize::new(0));
    let most_inside = Arc::new(AtomicUsize::new(0));
    let turns = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..8)
        .map(|_| {
            let (client, inside, most_inside, turns) = (
                client.clone(),
                inside.clone(),
                most_inside.clone(),
                turns.clone(),
            );
            thread::spawn(move || {
                for _ in 0..5 {
                    let guard = client
                        .lock("mutex")
                        .timeout(PROMPTLY * 3)
                        .acquire()
                        .unwrap();
                    let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                    most_inside.fetch_max(now, Ordering::SeqCst);
                    // Some work while holding the lock, so overlaps would show.
                    thread::sleep(Duration::from_millis(2));
                    inside.fetch_sub(1, Ordering::SeqCst);
                    turns.fetch_add(1, Ordering::SeqCst);
                    drop(guard);
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().expect("a worker thread");
    }
    assert_eq!(most_inside.load(Ordering::SeqCst), 1);
    assert_eq!(turns.load(Ordering::SeqCst), 40);
    assert_eq!(client.remainder("mutex").unwrap(), 1);
    assert!(client.list_peers().unwrap().is_empty());
}

/// A counting semaphore admits up to `max` guards at once, never more.
#[test]
fn guards_share_a_counting_semaphore_up_to_its_max() {
    let server = Server::start(CONFIG);
    let client = client_of(&server);
    let inside = Arc::new(AtomicUsize::new(0));
    let most_inside = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..6)
        .map(|_| {
            let (client, inside, most_inside) =
                (client.clone(), inside.clone(), most_inside.clone());
            thread::spawn(move || {
                for _ in 0..4 {
                    let _guard = client.lock("pool").timeout(PROMPTLY * 3).acquire().unwrap();
                    let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                    most_inside.fetch_max(now, Ordering::SeqCst);
                    thread::sleep(Duration::from_millis(5));
                    inside.fetch_sub(1, Ordering::SeqCst);
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().expect("a worker thread");
    }
    let most = most_inside.load(Ordering::SeqCst);
    assert!(
        (1..=3).contains(&most),
        "{most} guards held `pool = 3` at once"
    );
    assert_eq!(client.remainder("pool").unwrap(), 3);
}

/// Waiters are granted in the order they asked, whatever order their threads wake up in.
#[test]
fn guards_are_granted_in_fifo_order() {
    let server = Server::start(CONFIG);
    let client = client_of(&server);
    let holder = client.lock("mutex").acquire().unwrap();
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut waiters = Vec::new();
    for i in 0..6 {
        let (client, order) = (client.clone(), order.clone());
        waiters.push(thread::spawn(move || {
            let guard = client
                .lock("mutex")
                .timeout(PROMPTLY * 3)
                .acquire()
                .unwrap();
            order.lock().unwrap().push(i);
            drop(guard);
        }));
        // The next waiter starts only once this one is queued on the server.
        server.wait_for_metric(r#"throttle_pending{semaphore="mutex"}"#, f64::from(i + 1));
    }
    drop(holder);
    for waiter in waiters {
        waiter.join().expect("a waiter thread");
    }
    assert_eq!(*order.lock().unwrap(), vec![0, 1, 2, 3, 4, 5]);
}

/// One peer, shared by two threads, holds `outer` (level 1) and then `inner` (level 0). The
/// other order is refused before anything changes, so no two peers can wait on each other.
#[test]
fn a_shared_peer_follows_the_lock_hierarchy() {
    let server = Server::start(CONFIG);
    let client = client_of(&server);
    let peer = client.peer(Duration::from_secs(60)).unwrap();
    let outer = peer.lock("outer").acquire().unwrap();
    // Another thread takes the inner lock on the same peer.
    let inner = thread::scope(|scope| {
        scope
            .spawn(|| peer.lock("inner").acquire().unwrap())
            .join()
            .expect("the inner thread")
    });
    let listed = client.list_peers().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, peer.id());
    assert_eq!(listed[0].acquired.get("outer"), Some(&1));
    assert_eq!(listed[0].acquired.get("inner"), Some(&1));
    drop(inner);
    drop(outer);

    // The wrong order: inner first, then outer.
    let inner = peer.lock("inner").acquire().unwrap();
    match peer.lock("outer").acquire() {
        Err(Error::LockHierarchyViolation { message }) => {
            assert!(message.starts_with("Lock hierarchy violation"), "{message}");
        }
        other => panic!("expected a lock hierarchy violation, got {other:?}"),
    }
    assert_eq!(client.remainder("outer").unwrap(), 1, "nothing was taken");
    assert_eq!(peer.acquired().len(), 1);
    // The same level is refused too: levels must strictly descend.
    let other = client.peer(Duration::from_secs(60)).unwrap();
    let _pool = other.lock("pool").acquire().unwrap();
    assert!(matches!(
        other.lock("inner").acquire(),
        Err(Error::LockHierarchyViolation { .. })
    ));
    drop(inner);
    drop(peer);
    assert_eq!(client.remainder("inner").unwrap(), 1);
}

/// `api = 3` with a one-second window: three calls start at once, the fourth when the first
/// unit's lease runs out, promptly (not a second or more late, as with a periodic sweep).
#[test]
fn a_rate_limit_window_frees_its_units_at_the_deadline() {
    let server = Server::start(CONFIG);
    let client = client_of(&server);
    let per = Duration::from_secs(1);
    let started = Instant::now();
    for _ in 0..3 {
        client.rate_limit("api", per).unwrap();
    }
    let first_three = started.elapsed();
    assert!(first_three < per, "three units took {first_three:?}");
    assert_eq!(client.remainder("api").unwrap(), 0);
    client
        .rate_limit_with("api", per, 1, Some(PROMPTLY))
        .unwrap();
    let fourth = started.elapsed();
    assert!(
        fourth >= per - Duration::from_millis(50),
        "the fourth call started after {fourth:?}, inside the first window"
    );
    assert!(
        fourth < per + Duration::from_secs(1),
        "the fourth call waited {fourth:?} for a unit whose lease ran out after {per:?}"
    );
    // Every unit frees itself, without a release.
    let deadline = Instant::now() + PROMPTLY;
    while client.remainder("api").unwrap() != 3 {
        assert!(Instant::now() < deadline, "units still held");
        thread::sleep(Duration::from_millis(10));
    }
    assert!(server.metric("throttle_expired_peers_total").unwrap() >= 4.0);
}

/// A guard whose holder vanishes (the process dies: no release, no heartbeat) is freed when its
/// lease runs out, and a waiter gets it then.
#[test]
fn a_vanished_holder_is_freed_at_its_deadline() {
    let server = Server::start(CONFIG);
    let client = client_of(&server);
    // A holder that vanishes: its peer is created and locked, then never heard of again.
    let peer = client.new_peer(Duration::from_millis(500)).unwrap();
    assert!(client.acquire(peer, "mutex", 1, None, None).unwrap());
    let started = Instant::now();
    let guard = client.lock("mutex").timeout(PROMPTLY).acquire().unwrap();
    let waited = started.elapsed();
    assert!(waited < Duration::from_millis(1500), "waited {waited:?}");
    assert!(client.list_peers().unwrap().iter().all(|p| p.id != peer));
    drop(guard);
}

/// With a token configured, the client is refused without it and works with it.
#[test]
fn the_client_and_a_server_with_a_token() {
    let server = Server::start_with(CONFIG, &[], &[("THROTTLE_TOKEN", "s3cret")]);
    let anonymous = client_of(&server);
    anonymous.health().unwrap();
    assert!(matches!(
        anonymous.lock("mutex").acquire(),
        Err(Error::Unauthorized)
    ));
    let client = client_of(&server).with_token("s3cret");
    let guard = client.lock("mutex").acquire().unwrap();
    assert_eq!(client.remainder("mutex").unwrap(), 0);
    drop(guard);
    assert_eq!(client.remainder("mutex").unwrap(), 1);
}
