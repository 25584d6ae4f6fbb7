//! Why the core refuses an operation: the domain's reasons, nothing about transport.
//!
//! Whenever an operation returns one of these the state is unchanged. The `Display` texts are
//! the sentences a user reads (the server sends them as the body of its answer, and clients
//! match their first words, `Unknown peer` and `Unknown semaphore` among them), so they are part
//! of the wire contract (`contract/wire.toml`). Which status code each one gets is the server's
//! business, not the core's.

use std::fmt;

use crate::MAX_TOKEN;

/// A refusal of the core. The state is unchanged whenever one of these is returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The peer id is not (or no longer) known: it was released, never existed, or was forgotten
    /// by a restart. Clients answer this with `restore`.
    UnknownPeer,
    /// The peer is not known because it expired recently (its lease ran out). It reads as
    /// [`Error::UnknownPeer`], which Throttle 0.5 clients rely on; the server adds a header so
    /// that newer clients report a lost lease instead of restoring.
    ExpiredPeer,
    /// A fencing token above [`MAX_TOKEN`] in a restore.
    InvalidFencingToken(u64),
    /// The semaphore is not configured.
    UnknownSemaphore,
    /// A lock count below 1.
    InvalidCount,
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
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::UnknownPeer | Error::ExpiredPeer => f.write_str("Unknown peer"),
            Error::InvalidFencingToken(token) => write!(
                f,
                "Invalid fencing token: {token} is above the largest token, 2^53 - 1"
            ),
            Error::UnknownSemaphore => f.write_str("Unknown semaphore"),
            Error::InvalidCount => f.write_str("Invalid count: a lock count must be at least 1"),
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
        }
    }
}

impl std::error::Error for Error {}

// The text names the bound; keep them together.
const _: () = assert!(MAX_TOKEN == (1 << 53) - 1);
