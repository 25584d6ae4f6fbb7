//! Access control (README "Reliability and security"): with a token from `THROTTLE_TOKEN` or
//! `[auth] token`, every route but `/` (greeting or status page) and `/health` needs `Authorization: Bearer <token>` and
//! answers 401 with `WWW-Authenticate: Bearer` otherwise; a 401 changes nothing. Without a token
//! everything is open, as before.

mod common;

use common::{Client, Server};

const SEMAPHORES: &str = "[semaphores]\nA = { max = 1, level = 1 }\nB = 2\n";
const TOKEN: &str = "s3cret";

/// A server that needs `token`, configured through the environment (`from_env`) or the file;
/// its harness client sends the token, so the harness's helpers work.
fn server_with_token(token: &str, from_env: bool) -> Server {
    let mut server = if from_env {
        Server::start_with(SEMAPHORES, &[], &[("THROTTLE_TOKEN", token)])
    } else {
        Server::start(&format!("{SEMAPHORES}[auth]\ntoken = \"{token}\"\n"))
    };
    server.client =
        Client::new(server.addr).with_header("Authorization", &format!("Bearer {token}"));
    server
}

/// Every guarded route as `(method, path, body)`, touching `peer` (which holds `A`) and
/// semaphore `B` (free), and the status each answers when authorized.
fn guarded_routes(peer: u64) -> Vec<(&'static str, String, Option<&'static str>, u16)> {
    vec![
        ("GET", "/metrics".into(), None, 200),
        ("GET", "/version".into(), None, 200),
        ("GET", "/favicon.ico".into(), None, 200),
        ("GET", "/status.json".into(), None, 200),
        ("GET", "/peers/".into(), None, 200),
        ("GET", format!("/peers/{peer}/is_acquired"), None, 200),
        ("GET", "/remainder?semaphore=B".into(), None, 200),
        (
            "PUT",
            format!("/peers/{peer}"),
            Some(r#"{"expires_in": "5m"}"#),
            200,
        ),
        (
            "PUT",
            format!("/peers/{peer}/B?block_for=10ms"),
            Some("1"),
            200,
        ),
        ("DELETE", format!("/peers/{peer}/B"), None, 200),
        (
            "POST",
            "/restore".into(),
            Some(r#"{"expires_in": "5m", "peer_id": 4242, "acquired": {"B": 1}}"#),
            200,
        ),
        ("DELETE", "/peers/4242".into(), None, 200),
        (
            "POST",
            "/new_peer".into(),
            Some(r#"{"expires_in": "5m"}"#),
            200,
        ),
        // Last, as it removes the peer.
        ("DELETE", format!("/peers/{peer}"), None, 200),
    ]
}

/// `Authorization` values that must not pass for the token `s3cret`.
const WRONG: [&str; 7] = [
    "Bearer wrong",
    "Bearer s3cre",
    "Bearer s3crett",
    "Bearer ",
    "s3cret",
    "Basic czNjcmV0",
    "Token s3cret",
];

#[track_caller]
fn expect_401(reply: &common::Reply, what: &str) {
    assert_eq!(
        reply.status,
        401,
        "{what}: {} {}",
        reply.status,
        reply.text()
    );
    assert_eq!(reply.header("WWW-Authenticate"), Some("Bearer"), "{what}");
    reply.expect(401, "Unauthorized");
}

fn check_access_control(server: &Server) {
    let anonymous = Client::new(server.addr);
    // Open to all: the greeting and the health check (for load balancers and orchestrators).
    anonymous.get("/").expect(200, "Hello");
    anonymous.get("/health").expect(200, "Ok");
    // The status page's HTML (it asks for the token and sends it with `/status.json`).
    let browser = Client::new(server.addr).with_header("Accept", "text/html");
    let locked_page = browser.get("/");
    assert_eq!(locked_page.status, 200);
    assert_eq!(locked_page.header("Vary"), Some("Accept"));
    expect_401(&browser.get("/status.json"), "/status.json from a browser");
    for wrong in WRONG {
        let client = Client::new(server.addr).with_header("Authorization", wrong);
        client.get("/health").expect(200, "Ok");
    }

    let peer = server.new_peer();
    server.acquire(peer, "A", 1, "").expect(200, "");
    let before = server.state();
    let routes = guarded_routes(peer);
    // Without a token, or with a wrong one: 401 everywhere, and nothing changes.
    for (method, path, body, _) in &routes {
        let reply = anonymous.request(method, path, *body);
        expect_401(&reply, &format!("{method} {path} without a token"));
        for wrong in WRONG {
            let client = Client::new(server.addr).with_header("Authorization", wrong);
            let reply = client.request(method, path, *body);
            expect_401(&reply, &format!("{method} {path} with `{wrong}`"));
        }
    }
    assert_eq!(server.state(), before, "a 401 changed the state");
    assert_eq!(server.remainder("B"), 2);
    // With the token: every route works.
    for (method, path, body, status) in &routes {
        let reply = server.request(method, path, *body);
        assert_eq!(
            reply.status,
            *status,
            "{method} {path} with the token: {}",
            reply.text()
        );
    }
    let metrics = server.metrics();
    assert!(
        metrics.contains(r#"throttle_requests_total{route="new_peer",status="401"}"#),
        "401s are counted per route"
    );
}

#[test]
fn a_token_from_the_environment_guards_every_route_but_greeting_and_health() {
    check_access_control(&server_with_token(TOKEN, true));
}

#[test]
fn a_token_from_the_configuration_guards_every_route_but_greeting_and_health() {
    check_access_control(&server_with_token(TOKEN, false));
}

#[test]
fn a_long_poll_without_the_token_does_not_wait_or_queue() {
    let server = server_with_token(TOKEN, true);
    let holder = server.new_peer();
    server.acquire(holder, "A", 1, "").expect(200, "");
    let waiter = server.new_peer();
    let before = server.state();
    let anonymous = Client::new(server.addr);
    let started = std::time::Instant::now();
    let reply = anonymous.put(&format!("/peers/{waiter}/A?block_for=30s"), "1");
    expect_401(&reply, "a long poll");
    assert!(started.elapsed() < common::PROMPTLY, "it waited");
    assert_eq!(server.state(), before);
    assert_eq!(
        server.metric("throttle_pending{semaphore=\"A\"}"),
        Some(0.0)
    );
}

#[test]
fn without_a_token_everything_is_open() {
    let server = Server::start(SEMAPHORES);
    let peer = server.new_peer();
    server.acquire(peer, "A", 1, "").expect(200, "");
    for (method, path, body, status) in guarded_routes(peer) {
        let reply = server.request(method, &path, body);
        assert_eq!(reply.status, status, "{method} {path}: {}", reply.text());
        assert_eq!(reply.header("WWW-Authenticate"), None);
    }
    // An Authorization header nobody asked for is ignored.
    let client = Client::new(server.addr).with_header("Authorization", "Bearer whatever");
    client.get("/peers/").expect(200, "[");
    assert_eq!(client.get("/metrics").status, 200);
}

#[test]
fn the_environment_overrides_the_configuration() {
    let config = format!("{SEMAPHORES}[auth]\ntoken = \"from-file\"\n");
    let server = Server::start_with(&config, &[], &[("THROTTLE_TOKEN", "from-env")]);
    let with = |token: &str| {
        Client::new(server.addr).with_header("Authorization", &format!("Bearer {token}"))
    };
    with("from-env").get("/version").expect(200, "");
    expect_401(&with("from-file").get("/version"), "the file's token");
    // An empty THROTTLE_TOKEN is no token: the file's applies.
    let server = Server::start_with(&config, &[], &[("THROTTLE_TOKEN", "")]);
    let client = Client::new(server.addr).with_header("Authorization", "Bearer from-file");
    client.get("/version").expect(200, "");
    expect_401(&Client::new(server.addr).get("/version"), "no token");
}

#[test]
fn tokens_may_hold_any_printable_characters() {
    let token = "a-Long_token.with~chars/+=:@!$%";
    let server = server_with_token(token, true);
    server.get("/peers/").expect(200, "[");
    let almost = &token[..token.len() - 1];
    let client = Client::new(server.addr).with_header("Authorization", &format!("Bearer {almost}"));
    expect_401(&client.get("/peers/"), "a prefix of the token");
}

#[test]
fn the_scheme_is_case_insensitive_but_the_token_is_not() {
    let server = server_with_token(TOKEN, true);
    for scheme in ["bearer", "BEARER", "Bearer"] {
        let client =
            Client::new(server.addr).with_header("Authorization", &format!("{scheme} {TOKEN}"));
        assert_eq!(client.get("/version").status, 200, "scheme `{scheme}`");
    }
    let client = Client::new(server.addr).with_header("Authorization", "Bearer S3CRET");
    expect_401(&client.get("/version"), "a token in other case");
}
