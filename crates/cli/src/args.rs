//! The command line of the client subcommands, `throttle lock` and `throttle status`: what the
//! user typed, with defaults filled in, and their help texts.
//!
//! Like the server's options (`throttle-server`'s `options.rs`), this only parses: it reads no
//! environment variables (`THROTTLE_URL` and `THROTTLE_TOKEN` are applied by `lib.rs`, where the
//! commands run), opens no sockets and prints nothing.

use std::ffi::OsString;
use std::str::FromStr;
use std::time::Duration;

use lexopt::ValueExt;
use lexopt::prelude::{Long, Short, Value};

/// What the user asked a client subcommand to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `throttle lock`: run a command holding a lock.
    Lock(LockOptions),
    /// `throttle status`: print the server's semaphores.
    Status(StatusOptions),
    /// `throttle help` (or `help serve`): the executable's own help, which is the server's.
    Help,
    /// Print the help of a subcommand and exit successfully.
    HelpFor(Topic),
}

/// A subcommand with a help text of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topic {
    Lock,
    Status,
}

impl Topic {
    /// The help text.
    pub fn help(self) -> &'static str {
        match self {
            Topic::Lock => LOCK_HELP,
            Topic::Status => STATUS_HELP,
        }
    }
}

/// The words that select a client subcommand when they come first on the command line; any
/// other command line is the server's.
pub const SUBCOMMANDS: [&str; 3] = ["lock", "status", "help"];

/// Parses a client subcommand's command line, its first word (one of [`SUBCOMMANDS`]) included,
/// without the program name. `None` if the first word is none of them.
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Option<Result<Command, lexopt::Error>> {
    let mut args = args.into_iter();
    let first = args.next()?;
    match first.to_str()? {
        "lock" => Some(parse_lock(args)),
        "status" => Some(parse_status(args)),
        "help" => Some(parse_help(args)),
        _ => None,
    }
}

/// `--server` and `--token`, as typed; `None` means the environment's or the default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Connection {
    /// `--server URL`.
    pub server: Option<String>,
    /// `--token T`.
    pub token: Option<String>,
}

/// What `throttle lock` does when the server says the lease was lost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OnLost {
    /// Stop the command: SIGTERM, SIGKILL after a grace (on Windows: terminate it).
    #[default]
    Kill,
    /// Let it run on, unprotected.
    Ignore,
}

impl FromStr for OnLost {
    type Err = String;

    fn from_str(text: &str) -> Result<OnLost, String> {
        match text {
            "kill" => Ok(OnLost::Kill),
            "ignore" => Ok(OnLost::Ignore),
            _ => Err(format!(
                "invalid value {text:?} for --on-lost: expected kill or ignore"
            )),
        }
    }
}

/// `throttle lock [OPTIONS] SEMAPHORE -- COMMAND [ARGS...]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockOptions {
    pub connection: Connection,
    pub semaphore: String,
    /// `-n/--count`, at least 1.
    pub count: i64,
    /// `--timeout`; `None` waits as long as it takes, zero asks once.
    pub timeout: Option<Duration>,
    /// `--expires-in`, the lease; `None` is the client's default.
    pub expires_in: Option<Duration>,
    pub on_lost: OnLost,
    /// `--exit-code-on-timeout`.
    pub timeout_exit_code: u8,
    /// The command and its arguments; never empty.
    pub command: Vec<OsString>,
}

/// `throttle status [OPTIONS]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatusOptions {
    pub connection: Connection,
    /// `--peers`: also list who holds and who waits.
    pub peers: bool,
    /// `--json`: print the server's JSON as it is.
    pub json: bool,
}

/// The exit code of `throttle lock` when `--timeout` runs out, as `flock -E` defaults it
/// (EX_TEMPFAIL of sysexits.h).
pub const DEFAULT_TIMEOUT_EXIT_CODE: u8 = 75;

/// `throttle help [TOPIC]`: the first word was `help`.
pub fn parse_help(args: impl IntoIterator<Item = OsString>) -> Result<Command, lexopt::Error> {
    let mut args = args.into_iter();
    let topic = args.next();
    if let Some(extra) = args.next() {
        return Err(format!("unexpected argument {extra:?} after the help topic").into());
    }
    match topic.as_ref().and_then(|topic| topic.to_str()) {
        None => Ok(Command::Help),
        Some("lock") => Ok(Command::HelpFor(Topic::Lock)),
        Some("status") => Ok(Command::HelpFor(Topic::Status)),
        Some("serve" | "server") => Ok(Command::Help),
        Some(_) => Err(format!(
            "no help for {:?}: try 'throttle help lock' or 'throttle help status'",
            topic.unwrap_or_default()
        )
        .into()),
    }
}

