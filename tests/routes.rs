//! Every route of the SPEC's table against the real binary: status codes, bodies and content
//! types, and every error status with the first words clients match on.

mod common;

use common::{Client, Server, encode, metric};
use throttle_server::workers::BODY_LIMIT;

const CONFIG: &str = r#"
[semaphores]
A = 3
B = { max = 1, level = 1 }
C = 5
"with space" = 1
"a/b" = 2
"x&y" = 1
"ünïcødé 😀" = 1
"#;

#[test]
fn greeting_health_and_version() {
    let server = Server::start(CONFIG);
    let greeting = server.get("/");
    assert_eq!(greeting.status, 200);
    assert!(greeting.text().contains("Throttle"), "{}", greeting.text());
    // `GET /` answers by `Accept` (the greeting, or the status page for a browser).
    assert_eq!(greeting.header("Vary"), Some("Accept"));
    let page = Client::new(server.addr)
        .with_header("Accept", "text/html")
        .get("/");
    assert_eq!((page.status, page.header("Vary")), (200, Some("Accept")));
    assert_eq!(server.get("/health").header("Vary"), None);
    server.get("/health").expect(200, "Ok");
    assert_eq!(server.get("/health").text(), "Ok");
    let version = server.get("/version");
    assert_eq!(version.status, 200);
    assert!(
        version.text().contains(env!("CARGO_PKG_VERSION")),
        "{}",
        version.text()
    );
}

#[test]
fn favicon_is_an_icon() {
    let server = Server::start(CONFIG);
    let icon = server.get("/favicon.ico");
    assert_eq!(icon.status, 200);
    assert_eq!(icon.content_type, "image/x-icon");
    // Every .ico file starts with a reserved zero word and the type 1.
    assert!(
        icon.bytes.starts_with(&[0, 0, 1, 0]),
        "{:?}",
        &icon.bytes[..8]
    );
}

