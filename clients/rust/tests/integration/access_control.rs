//! A server with a token: the client sends it with every request, the heartbeat thread and
//! restores included; a missing or wrong token is `Error::Unauthorized`, never retried.

use std::time::Instant;

use throttle_client::{Client, Error};

use crate::support::{FakeServer, Server, eventually, ms, secs, throughout};

const TOKEN: &str = "s3cret";

#[test]
fn with_the_token_everything_works() {
    let server = Server::start_with_token(TOKEN);
    let client = server.client();
    assert!(client.has_token());
    client.health().unwrap();
    client.version().unwrap();
    let guard = client.lock("B").count(2).acquire().unwrap();
    assert_eq!(client.remainder("B").unwrap(), 1);
    assert_eq!(client.list_peers().unwrap().len(), 1);
    assert!(client.is_acquired(guard.peer_id()).unwrap());
    drop(guard);
    assert_eq!(client.remainder("B").unwrap(), 3);
    client.rate_limit("api", ms(200)).unwrap();
    let peer = client.peer(secs(60)).unwrap();
    let outer = peer.lock("C").acquire().unwrap();
    let inner = peer.lock("A").acquire().unwrap();
    drop((inner, outer, peer));
    // The rate limit's unit frees itself when its window ends.
    eventually(secs(10), "every peer to go", || {
        client.list_peers().unwrap().is_empty()
    });
}

#[test]
fn without_the_token_every_call_but_health_is_unauthorized_at_once() {
    let server = Server::start_with_token(TOKEN);
    let holder = server.client().lock("A").acquire().unwrap();
    for client in [
        Client::new(&server.url()),
        Client::new(&server.url()).with_token("wrong"),
        Client::new(&server.url()).with_token(format!("{TOKEN}x")),
    ] {
        // Health checks stay open, for load balancers.
        client.health().unwrap();
        let started = Instant::now();
        assert!(matches!(client.version(), Err(Error::Unauthorized)));
        assert!(matches!(client.new_peer(secs(5)), Err(Error::Unauthorized)));
        assert!(matches!(client.remainder("A"), Err(Error::Unauthorized)));
        assert!(matches!(client.list_peers(), Err(Error::Unauthorized)));
        let peer = holder.peer_id();
        assert!(matches!(client.release(peer), Err(Error::Unauthorized)));
        assert!(matches!(
            client.release_lock(peer, "A"),
            Err(Error::Unauthorized)
        ));
        assert!(matches!(
            client.heartbeat(peer, secs(5)),
            Err(Error::Unauthorized)
        ));
        assert!(matches!(
            client.lock("B").timeout(secs(5)).acquire(),
            Err(Error::Unauthorized)
        ));
        assert!(matches!(
            client.rate_limit("api", secs(1)),
            Err(Error::Unauthorized)
        ));
        // Not retried: a 401 does not heal by asking again.
        assert!(
            started.elapsed() < secs(5),
            "took {:?}: retried?",
            started.elapsed()
        );
    }
    // None of it touched the holder's lock.
    let client = server.client();
    assert_eq!(client.remainder("A").unwrap(), 0);
    assert!(client.is_acquired(holder.peer_id()).unwrap());
    assert_eq!(client.list_peers().unwrap().len(), 1);
}

#[test]
fn a_401_is_not_retried() {
    let fake = FakeServer::answering(401, "Unauthorized: no token");
    let client = fake.client().with_token(TOKEN);
    let error = client.new_peer(secs(1)).unwrap_err();
    assert!(matches!(error, Error::Unauthorized), "{error:?}");
    assert_eq!(fake.requests(), 1);
    assert!(error.to_string().contains("token"), "{error}");
}

#[test]
fn the_heartbeat_carries_the_token_and_restores_after_a_restart() {
    let mut server = Server::start_with_token(TOKEN);
    let client = server.client();
    let guard = client
        .lock("B")
        .count(2)
        .expires_in(ms(300))
        .acquire()
        .unwrap();
    // Several leases pass: only heartbeats with the token keep the lock.
    throughout(ms(1000), "the heartbeat keeps the lock", || {
        client.remainder("B").unwrap() == 1
    });
    server.restart();
    eventually(secs(15), "the heartbeat to restore the lock", || {
        client.remainder("B").unwrap() == 1
    });
    assert_eq!(client.list_peers().unwrap()[0].id, guard.peer_id());
    drop(guard);
    assert_eq!(client.remainder("B").unwrap(), 3);
    assert!(client.list_peers().unwrap().is_empty());
}

#[test]
fn a_server_without_a_token_ignores_one() {
    let server = Server::start();
    let client = Client::new(&server.url()).with_token("not needed");
    let guard = client.lock("A").acquire().unwrap();
    assert_eq!(client.remainder("A").unwrap(), 0);
    drop(guard);
}
