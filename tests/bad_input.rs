//! No input hurts the server: every bad request gets a 4xx with a one-line reason (or, for bytes
//! that are not HTTP, a closed connection), changes nothing, and is followed by a normal request
//! that succeeds.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};
use throttle_server::workers::BODY_LIMIT;

use common::{Client, PROMPTLY, Server, join_within};

const CONFIG: &str = r#"
[semaphores]
A = 3
B = 1
"#;

/// A server with some state to protect: a holder of `A` (count 2) and of `B`, and a waiter
/// pending on `B`. Returns the server, the holder, the waiter and the state.
fn server_with_state() -> (Server, u64, u64, serde_json::Value) {
    let server = Server::start(CONFIG);
    let holder = server.new_peer();
    let waiter = server.new_peer();
    server.acquire(holder, "A", 2, "").expect(200, "");
    let other = server.new_peer();
    server.acquire(other, "B", 1, "").expect(200, "");
    server.acquire(waiter, "B", 1, "").expect(202, "");
    let state = server.state();
    (server, holder, waiter, state)
}

/// Sends each `(method, path, body)` and expects `status` with a reason starting with `prefix`,
/// then checks that nothing changed and the server still serves.
#[track_caller]
fn check_all(requests: &[(&str, String, Option<String>)], status: u16, prefix: &str) {
    let (server, _, _, before) = server_with_state();
    for (method, path, body) in requests {
        let reply = server.request(method, path, body.as_deref());
        assert!(
            reply.status == status && reply.text().starts_with(prefix),
            "{method} {path} {body:?}: expected {status} `{prefix}...`, got {} `{}`",
            reply.status,
            reply.text()
        );
        assert!(!reply.text().trim_end().contains('\n'), "{}", reply.text());
        server.assert_unchanged_and_serving(&before, "A");
    }
}

fn put(path: impl Into<String>, body: &str) -> (&'static str, String, Option<String>) {
    ("PUT", path.into(), Some(body.to_owned()))
}

fn post(path: &str, body: impl Into<String>) -> (&'static str, String, Option<String>) {
    ("POST", path.to_owned(), Some(body.into()))
}

fn get(path: impl Into<String>) -> (&'static str, String, Option<String>) {
    ("GET", path.into(), None)
}

fn delete(path: impl Into<String>) -> (&'static str, String, Option<String>) {
    ("DELETE", path.into(), None)
}

