//! Routing: turns a request's method, URL and body into a [`Route`], a plain value with every
//! part parsed and checked (peer ids, percent-decoded semaphore names, counts, durations).
//!
//! This is a pure function, so it is tested with tables and no socket. It knows nothing of
//! tiny_http (that is `workers.rs`) and nothing of the state (that is `service.rs`): a `Route` that
//! comes out of here is well formed, whether or not its peer or semaphore exists.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::error::{Error, Refusal};
use crate::service::{Acquire, Restore};
use throttle_core::{PeerId, Token};

/// The longest duration accepted for `expires_in` and `block_for`: a hundred years. Throttle 0.5
/// accepts years (its Rust client sends two years as `1year 11months 29days ...`), so those
/// must work here too; a hundred years is far beyond any sensible lease and far from the point
/// where deadline arithmetic could overflow on any platform's clock (about 584 years of
/// nanoseconds on macOS and Windows).
pub const MAX_DURATION: Duration = Duration::from_secs(100 * 365 * 24 * 60 * 60);

/// The longest holder name accepted, in bytes of UTF-8: room for a long host name, a process id
/// and a job name, short enough for a table cell.
pub const MAX_NAME_BYTES: usize = 256;

/// A parsed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Greeting,
    Health,
    /// `GET /ready`: whether this process can serve through a quorum (see `workers.rs`).
    Ready,
    Metrics,
    Version,
    Favicon,
    NewPeer {
        expires_in: Duration,
        /// The holder's name, if given (see [`MAX_NAME_BYTES`]).
        name: Option<String>,
    },
    Heartbeat {
        peer: PeerId,
        expires_in: Duration,
    },
    RemovePeer {
        peer: PeerId,
    },
    /// `PUT /peers/{id}/{semaphore}`: the request as the service takes it.
    Acquire(Acquire),
    ReleaseLock {
        peer: PeerId,
        semaphore: String,
    },
    IsAcquired {
        peer: PeerId,
    },
    /// `GET /peers/{id}`: one peer's locks, tokens, lease and name.
    PeerState {
        peer: PeerId,
    },
    ListPeers,
    Remainder {
        semaphore: String,
    },
    /// `POST /restore`: the request as the service takes it.
    Restore(Restore),
    /// `GET /` from a browser: the live status page (see [`negotiate`]).
    StatusPage,
    /// `GET /status.json`: the status page's data.
    StatusJson,
}

impl Route {
    /// Whether the route needs the token, when one is configured. Only the greeting and the
    /// health and readiness checks stay open, so load balancers can probe without the secret,
    /// and the status page, which a browser must load to ask for the token: `workers.rs` serves
    /// it without data to a request without the token. Every route added later needs it unless
    /// listed here.
    pub fn needs_token(&self) -> bool {
        !matches!(
            self,
            Route::Greeting | Route::Health | Route::Ready | Route::StatusPage
        )
    }

    /// A short fixed name, used as the `route` label of the request metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Route::Greeting => "greeting",
            Route::Health => "health",
            Route::Ready => "ready",
            Route::Metrics => "metrics",
            Route::Version => "version",
            Route::Favicon => "favicon",
            Route::NewPeer { .. } => "new_peer",
            Route::Heartbeat { .. } => "heartbeat",
            Route::RemovePeer { .. } => "remove_peer",
            Route::Acquire(_) => "acquire",
            Route::ReleaseLock { .. } => "release_lock",
            Route::IsAcquired { .. } => "is_acquired",
            Route::PeerState { .. } => "peer_state",
            Route::ListPeers => "list_peers",
            Route::Remainder { .. } => "remainder",
            Route::Restore(_) => "restore",
            Route::StatusPage => "status_page",
            Route::StatusJson => "status_json",
        }
    }
}

