//! The lock guard: waiting with long polls, the heartbeat thread, restore, release on drop, and
//! the lost lease.
//!
//! **Restore or lost.** When the server answers `Unknown peer`, it restarted and forgot the
//! peer: the heartbeat (or the waiting loop) restores it with the locks it holds and their
//! fencing tokens, and nothing changes for the holder. When it answers `Unknown peer` with
//! `Throttle-Peer-State: expired`, the lease ran out (heartbeats did not get through): the
//! server released the locks and others may hold them now. Then nothing is restored: the
//! heartbeat stops, the peer is marked lost ([`LockGuard::is_lost`], [`Peer::is_lost`]), the
//! callback of [`LockBuilder::on_lost`] or [`Peer::on_lost`] runs once, and every later call on
//! the peer, and [`LockGuard::release`], fail with [`Error::LockLost`].

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::backoff::Backoff;
use crate::client::{Client, LockState, PeerId};
use crate::error::Error;

/// The lease of a peer created by [`Client::lock`] or [`Client::peer`] unless told otherwise:
/// how long the server keeps a lock whose owner stopped sending heartbeats (it crashed, or lost
/// the network). The heartbeat thread prolongs it every third of that time.
pub const DEFAULT_EXPIRES_IN: Duration = Duration::from_secs(60);

/// The longest `block_for` of one acquire request while waiting. Shorter slices notice a
/// restarted server and a lost connection sooner; longer ones send fewer requests.
pub(crate) const LONGEST_SLICE: Duration = Duration::from_secs(5);

/// An answer that arrives in less than this fraction of its `block_for` counts as early, and is
/// followed by a pause before the next request.
const EARLY_FRACTION: f64 = 0.5;

/// The shortest pause between two heartbeats, whatever the lease.
const SHORTEST_HEARTBEAT: Duration = Duration::from_millis(10);

/// What both lock builders ask of a lock; they differ only in the peer that will hold it.
#[derive(Clone, Debug)]
struct Wanted<'a> {
    semaphore: &'a str,
    count: i64,
    timeout: Option<Duration>,
    cancel: Option<Cancel>,
}

impl<'a> Wanted<'a> {
    fn new(semaphore: &'a str) -> Wanted<'a> {
        Wanted {
            semaphore,
            count: 1,
            timeout: None,
            cancel: None,
        }
    }

    /// Waits for the lock on `core`'s peer (see [`PeerCore::acquire`]).
    fn acquire_on(self, core: Arc<PeerCore>) -> Result<LockGuard, Error> {
        let wait = Wait {
            timeout: self.timeout,
            cancel: self.cancel.as_ref(),
        };
        PeerCore::acquire(core, self.semaphore, self.count, wait)
    }
}

/// The setters of [`Wanted`] on a lock builder, written once for both: the public methods of
/// [`LockBuilder`] and [`PeerLockBuilder`] that ask the same of a lock.
macro_rules! wanted_setters {
    ($builder:ident) => {
        impl $builder<'_> {
            /// The count of the lock (default 1), the units of the resource it stands for. It
            /// may not exceed the semaphore's `max`.
            pub fn count(mut self, count: i64) -> Self {
                self.wanted.count = count;
                self
            }

            /// Give up waiting after `timeout` with [`Error::Timeout`] (default: wait as long
            /// as it takes).
            pub fn timeout(mut self, timeout: Duration) -> Self {
                self.wanted.timeout = Some(timeout);
                self
            }

            /// Lets another thread end the wait: once `cancel` is [cancelled](Cancel::cancel),
            /// this acquire fails with [`Error::Cancelled`] within a round trip, and nothing
            /// stays queued. A program that waits for a lock and must stop on a signal
            /// (`throttle lock` does) hands a clone of the handle to the thread that sees the
            /// signal.
            ///
            /// ```no_run
            /// use throttle_client::{Cancel, Client, Error};
            ///
            /// let cancel = Cancel::new();
            /// let stopper = cancel.clone();
            /// std::thread::spawn(move || {
            ///     // ... on Ctrl+C, or when the job is called off:
            ///     stopper.cancel();
            /// });
            /// let client = Client::new("http://localhost:8000");
            /// match client.lock("db").cancel_with(&cancel).acquire() {
            ///     Ok(_guard) => { /* use the database */ }
            ///     Err(Error::Cancelled) => { /* called off; nothing is queued */ }
            ///     Err(other) => eprintln!("{other}"),
            /// }
            /// ```
            pub fn cancel_with(mut self, cancel: &Cancel) -> Self {
                self.wanted.cancel = Some(cancel.clone());
                self
            }
        }
    };
}

