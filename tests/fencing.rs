//! Know your lock (issue 15): fencing tokens on every grant (at once and after a long poll, kept
//! by repeats, shrinks and restores, larger after restarts with and without a state file),
//! `GET /peers/{id}`, the `Throttle-Peer-State: expired` header for peers whose lease ran out,
//! and holder names wherever peers are shown.

mod common;

use std::thread;
use std::time::{Duration, Instant};
use throttle_server::routes::MAX_NAME_BYTES;

use common::{PROMPTLY, Reply, Server, answered};
// The state file tests need signals, so they run on Unix only.
#[cfg(unix)]
use common::TempDir;

const CONFIG: &str = r#"
[semaphores]
A = 2
M = 1
"#;

/// The `Fencing-Token` of a granted acquire.
#[track_caller]
fn token(reply: &Reply) -> u64 {
    reply.expect(200, "");
    reply
        .header("Fencing-Token")
        .unwrap_or_else(|| panic!("no Fencing-Token in {:?}", reply.headers))
        .parse()
        .expect("the token is an integer")
}

/// Creates a peer with a holder name.
fn named_peer(server: &Server, name: &str) -> u64 {
    let body = serde_json::json!({"expires_in": "5m", "name": name}).to_string();
    let reply = server.post("/new_peer", &body);
    reply.expect(200, "");
    reply.json().as_u64().expect("a peer id")
}

/// Waits until the server no longer knows `peer` (its lease ran out).
#[track_caller]
fn wait_until_gone(server: &Server, peer: u64) {
    let deadline = Instant::now() + PROMPTLY;
    while server.get(&format!("/peers/{peer}/is_acquired")).status == 200 {
        assert!(Instant::now() < deadline, "peer {peer} did not expire");
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn every_grant_carries_a_larger_token_and_a_held_lock_keeps_its_own() {
    let server = Server::start(CONFIG);
    let (one, two, three) = (server.new_peer(), server.new_peer(), server.new_peer());
    let first = token(&server.acquire(one, "A", 2, ""));
    // The idempotent repeat reports the same token, and so does a shrink.
    assert_eq!(token(&server.acquire(one, "A", 2, "")), first);
    let waiting = server.acquire(two, "A", 2, "");
    waiting.expect(202, "");
    assert_eq!(waiting.header("Fencing-Token"), None);
    assert_eq!(token(&server.acquire(one, "A", 1, "")), first);
    // A long poll granted by a release gets a larger token in its 200.
    let long_poll = server.acquire_in_background(two, "A", 2, "?block_for=1m");
    server.wait_for_long_polls(1);
    server.release(one, "A").expect(200, "");
    let (granted, _) = answered(long_poll);
    let second = token(&granted);
    assert!(second > first, "{second} after {first}");
    let third = token(&server.acquire(three, "M", 1, ""));
    assert!(third > second);
    // A new lock for the same peer on the same semaphore: a new token.
    server.release(two, "A").expect(200, "");
    assert!(token(&server.acquire(two, "A", 1, "")) > third);
}

#[test]
fn tokens_start_from_the_wall_clock_without_a_state_file() {
    let micros = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_micros() as u64
    };
    let before = micros();
    let server = Server::start(CONFIG);
    let peer = server.new_peer();
    let first = token(&server.acquire(peer, "M", 1, ""));
    assert!(first >= before, "{first} < {before}");
    // Below 2^53, so JavaScript holds it exactly.
    assert!(first < 1 << 53);
    drop(server);

    // A restart without a state file starts at the clock again: above the last run's tokens.
    let server = Server::start(CONFIG);
    let peer = server.new_peer();
    assert!(token(&server.acquire(peer, "M", 1, "")) > first);
}

#[cfg(unix)]
#[test]
fn tokens_grow_across_a_sigterm_restart_with_a_state_file() {
    let dir = TempDir::new();
    let state = dir.path().join("state.json");
    let state = state.to_str().unwrap();
    let server = Server::start_with(CONFIG, &["--state-file", state], &[]);
    let holder = named_peer(&server, "holder-1");
    let held = token(&server.acquire(holder, "M", 1, ""));
    let other = server.new_peer();
    let last = token(&server.acquire(other, "A", 1, ""));
    let mut process = server.process;
    process.signal("TERM");
    assert_eq!(process.wait_exit(PROMPTLY).and_then(|s| s.code()), Some(0));
    let file: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("state.json")).unwrap()).unwrap();
    assert_eq!(file["version"], 2);
    assert!(file["next_fencing_token"].as_u64().unwrap() > last);

    let server = Server::start_with(CONFIG, &["--state-file", state], &[]);
    // The holder kept its lock, its token and its name.
    assert_eq!(token(&server.acquire(holder, "M", 1, "")), held);
    let peer = server.get(&format!("/peers/{holder}")).json();
    assert_eq!(peer["fencing_tokens"]["M"], held);
    assert_eq!(peer["name"], "holder-1");
    // New grants are larger than every grant of the previous run.
    let newcomer = server.new_peer();
    assert!(token(&server.acquire(newcomer, "A", 1, "")) > last);
}

