//! What to start ([`Launch`]), a started server ([`Server`]) and several ([`Cluster`]).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::ops::Index;
use std::path::PathBuf;
use std::thread;
use std::time::{Duration, Instant};

use crate::process::{Lines, Process, TempDir};
use crate::{LISTENING, STARTUP, binary};

/// How to start one server: the binary, its configuration, arguments and environment. Built
/// up by its methods, cloned to start the same server again or a similar one.
#[derive(Debug, Clone, Default)]
pub struct Launch {
    binary: Option<PathBuf>,
    config: Option<String>,
    args: Vec<String>,
    env: Vec<(String, String)>,
    port: u16,
}

impl Launch {
    /// The [`binary`] with no configuration file, arguments or environment, on a free port.
    pub fn new() -> Launch {
        Launch::default()
    }

    /// Runs the executable at `path` instead of [`binary`]; the root package's tests pass
    /// `env!("CARGO_BIN_EXE_throttle")`.
    pub fn binary(mut self, path: impl Into<PathBuf>) -> Launch {
        self.binary = Some(path.into());
        self
    }

    /// Writes `text` to `throttle.toml` in the server's directory and passes it as `-c`.
    pub fn config(mut self, text: &str) -> Launch {
        self.config = Some(text.to_owned());
        self
    }

    /// Adds command line arguments, after `-c`, `--address` and `--port` (so they may override
    /// those).
    pub fn args<S: AsRef<str>>(mut self, args: impl IntoIterator<Item = S>) -> Launch {
        self.args
            .extend(args.into_iter().map(|arg| arg.as_ref().to_owned()));
        self
    }

    /// Sets an environment variable of the server. `THROTTLE_LOG` and `THROTTLE_TOKEN` are
    /// not inherited from the tests' environment, only set here.
    pub fn env(mut self, name: &str, value: &str) -> Launch {
        self.env.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Listens on `port` instead of a free one.
    pub fn port(mut self, port: u16) -> Launch {
        self.port = port;
        self
    }

    /// The executable this starts.
    pub fn executable(&self) -> PathBuf {
        match &self.binary {
            Some(path) => path.clone(),
            None => binary().to_owned(),
        }
    }

    /// Starts the server in a fresh directory and waits until it serves (it logged its address
    /// and answered `/health`), failing the test after [`STARTUP`].
    pub fn start(&self) -> Server {
        self.start_in(TempDir::new())
    }

    /// [`Launch::start`] in `dir`, e.g. one that holds a state file of an earlier server.
    pub fn start_in(&self, dir: TempDir) -> Server {
        let process = self.spawn_in(dir);
        let addr = wait_until_serving(&process.lines);
        Server {
            process,
            addr,
            launch: Some(self.clone()),
        }
    }

    /// Starts the process in `dir`, with `-c throttle.toml` if a configuration is set,
    /// `--address 127.0.0.1 --port PORT` and the arguments, without waiting for anything.
    pub fn spawn_in(&self, dir: TempDir) -> Process {
        let args = self.command_line(&dir);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Process::spawn(&self.executable(), dir, &args, &self.env_pairs())
    }

    /// The arguments of [`Launch::spawn_in`]; writes the configuration file into `dir`.
    fn command_line(&self, dir: &TempDir) -> Vec<String> {
        let mut args: Vec<String> = Vec::new();
        if let Some(config) = &self.config {
            let path = dir.write("throttle.toml", config);
            args.push("-c".into());
            args.push(path.to_str().expect("temporary paths are UTF-8").into());
        }
        args.extend(["--address".into(), "127.0.0.1".into()]);
        args.extend(["--port".into(), self.port.to_string()]);
        args.extend(self.args.iter().cloned());
        args
    }

    fn env_pairs(&self) -> Vec<(&str, &str)> {
        self.env
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .collect()
    }
}

/// A started server, serving. Killed on drop (by its [`Process`]).
pub struct Server {
    /// The process, with its log lines and directory.
    pub process: Process,
    /// The address it listens on.
    pub addr: SocketAddr,
    /// How it was started, for [`Server::restart`]; `None` for [`Server::ready`].
    launch: Option<Launch>,
}

impl Server {
    /// Starts [`binary`] with `config` on a free port.
    pub fn start(config: &str) -> Server {
        Launch::new().config(config).start()
    }

    /// Waits until a process started by other means serves, see [`wait_until_serving`]. Such a
    /// server cannot [`Server::restart`].
    pub fn ready(process: Process) -> Server {
        let addr = wait_until_serving(&process.lines);
        Server {
            process,
            addr,
            launch: None,
        }
    }

