//! The closed-loop throughput scenarios: `health` (`GET /health`), `cycle` (new peer, acquire
//! 1, remove the peer), `contended` (the same on a semaphore smaller than the clients, asking
//! again while the answer is 202), `heartbeat` (`PUT /peers/{id}` on one peer per client) and
//! `etcd-lock` (etcd's lock cycle, `etcd.rs`, for comparison).
//! Each client runs one operation after the other for `--duration`; reported are the rate, the
//! latency percentiles per operation and, with `--cost-pid`, the server's CPU time and context
//! switches per request. With several `--url`s (the members of a cluster) client i talks to the
//! i-th one, round robin.
//!
//! Not for latencies of one event (`latency.rs`) nor for crowds of clients (`crowd/`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Barrier, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use crate::args::{Options, Scenario};
use crate::etcd;
use crate::http::{Client, Target, encode, wire_duration};
use crate::process::process_cost;
use crate::report::{Errors, ResultLine};
use crate::stats::{Stats, nanos};

/// The closed-loop scenarios: every client runs one operation after the other for `--duration`.
pub fn throughput(
    targets: &[Target],
    options: &Options,
    result: &mut ResultLine,
) -> Result<(), String> {
    let scenario = options.scenario;
    let ready = Barrier::new(options.clients + 1);
    let go = Barrier::new(options.clients + 1);
    let start: OnceLock<Instant> = OnceLock::new();
    let errors = Errors::default();
    let retries = AtomicUsize::new(0);
    let semaphore = encode(&options.semaphore);
    let acquire_query = match scenario {
        Scenario::Contended => format!("?block_for={}", wire_duration(options.block_for)),
        _ => String::new(),
    };
    let lease = Duration::from_secs(300);
    let heartbeat_body = format!(r#"{{"expires_in":"{}"}}"#, wire_duration(lease));
    let etcd_ttl = options.lease.as_secs().max(1);
    let (ready, go, start, errors, retries) = (&ready, &go, &start, &errors, &retries);
    let (semaphore, acquire_query, heartbeat_body) = (&semaphore, &acquire_query, &heartbeat_body);

    let mut cost_before = None;
    let per_client: Vec<(Vec<i64>, Instant)> = thread::scope(|scope| {
        let clients: Vec<_> = (0..options.clients)
            .map(|index| {
                let target = &targets[index % targets.len()];
                let etcd_name = etcd::base64(format!("{}-{index}", options.semaphore).as_bytes());
                scope.spawn(move || {
                    let mut client = Client::new(target);
                    // Set up outside the measured time: connect, and the heartbeat's peer.
                    let setup = match scenario {
                        Scenario::Heartbeat => client.new_peer(lease).map(Some),
                        _ => client.connect().map(|_| None).map_err(|e| e.to_string()),
                    };
                    let own_peer = match setup {
                        Ok(peer) => peer,
                        Err(error) => {
                            errors.record(format!("setup: {error}"));
                            None
                        }
                    };
                    ready.wait();
                    go.wait();
                    let start = *start.get().expect("set before go");
                    let deadline = start + options.duration;
                    let mut latencies = Vec::with_capacity(1 << 16);
                    let mut last = start;
                    loop {
                        let began = Instant::now();
                        if began >= deadline {
                            break;
                        }
                        let outcome = match scenario {
                            Scenario::Health => {
                                client.expect("GET", "/health", "", &[200]).map(drop)
                            }
                            Scenario::Cycle | Scenario::Contended => cycle(
                                &mut client,
                                semaphore,
                                acquire_query,
                                options.block_for,
                                lease,
                                retries,
                            ),
                            Scenario::EtcdLock => {
                                etcd::lock_cycle(&mut client, &etcd_name, etcd_ttl)
                            }
                            Scenario::Heartbeat => match own_peer {
                                Some(peer) => client
                                    .expect(
                                        "PUT",
                                        &format!("/peers/{peer}"),
                                        heartbeat_body,
                                        &[200],
                                    )
                                    .map(drop),
                                None => Err("no peer to heartbeat".to_owned()),
                            },
                            _ => unreachable!("not a throughput scenario"),
                        };
                        last = Instant::now();
                        match outcome {
                            Ok(()) => latencies.push(nanos(last - began)),
                            Err(error) => {
                                errors.record(error);
                                // Don't spin on a server that refuses.
                                thread::sleep(Duration::from_millis(1));
                            }
                        }
                    }
                    if let Some(peer) = own_peer {
                        let _ = client.remove_peer(peer);
                    }
                    (latencies, last)
                })
            })
            .collect();
        ready.wait();
        cost_before = options.cost_pid.and_then(process_cost);
        start.set(Instant::now()).expect("set once");
        go.wait();
        clients
            .into_iter()
            .map(|client| client.join().expect("client thread panicked"))
            .collect()
    });
    let cost_after = options.cost_pid.and_then(process_cost);

    let start = *start.get().expect("set above");
    // A client is stalled if one of its operations took more than half the run: the server left
    // its connection unserved (rather than being slow for everyone).
    let stalled = per_client
        .iter()
        .filter(|(latencies, _)| {
            latencies.is_empty() || latencies.iter().any(|&l| l > nanos(options.duration / 2))
        })
        .count();
    let min_client_ops = per_client.iter().map(|(l, _)| l.len()).min().unwrap_or(0);
    let end = per_client
        .iter()
        .map(|(_, last)| *last)
        .max()
        .unwrap_or(start);
    let elapsed = (end - start).as_secs_f64().max(1e-9);
    let samples: Vec<i64> = per_client.into_iter().flat_map(|(l, _)| l).collect();
    let operations = samples.len();
    let stats = Stats::new(samples);
    let rate = operations as f64 / elapsed;
    let (unit, requests_per_op) = match scenario {
        Scenario::Cycle | Scenario::Contended => ("cycles/s", 3.0),
        Scenario::EtcdLock => ("cycles/s", 4.0),
        _ => ("requests/s", 1.0),
    };
    errors.report();
    println!(
        "{} with {} clients for {:.2} s against {}",
        scenario.name(),
        options.clients,
        elapsed,
        targets
            .iter()
            .map(|target| target.host.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "  {operations} operations, {rate:.0} {unit}{}, {} errors",
        if requests_per_op > 1.0 {
            format!(" ({:.0} requests/s)", rate * requests_per_op)
        } else {
            String::new()
        },
        errors.count()
    );
    if stalled > 0 {
        println!(
            "  {stalled} of {} clients stalled: one operation took more than half the run \
             (fewest operations of a client: {min_client_ops})",
            options.clients
        );
    }
    if scenario == Scenario::Contended {
        println!(
            "  {} acquire requests answered 202 and asked again",
            retries.load(Ordering::Relaxed)
        );
    }
    println!(
        "  latency per {}: p50 {:.3} ms, p99 {:.3} ms, p99.9 {:.3} ms, max {:.3} ms",
        if requests_per_op > 1.0 {
            "cycle"
        } else {
            "request"
        },
        stats.ms(0.5),
        stats.ms(0.99),
        stats.ms(0.999),
        stats.max_ms()
    );
    if let Some(pid) = options.cost_pid {
        match (cost_before, cost_after) {
            (Some(before), Some(after)) => {
                let requests =
                    operations as f64 * requests_per_op + retries.load(Ordering::Relaxed) as f64;
                let requests = requests.max(1.0);
                let cpu_us = (after.cpu.saturating_sub(before.cpu)).as_secs_f64() * 1e6 / requests;
                let switches = after.switches_since(&before) as f64 / requests;
                println!(
                    "  server (pid {pid}) per request: {cpu_us:.1} µs CPU, {switches:.2} context switches"
                );
                result
                    .add("server_cpu_us", format!("{cpu_us:.2}"))
                    .add("server_switches", format!("{switches:.3}"));
            }
            _ => eprintln!("loadgen: cannot read the CPU time of process {pid}"),
        }
    }
    result
        .add("clients", options.clients)
        .add("ops", operations)
        .add("rate", format!("{rate:.1}"))
        .add("unit", unit)
        .ms("p50_ms", stats.ms(0.5))
        .ms("p99_ms", stats.ms(0.99))
        .ms("p999_ms", stats.ms(0.999))
        .ms("max_ms", stats.max_ms())
        .add("errors", errors.count())
        .add("retries", retries.load(Ordering::Relaxed))
        .add("stalled", stalled)
        .add("min_client_ops", min_client_ops);
    if operations == 0 {
        return Err("no operation succeeded".into());
    }
    Ok(())
}

/// One cycle: new peer, acquire 1 (asking again while 202), remove the peer.
fn cycle(
    client: &mut Client,
    semaphore: &str,
    acquire_query: &str,
    block_for: Duration,
    lease: Duration,
    retries: &AtomicUsize,
) -> Result<(), String> {
    let peer = client.new_peer(lease)?;
    let path = format!("/peers/{peer}/{semaphore}{acquire_query}");
    let acquired = loop {
        let asked = Instant::now();
        match client.expect("PUT", &path, "1", &[200, 202]) {
            Ok(response) if response.status == 200 => break Ok(()),
            Ok(_) if acquire_query.is_empty() => {
                break Err(format!("PUT {path}: 202 without block_for"));
            }
            Ok(_) => {
                retries.fetch_add(1, Ordering::Relaxed);
                // A 202 long before block_for means the server had no long-poll slot: back off.
                if asked.elapsed() < block_for / 2 {
                    thread::sleep(Duration::from_millis(1));
                }
            }
            Err(error) => break Err(error),
        }
    };
    let removed = client.remove_peer(peer);
    acquired.and(removed)
}
