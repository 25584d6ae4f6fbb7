//! The load generator's own HTTP/1.1 client: one keep-alive connection per client thread over
//! `std::net::TcpStream`, `TCP_NODELAY`, `Content-Length` bodies, so that the figures measure
//! the server and not an HTTP library; plus the few Throttle requests every scenario makes
//! (`new_peer`, removing a peer) and [`Closer`], which ends blocked reads from another thread.
//!
//! Not a general client: plain `http://` only, no redirects, no TLS, no request bodies but
//! short strings. It reads `Content-Length`, chunked and until-close bodies because the server
//! compared against (`--against`) may answer any of them. Requests are written by
//! [`write_request`] and answers parsed by [`read_response`], both over plain buffers, so the
//! tests need no socket.

use std::fmt::Write as _;
use std::io::{self, BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Durations as the server expects them: whole milliseconds.
pub fn wire_duration(duration: Duration) -> String {
    format!("{}ms", duration.as_millis())
}

/// Where the server is.
#[derive(Debug, Clone)]
pub struct Target {
    pub address: SocketAddr,
    pub host: String,
}

impl Target {
    /// `http://HOST[:PORT][/...]`, the port 80 by default; resolves HOST once, here.
    pub fn parse(url: &str) -> Result<Target, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("only http:// URLs are supported, not {url:?}"))?;
        let host = rest.split('/').next().unwrap_or_default().to_owned();
        if host.is_empty() {
            return Err(format!("no host in {url:?}"));
        }
        let with_port = if host.contains(':') && !host.ends_with(']') {
            host.clone()
        } else {
            format!("{host}:80")
        };
        let address = with_port
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve {host}: {e}"))?
            .next()
            .ok_or_else(|| format!("{host} resolves to no address"))?;
        Ok(Target { address, host })
    }
}

/// A whole answer.
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
    /// The `Fencing-Token` header of a granted acquire, when there is one and it is a number.
    pub token: Option<u64>,
}

impl Response {
    /// The body as text, trimmed (the server's answers are one word or one line).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).trim().to_owned()
    }
}

/// One keep-alive connection. Reconnects lazily after an error or a `Connection: close`.
pub struct Client {
    target: Target,
    stream: Option<BufReader<TcpStream>>,
    out: Vec<u8>,
    line: String,
    /// Bounds the connect and every blocked read or write.
    timeout: Duration,
    /// Size of the read buffer.
    capacity: usize,
    /// Where each new connection is registered so that another thread can shut it down, and
    /// this client's place there.
    closer: Option<(Arc<Closer>, usize)>,
}

/// The I/O timeout of [`Client::new`]: longer than any `block_for` the scenarios use.
pub const IO_TIMEOUT: Duration = Duration::from_secs(60);

impl Client {
    /// A client with [`IO_TIMEOUT`] and a 16 KiB read buffer; it connects at its first request.
    pub fn new(target: &Target) -> Client {
        Client::with(target, IO_TIMEOUT, 16 * 1024)
    }

    /// A client with its own I/O timeout and read buffer size (the crowd scenarios run
    /// thousands of clients, with small buffers and shorter timeouts).
    pub fn with(target: &Target, timeout: Duration, capacity: usize) -> Client {
        Client {
            target: target.clone(),
            stream: None,
            out: Vec::with_capacity(256),
            line: String::with_capacity(128),
            timeout,
            capacity,
            closer: None,
        }
    }

    /// Registers every connection of this client in `closer`, at `slot`.
    pub fn closed_by(mut self, closer: &Arc<Closer>, slot: usize) -> Client {
        self.closer = Some((closer.clone(), slot));
        self
    }

    /// Whether the next request reuses a connection.
    pub fn is_connected(&self) -> bool {
        self.stream.is_some()
    }

    /// Connects unless connected, so that a scenario can connect before its clock starts.
    pub fn connect(&mut self) -> io::Result<&mut BufReader<TcpStream>> {
        if self.stream.is_none() {
            let stream = TcpStream::connect_timeout(&self.target.address, self.timeout)?;
            stream.set_nodelay(true)?;
            stream.set_read_timeout(Some(self.timeout))?;
            stream.set_write_timeout(Some(self.timeout))?;
            if let Some((closer, slot)) = &self.closer {
                closer.register(*slot, &stream)?;
            }
            self.stream = Some(BufReader::with_capacity(self.capacity, stream));
        }
        Ok(self.stream.as_mut().expect("connected above"))
    }

    /// Sends a request and reads the whole response. `body` is sent with a `Content-Length`
    /// (also when empty, for PUT and POST).
    pub fn request(&mut self, method: &str, path: &str, body: &str) -> io::Result<Response> {
        let result = self.exchange(method, path, body);
        if result.is_err() {
            self.stream = None;
        }
        result
    }

