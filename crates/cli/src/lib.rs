//! The command-line client of a Throttle server: `throttle lock` (`lock.rs`, with the child
//! process in `child.rs`) and `throttle status` (`status.rs`), their command line (`args.rs`).
//!
//! They talk to a server through the project's Rust client crate (`clients/rust`,
//! `throttle_client`), the same code Rust programs use: its lock guard waits in long polls,
//! keeps the lease with a heartbeat, restores after a server restart and reports a lost lease.
//! This crate knows nothing of the server's code, and the server does not depend on it (nor on
//! the client crate). It installs its own signal handling; the server's is never set up in a
//! client process. The executable installs the stderr logger before it calls [`lock`] or
//! [`status`].
//!
//! This file holds what both subcommands share: where the server is (`--server`,
//! `THROTTLE_URL`), the token (`--token`, `THROTTLE_TOKEN`), and how a failure becomes one line
//! on stderr and an exit code ([`exit`]).
#![forbid(unsafe_code)]

pub mod args;
mod child;
mod lock;
mod status;

use std::process::ExitCode;

use throttle_client::{Client, Error};

pub use crate::args::{Command, LockOptions, OnLost, StatusOptions, Topic, parse};

use crate::args::Connection;

/// The exit codes of the subcommands (besides the command's own, which `throttle lock` passes
/// on). README and the help texts list them; their numbers follow sysexits.h where one fits.
pub mod exit {
    /// A failure without a code of its own.
    pub const FAILURE: u8 = 1;
    /// An invalid command line (as for the server).
    pub const USAGE: u8 = 2;
    /// The server rejected the request: a count above the semaphore's max, mostly.
    pub const REJECTED: u8 = 65;
    /// No semaphore of that name is configured.
    pub const UNKNOWN_SEMAPHORE: u8 = 66;
    /// The server cannot be reached, fails (5xx), or holds its maximum of peers.
    pub const UNAVAILABLE: u8 = 69;
    /// The lease was lost while the command ran (the server says the peer expired).
    pub const LOST: u8 = 70;
    /// The answer is not one of a Throttle server.
    pub const UNEXPECTED: u8 = 76;
    /// The server needs a token, and the request had none or the wrong one (401).
    pub const UNAUTHORIZED: u8 = 77;
    /// The command was found but could not be started.
    pub const CANNOT_RUN: u8 = 126;
    /// The command was not found.
    pub const NOT_FOUND: u8 = 127;
    /// Added to a signal's number: the command died of it, or it ended the wait.
    pub const SIGNAL_BASE: u8 = 128;
}

/// The server asked when neither `--server` nor `THROTTLE_URL` names one: the server's own
/// default address and port.
pub const DEFAULT_SERVER: &str = throttle_client::DEFAULT_URL;

/// The environment variable that names the server, or the members of a cluster separated by
/// commas.
pub const URL_VARIABLE: &str = throttle_client::URL_VARIABLE;

/// `throttle lock`. The caller has installed a logger: the client crate reports failed
/// heartbeats and restores through `log`.
pub fn lock(options: LockOptions) -> ExitCode {
    lock::run(options)
}

/// `throttle status`.
pub fn status(options: StatusOptions) -> ExitCode {
    status::run(options)
}

/// Why a subcommand stopped: the exit code and one line for stderr.
#[derive(Debug)]
struct Failure {
    code: u8,
    message: String,
}

impl Failure {
    fn new(code: u8, message: impl Into<String>) -> Failure {
        Failure {
            code,
            message: message.into(),
        }
    }

    /// Prints the message as `throttle SUBCOMMAND: ...` and returns the code.
    fn report(self, subcommand: &str) -> ExitCode {
        eprintln!("throttle {subcommand}: {}", self.message);
        ExitCode::from(self.code)
    }
}

/// A client for the server of `connection`, and its URL as given (several members' URLs
/// separated by commas: the client asks them in turn). The token comes from `--token`, else
/// `THROTTLE_TOKEN`; an empty one is none.
fn connect(connection: &Connection) -> (Client, String) {
    let url = connection
        .server
        .clone()
        .or_else(|| std::env::var(URL_VARIABLE).ok())
        .filter(|url| !url.is_empty())
        .unwrap_or_else(|| DEFAULT_SERVER.to_owned());
    let token = connection
        .token
        .clone()
        .or_else(|| std::env::var(throttle_client::TOKEN_VARIABLE).ok());
    let client = Client::new(&url);
    let client = match token {
        Some(token) => client.with_token(token),
        None => client,
    };
    (client, url)
}

