//! An answer before it is written: status code, content type, body and the headers that belong
//! to it, each added where the answer is made (the fencing token of a grant, the challenge of a
//! 401, `Vary` of the answers chosen by `Accept`, the member and leader ids of a cluster
//! member's answers), so nothing works them out again afterwards.
//!
//! Also the one place that maps an [`Error`] to its status code. This file knows neither
//! the HTTP layer nor the state: `workers.rs` builds replies from what the service answered and
//! turns them into responses. The statuses, the first words of the error texts and the header
//! names are the wire contract, `contract/wire.toml`; the tests below check them against it.

use std::borrow::Cow;

use crate::error::{Error, Refusal};
use crate::service::Answer;
use crate::status;

/// The header of a granted acquire: the lock's fencing token.
pub const FENCING_TOKEN_HEADER: &str = "Fencing-Token";

/// The header added to `Unknown peer` when the peer expired recently, with the value
/// [`PEER_EXPIRED`].
pub const PEER_STATE_HEADER: &str = "Throttle-Peer-State";

/// The value of [`PEER_STATE_HEADER`]: the peer's lease ran out.
pub const PEER_EXPIRED: &str = "expired";

/// The challenge header of a 401, with the value [`BEARER`].
pub const WWW_AUTHENTICATE_HEADER: &str = "WWW-Authenticate";

/// The one authentication scheme the server takes: `Authorization: Bearer <token>`.
pub const BEARER: &str = "Bearer";

/// The header that tells caches which request headers chose the answer.
pub const VARY_HEADER: &str = "Vary";

/// The request header that chooses between the greeting and the status page at `GET /`.
pub const ACCEPT_HEADER: &str = "Accept";

/// The header of every answer of a cluster member: the member's id (its position in the
/// cluster's `members`, from 1), so a client learns which of its URLs is which member.
pub const MEMBER_HEADER: &str = "Throttle-Member";

/// The header of a cluster member's answers while it knows a leader: the leader's id, so a
/// client sends its next requests there and saves the hop from a follower to the leader.
pub const LEADER_HEADER: &str = "Throttle-Leader";

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
                reply.headers.push((PEER_STATE_HEADER, PEER_EXPIRED.into()))
            }
            Error::Unauthorized => reply.headers.push((WWW_AUTHENTICATE_HEADER, BEARER.into())),
            _ => {}
        }
        reply
    }

    /// This reply as a cluster member answers: naming the member (`id`) and the leader it
    /// knows, if any ([`MEMBER_HEADER`], [`LEADER_HEADER`]). Every answer of a member, errors
    /// included, carries them; a single server's carry neither.
    pub fn with_member(mut self, id: u64, leader: Option<u64>) -> Reply {
        self.headers.push((MEMBER_HEADER, member_id(id)));
        if let Some(leader) = leader {
            self.headers.push((LEADER_HEADER, member_id(leader)));
        }
        self
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
        self.headers.push((VARY_HEADER, ACCEPT_HEADER.into()));
        self
    }
}

