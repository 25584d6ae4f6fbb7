//! The server's pure modules, compiled as a library for the fuzz targets.
//!
//! `throttle` is a binary crate and stays one: rather than restructure it, this crate includes
//! the source files by path. The module names mirror the server's crate root, because
//! `routes.rs` refers to `crate::core::PeerId` and `crate::error::Error`.
//! Only the parts below HTTP are here: `core.rs` (bookkeeping), `error.rs`, `routes.rs`
//! (parsing), `service.rs` (the core behind its mutex, sweeping and waking) and
//! `lease_watch.rs`, which the service notes leases in; nothing that touches sockets, and
//! nothing that starts threads.

// One inline module with the server's `src/` as its directory, so that the modules those files
// declare themselves (`core/restarts.rs`, `core/expired.rs`) are found where the server has
// them; re-exported at the root, where the server's `crate::` paths expect them.
#[path = "../../src"]
mod server {
    pub mod core;
    pub mod error;
    pub mod lease_watch;
    pub mod routes;
    pub mod service;
}

pub use server::{core, error, lease_watch, routes, service};
