//! HTTP framing (issue 20): raw requests on a socket, one row per arrangement, each asserting
//! the answer, that the connection is closed where it must be, and that a request hidden behind
//! it did not run.
//!
//! Request smuggling needs two HTTP processors that disagree about where a request ends: a proxy
//! in front of Throttle forwards what it takes for one request, and Throttle finds a second one
//! inside it, which then runs on someone else's connection. Each row sends, in one write on one
//! connection, a request whose framing is ambiguous or invalid followed by a hidden
//! `DELETE /peers/{victim}`, placed where a reader that got the framing wrong would take it for
//! the next request; rows with a Content-Length carry a second copy where a reader that skipped
//! the declared body would find it. The victim holds the only count of the mutex `M`, and after
//! the row a fresh connection checks that it still does.
//!
//! The behaviour expected is RFC 9112's (sections 2.2, 3, 5, 6 and 11.2) with the decisions of
//! issue 20: a framing error is answered 400 (411 for a transfer coding alone, 413, 431 and 408
//! where they fit) with `Connection: close`, and nothing after it on that connection is read;
//! `Transfer-Encoding` of any kind is refused; identical Content-Length values count as one
//! (RFC 9112 6.3 allows it); bare LF line ends are accepted as line ends, consistently; the
//! absolute form of the target is served like the origin form; legitimate pipelining works.
//!
//! Rows taken from published smuggling research name their source: Http11Probe
//! (MDA2AV/Http11Probe, its test IDs), smuggler (defparam/smuggler, the mutation names of
//! `configs/default.py`), SMUGGLEtest (MajidLakhnati/SMUGGLEtest, `utilities/TETE_utils.py`) and
//! PortSwigger's request smuggling labs (CL.TE, TE.CL).
//!
//! Every read has a deadline, so no row can hang the suite: a connection the server keeps open
//! fails its row after [`CLOSE_WITHIN`]. A failing row lists every problem it saw at once. The
//! rows' bytes are also fuzz seeds (see [`the_fuzz_seeds_are_the_rows`]).

mod common;

use std::fmt;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use common::Server;

/// `M` is the victim's mutex; `Big` has room for the counts that show how long a body was read.
const CONFIG: &str = "[semaphores]\nM = 1\nBig = 100000\n";
const BIG: i64 = 100_000;

/// How long a refused connection may stay open after the request was sent.
const CLOSE_WITHIN: Duration = Duration::from_secs(5);

/// How long bytes that cannot begin a request may keep the connection open: far less than the
/// request timeout (10 s by default), which is what the server must not wait for.
const AT_ONCE: Duration = Duration::from_secs(1);

/// The length of `{HIDDEN}` in every row (0x50): rows count with it.
const HIDDEN_LEN: usize = 80;

/// Expands the placeholders of a row: `{GET}` (the start of `GET /health` with its `Host`
/// line), `{HIDDEN}` (`DELETE /peers/{victim}`, [`HIDDEN_LEN`] bytes), `{W}` (the id of a peer
/// of the sender's own, without locks) and `{CLOSE}` (`GET /version` asking to close, which ends
/// rows whose connection may legitimately stay open).
fn render(template: &[u8], victim: u64, own: u64) -> Vec<u8> {
    let rendered = replace(
        template,
        b"{GET}",
        b"GET /health HTTP/1.1\r\nHost: throttle\r\n",
    );
    let close = b"GET /version HTTP/1.1\r\nHost: throttle\r\nConnection: close\r\n\r\n";
    let rendered = replace(&rendered, b"{CLOSE}", close);
    let rendered = replace(&rendered, b"{W}", own.to_string().as_bytes());
    replace(&rendered, b"{HIDDEN}", &hidden(victim))
}

/// What a row expects.
#[derive(Clone, Copy, Debug)]
enum Expect {
    /// One answer with this status and `Connection: close`, then the server closes the
    /// connection within [`CLOSE_WITHIN`].
    Refused(u16),
    /// As [`Expect::Refused`], with any of these statuses.
    RefusedWithOneOf(&'static [u16]),
    /// As `Refused(400)`, closed within [`AT_ONCE`]: bytes that cannot begin a request line.
    RefusedAtOnce,
    /// The row's server runs with `--request-timeout 1s`: one answer 408 with
    /// `Connection: close` once that second has passed (not before), then closed.
    TimedOut,
    /// Every request answered in order with these statuses and bodies starting with these
    /// texts, on one connection (the last request asks to close it), and this count taken of
    /// `Big` afterwards.
    Served(&'static [(u16, &'static str)], i64),
    /// Either `Refused(400)`, or served as a strict reader frames it: [`Expect::Served`].
    RefusedOrServed(&'static [(u16, &'static str)], i64),
}

