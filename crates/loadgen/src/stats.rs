//! Latency statistics: samples in nanoseconds and their nearest-rank percentiles.
//!
//! Only arithmetic on samples the scenarios collected; how a figure is printed or named in the
//! `result` line is `report.rs`'s and the scenarios' business.

use std::time::{Duration, Instant};

/// Latencies in nanoseconds (signed: the expiry lateness may be negative), sorted.
pub struct Stats {
    sorted: Vec<i64>,
}

impl Stats {
    pub fn new(mut samples: Vec<i64>) -> Stats {
        samples.sort_unstable();
        Stats { sorted: samples }
    }

    /// How many samples there are.
    pub fn count(&self) -> usize {
        self.sorted.len()
    }

    /// The samples, smallest first.
    pub fn sorted(&self) -> &[i64] {
        &self.sorted
    }

    /// Nearest-rank percentile in milliseconds (`quantile` 0.99 is p99, 0 the smallest sample,
    /// 1 the largest); NaN without samples, which the `result` line prints as `NaN`.
    pub fn ms(&self, quantile: f64) -> f64 {
        if self.sorted.is_empty() {
            return f64::NAN;
        }
        let rank = (quantile * self.count() as f64).ceil() as usize;
        let index = rank.clamp(1, self.count()) - 1;
        self.sorted[index] as f64 / 1e6
    }

    /// The largest sample in milliseconds; NaN without samples.
    pub fn max_ms(&self) -> f64 {
        self.ms(1.0)
    }
}

/// A duration in nanoseconds, saturating at `i64::MAX` (292 years).
pub fn nanos(duration: Duration) -> i64 {
    duration.as_nanos().min(i64::MAX as u128) as i64
}

/// Signed `a - b` in nanoseconds.
pub fn signed_nanos(a: Instant, b: Instant) -> i64 {
    if a >= b { nanos(a - b) } else { -nanos(b - a) }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: i64 = 1_000_000;

    #[test]
    fn nearest_rank_percentiles() {
        // 1..=100 ms, shuffled.
        let samples: Vec<i64> = (0..100).map(|i| ((i * 37) % 100 + 1) * MS).collect();
        let stats = Stats::new(samples);
        assert_eq!(stats.count(), 100);
        assert_eq!(stats.ms(0.0), 1.0);
        assert_eq!(stats.ms(0.5), 50.0);
        assert_eq!(stats.ms(0.99), 99.0);
        assert_eq!(stats.ms(0.999), 100.0);
        assert_eq!(stats.max_ms(), 100.0);
        assert_eq!(stats.sorted()[..3], [MS, 2 * MS, 3 * MS]);
    }

    #[test]
    fn percentiles_of_few_samples_are_samples() {
        let stats = Stats::new(vec![3 * MS, MS, 2 * MS]);
        // Rank ceil(q * 3): 0.5 -> 2nd, 0.34 -> 2nd, 0.33 -> 1st, 0.99 -> 3rd.
        assert_eq!(stats.ms(0.5), 2.0);
        assert_eq!(stats.ms(0.34), 2.0);
        assert_eq!(stats.ms(0.33), 1.0);
        assert_eq!(stats.ms(0.99), 3.0);
        let one = Stats::new(vec![1_500_000]);
        assert_eq!((one.ms(0.0), one.ms(0.5), one.max_ms()), (1.5, 1.5, 1.5));
    }

    #[test]
    fn no_samples_give_nan() {
        let stats = Stats::new(Vec::new());
        assert_eq!(stats.count(), 0);
        assert!(stats.ms(0.5).is_nan());
        assert!(stats.max_ms().is_nan());
        assert_eq!(format!("{:.3}", stats.ms(0.99)), "NaN");
    }

    #[test]
    fn negative_samples_sort_first() {
        let stats = Stats::new(vec![2 * MS, -3 * MS, 0]);
        assert_eq!(
            (stats.ms(0.0), stats.ms(0.5), stats.max_ms()),
            (-3.0, 0.0, 2.0)
        );
    }

    #[test]
    fn nanosecond_conversions() {
        assert_eq!(nanos(Duration::from_millis(3)), 3 * MS);
        assert_eq!(nanos(Duration::MAX), i64::MAX);
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_micros(5);
        assert_eq!(signed_nanos(t1, t0), 5_000);
        assert_eq!(signed_nanos(t0, t1), -5_000);
        assert_eq!(signed_nanos(t0, t0), 0);
    }
}