/// Parses a request. `url` is the raw request target (path and query, still percent-encoded).
pub fn route(method: &str, url: &str, body: &[u8]) -> Result<Route, Error> {
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    let path = path.strip_prefix('/').ok_or(Error::NotFound)?;
    let route = match (method, path) {
        ("GET", "") => Route::Greeting,
        ("GET", "health") => Route::Health,
        ("GET", "ready") => Route::Ready,
        ("GET", "metrics") => Route::Metrics,
        ("GET", "version") => Route::Version,
        ("GET", "favicon.ico") => Route::Favicon,
        ("GET", "status.json") => Route::StatusJson,
        ("GET", "peers" | "peers/") => Route::ListPeers,
        ("POST", "new_peer") => {
            let body: NewPeerBody = parse_body(body)?;
            Route::NewPeer {
                expires_in: duration(&body.expires_in)?,
                name: holder_name(body.name)?,
            }
        }
        ("GET", "remainder") => Route::Remainder {
            semaphore: query_param(query, "semaphore")?
                .ok_or_else(|| missing_parameter("semaphore"))?,
        },
        ("POST", "restore") => {
            let body: RestoreBody = parse_body(body)?;
            let tokens = body.fencing_tokens.unwrap_or_default();
            if let Some(name) = tokens
                .keys()
                .find(|name| !body.acquired.contains_key(*name))
            {
                return Err(Error::InvalidBody(format!(
                    "`fencing_tokens` names `{}`, which is not in `acquired`",
                    clip(name)
                )));
            }
            Route::Restore(Restore {
                peer: body.peer_id,
                expires_in: duration(&body.expires_in)?,
                acquired: restored_counts(body.acquired)?,
                tokens,
                name: holder_name(body.name)?,
            })
        }
        (_, path) => match path.strip_prefix("peers/") {
            Some(rest) => peer_route(method, rest, query, body)?,
            None => return Err(Error::NotFound),
        },
    };
    Ok(route)
}

/// Content negotiation for `GET /`: a request whose `Accept` header admits `text/html` (a
/// browser) gets the status page; every other client (`curl`, the Python client, `*/*`, no
/// header) keeps the plain-text greeting. Other routes pass unchanged.
pub fn negotiate(route: Route, accept: Option<&str>) -> Route {
    match route {
        Route::Greeting if accept.is_some_and(accepts_html) => Route::StatusPage,
        route => route,
    }
}

/// `true` if an `Accept` header names `text/html` explicitly with a quality above zero.
/// Wildcards (`*/*`, `text/*`) do not count: they are what non-browser clients send.
fn accepts_html(accept: &str) -> bool {
    accept.split(',').any(|range| {
        let mut parts = range.split(';').map(str::trim);
        let media = parts.next().unwrap_or("");
        let refused = parts.any(|param| {
            param
                .strip_prefix("q=")
                .and_then(|q| q.parse::<f32>().ok())
                .is_some_and(|q| q <= 0.0)
        });
        media.eq_ignore_ascii_case("text/html") && !refused
    })
}

/// Routes below `/peers/`: `{id}`, `{id}/is_acquired` and `{id}/{semaphore}`. The semaphore is
/// everything after the id, so a name whose `/` a client did not encode still arrives whole.
fn peer_route(method: &str, rest: &str, query: &str, body: &[u8]) -> Result<Route, Error> {
    let (id, semaphore) = match rest.split_once('/') {
        Some((id, semaphore)) => (id, Some(semaphore)),
        None => (rest, None),
    };
    let peer = peer_id(id)?;
    let route = match (method, semaphore) {
        ("PUT", None) => Route::Heartbeat {
            peer,
            expires_in: parse_body::<ExpiresIn>(body)?.duration()?,
        },
        ("DELETE", None) => Route::RemovePeer { peer },
        ("GET", None) => Route::PeerState { peer },
        ("GET", Some("is_acquired")) => Route::IsAcquired { peer },
        ("PUT", Some(semaphore)) => Route::Acquire(Acquire {
            peer,
            semaphore: percent_decode(semaphore, false)?,
            count: count(body)?,
            expires_in: query_param(query, "expires_in")?
                .map(|d| duration(&d))
                .transpose()?,
            block_for: query_param(query, "block_for")?
                .map(|d| duration(&d))
                .transpose()?,
        }),
        ("DELETE", Some(semaphore)) => Route::ReleaseLock {
            peer,
            semaphore: percent_decode(semaphore, false)?,
        },
        _ => return Err(Error::NotFound),
    };
    Ok(route)
}

