//! `throttle lock SEMAPHORE -- COMMAND`: wait for the lock, run the command while the lease is
//! kept, release, exit with the command's code.
//!
//! One loop on the main thread takes [`Event`]s from the threads that block: the one waiting
//! for the lock (the client crate's lock builder, long polls), the signal thread, the heartbeat
//! (a lost lease, through the builder's `on_lost`) and the one waiting for the command. So
//! every decision is made in one place, in the order things happened:
//!
//! - **Waiting**: a signal cancels the wait ([`Cancel`]: the pending lock is withdrawn on the
//!   server at once) and `throttle lock` exits 128+N; nothing stays queued. So does a timeout.
//! - **Running**: signals are passed on to the command (not those a terminal sent it already,
//!   see `child.rs`); a lost lease stops it (SIGTERM, SIGKILL after [`KILL_AFTER`]) unless
//!   `--on-lost ignore`; a server restart is the client's business (it restores).
//! - **Done**: the lock is released, and the exit code is the command's (128+N if signal N
//!   ended it), or [`exit::LOST`] if the lease was lost and the command stopped for it.

use std::ffi::OsString;
use std::io;
use std::process::{Command, ExitCode, ExitStatus};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use throttle_client::{Cancel, Client, Error, LockGuard};

use super::child::{self, Child, Signal};
use super::{Failure, connect, exit, failure};
use crate::args::{LockOptions, OnLost};

/// How long a command may take to stop after SIGTERM, once its lease is lost, before it gets
/// SIGKILL.
pub const KILL_AFTER: Duration = Duration::from_secs(5);

/// What the main loop hears from the threads that block.
enum Event {
    /// The lock builder's answer.
    Granted(Result<LockGuard, Error>),
    /// `throttle lock` got this signal (Windows: Ctrl+C, as SIGINT).
    Signal(Signal),
    /// The heartbeat says the lease was lost.
    Lost,
    /// The command ended.
    Exited(io::Result<ExitStatus>),
}

pub fn run(options: LockOptions) -> ExitCode {
    match lock_and_run(&options) {
        Ok(code) => to_exit_code(code),
        Err(failure) => failure.report("lock"),
    }
}