impl Client {
    /// Starts building a lock on `semaphore`, taken on a peer of its own:
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use throttle_client::Client;
    ///
    /// let client = Client::new("http://localhost:8000");
    /// let guard = client.lock("A").count(2).timeout(Duration::from_secs(10)).acquire()?;
    /// // ... use two units of the resource A protects ...
    /// drop(guard); // releases the lock
    /// # Ok::<(), throttle_client::Error>(())
    /// ```
    ///
    /// For nested locks that the server's lock hierarchy should check, take them through one
    /// [`Peer`] instead (see [`Client::peer`]).
    pub fn lock<'a>(&'a self, semaphore: &'a str) -> LockBuilder<'a> {
        LockBuilder {
            client: self,
            wanted: Wanted::new(semaphore),
            expires_in: DEFAULT_EXPIRES_IN,
            on_lost: None,
        }
    }

    /// Creates a peer that can hold several locks, kept alive by a heartbeat thread every
    /// third of `expires_in` until the [`Peer`] and all guards taken through it are dropped.
    ///
    /// All locks of one peer are subject to the server's lock hierarchy: a peer may only lock a
    /// semaphore whose level is lower than the levels of those it holds, which rules out
    /// deadlocks between peers that nest locks.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use throttle_client::Client;
    ///
    /// let client = Client::new("http://localhost:8000");
    /// let peer = client.peer(Duration::from_secs(60))?;
    /// let outer = peer.lock("A").acquire()?; // level 1
    /// let inner = peer.lock("B").acquire()?; // level 0
    /// drop(inner);
    /// drop(outer);
    /// # Ok::<(), throttle_client::Error>(())
    /// ```
    pub fn peer(&self, expires_in: Duration) -> Result<Peer, Error> {
        Ok(Peer {
            core: PeerCore::create(self, expires_in)?,
        })
    }
}

/// What runs when a peer's lease is lost: it gets the peer's id.
pub type OnLost = Arc<dyn Fn(PeerId) + Send + Sync>;

/// Settings of a lock taken by [`Client::lock`]; [`LockBuilder::acquire`] takes it.
#[derive(Clone)]
#[must_use = "a lock builder does nothing until `acquire` is called"]
pub struct LockBuilder<'a> {
    client: &'a Client,
    wanted: Wanted<'a>,
    expires_in: Duration,
    on_lost: Option<OnLost>,
}

impl fmt::Debug for LockBuilder<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockBuilder")
            .field("semaphore", &self.wanted.semaphore)
            .field("count", &self.wanted.count)
            .field("timeout", &self.wanted.timeout)
            .field("expires_in", &self.expires_in)
            .field("on_lost", &self.on_lost.is_some())
            .field("cancel", &self.wanted.cancel)
            .finish_non_exhaustive()
    }
}

wanted_setters!(LockBuilder);