#[derive(Deserialize)]
struct ExpiresIn {
    expires_in: String,
}

impl ExpiresIn {
    fn duration(&self) -> Result<Duration, Error> {
        duration(&self.expires_in)
    }
}

/// The body of `POST /new_peer`. Unknown fields are ignored, as in Throttle 0.5.
#[derive(Deserialize)]
struct NewPeerBody {
    expires_in: String,
    #[serde(default)]
    name: Option<String>,
}

/// Unknown fields are ignored: older clients also send `pending`. The counts are kept as raw
/// JSON text and read by [`integer`], so that `-0` is zero here as in an acquire.
#[derive(Deserialize)]
struct RestoreBody<'a> {
    expires_in: String,
    peer_id: PeerId,
    /// Required, as in 0.5: a restore without it is not an empty restore the client meant.
    #[serde(borrow)]
    acquired: BTreeMap<String, &'a RawValue>,
    /// Optional: clients before fencing tokens send none, and their locks get new tokens.
    #[serde(default)]
    fencing_tokens: Option<BTreeMap<String, Token>>,
    #[serde(default)]
    name: Option<String>,
}

/// Checks a holder name: at most [`MAX_NAME_BYTES`], no control characters (a name is shown in
/// logs and tables, so it must stay on one line). An empty name is no name.
fn holder_name(name: Option<String>) -> Result<Option<String>, Error> {
    let Some(name) = name.filter(|name| !name.is_empty()) else {
        return Ok(None);
    };
    if name.len() > MAX_NAME_BYTES {
        return Err(Error::InvalidName(format!(
            "a name has at most {MAX_NAME_BYTES} bytes, this one has {}",
            name.len()
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(Error::InvalidName(format!(
            "`{}` holds control characters",
            clip(&name)
        )));
    }
    Ok(Some(name))
}

fn parse_body<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, Error> {
    serde_json::from_slice(body).map_err(|e| Error::InvalidBody(clip_to(&e.to_string(), 160)))
}

/// The lock count: a JSON integer of at least 1. An empty body means 1.
fn count(body: &[u8]) -> Result<i64, Error> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(1);
    }
    let count = integer(body).map_err(|e| {
        let e = clip_to(&e.to_string(), 160);
        Error::InvalidBody(format!("the lock count must be a JSON integer ({e})"))
    })?;
    if count < 1 {
        return Err(Refusal::InvalidCount.into());
    }
    Ok(count)
}

/// The counts of a restore, each a JSON integer. Whether they are at least 1 is checked by the
/// core, as for every other restore rule.
fn restored_counts(acquired: BTreeMap<String, &RawValue>) -> Result<BTreeMap<String, i64>, Error> {
    acquired
        .into_iter()
        .map(|(name, raw)| {
            let count = integer(raw.get().as_bytes()).map_err(|e| {
                Error::InvalidBody(format!(
                    "the count of `{}` must be a JSON integer ({})",
                    clip(&name),
                    clip_to(&e.to_string(), 160)
                ))
            })?;
            Ok((name, count))
        })
        .collect()
}

/// A JSON integer that fits an `i64`. `-0` is the integer zero, as in most JSON parsers
/// (serde_json alone reads it as the float `-0.0`), so a count of `-0` is treated exactly as
/// `0`. A float stays an error, `-0.0` like `0.0` and `1.0`: counts are integers.
fn integer(json: &[u8]) -> Result<i64, serde_json::Error> {
    let is_json_whitespace = |b: &u8| matches!(b, b' ' | b'\t' | b'\n' | b'\r');
    let start = json
        .iter()
        .position(|b| !is_json_whitespace(b))
        .unwrap_or(json.len());
    let end = json
        .iter()
        .rposition(|b| !is_json_whitespace(b))
        .map_or(start, |last| last + 1);
    if json[start..end] == *b"-0" {
        return Ok(0);
    }
    serde_json::from_slice(json)
}

fn peer_id(text: &str) -> Result<PeerId, Error> {
    text.parse()
        .map_err(|_| Error::InvalidRequest(format!("peer id `{}` is not a number", clip(text))))
}

/// Parses a human readable duration such as `500ms`, `30s` or `1h 30m`.
pub fn duration(text: &str) -> Result<Duration, Error> {
    let parsed = humantime::parse_duration(text).map_err(|e| {
        Error::InvalidDuration(format!(
            "`{}`: {}",
            clip(text),
            clip_to(&e.to_string(), 160)
        ))
    })?;
    if parsed > MAX_DURATION {
        return Err(Error::InvalidDuration(format!(
            "`{}` is longer than the limit of a hundred years",
            clip(text)
        )));
    }
    Ok(parsed)
}

/// The decoded value of `key` in a query string; `None` if absent.
/// A parameter given twice is an error: which one was meant is anybody's guess.
fn query_param(query: &str, key: &str) -> Result<Option<String>, Error> {
    let mut found = None;
    for pair in query.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if percent_decode(k, true)? == key {
            if found.is_some() {
                return Err(Error::InvalidRequest(format!(
                    "the query parameter `{key}` is given twice"
                )));
            }
            found = Some(percent_decode(v, true)?);
        }
    }
    Ok(found)
}

