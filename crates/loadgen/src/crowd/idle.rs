//! The `idle` crowd: thousands of keep-alive clients, each creating its peer and then sending
//! one heartbeat a second. Measures which requests fail and how (refused, closed, reset, timed
//! out, a status), the latency, and the server's memory per client.
//!
//! Not for throughput: each client sends one request a second, so the load is the open
//! connections, not the requests.

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::args::Options;
use crate::http::{Client, Target, wire_duration};
use crate::report::{Errors, ResultLine};
use crate::stats::{Stats, nanos};

use super::monitor::Monitor;
use super::{Gate, spawn_small, wait_ready};

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
pub fn idle(target: &Target, options: &Options, result: &mut ResultLine) -> Result<(), String> {
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
        connects.count(),
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
        .add("connects", connects.count())
        .ms("connect_p99_ms", connects.ms(0.99))
        .ms("connect_max_ms", connects.max_ms())
        .ms("p50_ms", latency.ms(0.5))
        .ms("p99_ms", latency.ms(0.99))
        .ms("max_ms", latency.max_ms())
        .ms("lag_p99_ms", lag.ms(0.99));
    watched.add_to(result, tally.ok);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_are_counted_by_kind() {
        let mut tally = Tally::default();
        for status in [200, 200, 404, 503, 302] {
            tally.status(status);
        }
        for (kind, message) in [
            (io::ErrorKind::ConnectionRefused, "refused"),
            (io::ErrorKind::ConnectionReset, "reset"),
            (io::ErrorKind::BrokenPipe, "pipe"),
            (io::ErrorKind::UnexpectedEof, "eof"),
            (io::ErrorKind::WouldBlock, "slow"),
            (io::ErrorKind::TimedOut, "slow"),
            (
                io::ErrorKind::InvalidData,
                "connection closed in the headers",
            ),
            (io::ErrorKind::InvalidData, "bad status line"),
        ] {
            tally.io(&io::Error::new(kind, message));
        }
        assert_eq!(tally.ok, 2);
        assert_eq!(
            (tally.status_4xx, tally.status_5xx, tally.status_other),
            (1, 1, 1)
        );
        assert_eq!((tally.refused, tally.reset, tally.closed), (1, 2, 2));
        assert_eq!((tally.timeout, tally.other_io), (2, 1));
        assert_eq!(tally.errors(), 11);
        assert_eq!(
            tally.describe(),
            "1 refused, 2 closed by the server, 2 reset, 2 timed out, 1 other I/O, 1 4xx, \
             1 5xx, 1 other status"
        );
        let mut sum = Tally::default();
        sum.add(&tally);
        sum.add(&tally);
        assert_eq!((sum.ok, sum.errors()), (4, 22));
        assert_eq!(Tally::default().describe(), "none");
    }
}