impl LockBuilder<'_> {
    /// The lease of the lock's peer (default [`DEFAULT_EXPIRES_IN`]): how long the server keeps
    /// the lock after its holder stopped sending heartbeats.
    pub fn expires_in(mut self, expires_in: Duration) -> Self {
        self.expires_in = expires_in;
        self
    }

    /// Runs `callback` (on the heartbeat thread, once) if the lock's lease is lost: the server
    /// says the peer expired, so others may hold the resource now. Stop using it; see
    /// [`LockGuard::is_lost`]. Keep it short, as the heartbeat thread ends after it.
    ///
    /// ```no_run
    /// use std::sync::atomic::{AtomicBool, Ordering};
    /// use std::sync::Arc;
    ///
    /// let stop = Arc::new(AtomicBool::new(false));
    /// let flag = stop.clone();
    /// let client = throttle_client::Client::new("http://localhost:8000");
    /// let guard = client
    ///     .lock("db")
    ///     .on_lost(move |_peer| flag.store(true, Ordering::SeqCst))
    ///     .acquire()?;
    /// while !stop.load(Ordering::SeqCst) {
    ///     // ... one batch of work, written with guard.fencing_token() ...
    /// #   break;
    /// }
    /// # Ok::<(), throttle_client::Error>(())
    /// ```
    pub fn on_lost(mut self, callback: impl Fn(PeerId) + Send + Sync + 'static) -> Self {
        self.on_lost = Some(Arc::new(callback));
        self
    }

    /// Creates a peer, waits until the lock is granted, and returns a guard that keeps it alive
    /// and releases it when dropped.
    ///
    /// Waiting is a series of long polls. If the server forgets the peer meanwhile (it
    /// restarted), the peer is restored and waiting goes on; if the peer expired, this fails
    /// with [`Error::LockLost`]. On timeout, or any other error, the peer is released, so no
    /// pending lock stays behind to block others.
    pub fn acquire(self) -> Result<LockGuard, Error> {
        let core = PeerCore::create(self.client, self.expires_in)?;
        if let Some(callback) = self.on_lost {
            *lock(&core.shared.on_lost) = Some(callback);
        }
        self.wanted.acquire_on(core)
    }
}

/// Ends waiting acquires from another thread: see [`LockBuilder::cancel_with`] and
/// [`PeerLockBuilder::cancel_with`]. Clones share the state: cancelling one cancels the waits
/// of all, now and later (a cancelled handle stays cancelled).
#[derive(Clone, Default)]
pub struct Cancel {
    inner: Arc<CancelInner>,
}

#[derive(Default)]
struct CancelInner {
    /// Set once, under the `waiting` mutex, so that a wait that ends at that moment either sees
    /// it or is not cut short on the server.
    cancelled: AtomicBool,
    /// The wait in progress, if any: the pending lock to release on the server, which answers
    /// the long poll waiting for it at once.
    waiting: Mutex<Option<(Client, PeerId, String)>>,
}

impl fmt::Debug for Cancel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cancel")
            .field("cancelled", &self.is_cancelled())
            .finish_non_exhaustive()
    }
}

impl Cancel {
    /// A handle that is not cancelled.
    pub fn new() -> Cancel {
        Cancel::default()
    }

    /// Makes the waits that use this handle fail with [`Error::Cancelled`]: a long poll in
    /// progress is cut short (its pending lock is released on the server, one request without
    /// retries), later waits fail before they ask. An acquire that was granted just before
    /// returns its guard; check [`Cancel::is_cancelled`] after it if that matters.
    pub fn cancel(&self) {
        let waiting = {
            let waiting = lock(&self.inner.waiting);
            self.inner.cancelled.store(true, Ordering::SeqCst);
            waiting.clone()
        };
        if let Some((client, peer, semaphore)) = waiting
            && let Err(error) = client.release_lock(peer, &semaphore)
        {
            log::warn!("could not cut the wait for {semaphore:?} short: {error}");
        }
    }

    /// Whether [`Cancel::cancel`] was called on this handle or a clone.
    pub fn is_cancelled(&self) -> bool {
        self.inner.cancelled.load(Ordering::SeqCst)
    }

    /// Notes the wait in progress, so [`Cancel::cancel`] can cut it short.
    fn start(&self, client: &Client, peer: PeerId, semaphore: &str) {
        // One request, no retries: a cancel must not block for the retry budget.
        let client = client.clone().with_retry_budget(Duration::ZERO);
        *lock(&self.inner.waiting) = Some((client, peer, semaphore.to_owned()));
    }

