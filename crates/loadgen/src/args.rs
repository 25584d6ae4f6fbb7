//! The load generator's command line: what `scripts/bench` and `scripts/crowd` asked for, with
//! every default filled in (several depend on the scenario), and the help text.
//!
//! This only parses: it resolves no address, opens no socket and reads no `/proc`; checks that
//! need the server (is the URL reachable, does the semaphore exist) happen when the scenario
//! runs.

use std::ffi::OsString;
use std::str::FromStr;
use std::time::Duration;

use lexopt::ValueExt;
use lexopt::prelude::{Long, Short};

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Run one scenario (boxed: the options are large and `Help` is empty).
    Run(Box<Options>),
    /// Print [`USAGE`] and exit successfully.
    Help,
}

/// The scenarios; `docs/benchmark.md` explains each one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
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
    EtcdLock,
    Failover,
    Fsync,
}

impl Scenario {
    /// Every scenario, in the order of [`USAGE`].
    pub const ALL: [Scenario; 15] = [
        Scenario::Health,
        Scenario::Cycle,
        Scenario::Contended,
        Scenario::Heartbeat,
        Scenario::ReleaseLatency,
        Scenario::ExpiryLatency,
        Scenario::Startup,
        Scenario::Waiters,
        Scenario::Idle,
        Scenario::Slowloris,
        Scenario::MassExpiry,
        Scenario::PeersListing,
        Scenario::EtcdLock,
        Scenario::Failover,
        Scenario::Fsync,
    ];

    /// The name on the command line and in the `result scenario=` field.
    pub fn name(self) -> &'static str {
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
            Scenario::EtcdLock => "etcd-lock",
            Scenario::Failover => "failover",
            Scenario::Fsync => "fsync",
        }
    }

    fn default_clients(self) -> usize {
        match self {
            Scenario::Waiters => 500,
            Scenario::Idle => 2000,
            Scenario::Slowloris => 1100,
            Scenario::MassExpiry => 100,
            _ => 16,
        }
    }

    fn default_duration(self) -> Duration {
        Duration::from_secs(match self {
            Scenario::Waiters => 20,
            Scenario::Idle | Scenario::Slowloris => 15,
            Scenario::PeersListing => 10,
            _ => 5,
        })
    }

    fn default_semaphore(self) -> &'static str {
        match self {
            Scenario::Contended => "small",
            Scenario::ReleaseLatency | Scenario::Failover => "mutex",
            Scenario::ExpiryLatency => "expiry",
            Scenario::Waiters => "Small",
            Scenario::MassExpiry => "Big",
            _ => "big",
        }
    }

    fn default_block_for(self) -> Duration {
        Duration::from_secs(match self {
            Scenario::Contended => 5,
            Scenario::Waiters => 30,
            Scenario::Failover => 1,
            // Mass-expiry: longer than the waiters wait for the deadline with the defaults, so
            // that none is between two requests when the holders expire.
            _ => 10,
        })
    }

    fn default_repeat(self) -> usize {
        match self {
            Scenario::ExpiryLatency => 50,
            Scenario::Startup => 5,
            Scenario::Failover => 20,
            Scenario::Fsync => 1000,
            _ => 200,
        }
    }

    fn default_expires_in(self) -> Duration {
        match self {
            Scenario::MassExpiry => Duration::from_secs(2),
            _ => Duration::from_millis(200),
        }
    }
}

impl FromStr for Scenario {
    type Err = String;

    fn from_str(name: &str) -> Result<Scenario, String> {
        Scenario::ALL
            .into_iter()
            .find(|scenario| scenario.name() == name)
            .ok_or_else(|| {
                format!(
                    "invalid value {name:?} for --scenario: expected one of health, cycle, \
                         contended, heartbeat, release-latency, expiry-latency, startup, waiters, \
                         idle, slowloris, mass-expiry, peers-listing, etcd-lock, failover, fsync"
                )
            })
    }
}

