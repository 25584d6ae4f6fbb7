//! The one error type of the request path: the core's refusals plus what only the server can
//! get wrong (a malformed request, a missing token, too many peers).
//!
//! Every way a request can fail is a variant here, and its `Display` text is the body of the
//! HTTP answer, word for word. Clients match on the first words (`Unknown peer`, `Unknown
//! semaphore`, `Lock hierarchy violation`, ...), so these texts are a contract, listed with their
//! status codes in `contract/wire.toml`. Which status code a variant maps to is decided in
//! `reply.rs`, not here.

use std::fmt;

pub use throttle_core::Error as Refusal;

/// Why a request was refused. The state is unchanged whenever one of these is returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The core refused the operation (unknown peer or semaphore, a count too large, a lock
    /// hierarchy violation, ...); its text is the core's.
    Refused(Refusal),
    /// A holder name that is too long or holds control characters.
    InvalidName(String),
    /// A body that is not the JSON the route expects.
    InvalidBody(String),
    /// A duration that does not parse or is out of range.
    InvalidDuration(String),
    /// A path or query that names a route but carries a malformed part.
    InvalidRequest(String),
    /// A body over the size cap.
    BodyTooLarge { limit: usize },
    /// No route matches method and path.
    NotFound,
    /// A body sent without a `Content-Length` (chunked): the server reads only bodies whose
    /// size it knows up front, so a slow sender cannot hold a worker.
    LengthRequired,
    /// A token is configured and the request did not carry it.
    Unauthorized,
    /// The server holds its configured maximum of live peers.
    TooManyPeers { limit: usize },
    /// A cluster member could not get the change onto a majority's disks: no leader, or no
    /// answer from one in time. The reason is for people.
    NoQuorum(String),
}

impl From<Refusal> for Error {
    fn from(refusal: Refusal) -> Error {
        Error::Refused(refusal)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Refused(refusal) => refusal.fmt(f),
            Error::InvalidName(reason) => write!(f, "Invalid name: {reason}"),
            Error::InvalidBody(reason) => write!(f, "Invalid body: {reason}"),
            Error::InvalidDuration(reason) => write!(f, "Invalid duration: {reason}"),
            Error::InvalidRequest(reason) => write!(f, "Invalid request: {reason}"),
            Error::BodyTooLarge { limit } => {
                write!(f, "Body too large: at most {limit} bytes are accepted")
            }
            Error::NotFound => f.write_str("Not found"),
            Error::Unauthorized => f.write_str(
                "Unauthorized: this server needs the header `Authorization: Bearer <token>`",
            ),
            Error::LengthRequired => {
                f.write_str("Length required: send the body with a Content-Length header")
            }
            Error::NoQuorum(reason) => write!(f, "No quorum: {reason}"),
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
