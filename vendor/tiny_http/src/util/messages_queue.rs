// Throttle's patch 9: hand messages to few, recently active threads.
//
// The original was a `Mutex<VecDeque>` with one `Condvar`: every `push` woke the waiter that had
// slept longest. A pool of 64 workers on a 2-CPU machine then put up to 64 threads on the run
// queue, each cache-cold, each going back to sleep after one request: two context switches per
// request on top of the connection thread's.
//
// Here every waiting thread parks on its own slot and idle threads form a stack, so `push` wakes
// the thread that went idle last. And at most `max_running` threads that took a message run at
// once (a thread that returns to `pop` gives its place back; `while_waiting` gives it back while
// the thread sleeps for other reasons, such as a long poll). Beyond that, messages queue, and
// the running threads take them as they come back, without sleeping in between.
//
// So that a running thread that blocks cannot stall the queue, one idle thread stands by while
// messages queue: when the oldest has waited `standby_after`, it takes it regardless of the cap,
// and another idle thread takes its place as the standby. (While running threads stay stuck,
// every message then waits `standby_after` first: a bound, not a fast path.)
//
// A thread counts as running until it calls a pop method of the same queue again. So a thread
// should take messages from one queue only, and leave it through `unblock` (as tiny_http's
// workers do): one that takes a message and exits, or moves on to another queue, keeps its place
// counted.

use std::cell::Cell;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

enum Control<T> {
    Elem(T),
    Unblock,
}

/// What a waiting thread is woken with.
enum Handed<T> {
    /// Take this message.
    Message(Control<T>),
    /// Watch the queue (see the module comment).
    Standby,
}

/// Where `dispatch` puts what it hands to a waiting thread. Slots are reused (see `spare`).
type Slot<T> = Arc<Mutex<Option<Handed<T>>>>;

/// A thread waiting in `pop`: `dispatch` fills `slot` and unparks `thread`.
struct Idle<T> {
    thread: Thread,
    slot: Slot<T>,
}

struct Inner<T> {
    /// Messages not handed over yet, oldest first, with the time they came in.
    queue: VecDeque<(Instant, Control<T>)>,
    /// Waiting threads, the one that went idle last on top.
    idle: Vec<Idle<T>>,
    /// Threads that took a message and have not come back to `pop` or into `while_waiting`.
    running: usize,
    max_running: usize,
    standby_after: Duration,
    /// The thread that watches the queue as the standby, if any.
    standby: Option<Thread>,
}

pub struct MessagesQueue<T>
where
    T: Send,
{
    inner: Mutex<Inner<T>>,
    /// Slots not in use. Allocated up front by `reserve_waiters`, so that a thread that waits
    /// allocates nothing: with an allocator that keeps memory per thread, 64 idle workers would
    /// otherwise each hold some.
    spare: Mutex<Vec<Slot<T>>>,
    /// Names the queue in `RUNNING_ON`; never reused, unlike an address.
    id: usize,
}

/// Source of queue ids; 0 means "none" in `RUNNING_ON`.
static NEXT_ID: AtomicUsize = AtomicUsize::new(1);

thread_local! {
    /// The queue (by address) this thread took a message from and counts as running on, or 0.
    static RUNNING_ON: Cell<usize> = const { Cell::new(0) };
}

