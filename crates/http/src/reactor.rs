//! The readiness loop: one thread (mio, edge-triggered) reads every TCP connection and hands
//! complete requests, head and body, to the workers' queue.
//!
//! A connection costs a socket and a small record: its unparsed input, a deadline, and an
//! answer still to be written. No thread waits on a client: a thousand idle keep-alive clients
//! or a thousand clients sending a byte a minute cost no worker.
//!
//! What this file does: accept (closing connections beyond `max_connections`), read, find where
//! a request ends ([`crate::framing`], which refuses ambiguous framing), answer refusals and
//! timeouts itself (400, 408, 411, 413, 431, then close), and write what a worker could not
//! write at once. What it does not do: run requests. Workers answer by writing to the socket
//! themselves (a [`ConnWriter`]); only a connection with input waiting behind its request, an
//! answer too large for the socket's buffer, or a close involves this thread again.
//!
//! One request per connection is in a worker's hands at a time; pipelined requests wait here
//! in the input buffer until the previous one is answered. Who may touch a connection next,
//! this thread or the worker answering it, is [`Handoff`]'s business.
//!
//! Timers (one ordered set) close idle connections at `idle_timeout` (counted from the last
//! answer), answer 408 and close a request not complete `request_timeout` after its first
//! byte, close a client that does not read its answer within `idle_timeout`, and let a closing
//! connection drain for [`LINGER`] after its last answer so the close does not reset it before
//! the client has read it.

use std::collections::{BTreeSet, HashMap};
use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};

use crate::framing::{self, Parsed, Refusal};
use crate::handoff::Handoff;
use crate::util::MessagesQueue;
use crate::{ConnectionLimits, Request};

const LISTENER: Token = Token(usize::MAX - 1);
const WAKER: Token = Token(usize::MAX);

/// A connection whose answer has been sent and whose write side is shut reads (and drops)
/// what the client still sends for this long, so that closing does not reset the connection
/// before the client has read the answer.
const LINGER: Duration = Duration::from_secs(1);

/// After a failed accept (say, out of file descriptors) accepting pauses this long.
const ACCEPT_PAUSE: Duration = Duration::from_millis(50);

/// What workers and the reactor share of one connection.
pub(crate) struct Shared {
    stream: TcpStream,
    token: Token,
    /// Who may touch the connection next: this thread or the worker answering it.
    handoff: Handoff,
    /// The client closed its side, or the connection failed, while a worker may hold its
    /// request: see [`Request::client_closed`].
    closed: AtomicBool,
    /// Called once when `closed` is set, if a worker registered it (a waiting long poll):
    /// see [`Request::on_client_close`].
    on_close: Mutex<Option<CloseCallback>>,
    /// When a worker last finished an answer, in nanoseconds since `epoch`: idle time counts
    /// from there, and the reactor is not told about answers that need nothing from it.
    answered: AtomicU64,
    epoch: Instant,
    inbox: Arc<Inbox>,
}

/// What a worker wants done when its client goes away.
pub(crate) type CloseCallback = Box<dyn FnOnce() + Send>;

impl Shared {
    /// Marks the client gone and runs the callback registered for it, if any (outside the
    /// callback's own lock).
    fn mark_closed(&self) {
        self.closed.store(true, Ordering::Release);
        let callback = self
            .on_close
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(callback) = callback {
            callback();
        }
    }

    /// Runs `callback` when the client goes away, or now if it has.
    fn on_close(&self, callback: CloseCallback) {
        let mut slot = self.on_close.lock().unwrap_or_else(PoisonError::into_inner);
        if self.closed.load(Ordering::Acquire) {
            drop(slot);
            callback();
        } else {
            *slot = Some(callback);
        }
    }

    fn answered_at(&self) -> Instant {
        self.epoch + Duration::from_nanos(self.answered.load(Ordering::Acquire))
    }
}

/// A connection handed back to the reactor by a worker.
struct Completion {
    token: Token,
    /// Bytes of the answer the socket did not take at once, from `offset`.
    rest: Vec<u8>,
    offset: usize,
    close: bool,
    failed: bool,
}

/// Where workers hand connections back; wakes the reactor.
pub(crate) struct Inbox {
    completions: Mutex<Vec<Completion>>,
    waker: Waker,
}