/// The exit code and the line for an error of the client crate. `semaphore` is the one asked
/// for, if any.
fn failure(error: Error, url: &str, semaphore: Option<&str>) -> Failure {
    let name = |semaphore: Option<&str>| semaphore.map(|s| format!(" {s:?}")).unwrap_or_default();
    match error {
        Error::UnknownSemaphore => Failure::new(
            exit::UNKNOWN_SEMAPHORE,
            format!(
                "unknown semaphore{} on {url}: it is not in the server's configuration",
                name(semaphore)
            ),
        ),
        Error::CountTooLarge { message } => Failure::new(exit::REJECTED, message),
        Error::Unauthorized => Failure::new(
            exit::UNAUTHORIZED,
            format!("unauthorized by {url}: missing or wrong token (--token, THROTTLE_TOKEN)"),
        ),
        // It names the server and says why: `server URL unreachable within 30s: ...`, or each
        // member tried: `no member reachable within 30s (URL: ..., URL: ...)`.
        Error::Transport(error) => Failure::new(exit::UNAVAILABLE, error.to_string()),
        Error::Server { status, message } => Failure::new(
            exit::UNAVAILABLE,
            format!("server error {status} from {url}: {message}"),
        ),
        Error::TooManyPeers { message } => Failure::new(exit::UNAVAILABLE, message),
        Error::UnexpectedResponse { status, body } => {
            let body: String = body.chars().take(80).collect();
            Failure::new(
                exit::UNEXPECTED,
                format!(
                    "unexpected answer from {url} (status {status}: {body:?}): is it a Throttle server?"
                ),
            )
        }
        Error::LockLost => Failure::new(
            exit::LOST,
            format!(
                "lost the lock{}: the server says its lease expired",
                name(semaphore)
            ),
        ),
        Error::InvalidRequest { status: 404, .. } => Failure::new(
            exit::UNEXPECTED,
            format!(
                "{url} does not know this request (404): is it a Throttle server, and new enough?"
            ),
        ),
        error @ (Error::InvalidRequest { .. }
        | Error::LockHierarchyViolation { .. }
        | Error::SecondPendingLock { .. }
        | Error::LockCountChange { .. }
        | Error::RestoreConflict { .. }
        | Error::UnknownPeer
        | Error::AlreadyLocked { .. }) => {
            Failure::new(exit::REJECTED, format!("rejected by {url}: {error}"))
        }
        error => Failure::new(exit::FAILURE, error.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(error: Error, code: u8, message: &str) {
        let failure = failure(error, "http://h:1", Some("A"));
        assert_eq!((failure.code, failure.message.as_str()), (code, message));
    }

    #[test]
    fn each_cause_has_its_code_and_one_line() {
        check(
            Error::UnknownSemaphore,
            66,
            "unknown semaphore \"A\" on http://h:1: it is not in the server's configuration",
        );
        check(
            Error::CountTooLarge {
                message: "Count too large: 5 > 1".into(),
            },
            65,
            "Count too large: 5 > 1",
        );
        check(
            Error::Unauthorized,
            77,
            "unauthorized by http://h:1: missing or wrong token (--token, THROTTLE_TOKEN)",
        );
        check(
            Error::Server {
                status: 503,
                message: "Shutting down".into(),
            },
            69,
            "server error 503 from http://h:1: Shutting down",
        );
        check(
            Error::LockLost,
            70,
            "lost the lock \"A\": the server says its lease expired",
        );
        check(
            Error::InvalidRequest {
                status: 400,
                message: "Invalid count".into(),
            },
            65,
            "rejected by http://h:1: request rejected with status 400: Invalid count",
        );
        let failure = failure(
            Error::UnexpectedResponse {
                status: 200,
                body: "<html>\n".into(),
            },
            "http://h:1",
            None,
        );
        assert_eq!(failure.code, 76);
        assert!(!failure.message.contains('\n'), "{failure:?}");
    }

    /// Every exit code of `throttle lock` but those of signals, in the order its help lists them.
    const LOCK_CODES: [u8; 11] = [
        exit::FAILURE,
        exit::USAGE,
        exit::REJECTED,
        exit::UNKNOWN_SEMAPHORE,
        exit::UNAVAILABLE,
        exit::LOST,
        crate::args::DEFAULT_TIMEOUT_EXIT_CODE,
        exit::UNEXPECTED,
        exit::UNAUTHORIZED,
        exit::CANNOT_RUN,
        exit::NOT_FOUND,
    ];

    #[test]
    fn the_codes_are_distinct() {
        let mut codes = LOCK_CODES.to_vec();
        codes.push(exit::SIGNAL_BASE);
        let all = codes.len();
        codes.sort();
        codes.dedup();
        assert_eq!(codes.len(), all);
    }

    /// The codes in the EXIT CODES table of a help text: the first words of its lines.
    fn listed_codes(help: &str) -> Vec<u8> {
        let table = help.split("EXIT CODES:\n").nth(1).unwrap();
        let table = table.split("\n\n").next().unwrap();
        table
            .lines()
            .flat_map(|line| line.trim().split("  ").next().unwrap().split(", "))
            .filter_map(|word| word.parse().ok())
            .collect()
    }

    #[test]
    fn the_help_lists_every_code() {
        use crate::args::{LOCK_HELP, STATUS_HELP};
        assert_eq!(listed_codes(LOCK_HELP), LOCK_CODES);
        assert_eq!(
            listed_codes(STATUS_HELP),
            [
                0,
                exit::FAILURE,
                exit::USAGE,
                exit::UNAVAILABLE,
                exit::UNEXPECTED,
                exit::UNAUTHORIZED,
            ]
        );
    }
}