    fn exchange(&mut self, method: &str, path: &str, body: &str) -> io::Result<Response> {
        let mut out = std::mem::take(&mut self.out);
        write_request(&mut out, method, path, &self.target.host, body);
        let written = self.connect().and_then(|s| s.get_mut().write_all(&out));
        self.out = out;
        written?;

        let mut line = std::mem::take(&mut self.line);
        let stream = self.stream.as_mut().expect("connected above");
        let read = read_response(stream, &mut line);
        self.line = line;
        let (response, after) = read?;
        if after == After::Close {
            self.stream = None;
        }
        Ok(response)
    }

    /// A request that must answer one of `expected`.
    pub fn expect(
        &mut self,
        method: &str,
        path: &str,
        body: &str,
        expected: &[u16],
    ) -> Result<Response, String> {
        let response = self
            .request(method, path, body)
            .map_err(|e| format!("{method} {path}: {e}"))?;
        if expected.contains(&response.status) {
            Ok(response)
        } else {
            Err(format!(
                "{method} {path}: {} {}",
                response.status,
                response.text()
            ))
        }
    }

    /// `POST /new_peer` with this lease; the new peer's id.
    pub fn new_peer(&mut self, expires_in: Duration) -> Result<u64, String> {
        let body = format!(r#"{{"expires_in":"{}"}}"#, wire_duration(expires_in));
        let response = self.expect("POST", "/new_peer", &body, &[200])?;
        response
            .text()
            .parse()
            .map_err(|_| format!("POST /new_peer: not a peer id: {:?}", response.text()))
    }

    /// `DELETE /peers/{peer}`, which also releases its locks.
    pub fn remove_peer(&mut self, peer: u64) -> Result<(), String> {
        self.expect("DELETE", &format!("/peers/{peer}"), "", &[200])
            .map(drop)
    }
}

/// What happens to the connection after a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum After {
    /// It may carry the next request.
    KeepAlive,
    /// The server closes it (`Connection: close`, HTTP/1.0, or a body that runs until the
    /// close).
    Close,
}

/// Writes a request into `out` (cleared first). `body` is sent with a `Content-Length`, also
/// when empty for PUT and POST, whose routes the server reads a body for.
pub fn write_request(out: &mut Vec<u8>, method: &str, path: &str, host: &str, body: &str) {
    out.clear();
    let _ = write!(out, "{method} {path} HTTP/1.1\r\nHost: {host}\r\n");
    if !body.is_empty() || method == "PUT" || method == "POST" {
        let _ = write!(
            out,
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        );
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body.as_bytes());
}

/// Reads one whole response from `stream`; `line` is a reusable buffer. The body is framed by
/// `Content-Length`, by chunks (trailers skipped), or else runs until the server closes the
/// connection (not for 1xx, 204 and 304, which have none).
pub fn read_response(
    stream: &mut impl BufRead,
    line: &mut String,
) -> io::Result<(Response, After)> {
    line.clear();
    if stream.read_line(line)? == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed before the response",
        ));
    }
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or_else(|| invalid(format!("bad status line {:?}", line.trim_end())))?;
    let http10 = line.starts_with("HTTP/1.0");
    let mut length = None;
    let mut chunked = false;
    let mut close = http10;
    let mut token = None;
    loop {
        line.clear();
        if stream.read_line(line)? == 0 {
            return Err(invalid("connection closed in the headers".into()));
        }
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        let Some((name, value)) = header.split_once(':') else {
            return Err(invalid(format!("bad header {header:?}")));
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(
                value
                    .parse::<usize>()
                    .map_err(|_| invalid(format!("bad Content-Length {value:?}")))?,
            );
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.to_ascii_lowercase().contains("chunked");
        } else if name.eq_ignore_ascii_case("fencing-token") {
            token = value.parse().ok();
        } else if name.eq_ignore_ascii_case("connection") {
            let value = value.to_ascii_lowercase();
            close = value.contains("close") || (http10 && !value.contains("keep-alive"));
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            line.clear();
            if stream.read_line(line)? == 0 {
                return Err(invalid("connection closed in a chunked body".into()));
            }
            let size = line.trim_end().split(';').next().unwrap_or_default();
            let size = usize::from_str_radix(size.trim(), 16)
                .map_err(|_| invalid(format!("bad chunk size {size:?}")))?;
            if size == 0 {
                // Trailers, if any, end with an empty line.
                loop {
                    line.clear();
                    if stream.read_line(line)? == 0 || line.trim_end().is_empty() {
                        break;
                    }
                }
                break;
            }
            let start = body.len();
            body.resize(start + size, 0);
            stream.read_exact(&mut body[start..])?;
            let mut crlf = [0; 2];
            stream.read_exact(&mut crlf)?;
        }
    } else if let Some(length) = length {
        body.resize(length, 0);
        stream.read_exact(&mut body)?;
    } else if status >= 200 && status != 204 && status != 304 {
        // No length: the body runs until the server closes the connection.
        stream.read_to_end(&mut body)?;
        close = true;
    }
    let after = if close {
        After::Close
    } else {
        After::KeepAlive
    };
    Ok((
        Response {
            status,
            body,
            token,
        },
        after,
    ))
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

