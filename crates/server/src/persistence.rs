//! Restarts that never hand a lock out twice: what the server does with the state file and the
//! grace period at start, while it runs, and at shutdown.
//!
//! - **At start** ([`read`], [`apply`]): a state file from a graceful shutdown brings every peer
//!   back with its acquired locks, each lease shortened by the time the server was down (wall
//!   clock); peers whose lease ran out meanwhile expire at the first sweep and are counted in
//!   `throttle_expired_peers_total`. A file marked "running" means the previous run did not end
//!   cleanly: the server cannot know who holds what, so it starts a grace period as long as the
//!   longest lease granted before, capped by `--grace`. Without a state file (or with a missing
//!   one: a first start) `--grace` alone sets the grace period.
//! - **While running** ([`Keeper::start`]): the file is replaced by the "running" marker, and a
//!   thread rewrites that small marker whenever the longest lease granted grows (see
//!   `lease_watch.rs`), never per request.
//! - **At shutdown** ([`Keeper::finish`]): every live peer is copied out of the core under the
//!   state lock (numbers only), then serialized and written atomically after the lock is
//!   released. A write that fails is logged and makes the exit code non-zero.
//!
//! **Fencing tokens across restarts.** The first token of a run is the larger of the state
//! file's `next_fencing_token` (written at a graceful shutdown, and in the "running" marker as
//! the run started) and the wall clock in microseconds since 1970 ([`first_token`]). After a
//! graceful shutdown the file alone guarantees larger tokens, whatever the clock does. Without a
//! state file, or after an unclean stop (the marker only knows where the run started), the
//! clock does: a run grants far fewer than a million locks per second on average, so the clock
//! stays ahead of the counter, as long as it is not set back across the restart by more than the
//! run's grants ran ahead of it. README, Fencing tokens, says so.
//!
//! The format and the atomic write are `state_file.rs`'s, the bookkeeping (grace period, loading
//! peers, semaphores the configuration lost) is the core's (its `grace.rs` and `export.rs`).
//!
//! **Limits, written down.** Pending locks are not saved: waiters ask again (their long polls
//! are answered at shutdown anyway). The downtime is measured by the wall clock, so a clock set
//! back while the server was down shortens no lease (a clock set forward shortens them more).
//! The marker's longest lease is written when it grows, so a crash right after a longer lease was
//! granted may leave the shorter figure: the longer lease's holder is then protected only as far
//! as `--grace` and the shorter figure reach.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime};

use crate::lease_watch::LeaseWatch;
use crate::service::Service;
use crate::state_file::{self, Marker, Saved};
use throttle_core::{Core, Time};

/// What the previous run left behind, as far as the grace period is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Previous {
    /// A graceful shutdown wrote every peer.
    Clean,
    /// The previous run did not end cleanly; it had granted leases up to this long.
    Unclean { longest_lease: Duration },
    /// Nothing is known: no state file, a missing one (a first start), or a discarded one.
    Unknown,
}

impl Previous {
    /// What a state file (or its absence) says.
    pub fn of(saved: Option<&Saved>) -> Previous {
        match saved {
            Some(saved) if saved.clean => Previous::Clean,
            Some(saved) => Previous::Unclean {
                longest_lease: saved.longest_lease,
            },
            None => Previous::Unknown,
        }
    }

    /// The grace period this start needs: none after a clean shutdown; the longest lease
    /// granted before an unclean stop, capped by `--grace`; `--grace` otherwise. Zero is none.
    pub fn grace(self, option: Option<Duration>) -> Option<Duration> {
        let grace = match self {
            Previous::Clean => None,
            Previous::Unclean { longest_lease } => {
                Some(option.map_or(longest_lease, |cap| cap.min(longest_lease)))
            }
            Previous::Unknown => option,
        };
        grace.filter(|grace| !grace.is_zero())
    }
}

/// Reads the state file. A file that cannot be read or parsed stops the start with one line
/// naming it and the problem, unless `reset` (`--state-file-reset`) says to start empty.
pub fn read(file: &Path, reset: bool) -> Result<Option<Saved>, String> {
    let started = Instant::now();
    match state_file::load(file) {
        Ok(Some(saved)) => {
            log::info!(
                "Read {} peers from {} in {} ms",
                saved.peers.len(),
                file.display(),
                started.elapsed().as_millis()
            );
            Ok(Some(saved))
        }
        Ok(None) => {
            log::info!("No state file {} yet: a first start", file.display());
            Ok(None)
        }
        Err(problem) if reset => {
            log::warn!("{problem}; starting empty as --state-file-reset says");
            Ok(None)
        }
        Err(problem) => Err(format!(
            "{problem} (--state-file-reset starts empty instead)"
        )),
    }
}