impl Inbox {
    fn push(&self, completion: Completion) {
        let first = {
            let mut completions = self.completions.lock().unwrap_or_else(|e| e.into_inner());
            completions.push(completion);
            completions.len() == 1
        };
        // The reactor takes the whole list when woken, so one wake-up per batch is enough.
        if first {
            let _ = self.waker.wake();
        }
    }
}

/// The response writer of a request read by the reactor. Collects the answer and, when
/// dropped (tiny_http drops it once the answer is complete), writes it to the socket from the
/// worker's thread; whatever the socket does not take goes back to the reactor.
pub(crate) struct ConnWriter {
    shared: Arc<Shared>,
    buffer: Vec<u8>,
    /// Bytes at the start of `buffer` already written to the socket.
    written: usize,
    /// The socket failed: the rest of the answer is dropped.
    failed: bool,
    close: bool,
}

/// A large answer (a listing of many peers) goes to the socket while it is produced, once
/// this much is waiting, so that it is not held in memory twice.
const WRITE_THROUGH: usize = 256 * 1024;

impl ConnWriter {
    pub(crate) fn client_closed(&self) -> bool {
        self.shared.closed.load(Ordering::Acquire)
    }

    pub(crate) fn on_client_close(&self, callback: CloseCallback) {
        self.shared.on_close(callback);
    }
}

