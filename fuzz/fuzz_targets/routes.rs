//! Fuzz target `routes`: raw bytes → method, request target and body → `routes::route`.
//!
//! Input layout: the first byte picks the method (so the fuzzer does not spend its time
//! inventing verbs), the bytes up to the first NUL are the request target (lossily UTF-8, as
//! tiny_http hands the server a `&str`), the rest is the body.
//!
//! What must hold for every input:
//! - `route` returns, never panics (the release server aborts on a panic: spec rule 7);
//! - an error's text, which becomes the answer's body, is one line of bounded length;
//! - an `Ok` route is well formed: durations at most `MAX_DURATION`, lock counts at least 1;
//! - percent-decoded parts (semaphore names in the path and in `/remainder`) equal what a strict
//!   reference decoder makes of the raw text: malformed escapes are rejected, not guessed at;
//! - an `Ok` route survives a round trip: encoding it back into a canonical request and routing
//!   that again gives the same route.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use throttle_server::routes::{MAX_DURATION, Route, negotiate, route};
use throttle_server::service::{Acquire, Restore};

const METHODS: [&str; 8] = ["GET", "PUT", "POST", "DELETE", "HEAD", "PATCH", "get", ""];

/// An error body longer than this is a finding: a reason is a line, not an echo of the input.
const MAX_ERROR_LEN: usize = 512;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let method = METHODS[usize::from(selector) % METHODS.len()];
    let (url, body) = match rest.iter().position(|&b| b == 0) {
        Some(nul) => (&rest[..nul], &rest[nul + 1..]),
        None => (rest, &[][..]),
    };
    let url = String::from_utf8_lossy(url);
    check(method, &url, body);
});

fn check(method: &str, url: &str, body: &[u8]) {
    let parsed = match route(method, url, body) {
        Ok(parsed) => parsed,
        Err(error) => {
            let text = error.to_string();
            assert!(
                !text.contains(['\n', '\r']),
                "error text is not one line: {text:?}"
            );
            assert!(
                text.len() <= MAX_ERROR_LEN,
                "error text of {} bytes: {:?}",
                text.len(),
                &text[..text.floor_char_boundary(200)]
            );
            return;
        }
    };
    let _ = parsed.name();
    let _ = parsed.needs_token();
    // Content negotiation of `GET /`, with the body standing in for an `Accept` header: only
    // the greeting may turn into the status page, and nothing panics.
    let negotiated = negotiate(parsed.clone(), Some(&String::from_utf8_lossy(body)));
    assert!(
        negotiated == parsed || (parsed == Route::Greeting && negotiated == Route::StatusPage),
        "{parsed:?} negotiated into {negotiated:?}"
    );
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    match &parsed {
        Route::NewPeer { expires_in, .. } | Route::Heartbeat { expires_in, .. } => {
            assert!(*expires_in <= MAX_DURATION);
        }
        Route::Restore(Restore { expires_in, .. }) => assert!(*expires_in <= MAX_DURATION),
        Route::Acquire(Acquire {
            peer,
            semaphore,
            count,
            block_for,
            expires_in,
        }) => {
            assert!(*count >= 1, "count {count}");
            assert!(block_for.is_none_or(|d| d <= MAX_DURATION));
            assert!(expires_in.is_none_or(|d| d <= MAX_DURATION));
            assert_eq!(
                Some(semaphore),
                raw_semaphore(path)
                    .and_then(|raw| strict_decode(raw, false))
                    .as_ref(),
                "semaphore of {url:?}"
            );
            let _ = peer;
        }
        Route::ReleaseLock { semaphore, .. } => {
            assert_eq!(
                Some(semaphore),
                raw_semaphore(path)
                    .and_then(|raw| strict_decode(raw, false))
                    .as_ref(),
                "semaphore of {url:?}"
            );
        }
        Route::Remainder { semaphore } => {
            let raw = query
                .split('&')
                .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
                .find(|(k, _)| strict_decode(k, true).as_deref() == Some("semaphore"))
                .map(|(_, v)| v);
            assert_eq!(
                Some(semaphore),
                raw.and_then(|raw| strict_decode(raw, true)).as_ref(),
                "semaphore of {url:?}"
            );
        }
        _ => {}
    }
    if let Some((method, url, body)) = canonical(&parsed) {
        assert_eq!(
            route(&method, &url, &body),
            Ok(parsed.clone()),
            "canonical form {method} {url} {:?} of {parsed:?}",
            String::from_utf8_lossy(&body)
        );
    }
}

