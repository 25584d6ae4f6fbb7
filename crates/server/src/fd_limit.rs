//! The open-files limit, fitted to the connections the server is to take.
//!
//! Every open connection holds one file descriptor, and a shell's default limit (`ulimit -n`,
//! often 1024) is far below Throttle's default of 10,000 connections. At start the soft limit
//! is raised towards what is needed, never above the hard limit (that takes no privilege), and
//! the connection limit is lowered to what fits, so the server says at start how many clients
//! it can take instead of failing to accept them later. Nothing else here: accepting and
//! closing connections is the HTTP layer's job.

/// Descriptors kept for everything but client connections: standard streams, the listener,
/// the readiness loop's own, log and state files.
#[cfg(unix)]
pub const RESERVED: usize = 64;

/// How many connections the process can hold at once, at most `wanted`, after raising its
/// soft open-files limit as far as the hard limit allows. Also returns the limit in force.
#[cfg(unix)]
pub fn fit_connections(wanted: usize) -> (usize, Option<u64>) {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let needed = u64::try_from(wanted.saturating_add(RESERVED)).unwrap_or(u64::MAX);
    let limit = getrlimit(Resource::Nofile);
    let Some(current) = limit.current else {
        return (wanted, None); // unlimited
    };
    let mut in_force = current;
    if current < needed {
        let target = limit.maximum.map_or(needed, |hard| hard.min(needed));
        let raised = Rlimit {
            current: Some(target),
            maximum: limit.maximum,
        };
        if target > current && setrlimit(Resource::Nofile, raised).is_ok() {
            in_force = target;
        }
    }
    let fits = usize::try_from(in_force)
        .unwrap_or(usize::MAX)
        .saturating_sub(RESERVED);
    (wanted.min(fits), Some(in_force))
}

/// Other systems: the connection limit is taken as given.
#[cfg(not(unix))]
pub fn fit_connections(wanted: usize) -> (usize, Option<u64>) {
    (wanted, None)
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn a_small_wish_fits_and_the_answer_never_exceeds_it() {
        let (fits, limit) = fit_connections(10);
        assert_eq!(fits, 10);
        assert!(limit.is_none_or(|limit| limit >= 10));
        let (fits, _) = fit_connections(usize::MAX);
        assert!(fits < usize::MAX);
    }
}