    /// Forgets the wait; returns whether the handle was cancelled by then. Under the mutex, so
    /// that a wait reported as not cancelled is never cut short afterwards.
    fn finish(&self) -> bool {
        let mut waiting = lock(&self.inner.waiting);
        *waiting = None;
        self.is_cancelled()
    }
}

/// How long, and whether at all, [`PeerCore::acquire`] waits.
struct Wait<'a> {
    timeout: Option<Duration>,
    cancel: Option<&'a Cancel>,
}

/// A peer that holds several locks, created by [`Client::peer`].
///
/// A heartbeat thread keeps it alive and restores it (with the locks it holds) after the server
/// forgot it. The peer is released on the server when this handle and every guard taken
/// through it are dropped. A peer waits for one lock at a time: share it between threads only
/// to hand locks around, not to wait in parallel (that fails with
/// [`Error::SecondPendingLock`]).
pub struct Peer {
    core: Arc<PeerCore>,
}

impl fmt::Debug for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Peer")
            .field("id", &self.core.id)
            .finish_non_exhaustive()
    }
}

impl Peer {
    /// The peer's id on the server.
    pub fn id(&self) -> PeerId {
        self.core.id
    }

    /// The peer's lease, as given to [`Client::peer`].
    pub fn expires_in(&self) -> Duration {
        self.core.expires_in
    }

    /// The locks this peer holds through guards: semaphore name to count. This is what a
    /// restore sends to the server.
    pub fn acquired(&self) -> BTreeMap<String, i64> {
        lock(&self.core.shared.acquired)
            .iter()
            .map(|(name, held)| (name.clone(), held.count))
            .collect()
    }

    /// The fencing token of this peer's lock on `semaphore`; `None` if it holds none through a
    /// guard, or the server sends no tokens (Throttle 0.5).
    pub fn fencing_token(&self, semaphore: &str) -> Option<u64> {
        lock(&self.core.shared.acquired).get(semaphore)?.token
    }

    /// Whether the peer's lease was lost: the server said it expired, and released its locks.
    /// Every lock of a lost peer is lost, and new ones fail with [`Error::LockLost`]; take them
    /// on a new peer.
    pub fn is_lost(&self) -> bool {
        self.core.shared.is_lost()
    }

    /// Runs `callback` (once, on the heartbeat thread) when the peer's lease is lost; at once,
    /// on this thread, if it is lost already. Replaces an earlier callback.
    pub fn on_lost(&self, callback: impl Fn(PeerId) + Send + Sync + 'static) {
        *lock(&self.core.shared.on_lost) = Some(Arc::new(callback));
        if self.is_lost() {
            self.core.shared.call_on_lost(self.core.id);
        }
    }

    /// Starts building a lock on `semaphore` held by this peer.
    pub fn lock<'a>(&'a self, semaphore: &'a str) -> PeerLockBuilder<'a> {
        PeerLockBuilder {
            peer: self,
            wanted: Wanted::new(semaphore),
        }
    }
}

/// Settings of a lock taken by [`Peer::lock`]; [`PeerLockBuilder::acquire`] takes it.
#[derive(Debug)]
#[must_use = "a lock builder does nothing until `acquire` is called"]
pub struct PeerLockBuilder<'a> {
    peer: &'a Peer,
    wanted: Wanted<'a>,
}

wanted_setters!(PeerLockBuilder);

impl PeerLockBuilder<'_> {
    /// Waits until the lock is granted and returns a guard that releases it when dropped. On
    /// timeout, or any other error, the pending lock is withdrawn; the peer keeps the locks it
    /// held before. Fails with [`Error::AlreadyLocked`] if the peer holds this semaphore.
    pub fn acquire(self) -> Result<LockGuard, Error> {
        self.wanted.acquire_on(self.peer.core.clone())
    }
}