/// One run of the load generator, every default resolved. The fields are the options of
/// [`USAGE`], which says what each is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Every `--url`, in order; at least one for every scenario but `startup` and `fsync`.
    /// The throughput scenarios spread their clients over them; failover has one per member.
    pub urls: Vec<String>,
    pub scenario: Scenario,
    /// At least 1.
    pub clients: usize,
    pub duration: Duration,
    pub semaphore: String,
    pub block_for: Duration,
    /// At least 1.
    pub repeat: usize,
    /// At least 1.
    pub parallel: usize,
    pub expires_in: Duration,
    pub preload: usize,
    pub preload_semaphore: String,
    /// At least 1.
    pub preload_connections: usize,
    pub preload_expires_in: Duration,
    pub keep_preload: bool,
    pub rss_pid: Option<u32>,
    pub cost_pid: Option<u32>,
    /// `--server-bin`; present for `startup`.
    pub server_bin: Option<String>,
    pub config: Option<String>,
    pub hold: Duration,
    pub backoff: Duration,
    pub backoff_max: Duration,
    /// For mass-expiry, at least `clients`.
    pub peers: usize,
    pub bytes: usize,
    pub reconnect: bool,
    pub budget: Duration,
    /// `--dir`; present for `failover` and `fsync`.
    pub dir: Option<String>,
    pub lease: Duration,
}

/// The help text, printed by `--help`.
pub const USAGE: &str = "\
usage: loadgen --url URL --scenario NAME [options]

scenarios: health, cycle, contended, heartbeat, release-latency, expiry-latency, startup;
the crowds: waiters, idle, slowloris, mass-expiry, peers-listing; a cluster's: etcd-lock,
failover, fsync (docs/benchmark.md)

options:
  --url URL                  server to load, e.g. http://127.0.0.1:8000 (all but startup and
                             fsync); repeat it to spread the clients of a throughput scenario
                             over several (members of a cluster); failover: one per member
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
                             mass-expiry and latency scenarios, 30s waiters, 1s failover]
  --repeat N                 samples of the latency scenarios [default: 200 release-latency,
                             50 expiry-latency, 5 startup]; failover: kills of the leader
                             [default: 20]; fsync: synced writes [default: 1000]
  --parallel N               expiry-latency: lanes run in parallel, one semaphore each [default: 5]
  --expires-in D             expiry-latency, mass-expiry: the holders' lease [default: 200ms,
                             mass-expiry 2s]
  --hold D                   waiters, failover: how long a grant is held before the release
                             [default: 20ms]
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
  --server-bin PATH          startup, failover: the server executable
  --config FILE              startup: its configuration file
  --dir DIR                  failover: the members' directories DIR/1, DIR/2, ... (each with
                             its throttle.toml, member i serving the i-th --url); fsync: where
                             the probe file is written
  --lease D                  failover: the clients' peers' lease; etcd-lock: the lease's TTL,
                             whole seconds [default: 30s]
  -h, --help                 this text
";

