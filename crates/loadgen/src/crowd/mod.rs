//! The crowd scenarios of issue 13: hundreds to thousands of clients on one server at once.
//!
//! Every client is an OS thread with a small stack ([`STACK`]) blocking on its own keep-alive
//! connection, as the real clients do; the threads sleep in the kernel while they wait, so a
//! few thousand of them cost the load generator little CPU (each scenario prints its own CPU
//! time so that this can be checked). Setup (peers, connections) happens before the clock
//! starts where the scenario allows; requests still in flight when the time is up are neither
//! counted as answered nor as errors (the waiters' connections are shut down then).
//!
//! Counting is strict: a request counts as answered only with the status the scenario expects
//! (200, or 202 for an unfinished long poll); any other status, a refused or closed connection
//! and a timeout are errors, counted by kind. `docs/benchmark.md` describes each scenario.
//!
//! This file holds what the crowds share (small-stack threads, the start gate); each scenario
//! has its own file, the pauses between retries are `backoff.rs` and the sampling of the
//! server's memory and CPU `monitor.rs`.

mod backoff;
mod idle;
mod mass_expiry;
mod monitor;
mod peers_listing;
mod slowloris;
mod waiters;

pub use idle::idle;
pub use mass_expiry::mass_expiry;
pub use peers_listing::peers_listing;
pub use slowloris::slowloris;
pub use waiters::waiters;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// Stack size of every client thread: 5,000 of them reserve 320 MiB of address space and touch
/// only a few pages each.
pub const STACK: usize = 64 * 1024;

/// Lease of peers that must outlive the scenario.
pub const LONG_LEASE: Duration = Duration::from_secs(600);

/// Spawns a scoped thread with a [`STACK`]-sized stack.
pub fn spawn_small<'scope, T: Send + 'scope>(
    scope: &'scope thread::Scope<'scope, '_>,
    f: impl FnOnce() -> T + Send + 'scope,
) -> Result<thread::ScopedJoinHandle<'scope, T>, String> {
    thread::Builder::new()
        .stack_size(STACK)
        .spawn_scoped(scope, f)
        .map_err(|e| format!("cannot start a client thread: {e}"))
}

/// Holds client threads until all are set up, then lets them go at one instant (or tells them
/// to give up).
#[derive(Default)]
pub struct Gate {
    state: Mutex<Option<Option<Instant>>>,
    opened: Condvar,
}

impl Gate {
    /// The start instant, or `None` if the scenario was called off.
    pub fn wait(&self) -> Option<Instant> {
        let mut state = self.state.lock().expect("not poisoned");
        loop {
            if let Some(start) = *state {
                return start;
            }
            state = self.opened.wait(state).expect("not poisoned");
        }
    }

    /// Lets every client go, now and later, with `start` as the scenario's start.
    pub fn open(&self, start: Instant) {
        *self.state.lock().expect("not poisoned") = Some(Some(start));
        self.opened.notify_all();
    }

    /// Tells every client that the scenario is called off (a client thread failed to start).
    pub fn abort(&self) {
        *self.state.lock().expect("not poisoned") = Some(None);
        self.opened.notify_all();
    }
}

/// Waits until `n` clients reported ready (at most a minute).
pub fn wait_ready(ready: &AtomicUsize, n: usize) {
    let until = Instant::now() + Duration::from_secs(60);
    while ready.load(Ordering::SeqCst) < n && Instant::now() < until {
        thread::sleep(Duration::from_millis(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gate_lets_every_client_go_with_one_start() {
        let gate = Gate::default();
        let start = Instant::now();
        thread::scope(|scope| {
            let clients: Vec<_> = (0..4).map(|_| scope.spawn(|| gate.wait())).collect();
            gate.open(start);
            for client in clients {
                assert_eq!(client.join().expect("no panic"), Some(start));
            }
        });
        assert_eq!(gate.wait(), Some(start));
    }

    #[test]
    fn a_called_off_gate_gives_no_start() {
        let gate = Gate::default();
        thread::scope(|scope| {
            let client = scope.spawn(|| gate.wait());
            gate.abort();
            assert_eq!(client.join().expect("no panic"), None);
        });
    }

    #[test]
    fn small_threads_run() {
        thread::scope(|scope| {
            let handle = spawn_small(scope, || 6 * 7).expect("a thread");
            assert_eq!(handle.join().expect("no panic"), 42);
        });
    }
}
