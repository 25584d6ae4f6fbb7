//! Tests of the client against the real `throttle` server binary, one process per test on a
//! port of its own.

mod access_control;
mod client;
mod cluster;
mod contract;
mod fencing;
mod lock;
mod members;
mod peer_limit;
mod rate_limit;
mod support;
