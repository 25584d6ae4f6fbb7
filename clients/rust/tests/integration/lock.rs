//! The lock guard and `Peer`: counts, timeouts, heartbeats, restores, release on drop.

use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use throttle_client::{Cancel, Client, Error};

use crate::support::{Server, eventually, join_within, ms, secs, someone_waits, throughout};

#[test]
fn a_guard_holds_its_count_until_dropped() {
    let server = Server::start();
    let client = server.client();
    let guard = client.lock("B").count(2).acquire().unwrap();
    assert_eq!((guard.semaphore(), guard.count()), ("B", 2));
    assert_eq!(client.remainder("B").unwrap(), 1);
    assert!(client.is_acquired(guard.peer_id()).unwrap());
    drop(guard);
    assert_eq!(client.remainder("B").unwrap(), 3);
    assert!(
        client.list_peers().unwrap().is_empty(),
        "the guard's peer is released too"
    );
}

#[test]
fn release_reports_what_the_server_said() {
    let server = Server::start();
    let client = server.client();
    let guard = client.lock("A").acquire().unwrap();
    guard.release().unwrap();
    assert_eq!(client.remainder("A").unwrap(), 1);
}

#[test]
fn a_timeout_leaves_no_pending_lock_behind() {
    let server = Server::start();
    let client = server.client();
    let _held = client.lock("B").count(2).acquire().unwrap();

    let started = Instant::now();
    let error = client
        .lock("B")
        .count(2)
        .timeout(ms(400))
        .acquire()
        .unwrap_err();
    let waited = started.elapsed();
    match &error {
        Error::Timeout { semaphore, timeout } => {
            assert_eq!((semaphore.as_str(), *timeout), ("B", ms(400)))
        }
        other => panic!("{other:?}"),
    }
    assert!(waited >= ms(350) && waited < secs(10), "waited {waited:?}");

    // The waiter's peer is gone, so nothing queues ahead of a small request.
    assert_eq!(client.list_peers().unwrap().len(), 1);
    assert_eq!(client.remainder("B").unwrap(), 1);
    let small = client.lock("B").timeout(Duration::ZERO).acquire().unwrap();
    assert!(client.is_acquired(small.peer_id()).unwrap());
}

#[test]
fn a_cancelled_wait_ends_at_once_and_leaves_no_pending_lock_behind() {
    let server = Server::start();
    let client = server.client();
    let _held = client.lock("B").count(3).acquire().unwrap();
    let cancel = Cancel::new();
    let waiter = {
        let (client, cancel) = (client.clone(), cancel.clone());
        thread::spawn(move || {
            let waited = client.lock("B").cancel_with(&cancel).acquire();
            (waited.map(drop), Instant::now())
        })
    };
    eventually(secs(10), "the waiter is queued", || someone_waits(&client));
    let cancelled_at = Instant::now();
    cancel.cancel();
    // Without a timeout, a wait the cancel did not end would go on for ever.
    let (waited, ended) = join_within(waiter, secs(10), "the cancelled wait to end");
    assert!(matches!(waited, Err(Error::Cancelled)), "{waited:?}");
    // Cut short on the server, not at the end of a five-second slice.
    assert!(ended - cancelled_at < secs(3), "{:?}", ended - cancelled_at);
    assert_eq!(
        client.list_peers().unwrap().len(),
        1,
        "the waiter's peer is gone"
    );
    // A cancelled handle stays cancelled.
    let again = client.lock("A").cancel_with(&cancel).acquire();
    assert!(matches!(again, Err(Error::Cancelled)), "{again:?}");
    assert_eq!(client.remainder("A").unwrap(), 1);
}

#[test]
fn a_timeout_on_a_shared_peer_withdraws_only_the_pending_lock() {
    let server = Server::start();
    let client = server.client();
    let _held = client.lock("A").acquire().unwrap();
    let peer = client.peer(secs(60)).unwrap();
    let outer = peer.lock("C").acquire().unwrap();
    let error = peer.lock("A").timeout(ms(200)).acquire().unwrap_err();
    assert!(matches!(error, Error::Timeout { .. }), "{error:?}");
    assert!(
        client.is_acquired(peer.id()).unwrap(),
        "no pending lock is left"
    );
    assert_eq!(
        client.remainder("C").unwrap(),
        0,
        "the outer lock is still held"
    );
    drop(outer);
    assert_eq!(client.remainder("C").unwrap(), 1);
}

#[test]
fn a_waiting_guard_gets_the_lock_when_the_holder_drops_its_guard() {
    let server = Server::start();
    let client = server.client();
    let holder = client.lock("A").acquire().unwrap();
    let (granted, on_grant) = mpsc::channel();
    let waiter = {
        let client = client.clone();
        thread::spawn(move || {
            let guard = client.lock("A").timeout(secs(60)).acquire().unwrap();
            granted.send(guard.peer_id()).unwrap();
        })
    };
    eventually(secs(10), "the waiter to queue", || {
        client.list_peers().unwrap().len() == 2
    });
    assert!(
        on_grant.try_recv().is_err(),
        "granted while the lock was held"
    );
    drop(holder);
    on_grant
        .recv_timeout(secs(30))
        .expect("the waiter got the lock");
    waiter.join().unwrap();
    assert_eq!(client.remainder("A").unwrap(), 1);
}

