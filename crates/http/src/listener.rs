//! The listening socket's backlog: how many connections the kernel completes and queues
//! before the readiness loop accepts them.
//!
//! The standard library listens with a backlog of 128. A burst of new connections larger than
//! that (every client reconnecting after a restart) overflows the queue, and the kernel drops
//! the SYNs beyond it: those clients retry after a second. The backlog here is
//! `max_connections`, so a burst of as many connections as the server serves at once fits;
//! the system caps it (Linux: `net.core.somaxconn`).
//!
//! Unix only: Linux and the BSDs take a second `listen` on a listening socket as a new backlog.
//! Windows keeps the standard library's.

use std::net::TcpListener;

/// The standard library's backlog: never less than that.
const STD_BACKLOG: usize = 128;

/// The backlog for `max_connections`, within what the system allows (`system_max`, when
/// known) and what `listen` takes (an `i32`).
pub(crate) fn backlog(max_connections: usize, system_max: Option<usize>) -> i32 {
    let wanted = max_connections.max(STD_BACKLOG);
    let allowed = system_max.map_or(wanted, |max| wanted.min(max.max(STD_BACKLOG)));
    i32::try_from(allowed).unwrap_or(i32::MAX)
}

/// The system's largest backlog, if it says.
fn system_max() -> Option<usize> {
    if cfg!(target_os = "linux") {
        let text = std::fs::read_to_string("/proc/sys/net/core/somaxconn").ok()?;
        text.trim().parse().ok()
    } else {
        None
    }
}

/// Sets the backlog of a bound, listening socket for `max_connections`. A failure keeps the
/// standard library's backlog and is logged: the server still serves.
#[cfg(unix)]
pub(crate) fn set_backlog(listener: &TcpListener, max_connections: usize) {
    let backlog = backlog(max_connections, system_max());
    match rustix::net::listen(listener, backlog) {
        Ok(()) => log::debug!("Listen backlog: {backlog}"),
        Err(e) => log::warn!("Cannot set the listen backlog to {backlog}: {e}"),
    }
}

#[cfg(not(unix))]
pub(crate) fn set_backlog(_listener: &TcpListener, max_connections: usize) {
    let _ = (backlog(max_connections, system_max()), STD_BACKLOG);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backlog_is_max_connections_within_the_systems_limit() {
        assert_eq!(backlog(10_000, None), 10_000);
        assert_eq!(backlog(10_000, Some(4096)), 4096);
        assert_eq!(backlog(1_100, Some(4096)), 1_100);
        // Never below the standard library's 128, even for a small server or a stingy system.
        assert_eq!(backlog(10, Some(4096)), 128);
        assert_eq!(backlog(10_000, Some(64)), 128);
        // `listen` takes an i32.
        assert_eq!(backlog(usize::MAX, None), i32::MAX);
    }

    /// A burst of more than 128 connections to a listener nobody accepts from: with the
    /// standard library's backlog the 130th connect would wait for a SYN retry (a second);
    /// with the backlog set, all of them complete at once.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_burst_beyond_128_connections_fits_the_backlog() {
        use std::net::TcpStream;
        use std::time::Duration;

        const BURST: usize = 300;
        if system_max().is_some_and(|max| max < BURST) {
            eprintln!("skipped: net.core.somaxconn is below {BURST}");
            return;
        }
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        set_backlog(&listener, BURST);
        let addr = listener.local_addr().expect("address");
        let clients: Vec<TcpStream> = (0..BURST)
            .map(|i| {
                TcpStream::connect_timeout(&addr, Duration::from_millis(500))
                    .unwrap_or_else(|e| panic!("connection {i} did not complete at once: {e}"))
            })
            .collect();
        assert_eq!(clients.len(), BURST);
    }
}
