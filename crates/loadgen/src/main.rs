//! Load generator for Throttle and any server with the same HTTP API (Throttle 0.5 included),
//! run by `scripts/bench` and `scripts/crowd`.
//!
//! ```text
//! cargo run --release -p throttle-loadgen -- --url http://127.0.0.1:8000 --scenario cycle \
//!     --clients 16 --duration 5s [--preload 100000]
//! ```
//!
//! Every scenario prints a few human-readable lines and one last line starting with `result `
//! made of `key=value` pairs, which the scripts read; `docs/benchmark.md` explains every
//! scenario and how to read the figures. It uses std threads and its own small HTTP/1.1 client
//! (`http.rs`), so it measures the server and not an HTTP library.
//!
//! This file only dispatches: the command line is `args.rs`; the closed-loop throughput
//! scenarios `throughput.rs`; the release and expiry latencies `latency.rs`; the server's start
//! `startup.rs`; the crowds of hundreds to thousands of clients `crowd/`; bulk peers (`--preload`)
//! `peers.rs`; statistics `stats.rs`; the `result` line `report.rs`; readings of `/proc`
//! `process.rs`; etcd's lock cycle `etcd.rs`; a cluster's failover `failover.rs`; the disk's
//! fsync `fsync.rs`.
//!
//! Exit status: 0 when the scenario ran (its figures may still count errors, which the scripts
//! check), 1 when it could not run or no operation succeeded, 2 for a bad command line.

mod args;
mod crowd;
mod etcd;
mod failover;
mod fsync;
mod http;
mod latency;
mod peers;
mod process;
mod report;
mod startup;
mod stats;
mod throughput;

use std::process::ExitCode;
use std::time::Instant;

use args::{Command, Options, Scenario};
use http::{Target, encode};
use report::ResultLine;

fn main() -> ExitCode {
    let options = match args::parse(std::env::args_os().skip(1)) {
        Ok(Command::Run(options)) => options,
        Ok(Command::Help) => {
            print!("{}", args::USAGE);
            return ExitCode::SUCCESS;
        }
        Err(error) => {
            eprintln!("loadgen: {error} (try --help)");
            return ExitCode::from(2);
        }
    };
    match run(&options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("loadgen: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the scenario between the preload and its removal, then prints the `result` line.
fn run(options: &Options) -> Result<(), String> {
    match options.scenario {
        Scenario::Startup => return startup::startup(options),
        Scenario::Fsync => return fsync::fsync(options),
        _ => {}
    }
    let targets = options
        .urls
        .iter()
        .map(|url| Target::parse(url))
        .collect::<Result<Vec<_>, _>>()?;
    let target = targets.first().ok_or("missing --url")?;
    if options.scenario == Scenario::Failover {
        return failover::failover(&targets, options);
    }
    let mut result = ResultLine::new(options.scenario);
    let preloaded = if options.preload > 0 {
        let started = Instant::now();
        let peers = peers::make_peers(
            target,
            options.preload,
            options.preload_connections,
            options.preload_expires_in,
            Some(&encode(&options.preload_semaphore)),
        )
        .map_err(|error| format!("preload: {error}"))?;
        let took = started.elapsed();
        println!(
            "preloaded {} peers holding 1 of {:?} each in {:.2} s ({:.0} peers/s)",
            peers.len(),
            options.preload_semaphore,
            took.as_secs_f64(),
            peers.len() as f64 / took.as_secs_f64()
        );
        result
            .add("preload", peers.len())
            .add("preload_s", format!("{:.2}", took.as_secs_f64()));
        peers
    } else {
        Vec::new()
    };

    let outcome = match options.scenario {
        Scenario::Health
        | Scenario::Cycle
        | Scenario::Contended
        | Scenario::Heartbeat
        | Scenario::EtcdLock => throughput::throughput(&targets, options, &mut result),
        Scenario::ReleaseLatency => latency::release_latency(target, options, &mut result),
        Scenario::ExpiryLatency => latency::expiry_latency(target, options, &mut result),
        Scenario::Waiters => crowd::waiters(target, options, &mut result),
        Scenario::Idle => crowd::idle(target, options, &mut result),
        Scenario::Slowloris => crowd::slowloris(target, options, &mut result),
        Scenario::MassExpiry => crowd::mass_expiry(target, options, &mut result),
        Scenario::PeersListing => crowd::peers_listing(target, options, &mut result),
        Scenario::Startup | Scenario::Fsync | Scenario::Failover => unreachable!("run above"),
    };

    if let Some(pid) = options.rss_pid {
        match process::rss_kb(pid) {
            Some(kb) => {
                println!("server VmRSS: {kb} kB");
                result.add("rss_kb", kb);
            }
            None => eprintln!("loadgen: cannot read VmRSS of process {pid}"),
        }
    }
    if !preloaded.is_empty() && !options.keep_preload {
        let started = Instant::now();
        peers::remove_peers(target, options.preload_connections, &preloaded)?;
        println!(
            "removed the preloaded peers in {:.2} s",
            started.elapsed().as_secs_f64()
        );
    }
    outcome?;
    println!("{}", result.as_str());
    Ok(())
}