/// A granted lock. It stays alive while the guard exists (a heartbeat thread prolongs its
/// peer) and is released when the guard is dropped or [`LockGuard::release`]d.
///
/// Dropping cannot report errors: a failed release is logged (`log::warn!`), and the server
/// frees the lock anyway when the lease runs out.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct LockGuard {
    core: Arc<PeerCore>,
    semaphore: String,
    count: i64,
    fencing_token: Option<u64>,
    released: bool,
}

impl fmt::Debug for LockGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockGuard")
            .field("peer", &self.core.id)
            .field("semaphore", &self.semaphore)
            .field("count", &self.count)
            .field("fencing_token", &self.fencing_token)
            .finish_non_exhaustive()
    }
}

impl LockGuard {
    /// The lock's fencing token: the number of its grant, larger than every token the server
    /// granted before. Send it with every write to the resource the lock protects, and let the
    /// resource refuse a token lower than the highest it has seen: a holder that paused past its
    /// lease cannot overwrite the work of the next one (README, Fencing tokens). `None` from a
    /// server without fencing tokens (Throttle 0.5).
    pub fn fencing_token(&self) -> Option<u64> {
        self.fencing_token
    }

    /// Whether the lock's lease was lost: the server said its peer expired, so it released the
    /// lock and someone else may hold it now. Stop using the resource. The lock is not restored.
    pub fn is_lost(&self) -> bool {
        self.core.shared.is_lost()
    }

    /// The id of the peer that holds the lock.
    pub fn peer_id(&self) -> PeerId {
        self.core.id
    }

    /// The semaphore locked.
    pub fn semaphore(&self) -> &str {
        &self.semaphore
    }

    /// The count of the lock.
    pub fn count(&self) -> i64 {
        self.count
    }

    /// Releases the lock now and reports whether the server confirmed it. Dropping the guard
    /// does the same but can only log a failure. Fails with [`Error::LockLost`] if the lease was
    /// lost while the guard was held: whatever was done with the resource since may have
    /// overlapped with another holder.
    pub fn release(mut self) -> Result<(), Error> {
        self.release_once()
    }

    fn release_once(&mut self) -> Result<(), Error> {
        self.released = true;
        lock(&self.core.shared.acquired).remove(&self.semaphore);
        if self.core.shared.is_lost() {
            // The server released the lock when the peer expired.
            return Err(Error::LockLost);
        }
        if Arc::strong_count(&self.core) == 1 {
            // The last owner of the peer: releasing the whole peer frees this lock too.
            self.core.close()
        } else {
            self.core.client.release_lock(self.core.id, &self.semaphore)
        }
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        if !self.released
            && let Err(error) = self.release_once()
        {
            log::warn!(
                "could not release the lock on {:?}: {error}",
                self.semaphore
            );
        }
    }
}

/// What a [`Peer`] handle and its guards share. Dropping the last of them stops the heartbeat
/// and releases the peer on the server.
struct PeerCore {
    client: Client,
    id: PeerId,
    expires_in: Duration,
    /// What the heartbeat thread shares with the handles.
    shared: Arc<Shared>,
    /// `None` once the peer is closed.
    heartbeat: Mutex<Option<Heartbeat>>,
}

/// One lock held through a guard, as a restore sends it.
#[derive(Debug, Clone, Copy)]
struct Held {
    count: i64,
    token: Option<u64>,
}

/// The state of a peer shared by its handles and its heartbeat thread.
#[derive(Default)]
struct Shared {
    /// The locks held through guards, for restores.
    acquired: Mutex<BTreeMap<String, Held>>,
    /// The server said the peer expired.
    lost: AtomicBool,
    on_lost: Mutex<Option<OnLost>>,
}

impl Shared {
    fn is_lost(&self) -> bool {
        self.lost.load(Ordering::SeqCst)
    }

    /// Marks the peer lost and runs the callback, the first time only.
    fn mark_lost(&self, id: PeerId) {
        if !self.lost.swap(true, Ordering::SeqCst) {
            log::warn!("peer {id} expired on the server: its locks are lost, not restored");
            self.call_on_lost(id);
        }
    }

    fn call_on_lost(&self, id: PeerId) {
        let callback = lock(&self.on_lost).clone();
        if let Some(callback) = callback {
            callback(id);
        }
    }