#[test]
fn the_heartbeat_keeps_a_lock_past_its_expires_in() {
    let server = Server::start();
    let client = server.client();
    let guard = client.lock("A").expires_in(ms(300)).acquire().unwrap();
    // Holding the lock for several leases is what is tested: it never lapses meanwhile.
    throughout(ms(1200), "the heartbeat keeps the lock", || {
        client.remainder("A").unwrap() == 0 && client.is_acquired(guard.peer_id()).unwrap()
    });
    let peers = client.list_peers().unwrap();
    assert_eq!(peers[0].id, guard.peer_id());
    assert!(peers[0].expires_in() <= ms(300));
    drop(guard);
    assert_eq!(client.remainder("A").unwrap(), 1);
}

#[test]
fn the_heartbeat_restores_a_lock_after_a_server_restart() {
    let mut server = Server::start();
    let client = server.client();
    let guard = client
        .lock("B")
        .count(2)
        .expires_in(ms(600))
        .acquire()
        .unwrap();
    server.restart();
    eventually(secs(15), "the heartbeat to restore the lock", || {
        client.remainder("B").unwrap() == 1
    });
    let peers = client.list_peers().unwrap();
    assert_eq!(peers.len(), 1);
    assert_eq!(peers[0].id, guard.peer_id());
    assert_eq!(peers[0].acquired.get("B"), Some(&2));
    drop(guard);
    assert_eq!(client.remainder("B").unwrap(), 3);
    assert!(client.list_peers().unwrap().is_empty());
}

#[test]
fn waiting_restores_the_peer_after_a_server_restart() {
    let mut server = Server::start();
    let client = server.client();
    // A long lease: restoring is left to the acquire, not the heartbeat.
    let peer = client.peer(secs(600)).unwrap();
    let outer = peer.lock("C").acquire().unwrap();
    server.restart();
    let inner = peer.lock("A").timeout(secs(30)).acquire().unwrap();
    assert_eq!(client.remainder("C").unwrap(), 0);
    assert_eq!(client.remainder("A").unwrap(), 0);
    assert_eq!(peer.acquired().len(), 2);
    drop((inner, outer));
    assert_eq!(client.remainder("A").unwrap(), 1);
    assert_eq!(client.remainder("C").unwrap(), 1);
}

#[test]
fn nested_locks_on_one_peer_follow_the_lock_hierarchy() {
    let server = Server::start();
    let client = server.client();
    let peer = client.peer(secs(60)).unwrap();
    let outer = peer.lock("C").acquire().unwrap(); // level 1
    let inner = peer.lock("A").acquire().unwrap(); // level 0
    assert_eq!(peer.acquired().len(), 2);
    let error = peer.lock("A").acquire().unwrap_err();
    assert!(
        matches!(&error, Error::AlreadyLocked { semaphore } if semaphore == "A"),
        "{error:?}"
    );
    drop(inner);
    drop(outer);
    assert_eq!(client.remainder("C").unwrap(), 1);
    assert_eq!(
        client.list_peers().unwrap().len(),
        1,
        "the peer lives while its handle does"
    );
    drop(peer);
    assert!(client.list_peers().unwrap().is_empty());

    let reversed = client.peer(secs(60)).unwrap();
    let _inner = reversed.lock("A").acquire().unwrap();
    let error = reversed.lock("C").acquire().unwrap_err();
    assert!(
        matches!(error, Error::LockHierarchyViolation { .. }),
        "{error:?}"
    );
    assert!(client.is_acquired(reversed.id()).unwrap());
}

#[test]
fn a_rejected_lock_releases_its_peer() {
    let server = Server::start();
    let client = server.client();
    assert!(matches!(
        client.lock("nope").acquire(),
        Err(Error::UnknownSemaphore)
    ));
    assert!(matches!(
        client.lock("A").count(2).acquire(),
        Err(Error::CountTooLarge { .. })
    ));
    assert!(matches!(
        client.lock("A").count(0).acquire(),
        Err(Error::InvalidRequest { status: 400, .. })
    ));
    assert!(client.list_peers().unwrap().is_empty());
}

#[test]
fn waiters_beyond_the_long_poll_slots_all_get_their_turn() {
    // Room for one waiting long poll: the other waiters get early answers and back off.
    let server = Server::start_with(&["--max-waiters", "1"]);
    let client = server.client();
    let holder = client.lock("A").acquire().unwrap();
    let waiters: Vec<_> = (0..4)
        .map(|_| {
            let client = client.clone();
            thread::spawn(move || {
                let guard = client.lock("A").timeout(secs(60)).acquire().unwrap();
                let remainder = client.remainder("A").unwrap();
                drop(guard);
                remainder
            })
        })
        .collect();
    eventually(secs(10), "all waiters to queue", || {
        client.list_peers().unwrap().len() == 5
    });
    drop(holder);
    for waiter in waiters {
        assert_eq!(waiter.join().unwrap(), 0, "one holder at a time");
    }
    assert_eq!(client.remainder("A").unwrap(), 1);
}

#[test]
fn dropping_a_guard_never_panics_when_the_server_is_gone() {
    let server = Server::start();
    let client = Client::new(&server.url()).with_retry_budget(ms(200));
    let first = client.lock("B").acquire().unwrap();
    let second = client.lock("B").acquire().unwrap();
    drop(server);
    let started = Instant::now();
    assert!(matches!(first.release(), Err(Error::Transport(_))));
    drop(second);
    assert!(started.elapsed() < secs(10), "took {:?}", started.elapsed());
}
