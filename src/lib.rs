//! Throttle: semaphores for distributed systems, served over HTTP. This library is the whole
//! server and the client subcommands; the `throttle` executable (`main.rs`) only reads its
//! command line and calls [`server::serve`], [`client_cli::lock`] or [`client_cli::status`].
//! The fuzz targets, the examples and the integration tests use its items and constants, so
//! none of them keeps a copy of a limit that could drift.
//!
//! Data flow of a request: `http.rs` (tiny_http worker, body) → `routes.rs` (parse into a
//! `Route`) → `service.rs` (lock, sweep, wait, wake) → `core.rs` (the bookkeeping) → back to
//! `http.rs`, which answers with a `Reply` (`reply.rs`: status code, headers, body). Beside
//! them: `expiry.rs` runs the expiry thread, `waiting.rs` the threads of long polls,
//! `metrics.rs`, `status.rs` and `peers_json.rs` render the core's views, `config.rs`,
//! `cli.rs`, `logging.rs` and `error.rs`; for restarts `restart.rs`, `state_file.rs`,
//! `lease_watch.rs` and `reload.rs`; `server.rs` wires them together and takes them down.
//!
//! `throttle lock` and `throttle status` are clients of a server, in `client_cli.rs`; they use
//! none of the above but the command line and the logger.
#![forbid(unsafe_code)]

// Public: what the executable, the fuzz targets, the examples and the integration tests use.
// Private: the rest. Not only tidiness: the functions of a public module are compiled as exported
// ones, which changes what the optimizer inlines even under LTO. With every module public the
// static binary was 2,513,832 bytes, with these private 2,386,856 (before the split, as one
// binary crate: 2,378,664).

pub mod cli;
pub mod client_cli;
mod config;
pub mod core;
pub mod error;
mod expiry;
pub mod fd_limit;
pub mod http;
mod lease_watch;
mod logging;
mod metrics;
mod peers_json;
mod reload;
mod reply;
mod restart;
pub mod routes;
pub mod server;
pub mod service;
mod signals;
mod state_file;
mod status;
mod waiting;
