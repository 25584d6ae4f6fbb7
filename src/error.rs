//! The one error type of the request path.
//!
//! Every way a request can fail is a variant here, and its `Display` text is the body of the
//! HTTP answer, word for word. Clients match on the first words (`Unknown peer`, `Unknown
//! semaphore`, `Lock hierarchy violation`, ...), so these texts are a contract. Which status code
//! a variant maps to is decided in `http.rs`, not here.

use std::fmt;

/// Why a request was refused. The state is unchanged whenever one of these is returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The peer id is not (or no longer) known: it expired, was released, or the server
    /// restarted. Clients answer this with `restore`.
    UnknownPeer,
    /// The peer is not known because it expired recently (its lease ran out): the same body as
    /// [`Error::UnknownPeer`], which Throttle 0.5 clients rely on, and `http.rs` adds the header
    /// `Throttle-Peer-State: expired`, so a client knows its locks may be held by others now and
    /// reports the lost lease instead of restoring.
    ExpiredPeer,
    /// A fencing token above [`crate::core::MAX_TOKEN`] in a restore.
    InvalidFencingToken(u64),
    /// A holder name that is too long or holds control characters.
    InvalidName(String),
    /// The semaphore is not in the server's configuration.
    UnknownSemaphore,
    /// A lock count below 1.
    InvalidCount,
    /// A body that is not the JSON the route expects.
    InvalidBody(String),
    /// A duration that does not parse or is out of range.
    InvalidDuration(String),
    /// A path or query that names a route but carries a malformed part.
    InvalidRequest(String),
    /// A body over the size cap.
    BodyTooLarge { limit: usize },
    /// A lock count greater than the full count of the semaphore: it could never be granted.
    CountTooLarge { count: i64, max: i64 },
    /// The semaphore's level is not strictly below the peer's current level.
    LockHierarchyViolation { level: i32, current: i32 },
    /// The peer already waits for another lock; a peer has at most one pending lock.
    SecondPendingLock,
    /// Asking for more of a held lock, or a different count for a pending one.
    LockCountChange { held: i64, requested: i64 },
    /// `restore` for a peer that exists with other locks.
    RestoreConflict,
    /// Restored counts that would overflow a semaphore's sum.
    CountOverflow,
    /// No route matches method and path.
    NotFound,
    /// A body sent without a `Content-Length` (chunked): the server reads only bodies whose
    /// size it knows up front, so a slow sender cannot hold a worker.
    LengthRequired,
    /// A token is configured and the request did not carry it.
    Unauthorized,
    /// The server holds its configured maximum of live peers.
    TooManyPeers { limit: usize },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::UnknownPeer | Error::ExpiredPeer => f.write_str("Unknown peer"),
            Error::InvalidFencingToken(token) => write!(
                f,
                "Invalid fencing token: {token} is above the largest token, 2^53 - 1"
            ),
            Error::InvalidName(reason) => write!(f, "Invalid name: {reason}"),
            Error::UnknownSemaphore => f.write_str("Unknown semaphore"),
            Error::InvalidCount => f.write_str("Invalid count: a lock count must be at least 1"),
            Error::InvalidBody(reason) => write!(f, "Invalid body: {reason}"),
            Error::InvalidDuration(reason) => write!(f, "Invalid duration: {reason}"),
            Error::InvalidRequest(reason) => write!(f, "Invalid request: {reason}"),
            Error::BodyTooLarge { limit } => {
                write!(f, "Body too large: at most {limit} bytes are accepted")
            }
            Error::CountTooLarge { count, max } => write!(
                f,
                "Count too large: the lock count {count} exceeds the semaphore's max of {max}. \
                 Lock can never be acquired."
            ),
            Error::LockHierarchyViolation { level, current } => write!(
                f,
                "Lock hierarchy violation: the semaphore's level {level} is not below the peer's \
                 current level {current}"
            ),
            Error::SecondPendingLock => {
                f.write_str("Second pending lock: the peer already waits for another lock")
            }
            Error::LockCountChange { held, requested } => write!(
                f,
                "Lock count change: the peer's lock has count {held}, {requested} was requested; \
                 a held lock may only shrink"
            ),
            Error::RestoreConflict => {
                f.write_str("Restore conflict: the peer exists and holds other locks")
            }
            Error::CountOverflow => {
                f.write_str("Count overflow: the semaphore's sum of counts would overflow")
            }
            Error::NotFound => f.write_str("Not found"),
            Error::Unauthorized => f.write_str(
                "Unauthorized: this server needs the header `Authorization: Bearer <token>`",
            ),
            Error::LengthRequired => {
                f.write_str("Length required: send the body with a Content-Length header")
            }
            Error::TooManyPeers { limit } => {
                write!(
                    f,
                    "Too many peers: the server holds its limit of {limit} live peers"
                )
            }
        }
    }
}

impl std::error::Error for Error {}
