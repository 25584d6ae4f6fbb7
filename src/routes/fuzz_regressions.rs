//! Inputs found by the `routes` fuzz target (`fuzz/fuzz_targets/routes.rs`), kept as tests so
//! that CI replays them without a fuzzer. Each test names what the fuzzer found and the
//! property it broke; the byte strings are the fuzzer's artifacts, shortened by hand where that
//! kept the failure.

use super::*;

/// The error text of a request is the body of a 400 answer: one line, clients match its first
/// words. Asserts that and returns the text.
#[track_caller]
fn one_line_error(method: &str, url: &str, body: &[u8]) -> String {
    let text = route(method, url, body).unwrap_err().to_string();
    assert!(!text.contains(['\n', '\r']), "not one line: {text:?}");
    text
}

/// Found by the fuzzer: `%+F` decoded as the byte 0x0F, because `u8::from_str_radix` accepts a
/// leading `+`. A percent sign must be followed by exactly two hex digits (RFC 3986), in the
/// path as in the query.
#[test]
fn a_sign_in_a_percent_escape_is_rejected() {
    let text = one_line_error("GET", "/remainder?semaphore=a%+F/is_acqucredb", b"");
    assert!(
        text.starts_with("Invalid request: bad percent-encoding"),
        "{text}"
    );
    let text = one_line_error("DELETE", "/peers/1/%+A", b"");
    assert!(
        text.starts_with("Invalid request: bad percent-encoding"),
        "{text}"
    );
    let text = one_line_error("PUT", "/peers/1/A?block_for=%-1", b"");
    assert!(
        text.starts_with("Invalid request: bad percent-encoding"),
        "{text}"
    );
    // Both cases of hex digits remain fine.
    assert_eq!(
        route("GET", "/remainder?semaphore=%c3%A4", b""),
        Ok(Route::Remainder {
            semaphore: "ä".into()
        })
    );
}
