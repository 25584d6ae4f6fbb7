//! Time as the core sees it: a point on a clock that the caller keeps, never read here.
//!
//! A [`Time`] is the time elapsed since an epoch the caller chooses. One server counts from its
//! own start on the monotonic clock; a replicated state counts from whatever its log stamps
//! into every entry. Either way the core only compares times and adds durations to them, so
//! the same operations with the same times give the same state on every machine: a `Time`,
//! unlike `std::time::Instant`, is a plain value that can be written down and sent.

use std::ops::{Add, AddAssign};
use std::time::Duration;

/// A point in time: the time elapsed since the caller's epoch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Time(Duration);

impl Time {
    /// The epoch itself.
    pub const ZERO: Time = Time(Duration::ZERO);

    /// The point `elapsed` after the epoch.
    pub const fn from_epoch(elapsed: Duration) -> Time {
        Time(elapsed)
    }

    /// The time elapsed from the epoch to this point.
    pub const fn since_epoch(self) -> Duration {
        self.0
    }

    /// How long after `earlier` this is; zero if it is not after it.
    pub fn saturating_duration_since(self, earlier: Time) -> Duration {
        self.0.saturating_sub(earlier.0)
    }
}

/// Saturates at the largest representable time instead of panicking: durations come from the
/// network (capped long before, but the core does not rely on that to stay up).
impl Add<Duration> for Time {
    type Output = Time;

    fn add(self, duration: Duration) -> Time {
        Time(self.0.saturating_add(duration))
    }
}

impl AddAssign<Duration> for Time {
    fn add_assign(&mut self, duration: Duration) {
        *self = *self + duration;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_compare_add_and_subtract_without_panicking() {
        let t = Time::from_epoch(Duration::from_secs(5));
        assert!(Time::ZERO < t);
        assert_eq!(
            t + Duration::from_secs(1),
            Time::from_epoch(Duration::from_secs(6))
        );
        assert_eq!(
            t.saturating_duration_since(Time::ZERO),
            Duration::from_secs(5)
        );
        assert_eq!(Time::ZERO.saturating_duration_since(t), Duration::ZERO);
        assert_eq!(t + Duration::MAX, Time::from_epoch(Duration::MAX));
    }
}