#[test]
fn malformed_json_bodies() {
    // Peer 1 does not exist, but the body is checked first.
    let mut requests = Vec::new();
    for body in [
        "{",
        "not json",
        "[1, 2",
        "\u{0}",
        "{\"expires_in\": 5}",
        "{}",
        "",
    ] {
        requests.push(post("/new_peer", body));
        requests.push(put("/peers/1", body));
        requests.push(post("/restore", body));
    }
    requests.push(post("/restore", r#"{"expires_in":"5m","peer_id":"x"}"#));
    requests.push(post(
        "/restore",
        r#"{"expires_in":"5m","peer_id":1,"acquired":[1]}"#,
    ));
    check_all(&requests, 400, "Invalid body");
}

#[test]
fn non_integer_counts() {
    let requests: Vec<_> = [
        "1.5", "\"2\"", "true", "[1]", "null", "{}", "1e3", "{", "0x10", "-0.0", "0.0", "-0e0",
    ]
    .into_iter()
    .map(|body| put("/peers/1/A", body))
    .collect();
    check_all(&requests, 400, "Invalid body");
}

#[test]
fn counts_of_zero_and_below() {
    // The count is checked before the peer: peer 1 need not exist. JSON `-0` is the integer 0.
    let requests: Vec<_> = ["0", "-0", " -0\n", "-1", &i64::MIN.to_string()]
        .into_iter()
        .map(|body| put("/peers/1/B", body))
        .collect();
    check_all(&requests, 400, "Invalid count");
}

#[test]
fn counts_beyond_i64() {
    let requests: Vec<_> = [
        "9223372036854775808",
        "-9223372036854775809",
        "99999999999999999999999999999",
        "1e30",
    ]
    .into_iter()
    .map(|body| put("/peers/1/A", body))
    .collect();
    check_all(&requests, 400, "Invalid body");
}

#[test]
fn counts_greater_than_max_are_conflicts() {
    let (server, holder, _, before) = server_with_state();
    // A fresh peer has no lock of B, so the count alone is the problem.
    let peer = server.new_peer();
    for count in [2, i64::MAX] {
        server
            .acquire(peer, "B", count, "")
            .expect(409, "Count too large");
    }
    // Growing a held lock.
    server
        .acquire(holder, "A", 3, "")
        .expect(409, "Lock count change");
    server.delete(&format!("/peers/{peer}")).expect(200, "");
    server.assert_unchanged_and_serving(&before, "A");
}

/// Issue 20: 0.5's tests and users' code match on its sentence "Lock can never be acquired."
/// The first words are ours and stay (they are the contract).
#[test]
fn counts_greater_than_max_keep_the_sentence_of_0_5() {
    let (server, _, _, before) = server_with_state();
    let peer = server.new_peer();
    for count in [2, i64::MAX] {
        let reply = server.acquire(peer, "B", count, "");
        reply.expect(409, "Count too large");
        assert!(
            reply.text().contains("Lock can never be acquired."),
            "{}",
            reply.text()
        );
    }
    server.delete(&format!("/peers/{peer}")).expect(200, "");
    server.assert_unchanged_and_serving(&before, "A");
}

/// Issue 20: durations over a year that 0.5 accepts are accepted, as long as the clock can
/// represent them. 0.5's Rust client writes two years with humantime, which gives
/// `1year 11months 29days 21h 50m 24s` for 730 days.
/// The limit is a hundred years (`routes::MAX_DURATION`), which every platform's clock holds.
#[test]
fn durations_longer_than_a_year_that_0_5_accepts() {
    let server = Server::start(CONFIG);
    for duration in [
        "1year 11months",
        "1year 11months 29days 21h 50m 24s",
        "2years",
    ] {
        let body = serde_json::json!({ "expires_in": duration }).to_string();
        let reply = server.post("/new_peer", &body);
        reply.expect(200, "");
        let peer = reply.json().as_u64().expect("a peer id");
        server
            .put(&format!("/peers/{peer}"), &body)
            .expect(200, "Ok");
        let query = format!("?expires_in={}", common::encode(duration));
        server.acquire(peer, "A", 1, &query).expect(200, "Acquired");
        server.delete(&format!("/peers/{peer}")).expect(200, "");
        let restore =
            serde_json::json!({"expires_in": duration, "peer_id": 4242, "acquired": {"A": 1}});
        server
            .post("/restore", &restore.to_string())
            .expect(200, "");
        server.delete("/peers/4242").expect(200, "");
    }
}

#[test]
fn bad_durations() {
    let mut requests = Vec::new();
    for duration in [
        "soon",
        "",
        "-5s",
        "5",
        "1000000000 years",
        "101 years",
        "5 parsecs",
    ] {
        let body = serde_json::json!({ "expires_in": duration }).to_string();
        requests.push(post("/new_peer", body.clone()));
        requests.push(put("/peers/1", &body));
        let restore = serde_json::json!({"expires_in": duration, "peer_id": 1, "acquired": {}});
        requests.push(post("/restore", restore.to_string()));
        let query = common::encode(duration);
        requests.push(put(format!("/peers/1/A?block_for={query}"), "1"));
        requests.push(put(format!("/peers/1/A?expires_in={query}"), "1"));
    }
    check_all(&requests, 400, "Invalid duration");
}

#[test]
fn bad_durations_for_known_peers_change_nothing() {
    let (server, holder, waiter, before) = server_with_state();
    for query in [
        "?block_for=-1s",
        "?expires_in=1000000000%20years",
        "?block_for=x",
    ] {
        server
            .acquire(waiter, "B", 1, query)
            .expect(400, "Invalid duration");
        server
            .acquire(holder, "A", 2, query)
            .expect(400, "Invalid duration");
    }
    server
        .put(
            &format!("/peers/{holder}"),
            r#"{"expires_in": "1000000000 years"}"#,
        )
        .expect(400, "Invalid duration");
    server.assert_unchanged_and_serving(&before, "A");
}

#[test]
fn restore_counts_that_would_overflow_a_sum() {
    let (server, _, _, before) = server_with_state();
    // A already has 2 acquired: adding i64::MAX overflows.
    for body in [
        format!(
            r#"{{"expires_in":"5m","peer_id":7,"acquired":{{"A":{}}}}}"#,
            i64::MAX
        ),
        format!(
            r#"{{"expires_in":"5m","peer_id":7,"acquired":{{"A":{}}}}}"#,
            i64::MAX - 1
        ),
    ] {
        server.post("/restore", &body).expect(409, "Count overflow");
        server.assert_unchanged_and_serving(&before, "A");
    }
    // Two restores that overflow only together.
    let max_b = format!(
        r#"{{"expires_in":"5m","peer_id":8,"acquired":{{"B":{}}}}}"#,
        i64::MAX - 1
    );
    server.post("/restore", &max_b).expect(200, "");
    let after_first = server.state();
    server
        .post(
            "/restore",
            r#"{"expires_in":"5m","peer_id":9,"acquired":{"B":5}}"#,
        )
        .expect(409, "Count overflow");
    assert_eq!(server.state(), after_first);
    assert_eq!(server.remainder("B"), 1 - i64::MAX);
    server.assert_unchanged_and_serving(&after_first, "A");
}

/// Issue 20: 0.5 refuses a restore without `acquired` too; an empty restore is not what such a
/// client meant.
#[test]
fn restores_without_acquired_are_invalid() {
    check_all(
        &[
            post("/restore", r#"{"expires_in":"5m","peer_id":7}"#),
            post(
                "/restore",
                r#"{"expires_in":"5m","peer_id":7,"pending":{}}"#,
            ),
        ],
        400,
        "Invalid body",
    );
}

#[test]
fn restores_with_bad_parts_change_nothing() {
    let (server, _, _, before) = server_with_state();
    let cases = [
        (
            r#"{"expires_in":"5m","peer_id":7,"acquired":{"A":1,"nope":1}}"#,
            400,
            "Unknown semaphore",
        ),
        (
            r#"{"expires_in":"5m","peer_id":7,"acquired":{"A":1,"B":0}}"#,
            400,
            "Invalid count",
        ),
        (
            r#"{"expires_in":"5m","peer_id":7,"acquired":{"A":-3}}"#,
            400,
            "Invalid count",
        ),
        (
            r#"{"expires_in":"5m","peer_id":7,"acquired":{"A":-0}}"#,
            400,
            "Invalid count",
        ),
        (
            r#"{"expires_in":"5m","peer_id":7,"acquired":{"A":1.5}}"#,
            400,
            "Invalid body",
        ),
        (
            r#"{"expires_in":"5m","peer_id":7,"acquired":{"A":-0.0}}"#,
            400,
            "Invalid body",
        ),
        (
            r#"{"expires_in":"5m","peer_id":-7,"acquired":{}}"#,
            400,
            "Invalid body",
        ),
        (
            r#"{"expires_in":"5m","peer_id":1e400,"acquired":{}}"#,
            400,
            "Invalid body",
        ),
    ];
    for (body, status, prefix) in cases {
        server.post("/restore", body).expect(status, prefix);
        server.assert_unchanged_and_serving(&before, "A");
    }
}

#[test]
fn non_numeric_peer_ids() {
    let mut requests = Vec::new();
    for id in [
        "abc",
        "-1",
        "1.5",
        "99999999999999999999999",
        "0x10",
        "%20",
        "1%00",
    ] {
        requests.push(put(format!("/peers/{id}"), r#"{"expires_in": "5m"}"#));
        requests.push(delete(format!("/peers/{id}")));
        requests.push(put(format!("/peers/{id}/A"), "1"));
        requests.push(delete(format!("/peers/{id}/A")));
        requests.push(get(format!("/peers/{id}/is_acquired")));
    }
    check_all(&requests, 400, "Invalid request");
}

#[test]
fn unknown_peer_ids() {
    let mut requests = Vec::new();
    for id in [
        "0",
        "12345",
        &((1_u64 << 53) + 1).to_string(),
        &u64::MAX.to_string(),
    ] {
        requests.push(put(format!("/peers/{id}"), r#"{"expires_in": "5m"}"#));
        requests.push(put(format!("/peers/{id}/A"), "1"));
        requests.push(delete(format!("/peers/{id}/A")));
        requests.push(get(format!("/peers/{id}/is_acquired")));
    }
    check_all(&requests, 400, "Unknown peer");
}

#[test]
fn unknown_semaphores_and_routes() {
    let (server, holder, _, before) = server_with_state();
    for name in ["nope", "a", "A%20", "%41%20", "a%2F"] {
        server
            .put(&format!("/peers/{holder}/{name}"), "1")
            .expect(400, "Unknown semaphore");
        server
            .get(&format!("/remainder?semaphore={name}"))
            .expect(400, "Unknown semaphore");
        server.assert_unchanged_and_serving(&before, "A");
    }
    for (method, path) in [
        ("GET", "/nope"),
        ("POST", "/peers/1"),
        ("GET", "/peers/1/A"),
        ("POST", "/new_peer/1"),
        ("GET", "/new_peer"),
        ("PUT", "/restore"),
        ("GET", "//"),
    ] {
        server
            .request(method, path, Some(""))
            .expect(404, "Not found");
        server.assert_unchanged_and_serving(&before, "A");
    }
}

#[test]
fn bodies_larger_than_the_cap() {
    let big = " ".repeat(BODY_LIMIT) + "1";
    let big_json = format!(
        r#"{{"expires_in": "5m", "padding": "{}"}}"#,
        "x".repeat(70_000)
    );
    check_all(
        &[
            put("/peers/1/A", &big),
            post("/new_peer", big_json.clone()),
            post("/restore", big_json.clone()),
            put("/peers/1", &big_json),
        ],
        413,
        "Body too large",
    );
}

#[test]
fn bodies_larger_than_the_cap_without_content_length_or_sent_slowly() {
    let (server, holder, _, before) = server_with_state();
    // Chunked: the size is only known while reading, and a worker would read it at the
    // sender's pace, so chunked bodies are refused outright.
    let chunk = " ".repeat(70_000);
    let request = format!(
        "PUT /peers/{holder}/A HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\
         Connection: close\r\n\r\n{:x}\r\n{chunk}\r\n0\r\n\r\n",
        chunk.len()
    );
    let answer = server.raw(request.as_bytes());
    assert_eq!(answer.status(), Some(411), "{}", answer.text());
    assert!(
        answer.text().contains("Length required"),
        "{}",
        answer.text()
    );
    server.assert_unchanged_and_serving(&before, "A");
    // A huge announced length is refused without waiting for the body.
    let request = format!(
        "PUT /peers/{holder}/A HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000000\r\n\
         Connection: close\r\n\r\n1"
    );
    let answer = server.raw(request.as_bytes());
    assert_eq!(answer.status(), Some(413), "{}", answer.text());
    server.assert_unchanged_and_serving(&before, "A");
}

#[test]
fn a_very_long_path() {
    let (server, holder, _, before) = server_with_state();
    let long = "x".repeat(100 * 1024);
    for target in [
        format!("/peers/{holder}/{long}"),
        format!("/remainder?semaphore={long}"),
        format!("/{long}"),
        format!("/peers/{long}"),
    ] {
        let request = format!(
            "PUT {target} HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nConnection: close\r\n\r\n1"
        );
        let answer = server.raw(request.as_bytes());
        let status = answer.status();
        assert!(
            status.is_some_and(|s| (400..500).contains(&s)),
            "{}: {:?}",
            &target[..20],
            answer.text().lines().next()
        );
        server.assert_unchanged_and_serving(&before, "A");
    }
}

#[test]
fn invalid_utf8_in_the_path() {
    let (server, holder, waiter, before) = server_with_state();
    for name in ["%C3%28", "%FF", "%C3", "%", "%zz", "A%"] {
        server
            .put(&format!("/peers/{holder}/{name}"), "1")
            .expect(400, "Invalid request");
        server
            .delete(&format!("/peers/{waiter}/{name}"))
            .expect(400, "Invalid request");
        server
            .get(&format!("/remainder?semaphore={name}"))
            .expect(400, "Invalid request");
        server.assert_unchanged_and_serving(&before, "A");
    }
    // Raw bytes that are not UTF-8, straight on the socket.
    for target in [
        format!("/peers/{holder}/\u{0}").into_bytes(),
        [format!("/peers/{holder}/").as_bytes(), b"\xC3\x28"].concat(),
        [b"/remainder?semaphore=".as_slice(), b"\xFF\xFE"].concat(),
        b"/\xFF".to_vec(),
    ] {
        let request = [
            b"PUT ".as_slice(),
            &target,
            b" HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nConnection: close\r\n\r\n1",
        ]
        .concat();
        let answer = server.raw(&request);
        let status = answer.status();
        assert!(
            status.is_some_and(|s| (400..500).contains(&s)) || (status.is_none() && answer.closed),
            "{:?}: {}",
            String::from_utf8_lossy(&target),
            answer.text()
        );
        server.assert_unchanged_and_serving(&before, "A");
    }
}

#[test]
fn garbage_on_the_socket() {
    let (server, _, _, before) = server_with_state();
    let garbage: [&[u8]; 7] = [
        b"\x00\x01\x02\x03\xff\xfe\xfd\r\n\r\n",
        b"hello\r\n\r\n",
        b"GET\r\n\r\n",
        b"GET / HTTP/9.9\r\n\r\n",
        b"PUT /peers/1/A HTTP/1.1\r\nContent-Length: -5\r\n\r\n1",
        b"PUT /peers/1/A HTTP/1.1\r\nContent-Length: x\r\n\r\n1",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
    ];
    for bytes in garbage {
        let answer = server.raw(bytes);
        let status = answer.status();
        assert!(
            status.is_some_and(|s| (400..500).contains(&s)) || (status.is_none() && answer.closed),
            "{:?}: got {:?}",
            String::from_utf8_lossy(bytes),
            answer.text()
        );
        server.assert_unchanged_and_serving(&before, "A");
    }
    // A lot of random bytes.
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    let noise: Vec<u8> = (0..100_000)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as u8
        })
        .collect();
    let answer = server.raw(&noise);
    let status = answer.status();
    assert!(
        status.is_some_and(|s| (400..500).contains(&s)) || (status.is_none() && answer.closed),
        "{:?}",
        answer.text()
    );
    server.assert_unchanged_and_serving(&before, "A");
}

/// Connections that send nothing, or half a request, and stay open do not keep the server from
/// serving others, even when there are more of them than workers.
#[test]
fn silent_connections_do_not_block_others() {
    let server = Server::start_with(CONFIG, &["--workers", "2"], &[]);
    let before = server.state();
    let silent: Vec<TcpStream> = (0..8)
        .map(|_| TcpStream::connect(server.addr).expect("connect"))
        .collect();
    let mut half: Vec<TcpStream> = (0..8)
        .map(|_| TcpStream::connect(server.addr).expect("connect"))
        .collect();
    for stream in &mut half {
        stream
            .write_all(b"GET /heal")
            .expect("send half a request line");
    }
    for _ in 0..5 {
        let started = Instant::now();
        server.assert_unchanged_and_serving(&before, "A");
        server.get("/health").expect(200, "Ok");
        assert!(started.elapsed() < PROMPTLY, "took {:?}", started.elapsed());
    }
    drop(silent);
    drop(half);
    server.get("/health").expect(200, "Ok");
}

#[test]
fn a_burst_of_new_connections_is_served() {
    let server = Server::start("[semaphores]\nA = 1\n");
    let clients: Vec<Client> = (0..20).map(|_| Client::new(server.addr)).collect();
    let started = Instant::now();
    let threads: Vec<_> = clients
        .iter()
        .cloned()
        .map(|client| std::thread::spawn(move || (client.get("/health").status, client)))
        .collect();
    let answers: Vec<_> = threads
        .into_iter()
        .map(|thread| join_within(thread, PROMPTLY, "/health to be answered"))
        .collect();
    assert!(answers.iter().all(|(status, _)| *status == 200));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn stalled_bodies_do_not_block_others() {
    let server = Server::start_with("[semaphores]\nA = 1\n", &["--workers", "2"], &[]);
    let _stalled: Vec<TcpStream> = (0..2)
        .map(|_| {
            let mut stream = TcpStream::connect(server.addr).unwrap();
            stream
                .write_all(b"PUT /peers/1/A HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n1")
                .unwrap();
            stream
        })
        .collect();
    let client = Client::new(server.addr);
    let health = std::thread::spawn(move || client.get("/health").status);
    let status = join_within(health, PROMPTLY, "/health to be answered");
    assert_eq!(status, 200);
}
