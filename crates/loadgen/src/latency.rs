//! The latency scenarios, one event at a time: `release-latency` (from sending a release to
//! the long-polling waiter reading its 200) and `expiry-latency` (from a holder's lease running
//! out to the waiter reading its 200), each `--repeat` times.
//!
//! Not for throughput (`throughput.rs`): the events are spaced out so that each is measured on
//! an otherwise idle server.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use crate::args::Options;
use crate::http::{Client, IO_TIMEOUT, Target, encode, wire_duration};
use crate::report::ResultLine;
use crate::stats::{Stats, nanos, signed_nanos};

/// Polls `GET /peers/{peer}/is_acquired` until the server reports the peer's lock pending, which
/// means its long poll has been registered (and, on this server, is waiting).
fn wait_until_pending(client: &mut Client, peer: u64, limit: Duration) -> Result<(), String> {
    let path = format!("/peers/{peer}/is_acquired");
    let until = Instant::now() + limit;
    loop {
        let response = client.expect("GET", &path, "", &[200])?;
        if response.text() == "false" {
            return Ok(());
        }
        if Instant::now() > until {
            return Err(format!("peer {peer} was never pending"));
        }
        thread::sleep(Duration::from_micros(200));
    }
}

/// A waiter thread: long polls when asked to, and reports the status and the instant it read
/// the answer.
struct Waiter {
    ask: mpsc::Sender<()>,
    answers: mpsc::Receiver<Result<(u16, Instant), String>>,
}

impl Waiter {
    fn spawn<'scope>(
        scope: &'scope thread::Scope<'scope, '_>,
        target: &'scope Target,
        path: String,
    ) -> Waiter {
        let (ask, asked) = mpsc::channel::<()>();
        let (answer, answers) = mpsc::channel();
        scope.spawn(move || {
            let mut client = Client::new(target);
            while asked.recv().is_ok() {
                let outcome = client
                    .expect("PUT", &path, "1", &[200, 202])
                    .map(|response| (response.status, Instant::now()));
                if answer.send(outcome).is_err() {
                    break;
                }
            }
        });
        Waiter { ask, answers }
    }

    fn long_poll(&self) {
        let _ = self.ask.send(());
    }

    fn answer(&self) -> Result<(u16, Instant), String> {
        self.answers
            .recv_timeout(IO_TIMEOUT)
            .map_err(|_| "the waiter did not answer".to_owned())?
    }
}

/// Release → waiter's 200, `--repeat` times on one mutex.
pub fn release_latency(
    target: &Target,
    options: &Options,
    result: &mut ResultLine,
) -> Result<(), String> {
    let semaphore = encode(&options.semaphore);
    let lease = Duration::from_secs(300);
    let mut holder_client = Client::new(target);
    let holder = holder_client.new_peer(lease)?;
    let waiter_peer = holder_client.new_peer(lease)?;
    let holder_path = format!("/peers/{holder}/{semaphore}");
    let waiter_lock = format!("/peers/{waiter_peer}/{semaphore}");
    let waiter_path = format!(
        "{waiter_lock}?block_for={}",
        wire_duration(options.block_for)
    );
    let mut samples = Vec::with_capacity(options.repeat);
    let outcome = thread::scope(|scope| -> Result<(), String> {
        let waiter = Waiter::spawn(scope, target, waiter_path);
        for _ in 0..options.repeat {
            holder_client.expect("PUT", &holder_path, "1", &[200])?;
            waiter.long_poll();
            wait_until_pending(&mut holder_client, waiter_peer, Duration::from_secs(5))?;
            // Give the long poll time to go to sleep on the server.
            thread::sleep(Duration::from_millis(1));
            let released = Instant::now();
            holder_client.expect("DELETE", &holder_path, "", &[200])?;
            let (status, answered) = waiter.answer()?;
            if status != 200 {
                return Err(format!("the waiter got {status} instead of 200"));
            }
            samples.push(signed_nanos(answered, released));
            holder_client.expect("DELETE", &waiter_lock, "", &[200])?;
        }
        Ok(())
    });
    let _ = holder_client.remove_peer(holder);
    let _ = holder_client.remove_peer(waiter_peer);
    outcome?;
    let stats = Stats::new(samples);
    println!(
        "release-latency over {} releases of {:?}: from sending the release to the waiter reading its 200",
        stats.count(),
        options.semaphore
    );
    println!(
        "  p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
        stats.ms(0.5),
        stats.ms(0.99),
        stats.max_ms()
    );
    result
        .add("samples", stats.count())
        .ms("p50_ms", stats.ms(0.5))
        .ms("p99_ms", stats.ms(0.99))
        .ms("max_ms", stats.max_ms())
        .add("errors", 0);
    Ok(())
}

