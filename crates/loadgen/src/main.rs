//! Load generator for Throttle and any server with the same HTTP API (Throttle 0.5 included).
//!
//! ```text
//! cargo run --release --example loadgen -- --url http://127.0.0.1:8000 --scenario cycle \
//!     --clients 16 --duration 5s [--preload 100000]
//! ```
//!
//! It uses std threads and a minimal keep-alive HTTP/1.1 client written here over
//! `std::net::TcpStream` (one connection per client thread, `TCP_NODELAY`, `Content-Length`
//! bodies), so it measures the server and not an HTTP library. Every scenario prints a few human
//! readable lines and one last line starting with `result ` made of `key=value` pairs, which
//! `scripts/bench` reads. `docs/benchmark.md` explains every scenario and how to read the figures.
//!
//! Scenarios:
//! - `health`: `GET /health`; one operation is one request.
//! - `cycle`: `POST /new_peer`, `PUT /peers/{id}/{sem}` count 1, `DELETE /peers/{id}`; one
//!   operation (cycle) is three requests. Latency is per cycle.
//! - `contended`: like `cycle`, but on a semaphore smaller than the number of clients, acquiring
//!   with `block_for` and asking again while the answer is 202. Latency per cycle includes the
//!   time spent queueing.
//! - `heartbeat`: `PUT /peers/{id}` on one peer per client.
//! - `release-latency`: a holder holds a mutex, a waiter long polls on it, the holder releases;
//!   time from sending the release to the waiter reading its 200.
//! - `expiry-latency`: a holder acquires with `expires_in`, a waiter long polls; time from the
//!   holder's estimated deadline to the waiter reading its 200.
//! - `startup`: starts a server binary with `--port 0` and measures the time from spawning the
//!   process to the first 200 from `/health`.
//! - The crowd scenarios of issue 13, in `loadgen/crowd.rs`: `waiters` (many long polls on a
//!   small semaphore), `idle` (thousands of keep-alive clients heartbeating), `slowloris`
//!   (connections that stop mid-head while fresh clients try to get through), `mass-expiry`
//!   (tens of thousands of leases ending at once) and `peers-listing` (`GET /peers/` with many
//!   peers while another client acquires).
//!
//! `--preload N` creates N idle peers holding a lock of count 1 each (in parallel over
//! `--preload-connections` connections) before the scenario and removes them afterwards
//! (unless `--keep-preload`).

use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Barrier, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

mod crowd;

const USAGE: &str = "\
usage: loadgen --url URL --scenario NAME [options]

scenarios: health, cycle, contended, heartbeat, release-latency, expiry-latency, startup;
the crowds: waiters, idle, slowloris, mass-expiry, peers-listing (docs/benchmark.md)

options:
  --url URL                  server to load, e.g. http://127.0.0.1:8000 (all but startup)
  --scenario NAME            what to run (see above)
  --clients N                concurrent clients, one connection each [default: 16; waiters
                             500, idle 2000, slowloris 1100 slow connections, mass-expiry
                             100 waiters]
  --duration D               how long the scenario runs, e.g. 5s [default: 5s; waiters 20s,
                             idle and slowloris 15s, peers-listing 10s]
  --semaphore NAME           semaphore of the scenario [default: big for cycle, slowloris and
                             peers-listing, small for contended, mutex for release-latency,
                             Small for waiters, Big for mass-expiry; for expiry-latency the
                             prefix of one semaphore per lane, NAME-0, NAME-1, ... (expiry)]
  --block-for D              block_for of the long polls [default: 5s contended, 10s
                             mass-expiry and latency scenarios, 30s waiters]
  --repeat N                 samples of the latency scenarios [default: 200 release-latency,
                             50 expiry-latency, 5 startup]
  --parallel N               expiry-latency: lanes run in parallel, one semaphore each [default: 5]
  --expires-in D             expiry-latency, mass-expiry: the holders' lease [default: 200ms,
                             mass-expiry 2s]
  --hold D                   waiters: how long a grant is held before the release [default: 20ms]
  --backoff D                waiters, mass-expiry: first pause after a 202 that came before
                             block_for had passed; it doubles (jittered) with every further
                             early 202, as in the repository's clients [default: 20ms]
  --backoff-max D            the longest of those pauses [default: 1s; = --backoff for a
                             fixed pause]
  --peers N                  mass-expiry: holders expiring at once [default: 50000]
  --bytes N                  slowloris: bytes each slow connection sends, 0 or more [default: 1]
  --reconnect                slowloris: a slow connection that is closed is opened again
  --budget D                 slowloris: a probe succeeds if done within this [default: 1s]
  --preload N                before the scenario, create N peers holding 1 each [default: 0]
  --preload-semaphore NAME   semaphore of the preloaded locks [default: big]
  --preload-connections N    connections used to preload [default: 32]
  --preload-expires-in D     lease of the preloaded peers [default: 1h]
  --keep-preload             leave the preloaded peers in place at the end
  --rss-pid PID              read VmRSS of this process after the scenario (Linux); the crowd
                             scenarios also sample its peak VmRSS and thread count
  --cost-pid PID             throughput scenarios: CPU time and context switches of this
                             process per request during the run (Linux, from /proc)
  --server-bin PATH          startup: the server executable
  --config FILE              startup: its configuration file
  -h, --help                 this text
";

