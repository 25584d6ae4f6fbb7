//! The one error type of the crate, and how a server answer maps to it.
//!
//! The statuses and first words matched here are the server's contract, `contract/wire.toml` at
//! the repository's root; the tests below check the mapping against that file.

use std::fmt;
use std::time::Duration;

/// Everything that can go wrong talking to a Throttle server.
///
/// The server answers a rejected request with a status code and a one-line plain-text reason
/// whose first words name the failure (`Unknown peer`, `Count too large: ...`). The variants
/// below follow those words; a variant that carries `message` keeps the server's whole line.
#[non_exhaustive]
#[derive(Debug)]
pub enum Error {
    /// The server does not know the peer (400 `Unknown peer`): it expired, was released, or the
    /// server restarted. [`Client::restore`](crate::Client::restore) brings it back; the lock
    /// guard and the heartbeat thread do that on their own.
    UnknownPeer,
    /// The server says the peer *expired* (400 `Unknown peer` with the header
    /// `Throttle-Peer-State: expired`): its lease ran out before a heartbeat got through, the
    /// server released its locks, and someone else may hold them now. Unlike
    /// [`Error::UnknownPeer`] (a restarted server) this is not restored: carrying on would be
    /// exactly what the lock is there to prevent. Stop using the resource; a new lock gets a new
    /// fencing token. [`LockGuard::is_lost`](crate::LockGuard::is_lost) and
    /// [`Peer::on_lost`](crate::Peer::on_lost) report it too.
    LockLost,
    /// No semaphore of that name is configured on the server (400 `Unknown semaphore`).
    UnknownSemaphore,
    /// The lock's count exceeds the semaphore's `max`, so it could never be granted (409).
    CountTooLarge {
        /// The server's reason, e.g. `Count too large: the lock count 5 exceeds ...`.
        message: String,
    },
    /// The peer holds a lock whose level is not higher than the level of the semaphore asked
    /// for; granting it could deadlock (409). Nothing changed on the server.
    LockHierarchyViolation {
        /// The server's reason.
        message: String,
    },
    /// The peer already waits for another lock; a peer has at most one pending lock (409).
    SecondPendingLock {
        /// The server's reason.
        message: String,
    },
    /// The peer asked for a larger count of a lock it holds, or another count for a lock it
    /// waits for (409). Shrinking a held lock is allowed and does not cause this.
    LockCountChange {
        /// The server's reason.
        message: String,
    },
    /// A restore named a peer that exists on the server with other locks (409).
    RestoreConflict {
        /// The server's reason.
        message: String,
    },
    /// The server needs a token and the request carried none, or the wrong one (401). Set it
    /// with [`Client::with_token`](crate::Client::with_token) or
    /// [`Client::from_env`](crate::Client::from_env). Not retried: asking again with the same
    /// token gets the same answer.
    Unauthorized,
    /// The server holds its maximum of live peers (503 `Too many peers`, its `--max-peers`)
    /// and refused to create another: [`Client::new_peer`](crate::Client::new_peer), or
    /// [`Client::restore`](crate::Client::restore) of a peer it no longer knows. Nothing changed
    /// on the server.
    ///
    /// Returned at once, not retried like other server errors: the server is up, and a peer
    /// slot frees only when other clients release their peers or let them expire, which may take
    /// as long as their leases. Whether and when to try again is the caller's decision. A
    /// heartbeat thread whose restore gets this logs a warning and tries again at its next beat.
    TooManyPeers {
        /// The server's reason, e.g. `Too many peers: the server holds its limit of ...`.
        message: String,
    },
    /// Any other rejected request (4xx): an invalid count or duration, a body too large, an
    /// unknown route, a count overflow on restore, ...
    InvalidRequest {
        /// The HTTP status code, e.g. 400.
        status: u16,
        /// The server's reason.
        message: String,
    },
    /// The server failed (5xx, e.g. 503 `Shutting down`) and kept failing until the retry
    /// budget ran out. A 503 `Too many peers` is [`Error::TooManyPeers`] instead.
    Server {
        /// The HTTP status code, e.g. 503.
        status: u16,
        /// The body of the last answer.
        message: String,
    },
    /// A successful status with a body this client does not understand, e.g. a peer id that is
    /// not a number. Points at a server of another kind or version behind the URL.
    UnexpectedResponse {
        /// The HTTP status code.
        status: u16,
        /// The body of the answer.
        body: String,
    },
    /// The lock (or rate-limit unit) was not granted within the timeout. The pending request
    /// has been withdrawn, so nothing of it stays queued on the server.
    Timeout {
        /// The semaphore that was asked for.
        semaphore: String,
        /// The timeout that ran out.
        timeout: Duration,
    },
    /// The wait was called off through a [`Cancel`](crate::Cancel) handle
    /// ([`LockBuilder::cancel_with`](crate::LockBuilder::cancel_with)). The pending request has
    /// been withdrawn.
    Cancelled,
    /// A [`Peer`](crate::Peer) was asked to lock a semaphore it already holds a guard for. One
    /// peer holds one lock per semaphore, so a second guard would be released by the first.
    AlreadyLocked {
        /// The semaphore that is already held.
        semaphore: String,
    },
    /// The request did not get an answer: the connection was refused or failed, it timed out,
    /// the host was not found, the URL is malformed; or every cluster member asked answered 503
    /// `No quorum` (it could not reach a majority of the members). Failures that may heal are
    /// retried, on the next member if the client has several, within the retry budget before
    /// this is returned. [`Unreachable`] names the members tried and what went wrong on each,
    /// e.g. `server http://a:8000 unreachable within 60s: connection refused`.
    Transport(Unreachable),
}

