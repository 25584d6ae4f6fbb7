//! Fuzz target `requests`: a sequence of raw requests → `routes::route` → the `Service` (the
//! core behind its mutex, with sweeps and wake-ups), as a worker thread would apply them, minus
//! the socket.
//!
//! Input layout: requests separated by the byte 0x1E; each as in the `routes` target (method
//! byte, target up to the first NUL, body). An `@` in the target is replaced with the id of the
//! last peer `new_peer` created, so the fuzzer can address peers whose ids are random.
//!
//! `Service::acquire` never blocks; the `Wait` it returns for a long poll is dropped, as the
//! server does when no waiting thread is left, so `block_for` is answered at once. The peer
//! cap is small so that it is reached. Time is the real
//! clock: short leases do expire during a run.
//!
//! What must hold: nothing panics; after every request the stats agree with the listing, the
//! live peers stay within the cap, and capacity holds on every semaphore no restore touched;
//! at the end, removing every peer leaves every remainder at max and nothing pending.
#![no_main]

use std::collections::BTreeSet;

use libfuzzer_sys::fuzz_target;
use throttle_core::{Core, PeerId, SemaphoreSettings};
use throttle_server::routes::{Route, route};
use throttle_server::clock::Clock;
use throttle_server::service::Service;

const METHODS: [&str; 8] = ["GET", "PUT", "POST", "DELETE", "HEAD", "PATCH", "get", ""];
const MAX_PEERS: usize = 16;
const SEMAPHORES: [(&str, i64, i32); 5] = [
    ("A", 1, 0),
    ("B", 3, 1),
    ("a b/ä", 2, 0),
    ("C", i64::MAX, 2),
    ("Z0", 0, 0),
];

fuzz_target!(|data: &[u8]| {
    let core = Core::new(
        SEMAPHORES
            .iter()
            .map(|&(name, max, level)| SemaphoreSettings {
                name: name.to_owned(),
                max,
                level,
            }),
    );
    let service = Service::new(core, Clock::start(), MAX_PEERS);
    let mut last_peer: PeerId = 0;
    let mut restored: BTreeSet<String> = BTreeSet::new();
    for request in data.split(|&b| b == 0x1e).take(200) {
        let Some((&selector, rest)) = request.split_first() else {
            continue;
        };
        let method = METHODS[usize::from(selector) % METHODS.len()];
        let (url, body) = match rest.iter().position(|&b| b == 0) {
            Some(nul) => (&rest[..nul], &rest[nul + 1..]),
            None => (rest, &[][..]),
        };
        let url = String::from_utf8_lossy(url).replace('@', &last_peer.to_string());
        let Ok(parsed) = route(method, &url, body) else {
            continue;
        };
        apply(&service, parsed, &mut last_peer, &mut restored);
        check(&service, &restored);
    }
    // Drain: every peer removed, nothing left.
    let ids: Vec<PeerId> =
        service.inspect(|core, _, now| core.peers(now).iter().map(|p| p.id).collect());
    for id in ids {
        service
            .remove_peer(id)
            .expect("a single server's removal never fails");
    }
    service.inspect(|core, _, now| {
        assert_eq!(core.num_peers(), 0);
        for stats in core.stats(now) {
            assert_eq!((stats.acquired, stats.pending), (0, 0), "{}", stats.name);
            assert_eq!(core.remainder(stats.name), Ok(stats.max));
        }
    });
});

/// What a worker does with a route, minus the answer: the status is `reply.rs`'s mapping of the
/// result, which is not in this crate. Every result is an answer; none may panic.
fn apply(
    service: &Service,
    parsed: Route,
    last_peer: &mut PeerId,
    restored: &mut BTreeSet<String>,
) {
    match parsed {
        Route::NewPeer { expires_in, name } => {
            if let Ok(id) = service.new_peer(expires_in, name.as_deref()) {
                *last_peer = id;
            }
        }
        Route::Heartbeat { peer, expires_in } => {
            let _ = service.heartbeat(peer, expires_in);
        }
        Route::RemovePeer { peer } => service
            .remove_peer(peer)
            .expect("a single server's removal never fails"),
        Route::Acquire(request) => {
            let _ = service.acquire(request);
        }
        Route::ReleaseLock { peer, semaphore } => {
            let _ = service.release_lock(peer, &semaphore);
        }
        Route::IsAcquired { peer } => {
            let _ = service.inspect(|core, _, _| core.is_acquired(peer));
        }
        Route::Remainder { semaphore } => {
            let _ = service.inspect(|core, _, _| core.remainder(&semaphore));
        }
        Route::ListPeers => {
            let _ = service.inspect(|core, _, now| core.peers(now).len());
        }
        Route::Restore(restore) => {
            if service.restore(&restore).is_ok() {
                restored.extend(restore.acquired.into_keys());
            }
        }
        // The rest only read (greeting, health, metrics, version, favicon, status page and its
        // data); a route added later lands here until it is added above.
        _ => {}
    }
}

fn check(service: &Service, restored: &BTreeSet<String>) {
    service.inspect(|core, _, now| {
        let peers = core.peers(now);
        assert_eq!(peers.len(), core.num_peers());
        assert!(
            peers.len() <= MAX_PEERS,
            "{} peers, cap {MAX_PEERS}",
            peers.len()
        );
        for stats in core.stats(now) {
            let acquired: i128 = peers
                .iter()
                .flat_map(|p| p.acquired.iter())
                .filter(|(name, _, _)| *name == stats.name)
                .map(|&(_, count, _)| i128::from(count))
                .sum();
            let pending: i128 = peers
                .iter()
                .filter_map(|p| p.pending)
                .filter(|(name, _)| *name == stats.name)
                .map(|(_, count)| i128::from(count))
                .sum();
            assert_eq!(i128::from(stats.acquired), acquired, "{}", stats.name);
            assert_eq!(i128::from(stats.pending), pending, "{}", stats.name);
            assert_eq!(core.remainder(stats.name), Ok(stats.max - stats.acquired));
            if !restored.contains(stats.name) {
                assert!(stats.acquired <= stats.max, "capacity of {}", stats.name);
            }
        }
    });
}