impl Write for ConnWriter {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        if self.failed {
            return Ok(bytes.len());
        }
        self.buffer.extend_from_slice(bytes);
        if self.buffer.len() - self.written >= WRITE_THROUGH {
            let (written, failed) = write_some(&self.shared.stream, &self.buffer[self.written..]);
            self.written += written;
            self.failed = failed;
            if self.written == self.buffer.len() {
                self.buffer.clear();
                self.written = 0;
            }
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for ConnWriter {
    fn drop(&mut self) {
        let shared = &self.shared;
        // The request is answered: its wish to hear of a close ends with it.
        drop(
            shared
                .on_close
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
        let (more, failed) = if self.failed {
            (0, true)
        } else {
            write_some(&shared.stream, &self.buffer[self.written..])
        };
        let written = self.written + more;
        let since = shared.epoch.elapsed().as_nanos();
        shared
            .answered
            .store(u64::try_from(since).unwrap_or(u64::MAX), Ordering::Release);
        if failed || written < self.buffer.len() || self.close {
            shared.inbox.push(Completion {
                token: shared.token,
                rest: std::mem::take(&mut self.buffer),
                offset: written,
                close: self.close,
                failed,
            });
        } else if shared.handoff.finish() {
            shared.inbox.push(Completion {
                token: shared.token,
                rest: Vec::new(),
                offset: 0,
                close: false,
                failed: false,
            });
        }
    }
}

/// Writes as much of `bytes` as the socket takes without blocking: (bytes written, whether
/// the connection failed).
fn write_some(mut stream: &TcpStream, bytes: &[u8]) -> (usize, bool) {
    let mut written = 0;
    while written < bytes.len() {
        match stream.write(&bytes[written..]) {
            Ok(0) => return (written, true),
            Ok(n) => written += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => return (written, false),
            Err(_) => return (written, true),
        }
    }
    (written, false)
}

/// The server's handle on the reactor thread.
pub(crate) struct Control {
    stop: AtomicBool,
    stop_accepting: AtomicBool,
    inbox: Arc<Inbox>,
}

impl Control {
    /// Ends the reactor thread; open connections are closed.
    pub(crate) fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        let _ = self.inbox.waker.wake();
    }

    /// Closes the listening socket; open connections are still served.
    pub(crate) fn stop_accepting(&self) {
        self.stop_accepting.store(true, Ordering::Release);
        let _ = self.inbox.waker.wake();
    }
}

struct Conn {
    shared: Arc<Shared>,
    remote: Option<SocketAddr>,
    /// Bytes received and not yet handed over as a request.
    input: Vec<u8>,
    /// An answer (or the rest of one) this thread still has to write.
    output: Vec<u8>,
    written: usize,
    close_after_output: bool,
    /// The client closed its side (or the connection failed).
    eof: bool,
    /// Reading stopped because `input` is full; the socket may hold more.
    read_paused: bool,
    /// When the request now arriving began, for the request timeout.
    started: Option<Instant>,
    last_active: Instant,
    continue_sent: bool,
    /// How much of `input` the last parse saw and found a valid but partial head: a head can
    /// only end at a line feed, so bytes without one are not parsed again (a client sending a
    /// head a byte at a time would otherwise cost a parse of the whole head per byte).
    partial_head: usize,
    /// The answer is out and the write side shut; waiting for the client to close.
    lingering: bool,
    deadline: Option<Instant>,
}

impl Conn {
    fn output_pending(&self) -> bool {
        self.written < self.output.len()
    }

    fn with_worker(&self) -> bool {
        !self.shared.handoff.is_idle()
    }
}

pub(crate) struct Reactor {
    poll: Poll,
    listener: Option<TcpListener>,
    conns: HashMap<Token, Conn>,
    /// Deadlines of connections, earliest first: idle, request and write timeouts, lingering.
    timers: BTreeSet<(Instant, Token)>,
    accept_paused_until: Option<Instant>,
    next_token: usize,
    limits: ConnectionLimits,
    control: Arc<Control>,
    messages: Arc<MessagesQueue<Request>>,
    scratch: Box<[u8]>,
    refused_at_limit: u64,
}

impl Reactor {
    pub(crate) fn new(
        listener: std::net::TcpListener,
        limits: ConnectionLimits,
        messages: Arc<MessagesQueue<Request>>,
    ) -> io::Result<(Reactor, Arc<Control>)> {
        listener.set_nonblocking(true)?;
        let mut listener = TcpListener::from_std(listener);
        let poll = Poll::new()?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let waker = Waker::new(poll.registry(), WAKER)?;
        let control = Arc::new(Control {
            stop: AtomicBool::new(false),
            stop_accepting: AtomicBool::new(false),
            inbox: Arc::new(Inbox {
                completions: Mutex::new(Vec::new()),
                waker,
            }),
        });
        let reactor = Reactor {
            poll,
            listener: Some(listener),
            conns: HashMap::new(),
            timers: BTreeSet::new(),
            accept_paused_until: None,
            next_token: 0,
            limits,
            control: control.clone(),
            messages,
            scratch: vec![0; 16 * 1024].into_boxed_slice(),
            refused_at_limit: 0,
        };
        Ok((reactor, control))
    }

    /// Runs until [`Control::stop`].
    pub(crate) fn run(mut self) {
        let mut events = Events::with_capacity(1024);
        let mut completions = Vec::new();
        loop {
            let now = Instant::now();
            let timeout = self.next_wake().map(|at| at.saturating_duration_since(now));
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() != ErrorKind::Interrupted {
                    log::error!("Polling connections failed: {}", e);
                    std::thread::sleep(ACCEPT_PAUSE);
                }
                continue;
            }
            if self.control.stop.load(Ordering::Acquire) {
                break;
            }
            if self.control.stop_accepting.load(Ordering::Acquire) {
                if let Some(mut listener) = self.listener.take() {
                    let _ = self.poll.registry().deregister(&mut listener);
                }
            }
            for event in events.iter() {
                match event.token() {
                    WAKER => {}
                    LISTENER => self.accept(),
                    token => {
                        if let Some(conn) = self.conns.get_mut(&token) {
                            if event.is_readable() || event.is_read_closed() || event.is_error() {
                                read_into(conn, &mut self.scratch, &self.limits);
                            }
                        }
                        self.drive(token);
                    }
                }
            }
            {
                let mut inbox = self
                    .control
                    .inbox
                    .completions
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                std::mem::swap(&mut *inbox, &mut completions);
            }
            for completion in completions.drain(..) {
                self.complete(completion);
            }
            self.fire_timers(Instant::now());
        }
        log::debug!("Reactor stopped with {} connections open", self.conns.len());
    }

    fn next_wake(&self) -> Option<Instant> {
        let timer = self.timers.iter().next().map(|&(at, _)| at);
        match (timer, self.accept_paused_until) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn accept(&mut self) {
        if self.accept_paused_until.is_some() {
            return;
        }
        let Some(listener) = self.listener.take() else {
            return;
        };
        self.accept_from(&listener);
        self.listener = Some(listener);
    }

    fn accept_from(&mut self, listener: &TcpListener) {
        loop {
            match listener.accept() {
                Ok((mut stream, remote)) => {
                    if self.conns.len() >= self.limits.max_connections {
                        self.refused_at_limit += 1;
                        if self.refused_at_limit.is_power_of_two() {
                            log::warn!(
                                "Closing new connections: {} are open, the limit ({} closed so far)",
                                self.limits.max_connections,
                                self.refused_at_limit
                            );
                        }
                        continue;
                    }
                    let _ = stream.set_nodelay(true);
                    let token = Token(self.next_token);
                    self.next_token += 1;
                    if let Err(e) = self
                        .poll
                        .registry()
                        // Edge-triggered: a writable event comes only after a write found the
                        // socket's buffer full, which is when pending output can move on.
                        .register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)
                    {
                        log::warn!("Cannot watch a new connection: {}", e);
                        continue;
                    }
                    let now = Instant::now();
                    let conn = Conn {
                        shared: Arc::new(Shared {
                            stream,
                            token,
                            handoff: Handoff::new(),
                            closed: AtomicBool::new(false),
                            on_close: Mutex::new(None),
                            answered: AtomicU64::new(0),
                            epoch: now,
                            inbox: self.control.inbox.clone(),
                        }),
                        remote: Some(remote),
                        input: Vec::new(),
                        output: Vec::new(),
                        written: 0,
                        close_after_output: false,
                        eof: false,
                        read_paused: false,
                        started: None,
                        last_active: now,
                        continue_sent: false,
                        partial_head: 0,
                        lingering: false,
                        deadline: None,
                    };
                    self.conns.insert(token, conn);
                    // Data may have arrived with the connection; edge-triggered readiness
                    // reports it anyway, so just arm the idle timer.
                    self.drive(token);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    log::error!("Error accepting new client: {}", e);
                    self.accept_paused_until = Some(Instant::now() + ACCEPT_PAUSE);
                    return;
                }
            }
        }
    }

    /// Moves a connection on after anything happened to it: writes pending output, closes,
    /// or parses and hands over the next request.
    fn drive(&mut self, token: Token) {
        loop {
            let now = Instant::now();
            let Some(conn) = self.conns.get_mut(&token) else {
                return;
            };
            if conn.output_pending() {
                let (written, failed) =
                    write_some(&conn.shared.stream, &conn.output[conn.written..]);
                conn.written += written;
                if failed {
                    return self.remove(token);
                }
                if conn.output_pending() {
                    // Registered for writability from the start: the next event resumes.
                    let at = self
                        .limits
                        .idle_timeout
                        .and_then(|idle| now.checked_add(idle));
                    return self.set_deadline(token, at);
                }
                conn.output = Vec::new();
                conn.written = 0;
            }
            if conn.close_after_output && !conn.lingering {
                let _ = conn.shared.stream.shutdown(Shutdown::Write);
                conn.lingering = true;
                conn.input = Vec::new();
            }
            if conn.lingering {
                if conn.eof {
                    return self.remove(token);
                }
                return self.set_deadline(token, Some(now + LINGER));
            }
            if conn.with_worker() {
                let at = self
                    .limits
                    .idle_timeout
                    .and_then(|idle| now.checked_add(idle));
                return self.set_deadline(token, at);
            }
            if conn.read_paused {
                read_into(conn, &mut self.scratch, &self.limits);
            }
            if conn.input.is_empty() {
                if conn.eof {
                    return self.remove(token);
                }
                conn.started = None;
                let since = conn.last_active.max(conn.shared.answered_at());
                let at = self
                    .limits
                    .idle_timeout
                    .and_then(|idle| since.checked_add(idle));
                return self.set_deadline(token, at);
            }
            let started = *conn.started.get_or_insert(now);
            let unchanged_head = conn.partial_head > 0
                && conn.input.len() < self.limits.max_head_bytes
                && conn
                    .input
                    .get(conn.partial_head..)
                    .is_some_and(|new| !new.contains(&b'\n'));
            let parsed = if unchanged_head {
                Ok(Parsed::Partial)
            } else {
                framing::parse(
                    &conn.input,
                    self.limits.max_head_bytes,
                    self.limits.max_body_bytes,
                )
            };
            conn.partial_head = match parsed {
                Ok(Parsed::Partial) => conn.input.len(),
                _ => 0,
            };
            let head = match parsed {
                Err(refusal) => {
                    refuse(conn, &refusal);
                    continue;
                }
                Ok(Parsed::Partial) => None,
                Ok(Parsed::Complete(head)) => Some(head),
            };
            let complete = head
                .as_ref()
                .is_some_and(|head| conn.input.len() >= head.head_len + head.body_len);
            let head = match head {
                Some(head) if complete => head,
                head => {
                    if conn.eof {
                        // The client stopped half way: nobody is left to answer.
                        return self.remove(token);
                    }
                    if let Some(head) = &head {
                        if head.expects_continue && !conn.continue_sent {
                            conn.continue_sent = true;
                            conn.output = b"HTTP/1.1 100 Continue\r\n\r\n".to_vec();
                            conn.written = 0;
                            continue;
                        }
                    }
                    let at = started.checked_add(self.limits.request_timeout);
                    return self.set_deadline(token, at);
                }
            };
            let end = head.head_len + head.body_len;
            let body = conn.input[head.head_len..end].to_vec();
            conn.input.drain(..end);
            if conn.input.capacity() > 64 * 1024 {
                conn.input.shrink_to(8 * 1024);
            }
            conn.started = None;
            conn.continue_sent = false;
            let close = head.close;
            let writer = ConnWriter {
                shared: conn.shared.clone(),
                buffer: Vec::new(),
                written: 0,
                failed: false,
                close,
            };
            let request = crate::request::from_reactor(head, body, conn.remote, writer);
            // Input already waiting behind this request (pipelining), or an end of stream,
            // needs this thread again once the answer is out.
            conn.shared
                .handoff
                .hand_over(!conn.input.is_empty() || conn.eof);
            // Checked again when it fires: the worker may answer without telling this thread.
            let at = self
                .limits
                .idle_timeout
                .and_then(|idle| now.checked_add(idle));
            self.set_deadline(token, at);
            self.messages.push(request);
            return;
        }
    }

    /// A worker handed the connection back.
    fn complete(&mut self, completion: Completion) {
        let token = completion.token;
        let Some(conn) = self.conns.get_mut(&token) else {
            return;
        };
        if completion.failed {
            return self.remove(token);
        }
        if completion.offset < completion.rest.len() {
            conn.output = completion.rest;
            conn.written = completion.offset;
        }
        conn.close_after_output |= completion.close;
        conn.shared.handoff.take_back();
        self.drive(token);
    }

    fn fire_timers(&mut self, now: Instant) {
        if self.accept_paused_until.is_some_and(|at| at <= now) {
            self.accept_paused_until = None;
            self.accept();
        }
        while let Some(&(at, token)) = self.timers.iter().next() {
            if at > now {
                break;
            }
            self.timers.remove(&(at, token));
            let Some(conn) = self.conns.get_mut(&token) else {
                continue;
            };
            conn.deadline = None;
            if conn.output_pending() || conn.lingering {
                // A client that does not read, or has gone quiet after its last answer.
                self.remove(token);
            } else if conn.with_worker() {
                // With a worker (a long poll): look again later.
                let at = self
                    .limits
                    .idle_timeout
                    .and_then(|idle| now.checked_add(idle));
                self.set_deadline(token, at);
            } else if conn.input.is_empty() {
                let since = conn.last_active.max(conn.shared.answered_at());
                let idle_until = self
                    .limits
                    .idle_timeout
                    .and_then(|idle| since.checked_add(idle));
                match idle_until {
                    Some(at) if at > now => self.set_deadline(token, Some(at)),
                    _ => self.remove(token),
                }
            } else {
                let reason = format!(
                    "Request timeout: the request did not arrive within {:?}",
                    self.limits.request_timeout
                );
                refuse(
                    conn,
                    &Refusal {
                        status: 408,
                        reason,
                    },
                );
                self.drive(token);
            }
        }
    }

    fn set_deadline(&mut self, token: Token, at: Option<Instant>) {
        let Some(conn) = self.conns.get_mut(&token) else {
            return;
        };
        if conn.deadline == at {
            return;
        }
        if let Some(old) = conn.deadline.take() {
            self.timers.remove(&(old, token));
        }
        if let Some(at) = at {
            self.timers.insert((at, token));
        }
        conn.deadline = at;
    }

    fn remove(&mut self, token: Token) {
        self.set_deadline(token, None);
        if let Some(conn) = self.conns.remove(&token) {
            // Closing the socket (when the last holder drops it) ends its registration.
            // A worker may still hold the connection (a long poll whose client left): make
            // its answer fail rather than wait for a reader, and tell it the client is gone.
            conn.shared.mark_closed();
            let _ = conn.shared.stream.shutdown(Shutdown::Both);
        }
        if self.accept_paused_until.is_some() {
            self.accept_paused_until = None;
            self.accept();
        }
    }
}

/// Reads what the socket has, up to the input limit.
fn read_into(conn: &mut Conn, scratch: &mut [u8], limits: &ConnectionLimits) {
    let cap = limits
        .max_head_bytes
        .saturating_add(limits.max_body_bytes)
        .saturating_add(4096);
    conn.read_paused = false;
    loop {
        if conn.input.len() >= cap && !conn.lingering {
            conn.read_paused = true;
            break;
        }
        match (&conn.shared.stream).read(scratch) {
            Ok(0) => {
                conn.eof = true;
                break;
            }
            Ok(n) => {
                conn.last_active = Instant::now();
                if !conn.lingering {
                    conn.input.extend_from_slice(&scratch[..n]);
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(_) => {
                conn.eof = true;
                break;
            }
        }
    }
    if conn.eof {
        // A worker holding this connection's request (a long poll) learns that nobody waits
        // for the answer any more.
        conn.shared.mark_closed();
    }
    // A worker answering this connection must hand it back for what arrived meanwhile.
    if !conn.input.is_empty() || conn.eof {
        conn.shared.handoff.want();
    }
}

/// Queues a refusal and closes the connection after it.
fn refuse(conn: &mut Conn, refusal: &Refusal) {
    let body = format!("{}\n", refusal.reason);
    let answer = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
        refusal.status,
        reason_phrase(refusal.status),
        body.len(),
        body
    );
    conn.output = answer.into_bytes();
    conn.written = 0;
    conn.close_after_output = true;
    conn.input = Vec::new();
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Content Too Large",
        417 => "Expectation Failed",
        431 => "Request Header Fields Too Large",
        505 => "HTTP Version Not Supported",
        _ => "Error",
    }
}

#[cfg(test)]
mod tests {
    //! The loop on a real socket: timers, backpressure, closes and the hand-off, each seen by a
    //! raw client. Reads are bounded, so a loop that never answers fails instead of hanging.