/// Why a request got no answer: the members tried, what went wrong on each, and how long the
/// client kept trying. The HTTP library's own error (of the last attempt that failed on the
/// way) is its [`source`](std::error::Error::source), so the library does not show in the
/// crate's API.
///
/// A client of one server names it (`server http://a:8000 unreachable within 30s: connection
/// refused`); a client of several members names each one it tried, with the last reason it met
/// there (`no member reachable within 30s (http://a:8000: connection refused, http://b:8000: no
/// quorum (no leader elected within 3s))`).
#[derive(Debug)]
pub struct Unreachable {
    /// One per member tried, in the order of the client's members; never empty.
    attempts: Vec<Attempt>,
    /// The index in `attempts` of the last failure.
    last: usize,
    /// How many members the client has.
    members: usize,
    retried_for: Option<Duration>,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

/// One member an [`Unreachable`] request was sent to, and the last thing that went wrong there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    member: String,
    reason: String,
}

impl Attempt {
    /// The member's URL, as the client was given it (without a trailing slash).
    pub fn member(&self) -> &str {
        &self.member
    }

    /// What went wrong there, in a few words: `connection refused`, `timed out`, `no quorum
    /// (...)`, ...
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

/// What went wrong on one member, kept by the retry loop until it gives up.
#[derive(Debug)]
pub(crate) enum Failed {
    /// No answer: the HTTP library's error.
    Transport(ureq::Error),
    /// 503 `No quorum: <reason>` from a cluster member; its whole line.
    NoQuorum(String),
    /// Another server error (5xx) that may heal: its status and line, e.g. `503 Shutting down`.
    Answer(String),
}

impl Failed {
    fn reason(&self) -> String {
        match self {
            Failed::Transport(error) => reason(error),
            Failed::Answer(shown) => format!("server error {shown}"),
            Failed::NoQuorum(message) => {
                match message
                    .strip_prefix("No quorum")
                    .map(|rest| rest.trim_start_matches(':').trim())
                {
                    Some("") | None => "no quorum".to_owned(),
                    Some(why) => format!("no quorum ({why})"),
                }
            }
        }
    }
}

impl Unreachable {
    /// `failures`: the last failure of each member, by the client's member index (`None` for
    /// members not tried); `last`: the member that failed last; `retried_for`: the retry budget
    /// spent, or `None` for a failure that is not retried.
    pub(crate) fn new(
        members: &[impl AsRef<str>],
        failures: Vec<Option<Failed>>,
        last: usize,
        retried_for: Option<Duration>,
    ) -> Self {
        let mut attempts = Vec::new();
        let mut last_attempt = 0;
        let mut source = None;
        for (index, failure) in failures.into_iter().enumerate() {
            let Some(failure) = failure else { continue };
            if index == last {
                last_attempt = attempts.len();
            }
            attempts.push(Attempt {
                member: members[index].as_ref().to_owned(),
                reason: failure.reason(),
            });
            if let Failed::Transport(error) = failure
                && (index == last || source.is_none())
            {
                source = Some(Box::new(error) as Box<dyn std::error::Error + Send + Sync>);
            }
        }
        Unreachable {
            attempts,
            last: last_attempt,
            members: members.len(),
            retried_for,
            source,
        }
    }

    /// The URL of the member that failed last (the server, for a client of one), as the client
    /// was given it.
    pub fn server(&self) -> &str {
        &self.attempts[self.last].member
    }

    /// What went wrong last, in a few words: `connection refused`, `timed out`, `no quorum
    /// (...)`, ...
    pub fn reason(&self) -> &str {
        &self.attempts[self.last].reason
    }

    /// Every member tried, in the order the client was given them, each with the last reason it
    /// failed for. One entry for a client of one server.
    pub fn attempts(&self) -> &[Attempt] {
        &self.attempts
    }

