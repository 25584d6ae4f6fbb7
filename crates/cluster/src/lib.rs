//! Replication for Throttle: the pieces a cluster of members needs around tikv's `raft` crate
//! (ARCHITECTURE.md, "The cluster"): the durable Raft log ([`log_store`] over [`log_file`]) and
//! the thread that drives raft-rs for one member ([`node`]). The members' links over TCP and
//! the server's use of it follow.
//!
//! What this crate is not: a consensus protocol. Elections, replication and compaction are
//! raft-rs's; this crate only stores what raft-rs asks it to store, and will carry messages and
//! apply committed entries to the core.
#![forbid(unsafe_code)]

mod envelope;
pub mod link;
pub mod log_file;
pub mod log_store;
pub mod node;
mod slog_log;

/// raft-rs's message between members, which an [`node::Outbox`] carries.
pub use raft::prelude::Message;

#[cfg(test)]
mod test_support;