#[cfg(unix)]
#[test]
fn tokens_grow_across_a_kill_9_with_a_state_file() {
    let dir = TempDir::new();
    let state = dir.path().join("state.json");
    let state = state.to_str().unwrap();
    let server = Server::start_with(CONFIG, &["--state-file", state, "--grace", "0s"], &[]);
    let peer = server.new_peer();
    let last = token(&server.acquire(peer, "A", 1, ""));
    let mut process = server.process;
    process.signal("KILL");
    process.wait_exit(PROMPTLY).expect("killed");
    let server = Server::start_with(CONFIG, &["--state-file", state, "--grace", "0s"], &[]);
    let peer = server.new_peer();
    assert!(token(&server.acquire(peer, "A", 1, "")) > last);
}

#[test]
fn restore_keeps_tokens_and_the_counter_moves_above_them() {
    let server = Server::start(CONFIG);
    let peer = server.new_peer();
    let granted = token(&server.acquire(peer, "M", 1, ""));
    let high = granted + 1_000_000;
    let body = format!(
        r#"{{"expires_in": "1m", "peer_id": 42, "acquired": {{"A": 1, "M": 1}},
            "fencing_tokens": {{"A": {high}}}, "name": "revenant"}}"#
    );
    server.post("/restore", &body).expect(200, "Ok");
    let restored = server.get("/peers/42").json();
    assert_eq!(restored["fencing_tokens"]["A"], high);
    // M came back without a token: it got a new one, above the restored token.
    assert!(restored["fencing_tokens"]["M"].as_u64().unwrap() > high);
    assert_eq!(restored["name"], "revenant");
    // The same restore again is idempotent; another token for A is a conflict.
    server.post("/restore", &body).expect(200, "Ok");
    let other = body.replace(&high.to_string(), "5");
    server
        .post("/restore", &other)
        .expect(409, "Restore conflict");
    let newcomer = server.new_peer();
    assert!(token(&server.acquire(newcomer, "A", 1, "")) > high);
    // Old clients send no tokens and keep working.
    let old = r#"{"expires_in": "1m", "peer_id": 43, "acquired": {"A": 0}}"#;
    server.post("/restore", old).expect(400, "Invalid count");
    let too_high = r#"{"expires_in": "1m", "peer_id": 44, "acquired": {"A": 1},
        "fencing_tokens": {"A": 9007199254740992}}"#;
    server
        .post("/restore", too_high)
        .expect(400, "Invalid fencing token");
}

#[test]
fn the_peer_route_answers_locks_tokens_lease_and_name() {
    let server = Server::start(CONFIG);
    let holder = named_peer(&server, "build-7:4242");
    let waiter = server.new_peer();
    let held = token(&server.acquire(holder, "M", 1, ""));
    server.acquire(waiter, "M", 1, "").expect(202, "");
    let reply = server.get(&format!("/peers/{holder}"));
    assert_eq!(reply.content_type, "application/json");
    let peer = reply.json();
    assert_eq!(peer["id"], holder);
    assert_eq!(peer["acquired"], serde_json::json!({"M": 1}));
    assert_eq!(peer["fencing_tokens"], serde_json::json!({"M": held}));
    assert_eq!(peer["pending"], serde_json::json!({}));
    assert_eq!(peer["name"], "build-7:4242");
    let left = peer["expires_in_ms"].as_u64().unwrap();
    assert!(left > 200_000 && left <= 300_000, "{left}");
    let waiting = server.get(&format!("/peers/{waiter}")).json();
    assert_eq!(waiting["pending"], serde_json::json!({"M": 1}));
    assert_eq!(waiting["name"], serde_json::Value::Null);
    // The listing shows the same objects.
    let listing = server.get("/peers/").json();
    let listed = listing
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == holder)
        .unwrap();
    let without_lease = |p: &serde_json::Value| {
        let mut p = p.clone();
        p.as_object_mut().unwrap().remove("expires_in_ms");
        p
    };
    assert_eq!(without_lease(listed), without_lease(&peer));
    // A peer that never existed: the usual answer, without the expired header.
    let unknown = server.get("/peers/12345");
    unknown.expect(400, "Unknown peer");
    assert_eq!(unknown.header("Throttle-Peer-State"), None);
}