    use super::*;
    use crate::{Response, Server};
    use std::io::Read;
    use std::net::TcpStream;

    const BOUND: Duration = Duration::from_secs(10);

    fn server(limits: ConnectionLimits) -> Server {
        Server::http_with_limits("127.0.0.1:0", limits).expect("a server")
    }

    fn limits() -> ConnectionLimits {
        ConnectionLimits {
            max_connections: 100,
            idle_timeout: Some(Duration::from_millis(300)),
            request_timeout: Duration::from_millis(300),
            max_head_bytes: 8 * 1024,
            max_body_bytes: 64 * 1024,
        }
    }

    fn connect(server: &Server) -> TcpStream {
        let client = TcpStream::connect(server.server_addr()).expect("connect");
        client.set_read_timeout(Some(BOUND)).expect("read timeout");
        client
    }

    fn next(server: &Server) -> Request {
        server
            .recv_timeout(BOUND)
            .expect("recv")
            .expect("a request in time")
    }

    /// Reads until the server closes; what came and how long it took.
    fn read_to_close(client: &mut TcpStream) -> (String, Duration) {
        let started = Instant::now();
        let mut bytes = Vec::new();
        let _ = client.read_to_end(&mut bytes);
        assert!(started.elapsed() < BOUND, "the server never closed");
        (
            String::from_utf8_lossy(&bytes).into_owned(),
            started.elapsed(),
        )
    }