fn main() -> ExitCode {
    let options = match Options::parse(std::env::args().skip(1)) {
        Ok(Some(options)) => options,
        Ok(None) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(error) => {
            eprintln!("loadgen: {error}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("loadgen: {error}");
            ExitCode::FAILURE
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Options

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scenario {
    Health,
    Cycle,
    Contended,
    Heartbeat,
    ReleaseLatency,
    ExpiryLatency,
    Startup,
    Waiters,
    Idle,
    Slowloris,
    MassExpiry,
    PeersListing,
}

impl Scenario {
    fn parse(name: &str) -> Result<Scenario, String> {
        Ok(match name {
            "health" => Scenario::Health,
            "cycle" => Scenario::Cycle,
            "contended" => Scenario::Contended,
            "heartbeat" => Scenario::Heartbeat,
            "release-latency" => Scenario::ReleaseLatency,
            "expiry-latency" => Scenario::ExpiryLatency,
            "startup" => Scenario::Startup,
            "waiters" => Scenario::Waiters,
            "idle" => Scenario::Idle,
            "slowloris" => Scenario::Slowloris,
            "mass-expiry" => Scenario::MassExpiry,
            "peers-listing" => Scenario::PeersListing,
            _ => return Err(format!("unknown scenario {name:?}")),
        })
    }

    fn name(self) -> &'static str {
        match self {
            Scenario::Health => "health",
            Scenario::Cycle => "cycle",
            Scenario::Contended => "contended",
            Scenario::Heartbeat => "heartbeat",
            Scenario::ReleaseLatency => "release-latency",
            Scenario::ExpiryLatency => "expiry-latency",
            Scenario::Startup => "startup",
            Scenario::Waiters => "waiters",
            Scenario::Idle => "idle",
            Scenario::Slowloris => "slowloris",
            Scenario::MassExpiry => "mass-expiry",
            Scenario::PeersListing => "peers-listing",
        }
    }
}

#[derive(Debug, Clone)]
struct Options {
    url: Option<String>,
    scenario: Scenario,
    clients: usize,
    duration: Duration,
    semaphore: String,
    block_for: Duration,
    repeat: usize,
    parallel: usize,
    expires_in: Duration,
    preload: usize,
    preload_semaphore: String,
    preload_connections: usize,
    preload_expires_in: Duration,
    keep_preload: bool,
    rss_pid: Option<u32>,
    cost_pid: Option<u32>,
    server_bin: Option<String>,
    config: Option<String>,
    hold: Duration,
    backoff: Duration,
    backoff_max: Duration,
    peers: usize,
    bytes: usize,
    reconnect: bool,
    budget: Duration,
}

impl Options {
    /// `Ok(None)` means help was asked for.
    fn parse(args: impl Iterator<Item = String>) -> Result<Option<Options>, String> {
        let mut args = args.peekable();
        let mut url = None;
        let mut scenario = None;
        let mut clients = None;
        let mut duration = None;
        let mut semaphore = None;
        let mut block_for = None;
        let mut repeat = None;
        let mut parallel = 5;
        let mut expires_in = None;
        let mut preload = 0;
        let mut preload_semaphore = "big".to_owned();
        let mut preload_connections = 32;
        let mut preload_expires_in = Duration::from_secs(3600);
        let mut keep_preload = false;
        let mut rss_pid = None;
        let mut cost_pid = None;
        let mut server_bin = None;
        let mut config = None;
        let mut hold = Duration::from_millis(20);
        let mut backoff = Duration::from_millis(20);
        let mut backoff_max = Duration::from_secs(1);
        let mut peers = 50_000;
        let mut bytes = 1;
        let mut reconnect = false;
        let mut budget = Duration::from_secs(1);
        while let Some(arg) = args.next() {
            let (flag, inline) = match arg.split_once('=') {
                Some((flag, value)) if flag.starts_with("--") => (flag.to_owned(), Some(value)),
                _ => (arg.clone(), None),
            };
            let inline = inline.map(str::to_owned);
            let mut value = || {
                inline
                    .clone()
                    .or_else(|| args.next())
                    .ok_or_else(|| format!("{flag} needs a value"))
            };
            match flag.as_str() {
                "-h" | "--help" => return Ok(None),
                "--url" => url = Some(value()?),
                "--scenario" => scenario = Some(Scenario::parse(&value()?)?),
                "--clients" => clients = Some(number(&flag, &value()?)?),
                "--duration" => duration = Some(duration_arg(&flag, &value()?)?),
                "--semaphore" => semaphore = Some(value()?),
                "--block-for" => block_for = Some(duration_arg(&flag, &value()?)?),
                "--repeat" => repeat = Some(number(&flag, &value()?)?),
                "--parallel" => parallel = number(&flag, &value()?)?,
                "--expires-in" => expires_in = Some(duration_arg(&flag, &value()?)?),
                "--preload" => preload = number(&flag, &value()?)?,
                "--preload-semaphore" => preload_semaphore = value()?,
                "--preload-connections" => preload_connections = number(&flag, &value()?)?,
                "--preload-expires-in" => preload_expires_in = duration_arg(&flag, &value()?)?,
                "--keep-preload" => keep_preload = true,
                "--rss-pid" => rss_pid = Some(number::<u32>(&flag, &value()?)?),
                "--cost-pid" => cost_pid = Some(number::<u32>(&flag, &value()?)?),
                "--server-bin" => server_bin = Some(value()?),
                "--config" => config = Some(value()?),
                "--hold" => hold = duration_arg(&flag, &value()?)?,
                "--backoff" => backoff = duration_arg(&flag, &value()?)?,
                "--backoff-max" => backoff_max = duration_arg(&flag, &value()?)?,
                "--peers" => peers = number(&flag, &value()?)?,
                "--bytes" => bytes = number(&flag, &value()?)?,
                "--reconnect" => reconnect = true,
                "--budget" => budget = duration_arg(&flag, &value()?)?,
                _ => return Err(format!("unknown argument {arg:?}")),
            }
        }
        let scenario = scenario.ok_or("--scenario is required")?;
        if scenario != Scenario::Startup && url.is_none() {
            return Err("--url is required".into());
        }
        if scenario == Scenario::Startup && server_bin.is_none() {
            return Err("startup needs --server-bin".into());
        }
        let clients = clients.unwrap_or(match scenario {
            Scenario::Waiters => 500,
            Scenario::Idle => 2000,
            Scenario::Slowloris => 1100,
            Scenario::MassExpiry => 100,
            _ => 16,
        });
        let duration = duration.unwrap_or(Duration::from_secs(match scenario {
            Scenario::Waiters => 20,
            Scenario::Idle | Scenario::Slowloris => 15,
            Scenario::PeersListing => 10,
            _ => 5,
        }));
        let expires_in = expires_in.unwrap_or(match scenario {
            Scenario::MassExpiry => Duration::from_secs(2),
            _ => Duration::from_millis(200),
        });
        if scenario == Scenario::MassExpiry && peers < clients {
            return Err("mass-expiry needs at least as many --peers as --clients".into());
        }
        if clients == 0 || parallel == 0 || preload_connections == 0 {
            return Err(
                "--clients, --parallel and --preload-connections must be at least 1".into(),
            );
        }
        let semaphore = semaphore.unwrap_or_else(|| {
            match scenario {
                Scenario::Contended => "small",
                Scenario::ReleaseLatency => "mutex",
                Scenario::ExpiryLatency => "expiry",
                Scenario::Waiters => "Small",
                Scenario::MassExpiry => "Big",
                _ => "big",
            }
            .to_owned()
        });
        let block_for = block_for.unwrap_or(match scenario {
            Scenario::Contended => Duration::from_secs(5),
            // Longer than the waiters wait for the deadline with the defaults, so that none is
            // between two requests when the holders expire.
            Scenario::MassExpiry => Duration::from_secs(10),
            Scenario::Waiters => Duration::from_secs(30),
            _ => Duration::from_secs(10),
        });
        let repeat = repeat.unwrap_or(match scenario {
            Scenario::ExpiryLatency => 50,
            Scenario::Startup => 5,
            _ => 200,
        });
        Ok(Some(Options {
            url,
            scenario,
            clients,
            duration,
            semaphore,
            block_for,
            repeat,
            parallel,
            expires_in,
            preload,
            preload_semaphore,
            preload_connections,
            preload_expires_in,
            keep_preload,
            rss_pid,
            cost_pid,
            server_bin,
            config,
            hold,
            backoff,
            backoff_max,
            peers,
            bytes,
            reconnect,
            budget,
        }))
    }
}

fn number<T: std::str::FromStr>(flag: &str, value: &str) -> Result<T, String> {
    value
        .parse()
        .map_err(|_| format!("{flag}: {value:?} is not a number"))
}

fn duration_arg(flag: &str, value: &str) -> Result<Duration, String> {
    humantime::parse_duration(value).map_err(|e| format!("{flag}: {value:?}: {e}"))
}

/// Durations as the server expects them: whole milliseconds.
fn wire_duration(duration: Duration) -> String {
    format!("{}ms", duration.as_millis())
}

// ---------------------------------------------------------------------------------------------
// A minimal keep-alive HTTP/1.1 client

/// Where the server is.
#[derive(Debug, Clone)]
struct Target {
    address: SocketAddr,
    host: String,
}

impl Target {
    fn parse(url: &str) -> Result<Target, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("only http:// URLs are supported, not {url:?}"))?;
        let host = rest.split('/').next().unwrap_or_default().to_owned();
        if host.is_empty() {
            return Err(format!("no host in {url:?}"));
        }
        let with_port = if host.contains(':') && !host.ends_with(']') {
            host.clone()
        } else {
            format!("{host}:80")
        };
        let address = with_port
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve {host}: {e}"))?
            .next()
            .ok_or_else(|| format!("{host} resolves to no address"))?;
        Ok(Target { address, host })
    }
}

struct Response {
    status: u16,
    body: Vec<u8>,
}

impl Response {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).trim().to_owned()
    }
}

