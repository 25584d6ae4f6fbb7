//! Connection handling of the real binary under bursts of new clients: they connect without
//! waiting for a SYN retry, and are all served while they stay connected; large answers leave
//! without a Nagle delay.
//!
//! The server is started by the harness (`crates/harness`); the clients are raw sockets.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// A server started by the harness, with the address tests connect to.
struct Server {
    server: throttle_harness::Server,
    address: String,
}

fn start(args: &[&str]) -> Server {
    let server = throttle_harness::Launch::new()
        .binary(env!("CARGO_BIN_EXE_throttle"))
        .config("[semaphores]\nA = 1\n")
        .args(args)
        .start();
    let address = server.addr.to_string();
    Server { server, address }
}

/// Reads one HTTP response head and returns its status line.
fn read_status(stream: &mut TcpStream) -> std::io::Result<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte)?;
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    Ok(head.lines().next().unwrap_or_default().to_owned())
}

#[test]
fn a_burst_of_keep_alive_connections_is_served() {
    let server = start(&[]);
    // All clients connect at the same moment and stay connected, as pooled keep-alive clients
    // do when they reconnect together.
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(32));
    let connecting: Vec<_> = (0..32)
        .map(|_| {
            let (barrier, address) = (barrier.clone(), server.address.clone());
            std::thread::spawn(move || {
                barrier.wait();
                TcpStream::connect(address).unwrap()
            })
        })
        .collect();
    let mut streams: Vec<TcpStream> = connecting.into_iter().map(|t| t.join().unwrap()).collect();
    for stream in &mut streams {
        stream
            .write_all(b"GET /health HTTP/1.1\r\nHost: throttle\r\n\r\n")
            .unwrap();
    }
    let started = Instant::now();
    let mut answered = 0;
    for stream in &mut streams {
        // Generous: a connection is answered at once, whoever else stays connected.
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        if let Ok(status) = read_status(stream) {
            assert_eq!(status, "HTTP/1.1 200 OK");
            answered += 1;
        }
    }
    assert_eq!(answered, streams.len(), "after {:?}", started.elapsed());
}

/// Answers over 1 KiB leave in two writes; with Nagle's algorithm on, the second would wait
/// for the client's delayed ACK, 40 ms per answer (`TCP_NODELAY` is set on every connection):
/// twenty `/metrics` answers on one keep-alive connection would take 800 ms or more.
#[test]
fn large_answers_are_not_delayed_by_nagle() {
    let server = start(&[]);
    let mut stream = TcpStream::connect(&server.address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let started = Instant::now();
    for _ in 0..20 {
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: throttle\r\n\r\n")
            .unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            stream.read_exact(&mut byte).unwrap();
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|line| line.strip_prefix("content-length:"))
            .map(|value| value.trim().parse().unwrap())
            .expect("a Content-Length");
        assert!(length > 1024, "the answer must be large enough to matter");
        let mut body = vec![0u8; length];
        stream.read_exact(&mut body).unwrap();
    }
    let took = started.elapsed();
    // Generous against a loaded machine, far below the 800 ms Nagle cost.
    assert!(
        took < Duration::from_millis(400),
        "20 answers took {took:?}"
    );
}

/// Resumes a server stopped with SIGSTOP when dropped, also when the test fails.
#[cfg(target_os = "linux")]
struct Stopped<'a>(&'a throttle_harness::Process);

#[cfg(target_os = "linux")]
impl Stopped<'_> {
    fn stop(server: &Server) -> Stopped<'_> {
        server.server.process.signal("STOP");
        Stopped(&server.server.process)
    }
}

#[cfg(target_os = "linux")]
impl Drop for Stopped<'_> {
    fn drop(&mut self) {
        self.0.signal("CONT");
    }
}

/// The listen backlog is `--max-connections` (within the system's limit), so a burst of that
/// many new connections waits in the kernel's queue rather than for a SYN retry (a second).
/// The server is stopped meanwhile, so it accepts none of them: with the standard library's
/// backlog of 128, the 130th connect would not complete. Once it runs again, all are served.
#[cfg(target_os = "linux")]
#[test]
fn a_burst_of_max_connections_fits_the_listen_backlog() {
    const BURST: usize = 300;
    let somaxconn = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()
        .and_then(|text| text.trim().parse::<usize>().ok());
    if somaxconn.is_some_and(|max| max < BURST) {
        eprintln!("skipped: net.core.somaxconn is below {BURST}");
        return;
    }
    // A few connections to spare: the harness's own readiness check may still be open.
    let server = start(&["--max-connections", &(BURST + 10).to_string()]);
    let address: SocketAddr = server.address.parse().expect("an address");
    let stopped = Stopped::stop(&server);
    let mut streams: Vec<TcpStream> = (0..BURST)
        .map(|i| {
            TcpStream::connect_timeout(&address, Duration::from_millis(500))
                .unwrap_or_else(|e| panic!("connection {i} did not complete at once: {e}"))
        })
        .collect();
    drop(stopped);
    for stream in &mut streams {
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream
            .write_all(b"GET /health HTTP/1.1\r\nHost: throttle\r\n\r\n")
            .unwrap();
    }
    for stream in &mut streams {
        assert_eq!(read_status(stream).unwrap(), "HTTP/1.1 200 OK");
    }
}
