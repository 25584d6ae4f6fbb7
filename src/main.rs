//! The `throttle` executable (skeleton; filled in as the modules land).
#![forbid(unsafe_code)]

#[allow(dead_code)]
mod cli;
#[allow(dead_code)]
mod config;
#[allow(dead_code)]
mod error;
#[allow(dead_code)]
mod logging;

fn main() {
    println!("throttle {}", env!("CARGO_PKG_VERSION"));
}
