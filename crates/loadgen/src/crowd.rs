//! The crowd scenarios of issue 13: hundreds to thousands of clients on one server at once.
//!
//! Every client is an OS thread with a small stack ([`STACK`]) blocking on its own keep-alive
//! connection, as the real clients do; the threads sleep in the kernel while they wait, so a
//! few thousand of them cost the load generator little CPU (each scenario prints its own CPU
//! time so that this can be checked). Setup (peers, connections) happens before the clock
//! starts where the scenario allows; requests still in flight when the time is up are neither
//! counted as answered nor as errors (the waiters' connections are shut down then).
//!
//! Counting is strict: a request counts as answered only with the status the scenario expects
//! (200, or 202 for an unfinished long poll); any other status, a refused or closed connection
//! and a timeout are errors, counted by kind. `docs/benchmark.md` describes each scenario.

use super::{
    Client, Closer, Errors, IO_TIMEOUT, Options, Response, ResultLine, Stats, Target, cpu_time,
    encode, nanos, remove_peers, rss_kb, signed_nanos, wire_duration,
};
use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

/// Stack size of every client thread: 5,000 of them reserve 320 MiB of address space and touch
/// only a few pages each.
const STACK: usize = 64 * 1024;

/// Lease of peers that must outlive the scenario.
const LONG_LEASE: Duration = Duration::from_secs(600);

// ---------------------------------------------------------------------------------------------
// waiters

/// What one waiting client saw during the measured time.
#[derive(Default)]
struct WaiterLog {
    /// Acquire requests answered 200 or 202.
    acquires: usize,
    /// When each 200 was read.
    grants: Vec<Instant>,
    /// From the first acquire of a wait to its 200, in ns.
    waits: Vec<i64>,
    /// Each release: (sent, answer read).
    releases: Vec<(Instant, Instant)>,
    /// 202s that came back before `block_for` had passed.
    early: usize,
    /// 202s after the whole `block_for`.
    timeouts: usize,
    errors: usize,
    server_errors: usize,
}

impl WaiterLog {
    /// Counts a failed request and pauses as the repository's Rust client does before a retry
    /// (`retry` grows from 50 ms to 2 s), so that a server refusing connections is not flooded.
    fn fail(
        &mut self,
        errors: &Errors,
        retry: &mut Backoff,
        what: &str,
        answer: io::Result<Response>,
    ) {
        self.errors += 1;
        match answer {
            Ok(response) => {
                if response.status >= 500 {
                    self.server_errors += 1;
                }
                errors.record(format!("{what}: {} {}", response.status, response.text()));
            }
            Err(error) => errors.record(format!("{what}: {error}")),
        }
        thread::sleep(retry.next_pause());
    }
}

/// N clients, each with its own peer and connection, long poll on a small semaphore, hold each
/// grant for `--hold` and release it, for `--duration`.
pub(super) fn waiters(
    target: &Target,
    options: &Options,
    result: &mut ResultLine,
) -> Result<(), String> {
    let peers = make_peers(
        target,
        options.clients,
        options.preload_connections,
        LONG_LEASE,
        None,
    )?;
    let outcome = waiters_run(target, options, &peers, result);
    let cleanup = remove_peers(target, options.preload_connections, &peers);
    outcome.and(cleanup)
}

