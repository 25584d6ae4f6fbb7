//! The `throttle` executable (skeleton; filled in as the modules land).
#![forbid(unsafe_code)]

#[allow(dead_code)]
mod core;
#[allow(dead_code)]
mod error;

fn main() {
    println!("throttle {}", env!("CARGO_PKG_VERSION"));
}