/// Locks ignoring poison: the queue's invariants hold between any two statements.
fn lock<U>(mutex: &Mutex<U>) -> MutexGuard<'_, U> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// What `dispatch` decided, carried out once the queue's lock is released (so that woken
/// threads do not find it held, and the lock is not held across the wake-up system call).
struct Handoffs<T> {
    hand: Vec<(Idle<T>, Handed<T>)>,
    /// The standby, when a message it may take now waits.
    nudge: Option<Thread>,
}

impl<T> Handoffs<T> {
    fn carry_out(self) {
        for (idle, handed) in self.hand {
            *lock(&idle.slot) = Some(handed);
            idle.thread.unpark();
        }
        if let Some(standby) = self.nudge {
            standby.unpark();
        }
    }
}

impl<T> Inner<T> {
    /// Whether the message at the front may be taken by a thread that is not running.
    fn front_takeable(&self, now: Instant, as_standby: bool) -> bool {
        match self.queue.front() {
            None => false,
            Some((_, Control::Unblock)) => true,
            Some(_) if self.running < self.max_running => true,
            Some((since, _)) => {
                as_standby && now.saturating_duration_since(*since) >= self.standby_after
            }
        }
    }

    /// Hands queued messages to idle threads while the cap allows, then makes sure a standby
    /// watches what is left.
    #[must_use = "the hand-offs must be carried out after unlocking"]
    fn dispatch(&mut self) -> Handoffs<T> {
        let mut handoffs = Handoffs {
            hand: Vec::new(),
            nudge: None,
        };
        let now = Instant::now();
        while !self.idle.is_empty() && self.front_takeable(now, false) {
            let (_, control) = self
                .queue
                .pop_front()
                .expect("front_takeable saw a message");
            if matches!(control, Control::Elem(_)) {
                self.running += 1;
            }
            let idle = self.idle.pop().expect("checked above");
            handoffs.hand.push((idle, Handed::Message(control)));
        }
        match &self.standby {
            Some(standby) if self.front_takeable(now, false) => {
                handoffs.nudge = Some(standby.clone());
            }
            Some(_) => {}
            None if self.queue.is_empty() => {}
            None => {
                if let Some(idle) = self.idle.pop() {
                    self.standby = Some(idle.thread.clone());
                    handoffs.hand.push((idle, Handed::Standby));
                }
            }
        }
        handoffs
    }
}

impl<T> MessagesQueue<T>
where
    T: Send,
{
    pub fn with_capacity(capacity: usize) -> Arc<MessagesQueue<T>> {
        Arc::new(MessagesQueue {
            inner: Mutex::new(Inner {
                queue: VecDeque::with_capacity(capacity),
                idle: Vec::new(),
                running: 0,
                max_running: usize::MAX,
                standby_after: Duration::from_millis(5),
                standby: None,
            }),
            spare: Mutex::new(Vec::new()),
            id: NEXT_ID.fetch_add(1, Relaxed),
        })
    }

    /// Prepares for `threads` threads calling `pop`: their wait slots are allocated now, by the
    /// calling thread, and waiting allocates nothing afterwards.
    pub fn reserve_waiters(&self, threads: usize) {
        lock(&self.inner).idle.reserve(threads);
        let mut spare = lock(&self.spare);
        spare.reserve(threads);
        spare.extend((0..threads).map(|_| Slot::default()));
    }

    /// Whether this thread counts as running on this queue.
    fn holds(&self) -> bool {
        RUNNING_ON.with(|on| on.get() == self.id)
    }

    fn set_holds(&self, holds: bool) {
        RUNNING_ON.with(|on| on.set(if holds { self.id } else { 0 }));
    }

    /// This thread stops counting as running, if it did.
    fn step_down(&self, inner: &mut Inner<T>) {
        if self.holds() {
            self.set_holds(false);
            debug_assert!(inner.running > 0, "a running thread was not counted");
            inner.running = inner.running.saturating_sub(1);
        }
    }

    /// Lets at most `max_running` threads that took a message run at once; see the module
    /// comment. `standby_after` bounds how long a message waits when those threads are stuck.
    pub fn limit_running(&self, max_running: usize, standby_after: Duration) {
        let mut inner = lock(&self.inner);
        inner.max_running = max_running.max(1);
        inner.standby_after = standby_after;
        let handoffs = inner.dispatch();
        drop(inner);
        handoffs.carry_out();
    }

    /// Runs `f` without counting this thread as running, so that another thread can take a
    /// message while this one sleeps in `f`.
    pub fn while_waiting<R>(&self, f: impl FnOnce() -> R) -> R {
        let held = self.holds();
        if held {
            let mut inner = lock(&self.inner);
            self.step_down(&mut inner);
            let handoffs = inner.dispatch();
            drop(inner);
            handoffs.carry_out();
        }
        let result = f();
        // Unless `f` took a message from this queue itself (and counts again already).
        if held && !self.holds() {
            lock(&self.inner).running += 1;
            self.set_holds(true);
        }
        result
    }

    fn deliver(&self, control: Control<T>) {
        let now = Instant::now();
        let mut inner = lock(&self.inner);
        inner.queue.push_back((now, control));
        let handoffs = inner.dispatch();
        drop(inner);
        handoffs.carry_out();
    }

    /// Pushes an element to the queue.
    pub fn push(&self, value: T) {
        self.deliver(Control::Elem(value));
    }

    /// Unblock one thread stuck in pop loop.
    pub fn unblock(&self) {
        self.deliver(Control::Unblock);
    }

    /// Takes the front message for this thread and offers the next one to the others (an
    /// `Unblock` behind it may be taken by anyone).
    fn take_and_dispatch(&self, mut inner: MutexGuard<'_, Inner<T>>) -> Option<T> {
        let value = self.take(&mut inner);
        let handoffs = inner.dispatch();
        drop(inner);
        handoffs.carry_out();
        value
    }

    /// Takes the front message for this thread, which then counts as running.
    fn take(&self, inner: &mut Inner<T>) -> Option<T> {
        match inner.queue.pop_front() {
            Some((_, Control::Elem(value))) => {
                inner.running += 1;
                self.set_holds(true);
                Some(value)
            }
            Some((_, Control::Unblock)) | None => None,
        }
    }

    fn received(&self, control: Control<T>) -> Option<T> {
        match control {
            // `dispatch` counted this thread as running already.
            Control::Elem(value) => {
                self.set_holds(true);
                Some(value)
            }
            Control::Unblock => None,
        }
    }

    /// Pops an element. Blocks until one is available.
    /// Returns None in case unblock() was issued.
    pub fn pop(&self) -> Option<T> {
        self.pop_until(None)
    }

    /// Tries to pop an element without blocking.
    pub fn try_pop(&self) -> Option<T> {
        let mut inner = lock(&self.inner);
        self.step_down(&mut inner);
        if inner.front_takeable(Instant::now(), false) {
            return self.take_and_dispatch(inner);
        }
        let handoffs = inner.dispatch();
        drop(inner);
        handoffs.carry_out();
        None
    }

    /// Tries to pop an element without blocking
    /// more than the specified timeout duration
    /// or unblock() was issued
    pub fn pop_timeout(&self, timeout: Duration) -> Option<T> {
        // A deadline beyond what `Instant` holds is no deadline.
        self.pop_until(Instant::now().checked_add(timeout))
    }

    fn pop_until(&self, deadline: Option<Instant>) -> Option<T> {
        let mut inner = lock(&self.inner);
        self.step_down(&mut inner);
        loop {
            if inner.front_takeable(Instant::now(), false) {
                return self.take_and_dispatch(inner);
            }
            if !inner.queue.is_empty() && inner.standby.is_none() {
                // Messages wait for the running threads, and nobody watches them.
                inner.standby = Some(thread::current());
                drop(inner);
                match self.stand_by(deadline) {
                    Ok(value) => return value,
                    Err(relocked) => {
                        inner = relocked;
                        continue;
                    }
                }
            }
            let slot = lock(&self.spare).pop().unwrap_or_default();
            inner.idle.push(Idle {
                thread: thread::current(),
                slot: Arc::clone(&slot),
            });
            drop(inner);
            let handed = self.wait(&slot, deadline);
            // Whoever filled the slot is done with it (see `wait`).
            lock(&self.spare).push(slot);
            match handed {
                Some(Handed::Message(control)) => return self.received(control),
                Some(Handed::Standby) => match self.stand_by(deadline) {
                    Ok(value) => return value,
                    Err(relocked) => inner = relocked,
                },
                None => return None,
            }
        }
    }

    /// Parks until something is put in `slot`, or until `deadline`: then `None`, with the
    /// thread off the idle stack. Either way, nobody fills the slot afterwards.
    #[inline(never)] // Keeps the frames an idle thread sleeps in small: see `pop_until`.
    fn wait(&self, slot: &Slot<T>, deadline: Option<Instant>) -> Option<Handed<T>> {
        loop {
            if let Some(handed) = lock(slot).take() {
                return Some(handed);
            }
            match deadline {
                None => thread::park(),
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        break;
                    }
                    thread::park_timeout(deadline - now);
                }
            }
        }
        let mut inner = lock(&self.inner);
        if let Some(at) = inner
            .idle
            .iter()
            .position(|idle| Arc::ptr_eq(&idle.slot, slot))
        {
            inner.idle.remove(at);
            return None;
        }
        drop(inner);
        // `dispatch` took the thread off the stack, so it is filling the slot: wait for it.
        loop {
            if let Some(handed) = lock(slot).take() {
                return Some(handed);
            }
            thread::park();
        }
    }

    /// Watches the queue as the standby: takes the front message once it may, or gives the
    /// role up when the queue is empty (`Err`: go back to waiting) or at `deadline`.
    #[inline(never)]
    fn stand_by(&self, deadline: Option<Instant>) -> Result<Option<T>, MutexGuard<'_, Inner<T>>> {
        loop {
            let mut inner = lock(&self.inner);
            let now = Instant::now();
            if inner.front_takeable(now, true) {
                inner.standby = None;
                let value = self.take(&mut inner);
                let handoffs = inner.dispatch();
                drop(inner);
                handoffs.carry_out();
                return Ok(value);
            }
            let Some(&(since, _)) = inner.queue.front() else {
                inner.standby = None;
                return Err(inner);
            };
            // A `standby_after` beyond what `Instant` holds: only a freed place wakes us.
            let mut wake = since.checked_add(inner.standby_after);
            if let Some(deadline) = deadline {
                if now >= deadline {
                    inner.standby = None;
                    let handoffs = inner.dispatch();
                    drop(inner);
                    handoffs.carry_out();
                    return Ok(None);
                }
                wake = Some(wake.map_or(deadline, |wake| wake.min(deadline)));
            }
            drop(inner);
            match wake {
                Some(wake) => thread::park_timeout(wake.saturating_duration_since(now)),
                None => thread::park(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::MessagesQueue;
    use std::sync::mpsc;
    use std::sync::Arc;
    use std::thread;
    use std::time::{Duration, Instant};

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn queued_messages_come_out_in_order() {
        let queue = MessagesQueue::with_capacity(4);
        queue.push(1);
        queue.push(2);
        assert_eq!(queue.try_pop(), Some(1));
        assert_eq!(queue.pop(), Some(2));
        assert_eq!(queue.try_pop(), None);
    }

    fn drain_in_threads(
        queue: &Arc<MessagesQueue<u32>>,
        threads: usize,
    ) -> Vec<thread::JoinHandle<Vec<u32>>> {
        (0..threads)
            .map(|_| {
                let queue = Arc::clone(queue);
                thread::spawn(move || {
                    let mut got = Vec::new();
                    while let Some(value) = queue.pop() {
                        got.push(value);
                    }
                    got
                })
            })
            .collect()
    }

    fn every_message_once(queue: &Arc<MessagesQueue<u32>>, threads: usize) {
        let waiters = drain_in_threads(queue, threads);
        for value in 0..2000 {
            queue.push(value);
        }
        for _ in 0..threads {
            queue.unblock();
        }
        let mut all: Vec<u32> = waiters
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect();
        all.sort_unstable();
        assert_eq!(all, (0..2000).collect::<Vec<_>>());
    }

    #[test]
    fn every_message_reaches_one_thread_and_unblock_ends_each_wait() {
        every_message_once(&MessagesQueue::with_capacity(4), 8);
        let limited = MessagesQueue::with_capacity(4);
        limited.limit_running(2, Duration::from_millis(1));
        every_message_once(&limited, 8);
    }

    #[test]
    fn threads_that_wait_in_between_lose_nothing() {
        let queue: Arc<MessagesQueue<u32>> = MessagesQueue::with_capacity(4);
        queue.limit_running(2, Duration::from_millis(1));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let queue = Arc::clone(&queue);
                thread::spawn(move || {
                    let mut got = Vec::new();
                    while let Some(value) = queue.pop() {
                        if value % 3 == 0 {
                            queue.while_waiting(|| thread::sleep(Duration::from_micros(50)));
                        }
                        got.push(value);
                    }
                    got
                })
            })
            .collect();
        for value in 0..3000 {
            queue.push(value);
        }
        for _ in 0..8 {
            queue.unblock();
        }
        let mut all: Vec<u32> = threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        all.sort_unstable();
        assert_eq!(all, (0..3000).collect::<Vec<_>>());
    }

    #[test]
    fn pop_timeout_returns_none_in_time_and_loses_nothing() {
        let queue: Arc<MessagesQueue<u32>> = MessagesQueue::with_capacity(4);
        assert_eq!(queue.pop_timeout(Duration::from_millis(10)), None);
        let popper = {
            let queue = Arc::clone(&queue);
            thread::spawn(move || {
                let mut got = Vec::new();
                while got.len() < 200 {
                    if let Some(value) = queue.pop_timeout(Duration::from_micros(50)) {
                        got.push(value);
                    }
                }
                got
            })
        };
        for value in 0..200 {
            queue.push(value);
            if value % 7 == 0 {
                thread::sleep(Duration::from_micros(30));
            }
        }
        assert_eq!(popper.join().unwrap(), (0..200).collect::<Vec<_>>());
    }

    /// A thread that takes a message and then blocks until `release` is sent.
    fn busy_thread(
        queue: &Arc<MessagesQueue<u32>>,
        waiting: bool,
    ) -> (mpsc::Sender<()>, thread::JoinHandle<Option<u32>>) {
        let (release, released) = mpsc::channel::<()>();
        let (took, has_taken) = mpsc::channel();
        let queue = Arc::clone(queue);
        let handle = thread::spawn(move || {
            let first = queue.pop();
            took.send(first).unwrap();
            if waiting {
                queue.while_waiting(|| released.recv().unwrap());
            } else {
                released.recv().unwrap();
            }
            queue.pop_timeout(Duration::from_millis(100))
        });
        assert_eq!(has_taken.recv().unwrap(), Some(0));
        (release, handle)
    }

    #[test]
    fn beyond_the_cap_messages_wait_for_a_running_thread() {
        let queue: Arc<MessagesQueue<u32>> = MessagesQueue::with_capacity(4);
        queue.limit_running(1, HOUR);
        queue.push(0);
        let (release, busy) = busy_thread(&queue, false);
        queue.push(1);
        // An idle thread may not take it while the running one has not come back.
        assert_eq!(queue.pop_timeout(Duration::from_millis(50)), None);
        release.send(()).unwrap();
        assert_eq!(busy.join().unwrap(), Some(1));
    }

    #[test]
    fn a_thread_in_while_waiting_leaves_its_place_to_another() {
        let queue: Arc<MessagesQueue<u32>> = MessagesQueue::with_capacity(4);
        queue.limit_running(1, HOUR);
        queue.push(0);
        let (release, busy) = busy_thread(&queue, true);
        queue.push(1);
        // This thread may become the standby first; freeing the place must reach it too, long
        // before its own deadline.
        let started = Instant::now();
        assert_eq!(queue.pop_timeout(Duration::from_secs(60)), Some(1));
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{:?}",
            started.elapsed()
        );
        release.send(()).unwrap();
        assert_eq!(busy.join().unwrap(), None);
    }

    #[test]
    fn a_stuck_running_thread_does_not_stall_the_queue() {
        let queue: Arc<MessagesQueue<u32>> = MessagesQueue::with_capacity(4);
        queue.limit_running(1, Duration::from_millis(5));
        queue.push(0);
        let (release, busy) = busy_thread(&queue, false);
        let drainers = drain_in_threads(&queue, 3);
        let started = Instant::now();
        for value in 1..=3 {
            queue.push(value);
        }
        // The standby takes them, one after another, although the running thread never returns.
        let (got, got_all) = mpsc::channel();
        let watcher = {
            let queue = Arc::clone(&queue);
            thread::spawn(move || {
                for _ in 0..3 {
                    queue.unblock();
                }
                got.send(()).unwrap();
            })
        };
        let mut all: Vec<u32> = drainers
            .into_iter()
            .flat_map(|d| d.join().unwrap())
            .collect();
        all.sort_unstable();
        assert_eq!(all, vec![1, 2, 3]);
        got_all.recv().unwrap();
        watcher.join().unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
        release.send(()).unwrap();
        assert_eq!(busy.join().unwrap(), None);
    }

    #[test]
    fn a_new_queue_does_not_inherit_the_count_of_a_dropped_one() {
        for _ in 0..100 {
            let queue: Arc<MessagesQueue<u32>> = MessagesQueue::with_capacity(4);
            queue.push(1);
            assert_eq!(queue.try_pop(), Some(1)); // This thread counts as running on it.
        }
        // A queue at a reused address would see this thread as running and count it down.
        let queue: Arc<MessagesQueue<u32>> = MessagesQueue::with_capacity(4);
        queue.limit_running(1, HOUR);
        assert_eq!(queue.try_pop(), None);
        queue.push(2);
        assert_eq!(queue.try_pop(), Some(2));
    }

    #[test]
    fn taking_a_message_inside_while_waiting_counts_once() {
        let queue: Arc<MessagesQueue<u32>> = MessagesQueue::with_capacity(4);
        queue.limit_running(1, HOUR);
        queue.push(0);
        assert_eq!(queue.pop(), Some(0));
        let inner = queue.while_waiting(|| {
            queue.push(1);
            queue.try_pop()
        });
        assert_eq!(inner, Some(1));
        assert_eq!(queue.try_pop(), None); // Gives the one place back.
        queue.push(2);
        let other = {
            let queue = Arc::clone(&queue);
            thread::spawn(move || queue.pop_timeout(Duration::from_secs(30)))
        };
        assert_eq!(other.join().unwrap(), Some(2));
    }

    #[test]
    fn an_unblock_behind_a_capped_message_reaches_the_standby_at_once() {
        let queue: Arc<MessagesQueue<u32>> = MessagesQueue::with_capacity(4);
        queue.limit_running(1, HOUR);
        queue.push(0);
        assert_eq!(queue.pop(), Some(0));
        let (done, finished) = mpsc::channel();
        let other = {
            let queue = Arc::clone(&queue);
            thread::spawn(move || done.send(queue.pop()).unwrap())
        };
        thread::sleep(Duration::from_millis(50)); // Let it go idle, if it can.
        queue.push(1); // Capped: the other thread stands by, for an hour.
        queue.unblock();
        assert_eq!(queue.pop(), Some(1));
        assert_eq!(finished.recv_timeout(Duration::from_secs(30)), Ok(None));
        other.join().unwrap();
    }

    #[test]
    fn durations_beyond_what_an_instant_holds_mean_no_timer() {
        let queue: Arc<MessagesQueue<u32>> = MessagesQueue::with_capacity(4);
        queue.push(0);
        assert_eq!(queue.pop_timeout(Duration::MAX), Some(0));
        queue.limit_running(1, Duration::MAX);
        queue.push(1);
        assert_eq!(queue.pop(), Some(1));
        let (done, finished) = mpsc::channel();
        let other = {
            let queue = Arc::clone(&queue);
            thread::spawn(move || done.send(queue.pop_timeout(Duration::MAX)).unwrap())
        };
        queue.push(2); // Capped; the other thread stands by without a timer.
                       // Freeing the place wakes it.
        let got = queue.while_waiting(|| finished.recv_timeout(Duration::from_secs(30)));
        assert_eq!(got, Ok(Some(2)));
        other.join().unwrap();
    }

    #[test]
    fn the_thread_that_went_idle_last_gets_the_message() {
        let queue: Arc<MessagesQueue<u32>> = MessagesQueue::with_capacity(4);
        let (got, results) = mpsc::channel();
        let idle_count = |queue: &MessagesQueue<u32>| super::lock(&queue.inner).idle.len();
        let mut threads = Vec::new();
        for name in ["first", "last"] {
            let (mine, got) = (Arc::clone(&queue), got.clone());
            let before = idle_count(&queue);
            threads.push(thread::spawn(move || {
                while let Some(value) = mine.pop() {
                    got.send((name, value)).unwrap();
                }
            }));
            let deadline = Instant::now() + Duration::from_secs(30);
            while idle_count(&queue) == before {
                assert!(Instant::now() < deadline, "{name} never went idle");
                thread::sleep(Duration::from_millis(1));
            }
        }
        queue.push(1);
        assert_eq!(
            results.recv_timeout(Duration::from_secs(30)),
            Ok(("last", 1))
        );
        for _ in &threads {
            queue.unblock();
        }
        for thread in threads {
            thread.join().unwrap();
        }
    }
}
