//! Where a request ends. Parses a request head with `httparse` and decides
//! the body's framing by RFC 9112, section 6, refusing everything a proxy in front of the
//! server might read differently ("request smuggling").
//!
//! Pure: bytes in, a [`Head`] or a [`Refusal`] out. Reading sockets, timers and answering are
//! `reactor.rs`'s job. Every refusal closes the connection, because after a framing error
//! nobody knows where the next request would start.

use std::convert::TryFrom;

use crate::common::{HTTPVersion, Header, Method};

/// More header lines than this are refused with 431: Throttle's clients send fewer than ten,
/// browsers about twenty.
pub const MAX_HEADERS: usize = 128;

/// A complete, well-framed request head.
#[derive(Debug)]
pub struct Head {
    pub method: Method,
    /// The origin form of the target (`/path?query`), also when it arrived in absolute form.
    pub target: String,
    pub version: HTTPVersion,
    pub headers: Vec<Header>,
    /// Bytes of the head, including the blank line that ends it.
    pub head_len: usize,
    /// Bytes of the body that follows, from `Content-Length` (0 without one).
    pub body_len: usize,
    /// The client asked for `100 Continue` before it sends the body.
    pub expects_continue: bool,
    /// The connection ends after this request's answer (`Connection: close`, or HTTP/1.0
    /// without `keep-alive`).
    pub close: bool,
}

/// Why a request is refused: answered with this status and reason, then the connection is
/// closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    /// The answer's body: one line, in the words of Throttle's own errors.
    pub reason: String,
}

impl Refusal {
    fn bad(detail: &str) -> Refusal {
        Refusal {
            status: 400,
            reason: format!("Invalid request: {detail}"),
        }
    }

    fn new(status: u16, reason: &str) -> Refusal {
        Refusal {
            status,
            reason: reason.to_owned(),
        }
    }
}

/// What the bytes received so far amount to.
#[derive(Debug)]
pub enum Parsed {
    /// A valid beginning; the head needs more bytes.
    Partial,
    Complete(Head),
}

/// Parses the head at the start of `bytes`. Bytes that cannot begin a request are refused at
/// once, not when the head would have been complete. `max_head` bounds the head and
/// `max_body` the announced body.
pub fn parse(bytes: &[u8], max_head: usize, max_body: usize) -> Result<Parsed, Refusal> {
    let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut storage);
    let window = &bytes[..bytes.len().min(max_head)];
    let head_len = match request.parse(window) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if window.len() < max_head => return Ok(Parsed::Partial),
        Ok(httparse::Status::Partial) => {
            return Err(Refusal::new(
                431,
                "Request head too large: the request line and headers are limited",
            ));
        }
        Err(httparse::Error::TooManyHeaders) => {
            return Err(Refusal::new(
                431,
                "Request head too large: too many header fields",
            ));
        }
        // HTTP/2's preface (`PRI * HTTP/2.0`) lands here too: not a request this server reads.
        Err(httparse::Error::Version) => {
            return Err(Refusal::bad("only HTTP/1.0 and HTTP/1.1 are served"));
        }
        Err(httparse::Error::HeaderName) => return Err(Refusal::bad("invalid header name")),
        Err(httparse::Error::HeaderValue) => return Err(Refusal::bad("invalid header value")),
        Err(httparse::Error::NewLine) => return Err(Refusal::bad("invalid line ending")),
        Err(_) => return Err(Refusal::bad("not an HTTP/1.1 request")),
    };
    // httparse fills these in for every complete head.
    let (Some(method), Some(target), Some(minor)) = (request.method, request.path, request.version)
    else {
        return Err(Refusal::bad("not an HTTP/1.1 request"));
    };
    let version = HTTPVersion(1, minor);
    let target = origin_form(target)?;
    let method: Method = method.parse().map_err(|_| Refusal::bad("invalid method"))?;

    let mut content_length: Option<u64> = None;
    let mut transfer_encoding = false;
    let mut expects_continue = false;
    let mut connection_close = false;
    let mut keep_alive = false;
    let mut hosts = 0;
    let mut headers = Vec::with_capacity(request.headers.len());
    for header in request.headers.iter() {
        let name = header.name;
        let value = header.value;
        if name.eq_ignore_ascii_case("Content-Length") {
            // A list (`5, 5`) or repeated lines must all agree (RFC 9112, 6.3).
            for item in value.split(|&b| b == b',') {
                let length = content_length_value(trim(item))?;
                if content_length.is_some_and(|known| known != length) {
                    return Err(Refusal::bad("conflicting Content-Length values"));
                }
                content_length = Some(length);
            }
        } else if name.eq_ignore_ascii_case("Transfer-Encoding") {
            transfer_encoding = true;
        } else if name.eq_ignore_ascii_case("Expect") {
            if trim(value).eq_ignore_ascii_case(b"100-continue") {
                expects_continue = true;
            } else {
                return Err(Refusal::new(
                    417,
                    "Expectation failed: only Expect: 100-continue is understood",
                ));
            }
        } else if name.eq_ignore_ascii_case("Connection") {
            for option in value.split(|&b| b == b',').map(trim) {
                connection_close |= option.eq_ignore_ascii_case(b"close");
                keep_alive |= option.eq_ignore_ascii_case(b"keep-alive");
            }
        } else if name.eq_ignore_ascii_case("Host") {
            hosts += 1;
        }
        // Header values are bytes; tiny_http's are ASCII. obs-text (bytes above 0x7f) has no
        // meaning for Throttle, so it is refused rather than guessed at.
        let header = Header::from_bytes(name.as_bytes(), value)
            .map_err(|()| Refusal::bad("header values must be ASCII"))?;
        headers.push(header);
    }
    if hosts > 1 {
        return Err(Refusal::bad("more than one Host header"));
    }
    if transfer_encoding {
        // Throttle takes no chunked bodies; beside a Content-Length the framing is ambiguous.
        return Err(if content_length.is_some() {
            Refusal::bad("Transfer-Encoding and Content-Length together")
        } else {
            Refusal::new(
                411,
                "Length required: send the body with a Content-Length header, not a Transfer-Encoding",
            )
        });
    }
    let body_len = match usize::try_from(content_length.unwrap_or(0)) {
        Ok(length) if length <= max_body => length,
        _ => {
            return Err(Refusal {
                status: 413,
                reason: format!("Body too large: at most {max_body} bytes are accepted"),
            });
        }
    };
    let close = connection_close || (minor == 0 && !keep_alive);
    Ok(Parsed::Complete(Head {
        method,
        target,
        version,
        headers,
        head_len,
        body_len,
        expects_continue: expects_continue && body_len > 0,
        close,
    }))
}

