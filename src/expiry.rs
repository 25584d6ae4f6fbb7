//! The expiry thread: the one thread whose only job is to release the locks of peers at their
//! deadline, so that waiters proceed at once even when no other request arrives.
//!
//! It sleeps until the earliest deadline (an ordered index in the core gives it without a scan)
//! and never wakes while no peer exists; a new, earlier deadline wakes it. The loop itself lives
//! in [`Service::run_expiry`], because it must sleep on the same lock the state is guarded by.

use std::io;
use std::sync::Arc;
use std::thread::{self, JoinHandle};

use crate::service::Service;

/// Starts the expiry thread. It returns after [`Service::shut_down`].
pub fn spawn(service: Arc<Service>) -> io::Result<JoinHandle<()>> {
    thread::Builder::new()
        .name("expiry".into())
        .spawn(move || service.run_expiry())
}
