//! `Client`: every route and every error variant, against the real server.

use std::collections::BTreeMap;
use std::thread;
use std::time::Instant;

use throttle_client::{Error, PeerId};

use crate::support::{FakeServer, Server, eventually, join_within, ms, secs};

fn map(entries: &[(&str, i64)]) -> BTreeMap<String, i64> {
    entries
        .iter()
        .map(|&(name, count)| (name.to_owned(), count))
        .collect()
}

#[test]
fn health_and_version() {
    let server = Server::start();
    let client = server.client();
    client.health().unwrap();
    let version = client.version().unwrap();
    assert!(
        version.chars().next().is_some_and(|c| c.is_ascii_digit()),
        "{version:?}"
    );
}

#[test]
fn peers_are_created_listed_and_released() {
    let server = Server::start();
    let client = server.client();
    let peer = client.new_peer(secs(60)).unwrap();
    assert!(peer.0 < 1 << 53);
    let peers = client.list_peers().unwrap();
    assert_eq!(peers.len(), 1);
    assert_eq!(peers[0].id, peer);
    assert!(peers[0].acquired.is_empty() && peers[0].pending.is_empty());
    assert!(peers[0].expires_in() > secs(50) && peers[0].expires_in() <= secs(60));

    client.release(peer).unwrap();
    assert!(client.list_peers().unwrap().is_empty());
    // Releasing a peer the server does not know is fine.
    client.release(peer).unwrap();
}

#[test]
fn acquire_reports_acquired_or_pending_and_remainder_counts() {
    let server = Server::start();
    let client = server.client();
    let (first, second) = (
        client.new_peer(secs(60)).unwrap(),
        client.new_peer(secs(60)).unwrap(),
    );

    assert!(client.acquire(first, "B", 2, None, None).unwrap());
    assert_eq!(client.remainder("B").unwrap(), 1);
    assert!(client.is_acquired(first).unwrap());

    assert!(!client.acquire(second, "B", 2, None, None).unwrap());
    assert!(!client.is_acquired(second).unwrap());
    let pending = client
        .list_peers()
        .unwrap()
        .into_iter()
        .find(|p| p.id == second)
        .unwrap();
    assert_eq!(pending.pending, map(&[("B", 2)]));
    assert!(pending.acquired.is_empty());

    // Repeating is idempotent: still pending, and still first in the queue.
    assert!(!client.acquire(second, "B", 2, None, None).unwrap());
    client.release_lock(first, "B").unwrap();
    assert!(client.acquire(second, "B", 2, None, None).unwrap());
    assert!(client.is_acquired(second).unwrap());
    assert_eq!(client.remainder("B").unwrap(), 1);

    // A smaller count shrinks the held lock.
    assert!(client.acquire(second, "B", 1, None, None).unwrap());
    assert_eq!(client.remainder("B").unwrap(), 2);
    // Releasing a lock the peer does not hold is fine.
    client.release_lock(first, "B").unwrap();
    client.release(second).unwrap();
    assert_eq!(client.remainder("B").unwrap(), 3);
}

#[test]
fn a_long_poll_answers_as_soon_as_the_lock_is_granted() {
    let server = Server::start();
    let client = server.client();
    let holder = client.new_peer(secs(60)).unwrap();
    assert!(client.acquire(holder, "A", 1, None, None).unwrap());
    let waiter = client.new_peer(secs(60)).unwrap();
    assert!(!client.acquire(waiter, "A", 1, None, None).unwrap());

    let waiting = {
        let client = client.clone();
        thread::spawn(move || {
            let started = Instant::now();
            let granted = client
                .acquire(waiter, "A", 1, Some(secs(30)), None)
                .unwrap();
            (granted, started.elapsed())
        })
    };
    eventually(secs(10), "the waiter to be pending", || {
        client
            .list_peers()
            .unwrap()
            .iter()
            .any(|p| p.id == waiter && !p.pending.is_empty())
    });
    client.release(holder).unwrap();
    let (granted, waited) = join_within(waiting, secs(10), "the long poll to be granted");
    assert!(granted);
    assert!(waited < secs(20), "waited {waited:?}");
}

#[test]
fn a_long_poll_answers_pending_when_block_for_has_passed() {
    let server = Server::start();
    let client = server.client();
    let holder = client.new_peer(secs(60)).unwrap();
    assert!(client.acquire(holder, "A", 1, None, None).unwrap());
    let waiter = client.new_peer(secs(60)).unwrap();
    let started = Instant::now();
    assert!(!client.acquire(waiter, "A", 1, Some(ms(300)), None).unwrap());
    assert!(
        started.elapsed() >= ms(250),
        "answered after {:?}",
        started.elapsed()
    );
}