#[test]
fn requests_for_an_expired_peer_say_so() {
    let server = Server::start(CONFIG);
    let peer = server.new_peer_for("300ms");
    token(&server.acquire(peer, "M", 1, ""));
    wait_until_gone(&server, peer);
    let requests = [
        server.put(&format!("/peers/{peer}"), r#"{"expires_in": "1m"}"#),
        server.acquire(peer, "M", 1, ""),
        server.acquire(peer, "M", 1, "?block_for=1s"),
        server.release(peer, "M"),
        server.get(&format!("/peers/{peer}/is_acquired")),
        server.get(&format!("/peers/{peer}")),
    ];
    for reply in &requests {
        // The body Throttle 0.5's clients match on, plus the header.
        reply.expect(400, "Unknown peer");
        assert_eq!(reply.text(), "Unknown peer");
        assert_eq!(reply.header("Throttle-Peer-State"), Some("expired"));
    }
    let counted = server
        .metric("throttle_expired_peer_requests_total")
        .unwrap();
    // The poll in `wait_until_gone` counted one more.
    assert!(counted >= requests.len() as f64, "{counted}");
    assert_eq!(
        server.metric("throttle_expired_peers_remembered"),
        Some(1.0)
    );
    // A peer that never existed gets no header.
    let never = server.put("/peers/77", r#"{"expires_in": "1m"}"#);
    never.expect(400, "Unknown peer");
    assert_eq!(never.header("Throttle-Peer-State"), None);
    // The client may still decide to restore it; then it is live, and once released, unknown.
    let body = format!(r#"{{"expires_in": "1m", "peer_id": {peer}, "acquired": {{}}}}"#);
    server.post("/restore", &body).expect(200, "Ok");
    assert!(server.is_acquired(peer));
    server.delete(&format!("/peers/{peer}")).expect(200, "");
    let released = server.get(&format!("/peers/{peer}/is_acquired"));
    released.expect(400, "Unknown peer");
    assert_eq!(released.header("Throttle-Peer-State"), None);
}

#[test]
fn a_long_poll_whose_peer_expires_meanwhile_says_so() {
    let server = Server::start(CONFIG);
    let holder = server.new_peer();
    token(&server.acquire(holder, "M", 1, ""));
    let waiter = server.new_peer_for("500ms");
    let long_poll = server.acquire_in_background(waiter, "M", 1, "?block_for=1m");
    let (reply, _) = answered(long_poll);
    reply.expect(400, "Unknown peer");
    assert_eq!(reply.header("Throttle-Peer-State"), Some("expired"));
}

#[test]
fn names_are_shown_wherever_peers_are_and_checked() {
    let server = Server::start(CONFIG);
    let hostile = "<script>alert(1)</script> & \"x\"";
    let peer = named_peer(&server, hostile);
    let held = token(&server.acquire(peer, "M", 1, ""));
    let status = server.get("/status.json").json();
    let row = &status["peers"][0];
    assert_eq!(row["name"], hostile);
    assert_eq!(row["acquired"][0]["fencing_token"], held);
    let page = server
        .client
        .clone()
        .with_header("Accept", "text/html")
        .get("/");
    let html = page.text();
    assert!(!html.contains(hostile));
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;x&quot;"));
    assert!(html.contains(&format!("M ×1 #{held}")));
    // Control characters and overlong names are refused; the state is unchanged.
    for name in [
        "line\nbreak",
        "tab\there",
        "bell\u{7}",
        &"x".repeat(MAX_NAME_BYTES + 1),
    ] {
        let body = serde_json::json!({"expires_in": "5m", "name": name}).to_string();
        server.post("/new_peer", &body).expect(400, "Invalid name");
        let restore = serde_json::json!({"expires_in": "5m", "peer_id": 9, "acquired": {},
            "name": name})
        .to_string();
        server
            .post("/restore", &restore)
            .expect(400, "Invalid name");
    }
    assert_eq!(server.get("/peers/").json().as_array().unwrap().len(), 1);
    // Unicode and the longest name allowed are fine.
    named_peer(&server, "Datenbank-Job 🚦");
    named_peer(&server, &"x".repeat(MAX_NAME_BYTES));
}

#[cfg(unix)]
#[test]
fn an_expired_peer_is_still_told_so_after_a_restart_with_a_state_file() {
    let dir = TempDir::new();
    let state = dir.path().join("state.json");
    let state = state.to_str().unwrap();
    let server = Server::start_with(CONFIG, &["--state-file", state], &[]);
    let peer = server.new_peer_for("200ms");
    wait_until_gone(&server, peer);
    let mut process = server.process;
    process.signal("TERM");
    assert_eq!(process.wait_exit(PROMPTLY).and_then(|s| s.code()), Some(0));
    let server = Server::start_with(CONFIG, &["--state-file", state], &[]);
    let reply = server.put(&format!("/peers/{peer}"), r#"{"expires_in": "1m"}"#);
    reply.expect(400, "Unknown peer");
    assert_eq!(reply.header("Throttle-Peer-State"), Some("expired"));
}