/// `Content-Length = 1*DIGIT` (RFC 9110, 8.6): no sign, no spaces inside, no hex, no overflow.
fn content_length_value(value: &[u8]) -> Result<u64, Refusal> {
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return Err(Refusal::bad("invalid Content-Length"));
    }
    value.iter().try_fold(0u64, |acc, &digit| {
        acc.checked_mul(10)
            .and_then(|acc| acc.checked_add(u64::from(digit - b'0')))
            .ok_or_else(|| Refusal::bad("invalid Content-Length"))
    })
}

/// The path and query of a target in origin form (`/a?b`) or absolute form
/// (`http://host/a?b`, which servers must accept: RFC 9112, 3.2.2). `*` passes through (it
/// matches no route); the authority form is only for CONNECT, which Throttle does not serve.
fn origin_form(target: &str) -> Result<String, Refusal> {
    if target.starts_with('/') || target == "*" {
        return Ok(target.to_owned());
    }
    let Some((scheme, rest)) = target.split_once("://") else {
        return Err(Refusal::bad("invalid request target"));
    };
    if !(scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https")) {
        return Err(Refusal::bad("invalid request target"));
    }
    let path_start = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(path_start);
    if authority.is_empty() {
        return Err(Refusal::bad("invalid request target"));
    }
    Ok(match path.strip_prefix('?') {
        Some(query) => format!("/?{query}"),
        None if path.is_empty() => "/".to_owned(),
        None => path.to_owned(),
    })
}