/// `throttle lock ...`, without the word `lock`.
///
/// Options may come before and after SEMAPHORE. The command starts after `--`, or at the first
/// word after SEMAPHORE that is not an option; everything from there on is the command's, as it
/// is (`throttle lock A ls -l` runs `ls -l`).
pub fn parse_lock(args: impl IntoIterator<Item = OsString>) -> Result<Command, lexopt::Error> {
    let mut parser = lexopt::Parser::from_args(args);
    let mut connection = Connection::default();
    let mut semaphore = None;
    let mut count = 1;
    let mut timeout = None;
    let mut expires_in = None;
    let mut on_lost = OnLost::default();
    let mut timeout_exit_code = DEFAULT_TIMEOUT_EXIT_CODE;
    let mut command = Vec::new();
    while let Some(arg) = parser.next()? {
        match arg {
            Short('n') | Long("count") => {
                let value = parser.value()?.string()?;
                count = match value.parse::<i64>() {
                    Ok(n) if n >= 1 => n,
                    _ => {
                        return Err(format!(
                            "invalid value {value:?} for --count: expected a whole number of \
                             at least 1"
                        )
                        .into());
                    }
                };
            }
            Long("timeout") => timeout = Some(duration(&mut parser, "--timeout", true)?),
            Long("expires-in") => {
                expires_in = Some(duration(&mut parser, "--expires-in", false)?);
            }
            Long("on-lost") => on_lost = parser.value()?.string()?.parse()?,
            Long("exit-code-on-timeout") => {
                let value = parser.value()?.string()?;
                timeout_exit_code = value.parse().map_err(|_| {
                    format!(
                        "invalid value {value:?} for --exit-code-on-timeout: expected an exit \
                         code from 0 to 255"
                    )
                })?;
            }
            Long("server") => connection.server = Some(parser.value()?.string()?),
            Long("token") => connection.token = Some(parser.value()?.string()?),
            Short('h') | Long("help") => return Ok(Command::HelpFor(Topic::Lock)),
            Value(word) if semaphore.is_none() => {
                semaphore = Some(word.string()?);
                // The command may follow without `--` (`throttle lock A ls -l`).
                let mut rest = parser.raw_args()?;
                if rest.next_if(|next| next == "--").is_some()
                    || rest.peek().is_some_and(|next| !starts_like_an_option(next))
                {
                    command.extend(rest);
                    break;
                }
            }
            Value(word) => {
                // After `--`: this word and everything after it is the command.
                command.push(word);
                command.extend(parser.raw_args()?);
                break;
            }
            _ => return Err(arg.unexpected()),
        }
    }
    let semaphore = semaphore
        .ok_or("missing SEMAPHORE: throttle lock [OPTIONS] SEMAPHORE -- COMMAND [ARGS...]")?;
    if command.is_empty() {
        return Err(format!(
            "missing the command to run: throttle lock [OPTIONS] {semaphore} -- COMMAND [ARGS...]"
        )
        .into());
    }
    Ok(Command::Lock(LockOptions {
        connection,
        semaphore,
        count,
        timeout,
        expires_in,
        on_lost,
        timeout_exit_code,
        command,
    }))
}

/// `throttle status ...`, without the word `status`.
pub fn parse_status(args: impl IntoIterator<Item = OsString>) -> Result<Command, lexopt::Error> {
    let mut parser = lexopt::Parser::from_args(args);
    let mut options = StatusOptions::default();
    while let Some(arg) = parser.next()? {
        match arg {
            Long("peers") => options.peers = true,
            Long("json") => options.json = true,
            Long("server") => options.connection.server = Some(parser.value()?.string()?),
            Long("token") => options.connection.token = Some(parser.value()?.string()?),
            Short('h') | Long("help") => return Ok(Command::HelpFor(Topic::Status)),
            _ => return Err(arg.unexpected()),
        }
    }
    Ok(Command::Status(options))
}

/// `-x`, `--x`, but not `-` alone (a command may be called that, or read stdin by it).
fn starts_like_an_option(word: &std::ffi::OsStr) -> bool {
    let word = word.as_encoded_bytes();
    word.len() > 1 && word[0] == b'-'
}