fn missing_parameter(name: &str) -> Error {
    Error::InvalidRequest(format!("the query parameter `{name}` is missing"))
}

/// Decodes `%XX` escapes (and, in a query, `+` as a space). The result must be UTF-8.
fn percent_decode(text: &str, plus_is_space: bool) -> Result<String, Error> {
    let invalid = || Error::InvalidRequest(format!("bad percent-encoding in `{}`", clip(text)));
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3).ok_or_else(invalid)?;
                // Two hex digits exactly: `from_str_radix` alone would take `%+F` as 0x0F.
                if !hex.iter().all(u8::is_ascii_hexdigit) {
                    return Err(invalid());
                }
                let hex = std::str::from_utf8(hex).map_err(|_| invalid())?;
                decoded.push(u8::from_str_radix(hex, 16).map_err(|_| invalid())?);
                i += 3;
            }
            b'+' if plus_is_space => {
                decoded.push(b' ');
                i += 1;
            }
            byte => {
                decoded.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8(decoded).map_err(|_| invalid())
}

/// Cuts client-provided text quoted in an error message to a readable length, and keeps the
/// message on one line: control characters (a raw or `%0A`-decoded newline, a `\n` in a JSON
/// string) are shown escaped, as `\n` or `\u{1b}`.
fn clip(text: &str) -> String {
    clip_to(text, 64)
}