    /// The counts and the tokens of the held locks, for a restore.
    fn restore_body(&self) -> (BTreeMap<String, i64>, BTreeMap<String, u64>) {
        let acquired = lock(&self.acquired);
        let counts = acquired
            .iter()
            .map(|(name, held)| (name.clone(), held.count))
            .collect();
        let tokens = acquired
            .iter()
            .filter_map(|(name, held)| Some((name.clone(), held.token?)))
            .collect();
        (counts, tokens)
    }
}

impl PeerCore {
    fn create(client: &Client, expires_in: Duration) -> Result<Arc<PeerCore>, Error> {
        let id = client.new_peer(expires_in)?;
        let shared = Arc::new(Shared::default());
        let heartbeat = Heartbeat::start(client, id, expires_in, shared.clone());
        Ok(Arc::new(PeerCore {
            client: client.clone(),
            id,
            expires_in,
            shared,
            heartbeat: Mutex::new(Some(heartbeat)),
        }))
    }

    /// Restores the peer with the locks it holds and their tokens.
    fn restore(&self) -> Result<(), Error> {
        let (counts, tokens) = self.shared.restore_body();
        self.client
            .restore_with_tokens(self.id, &counts, &tokens, self.expires_in)
    }

    fn acquire(
        core: Arc<PeerCore>,
        semaphore: &str,
        count: i64,
        wait: Wait<'_>,
    ) -> Result<LockGuard, Error> {
        if core.shared.is_lost() {
            return Err(Error::LockLost);
        }
        if lock(&core.shared.acquired).contains_key(semaphore) {
            return Err(Error::AlreadyLocked {
                semaphore: semaphore.to_owned(),
            });
        }
        let (client, id, expires_in) = (&core.client, core.id, core.expires_in);
        if let Some(cancel) = wait.cancel {
            cancel.start(client, id, semaphore);
        }
        let cancelled = || wait.cancel.is_some_and(Cancel::is_cancelled);
        let mut waited = wait_for_grant(
            semaphore,
            wait.timeout,
            |block_for| {
                client.acquire_state(id, semaphore, count, Some(block_for), Some(expires_in))
            },
            || core.restore(),
            cancelled,
        );
        if let Some(cancel) = wait.cancel
            && cancel.finish()
            && waited.is_ok()
        {
            // Granted as the cancel came: it may have released the lock already.
            waited = Err(Error::Cancelled);
        }
        if let Err(Error::LockLost) = waited {
            // The peer expired while waiting: its other locks are gone too.
            core.shared.mark_lost(id);
            return Err(Error::LockLost);
        }
        let fencing_token = match waited {
            Ok(token) => token,
            Err(error) => {
                // Withdraw the pending lock. A peer of this lock alone is released as a whole
                // when `core` is dropped on return.
                if Arc::strong_count(&core) > 1
                    && let Err(withdraw) = client.release_lock(id, semaphore)
                {
                    log::warn!("could not withdraw the lock request on {semaphore:?}: {withdraw}");
                }
                return Err(error);
            }
        };
        let held = Held {
            count,
            token: fencing_token,
        };
        lock(&core.shared.acquired).insert(semaphore.to_owned(), held);
        Ok(LockGuard {
            core,
            semaphore: semaphore.to_owned(),
            count,
            fencing_token,
            released: false,
        })
    }

    /// Stops the heartbeat, then releases the peer. Stopping first means a heartbeat in flight
    /// cannot restore the peer after it is gone. Does nothing the second time.
    fn close(&self) -> Result<(), Error> {
        let Some(heartbeat) = lock(&self.heartbeat).take() else {
            return Ok(());
        };
        heartbeat.stop();
        if self.shared.is_lost() {
            // The server removed the peer when it expired; nothing is left to release.
            return Ok(());
        }
        self.client.release(self.id)
    }
}

impl Drop for PeerCore {
    fn drop(&mut self) {
        if let Err(error) = self.close() {
            log::warn!("could not release peer {}: {error}", self.id);
        }
    }
}