/// Parses the command line, without the program name. `--help` wins as soon as it is seen;
/// positional arguments and unknown options are errors, and so is a missing `--scenario`, a
/// missing `--url` (but for `startup`) or `--server-bin` (for `startup`).
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Command, lexopt::Error> {
    let mut parser = lexopt::Parser::from_args(args);
    let mut urls = Vec::new();
    let mut scenario = None;
    // The defaults of these depend on the scenario, which may come later on the line.
    let mut clients = None;
    let mut duration = None;
    let mut semaphore = None;
    let mut block_for = None;
    let mut repeat = None;
    let mut expires_in = None;
    let mut parallel = 5;
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
    let mut dir = None;
    let mut lease = Duration::from_secs(30);
    while let Some(arg) = parser.next()? {
        match arg {
            Long("url") => urls.push(parser.value()?.string()?),
            Long("scenario") => scenario = Some(parser.value()?.string()?.parse()?),
            Long("clients") => clients = Some(at_least_one(&mut parser, "--clients")?),
            Long("duration") => duration = Some(self::duration(&mut parser, "--duration")?),
            Long("semaphore") => semaphore = Some(parser.value()?.string()?),
            Long("block-for") => block_for = Some(self::duration(&mut parser, "--block-for")?),
            Long("repeat") => repeat = Some(at_least_one(&mut parser, "--repeat")?),
            Long("parallel") => parallel = at_least_one(&mut parser, "--parallel")?,
            Long("expires-in") => expires_in = Some(self::duration(&mut parser, "--expires-in")?),
            Long("preload") => preload = number(&mut parser, "--preload", "a number of peers")?,
            Long("preload-semaphore") => preload_semaphore = parser.value()?.string()?,
            Long("preload-connections") => {
                preload_connections = at_least_one(&mut parser, "--preload-connections")?;
            }
            Long("preload-expires-in") => {
                preload_expires_in = self::duration(&mut parser, "--preload-expires-in")?;
            }
            Long("keep-preload") => keep_preload = true,
            Long("rss-pid") => rss_pid = Some(number(&mut parser, "--rss-pid", "a process id")?),
            Long("cost-pid") => {
                cost_pid = Some(number(&mut parser, "--cost-pid", "a process id")?);
            }
            Long("server-bin") => server_bin = Some(parser.value()?.string()?),
            Long("config") => config = Some(parser.value()?.string()?),
            Long("hold") => hold = self::duration(&mut parser, "--hold")?,
            Long("backoff") => backoff = self::duration(&mut parser, "--backoff")?,
            Long("backoff-max") => backoff_max = self::duration(&mut parser, "--backoff-max")?,
            Long("peers") => peers = number(&mut parser, "--peers", "a number of peers")?,
            Long("bytes") => bytes = number(&mut parser, "--bytes", "a number of bytes")?,
            Long("reconnect") => reconnect = true,
            Long("budget") => budget = self::duration(&mut parser, "--budget")?,
            Long("dir") => dir = Some(parser.value()?.string()?),
            Long("lease") => lease = self::duration(&mut parser, "--lease")?,
            Short('h') | Long("help") => return Ok(Command::Help),
            _ => return Err(arg.unexpected()),
        }
    }
    let scenario: Scenario = scenario.ok_or("missing --scenario")?;
    let serverless = matches!(scenario, Scenario::Startup | Scenario::Fsync);
    if !serverless && urls.is_empty() {
        return Err(format!("missing --url: {} needs a server", scenario.name()).into());
    }
    if matches!(scenario, Scenario::Startup | Scenario::Failover) && server_bin.is_none() {
        return Err(format!(
            "missing --server-bin: {} needs the server executable",
            scenario.name()
        )
        .into());
    }
    if matches!(scenario, Scenario::Failover | Scenario::Fsync) && dir.is_none() {
        return Err(format!("missing --dir: {} needs a directory", scenario.name()).into());
    }
    if scenario == Scenario::Failover && urls.len() < 2 {
        return Err("failover needs one --url per member, at least 2".into());
    }
    let clients = clients.unwrap_or(scenario.default_clients());
    if scenario == Scenario::MassExpiry && peers < clients {
        return Err(format!(
            "--peers {peers} is fewer than --clients {clients}: mass-expiry needs at least one \
             holder per waiter"
        )
        .into());
    }
    Ok(Command::Run(Box::new(Options {
        urls,
        scenario,
        clients,
        duration: duration.unwrap_or(scenario.default_duration()),
        semaphore: semaphore.unwrap_or_else(|| scenario.default_semaphore().to_owned()),
        block_for: block_for.unwrap_or(scenario.default_block_for()),
        repeat: repeat.unwrap_or(scenario.default_repeat()),
        parallel,
        expires_in: expires_in.unwrap_or(scenario.default_expires_in()),
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
        dir,
        lease,
    })))
}

/// Reads the value of `option` as a number, with an error that names the option and says what
/// was expected (lexopt's own message names neither).
fn number<T: FromStr>(
    parser: &mut lexopt::Parser,
    option: &str,
    expected: &str,
) -> Result<T, lexopt::Error> {
    let value = parser.value()?.string()?;
    value
        .parse()
        .map_err(|_| format!("invalid value {value:?} for {option}: expected {expected}").into())
}