/// A member's id as a header value: the ids of clusters of up to nine members are static, so
/// the headers every answer of a member carries cost no formatting.
fn member_id(id: u64) -> Cow<'static, str> {
    const IDS: [&str; 10] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];
    match usize::try_from(id).ok().and_then(|index| IDS.get(index)) {
        Some(&id) => id.into(),
        None => id.to_string().into(),
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
        Error::TooManyPeers { .. } | Error::NoQuorum(_) => 503,
        Error::BodyTooLarge { .. } => 413,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use std::collections::BTreeMap;

    /// What these tests read of `contract/wire.toml`.
    #[derive(Deserialize)]
    struct Contract {
        errors: Vec<ErrorEntry>,
        headers: BTreeMap<String, HeaderEntry>,
    }

    #[derive(Deserialize)]
    struct ErrorEntry {
        words: String,
        status: u16,
    }

    #[derive(Deserialize)]
    struct HeaderEntry {
        name: String,
        value: Option<String>,
    }

    fn contract() -> Contract {
        toml::from_str(include_str!("../../../contract/wire.toml")).expect("contract/wire.toml")
    }

    /// One error of each variant. The match in [`variant`] has no wildcard, so a new variant
    /// does not compile until it is named there, next to this list.
    fn one_of_each() -> Vec<Error> {
        vec![
            Error::Refused(Refusal::UnknownPeer),
            Error::Refused(Refusal::ExpiredPeer),
            Error::Refused(Refusal::InvalidFencingToken(1 << 60)),
            Error::Refused(Refusal::UnknownSemaphore),
            Error::Refused(Refusal::InvalidCount),
            Error::Refused(Refusal::CountTooLarge { count: 2, max: 1 }),
            Error::Refused(Refusal::LockHierarchyViolation {
                level: 1,
                current: 1,
            }),
            Error::Refused(Refusal::SecondPendingLock),
            Error::Refused(Refusal::LockCountChange {
                held: 1,
                requested: 2,
            }),
            Error::Refused(Refusal::RestoreConflict),
            Error::Refused(Refusal::CountOverflow),
            Error::InvalidName("too long".into()),
            Error::InvalidBody("not JSON".into()),
            Error::InvalidDuration("5 parsecs".into()),
            Error::InvalidRequest("bad peer id".into()),
            Error::BodyTooLarge { limit: 1 },
            Error::NotFound,
            Error::LengthRequired,
            Error::Unauthorized,
            Error::TooManyPeers { limit: 1 },
            Error::NoQuorum("no leader elected within 3s".into()),
        ]
    }

    /// The name of an error's variant; exhaustive, see [`one_of_each`].
    fn variant(error: &Error) -> &'static str {
        match error {
            Error::Refused(refusal) => match refusal {
                Refusal::UnknownPeer => "UnknownPeer",
                Refusal::ExpiredPeer => "ExpiredPeer",
                Refusal::InvalidFencingToken(_) => "InvalidFencingToken",
                Refusal::UnknownSemaphore => "UnknownSemaphore",
                Refusal::InvalidCount => "InvalidCount",
                Refusal::CountTooLarge { .. } => "CountTooLarge",
                Refusal::LockHierarchyViolation { .. } => "LockHierarchyViolation",
                Refusal::SecondPendingLock => "SecondPendingLock",
                Refusal::LockCountChange { .. } => "LockCountChange",
                Refusal::RestoreConflict => "RestoreConflict",
                Refusal::CountOverflow => "CountOverflow",
            },
            Error::InvalidName(_) => "InvalidName",
            Error::InvalidBody(_) => "InvalidBody",
            Error::InvalidDuration(_) => "InvalidDuration",
            Error::InvalidRequest(_) => "InvalidRequest",
            Error::BodyTooLarge { .. } => "BodyTooLarge",
            Error::NotFound => "NotFound",
            Error::LengthRequired => "LengthRequired",
            Error::Unauthorized => "Unauthorized",
            Error::TooManyPeers { .. } => "TooManyPeers",
            Error::NoQuorum(_) => "NoQuorum",
        }
    }

    #[test]
    fn every_error_answers_as_the_contract_says() {
        let contract = contract();
        let errors = one_of_each();
        let mut names: Vec<&str> = errors.iter().map(variant).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), errors.len(), "one example per variant");
        let mut matched = vec![false; contract.errors.len()];
        for error in &errors {
            let reply = Reply::error(error);
            let text = String::from_utf8(reply.body).expect("UTF-8");
            assert!(!text.contains('\n'), "{error:?}: the reason is one line");
            let entries: Vec<usize> = (0..contract.errors.len())
                .filter(|&i| text.starts_with(&contract.errors[i].words))
                .collect();
            let [entry] = entries[..] else {
                panic!("{error:?}: `{text}` starts with the words of {entries:?} entries");
            };
            let entry_words = &contract.errors[entry].words;
            assert_eq!(
                reply.status, contract.errors[entry].status,
                "{error:?} (`{entry_words}`)"
            );
            assert_eq!(status(error), reply.status);
            matched[entry] = true;
        }
        for (entry, matched) in contract.errors.iter().zip(matched) {
            assert!(matched, "no error variant answers `{}`", entry.words);
        }
    }

    #[test]
    fn the_header_constants_are_the_contract() {
        let contract = contract();
        let header = |key: &str| {
            contract
                .headers
                .get(key)
                .unwrap_or_else(|| panic!("no header `{key}` in contract/wire.toml"))
        };
        assert_eq!(header("fencing_token").name, FENCING_TOKEN_HEADER);
        assert_eq!(header("peer_state").name, PEER_STATE_HEADER);
        assert_eq!(header("peer_state").value.as_deref(), Some(PEER_EXPIRED));
        assert_eq!(header("www_authenticate").name, WWW_AUTHENTICATE_HEADER);
        assert_eq!(header("www_authenticate").value.as_deref(), Some(BEARER));
        assert_eq!(header("authorization").value.as_deref(), Some(BEARER));
        assert_eq!(header("vary").name, VARY_HEADER);
        assert_eq!(header("vary").value.as_deref(), Some(ACCEPT_HEADER));
        assert_eq!(header("accept").name, ACCEPT_HEADER);
        assert_eq!(header("member").name, MEMBER_HEADER);
        assert_eq!(header("leader").name, LEADER_HEADER);
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
            &[(WWW_AUTHENTICATE_HEADER, BEARER)],
        );
        check_headers(
            Reply::error(&Error::Refused(Refusal::ExpiredPeer)),
            &[(PEER_STATE_HEADER, PEER_EXPIRED)],
        );
        check_headers(Reply::error(&Error::Refused(Refusal::UnknownPeer)), &[]);
        check_headers(Reply::greeting("Hello"), &[(VARY_HEADER, ACCEPT_HEADER)]);
        check_headers(
            Reply::status_page(String::new()),
            &[(VARY_HEADER, ACCEPT_HEADER)],
        );
        check_headers(
            Reply::lock(Answer::Acquired(7)),
            &[(FENCING_TOKEN_HEADER, "7")],
        );
        check_headers(Reply::lock(Answer::Pending), &[]);
        check_headers(Reply::json("1"), &[]);
        check_headers(
            Reply::lock(Answer::Acquired(7)).with_member(2, Some(3)),
            &[
                (FENCING_TOKEN_HEADER, "7"),
                (MEMBER_HEADER, "2"),
                (LEADER_HEADER, "3"),
            ],
        );
        check_headers(
            Reply::error(&Error::NoQuorum("no leader".into())).with_member(2, None),
            &[(MEMBER_HEADER, "2")],
        );
        check_headers(
            Reply::text(200, "Ok").with_member(12, Some(9)),
            &[(MEMBER_HEADER, "12"), (LEADER_HEADER, "9")],
        );
    }
}