    /// `http://ADDR:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The lines the server logged so far.
    pub fn lines(&self) -> &Lines {
        &self.process.lines
    }

    /// Kills the server (no graceful shutdown: what it did not save is lost) and starts it again
    /// with the same launch, on the same port and in the same directory, as after a crash.
    pub fn restart(&mut self) {
        let launch = self
            .launch
            .clone()
            .expect("a server of Server::ready has no launch to restart");
        let launch = launch.port(self.addr.port());
        let args = launch.command_line(&self.process.dir);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.process
            .respawn(&launch.executable(), &args, &launch.env_pairs());
        let addr = wait_until_serving(&self.process.lines);
        assert_eq!(addr, self.addr, "the restarted server listens elsewhere");
    }
}

/// The secret the members of [`Cluster::members`] share (`[cluster] secret`, 32 bytes).
pub const CLUSTER_SECRET: &str = "a secret of the tests, 32 bytes.";

/// Several servers, each started from its own launch, all at once: the members of a cluster.
pub struct Cluster {
    servers: Vec<Server>,
}

impl Cluster {
    /// Starts one server per launch, then waits until every one serves.
    pub fn start(launches: impl IntoIterator<Item = Launch>) -> Cluster {
        let started: Vec<(Launch, Process)> = launches
            .into_iter()
            .map(|launch| {
                let process = launch.spawn_in(TempDir::new());
                (launch, process)
            })
            .collect();
        let servers = started
            .into_iter()
            .map(|(launch, process)| {
                let addr = wait_until_serving(&process.lines);
                Server {
                    process,
                    addr,
                    launch: Some(launch),
                }
            })
            .collect();
        Cluster { servers }
    }

    /// Starts `count` members of one cluster on loopback, each from `template` (binary,
    /// arguments, environment) with its configuration followed by a `[cluster]` table: member
    /// id = index + 1, every member's link address (on free ports), `data_dir = "data"` in the
    /// member's directory, and [`CLUSTER_SECRET`]. Which member leads is theirs to agree on:
    /// `cluster.leader` of `/status.json` says.
    pub fn members(template: &Launch, count: usize) -> Cluster {
        // Bound together, so the ports differ; released for the members to bind.
        let listeners: Vec<TcpListener> = (0..count)
            .map(|_| TcpListener::bind("127.0.0.1:0").expect("a free port"))
            .collect();
        let links: Vec<String> = listeners
            .iter()
            .map(|listener| format!("\"{}\"", listener.local_addr().expect("bound")))
            .collect();
        drop(listeners);
        let config = template.config.clone().unwrap_or_default();
        Cluster::start((1..=count).map(|id| {
            let table = format!(
                "\n[cluster]\nid = {id}\nmembers = [{}]\ndata_dir = \"data\"\nsecret = \"{CLUSTER_SECRET}\"\n",
                links.join(", ")
            );
            template.clone().config(&format!("{config}{table}"))
        }))
    }

    /// The servers, in the order of their launches.
    pub fn servers(&self) -> &[Server] {
        &self.servers
    }

    /// One server, to stop or restart it.
    pub fn server_mut(&mut self, index: usize) -> &mut Server {
        &mut self.servers[index]
    }

    /// The URL of every server, in order.
    pub fn urls(&self) -> Vec<String> {
        self.servers.iter().map(Server::url).collect()
    }
}

impl Index<usize> for Cluster {
    type Output = Server;

    fn index(&self, index: usize) -> &Server {
        &self.servers[index]
    }
}

/// Waits until the process whose stderr is `lines` logs `Listening on http://ADDR:PORT` and
/// answers 200 at `GET /health` there, and returns the address. Fails the test, showing the
/// log, after [`STARTUP`] or if the process ends first.
pub fn wait_until_serving(lines: &Lines) -> SocketAddr {
    let deadline = Instant::now() + STARTUP;
    let line = lines
        .wait_for(STARTUP, |line| line.contains(LISTENING))
        .unwrap_or_else(|| {
            panic!(
                "the server did not log `{LISTENING}` within {STARTUP:?}; stderr: {:#?}",
                lines.all()
            )
        });
    let addr: SocketAddr = line
        .split(LISTENING)
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|addr| addr.parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    while !is_healthy(addr) {
        assert!(
            Instant::now() < deadline,
            "/health did not answer 200 within {STARTUP:?}; stderr: {:#?}",
            lines.all()
        );
        thread::sleep(Duration::from_millis(10));
    }
    addr
}

/// Whether `GET /health` answers 200, on a connection of its own.
fn is_healthy(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let request = "GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0; 12];
    stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.1 200")
}
