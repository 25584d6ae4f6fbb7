//! A request as the workers see it: head and body read in full by the readiness loop, and the
//! writer its answer goes to.

use std::fmt;
use std::io::Error as IoError;
use std::io::{self, Cursor, ErrorKind, Read, Write};
use std::net::SocketAddr;

use crate::reactor::ConnWriter;
use crate::{HTTPVersion, Header, Method, Response};

/// An HTTP request, complete: the loop hands a request over only once its body has arrived, so
/// reading the body never waits for the client.
///
/// One request per connection is with the workers at a time: the next one of a pipelining
/// client is handed over once this one is answered, so answers leave in order.
///
/// A request dropped without an answer is answered `500` (a worker that panicked).
pub struct Request {
    body: Cursor<Vec<u8>>,
    /// `None` once answered.
    response_writer: Option<ConnWriter>,
    remote_addr: Option<SocketAddr>,
    method: Method,
    path: String,
    http_version: HTTPVersion,
    headers: Vec<Header>,
}

/// A request whose head and body the loop has read in full; the answer goes to `writer`.
pub(crate) fn from_reactor(
    head: crate::framing::Head,
    body: Vec<u8>,
    remote_addr: Option<SocketAddr>,
    writer: ConnWriter,
) -> Request {
    Request {
        body: Cursor::new(body),
        response_writer: Some(writer),
        remote_addr,
        method: head.method,
        path: head.target,
        http_version: head.version,
        headers: head.headers,
    }
}

impl Request {
    /// Returns the method requested by the client (eg. `GET`, `POST`, etc.).
    #[inline]
    pub fn method(&self) -> &Method {
        &self.method
    }

    /// Returns the resource requested by the client.
    #[inline]
    pub fn url(&self) -> &str {
        &self.path
    }

    /// Returns a list of all headers sent by the client.
    #[inline]
    pub fn headers(&self) -> &[Header] {
        &self.headers
    }

    /// Returns the HTTP version of the request.
    #[inline]
    pub fn http_version(&self) -> &HTTPVersion {
        &self.http_version
    }

    /// The length of the body in bytes (always known: bodies arrive in full).
    #[inline]
    pub fn body_length(&self) -> Option<usize> {
        Some(self.body.get_ref().len())
    }

    /// Returns the address of the client that sent this request.
    ///
    /// Note that this is gathered from the socket. If you receive the request from a proxy,
    /// this function will return the address of the proxy and not the address of the actual
    /// user.
    #[inline]
    pub fn remote_addr(&self) -> Option<&SocketAddr> {
        self.remote_addr.as_ref()
    }

    /// The body, read in full before the request was handed over.
    #[inline]
    pub fn as_reader(&mut self) -> &mut dyn Read {
        &mut self.body
    }

    /// The whole body (read in full before the request was handed over), without copying it.
    #[inline]
    pub fn body(&self) -> &[u8] {
        self.body.get_ref()
    }

    /// Whether the client closed its side of the connection (or the connection failed) while
    /// this request waits for its answer. The loop sets it as soon as it reads the end of the
    /// stream, so that a client that went away does not hold a waiting thread until its
    /// `block_for` ends. A client that half-closes after sending its request counts as gone,
    /// as in most HTTP servers.
    pub fn client_closed(&self) -> bool {
        self.response_writer
            .as_ref()
            .is_none_or(ConnWriter::client_closed)
    }

    /// Runs `callback` once, on the loop's thread, when [`Request::client_closed`] becomes true;
    /// at once (on this thread) if it is already. A long poll registers a wake-up here, so it
    /// needs no timer to notice its client left. The callback must not wait for anything a
    /// worker holds while it waits for the loop (nothing does: workers never wait for it).
    pub fn on_client_close(&self, callback: impl FnOnce() + Send + 'static) {
        match &self.response_writer {
            Some(writer) => writer.on_client_close(Box::new(callback)),
            None => callback(),
        }
    }

    /// Sends a response to this request.
    #[inline]
    pub fn respond<R>(mut self, response: Response<R>) -> Result<(), IoError>
    where
        R: Read,
    {
        self.respond_impl(response)
    }

    fn respond_impl<R>(&mut self, response: Response<R>) -> Result<(), IoError>
    where
        R: Read,
    {
        let Some(mut writer) = self.response_writer.take() else {
            return Ok(());
        };
        let do_not_send_body = self.method == Method::Head;

        Self::ignore_client_closing_errors(response.raw_print(
            writer.by_ref(),
            self.http_version.clone(),
            &self.headers,
            do_not_send_body,
        ))?;

        Self::ignore_client_closing_errors(writer.flush())
    }

    fn ignore_client_closing_errors(result: io::Result<()>) -> io::Result<()> {
        result.or_else(|err| match err.kind() {
            ErrorKind::BrokenPipe => Ok(()),
            ErrorKind::ConnectionAborted => Ok(()),
            ErrorKind::ConnectionRefused => Ok(()),
            ErrorKind::ConnectionReset => Ok(()),
            _ => Err(err),
        })
    }
}

impl fmt::Debug for Request {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> Result<(), fmt::Error> {
        write!(
            formatter,
            "Request({} {} from {:?})",
            self.method, self.path, self.remote_addr
        )
    }
}

impl Drop for Request {
    fn drop(&mut self) {
        if self.response_writer.is_some() {
            let response = Response::empty(500);
            let _ = self.respond_impl(response); // the client may be gone
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Request;

    #[test]
    fn must_be_send() {
        #![allow(dead_code)]
        fn f<T: Send>(_: &T) {}
        fn bar(rq: &Request) {
            f(rq);
        }
    }
}
