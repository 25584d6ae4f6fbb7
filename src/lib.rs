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

pub mod cli;
pub mod client_cli;
pub mod config;
pub mod core;
pub mod error;
pub mod expiry;
pub mod fd_limit;
pub mod http;
pub mod lease_watch;
pub mod logging;
pub mod metrics;
pub mod peers_json;
pub mod reload;
pub mod reply;
pub mod restart;
pub mod routes;
pub mod server;
pub mod service;
pub mod signals;
pub mod state_file;
pub mod status;
pub mod waiting;
