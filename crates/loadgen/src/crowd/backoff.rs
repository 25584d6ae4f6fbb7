//! Pauses of the crowd clients: after a 202 that came back before its `block_for`, and before
//! retrying a failed request, as the repository's clients pause; and the small random number
//! generator that jitters them and spreads the slowloris probes.
//!
//! Only the arithmetic: the sleeping is the caller's.

use std::time::Duration;

/// A small pseudo-random generator (xorshift), enough to spread the probes.
pub struct Rng(u64);

impl Rng {
    /// Seeded differently for every generator, also within one nanosecond.
    pub fn seeded() -> Rng {
        use std::hash::{BuildHasher, Hasher};
        let seed = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        Rng(seed | 1)
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// The pause after a 202 that came back before its `block_for`, as the repository's clients do
/// it (`clients/rust/src/backoff.rs`): doubling from `--backoff` up to `--backoff-max`, each drawn
/// from the upper half of its step, and back to the start after a 200 or a full-length 202.
pub struct Backoff {
    first: Duration,
    cap: Duration,
    step: Duration,
    rng: Rng,
}

impl Backoff {
    /// Pauses from `first` (`--backoff`) doubling up to `max` (`--backoff-max`; `first` if
    /// smaller).
    pub fn new(first: Duration, max: Duration) -> Backoff {
        Backoff {
            first,
            cap: max.max(first),
            step: first,
            rng: Rng::seeded(),
        }
    }

    /// The next pause: the current step's upper half, drawn at random; the step then doubles.
    pub fn next_pause(&mut self) -> Duration {
        let step = self.step;
        self.step = (self.step * 2).min(self.cap);
        step / 2 + step.mul_f64(self.rng.below(1 << 20) as f64 / (2 << 20) as f64)
    }

    /// The pause before retrying a failed request: 50 ms up to 2 s, as in
    /// `clients/rust/src/client.rs`.
    pub fn retry() -> Backoff {
        Backoff {
            first: Duration::from_millis(50),
            cap: Duration::from_secs(2),
            step: Duration::from_millis(50),
            rng: Rng::seeded(),
        }
    }

    pub fn reset(&mut self) {
        self.step = self.first;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn pauses_double_up_to_the_cap_within_the_upper_half_of_each_step() {
        for _ in 0..100 {
            let mut backoff = Backoff::new(20 * MS, 100 * MS);
            for step in [20, 40, 80, 100, 100] {
                let pause = backoff.next_pause();
                assert!(
                    pause >= step * MS / 2 && pause < step * MS,
                    "{pause:?} for a {step} ms step"
                );
            }
            backoff.reset();
            assert!(backoff.next_pause() < 20 * MS);
        }
    }

    #[test]
    fn a_cap_below_the_first_pause_means_a_fixed_pause() {
        let mut backoff = Backoff::new(50 * MS, 10 * MS);
        for _ in 0..5 {
            let pause = backoff.next_pause();
            assert!(pause >= 25 * MS && pause < 50 * MS, "{pause:?}");
        }
    }

    #[test]
    fn retries_pause_from_50_ms_to_2_s() {
        let mut retry = Backoff::retry();
        let pauses: Vec<Duration> = (0..8).map(|_| retry.next_pause()).collect();
        assert!(pauses[0] >= 25 * MS && pauses[0] < 50 * MS);
        assert!(pauses[7] >= 1000 * MS && pauses[7] < 2000 * MS);
    }

    #[test]
    fn random_numbers_stay_below_the_bound_and_vary() {
        let mut rng = Rng::seeded();
        let draws: Vec<u64> = (0..1000).map(|_| rng.below(101)).collect();
        assert!(draws.iter().all(|&n| n < 101));
        assert!(draws.iter().any(|&n| n != draws[0]));
        // A fixed seed gives a fixed sequence.
        let (mut a, mut b) = (Rng(7), Rng(7));
        assert_eq!(a.below(1 << 20), b.below(1 << 20));
    }
}