    /// Reads one answer with a `Content-Length`; its head and body.
    fn read_answer(client: &mut TcpStream) -> (String, Vec<u8>) {
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            client.read_exact(&mut byte).expect("an answer");
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head).into_owned();
        let length: usize = head
            .lines()
            .find_map(|line| line.strip_prefix("Content-Length: "))
            .and_then(|value| value.trim().parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; length];
        client.read_exact(&mut body).expect("the body");
        (head, body)
    }

    const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";

    #[test]
    fn an_idle_connection_is_closed_silently_at_the_idle_timeout() {
        let server = server(limits());
        let mut client = connect(&server);
        let (answer, took) = read_to_close(&mut client);
        assert_eq!(answer, "", "no 408 nobody asked for");
        assert!(took >= Duration::from_millis(250), "closed after {took:?}");
    }

    #[test]
    fn idle_time_counts_from_the_answer_and_not_while_a_worker_holds_the_request() {
        let server = server(limits());
        let mut client = connect(&server);
        client.write_all(GET).expect("send");
        let request = next(&server);
        // A long poll: far longer than the idle timeout.
        std::thread::sleep(Duration::from_millis(900));
        request
            .respond(Response::from_string("late"))
            .expect("answer");
        let (head, body) = read_answer(&mut client);
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert_eq!(body, b"late");
        let (rest, took) = read_to_close(&mut client);
        assert_eq!(rest, "");
        assert!(
            took >= Duration::from_millis(250),
            "closed {took:?} after the answer"
        );
    }

