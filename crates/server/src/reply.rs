//! An answer before it is written: status code, content type, body and the headers that belong
//! to it, each added where the answer is made (the fencing token of a grant, the challenge of a
//! 401, `Vary` of the answers chosen by `Accept`), so nothing works them out again afterwards.
//!
//! Also the one place that maps an [`Error`] to its status code. This file knows neither
//! tiny_http nor the state: `http.rs` builds replies from what the service answered and turns
//! them into tiny_http responses.

use std::borrow::Cow;

use crate::error::{Error, Refusal};
use crate::service::Answer;
use crate::status;

/// The header of a granted acquire: the lock's fencing token.
pub const FENCING_TOKEN_HEADER: &str = "Fencing-Token";

/// The header added to `Unknown peer` when the peer expired recently, with the value `expired`.
pub const PEER_STATE_HEADER: &str = "Throttle-Peer-State";

/// A media type for JSON bodies.
pub const JSON: &str = "application/json";

const TEXT: &str = "text/plain; charset=utf-8";

/// An answer before it becomes a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The HTTP status code: 200 or 202 for success, the error's code otherwise.
    pub status: u16,
    /// The `Content-Type` header's value.
    pub content_type: &'static str,
    /// The body as written, without any further encoding.
    pub body: Vec<u8>,
    /// Headers beyond `Content-Type`, in the order they are written; empty for most answers,
    /// so it does not allocate. Values are static but for fencing tokens.
    pub headers: Vec<(&'static str, Cow<'static, str>)>,
}

impl Reply {
    /// A plain-text answer.
    pub fn text(status: u16, body: impl Into<String>) -> Reply {
        Reply::with_type(status, TEXT, body.into().into_bytes())
    }

    /// A 200 JSON answer.
    pub fn json(body: impl Into<Vec<u8>>) -> Reply {
        Reply::with_type(200, JSON, body.into())
    }

    /// A 200 answer of any type.
    pub fn ok(content_type: &'static str, body: Vec<u8>) -> Reply {
        Reply::with_type(200, content_type, body)
    }

    /// The plain-text greeting of `GET /`. `GET /` answers by the `Accept` header (this or
    /// [`Reply::status_page`]), so caches must not mix the two: both carry `Vary: Accept`.
    pub fn greeting(text: &'static str) -> Reply {
        Reply::text(200, text).vary_by_accept()
    }

    /// The status page, which a browser gets at `GET /`; see [`Reply::greeting`].
    pub fn status_page(html: String) -> Reply {
        Reply::with_type(200, status::HTML_CONTENT_TYPE, html.into_bytes()).vary_by_accept()
    }

    /// 200 with the lock's fencing token, or 202.
    pub fn lock(answer: Answer) -> Reply {
        match answer {
            Answer::Acquired(token) => {
                let mut reply = Reply::text(200, "Acquired");
                reply
                    .headers
                    .push((FENCING_TOKEN_HEADER, token.to_string().into()));
                reply
            }
            Answer::Pending => Reply::text(202, "Pending"),
        }
    }

    /// The answer of a failed request: its status, its one-line reason, and the header it
    /// needs: the bearer challenge of a 401, the state of a peer that expired.
    pub fn error(error: &Error) -> Reply {
        let mut reply = Reply::text(status(error), error.to_string());
        match error {
            Error::Refused(Refusal::ExpiredPeer) => {
                reply.headers.push((PEER_STATE_HEADER, "expired".into()))
            }
            Error::Unauthorized => reply.headers.push(("WWW-Authenticate", "Bearer".into())),
            _ => {}
        }
        reply
    }

    fn with_type(status: u16, content_type: &'static str, body: Vec<u8>) -> Reply {
        Reply {
            status,
            content_type,
            body,
            headers: Vec::new(),
        }
    }

    fn vary_by_accept(mut self) -> Reply {
        self.headers.push(("Vary", "Accept".into()));
        self
    }
}