/// One keep-alive connection. Reconnects lazily after an error or a `Connection: close`.
struct Client {
    target: Target,
    stream: Option<BufReader<TcpStream>>,
    out: Vec<u8>,
    line: String,
    /// Bounds the connect and every blocked read or write.
    timeout: Duration,
    /// Size of the read buffer.
    capacity: usize,
    /// Where each new connection is registered so that another thread can shut it down, and
    /// this client's place there.
    closer: Option<(Arc<Closer>, usize)>,
}

const IO_TIMEOUT: Duration = Duration::from_secs(60);

impl Client {
    fn new(target: &Target) -> Client {
        Client::with(target, IO_TIMEOUT, 16 * 1024)
    }

    /// A client with its own I/O timeout and read buffer size (the crowd scenarios run
    /// thousands of clients, with small buffers and shorter timeouts).
    fn with(target: &Target, timeout: Duration, capacity: usize) -> Client {
        Client {
            target: target.clone(),
            stream: None,
            out: Vec::with_capacity(256),
            line: String::with_capacity(128),
            timeout,
            capacity,
            closer: None,
        }
    }

    /// Registers every connection of this client in `closer`, at `slot`.
    fn closed_by(mut self, closer: &Arc<Closer>, slot: usize) -> Client {
        self.closer = Some((closer.clone(), slot));
        self
    }

    fn is_connected(&self) -> bool {
        self.stream.is_some()
    }

    fn connect(&mut self) -> io::Result<&mut BufReader<TcpStream>> {
        if self.stream.is_none() {
            let stream = TcpStream::connect_timeout(&self.target.address, self.timeout)?;
            stream.set_nodelay(true)?;
            stream.set_read_timeout(Some(self.timeout))?;
            stream.set_write_timeout(Some(self.timeout))?;
            if let Some((closer, slot)) = &self.closer {
                closer.register(*slot, &stream)?;
            }
            self.stream = Some(BufReader::with_capacity(self.capacity, stream));
        }
        Ok(self.stream.as_mut().expect("connected above"))
    }

    /// Sends a request and reads the whole response. `body` is sent with a `Content-Length`
    /// (also when empty, for PUT and POST).
    fn request(&mut self, method: &str, path: &str, body: &str) -> io::Result<Response> {
        let result = self.exchange(method, path, body);
        if result.is_err() {
            self.stream = None;
        }
        result
    }

    fn exchange(&mut self, method: &str, path: &str, body: &str) -> io::Result<Response> {
        self.out.clear();
        let _ = write!(
            self.out,
            "{method} {path} HTTP/1.1\r\nHost: {}\r\n",
            self.target.host
        );
        if !body.is_empty() || method == "PUT" || method == "POST" {
            let _ = write!(
                self.out,
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                body.len()
            );
        }
        self.out.extend_from_slice(b"\r\n");
        self.out.extend_from_slice(body.as_bytes());
        let out = std::mem::take(&mut self.out);
        let written = self.connect().and_then(|s| s.get_mut().write_all(&out));
        self.out = out;
        written?;

        let mut line = std::mem::take(&mut self.line);
        let response = self.read_response(&mut line);
        self.line = line;
        response
    }

