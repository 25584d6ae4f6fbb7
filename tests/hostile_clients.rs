//! Clients that misbehave on purpose (README "Reliability and security", the limits table): they
//! send nothing, send a byte at a time, send huge heads, never read their answers, open too
//! many connections or flood `new_peer`. Each is bounded by a documented limit, and meanwhile
//! everyone else is served.
//!
//! The limits are set small on the command line (`--idle-timeout 1s`, `--max-connections 4`,
//! ...) so the tests are quick; every wait is a poll or a socket read bounded by a deadline.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};
use throttle_server::workers::HEAD_LIMIT;

use common::{Client, PROMPTLY, Server};

const CONFIG: &str = "[semaphores]\nA = 1\n";

/// What a raw connection saw when reading until the server closed it or the read timed out.
#[derive(Debug)]
struct Ending {
    bytes: Vec<u8>,
    /// The server closed the connection (EOF or reset) rather than the read timing out.
    closed: bool,
    /// When that happened, measured from the `since` given to [`read_to_end`].
    after: Duration,
}

impl Ending {
    fn status(&self) -> Option<u16> {
        let text = String::from_utf8_lossy(&self.bytes);
        let line = text.lines().next()?;
        let mut parts = line.split_whitespace();
        parts.next().filter(|v| v.starts_with("HTTP/1."))?;
        parts.next()?.parse().ok()
    }
}

/// Reads `stream` until the server closes it, at most until `since + within`.
fn read_to_end(stream: &mut TcpStream, since: Instant, within: Duration) -> Ending {
    let deadline = since + within;
    let mut bytes = Vec::new();
    let mut buffer = [0; 8192];
    let closed = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break false;
        }
        stream.set_read_timeout(Some(left)).expect("set a timeout");
        match stream.read(&mut buffer) {
            Ok(0) => break true,
            Ok(n) => bytes.extend_from_slice(&buffer[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::BrokenPipe) => {
                break true;
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => panic!("reading failed: {e}"),
        }
    };
    Ending {
        bytes,
        closed,
        after: since.elapsed(),
    }
}

/// Asks for `/health` on a fresh connection (a fresh client, so no pooled connection is
/// reused) and asserts it is answered 200 within [`PROMPTLY`].
#[track_caller]
fn assert_served(addr: SocketAddr) {
    let started = Instant::now();
    Client::new(addr).get("/health").expect(200, "Ok");
    assert!(
        started.elapsed() < PROMPTLY,
        "/health took {:?}",
        started.elapsed()
    );
}

/// Sends `GET /health` on `stream` and reads one answer's status line; `None` if the server
/// closed the connection instead (or did not answer within `within`).
fn health_on(stream: &mut TcpStream, within: Duration) -> Option<u16> {
    let _ = stream.write_all(b"GET /health HTTP/1.1\r\nHost: throttle\r\n\r\n");
    stream
        .set_read_timeout(Some(within))
        .expect("set a timeout");
    let mut head = Vec::new();
    let mut byte = [0; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return None,
        }
    }
    // The body, `Ok`, so the connection is ready for the next request.
    let mut body = [0; 2];
    stream.read_exact(&mut body).ok()?;
    let text = String::from_utf8_lossy(&head);
    text.split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn a_connection_that_sends_nothing_is_closed_after_the_idle_timeout() {
    let server = Server::start_with(CONFIG, &["--idle-timeout", "1s", "--workers", "2"], &[]);
    let opened = Instant::now();
    let mut silent: Vec<TcpStream> = (0..8)
        .map(|_| TcpStream::connect(server.addr).expect("connect"))
        .collect();
    // Meanwhile everyone else is served, more silent connections than workers notwithstanding.
    for _ in 0..3 {
        assert_served(server.addr);
        let peer = server.new_peer();
        server.acquire(peer, "A", 1, "").expect(200, "");
        server.delete(&format!("/peers/{peer}")).expect(200, "");
    }
    for stream in &mut silent {
        let ending = read_to_end(stream, opened, PROMPTLY);
        assert!(ending.closed, "still open after {:?}", ending.after);
        // Closed silently: nobody asked for an answer.
        assert_eq!(
            ending.bytes,
            b"",
            "{:?}",
            String::from_utf8_lossy(&ending.bytes)
        );
        assert!(
            ending.after >= Duration::from_millis(900),
            "closed after {:?}, before the idle timeout",
            ending.after
        );
    }
    assert_served(server.addr);
}

