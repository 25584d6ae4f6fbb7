//! Test support: the real `throttle` server on a free port (started by the harness,
//! `crates/harness`, which builds the binary fresh unless `THROTTLE_BIN` names one), and a fake
//! server for failures the real server does not produce on demand.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use throttle_client::Client;
use throttle_harness::Launch;

/// The semaphores every test server has. Names with `/`, spaces, `&`, `+`, `%` and non-ASCII
/// characters check the percent-encoding.
pub const CONFIG: &str = r#"
[semaphores]
A = 1
B = 3
E = 1
Z = 0
C = { max = 1, level = 1 }
api = 3
"a/b c" = 2
"Grüße/ünï cöde" = 1
"x&y=z+1%?#" = 1
"#;

/// A `throttle` process listening on a port of its own, killed when dropped.
pub struct Server {
    server: throttle_harness::Server,
    /// The token the server needs, if any; [`Server::client`] sends it.
    token: Option<String>,
}

impl Server {
    /// Starts a server with [`CONFIG`].
    pub fn start() -> Server {
        Server::start_with(&[])
    }

    /// Starts a server with [`CONFIG`] and extra command line arguments.
    pub fn start_with(args: &[&str]) -> Server {
        Server::start_with_env(args, &[])
    }

    /// Starts a server that needs `token` (given to it as `THROTTLE_TOKEN`); its
    /// [`Server::client`] sends the token.
    pub fn start_with_token(token: &str) -> Server {
        let mut server = Server::start_with_env(&[], &[("THROTTLE_TOKEN", token)]);
        server.token = Some(token.to_owned());
        server
    }

    /// Starts a server with [`CONFIG`], extra command line arguments and environment variables.
    /// The server gets no `THROTTLE_TOKEN` from the tests' environment, only from `env`.
    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Server {
        let launch = env.iter().fold(
            Launch::new()
                .config(CONFIG)
                .args(args)
                .env("THROTTLE_LOG", "INFO"),
            |launch, (name, value)| launch.env(name, value),
        );
        Server {
            server: launch.start(),
            token: None,
        }
    }

    /// The server's URL.
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// The server's port.
    pub fn port(&self) -> u16 {
        self.server.addr.port()
    }

    /// A client of this server, with the server's token if it needs one.
    pub fn client(&self) -> Client {
        let client = Client::new(&self.url());
        match &self.token {
            Some(token) => client.with_token(token.as_str()),
            None => client,
        }
    }

    /// Kills the server (no graceful shutdown: all state is lost) and starts a new one on the
    /// same port, as after a crash.
    pub fn restart(&mut self) {
        self.server.restart();
    }
}

/// A server that answers every request with the same status, headers and body, counts the
/// requests and keeps their heads.
pub struct FakeServer {
    port: u16,
    requests: Arc<AtomicUsize>,
    heads: Arc<Mutex<Vec<String>>>,
}

impl FakeServer {
    pub fn answering(status: u16, body: &'static str) -> FakeServer {
        FakeServer::answering_with(status, Vec::new(), body)
    }

    /// Answers with the header lines `headers` (name, value) besides the framing.
    pub fn answering_with(
        status: u16,
        headers: Vec<(String, String)>,
        body: &'static str,
    ) -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a fake server");
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(AtomicUsize::new(0));
        let heads = Arc::new(Mutex::new(Vec::new()));
        let (counter, kept) = (requests.clone(), heads.clone());
        let extra: String = headers
            .iter()
            .map(|(name, value)| format!("{name}: {value}\r\n"))
            .collect();
        // The thread ends with the test process.
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let Ok(head) = read_request(&mut stream) else {
                    continue;
                };
                kept.lock().unwrap().push(head);
                counter.fetch_add(1, Ordering::SeqCst);
                let answer = format!(
                    "HTTP/1.1 {status} Status\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(answer.as_bytes());
            }
        });
        FakeServer {
            port,
            requests,
            heads,
        }
    }

    pub fn client(&self) -> Client {
        Client::new(&self.url())
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    /// The heads (request line and header lines) of the requests so far.
    pub fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }
}

/// Reads the head and body of one request, so that answering does not reset the connection,
/// and returns the head.
fn read_request(stream: &mut std::net::TcpStream) -> std::io::Result<String> {
    let mut reader = BufReader::new(stream);
    let mut content_length = 0;
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            content_length = value.trim().parse().unwrap_or(0);
        }
        head.push_str(&line);
    }
    let mut body = vec![0; content_length];
    reader.read_exact(&mut body)?;
    Ok(head)
}

