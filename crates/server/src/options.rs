//! The server's command line: what the user typed, turned into a [`Command`], and the help text
//! of the executable.
//!
//! `throttle [OPTIONS]` serves. The executable (`src/main.rs`) sends a first word `lock`,
//! `status` or `help` to the client subcommands (`throttle-cli`); every other command line comes
//! here, so every command line that started the server before still does. This module only
//! parses arguments. It reads no files, opens no sockets and prints nothing: the executable
//! decides what to do with the result (print [`HELP`], print the version, or serve), and prints
//! the error if parsing fails. `--help` and `--version` are returned as commands of their own, so
//! they work even when the configuration file is broken.

use std::ffi::OsString;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use lexopt::ValueExt;

/// What the server's command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Run the server with these options.
    Serve(Options),
    /// Print [`HELP`] and exit successfully.
    Help,
    /// Print the version and exit successfully.
    Version,
}

/// Options of the server, as given on the command line (with defaults filled in).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// The configuration file named with `-c/--configuration`. `None` means the default,
    /// `throttle.toml` in the working directory, which may be missing (that is only a warning);
    /// a named file must exist.
    pub configuration: Option<PathBuf>,
    /// The address to listen on, an IP address or a host name.
    pub address: String,
    /// The TCP port to listen on; 0 lets the operating system pick a free one.
    pub port: u16,
    /// The number of worker threads serving requests; at least 1. They never wait for a lock:
    /// long polls wait on threads of their own, at most `max_waiters`. `None`: the default,
    /// [`DEFAULT_WORKERS`], or [`DEFAULT_MEMBER_WORKERS`] on a cluster member.
    pub workers: Option<usize>,
    /// Long polls waiting at once at most; beyond it a long poll is answered 202 at once.
    pub max_waiters: usize,
    /// Open connections served at once; further ones are closed when accepted.
    pub max_connections: usize,
    /// How long a keep-alive connection may sit idle, and one read or write may block.
    pub idle_timeout: Duration,
    /// How long a request's head may take from its first byte, and its body to arrive.
    pub request_timeout: Duration,
    /// Live peers at most; `new_peer` and `restore` answer 503 beyond it.
    pub max_peers: usize,
    /// Restarts (`persistence.rs`): the state file named with `--state-file`, which wins over
    /// `[state] file` in the configuration.
    pub state_file: Option<PathBuf>,
    /// `--state-file-reset`: start empty if the state file cannot be read or parsed, instead of
    /// refusing to start.
    pub state_file_reset: bool,
    /// `--grace DUR`: caps the grace period after an unclean stop, and turns one on for every
    /// start without a state file. `Some(0s)` turns grace periods off.
    pub grace: Option<Duration>,
}

/// The address the server listens on by default: only the local machine, so that starting the
/// server by hand never exposes it to the network by accident.
pub const DEFAULT_ADDRESS: &str = "127.0.0.1";

/// The port the server listens on by default, the one Throttle has always used.
pub const DEFAULT_PORT: u16 = 8000;

/// The default size of the worker pool.
///
/// Workers only parse, update the state and write a short answer; none of them ever waits for
/// a lock (long polls wait on the waiting pool's threads), so a few per CPU keep every CPU
/// busy. Four fit the small 2-CPU hosts Throttle usually runs on; more CPUs want about twice
/// their number (`--workers`).
pub const DEFAULT_WORKERS: usize = 4;

/// The default number of workers of a cluster member. Each change waits on its worker until
/// its entry is on a majority's disks (an fsync and a round trip, a millisecond or more), so
/// the requests in progress at once, which share one fsync, are as many as the workers.
pub const DEFAULT_MEMBER_WORKERS: usize = 32;

/// The default bound on long polls waiting at once. Each waits on a thread of its own with a
/// small stack (a few pages resident), so tens of thousands fit in little memory; past the
/// bound a long poll is answered 202 at once and the client asks again.
pub const DEFAULT_MAX_WAITERS: usize = 20_000;

/// The default limit of open connections. A connection costs a file descriptor and a small
/// record in the readiness loop (no thread), so this is far above the number of processes
/// that usually share one Throttle. At start the server raises its open-files limit as far as
/// the system allows and lowers this limit to fit (and says so).
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;

/// The default idle timeout of a keep-alive connection: clients reconnect transparently, and a
/// connection that sends nothing cannot hold a thread longer than this.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// The default time a request may take to arrive once it started: legitimate requests take
/// microseconds; a client sending one byte a second is cut off.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The default cap on live peers. A peer with a lock costs about 0.4 KB, so the cap bounds the
/// memory a flood of `new_peer` can take to a few hundred megabytes.
pub const DEFAULT_MAX_PEERS: usize = 500_000;

