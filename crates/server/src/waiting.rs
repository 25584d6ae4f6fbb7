//! The pool of threads that wait: every long poll (`block_for`) that cannot be granted at once
//! moves here, off the small pool of workers that serve short requests, so a release, a
//! heartbeat or a scrape never queues behind waiting clients, however many there are.
//!
//! Threads start on demand, up to a bound, with small stacks, and stay a while after their
//! wait for the next one; an idle server has none. What a job does is the caller's business
//! (`workers.rs` waits in the service and answers); this file only schedules.
//! It is not a general executor: a job is expected to block, so every job gets a thread.

use std::collections::VecDeque;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

/// Stack of a waiting thread. A wait needs a few pages (the service's wait loop, then writing
/// a short answer); only the pages touched count towards memory.
const STACK_SIZE: usize = 256 * 1024;

/// An idle waiting thread exits after this long without a job.
const LINGER: Duration = Duration::from_secs(30);

/// Threads that each run one blocking job at a time.
pub struct WaitPool<J> {
    shared: Arc<Shared<J>>,
}

struct Shared<J> {
    state: Mutex<State<J>>,
    /// Wakes an idle thread for a queued job, or all of them at shutdown.
    work: Condvar,
    /// Signalled when a thread exits, for [`WaitPool::shut_down`].
    exited: Condvar,
    run: Box<dyn Fn(J) + Send + Sync>,
    max_threads: usize,
}

struct State<J> {
    /// Jobs handed to idle threads that have not taken them yet.
    jobs: VecDeque<J>,
    idle: usize,
    threads: usize,
    closed: bool,
}

impl<J: Send + 'static> WaitPool<J> {
    /// A pool that runs each job with `run` on a thread of its own, at most `max_threads` at
    /// once.
    pub fn new(max_threads: usize, run: impl Fn(J) + Send + Sync + 'static) -> WaitPool<J> {
        WaitPool {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    jobs: VecDeque::new(),
                    idle: 0,
                    threads: 0,
                    closed: false,
                }),
                work: Condvar::new(),
                exited: Condvar::new(),
                run: Box::new(run),
                max_threads,
            }),
        }
    }

    /// Runs `job` on an idle thread or a new one. Gives the job back when the pool is at its
    /// bound, the system refuses a new thread, or the pool is shut down: the caller answers
    /// it at once instead.
    pub fn submit(&self, job: J) -> Result<(), J> {
        let mut state = self.shared.state.lock();
        if state.closed {
            return Err(job);
        }
        if state.idle > state.jobs.len() {
            state.jobs.push_back(job);
            drop(state);
            self.shared.work.notify_one();
            return Ok(());
        }
        if state.threads >= self.shared.max_threads {
            return Err(job);
        }
        state.threads += 1;
        drop(state);
        let shared = self.shared.clone();
        let mut first = Some(job);
        // The job moves into the thread only once the spawn has succeeded.
        let (tx, rx) = std::sync::mpsc::sync_channel::<J>(1);
        let spawned = thread::Builder::new()
            .name("waiting".into())
            .stack_size(STACK_SIZE)
            .spawn(move || {
                if let Ok(job) = rx.recv() {
                    work(&shared, job);
                } else {
                    shared.exit();
                }
            });
        match spawned {
            Ok(_) => {
                let job = first.take().expect("the job is still here");
                tx.send(job).map_err(|e| e.0)
            }
            Err(error) => {
                log::warn!("Cannot start a thread for a long poll: {error}");
                self.shared.exit();
                Err(first.take().expect("the job is still here"))
            }
        }
    }

    /// Threads running right now (waiting or idle).
    #[cfg(test)]
    pub fn threads(&self) -> usize {
        self.shared.state.lock().threads
    }

    /// Takes no more jobs and waits (up to `timeout`) for the running ones to end; idle
    /// threads exit at once. The jobs themselves must end on their own (the service answers
    /// every wait at shutdown).
    pub fn shut_down(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut state = self.shared.state.lock();
        state.closed = true;
        self.shared.work.notify_all();
        while state.threads > 0 {
            if self
                .shared
                .exited
                .wait_until(&mut state, deadline)
                .timed_out()
            {
                log::warn!("{} long polls still running at shutdown", state.threads);
                return;
            }
        }
    }
}

impl<J> Shared<J> {
    fn exit(&self) {
        let mut state = self.state.lock();
        state.threads -= 1;
        self.exited.notify_all();
    }
}

/// A waiting thread's life: its first job, then any job handed to it while idle.
fn work<J>(shared: &Shared<J>, first: J) {
    let mut job = first;
    loop {
        (shared.run)(job);
        let mut state = shared.state.lock();
        state.idle += 1;
        let next = loop {
            if let Some(next) = state.jobs.pop_front() {
                break Some(next);
            }
            if state.closed || shared.work.wait_for(&mut state, LINGER).timed_out() {
                // A job handed over just as the wait timed out is still taken.
                break state.jobs.pop_front();
            }
        };
        state.idle -= 1;
        match next {
            Some(next) => job = next,
            None => {
                state.threads -= 1;
                shared.exited.notify_all();
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::mpsc;

    /// A pool whose jobs block until their channel says go; returns what they saw.
    fn gated_pool(max: usize) -> (WaitPool<mpsc::Receiver<()>>, Arc<AtomicUsize>) {
        let done = Arc::new(AtomicUsize::new(0));
        let counter = done.clone();
        let pool = WaitPool::new(max, move |gate: mpsc::Receiver<()>| {
            let _ = gate.recv();
            counter.fetch_add(1, Ordering::SeqCst);
        });
        (pool, done)
    }

    fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !condition() {
            assert!(Instant::now() < deadline, "never: {what}");
            thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn every_job_gets_a_thread_up_to_the_bound() {
        let (pool, done) = gated_pool(3);
        let gates: Vec<_> = (0..3)
            .map(|_| {
                let (go, gate) = mpsc::channel();
                assert!(pool.submit(gate).is_ok());
                go
            })
            .collect();
        assert_eq!(pool.threads(), 3);
        let (_, gate) = mpsc::channel();
        assert!(pool.submit(gate).is_err(), "a fourth job is refused");
        for go in &gates {
            go.send(()).unwrap();
        }
        eventually("all three ran", || done.load(Ordering::SeqCst) == 3);
    }

    #[test]
    fn idle_threads_take_the_next_jobs() {
        let (pool, done) = gated_pool(2);
        for round in 1..=50 {
            let (go, gate) = mpsc::channel();
            go.send(()).unwrap();
            assert!(pool.submit(gate).is_ok(), "round {round}");
            eventually("the job ran", || done.load(Ordering::SeqCst) == round);
            // The thread that ran it goes idle and is reused: never more than one.
            assert!(pool.threads() <= 2);
        }
        eventually("one thread is idle", || pool.shared.state.lock().idle == 1);
        assert_eq!(pool.threads(), 1);
    }

    #[test]
    fn shutdown_waits_for_running_jobs_and_refuses_new_ones() {
        let (pool, done) = gated_pool(4);
        let (go, gate) = mpsc::channel();
        assert!(pool.submit(gate).is_ok());
        let releaser = thread::spawn(move || {
            thread::sleep(Duration::from_millis(20));
            go.send(()).unwrap();
        });
        pool.shut_down(Duration::from_secs(30));
        assert_eq!(done.load(Ordering::SeqCst), 1);
        assert_eq!(pool.threads(), 0);
        let (_, gate) = mpsc::channel();
        assert!(pool.submit(gate).is_err());
        releaser.join().unwrap();
    }
}
