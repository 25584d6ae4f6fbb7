//! The server's pure modules, compiled as a library for the fuzz targets.
//!
//! `throttle` is a binary crate and stays one: rather than restructure it, this crate includes
//! the source files by path. The module names mirror the server's crate root, because
//! `routes.rs` refers to `crate::core::PeerId` and `crate::error::Error`.
//! Only the parts below HTTP are here: `core.rs` (bookkeeping), `error.rs`, `routes.rs`
//! (parsing) and `service.rs` (the core behind its mutex, sweeping and waking); nothing that
//! touches sockets, and nothing that starts threads.

#[path = "../../src/core.rs"]
pub mod core;
#[path = "../../src/error.rs"]
pub mod error;
#[path = "../../src/routes.rs"]
pub mod routes;
#[path = "../../src/service.rs"]
pub mod service;
