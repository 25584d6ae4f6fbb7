//! Crowds: many waiting long polls, many open connections, and connections that never finish
//! their request. The server must grant waiters in order without answering any early, keep
//! serving new clients beside thousands of idle or stalled connections, and answer a head that
//! stops arriving with 408 at the request timeout.
//!
//! Bounds are generous (a loaded two-core machine must pass); how fast it is belongs in
//! `scripts/bench`.

#![cfg(unix)] // raises the open-files limit with rustix, as the server does on Unix

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::{Client, PROMPTLY, Server, join_within};

const CONFIG: &str = r#"
[semaphores]
mutex = 1
"#;

/// Raises this process's open-files limit (the test opens thousands of sockets), as the server
/// does for itself at start.
fn allow_open_files(n: u64) {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current.is_some_and(|current| current < n) {
        let target = limit.maximum.map_or(n, |hard| hard.min(n));
        let _ = setrlimit(
            Resource::Nofile,
            Rlimit {
                current: Some(target),
                maximum: limit.maximum,
            },
        );
    }
    let now = getrlimit(Resource::Nofile).current;
    assert!(
        now.is_none_or(|current| current >= n),
        "this test needs {n} open files; the hard limit allows {now:?}"
    );
}

/// Sends one `GET /health` on `stream` and reads its answer; true if it was 200.
fn health(stream: &mut TcpStream) -> bool {
    let sent = stream.write_all(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n");
    let mut answer = Vec::new();
    let mut buffer = [0; 512];
    while sent.is_ok() && !answer.ends_with(b"Ok") {
        match stream.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => answer.extend_from_slice(&buffer[..n]),
        }
    }
    answer.starts_with(b"HTTP/1.1 200")
}

fn connect(server: &Server) -> TcpStream {
    let stream = TcpStream::connect(server.addr).expect("connect");
    stream.set_read_timeout(Some(PROMPTLY)).expect("timeout");
    stream
}

/// 300 long polls on a mutex, queued one after the other, are granted one after the other in
/// that order as each winner releases: none is answered early, none refused.
#[test]
fn three_hundred_waiting_long_polls_are_granted_in_order() {
    const WAITERS: usize = 300;
    let server = Server::start(CONFIG);
    let holder = server.new_peer();
    server.acquire(holder, "mutex", 1, "").expect(200, "");
    let peers: Vec<u64> = (0..WAITERS).map(|_| server.new_peer()).collect();
    // Queued in this order (a first request without block_for); the long polls repeat it.
    for &peer in &peers {
        server.acquire(peer, "mutex", 1, "").expect(202, "");
    }
    let order = Arc::new(Mutex::new(Vec::new()));
    let polls: Vec<_> = peers
        .iter()
        .enumerate()
        .map(|(i, &peer)| {
            let client = Client::new(server.addr);
            let order = order.clone();
            thread::spawn(move || {
                let reply = client.put(&format!("/peers/{peer}/mutex?block_for=120s"), "1");
                if reply.status == 200 {
                    order.lock().unwrap().push(i);
                    client
                        .delete(&format!("/peers/{peer}/mutex"))
                        .expect(200, "");
                }
                reply.status
            })
        })
        .collect();
    server.wait_for_long_polls(WAITERS);
    server.release(holder, "mutex").expect(200, "");
    // Each waiter is granted when the one before it releases: a lost wake-up stops the chain.
    let statuses: Vec<u16> = polls
        .into_iter()
        .map(|poll| join_within(poll, PROMPTLY, "the next waiter to be granted"))
        .collect();
    assert!(statuses.iter().all(|&s| s == 200), "{statuses:?}");
    assert_eq!(*order.lock().unwrap(), (0..WAITERS).collect::<Vec<_>>());
    assert_eq!(
        server.metric("throttle_long_polls_refused_total"),
        Some(0.0)
    );
}

/// 2,000 open keep-alive connections and 1,100 that sent one byte of a request: a new client
/// still gets a lock, and every keep-alive connection is still served.
#[test]
fn thousands_of_idle_and_stalled_connections_do_not_stop_a_new_client() {
    allow_open_files(8192);
    let server = Server::start(CONFIG);
    let mut idle: Vec<TcpStream> = (0..2000).map(|_| connect(&server)).collect();
    for stream in &mut idle {
        assert!(health(stream));
    }
    let stalled: Vec<TcpStream> = (0..1100)
        .map(|_| {
            let mut stream = connect(&server);
            stream.write_all(b"G").expect("send one byte");
            stream
        })
        .collect();
    let started = Instant::now();
    let peer = server.new_peer();
    server.acquire(peer, "mutex", 1, "").expect(200, "");
    server.release(peer, "mutex").expect(200, "");
    assert!(started.elapsed() < PROMPTLY, "took {:?}", started.elapsed());
    for stream in &mut idle {
        assert!(health(stream), "a keep-alive connection was dropped");
    }
    drop(stalled);
}

