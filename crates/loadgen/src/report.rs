//! What a scenario reports: the `result key=value ...` line that `scripts/bench` and
//! `scripts/crowd` read (its keys are their contract), and the first few error messages.
//!
//! Not the human-readable lines each scenario prints above its `result` line: those are the
//! scenario's own, and the scripts only pass them on.

use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::args::Scenario;

/// The `key=value` pairs of the final `result` line, printed by `main.rs` when the scenario
/// succeeded. Values hold no spaces: the scripts split the line on them.
pub struct ResultLine(String);

impl ResultLine {
    pub fn new(scenario: Scenario) -> ResultLine {
        ResultLine(format!("result scenario={}", scenario.name()))
    }

    pub fn add(&mut self, key: &str, value: impl std::fmt::Display) -> &mut Self {
        let _ = write!(self.0, " {key}={value}");
        self
    }

    /// A figure in milliseconds, three decimals.
    pub fn ms(&mut self, key: &str, value: f64) -> &mut Self {
        self.add(key, format!("{value:.3}"))
    }

    /// The line, `result scenario=NAME key=value ...`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// How many error messages [`Errors`] keeps to print.
const KEPT: usize = 5;

/// Collects the first few error messages and counts all of them; shared by the client threads
/// of a scenario.
#[derive(Default)]
pub struct Errors {
    count: AtomicUsize,
    first: Mutex<Vec<String>>,
}

impl Errors {
    pub fn record(&self, message: String) {
        if self.count.fetch_add(1, Ordering::Relaxed) < KEPT {
            self.first.lock().expect("not poisoned").push(message);
        }
    }

    pub fn count(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    /// The messages kept, and a last line with the count if there were more.
    pub fn lines(&self) -> Vec<String> {
        let mut lines: Vec<String> = self
            .first
            .lock()
            .expect("not poisoned")
            .iter()
            .map(|message| format!("loadgen: error: {message}"))
            .collect();
        if self.count() > KEPT {
            lines.push(format!("loadgen: ... {} errors in all", self.count()));
        }
        lines
    }

    /// Prints [`Errors::lines`] on stderr.
    pub fn report(&self) {
        for line in self.lines() {
            eprintln!("{line}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_line() {
        let mut line = ResultLine::new(Scenario::MassExpiry);
        line.add("clients", 16)
            .add("rate", format!("{:.1}", 1234.56))
            .ms("p99_ms", 1.23456)
            .ms("max_ms", f64::NAN);
        assert_eq!(
            line.as_str(),
            "result scenario=mass-expiry clients=16 rate=1234.6 p99_ms=1.235 max_ms=NaN"
        );
    }

    #[test]
    fn errors_keep_the_first_five_and_count_all() {
        let errors = Errors::default();
        assert_eq!(errors.count(), 0);
        assert!(errors.lines().is_empty());
        for i in 0..7 {
            errors.record(format!("e{i}"));
        }
        assert_eq!(errors.count(), 7);
        assert_eq!(
            errors.lines(),
            [
                "loadgen: error: e0",
                "loadgen: error: e1",
                "loadgen: error: e2",
                "loadgen: error: e3",
                "loadgen: error: e4",
                "loadgen: ... 7 errors in all",
            ]
        );
    }
}
