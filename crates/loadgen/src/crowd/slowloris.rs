//! The `slowloris` crowd: connections that send part of a request head and then nothing, while
//! a fresh client every 100-200 ms tries to get a lock within `--budget`. Measures the probes
//! and how the server ended the slow connections (408, a silent close, still open).
//!
//! It measures the server's defence, not its speed: a probe's time only matters against
//! `--budget`.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::args::Options;
use crate::http::{Client, Target, encode};
use crate::report::ResultLine;
use crate::stats::{Stats, nanos};

use super::backoff::Rng;
use super::monitor::{Monitor, Watched};
use super::{spawn_small, wait_ready};

/// What the slow connections send of, `--bytes` at most: a head that never ends.
const SLOW_HEAD: &[u8] = b"PUT /peers/1/big HTTP/1.1\r\nHost: x\r\n";

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
pub fn slowloris(
    target: &Target,
    options: &Options,
    result: &mut ResultLine,
) -> Result<(), String> {
    let n = options.clients;
    let head = &SLOW_HEAD[..options.bytes.min(SLOW_HEAD.len())];
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
        answered_408.count(),
        answered_408.ms(0.5),
        answered_408.max_ms(),
        closed.count(),
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
        .add("answered_408", answered_408.count())
        .ms("answered_408_p50_ms", answered_408.ms(0.5))
        .add("closed", closed.count())
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
            Ok(read) => End::Answered(status_of(&buffer[..read])),
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

/// The status of an answer from its first bytes; 0 if they are not an HTTP status line.
fn status_of(answer: &[u8]) -> u16 {
    String::from_utf8_lossy(answer)
        .strip_prefix("HTTP/")
        .and_then(|rest| rest.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .unwrap_or(0)
}

/// A fresh client: new_peer, acquire 1, remove the peer (which releases the lock).
fn probe(target: &Target, semaphore: &str) -> Result<(), String> {
    let mut client = Client::with(target, Duration::from_secs(10), 1024);
    let peer = client.new_peer(Duration::from_secs(60))?;
    client.expect("PUT", &format!("/peers/{peer}/{semaphore}"), "1", &[200])?;
    client.remove_peer(peer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_of_the_first_bytes_of_an_answer() {
        assert_eq!(
            status_of(b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\n"),
            408
        );
        assert_eq!(status_of(b"HTTP/1.0 400 Bad Request\r\n"), 400);
        assert_eq!(status_of(b"HTTP/1.1 40"), 40);
        assert_eq!(status_of(b"HTTP/1.1"), 0);
        assert_eq!(status_of(b"SSH-2.0\r\n"), 0);
        assert_eq!(status_of(b""), 0);
    }
}
