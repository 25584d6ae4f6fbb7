//! The expiry thread: the one thread whose only job is to release the locks of peers at their
//! deadline, so that waiters proceed at once even when no other request arrives (semantics 5).
//!
//! It sleeps until the earliest deadline (an ordered index in the core gives it without a scan)
//! and never wakes while no peer exists; a request that sets an earlier deadline wakes it
//! (`Service::rearm_expiry`). What expiring means (releasing, granting, waking waiters) is the
//! service's and the core's; this file only decides when to do it.

use std::io;
use std::sync::Arc;
use std::thread::{self, JoinHandle};

use crate::service::{Alarm, Service};

/// Starts the expiry thread. It returns after [`Service::shut_down`].
pub fn spawn(service: Arc<Service>) -> io::Result<JoinHandle<()>> {
    thread::Builder::new()
        .name("expiry".into())
        .spawn(move || run(&service))
}

/// The expiry thread's loop: expire what is due, sleep until the next deadline, again, until
/// the server shuts down. The lock is held except while sleeping, so a deadline set between
/// looking and sleeping cannot be missed.
pub fn run(service: &Service) {
    let mut watch = service.expiry_watch();
    loop {
        match watch.expire_due() {
            Alarm::Stop => return,
            alarm => watch.sleep(alarm),
        }
    }
}