/// The text printed by `--help`. A test checks that the defaults named here match the constants.
pub const HELP: &str = concat!(
    "throttle ",
    env!("CARGO_PKG_VERSION"),
    "\n",
    "Semaphores for distributed systems, served over HTTP.

USAGE:
    throttle [OPTIONS]                          Serve the semaphores of the configuration
    throttle lock [OPTIONS] SEMAPHORE -- COMMAND
                                                Run COMMAND holding a lock of a server
    throttle status [--peers] [--json]          Show a server's semaphores and locks
    throttle help lock|status                   Explain a subcommand

OPTIONS (of the server):
    -c, --configuration FILE  Configuration file (TOML) with the semaphores and logging.
                              [default: throttle.toml in the working directory; if that file
                              is missing the server starts without semaphores and warns.
                              A file named with this option must exist.]
        --address ADDR        Address to listen on. [default: 127.0.0.1]
    -p, --port PORT           Port to listen on; 0 picks a free port. [default: 8000]
        --workers N           Worker threads serving requests, at least 1. They never wait
                              for a lock; about twice the CPUs is right. [default: 4; 32 on
                              a cluster member, whose workers wait for the disks]
        --max-waiters N       Long polls (block_for) waiting at once, each on a small thread
                              of its own; more are answered 202 at once. [default: 20000]
        --max-connections N   Open connections served at once; more are closed at once.
                              Lowered at start to fit the open-files limit. [default: 10000]
        --idle-timeout DUR    Close keep-alive connections idle this long; also bounds one
                              blocked read or write. [default: 60s]
        --request-timeout DUR Time a request head may take from its first byte; 408
                              after. [default: 10s]
        --max-peers N         Live peers at most; new_peer and restore answer 503 beyond.
                              [default: 500000]
        --state-file PATH     Keep peers and their locks across restarts in this file:
                              written at shutdown, loaded at start (also `[state] file`).
                              [default: none, nothing is kept]
        --state-file-reset    Start empty if the state file is unreadable or corrupt
                              (otherwise that is a startup error).
        --grace DUR           Grant no new locks for this long after a start, so holders can
                              restore first: caps the grace period after an unclean stop
                              (which lasts the longest lease granted before), and turns it on
                              for every start without a state file. 0s turns it off.
                              [default: with a state file, the longest lease; else none]
    -h, --help                Print this help and exit.
    -V, --version             Print the version and exit.

ENVIRONMENT:
    THROTTLE_LOG              Log level on stderr: ERROR, WARN, INFO, DEBUG, TRACE or OFF.
                              Overrides [logging.stderr] level in the configuration.
                              [default: INFO]
    THROTTLE_TOKEN            Turns on access control: every route but / and /health needs
                              Authorization: Bearer <token>. Overrides [auth] token.
    THROTTLE_CLUSTER_SECRET   The secret a cluster's members share (at least 16 bytes).
                              Overrides [cluster] secret.

EXAMPLES:
    throttle --configuration /etc/throttle/throttle.toml --address 0.0.0.0 --port 8000
    throttle lock --server http://throttle.internal:8000 backups -- /usr/local/bin/backup.sh
    throttle status --server http://throttle.internal:8000 --peers
"
);

impl Default for Options {
    fn default() -> Self {
        Options {
            configuration: None,
            address: DEFAULT_ADDRESS.to_owned(),
            port: DEFAULT_PORT,
            workers: None,
            max_waiters: DEFAULT_MAX_WAITERS,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            max_peers: DEFAULT_MAX_PEERS,
            state_file: None,
            state_file_reset: false,
            grace: None,
        }
    }
}