/// Defines one `#[test]` per row, calling [`check`], and [`rows`], every row's name and bytes.
macro_rules! rows {
    ($($(#[$meta:meta])* $name:ident: $expect:expr, $template:expr;)*) => {
        $(
            $(#[$meta])*
            #[test]
            fn $name() {
                check($expect, AsRef::<[u8]>::as_ref(&$template));
            }
        )*

        fn rows() -> Vec<(&'static str, Vec<u8>)> {
            vec![$((stringify!($name), AsRef::<[u8]>::as_ref(&$template).to_vec())),*]
        }
    };
}

use Expect::{Refused, RefusedAtOnce, RefusedOrServed, RefusedWithOneOf, Served, TimedOut};

rows! {
    // Content-Length: 1*DIGIT, one value (RFC 9110 8.6, RFC 9112 6.3 item 5: anything else is
    // an unrecoverable framing error, 400 and close).

    /// Http11Probe DUPLICATE-CL; issue 20 (the hidden request ran).
    cl_twice_with_different_values: Refused(400),
        b"{GET}Content-Length: 0\r\nContent-Length: 80\r\n\r\n{HIDDEN}{HIDDEN}";
    /// Http11Probe CL-COMMA-DIFFERENT.
    cl_list_with_different_values: Refused(400),
        b"{GET}Content-Length: 0, 80\r\n\r\n{HIDDEN}{HIDDEN}";
    /// RFC 9112 6.3 item 5 allows taking identical values as one: the body is 5 bytes, 12345.
    cl_twice_with_the_same_value: Served(&[(200, "Acquired"), (200, "")], 12345),
        b"PUT /peers/{W}/Big HTTP/1.1\r\nHost: throttle\r\nContent-Length: 5\r\n\
          Content-Length: 5\r\n\r\n12345{CLOSE}";
    /// Http11Probe CL-COMMA-SAME.
    cl_list_with_the_same_value: Served(&[(200, "Acquired"), (200, "")], 12345),
        b"PUT /peers/{W}/Big HTTP/1.1\r\nHost: throttle\r\nContent-Length: 5, 5\r\n\r\n\
          12345{CLOSE}";
    /// Http11Probe CL-COMMA-TRIPLE: the same rule as two identical values, or refused.
    cl_list_of_three_same_values: RefusedOrServed(&[(200, "Acquired"), (200, "")], 12345),
        b"PUT /peers/{W}/Big HTTP/1.1\r\nHost: throttle\r\nContent-Length: 5, 5, 5\r\n\r\n\
          12345{CLOSE}";
    /// Http11Probe CL-NEGATIVE; issue 20 (the hidden request ran). An absolute value is 80.
    cl_negative: Refused(400), b"{GET}Content-Length: -80\r\n\r\n{HIDDEN}{HIDDEN}";
    /// Http11Probe CL-NEGATIVE-ZERO.
    cl_negative_zero: Refused(400), b"{GET}Content-Length: -0\r\n\r\n{HIDDEN}{HIDDEN}";
    /// Http11Probe CLTE-SMUGGLED-GET-CL-PLUS. Rust's `u64::from_str` accepts `+80`.
    cl_with_a_plus_sign: Refused(400), b"{GET}Content-Length: +80\r\n\r\n{HIDDEN}{HIDDEN}";
    /// Http11Probe CL-HEX-PREFIX; issue 20 (the hidden request ran). 0x50 is 80, `0` is 0.
    cl_hexadecimal: Refused(400), b"{GET}Content-Length:  0x50\r\n\r\n{HIDDEN}{HIDDEN}";
    /// Issue 20 (the hidden request ran).
    cl_not_a_number: Refused(400), b"{GET}Content-Length: abc\r\n\r\n{HIDDEN}{HIDDEN}";
    /// Http11Probe CLTE-SMUGGLED-GET-CL-NON-NUMERIC: a reader that stops at the first non-digit
    /// (`strtol`) takes 80.
    cl_digits_then_letters: Refused(400), b"{GET}Content-Length: 80abc\r\n\r\n{HIDDEN}{HIDDEN}";
    cl_empty: Refused(400), b"{GET}Content-Length: \r\n\r\n{HIDDEN}{HIDDEN}";
    /// 2^64 + 80: wraps around to 80 in 64 bits.
    cl_overflowing_u64: Refused(400),
        b"{GET}Content-Length: 18446744073709551696\r\n\r\n{HIDDEN}{HIDDEN}";
    /// Http11Probe CL-INTERNAL-SPACE: dropping the space gives 80.
    cl_with_an_inner_space: Refused(400), b"{GET}Content-Length: 8 0\r\n\r\n{HIDDEN}{HIDDEN}";
    /// Http11Probe CL-UNDERSCORE: Python's `int("8_0")` is 80.
    cl_with_an_underscore: Refused(400), b"{GET}Content-Length: 8_0\r\n\r\n{HIDDEN}{HIDDEN}";
    /// Http11Probe CL-LEADING-ZEROS: 0080 is 1*DIGIT, decimal 80; the body is the hidden
    /// request, not a request.
    cl_with_leading_zeros: RefusedOrServed(&[(200, "Ok"), (200, "")], 0),
        b"{GET}Content-Length: 0080\r\n\r\n{HIDDEN}{CLOSE}";
    /// Http11Probe CL-LEADING-ZEROS-OCTAL: 0120 is decimal 120 (octal would be 80, ending the
    /// body before 40 bytes of padding).
    cl_that_looks_octal: RefusedOrServed(&[(200, "Ok"), (200, "")], 0),
        b"{GET}Content-Length: 0120\r\n\r\n{HIDDEN}........................................\
          {CLOSE}";

    // Transfer-Encoding of any kind is refused and the connection closed: alone 411, beside a
    // Content-Length 400 (RFC 9112 6.1, 6.3 items 3 and 4: "ought to be handled as an error",
    // and the server MUST close the connection after responding).

    /// Issue 20: answered 411, after which the body was read as the next request.
    te_chunked: Refused(411), b"{GET}Transfer-Encoding: chunked\r\n\r\n{HIDDEN}";
    /// Http11Probe CL-TE-BOTH.
    te_chunked_with_cl: Refused(400),
        b"{GET}Content-Length: 80\r\nTransfer-Encoding: chunked\r\n\r\n{HIDDEN}{HIDDEN}";
    te_gzip: Refused(411), b"{GET}Transfer-Encoding: gzip\r\n\r\n{HIDDEN}";
    /// Issue 20 (an unknown coding with a Content-Length: the hidden request ran).
    te_gzip_with_cl: Refused(400),
        b"{GET}Transfer-Encoding: gzip\r\nContent-Length: 80\r\n\r\n{HIDDEN}{HIDDEN}";
    te_identity: Refused(411), b"{GET}Transfer-Encoding: identity\r\n\r\n{HIDDEN}";
    /// Http11Probe TE-IDENTITY; SMUGGLEtest ("whitelisted identity").
    te_identity_with_cl: Refused(400),
        b"{GET}Transfer-Encoding: identity\r\nContent-Length: 80\r\n\r\n{HIDDEN}{HIDDEN}";
    te_chunked_then_gzip: Refused(411), b"{GET}Transfer-Encoding: chunked, gzip\r\n\r\n{HIDDEN}";
    /// Http11Probe TE-NOT-FINAL-CHUNKED.
    te_chunked_then_gzip_with_cl: Refused(400),
        b"{GET}Transfer-Encoding: chunked, gzip\r\nContent-Length: 80\r\n\r\n{HIDDEN}{HIDDEN}";
    te_xchunked: Refused(411), b"{GET}Transfer-Encoding: xchunked\r\n\r\n{HIDDEN}";
    /// Http11Probe TE-XCHUNKED; SMUGGLEtest.
    te_xchunked_with_cl: Refused(400),
        b"{GET}Transfer-Encoding: xchunked\r\nContent-Length: 80\r\n\r\n{HIDDEN}{HIDDEN}";
    /// The space is optional whitespace: the coding is `chunked`.
    te_with_a_leading_space: Refused(411), b"{GET}Transfer-Encoding:  chunked\r\n\r\n{HIDDEN}";
    /// SMUGGLEtest (" chunked").
    te_with_a_leading_space_and_cl: Refused(400),
        b"{GET}Transfer-Encoding:  chunked\r\nContent-Length: 80\r\n\r\n{HIDDEN}{HIDDEN}";
    te_with_a_trailing_tab: Refused(411), b"{GET}Transfer-Encoding: chunked\t\r\n\r\n{HIDDEN}";
    /// Http11Probe TE-TRAILING-SPACE (here a tab); smuggler endspace-09.
    te_with_a_trailing_tab_and_cl: Refused(400),
        b"{GET}Transfer-Encoding: chunked\t\r\nContent-Length: 80\r\n\r\n{HIDDEN}{HIDDEN}";
    /// Whitespace before the colon is a 400 by itself (RFC 9112 5.1); smuggler space1.
    te_with_a_space_before_the_colon: Refused(400),
        b"{GET}Transfer-Encoding : chunked\r\n\r\n{HIDDEN}";
    /// Http11Probe TE-SP-BEFORE-COLON.
    te_with_a_space_before_the_colon_and_cl: Refused(400),
        b"{GET}Transfer-Encoding : chunked\r\nContent-Length: 80\r\n\r\n{HIDDEN}{HIDDEN}";
    /// smuggler tabprefix2.
    te_with_tabs_around_the_colon_and_cl: Refused(400),
        b"{GET}Transfer-Encoding\t:\tchunked\r\nContent-Length: 80\r\n\r\n{HIDDEN}{HIDDEN}";
    /// Http11Probe TRANSFER_ENCODING: another header name (a valid token), so the
    /// Content-Length frames the body; some frameworks turn `_` into `-`, so refusing is fine.
    te_with_an_underscore_and_cl: RefusedOrServed(&[(200, "Ok"), (200, "")], 0),
        b"{GET}Transfer_Encoding: chunked\r\nContent-Length: 80\r\n\r\n{HIDDEN}{CLOSE}";
    /// SMUGGLEtest ("Transfer-encoding"): header names are case-insensitive.
    te_name_in_lower_case: Refused(411), b"{GET}transfer-encoding: chunked\r\n\r\n{HIDDEN}";
    /// Http11Probe TE-CASE-MISMATCH.
    te_value_capitalised_with_cl: Refused(400),
        b"{GET}Transfer-Encoding: Chunked\r\nContent-Length: 80\r\n\r\n{HIDDEN}{HIDDEN}";
    /// Http11Probe TE-DUPLICATE-HEADERS; SMUGGLEtest ("duplicate header").
    te_twice_with_cl: Refused(400),
        b"{GET}Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\nContent-Length: 80\
          \r\n\r\n{HIDDEN}{HIDDEN}";
    /// Http11Probe TE-EMPTY-VALUE.
    te_empty_with_cl: Refused(400),
        b"{GET}Transfer-Encoding: \r\nContent-Length: 80\r\n\r\n{HIDDEN}{HIDDEN}";
    /// Http11Probe TE-LEADING-COMMA.
    te_with_a_leading_comma_and_cl: Refused(400),
        b"{GET}Transfer-Encoding: , chunked\r\nContent-Length: 80\r\n\r\n{HIDDEN}{HIDDEN}";
    /// Http11Probe TE-TRAILING-COMMA.
    te_with_a_trailing_comma_and_cl: Refused(400),
        b"{GET}Transfer-Encoding: chunked,\r\nContent-Length: 80\r\n\r\n{HIDDEN}{HIDDEN}";
    /// Http11Probe TE-DOUBLE-CHUNKED (chunked may be applied once only, RFC 9112 6.1).
    te_chunked_twice_with_cl: Refused(400),
        b"{GET}Transfer-Encoding: chunked, chunked\r\nContent-Length: 80\r\n\r\n\
          {HIDDEN}{HIDDEN}";
    /// Http11Probe TE-VTAB; smuggler midspace-0b.
    te_after_a_vertical_tab_with_cl: Refused(400),
        b"{GET}Transfer-Encoding:\x0bchunked\r\nContent-Length: 80\r\n\r\n{HIDDEN}{HIDDEN}";
    /// Http11Probe TE-FORMFEED; smuggler midspace-0c.
    te_after_a_form_feed_with_cl: Refused(400),
        b"{GET}Transfer-Encoding:\x0cchunked\r\nContent-Length: 80\r\n\r\n{HIDDEN}{HIDDEN}";
    /// Http11Probe TE-NULL.
    te_with_a_nul_and_cl: Refused(400),
        b"{GET}Transfer-Encoding: chunked\x00\r\nContent-Length: 80\r\n\r\n{HIDDEN}{HIDDEN}";
    /// smuggler midspace-a0: 0xA0 is obs-text, allowed in a value, so the coding is unknown.
    te_after_a_non_breaking_space_with_cl: Refused(400),
        b"{GET}Transfer-Encoding:\xa0chunked\r\nContent-Length: 80\r\n\r\n{HIDDEN}{HIDDEN}";
    /// SMUGGLEtest ("ch\u{f9}nked").
    te_with_a_non_ascii_letter_and_cl: Refused(400),
        b"{GET}Transfer-Encoding: ch\xc3\xb9nked\r\nContent-Length: 80\r\n\r\n{HIDDEN}{HIDDEN}";
    /// Http11Probe TE-OBS-FOLD.
    te_folded_with_cl: Refused(400),
        b"{GET}Transfer-Encoding:\r\n chunked\r\nContent-Length: 80\r\n\r\n{HIDDEN}{HIDDEN}";
    /// smuggler nameprefix1: whitespace before the first header field (RFC 9112 2.2).
    te_indented_as_the_first_header_with_cl: Refused(400),
        b"GET /health HTTP/1.1\r\n Transfer-Encoding: chunked\r\nHost: throttle\r\n\
          Content-Length: 80\r\n\r\n{HIDDEN}{HIDDEN}";
    /// Http11Probe TE-HTTP10.
    te_in_http_1_0_with_cl: Refused(400),
        b"GET /health HTTP/1.0\r\nHost: throttle\r\nTransfer-Encoding: chunked\r\n\
          Content-Length: 80\r\n\r\n{HIDDEN}{HIDDEN}";
    /// smuggler endspacex-0a: a bare LF ends the line, so there is a Transfer-Encoding (and
    /// for a reader that takes only CRLF, a value with a control character): refused either way.
    te_before_a_bare_lf_with_cl: Refused(400),
        b"{GET}Transfer-Encoding: chunked\nX: X\r\nContent-Length: 80\r\n\r\n{HIDDEN}{HIDDEN}";
    /// smuggler xnprespace (without its extra byte): the same, the other way round.
    te_after_a_bare_lf_with_cl: Refused(400),
        b"{GET}X: X\nTransfer-Encoding: chunked\r\nContent-Length: 80\r\n\r\n{HIDDEN}{HIDDEN}";
    /// smuggler xprespace-0d: a bare CR, which may not end a line (RFC 9112 2.2).
    te_after_a_bare_cr_with_cl: Refused(400),
        b"{GET}X: X\rTransfer-Encoding: chunked\r\nContent-Length: 80\r\n\r\n{HIDDEN}{HIDDEN}";

    // Published CL.TE and TE.CL payloads, whole (PortSwigger's labs; Http11Probe CLTE-PIPELINE,
    // TECL-PIPELINE).

    /// A reader that takes the Content-Length (85) forwards it all as one request; a reader
    /// that takes the chunks finds the hidden request after the last chunk.
    clte_pipeline: Refused(400),
        b"POST /new_peer HTTP/1.1\r\nHost: throttle\r\nContent-Length: 85\r\n\
          Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n{HIDDEN}";
    /// A reader that takes the chunks forwards it all as one request; a reader that takes the
    /// Content-Length (4, `50\r\n`) finds the hidden request in the first chunk.
    tecl_pipeline: Refused(400),
        b"POST /new_peer HTTP/1.1\r\nHost: throttle\r\nContent-Length: 4\r\n\
          Transfer-Encoding: chunked\r\n\r\n50\r\n{HIDDEN}\r\n0\r\n\r\n";
    /// Http11Probe GET-CL-BODY-DESYNC: a GET's body is read as its body, not as a request.
    a_get_with_a_body: Served(&[(200, "Ok"), (200, "")], 0),
        b"{GET}Content-Length: 80\r\n\r\n{HIDDEN}{CLOSE}";

    // Control characters: NUL, bare CR and other CTLs in a name or value are invalid (RFC 9110
    // 5.5, RFC 9112 2.2): 400 and close. Issue 20: a NUL in a value was answered 200.

    nul_in_a_value: Refused(400),
        b"{GET}X-Note: a\x00b\r\nContent-Length: 80\r\n\r\n{HIDDEN}{HIDDEN}";
    nul_in_a_name: Refused(400),
        b"{GET}X-No\x00te: a\r\nContent-Length: 80\r\n\r\n{HIDDEN}{HIDDEN}";
    /// Http11Probe BARE-CR-HEADER-VALUE.
    bare_cr_in_a_value: Refused(400),
        b"{GET}X-Note: a\rb\r\nContent-Length: 80\r\n\r\n{HIDDEN}{HIDDEN}";
    bare_cr_in_a_name: Refused(400),
        b"{GET}X-No\rte: a\r\nContent-Length: 80\r\n\r\n{HIDDEN}{HIDDEN}";
    /// A reader that ends lines at a bare CR finds the Content-Length.
    bare_cr_as_a_line_end: Refused(400),
        b"{GET}X-Note: a\rContent-Length: 80\r\n\r\n{HIDDEN}{HIDDEN}";
    control_01_in_a_value: Refused(400),
        b"{GET}X-Note: a\x01b\r\nContent-Length: 80\r\n\r\n{HIDDEN}{HIDDEN}";
    control_01_in_a_name: Refused(400),
        b"{GET}X-No\x01te: a\r\nContent-Length: 80\r\n\r\n{HIDDEN}{HIDDEN}";
    delete_7f_in_a_value: Refused(400),
        b"{GET}X-Note: a\x7fb\r\nContent-Length: 80\r\n\r\n{HIDDEN}{HIDDEN}";
    delete_7f_in_a_name: Refused(400),
        b"{GET}X-No\x7fte: a\r\nContent-Length: 80\r\n\r\n{HIDDEN}{HIDDEN}";

    // Whitespace between a header name and its colon: 400 (RFC 9112 5.1, a MUST), and close.

    space_before_a_colon: Refused(400),
        b"{GET}X-Note : a\r\nContent-Length: 80\r\n\r\n{HIDDEN}{HIDDEN}";
    /// A reader that trims the name takes the Content-Length.
    cl_with_a_space_before_the_colon: Refused(400),
        b"{GET}Content-Length : 80\r\n\r\n{HIDDEN}{HIDDEN}";
    /// smuggler postspace-09, on Content-Length.
    cl_with_a_tab_before_the_colon: Refused(400),
        b"{GET}Content-Length\t: 80\r\n\r\n{HIDDEN}{HIDDEN}";

    // obs-fold, a line that starts with a space or tab (RFC 9112 5.2, 2.2): 400 and close.

    obs_fold_with_a_space: Refused(400),
        b"{GET}X-Note: a\r\n b\r\nContent-Length: 80\r\n\r\n{HIDDEN}{HIDDEN}";
    obs_fold_with_a_tab: Refused(400),
        b"{GET}X-Note: a\r\n\tb\r\nContent-Length: 80\r\n\r\n{HIDDEN}{HIDDEN}";
    /// A reader that ignores folded lines finds no Content-Length.
    cl_folded: Refused(400), b"{GET}Content-Length:\r\n 80\r\n\r\n{HIDDEN}{HIDDEN}";
    /// Whitespace between the request line and the first header (RFC 9112 2.2).
    space_before_the_first_header: Refused(400),
        b"GET /health HTTP/1.1\r\n X-Note: a\r\nHost: throttle\r\nContent-Length: 80\r\n\r\n\
          {HIDDEN}{HIDDEN}";

    // Bare LF line ends are accepted consistently (RFC 9112 2.2 allows it; httparse does).

    /// Issue 20: a bare LF hid a Content-Length and the hidden request ran. Taken as a line end,
    /// the Content-Length frames the hidden request as the body; or the request is refused.
    bare_lf_before_a_cl: RefusedOrServed(&[(200, "Ok"), (200, "")], 0),
        b"{GET}X-Note: a\nContent-Length: 80\r\n\r\n{HIDDEN}{CLOSE}";
    /// Issue 20: got no answer at all.
    bare_lf_line_ends_throughout: Served(&[(200, "Ok"), (200, "Acquired"), (200, "")], 12345),
        b"GET /health HTTP/1.1\nHost: throttle\n\n\
          PUT /peers/{W}/Big HTTP/1.1\nHost: throttle\nContent-Length: 5\n\n12345\
          GET /version HTTP/1.1\nHost: throttle\nConnection: close\n\n";

    // The absolute form of the target is accepted (RFC 9112 3.2.2): path and query are taken
    // from it, and the Host header is ignored.

    /// Issue 20: answered 404.
    absolute_form: Served(&[(200, "Ok")], 0),
        b"GET http://localhost/health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    /// The victim holds M, so a peer of one's own waits for it, and `block_for=0s` answers at
    /// once; the query of the remainder names the semaphore.
    absolute_form_with_a_query: Served(&[(202, "Pending"), (200, "100000")], 0),
        b"PUT http://h/peers/{W}/M?block_for=0s HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\n\
          \r\n1GET http://h/remainder?semaphore=Big HTTP/1.1\r\nHost: h\r\nConnection: close\
          \r\n\r\n";

    // Bytes that cannot begin a request line are answered 400 and closed at once, not after
    // the request timeout. Issue 20: junk and a ClientHello left the connection open for
    // seconds without an answer.

    binary_junk: RefusedAtOnce, [junk().as_slice(), &b"{HIDDEN}"[..]].concat();
    /// Without a CR or LF, a reader that waits for the end of the request line waits for the
    /// request timeout.
    binary_junk_without_line_ends: RefusedAtOnce,
        [junk_without_line_ends().as_slice(), &b"{HIDDEN}"[..]].concat();
    tls_client_hello: RefusedAtOnce, [CLIENT_HELLO, &b"{HIDDEN}"[..]].concat();
    http2_preface: RefusedAtOnce, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n{HIDDEN}";

    // Limits.

    /// Over the 80 KiB head limit of the HTTP layer (`workers.rs` sets it).
    head_too_long: Refused(431), long_head();
    /// Over the 64 KiB body limit, by its Content-Length.
    body_too_long: Refused(413), long_body();
    /// 80 of 100 bytes, then silence.
    body_never_completes: TimedOut, b"{GET}Content-Length: 100\r\n\r\n{HIDDEN}";

    // Versions other than HTTP/1.0 and 1.1 (RFC 9112 2.3): 400 or 505, and close.

    version_1_2: RefusedWithOneOf(&[400, 505]),
        b"GET /health HTTP/1.2\r\nHost: throttle\r\n\r\n{HIDDEN}";
    version_2_0: RefusedWithOneOf(&[400, 505]),
        b"GET /health HTTP/2.0\r\nHost: throttle\r\n\r\n{HIDDEN}";
    version_0_9: RefusedWithOneOf(&[400, 505]),
        b"GET /health HTTP/0.9\r\nHost: throttle\r\n\r\n{HIDDEN}";
    /// HTTP-name is case-sensitive (RFC 9112 2.3).
    version_in_lower_case: RefusedWithOneOf(&[400, 505]),
        b"GET /health http/1.1\r\nHost: throttle\r\n\r\n{HIDDEN}";

    // Legitimate pipelining: well-framed requests in one write, answered in order.

    three_pipelined_requests: Served(&[(200, "Ok"), (200, "Acquired"), (200, "")], 12345),
        b"{GET}\r\nPUT /peers/{W}/Big HTTP/1.1\r\nHost: throttle\r\nContent-Length: 5\r\n\r\n\
          12345{CLOSE}";
}

/// Three well-framed requests in one write get three answers in order, and the connection
/// stays open for a fourth request in a later write.
#[test]
fn pipelined_requests_keep_the_connection_alive() {
    let server = Server::start(CONFIG);
    let own = server.new_peer();
    let mut stream = TcpStream::connect(server.addr).expect("connect");
    let three = format!(
        "GET /health HTTP/1.1\r\nHost: throttle\r\n\r\n\
         PUT /peers/{own}/Big HTTP/1.1\r\nHost: throttle\r\nContent-Length: 5\r\n\r\n12345\
         GET /version HTTP/1.1\r\nHost: throttle\r\n\r\n"
    );
    stream.write_all(three.as_bytes()).expect("send");
    let seen = read_answers(&mut stream, 3);
    let expected: &[(u16, &str)] = &[(200, "Ok"), (200, "Acquired"), (200, "")];
    let mut problems = Vec::new();
    served_as(&seen, expected, &mut problems);
    assert!(problems.is_empty(), "{}\ngot {seen}", problems.join("; "));
    assert!(!seen.closed, "closed after three answers: {seen}");
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: throttle\r\n\r\n")
        .expect("send a fourth request");
    let seen = read_answers(&mut stream, 1);
    served_as(&seen, &[(200, "Ok")], &mut problems);
    assert!(problems.is_empty(), "{}\ngot {seen}", problems.join("; "));
    assert_eq!(server.remainder("Big"), BIG - 12345);
}

/// The rows' bytes, rendered for a victim 42 and an own peer 43, are the fuzz seeds
/// `fuzz/seeds/framing/framing_<row>` of the `framing` target (raw bytes into the head
/// parser), one file per row. Rows over 4 KiB are left out: libFuzzer
/// would raise its input length limit to theirs. `THROTTLE_WRITE_SEEDS=1 cargo test --test
/// framing the_fuzz_seeds` writes them.
#[test]
fn the_fuzz_seeds_are_the_rows() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/framing");
    let write = std::env::var_os("THROTTLE_WRITE_SEEDS").is_some();
    let mut expected = Vec::new();
    for (name, template) in rows() {
        let bytes = render(&template, 42, 43);
        if bytes.len() > 4096 {
            continue;
        }
        let file = format!("framing_{name}");
        let path = dir.join(&file);
        if write {
            std::fs::write(&path, &bytes).expect("write a seed");
        }
        assert_eq!(
            std::fs::read(&path).ok().as_deref(),
            Some(bytes.as_slice()),
            "{} is not its row; THROTTLE_WRITE_SEEDS=1 writes the seeds",
            path.display()
        );
        expected.push(file);
    }
    let mut present: Vec<String> = std::fs::read_dir(&dir)
        .expect("the seed directory")
        .map(|entry| entry.expect("a directory entry").file_name())
        .filter_map(|name| name.into_string().ok())
        .filter(|name| name.starts_with("framing_"))
        .collect();
    present.sort();
    expected.sort();
    assert_eq!(
        present, expected,
        "seeds without a row, or rows without a seed"
    );
}

/// Runs one row on a server of its own: a victim holding `M`, a peer of the sender's own, the
/// row's bytes on a fresh connection, then the victim checked on another.
#[track_caller]
fn check(expect: Expect, template: &[u8]) {
    let args: &[&str] = match expect {
        TimedOut => &["--request-timeout", "1s"],
        _ => &[],
    };
    let server = Server::start_with(CONFIG, args, &[]);
    let victim = server.new_peer();
    server.acquire(victim, "M", 1, "").expect(200, "Acquired");
    let own = server.new_peer();
    let request = render(template, victim, own);
    let within = match expect {
        RefusedAtOnce => AT_ONCE,
        _ => CLOSE_WITHIN,
    };
    let seen = exchange(server.addr, &request, within);
    let mut problems = Vec::new();
    let taken = match expect {
        Refused(status) => refused_with(&seen, &[status], within, &mut problems),
        RefusedWithOneOf(statuses) => refused_with(&seen, statuses, within, &mut problems),
        RefusedAtOnce => refused_with(&seen, &[400], within, &mut problems),
        TimedOut => {
            if seen.after < Duration::from_millis(900) {
                problems.push(format!(
                    "answered after {:?}, before the timeout",
                    seen.after
                ));
            }
            refused_with(&seen, &[408], within, &mut problems)
        }
        Served(answers, taken) => served(&seen, answers, taken, &mut problems),
        RefusedOrServed(answers, taken) => match seen.answers.first() {
            Some(first) if first.status == 400 => {
                refused_with(&seen, &[400], within, &mut problems)
            }
            _ => served(&seen, answers, taken, &mut problems),
        },
    };
    // The victim's lock, asked on a fresh connection (which also shows the server serves).
    if server.remainder("M") != 0 {
        problems.push("the hidden request ran: the victim's lock on M is gone".to_owned());
    }
    let listed = server.get("/peers/").json();
    let victim_listed = listed
        .as_array()
        .is_some_and(|peers| peers.iter().any(|peer| peer["id"] == victim));
    if !victim_listed {
        problems.push("the hidden request ran: the victim is gone".to_owned());
    }
    let remainder = server.remainder("Big");
    if remainder != BIG - taken {
        problems.push(format!(
            "Big's remainder is {remainder}, expected {}",
            BIG - taken
        ));
    }
    assert!(
        problems.is_empty(),
        "{expect:?}: {}\nsent {}\ngot  {seen}",
        problems.join("; "),
        show(&request, 400)
    );
}

/// Checks a refusal: one answer with one of `statuses` and `Connection: close`, nothing after
/// it, and the connection closed within `within`. Returns the count taken of `Big`: none.
fn refused_with(
    seen: &Exchange,
    statuses: &[u16],
    within: Duration,
    problems: &mut Vec<String>,
) -> i64 {
    match seen.answers.as_slice() {
        [] => problems.push(format!("no answer, expected {statuses:?}")),
        [answer, rest @ ..] => {
            if !statuses.contains(&answer.status) {
                problems.push(format!("status {}, expected {statuses:?}", answer.status));
            }
            let close = answer
                .header("connection")
                .is_some_and(|value| value.to_ascii_lowercase().contains("close"));
            if !close {
                problems.push("no `Connection: close`".to_owned());
            }
            if !rest.is_empty() {
                let statuses: Vec<u16> = rest.iter().map(|answer| answer.status).collect();
                problems.push(format!(
                    "further answers {statuses:?}: the connection was read on"
                ));
            }
        }
    }
    if !seen.rest.is_empty() {
        problems.push("bytes that are not an answer".to_owned());
    }
    if !seen.closed {
        problems.push(format!("the connection stayed open for {within:?}"));
    }
    0
}

/// Checks a row that is served: the answers, and the close the last request asked for.
/// Returns `taken`.
fn served(
    seen: &Exchange,
    expected: &[(u16, &str)],
    taken: i64,
    problems: &mut Vec<String>,
) -> i64 {
    served_as(seen, expected, problems);
    if !seen.closed {
        problems.push("still open after the `Connection: close` of the last request".to_owned());
    }
    taken
}

/// Checks that the requests were answered in order as `expected` says, on the one connection.
fn served_as(seen: &Exchange, expected: &[(u16, &str)], problems: &mut Vec<String>) {
    let got: Vec<(u16, String)> = seen
        .answers
        .iter()
        .map(|answer| (answer.status, answer.text()))
        .collect();
    let matches = got.len() == expected.len()
        && got
            .iter()
            .zip(expected)
            .all(|((status, text), (want, prefix))| status == want && text.starts_with(prefix));
    if !matches {
        problems.push(format!("answers {got:?}, expected {expected:?}"));
    }
    if !seen.rest.is_empty() {
        problems.push("bytes that are not an answer".to_owned());
    }
}

/// `DELETE /peers/{victim}`, padded with a header to exactly [`HIDDEN_LEN`] bytes.
fn hidden(victim: u64) -> Vec<u8> {
    let head = format!("DELETE /peers/{victim} HTTP/1.1\r\nHost: throttle\r\nX-Pad: ");
    let pad = HIDDEN_LEN - head.len() - 4;
    format!("{head}{}\r\n\r\n", "p".repeat(pad)).into_bytes()
}

fn replace(bytes: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut rest = bytes;
    while !rest.is_empty() {
        if rest.starts_with(from) {
            out.extend_from_slice(to);
            rest = &rest[from.len()..];
        } else {
            out.push(rest[0]);
            rest = &rest[1..];
        }
    }
    out
}

/// 1 KiB of pseudo-random bytes, the same in every run.
fn junk() -> Vec<u8> {
    let mut state: u64 = 0x2545_F491_4F6C_DD1D;
    (0..1024)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

/// [`junk`] without the bytes CR and LF.
fn junk_without_line_ends() -> Vec<u8> {
    let mut junk = junk();
    junk.retain(|&byte| byte != b'\r' && byte != b'\n');
    junk
}

/// A TLS 1.2 ClientHello as `openssl s_client -tls1_2 -servername throttle.example` sent it.
const CLIENT_HELLO: &[u8] = b"\
\x16\x03\x01\x00\xcc\x01\x00\x00\xc8\x03\x03\x71\xfa\x05\xbe\x6a\x25\xfd\x43\xe7\x66\x66\xb4\
\xd4\x54\x55\x11\x1b\x75\x44\x09\xf4\x6b\xbc\x8b\xa3\xd5\x6c\xc6\x22\x7a\xff\x84\x00\x00\x38\
\xc0\x2c\xc0\x30\x00\x9f\xcc\xa9\xcc\xa8\xcc\xaa\xc0\x2b\xc0\x2f\x00\x9e\xc0\x24\xc0\x28\x00\
\x6b\xc0\x23\xc0\x27\x00\x67\xc0\x0a\xc0\x14\x00\x39\xc0\x09\xc0\x13\x00\x33\x00\x9d\x00\x9c\
\x00\x3d\x00\x3c\x00\x35\x00\x2f\x00\xff\x01\x00\x00\x67\x00\x00\x00\x15\x00\x13\x00\x00\x10\
throttle.example\
\x00\x0b\x00\x04\x03\x00\x01\x02\x00\x0a\x00\x0c\x00\x0a\x00\x1d\x00\x17\x00\x1e\x00\x19\x00\
\x18\x00\x16\x00\x00\x00\x17\x00\x00\x00\x0d\x00\x2a\x00\x28\x04\x03\x05\x03\x06\x03\x08\x07\
\x08\x08\x08\x09\x08\x0a\x08\x0b\x08\x04\x08\x05\x08\x06\x04\x01\x05\x01\x06\x01\x03\x03\x03\
\x01\x03\x02\x04\x02\x05\x02\x06\x02";

/// A head of 81 KiB, over the limit, with a Content-Length at its end.
fn long_head() -> Vec<u8> {
    let mut head = b"{GET}".to_vec();
    let line = format!("X-Filler: {}\r\n", "a".repeat(1024 - 12));
    for _ in 0..81 {
        head.extend_from_slice(line.as_bytes());
    }
    head.extend_from_slice(b"Content-Length: 80\r\n\r\n{HIDDEN}{HIDDEN}");
    head
}

/// A Content-Length of 70,000 and a body that long, starting with the hidden request (where
/// a server that did not read the body would go on), with another copy after it.
fn long_body() -> Vec<u8> {
    let mut request = b"{GET}Content-Length: 70000\r\n\r\n{HIDDEN}".to_vec();
    request.resize(request.len() + 70_000 - HIDDEN_LEN, b'x');
    request.extend_from_slice(b"{HIDDEN}");
    request
}

/// What came back on a connection.
struct Exchange {
    answers: Vec<Answer>,
    /// The bytes after the last complete answer.
    rest: Vec<u8>,
    /// The server closed the connection (EOF or reset), rather than the deadline passing.
    closed: bool,
    /// From sending to the close or the deadline.
    after: Duration,
}

impl fmt::Display for Exchange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let statuses: Vec<u16> = self.answers.iter().map(|answer| answer.status).collect();
        let state = if self.closed { "closed" } else { "still open" };
        write!(f, "answers {statuses:?}, {state} after {:?}", self.after)?;
        for answer in &self.answers {
            write!(f, "\n     {}", show(&answer.head, 300))?;
            write!(f, "{}", show(&answer.body, 200))?;
        }
        if !self.rest.is_empty() {
            write!(f, "\n     and {}", show(&self.rest, 300))?;
        }
        Ok(())
    }
}

/// One answer of the server.
struct Answer {
    status: u16,
    /// The head as received, up to and including the empty line.
    head: Vec<u8>,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(field, _)| field.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends `request` on a fresh connection (without closing the sending half, so that only the
/// server can end the connection) and reads until the server closes it or `within` passed.
fn exchange(addr: SocketAddr, request: &[u8], within: Duration) -> Exchange {
    let mut stream = TcpStream::connect(addr).expect("connect");
    let started = Instant::now();
    stream
        .set_write_timeout(Some(within))
        .expect("set a timeout");
    // The server may close before it has taken everything: its answer is still there to read.
    let _ = stream.write_all(request);
    let (bytes, closed) = read(&mut stream, started + within, |_| false);
    let (answers, rest) = parse_answers(&bytes);
    Exchange {
        answers,
        rest,
        closed,
        after: started.elapsed(),
    }
}

/// Reads until `n` answers are complete, the server closes or [`CLOSE_WITHIN`] passed.
fn read_answers(stream: &mut TcpStream, n: usize) -> Exchange {
    let started = Instant::now();
    let (bytes, closed) = read(stream, started + CLOSE_WITHIN, |bytes| {
        parse_answers(bytes).0.len() >= n
    });
    let (answers, rest) = parse_answers(&bytes);
    Exchange {
        answers,
        rest,
        closed,
        after: started.elapsed(),
    }
}

/// Reads until `enough` says so, the server closes the connection (then `true`) or `deadline`.
fn read(
    stream: &mut TcpStream,
    deadline: Instant,
    enough: impl Fn(&[u8]) -> bool,
) -> (Vec<u8>, bool) {
    let mut bytes = Vec::new();
    let mut buffer = [0; 16 * 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || enough(&bytes) {
            return (bytes, false);
        }
        stream.set_read_timeout(Some(left)).expect("set a timeout");
        match stream.read(&mut buffer) {
            Ok(0) => return (bytes, true),
            Ok(n) => bytes.extend_from_slice(&buffer[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::ConnectionReset
                        | ErrorKind::ConnectionAborted
                        | ErrorKind::BrokenPipe
                ) =>
            {
                return (bytes, true);
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => panic!("reading failed: {e}"),
        }
    }
}

/// Splits `bytes` into complete answers and what follows them.
fn parse_answers(mut bytes: &[u8]) -> (Vec<Answer>, Vec<u8>) {
    let mut answers = Vec::new();
    while let Some((answer, used)) = parse_answer(bytes) {
        answers.push(answer);
        bytes = &bytes[used..];
    }
    (answers, bytes.to_vec())
}

/// One answer at the start of `bytes` and its length, framed by its Content-Length, by chunks,
/// or (with neither) by the end of the bytes; `None` if it is incomplete or not an answer.
fn parse_answer(bytes: &[u8]) -> Option<(Answer, usize)> {
    let end = bytes.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = std::str::from_utf8(&bytes[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let mut status_line = lines.next()?.split(' ');
    if !status_line.next()?.starts_with("HTTP/1.") {
        return None;
    }
    let status = status_line.next()?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    let value = |name: &str| {
        headers
            .iter()
            .find(|(field, _)| field == name)
            .map(|(_, value)| value.clone())
    };
    let (body, used) = if let Some(length) = value("content-length") {
        let length: usize = length.parse().ok()?;
        let body = bytes.get(end..end.checked_add(length)?)?;
        (body.to_vec(), end + length)
    } else if value("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        let (body, used) = dechunk(&bytes[end..])?;
        (body, end + used)
    } else {
        (bytes[end..].to_vec(), bytes.len())
    };
    let answer = Answer {
        status,
        head: bytes[..end].to_vec(),
        headers,
        body,
    };
    Some((answer, used))
}

/// A chunked body without trailers at the start of `bytes`, and its length on the wire.
fn dechunk(bytes: &[u8]) -> Option<(Vec<u8>, usize)> {
    let mut body = Vec::new();
    let mut at = 0;
    loop {
        let line = at + bytes.get(at..)?.windows(2).position(|w| w == b"\r\n")?;
        let size = std::str::from_utf8(&bytes[at..line]).ok()?;
        let size = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
        at = line + 2;
        if size == 0 {
            return bytes
                .get(at..at + 2)
                .filter(|end| *end == b"\r\n")
                .map(|_| (body, at + 2));
        }
        body.extend_from_slice(bytes.get(at..at + size)?);
        at += size + 2;
    }
}

/// `bytes` with everything but printable ASCII escaped, clipped after `limit` bytes.
fn show(bytes: &[u8], limit: usize) -> String {
    let shown = bytes[..bytes.len().min(limit)].escape_ascii().to_string();
    if bytes.len() > limit {
        format!("{shown}... ({} bytes)", bytes.len())
    } else {
        shown
    }
}