fn lock_and_run(options: &LockOptions) -> Result<i32, Failure> {
    let (client, url) = connect(&options.connection);
    // An unreachable server is retried for the client's budget, but not beyond the timeout.
    let client = match options.timeout {
        Some(timeout) => {
            let budget = client.retry_budget().min(timeout);
            client.with_retry_budget(budget)
        }
        None => client,
    };
    let (events, inbox) = mpsc::channel();
    let signals = events.clone();
    child::catch_signals(move |signal| {
        let _ = signals.send(Event::Signal(signal));
    })
    .map_err(|message| Failure::new(exit::FAILURE, message))?;

    let cancel = Cancel::new();
    spawn_waiter(client, options, &cancel, events.clone())
        .map_err(|error| Failure::new(exit::FAILURE, format!("cannot start a thread: {error}")))?;
    let mut interrupted = None;
    let guard = loop {
        match inbox.recv() {
            Ok(Event::Signal(signal)) => {
                if interrupted.is_none() {
                    interrupted = Some(signal);
                    cancel.cancel();
                }
            }
            Ok(Event::Granted(Ok(guard))) => break guard,
            Ok(Event::Granted(Err(Error::Cancelled))) => {
                return Ok(signal_code(interrupted.unwrap_or(child::SIGINT)));
            }
            Ok(Event::Granted(Err(Error::Timeout { timeout, .. }))) => {
                return Err(Failure::new(
                    options.timeout_exit_code,
                    format!(
                        "timed out: the lock on {:?} was not granted within {}; nothing stays \
                         queued",
                        options.semaphore,
                        humantime::format_duration(timeout)
                    ),
                ));
            }
            Ok(Event::Granted(Err(error))) => {
                return Err(failure(error, &url, Some(&options.semaphore)));
            }
            // A loss while waiting comes back as the builder's `LockLost`.
            Ok(Event::Lost | Event::Exited(_)) => {}
            Err(mpsc::RecvError) => unreachable!("this function holds a sender"),
        }
    };
    if let Some(signal) = interrupted {
        // Granted as the signal came: the command never starts.
        release(guard, &options.semaphore);
        return Ok(signal_code(signal));
    }

    let mut command = Command::new(&options.command[0]);
    command
        .args(&options.command[1..])
        .env("THROTTLE_PEER_ID", guard.peer_id().to_string());
    match guard.fencing_token() {
        Some(token) => command.env("THROTTLE_FENCING_TOKEN", token.to_string()),
        None => command.env_remove("THROTTLE_FENCING_TOKEN"),
    };
    let exited = events.clone();
    let child = match Child::spawn(&mut command, move |status| {
        let _ = exited.send(Event::Exited(status));
    }) {
        Ok(child) => child,
        Err(error) => {
            release(guard, &options.semaphore);
            let code = match error.kind() {
                io::ErrorKind::NotFound => exit::NOT_FOUND,
                _ => exit::CANNOT_RUN,
            };
            return Err(Failure::new(
                code,
                format!("cannot run {}: {error}", shown(&options.command[0])),
            ));
        }
    };
    drop(events);

    let mut lost = false;
    let mut kill_at: Option<Instant> = None;
    let status = loop {
        let event = match kill_at {
            None => inbox.recv().map_err(|_| RecvTimeoutError::Disconnected),
            Some(at) => inbox.recv_timeout(at.saturating_duration_since(Instant::now())),
        };
        match event {
            Ok(Event::Signal(signal)) => {
                if !child::from_the_terminal(signal) {
                    child.signal(signal);
                }
            }
            Ok(Event::Lost) if !lost => {
                lost = true;
                match options.on_lost {
                    OnLost::Kill => {
                        eprintln!(
                            "throttle lock: lost the lock on {:?}: the server says its lease \
                             expired, others may hold it now; stopping {}",
                            options.semaphore,
                            shown(&options.command[0])
                        );
                        child.terminate();
                        kill_at = Some(Instant::now() + KILL_AFTER);
                    }
                    OnLost::Ignore => eprintln!(
                        "throttle lock: lost the lock on {:?}: the server says its lease \
                         expired, others may hold it now; {} runs on (--on-lost ignore)",
                        options.semaphore,
                        shown(&options.command[0])
                    ),
                }
            }
            Ok(Event::Lost | Event::Granted(_)) => {}
            Ok(Event::Exited(status)) => break status,
            Err(RecvTimeoutError::Timeout) => {
                child.kill();
                kill_at = None;
            }
            Err(RecvTimeoutError::Disconnected) => {
                unreachable!("the command's thread sends before it ends")
            }
        }
    };

    let lost_at_release = match guard.release() {
        Ok(()) => false,
        Err(Error::LockLost) => true,
        Err(error) => {
            eprintln!(
                "throttle lock: could not release the lock on {:?}: {error}; it is freed when \
                 its lease runs out",
                options.semaphore
            );
            false
        }
    };
    let status = status.map_err(|error| {
        Failure::new(
            exit::FAILURE,
            format!("lost track of {}: {error}", shown(&options.command[0])),
        )
    })?;
    if options.on_lost == OnLost::Kill && (lost || lost_at_release) {
        if !lost {
            eprintln!(
                "throttle lock: lost the lock on {:?} before {} ended: the server says its lease \
                 expired",
                options.semaphore,
                shown(&options.command[0])
            );
        }
        return Ok(i32::from(exit::LOST));
    }
    Ok(child::exit_code(status))
}

/// Starts the thread that waits for the lock and sends [`Event::Granted`].
fn spawn_waiter(
    client: Client,
    options: &LockOptions,
    cancel: &Cancel,
    events: mpsc::Sender<Event>,
) -> io::Result<()> {
    let (semaphore, count, timeout) = (options.semaphore.clone(), options.count, options.timeout);
    let expires_in = options.expires_in;
    let cancel = cancel.clone();
    let lost = events.clone();
    thread::Builder::new()
        .name("wait".into())
        .spawn(move || {
            let mut builder = client
                .lock(&semaphore)
                .count(count)
                .cancel_with(&cancel)
                .on_lost(move |_peer| {
                    let _ = lost.send(Event::Lost);
                });
            if let Some(timeout) = timeout {
                builder = builder.timeout(timeout);
            }
            if let Some(expires_in) = expires_in {
                builder = builder.expires_in(expires_in);
            }
            let _ = events.send(Event::Granted(builder.acquire()));
        })
        .map(drop)
}

/// Releases a lock that is not used after all, reporting a failure on stderr.
fn release(guard: LockGuard, semaphore: &str) {
    if let Err(error) = guard.release() {
        eprintln!("throttle lock: could not release the lock on {semaphore:?}: {error}");
    }
}

/// 128+N.
fn signal_code(signal: Signal) -> i32 {
    i32::from(exit::SIGNAL_BASE) + signal
}

/// The command's name for messages.
fn shown(program: &OsString) -> String {
    format!("{:?}", program.to_string_lossy())
}

/// Exit codes above 255 exist on Windows only; `ExitCode` cannot carry them.
fn to_exit_code(code: i32) -> ExitCode {
    match u8::try_from(code) {
        Ok(code) => ExitCode::from(code),
        Err(_) => std::process::exit(code),
    }
}
