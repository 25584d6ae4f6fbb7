//! A client of several members against fakes: which member it asks, when it moves on, and the
//! error that names every member tried. The real cluster's failovers are in `cluster.rs`.

use std::time::Instant;

use throttle_client::{Client, Error};

use crate::support::{FakeServer, member_reasons, ms, refusing_url, secs};

#[test]
fn several_members_are_taken_from_a_list_or_commas() {
    let client = Client::new(" http://a:1/, http://b:2 ,,http://c:3");
    let members: Vec<&str> = client.members().collect();
    assert_eq!(members, ["http://a:1", "http://b:2", "http://c:3"]);
    assert_eq!(client.base_url(), "http://a:1");
    let listed = Client::for_members(["http://a:1", "http://b:2"]);
    assert_eq!(listed.members().len(), 2);
    // One URL is one server, as it always was.
    let one = Client::new("http://a:1/");
    assert_eq!(one.members().collect::<Vec<_>>(), ["http://a:1"]);
    assert_eq!(one.base_url(), "http://a:1");
}

#[test]
fn a_refusing_member_is_skipped_and_the_one_that_answered_is_kept() {
    let dead = refusing_url();
    let live = FakeServer::answering(200, "3");
    let client = Client::for_members([dead.as_str(), &live.url()]).with_retry_budget(ms(0));
    assert_eq!(client.remainder("A").unwrap(), 3);
    assert_eq!(client.base_url(), live.url());
    // Clones share the member in use: the next request goes to the live member directly.
    assert_eq!(client.clone().remainder("A").unwrap(), 3);
    assert_eq!(live.requests(), 2);
}

#[test]
fn a_member_without_a_quorum_is_skipped() {
    let cut_off = FakeServer::answering(503, "No quorum: no leader elected within 3s");
    let live = FakeServer::answering(200, "1");
    let client = Client::for_members([cut_off.url(), live.url()]);
    assert_eq!(client.remainder("A").unwrap(), 1);
    assert_eq!((cut_off.requests(), live.requests()), (1, 1));
}

#[test]
fn rejections_are_not_asked_of_the_next_member() {
    let first = FakeServer::answering(400, "Unknown semaphore");
    let second = FakeServer::answering(200, "1");
    let client = Client::for_members([first.url(), second.url()]);
    assert!(matches!(
        client.remainder("A"),
        Err(Error::UnknownSemaphore)
    ));
    assert_eq!((first.requests(), second.requests()), (1, 0));
}

#[test]
fn when_no_member_answers_the_error_names_each_and_why() {
    let dead = refusing_url();
    let cut_off = FakeServer::answering(503, "No quorum: no leader elected within 3s");
    let client = Client::new(&format!("{dead},{}", cut_off.url())).with_retry_budget(ms(300));
    let started = Instant::now();
    let error = client.remainder("A").unwrap_err();
    let Error::Transport(unreachable) = &error else {
        panic!("not the crate's transport error: {error:?}");
    };
    let attempts = member_reasons(unreachable);
    let no_quorum = "no quorum (no leader elected within 3s)";
    assert_eq!(
        attempts,
        [
            (dead.as_str(), "connection refused"),
            (cut_off.url().as_str(), no_quorum)
        ]
    );
    assert_eq!(unreachable.retried_for(), Some(ms(300)));
    assert_eq!(
        error.to_string(),
        format!(
            "no member reachable within 300ms ({dead}: connection refused, {}: {no_quorum})",
            cut_off.url()
        )
    );
    // Rounds of both members with pauses between them, until the budget was spent.
    assert!(cut_off.requests() >= 2, "{} rounds", cut_off.requests());
    assert!(started.elapsed() < secs(5), "{:?}", started.elapsed());
}

#[test]
fn no_quorum_from_the_only_server_is_the_crates_transport_error_not_a_server_error() {
    let cut_off = FakeServer::answering(503, "No quorum: the member is stopping");
    let error = cut_off
        .client()
        .with_retry_budget(ms(200))
        .new_peer(secs(1))
        .unwrap_err();
    let Error::Transport(unreachable) = &error else {
        panic!("not the crate's transport error: {error:?}");
    };
    assert_eq!(unreachable.reason(), "no quorum (the member is stopping)");
    assert_eq!(
        error.to_string(),
        format!(
            "server {} unreachable within 200ms: no quorum (the member is stopping)",
            cut_off.url()
        )
    );
    assert!(cut_off.requests() >= 2, "retried: {}", cut_off.requests());
}

#[test]
fn with_no_retry_budget_each_member_is_still_asked_once() {
    let first = FakeServer::answering(503, "No quorum: no leader elected within 3s");
    let second = FakeServer::answering(503, "No quorum: no leader elected within 3s");
    let client = Client::for_members([first.url(), second.url()]).with_retry_budget(ms(0));
    let error = client.health().unwrap_err();
    assert!(matches!(error, Error::Transport(_)), "{error:?}");
    assert_eq!((first.requests(), second.requests()), (1, 1));
}