#[test]
fn heartbeat_and_acquire_with_expires_in_prolong_a_peer() {
    let server = Server::start();
    let client = server.client();
    let peer = client.new_peer(secs(1)).unwrap();
    let expires_in = || client.list_peers().unwrap()[0].expires_in();

    client.heartbeat(peer, secs(120)).unwrap();
    assert!(expires_in() > secs(100));
    assert!(client.acquire(peer, "B", 1, None, Some(secs(600))).unwrap());
    assert!(expires_in() > secs(500));
}

#[test]
fn expired_peers_lose_their_locks() {
    let server = Server::start();
    let client = server.client();
    let peer = client.new_peer(ms(300)).unwrap();
    assert!(client.acquire(peer, "A", 1, None, None).unwrap());
    eventually(secs(10), "the lock to expire", || {
        client.remainder("A").unwrap() == 1
    });
    // The server remembers that the peer expired: not a restart, so not `UnknownPeer`.
    assert!(matches!(
        client.heartbeat(peer, secs(1)),
        Err(Error::LockLost)
    ));
    assert!(matches!(
        client.acquire(peer, "A", 1, None, None),
        Err(Error::LockLost)
    ));
}

#[test]
fn restore_recreates_a_peer_with_its_locks() {
    let server = Server::start();
    let client = server.client();
    let peer = PeerId(42);
    client
        .restore(peer, &map(&[("A", 1), ("B", 2)]), secs(60))
        .unwrap();
    assert_eq!(client.remainder("A").unwrap(), 0);
    assert_eq!(client.remainder("B").unwrap(), 1);
    assert!(client.is_acquired(peer).unwrap());
    let peers = client.list_peers().unwrap();
    assert_eq!(peers[0].id, peer);
    assert_eq!(peers[0].acquired, map(&[("A", 1), ("B", 2)]));

    // The same restore again only prolongs.
    client
        .restore(peer, &map(&[("A", 1), ("B", 2)]), secs(60))
        .unwrap();
    // Other locks are a conflict.
    let conflict = client
        .restore(peer, &map(&[("A", 1)]), secs(60))
        .unwrap_err();
    assert!(
        matches!(conflict, Error::RestoreConflict { .. }),
        "{conflict:?}"
    );

    // A revenant counts even when that overcommits the semaphore.
    client
        .restore(PeerId(43), &map(&[("A", 1)]), secs(60))
        .unwrap();
    assert_eq!(client.remainder("A").unwrap(), -1);
}

#[test]
fn unknown_peers_are_reported_by_every_route_that_names_one() {
    let server = Server::start();
    let client = server.client();
    let ghost = PeerId(7);
    let unknown = |result: Result<(), Error>| matches!(result, Err(Error::UnknownPeer));
    assert!(unknown(client.acquire(ghost, "A", 1, None, None).map(drop)));
    assert!(unknown(client.heartbeat(ghost, secs(1))));
    assert!(unknown(client.is_acquired(ghost).map(drop)));
    assert!(unknown(client.release_lock(ghost, "A")));
}

#[test]
fn unknown_semaphores_are_reported() {
    let server = Server::start();
    let client = server.client();
    let peer = client.new_peer(secs(60)).unwrap();
    let unknown = |result: Result<(), Error>| matches!(result, Err(Error::UnknownSemaphore));
    assert!(unknown(
        client.acquire(peer, "nope", 1, None, None).map(drop)
    ));
    assert!(unknown(client.remainder("nope").map(drop)));
    assert!(unknown(client.release_lock(peer, "nope")));
    // Names are case sensitive.
    assert!(unknown(client.remainder("a").map(drop)));
}

#[test]
fn conflicts_map_to_their_variants() {
    let server = Server::start();
    let client = server.client();
    let peer = || client.new_peer(secs(60)).unwrap();

    let error = client.acquire(peer(), "A", 2, None, None).unwrap_err();
    assert!(
        matches!(&error, Error::CountTooLarge { message } if message.starts_with("Count too large"))
    );
    assert!(error.to_string().starts_with("Count too large"));

    // A peer holding a level-0 lock may not take a level-1 one.
    let nested = peer();
    assert!(client.acquire(nested, "B", 1, None, None).unwrap());
    let error = client.acquire(nested, "C", 1, None, None).unwrap_err();
    assert!(
        matches!(error, Error::LockHierarchyViolation { .. }),
        "{error:?}"
    );
    // Growing a held lock is rejected.
    let error = client.acquire(nested, "B", 2, None, None).unwrap_err();
    assert!(matches!(error, Error::LockCountChange { .. }), "{error:?}");

    let (holder_a, holder_e, waiter) = (peer(), peer(), peer());
    assert!(client.acquire(holder_a, "A", 1, None, None).unwrap());
    assert!(client.acquire(holder_e, "E", 1, None, None).unwrap());
    assert!(!client.acquire(waiter, "A", 1, None, None).unwrap());
    let error = client.acquire(waiter, "E", 1, None, None).unwrap_err();
    assert!(
        matches!(error, Error::SecondPendingLock { .. }),
        "{error:?}"
    );
    // Another count for a pending lock is rejected too.
    client.release(nested).unwrap();
    let (holder_b, waiter_b) = (peer(), peer());
    assert!(client.acquire(holder_b, "B", 3, None, None).unwrap());
    assert!(!client.acquire(waiter_b, "B", 1, None, None).unwrap());
    let error = client.acquire(waiter_b, "B", 2, None, None).unwrap_err();
    assert!(matches!(error, Error::LockCountChange { .. }), "{error:?}");
}