fn waiters_run(
    target: &Target,
    options: &Options,
    peers: &[u64],
    result: &mut ResultLine,
) -> Result<(), String> {
    let n = peers.len();
    let semaphore = encode(&options.semaphore);
    // Units free at the start: the first this many grants need no release.
    let free = remainder(target, &options.semaphore)?;
    if free < 1 {
        return Err(format!("{:?} has no free count", options.semaphore));
    }
    let free = free as usize;
    let closer = Arc::new(Closer::new(n));
    let gate = Gate::default();
    let ready = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let errors = Errors::default();
    let acquire_tail = format!(
        "/{semaphore}?block_for={}",
        wire_duration(options.block_for)
    );
    let (logs, watched) = thread::scope(|scope| -> Result<_, String> {
        let mut handles = Vec::with_capacity(n);
        for (slot, &peer) in peers.iter().enumerate() {
            let (closer, gate, ready, stop, errors) = (&closer, &gate, &ready, &stop, &errors);
            let acquire = format!("/peers/{peer}{acquire_tail}");
            let release = format!("/peers/{peer}/{semaphore}");
            let spawned = spawn_small(scope, move || {
                let mut log = WaiterLog::default();
                let mut client = Client::with(target, IO_TIMEOUT, 1024).closed_by(closer, slot);
                let _ = client.connect(); // A failure shows at the first request.
                ready.fetch_add(1, Ordering::SeqCst);
                let Some(start) = gate.wait() else {
                    return log;
                };
                let end = start + options.duration;
                let mut waiting_since = None;
                let mut backoff = Backoff::new(options);
                let mut retry = Backoff::retry();
                while !stop.load(Ordering::Relaxed) {
                    let sent = Instant::now();
                    let since = *waiting_since.get_or_insert(sent);
                    let answer = client.request("PUT", &acquire, "1");
                    let read = Instant::now();
                    if stop.load(Ordering::Relaxed) || read > end {
                        break;
                    }
                    if matches!(
                        &answer,
                        Ok(Response {
                            status: 200 | 202,
                            ..
                        })
                    ) {
                        log.acquires += 1;
                        retry.reset();
                    }
                    match answer {
                        Ok(Response { status: 200, .. }) => {
                            backoff.reset();
                            log.grants.push(read);
                            log.waits.push(nanos(read - since));
                            waiting_since = None;
                            thread::sleep(options.hold);
                            // Until the release is answered: after a failed one the lock may
                            // still be held, and the next acquire would look like a grant.
                            loop {
                                let sent = Instant::now();
                                let answer = client.request("DELETE", &release, "");
                                let read = Instant::now();
                                if stop.load(Ordering::Relaxed) || read > end {
                                    return log;
                                }
                                match answer {
                                    Ok(Response { status: 200, .. }) => {
                                        log.releases.push((sent, read));
                                        retry.reset();
                                        break;
                                    }
                                    other => log.fail(
                                        errors,
                                        &mut retry,
                                        &format!("DELETE {release}"),
                                        other,
                                    ),
                                }
                            }
                        }
                        Ok(Response { status: 202, .. }) => {
                            if read - sent < options.block_for {
                                log.early += 1;
                                thread::sleep(backoff.next_pause());
                            } else {
                                log.timeouts += 1;
                                backoff.reset();
                            }
                        }
                        other => log.fail(errors, &mut retry, &format!("PUT {acquire}"), other),
                    }
                }
                log
            });
            match spawned {
                Ok(handle) => handles.push(handle),
                Err(error) => {
                    gate.abort();
                    return Err(error);
                }
            }
        }
        wait_ready(&ready, n);
        let monitor = Monitor::start(options);
        let start = Instant::now();
        gate.open(start);
        thread::sleep(options.duration);
        stop.store(true, Ordering::SeqCst);
        closer.close_all();
        let watched = monitor.finish();
        let logs: Vec<WaiterLog> = handles
            .into_iter()
            .map(|handle| handle.join().expect("client thread panicked"))
            .collect();
        Ok((logs, watched))
    })?;
    errors.report();

    let seconds = options.duration.as_secs_f64();
    let acquires: usize = logs.iter().map(|l| l.acquires).sum();
    let early: usize = logs.iter().map(|l| l.early).sum();
    let timeouts: usize = logs.iter().map(|l| l.timeouts).sum();
    let error_count: usize = logs.iter().map(|l| l.errors).sum();
    let server_errors: usize = logs.iter().map(|l| l.server_errors).sum();
    let starved = logs.iter().filter(|l| l.grants.is_empty()).count();
    let fewest = logs.iter().map(|l| l.grants.len()).min().unwrap_or(0);
    let most = logs.iter().map(|l| l.grants.len()).max().unwrap_or(0);
    let mut grants: Vec<Instant> = logs.iter().flat_map(|l| l.grants.iter().copied()).collect();
    let mut releases: Vec<(Instant, Instant)> = logs
        .iter()
        .flat_map(|l| l.releases.iter().copied())
        .collect();
    let waits = Stats::new(logs.iter().flat_map(|l| l.waits.iter().copied()).collect());
    grants.sort_unstable();
    releases.sort_unstable_by_key(|&(_, answered)| answered);
    // Every release frees one unit and every grant takes one, so the i-th release (by when its
    // answer was read) made the (free + i)-th grant (by when its 200 was read) possible.
    let (from_answer, from_sent): (Vec<i64>, Vec<i64>) = releases
        .iter()
        .zip(grants.iter().skip(free))
        .map(|(&(sent, answered), &granted)| {
            (signed_nanos(granted, answered), signed_nanos(granted, sent))
        })
        .unzip();
    let handover = Stats::new(from_answer);
    let handover_sent = Stats::new(from_sent);
    let rate = grants.len() as f64 / seconds;
    let per_grant = acquires as f64 / grants.len().max(1) as f64;

    println!(
        "waiters: {n} clients long polling (block_for {} ms) on {:?} ({free} free), holding {} ms, for {seconds:.1} s",
        options.block_for.as_millis(),
        options.semaphore,
        options.hold.as_millis()
    );
    println!(
        "  {} grants, {rate:.1} grants/s (at most {:.0}/s with {free} units held {} ms each)",
        grants.len(),
        free as f64 / options.hold.as_secs_f64(),
        options.hold.as_millis()
    );
    println!(
        "  {acquires} acquire requests answered 200 or 202, {per_grant:.2} per grant; {early} answered 202 \
         before block_for, {timeouts} after it; {error_count} requests failed ({server_errors} with a 5xx)"
    );
    println!("  {starved} of {n} clients never granted; grants per client {fewest} to {most}");
    println!(
        "  wait from the first acquire to the 200: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        waits.ms(0.5),
        waits.ms(0.99),
        waits.max_ms()
    );
    println!(
        "  release answered → next grant read, over {} releases: p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms \
         (from sending the release: p50 {:.3} ms, p99 {:.3} ms)",
        handover.sorted.len(),
        handover.ms(0.5),
        handover.ms(0.99),
        handover.max_ms(),
        handover_sent.ms(0.5),
        handover_sent.ms(0.99)
    );
    watched.print(grants.len(), "grant");
    result
        .add("clients", n)
        .add("grants", grants.len())
        .add("rate", format!("{rate:.1}"))
        .add("acquires", acquires)
        .add("requests_per_grant", format!("{per_grant:.3}"))
        .add("early_202", early)
        .add("timeout_202", timeouts)
        .add("starved", starved)
        .add("fewest_grants", fewest)
        .ms("wait_p50_ms", waits.ms(0.5))
        .ms("wait_max_ms", waits.max_ms())
        .add("handover_samples", handover.sorted.len())
        .ms("p50_ms", handover.ms(0.5))
        .ms("p99_ms", handover.ms(0.99))
        .ms("max_ms", handover.max_ms())
        .ms("sent_p99_ms", handover_sent.ms(0.99))
        .add("errors", error_count)
        .add("server_errors", server_errors);
    watched.add_to(result, grants.len());
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// idle

/// Outcomes of requests, by kind.
#[derive(Default, Clone, Debug)]
struct Tally {
    ok: usize,
    refused: usize,
    closed: usize,
    reset: usize,
    timeout: usize,
    other_io: usize,
    status_4xx: usize,
    status_5xx: usize,
    status_other: usize,
}

impl Tally {
    fn add(&mut self, other: &Tally) {
        self.ok += other.ok;
        self.refused += other.refused;
        self.closed += other.closed;
        self.reset += other.reset;
        self.timeout += other.timeout;
        self.other_io += other.other_io;
        self.status_4xx += other.status_4xx;
        self.status_5xx += other.status_5xx;
        self.status_other += other.status_other;
    }

    fn io(&mut self, error: &io::Error) {
        use io::ErrorKind::*;
        match error.kind() {
            ConnectionRefused => self.refused += 1,
            ConnectionReset | ConnectionAborted | BrokenPipe => self.reset += 1,
            UnexpectedEof => self.closed += 1,
            WouldBlock | TimedOut => self.timeout += 1,
            // "connection closed in the headers" and the like.
            InvalidData if error.to_string().contains("closed") => self.closed += 1,
            _ => self.other_io += 1,
        }
    }

    fn status(&mut self, status: u16) {
        match status {
            200 => self.ok += 1,
            400..=499 => self.status_4xx += 1,
            500..=599 => self.status_5xx += 1,
            _ => self.status_other += 1,
        }
    }

    fn errors(&self) -> usize {
        self.refused
            + self.closed
            + self.reset
            + self.timeout
            + self.other_io
            + self.status_4xx
            + self.status_5xx
            + self.status_other
    }

    fn describe(&self) -> String {
        let kinds = [
            ("refused", self.refused),
            ("closed by the server", self.closed),
            ("reset", self.reset),
            ("timed out", self.timeout),
            ("other I/O", self.other_io),
            ("4xx", self.status_4xx),
            ("5xx", self.status_5xx),
            ("other status", self.status_other),
        ];
        let parts: Vec<String> = kinds
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(what, n)| format!("{n} {what}"))
            .collect();
        if parts.is_empty() {
            "none".into()
        } else {
            parts.join(", ")
        }
    }
}

/// What one idle client saw.
#[derive(Default)]
struct IdleLog {
    tally: Tally,
    /// Requests answered 200, from sending to reading the answer, in ns.
    latencies: Vec<i64>,
    /// Connects that succeeded, in ns.
    connects: Vec<i64>,
    /// How late the client thread woke for its tick, in ns: the load generator's own lag.
    lags: Vec<i64>,
}

