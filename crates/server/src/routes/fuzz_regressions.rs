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

/// Found by the fuzzer: a peer id with newlines (`PUT /peers/\n\n7/...`) was quoted raw into
/// the error text, which spanned several lines. Control characters are now shown escaped.
#[test]
fn control_characters_in_a_peer_id_are_escaped_in_the_error() {
    let text = one_line_error("PUT", "/peers/\n\n\n7/a%20b", b"");
    assert_eq!(
        text,
        "Invalid request: peer id `\\n\\n\\n7` is not a number"
    );
}

/// The same through decoding: a newline that arrives percent-encoded in the query or escaped in
/// a JSON body reaches the duration parser, which quotes it.
#[test]
fn control_characters_in_durations_are_escaped_in_the_error() {
    let text = one_line_error("PUT", "/peers/1/A?block_for=5%0Dx%0A", b"1");
    assert!(text.starts_with("Invalid duration: `5\\rx\\n`"), "{text}");
    let text = one_line_error("POST", "/new_peer", br#"{"expires_in": "1\u001b[2J"}"#);
    assert!(
        text.starts_with("Invalid duration: `1\\u{1b}[2J`"),
        "{text}"
    );
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

/// Found by the fuzzer: escaping made the quote up to six times longer (`\u{b}` for one
/// character), so 64 control characters gave an error text of over 500 bytes. The quote is
/// clipped after escaping.
#[test]
fn escaped_quotes_are_clipped_too() {
    let body = format!(r#"{{"expires_in": "6{}"}}"#, "\\u000b".repeat(100));
    let text = one_line_error("POST", "/new_peer", body.as_bytes());
    assert!(text.len() < 300, "{} bytes: {text}", text.len());
}

/// Long input in every quoting place stays short in the answer.
#[test]
fn long_input_gives_a_short_error() {
    let long = "x".repeat(10_000);
    let cases = [
        (
            "POST",
            "/new_peer".to_owned(),
            format!(r#"{{"expires_in": "5{long}"}}"#),
        ),
        (
            "PUT",
            format!("/peers/1/A?block_for=5{long}"),
            "1".to_owned(),
        ),
        ("PUT", format!("/peers/1/%{long}"), "1".to_owned()),
        ("PUT", "/peers/1/A".to_owned(), format!(r#""{long}""#)),
        (
            "POST",
            "/restore".to_owned(),
            format!(r#"{{"peer_id": "{long}"}}"#),
        ),
    ];
    for (method, url, body) in cases {
        let text = one_line_error(method, &url, body.as_bytes());
        assert!(text.len() < 300, "{} bytes: {text}", text.len());
    }
}
