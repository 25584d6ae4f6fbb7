//! The server's peer limit (`--max-peers`): its 503 `Too many peers` is returned at once as
//! `Error::TooManyPeers`, not retried like other server errors.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use throttle_client::{Error, PeerId};

use crate::support::{FakeServer, Server, secs};

/// Far below the default retry budget of 30 s: an error this fast was not retried for long.
const PROMPTLY: Duration = Duration::from_secs(2);

#[track_caller]
fn assert_too_many_peers<T: std::fmt::Debug>(result: Result<T, Error>, started: Instant) {
    let elapsed = started.elapsed();
    match result {
        Err(Error::TooManyPeers { message }) => {
            assert!(message.starts_with("Too many peers"), "{message:?}");
        }
        other => panic!("expected TooManyPeers, got {other:?}"),
    }
    assert!(elapsed < PROMPTLY, "took {elapsed:?}: retried?");
}

#[test]
fn new_peer_beyond_the_limit_fails_at_once() {
    let server = Server::start_with(&["--max-peers", "1"]);
    let client = server.client();
    let first = client.new_peer(secs(60)).unwrap();
    let started = Instant::now();
    assert_too_many_peers(client.new_peer(secs(60)), started);
    // The error reads as the server's reason.
    let error = client.new_peer(secs(60)).unwrap_err();
    assert!(error.to_string().starts_with("Too many peers"), "{error}");
    // Once the slot is free, a new peer is welcome again.
    client.release(first).unwrap();
    client.new_peer(secs(60)).unwrap();
}

#[test]
fn restore_of_a_new_peer_beyond_the_limit_fails_at_once() {
    let server = Server::start_with(&["--max-peers", "1"]);
    let client = server.client();
    let holder = client.new_peer(secs(60)).unwrap();
    assert!(client.acquire(holder, "A", 1, None, None).unwrap());
    let started = Instant::now();
    assert_too_many_peers(
        client.restore(PeerId(holder.0 + 1), &BTreeMap::new(), secs(60)),
        started,
    );
    // Restoring the peer the server knows creates none: it only prolongs it.
    let held = BTreeMap::from([("A".to_owned(), 1)]);
    client.restore(holder, &held, secs(60)).unwrap();
    assert_eq!(client.remainder("A").unwrap(), 0);
}

#[test]
fn lock_on_a_full_server_fails_at_once() {
    let server = Server::start_with(&["--max-peers", "1"]);
    let client = server.client();
    let other = client.new_peer(secs(60)).unwrap();
    let started = Instant::now();
    assert_too_many_peers(client.lock("A").timeout(secs(10)).acquire(), started);
    client.release(other).unwrap();
    let guard = client.lock("A").timeout(secs(10)).acquire().unwrap();
    assert_eq!(client.remainder("A").unwrap(), 0);
    drop(guard);
}

#[test]
fn only_the_peer_limit_skips_the_retries_of_a_503() {
    let fake = FakeServer::answering(503, "Too many peers: the server holds its limit");
    let started = Instant::now();
    assert_too_many_peers(fake.client().new_peer(secs(1)), started);
    assert_eq!(fake.requests(), 1);
}
