//! The `peers-listing` crowd: `GET /peers/` in a loop over many (preloaded) peers while another
//! client acquires and releases. Measures the listings and whether acquires wait for them.
//!
//! Not for the listing's own speed alone: the pause between listings is there so that the
//! acquires outside them give a baseline.

use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::args::Options;
use crate::http::{Client, IO_TIMEOUT, Target, encode};
use crate::report::{Errors, ResultLine};
use crate::stats::{Stats, nanos};

use super::LONG_LEASE;
use super::monitor::Monitor;

/// The pause between two listings.
const LISTING_PAUSE: Duration = Duration::from_millis(100);

/// `GET /peers/` in a loop (with [`LISTING_PAUSE`] between listings) for `--duration` while
/// another client acquires and releases 1 of `--semaphore` on its own peer, timing each
/// acquire. Use with `--preload N`.
pub fn peers_listing(
    target: &Target,
    options: &Options,
    result: &mut ResultLine,
) -> Result<(), String> {
    let semaphore = encode(&options.semaphore);
    let mut admin = Client::new(target);
    let peer = admin.new_peer(LONG_LEASE)?;
    let lock = format!("/peers/{peer}/{semaphore}");
    let stop = AtomicBool::new(false);
    let errors = Errors::default();
    let monitor = Monitor::start(options);
    let (listings, acquires) = thread::scope(|scope| {
        let lister = scope.spawn(|| {
            let mut client = Client::with(target, IO_TIMEOUT, 1 << 20);
            let mut listings = Vec::new();
            let end = Instant::now() + options.duration;
            while Instant::now() < end {
                let sent = Instant::now();
                match client.expect("GET", "/peers/", "", &[200]) {
                    Ok(response) => {
                        let peers = response.body.windows(5).filter(|w| w == b"\"id\":").count();
                        listings.push((sent, Instant::now(), peers, response.body.len()));
                        // A pause, so that acquires outside listings give the baseline.
                        thread::sleep(LISTING_PAUSE);
                    }
                    Err(error) => {
                        errors.record(error);
                        thread::sleep(Duration::from_millis(10));
                    }
                }
            }
            stop.store(true, Ordering::SeqCst);
            listings
        });
        let acquirer = scope.spawn(|| {
            let mut client = Client::new(target);
            let mut acquires = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                let sent = Instant::now();
                match client.expect("PUT", &lock, "1", &[200]) {
                    Ok(_) => acquires.push((sent, Instant::now())),
                    Err(error) => {
                        errors.record(error);
                        thread::sleep(Duration::from_millis(10));
                        continue;
                    }
                }
                if let Err(error) = client.expect("DELETE", &lock, "", &[200]) {
                    errors.record(error);
                    thread::sleep(Duration::from_millis(10));
                }
            }
            acquires
        });
        (
            lister.join().expect("lister panicked"),
            acquirer.join().expect("acquirer panicked"),
        )
    });
    let watched = monitor.finish();
    let _ = admin.remove_peer(peer);
    errors.report();

    // An acquire is "during a listing" if its time overlaps a listing's, from sending the GET
    // to reading the last byte of its answer.
    let during = |&(sent, read): &(Instant, Instant)| {
        listings
            .iter()
            .any(|&(l_sent, l_read, _, _)| sent < l_read && l_sent < read)
    };
    let (inside, outside): (Vec<_>, Vec<_>) = acquires.iter().partition(|a| during(a));
    let inside = Stats::new(inside.iter().map(|&&(s, r)| nanos(r - s)).collect());
    let over_20ms = inside.sorted().iter().filter(|&&t| t > 20_000_000).count();
    let outside = Stats::new(outside.iter().map(|&&(s, r)| nanos(r - s)).collect());
    let listing = Stats::new(listings.iter().map(|&(s, r, _, _)| nanos(r - s)).collect());
    let peers = listings.iter().map(|l| l.2).max().unwrap_or(0);
    let bytes = listings.iter().map(|l| l.3).max().unwrap_or(0);
    println!(
        "peers-listing: {} listings of {peers} peers ({:.1} MB) in {:.1} s: p50 {:.1} ms, max {:.1} ms each",
        listings.len(),
        bytes as f64 / 1e6,
        options.duration.as_secs_f64(),
        listing.ms(0.5),
        listing.max_ms()
    );
    println!(
        "  acquire during a listing ({}): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms, {over_20ms} over 20 ms; \
         otherwise ({}): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; {} errors",
        inside.count(),
        inside.ms(0.5),
        inside.ms(0.99),
        inside.max_ms(),
        outside.count(),
        outside.ms(0.5),
        outside.ms(0.99),
        outside.max_ms(),
        errors.count()
    );
    watched.print(listings.len(), "listing");
    result
        .add("listings", listings.len())
        .add("peers", peers)
        .add("bytes", bytes)
        .ms("listing_p50_ms", listing.ms(0.5))
        .ms("listing_max_ms", listing.max_ms())
        .add("acquires_during", inside.count())
        .ms("p50_ms", inside.ms(0.5))
        .ms("p99_ms", inside.ms(0.99))
        .ms("max_ms", inside.max_ms())
        .add("over_20ms", over_20ms)
        .ms("outside_p99_ms", outside.ms(0.99))
        .ms("outside_max_ms", outside.max_ms())
        .add("errors", errors.count());
    watched.add_to(result, listings.len());
    if listings.is_empty() || acquires.is_empty() {
        return Err("no listing or no acquire succeeded".into());
    }
    Ok(())
}
