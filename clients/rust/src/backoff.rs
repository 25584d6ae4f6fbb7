//! Exponentially growing, jittered pauses for the retry loop and the long-poll loop.
//!
//! Jitter matters: after a server restart every client of a fleet retries at about the same
//! moment, and spreading their retries keeps them from arriving as one burst.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

/// Pauses that double from `first` up to `cap`, each drawn at random from the upper half of its
/// step ("equal jitter"), so a pause is never near zero.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    first: Duration,
    cap: Duration,
    step: Duration,
}

impl Backoff {
    pub(crate) fn new(first: Duration, cap: Duration) -> Backoff {
        Backoff {
            first,
            cap,
            step: first,
        }
    }

    /// The next pause; the one after it will be about twice as long.
    pub(crate) fn next_pause(&mut self) -> Duration {
        let step = self.step;
        self.step = (self.step * 2).min(self.cap);
        step / 2 + step.mul_f64(random_fraction() / 2.0)
    }

    /// Starts again from the shortest pause, after whatever caused the waiting is over.
    pub(crate) fn reset(&mut self) {
        self.step = self.first;
    }
}

/// A number in `[0, 1)`, random enough for jitter. Every `RandomState` is seeded differently,
/// which spares a dependency on a random number generator.
fn random_fraction() -> f64 {
    let bits = RandomState::new().build_hasher().finish() >> 11;
    bits as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_double_up_to_the_cap_and_stay_in_the_upper_half_of_their_step() {
        let ms = Duration::from_millis;
        let mut backoff = Backoff::new(ms(100), ms(400));
        for step in [100, 200, 400, 400, 400] {
            let pause = backoff.next_pause();
            assert!(
                pause >= ms(step / 2) && pause <= ms(step),
                "{pause:?} for step {step}"
            );
        }
        backoff.reset();
        assert!(backoff.next_pause() <= ms(100));
    }
}
