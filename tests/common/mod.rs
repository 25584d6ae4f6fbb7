//! The helpers of the integration tests: the real `throttle` binary started by the harness
//! (`crates/harness`, which starts, watches and kills the processes) with the binary cargo built
//! for these tests, and an HTTP client that reports every answer, with the requests the tests
//! make again and again.
//!
//! A [`Server`] has answered `/health` before a test gets it, keeps the lines its process logs
//! for assertions, and is killed on drop together with its temporary directory. Nothing here
//! sleeps to synchronise: waits are polls or condition variables bounded by a deadline, so the
//! tests run in parallel and stay correct on a loaded machine.

// Every test file compiles this module and uses a different part of it.
#![allow(dead_code)]

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::Path;
use std::process::ExitStatus;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use throttle_harness::Launch;
pub use throttle_harness::{STARTUP, TempDir};

/// How long anything that should happen "at once" may take before a test fails. Far above what it
/// takes on an idle machine; the point of the tests is behaviour, measurements are benchmarks.
pub const PROMPTLY: Duration = Duration::from_secs(10);

/// The path of the binary under test, built by cargo for these tests.
pub const BINARY: &str = env!("CARGO_BIN_EXE_throttle");

/// A cluster of one (issue 25), one semaphore `M = 1`; its log in `data` beside the
/// configuration file. Its only member's address is never bound: a cluster of one has no links.
pub const CLUSTER_OF_ONE: &str = r#"
[semaphores]
M = 1

[cluster]
id = 1
members = ["127.0.0.1:1"]
data_dir = "data"
"#;

/// A running `throttle` process of [`BINARY`] (the harness's [`throttle_harness::Process`]: its
/// log lines, its directory, `signal`, `wait_exit`), killed on drop.
pub struct Process(pub throttle_harness::Process);

impl std::ops::Deref for Process {
    type Target = throttle_harness::Process;

    fn deref(&self) -> &throttle_harness::Process {
        &self.0
    }
}

impl std::ops::DerefMut for Process {
    fn deref_mut(&mut self) -> &mut throttle_harness::Process {
        &mut self.0
    }
}

impl Process {
    /// Writes `config` to `throttle.toml` in a fresh directory and starts the binary with
    /// `-c <that file>` followed by `args`. `THROTTLE_LOG` and `THROTTLE_TOKEN` are removed from
    /// the environment unless `env` sets them.
    pub fn spawn(config: &str, args: &[&str], env: &[(&str, &str)]) -> Process {
        let dir = TempDir::new();
        let path = dir.write("throttle.toml", config);
        let path = path.to_str().expect("temporary paths are UTF-8 here");
        let mut all_args = vec!["-c", path];
        all_args.extend_from_slice(args);
        Process::spawn_in(dir, &all_args, env)
    }

    /// Starts the binary with exactly `args`, in `dir` as its working directory.
    pub fn spawn_in(dir: TempDir, args: &[&str], env: &[(&str, &str)]) -> Process {
        Process(throttle_harness::Process::spawn(
            Path::new(BINARY),
            dir,
            args,
            env,
        ))
    }
}

/// An answer of the server.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub content_type: String,
    pub bytes: Vec<u8>,
    /// Every header of the answer, names in lower case.
    pub headers: Vec<(String, String)>,
}

impl Reply {
    /// The value of the answer's header `name` (any case), if it has one.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(field, _)| field.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.bytes)
            .unwrap_or_else(|e| panic!("answer {:?} is not JSON: {e}", self.text()))
    }

    /// Asserts the status and that the body starts with `prefix`.
    #[track_caller]
    pub fn expect(&self, status: u16, prefix: &str) -> &Reply {
        let text = self.text();
        assert!(
            self.status == status && text.starts_with(prefix),
            "expected {status} `{prefix}...`, got {} `{text}`",
            self.status
        );
        assert!(
            !text.trim_end().contains('\n'),
            "the reason is not one line: {text:?}"
        );
        self
    }
}

/// A client for one server: a blocking HTTP client that reports every status as an answer
/// (4xx and 5xx included, with their bodies) and waits long enough for any long poll of a test.
#[derive(Clone)]
pub struct Client {
    agent: ureq::Agent,
    base: String,
    /// Headers sent with every request, see [`Client::with_header`].
    headers: Vec<(String, String)>,
}

