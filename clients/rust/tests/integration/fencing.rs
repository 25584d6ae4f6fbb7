//! Know your lock (issue 15): fencing tokens on guards, `LockLost` instead of a restore when the
//! server says the peer expired, restores that keep tokens, and holder names.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;

use throttle_client::{Client, Error, LockState, default_peer_name};

use crate::support::{Proxy, Server, eventually, join_within, ms, secs, someone_waits, throughout};

#[test]
fn a_guard_carries_its_fencing_token_and_a_new_grant_a_larger_one() {
    let server = Server::start();
    let client = server.client();
    let first = client.lock("A").acquire().unwrap();
    let token = first.fencing_token().expect("the server sends tokens");
    assert!(token < 1 << 53);
    let peer = client.peer(secs(60)).unwrap();
    let nested = peer.lock("C").acquire().unwrap();
    assert!(nested.fencing_token().unwrap() > token);
    assert_eq!(peer.fencing_token("C"), nested.fencing_token());
    assert_eq!(peer.fencing_token("A"), None);
    drop(first);
    let second = client.lock("A").acquire().unwrap();
    assert!(second.fencing_token().unwrap() > nested.fencing_token().unwrap());
    // The server's view agrees.
    let state = client.peer_state(second.peer_id()).unwrap();
    assert_eq!(state.fencing_tokens["A"], second.fencing_token().unwrap());
    assert!(!second.is_lost());
}

/// A guard granted while it waits (the answer of a long poll, not of the first request) carries
/// a token too, larger than the one of the holder it waited for.
#[test]
fn a_guard_granted_after_waiting_carries_a_larger_token() {
    let server = Server::start();
    let client = server.client();
    let holder = client.lock("A").acquire().unwrap();
    let before = holder.fencing_token().expect("the server sends tokens");
    let waiter = {
        let client = client.clone();
        thread::spawn(move || {
            let guard = client.lock("A").timeout(secs(60)).acquire().unwrap();
            guard.fencing_token()
        })
    };
    eventually(secs(10), "the waiter to queue", || someone_waits(&client));
    drop(holder);
    let token = join_within(waiter, secs(10), "the waiter to be granted");
    assert!(
        token.is_some_and(|token| token > before),
        "{token:?} after {before}"
    );
}

#[test]
fn the_low_level_acquire_answers_the_token_and_repeats_it() {
    let server = Server::start();
    let client = server.client();
    let peer = client.new_peer(secs(60)).unwrap();
    let granted = client.acquire_state(peer, "B", 2, None, None).unwrap();
    let LockState::Acquired {
        fencing_token: Some(token),
    } = granted
    else {
        panic!("{granted:?}");
    };
    // Idempotent repeat and shrink: the same token.
    assert_eq!(
        client.acquire_state(peer, "B", 2, None, None).unwrap(),
        granted
    );
    assert_eq!(
        client.acquire_state(peer, "B", 1, None, None).unwrap(),
        granted
    );
    let other = client.new_peer(secs(60)).unwrap();
    client.acquire(other, "A", 1, None, None).unwrap();
    let waiting = client.new_peer(secs(60)).unwrap();
    assert_eq!(
        client.acquire_state(waiting, "A", 1, None, None).unwrap(),
        LockState::Pending
    );
    // A restore that brings tokens back keeps them; a live peer with other locks conflicts.
    let acquired = BTreeMap::from([("E".to_owned(), 1)]);
    let tokens = BTreeMap::from([("E".to_owned(), token + 1000)]);
    client
        .restore_with_tokens(
            client.new_peer(secs(60)).unwrap(),
            &acquired,
            &tokens,
            secs(60),
        )
        .unwrap_err();
    let revenant = throttle_client::PeerId(4242);
    client
        .restore_with_tokens(revenant, &acquired, &tokens, secs(60))
        .unwrap();
    assert_eq!(
        client.peer_state(revenant).unwrap().fencing_tokens["E"],
        token + 1000
    );
}