/// The raw (still encoded) semaphore of `/peers/{id}/{semaphore}`: everything after the id.
fn raw_semaphore(path: &str) -> Option<&str> {
    let rest = path.strip_prefix("/peers/")?;
    rest.split_once('/').map(|(_, semaphore)| semaphore)
}

/// Percent-decoding as RFC 3986 defines it: `%` followed by exactly two hex digits; with
/// `plus_is_space` (form encoding in a query) `+` is a space. `None` for malformed input or a
/// result that is not UTF-8.
fn strict_decode(text: &str, plus_is_space: bool) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hi = (*bytes.get(i + 1)? as char).to_digit(16)?;
                let lo = (*bytes.get(i + 2)? as char).to_digit(16)?;
                out.push((hi * 16 + lo) as u8);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            byte => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Encodes every byte outside RFC 3986's unreserved set.
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3);
    for &byte in text.as_bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn human(duration: Duration) -> String {
    humantime::format_duration(duration).to_string()
}

/// A canonical request that must route to `route`; `None` for routes without parameters.
fn canonical(route: &Route) -> Option<(String, String, Vec<u8>)> {
    let expires = |d: &Duration| serde_json::json!({ "expires_in": human(*d) }).to_string();
    let request = match route {
        // Named peers are the routes unit tests' business; the canonical form has no name.
        Route::NewPeer {
            expires_in,
            name: None,
        } => (
            "POST".into(),
            "/new_peer".into(),
            expires(expires_in).into_bytes(),
        ),
        Route::Heartbeat { peer, expires_in } => (
            "PUT".into(),
            format!("/peers/{peer}"),
            expires(expires_in).into_bytes(),
        ),
        Route::RemovePeer { peer } => ("DELETE".into(), format!("/peers/{peer}"), Vec::new()),
        Route::IsAcquired { peer } => (
            "GET".into(),
            format!("/peers/{peer}/is_acquired"),
            Vec::new(),
        ),
        Route::Acquire(Acquire {
            peer,
            semaphore,
            count,
            block_for,
            expires_in,
        }) => {
            let mut query = Vec::new();
            if let Some(d) = block_for {
                query.push(format!("block_for={}", encode(&human(*d))));
            }
            if let Some(d) = expires_in {
                query.push(format!("expires_in={}", encode(&human(*d))));
            }
            (
                "PUT".into(),
                format!("/peers/{peer}/{}?{}", encode(semaphore), query.join("&")),
                count.to_string().into_bytes(),
            )
        }
        Route::ReleaseLock { peer, semaphore } => (
            "DELETE".into(),
            format!("/peers/{peer}/{}", encode(semaphore)),
            Vec::new(),
        ),
        Route::Remainder { semaphore } => (
            "GET".into(),
            format!("/remainder?semaphore={}", encode(semaphore)),
            Vec::new(),
        ),
        Route::Restore(Restore {
            peer,
            expires_in,
            acquired,
            tokens,
            name: None,
        }) => (
            "POST".into(),
            "/restore".into(),
            serde_json::json!({
                "peer_id": peer,
                "expires_in": human(*expires_in),
                "acquired": acquired,
                "fencing_tokens": tokens,
            })
            .to_string()
            .into_bytes(),
        ),
        _ => return None,
    };
    Some(request)
}