/// A duration such as `30s` or `1m 30s`; zero only if `zero_ok`.
fn duration(
    parser: &mut lexopt::Parser,
    option: &str,
    zero_ok: bool,
) -> Result<Duration, lexopt::Error> {
    let value = parser.value()?.string()?;
    match humantime::parse_duration(&value) {
        Ok(duration) if zero_ok || !duration.is_zero() => Ok(duration),
        _ => {
            let expected = if zero_ok {
                "a duration"
            } else {
                "a positive duration"
            };
            Err(
                format!("invalid value {value:?} for {option}: expected {expected} such as 30s")
                    .into(),
            )
        }
    }
}

/// `throttle help lock`, `throttle lock --help`.
pub const LOCK_HELP: &str = "\
Runs a command while holding a lock on a semaphore of a Throttle server.

USAGE:
    throttle lock [OPTIONS] SEMAPHORE -- COMMAND [ARGS...]

Waits until the lock is granted (in long polls, in the order of the requests), then runs
COMMAND with THROTTLE_PEER_ID and THROTTLE_FENCING_TOKEN in its environment while a heartbeat
keeps the lease alive, releases the lock when COMMAND exits, and exits with COMMAND's exit code
(128+N if it died of signal N). A restarted server gets the lock back (restore); given the
members of a cluster, the lock, its wait and COMMAND ride through the loss of one. SIGINT,
SIGTERM, SIGHUP and SIGQUIT are passed on to COMMAND (SIGINT and SIGQUIT only if they did not
come from the terminal, which sends them to COMMAND itself); while waiting, they end the wait
and nothing stays queued. On Windows, Ctrl+C reaches COMMAND from the console directly.

OPTIONS:
    -n, --count N             The count of the lock, at most the semaphore's max. [default: 1]
        --timeout DUR         Give up if the lock is not granted within DUR (0s: ask once);
                              nothing stays queued. [default: wait as long as it takes]
        --exit-code-on-timeout N
                              Exit code when --timeout runs out. [default: 75]
        --expires-in DUR      The lease: how long the server keeps the lock after heartbeats
                              stopped (this process was killed, the network is down). The
                              heartbeat runs every third of it. [default: 1m]
        --on-lost kill|ignore What to do with COMMAND if the lease is lost (the server says it
                              expired, so others may hold the lock now): kill sends SIGTERM,
                              SIGKILL 5s later, and exits 70; ignore lets it run on and exits
                              with its code. [default: kill]
        --server URL[,URL...] The server, or the members of a cluster separated by commas
                              (asked in turn: any one that answers will do).
                              [default: $THROTTLE_URL, else http://127.0.0.1:8000]
        --token T             Bearer token of a server with access control. Prefer the
                              variable: a command line is visible to every user of the host.
                              [default: $THROTTLE_TOKEN]
    -h, --help                Print this help and exit.

EXIT CODES:
    COMMAND's own       It ran: its exit code, or 128+N if it died of signal N
    1                   Any other failure (the message says which)
    2                   Invalid command line
    65                  Rejected: the count exceeds the semaphore's max (or another reason,
                        which the message names)
    66                  Unknown semaphore
    69                  Server unreachable or failing (after retrying for up to 30s, or
                        --timeout if shorter), or at its peer limit
    70                  Lease lost while COMMAND ran; COMMAND was stopped (--on-lost kill)
    75                  --timeout ran out (see --exit-code-on-timeout)
    76                  The answer was not Throttle's (is --server right?)
    77                  Unauthorized: missing or wrong token (401)
    126, 127            COMMAND could not be started, or was not found
    128+N               Signal N ended the wait for the lock

EXAMPLES:
    throttle lock --server http://throttle:8000 backups -- /usr/local/bin/backup.sh
    throttle lock --server http://a:8000,http://b:8000,http://c:8000 backups -- backup.sh
    throttle lock -n 2 --timeout 10m gpu -- python train.py --epochs 3
";

/// `throttle help status`, `throttle status --help`.
pub const STATUS_HELP: &str = "\
Shows the semaphores of a Throttle server: level, max, acquired and pending counts, the longest
wait. With --peers also who holds and who waits, with names and fencing tokens.

USAGE:
    throttle status [--server URL[,URL...]] [--token T] [--peers] [--json]