    fn read_response(&mut self, line: &mut String) -> io::Result<Response> {
        let stream = self.stream.as_mut().expect("connected in exchange");
        line.clear();
        if stream.read_line(line)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed before the response",
            ));
        }
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|code| code.parse::<u16>().ok())
            .ok_or_else(|| invalid(format!("bad status line {:?}", line.trim_end())))?;
        let http10 = line.starts_with("HTTP/1.0");
        let mut length = None;
        let mut chunked = false;
        let mut close = http10;
        loop {
            line.clear();
            if stream.read_line(line)? == 0 {
                return Err(invalid("connection closed in the headers".into()));
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            let Some((name, value)) = header.split_once(':') else {
                return Err(invalid(format!("bad header {header:?}")));
            };
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                length = Some(
                    value
                        .parse::<usize>()
                        .map_err(|_| invalid(format!("bad Content-Length {value:?}")))?,
                );
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = value.to_ascii_lowercase().contains("chunked");
            } else if name.eq_ignore_ascii_case("connection") {
                let value = value.to_ascii_lowercase();
                close = value.contains("close") || (http10 && !value.contains("keep-alive"));
            }
        }
        let mut body = Vec::new();
        if chunked {
            loop {
                line.clear();
                stream.read_line(line)?;
                let size = line.trim_end().split(';').next().unwrap_or_default();
                let size = usize::from_str_radix(size.trim(), 16)
                    .map_err(|_| invalid(format!("bad chunk size {size:?}")))?;
                if size == 0 {
                    // Trailers, if any, end with an empty line.
                    loop {
                        line.clear();
                        if stream.read_line(line)? == 0 || line.trim_end().is_empty() {
                            break;
                        }
                    }
                    break;
                }
                let start = body.len();
                body.resize(start + size, 0);
                stream.read_exact(&mut body[start..])?;
                let mut crlf = [0; 2];
                stream.read_exact(&mut crlf)?;
            }
        } else if let Some(length) = length {
            body.resize(length, 0);
            stream.read_exact(&mut body)?;
        } else if status >= 200 && status != 204 && status != 304 {
            // No length: the body runs until the server closes the connection.
            stream.read_to_end(&mut body)?;
            close = true;
        }
        if close {
            self.stream = None;
        }
        Ok(Response { status, body })
    }

    /// A request that must answer one of `expected`.
    fn expect(
        &mut self,
        method: &str,
        path: &str,
        body: &str,
        expected: &[u16],
    ) -> Result<Response, String> {
        let response = self
            .request(method, path, body)
            .map_err(|e| format!("{method} {path}: {e}"))?;
        if expected.contains(&response.status) {
            Ok(response)
        } else {
            Err(format!(
                "{method} {path}: {} {}",
                response.status,
                response.text()
            ))
        }
    }

    fn new_peer(&mut self, expires_in: Duration) -> Result<u64, String> {
        let body = format!(r#"{{"expires_in":"{}"}}"#, wire_duration(expires_in));
        let response = self.expect("POST", "/new_peer", &body, &[200])?;
        response
            .text()
            .parse()
            .map_err(|_| format!("POST /new_peer: not a peer id: {:?}", response.text()))
    }

    fn remove_peer(&mut self, peer: u64) -> Result<(), String> {
        self.expect("DELETE", &format!("/peers/{peer}"), "", &[200])
            .map(drop)
    }
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

/// Shuts down the connections of many clients at once from another thread, which ends their
/// blocked reads (a long poll, say) when a scenario's time is up. Each client has a slot holding
/// a clone of its current connection; once closed, new connections are shut down at once.
struct Closer {
    state: Mutex<(bool, Vec<Option<TcpStream>>)>,
}

impl Closer {
    fn new(slots: usize) -> Closer {
        Closer {
            state: Mutex::new((false, (0..slots).map(|_| None).collect())),
        }
    }

    fn register(&self, slot: usize, stream: &TcpStream) -> io::Result<()> {
        let mut state = self.state.lock().expect("not poisoned");
        if state.0 {
            let _ = stream.shutdown(std::net::Shutdown::Both);
            return Err(io::Error::other("the scenario is over"));
        }
        state.1[slot] = Some(stream.try_clone()?);
        Ok(())
    }

    fn close_all(&self) {
        let mut state = self.state.lock().expect("not poisoned");
        state.0 = true;
        for stream in state.1.iter_mut().filter_map(Option::take) {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
    }
}

/// Percent-encodes a semaphore name for a path segment.
fn encode(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for byte in name.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Statistics

/// Latencies in nanoseconds (signed: the expiry lateness may be negative).
struct Stats {
    sorted: Vec<i64>,
}

impl Stats {
    fn new(mut samples: Vec<i64>) -> Stats {
        samples.sort_unstable();
        Stats { sorted: samples }
    }

    /// Nearest-rank percentile in milliseconds; NaN without samples.
    fn ms(&self, quantile: f64) -> f64 {
        if self.sorted.is_empty() {
            return f64::NAN;
        }
        let rank = (quantile * self.sorted.len() as f64).ceil() as usize;
        let index = rank.clamp(1, self.sorted.len()) - 1;
        self.sorted[index] as f64 / 1e6
    }

    fn max_ms(&self) -> f64 {
        self.ms(1.0)
    }
}

fn nanos(duration: Duration) -> i64 {
    duration.as_nanos().min(i64::MAX as u128) as i64
}

/// Signed `a - b` in nanoseconds.
fn signed_nanos(a: Instant, b: Instant) -> i64 {
    if a >= b { nanos(a - b) } else { -nanos(b - a) }
}

/// Collects the first few error messages and counts all of them.
#[derive(Default)]
struct Errors {
    count: AtomicUsize,
    first: Mutex<Vec<String>>,
}

impl Errors {
    fn record(&self, message: String) {
        if self.count.fetch_add(1, Ordering::Relaxed) < 5 {
            self.first.lock().expect("not poisoned").push(message);
        }
    }

    fn count(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    fn report(&self) {
        for message in self.first.lock().expect("not poisoned").iter() {
            eprintln!("loadgen: error: {message}");
        }
        if self.count() > 5 {
            eprintln!("loadgen: ... {} errors in all", self.count());
        }
    }
}

/// Reads VmRSS (kB) of a process from /proc.
fn rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kb| kb.parse().ok())
}

/// CPU time and context switches a process has used so far.
#[derive(Debug, Clone)]
struct ProcessCost {
    cpu: Duration,
    /// Context switches so far, by thread id.
    switches: HashMap<u64, u64>,
}

impl ProcessCost {
    /// Context switches since `before` by the threads alive now. (Threads that ended meanwhile
    /// took their counts with them; a plain difference of totals could even come out negative.)
    fn switches_since(&self, before: &ProcessCost) -> u64 {
        self.switches
            .iter()
            .map(|(tid, &now)| now.saturating_sub(before.switches.get(tid).copied().unwrap_or(0)))
            .sum()
    }
}

/// Reads [`ProcessCost`] from /proc: user and system time of the whole process (its exited
/// threads included) from `/proc/PID/stat`, context switches summed over its live threads
/// (`/proc/PID/task/*/status`) by thread.
fn process_cost(pid: u32) -> Option<ProcessCost> {
    let cpu = cpu_time(pid)?;
    let mut switches = HashMap::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .ok()?
        .flatten()
    {
        let Some(tid) = task.file_name().to_str().and_then(|tid| tid.parse().ok()) else {
            continue;
        };
        let Ok(status) = std::fs::read_to_string(task.path().join("status")) else {
            continue; // The thread ended meanwhile.
        };
        let count = status
            .lines()
            .filter_map(|line| {
                line.strip_prefix("voluntary_ctxt_switches:")
                    .or_else(|| line.strip_prefix("nonvoluntary_ctxt_switches:"))
            })
            .filter_map(|count| count.trim().parse::<u64>().ok())
            .sum::<u64>();
        switches.insert(tid, count);
    }
    Some(ProcessCost { cpu, switches })
}

/// User + system time of a process so far (its exited threads included), from /proc/PID/stat.
fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the command name, which is in parentheses and may hold spaces: the
    // state is field 3 of the line, utime and stime fields 14 and 15, in USER_HZ (100 a second).
    let fields: Vec<&str> = stat
        .get(stat.rfind(')')? + 1..)?
        .split_whitespace()
        .collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 10))
}