/// [`clip`] to `limit` characters. Also for the messages of parsers (serde_json, humantime),
/// which quote the client's input whole: a 64 KiB body must not come back as a 64 KiB error.
fn clip_to(text: &str, limit: usize) -> String {
    let mut clipped = String::new();
    // Characters written so far, escapes included, so the limit bounds what is shown.
    let mut shown = 0;
    for c in text.chars() {
        if shown >= limit {
            clipped.push_str("...");
            break;
        }
        if c.is_control() {
            let escaped = c.escape_default();
            shown += escaped.len();
            clipped.extend(escaped);
        } else {
            clipped.push(c);
            shown += 1;
        }
    }
    clipped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(method: &str, url: &str, body: &str, expected: Result<Route, Error>) {
        assert_eq!(route(method, url, body.as_bytes()), expected);
    }

    #[track_caller]
    fn check_err(method: &str, url: &str, body: &str, expected_prefix: &str) {
        let error = route(method, url, body.as_bytes()).unwrap_err().to_string();
        assert!(
            error.starts_with(expected_prefix),
            "`{error}` does not start with `{expected_prefix}`"
        );
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn fixed_routes() {
        check("GET", "/", "", Ok(Route::Greeting));
        check("GET", "/health", "", Ok(Route::Health));
        check("GET", "/ready", "", Ok(Route::Ready));
        check("GET", "/ready?verbose", "", Ok(Route::Ready));
        check("GET", "/metrics", "", Ok(Route::Metrics));
        check("GET", "/version", "", Ok(Route::Version));
        check("GET", "/favicon.ico", "", Ok(Route::Favicon));
        check("GET", "/peers/", "", Ok(Route::ListPeers));
        check("GET", "/peers", "", Ok(Route::ListPeers));
        check("GET", "/nope", "", Err(Error::NotFound));
        check("POST", "/health", "", Err(Error::NotFound));
        check("POST", "/ready", "", Err(Error::NotFound));
        check("GET", "/ready/", "", Err(Error::NotFound));
        check("GET", "nope", "", Err(Error::NotFound));
    }

    /// The probes of load balancers and orchestrators work without the token; the data does not.
    #[test]
    fn only_the_greeting_the_probes_and_the_page_are_open() {
        let open = [
            Route::Greeting,
            Route::Health,
            Route::Ready,
            Route::StatusPage,
        ];
        for route in &open {
            assert!(!route.needs_token(), "{route:?}");
        }
        for route in [
            Route::Metrics,
            Route::Version,
            Route::Favicon,
            Route::StatusJson,
            Route::ListPeers,
            Route::PeerState { peer: 1 },
        ] {
            assert!(route.needs_token(), "{route:?}");
        }
    }

    #[test]
    fn peer_routes() {
        let body = r#"{"expires_in": "5m"}"#;
        check(
            "POST",
            "/new_peer",
            body,
            Ok(Route::NewPeer {
                expires_in: secs(300),
                name: None,
            }),
        );
        check(
            "PUT",
            "/peers/42",
            body,
            Ok(Route::Heartbeat {
                peer: 42,
                expires_in: secs(300),
            }),
        );
        check(
            "DELETE",
            "/peers/42",
            "",
            Ok(Route::RemovePeer { peer: 42 }),
        );
        check(
            "GET",
            "/peers/42/is_acquired",
            "",
            Ok(Route::IsAcquired { peer: 42 }),
        );
        check_err("PUT", "/peers/abc", body, "Invalid request: peer id `abc`");
        check_err("PUT", "/peers/-1", body, "Invalid request");
        check_err(
            "DELETE",
            "/peers/99999999999999999999999",
            "",
            "Invalid request",
        );
        check("POST", "/peers/42", body, Err(Error::NotFound));
    }

    #[test]
    fn acquire_routes() {
        check(
            "PUT",
            "/peers/7/A?block_for=10s&expires_in=1h%2030m",
            "3",
            Ok(Route::Acquire(Acquire {
                peer: 7,
                semaphore: "A".into(),
                count: 3,
                block_for: Some(secs(10)),
                expires_in: Some(secs(5400)),
            })),
        );
        check(
            "PUT",
            "/peers/7/a%20b%2Fc%26%C3%A4?expires_in=1h+30m",
            "",
            Ok(Route::Acquire(Acquire {
                peer: 7,
                semaphore: "a b/c&ä".into(),
                count: 1,
                block_for: None,
                expires_in: Some(secs(5400)),
            })),
        );
        // A slash the client did not encode stays part of the name.
        check(
            "DELETE",
            "/peers/7/x/y",
            "",
            Ok(Route::ReleaseLock {
                peer: 7,
                semaphore: "x/y".into(),
            }),
        );
    }

    #[test]
    fn bad_counts() {
        check("PUT", "/peers/7/A", "0", Err(Refusal::InvalidCount.into()));
        check("PUT", "/peers/7/A", "-5", Err(Refusal::InvalidCount.into()));
        check_err("PUT", "/peers/7/A", "1.5", "Invalid body");
        check_err("PUT", "/peers/7/A", "\"2\"", "Invalid body");
        check_err("PUT", "/peers/7/A", "9223372036854775808", "Invalid body");
        check_err("PUT", "/peers/7/A", "{", "Invalid body");
    }

    /// JSON `-0` is the integer zero, so it is refused as `0` is, whitespace or not. The floats
    /// `-0.0` and `0.0` are refused as every float is.
    #[test]
    fn minus_zero_is_a_count_of_zero() {
        for body in ["-0", " -0", "-0\n", "\t-0\r\n"] {
            check("PUT", "/peers/7/A", body, Err(Refusal::InvalidCount.into()));
        }
        for body in ["-0.0", "0.0", "-0e0", "-00", "--0", "-0 0", "\u{c}-0"] {
            check_err("PUT", "/peers/7/A", body, "Invalid body");
        }
        assert_eq!(integer(b"-0").ok(), Some(0));
        assert_eq!(integer(b" -7 ").ok(), Some(-7));
        assert!(integer(b"").is_err());
        assert!(integer(b"   ").is_err());
    }

    /// A restored count of `-0` reaches the core as `0`, which refuses it as `Invalid count`.
    #[test]
    fn restored_counts_are_integers_and_minus_zero_is_zero() {
        let restore = |acquired: &str| {
            route(
                "POST",
                "/restore",
                format!(r#"{{"expires_in":"5m","peer_id":42,"acquired":{acquired}}}"#).as_bytes(),
            )
        };
        let expected = |counts: &[(&str, i64)]| {
            Ok(Route::Restore(Restore {
                peer: 42,
                expires_in: secs(300),
                acquired: counts.iter().map(|&(n, c)| (n.to_owned(), c)).collect(),
                tokens: BTreeMap::new(),
                name: None,
            }))
        };
        assert_eq!(
            restore(r#"{"A": -0, "B": 2}"#),
            expected(&[("A", 0), ("B", 2)])
        );
        assert_eq!(restore(r#"{"A":-0 }"#), expected(&[("A", 0)]));
        assert_eq!(restore("{}"), expected(&[]));
        for acquired in [
            r#"{"A": -0.0}"#,
            r#"{"A": 1.5}"#,
            r#"{"A": "1"}"#,
            r#"{"A": null}"#,
        ] {
            let error = restore(acquired).unwrap_err().to_string();
            assert!(
                error.starts_with("Invalid body: the count of `A` must be a JSON integer"),
                "{acquired}: {error}"
            );
        }
    }

    #[test]
    fn bad_durations() {
        check_err(
            "POST",
            "/new_peer",
            r#"{"expires_in": "soon"}"#,
            "Invalid duration",
        );
        check_err(
            "POST",
            "/new_peer",
            r#"{"expires_in": "-5s"}"#,
            "Invalid duration",
        );
        check_err(
            "POST",
            "/new_peer",
            r#"{"expires_in": "1000000000 years"}"#,
            "Invalid duration",
        );
        check_err(
            "POST",
            "/new_peer",
            r#"{"expires_in": "101years"}"#,
            "Invalid duration",
        );
        check_err("POST", "/new_peer", r#"{"expires_in": 5}"#, "Invalid body");
        check_err("POST", "/new_peer", "", "Invalid body");
        check_err(
            "PUT",
            "/peers/1/A?block_for=forever",
            "1",
            "Invalid duration",
        );
    }

    #[test]
    fn bad_encoding() {
        check_err(
            "PUT",
            "/peers/1/%zz",
            "1",
            "Invalid request: bad percent-encoding",
        );
        check_err(
            "PUT",
            "/peers/1/%C3",
            "1",
            "Invalid request: bad percent-encoding",
        );
        check_err(
            "PUT",
            "/peers/1/%",
            "1",
            "Invalid request: bad percent-encoding",
        );
        check_err("GET", "/remainder?semaphore=%ff", "", "Invalid request");
    }

    #[test]
    fn remainder_and_restore() {
        check(
            "GET",
            "/remainder?semaphore=a%2Fb",
            "",
            Ok(Route::Remainder {
                semaphore: "a/b".into(),
            }),
        );
        check_err(
            "GET",
            "/remainder",
            "",
            "Invalid request: the query parameter",
        );
        check(
            "POST",
            "/restore",
            r#"{"expires_in":"5m","peer_id":42,"acquired":{"A":3},"pending":{}}"#,
            Ok(Route::Restore(Restore {
                peer: 42,
                expires_in: secs(300),
                acquired: BTreeMap::from([("A".to_owned(), 3)]),
                tokens: BTreeMap::new(),
                name: None,
            })),
        );
        check_err(
            "POST",
            "/restore",
            r#"{"expires_in":"5m","peer_id":-1}"#,
            "Invalid body",
        );
        check_err(
            "POST",
            "/restore",
            r#"{"expires_in":"5m","peer_id":1,"acquired":{"A":1e99}}"#,
            "Invalid body",
        );
    }

    #[test]
    fn names_tokens_and_the_peer_state_route() {
        check("GET", "/peers/42", "", Ok(Route::PeerState { peer: 42 }));
        check(
            "POST",
            "/new_peer",
            r#"{"expires_in": "5m", "name": "build-7:4242 <b>ü</b>"}"#,
            Ok(Route::NewPeer {
                expires_in: secs(300),
                name: Some("build-7:4242 <b>ü</b>".into()),
            }),
        );
        for body in [
            r#"{"expires_in": "5m", "name": ""}"#,
            r#"{"expires_in": "5m", "name": null}"#,
        ] {
            check(
                "POST",
                "/new_peer",
                body,
                Ok(Route::NewPeer {
                    expires_in: secs(300),
                    name: None,
                }),
            );
        }
        check_err(
            "POST",
            "/new_peer",
            r#"{"expires_in": "5m", "name": "a\nb"}"#,
            "Invalid name: `a\\nb` holds control characters",
        );
        let long = format!(r#"{{"expires_in": "5m", "name": "{}"}}"#, "x".repeat(257));
        check_err(
            "POST",
            "/new_peer",
            &long,
            "Invalid name: a name has at most 256",
        );
        check_err(
            "POST",
            "/new_peer",
            r#"{"expires_in": "5m", "name": 5}"#,
            "Invalid body",
        );
        check(
            "POST",
            "/restore",
            r#"{"expires_in":"5m","peer_id":42,"acquired":{"A":3,"B":1},
                "fencing_tokens":{"A":17},"name":"n"}"#,
            Ok(Route::Restore(Restore {
                peer: 42,
                expires_in: secs(300),
                acquired: BTreeMap::from([("A".to_owned(), 3), ("B".to_owned(), 1)]),
                tokens: BTreeMap::from([("A".to_owned(), 17)]),
                name: Some("n".into()),
            })),
        );
        check_err(
            "POST",
            "/restore",
            r#"{"expires_in":"5m","peer_id":42,"acquired":{"A":3},"fencing_tokens":{"B":1}}"#,
            "Invalid body: `fencing_tokens` names `B`, which is not in `acquired`",
        );
        for tokens in [r#"{"A":-1}"#, r#"{"A":1.5}"#, r#"{"A":"1"}"#] {
            let body = format!(
                r#"{{"expires_in":"5m","peer_id":1,"acquired":{{"A":1}},"fencing_tokens":{tokens}}}"#
            );
            check_err("POST", "/restore", &body, "Invalid body");
        }
    }

    #[test]
    fn browsers_get_the_status_page_and_everyone_else_the_greeting() {
        let browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
        for (accept, expected) in [
            (Some(browser), Route::StatusPage),
            (Some("TEXT/HTML"), Route::StatusPage),
            (Some("application/json, text/html;q=0.5"), Route::StatusPage),
            (None, Route::Greeting),
            (Some("*/*"), Route::Greeting),
            (Some("text/*"), Route::Greeting),
            (Some("text/plain"), Route::Greeting),
            (Some("application/json"), Route::Greeting),
            (Some("text/html;q=0"), Route::Greeting),
            (Some("text/htmlx"), Route::Greeting),
            (Some(""), Route::Greeting),
        ] {
            let routed = route("GET", "/", b"").map(|r| negotiate(r, accept));
            assert_eq!(routed, Ok(expected), "Accept: {accept:?}");
        }
        // Only the greeting is negotiated.
        assert_eq!(negotiate(Route::Health, Some(browser)), Route::Health);
        check("GET", "/status.json", "", Ok(Route::StatusJson));
        check("POST", "/status.json", "", Err(Error::NotFound));
    }

    #[test]
    fn long_input_is_clipped_in_messages() {
        let long = "x".repeat(10_000);
        let error = route("PUT", &format!("/peers/{long}"), b"").unwrap_err();
        assert!(error.to_string().len() < 200);
    }
}

#[cfg(test)]
mod fuzz_regressions;
