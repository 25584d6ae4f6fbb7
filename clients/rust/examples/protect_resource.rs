//! Protects a resource with Throttle: however many copies of this program run, on however many
//! machines, at most `max` of them do the work at once (`max` as configured on the server).
//!
//! ```text
//! throttle -c throttle.toml           # with `[semaphores] A = 1`
//! cargo run -p throttle-client --example protect_resource -- http://localhost:8000 A
//! ```

use std::time::Duration;

use throttle_client::{Client, Error};

fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().collect();
    let url = args.get(1).map_or("http://localhost:8000", String::as_str);
    let semaphore = args.get(2).map_or("A", String::as_str);
    let client = Client::new(url);
    let timeout = Duration::from_secs(60);
    let guard = client.lock(semaphore).timeout(timeout).acquire()?;
    let left = client.remainder(semaphore)?;
    println!("peer {} got {semaphore}, {left} left", guard.peer_id());
    std::thread::sleep(Duration::from_secs(3)); // The work that needs the resource.
    guard.release()?;
    println!("released {semaphore}");
    Ok(())
}
