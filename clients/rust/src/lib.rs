//! A blocking client for [Throttle], semaphores for distributed systems served over HTTP.
//!
//! Processes on many machines ask one Throttle server for a *lock* with a *count* on a named
//! *semaphore* before they touch a shared resource: a database that takes 8 connections, an
//! API that allows 5 calls a second. This crate speaks the server's HTTP API with blocking I/O
//! on [`ureq`], so it needs no async runtime and few dependencies.
//!
//! # Protect a resource
//!
//! [`Client::lock`] waits until the lock is granted and returns a guard. While the guard lives,
//! a heartbeat thread keeps the lock alive (and restores it after a server restart); dropping
//! the guard releases it.
//!
//! ```no_run
//! use std::time::Duration;
//! use throttle_client::Client;
//!
//! // The server's configuration has `[semaphores] db = 8`.
//! let client = Client::new("http://localhost:8000");
//! let guard = client.lock("db").timeout(Duration::from_secs(30)).acquire()?;
//! // ... at most 8 of these run at once, on any number of machines ...
//! drop(guard);
//! # Ok::<(), throttle_client::Error>(())
//! ```
//!
//! If the holder crashes, the server frees the lock once its lease (see
//! [`LockBuilder::expires_in`]) runs out without a heartbeat.
//!
//! # Rate limit
//!
//! [`Client::rate_limit`] blocks until a call may start: with `api = 5` configured, at most 5
//! calls start in any one-second window.
//!
//! ```no_run
//! # use std::time::Duration;
//! # let client = throttle_client::Client::new("http://localhost:8000");
//! client.rate_limit("api", Duration::from_secs(1))?;
//! # Ok::<(), throttle_client::Error>(())
//! ```
//!
//! # Errors
//!
//! Every fallible call returns [`Error`]. Its variants follow the reasons the server gives, so
//! a program can tell a misconfiguration from a timeout. Transport errors and server errors
//! (5xx) are retried for a while before they are returned; rejections (4xx) are not, and
//! neither is the server's peer limit (503 `Too many peers`, [`Error::TooManyPeers`]): the
//! server is up, and the limit lasts as long as other clients hold their peers.
//!
//! ```
//! use std::time::Duration;
//! use throttle_client::{Client, Error};
//!
//! // Nothing listens on port 9 of this machine: the request fails at once, without retries.
//! let client = Client::new("http://127.0.0.1:9").with_retry_budget(Duration::ZERO);
//! match client.lock("db").acquire() {
//!     Ok(_guard) => println!("got it"),
//!     Err(Error::Timeout { .. }) => println!("busy, try later"),
//!     Err(Error::UnknownSemaphore) => println!("configure `db` on the server"),
//!     Err(Error::Transport(unreachable)) => println!("{unreachable}"), // names the server
//!     Err(Error::TooManyPeers { .. }) => println!("the server is at its peer limit"),
//!     Err(other) => println!("failed: {other}"),
//! }
//! ```
//!
//! # A cluster
//!
//! Given the URLs of a cluster's members ([`Client::for_members`], or [`Client::new`] with
//! commas, or `THROTTLE_URL` for [`Client::from_environment`]), the client sends to the leader,
//! which the members name in every answer (it follows a new one as soon as an answer names
//! it), and moves on to the next member when one cannot be reached or has no quorum, within its
//! retry budget. Locks, waits and fencing tokens live in the cluster's replicated state,
//! so the loss of a member, the leader included, does not show in a held guard or a waiting
//! acquire. When no member answers in time the error names each one and why.
//!
//! ```no_run
//! let client = throttle_client::Client::new("http://a:8000,http://b:8000,http://c:8000");
//! let guard = client.lock("db").acquire()?;
//! # Ok::<(), throttle_client::Error>(())
//! ```
//!
//! # Access control
//!
//! A server started with a token (`[auth] token` in its configuration, or `THROTTLE_TOKEN`)
//! answers 401 to every request without it but the health check. [`Client::with_token`] sends
//! it; [`Client::from_env`] takes it from `THROTTLE_TOKEN`, like the server. A wrong or
//! missing token is [`Error::Unauthorized`], never retried.
//!
//! ```no_run
//! # use std::time::Duration;
//! let client = throttle_client::Client::new("http://localhost:8000").with_token("s3cret");
//! let guard = client.lock("db").acquire()?;
//! # Ok::<(), throttle_client::Error>(())
//! ```
//!
//! # Lower levels
//!
//! [`Client`] has one method per route of the HTTP API ([`Client::new_peer`],
//! [`Client::acquire`], [`Client::heartbeat`], [`Client::restore`], ...). [`Client::peer`]
//! gives a [`Peer`] that holds several locks at once, checked by the server's lock hierarchy.
//!
//! [Throttle]: https://github.com/pacman82/throttle

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod backoff;
mod client;
mod error;
mod lock;
mod members;
mod rate_limit;
mod retry;

pub use client::{
    Client, DEFAULT_RETRY_BUDGET, DEFAULT_URL, LockState, PeerId, PeerInfo, TOKEN_VARIABLE,
    URL_VARIABLE, default_peer_name,
};
pub use error::{Attempt, Error, Unreachable};
pub use lock::{Cancel, DEFAULT_EXPIRES_IN, LockBuilder, LockGuard, OnLost, Peer, PeerLockBuilder};
