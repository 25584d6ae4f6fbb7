//! The process's signals: SIGINT and SIGTERM (Ctrl+C on Windows) stop the server; SIGHUP
//! reloads the configuration (Unix only).
//!
//! On Unix one thread waits for all three with signal-hook and runs the reload itself, so a stop
//! that arrives during a reload waits for it to finish. On Windows ctrlc reports Ctrl+C and the
//! closing of the console; there is no SIGHUP, so a restart with a state file is the way to apply
//! a new configuration there. This file only delivers signals: what a stop does is `server.rs`'s,
//! what a reload does `reload.rs`'s.

use std::sync::mpsc;

/// The installed handlers. [`Signals::wait_for_stop`] blocks until a stop signal.
pub struct Signals {
    stopped: mpsc::Receiver<()>,
    #[cfg(unix)]
    handle: signal_hook::iterator::Handle,
    #[cfg(unix)]
    thread: std::thread::JoinHandle<()>,
}

impl Signals {
    /// Installs the handlers; `reload` runs once per SIGHUP. Install before starting other
    /// threads, so an early signal is not lost.
    #[cfg(unix)]
    pub fn install(reload: impl Fn() + Send + 'static) -> Result<Signals, String> {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

        let (stop, stopped) = mpsc::channel();
        let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])
            .map_err(|error| format!("cannot install the signal handlers: {error}"))?;
        let handle = signals.handle();
        let thread = std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                for signal in signals.forever() {
                    if signal == SIGHUP {
                        reload();
                    } else {
                        let _ = stop.send(());
                    }
                }
            })
            .map_err(|error| format!("cannot start the signal thread: {error}"))?;
        Ok(Signals {
            stopped,
            handle,
            thread,
        })
    }

    /// Installs the handler of Ctrl+C. There is no SIGHUP: `reload` never runs.
    #[cfg(not(unix))]
    pub fn install(_reload: impl Fn() + Send + 'static) -> Result<Signals, String> {
        let (stop, stopped) = mpsc::channel();
        ctrlc::set_handler(move || {
            let _ = stop.send(());
        })
        .map_err(|error| format!("cannot install the signal handler: {error}"))?;
        Ok(Signals { stopped })
    }

    /// Blocks until SIGINT or SIGTERM (Ctrl+C). An error means the handler is gone, which also
    /// ends the wait.
    pub fn wait_for_stop(&self) {
        let _ = self.stopped.recv();
    }

    /// Uninstalls nothing, but ends the signal thread (after a reload in progress).
    pub fn close(self) {
        #[cfg(unix)]
        {
            self.handle.close();
            let _ = self.thread.join();
        }
    }
}
