//! Starts the real `throttle` binary for tests, the one way every Rust test of the repository
//! does it: the root package's integration tests (`tests/common`) and the Rust client's
//! (`clients/rust/tests`).
//!
//! A [`Launch`] says what to start (binary, configuration text, arguments, environment);
//! [`Launch::start`] runs it on a free port (`--port 0`), reads the address the server logs
//! (`Listening on http://ADDR:PORT`) and waits until `GET /health` answers 200, both bounded by
//! [`STARTUP`]. A [`Cluster`] starts several at once, each with its own launch, or the members
//! of one Raft cluster ([`Cluster::members`]). Every process keeps its stderr lines ([`Lines`])
//! for assertions, its own temporary directory, and is killed when dropped. Nothing here sleeps to synchronise: waits are condition variables or
//! polls bounded by a deadline, so tests run in parallel on a loaded machine.
//!
//! Which binary: the root package's tests pass `env!("CARGO_BIN_EXE_throttle")` (cargo builds it
//! fresh for them); other crates' tests use [`binary`], which is `THROTTLE_BIN` if set and else
//! runs `cargo build --bin throttle` once per test process, so a test never runs a stale build.
//!
//! Not here: HTTP clients and assertions about answers; each test suite keeps its own (the root
//! tests a raw one, the client's tests the client itself).

mod binary;
mod process;
mod server;

pub use binary::binary;
pub use process::{Lines, Process, TempDir, run_to_exit};
pub use server::{CLUSTER_SECRET, Cluster, Launch, Server, wait_until_serving};

use std::time::Duration;

/// How long a server may take to start: generous, for a loaded two-core machine.
pub const STARTUP: Duration = Duration::from_secs(20);

/// The line the server logs once it listens, followed by its address.
pub const LISTENING: &str = "Listening on http://";