/// `key=value` pairs of the final `result` line.
struct ResultLine(String);

impl ResultLine {
    fn new(scenario: Scenario) -> ResultLine {
        ResultLine(format!("result scenario={}", scenario.name()))
    }

    fn add(&mut self, key: &str, value: impl std::fmt::Display) -> &mut Self {
        let _ = write!(self.0, " {key}={value}");
        self
    }

    fn ms(&mut self, key: &str, value: f64) -> &mut Self {
        self.add(key, format!("{value:.3}"))
    }
}

// ---------------------------------------------------------------------------------------------
// Scenarios

fn run(options: &Options) -> Result<(), String> {
    if options.scenario == Scenario::Startup {
        return startup(options);
    }
    let target = Target::parse(options.url.as_deref().expect("checked in parse"))?;
    let mut result = ResultLine::new(options.scenario);
    let preloaded = if options.preload > 0 {
        let (peers, took) = preload(&target, options)?;
        println!(
            "preloaded {} peers holding 1 of {:?} each in {:.2} s ({:.0} peers/s)",
            peers.len(),
            options.preload_semaphore,
            took.as_secs_f64(),
            peers.len() as f64 / took.as_secs_f64()
        );
        result
            .add("preload", peers.len())
            .add("preload_s", format!("{:.2}", took.as_secs_f64()));
        peers
    } else {
        Vec::new()
    };

    let outcome = match options.scenario {
        Scenario::Health | Scenario::Cycle | Scenario::Contended | Scenario::Heartbeat => {
            throughput(&target, options, &mut result)
        }
        Scenario::ReleaseLatency => release_latency(&target, options, &mut result),
        Scenario::ExpiryLatency => expiry_latency(&target, options, &mut result),
        Scenario::Waiters => crowd::waiters(&target, options, &mut result),
        Scenario::Idle => crowd::idle(&target, options, &mut result),
        Scenario::Slowloris => crowd::slowloris(&target, options, &mut result),
        Scenario::MassExpiry => crowd::mass_expiry(&target, options, &mut result),
        Scenario::PeersListing => crowd::peers_listing(&target, options, &mut result),
        Scenario::Startup => unreachable!("handled above"),
    };

    if let Some(pid) = options.rss_pid {
        match rss_kb(pid) {
            Some(kb) => {
                println!("server VmRSS: {kb} kB");
                result.add("rss_kb", kb);
            }
            None => eprintln!("loadgen: cannot read VmRSS of process {pid}"),
        }
    }
    if !preloaded.is_empty() && !options.keep_preload {
        let started = Instant::now();
        remove_peers(&target, options.preload_connections, &preloaded)?;
        println!(
            "removed the preloaded peers in {:.2} s",
            started.elapsed().as_secs_f64()
        );
    }
    outcome?;
    println!("{}", result.0);
    Ok(())
}