/// The status code of each error: 400 for a malformed or unknown reference, 409 for a request
/// that conflicts with the state.
pub fn status(error: &Error) -> u16 {
    match error {
        Error::Refused(refusal) => match refusal {
            Refusal::UnknownPeer
            | Refusal::ExpiredPeer
            | Refusal::InvalidFencingToken(_)
            | Refusal::UnknownSemaphore
            | Refusal::InvalidCount => 400,
            Refusal::CountTooLarge { .. }
            | Refusal::LockHierarchyViolation { .. }
            | Refusal::SecondPendingLock
            | Refusal::LockCountChange { .. }
            | Refusal::RestoreConflict
            | Refusal::CountOverflow => 409,
        },
        Error::InvalidName(_)
        | Error::InvalidBody(_)
        | Error::InvalidDuration(_)
        | Error::InvalidRequest(_) => 400,
        Error::NotFound => 404,
        Error::Unauthorized => 401,
        Error::LengthRequired => 411,
        Error::TooManyPeers { .. } => 503,
        Error::BodyTooLarge { .. } => 413,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_has_its_status() {
        let conflict = 409;
        let cases = [
            (Error::Refused(Refusal::UnknownPeer), 400),
            (Error::Refused(Refusal::ExpiredPeer), 400),
            (Error::Refused(Refusal::InvalidFencingToken(1)), 400),
            (Error::InvalidName(String::new()), 400),
            (Error::Refused(Refusal::UnknownSemaphore), 400),
            (Error::Refused(Refusal::InvalidCount), 400),
            (Error::InvalidBody(String::new()), 400),
            (Error::InvalidDuration(String::new()), 400),
            (Error::InvalidRequest(String::new()), 400),
            (Error::BodyTooLarge { limit: 1 }, 413),
            (
                Error::Refused(Refusal::CountTooLarge { count: 2, max: 1 }),
                conflict,
            ),
            (
                Error::Refused(Refusal::LockHierarchyViolation {
                    level: 1,
                    current: 1,
                }),
                conflict,
            ),
            (Error::Refused(Refusal::SecondPendingLock), conflict),
            (
                Error::Refused(Refusal::LockCountChange {
                    held: 1,
                    requested: 2,
                }),
                conflict,
            ),
            (Error::Refused(Refusal::RestoreConflict), conflict),
            (Error::Refused(Refusal::CountOverflow), conflict),
            (Error::NotFound, 404),
            (Error::Unauthorized, 401),
            (Error::LengthRequired, 411),
            (Error::TooManyPeers { limit: 1 }, 503),
        ];
        for (error, expected) in cases {
            assert_eq!(status(&error), expected, "{error:?}");
        }
    }

    #[track_caller]
    fn check_headers(reply: Reply, expected: &[(&str, &str)]) {
        let headers: Vec<(&str, &str)> = reply
            .headers
            .iter()
            .map(|(name, value)| (*name, value.as_ref()))
            .collect();
        assert_eq!(headers, expected);
    }

    #[test]
    fn each_reply_carries_the_headers_it_needs() {
        check_headers(
            Reply::error(&Error::Unauthorized),
            &[("WWW-Authenticate", "Bearer")],
        );
        check_headers(
            Reply::error(&Error::Refused(Refusal::ExpiredPeer)),
            &[(PEER_STATE_HEADER, "expired")],
        );
        check_headers(Reply::error(&Error::Refused(Refusal::UnknownPeer)), &[]);
        check_headers(Reply::greeting("Hello"), &[("Vary", "Accept")]);
        check_headers(Reply::status_page(String::new()), &[("Vary", "Accept")]);
        check_headers(
            Reply::lock(Answer::Acquired(7)),
            &[(FENCING_TOKEN_HEADER, "7")],
        );
        check_headers(Reply::lock(Answer::Pending), &[]);
        check_headers(Reply::json("1"), &[]);
    }
}