    /// How long the client kept trying (its retry budget), or `None` if the failure is one no
    /// retry heals (a malformed URL, say) and it was returned at once.
    pub fn retried_for(&self) -> Option<Duration> {
        self.retried_for
    }
}

impl fmt::Display for Unreachable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.members > 1 {
            match self.retried_for {
                Some(budget) => write!(f, "no member reachable within {budget:?} (")?,
                None => f.write_str("no member reachable (")?,
            }
            for (index, attempt) in self.attempts.iter().enumerate() {
                let separator = if index == 0 { "" } else { ", " };
                write!(f, "{separator}{}: {}", attempt.member, attempt.reason)?;
            }
            return f.write_str(")");
        }
        let (server, reason) = (self.server(), self.reason());
        match self.retried_for {
            Some(budget) => write!(f, "server {server} unreachable within {budget:?}: {reason}"),
            None => write!(f, "server {server} unreachable: {reason}"),
        }
    }
}

impl std::error::Error for Unreachable {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        let source = self.source.as_deref()?;
        Some(source)
    }
}

/// A transport failure in a few words, for [`Unreachable::reason`].
fn reason(error: &ureq::Error) -> String {
    use std::io::ErrorKind;
    match error {
        ureq::Error::Io(io) => match io.kind() {
            ErrorKind::ConnectionRefused => "connection refused".to_owned(),
            ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe => {
                "connection reset".to_owned()
            }
            ErrorKind::TimedOut => "timed out".to_owned(),
            _ => io.to_string(),
        },
        ureq::Error::Timeout(_) => "timed out".to_owned(),
        ureq::Error::HostNotFound => "host not found".to_owned(),
        ureq::Error::ConnectionFailed => "connection failed".to_owned(),
        other => other.to_string(),
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::UnknownPeer => f.write_str("unknown peer"),
            Error::LockLost => f.write_str(
                "lock lost: the peer's lease ran out on the server, which released its locks",
            ),
            Error::UnknownSemaphore => f.write_str("unknown semaphore"),
            Error::Unauthorized => {
                f.write_str("unauthorized: the server needs a valid token (Client::with_token)")
            }
            Error::CountTooLarge { message }
            | Error::LockHierarchyViolation { message }
            | Error::SecondPendingLock { message }
            | Error::LockCountChange { message }
            | Error::RestoreConflict { message }
            | Error::TooManyPeers { message } => f.write_str(message),
            Error::InvalidRequest { status, message } => {
                write!(f, "request rejected with status {status}: {message}")
            }
            Error::Server { status, message } => {
                write!(f, "server error with status {status}: {message}")
            }
            Error::UnexpectedResponse { status, body } => {
                write!(f, "unexpected answer with status {status}: {body:?}")
            }
            Error::Timeout { semaphore, timeout } => {
                write!(f, "lock on {semaphore:?} not granted within {timeout:?}")
            }
            Error::Cancelled => f.write_str("the wait for the lock was cancelled"),
            Error::AlreadyLocked { semaphore } => {
                write!(f, "this peer already holds a lock on {semaphore:?}")
            }
            Error::Transport(unreachable) => unreachable.fmt(f),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Transport(unreachable) => Some(unreachable),
            _ => None,
        }
    }
}

impl Error {
    /// The error for an answer with a status of 400 or more, chosen by the words the server's
    /// reason starts with.
    /// `peer_expired`: the answer carried `Throttle-Peer-State: expired`.
    pub(crate) fn from_answer(status: u16, body: String, peer_expired: bool) -> Error {
        let message = body.trim_end().to_owned();
        let starts = |words: &str| message.starts_with(words);
        match status {
            400 if starts("Unknown peer") && peer_expired => Error::LockLost,
            400 if starts("Unknown peer") => Error::UnknownPeer,
            400 if starts("Unknown semaphore") => Error::UnknownSemaphore,
            401 => Error::Unauthorized,
            409 if starts("Count too large") => Error::CountTooLarge { message },
            409 if starts("Lock hierarchy violation") => Error::LockHierarchyViolation { message },
            409 if starts("Second pending lock") => Error::SecondPendingLock { message },
            409 if starts("Lock count change") => Error::LockCountChange { message },
            409 if starts("Restore conflict") => Error::RestoreConflict { message },
            _ if is_peer_limit(status, &message) => Error::TooManyPeers { message },
            500.. => Error::Server { status, message },
            _ => Error::InvalidRequest { status, message },
        }
    }
}

/// Whether an answer is a cluster member's 503 `No quorum`: it could not reach a majority of
/// the members in time. Another member, or the same one a little later, may answer.
pub(crate) fn is_no_quorum(status: u16, body: &str) -> bool {
    status == 503 && body.starts_with("No quorum")
}