OPTIONS:
        --peers               Also list the locks: held and pending, with their peers.
                              Servers with many peers list a bounded selection (the oldest
                              waiters, the leases that run out first) and say so.
        --json                Print the server's JSON (GET /status.json) as it is, for scripts:
                              throttle status --json | jq '.semaphores[]'
        --server URL[,URL...] The server, or the members of a cluster separated by commas.
                              [default: $THROTTLE_URL, else http://127.0.0.1:8000]
        --token T             Bearer token of a server with access control.
                              [default: $THROTTLE_TOKEN]
    -h, --help                Print this help and exit.

EXIT CODES:
    0                   Printed
    1                   Any other failure (the message says which)
    2                   Invalid command line
    69                  Server unreachable or failing
    76                  The answer was not Throttle's (is --server right?)
    77                  Unauthorized: missing or wrong token (401)
";

#[cfg(test)]
mod tests {
    use super::*;

    fn args(words: &[&str]) -> Vec<OsString> {
        words.iter().map(OsString::from).collect()
    }

    /// Only a first word `lock`, `status` or `help` is the client's; any other command line
    /// (options first, a misspelt word, nothing) is left to the server's parser.
    #[test]
    fn only_a_first_word_selects_a_subcommand() {
        let client = |words: &[&str]| parse(args(words)).map(|parsed| parsed.unwrap());
        assert!(matches!(
            client(&["lock", "A", "--", "true"]),
            Some(Command::Lock(_))
        ));
        assert!(matches!(client(&["status"]), Some(Command::Status(_))));
        assert_eq!(client(&["help"]), Some(Command::Help));
        assert_eq!(
            client(&["help", "lock"]),
            Some(Command::HelpFor(Topic::Lock))
        );
        assert_eq!(
            client(&["lock", "--help"]),
            Some(Command::HelpFor(Topic::Lock))
        );
        assert_eq!(
            client(&["status", "-h"]),
            Some(Command::HelpFor(Topic::Status))
        );
        for server in [
            &[][..],
            &["--port", "1", "lock"],
            &["-c", "lock"],
            &["Lock"],
        ] {
            assert_eq!(client(server), None, "{server:?}");
        }
    }

    #[track_caller]
    fn lock(words: &[&str]) -> LockOptions {
        match parse_lock(args(words)) {
            Ok(Command::Lock(options)) => options,
            other => panic!("expected Lock for {words:?}, got {other:?}"),
        }
    }

    #[track_caller]
    fn lock_error(words: &[&str]) -> String {
        match parse_lock(args(words)) {
            Err(error) => error.to_string(),
            Ok(command) => panic!("expected an error for {words:?}, got {command:?}"),
        }
    }

    #[track_caller]
    fn status(words: &[&str]) -> StatusOptions {
        match parse_status(args(words)) {
            Ok(Command::Status(options)) => options,
            other => panic!("expected Status for {words:?}, got {other:?}"),
        }
    }

    #[test]
    fn lock_defaults() {
        let options = lock(&["A", "--", "true"]);
        assert_eq!(
            options,
            LockOptions {
                connection: Connection::default(),
                semaphore: "A".into(),
                count: 1,
                timeout: None,
                expires_in: None,
                on_lost: OnLost::Kill,
                timeout_exit_code: 75,
                command: args(&["true"]),
            }
        );
    }

    #[test]
    fn lock_options() {
        let options = lock(&[
            "-n",
            "3",
            "--timeout=1m 30s",
            "--expires-in",
            "10s",
            "--on-lost",
            "ignore",
            "--exit-code-on-timeout",
            "9",
            "--server",
            "http://h:1",
            "--token=t",
            "my sem/1",
            "--",
            "sh",
            "-c",
            "exit 3",
        ]);
        assert_eq!(options.count, 3);
        assert_eq!(options.timeout, Some(Duration::from_secs(90)));
        assert_eq!(options.expires_in, Some(Duration::from_secs(10)));
        assert_eq!(options.on_lost, OnLost::Ignore);
        assert_eq!(options.timeout_exit_code, 9);
        assert_eq!(options.connection.server.as_deref(), Some("http://h:1"));
        assert_eq!(options.connection.token.as_deref(), Some("t"));
        assert_eq!(options.semaphore, "my sem/1");
        assert_eq!(options.command, args(&["sh", "-c", "exit 3"]));
        assert_eq!(
            lock(&["A", "--timeout", "0s", "--", "x"]).timeout,
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn the_command_is_taken_as_it_is() {
        // Options of the command are the command's, with or without `--`.
        assert_eq!(
            lock(&["A", "ls", "-l", "--", "-n"]).command,
            args(&["ls", "-l", "--", "-n"])
        );
        assert_eq!(lock(&["A", "--", "-n", "2"]).command, args(&["-n", "2"]));
        assert_eq!(lock(&["A", "--", "--", "x"]).command, args(&["--", "x"]));
        // Options may follow the semaphore until the command starts.
        let options = lock(&["A", "-n", "2", "--", "ls", "--help"]);
        assert_eq!(
            (options.count, options.command),
            (2, args(&["ls", "--help"]))
        );
        // A semaphore that looks like an option, after `--`.
        let options = lock(&["--", "-odd", "--", "true"]);
        assert_eq!(
            (options.semaphore.as_str(), options.command),
            ("-odd", args(&["true"]))
        );
        assert_eq!(lock(&["--", "A", "true"]).command, args(&["true"]));
        assert_eq!(lock(&["A", "-"]).command, args(&["-"]));
    }

    #[test]
    fn lock_errors_name_the_cause() {
        assert_eq!(
            lock_error(&[]),
            "missing SEMAPHORE: throttle lock [OPTIONS] SEMAPHORE -- COMMAND [ARGS...]"
        );
        assert_eq!(
            lock_error(&["A"]),
            "missing the command to run: throttle lock [OPTIONS] A -- COMMAND [ARGS...]"
        );
        assert!(lock_error(&["A", "--"]).starts_with("missing the command"));
        assert!(lock_error(&["-n", "0", "A", "--", "x"]).contains("at least 1"));
        assert!(lock_error(&["-n", "two", "A", "--", "x"]).contains("--count"));
        assert!(lock_error(&["--timeout", "soon", "A", "--", "x"]).contains("--timeout"));
        assert!(lock_error(&["--expires-in", "0s", "A", "--", "x"]).contains("positive"));
        assert_eq!(
            lock_error(&["--on-lost", "pray", "A", "--", "x"]),
            "invalid value \"pray\" for --on-lost: expected kill or ignore"
        );
        assert!(
            lock_error(&["--exit-code-on-timeout", "256", "A", "--", "x"]).contains("0 to 255")
        );
        assert_eq!(
            lock_error(&["--bogus", "A", "--", "x"]),
            "invalid option '--bogus'"
        );
        assert_eq!(
            lock_error(&["--server"]),
            "missing argument for option '--server'"
        );
        // Server options are not client options.
        assert_eq!(
            lock_error(&["--port", "1", "A", "--", "x"]),
            "invalid option '--port'"
        );
    }

    #[test]
    fn help_wins() {
        assert_eq!(
            parse_lock(args(&["--help"])).unwrap(),
            Command::HelpFor(Topic::Lock)
        );
        assert_eq!(
            parse_lock(args(&["-n", "2", "-h"])).unwrap(),
            Command::HelpFor(Topic::Lock)
        );
        // After the command starts, `--help` is the command's.
        assert_eq!(
            lock(&["A", "ls", "--help"]).command,
            args(&["ls", "--help"])
        );
        assert_eq!(
            parse_status(args(&["--help"])).unwrap(),
            Command::HelpFor(Topic::Status)
        );
        assert_eq!(parse_help(args(&[])).unwrap(), Command::Help);
        assert_eq!(
            parse_help(args(&["lock"])).unwrap(),
            Command::HelpFor(Topic::Lock)
        );
        assert_eq!(
            parse_help(args(&["status"])).unwrap(),
            Command::HelpFor(Topic::Status)
        );
        assert!(
            parse_help(args(&["bogus"]))
                .unwrap_err()
                .to_string()
                .contains("no help")
        );
        assert!(parse_help(args(&["lock", "x"])).is_err());
    }

    #[test]
    fn status_options() {
        assert_eq!(status(&[]), StatusOptions::default());
        let options = status(&["--peers", "--json", "--server=http://h:1", "--token", "t"]);
        assert!(options.peers && options.json);
        assert_eq!(options.connection.server.as_deref(), Some("http://h:1"));
        assert_eq!(options.connection.token.as_deref(), Some("t"));
        assert!(parse_status(args(&["A"])).is_err());
        assert!(parse_status(args(&["--count", "1"])).is_err());
    }

    #[test]
    fn help_texts_fit_a_terminal_and_name_every_option() {
        for help in [LOCK_HELP, STATUS_HELP] {
            for line in help.lines() {
                assert!(line.chars().count() <= 100, "too long: {line:?}");
            }
        }
        for needle in [
            "-n, --count N",
            "--timeout DUR",
            "--exit-code-on-timeout N",
            "--expires-in DUR",
            "--on-lost kill|ignore",
            "--server URL[,URL...]",
            "--token T",
            "THROTTLE_URL",
            "THROTTLE_TOKEN",
            "THROTTLE_PEER_ID",
            "THROTTLE_FENCING_TOKEN",
        ] {
            assert!(LOCK_HELP.contains(needle), "lock --help lacks {needle:?}");
        }
        for needle in ["--peers", "--json", "--server URL[,URL...]", "--token T"] {
            assert!(
                STATUS_HELP.contains(needle),
                "status --help lacks {needle:?}"
            );
        }
    }
}