impl Client {
    pub fn new(addr: SocketAddr) -> Client {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(120)))
            .build()
            .into();
        Client {
            agent,
            base: format!("http://{addr}"),
            headers: Vec::new(),
        }
    }

    /// This client, sending the header `name: value` with every request from now on, e.g.
    /// `Authorization: Bearer <token>` for a server with access control.
    pub fn with_header(mut self, name: &str, value: &str) -> Client {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Sends a request; `body` `None` sends none. Panics on transport errors.
    pub fn request(&self, method: &str, path: &str, body: Option<&str>) -> Reply {
        self.try_request(method, path, body)
            .unwrap_or_else(|e| panic!("{method} {path} failed: {e}"))
    }

    pub fn try_request(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> Result<Reply, ureq::Error> {
        let url = format!("{}{path}", self.base);
        let response = match (method, body) {
            ("GET", _) => self.with_headers(self.agent.get(&url)).call(),
            ("DELETE", _) => self.with_headers(self.agent.delete(&url)).call(),
            ("PUT", Some(body)) => self.with_headers(self.agent.put(&url)).send(body),
            ("PUT", None) => self.with_headers(self.agent.put(&url)).send_empty(),
            ("POST", Some(body)) => self.with_headers(self.agent.post(&url)).send(body),
            ("POST", None) => self.with_headers(self.agent.post(&url)).send_empty(),
            _ => panic!("unsupported method {method}"),
        }?;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(name, value)| {
                let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
                (name.as_str().to_owned(), value)
            })
            .collect();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let bytes = response
            .into_body()
            .with_config()
            .limit(16 * 1024 * 1024)
            .read_to_vec()?;
        Ok(Reply {
            status,
            content_type,
            bytes,
            headers,
        })
    }

    /// Adds the headers of [`Client::with_header`] to a request.
    fn with_headers<B>(&self, mut request: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        for (name, value) in &self.headers {
            request = request.header(name, value);
        }
        request
    }

    pub fn get(&self, path: &str) -> Reply {
        self.request("GET", path, None)
    }

    pub fn put(&self, path: &str, body: &str) -> Reply {
        self.request("PUT", path, Some(body))
    }

    pub fn post(&self, path: &str, body: &str) -> Reply {
        self.request("POST", path, Some(body))
    }

    pub fn delete(&self, path: &str) -> Reply {
        self.request("DELETE", path, None)
    }
}

/// A started server, ready to serve (it answered `/health`). Killed on drop.
pub struct Server {
    /// The process, with its log lines and directory.
    pub process: throttle_harness::Process,
    pub addr: SocketAddr,
    pub client: Client,
}

impl std::ops::Deref for Server {
    type Target = Client;

    fn deref(&self) -> &Client {
        &self.client
    }
}

impl Server {
    /// Starts a server with `config` as its configuration file.
    pub fn start(config: &str) -> Server {
        Server::start_with(config, &[], &[])
    }

    /// Starts a server with extra command line arguments and environment variables.
    pub fn start_with(config: &str, args: &[&str], env: &[(&str, &str)]) -> Server {
        let launch = env.iter().fold(
            Launch::new().binary(BINARY).config(config).args(args),
            |launch, (name, value)| launch.env(name, value),
        );
        Server::from_harness(launch.start())
    }

    /// Waits until `process` logs its address and answers `/health`.
    pub fn ready(process: Process) -> Server {
        Server::from_harness(throttle_harness::Server::ready(process.0))
    }

    /// Kills the server (as in a crash) and starts it again with `config` and `args`, on the
    /// same port and in the same directory, so that files it wrote there are found again.
    pub fn kill_and_restart(self, config: &str, args: &[&str]) -> Server {
        let port = self.addr.port();
        let dir = self.process.kill_keeping_dir();
        Server::start_in(dir, port, config, args)
    }

    /// Starts a server with `config` and `args` in `dir` (one an earlier server worked in) on
    /// `port`.
    pub fn start_in(dir: TempDir, port: u16, config: &str, args: &[&str]) -> Server {
        let launch = Launch::new()
            .binary(BINARY)
            .config(config)
            .args(args)
            .port(port);
        Server::from_harness(launch.start_in(dir))
    }

    fn from_harness(server: throttle_harness::Server) -> Server {
        let throttle_harness::Server { process, addr, .. } = server;
        Server {
            process,
            addr,
            client: Client::new(addr),
        }
    }