/// Whether an answer is the server's peer limit, 503 `Too many peers`. Other 503s (`Shutting
/// down`, or a proxy's) may heal by asking again; this one is final, see
/// [`Error::TooManyPeers`].
pub(crate) fn is_peer_limit(status: u16, body: &str) -> bool {
    status == 503 && body.starts_with("Too many peers")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    /// What these tests read of `contract/wire.toml` (the repository's, not part of the package).
    #[derive(Deserialize)]
    struct Contract {
        errors: Vec<ErrorEntry>,
    }

    #[derive(Deserialize)]
    struct ErrorEntry {
        words: String,
        status: u16,
    }

    /// The variant each error of the contract maps to, by its first words; the errors not named
    /// here are [`Error::InvalidRequest`] with their status.
    const VARIANTS: &[(&str, &str)] = &[
        ("Unknown peer", "UnknownPeer"),
        ("Unknown semaphore", "UnknownSemaphore"),
        ("Unauthorized", "Unauthorized"),
        ("Count too large", "CountTooLarge"),
        ("Lock hierarchy violation", "LockHierarchyViolation"),
        ("Second pending lock", "SecondPendingLock"),
        ("Lock count change", "LockCountChange"),
        ("Restore conflict", "RestoreConflict"),
        ("Too many peers", "TooManyPeers"),
        // `Client::send` retries it on the other members and reports it as `Transport` once
        // the budget is spent (see the client's tests); an answer left over maps by its status.
        ("No quorum", "Server"),
    ];

    /// The name of the variant, without its fields.
    fn variant(error: &Error) -> String {
        let debug = format!("{error:?}");
        debug
            .split([' ', '(', '{'])
            .next()
            .unwrap_or_default()
            .to_owned()
    }

    #[test]
    fn every_error_of_the_contract_maps_to_its_variant() {
        let contract: Contract = toml::from_str(include_str!("../../../contract/wire.toml"))
            .expect("contract/wire.toml");
        for (words, _) in VARIANTS {
            assert!(
                contract.errors.iter().any(|entry| entry.words == *words),
                "`{words}` is not an error of contract/wire.toml"
            );
        }
        for entry in &contract.errors {
            let expected = VARIANTS
                .iter()
                .find(|(words, _)| *words == entry.words)
                .map_or("InvalidRequest", |(_, variant)| variant);
            for body in [
                entry.words.clone(),
                format!("{}: with detail\n", entry.words),
            ] {
                let error = Error::from_answer(entry.status, body.clone(), false);
                assert_eq!(variant(&error), expected, "{} {body:?}", entry.status);
                if let Error::InvalidRequest { status, message } = &error {
                    assert_eq!(*status, entry.status);
                    assert_eq!(message, body.trim_end());
                }
            }
            // The header that marks an expired peer turns only `Unknown peer` into a lost lock.
            let marked = Error::from_answer(entry.status, entry.words.clone(), true);
            let expected = if expected == "UnknownPeer" {
                "LockLost"
            } else {
                expected
            };
            assert_eq!(
                variant(&marked),
                expected,
                "{} {}",
                entry.status,
                entry.words
            );
        }
    }

    #[test]
    fn an_unreachable_cluster_names_each_member_tried_in_the_members_order() {
        let members = ["http://a:1", "http://b:2", "http://c:3"];
        let failures = vec![
            Some(Failed::NoQuorum("No quorum".into())),
            None,
            Some(Failed::Answer("503 Shutting down".into())),
        ];
        let unreachable = Unreachable::new(&members, failures, 0, Some(Duration::from_secs(30)));
        assert_eq!(
            unreachable.to_string(),
            "no member reachable within 30s (http://a:1: no quorum, \
             http://c:3: server error 503 Shutting down)"
        );
        assert_eq!(unreachable.server(), "http://a:1");
        assert_eq!(unreachable.reason(), "no quorum");
        assert!(std::error::Error::source(&unreachable).is_none());
        let one = Unreachable::new(
            &members[..1],
            vec![Some(Failed::NoQuorum("No quorum: why".into()))],
            0,
            None,
        );
        assert_eq!(
            one.to_string(),
            "server http://a:1 unreachable: no quorum (why)"
        );
    }

    #[track_caller]
    fn check(status: u16, body: &str, expected: &str) {
        let error = Error::from_answer(status, body.to_owned(), false);
        assert_eq!(format!("{error:?}"), expected);
    }

    #[test]
    fn answers_outside_the_contract_map_by_their_status() {
        check(401, "", "Unauthorized");
        check(
            409,
            "Count too large: 5 > 3\n",
            "CountTooLarge { message: \"Count too large: 5 > 3\" }",
        );
        check(
            503,
            "Shutting down",
            "Server { status: 503, message: \"Shutting down\" }",
        );
        // The words only count with the status that goes with them.
        check(
            500,
            "Too many peers",
            "Server { status: 500, message: \"Too many peers\" }",
        );
        check(
            409,
            "Unknown peer",
            "InvalidRequest { status: 409, message: \"Unknown peer\" }",
        );
    }
}