#[test]
fn a_heartbeat_that_cannot_get_through_until_the_lease_ran_out_reports_lock_lost() {
    let server = Server::start();
    let direct = server.client();
    let proxy = Proxy::to(&server);
    let client = proxy.client().with_retry_budget(ms(0));
    let called = Arc::new(AtomicUsize::new(0));
    let count = called.clone();
    let guard = client
        .lock("A")
        .expires_in(secs(1))
        .on_lost(move |_| {
            count.fetch_add(1, Ordering::SeqCst);
        })
        .acquire()
        .unwrap();
    let peer = guard.peer_id();
    proxy.set_cut(true);
    // The server lets the lease run out and frees the lock for someone else.
    eventually(secs(10), "the lease to run out", || {
        direct.remainder("A").unwrap() == 1
    });
    let other = direct.lock("A").timeout(secs(10)).acquire().unwrap();
    proxy.set_cut(false);
    eventually(secs(10), "the lost lease to be noticed", || guard.is_lost());
    assert_eq!(called.load(Ordering::SeqCst), 1);
    // Not restored: for longer than a heartbeat interval, the other holder keeps the lock
    // alone and the lost peer stays gone.
    throughout(ms(700), "the lost peer is not restored", || {
        matches!(direct.peer_state(peer), Err(Error::LockLost))
            && direct.remainder("A").unwrap() == 0
    });
    assert!(matches!(guard.release(), Err(Error::LockLost)));
    drop(other);
}

#[test]
fn a_waiting_lock_whose_peer_expired_reports_lock_lost() {
    let server = Server::start();
    let direct = server.client();
    let holder = direct.lock("A").acquire().unwrap();
    let proxy = Proxy::to(&server);
    let client = proxy.client().with_retry_budget(secs(30));
    let peer = client.peer(secs(1)).unwrap();
    let id = peer.id();
    let waiting = thread::spawn(move || {
        let result = peer.lock("A").acquire();
        (result.map(drop), peer.is_lost())
    });
    eventually(secs(10), "the waiter to queue", || {
        !direct.is_acquired(id).unwrap()
    });
    proxy.set_cut(true);
    eventually(secs(10), "the waiter to expire", || {
        direct.list_peers().unwrap().len() == 1
    });
    proxy.set_cut(false);
    let (result, lost) = waiting.join().unwrap();
    assert!(matches!(result, Err(Error::LockLost)), "{result:?}");
    assert!(lost);
    drop(holder);
}

#[test]
fn a_server_restart_still_restores_and_keeps_the_token() {
    let mut server = Server::start();
    let client = server.client();
    let guard = client.lock("A").expires_in(ms(600)).acquire().unwrap();
    let token = guard.fencing_token().unwrap();
    server.restart();
    eventually(secs(10), "the heartbeat to restore the lock", || {
        client.remainder("A").is_ok_and(|left| left == 0)
    });
    let state = client.peer_state(guard.peer_id()).unwrap();
    assert_eq!(state.fencing_tokens["A"], token);
    assert_eq!(state.name.as_deref(), Some(default_peer_name().as_str()));
    assert!(!guard.is_lost());
    guard.release().unwrap();
}

#[test]
fn peers_carry_the_host_and_pid_or_the_name_given() {
    let server = Server::start();
    let client = server.client();
    let guard = client.lock("A").acquire().unwrap();
    let named = client.clone().with_peer_name("nightly-import");
    let other = named.lock("B").acquire().unwrap();
    let anonymous = client
        .clone()
        .with_peer_name("")
        .new_peer(secs(60))
        .unwrap();
    let peers = client.list_peers().unwrap();
    let name_of = |id| {
        peers
            .iter()
            .find(|p| p.id == id)
            .map(|p| p.name.clone())
            .unwrap()
    };
    assert_eq!(name_of(guard.peer_id()), Some(default_peer_name()));
    assert_eq!(name_of(other.peer_id()), Some("nightly-import".to_owned()));
    assert_eq!(name_of(anonymous), None);
    let bad = Client::new(&server.url()).with_peer_name("two\nlines");
    assert!(matches!(
        bad.new_peer(secs(1)),
        Err(Error::InvalidRequest { status: 400, .. })
    ));
}
