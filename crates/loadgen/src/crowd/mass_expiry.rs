//! The `mass-expiry` crowd: `--peers` holders whose leases end at one deadline, and `--clients`
//! waiters that fit only once they did. Measures each waiter's grant against the deadline.
//!
//! Not for the lateness of one expiry on an otherwise idle server: that is `expiry-latency`
//! (`latency.rs`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::args::Options;
use crate::http::{Client, Response, Target, encode, wire_duration};
use crate::peers::{make_peers, remainder, remove_peers};
use crate::report::{Errors, ResultLine};
use crate::stats::{Stats, nanos, signed_nanos};

use super::backoff::Backoff;
use super::{Gate, LONG_LEASE, spawn_small, wait_ready};

/// `--peers` holders each take 1 of a semaphore and are then given one common deadline;
/// `--clients` waiters long poll for `peers / clients` each, which fits only once the holders
/// expired. Measured: each waiter's grant against the deadline.
pub fn mass_expiry(
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
                let mut backoff = Backoff::new(options.backoff, options.backoff_max);
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
    let before = late.sorted().iter().filter(|&&late| late < 0).count();
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
