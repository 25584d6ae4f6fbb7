//! Replication for Throttle: the pieces a cluster of members needs around tikv's `raft` crate
//! (ARCHITECTURE.md, "The cluster"). Today it holds the durable Raft log ([`log_store`]); the
//! members' links and the thread that drives the `RawNode` follow.
//!
//! What this crate is not: a consensus protocol. Elections, replication and compaction are
//! raft-rs's; this crate only stores what raft-rs asks it to store, and will carry messages and
//! apply committed entries to the core.
#![forbid(unsafe_code)]

pub mod log_file;
pub mod log_store;

#[cfg(test)]
mod test_dir;
