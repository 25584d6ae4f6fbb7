//! The longest lease granted so far, and a wake-up for whoever keeps it on disk.
//!
//! After an unclean stop the grace period lasts the longest lease granted before it (capped by
//! `--grace`), so a running server keeps that figure in its state file's "running" marker.
//! Rewriting the marker on every request would cost an fsync each; leases rarely grow (clients
//! ask for the same one every time), so [`LeaseWatch::note`] only wakes the writer when the
//! longest lease grows, and costs one atomic load otherwise. The writer (`persistence.rs`) waits in
//! [`LeaseWatch::wait_for_growth`]. This file does no I/O.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

/// The longest lease noted so far, in milliseconds, with a wake-up when it grows.
#[derive(Default)]
pub struct LeaseWatch {
    longest_ms: AtomicU64,
    signal: Mutex<Signal>,
    changed: Condvar,
}

#[derive(Default)]
struct Signal {
    /// The longest lease grew since the writer last looked.
    grown: bool,
    stopped: bool,
}

impl LeaseWatch {
    /// Notes a lease just granted (a new peer, a heartbeat, an acquire's `expires_in`, a
    /// restore, a peer loaded from the state file).
    pub fn note(&self, lease: Duration) {
        let ms = u64::try_from(lease.as_millis()).unwrap_or(u64::MAX);
        if ms <= self.longest_ms.load(Ordering::Relaxed) {
            return;
        }
        if self.longest_ms.fetch_max(ms, Ordering::Relaxed) < ms {
            self.signal.lock().grown = true;
            self.changed.notify_one();
        }
    }

    /// The longest lease noted so far.
    pub fn longest(&self) -> Duration {
        Duration::from_millis(self.longest_ms.load(Ordering::Relaxed))
    }

    /// Waits until the longest lease grew and returns it; `None` once [`LeaseWatch::stop`] was
    /// called.
    pub fn wait_for_growth(&self) -> Option<Duration> {
        let mut signal = self.signal.lock();
        loop {
            if signal.stopped {
                return None;
            }
            if signal.grown {
                signal.grown = false;
                return Some(self.longest());
            }
            self.changed.wait(&mut signal);
        }
    }

    /// Ends every wait, now and later.
    pub fn stop(&self) {
        self.signal.lock().stopped = true;
        self.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::thread;

    #[test]
    fn only_growth_wakes_the_writer() {
        let watch = Arc::new(LeaseWatch::default());
        watch.note(Duration::from_secs(5));
        assert_eq!(watch.wait_for_growth(), Some(Duration::from_secs(5)));
        watch.note(Duration::from_secs(3));
        watch.note(Duration::from_secs(5));
        let waiting = {
            let watch = watch.clone();
            thread::spawn(move || (watch.wait_for_growth(), watch.wait_for_growth()))
        };
        watch.note(Duration::from_secs(9));
        // Once the first growth was seen, stop ends the second wait.
        while watch.signal.lock().grown {
            thread::yield_now();
        }
        watch.stop();
        assert_eq!(
            waiting.join().unwrap(),
            (Some(Duration::from_secs(9)), None)
        );
        assert_eq!(watch.longest(), Duration::from_secs(9));
    }
}
