//! Throttle's HTTP/1.1 server layer: one readiness loop reads every connection, frames requests
//! strictly (RFC 9112), and hands each complete request, body included, to a pool of worker
//! threads that call [`Server::recv`] and answer with [`Request::respond`].
//!
//! The API is tiny_http's (this crate began as a copy of tiny_http 0.12.0, see README.md and
//! PATCHED.md): a [`Server`] whose `recv` blocks for the next [`Request`], answered with a
//! [`Response`]. Underneath there is no thread per connection: `reactor.rs`
//! owns the sockets, [`framing`] decides where a request ends, and a worker's answer goes to
//! the socket from the worker's own thread when the socket takes it at once.
//!
//! Not here: routes, bodies' meaning, TLS, Unix sockets. Plain TCP only; put a proxy in front
//! for TLS.
//!
//! ```no_run
//! use std::sync::Arc;
//! use throttle_http::{ConnectionLimits, Response, Server};
//!
//! let server = Arc::new(Server::http_with_limits("127.0.0.1:0", ConnectionLimits::default())?);
//! let workers: Vec<_> = (0..4)
//!     .map(|_| {
//!         let server = server.clone();
//!         std::thread::spawn(move || {
//!             for request in server.incoming_requests() {
//!                 let _ = request.respond(Response::from_string("Ok"));
//!             }
//!         })
//!     })
//!     .collect();
//! # Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
//! ```
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]
#![allow(clippy::match_like_matches_macro)]

use std::error::Error;
use std::io::Error as IoError;
use std::io::Result as IoResult;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use util::MessagesQueue;

pub use common::{HTTPVersion, Header, HeaderField, Method, StatusCode};
pub use request::Request;
pub use response::Response;

mod common;
/// Public, but hidden, for the fuzz target `framing` (`fuzz/fuzz_targets/framing.rs`).
#[doc(hidden)]
pub mod framing;
mod handoff;
mod listener;
mod reactor;
mod request;
mod response;
mod util;

/// A listening HTTP server: a readiness loop on its own thread reads the connections and
/// queues complete requests; any number of threads take them with [`Server::recv`].
///
/// Dropping the server stops the loop and closes every connection; requests already taken
/// can still be answered, but their answers go nowhere.
pub struct Server {
    /// Complete requests, in the order their last byte arrived.
    messages: Arc<MessagesQueue<Request>>,
    listening_addr: SocketAddr,
    reactor: Arc<reactor::Control>,
}

pub struct IncomingRequests<'a> {
    server: &'a Server,
}

/// What one connection may hold, so that clients that send nothing, send slowly or never read
/// cannot hold threads or memory without bound.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Connections served at once; a connection beyond it is closed as soon as it is accepted.
    /// Also the listen backlog (capped by the system), so a burst of this many new connections
    /// waits in the kernel's queue instead of retrying its SYN.
    pub max_connections: usize,
    /// How long a keep-alive connection may sit idle between requests, and how long a client
    /// may take to read an answer. `None` waits forever.
    pub idle_timeout: Option<Duration>,
    /// How long a request (head and body) may take from its first byte; 408 after.
    pub request_timeout: Duration,
    /// The largest request head, in bytes; 431 beyond.
    pub max_head_bytes: usize,
    /// The largest request body, in bytes; 413 beyond. The loop reads bodies in full before
    /// it hands a request over, so this bounds its memory per connection.
    pub max_body_bytes: usize,
}

impl Default for ConnectionLimits {
    /// No limits on time or connections; heads of any size, bodies up to 16 MiB.
    fn default() -> Self {
        ConnectionLimits {
            max_connections: usize::MAX,
            idle_timeout: None,
            request_timeout: Duration::MAX,
            max_head_bytes: usize::MAX,
            // Bodies are held in memory: 16 MiB unless the application says otherwise.
            max_body_bytes: 16 * 1024 * 1024,
        }
    }
}

impl Server {
    /// A server on `addr` without limits ([`ConnectionLimits::default`]).
    #[inline]
    pub fn http<A>(addr: A) -> Result<Server, Box<dyn Error + Send + Sync + 'static>>
    where
        A: ToSocketAddrs,
    {
        Server::http_with_limits(addr, ConnectionLimits::default())
    }

    /// A server on `addr` whose connections are bounded by `limits`.
    pub fn http_with_limits<A>(
        addr: A,
        limits: ConnectionLimits,
    ) -> Result<Server, Box<dyn Error + Send + Sync + 'static>>
    where
        A: ToSocketAddrs,
    {
        let listener = TcpListener::bind(addr)?;
        listener::set_backlog(&listener, limits.max_connections);
        Self::start(listener, limits)
    }

    fn start(
        listener: TcpListener,
        limits: ConnectionLimits,
    ) -> Result<Server, Box<dyn Error + Send + Sync + 'static>> {
        let listening_addr = listener.local_addr()?;
        let messages = MessagesQueue::with_capacity(8);
        let (reactor, control) = reactor::Reactor::new(listener, limits, messages.clone())?;
        thread::Builder::new()
            .name("connections".into())
            .spawn(move || reactor.run())?;
        Ok(Server {
            messages,
            listening_addr,
            reactor: control,
        })
    }

    /// Closes the listening socket, so that new connections are refused, while open
    /// connections are still served (for a graceful shutdown).
    pub fn stop_accepting(&self) {
        self.reactor.stop_accepting();
    }

    /// The requests as they come, until [`Server::unblock`] ends the iteration for one caller.
    #[inline]
    pub fn incoming_requests(&self) -> IncomingRequests<'_> {
        IncomingRequests { server: self }
    }

    /// The address the server listens on (with the port the system chose for port 0).
    #[inline]
    pub fn server_addr(&self) -> SocketAddr {
        self.listening_addr
    }

    /// Blocks until a request is complete and returns it; an error once [`Server::unblock`]
    /// was called for this caller.
    pub fn recv(&self) -> IoResult<Request> {
        match self.messages.pop() {
            Some(rq) => Ok(rq),
            None => Err(IoError::other("thread unblocked")),
        }
    }

    /// Same as `recv()` but doesn't block longer than timeout
    pub fn recv_timeout(&self, timeout: Duration) -> IoResult<Option<Request>> {
        Ok(self.messages.pop_timeout(timeout))
    }

    /// Same as `recv()` but doesn't block.
    pub fn try_recv(&self) -> IoResult<Option<Request>> {
        Ok(self.messages.try_pop())
    }

    /// Unblock thread stuck in recv() or incoming_requests().
    /// If there are several such threads, only one is unblocked.
    /// This method allows graceful shutdown of server.
    pub fn unblock(&self) {
        self.messages.unblock();
    }
}

impl Iterator for IncomingRequests<'_> {
    type Item = Request;
    fn next(&mut self) -> Option<Request> {
        self.server.recv().ok()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.reactor.stop();
    }
}

#[cfg(test)]
mod tests {
    /// Workers share the server behind an `Arc`.
    #[test]
    fn the_server_is_shared_between_threads() {
        fn shared<T: Send + Sync>() {}
        shared::<super::Server>();
    }
}
