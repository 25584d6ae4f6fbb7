//! The `waiters` crowd: N clients, each with its own peer and connection, long poll on a small
//! semaphore, hold each grant for `--hold` and release it. Measures grants per second, requests
//! per grant, starved clients and the hand-over from a release to the next grant.
//!
//! Not for the latency of one release on an otherwise idle server: that is `release-latency`
//! (`latency.rs`).

use std::io::{self};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::Instant;

use crate::args::Options;
use crate::http::{Client, Closer, IO_TIMEOUT, Response, Target, encode, wire_duration};
use crate::peers::{make_peers, remainder, remove_peers};
use crate::report::{Errors, ResultLine};
use crate::stats::{Stats, nanos, signed_nanos};

use super::backoff::Backoff;
use super::monitor::Monitor;
use super::{Gate, LONG_LEASE, spawn_small, wait_ready};

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
pub fn waiters(target: &Target, options: &Options, result: &mut ResultLine) -> Result<(), String> {
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
                let mut backoff = Backoff::new(options.backoff, options.backoff_max);
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
    let (from_answer, from_sent) = handovers(&mut releases, &grants, free);
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
        handover.count(),
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
        .add("handover_samples", handover.count())
        .ms("p50_ms", handover.ms(0.5))
        .ms("p99_ms", handover.ms(0.99))
        .ms("max_ms", handover.max_ms())
        .ms("sent_p99_ms", handover_sent.ms(0.99))
        .add("errors", error_count)
        .add("server_errors", server_errors);
    watched.add_to(result, grants.len());
    Ok(())
}

/// Pairs releases with the grants they made possible: every release frees one unit and every
/// grant takes one, so the i-th release (by when its answer was read) made the (free + i)-th
/// grant (by when its 200 was read) possible. `releases` are (sent, answer read); `grants`
/// sorted. Returns, per pair, grant − release answered and grant − release sent, in ns.
fn handovers(
    releases: &mut [(Instant, Instant)],
    grants: &[Instant],
    free: usize,
) -> (Vec<i64>, Vec<i64>) {
    releases.sort_unstable_by_key(|&(_, answered)| answered);
    releases
        .iter()
        .zip(grants.iter().skip(free))
        .map(|(&(sent, answered), &granted)| {
            (signed_nanos(granted, answered), signed_nanos(granted, sent))
        })
        .unzip()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_ith_release_makes_the_grant_after_the_free_ones() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        // Two units free: the grants at 0 and 1 ms needed no release.
        let grants = [at(0), at(1), at(12), at(25), at(40)];
        // Out of order; the last release made no grant (yet).
        let mut releases = [(at(18), at(20)), (at(9), at(10)), (at(45), at(46))];
        let (from_answer, from_sent) = handovers(&mut releases, &grants, 2);
        assert_eq!(from_answer, [2_000_000, 5_000_000, -6_000_000]);
        assert_eq!(from_sent, [3_000_000, 7_000_000, -5_000_000]);
        // Every unit free and no grant beyond: nothing to pair.
        assert_eq!(handovers(&mut releases, &grants, 5), (vec![], vec![]));
    }
}