#[test]
fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let server = Server::start_with(CONFIG, &["--idle-timeout", "1s"], &[]);
    let mut stream = TcpStream::connect(server.addr).expect("connect");
    assert_eq!(health_on(&mut stream, PROMPTLY), Some(200));
    let answered = Instant::now();
    let ending = read_to_end(&mut stream, answered, PROMPTLY);
    assert!(ending.closed && ending.bytes.is_empty(), "{ending:?}");
    assert!(ending.after >= Duration::from_millis(900), "{ending:?}");
}

/// Sends `head` one byte every `pace` on a thread until the server stops taking bytes or `stop`
/// is set.
fn trickle(mut stream: TcpStream, head: Vec<u8>, pace: Duration, stop: Arc<AtomicBool>) {
    thread::spawn(move || {
        for byte in head {
            if stop.load(Ordering::SeqCst) || stream.write_all(&[byte]).is_err() {
                return;
            }
            // Pacing the sender, not synchronising with the server.
            thread::sleep(pace);
        }
    });
}

/// README, limits: a request trickling in is answered 408 and closed at `--request-timeout`.
/// Heads sent a byte every 100 ms are cut off once `--request-timeout` has passed since their
/// first byte, not later (the readiness loop keeps a timer per connection,
/// `crates/http/src/reactor.rs`): 408, or closed if the answer is lost to the reset of a
/// connection the client still writes to. Other clients are served meanwhile.
#[test]
fn a_trickling_head_is_cut_off_at_the_request_timeout_and_others_are_served() {
    let server = Server::start_with(
        CONFIG,
        &["--request-timeout", "1s", "--idle-timeout", "5s"],
        &[],
    );
    // Longer than anything the server waits for: 400 bytes take 40 s at this pace.
    let mut head = b"GET /health HTTP/1.1\r\nHost: throttle\r\nX-Slow: ".to_vec();
    head.resize(400, b'a');
    let stop = Arc::new(AtomicBool::new(false));
    let mut streams = Vec::new();
    for _ in 0..4 {
        let stream = TcpStream::connect(server.addr).expect("connect");
        trickle(
            stream.try_clone().expect("clone"),
            head.clone(),
            Duration::from_millis(100),
            stop.clone(),
        );
        streams.push(stream);
    }
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(1500) {
        assert_served(server.addr);
    }
    for stream in &mut streams {
        let ending = read_to_end(stream, started, Duration::from_secs(20));
        let status = ending.status();
        assert!(
            ending.closed && (status == Some(408) || ending.bytes.is_empty()),
            "{ending:?}"
        );
        assert!(ending.after >= Duration::from_millis(900), "{ending:?}");
        assert!(
            ending.after < Duration::from_secs(4),
            "cut off after {:?} with --request-timeout 1s",
            ending.after
        );
    }
    stop.store(true, Ordering::SeqCst);
    assert_served(server.addr);
}