/// Holder's deadline → waiter's 200, `--repeat` samples over `--parallel` lanes.
///
/// The server sets the holder's deadline to (the instant it handles the acquire) + expires_in.
/// That instant lies between sending the acquire and reading its answer, so the deadline is
/// estimated as (answer read) + expires_in, its latest possible value: the lateness measured
/// against it is a lower bound, and the true lateness is at most one acquire round trip more
/// (the round trips are reported as `acquire_rtt`).
pub fn expiry_latency(
    target: &Target,
    options: &Options,
    result: &mut ResultLine,
) -> Result<(), String> {
    let lanes = options.parallel.min(options.repeat.max(1));
    let next = AtomicUsize::new(0);
    let lease = Duration::from_secs(300);
    type Sample = (i64, i64);
    let outcome: Result<Vec<Sample>, String> = thread::scope(|scope| {
        let handles: Vec<_> = (0..lanes)
            .map(|lane| {
                let next = &next;
                scope.spawn(move || -> Result<Vec<Sample>, String> {
                    let semaphore = encode(&format!("{}-{lane}", options.semaphore));
                    let mut client = Client::new(target);
                    let waiter_peer = client.new_peer(lease)?;
                    let waiter_lock = format!("/peers/{waiter_peer}/{semaphore}");
                    let waiter_path = format!(
                        "{waiter_lock}?block_for={}",
                        wire_duration(options.block_for)
                    );
                    let mut samples = Vec::new();
                    let lane_outcome = thread::scope(|inner| -> Result<(), String> {
                        let waiter = Waiter::spawn(inner, target, waiter_path);
                        while next.fetch_add(1, Ordering::Relaxed) < options.repeat {
                            let holder = client.new_peer(options.expires_in)?;
                            let asked = Instant::now();
                            client.expect(
                                "PUT",
                                &format!(
                                    "/peers/{holder}/{semaphore}?expires_in={}",
                                    wire_duration(options.expires_in)
                                ),
                                "1",
                                &[200],
                            )?;
                            let acquired = Instant::now();
                            let deadline = acquired + options.expires_in;
                            waiter.long_poll();
                            wait_until_pending(&mut client, waiter_peer, options.expires_in)?;
                            if Instant::now() >= deadline {
                                return Err("the waiter was not pending before the deadline; \
                                     use a longer --expires-in"
                                    .into());
                            }
                            let (status, answered) = waiter.answer()?;
                            if status != 200 {
                                return Err(format!("the waiter got {status} instead of 200"));
                            }
                            samples
                                .push((signed_nanos(answered, deadline), nanos(acquired - asked)));
                            client.expect("DELETE", &waiter_lock, "", &[200])?;
                        }
                        Ok(())
                    });
                    let _ = client.remove_peer(waiter_peer);
                    lane_outcome.map(|()| samples)
                })
            })
            .collect();
        let mut all = Vec::new();
        for handle in handles {
            all.extend(handle.join().expect("lane panicked")?);
        }
        Ok(all)
    });
    let samples = outcome?;
    let late = Stats::new(samples.iter().map(|&(late, _)| late).collect());
    let rtt = Stats::new(samples.iter().map(|&(_, rtt)| rtt).collect());
    println!(
        "expiry-latency over {} expiries ({} lanes, expires_in {} ms): from the holder's deadline \
         (its acquire's answer + expires_in) to the waiter reading its 200",
        late.count(),
        lanes,
        options.expires_in.as_millis()
    );
    println!(
        "  p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms (negative: granted before the estimate)",
        late.ms(0.5),
        late.ms(0.99),
        late.max_ms()
    );
    println!(
        "  the server's deadline is earlier by at most the acquire round trip: p50 {:.3} ms, \
         p99 {:.3} ms, max {:.3} ms",
        rtt.ms(0.5),
        rtt.ms(0.99),
        rtt.max_ms()
    );
    result
        .add("samples", late.count())
        .add("lanes", lanes)
        .ms("p50_ms", late.ms(0.5))
        .ms("p99_ms", late.ms(0.99))
        .ms("max_ms", late.max_ms())
        .ms("rtt_p99_ms", rtt.ms(0.99))
        .add("errors", 0);
    Ok(())
}
