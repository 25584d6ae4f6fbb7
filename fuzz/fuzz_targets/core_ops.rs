//! Fuzz target `core_ops`: bytes → a semaphore configuration and up to 300 `(time, op)` entries,
//! each applied through the core's one property suite (`throttle_core::properties::Checker`,
//! the same checker the core's unit test `random_ops` drives). The checker applies every entry
//! to a `Core` through `Core::apply`, to a naive reference model and to a twin core (through the
//! entry's byte encoding; rebuilt from the core's snapshot where a step says so), and checks
//! after every entry every property listed in its module docs: agreement with the model, sums,
//! capacity, FIFO against shadow queues, lock hierarchy, rejected and repeated operations
//! changing nothing, expiry and `next_deadline`, fencing tokens, the twin's equal state; at the
//! end, removing or expiring every peer leaves nothing.
//!
//! Decoding leans on the edges: counts 0, -1, `i64::MIN`, `i64::MAX`, `max`, `max + 1`,
//! `max - 1` and arbitrary ones; maxes from 0 to `i64::MAX`; deadlines already due and a
//! hundred years ahead; restores with huge and overcommitting counts and with tokens old, above
//! the counter, out of range or arbitrary; reconfigurations and grace periods; time that passes
//! with a sweep and without one (views read with overdue peers); snapshots. Peer ids come from a small
//! range (plus the largest ones) so that operations collide.
#![no_main]

use std::collections::BTreeMap;
use std::time::Duration;

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use throttle_core::properties::Checker;
use throttle_core::{MAX_TOKEN, Op, PeerId, SemaphoreSettings, Time};
use throttle_server::routes::MAX_DURATION;

/// Names the entries use; `Z` is never configured.
const NAMES: [&str; 5] = ["A", "B", "C", "D", "Z"];
const MAXES: [i64; 9] = [0, 1, 2, 3, 5, 10, 1 << 53, i64::MAX - 1, i64::MAX];
const MAX_STEPS: usize = 300;

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let _ = run(&mut u);
});

/// What one decoded step does.
enum Step {
    /// Apply this entry at the current time.
    Apply(Op),
    /// Time passed without a sweep: read the views at the current time.
    Look,
    /// A grace period until this time (start-up work, not an entry).
    Grace(Time),
    /// The checker's twin is rebuilt from the core's snapshot (a lagging member caught up).
    Rebuild,
}

fn run(u: &mut Unstructured<'_>) -> Result<()> {
    let settings = configuration(u, false)?;
    let mut checker = Checker::new(settings);
    let mut now = Time::from_epoch(Duration::from_secs(1_000));
    let mut steps = 0;
    while !u.is_empty() && steps < MAX_STEPS {
        steps += 1;
        let Ok(step) = decode(u, &checker, &mut now) else {
            break;
        };
        match step {
            Step::Apply(op) => {
                checker.apply(now, &op);
            }
            Step::Look => checker.look(now),
            Step::Grace(until) => checker.begin_grace(until),
            Step::Rebuild => checker.rebuild_twin(),
        }
    }
    // Whatever the input was, the core must be able to drain.
    let by_expiry = u.arbitrary::<bool>().unwrap_or(false);
    checker.drain(by_expiry);
    Ok(())
}

/// Settings for `A` to `D` (for a reconfiguration, each with a chance: the others are
/// removed); with a chance, `A` twice (the last settings count).
fn configuration(
    u: &mut Unstructured<'_>,
    reconfiguration: bool,
) -> Result<Vec<SemaphoreSettings>> {
    let mut settings = Vec::new();
    for name in &NAMES[..4] {
        if reconfiguration && u.ratio(1, 4)? {
            continue;
        }
        settings.push(SemaphoreSettings {
            name: (*name).to_owned(),
            max: *u.choose(&MAXES)?,
            level: u.int_in_range(0..=2)?,
        });
    }
    if u.ratio(1, 8)? {
        settings.push(SemaphoreSettings {
            name: "A".to_owned(),
            max: *u.choose(&MAXES)?,
            level: u.int_in_range(0..=2)?,
        });
    }
    Ok(settings)
}

