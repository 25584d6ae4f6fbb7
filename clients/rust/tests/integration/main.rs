//! Tests of the client against the real `throttle` server binary, one process per test on a
//! port of its own.

mod client;
mod lock;
mod rate_limit;
mod support;