/// A thread that prolongs a peer every third of its lease, and restores it with its acquired
/// locks when the server no longer knows it; it ends when the server says the peer expired. It
/// waits on a condition variable, not in a sleep, so stopping it takes effect at once.
struct Heartbeat {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: JoinHandle<()>,
}

impl Heartbeat {
    fn start(client: &Client, id: PeerId, expires_in: Duration, shared: Arc<Shared>) -> Heartbeat {
        // The next beat is the retry: retrying within a beat would only delay stopping.
        let client = client.clone().with_retry_budget(Duration::ZERO);
        let interval = (expires_in / 3).max(SHORTEST_HEARTBEAT);
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let signal = stop.clone();
        let thread = thread::Builder::new()
            .name(format!("throttle-heartbeat-{id}"))
            .spawn(move || {
                let (stopped, wake) = &*signal;
                loop {
                    let guard = lock(stopped);
                    let (guard, _) = wake
                        .wait_timeout_while(guard, interval, |stopped| !*stopped)
                        .unwrap_or_else(PoisonError::into_inner);
                    if *guard {
                        return;
                    }
                    drop(guard);
                    if let Beat::Lost = beat(&client, id, expires_in, &shared) {
                        shared.mark_lost(id);
                        return;
                    }
                }
            })
            .expect("the operating system refused to start a heartbeat thread");
        Heartbeat { stop, thread }
    }

    fn stop(self) {
        *lock(&self.stop.0) = true;
        self.stop.1.notify_all();
        if self.thread.join().is_err() {
            log::warn!("the heartbeat thread panicked");
        }
    }
}

/// What one heartbeat found.
enum Beat {
    /// The peer lives (or was restored, or the server could not be reached: the next beat
    /// tries again).
    Alive,
    /// The server says the peer expired.
    Lost,
}

/// One heartbeat, with a restore if the server forgot the peer (it restarted), none if the peer
/// expired.
fn beat(client: &Client, id: PeerId, expires_in: Duration, shared: &Shared) -> Beat {
    match client.heartbeat(id, expires_in) {
        Ok(()) => Beat::Alive,
        Err(Error::LockLost) => Beat::Lost,
        Err(Error::UnknownPeer) => {
            let (counts, tokens) = shared.restore_body();
            match client.restore_with_tokens(id, &counts, &tokens, expires_in) {
                Ok(()) => log::info!("restored peer {id} with {counts:?}, tokens {tokens:?}"),
                Err(error) => log::warn!("could not restore peer {id}: {error}"),
            }
            Beat::Alive
        }
        Err(error) => {
            log::warn!("heartbeat of peer {id} failed: {error}");
            Beat::Alive
        }
    }
}

