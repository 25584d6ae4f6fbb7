//! Helpers shared by the core's unit tests: small cores built from `(name, max, level)` rows, and
//! a deterministic random generator for the tests that draw sequences from seeds.

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

/// A small deterministic generator (xorshift), so a failing seed replays.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }

    pub fn millis(&mut self, below: u64) -> Duration {
        Duration::from_millis(self.below(below))
    }
}
