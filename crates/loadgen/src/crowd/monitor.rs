//! What the crowd scenarios watch besides their own requests: the server's peak memory and
//! threads (sampled every 100 ms), its CPU time, and the load generator's own CPU time, so
//! that a figure that measures the load generator rather than the server shows.
//!
//! Readings come from `process.rs`; a server on another host, or no `--cost-pid`/`--rss-pid`,
//! leaves them out.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::args::Options;
use crate::process::{cpu_time, memory_and_threads, rss_kb};
use crate::report::ResultLine;

/// Samples the server's memory and threads every 100 ms during a scenario and measures its and
/// the load generator's CPU time. The server is `--cost-pid`, else `--rss-pid`.
pub struct Monitor {
    pid: Option<u32>,
    started: Instant,
    server_cpu: Option<Duration>,
    own_cpu: Option<Duration>,
    rss_before: Option<u64>,
    peaks: Arc<(AtomicU64, AtomicU64, AtomicBool)>,
    sampler: Option<thread::JoinHandle<()>>,
}

/// What [`Monitor`] saw.
pub struct Watched {
    elapsed: Duration,
    server_cpu: Option<Duration>,
    own_cpu: Option<Duration>,
    pub rss_before: Option<u64>,
    pub rss_peak: Option<u64>,
    threads_peak: Option<u64>,
}

impl Monitor {
    /// Starts watching the server (`--cost-pid`, else `--rss-pid`) and this process.
    pub fn start(options: &Options) -> Monitor {
        let pid = options.cost_pid.or(options.rss_pid);
        let peaks = Arc::new((AtomicU64::new(0), AtomicU64::new(0), AtomicBool::new(false)));
        let sampler = pid.map(|pid| {
            let peaks = peaks.clone();
            thread::spawn(move || {
                while !peaks.2.load(Ordering::SeqCst) {
                    if let Some((rss, threads)) = memory_and_threads(pid) {
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

    /// Stops the sampling; what was seen since [`Monitor::start`].
    pub fn finish(mut self) -> Watched {
        let elapsed = self.started.elapsed();
        let server_cpu = self.pid.and_then(cpu_time);
        let own_cpu = cpu_time(std::process::id());
        if let Some((rss, threads)) = self.pid.and_then(memory_and_threads) {
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

    /// Prints the figures, per `unit` of the scenario's `operations`.
    pub fn print(&self, operations: usize, unit: &str) {
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

    /// Adds the figures to the `result` line.
    pub fn add_to(&self, result: &mut ResultLine, operations: usize) {
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