    /// Creates a peer that lives for `expires_in` and returns its id.
    pub fn new_peer_for(&self, expires_in: &str) -> u64 {
        let reply = self.post("/new_peer", &format!(r#"{{"expires_in": "{expires_in}"}}"#));
        assert_eq!(reply.status, 200, "new_peer: {}", reply.text());
        reply
            .json()
            .as_u64()
            .unwrap_or_else(|| panic!("peer id {:?} is not an integer", reply.text()))
    }

    /// Creates a peer that lives for five minutes.
    pub fn new_peer(&self) -> u64 {
        self.new_peer_for("5m")
    }

    /// `PUT /peers/{peer}/{semaphore}{query}` with `count`; `semaphore` is percent-encoded here.
    pub fn acquire(&self, peer: u64, semaphore: &str, count: i64, query: &str) -> Reply {
        self.put(
            &format!("/peers/{peer}/{}{query}", encode(semaphore)),
            &count.to_string(),
        )
    }

    /// Like [`Server::acquire`], on another thread, returning the answer and how long it took.
    /// Each call opens its own connection, so many may start at once.
    pub fn acquire_in_background(
        &self,
        peer: u64,
        semaphore: &str,
        count: i64,
        query: &str,
    ) -> JoinHandle<(Reply, Duration)> {
        let client = self.client.clone();
        let path = format!("/peers/{peer}/{}{query}", encode(semaphore));
        thread::spawn(move || {
            let started = Instant::now();
            let reply = client.put(&path, &count.to_string());
            (reply, started.elapsed())
        })
    }

    pub fn release(&self, peer: u64, semaphore: &str) -> Reply {
        self.delete(&format!("/peers/{peer}/{}", encode(semaphore)))
    }

    pub fn remainder(&self, semaphore: &str) -> i64 {
        let reply = self.get(&format!("/remainder?semaphore={}", encode(semaphore)));
        assert_eq!(reply.status, 200, "remainder: {}", reply.text());
        reply.json().as_i64().expect("remainder is an integer")
    }

    pub fn is_acquired(&self, peer: u64) -> bool {
        let reply = self.get(&format!("/peers/{peer}/is_acquired"));
        assert_eq!(reply.status, 200, "is_acquired: {}", reply.text());
        reply.json().as_bool().expect("is_acquired is a boolean")
    }

    /// The `/metrics` text.
    pub fn metrics(&self) -> String {
        let reply = self.get("/metrics");
        assert_eq!(reply.status, 200);
        reply.text()
    }

    /// One sample of `/metrics`, e.g. `throttle_acquired{semaphore="A"}`; `None` if absent.
    pub fn metric(&self, sample: &str) -> Option<f64> {
        metric(&self.metrics(), sample)
    }

    /// Polls `/metrics` until `sample` has `value`, bounded by [`PROMPTLY`].
    #[track_caller]
    pub fn wait_for_metric(&self, sample: &str, value: f64) {
        let deadline = Instant::now() + PROMPTLY;
        loop {
            let current = self.metric(sample);
            if current == Some(value) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{sample} stayed at {current:?}, expected {value}"
            );
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// Waits until `n` requests wait in a long poll (the server's `throttle_long_polls` gauge).
    #[track_caller]
    pub fn wait_for_long_polls(&self, n: usize) {
        self.wait_for_metric("throttle_long_polls", n as f64);
    }

    /// What a client can see of the state: every peer with its locks (without the time left to
    /// live, which changes by itself), sorted by id. Bad requests must not change it.
    pub fn state(&self) -> serde_json::Value {
        let reply = self.get("/peers/");
        assert_eq!(reply.status, 200);
        let mut peers = reply.json().as_array().expect("a JSON list").clone();
        for peer in &mut peers {
            peer.as_object_mut()
                .expect("a peer is an object")
                .remove("expires_in_ms");
        }
        peers.sort_by_key(|peer| peer["id"].as_u64());
        serde_json::Value::Array(peers)
    }

    /// Asserts that the state is still `before` and that a normal lock cycle on `semaphore`
    /// (which must have room for one) still works, leaving the state as it was.
    #[track_caller]
    pub fn assert_unchanged_and_serving(&self, before: &serde_json::Value, semaphore: &str) {
        assert_eq!(
            &self.state(),
            before,
            "a rejected request changed the state"
        );
        let peer = self.new_peer();
        self.acquire(peer, semaphore, 1, "").expect(200, "");
        self.release(peer, semaphore).expect(200, "");
        self.delete(&format!("/peers/{peer}")).expect(200, "");
        assert_eq!(&self.state(), before);
    }

    /// Sends `bytes` on a fresh TCP connection, closes the sending half and returns what came
    /// back until the server closed the connection (bounded by [`PROMPTLY`]).
    pub fn raw(&self, bytes: &[u8]) -> RawAnswer {
        raw_exchange(self.addr, bytes)
    }
}

/// What came back on a raw TCP connection.
#[derive(Debug)]
pub struct RawAnswer {
    pub bytes: Vec<u8>,
    /// The server closed the connection (rather than the read timing out).
    pub closed: bool,
}

impl RawAnswer {
    /// The status code of the first response, if there is one.
    pub fn status(&self) -> Option<u16> {
        let text = String::from_utf8_lossy(&self.bytes);
        let line = text.lines().next()?;
        let mut parts = line.split_whitespace();
        parts.next().filter(|v| v.starts_with("HTTP/1."))?;
        parts.next()?.parse().ok()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }
}

pub fn raw_exchange(addr: SocketAddr, bytes: &[u8]) -> RawAnswer {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(PROMPTLY))
        .expect("set a read timeout");
    // The server may close the connection before taking everything; that is an answer too.
    let _ = stream.write_all(bytes);
    let _ = stream.shutdown(Shutdown::Write);
    let mut answer = Vec::new();
    let mut buffer = [0; 8192];
    let closed = loop {
        match stream.read(&mut buffer) {
            Ok(0) => break true,
            Ok(n) => answer.extend_from_slice(&buffer[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break true,
            Err(_) => break false,
        }
    };
    RawAnswer {
        bytes: answer,
        closed,
    }
}

/// Waits for `thread` to end and returns what it returned, failing the test with `what` once
/// `within` has passed: a test waiting for something that never happens fails with a reason
/// instead of hanging (a long poll would otherwise wait for its whole `block_for`). A panic of
/// the thread is passed on.
#[track_caller]
pub fn join_within<T>(thread: JoinHandle<T>, within: Duration, what: &str) -> T {
    let deadline = Instant::now() + within;
    while !thread.is_finished() {
        assert!(Instant::now() < deadline, "not within {within:?}: {what}");
        thread::sleep(Duration::from_millis(5));
    }
    thread
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// The answer of a long poll of [`Server::acquire_in_background`] that should come at once (the
/// test has granted it, withdrawn it or stopped the server), bounded by [`PROMPTLY`].
#[track_caller]
pub fn answered(poll: JoinHandle<(Reply, Duration)>) -> (Reply, Duration) {
    join_within(poll, PROMPTLY, "the long poll to be answered")
}

/// Percent-encodes `text` as one path segment or query value: every byte but the unreserved
/// ones of RFC 3986.
pub fn encode(text: &str) -> String {
    let mut encoded = String::new();
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            encoded.push(byte as char);
        } else {
            write!(encoded, "%{byte:02X}").unwrap();
        }
    }
    encoded
}

/// The value of one sample in a Prometheus text exposition, e.g. `throttle_num_404` or
/// `throttle_acquired{semaphore="A"}`.
pub fn metric(text: &str, sample: &str) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| line.strip_prefix(sample)?.strip_prefix(' '))
        .map(|value| value.trim().parse().expect("a sample value is a number"))
}

/// Runs the binary to its end with `args` in `dir`, returning exit status, stdout and stderr.
/// Fails the test if it is still running after [`STARTUP`] (it should not have started serving).
pub fn run_to_exit(
    args: &[&str],
    dir: &Path,
    env: &[(&str, &str)],
) -> (ExitStatus, String, String) {
    throttle_harness::run_to_exit(Path::new(BINARY), args, dir, env, STARTUP)
}

/// `count` distinct ports free a moment ago, for configurations that must name them before a
/// server starts (a cluster's `members`). All are held at once while they are chosen, so none
/// is chosen twice.
pub fn free_ports(count: usize) -> Vec<u16> {
    let listeners: Vec<std::net::TcpListener> = (0..count)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("a free port"))
        .collect();
    listeners
        .iter()
        .map(|listener| listener.local_addr().expect("bound").port())
        .collect()
}