/// Shuts down the connections of many clients at once from another thread, which ends their
/// blocked reads (a long poll, say) when a scenario's time is up. Each client has a slot holding
/// a clone of its current connection; once closed, new connections are shut down at once.
pub struct Closer {
    state: Mutex<(bool, Vec<Option<TcpStream>>)>,
}

impl Closer {
    /// A closer for clients registered at `0..slots`.
    pub fn new(slots: usize) -> Closer {
        Closer {
            state: Mutex::new((false, (0..slots).map(|_| None).collect())),
        }
    }

    fn register(&self, slot: usize, stream: &TcpStream) -> io::Result<()> {
        let mut state = self.state.lock().expect("not poisoned");
        if state.0 {
            let _ = stream.shutdown(std::net::Shutdown::Both);
            return Err(io::Error::other("the scenario is over"));
        }
        state.1[slot] = Some(stream.try_clone()?);
        Ok(())
    }

    /// Shuts down every registered connection, and every one registered from now on.
    pub fn close_all(&self) {
        let mut state = self.state.lock().expect("not poisoned");
        state.0 = true;
        for stream in state.1.iter_mut().filter_map(Option::take) {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
    }
}

/// Percent-encodes a semaphore name for a path segment.
pub fn encode(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for byte in name.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// Parses `raw` as one response; also what is left unread.
    #[track_caller]
    fn parse(raw: &str) -> io::Result<(Response, After, String)> {
        let mut stream = io::Cursor::new(raw.as_bytes().to_vec());
        let (response, after) = read_response(&mut stream, &mut String::new())?;
        let mut rest = String::new();
        stream.read_to_string(&mut rest)?;
        Ok((response, after, rest))
    }

    #[track_caller]
    fn check(raw: &str, status: u16, body: &str, after: After, rest: &str) {
        let (response, actual_after, actual_rest) = parse(raw).expect("a response");
        assert_eq!(response.status, status);
        assert_eq!(String::from_utf8_lossy(&response.body), body);
        assert_eq!(actual_after, after);
        assert_eq!(actual_rest, rest);
    }

    #[track_caller]
    fn error(raw: &str) -> (io::ErrorKind, String) {
        match parse(raw) {
            Err(error) => (error.kind(), error.to_string()),
            Ok((response, ..)) => panic!("expected an error, got status {}", response.status),
        }
    }

    #[test]
    fn content_length_bodies_leave_the_next_response_unread() {
        check(
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n42HTTP/1.1 200 OK\r\n",
            200,
            "42",
            After::KeepAlive,
            "HTTP/1.1 200 OK\r\n",
        );
        check(
            "HTTP/1.1 202 Accepted\r\ncontent-length:0\r\n\r\n",
            202,
            "",
            After::KeepAlive,
            "",
        );
    }

    #[test]
    fn the_fencing_token_is_read_when_it_is_a_number() {
        let token = |raw: &str| parse(raw).expect("a response").0.token;
        assert_eq!(
            token("HTTP/1.1 200 OK\r\nfencing-token: 42\r\nContent-Length: 0\r\n\r\n"),
            Some(42)
        );
        assert_eq!(
            token("HTTP/1.1 200 OK\r\nFencing-Token: x\r\nContent-Length: 0\r\n\r\n"),
            None
        );
        assert_eq!(token("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"), None);
    }

    #[test]
    fn chunked_bodies_with_extensions_and_trailers() {
        check(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
             4\r\nWiki\r\n5;name=x\r\npedia\r\n0\r\nX-Trailer: 1\r\n\r\nrest",
            200,
            "Wikipedia",
            After::KeepAlive,
            "rest",
        );
    }

    #[test]
    fn a_body_without_length_runs_until_the_close() {
        check(
            "HTTP/1.1 200 OK\r\n\r\nall of it",
            200,
            "all of it",
            After::Close,
            "",
        );
        // No body at all for 204 and 304, so the connection stays.
        check(
            "HTTP/1.1 204 No Content\r\n\r\n",
            204,
            "",
            After::KeepAlive,
            "",
        );
        check(
            "HTTP/1.1 304 Not Modified\r\n\r\n",
            304,
            "",
            After::KeepAlive,
            "",
        );
    }

    #[test]
    fn connection_close_and_http_1_0() {
        let close =
            "HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";
        check(close, 408, "", After::Close, "");
        check(
            "HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx",
            200,
            "x",
            After::Close,
            "",
        );
        check(
            "HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 1\r\n\r\nx",
            200,
            "x",
            After::KeepAlive,
            "",
        );
    }

    #[test]
    fn malformed_responses_are_errors() {
        use io::ErrorKind::{InvalidData, UnexpectedEof};
        let bad = |message: &str| (InvalidData, message.to_owned());
        assert_eq!(
            error(""),
            (
                UnexpectedEof,
                "connection closed before the response".to_owned()
            )
        );
        assert_eq!(
            error("SSH-2.0-OpenSSH\r\n"),
            bad("bad status line \"SSH-2.0-OpenSSH\"")
        );
        assert_eq!(
            error("HTTP/1.1 OK\r\n\r\n"),
            bad("bad status line \"HTTP/1.1 OK\"")
        );
        assert_eq!(
            error("HTTP/1.1 200 OK\r\nA: b\r\n"),
            bad("connection closed in the headers")
        );
        assert_eq!(
            error("HTTP/1.1 200 OK\r\nNoColon\r\n\r\n"),
            bad("bad header \"NoColon\"")
        );
        assert_eq!(
            error("HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n"),
            bad("bad Content-Length \"-1\"")
        );
        assert_eq!(
            error("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"),
            bad("bad chunk size \"zz\"")
        );
        assert_eq!(
            error("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nWi"),
            (UnexpectedEof, "failed to fill whole buffer".to_owned())
        );
        assert_eq!(
            error("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"),
            bad("connection closed in a chunked body")
        );
        assert_eq!(
            error("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nabc").0,
            UnexpectedEof
        );
    }

    #[track_caller]
    fn request(method: &str, path: &str, body: &str) -> String {
        let mut out = b"left over".to_vec();
        write_request(&mut out, method, path, "127.0.0.1:8000", body);
        String::from_utf8(out).expect("ASCII")
    }

    #[test]
    fn requests_carry_a_length_when_they_may_have_a_body() {
        assert_eq!(
            request("GET", "/health", ""),
            "GET /health HTTP/1.1\r\nHost: 127.0.0.1:8000\r\n\r\n"
        );
        assert_eq!(
            request("DELETE", "/peers/7", ""),
            "DELETE /peers/7 HTTP/1.1\r\nHost: 127.0.0.1:8000\r\n\r\n"
        );
        assert_eq!(
            request("PUT", "/peers/7/A", "1"),
            "PUT /peers/7/A HTTP/1.1\r\nHost: 127.0.0.1:8000\r\n\
             Content-Type: application/json\r\nContent-Length: 1\r\n\r\n1"
        );
        assert_eq!(
            request("POST", "/new_peer", ""),
            "POST /new_peer HTTP/1.1\r\nHost: 127.0.0.1:8000\r\n\
             Content-Type: application/json\r\nContent-Length: 0\r\n\r\n"
        );
    }

    #[test]
    fn targets() {
        let target = Target::parse("http://127.0.0.1:8000").expect("valid");
        assert_eq!(
            (target.address.to_string(), target.host.as_str()),
            ("127.0.0.1:8000".to_owned(), "127.0.0.1:8000")
        );
        let target = Target::parse("http://127.0.0.1/ignored/path").expect("valid");
        assert_eq!(
            (target.address.to_string(), target.host.as_str()),
            ("127.0.0.1:80".to_owned(), "127.0.0.1")
        );
        let target = Target::parse("http://[::1]:9").expect("valid");
        assert_eq!(target.address.to_string(), "[::1]:9");
        assert_eq!(
            Target::parse("http://[::1]")
                .expect("valid")
                .address
                .to_string(),
            "[::1]:80"
        );
        assert_eq!(
            Target::parse("https://127.0.0.1").err().as_deref(),
            Some("only http:// URLs are supported, not \"https://127.0.0.1\"")
        );
        assert_eq!(
            Target::parse("http:///x").err().as_deref(),
            Some("no host in \"http:///x\"")
        );
        assert!(Target::parse("http://127.0.0.1:port").is_err());
    }

    #[test]
    fn encoding_of_semaphore_names() {
        assert_eq!(encode("big"), "big");
        assert_eq!(encode("a-b.c_d~e"), "a-b.c_d~e");
        assert_eq!(encode("a/b c%"), "a%2Fb%20c%25");
        assert_eq!(encode("é"), "%C3%A9");
    }

    #[test]
    fn durations_on_the_wire_are_whole_milliseconds() {
        assert_eq!(wire_duration(Duration::from_secs(5)), "5000ms");
        assert_eq!(wire_duration(Duration::from_micros(1999)), "1ms");
        assert_eq!(wire_duration(Duration::ZERO), "0ms");
    }
}
