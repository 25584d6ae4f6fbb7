//! Connection handling of the real binary under a burst of keep-alive clients.
//!
//! Self-contained (std only) so that it pins down the tiny_http pool fix described in
//! `vendor/tiny_http/PATCHED.md` without depending on the other test helpers.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

struct Server {
    child: Child,
    address: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start() -> Server {
    let config =
        std::env::temp_dir().join(format!("throttle-connections-{}.toml", std::process::id()));
    std::fs::write(&config, "[semaphores]\nA = 1\n").unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_throttle"))
        .args(["--port", "0", "-c"])
        .arg(&config)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A thread reads stderr for the whole life of the server, so it never blocks on a full
    // pipe, and hands over the address; waiting for it is bounded.
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            if let Some((_, rest)) = line.split_once("Listening on http://") {
                let _ = sender.send(rest.trim().to_owned());
            }
        }
    });
    let address = receiver
        .recv_timeout(Duration::from_secs(10))
        .expect("the server logs its address within 10 s");
    Server { child, address }
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
    let server = start();
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
        // Generous: without the fix these never answer while the others stay connected.
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

/// Answers over 1 KiB leave in two writes; with Nagle's algorithm on, the second waited for the
/// client's delayed ACK, 40 ms per answer (patch 6 in `vendor/tiny_http/PATCHED.md`). Twenty
/// `/metrics` answers on one keep-alive connection took 800 ms or more then; now milliseconds.
#[test]
fn large_answers_are_not_delayed_by_nagle() {
    let server = start();
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
