//! Random sequences of `(time, op)` entries from seeds, through the core's one property suite
//! (`properties.rs`, which the fuzz target `core_ops` drives too). The generator is a small
//! xorshift, so a failing seed replays; the seeds and lengths keep the test to seconds.
//!
//! The sequences aim at contention: entries come tens of milliseconds apart while leases last
//! seconds, most entries name a live peer and a configured semaphore, so queues form and
//! releases, removals, expiries and grown maxes grant several waiters at once. The values lean
//! on the edges: counts 0, negative, `max`, `max + 1`, `i64::MAX` and `i64::MIN`, deadlines that
//! are already due, restores that overcommit or bring tokens back (old ones, ones above the
//! counter, ones out of range), grace periods, reconfigurations that resize, re-level, add and
//! remove semaphores, and time that passes without a sweep.
//!
//! Before one entry in ten (drawn from a second stream, so the entries stay those of the seed)
//! the checker's twin is rebuilt from the core's snapshot ([`Checker::rebuild_twin`]), so the
//! entries after it check that a rebuilt core answers exactly as the original.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::properties::{Checker, settings};
use crate::tests::support::Rng;
use crate::{MAX_TOKEN, Op, PeerId, SemaphoreSettings, Time};

/// The configuration of most seeds: a mutex, levels, and a semaphore whose sums can overflow.
const SEMAPHORES: [(&str, i64, i32); 4] =
    [("A", 3, 0), ("B", 1, 1), ("C", 5, 2), ("H", i64::MAX, 0)];

/// Names the entries use: `D` only exists once a reconfiguration adds it, `nope` never.
const NAMES: [&str; 6] = ["A", "B", "C", "D", "H", "nope"];

const MAXES: [i64; 7] = [0, 1, 2, 3, 5, 1 << 53, i64::MAX];

/// A random configuration: every name but `nope` with a chance, and sometimes one twice.
fn random_settings(rng: &mut Rng) -> Vec<SemaphoreSettings> {
    let mut rows = Vec::new();
    for name in &NAMES[..5] {
        if rng.below(4) != 0 {
            rows.push((*name, rng.pick(&MAXES), rng.below(3) as i32));
        }
    }
    if rng.below(8) == 0 {
        rows.push(("A", rng.pick(&MAXES), rng.below(3) as i32));
    }
    settings(&rows)
}

/// A count for `semaphore`, edges included.
fn count(rng: &mut Rng, checker: &Checker, semaphore: &str) -> i64 {
    let max = checker
        .core()
        .stats(checker.now())
        .iter()
        .find(|s| s.name == semaphore)
        .map_or(3, |s| s.max);
    match rng.below(32) {
        0 => 0,
        1 => -1,
        2 => i64::MIN,
        3 => i64::MAX,
        4 | 5 => max,
        6 => max.saturating_add(1),
        7..=10 => 2,
        11 | 12 => 3,
        _ => 1,
    }
}

/// A peer id: mostly a live peer's, sometimes any of a few (known, expired, removed, never
/// created), so that operations collide.
fn peer(rng: &mut Rng, checker: &Checker) -> PeerId {
    let mut live = checker.core().peer_ids();
    if live.is_empty() || rng.below(4) == 0 {
        return 1 + rng.below(8);
    }
    // The map's order differs from run to run; the seed's sequence must not.
    live.sort_unstable();
    live[rng.below(live.len() as u64) as usize]
}

/// A semaphore name: mostly a configured one, sometimes any (removed, not yet added, never).
fn name(rng: &mut Rng, checker: &Checker) -> String {
    let stats = checker.core().stats(checker.now());
    if stats.is_empty() || rng.below(8) == 0 {
        return rng.pick(&NAMES).to_owned();
    }
    stats[rng.below(stats.len() as u64) as usize]
        .name
        .to_owned()
}

fn run(seed: u64, steps: usize) {
    let mut rng = Rng::new(seed);
    let initial = if seed.is_multiple_of(2) {
        settings(&SEMAPHORES)
    } else {
        random_settings(&mut rng)
    };
    let mut checker = Checker::new(initial);
    let mut now = Time::from_epoch(Duration::from_secs(1_000));
    // Where the twin is rebuilt from a snapshot: a stream of its own, so the entries a seed
    // draws do not depend on it.
    let mut snapshots = Rng::new(!seed);

    for _ in 0..steps {
        if snapshots.below(10) == 0 {
            checker.rebuild_twin();
        }
        now += rng.millis(50);
        let id = peer(&mut rng, &checker);
        let semaphore = name(&mut rng, &checker);
        let deadline = match rng.below(40) {
            0 => now,
            _ => now + Duration::from_millis(500) + rng.millis(10_000),
        };
        let op = match rng.below(40) {
            0..=7 => Op::NewPeer {
                id: 1 + rng.below(8),
                expires_at: deadline,
                name: (rng.below(2) == 0).then(|| format!("worker-{}", rng.below(3))),
            },
            8..=21 => Op::Acquire {
                id,
                count: count(&mut rng, &checker, &semaphore),
                semaphore,
                expires_at: (rng.below(2) == 0).then_some(deadline),
            },
            22..=26 => Op::ReleaseLock { id, semaphore },
            27 => Op::RemovePeer { id },
            28..=31 => Op::Heartbeat {
                id,
                expires_at: deadline,
            },
            32..=34 => {
                let mut acquired = BTreeMap::new();
                let mut tokens = BTreeMap::new();
                for _ in 0..rng.below(3) {
                    let semaphore = name(&mut rng, &checker);
                    let count = count(&mut rng, &checker, &semaphore);
                    acquired.insert(semaphore.clone(), count);
                    // Some locks bring a token back: an old one, one above the counter, or one
                    // out of range.
                    let next = checker.core().next_token();
                    let token = match rng.below(5) {
                        0 => next.saturating_sub(1 + rng.below(5)),
                        1 => next + rng.below(100),
                        2 if rng.below(10) == 0 => MAX_TOKEN + 1,
                        _ => continue,
                    };
                    tokens.insert(semaphore, token);
                }
                Op::Restore {
                    id,
                    expires_at: deadline,
                    acquired,
                    tokens,
                    name: (rng.below(4) == 0).then(|| "restored".to_owned()),
                }
            }
            _ => match rng.below(16) {
                // A grace period, as after an unclean restart: nothing new is granted until it
                // ends, then the queues are granted in order.
                0 => {
                    checker.begin_grace(now + rng.millis(3000));
                    continue;
                }
                // Time passes without a sweep: the views must cope with overdue peers.
                1..=4 => {
                    let longest = if rng.below(4) == 0 { 5000 } else { 500 };
                    now += rng.millis(longest);
                    checker.look(now);
                    continue;
                }
                5 | 6 => Op::Reconfigure {
                    semaphores: random_settings(&mut rng),
                },
                // The expiry thread's tick, sometimes after a long jump.
                _ => {
                    if rng.below(8) == 0 {
                        now += rng.millis(5000);
                    }
                    Op::Expire
                }
            },
        };
        checker.apply(now, &op);
    }
    checker.drain(rng.below(2) == 0);
}

#[test]
fn random_sequences_keep_every_property() {
    for seed in 0..300 {
        run(seed, 200);
    }
}
