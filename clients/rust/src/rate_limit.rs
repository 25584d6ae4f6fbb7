//! `rate_limit`: at most N calls per time window, without ever releasing anything.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::client::Client;
use crate::error::Error;
use crate::lock::{LONGEST_SLICE, wait_for_grant};

impl Client {
    /// Blocks until one unit of `semaphore` is free, takes it for `per` and returns.
    ///
    /// For a resource that allows N calls per window (an API allowing 5 calls a second),
    /// configure a semaphore with `max = N` and call this before every call. Each call takes
    /// one unit on a fresh peer whose lease runs for `per` and is never released: the unit
    /// frees itself when the lease runs out, and the server's prompt expiry hands it to the
    /// next waiter at once. So at most N calls start in any window of length `per`, across all
    /// threads and machines that share the server.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use throttle_client::Client;
    ///
    /// let client = Client::new("http://localhost:8000");
    /// for page in 0..100 {
    ///     client.rate_limit("api", Duration::from_secs(1))?;
    ///     println!("fetching page {page}");
    /// }
    /// # Ok::<(), throttle_client::Error>(())
    /// ```
    pub fn rate_limit(&self, semaphore: &str, per: Duration) -> Result<(), Error> {
        self.rate_limit_with(semaphore, per, 1, None)
    }

    /// [`Client::rate_limit`] for calls that cost `count` units, giving up with
    /// [`Error::Timeout`] after `timeout` (if given); nothing stays queued then.
    ///
    /// The window starts when the units are granted: a caller that had to wait gets its full
    /// window from the moment it may proceed.
    pub fn rate_limit_with(
        &self,
        semaphore: &str,
        per: Duration,
        count: i64,
        timeout: Option<Duration>,
    ) -> Result<(), Error> {
        let peer = self.new_peer(per)?;
        match self.acquire(peer, semaphore, count, None, Some(per)) {
            Ok(true) => return Ok(()),
            // The peer may already be gone (expired) if `per` is shorter than a round trip;
            // waiting restores it. It holds nothing, so its expiry loses nothing.
            Ok(false) | Err(Error::UnknownPeer | Error::LockLost) => {}
            Err(error) => return Err(error),
        }
        // While queued, each slice's acquire keeps the peer alive. A waiter that crashes blocks
        // the queue behind it until its peer expires, so this is kept to a few slices.
        let waiting_lease = per.max(3 * LONGEST_SLICE);
        let waited = wait_for_grant(
            semaphore,
            timeout,
            |block_for| {
                // A rate-limit peer holds nothing while it waits: if it expired, restoring it
                // (with nothing) loses nothing, unlike a lock guard's peer.
                self.acquire_state(peer, semaphore, count, Some(block_for), Some(waiting_lease))
                    .map_err(|error| match error {
                        Error::LockLost => Error::UnknownPeer,
                        error => error,
                    })
            },
            || self.restore(peer, &BTreeMap::new(), waiting_lease),
            || false,
        );
        if let Err(error) = waited {
            if let Err(release) = self.release(peer) {
                log::warn!("could not withdraw the request for {semaphore:?}: {release}");
            }
            return Err(error);
        }
        // The peer lived on the longer waiting lease: start the window now.
        match self.heartbeat(peer, per) {
            // `UnknownPeer`, `LockLost`: the window was shorter than a round trip and is over
            // already.
            Ok(()) | Err(Error::UnknownPeer | Error::LockLost) => Ok(()),
            Err(error) => {
                // The unit is held, only for longer than `per`: the limit still holds.
                log::warn!("could not shorten the lease of a {semaphore:?} unit: {error}");
                Ok(())
            }
        }
    }
}
