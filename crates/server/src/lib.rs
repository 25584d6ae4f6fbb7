//! The Throttle server: everything between a TCP connection and the core's bookkeeping. The
//! `throttle` executable calls [`server::serve`] with the options of [`options::parse`]; the fuzz
//! targets, the examples and the integration tests use its items and constants, so none of them
//! keeps a copy of a limit that could drift.
//!
//! Data flow of a request: `workers.rs` (a worker of the HTTP layer, `throttle-http`, with the
//! request's body) → `routes.rs` (parse into a `Route`) → `service.rs` (lock, sweep, wait, wake)
//! → the core (`throttle-core`, the bookkeeping) → back to `workers.rs`, which answers with a
//! `Reply` (`reply.rs`: status code, headers, body). Beside them: `expiry.rs` runs the expiry
//! thread, `waiting.rs` the threads of long polls, `metrics.rs`, `status.rs` and `peers_json.rs`
//! render the core's views, `config.rs` (its `[cluster]` table in `cluster_config.rs`),
//! `options.rs`, `logging.rs` and `error.rs`; across restarts `persistence.rs`, `state_file.rs` and
//! `lease_watch.rs`; `reload.rs` applies SIGHUP; `server.rs` wires them together and takes them
//! down.
//!
//! What this crate does not do: speak to a server as a client (`throttle lock` and `throttle
//! status` are `throttle-cli`, on the client crate, which this crate does not depend on).
#![forbid(unsafe_code)]

// Public: what the executable, the fuzz targets, the examples and the integration tests use.
// Private: the rest. Not only tidiness: the functions of a public module are compiled as exported
// ones, which changes what the optimizer inlines even under LTO (docs/benchmark.md, "Binary
// size").

pub mod clock;
pub mod cluster_config;
mod config;
pub mod error;
mod expiry;
pub mod fd_limit;
mod lease_watch;
pub mod logging;
mod member;
mod metrics;
pub mod options;
mod peers_json;
mod persistence;
mod reload;
mod replication;
mod reply;
pub mod routes;
pub mod server;
pub mod service;
mod signals;
mod state_file;
mod status;
mod waiting;
pub mod workers;