/// N keep-alive clients, each creating its peer and then heartbeating it once a second; client
/// i starts at i/N of the first second, so the load is even.
pub(super) fn idle(
    target: &Target,
    options: &Options,
    result: &mut ResultLine,
) -> Result<(), String> {
    let n = options.clients;
    let period = Duration::from_secs(1);
    // Longer than a heartbeat may take (5 s timeout), so that a slow answer does not expire it.
    let lease = Duration::from_secs(30);
    let body = format!(r#"{{"expires_in":"{}"}}"#, wire_duration(lease));
    let timeout = Duration::from_secs(5);
    let gate = Gate::default();
    let ready = AtomicUsize::new(0);
    let errors = Errors::default();
    let (logs, watched) = thread::scope(|scope| -> Result<_, String> {
        let mut handles = Vec::with_capacity(n);
        for i in 0..n {
            let (gate, ready, errors, body) = (&gate, &ready, &errors, &body);
            let spawned = spawn_small(scope, move || {
                let mut log = IdleLog::default();
                ready.fetch_add(1, Ordering::SeqCst);
                let Some(start) = gate.wait() else {
                    return log;
                };
                let end = start + options.duration;
                let offset = period.mul_f64(i as f64 / n as f64);
                let mut client = Client::with(target, timeout, 512);
                let mut peer: Option<u64> = None;
                for tick in 0.. {
                    let at = start + offset + period * tick;
                    if at >= end {
                        break;
                    }
                    let now = Instant::now();
                    if now < at {
                        thread::sleep(at - now);
                        log.lags.push(nanos(Instant::now() - at));
                    }
                    if !client.is_connected() {
                        let connecting = Instant::now();
                        if let Err(error) = client.connect() {
                            log.tally.io(&error);
                            errors.record(format!("connect: {error}"));
                            continue;
                        }
                        log.connects.push(nanos(connecting.elapsed()));
                    }
                    let sent = Instant::now();
                    let answer = match peer {
                        None => client.request("POST", "/new_peer", body),
                        Some(peer) => client.request("PUT", &format!("/peers/{peer}"), body),
                    };
                    match answer {
                        Ok(response) => {
                            log.tally.status(response.status);
                            if response.status != 200 {
                                errors.record(format!("{} {}", response.status, response.text()));
                                continue;
                            }
                            log.latencies.push(nanos(sent.elapsed()));
                            if peer.is_none() {
                                peer = response.text().parse().ok();
                            }
                        }
                        Err(error) => {
                            log.tally.io(&error);
                            errors.record(format!("request: {error}"));
                        }
                    }
                }
                if let Some(peer) = peer {
                    let _ = client.request("DELETE", &format!("/peers/{peer}"), "");
                }
                log
            });
            match spawned {
                Ok(handle) => handles.push(handle),
                Err(error) => {
                    gate.abort();
                    return Err(error);
                }
            }
        }
        wait_ready(&ready, n);
        let monitor = Monitor::start(options);
        gate.open(Instant::now());
        thread::sleep(options.duration);
        let watched = monitor.finish();
        let logs: Vec<IdleLog> = handles
            .into_iter()
            .map(|handle| handle.join().expect("client thread panicked"))
            .collect();
        Ok((logs, watched))
    })?;
    errors.report();

    let mut tally = Tally::default();
    for log in &logs {
        tally.add(&log.tally);
    }
    let never_served = logs.iter().filter(|l| l.tally.ok == 0).count();
    let with_errors = logs.iter().filter(|l| l.tally.errors() > 0).count();
    let connects = Stats::new(
        logs.iter()
            .flat_map(|l| l.connects.iter().copied())
            .collect(),
    );
    let latency = Stats::new(
        logs.iter()
            .flat_map(|l| l.latencies.iter().copied())
            .collect(),
    );
    let lag = Stats::new(logs.iter().flat_map(|l| l.lags.iter().copied()).collect());
    let asked = tally.ok + tally.errors();
    println!(
        "idle: {n} keep-alive clients, one request a second each (new_peer, then heartbeats), for {:.1} s",
        options.duration.as_secs_f64()
    );
    println!(
        "  {} requests answered 200 of {asked} ({:.1} % failed); errors: {}",
        tally.ok,
        100.0 * tally.errors() as f64 / asked.max(1) as f64,
        tally.describe()
    );
    println!("  {never_served} clients never served, {with_errors} saw an error");
    println!(
        "  request latency (connected): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; {} connects: p50 {:.2} ms, \
         p99 {:.2} ms, max {:.2} ms",
        latency.ms(0.5),
        latency.ms(0.99),
        latency.max_ms(),
        connects.sorted.len(),
        connects.ms(0.5),
        connects.ms(0.99),
        connects.max_ms()
    );
    println!(
        "  load generator woke late for its ticks: p99 {:.2} ms, max {:.2} ms",
        lag.ms(0.99),
        lag.max_ms()
    );
    watched.print(tally.ok, "request");
    if let (Some(before), Some(peak)) = (watched.rss_before, watched.rss_peak) {
        let per = peak.saturating_sub(before) as f64 / n as f64;
        println!("  server memory per client: {per:.1} KiB ((peak - before) / {n})");
        result.add("rss_per_client_kb", format!("{per:.1}"));
    }
    result
        .add("clients", n)
        .add("ok", tally.ok)
        .add("requests", asked)
        .add("errors", tally.errors())
        .add("refused", tally.refused)
        .add("closed", tally.closed)
        .add("reset", tally.reset)
        .add("timeouts", tally.timeout)
        .add(
            "status_errors",
            tally.status_4xx + tally.status_5xx + tally.status_other,
        )
        .add("server_errors", tally.status_5xx)
        .add("never_served", never_served)
        .add("clients_with_errors", with_errors)
        .add("connects", connects.sorted.len())
        .ms("connect_p99_ms", connects.ms(0.99))
        .ms("connect_max_ms", connects.max_ms())
        .ms("p50_ms", latency.ms(0.5))
        .ms("p99_ms", latency.ms(0.99))
        .ms("max_ms", latency.max_ms())
        .ms("lag_p99_ms", lag.ms(0.99));
    watched.add_to(result, tally.ok);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// slowloris

/// How a slow connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// The server answered (the status of its first line; 0 if unparsable).
    Answered(u16),
    /// Closed without an answer.
    Closed,
    Reset,
    /// Still open when the time was up.
    Open,
    /// Could not connect or send.
    NoConnection,
}

/// One slow connection's life: how it ended and how long after its connect.
type SlowLife = (End, Duration);

/// N connections send `--bytes` bytes of a request head each and then nothing; meanwhile a fresh
/// client every 100-200 ms tries new_peer + acquire + remove the peer within `--budget`.
pub(super) fn slowloris(
    target: &Target,
    options: &Options,
    result: &mut ResultLine,
) -> Result<(), String> {
    let n = options.clients;
    let head = &b"PUT /peers/1/big HTTP/1.1\r\nHost: x\r\n"[..options.bytes.min(36)];
    // Set once every slow connection is open; they watch their sockets from their connect on.
    let end_at: OnceLock<Instant> = OnceLock::new();
    let abort = AtomicBool::new(false);
    let ready = AtomicUsize::new(0);
    let semaphore = encode(&options.semaphore);
    type Probe = (Duration, Result<(), String>);
    let (lives, probes, watched): (Vec<Vec<SlowLife>>, Vec<Probe>, Watched) =
        thread::scope(|scope| -> Result<_, String> {
            let mut handles = Vec::with_capacity(n);
            for _ in 0..n {
                let (end_at, abort, ready) = (&end_at, &abort, &ready);
                let spawned = spawn_small(scope, move || {
                    let mut lives = Vec::new();
                    let mut stream = slow_connect(target, head);
                    ready.fetch_add(1, Ordering::SeqCst);
                    let over = || {
                        abort.load(Ordering::SeqCst)
                            || end_at.get().is_some_and(|&end| Instant::now() >= end)
                    };
                    loop {
                        let life = match &mut stream {
                            Ok((stream, connected)) => {
                                (hold_open(stream, &over), connected.elapsed())
                            }
                            Err(connected) => (End::NoConnection, connected.elapsed()),
                        };
                        lives.push(life);
                        if !options.reconnect || life.0 == End::Open || over() {
                            break;
                        }
                        // The attacker comes back, a little later.
                        thread::sleep(Duration::from_millis(50));
                        if over() {
                            break;
                        }
                        stream = slow_connect(target, head);
                    }
                    lives
                });
                match spawned {
                    Ok(handle) => handles.push(handle),
                    Err(error) => {
                        abort.store(true, Ordering::SeqCst);
                        return Err(error);
                    }
                }
            }
            wait_ready(&ready, n);
            let monitor = Monitor::start(options);
            let start = Instant::now();
            let end = start + options.duration;
            end_at.set(end).expect("set once");
            let mut rng = Rng::seeded();
            let mut probes = Vec::new();
            while Instant::now() < end {
                let semaphore = &semaphore;
                let probe = spawn_small(scope, move || {
                    let began = Instant::now();
                    let outcome = probe(target, semaphore);
                    (began.elapsed(), outcome)
                })?;
                probes.push(probe);
                thread::sleep(Duration::from_millis(100 + rng.below(101)));
            }
            let watched = monitor.finish();
            let lives = handles
                .into_iter()
                .map(|handle| handle.join().expect("slow connection thread panicked"))
                .collect();
            let probes = probes
                .into_iter()
                .map(|probe| probe.join().expect("probe thread panicked"))
                .collect();
            Ok((lives, probes, watched))
        })?;

    let first: Vec<SlowLife> = lives.iter().filter_map(|l| l.first().copied()).collect();
    let all: Vec<SlowLife> = lives.iter().flatten().copied().collect();
    let count =
        |lives: &[SlowLife], f: &dyn Fn(End) -> bool| lives.iter().filter(|l| f(l.0)).count();
    let times = |lives: &[SlowLife], f: &dyn Fn(End) -> bool| {
        Stats::new(
            lives
                .iter()
                .filter(|l| f(l.0))
                .map(|l| nanos(l.1))
                .collect(),
        )
    };
    let is_408 = |end: End| end == End::Answered(408);
    let is_other_answer = |end: End| matches!(end, End::Answered(status) if status != 408);
    let is_closed = |end: End| matches!(end, End::Closed | End::Reset);
    let answered_408 = times(&first, &is_408);
    let closed = times(&first, &is_closed);
    let open = count(&first, &|end| end == End::Open);
    let no_connection = count(&first, &|end| end == End::NoConnection);
    let other_answers = count(&first, &is_other_answer);
    let budget = options.budget;
    let within = probes
        .iter()
        .filter(|(took, outcome)| outcome.is_ok() && *took <= budget)
        .count();
    let late = probes
        .iter()
        .filter(|(took, outcome)| outcome.is_ok() && *took > budget)
        .count();
    let failed: Vec<&String> = probes
        .iter()
        .filter_map(|(_, o)| o.as_ref().err())
        .collect();
    let probe_times = Stats::new(probes.iter().map(|(took, _)| nanos(*took)).collect());
    let fraction = within as f64 / probes.len().max(1) as f64;

    println!(
        "slowloris: {n} connections sending {} byte(s) of a head each{}, for {:.1} s; a probe every 100-200 ms",
        head.len(),
        if options.reconnect {
            " and reconnecting when closed"
        } else {
            ""
        },
        options.duration.as_secs_f64()
    );
    println!(
        "  first connections: {} answered 408 (after p50 {:.0} ms, max {:.0} ms), {} closed without an answer \
         (after p50 {:.0} ms, min {:.0} ms), {other_answers} other answers, {open} still open at the end, \
         {no_connection} could not connect",
        answered_408.sorted.len(),
        answered_408.ms(0.5),
        answered_408.max_ms(),
        closed.sorted.len(),
        closed.ms(0.5),
        closed.ms(0.0),
    );
    if options.reconnect {
        println!(
            "  {} connections in all ({} answered 408, {} closed without an answer)",
            all.len(),
            count(&all, &is_408),
            count(&all, &is_closed)
        );
    }
    println!(
        "  probes: {within} of {} done within {} ms ({:.1} %), {late} later, {} failed; took p50 {:.1} ms, \
         p99 {:.1} ms, max {:.1} ms",
        probes.len(),
        budget.as_millis(),
        100.0 * fraction,
        failed.len(),
        probe_times.ms(0.5),
        probe_times.ms(0.99),
        probe_times.max_ms()
    );
    for error in failed.iter().take(3) {
        println!("    probe error: {error}");
    }
    watched.print(probes.len(), "probe");
    result
        .add("connections", n)
        .add("bytes", head.len())
        .add("probes", probes.len())
        .add("probes_within", within)
        .add("probes_late", late)
        .add("probes_failed", failed.len())
        .add("within_pct", format!("{:.1}", 100.0 * fraction))
        .ms("probe_p50_ms", probe_times.ms(0.5))
        .ms("probe_max_ms", probe_times.max_ms())
        .add("answered_408", answered_408.sorted.len())
        .ms("answered_408_p50_ms", answered_408.ms(0.5))
        .add("closed", closed.sorted.len())
        .ms("closed_p50_ms", closed.ms(0.5))
        .add("other_answers", other_answers)
        .add("open_at_end", open)
        .add("no_connection", no_connection)
        .add("connections_in_all", all.len())
        .add("errors", failed.len());
    watched.add_to(result, probes.len());
    Ok(())
}

/// Connects and sends the partial head; the error side holds when it tried.
fn slow_connect(target: &Target, head: &[u8]) -> Result<(TcpStream, Instant), Instant> {
    let connected = Instant::now();
    let stream = TcpStream::connect_timeout(&target.address, Duration::from_secs(5))
        .map_err(|_| connected)?;
    let connected = Instant::now();
    if !head.is_empty() && (&stream).write_all(head).is_err() {
        return Err(connected);
    }
    Ok((stream, connected))
}

/// Waits on a slow connection until the server answers or closes it, or until `over`.
fn hold_open(stream: &mut TcpStream, over: &dyn Fn() -> bool) -> End {
    let mut buffer = [0u8; 256];
    if stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .is_err()
    {
        return End::Reset;
    }
    loop {
        if over() {
            return End::Open;
        }
        return match stream.read(&mut buffer) {
            Ok(0) => End::Closed,
            Ok(read) => {
                let text = String::from_utf8_lossy(&buffer[..read]);
                let status = text
                    .strip_prefix("HTTP/")
                    .and_then(|rest| rest.split_whitespace().nth(1))
                    .and_then(|code| code.parse().ok())
                    .unwrap_or(0);
                End::Answered(status)
            }
            Err(error)
                if matches!(
                    error.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                continue;
            }
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => End::Reset,
        };
    }
}

/// A fresh client: new_peer, acquire 1, remove the peer (which releases the lock).
fn probe(target: &Target, semaphore: &str) -> Result<(), String> {
    let mut client = Client::with(target, Duration::from_secs(10), 1024);
    let peer = client.new_peer(Duration::from_secs(60))?;
    client.expect("PUT", &format!("/peers/{peer}/{semaphore}"), "1", &[200])?;
    client.remove_peer(peer)
}

// ---------------------------------------------------------------------------------------------
// mass-expiry

/// `--peers` holders each take 1 of a semaphore and are then given one common deadline;
/// `--clients` waiters long poll for `peers / clients` each, which fits only once the holders
/// expired. Measured: each waiter's grant against the deadline.
pub(super) fn mass_expiry(
    target: &Target,
    options: &Options,
    result: &mut ResultLine,
) -> Result<(), String> {
    let holders_wanted = options.peers;
    let semaphore = encode(&options.semaphore);
    let mut admin = Client::new(target);
    let free = remainder(target, &options.semaphore)?;
    if free < holders_wanted as i64 {
        return Err(format!(
            "{:?} has {free} free, fewer than the {holders_wanted} holders",
            options.semaphore
        ));
    }
    // Whatever the holders don't take is held by one long-lived peer, so that after the expiry
    // exactly the holders' count comes free.
    let filler = if free > holders_wanted as i64 {
        let peer = admin.new_peer(LONG_LEASE)?;
        let path = format!("/peers/{peer}/{semaphore}");
        admin.expect(
            "PUT",
            &path,
            &(free - holders_wanted as i64).to_string(),
            &[200],
        )?;
        Some(peer)
    } else {
        None
    };
    let waiters = make_peers(target, options.clients, 4, LONG_LEASE, None);
    let outcome = waiters.and_then(|waiters| {
        let outcome = mass_expiry_run(target, options, &waiters, result);
        outcome.and(remove_peers(target, 4, &waiters))
    });
    if let Some(peer) = filler {
        let _ = admin.remove_peer(peer);
    }
    outcome
}

fn mass_expiry_run(
    target: &Target,
    options: &Options,
    waiters: &[u64],
    result: &mut ResultLine,
) -> Result<(), String> {
    let semaphore = encode(&options.semaphore);
    let lease = options.expires_in;
    let count = options.peers / waiters.len();
    let created = Instant::now();
    let holders = make_peers(
        target,
        options.peers,
        options.preload_connections,
        LONG_LEASE,
        Some(&semaphore),
    )?;
    let create_time = created.elapsed();
    // One heartbeat per holder sets its lease so that it ends at `deadline`. How long that takes
    // is estimated from heartbeats to a sample of them first (with the long lease); on 0.5.13
    // a request costs more the more peers there are, so creating says little about it.
    let sample = &holders[..(holders.len() / 10).clamp(1, 1000)];
    let sampled = Instant::now();
    arm(
        target,
        options.preload_connections,
        sample,
        sampled + LONG_LEASE,
    )?;
    let estimate = sampled
        .elapsed()
        .mul_f64(1.5 * holders.len() as f64 / sample.len() as f64);
    let armed = Instant::now();
    let deadline = armed + estimate + Duration::from_millis(200) + lease;
    let mut rtts = arm(target, options.preload_connections, &holders, deadline)?;
    // A holder's deadline on the server lies between `deadline` and `deadline` + the round trip
    // of its heartbeat. Heartbeats that took long (a scheduling hiccup) are sent again, so that
    // the deadlines lie close together and the uncertainty printed is small.
    let mut rearmed = 0;
    for _ in 0..3 {
        let mut sorted: Vec<i64> = rtts.iter().map(|&(_, rtt)| rtt).collect();
        sorted.sort_unstable();
        let threshold = (2 * sorted[sorted.len() / 2]).max(5_000_000);
        let slow: Vec<u64> = rtts
            .iter()
            .filter(|&&(_, rtt)| rtt > threshold)
            .map(|&(peer, _)| peer)
            .collect();
        if slow.is_empty() {
            break;
        }
        rearmed += slow.len();
        let again: HashMap<u64, i64> = arm(target, 4, &slow, deadline)?.into_iter().collect();
        for (peer, rtt) in &mut rtts {
            if let Some(&new) = again.get(peer) {
                *rtt = new;
            }
        }
    }
    let arm_time = armed.elapsed();
    let rtt = Stats::new(rtts.iter().map(|&(_, rtt)| rtt).collect());

    let gate = Gate::default();
    let ready = AtomicUsize::new(0);
    let errors = Errors::default();
    let give_up = deadline + Duration::from_secs(60);
    #[derive(Default)]
    struct Log {
        sent_first: Option<Instant>,
        granted: Option<Instant>,
        early: usize,
        timeouts: usize,
        errors: usize,
    }
    let logs: Vec<Log> = thread::scope(|scope| -> Result<_, String> {
        let mut handles = Vec::new();
        for &peer in waiters {
            let (gate, ready, errors) = (&gate, &ready, &errors);
            let path = format!(
                "/peers/{peer}/{semaphore}?block_for={}",
                wire_duration(options.block_for)
            );
            let spawned = spawn_small(scope, move || {
                let mut log = Log::default();
                let mut client = Client::new(target);
                let _ = client.connect();
                ready.fetch_add(1, Ordering::SeqCst);
                if gate.wait().is_none() {
                    return log;
                }
                let mut backoff = Backoff::new(options);
                while Instant::now() < give_up {
                    let sent = Instant::now();
                    log.sent_first.get_or_insert(sent);
                    match client.request("PUT", &path, &count.to_string()) {
                        Ok(Response { status: 200, .. }) => {
                            log.granted = Some(Instant::now());
                            break;
                        }
                        Ok(Response { status: 202, .. }) => {
                            if sent.elapsed() < options.block_for {
                                log.early += 1;
                                thread::sleep(backoff.next_pause());
                            } else {
                                log.timeouts += 1;
                                backoff.reset();
                            }
                        }
                        Ok(response) => {
                            log.errors += 1;
                            errors.record(format!(
                                "PUT {path}: {} {}",
                                response.status,
                                response.text()
                            ));
                            thread::sleep(Duration::from_millis(10));
                        }
                        Err(error) => {
                            log.errors += 1;
                            errors.record(format!("PUT {path}: {error}"));
                            thread::sleep(Duration::from_millis(10));
                        }
                    }
                }
                log
            });
            match spawned {
                Ok(handle) => handles.push(handle),
                Err(error) => {
                    gate.abort();
                    return Err(error);
                }
            }
        }
        wait_ready(&ready, handles.len());
        gate.open(Instant::now());
        Ok(handles
            .into_iter()
            .map(|handle| handle.join().expect("waiter panicked"))
            .collect())
    })?;
    errors.report();

    let late = Stats::new(
        logs.iter()
            .filter_map(|l| l.granted)
            .map(|granted| signed_nanos(granted, deadline))
            .collect(),
    );
    let never = logs.iter().filter(|l| l.granted.is_none()).count();
    let before = late.sorted.iter().filter(|&&late| late < 0).count();
    let sent_after = logs
        .iter()
        .filter(|l| l.sent_first.is_some_and(|sent| sent >= deadline))
        .count();
    let early: usize = logs.iter().map(|l| l.early).sum();
    let timeouts: usize = logs.iter().map(|l| l.timeouts).sum();
    let error_count: usize = logs.iter().map(|l| l.errors).sum();
    let lead = deadline.saturating_duration_since(armed + arm_time);
    println!(
        "mass-expiry: {} holders of 1 on {:?} created in {:.2} s, their leases set to end at one deadline \
         in {:.2} s ({rearmed} heartbeats sent again; round trips of the last ones p99 {:.1} ms, max {:.1} ms: \
         the server's deadlines lie that much after the one used here at most)",
        holders.len(),
        options.semaphore,
        create_time.as_secs_f64(),
        arm_time.as_secs_f64(),
        rtt.ms(0.99),
        rtt.max_ms()
    );
    println!(
        "  {} waiters for {count} each, long polling from {:.0} ms before the deadline (block_for {} ms)",
        logs.len(),
        lead.as_secs_f64() * 1e3,
        options.block_for.as_millis()
    );
    println!(
        "  grant read − deadline: first {:.1} ms, p50 {:.1} ms, last {:.1} ms; {before} granted before it, \
         {never} never granted",
        late.ms(0.0),
        late.ms(0.5),
        late.max_ms()
    );
    println!(
        "  {early} answers 202 before block_for had passed, {timeouts} after it; {error_count} errors{}",
        if sent_after > 0 {
            format!(
                "; {sent_after} waiters only asked after the deadline (use a longer --expires-in)"
            )
        } else {
            String::new()
        }
    );
    result
        .add("holders", holders.len())
        .add("waiters", logs.len())
        .add("create_s", format!("{:.2}", create_time.as_secs_f64()))
        .add("arm_s", format!("{:.2}", arm_time.as_secs_f64()))
        .ms("arm_rtt_max_ms", rtt.max_ms())
        .add("rearmed", rearmed)
        .ms("first_ms", late.ms(0.0))
        .ms("p50_ms", late.ms(0.5))
        .ms("last_ms", late.max_ms())
        .add("granted_before", before)
        .add("never_granted", never)
        .add("early_202", early)
        .add("timeout_202", timeouts)
        .add("errors", error_count);
    Ok(())
}

/// Heartbeats every holder once over `connections` connections, each with the lease left until
/// `deadline` (rounded up to whole ms, so that no server deadline is before it). Returns each
/// holder with its heartbeat's round trip in ns.
fn arm(
    target: &Target,
    connections: usize,
    holders: &[u64],
    deadline: Instant,
) -> Result<Vec<(u64, i64)>, String> {
    let errors = Errors::default();
    let chunk = holders.len().div_ceil(connections).max(1);
    let rtts = thread::scope(|scope| {
        let parts: Vec<_> = holders
            .chunks(chunk)
            .map(|part| {
                let errors = &errors;
                scope.spawn(move || {
                    let mut client = Client::new(target);
                    let mut rtts = Vec::with_capacity(part.len());
                    for &peer in part {
                        let sent = Instant::now();
                        let Some(left) = deadline.checked_duration_since(sent) else {
                            errors.record("setting the deadline took longer than estimated".into());
                            return rtts;
                        };
                        let ms = left.as_nanos().div_ceil(1_000_000);
                        let body = format!(r#"{{"expires_in":"{ms}ms"}}"#);
                        match client.expect("PUT", &format!("/peers/{peer}"), &body, &[200]) {
                            Ok(_) => rtts.push((peer, nanos(sent.elapsed()))),
                            Err(error) => errors.record(error),
                        }
                    }
                    rtts
                })
            })
            .collect();
        parts
            .into_iter()
            .flat_map(|part| part.join().expect("arming thread panicked"))
            .collect()
    });
    errors.report();
    match errors.count() {
        0 => Ok(rtts),
        n => Err(format!("{n} errors setting the holders' deadline")),
    }
}

// ---------------------------------------------------------------------------------------------
// peers-listing

/// The pause between two listings.
const LISTING_PAUSE: Duration = Duration::from_millis(100);

/// `GET /peers/` in a loop (with [`LISTING_PAUSE`] between listings) for `--duration` while
/// another client acquires and releases 1 of `--semaphore` on its own peer, timing each
/// acquire. Use with `--preload N`.
pub(super) fn peers_listing(
    target: &Target,
    options: &Options,
    result: &mut ResultLine,
) -> Result<(), String> {
    let semaphore = encode(&options.semaphore);
    let mut admin = Client::new(target);
    let peer = admin.new_peer(LONG_LEASE)?;
    let lock = format!("/peers/{peer}/{semaphore}");
    let stop = AtomicBool::new(false);
    let errors = Errors::default();
    let monitor = Monitor::start(options);
    let (listings, acquires) = thread::scope(|scope| {
        let lister = scope.spawn(|| {
            let mut client = Client::with(target, IO_TIMEOUT, 1 << 20);
            let mut listings = Vec::new();
            let end = Instant::now() + options.duration;
            while Instant::now() < end {
                let sent = Instant::now();
                match client.expect("GET", "/peers/", "", &[200]) {
                    Ok(response) => {
                        let peers = response.body.windows(5).filter(|w| w == b"\"id\":").count();
                        listings.push((sent, Instant::now(), peers, response.body.len()));
                        // A pause, so that acquires outside listings give the baseline.
                        thread::sleep(LISTING_PAUSE);
                    }
                    Err(error) => {
                        errors.record(error);
                        thread::sleep(Duration::from_millis(10));
                    }
                }
            }
            stop.store(true, Ordering::SeqCst);
            listings
        });
        let acquirer = scope.spawn(|| {
            let mut client = Client::new(target);
            let mut acquires = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                let sent = Instant::now();
                match client.expect("PUT", &lock, "1", &[200]) {
                    Ok(_) => acquires.push((sent, Instant::now())),
                    Err(error) => {
                        errors.record(error);
                        thread::sleep(Duration::from_millis(10));
                        continue;
                    }
                }
                if let Err(error) = client.expect("DELETE", &lock, "", &[200]) {
                    errors.record(error);
                    thread::sleep(Duration::from_millis(10));
                }
            }
            acquires
        });
        (
            lister.join().expect("lister panicked"),
            acquirer.join().expect("acquirer panicked"),
        )
    });
    let watched = monitor.finish();
    let _ = admin.remove_peer(peer);
    errors.report();

    // An acquire is "during a listing" if its time overlaps a listing's, from sending the GET
    // to reading the last byte of its answer.
    let during = |&(sent, read): &(Instant, Instant)| {
        listings
            .iter()
            .any(|&(l_sent, l_read, _, _)| sent < l_read && l_sent < read)
    };
    let (inside, outside): (Vec<_>, Vec<_>) = acquires.iter().partition(|a| during(a));
    let inside = Stats::new(inside.iter().map(|&&(s, r)| nanos(r - s)).collect());
    let over_20ms = inside.sorted.iter().filter(|&&t| t > 20_000_000).count();
    let outside = Stats::new(outside.iter().map(|&&(s, r)| nanos(r - s)).collect());
    let listing = Stats::new(listings.iter().map(|&(s, r, _, _)| nanos(r - s)).collect());
    let peers = listings.iter().map(|l| l.2).max().unwrap_or(0);
    let bytes = listings.iter().map(|l| l.3).max().unwrap_or(0);
    println!(
        "peers-listing: {} listings of {peers} peers ({:.1} MB) in {:.1} s: p50 {:.1} ms, max {:.1} ms each",
        listings.len(),
        bytes as f64 / 1e6,
        options.duration.as_secs_f64(),
        listing.ms(0.5),
        listing.max_ms()
    );
    println!(
        "  acquire during a listing ({}): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms, {over_20ms} over 20 ms; \
         otherwise ({}): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; {} errors",
        inside.sorted.len(),
        inside.ms(0.5),
        inside.ms(0.99),
        inside.max_ms(),
        outside.sorted.len(),
        outside.ms(0.5),
        outside.ms(0.99),
        outside.max_ms(),
        errors.count()
    );
    watched.print(listings.len(), "listing");
    result
        .add("listings", listings.len())
        .add("peers", peers)
        .add("bytes", bytes)
        .ms("listing_p50_ms", listing.ms(0.5))
        .ms("listing_max_ms", listing.max_ms())
        .add("acquires_during", inside.sorted.len())
        .ms("p50_ms", inside.ms(0.5))
        .ms("p99_ms", inside.ms(0.99))
        .ms("max_ms", inside.max_ms())
        .add("over_20ms", over_20ms)
        .ms("outside_p99_ms", outside.ms(0.99))
        .ms("outside_max_ms", outside.max_ms())
        .add("errors", errors.count());
    watched.add_to(result, listings.len());
    if listings.is_empty() || acquires.is_empty() {
        return Err("no listing or no acquire succeeded".into());
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Helpers

/// Spawns a scoped thread with a [`STACK`]-sized stack.
fn spawn_small<'scope, T: Send + 'scope>(
    scope: &'scope thread::Scope<'scope, '_>,
    f: impl FnOnce() -> T + Send + 'scope,
) -> Result<thread::ScopedJoinHandle<'scope, T>, String> {
    thread::Builder::new()
        .stack_size(STACK)
        .spawn_scoped(scope, f)
        .map_err(|e| format!("cannot start a client thread: {e}"))
}

/// Holds client threads until all are set up, then lets them go at one instant (or tells them
/// to give up).
#[derive(Default)]
struct Gate {
    state: Mutex<Option<Option<Instant>>>,
    opened: Condvar,
}

impl Gate {
    /// The start instant, or `None` if the scenario was called off.
    fn wait(&self) -> Option<Instant> {
        let mut state = self.state.lock().expect("not poisoned");
        loop {
            if let Some(start) = *state {
                return start;
            }
            state = self.opened.wait(state).expect("not poisoned");
        }
    }

    fn open(&self, start: Instant) {
        *self.state.lock().expect("not poisoned") = Some(Some(start));
        self.opened.notify_all();
    }

    fn abort(&self) {
        *self.state.lock().expect("not poisoned") = Some(None);
        self.opened.notify_all();
    }
}

/// Waits until `n` clients reported ready (at most a minute).
fn wait_ready(ready: &AtomicUsize, n: usize) {
    let until = Instant::now() + Duration::from_secs(60);
    while ready.load(Ordering::SeqCst) < n && Instant::now() < until {
        thread::sleep(Duration::from_millis(5));
    }
}

/// Creates `n` peers over `connections` connections, each acquiring 1 of `acquire` (an encoded
/// semaphore name) if given. On an error, removes what it created.
fn make_peers(
    target: &Target,
    n: usize,
    connections: usize,
    lease: Duration,
    acquire: Option<&str>,
) -> Result<Vec<u64>, String> {
    let next = AtomicUsize::new(0);
    let errors = Errors::default();
    let peers: Vec<u64> = thread::scope(|scope| {
        let workers: Vec<_> = (0..connections.min(n.max(1)))
            .map(|_| {
                scope.spawn(|| {
                    let mut client = Client::new(target);
                    let mut mine = Vec::new();
                    while next.fetch_add(1, Ordering::Relaxed) < n && errors.count() == 0 {
                        match client.new_peer(lease) {
                            Ok(peer) => {
                                mine.push(peer);
                                if let Some(semaphore) = acquire
                                    && let Err(error) = client.expect(
                                        "PUT",
                                        &format!("/peers/{peer}/{semaphore}"),
                                        "1",
                                        &[200],
                                    )
                                {
                                    errors.record(error);
                                }
                            }
                            Err(error) => errors.record(error),
                        }
                    }
                    mine
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|worker| worker.join().expect("peer creation panicked"))
            .collect()
    });
    errors.report();
    if errors.count() > 0 {
        let _ = remove_peers(target, connections, &peers);
        return Err(format!(
            "creating peers failed with {} errors",
            errors.count()
        ));
    }
    Ok(peers)
}

/// `GET /remainder?semaphore=NAME`.
fn remainder(target: &Target, semaphore: &str) -> Result<i64, String> {
    let mut client = Client::new(target);
    let path = format!("/remainder?semaphore={}", encode(semaphore));
    let response = client.expect("GET", &path, "", &[200])?;
    response
        .text()
        .parse()
        .map_err(|_| format!("GET {path}: not a number: {:?}", response.text()))
}

/// A small pseudo-random generator (xorshift), enough to spread the probes.
struct Rng(u64);

impl Rng {
    /// Seeded differently for every generator, also within one nanosecond.
    fn seeded() -> Rng {
        use std::hash::{BuildHasher, Hasher};
        let seed = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        Rng(seed | 1)
    }

    /// A number in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// The pause after a 202 that came back before its `block_for`, as the repository's clients do
/// it (`clients/rust/src/backoff.rs`): doubling from `--backoff` up to `--backoff-max`, each drawn
/// from the upper half of its step, and back to the start after a 200 or a full-length 202.
struct Backoff {
    first: Duration,
    cap: Duration,
    step: Duration,
    rng: Rng,
}

impl Backoff {
    fn new(options: &Options) -> Backoff {
        Backoff {
            first: options.backoff,
            cap: options.backoff_max.max(options.backoff),
            step: options.backoff,
            rng: Rng::seeded(),
        }
    }

    fn next_pause(&mut self) -> Duration {
        let step = self.step;
        self.step = (self.step * 2).min(self.cap);
        step / 2 + step.mul_f64(self.rng.below(1 << 20) as f64 / (2 << 20) as f64)
    }

    /// The pause before retrying a failed request: 50 ms up to 2 s, as in
    /// `clients/rust/src/client.rs`.
    fn retry() -> Backoff {
        Backoff {
            first: Duration::from_millis(50),
            cap: Duration::from_secs(2),
            step: Duration::from_millis(50),
            rng: Rng::seeded(),
        }
    }

    fn reset(&mut self) {
        self.step = self.first;
    }
}

/// `VmRSS` (kB) and `Threads` of a process.
fn status(pid: u32) -> Option<(u64, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|value| value.parse().ok())
    };
    Some((field("VmRSS:")?, field("Threads:")?))
}

/// Samples the server's memory and threads every 100 ms during a scenario and measures its and
/// the load generator's CPU time. The server is `--cost-pid`, else `--rss-pid`.
struct Monitor {
    pid: Option<u32>,
    started: Instant,
    server_cpu: Option<Duration>,
    own_cpu: Option<Duration>,
    rss_before: Option<u64>,
    peaks: Arc<(AtomicU64, AtomicU64, AtomicBool)>,
    sampler: Option<thread::JoinHandle<()>>,
}

/// What [`Monitor`] saw.
struct Watched {
    elapsed: Duration,
    server_cpu: Option<Duration>,
    own_cpu: Option<Duration>,
    rss_before: Option<u64>,
    rss_peak: Option<u64>,
    threads_peak: Option<u64>,
}

impl Monitor {
    fn start(options: &Options) -> Monitor {
        let pid = options.cost_pid.or(options.rss_pid);
        let peaks = Arc::new((AtomicU64::new(0), AtomicU64::new(0), AtomicBool::new(false)));
        let sampler = pid.map(|pid| {
            let peaks = peaks.clone();
            thread::spawn(move || {
                while !peaks.2.load(Ordering::SeqCst) {
                    if let Some((rss, threads)) = status(pid) {
                        peaks.0.fetch_max(rss, Ordering::SeqCst);
                        peaks.1.fetch_max(threads, Ordering::SeqCst);
                    }
                    thread::sleep(Duration::from_millis(100));
                }
            })
        });
        Monitor {
            pid,
            started: Instant::now(),
            server_cpu: pid.and_then(cpu_time),
            own_cpu: cpu_time(std::process::id()),
            rss_before: pid.and_then(rss_kb),
            peaks,
            sampler,
        }
    }

    fn finish(mut self) -> Watched {
        let elapsed = self.started.elapsed();
        let server_cpu = self.pid.and_then(cpu_time);
        let own_cpu = cpu_time(std::process::id());
        if let Some((rss, threads)) = self.pid.and_then(status) {
            self.peaks.0.fetch_max(rss, Ordering::SeqCst);
            self.peaks.1.fetch_max(threads, Ordering::SeqCst);
        }
        self.peaks.2.store(true, Ordering::SeqCst);
        if let Some(sampler) = self.sampler.take() {
            let _ = sampler.join();
        }
        let peak = |value: &AtomicU64| Some(value.load(Ordering::SeqCst)).filter(|&v| v > 0);
        Watched {
            elapsed,
            server_cpu: server_cpu
                .zip(self.server_cpu)
                .map(|(after, before)| after.saturating_sub(before)),
            own_cpu: own_cpu
                .zip(self.own_cpu)
                .map(|(after, before)| after.saturating_sub(before)),
            rss_before: self.rss_before,
            rss_peak: peak(&self.peaks.0),
            threads_peak: peak(&self.peaks.1),
        }
    }
}

impl Watched {
    fn percent(&self, cpu: Option<Duration>) -> Option<f64> {
        cpu.map(|cpu| 100.0 * cpu.as_secs_f64() / self.elapsed.as_secs_f64().max(1e-9))
    }

    fn print(&self, operations: usize, unit: &str) {
        if let Some(cpu) = self.server_cpu {
            println!(
                "  server CPU: {:.2} s ({:.0} % of one core), {:.0} µs per {unit}",
                cpu.as_secs_f64(),
                self.percent(Some(cpu)).unwrap_or(0.0),
                cpu.as_secs_f64() * 1e6 / operations.max(1) as f64
            );
        }
        if let (Some(before), Some(peak), Some(threads)) =
            (self.rss_before, self.rss_peak, self.threads_peak)
        {
            println!(
                "  server VmRSS {:.1} MiB before, {:.1} MiB at the peak; at most {threads} threads",
                before as f64 / 1024.0,
                peak as f64 / 1024.0
            );
        }
        if let Some(own) = self.percent(self.own_cpu) {
            println!("  load generator CPU: {own:.0} % of one core");
        }
    }

    fn add_to(&self, result: &mut ResultLine, operations: usize) {
        if let Some(cpu) = self.server_cpu {
            result
                .add("server_cpu_s", format!("{:.2}", cpu.as_secs_f64()))
                .add(
                    "server_cpu_pct",
                    format!("{:.0}", self.percent(Some(cpu)).unwrap_or(0.0)),
                )
                .add(
                    "server_cpu_us_per_op",
                    format!("{:.0}", cpu.as_secs_f64() * 1e6 / operations.max(1) as f64),
                );
        }
        if let Some(kb) = self.rss_before {
            result.add("rss_before_kb", kb);
        }
        if let Some(kb) = self.rss_peak {
            result.add("rss_peak_kb", kb);
        }
        if let Some(threads) = self.threads_peak {
            result.add("threads_peak", threads);
        }
        if let Some(own) = self.percent(self.own_cpu) {
            result.add("loadgen_cpu_pct", format!("{own:.0}"));
        }
    }
}