/// The first fencing token of a run: the larger of the state file's next token and the wall
/// clock in microseconds (see the module docs).
pub fn first_token(saved: Option<&Saved>, wall: SystemTime) -> u64 {
    let clock = wall
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_micros()).unwrap_or(u64::MAX)
        });
    let file = saved.and_then(|saved| saved.next_token).unwrap_or(0);
    file.max(clock).clamp(1, throttle_core::MAX_TOKEN)
}

/// Puts the peers of `saved` into `core`, sets where its fencing tokens start and starts the
/// grace period this start needs, logging all three. `now` and `wall` are the same moment by the
/// monotonic and the wall clock.
pub fn apply(
    core: &mut Core,
    file: Option<&Path>,
    saved: Option<&Saved>,
    grace: Option<Duration>,
    leases: &LeaseWatch,
    now: Time,
    wall: SystemTime,
) -> Result<(), String> {
    core.raise_next_token(first_token(saved, wall));
    if let (Some(file), Some(saved)) = (file, saved) {
        let started = Instant::now();
        let downtime = wall.duration_since(saved.saved_at).unwrap_or_default();
        let mut expired = 0;
        for peer in &saved.peers {
            let left = peer.lease.saturating_sub(downtime);
            if left.is_zero() {
                expired += 1;
            }
            leases.note(left);
            core.load_peer(peer.id, now + left, &peer.acquired, &peer.tokens)
                .map_err(|error| {
                    format!(
                        "{}: the state file is corrupt: peer {}: {error} (--state-file-reset \
                         starts empty instead)",
                        file.display(),
                        peer.id
                    )
                })?;
            core.set_name(peer.id, peer.name.as_deref());
        }
        for &(id, left) in &saved.expired {
            if let Some(left) = left.checked_sub(downtime).filter(|left| !left.is_zero()) {
                core.load_expired(id, now + left);
            }
        }
        let how = if saved.clean {
            "shut down cleanly"
        } else {
            "did not shut down cleanly"
        };
        log::info!(
            "Loaded {} peers from {} in {} ms (written {} ago; the previous run {how}); \
             {expired} of them expired while the server was down",
            saved.peers.len(),
            file.display(),
            started.elapsed().as_millis(),
            humantime::format_duration(round(downtime)),
        );
        for (name, acquired, max) in core.overcommitted() {
            if max == 0 {
                log::warn!(
                    "Semaphore {name:?} is no longer configured, but loaded peers hold {acquired} \
                     of it: kept until released"
                );
            } else {
                log::warn!(
                    "Semaphore {name:?}: loaded peers hold {acquired}, above its max of {max}: \
                     kept until released; new locks wait until they fit"
                );
            }
        }
    }
    log::info!("Fencing tokens start at {}", core.next_token());
    if let Some(grace) = grace.filter(|grace| !grace.is_zero()) {
        core.begin_grace(now + grace);
        let why = match Previous::of(saved) {
            Previous::Unclean { .. } => "the previous run did not shut down cleanly",
            _ => "--grace",
        };
        log::info!(
            "Grace period of {} ({why}): no new locks are granted until it ends, so holders \
             can restore theirs first",
            humantime::format_duration(round(grace))
        );
    }
    Ok(())
}

/// Keeps the state file while the server runs and writes the peers at shutdown.
pub struct Keeper {
    file: PathBuf,
    leases: Arc<LeaseWatch>,
    writer: JoinHandle<()>,
}

impl Keeper {
    /// Replaces the file by the "running" marker (a failure is a startup error: better now than
    /// at shutdown) and starts the thread that keeps the marker's longest lease up to date.
    /// `next_token` is the fencing token of the run's first grant, which every marker records.
    pub fn start(
        file: PathBuf,
        leases: Arc<LeaseWatch>,
        next_token: u64,
    ) -> Result<Keeper, String> {
        write_marker(&file, leases.longest(), next_token)?;
        let writer = {
            let (file, leases) = (file.clone(), leases.clone());
            thread::Builder::new()
                .name("state-file".into())
                .spawn(move || {
                    while let Some(longest) = leases.wait_for_growth() {
                        match write_marker(&file, longest, next_token) {
                            Ok(()) => log::debug!(
                                "State file: longest lease now {}",
                                humantime::format_duration(longest)
                            ),
                            Err(error) => log::error!("{error}"),
                        }
                    }
                })
                .map_err(|error| format!("cannot start the state file's thread: {error}"))?
        };
        Ok(Keeper {
            file,
            leases,
            writer,
        })
    }