/// Parses the server's command line, without the program name and without a subcommand word
/// (the executable picks the subcommand, `src/main.rs`).
///
/// `--help` and `--version` win as soon as they are seen; arguments after them are not looked
/// at. Positional arguments and unknown options are errors.
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Command, lexopt::Error> {
    use lexopt::prelude::{Long, Short};

    let mut options = Options::default();
    let mut parser = lexopt::Parser::from_args(args);
    while let Some(arg) = parser.next()? {
        match arg {
            Short('c') | Long("configuration") => {
                options.configuration = Some(parser.value()?.into());
            }
            Long("address") => options.address = parser.value()?.string()?,
            Short('p') | Long("port") => {
                options.port = number(&mut parser, "--port", "a port number from 0 to 65535")?;
            }
            Long("workers") => {
                let workers = number(&mut parser, "--workers", "a number of threads")?;
                if workers == 0 {
                    return Err(
                        "invalid value \"0\" for --workers: the server needs at least \
                                one worker thread"
                            .into(),
                    );
                }
                options.workers = Some(workers);
            }
            Long("max-waiters") => {
                options.max_waiters =
                    at_least_one(&mut parser, "--max-waiters", "a number of long polls")?;
            }
            Long("max-connections") => {
                options.max_connections =
                    at_least_one(&mut parser, "--max-connections", "a number of connections")?;
            }
            Long("max-peers") => {
                options.max_peers = at_least_one(&mut parser, "--max-peers", "a number of peers")?;
            }
            Long("idle-timeout") => options.idle_timeout = duration(&mut parser, "--idle-timeout")?,
            Long("request-timeout") => {
                options.request_timeout = duration(&mut parser, "--request-timeout")?;
            }
            Long("state-file") => options.state_file = Some(parser.value()?.into()),
            Long("state-file-reset") => options.state_file_reset = true,
            Long("grace") => {
                let value = parser.value()?.string()?;
                let grace = humantime::parse_duration(&value).map_err(|_| {
                    format!("invalid value {value:?} for --grace: expected a duration such as 30s")
                })?;
                options.grace = Some(grace);
            }
            Short('h') | Long("help") => return Ok(Command::Help),
            Short('V') | Long("version") => return Ok(Command::Version),
            _ => return Err(arg.unexpected()),
        }
    }
    Ok(Command::Serve(options))
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
fn at_least_one(
    parser: &mut lexopt::Parser,
    option: &str,
    expected: &str,
) -> Result<usize, lexopt::Error> {
    match number(parser, option, expected)? {
        0 => Err(format!("invalid value \"0\" for {option}: expected at least 1").into()),
        n => Ok(n),
    }
}

/// A positive duration such as `30s` or `1m 30s`.
fn duration(parser: &mut lexopt::Parser, option: &str) -> Result<Duration, lexopt::Error> {
    let value = parser.value()?.string()?;
    match humantime::parse_duration(&value) {
        Ok(duration) if !duration.is_zero() => Ok(duration),
        _ => Err(format!(
            "invalid value {value:?} for {option}: expected a positive duration such as 30s"
        )
        .into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn serve(args: &[&str]) -> Options {
        match parse(args.iter().map(OsString::from)) {
            Ok(Command::Serve(options)) => options,
            other => panic!("expected Serve for {args:?}, got {other:?}"),
        }
    }

    #[track_caller]
    fn error(args: &[&str]) -> String {
        match parse(args.iter().map(OsString::from)) {
            Err(error) => error.to_string(),
            Ok(command) => panic!("expected an error for {args:?}, got {command:?}"),
        }
    }

    #[track_caller]
    fn command(args: &[&str]) -> Command {
        parse(args.iter().map(OsString::from)).unwrap()
    }

    #[test]
    fn no_arguments_give_the_defaults() {
        let options = serve(&[]);
        assert_eq!(options.configuration, None);
        assert_eq!(options.address, "127.0.0.1");
        assert_eq!(options.port, 8000);
        assert_eq!(options.workers, None);
        assert_eq!(options.max_waiters, 20_000);
        assert_eq!(options, Options::default());
    }

    #[test]
    fn limits() {
        let options = serve(&[
            "--max-connections",
            "10",
            "--max-peers=7",
            "--idle-timeout",
            "5s",
            "--request-timeout",
            "1m 30s",
        ]);
        assert_eq!(options.max_connections, 10);
        assert_eq!(options.max_peers, 7);
        assert_eq!(options.idle_timeout, Duration::from_secs(5));
        assert_eq!(options.request_timeout, Duration::from_secs(90));
        assert!(error(&["--max-peers", "0"]).contains("--max-peers"));
        assert!(error(&["--idle-timeout", "soon"]).contains("--idle-timeout"));
        assert!(error(&["--request-timeout", "0s"]).contains("positive duration"));
    }

    #[test]
    fn restarts() {
        let options = serve(&["--state-file", "/var/lib/throttle/state.json", "--grace=1m"]);
        assert_eq!(
            options.state_file,
            Some("/var/lib/throttle/state.json".into())
        );
        assert_eq!(options.grace, Some(Duration::from_secs(60)));
        assert!(!options.state_file_reset);
        assert!(serve(&["--state-file-reset"]).state_file_reset);
        assert_eq!(serve(&["--grace", "0s"]).grace, Some(Duration::ZERO));
        assert!(error(&["--grace", "soon"]).contains("--grace"));
        assert_eq!(
            error(&["--state-file"]),
            "missing argument for option '--state-file'"
        );
    }

    #[test]
    fn configuration_short_and_long() {
        let expected = Some(PathBuf::from("conf/a b.toml"));
        assert_eq!(serve(&["-c", "conf/a b.toml"]).configuration, expected);
        assert_eq!(
            serve(&["--configuration", "conf/a b.toml"]).configuration,
            expected
        );
        assert_eq!(
            serve(&["--configuration=conf/a b.toml"]).configuration,
            expected
        );
        assert_eq!(serve(&["-cconf/a b.toml"]).configuration, expected);
    }

    #[test]
    fn address() {
        assert_eq!(serve(&["--address", "0.0.0.0"]).address, "0.0.0.0");
        assert_eq!(serve(&["--address=::1"]).address, "::1");
    }

    #[test]
    fn port_short_and_long() {
        assert_eq!(serve(&["-p", "9000"]).port, 9000);
        assert_eq!(serve(&["--port", "9000"]).port, 9000);
        assert_eq!(serve(&["--port=0"]).port, 0);
        assert_eq!(serve(&["--port", "65535"]).port, 65535);
    }

    #[test]
    fn workers() {
        assert_eq!(serve(&["--workers", "1"]).workers, Some(1));
        assert_eq!(serve(&["--workers=500"]).workers, Some(500));
    }

    #[test]
    fn all_options_together() {
        let options = serve(&[
            "-c",
            "x.toml",
            "--address",
            "10.0.0.1",
            "-p",
            "1234",
            "--workers",
            "8",
        ]);
        assert_eq!(
            options,
            Options {
                configuration: Some("x.toml".into()),
                address: "10.0.0.1".to_owned(),
                port: 1234,
                workers: Some(8),
                ..Options::default()
            }
        );
    }

    #[test]
    fn the_last_occurrence_of_an_option_wins() {
        assert_eq!(serve(&["-p", "1", "--port", "2"]).port, 2);
    }

    #[test]
    fn help_and_version() {
        assert_eq!(command(&["-h"]), Command::Help);
        assert_eq!(command(&["--help"]), Command::Help);
        assert_eq!(command(&["-V"]), Command::Version);
        assert_eq!(command(&["--version"]), Command::Version);
        assert_eq!(
            command(&["--port", "1", "--help", "--bogus"]),
            Command::Help
        );
    }

    #[test]
    fn subcommand_words_are_not_options() {
        // `throttle lock ...` never reaches this parser (the executable dispatches first), so a
        // word is an unexpected argument here, wherever it stands.
        assert_eq!(
            error(&["--port", "1", "lock"]),
            "unexpected argument \"lock\""
        );
        assert_eq!(error(&["Lock"]), "unexpected argument \"Lock\"");
    }

    #[test]
    fn zero_workers_are_rejected() {
        assert_eq!(
            error(&["--workers", "0"]),
            "invalid value \"0\" for --workers: the server needs at least one worker thread"
        );
    }

    #[test]
    fn bad_numbers_name_the_option() {
        assert_eq!(
            error(&["--port", "70000"]),
            "invalid value \"70000\" for --port: expected a port number from 0 to 65535"
        );
        assert_eq!(
            error(&["-p", "http"]),
            "invalid value \"http\" for --port: expected a port number from 0 to 65535"
        );
        assert_eq!(
            error(&["--workers", "-3"]),
            "invalid value \"-3\" for --workers: expected a number of threads"
        );
    }

    #[test]
    fn missing_values() {
        assert_eq!(error(&["--port"]), "missing argument for option '--port'");
        assert_eq!(error(&["-c"]), "missing argument for option '-c'");
        assert_eq!(
            error(&["--address"]),
            "missing argument for option '--address'"
        );
        assert_eq!(
            error(&["--workers"]),
            "missing argument for option '--workers'"
        );
    }

    #[test]
    fn unknown_arguments_are_errors() {
        assert_eq!(error(&["--bogus"]), "invalid option '--bogus'");
        assert_eq!(error(&["-x"]), "invalid option '-x'");
        assert_eq!(error(&["serve"]), "unexpected argument \"serve\"");
        assert_eq!(error(&["-p", "1", "2"]), "unexpected argument \"2\"");
        assert_eq!(error(&["--", "x"]), "unexpected argument \"x\"");
    }

    #[test]
    fn help_names_every_option_and_its_default() {
        for needle in [
            "-c, --configuration FILE",
            "throttle.toml",
            "--address ADDR",
            "-p, --port PORT",
            "--workers N",
            "-h, --help",
            "-V, --version",
            "THROTTLE_LOG",
            env!("CARGO_PKG_VERSION"),
            &format!("[default: {DEFAULT_ADDRESS}]"),
            &format!("[default: {DEFAULT_PORT}]"),
            &format!("[default: {DEFAULT_WORKERS}; {DEFAULT_MEMBER_WORKERS} on"),
            "--max-waiters N",
            "[default: 20000]",
            "--max-connections N",
            "[default: 10000]",
            "throttle lock [OPTIONS] SEMAPHORE -- COMMAND",
            "throttle status",
            "throttle help lock|status",
        ] {
            assert!(HELP.contains(needle), "--help lacks {needle:?}");
        }
    }

    #[test]
    fn help_fits_a_terminal() {
        for line in HELP.lines() {
            assert!(line.chars().count() <= 100, "too long: {line:?}");
        }
    }
}
