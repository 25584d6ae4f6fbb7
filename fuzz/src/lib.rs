//! The server's pure modules, compiled as a library for the fuzz targets.
//!
//! `throttle` is a binary crate and stays one: rather than restructure it, this crate includes
//! the source files by path. The module names mirror the server's crate root, because
//! `routes.rs` refers to `crate::core::PeerId` and `crate::error::Error`.
//! Only the pure parts are here: `core.rs` (bookkeeping), `error.rs` and `routes.rs` (parsing);
//! nothing that touches sockets, threads or the clock.

#[path = "../../src/core.rs"]
pub mod core;
#[path = "../../src/error.rs"]
pub mod error;
#[path = "../../src/routes.rs"]
pub mod routes;