/// Creates `--preload` peers, each holding a lock of count 1, over many connections at once.
fn preload(target: &Target, options: &Options) -> Result<(Vec<u64>, Duration), String> {
    let next = AtomicUsize::new(0);
    let errors = Errors::default();
    let path_tail = format!("/{}", encode(&options.preload_semaphore));
    let started = Instant::now();
    let peers: Vec<u64> = thread::scope(|scope| {
        let workers: Vec<_> = (0..options.preload_connections)
            .map(|_| {
                scope.spawn(|| {
                    let mut client = Client::new(target);
                    let mut mine = Vec::new();
                    while next.fetch_add(1, Ordering::Relaxed) < options.preload {
                        let outcome =
                            client
                                .new_peer(options.preload_expires_in)
                                .and_then(|peer| {
                                    mine.push(peer);
                                    client
                                        .expect(
                                            "PUT",
                                            &format!("/peers/{peer}{path_tail}"),
                                            "1",
                                            &[200],
                                        )
                                        .map(drop)
                                });
                        if let Err(error) = outcome {
                            errors.record(error);
                            if errors.count() > 100 {
                                break;
                            }
                        }
                    }
                    mine
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|worker| worker.join().expect("preload thread panicked"))
            .collect()
    });
    let took = started.elapsed();
    errors.report();
    if errors.count() > 0 {
        let _ = remove_peers(target, options.preload_connections, &peers);
        return Err(format!("preload failed with {} errors", errors.count()));
    }
    Ok((peers, took))
}

fn remove_peers(target: &Target, connections: usize, peers: &[u64]) -> Result<(), String> {
    let errors = Errors::default();
    let chunk = peers.len().div_ceil(connections).max(1);
    thread::scope(|scope| {
        for part in peers.chunks(chunk) {
            let errors = &errors;
            scope.spawn(move || {
                let mut client = Client::new(target);
                for &peer in part {
                    if let Err(error) = client.remove_peer(peer) {
                        errors.record(error);
                    }
                }
            });
        }
    });
    errors.report();
    match errors.count() {
        0 => Ok(()),
        n => Err(format!("{n} errors removing peers")),
    }
}

/// The closed-loop scenarios: every client runs one operation after the other for `--duration`.
fn throughput(target: &Target, options: &Options, result: &mut ResultLine) -> Result<(), String> {
    let scenario = options.scenario;
    let ready = Barrier::new(options.clients + 1);
    let go = Barrier::new(options.clients + 1);
    let start: OnceLock<Instant> = OnceLock::new();
    let errors = Errors::default();
    let retries = AtomicUsize::new(0);
    let semaphore = encode(&options.semaphore);
    let acquire_query = match scenario {
        Scenario::Contended => format!("?block_for={}", wire_duration(options.block_for)),
        _ => String::new(),
    };
    let lease = Duration::from_secs(300);
    let heartbeat_body = format!(r#"{{"expires_in":"{}"}}"#, wire_duration(lease));

    let mut cost_before = None;
    let per_client: Vec<(Vec<i64>, Instant)> = thread::scope(|scope| {
        let clients: Vec<_> = (0..options.clients)
            .map(|_| {
                scope.spawn(|| {
                    let mut client = Client::new(target);
                    // Set up outside the measured time: connect, and the heartbeat's peer.
                    let setup = match scenario {
                        Scenario::Heartbeat => client.new_peer(lease).map(Some),
                        _ => client.connect().map(|_| None).map_err(|e| e.to_string()),
                    };
                    let own_peer = match setup {
                        Ok(peer) => peer,
                        Err(error) => {
                            errors.record(format!("setup: {error}"));
                            None
                        }
                    };
                    ready.wait();
                    go.wait();
                    let start = *start.get().expect("set before go");
                    let deadline = start + options.duration;
                    let mut latencies = Vec::with_capacity(1 << 16);
                    let mut last = start;
                    loop {
                        let began = Instant::now();
                        if began >= deadline {
                            break;
                        }
                        let outcome = match scenario {
                            Scenario::Health => {
                                client.expect("GET", "/health", "", &[200]).map(drop)
                            }
                            Scenario::Cycle | Scenario::Contended => cycle(
                                &mut client,
                                &semaphore,
                                &acquire_query,
                                options.block_for,
                                lease,
                                &retries,
                            ),
                            Scenario::Heartbeat => match own_peer {
                                Some(peer) => client
                                    .expect(
                                        "PUT",
                                        &format!("/peers/{peer}"),
                                        &heartbeat_body,
                                        &[200],
                                    )
                                    .map(drop),
                                None => Err("no peer to heartbeat".to_owned()),
                            },
                            _ => unreachable!("not a throughput scenario"),
                        };
                        last = Instant::now();
                        match outcome {
                            Ok(()) => latencies.push(nanos(last - began)),
                            Err(error) => {
                                errors.record(error);
                                // Don't spin on a server that refuses.
                                thread::sleep(Duration::from_millis(1));
                            }
                        }
                    }
                    if let Some(peer) = own_peer {
                        let _ = client.remove_peer(peer);
                    }
                    (latencies, last)
                })
            })
            .collect();
        ready.wait();
        cost_before = options.cost_pid.and_then(process_cost);
        start.set(Instant::now()).expect("set once");
        go.wait();
        clients
            .into_iter()
            .map(|client| client.join().expect("client thread panicked"))
            .collect()
    });
    let cost_after = options.cost_pid.and_then(process_cost);

    let start = *start.get().expect("set above");
    // A client is stalled if one of its operations took more than half the run: the server left
    // its connection unserved (rather than being slow for everyone).
    let stalled = per_client
        .iter()
        .filter(|(latencies, _)| {
            latencies.is_empty() || latencies.iter().any(|&l| l > nanos(options.duration / 2))
        })
        .count();
    let min_client_ops = per_client.iter().map(|(l, _)| l.len()).min().unwrap_or(0);
    let end = per_client
        .iter()
        .map(|(_, last)| *last)
        .max()
        .unwrap_or(start);
    let elapsed = (end - start).as_secs_f64().max(1e-9);
    let samples: Vec<i64> = per_client.into_iter().flat_map(|(l, _)| l).collect();
    let operations = samples.len();
    let stats = Stats::new(samples);
    let rate = operations as f64 / elapsed;
    let (unit, requests_per_op) = match scenario {
        Scenario::Cycle | Scenario::Contended => ("cycles/s", 3.0),
        _ => ("requests/s", 1.0),
    };
    errors.report();
    println!(
        "{} with {} clients for {:.2} s against {}",
        scenario.name(),
        options.clients,
        elapsed,
        target.host
    );
    println!(
        "  {operations} operations, {rate:.0} {unit}{}, {} errors",
        if requests_per_op > 1.0 {
            format!(" ({:.0} requests/s)", rate * requests_per_op)
        } else {
            String::new()
        },
        errors.count()
    );
    if stalled > 0 {
        println!(
            "  {stalled} of {} clients stalled: one operation took more than half the run \
             (fewest operations of a client: {min_client_ops})",
            options.clients
        );
    }
    if scenario == Scenario::Contended {
        println!(
            "  {} acquire requests answered 202 and asked again",
            retries.load(Ordering::Relaxed)
        );
    }
    println!(
        "  latency per {}: p50 {:.3} ms, p99 {:.3} ms, p99.9 {:.3} ms, max {:.3} ms",
        if requests_per_op > 1.0 {
            "cycle"
        } else {
            "request"
        },
        stats.ms(0.5),
        stats.ms(0.99),
        stats.ms(0.999),
        stats.max_ms()
    );
    if let Some(pid) = options.cost_pid {
        match (cost_before, cost_after) {
            (Some(before), Some(after)) => {
                let requests =
                    operations as f64 * requests_per_op + retries.load(Ordering::Relaxed) as f64;
                let requests = requests.max(1.0);
                let cpu_us = (after.cpu.saturating_sub(before.cpu)).as_secs_f64() * 1e6 / requests;
                let switches = after.switches_since(&before) as f64 / requests;
                println!(
                    "  server (pid {pid}) per request: {cpu_us:.1} µs CPU, {switches:.2} context switches"
                );
                result
                    .add("server_cpu_us", format!("{cpu_us:.2}"))
                    .add("server_switches", format!("{switches:.3}"));
            }
            _ => eprintln!("loadgen: cannot read the CPU time of process {pid}"),
        }
    }
    result
        .add("clients", options.clients)
        .add("ops", operations)
        .add("rate", format!("{rate:.1}"))
        .add("unit", unit)
        .ms("p50_ms", stats.ms(0.5))
        .ms("p99_ms", stats.ms(0.99))
        .ms("p999_ms", stats.ms(0.999))
        .ms("max_ms", stats.max_ms())
        .add("errors", errors.count())
        .add("retries", retries.load(Ordering::Relaxed))
        .add("stalled", stalled)
        .add("min_client_ops", min_client_ops);
    if operations == 0 {
        return Err("no operation succeeded".into());
    }
    Ok(())
}

/// One cycle: new peer, acquire 1 (asking again while 202), remove the peer.
fn cycle(
    client: &mut Client,
    semaphore: &str,
    acquire_query: &str,
    block_for: Duration,
    lease: Duration,
    retries: &AtomicUsize,
) -> Result<(), String> {
    let peer = client.new_peer(lease)?;
    let path = format!("/peers/{peer}/{semaphore}{acquire_query}");
    let acquired = loop {
        let asked = Instant::now();
        match client.expect("PUT", &path, "1", &[200, 202]) {
            Ok(response) if response.status == 200 => break Ok(()),
            Ok(_) if acquire_query.is_empty() => {
                break Err(format!("PUT {path}: 202 without block_for"));
            }
            Ok(_) => {
                retries.fetch_add(1, Ordering::Relaxed);
                // A 202 long before block_for means the server had no long-poll slot: back off.
                if asked.elapsed() < block_for / 2 {
                    thread::sleep(Duration::from_millis(1));
                }
            }
            Err(error) => break Err(error),
        }
    };
    let removed = client.remove_peer(peer);
    acquired.and(removed)
}

/// Polls `GET /peers/{peer}/is_acquired` until the server reports the peer's lock pending, which
/// means its long poll has been registered (and, on this server, is waiting).
fn wait_until_pending(client: &mut Client, peer: u64, limit: Duration) -> Result<(), String> {
    let path = format!("/peers/{peer}/is_acquired");
    let until = Instant::now() + limit;
    loop {
        let response = client.expect("GET", &path, "", &[200])?;
        if response.text() == "false" {
            return Ok(());
        }
        if Instant::now() > until {
            return Err(format!("peer {peer} was never pending"));
        }
        thread::sleep(Duration::from_micros(200));
    }
}

/// A waiter thread: long polls when asked to, and reports the status and the instant it read
/// the answer.
struct Waiter {
    ask: mpsc::Sender<()>,
    answers: mpsc::Receiver<Result<(u16, Instant), String>>,
}

impl Waiter {
    fn spawn<'scope>(
        scope: &'scope thread::Scope<'scope, '_>,
        target: &'scope Target,
        path: String,
    ) -> Waiter {
        let (ask, asked) = mpsc::channel::<()>();
        let (answer, answers) = mpsc::channel();
        scope.spawn(move || {
            let mut client = Client::new(target);
            while asked.recv().is_ok() {
                let outcome = client
                    .expect("PUT", &path, "1", &[200, 202])
                    .map(|response| (response.status, Instant::now()));
                if answer.send(outcome).is_err() {
                    break;
                }
            }
        });
        Waiter { ask, answers }
    }

    fn long_poll(&self) {
        let _ = self.ask.send(());
    }

    fn answer(&self) -> Result<(u16, Instant), String> {
        self.answers
            .recv_timeout(IO_TIMEOUT)
            .map_err(|_| "the waiter did not answer".to_owned())?
    }
}

/// Release → waiter's 200, `--repeat` times on one mutex.
fn release_latency(
    target: &Target,
    options: &Options,
    result: &mut ResultLine,
) -> Result<(), String> {
    let semaphore = encode(&options.semaphore);
    let lease = Duration::from_secs(300);
    let mut holder_client = Client::new(target);
    let holder = holder_client.new_peer(lease)?;
    let waiter_peer = holder_client.new_peer(lease)?;
    let holder_path = format!("/peers/{holder}/{semaphore}");
    let waiter_lock = format!("/peers/{waiter_peer}/{semaphore}");
    let waiter_path = format!(
        "{waiter_lock}?block_for={}",
        wire_duration(options.block_for)
    );
    let mut samples = Vec::with_capacity(options.repeat);
    let outcome = thread::scope(|scope| -> Result<(), String> {
        let waiter = Waiter::spawn(scope, target, waiter_path);
        for _ in 0..options.repeat {
            holder_client.expect("PUT", &holder_path, "1", &[200])?;
            waiter.long_poll();
            wait_until_pending(&mut holder_client, waiter_peer, Duration::from_secs(5))?;
            // Give the long poll time to go to sleep on the server.
            thread::sleep(Duration::from_millis(1));
            let released = Instant::now();
            holder_client.expect("DELETE", &holder_path, "", &[200])?;
            let (status, answered) = waiter.answer()?;
            if status != 200 {
                return Err(format!("the waiter got {status} instead of 200"));
            }
            samples.push(signed_nanos(answered, released));
            holder_client.expect("DELETE", &waiter_lock, "", &[200])?;
        }
        Ok(())
    });
    let _ = holder_client.remove_peer(holder);
    let _ = holder_client.remove_peer(waiter_peer);
    outcome?;
    let stats = Stats::new(samples);
    println!(
        "release-latency over {} releases of {:?}: from sending the release to the waiter reading its 200",
        stats.sorted.len(),
        options.semaphore
    );
    println!(
        "  p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
        stats.ms(0.5),
        stats.ms(0.99),
        stats.max_ms()
    );
    result
        .add("samples", stats.sorted.len())
        .ms("p50_ms", stats.ms(0.5))
        .ms("p99_ms", stats.ms(0.99))
        .ms("max_ms", stats.max_ms())
        .add("errors", 0);
    Ok(())
}

/// Holder's deadline → waiter's 200, `--repeat` samples over `--parallel` lanes.
///
/// The server sets the holder's deadline to (the instant it handles the acquire) + expires_in.
/// That instant lies between sending the acquire and reading its answer, so the deadline is
/// estimated as (answer read) + expires_in, its latest possible value: the lateness measured
/// against it is a lower bound, and the true lateness is at most one acquire round trip more
/// (the round trips are reported as `acquire_rtt`).
fn expiry_latency(
    target: &Target,
    options: &Options,
    result: &mut ResultLine,
) -> Result<(), String> {
    let lanes = options.parallel.min(options.repeat.max(1));
    let next = AtomicUsize::new(0);
    let lease = Duration::from_secs(300);
    type Sample = (i64, i64);
    let outcome: Result<Vec<Sample>, String> = thread::scope(|scope| {
        let handles: Vec<_> = (0..lanes)
            .map(|lane| {
                let next = &next;
                scope.spawn(move || -> Result<Vec<Sample>, String> {
                    let semaphore = encode(&format!("{}-{lane}", options.semaphore));
                    let mut client = Client::new(target);
                    let waiter_peer = client.new_peer(lease)?;
                    let waiter_lock = format!("/peers/{waiter_peer}/{semaphore}");
                    let waiter_path = format!(
                        "{waiter_lock}?block_for={}",
                        wire_duration(options.block_for)
                    );
                    let mut samples = Vec::new();
                    let lane_outcome = thread::scope(|inner| -> Result<(), String> {
                        let waiter = Waiter::spawn(inner, target, waiter_path);
                        while next.fetch_add(1, Ordering::Relaxed) < options.repeat {
                            let holder = client.new_peer(options.expires_in)?;
                            let asked = Instant::now();
                            client.expect(
                                "PUT",
                                &format!(
                                    "/peers/{holder}/{semaphore}?expires_in={}",
                                    wire_duration(options.expires_in)
                                ),
                                "1",
                                &[200],
                            )?;
                            let acquired = Instant::now();
                            let deadline = acquired + options.expires_in;
                            waiter.long_poll();
                            wait_until_pending(&mut client, waiter_peer, options.expires_in)?;
                            if Instant::now() >= deadline {
                                return Err("the waiter was not pending before the deadline; \
                                     use a longer --expires-in"
                                    .into());
                            }
                            let (status, answered) = waiter.answer()?;
                            if status != 200 {
                                return Err(format!("the waiter got {status} instead of 200"));
                            }
                            samples
                                .push((signed_nanos(answered, deadline), nanos(acquired - asked)));
                            client.expect("DELETE", &waiter_lock, "", &[200])?;
                        }
                        Ok(())
                    });
                    let _ = client.remove_peer(waiter_peer);
                    lane_outcome.map(|()| samples)
                })
            })
            .collect();
        let mut all = Vec::new();
        for handle in handles {
            all.extend(handle.join().expect("lane panicked")?);
        }
        Ok(all)
    });
    let samples = outcome?;
    let late = Stats::new(samples.iter().map(|&(late, _)| late).collect());
    let rtt = Stats::new(samples.iter().map(|&(_, rtt)| rtt).collect());
    println!(
        "expiry-latency over {} expiries ({} lanes, expires_in {} ms): from the holder's deadline \
         (its acquire's answer + expires_in) to the waiter reading its 200",
        late.sorted.len(),
        lanes,
        options.expires_in.as_millis()
    );
    println!(
        "  p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms (negative: granted before the estimate)",
        late.ms(0.5),
        late.ms(0.99),
        late.max_ms()
    );
    println!(
        "  the server's deadline is earlier by at most the acquire round trip: p50 {:.3} ms, \
         p99 {:.3} ms, max {:.3} ms",
        rtt.ms(0.5),
        rtt.ms(0.99),
        rtt.max_ms()
    );
    result
        .add("samples", late.sorted.len())
        .add("lanes", lanes)
        .ms("p50_ms", late.ms(0.5))
        .ms("p99_ms", late.ms(0.99))
        .ms("max_ms", late.max_ms())
        .ms("rtt_p99_ms", rtt.ms(0.99))
        .add("errors", 0);
    Ok(())
}

/// Spawns the server `--repeat` times; measures spawn → first 200 from `/health`.
fn startup(options: &Options) -> Result<(), String> {
    let binary = options.server_bin.as_deref().expect("checked in parse");
    let mut samples = Vec::with_capacity(options.repeat);
    for _ in 0..options.repeat {
        let mut command = Command::new(binary);
        if let Some(config) = &options.config {
            command.arg("--configuration").arg(config);
        }
        command
            .args(["--address", "127.0.0.1", "--port", "0"])
            .env_remove("THROTTLE_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let spawned = Instant::now();
        let mut child = command
            .spawn()
            .map_err(|e| format!("cannot start {binary}: {e}"))?;
        let stderr = child.stderr.take().expect("piped");
        let measured = (|| -> Result<Duration, String> {
            let mut lines = BufReader::new(stderr).lines();
            let mut seen = VecDeque::new();
            let url = loop {
                let line = lines
                    .next()
                    .ok_or_else(|| {
                        format!(
                            "{binary} exited without a 'Listening on' line: {:?}",
                            seen.iter().collect::<Vec<_>>()
                        )
                    })?
                    .map_err(|e| e.to_string())?;
                if let Some((_, url)) = line.split_once("Listening on ") {
                    break url.trim().to_owned();
                }
                seen.push_back(line);
                if seen.len() > 5 {
                    seen.pop_front();
                }
            };
            let target = Target::parse(&url)?;
            let give_up = spawned + Duration::from_secs(10);
            loop {
                let mut client = Client::new(&target);
                if let Ok(response) = client.request("GET", "/health", "")
                    && response.status == 200
                {
                    return Ok(spawned.elapsed());
                }
                if Instant::now() > give_up {
                    return Err("no 200 from /health within 10 s".into());
                }
                thread::sleep(Duration::from_micros(100));
            }
        })();
        let _ = child.kill();
        let _ = child.wait();
        samples.push(nanos(measured?));
    }
    let stats = Stats::new(samples);
    println!(
        "startup of {binary} over {} starts: spawn to the first 200 from /health",
        stats.sorted.len()
    );
    println!(
        "  p50 {:.3} ms, max {:.3} ms",
        stats.ms(0.5),
        stats.max_ms()
    );
    let mut result = ResultLine::new(Scenario::Startup);
    result
        .add("samples", stats.sorted.len())
        .ms("p50_ms", stats.ms(0.5))
        .ms("max_ms", stats.max_ms());
    println!("{}", result.0);
    Ok(())
}