#[test]
fn other_rejections_are_invalid_requests_with_the_servers_reason() {
    let server = Server::start();
    let client = server.client();
    let peer = client.new_peer(secs(60)).unwrap();
    let error = client.acquire(peer, "B", 0, None, None).unwrap_err();
    match &error {
        Error::InvalidRequest {
            status: 400,
            message,
        } => {
            assert!(message.starts_with("Invalid count"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    assert!(error.to_string().contains("400"), "{error}");
    // A duration of more than a hundred years.
    let error = client.new_peer(secs(101 * 365 * 24 * 3600)).unwrap_err();
    assert!(
        matches!(&error, Error::InvalidRequest { status: 400, message } if message.starts_with("Invalid duration")),
        "{error:?}"
    );
    // A restore whose counts add up past what a semaphore can count.
    client
        .restore(PeerId(1), &map(&[("B", i64::MAX)]), secs(60))
        .unwrap();
    let error = client
        .restore(PeerId(2), &map(&[("B", i64::MAX)]), secs(60))
        .unwrap_err();
    assert!(
        matches!(error, Error::InvalidRequest { status: 409, .. }),
        "{error:?}"
    );
}

#[test]
fn names_are_percent_encoded_as_one_path_segment() {
    let server = Server::start();
    let client = server.client();
    let peer = client.new_peer(secs(60)).unwrap();
    for (name, max) in [("a/b c", 2), ("Grüße/ünï cöde", 1), ("x&y=z+1%?#", 1)] {
        assert_eq!(client.remainder(name).unwrap(), max, "{name}");
        assert!(
            client
                .acquire(peer, name, 1, Some(ms(100)), Some(secs(60)))
                .unwrap(),
            "{name}"
        );
        assert_eq!(client.remainder(name).unwrap(), max - 1, "{name}");
        let listed = client.list_peers().unwrap();
        assert_eq!(listed[0].acquired.get(name), Some(&1), "{name}");
        client.release_lock(peer, name).unwrap();
        assert_eq!(client.remainder(name).unwrap(), max, "{name}");
    }
    // A name that only matches after decoding must not match its prefix.
    assert!(matches!(
        client.remainder("a"),
        Err(Error::UnknownSemaphore)
    ));
}

#[test]
fn server_errors_are_retried_within_the_budget() {
    let fake = FakeServer::answering(503, "Shutting down");
    let client = fake.client().with_retry_budget(ms(500));
    let started = Instant::now();
    let error = client.new_peer(secs(1)).unwrap_err();
    assert!(
        matches!(&error, Error::Server { status: 503, message } if message == "Shutting down"),
        "{error:?}"
    );
    assert!(fake.requests() >= 3, "only {} attempts", fake.requests());
    assert!(
        started.elapsed() < secs(5),
        "retried for {:?}",
        started.elapsed()
    );
}

#[test]
fn rejections_are_not_retried() {
    let fake = FakeServer::answering(400, "Unknown peer");
    let client = fake.client();
    assert!(matches!(
        client.heartbeat(PeerId(1), secs(1)),
        Err(Error::UnknownPeer)
    ));
    assert_eq!(fake.requests(), 1);
}

#[test]
fn answers_that_make_no_sense_are_unexpected_responses() {
    let fake = FakeServer::answering(200, "<html>a proxy</html>");
    let error = fake.client().new_peer(secs(1)).unwrap_err();
    assert!(
        matches!(error, Error::UnexpectedResponse { status: 200, .. }),
        "{error:?}"
    );
}

#[test]
fn transport_errors_are_retried_then_returned() {
    // A port that was free a moment ago: connections are refused.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let client = throttle_client::Client::new(&url).with_retry_budget(ms(300));
    let started = Instant::now();
    let error = client.health().unwrap_err();
    let Error::Transport(unreachable) = &error else {
        panic!("not a transport error: {error:?}");
    };
    assert_eq!(unreachable.server(), url);
    assert_eq!(unreachable.reason(), "connection refused");
    assert_eq!(unreachable.retried_for(), Some(ms(300)));
    assert_eq!(
        error.to_string(),
        format!("server {url} unreachable within 300ms: connection refused")
    );
    assert!(std::error::Error::source(&error).is_some());
    assert!(
        started.elapsed() >= ms(50),
        "gave up after {:?}",
        started.elapsed()
    );
    assert!(
        started.elapsed() < secs(5),
        "retried for {:?}",
        started.elapsed()
    );
}