    #[test]
    fn a_request_not_complete_at_the_request_timeout_gets_408() {
        let server = server(limits());
        for partial in [
            &b"GET / HTTP/1.1\r\nHost: x\r\n"[..],
            b"PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc",
        ] {
            let mut client = connect(&server);
            client.write_all(partial).expect("send");
            let (answer, took) = read_to_close(&mut client);
            assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
            assert!(answer.contains("Connection: close"), "{answer}");
            assert!(
                took >= Duration::from_millis(250),
                "answered after {took:?}"
            );
        }
        assert!(server.try_recv().expect("try_recv").is_none());
    }

    /// The worker's answer is far larger than the socket takes while the client reads nothing:
    /// `respond` returns at once and the loop writes the rest once the client reads.
    #[test]
    fn an_answer_the_socket_does_not_take_is_left_to_the_loop() {
        let server = server(ConnectionLimits {
            idle_timeout: Some(BOUND),
            ..limits()
        });
        let mut client = connect(&server);
        client.write_all(GET).expect("send");
        let request = next(&server);
        let large = vec![b'x'; 16 * 1024 * 1024];
        let started = Instant::now();
        request
            .respond(Response::from_data(large.clone()).with_chunked_threshold(usize::MAX))
            .expect("answer");
        assert!(
            started.elapsed() < BOUND / 2,
            "the worker waited for the client"
        );
        let (head, body) = read_answer(&mut client);
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert_eq!(body.len(), large.len());
        // The connection is served again afterwards.
        client.write_all(GET).expect("send");
        next(&server)
            .respond(Response::from_string("again"))
            .expect("answer");
        assert_eq!(read_answer(&mut client).1, b"again");
    }