#[test]
fn a_head_over_80_kib_gets_431() {
    let server = Server::start(CONFIG);
    let before = server.state();
    // Many header lines of 1 KiB: 81 KiB in all, just over the limit, so that the server has
    // taken nearly everything when it answers and closes.
    let mut head = b"GET /health HTTP/1.1\r\nHost: throttle\r\n".to_vec();
    let line = format!("X-Filler: {}\r\n", "a".repeat(1024 - 12));
    for _ in 0..=HEAD_LIMIT / 1024 {
        head.extend_from_slice(line.as_bytes());
    }
    head.extend_from_slice(b"\r\n");
    assert!(head.len() > HEAD_LIMIT);
    let answer = server.raw(&head);
    assert_eq!(answer.status(), Some(431), "{:?}", answer.text());
    assert!(answer.closed);
    // One long line is refused the same way.
    let mut head = b"GET /health HTTP/1.1\r\nHost: throttle\r\nX-Big: ".to_vec();
    head.resize(HEAD_LIMIT + 100, b'b');
    head.extend_from_slice(b"\r\n\r\n");
    let answer = server.raw(&head);
    assert_eq!(answer.status(), Some(431), "{:?}", answer.text());
    server.assert_unchanged_and_serving(&before, "A");
    // A head just under the limit is fine.
    let mut head = b"GET /health HTTP/1.1\r\nHost: throttle\r\n".to_vec();
    for _ in 0..78 {
        head.extend_from_slice(line.as_bytes());
    }
    head.extend_from_slice(b"Connection: close\r\n\r\n");
    let answer = server.raw(&head);
    assert_eq!(answer.status(), Some(200), "{:?}", answer.text());
}

/// Whether `GET /health` on a fresh connection is answered 200 within `limit`. The request runs
/// on a thread of its own, so a server that never answers fails the check instead of hanging it.
fn served_within(addr: SocketAddr, limit: Duration) -> bool {
    let client = Client::new(addr);
    let request = thread::spawn(move || client.try_request("GET", "/health", None));
    let started = Instant::now();
    while !request.is_finished() && started.elapsed() < limit {
        thread::sleep(Duration::from_millis(10));
    }
    request.is_finished()
        && request
            .join()
            .is_ok_and(|reply| reply.is_ok_and(|reply| reply.status == 200))
}

/// A client that pipelines a few requests and never reads their answers (they fit in the
/// socket buffers) holds nothing that others need.
#[test]
fn a_client_that_never_reads_a_few_answers_does_not_stop_others() {
    let server = Server::start_with(CONFIG, &["--workers", "2", "--idle-timeout", "1s"], &[]);
    let mut never_reads: Vec<TcpStream> = (0..4)
        .map(|_| TcpStream::connect(server.addr).expect("connect"))
        .collect();
    for stream in &mut never_reads {
        let _ = stream.write_all(&b"GET /metrics HTTP/1.1\r\nHost: throttle\r\n\r\n".repeat(50));
    }
    for _ in 0..5 {
        assert!(served_within(server.addr, PROMPTLY), "/health not answered");
        let peer = server.new_peer();
        server.acquire(peer, "A", 1, "").expect(200, "");
        server.delete(&format!("/peers/{peer}")).expect(200, "");
    }
}

/// A client that pipelines many requests and never reads the answers fills its socket buffers,
/// so the server's writes to it block. README: one blocked write is bounded by
/// `--idle-timeout`, and clients that never read "must not hold workers" (issue 6).
///
/// A connection hands the workers one request at a time (`crates/http/src/handoff.rs`), and a
/// worker never writes to a socket that does not take the answer at once (the readiness loop
/// writes the rest), so this client holds no worker at all.
#[test]
fn a_client_that_never_reads_does_not_stop_others() {
    let server = Server::start_with(CONFIG, &["--workers", "4", "--idle-timeout", "1s"], &[]);
    let never_reads = client_that_never_reads(server.addr);
    assert_health_served_five_times(server.addr);
    drop(never_reads);
    assert_served(server.addr);
}

/// Connects and pipelines requests for about 70 MB of answers, far more than socket buffers
/// hold, without reading any.
fn client_that_never_reads(addr: SocketAddr) -> TcpStream {
    let mut never_reads = TcpStream::connect(addr).expect("connect");
    never_reads
        .set_write_timeout(Some(PROMPTLY))
        .expect("set a timeout");
    let request = b"GET /metrics HTTP/1.1\r\nHost: throttle\r\n\r\n";
    let _ = never_reads.write_all(&request.repeat(20_000));
    never_reads
}