#[test]
fn metrics_report_the_contract_names_with_their_values() {
    let server = Server::start(CONFIG);
    let text = server.metrics();
    for name in [
        "throttle_acquired",
        "throttle_max",
        "throttle_pending",
        "throttle_longest_pending_sec",
        "throttle_num_404",
    ] {
        assert!(
            text.lines().any(|line| line.starts_with(name)),
            "{name} missing from:\n{text}"
        );
    }

    let holder = server.new_peer();
    let other = server.new_peer();
    let waiter = server.new_peer();
    server.acquire(holder, "A", 2, "").expect(200, "");
    server.acquire(other, "C", 4, "").expect(200, "");
    server.acquire(waiter, "A", 3, "").expect(202, "");
    let text = server.metrics();
    let value = |sample: &str| {
        metric(&text, sample).unwrap_or_else(|| panic!("{sample} missing from:\n{text}"))
    };
    assert_eq!(value(r#"throttle_acquired{semaphore="A"}"#), 2.0);
    assert_eq!(value(r#"throttle_acquired{semaphore="C"}"#), 4.0);
    assert_eq!(value(r#"throttle_acquired{semaphore="B"}"#), 0.0);
    assert_eq!(value(r#"throttle_max{semaphore="A"}"#), 3.0);
    assert_eq!(value(r#"throttle_max{semaphore="C"}"#), 5.0);
    assert_eq!(value(r#"throttle_pending{semaphore="A"}"#), 3.0);
    assert_eq!(value(r#"throttle_pending{semaphore="C"}"#), 0.0);
    assert!(value(r#"throttle_longest_pending_sec{semaphore="A"}"#) >= 0.0);
    assert_eq!(value(r#"throttle_longest_pending_sec{semaphore="C"}"#), 0.0);

    // Releasing the holder grants the waiter: the figures follow.
    server.release(holder, "A").expect(200, "");
    let text = server.metrics();
    assert_eq!(
        metric(&text, r#"throttle_acquired{semaphore="A"}"#),
        Some(3.0)
    );
    assert_eq!(
        metric(&text, r#"throttle_pending{semaphore="A"}"#),
        Some(0.0)
    );
}

#[test]
fn num_404_counts_requests_to_unknown_routes() {
    let server = Server::start(CONFIG);
    let before = server.metric("throttle_num_404").expect("throttle_num_404");
    server.get("/no/such/route").expect(404, "Not found");
    server.post("/health", "").expect(404, "Not found");
    assert_eq!(server.metric("throttle_num_404"), Some(before + 2.0));
}

#[test]
fn new_peer_ids_are_integers_javascript_can_hold() {
    let server = Server::start(CONFIG);
    let mut ids = std::collections::HashSet::new();
    for _ in 0..20 {
        let reply = server.post("/new_peer", r#"{"expires_in": "5m"}"#);
        assert_eq!(reply.status, 200);
        let id = reply.json().as_u64().expect("an unsigned JSON integer");
        assert!(id < 1 << 53, "{id} is not below 2^53");
        ids.insert(id);
    }
    assert_eq!(ids.len(), 20, "peer ids repeat");
}

#[test]
fn heartbeat_prolongs_a_known_peer_and_rejects_an_unknown_one() {
    let server = Server::start(CONFIG);
    let peer = server.new_peer_for("1m");
    server
        .put(&format!("/peers/{peer}"), r#"{"expires_in": "10m"}"#)
        .expect(200, "");
    let listed = server.get("/peers/").json();
    let expires_in_ms = listed[0]["expires_in_ms"].as_u64().unwrap();
    assert!(
        expires_in_ms > 60_000,
        "heartbeat did not prolong: {listed}"
    );

    server.delete(&format!("/peers/{peer}")).expect(200, "");
    server
        .put(&format!("/peers/{peer}"), r#"{"expires_in": "10m"}"#)
        .expect(400, "Unknown peer");
}

#[test]
fn removing_a_peer_releases_its_locks_and_is_fine_when_unknown() {
    let server = Server::start(CONFIG);
    let peer = server.new_peer();
    server.acquire(peer, "A", 2, "").expect(200, "");
    assert_eq!(server.remainder("A"), 1);
    server.delete(&format!("/peers/{peer}")).expect(200, "");
    assert_eq!(server.remainder("A"), 3);
    server.delete(&format!("/peers/{peer}")).expect(200, "");
    server.delete("/peers/12345").expect(200, "");
}

#[test]
fn acquire_answers_200_when_granted_and_202_when_pending() {
    let server = Server::start(CONFIG);
    let first = server.new_peer();
    let second = server.new_peer();
    server.acquire(first, "A", 2, "").expect(200, "");
    server.acquire(second, "A", 2, "").expect(202, "");
    assert!(server.is_acquired(first));
    assert!(!server.is_acquired(second));
    // Repeating the same request changes nothing.
    server.acquire(first, "A", 2, "").expect(200, "");
    server.acquire(second, "A", 2, "").expect(202, "");
    assert_eq!(server.remainder("A"), 1);
    // An empty body asks for a count of 1.
    let third = server.new_peer();
    server.put(&format!("/peers/{third}/C"), "").expect(200, "");
    assert_eq!(server.remainder("C"), 4);
}

#[test]
fn percent_encoded_names_with_space_slash_ampersand_and_unicode() {
    let server = Server::start(CONFIG);
    let names = ["with space", "a/b", "x&y", "ünïcødé 😀"];
    // One peer per name: all are on level 0, and a peer may take only one lock per level.
    let peers: Vec<u64> = names.iter().map(|_| server.new_peer()).collect();
    for (&name, &peer) in names.iter().zip(&peers) {
        server.acquire(peer, name, 1, "").expect(200, "");
        let expected = if name == "a/b" { 1 } else { 0 };
        assert_eq!(
            server
                .get(&format!("/remainder?semaphore={}", encode(name)))
                .json(),
            serde_json::json!(expected),
            "{name}"
        );
    }
    let state = server.state();
    for (&name, &peer) in names.iter().zip(&peers) {
        let listed = state.as_array().unwrap().iter().find(|p| p["id"] == peer);
        assert_eq!(listed.unwrap()["acquired"][name], 1, "{name}: {state}");
    }
    // A `/` the client did not encode still belongs to the name.
    server
        .delete(&format!("/peers/{}/a/b", peers[1]))
        .expect(200, "");
    assert_eq!(server.remainder("a/b"), 2);
    for (&name, &peer) in names.iter().zip(&peers) {
        server.release(peer, name).expect(200, "");
        assert_eq!(server.remainder(name), if name == "a/b" { 2 } else { 1 });
    }
    // `+` in a query means a space.
    assert_eq!(server.get("/remainder?semaphore=with+space").json(), 1);
}

#[test]
fn release_lock_frees_count_and_grants_waiters() {
    let server = Server::start(CONFIG);
    let holder = server.new_peer();
    let waiter = server.new_peer();
    server.acquire(holder, "B", 1, "").expect(200, "");
    server.acquire(waiter, "B", 1, "").expect(202, "");
    server.release(holder, "B").expect(200, "");
    assert!(server.is_acquired(waiter));
    assert_eq!(server.remainder("B"), 0);
    // Releasing a lock the peer does not hold is fine.
    server.release(holder, "B").expect(200, "");
    // Releasing a pending lock withdraws it.
    server.acquire(holder, "B", 1, "").expect(202, "");
    server.release(holder, "B").expect(200, "");
    assert!(server.is_acquired(holder));
    assert_eq!(server.state()[0]["pending"], serde_json::json!({}));
    // Unknown peer and unknown semaphore.
    server.release(12345, "B").expect(400, "Unknown peer");
    server
        .release(holder, "nope")
        .expect(400, "Unknown semaphore");
}

#[test]
fn is_acquired_is_false_only_while_a_lock_is_pending() {
    let server = Server::start(CONFIG);
    let holder = server.new_peer();
    let waiter = server.new_peer();
    assert!(server.is_acquired(waiter), "a peer without locks");
    server.acquire(holder, "B", 1, "").expect(200, "");
    server.acquire(waiter, "B", 1, "").expect(202, "");
    assert!(!server.is_acquired(waiter));
    server.release(holder, "B").expect(200, "");
    assert!(server.is_acquired(waiter));
    server
        .get("/peers/12345/is_acquired")
        .expect(400, "Unknown peer");
}

#[test]
fn peers_listing_shows_ids_locks_and_expiry() {
    let server = Server::start(CONFIG);
    assert_eq!(server.get("/peers/").json(), serde_json::json!([]));
    let holder = server.new_peer();
    let waiter = server.new_peer();
    // Level 1 first, then level 0: the lock hierarchy allows it.
    let token = |reply: &common::Reply| -> u64 {
        reply.expect(200, "");
        reply.header("Fencing-Token").unwrap().parse().unwrap()
    };
    let b = token(&server.acquire(holder, "B", 1, ""));
    let a = token(&server.acquire(holder, "A", 2, ""));
    server.acquire(waiter, "A", 3, "").expect(202, "");
    let reply = server.get("/peers/");
    assert_eq!(reply.status, 200);
    assert!(reply.content_type.starts_with("application/json"));
    let mut expected = vec![
        serde_json::json!({"id": holder, "acquired": {"A": 2, "B": 1}, "pending": {},
            "fencing_tokens": {"A": a, "B": b}, "name": null}),
        serde_json::json!({"id": waiter, "acquired": {}, "pending": {"A": 3},
            "fencing_tokens": {}, "name": null}),
    ];
    expected.sort_by_key(|peer| peer["id"].as_u64());
    assert_eq!(server.state(), serde_json::Value::Array(expected));
    for peer in reply.json().as_array().unwrap() {
        let ms = peer["expires_in_ms"].as_u64().expect("expires_in_ms");
        assert!(ms > 0 && ms <= 300_000, "{peer}");
    }
    // Without the trailing slash too.
    assert_eq!(server.get("/peers").status, 200);
}

#[test]
fn remainder_of_known_and_unknown_semaphores() {
    let server = Server::start(CONFIG);
    assert_eq!(server.remainder("A"), 3);
    server
        .get("/remainder?semaphore=nope")
        .expect(400, "Unknown semaphore");
    server.get("/remainder").expect(400, "Invalid request");
}

#[test]
fn restore_recreates_a_peer_and_may_overcommit() {
    let server = Server::start(CONFIG);
    let body = r#"{"expires_in":"5m","peer_id":42,"acquired":{"A":3,"B":1}}"#;
    server.post("/restore", body).expect(200, "");
    // Restored without tokens: each lock got a new one.
    let state = server.state();
    let tokens = &state[0]["fencing_tokens"];
    assert!(tokens["A"].as_u64().unwrap() != tokens["B"].as_u64().unwrap());
    assert_eq!(
        state,
        serde_json::json!([{"id": 42, "acquired": {"A": 3, "B": 1}, "pending": {},
            "fencing_tokens": tokens, "name": null}])
    );
    // Idempotent: the same restore again changes nothing.
    server.post("/restore", body).expect(200, "");
    assert_eq!(server.remainder("A"), 0);
    // A revenant is counted even if that overcommits the semaphore.
    server
        .post(
            "/restore",
            r#"{"expires_in":"5m","peer_id":43,"acquired":{"A":2},"pending":{}}"#,
        )
        .expect(200, "");
    assert_eq!(server.remainder("A"), -2);
    assert_eq!(server.get("/remainder?semaphore=A").json(), -2);
    // The restored peer is a normal peer: its lock can be released.
    server.release(43, "A").expect(200, "");
    assert_eq!(server.remainder("A"), 0);
}

#[test]
fn restore_that_would_change_an_existing_peer_conflicts() {
    let server = Server::start(CONFIG);
    let peer = server.new_peer();
    server.acquire(peer, "A", 1, "").expect(200, "");
    let before = server.state();
    server
        .post(
            "/restore",
            &format!(r#"{{"expires_in":"5m","peer_id":{peer},"acquired":{{"A":2}}}}"#),
        )
        .expect(409, "Restore conflict");
    server
        .post(
            "/restore",
            &format!(r#"{{"expires_in":"5m","peer_id":{peer},"acquired":{{}}}}"#),
        )
        .expect(409, "Restore conflict");
    assert_eq!(server.state(), before);
    server
        .post(
            "/restore",
            &format!(r#"{{"expires_in":"5m","peer_id":{peer},"acquired":{{"A":1}}}}"#),
        )
        .expect(200, "");
}

/// Every error status with the first words of its reason.
#[test]
fn every_error_status_and_reason() {
    let server = Server::start(CONFIG);
    let peer = server.new_peer();
    let other = server.new_peer();

    // 400
    server
        .acquire(12345, "A", 1, "")
        .expect(400, "Unknown peer");
    server
        .acquire(peer, "nope", 1, "")
        .expect(400, "Unknown semaphore");
    server
        .acquire(peer, "A", 0, "")
        .expect(400, "Invalid count");
    server
        .put(&format!("/peers/{peer}/A"), "{")
        .expect(400, "Invalid body");
    server
        .post("/new_peer", r#"{"expires_in": "soon"}"#)
        .expect(400, "Invalid duration");
    server
        .acquire(peer, "A", 1, "?block_for=forever")
        .expect(400, "Invalid duration");
    server
        .put("/peers/abc", r#"{"expires_in": "5m"}"#)
        .expect(400, "Invalid request");

    // 409
    server.acquire(peer, "A", 4, "").expect(
        409,
        "Count too large: the lock count 4 exceeds the semaphore's max of 3",
    );
    server.acquire(peer, "A", 1, "").expect(200, "");
    server
        .acquire(peer, "B", 1, "")
        .expect(409, "Lock hierarchy violation");
    server
        .acquire(peer, "A", 2, "")
        .expect(409, "Lock count change");
    server.acquire(other, "A", 3, "").expect(202, "");
    server
        .acquire(other, "C", 1, "")
        .expect(409, "Second pending lock");
    server
        .acquire(other, "A", 2, "")
        .expect(409, "Lock count change");
    server
        .post(
            "/restore",
            &format!(r#"{{"expires_in":"5m","peer_id":{peer},"acquired":{{"C":1}}}}"#),
        )
        .expect(409, "Restore conflict");
    server
        .post(
            "/restore",
            &format!(
                r#"{{"expires_in":"5m","peer_id":7,"acquired":{{"A":{}}}}}"#,
                i64::MAX
            ),
        )
        .expect(409, "Count overflow");

    // 404 and 413
    server.get("/nope").expect(404, "Not found");
    server.delete("/health").expect(404, "Not found");
    let big = format!("{}1", " ".repeat(BODY_LIMIT));
    server
        .put(&format!("/peers/{peer}/C"), &big)
        .expect(413, "Body too large");

    assert!(server.is_acquired(peer));
    assert!(!server.is_acquired(other));
}