/// A head that stops arriving half way is answered 408 at `--request-timeout`, and closed.
#[test]
fn a_stalled_head_is_answered_408_at_the_request_timeout() {
    let server = Server::start_with(CONFIG, &["--request-timeout", "1s"], &[]);
    let mut stream = connect(&server);
    let sent = Instant::now();
    stream
        .write_all(b"PUT /peers/1/mutex HTTP/1.1\r\nHost: t\r\nContent-Le")
        .unwrap();
    let mut answer = Vec::new();
    let closed = loop {
        let mut buffer = [0; 512];
        match stream.read(&mut buffer) {
            Ok(0) => break true,
            Ok(n) => answer.extend_from_slice(&buffer[..n]),
            Err(e) => break e.kind() == std::io::ErrorKind::ConnectionReset,
        }
    };
    let after = sent.elapsed();
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text:?}");
    assert!(text.contains("Connection: close"), "{text:?}");
    assert!(closed, "still open: {text:?}");
    assert!(
        after >= Duration::from_millis(900),
        "answered after {after:?}"
    );
    assert!(after < PROMPTLY, "answered after {after:?}");
    // A body that stops arriving is cut off the same way.
    let mut stream = connect(&server);
    stream
        .write_all(b"PUT /peers/1/mutex HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\n1")
        .unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
}

/// `GET /peers/` writes peers in batches of 2,000 under the lock: a listing of 4,500 peers
/// spans three batches and is still one JSON list, complete and ordered by id.
#[test]
fn a_listing_across_batches_is_complete_and_ordered() {
    let server = Server::start(CONFIG);
    let mut ids: Vec<u64> = (0..4500).map(|_| server.new_peer()).collect();
    ids.sort_unstable();
    let listing = server.get("/peers/").json();
    let listed: Vec<u64> = listing
        .as_array()
        .expect("a JSON list")
        .iter()
        .map(|peer| peer["id"].as_u64().expect("an id"))
        .collect();
    assert_eq!(listed, ids);
}

/// A head that arrives a byte at a time is parsed again only when a line may have ended (the
/// loop skips bytes without a line feed), and is still answered once it is complete; so is a
/// second request that follows it the same way on the same connection.
#[test]
fn a_head_sent_byte_by_byte_is_answered() {
    let server = Server::start(CONFIG);
    let mut stream = connect(&server);
    stream.set_nodelay(true).expect("no delay");
    for _ in 0..2 {
        for byte in b"GET /health HTTP/1.1\r\nHost: t\r\nX-Pad: abcdef\r\n\r\n" {
            stream.write_all(&[*byte]).expect("send a byte");
            thread::sleep(Duration::from_millis(1));
        }
        let mut answer = Vec::new();
        let mut buffer = [0; 512];
        while !answer.ends_with(b"Ok") {
            match stream.read(&mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buffer[..n]),
            }
        }
        assert!(
            answer.starts_with(b"HTTP/1.1 200"),
            "{:?}",
            String::from_utf8_lossy(&answer)
        );
    }
}

/// Started from a shell whose open-files limit is low (hard and soft), the server says at start
/// how many connections it can take: the limit less the descriptors it keeps for itself.
#[test]
fn a_low_open_files_limit_is_fitted_and_said_at_start() {
    let dir = common::TempDir::new();
    let config = dir.write("throttle.toml", CONFIG);
    let config = config.to_string_lossy();
    // The harness starts the shell, which lowers the limit and becomes the server.
    let process = throttle_harness::Process::spawn(
        std::path::Path::new("sh"),
        dir,
        &[
            "-c",
            "ulimit -n 256 && exec \"$0\" --port 0 --address 127.0.0.1 -c \"$1\"",
            common::BINARY,
            &config,
        ],
        &[],
    );
    let server = throttle_harness::Server::ready(process);
    let said = server
        .lines()
        .all()
        .into_iter()
        .find(|line| line.contains("open-files limit"))
        .expect("no line about the open-files limit");
    assert!(
        said.contains("is 256") && said.contains("serving at most 192 connections"),
        "{said}"
    );
}