fn assert_health_served_five_times(addr: SocketAddr) {
    for attempt in 0..5 {
        assert!(
            served_within(addr, PROMPTLY),
            "attempt {attempt}: /health not answered within {PROMPTLY:?}"
        );
    }
}

/// More clients that never read than workers may run at once (twice the CPUs): once their
/// answers fill the socket buffers (a worker that wrote to them blocking would hold it), the
/// pool must still serve others.
#[test]
fn clients_that_never_read_beyond_the_running_workers_do_not_stop_others() {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let hostile = 2 * cpus + 2;
    let workers = (hostile + 8).to_string();
    let server = Server::start_with(
        CONFIG,
        // Writes to them block for up to the idle timeout: far longer than PROMPTLY.
        &["--workers", &workers, "--idle-timeout", "60s"],
        &[],
    );
    let addr = server.addr;
    let writers: Vec<_> = (0..hostile)
        .map(|_| std::thread::spawn(move || client_that_never_reads(addr)))
        .collect();
    let hostile_connections: Vec<TcpStream> = writers
        .into_iter()
        .map(|writer| writer.join().expect("writer thread"))
        .collect();
    wait_until_answers_stall(&server, hostile);
    assert_health_served_five_times(server.addr);
    drop(hostile_connections);
    assert_served(server.addr);
}