/// Polls `condition` until it holds, failing the test after `within`.
#[track_caller]
pub fn eventually(within: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !condition() {
        assert!(Instant::now() < deadline, "not within {within:?}: {what}");
        thread::sleep(Duration::from_millis(10));
    }
}

/// Joins `thread` once it has ended, failing the test if it has not within `within`: a thread
/// that waits for something that never happens fails the test instead of hanging it.
#[track_caller]
pub fn join_within<T>(thread: thread::JoinHandle<T>, within: Duration, what: &str) -> T {
    eventually(within, what, || thread.is_finished());
    thread
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// Checks `condition` every few milliseconds for `span`, failing the test the first time it does
/// not hold: for claims that something lasts ("the heartbeat keeps the lock for several
/// leases"), where a sleep and one check at the end would miss a lapse in between.
#[track_caller]
pub fn throughout(span: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let end = Instant::now() + span;
    loop {
        assert!(condition(), "not throughout {span:?}: {what}");
        if Instant::now() >= end {
            return;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Whether a peer of the server waits for a lock: a waiter's request has arrived and is queued.
pub fn someone_waits(client: &Client) -> bool {
    client
        .list_peers()
        .unwrap()
        .iter()
        .any(|peer| !peer.pending.is_empty())
}

/// Each member an `Unreachable` names, with the reason it gives for it.
pub fn member_reasons(unreachable: &throttle_client::Unreachable) -> Vec<(&str, &str)> {
    unreachable
        .attempts()
        .iter()
        .map(|attempt| (attempt.member(), attempt.reason()))
        .collect()
}

/// The URL of a port nothing listens on: it was free a moment ago, so connections are refused.
pub fn refusing_url() -> String {
    let port = TcpListener::bind("127.0.0.1:0")
        .expect("a free port")
        .local_addr()
        .expect("bound")
        .port();
    format!("http://127.0.0.1:{port}")
}

pub fn ms(millis: u64) -> Duration {
    Duration::from_millis(millis)
}

pub fn secs(secs: u64) -> Duration {
    Duration::from_secs(secs)
}

/// A TCP forwarder in front of a server that can be cut: while cut, it closes every connection
/// (new and open ones) at once, as a network partition between a client and the server would,
/// and the server keeps running (its expiry included).
pub struct Proxy {
    port: u16,
    cut: Arc<std::sync::atomic::AtomicBool>,
}

impl Proxy {
    /// Forwards a port of its own to `127.0.0.1:{target}`.
    pub fn to(server: &Server) -> Proxy {
        use std::net::{Shutdown, TcpStream};
        use std::sync::atomic::AtomicBool;
        let target = server.port();
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let port = listener.local_addr().unwrap().port();
        let cut = Arc::new(AtomicBool::new(false));
        let flag = cut.clone();
        thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if flag.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let Ok(upstream) = TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                for (from, to) in [
                    (client.try_clone().unwrap(), upstream.try_clone().unwrap()),
                    (upstream, client),
                ] {
                    let flag = flag.clone();
                    thread::spawn(move || {
                        let (mut from, mut to) = (from, to);
                        let _ = from.set_read_timeout(Some(Duration::from_millis(20)));
                        let mut buffer = [0; 16 * 1024];
                        loop {
                            if flag.load(Ordering::SeqCst) {
                                break;
                            }
                            match from.read(&mut buffer) {
                                Ok(0) => break,
                                Ok(n) => {
                                    if to.write_all(&buffer[..n]).is_err() {
                                        break;
                                    }
                                }
                                Err(error)
                                    if matches!(
                                        error.kind(),
                                        std::io::ErrorKind::WouldBlock
                                            | std::io::ErrorKind::TimedOut
                                    ) => {}
                                Err(_) => break,
                            }
                        }
                        let _ = from.shutdown(Shutdown::Both);
                        let _ = to.shutdown(Shutdown::Both);
                    });
                }
            }
        });
        Proxy { port, cut }
    }

    /// A client that talks to the server through this proxy.
    pub fn client(&self) -> Client {
        Client::new(&format!("http://127.0.0.1:{}", self.port))
    }

    /// Cuts (`true`) or heals (`false`) the connection.
    pub fn set_cut(&self, cut: bool) {
        self.cut.store(cut, Ordering::SeqCst);
    }
}