/// Strips optional whitespace (spaces and tabs) around a header value or list item.
fn trim(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t')
        .map_or(start, |i| i + 1);
    &bytes[start..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(bytes: &str) -> Result<Head, Refusal> {
        match parse(bytes.as_bytes(), 8 * 1024, 64 * 1024)? {
            Parsed::Complete(head) => Ok(head),
            Parsed::Partial => panic!("partial: {bytes:?}"),
        }
    }

    fn status(bytes: &str) -> u16 {
        head(bytes).map_or_else(|refusal| refusal.status, |_| 200)
    }

    #[test]
    fn a_plain_request_and_its_body_length() {
        let head =
            head("PUT /peers/1/A HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\n\r\n3").unwrap();
        assert_eq!(head.method, Method::Put);
        assert_eq!(head.target, "/peers/1/A");
        assert_eq!(head.body_len, 1);
        assert_eq!(head.head_len, 55);
        assert!(!head.close);
    }

    #[test]
    fn content_length_must_be_digits_and_agree() {
        assert_eq!(
            status("POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"),
            400
        );
        assert_eq!(
            status("POST / HTTP/1.1\r\nContent-Length: 5, 6\r\n\r\n"),
            400
        );
        for bad in [
            "-1",
            "+5",
            "0x10",
            "abc",
            "",
            "5 5",
            "99999999999999999999999",
        ] {
            let request = format!("POST / HTTP/1.1\r\nContent-Length: {bad}\r\n\r\n");
            assert_eq!(status(&request), 400, "{bad:?}");
        }
        let same = head("POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5, 5\r\n\r\n");
        assert_eq!(same.unwrap().body_len, 5);
    }

    #[test]
    fn any_transfer_encoding_is_refused() {
        assert_eq!(
            status("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            411
        );
        assert_eq!(
            status("POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n"),
            411
        );
        let both = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n";
        assert_eq!(status(both), 400);
    }

    #[test]
    fn control_characters_spaces_before_colons_and_folds_are_refused() {
        assert_eq!(status("GET / HTTP/1.1\r\nX: a\0b\r\n\r\n"), 400);
        assert_eq!(status("GET / HTTP/1.1\r\nX: a\rb\r\n\r\n"), 400);
        assert_eq!(status("GET / HTTP/1.1\r\nX: a\x7fb\r\n\r\n"), 400);
        assert_eq!(status("GET / HTTP/1.1\r\nContent-Length : 3\r\n\r\n"), 400);
        assert_eq!(status("GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n"), 400);
        let obs_text = parse(b"GET / HTTP/1.1\r\nX: \xc3\xa9\r\n\r\n", 8192, 0);
        assert_eq!(obs_text.unwrap_err().status, 400);
    }

    #[test]
    fn junk_is_refused_before_the_head_would_end() {
        // A TLS ClientHello and HTTP/2's preface, cut short: no need to wait for more.
        assert!(parse(b"\x16\x03\x01\x02\x00\x01", 8192, 0).is_err());
        assert!(parse(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 8192, 0).is_err());
        assert!(parse(b"\x00\xff\xfe", 8192, 0).is_err());
        assert!(matches!(parse(b"GET /hea", 8192, 0), Ok(Parsed::Partial)));
    }

    #[test]
    fn the_absolute_form_is_taken_apart() {
        assert_eq!(
            head("GET http://h:8000/health HTTP/1.1\r\n\r\n")
                .unwrap()
                .target,
            "/health"
        );
        assert_eq!(
            head("GET http://h?x=1 HTTP/1.1\r\n\r\n").unwrap().target,
            "/?x=1"
        );
        assert_eq!(head("GET HTTP://h HTTP/1.1\r\n\r\n").unwrap().target, "/");
        assert_eq!(status("GET h:80 HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(status("GET ftp://h/ HTTP/1.1\r\n\r\n"), 400);
    }

    #[test]
    fn limits_and_versions() {
        let long = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(9000));
        assert_eq!(parse(long.as_bytes(), 8192, 0).unwrap_err().status, 431);
        assert_eq!(parse(b"GET /aaaaaaaaaa", 8, 0).unwrap_err().status, 431);
        let big = "POST / HTTP/1.1\r\nContent-Length: 70000\r\n\r\n";
        assert_eq!(status(big), 413);
        assert_eq!(status("GET / HTTP/1.2\r\n\r\n"), 400);
        assert_eq!(status("GET / HTTP/2.0\r\n\r\n"), 400);
        assert_eq!(status("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"), 400);
        assert_eq!(status("GET / HTTP/1.1\r\nExpect: magic\r\n\r\n"), 417);
    }

    #[test]
    fn keep_alive_by_version_and_connection_options() {
        assert!(head("GET / HTTP/1.0\r\n\r\n").unwrap().close);
        assert!(
            !head("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")
                .unwrap()
                .close
        );
        assert!(
            head("GET / HTTP/1.1\r\nConnection: foo, close\r\n\r\n")
                .unwrap()
                .close
        );
    }

    #[test]
    fn bare_line_feeds_are_line_ends() {
        let head = head("GET /health HTTP/1.1\nHost: h\nX: a\n\n").unwrap();
        assert_eq!(head.headers.len(), 2);
        assert_eq!(head.head_len, 35);
    }
}