    /// Stops the marker's thread and writes every live peer. Call once no worker serves any
    /// more. The error is the line to exit with; it has been logged.
    pub fn finish(self, service: &Service) -> Result<(), String> {
        self.leases.stop();
        let _ = self.writer.join();
        let started = Instant::now();
        let (export, wall, locked) = service.inspect(|core, _, now| {
            let copying = Instant::now();
            let wall = SystemTime::now();
            let export = core.export(now);
            (export, wall, copying.elapsed())
        });
        let bytes = state_file::encode_clean(&export, wall, self.leases.longest());
        match state_file::write(&self.file, &bytes) {
            Ok(()) => {
                log::info!(
                    "Wrote {} peers to {} in {} ms (the state was locked for {} ms)",
                    export.peers.len(),
                    self.file.display(),
                    started.elapsed().as_millis(),
                    locked.as_millis()
                );
                Ok(())
            }
            Err(error) => {
                let message = format!(
                    "{}: cannot write the state file: {error}; the {} peers are not kept, \
                     clients must restore their locks",
                    self.file.display(),
                    export.peers.len()
                );
                log::error!("{message}");
                Err(message)
            }
        }
    }
}

fn write_marker(file: &Path, longest_lease: Duration, next_token: u64) -> Result<(), String> {
    let marker = Marker {
        longest_lease,
        next_token,
    };
    let bytes = state_file::encode_marker(marker, SystemTime::now());
    state_file::write(file, &bytes)
        .map_err(|error| format!("{}: cannot write the state file: {error}", file.display()))
}

/// To the millisecond, for the log.
fn round(duration: Duration) -> Duration {
    Duration::from_millis(u64::try_from(duration.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::time::UNIX_EPOCH;

    use crate::state_file::SavedPeer;
    use throttle_core::SemaphoreSettings;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn the_grace_period_each_start_needs() {
        let unclean = Previous::Unclean {
            longest_lease: secs(300),
        };
        assert_eq!(unclean.grace(None), Some(secs(300)));
        assert_eq!(unclean.grace(Some(secs(30))), Some(secs(30)));
        assert_eq!(unclean.grace(Some(secs(900))), Some(secs(300)));
        assert_eq!(unclean.grace(Some(Duration::ZERO)), None);
        assert_eq!(Previous::Clean.grace(Some(secs(30))), None);
        assert_eq!(Previous::Unknown.grace(Some(secs(30))), Some(secs(30)));
        assert_eq!(Previous::Unknown.grace(None), None);
        let no_leases = Previous::Unclean {
            longest_lease: Duration::ZERO,
        };
        assert_eq!(no_leases.grace(None), None);
    }

    #[test]
    fn leases_are_shortened_by_the_downtime() {
        let t0 = Time::from_epoch(Duration::from_secs(1_000));
        let saved_at = UNIX_EPOCH + secs(1_000_000);
        let saved = Saved {
            clean: true,
            saved_at,
            longest_lease: secs(60),
            peers: vec![
                SavedPeer {
                    id: 1,
                    lease: secs(60),
                    acquired: BTreeMap::from([("A".into(), 1)]),
                    tokens: BTreeMap::from([("A".into(), 500)]),
                    name: Some("one".into()),
                },
                SavedPeer {
                    id: 2,
                    lease: secs(5),
                    acquired: BTreeMap::from([("A".into(), 1)]),
                    tokens: BTreeMap::new(),
                    name: None,
                },
            ],
            next_token: Some(2_000),
            expired: vec![(7, secs(30)), (8, secs(5))],
        };
        let mut core = Core::new([SemaphoreSettings {
            name: "A".into(),
            max: 1,
            level: 0,
        }]);
        let leases = LeaseWatch::default();
        let file = Path::new("state.json");
        apply(
            &mut core,
            Some(file),
            Some(&saved),
            None,
            &leases,
            t0,
            saved_at + secs(10),
        )
        .unwrap();
        assert_eq!(core.peer(1, t0).unwrap().expires_in, secs(50));
        assert_eq!(core.peer(1, t0).unwrap().name, Some("one"));
        assert_eq!(core.token(1, "A"), Some(500));
        // Peer 2's lock had no token: it got one from the clock, above the file's next token.
        assert!(core.token(2, "A").unwrap() > 1_000_000_000);
        // Expired ids are remembered for what was left of their time, less the downtime.
        assert_eq!(core.unknown_peer(7), throttle_core::Error::ExpiredPeer);
        assert_eq!(core.unknown_peer(8), throttle_core::Error::UnknownPeer);
        assert_eq!(core.grace_remaining(t0), None);
        assert_eq!(leases.longest(), secs(50));
        // Peer 2's lease ran out while the server was down: it expires at once.
        let expired = core.expire(t0);
        assert_eq!(expired.peers, vec![2]);
        assert_eq!(core.remainder("A"), Ok(0));
    }
}
