//! Helpers shared by the core's unit tests: small cores built from `(name, max, level)` rows.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::{Core, LockState, PeerId, SemaphoreSettings, Time};

pub fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// Settings from `(name, max, level)` rows.
pub fn settings(semaphores: &[(&str, i64, i32)]) -> Vec<SemaphoreSettings> {
    semaphores
        .iter()
        .map(|&(name, max, level)| SemaphoreSettings {
            name: name.to_owned(),
            max,
            level,
        })
        .collect()
}

/// A core with the given `(name, max, level)` semaphores.
pub fn core(semaphores: &[(&str, i64, i32)]) -> Core {
    Core::new(settings(semaphores))
}

/// A core with the given semaphores and peers `1..=peers`, each living for a minute from the
/// returned time.
pub fn with_peers(semaphores: &[(&str, i64, i32)], peers: PeerId) -> (Core, Time) {
    let t0 = Time::from_epoch(secs(1_000));
    let mut c = core(semaphores);
    for id in 1..=peers {
        c.new_peer(id, t0 + secs(60));
    }
    (c, t0)
}

/// Acquires without touching the deadline and returns the lock state.
#[track_caller]
pub fn acquire(core: &mut Core, id: PeerId, sem: &str, count: i64, now: Time) -> LockState {
    core.acquire(id, sem, count, None, now).unwrap().state
}

/// Lock counts by semaphore name, for `restore` and `load_peer`.
pub fn locks(pairs: &[(&str, i64)]) -> BTreeMap<String, i64> {
    pairs.iter().map(|&(s, c)| (s.to_owned(), c)).collect()
}
