//! Test support: the real `throttle` server on a free port, and a fake one for failures the
//! real server does not produce on demand.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use throttle_client::Client;

/// How long a server may take to start, and a build of it to finish.
const STARTUP: Duration = Duration::from_secs(20);
const BUILD: Duration = Duration::from_secs(600);

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
    child: Child,
    port: u16,
    config: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
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
    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Server {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let config = std::env::temp_dir().join(format!(
            "throttle-client-test-{}-{}.toml",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&config, CONFIG).expect("write the test configuration");
        let args: Vec<String> = args.iter().map(|arg| arg.to_string()).collect();
        let env: Vec<(String, String)> = env
            .iter()
            .map(|&(name, value)| (name.to_owned(), value.to_owned()))
            .collect();
        let (child, port) = spawn(&config, 0, &args, &env);
        Server {
            child,
            port,
            config,
            args,
            env,
            token: None,
        }
    }

    /// The server's URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
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
        stop(&mut self.child);
        let (child, port) = spawn(&self.config, self.port, &self.args, &self.env);
        assert_eq!(port, self.port);
        self.child = child;
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        stop(&mut self.child);
        let _ = std::fs::remove_file(&self.config);
    }
}

fn stop(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// Starts the binary and waits for the address it logs and for `/health` to answer. The
/// server gets no `THROTTLE_TOKEN` from the tests' environment, only from `env`.
fn spawn(config: &Path, port: u16, args: &[String], env: &[(String, String)]) -> (Child, u16) {
    let mut child = Command::new(binary())
        .args(["--address", "127.0.0.1", "--port", &port.to_string(), "-c"])
        .arg(config)
        .args(args)
        .env("THROTTLE_LOG", "INFO")
        .env_remove("THROTTLE_TOKEN")
        .envs(env.iter().map(|(name, value)| (name, value)))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the throttle server");
    // Drain stderr for the whole life of the process, so the server never blocks on a full
    // pipe; hand over the port once it is logged.
    let stderr = child.stderr.take().expect("stderr is piped");
    let (sender, receiver) = mpsc::channel();
    thread::spawn(move || {
        let mut sender = Some(sender);
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if let Some((_, address)) = line.split_once("Listening on http://") {
                let port = address
                    .trim()
                    .rsplit(':')
                    .next()
                    .and_then(|port| port.parse().ok());
                if let (Some(sender), Some(port)) = (sender.take(), port) {
                    let _ = sender.send(port);
                }
            } else if line.contains("ERROR") || line.contains("WARN") {
                eprintln!("server: {line}");
            }
        }
    });
    let port: u16 = match receiver.recv_timeout(STARTUP) {
        Ok(port) => port,
        Err(_) => {
            stop(&mut child);
            panic!("the server did not log its address within {STARTUP:?}");
        }
    };
    let client = Client::new(&format!("http://127.0.0.1:{port}")).with_retry_budget(Duration::ZERO);
    let deadline = Instant::now() + STARTUP;
    while client.health().is_err() {
        assert!(
            Instant::now() < deadline,
            "the server did not become healthy in time"
        );
        thread::sleep(Duration::from_millis(10));
    }
    (child, port)
}

/// The server binary: `THROTTLE_BIN`, else the workspace's debug build, built once if missing.
fn binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        if let Some(path) = std::env::var_os("THROTTLE_BIN") {
            return PathBuf::from(path);
        }
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| workspace.join("target"));
        let path = target
            .join("debug")
            .join(format!("throttle{}", std::env::consts::EXE_SUFFIX));
        if !path.exists() {
            build_server(&workspace);
        }
        assert!(path.exists(), "no server binary at {}", path.display());
        path
    })
}

fn build_server(workspace: &Path) {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut build = Command::new(cargo)
        .args(["build", "--bin", "throttle"])
        .current_dir(workspace)
        .stdin(Stdio::null())
        .spawn()
        .expect("run cargo build");
    let deadline = Instant::now() + BUILD;
    loop {
        if let Some(status) = build.try_wait().expect("wait for cargo build") {
            assert!(status.success(), "cargo build --bin throttle failed");
            return;
        }
        if Instant::now() > deadline {
            stop(&mut build);
            panic!("cargo build --bin throttle took longer than {BUILD:?}");
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// A server that answers every request with the same status and body, and counts requests.
pub struct FakeServer {
    port: u16,
    requests: Arc<AtomicUsize>,
}

impl FakeServer {
    pub fn answering(status: u16, body: &'static str) -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a fake server");
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(AtomicUsize::new(0));
        let counter = requests.clone();
        // The thread ends with the test process.
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                if read_request(&mut stream).is_err() {
                    continue;
                }
                counter.fetch_add(1, Ordering::SeqCst);
                let answer = format!(
                    "HTTP/1.1 {status} Status\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(answer.as_bytes());
            }
        });
        FakeServer { port, requests }
    }

    pub fn client(&self) -> Client {
        Client::new(&format!("http://127.0.0.1:{}", self.port))
    }

    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

/// Reads the head and body of one request, so that answering does not reset the connection.
fn read_request(stream: &mut std::net::TcpStream) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream);
    let mut content_length = 0;
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
    }
    let mut body = vec![0; content_length];
    reader.read_exact(&mut body)
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
        let target = server.port;
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
