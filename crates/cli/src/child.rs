//! The command `throttle lock` runs: started, waited for on a thread of its own, sent signals
//! without ever hitting another process, and the signals of `throttle lock` itself.
//!
//! **No signal reaches a stranger.** On Unix the waiting thread first waits for the exit
//! without reaping the child (`waitid` with `WNOWAIT`), marks it gone under the same mutex that
//! every signal takes, and only then reaps it. So as long as a signal is sent, the child's
//! process id cannot have been reused. On Windows the thread polls the child every 50 ms under
//! that mutex, and termination is `TerminateProcess` (`Child::kill`).

use std::io;
use std::process::{Command, ExitStatus};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;

/// A started command.
pub struct Child {
    #[cfg(unix)]
    pid: rustix::process::Pid,
    /// Unix: whether the child can still be sent a signal (it has not been reaped).
    #[cfg(unix)]
    alive: Arc<Mutex<bool>>,
    #[cfg(not(unix))]
    child: Arc<Mutex<std::process::Child>>,
}

/// A signal number as the operating system numbers it (Windows: Ctrl+C is `SIGINT`, 2).
pub type Signal = i32;

/// The signal of Ctrl+C.
pub const SIGINT: Signal = 2;

/// The signals `throttle lock` passes on to the command, so that a stop reaches it and the
/// lock is released after it exits (instead of when the lease runs out).
#[cfg(unix)]
const FORWARDED: [Signal; 4] = [
    signal_hook::consts::SIGHUP,
    signal_hook::consts::SIGINT,
    signal_hook::consts::SIGQUIT,
    signal_hook::consts::SIGTERM,
];

impl Child {
    /// Starts `command` and a thread that calls `exited` once it has ended.
    pub fn spawn(
        command: &mut Command,
        exited: impl FnOnce(io::Result<ExitStatus>) + Send + 'static,
    ) -> io::Result<Child> {
        let mut child = command.spawn()?;
        #[cfg(unix)]
        {
            let pid = rustix::process::Pid::from_child(&child);
            let alive = Arc::new(Mutex::new(true));
            let gone = alive.clone();
            thread::Builder::new()
                .name("command".into())
                .spawn(move || {
                    wait_without_reaping(pid);
                    *lock(&gone) = false;
                    exited(child.wait());
                })?;
            Ok(Child { pid, alive })
        }
        #[cfg(not(unix))]
        {
            let _ = &mut child;
            let child = Arc::new(Mutex::new(child));
            let polled = child.clone();
            thread::Builder::new()
                .name("command".into())
                .spawn(move || {
                    loop {
                        match lock(&polled).try_wait() {
                            Ok(Some(status)) => return exited(Ok(status)),
                            Ok(None) => {}
                            Err(error) => return exited(Err(error)),
                        }
                        thread::sleep(std::time::Duration::from_millis(50));
                    }
                })?;
            Ok(Child { child })
        }
    }

    /// Sends `signal` to the command, if it still runs. Windows has no signals: nothing happens
    /// (Ctrl+C reaches the command from the console itself).
    pub fn signal(&self, signal: Signal) {
        #[cfg(unix)]
        {
            let alive = lock(&self.alive);
            if *alive && let Some(signal) = rustix::process::Signal::from_named_raw(signal) {
                let _ = rustix::process::kill_process(self.pid, signal);
            }
        }
        #[cfg(not(unix))]
        let _ = signal;
    }

    /// Asks the command to stop: SIGTERM (Windows: terminates it).
    pub fn terminate(&self) {
        #[cfg(unix)]
        self.signal(signal_hook::consts::SIGTERM);
        #[cfg(not(unix))]
        self.kill();
    }

    /// Stops the command at once: SIGKILL (Windows: `TerminateProcess`).
    pub fn kill(&self) {
        #[cfg(unix)]
        self.signal(signal_hook::consts::SIGKILL);
        #[cfg(not(unix))]
        {
            let _ = lock(&self.child).kill();
        }
    }
}

/// Blocks until the child `pid` has exited, leaving it to be reaped.
#[cfg(unix)]
fn wait_without_reaping(pid: rustix::process::Pid) {
    use rustix::process::{WaitId, WaitIdOptions, waitid};
    loop {
        match waitid(
            WaitId::Pid(pid),
            WaitIdOptions::EXITED | WaitIdOptions::NOWAIT,
        ) {
            Err(rustix::io::Errno::INTR) => continue,
            // Exited, or an error that `Child::wait` will report.
            _ => return,
        }
    }
}

/// The exit code that stands for `status`: the command's own, or 128+N if signal N ended it.
pub fn exit_code(status: ExitStatus) -> i32 {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(signal) = status.signal() {
            return i32::from(super::exit::SIGNAL_BASE) + signal;
        }
    }
    status.code().unwrap_or(i32::from(super::exit::FAILURE))
}

/// Calls `on_signal` for every SIGHUP, SIGINT, SIGQUIT and SIGTERM from now on (on Windows:
/// Ctrl+C and the closing of the console, as [`SIGINT`]), instead of dying of them.
pub fn catch_signals(on_signal: impl Fn(Signal) + Send + 'static) -> Result<(), String> {
    #[cfg(unix)]
    {
        let mut signals = signal_hook::iterator::Signals::new(FORWARDED)
            .map_err(|error| format!("cannot install the signal handlers: {error}"))?;
        thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                for signal in signals.forever() {
                    on_signal(signal);
                }
            })
            .map_err(|error| format!("cannot start the signal thread: {error}"))?;
        Ok(())
    }
    #[cfg(not(unix))]
    {
        ctrlc::set_handler(move || on_signal(SIGINT))
            .map_err(|error| format!("cannot install the Ctrl+C handler: {error}"))
    }
}

/// Whether the command got `signal` already, because a terminal sent it to the whole
/// foreground process group: SIGINT (Ctrl+C) and SIGQUIT (Ctrl+\) while `throttle lock` is in
/// the foreground of the terminal on its stdin. Passing those on as well would deliver them
/// twice, and a second Ctrl+C often means "stop cleaning up". A `kill -INT` from elsewhere at
/// such a time is not passed on either; SIGTERM and SIGHUP always are.
pub fn from_the_terminal(signal: Signal) -> bool {
    #[cfg(unix)]
    {
        use signal_hook::consts::{SIGINT, SIGQUIT};
        if signal != SIGINT && signal != SIGQUIT {
            return false;
        }
        match rustix::termios::tcgetpgrp(std::io::stdin()) {
            Ok(foreground) => foreground == rustix::process::getpgrp(),
            // No terminal: the signal was sent to this process alone.
            Err(_) => false,
        }
    }
    #[cfg(not(unix))]
    {
        // The console sends Ctrl+C to every process attached to it.
        let _ = signal;
        true
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    #[test]
    fn exit_codes_and_signals_become_one_code() {
        let run = |script: &str| {
            let (done, status) = mpsc::channel();
            let child = Child::spawn(Command::new("sh").args(["-c", script]), move |status| {
                done.send(status.unwrap()).unwrap()
            })
            .unwrap();
            (child, status)
        };
        let (_child, status) = run("exit 3");
        assert_eq!(exit_code(status.recv().unwrap()), 3);
        let (child, status) = run("sleep 30");
        child.terminate();
        assert_eq!(exit_code(status.recv().unwrap()), 128 + 15);
        // Signals after the exit go nowhere.
        child.kill();
        let (child, status) = run("sleep 30");
        assert!(status.recv_timeout(Duration::from_millis(50)).is_err());
        child.kill();
        assert_eq!(exit_code(status.recv().unwrap()), 128 + 9);
    }
}
