//! Setting up and tearing down peers in bulk over many connections at once: the idle peers of
//! `--preload`, the clients' own peers of the crowd scenarios, and their removal afterwards;
//! plus `GET /remainder`, which scenarios ask before they start.
//!
//! Not measured: the scenarios time their own requests. Setup stops at the first error and
//! removes what it created, so that a failed run leaves no peers behind.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

use crate::http::{Client, Target, encode};
use crate::report::Errors;

/// Creates `n` peers over `connections` connections, each acquiring 1 of `acquire` (an encoded
/// semaphore name) if given. On an error, removes what it created.
pub fn make_peers(
    target: &Target,
    n: usize,
    connections: usize,
    lease: Duration,
    acquire: Option<&str>,
) -> Result<Vec<u64>, String> {
    let next = AtomicUsize::new(0);
    let errors = Errors::default();
    let peers: Vec<u64> = thread::scope(|scope| {
        let workers: Vec<_> = (0..connections.min(n.max(1)))
            .map(|_| {
                scope.spawn(|| {
                    let mut client = Client::new(target);
                    let mut mine = Vec::new();
                    while next.fetch_add(1, Ordering::Relaxed) < n && errors.count() == 0 {
                        match client.new_peer(lease) {
                            Ok(peer) => {
                                mine.push(peer);
                                if let Some(semaphore) = acquire
                                    && let Err(error) = client.expect(
                                        "PUT",
                                        &format!("/peers/{peer}/{semaphore}"),
                                        "1",
                                        &[200],
                                    )
                                {
                                    errors.record(error);
                                }
                            }
                            Err(error) => errors.record(error),
                        }
                    }
                    mine
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|worker| worker.join().expect("peer creation panicked"))
            .collect()
    });
    errors.report();
    if errors.count() > 0 {
        let _ = remove_peers(target, connections, &peers);
        return Err(format!(
            "creating peers failed with {} errors",
            errors.count()
        ));
    }
    Ok(peers)
}

/// Removes `peers` over `connections` connections (which releases their locks).
pub fn remove_peers(target: &Target, connections: usize, peers: &[u64]) -> Result<(), String> {
    let errors = Errors::default();
    let chunk = peers.len().div_ceil(connections).max(1);
    thread::scope(|scope| {
        for part in peers.chunks(chunk) {
            let errors = &errors;
            scope.spawn(move || {
                let mut client = Client::new(target);
                for &peer in part {
                    if let Err(error) = client.remove_peer(peer) {
                        errors.record(error);
                    }
                }
            });
        }
    });
    errors.report();
    match errors.count() {
        0 => Ok(()),
        n => Err(format!("{n} errors removing peers")),
    }
}

/// `GET /remainder?semaphore=NAME`: the count of `semaphore` free now.
pub fn remainder(target: &Target, semaphore: &str) -> Result<i64, String> {
    let mut client = Client::new(target);
    let path = format!("/remainder?semaphore={}", encode(semaphore));
    let response = client.expect("GET", &path, "", &[200])?;
    response
        .text()
        .parse()
        .map_err(|_| format!("GET {path}: not a number: {:?}", response.text()))
}