/// Waits until the server has answered at least `at_least` of the `/metrics` requests that
/// clients which never read pipelined, and then stopped answering them: their answers fill the
/// socket buffers, which is the state the tests of such clients rely on. The scrapes made here
/// are answered `/metrics` requests too; each is counted before the next one is rendered, so
/// they are subtracted exactly.
#[track_caller]
fn wait_until_answers_stall(server: &Server, at_least: usize) {
    const ANSWERED: &str = r#"throttle_requests_total{route="metrics",status="200"}"#;
    // Unchanged over this many scrapes, 100 ms apart, counts as stalled.
    const STILL: usize = 3;
    let deadline = Instant::now() + PROMPTLY;
    let mut scrapes = 0.0;
    let mut last = None;
    let mut unchanged = 0;
    loop {
        let answered = server.metric(ANSWERED).unwrap_or(0.0) - scrapes;
        scrapes += 1.0;
        unchanged = if last == Some(answered) {
            unchanged + 1
        } else {
            0
        };
        if answered >= at_least as f64 && unchanged >= STILL {
            return;
        }
        last = Some(answered);
        assert!(
            Instant::now() < deadline,
            "answers to clients that never read did not stall within {PROMPTLY:?}: \
             {answered} answered, at least {at_least} expected"
        );
        thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn connections_beyond_the_limit_are_closed_until_one_closes() {
    let mut server = Server::start_with(
        CONFIG,
        &["--max-connections", "4", "--idle-timeout", "30s"],
        &[],
    );
    // The harness's client keeps a pooled connection from polling /health at start. Replacing
    // it closes that connection; the server may count it for a moment longer, so take the
    // four places by polling.
    let addr = server.addr;
    server.client = Client::new(addr);
    let mut open: Vec<TcpStream> = Vec::new();
    let deadline = Instant::now() + PROMPTLY;
    while open.len() < 4 {
        assert!(
            Instant::now() < deadline,
            "only {} connections served",
            open.len()
        );
        let mut stream = TcpStream::connect(addr).expect("connect");
        if health_on(&mut stream, PROMPTLY) == Some(200) {
            open.push(stream);
        }
    }
    // Four are open and served: a fifth is closed without an answer, however often it tries.
    for _ in 0..3 {
        let mut fifth = TcpStream::connect(addr).expect("the kernel completes the handshake");
        assert_eq!(health_on(&mut fifth, PROMPTLY), None);
    }
    // The four still work.
    for stream in &mut open {
        assert_eq!(health_on(stream, PROMPTLY), Some(200));
    }
    // One closes: new connections are served again, once the server noticed.
    drop(open.pop());
    let deadline = Instant::now() + PROMPTLY;
    loop {
        let mut stream = TcpStream::connect(addr).expect("connect");
        if health_on(&mut stream, PROMPTLY) == Some(200) {
            break;
        }
        assert!(Instant::now() < deadline, "no new connection served");
        thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn peers_beyond_the_limit_get_503_until_one_is_removed() {
    let server = Server::start_with(CONFIG, &["--max-peers", "3"], &[]);
    let peers: Vec<u64> = (0..3).map(|_| server.new_peer()).collect();
    server.acquire(peers[0], "A", 1, "").expect(200, "");
    let before = server.state();
    server
        .post("/new_peer", r#"{"expires_in": "5m"}"#)
        .expect(503, "Too many peers");
    // Restoring a peer the server does not know would add one too.
    server
        .post(
            "/restore",
            r#"{"expires_in": "5m", "peer_id": 12345, "acquired": {}}"#,
        )
        .expect(503, "Too many peers");
    // Restoring a peer it knows, with the same locks, adds none.
    server
        .post(
            "/restore",
            &format!(
                r#"{{"expires_in": "5m", "peer_id": {}, "acquired": {{"A": 1}}}}"#,
                peers[0]
            ),
        )
        .expect(200, "");
    assert_eq!(
        server.state(),
        before,
        "a refused request changed the state"
    );
    assert_eq!(server.metric("throttle_peers"), Some(3.0));
    // The peers there keep working.
    server.release(peers[0], "A").expect(200, "");
    server.acquire(peers[1], "A", 1, "").expect(200, "");
    server
        .delete(&format!("/peers/{}", peers[1]))
        .expect(200, "");
    // One place is free again.
    let fourth = server.new_peer();
    server
        .post("/new_peer", r#"{"expires_in": "5m"}"#)
        .expect(503, "Too many peers");
    server.delete(&format!("/peers/{fourth}")).expect(200, "");
    server
        .post(
            "/restore",
            r#"{"expires_in": "5m", "peer_id": 12345, "acquired": {}}"#,
        )
        .expect(200, "");
}

#[test]
fn a_flood_of_new_peers_stops_at_the_limit() {
    let server = Server::start_with(CONFIG, &["--max-peers", "1000"], &[]);
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let client = Client::new(server.addr);
            thread::spawn(move || {
                let (mut created, mut refused) = (0, 0);
                for _ in 0..250 {
                    let reply = client.post("/new_peer", r#"{"expires_in": "5m"}"#);
                    match reply.status {
                        200 => created += 1,
                        503 => {
                            reply.expect(503, "Too many peers");
                            refused += 1;
                        }
                        other => panic!("new_peer answered {other}: {}", reply.text()),
                    }
                }
                (created, refused)
            })
        })
        .collect();
    let (created, refused) = threads
        .into_iter()
        .map(|t| t.join().expect("a flooding thread"))
        .fold((0, 0), |(c, r), (tc, tr)| (c + tc, r + tr));
    assert_eq!((created, refused), (1000, 1000));
    assert_eq!(server.metric("throttle_peers"), Some(1000.0));
    let listed = server.get("/peers/").json();
    assert_eq!(listed.as_array().map(Vec::len), Some(1000));
    // Still serving: a peer of the flood takes and releases a lock.
    let peer = listed[0]["id"].as_u64().expect("an id");
    server.acquire(peer, "A", 1, "").expect(200, "");
    server.release(peer, "A").expect(200, "");
    assert_served(server.addr);
}

#[test]
fn a_chunked_body_gets_411() {
    let server = Server::start(CONFIG);
    let before = server.state();
    let answer = server.raw(
        b"POST /new_peer HTTP/1.1\r\nHost: throttle\r\nTransfer-Encoding: chunked\r\n\
          Content-Type: application/json\r\n\r\n\
          17\r\n{\"expires_in\": \"5m\"}   \r\n0\r\n\r\n",
    );
    assert_eq!(answer.status(), Some(411), "{:?}", answer.text());
    assert!(
        answer.text().contains("Length required"),
        "{:?}",
        answer.text()
    );
    server.assert_unchanged_and_serving(&before, "A");
}