/// Calls `acquire(block_for)` until the lock is acquired, in slices of at most
/// [`LONGEST_SLICE`] that end at the deadline, and returns its fencing token. `restore` is
/// called when the server answers [`Error::UnknownPeer`], and waiting goes on; any other error,
/// [`Error::LockLost`] included, ends the wait. Returns [`Error::Timeout`] once `timeout` has
/// passed, and [`Error::Cancelled`] once `cancelled()` says so (asked before every request and
/// after every answer); withdrawing the pending lock is the caller's job.
///
/// An answer that comes back much sooner than asked (the server's long-poll slots are full,
/// it shuts down, or the pending lock was released under us) is followed by a growing,
/// jittered pause, so a busy server does not turn waiting into a busy loop.
pub(crate) fn wait_for_grant(
    semaphore: &str,
    timeout: Option<Duration>,
    mut acquire: impl FnMut(Duration) -> Result<LockState, Error>,
    mut restore: impl FnMut() -> Result<(), Error>,
    cancelled: impl Fn() -> bool,
) -> Result<Option<u64>, Error> {
    let deadline = timeout.map(|timeout| Instant::now() + timeout);
    let mut pause = Backoff::new(Duration::from_millis(20), Duration::from_secs(1));
    loop {
        if cancelled() {
            return Err(Error::Cancelled);
        }
        let block_for = match deadline {
            Some(deadline) => LONGEST_SLICE.min(deadline.saturating_duration_since(Instant::now())),
            None => LONGEST_SLICE,
        };
        let asked_at = Instant::now();
        let answer = acquire(block_for);
        if cancelled() {
            return Err(Error::Cancelled);
        }
        let early = match answer {
            Ok(LockState::Acquired { fencing_token }) => return Ok(fencing_token),
            Ok(LockState::Pending) => asked_at.elapsed() < block_for.mul_f64(EARLY_FRACTION),
            Err(Error::UnknownPeer) => {
                restore()?;
                // A peer that keeps vanishing (a lease shorter than a round trip) must not
                // make this a busy loop either.
                true
            }
            Err(error) => return Err(error),
        };
        let now = Instant::now();
        if let (Some(deadline), Some(timeout)) = (deadline, timeout)
            && now >= deadline
        {
            return Err(Error::Timeout {
                semaphore: semaphore.to_owned(),
                timeout,
            });
        }
        if early {
            let mut delay = pause.next_pause();
            if let Some(deadline) = deadline {
                delay = delay.min(deadline - now);
            }
            thread::sleep(delay);
        } else {
            pause.reset();
        }
    }
}

/// Locks a mutex, ignoring poisoning: the data behind these mutexes stays consistent even if a
/// thread panicked while holding one.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiting_times_out_after_asking_at_least_once() {
        let mut asked = Vec::new();
        let result = wait_for_grant(
            "A",
            Some(Duration::ZERO),
            |block_for| {
                asked.push(block_for);
                Ok(LockState::Pending)
            },
            || Ok(()),
            || false,
        );
        assert!(matches!(result, Err(Error::Timeout { .. })), "{result:?}");
        assert_eq!(asked, [Duration::ZERO]);
    }

    #[test]
    fn waiting_restores_an_unknown_peer_and_goes_on() {
        let granted = LockState::Acquired {
            fencing_token: Some(7),
        };
        let mut answers = vec![Ok(granted), Err(Error::UnknownPeer)];
        let mut restores = 0;
        let result = wait_for_grant(
            "A",
            None,
            |_| answers.pop().unwrap(),
            || {
                restores += 1;
                Ok(())
            },
            || false,
        );
        assert_eq!(result.ok(), Some(Some(7)));
        assert_eq!(restores, 1);
    }

    #[test]
    fn waiting_stops_at_errors_other_than_unknown_peer() {
        let result = wait_for_grant(
            "A",
            None,
            |_| Err(Error::UnknownSemaphore),
            || Ok(()),
            || false,
        );
        assert!(matches!(result, Err(Error::UnknownSemaphore)));
        // An expired peer is not restored.
        let mut restores = 0;
        let result = wait_for_grant(
            "A",
            None,
            |_| Err(Error::LockLost),
            || {
                restores += 1;
                Ok(())
            },
            || false,
        );
        assert!(matches!(result, Err(Error::LockLost)));
        assert_eq!(restores, 0);
    }

    #[test]
    fn a_cancelled_wait_stops_before_asking_and_after_an_answer() {
        let cancel = Cancel::new();
        let mut asked = 0;
        let result = wait_for_grant(
            "A",
            None,
            |_| {
                asked += 1;
                cancel.cancel();
                Ok(LockState::Acquired {
                    fencing_token: None,
                })
            },
            || Ok(()),
            || cancel.is_cancelled(),
        );
        assert!(matches!(result, Err(Error::Cancelled)), "{result:?}");
        assert_eq!(asked, 1);
        let result = wait_for_grant("A", None, |_| unreachable!(), || Ok(()), || true);
        assert!(matches!(result, Err(Error::Cancelled)), "{result:?}");
    }

    #[test]
    fn guards_can_move_between_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<LockGuard>();
        assert_send_sync::<Peer>();
        assert_send_sync::<Cancel>();
    }
}
