//! The one place the server turns its monotonic clock into the core's [`Time`] and back.
//!
//! The core never reads a clock: it takes times as arguments (`throttle_core::Time`, the time
//! since an epoch). One server's epoch is the moment it started, on the monotonic clock, so a
//! change of the wall clock never moves a deadline. Everything that reads "now" for the core
//! asks the server's one [`Clock`]; what waits for a core deadline (the expiry thread) turns it
//! back into an `Instant` here.

use std::time::{Duration, Instant};

use throttle_core::Time;

/// The server's clock: `Instant`s measured from the server's start.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    epoch: Instant,
}

impl Clock {
    /// A clock whose epoch is now.
    pub fn start() -> Clock {
        Clock {
            epoch: Instant::now(),
        }
    }

    /// Now, as the core counts time.
    pub fn now(&self) -> Time {
        self.time(Instant::now())
    }

    /// `instant` as the core counts time (the epoch for instants before it).
    pub fn time(&self, instant: Instant) -> Time {
        Time::from_epoch(instant.saturating_duration_since(self.epoch))
    }

    /// The instant of a core time, for waiting until it. A time too far ahead for the
    /// platform's `Instant` becomes a day from now: a sleeper wakes, looks again, and sleeps on.
    pub fn instant(&self, time: Time) -> Instant {
        self.epoch
            .checked_add(time.since_epoch())
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(24 * 60 * 60))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_instants_convert_both_ways() {
        let clock = Clock::start();
        let later = Instant::now() + Duration::from_secs(5);
        assert_eq!(clock.instant(clock.time(later)), later);
        assert!(clock.now() <= clock.time(Instant::now()));
        assert!(clock.instant(Time::from_epoch(Duration::MAX)) > Instant::now());
    }
}