/// A count that must be at least 1.
fn at_least_one(parser: &mut lexopt::Parser, option: &str) -> Result<usize, lexopt::Error> {
    let value = parser.value()?.string()?;
    match value.parse() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(
            format!("invalid value {value:?} for {option}: expected a number of at least 1").into(),
        ),
    }
}

/// A duration such as `5s`, `200ms` or `1m 30s`; zero is allowed.
fn duration(parser: &mut lexopt::Parser, option: &str) -> Result<Duration, lexopt::Error> {
    let value = parser.value()?.string()?;
    humantime::parse_duration(&value).map_err(|_| {
        format!("invalid value {value:?} for {option}: expected a duration such as 5s").into()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses a command line given as words separated by spaces.
    fn parse_line(line: &str) -> Result<Command, lexopt::Error> {
        parse(line.split_whitespace().map(OsString::from))
    }

    #[track_caller]
    fn run(line: &str) -> Options {
        match parse_line(line) {
            Ok(Command::Run(options)) => *options,
            other => panic!("expected Run for {line:?}, got {other:?}"),
        }
    }

    #[track_caller]
    fn error(line: &str) -> String {
        match parse_line(line) {
            Err(error) => error.to_string(),
            Ok(command) => panic!("expected an error for {line:?}, got {command:?}"),
        }
    }

    const URL: &str = "--url http://127.0.0.1:8000";

    #[test]
    fn defaults_of_a_throughput_scenario() {
        assert_eq!(
            run(&format!("{URL} --scenario cycle")),
            Options {
                urls: vec!["http://127.0.0.1:8000".to_owned()],
                scenario: Scenario::Cycle,
                clients: 16,
                duration: Duration::from_secs(5),
                semaphore: "big".to_owned(),
                block_for: Duration::from_secs(10),
                repeat: 200,
                parallel: 5,
                expires_in: Duration::from_millis(200),
                preload: 0,
                preload_semaphore: "big".to_owned(),
                preload_connections: 32,
                preload_expires_in: Duration::from_secs(3600),
                keep_preload: false,
                rss_pid: None,
                cost_pid: None,
                server_bin: None,
                config: None,
                hold: Duration::from_millis(20),
                backoff: Duration::from_millis(20),
                backoff_max: Duration::from_secs(1),
                peers: 50_000,
                bytes: 1,
                reconnect: false,
                budget: Duration::from_secs(1),
                dir: None,
                lease: Duration::from_secs(30),
            }
        );
    }

    #[test]
    fn every_scenario_parses_by_its_name() {
        for scenario in Scenario::ALL {
            let target = match scenario {
                Scenario::Startup => "--server-bin throttle",
                Scenario::Fsync => "--dir /tmp",
                Scenario::Failover => {
                    "--server-bin throttle --dir d --url http://h:1 --url http://h:2"
                }
                _ => URL,
            };
            let line = format!("--scenario {} {target}", scenario.name());
            assert_eq!(run(&line).scenario, scenario);
        }
    }

    #[test]
    fn defaults_that_depend_on_the_scenario() {
        let secs = Duration::from_secs;
        // scenario, clients, duration in s, semaphore, block_for in s, repeat
        let table: [(&str, usize, u64, &str, u64, usize); 11] = [
            ("health", 16, 5, "big", 10, 200),
            ("cycle", 16, 5, "big", 10, 200),
            ("contended", 16, 5, "small", 5, 200),
            ("heartbeat", 16, 5, "big", 10, 200),
            ("release-latency", 16, 5, "mutex", 10, 200),
            ("expiry-latency", 16, 5, "expiry", 10, 50),
            ("waiters", 500, 20, "Small", 30, 200),
            ("idle", 2000, 15, "big", 10, 200),
            ("slowloris", 1100, 15, "big", 10, 200),
            ("mass-expiry", 100, 5, "Big", 10, 200),
            ("peers-listing", 16, 10, "big", 10, 200),
        ];
        for (name, clients, duration, semaphore, block_for, repeat) in table {
            let options = run(&format!("{URL} --scenario {name}"));
            let expected = (clients, secs(duration), semaphore, secs(block_for), repeat);
            let actual = (
                options.clients,
                options.duration,
                options.semaphore.as_str(),
                options.block_for,
                options.repeat,
            );
            assert_eq!(actual, expected, "{name}");
        }
        let expires_in = |name: &str| run(&format!("{URL} --scenario {name}")).expires_in;
        assert_eq!(expires_in("mass-expiry"), secs(2));
        assert_eq!(expires_in("expiry-latency"), Duration::from_millis(200));
        let startup = run("--scenario startup --server-bin bin/throttle");
        assert_eq!(startup.repeat, 5);
        assert_eq!(startup.urls, Vec::<String>::new());
        assert_eq!(startup.server_bin.as_deref(), Some("bin/throttle"));
    }

    #[test]
    fn every_option() {
        let options = run(
            "--scenario mass-expiry --url http://h:1 --clients 7 --duration 100ms \
             --semaphore S --block-for 3s --repeat 9 --parallel 2 --expires-in 1s \
             --preload 10000 --preload-semaphore P --preload-connections 4 \
             --preload-expires-in 10m --keep-preload --rss-pid 11 --cost-pid 12 --server-bin B \
             --config C.toml --hold 5ms --backoff 6ms --backoff-max 7ms --peers 70 --bytes 0 \
             --reconnect --budget 2s --dir D --lease 9s",
        );
        let ms = Duration::from_millis;
        assert_eq!(
            options,
            Options {
                urls: vec!["http://h:1".to_owned()],
                scenario: Scenario::MassExpiry,
                clients: 7,
                duration: ms(100),
                semaphore: "S".to_owned(),
                block_for: ms(3000),
                repeat: 9,
                parallel: 2,
                expires_in: ms(1000),
                preload: 10_000,
                preload_semaphore: "P".to_owned(),
                preload_connections: 4,
                preload_expires_in: ms(600_000),
                keep_preload: true,
                rss_pid: Some(11),
                cost_pid: Some(12),
                server_bin: Some("B".to_owned()),
                config: Some("C.toml".to_owned()),
                hold: ms(5),
                backoff: ms(6),
                backoff_max: ms(7),
                peers: 70,
                bytes: 0,
                reconnect: true,
                budget: ms(2000),
                dir: Some("D".to_owned()),
                lease: ms(9000),
            }
        );
    }

    #[test]
    fn values_may_follow_an_equals_sign() {
        let options = run("--url=http://h:1 --scenario=health --clients=3 --duration=1m");
        assert_eq!(options.urls, ["http://h:1"]);
        assert_eq!(
            (options.clients, options.duration),
            (3, Duration::from_secs(60))
        );
    }

    #[test]
    fn the_scenario_may_come_after_the_options_it_sets_defaults_for() {
        let options = run("--semaphore mine --url http://h:1 --scenario waiters");
        assert_eq!((options.semaphore.as_str(), options.clients), ("mine", 500));
    }

    #[test]
    fn the_last_occurrence_of_an_option_wins() {
        let options = run(&format!("{URL} --scenario idle --clients 1 --clients 2"));
        assert_eq!(options.clients, 2);
    }

    /// Every command line of `scripts/bench` and `scripts/crowd`, with sample values.
    #[test]
    fn the_scripts_command_lines() {
        let u = "--url http://127.0.0.1:40000";
        for line in [
            "--scenario startup --server-bin target/release/throttle --config /tmp/t.toml \
             --repeat 5",
            &format!("{u} --scenario health --clients 64 --duration 5s --cost-pid 42"),
            &format!("{u} --scenario cycle --clients 16 --duration 5s --cost-pid 42"),
            &format!("{u} --scenario cycle --clients 64 --duration 1s"),
            &format!("{u} --scenario contended --clients 16 --semaphore small --duration 5s"),
            &format!("{u} --scenario heartbeat --clients 16 --duration 5s"),
            &format!("{u} --scenario release-latency --semaphore mutex --repeat 200"),
            &format!(
                "{u} --scenario expiry-latency --semaphore expiry --repeat 200 --parallel 5 \
                 --expires-in 200ms"
            ),
            &format!(
                "{u} --scenario health --clients 1 --duration 100ms --preload 10000 \
                 --preload-semaphore big --keep-preload --rss-pid 42"
            ),
            &format!(
                "{u} --scenario cycle --clients 16 --duration 1s --preload 10000 \
                 --preload-semaphore big --preload-expires-in 10m --rss-pid 42"
            ),
            &format!(
                "{u} --scenario waiters --clients 100 --duration 3s --cost-pid 42 --rss-pid 42"
            ),
            &format!("{u} --scenario idle --clients 600 --duration 15s"),
            &format!("{u} --scenario slowloris --bytes 1 --reconnect --clients 200 --duration 3s"),
            &format!("{u} --scenario slowloris --bytes 0 --clients 100 --duration 3s"),
            &format!("{u} --scenario mass-expiry --peers 2000 --clients 20 --expires-in 1s"),
            &format!("{u} --scenario mass-expiry --peers 50000 --clients 100"),
            &format!("{u} --scenario peers-listing --preload 5000 --keep-preload --duration 2s"),
            &format!(
                "{u} --scenario peers-listing --preload 5000 --preload-expires-in 10m \
                 --duration 10s"
            ),
            // scripts/bench --cluster and scripts/failover
            &format!(
                "{u} --url http://127.0.0.1:40001 --scenario cycle --clients 16 --duration 5s"
            ),
            &format!(
                "{u} --url http://127.0.0.1:40001 --url http://127.0.0.1:40002 \
                 --scenario etcd-lock --clients 1 --duration 5s"
            ),
            "--scenario fsync --dir /tmp/throttle-bench.x --repeat 1000",
            &format!(
                "--scenario failover --server-bin target/release/throttle --dir /tmp/f {u} \
                 --url http://127.0.0.1:40001 --url http://127.0.0.1:40002 --clients 16 \
                 --repeat 20 --hold 1ms"
            ),
        ] {
            run(line);
        }
    }

    #[test]
    fn help() {
        for line in ["--help", "-h", "--scenario cycle --help", "--help --bogus"] {
            assert_eq!(parse_line(line).ok(), Some(Command::Help), "{line:?}");
        }
    }

    #[test]
    fn required_options() {
        assert_eq!(error(URL), "missing --scenario");
        assert_eq!(
            error("--scenario cycle"),
            "missing --url: cycle needs a server"
        );
        assert_eq!(
            error("--scenario startup"),
            "missing --server-bin: startup needs the server executable"
        );
    }

    #[test]
    fn bad_values_name_the_option() {
        assert_eq!(
            error("--scenario cycles"),
            "invalid value \"cycles\" for --scenario: expected one of health, cycle, contended, \
             heartbeat, release-latency, expiry-latency, startup, waiters, idle, slowloris, \
             mass-expiry, peers-listing, etcd-lock, failover, fsync"
        );
        for option in [
            "--clients",
            "--repeat",
            "--parallel",
            "--preload-connections",
        ] {
            for value in ["0", "-1", "many"] {
                assert_eq!(
                    error(&format!("{URL} --scenario cycle {option} {value}")),
                    format!(
                        "invalid value {value:?} for {option}: expected a number of at least 1"
                    )
                );
            }
        }
        for (option, expected) in [
            ("--preload", "a number of peers"),
            ("--peers", "a number of peers"),
            ("--bytes", "a number of bytes"),
            ("--rss-pid", "a process id"),
            ("--cost-pid", "a process id"),
        ] {
            assert_eq!(
                error(&format!("{URL} --scenario cycle {option} -1")),
                format!("invalid value \"-1\" for {option}: expected {expected}")
            );
        }
        for option in [
            "--duration",
            "--block-for",
            "--expires-in",
            "--preload-expires-in",
            "--hold",
            "--backoff",
            "--backoff-max",
            "--budget",
            "--lease",
        ] {
            assert_eq!(
                error(&format!("{URL} --scenario cycle {option} 5parsecs")),
                format!("invalid value \"5parsecs\" for {option}: expected a duration such as 5s")
            );
        }
    }

    #[test]
    fn urls_may_repeat_for_the_members_of_a_cluster() {
        let options = run("--scenario cycle --url http://h:1 --url http://h:2 --url http://h:3");
        assert_eq!(options.urls, ["http://h:1", "http://h:2", "http://h:3"]);
    }

    #[test]
    fn what_the_cluster_scenarios_need() {
        assert_eq!(
            error("--scenario failover --dir d --url http://h:1 --url http://h:2"),
            "missing --server-bin: failover needs the server executable"
        );
        assert_eq!(
            error("--scenario failover --server-bin b --url http://h:1 --url http://h:2"),
            "missing --dir: failover needs a directory"
        );
        assert_eq!(
            error("--scenario failover --server-bin b --dir d --url http://h:1"),
            "failover needs one --url per member, at least 2"
        );
        assert_eq!(
            error("--scenario fsync"),
            "missing --dir: fsync needs a directory"
        );
        let fsync = run("--scenario fsync --dir /tmp");
        assert_eq!((fsync.urls.len(), fsync.repeat), (0, 1000));
        let failover = run(
            "--scenario failover --server-bin b --dir d --url http://h:1 --url http://h:2 \
             --url http://h:3",
        );
        let secs = Duration::from_secs;
        assert_eq!(
            (
                failover.semaphore.as_str(),
                failover.repeat,
                failover.block_for,
                failover.clients,
                failover.lease
            ),
            ("mutex", 20, secs(1), 16, secs(30))
        );
        assert_eq!(run(&format!("{URL} --scenario etcd-lock")).clients, 16);
    }

    #[test]
    fn mass_expiry_needs_a_holder_per_waiter() {
        assert_eq!(
            error(&format!(
                "{URL} --scenario mass-expiry --clients 10 --peers 9"
            )),
            "--peers 9 is fewer than --clients 10: mass-expiry needs at least one holder per waiter"
        );
        let options = run(&format!(
            "{URL} --scenario mass-expiry --clients 9 --peers 9"
        ));
        assert_eq!(options.peers, 9);
        // Other scenarios do not use --peers.
        run(&format!("{URL} --scenario idle --clients 10 --peers 9"));
    }

    #[test]
    fn missing_values() {
        assert_eq!(error("--url"), "missing argument for option '--url'");
        assert_eq!(
            error(&format!("{URL} --scenario cycle --duration")),
            "missing argument for option '--duration'"
        );
    }

    #[test]
    fn unknown_arguments_are_errors() {
        assert_eq!(error("--bogus"), "invalid option '--bogus'");
        assert_eq!(error("-x"), "invalid option '-x'");
        assert_eq!(error("cycle"), "unexpected argument \"cycle\"");
        assert_eq!(
            error("--keep-preload=yes"),
            "unexpected argument for option '--keep-preload': \"yes\""
        );
    }

    #[test]
    fn usage_names_every_option_and_fits_a_terminal() {
        let options = "--url --scenario --clients --duration --semaphore --block-for --repeat \
                       --parallel --expires-in --hold --backoff --backoff-max --peers --bytes \
                       --reconnect --budget --preload --preload-semaphore --preload-connections \
                       --preload-expires-in --keep-preload --rss-pid --cost-pid --server-bin \
                       --config --dir --lease --help";
        for option in options.split_whitespace() {
            assert!(
                USAGE.contains(&format!(" {option} ")),
                "USAGE lacks {option}"
            );
        }
        for scenario in Scenario::ALL {
            assert!(
                USAGE.contains(scenario.name()),
                "USAGE lacks {}",
                scenario.name()
            );
        }
        for line in USAGE.lines() {
            assert!(line.chars().count() <= 100, "too long: {line:?}");
        }
    }
}