fn decode(u: &mut Unstructured<'_>, checker: &Checker, now: &mut Time) -> Result<Step> {
    let op = match u.int_in_range(0..=14u8)? {
        0 | 1 => Op::NewPeer {
            id: peer_id(u)?,
            expires_at: *now + ttl(u)?,
            name: holder(u)?,
        },
        2..=4 => {
            let id = peer_id(u)?;
            let semaphore = name(u)?;
            Op::Acquire {
                id,
                count: count(u, checker, semaphore)?,
                semaphore: semaphore.to_owned(),
                expires_at: if u.arbitrary()? {
                    Some(*now + ttl(u)?)
                } else {
                    None
                },
            }
        }
        5 => Op::ReleaseLock {
            id: peer_id(u)?,
            semaphore: name(u)?.to_owned(),
        },
        6 => Op::RemovePeer { id: peer_id(u)? },
        7 => Op::Heartbeat {
            id: peer_id(u)?,
            expires_at: *now + ttl(u)?,
        },
        8 => {
            let id = peer_id(u)?;
            let expires_at = *now + ttl(u)?;
            let mut acquired = BTreeMap::new();
            let mut tokens = BTreeMap::new();
            for _ in 0..u.int_in_range(0..=3u8)? {
                let semaphore = name(u)?;
                acquired.insert(semaphore.to_owned(), count(u, checker, semaphore)?);
                let next = checker.core().next_token();
                let token = match u.int_in_range(0..=5u8)? {
                    0 => next.saturating_sub(u.int_in_range(1..=5)?),
                    1 => next + u.int_in_range(0..=100)?,
                    2 => MAX_TOKEN + 1,
                    3 => u.arbitrary()?,
                    _ => continue,
                };
                tokens.insert(semaphore.to_owned(), token);
            }
            Op::Restore {
                id,
                expires_at,
                acquired,
                tokens,
                name: holder(u)?,
            }
        }
        // Time passes, with a sweep (the expiry thread's tick) or without one.
        tick @ (9 | 10) => {
            *now += match u.int_in_range(0..=3u8)? {
                0 => Duration::ZERO,
                1 => Duration::from_secs(60),
                _ => Duration::from_millis(u.int_in_range(0..=3_000u64)?),
            };
            if tick == 10 {
                return Ok(Step::Look);
            }
            Op::Expire
        }
        // Read-only queries at the same time: the checker asks every peer and name.
        11 => return Ok(Step::Look),
        12 => Op::Reconfigure {
            semaphores: configuration(u, true)?,
        },
        14 => return Ok(Step::Rebuild),
        _ => {
            let until = *now + Duration::from_millis(u.int_in_range(0..=3_000u64)?);
            return Ok(Step::Grace(until));
        }
    };
    Ok(Step::Apply(op))
}

/// A holder's name, sometimes.
fn holder(u: &mut Unstructured<'_>) -> Result<Option<String>> {
    Ok(if u.ratio(1, 4)? {
        Some(u.arbitrary()?)
    } else {
        None
    })
}

fn peer_id(u: &mut Unstructured<'_>) -> Result<PeerId> {
    Ok(match u.int_in_range(0..=15u8)? {
        15 => *u.choose(&[u64::MAX, (1 << 53) - 1, 1 << 53])?,
        n => u64::from(n % 8),
    })
}

fn name(u: &mut Unstructured<'_>) -> Result<&'static str> {
    u.choose(&NAMES).copied()
}

fn ttl(u: &mut Unstructured<'_>) -> Result<Duration> {
    Ok(match u.int_in_range(0..=7u8)? {
        0 => Duration::ZERO,
        1 => Duration::from_millis(1),
        2 => Duration::from_secs(1),
        3 => Duration::from_secs(60),
        4 => MAX_DURATION,
        _ => Duration::from_millis(u.int_in_range(0..=10_000u64)?),
    })
}

fn count(u: &mut Unstructured<'_>, checker: &Checker, semaphore: &str) -> Result<i64> {
    let max = checker
        .core()
        .stats(checker.now())
        .iter()
        .find(|s| s.name == semaphore)
        .map_or(3, |s| s.max);
    Ok(match u.int_in_range(0..=11u8)? {
        0 => 0,
        1 => -1,
        2 => i64::MIN,
        3 => i64::MAX,
        4 => max,
        5 => max.saturating_add(1),
        6 => max.saturating_sub(1),
        7 => u.arbitrary()?,
        8 => 2,
        9 => 3,
        _ => 1,
    })
}