    /// A client that never reads its answer is closed at the idle timeout, without a worker.
    #[test]
    fn a_client_that_does_not_read_is_closed_at_the_idle_timeout() {
        let server = server(limits());
        let mut client = connect(&server);
        client.write_all(GET).expect("send");
        // More than the socket buffers of both ends hold.
        let length = 64 * 1024 * 1024;
        next(&server)
            .respond(Response::from_data(vec![b'x'; length]).with_chunked_threshold(usize::MAX))
            .expect("answer");
        std::thread::sleep(Duration::from_millis(900));
        let mut received = Vec::new();
        let ended = client.read_to_end(&mut received);
        assert!(
            !matches!(&ended, Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)),
            "the server never closed: {ended:?}"
        );
        assert!(received.len() < length, "the whole answer arrived");
    }

    /// Pipelined requests: the second goes to a worker only once the first is answered, and
    /// the answers leave in order.
    #[test]
    fn one_request_per_connection_is_with_the_workers() {
        let server = server(limits());
        let mut client = connect(&server);
        client
            .write_all(b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\n")
            .expect("send");
        let first = next(&server);
        assert_eq!(first.url(), "/1");
        assert!(
            server
                .recv_timeout(Duration::from_millis(200))
                .expect("recv")
                .is_none(),
            "the second request came before the first was answered"
        );
        first.respond(Response::from_string("1")).expect("answer");
        let second = next(&server);
        assert_eq!(second.url(), "/2");
        second.respond(Response::from_string("2")).expect("answer");
        assert_eq!(read_answer(&mut client).1, b"1");
        assert_eq!(read_answer(&mut client).1, b"2");
    }

    #[test]
    fn a_client_that_closes_is_seen_by_the_worker_holding_its_request() {
        let server = server(limits());
        let client = connect(&server);
        (&client).write_all(GET).expect("send");
        let request = next(&server);
        assert!(!request.client_closed());
        drop(client);
        let deadline = Instant::now() + BOUND;
        while !request.client_closed() {
            assert!(Instant::now() < deadline, "the close was never seen");
            std::thread::sleep(Duration::from_millis(5));
        }
        // Answering a gone client is no error for the worker.
        let _ = request.respond(Response::from_string("nobody"));
    }

    /// A callback registered for a request runs once when its client closes; registered after
    /// the close, it runs at once; dropped unrun once the request is answered.
    #[test]
    fn a_close_callback_runs_once_when_the_client_goes() {
        use std::sync::mpsc;
        let server = server(limits());
        let client = connect(&server);
        (&client).write_all(GET).expect("send");
        let request = next(&server);
        let (told, heard) = mpsc::channel();
        let first = told.clone();
        request.on_client_close(move || first.send("first").expect("the test listens"));
        assert!(heard.try_recv().is_err());
        drop(client);
        assert_eq!(heard.recv_timeout(BOUND), Ok("first"));
        let late = told.clone();
        request.on_client_close(move || late.send("late").expect("the test listens"));
        assert_eq!(heard.try_recv(), Ok("late"));
        let _ = request.respond(Response::from_string("nobody"));

        // Answered before the client leaves: the callback never runs.
        let client = connect(&server);
        (&client).write_all(GET).expect("send");
        let request = next(&server);
        let answered = told.clone();
        request.on_client_close(move || answered.send("answered").expect("the test listens"));
        request
            .respond(Response::from_string("ok"))
            .expect("answer");
        drop(client);
        assert_eq!(
            heard.recv_timeout(Duration::from_millis(300)),
            Err(mpsc::RecvTimeoutError::Timeout)
        );
        drop(told);
    }

    /// (The answer does not say `Connection: close`: `Response` drops that header.)
    #[test]
    fn connection_close_is_answered_then_closed() {
        let server = server(limits());
        let mut client = connect(&server);
        client
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .expect("send");
        next(&server)
            .respond(Response::from_string("bye"))
            .expect("answer");
        let (answer, took) = read_to_close(&mut client);
        assert!(answer.ends_with("bye"), "{answer}");
        assert!(took < Duration::from_millis(250), "closed after {took:?}");
    }

    #[test]
    fn a_request_dropped_unanswered_gets_500() {
        let server = server(limits());
        let mut client = connect(&server);
        client.write_all(GET).expect("send");
        drop(next(&server));
        let (head, _) = read_answer(&mut client);
        assert!(head.starts_with("HTTP/1.1 500"), "{head}");
    }

    #[test]
    fn connections_beyond_the_limit_are_closed_on_accept() {
        let server = server(ConnectionLimits {
            max_connections: 1,
            idle_timeout: Some(BOUND),
            ..limits()
        });
        let mut first = connect(&server);
        first.write_all(GET).expect("send");
        let request = next(&server);
        let mut second = connect(&server);
        let (answer, _) = read_to_close(&mut second);
        assert_eq!(answer, "");
        request.respond(Response::from_string("1")).expect("answer");
        assert_eq!(read_answer(&mut first).1, b"1");
    }
}
