//! The `failover` scenario: a cluster loses its leader to kill -9, `--repeat` times, while
//! `--clients` clients cycle on a mutex through every member; measured is the time from each
//! kill to the next grant, and checked that no acknowledged grant was lost.
//!
//! The load generator runs the members itself, so that it can kill and restart them: member i
//! (from 1) runs `--server-bin --configuration throttle.toml` in `--dir`/i, serving the i-th
//! `--url` (its port), its stderr appended to `throttle.log` there and its process id written to
//! `throttle.pid` (for the calling script's cleanup). The configurations, with the `[cluster]`
//! table and the semaphores `SEMAPHORE` (1), `SEMAPHORE-witness` (1) and `SEMAPHORE-probe`
//! (never full), are the caller's (`scripts/failover` writes them).
//!
//! Each round: wait until every member is up, names the same leader and has applied what the
//! leader had committed, and the clients had grants since; a witness peer acquires the witness
//! semaphore through the leader; kill -9 of the leader as soon as that is acknowledged; probe
//! for the first grant of a request sent after the kill (`probe`), and wait for the clients'
//! first such grant (`next_grant`); check through a survivor that the witness still holds its
//! lock and that nobody else gets it; start the killed member again in its directory.
//!
//! Each client: new peer, acquire the mutex (long polls of `--block-for`), hold it for
//! `--hold`, remove the peer; on an error (a dead member, `503 No quorum`) it removes its peer
//! through the next member and goes on there. Its grants are kept with the instant the 200 was
//! read, the fencing token and the instant the release was sent: a correct cluster gives
//! intervals [answer read, release sent] that never overlap, and tokens that grow in that
//! order. A grant lost by a failover shows as an overlap (or a witness no longer holding).
//!
//! Not for throughput (the clients contend on one mutex) nor for pauses or partitions.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use crate::args::{Options, Scenario};
use crate::http::{Client, Target, encode, wire_duration};
use crate::report::{Errors, ResultLine};
use crate::stats::{Stats, nanos};

/// How long a member may take to start, to agree on a leader and to catch up.
const SETTLE_LIMIT: Duration = Duration::from_secs(60);
/// How long after a kill a grant must come for the run to go on.
const GRANT_LIMIT: Duration = Duration::from_secs(30);
/// How often a new probe attempt starts after a kill.
const PROBE_EVERY: Duration = Duration::from_millis(50);
/// A failover slower than this shows the probe's failed attempts.
const SLOW_FAILOVER: Duration = Duration::from_millis(1500);
/// The I/O timeout of the clients: longer than a long poll, short enough to leave a member that
/// hangs.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);

/// One acknowledged grant of the mutex.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    /// When the client sent the acquire that was answered 200.
    pub sent: Instant,
    /// When the client read the 200.
    pub acked: Instant,
    /// When the client sent the release (its peer's removal).
    pub released: Instant,
    pub token: u64,
    /// The member (from 0) that answered the 200.
    pub member: usize,
}

/// What a member says of its cluster in `/status.json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClusterStatus {
    pub leader: Option<u64>,
    pub commit: u64,
    pub applied: u64,
}

/// Reads `cluster` of a member's `/status.json`.
pub fn parse_cluster_status(body: &[u8]) -> Result<ClusterStatus, String> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("/status.json: {e}"))?;
    let cluster = value
        .get("cluster")
        .filter(|cluster| cluster.is_object())
        .ok_or("/status.json has no cluster: is this a member?")?;
    let number = |name: &str| {
        cluster
            .get(name)
            .and_then(serde_json::Value::as_u64)
            .ok_or_else(|| format!("/status.json: no cluster.{name}"))
    };
    Ok(ClusterStatus {
        leader: cluster.get("leader").and_then(serde_json::Value::as_u64),
        commit: number("commit")?,
        applied: number("applied")?,
    })
}

/// The first grant of an acquire sent after `killed_at` and answered by a member other than
/// `killed`. An acquire sent before the kill may have been decided by the killed leader and
/// be read after the kill (relayed by a follower, say); it is not a grant of the new leader.
pub fn next_grant(grants: &[Grant], killed_at: Instant, killed: usize) -> Option<Instant> {
    grants
        .iter()
        .filter(|grant| grant.sent > killed_at && grant.member != killed)
        .map(|grant| grant.acked)
        .min()
}

/// What the ledger of grants shows, in the order the answers were read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Ledger {
    /// Grants read while an earlier grant's release had not been sent yet: the mutex held twice.
    pub overlaps: usize,
    /// Grants whose fencing token is not larger than every earlier one's.
    pub inversions: usize,
}

/// Checks the grants of one mutex (in any order).
pub fn check_ledger(grants: &[Grant]) -> Ledger {
    let mut sorted = grants.to_vec();
    sorted.sort_by_key(|grant| grant.acked);
    let mut ledger = Ledger::default();
    let mut held_until: Option<Instant> = None;
    let mut largest_token: Option<u64> = None;
    for grant in &sorted {
        if held_until.is_some_and(|until| grant.acked < until) {
            ledger.overlaps += 1;
        }
        if largest_token.is_some_and(|largest| grant.token <= largest) {
            ledger.inversions += 1;
        }
        held_until = held_until.max(Some(grant.released));
        largest_token = largest_token.max(Some(grant.token));
    }
    ledger
}

/// The longest time between two consecutive grants that has no kill in it, and when it
/// began: a stall the kills do not explain (a restarted member disturbing the cluster, say).
pub fn longest_other_gap(grants: &[Grant], kills: &[Instant]) -> Option<(Instant, Duration)> {
    let mut acked: Vec<Instant> = grants.iter().map(|grant| grant.acked).collect();
    acked.sort();
    acked
        .windows(2)
        .filter(|pair| !kills.iter().any(|&kill| pair[0] <= kill && kill < pair[1]))
        .map(|pair| (pair[0], pair[1] - pair[0]))
        .max_by_key(|&(_, gap)| gap)
}

/// One member: its directory, its HTTP address, its process while it runs.
struct Member {
    dir: PathBuf,
    target: Target,
    port: u16,
    child: Option<Child>,
}

impl Member {
    fn start(&mut self, binary: &Path) -> Result<(), String> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("throttle.log"))
            .map_err(|e| format!("cannot open the log in {}: {e}", self.dir.display()))?;
        let child = Command::new(binary)
            .args(["--configuration", "throttle.toml", "--address", "127.0.0.1"])
            .args(["--port", &self.port.to_string()])
            .current_dir(&self.dir)
            .env_remove("THROTTLE_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
        let _ = std::fs::write(self.dir.join("throttle.pid"), child.id().to_string());
        self.child = Some(child);
        Ok(())
    }

    /// kill -9, and wait for the process to be gone.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn status(&self) -> Result<ClusterStatus, String> {
        let mut client = Client::with(&self.target, Duration::from_secs(1), 64 * 1024);
        let response = client.expect("GET", "/status.json", "", &[200])?;
        parse_cluster_status(&response.body)
    }
}

/// Waits until every member answers, names the same leader, and has applied what the leader
/// had committed when they first agreed; the leader's position (from 0).
fn settle(members: &[Member]) -> Result<usize, String> {
    let give_up = Instant::now() + SETTLE_LIMIT;
    let mut target: Option<(u64, u64)> = None;
    let mut last: String;
    loop {
        let statuses: Result<Vec<ClusterStatus>, String> =
            members.iter().map(Member::status).collect();
        match statuses {
            Ok(statuses) => {
                let leader = statuses[0].leader;
                match leader {
                    Some(leader)
                        if statuses.iter().all(|s| s.leader == Some(leader))
                            && (1..=members.len() as u64).contains(&leader) =>
                    {
                        let index = (leader - 1) as usize;
                        let commit = match target {
                            Some((same, commit)) if same == leader => commit,
                            _ => {
                                let commit = statuses[index].commit;
                                target = Some((leader, commit));
                                commit
                            }
                        };
                        if statuses.iter().all(|s| s.applied >= commit) {
                            return Ok(index);
                        }
                        last = format!("members catching up to {commit}: {statuses:?}");
                    }
                    _ => last = format!("no agreed leader: {statuses:?}"),
                }
            }
            Err(error) => last = error,
        }
        if Instant::now() > give_up {
            return Err(format!(
                "the cluster did not settle within {} s: {last}",
                SETTLE_LIMIT.as_secs()
            ));
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Removes `peer` through any member, starting at `first`, until one answers that it is gone
/// (200, or 400 for a peer it does not know) or `limit` has passed.
fn remove_anywhere(targets: &[Target], first: usize, peer: u64, limit: Duration) -> bool {
    let give_up = Instant::now() + limit;
    let path = format!("/peers/{peer}");
    for member in (first..).map(|i| i % targets.len()) {
        let mut client = Client::with(&targets[member], CLIENT_TIMEOUT, 4096);
        if let Ok(response) = client.request("DELETE", &path, "")
            && matches!(response.status, 200 | 400)
        {
            return true;
        }
        if Instant::now() > give_up {
            return false;
        }
        thread::sleep(Duration::from_millis(5));
    }
    unreachable!("the member cycle is endless")
}

/// Shared by the clients and the killer.
struct Shared<'a> {
    targets: &'a [Target],
    options: &'a Options,
    stop: AtomicBool,
    grants: Mutex<Vec<Grant>>,
    /// Requests that failed (expected around each kill).
    failures: AtomicUsize,
    /// Safety problems seen by the clients: a grant without a fencing token, a peer that could
    /// not be removed.
    problems: Errors,
}

/// One client's loop until `stop`.
fn client(shared: &Shared, index: usize) {
    let targets = shared.targets;
    let options = shared.options;
    let semaphore = encode(&options.semaphore);
    let mut member = index % targets.len();
    let mut client = Client::with(&targets[member], CLIENT_TIMEOUT, 16 * 1024);
    while !shared.stop.load(Ordering::Relaxed) {
        let outcome: Result<(), (Option<u64>, String)> = (|| {
            let peer = client.new_peer(options.lease).map_err(|e| (None, e))?;
            let path = format!(
                "/peers/{peer}/{semaphore}?block_for={}",
                wire_duration(options.block_for)
            );
            let (response, sent) = loop {
                if shared.stop.load(Ordering::Relaxed) {
                    return Err((Some(peer), String::new()));
                }
                let sent = Instant::now();
                let response = client
                    .expect("PUT", &path, "1", &[200, 202])
                    .map_err(|e| (Some(peer), e))?;
                if response.status == 200 {
                    break (response, sent);
                }
            };
            let acked = Instant::now();
            thread::sleep(options.hold);
            let released = Instant::now();
            match response.token {
                Some(token) => shared.grants.lock().expect("not poisoned").push(Grant {
                    sent,
                    acked,
                    released,
                    token,
                    member,
                }),
                None => shared.problems.record(format!(
                    "a grant by member {} without a fencing token",
                    member + 1
                )),
            }
            client.remove_peer(peer).map_err(|e| (Some(peer), e))
        })();
        if let Err((peer, error)) = outcome {
            if error.is_empty() {
                // Stopped while waiting.
                if let Some(peer) = peer {
                    remove_anywhere(targets, member, peer, GRANT_LIMIT);
                }
                break;
            }
            shared.failures.fetch_add(1, Ordering::Relaxed);
            member = (member + 1) % targets.len();
            client = Client::with(&targets[member], CLIENT_TIMEOUT, 16 * 1024);
            if let Some(peer) = peer
                && !remove_anywhere(targets, member, peer, GRANT_LIMIT)
            {
                shared
                    .problems
                    .record(format!("peer {peer} could not be removed: {error}"));
            }
            thread::sleep(Duration::from_millis(5));
        }
    }
}

/// The probes after a kill: every [`PROBE_EVERY`], a new attempt on its own connection (new
/// peer, acquire 1 of `SEMAPHORE-probe`, never full) through the next survivor that has no
/// attempt of the probe in flight, until one is granted; when its 200 was read. Attempts on
/// different members overlap, so that one stuck in a member does not hide that the other
/// would grant; one at a time per member, so that the probe takes at most one of a member's
/// worker threads. Also the failed attempts (ms since `killed_at`, member from 1, error).
fn probe(
    targets: &[Target],
    killed: usize,
    killed_at: Instant,
    semaphore: &str,
    lease: Duration,
) -> (Option<Instant>, Vec<String>) {
    let give_up = Instant::now() + GRANT_LIMIT;
    let survivors: Vec<usize> = (0..targets.len()).filter(|&i| i != killed).collect();
    let (report, reports) = mpsc::channel::<(usize, Result<Instant, String>)>();
    let mut failed = Vec::new();
    let mut busy = vec![false; targets.len()];
    for member in survivors.iter().cycle() {
        if busy[*member] {
            if let Ok((member, outcome)) = reports.recv_timeout(PROBE_EVERY) {
                busy[member] = false;
                match outcome {
                    Ok(read) => return (Some(read), failed),
                    Err(line) => failed.push(line),
                }
            }
            if Instant::now() > give_up {
                return (None, failed);
            }
            continue;
        }
        busy[*member] = true;
        let (target, all, report) = (targets[*member].clone(), targets.to_vec(), report.clone());
        let (member, semaphore) = (*member, semaphore.to_owned());
        // Detached: an attempt stuck in a member ends by itself within the client's timeout.
        thread::spawn(move || {
            let since = |at: Instant| (at - killed_at).as_secs_f64() * 1e3;
            let asked = Instant::now();
            let mut client = Client::with(&target, CLIENT_TIMEOUT, 4096);
            let outcome = client.new_peer(lease).and_then(|peer| {
                let granted =
                    client.expect("PUT", &format!("/peers/{peer}/{semaphore}"), "1", &[200]);
                let read = Instant::now();
                remove_anywhere(&all, member, peer, GRANT_LIMIT);
                granted.map(|_| read)
            });
            let _ = report.send((
                member,
                outcome.map_err(|error| {
                    format!(
                        "{:.0}-{:.0} ms: member {}: {error}",
                        since(asked),
                        since(Instant::now()),
                        member + 1
                    )
                }),
            ));
        });
        let next = Instant::now() + PROBE_EVERY;
        while let Ok((member, outcome)) =
            reports.recv_timeout(next.saturating_duration_since(Instant::now()))
        {
            busy[member] = false;
            match outcome {
                Ok(read) => return (Some(read), failed),
                Err(line) => failed.push(line),
            }
        }
        if Instant::now() > give_up {
            return (None, failed);
        }
    }
    unreachable!("the survivors cycle is endless")
}

/// The failed probe attempts (`START-END ms: member N: ERROR`) grouped by error: the first of
/// each with how many more failed alike, in the order they first appeared.
pub fn summarize_failures(failed: &[String]) -> Vec<String> {
    let mut groups: Vec<(&str, &str, usize)> = Vec::new();
    for line in failed {
        let error = line
            .split_once(": member ")
            .and_then(|(_, rest)| rest.split_once(": "))
            .map_or(line.as_str(), |(_, error)| error);
        match groups.iter_mut().find(|(_, seen, _)| *seen == error) {
            Some((_, _, more)) => *more += 1,
            None => groups.push((line, error, 0)),
        }
    }
    groups
        .into_iter()
        .map(|(first, _, more)| match more {
            0 => first.to_owned(),
            _ => format!("{first} (and {more} more like it)"),
        })
        .collect()
}

/// The witness: a peer holding `SEMAPHORE-witness`, acquired through `member` (the leader).
fn acquire_witness(target: &Target, semaphore: &str, lease: Duration) -> Result<u64, String> {
    let mut client = Client::with(target, CLIENT_TIMEOUT, 4096);
    let peer = client.new_peer(lease)?;
    client.expect("PUT", &format!("/peers/{peer}/{semaphore}"), "1", &[200])?;
    Ok(peer)
}

/// Through any survivor: the witness still holds its lock and a newcomer is not granted it.
/// Both peers are removed. `Ok(false)` when the lock was lost.
fn check_witness(
    targets: &[Target],
    killed: usize,
    witness: u64,
    semaphore: &str,
    lease: Duration,
) -> Result<bool, String> {
    let give_up = Instant::now() + GRANT_LIMIT;
    let survivors: Vec<usize> = (0..targets.len()).filter(|&i| i != killed).collect();
    let mut last: String;
    for member in survivors.iter().cycle() {
        let mut client = Client::with(&targets[*member], CLIENT_TIMEOUT, 4096);
        let checked = (|| -> Result<bool, String> {
            let held = client
                .expect("GET", &format!("/peers/{witness}/is_acquired"), "", &[200])?
                .text();
            let newcomer = client.new_peer(lease)?;
            let asked = client.expect(
                "PUT",
                &format!("/peers/{newcomer}/{semaphore}"),
                "1",
                &[200, 202],
            );
            remove_anywhere(targets, *member, newcomer, GRANT_LIMIT);
            Ok(held == "true" && asked?.status == 202)
        })();
        match checked {
            Ok(kept) => {
                remove_anywhere(targets, *member, witness, GRANT_LIMIT);
                return Ok(kept);
            }
            Err(error) => last = error,
        }
        if Instant::now() > give_up {
            return Err(format!("cannot check the witness: {last}"));
        }
        thread::sleep(Duration::from_millis(10));
    }
    unreachable!("the survivors cycle is endless")
}

/// The scenario; see the module's documentation.
pub fn failover(targets: &[Target], options: &Options) -> Result<(), String> {
    let binary = options
        .server_bin
        .as_deref()
        .ok_or("missing --server-bin")?;
    let binary = std::fs::canonicalize(binary).map_err(|e| format!("{binary}: {e}"))?;
    let dir = Path::new(options.dir.as_deref().ok_or("missing --dir")?);
    let mut members = targets
        .iter()
        .enumerate()
        .map(|(i, target)| {
            let member_dir = dir.join((i + 1).to_string());
            File::open(member_dir.join("throttle.toml"))
                .map_err(|e| format!("{}/throttle.toml: {e}", member_dir.display()))?;
            Ok(Member {
                dir: member_dir,
                target: target.clone(),
                port: target.address.port(),
                child: None,
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    let outcome = run(&binary, &mut members, targets, options);
    for member in &mut members {
        member.kill();
    }
    outcome
}

fn run(
    binary: &Path,
    members: &mut [Member],
    targets: &[Target],
    options: &Options,
) -> Result<(), String> {
    for member in members.iter_mut() {
        member.start(binary)?;
    }
    settle(members)?;
    let witness_semaphore = encode(&format!("{}-witness", options.semaphore));
    let probe_semaphore = encode(&format!("{}-probe", options.semaphore));
    let shared = Shared {
        targets,
        options,
        stop: AtomicBool::new(false),
        grants: Mutex::new(Vec::new()),
        failures: AtomicUsize::new(0),
        problems: Errors::default(),
    };
    let grants_so_far = || shared.grants.lock().expect("not poisoned").len();
    // Each kill: when, whom, and how long until the probe's grant.
    let mut kills: Vec<(Instant, usize, Option<Duration>)> = Vec::new();
    let mut restarts: Vec<Instant> = Vec::new();
    let mut witnesses_lost = 0;
    let mut client_times = Vec::new();
    let outcome = thread::scope(|scope| -> Result<(), String> {
        let clients: Vec<_> = (0..options.clients)
            .map(|index| {
                let shared = &shared;
                scope.spawn(move || client(shared, index))
            })
            .collect();
        let outcome = (|| -> Result<(), String> {
            for round in 1..=options.repeat {
                let leader = settle(members)?;
                // Grants flow again through the settled cluster before the next kill.
                let before = grants_so_far();
                let give_up = Instant::now() + GRANT_LIMIT;
                while grants_so_far() < before + options.clients {
                    if Instant::now() > give_up {
                        return Err(format!("round {round}: no grants before the kill"));
                    }
                    thread::sleep(Duration::from_millis(5));
                }
                let witness =
                    acquire_witness(&members[leader].target, &witness_semaphore, options.lease)
                        .map_err(|e| format!("round {round}: witness: {e}"))?;
                let killed_at = Instant::now();
                members[leader].kill();
                let (probed, failed) =
                    probe(targets, leader, killed_at, &probe_semaphore, options.lease);
                let give_up = killed_at + GRANT_LIMIT;
                let next = loop {
                    let next = next_grant(
                        &shared.grants.lock().expect("not poisoned"),
                        killed_at,
                        leader,
                    );
                    if next.is_some() || Instant::now() > give_up {
                        break next;
                    }
                    thread::sleep(Duration::from_millis(1));
                };
                let took = probed.map(|probed| probed - killed_at);
                let clients_took = next.map(|next| next - killed_at);
                let show = |took: Option<Duration>| match took {
                    Some(took) => format!("{:.1} ms", took.as_secs_f64() * 1e3),
                    None => format!("none within {} s", GRANT_LIMIT.as_secs()),
                };
                println!(
                    "kill {round} of member {} (leader): the probe's grant after {}, the mutex \
                     clients' next grant after {}",
                    leader + 1,
                    show(took),
                    show(clients_took)
                );
                if took.is_none_or(|took| took > SLOW_FAILOVER) {
                    for line in summarize_failures(&failed) {
                        println!("  probe attempt {line}");
                    }
                }
                kills.push((killed_at, leader, took));
                client_times.extend(clients_took.map(nanos));
                if !check_witness(targets, leader, witness, &witness_semaphore, options.lease)? {
                    witnesses_lost += 1;
                    println!("  the witness's grant acknowledged before the kill was LOST");
                }
                members[leader].start(binary)?;
                restarts.push(Instant::now());
                if took.is_none() {
                    return Err(format!("round {round}: no grant after the kill"));
                }
            }
            Ok(())
        })();
        shared.stop.store(true, Ordering::Relaxed);
        for client in clients {
            client.join().expect("client thread panicked");
        }
        outcome
    });
    let grants = shared.grants.into_inner().expect("not poisoned");
    outcome?;

    let times = Stats::new(
        kills
            .iter()
            .filter_map(|(_, _, took)| took.map(nanos))
            .collect(),
    );
    let ledger = check_ledger(&grants);
    let kill_instants: Vec<Instant> = kills.iter().map(|(at, _, _)| *at).collect();
    let gap = longest_other_gap(&grants, &kill_instants);
    let client_times = Stats::new(client_times);
    let (gap, after_restart) = match gap {
        Some((began, gap)) => {
            let restart = restarts.iter().rev().find(|&&restart| restart <= began);
            (gap, restart.map(|&restart| began - restart))
        }
        None => (Duration::ZERO, None),
    };
    let problems = shared.problems.count();
    shared.problems.report();
    println!(
        "failover over {} kills of the leader with {} clients on {:?} (hold {} ms): kill -9 to \
         the grant of an acquire sent after the kill",
        times.count(),
        options.clients,
        options.semaphore,
        options.hold.as_millis()
    );
    println!(
        "  the probe (new peer + acquire through the survivors in turn): p50 {:.1} ms, p99 \
         {:.1} ms, max {:.1} ms",
        times.ms(0.5),
        times.ms(0.99),
        times.max_ms()
    );
    println!(
        "  the mutex clients: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        client_times.ms(0.5),
        client_times.ms(0.99),
        client_times.max_ms()
    );
    println!(
        "  {} grants; {} overlapping, {} fencing tokens out of order, {} witnesses lost, {} \
         other problems; {} failed requests (around the kills); longest stall without a kill \
         {:.1} ms{}",
        grants.len(),
        ledger.overlaps,
        ledger.inversions,
        witnesses_lost,
        problems,
        shared.failures.load(Ordering::Relaxed),
        gap.as_secs_f64() * 1e3,
        match after_restart {
            Some(after) => format!(
                ", beginning {:.1} ms after the latest restart of a member",
                after.as_secs_f64() * 1e3
            ),
            None => String::new(),
        }
    );
    let mut result = ResultLine::new(Scenario::Failover);
    result
        .add("kills", times.count())
        .ms("p50_ms", times.ms(0.5))
        .ms("p99_ms", times.ms(0.99))
        .ms("max_ms", times.max_ms())
        .ms("clients_p50_ms", client_times.ms(0.5))
        .ms("clients_p99_ms", client_times.ms(0.99))
        .ms("clients_max_ms", client_times.max_ms())
        .add("grants", grants.len())
        .add("overlaps", ledger.overlaps)
        .add("inversions", ledger.inversions)
        .add("witnesses_lost", witnesses_lost)
        .add("failed_requests", shared.failures.load(Ordering::Relaxed))
        .ms("other_gap_ms", gap.as_secs_f64() * 1e3)
        .add(
            "errors",
            ledger.overlaps + ledger.inversions + witnesses_lost + problems,
        );
    println!("{}", result.as_str());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn grant(t0: Instant, acked: u64, released: u64, token: u64, member: usize) -> Grant {
        Grant {
            sent: t0 + ms(acked.saturating_sub(1)),
            acked: t0 + ms(acked),
            released: t0 + ms(released),
            token,
            member,
        }
    }

    #[test]
    fn a_clean_ledger_in_any_order() {
        let t0 = Instant::now();
        let grants = [
            grant(t0, 20, 21, 30, 1),
            grant(t0, 0, 1, 10, 0),
            grant(t0, 10, 11, 20, 2),
        ];
        assert_eq!(check_ledger(&grants), Ledger::default());
        assert_eq!(check_ledger(&[]), Ledger::default());
    }

    #[test]
    fn a_grant_while_the_mutex_is_held_is_an_overlap() {
        let t0 = Instant::now();
        // The second is read before the first's release was sent: held twice.
        let grants = [grant(t0, 0, 10, 1, 0), grant(t0, 5, 6, 2, 1)];
        assert_eq!(
            check_ledger(&grants),
            Ledger {
                overlaps: 1,
                inversions: 0
            }
        );
        // A long hold covers every grant read before its release, not only the next one.
        let grants = [
            grant(t0, 0, 30, 1, 0),
            grant(t0, 10, 11, 2, 1),
            grant(t0, 20, 21, 3, 1),
            grant(t0, 31, 32, 4, 1),
        ];
        assert_eq!(check_ledger(&grants).overlaps, 2);
    }

    #[test]
    fn tokens_must_grow_in_the_order_of_the_grants() {
        let t0 = Instant::now();
        let grants = [
            grant(t0, 0, 1, 5, 0),
            grant(t0, 2, 3, 5, 0), // repeated: a grant given again
            grant(t0, 4, 5, 4, 1), // smaller: a state rolled back
            grant(t0, 6, 7, 9, 1),
        ];
        assert_eq!(
            check_ledger(&grants),
            Ledger {
                overlaps: 0,
                inversions: 2
            }
        );
    }

    #[test]
    fn the_next_grant_comes_from_another_member_after_the_kill() {
        let t0 = Instant::now();
        let grants = [
            grant(t0, 0, 1, 1, 0),
            grant(t0, 12, 13, 2, 0), // sent after the kill, but answered by the killed member
            grant(t0, 40, 41, 4, 2),
            grant(t0, 30, 31, 3, 1),
            // Sent before the kill, read after it through a follower: decided by the old leader.
            Grant {
                sent: t0 + ms(9),
                ..grant(t0, 11, 12, 2, 1)
            },
        ];
        let killed_at = t0 + ms(10);
        assert_eq!(next_grant(&grants, killed_at, 0), Some(t0 + ms(30)));
        assert_eq!(next_grant(&grants, t0 + ms(50), 0), None);
        assert_eq!(next_grant(&[], killed_at, 0), None);
    }

    #[test]
    fn stalls_that_span_a_kill_are_not_other_gaps() {
        let t0 = Instant::now();
        let grants = [
            grant(t0, 0, 0, 1, 0),
            grant(t0, 5, 5, 2, 0),
            grant(t0, 500, 500, 3, 1), // after the kill at 10
            grant(t0, 530, 530, 4, 1),
        ];
        assert_eq!(
            longest_other_gap(&grants, &[t0 + ms(10)]),
            Some((t0 + ms(500), ms(30)))
        );
        assert_eq!(longest_other_gap(&grants, &[]), Some((t0 + ms(5), ms(495))));
        assert_eq!(longest_other_gap(&grants[..1], &[]), None);
    }

    #[test]
    fn failed_attempts_are_grouped_by_error() {
        let failed = [
            "1-3001 ms: member 2: POST /new_peer: 503 No quorum".to_owned(),
            "51-3050 ms: member 3: POST /new_peer: 503 No quorum".to_owned(),
            "101-102 ms: member 2: POST /new_peer: connection refused".to_owned(),
            "151-3151 ms: member 3: POST /new_peer: 503 No quorum".to_owned(),
            "garbage".to_owned(),
        ];
        assert_eq!(
            summarize_failures(&failed),
            [
                "1-3001 ms: member 2: POST /new_peer: 503 No quorum (and 2 more like it)",
                "101-102 ms: member 2: POST /new_peer: connection refused",
                "garbage",
            ]
        );
        assert!(summarize_failures(&[]).is_empty());
    }

    #[test]
    fn cluster_status_of_a_member() {
        let body = br#"{"version":"x","cluster":{"id":2,"members":3,"leader":1,"term":4,"commit":17,"applied":16}}"#;
        assert_eq!(
            parse_cluster_status(body),
            Ok(ClusterStatus {
                leader: Some(1),
                commit: 17,
                applied: 16
            })
        );
        let electing =
            br#"{"cluster":{"id":2,"members":3,"leader":null,"term":5,"commit":17,"applied":17}}"#;
        assert_eq!(parse_cluster_status(electing).map(|s| s.leader), Ok(None));
    }

    #[test]
    fn a_single_server_or_garbage_is_no_member() {
        assert_eq!(
            parse_cluster_status(br#"{"cluster":null}"#),
            Err("/status.json has no cluster: is this a member?".to_owned())
        );
        assert_eq!(
            parse_cluster_status(br#"{"cluster":{"leader":1}}"#),
            Err("/status.json: no cluster.commit".to_owned())
        );
        assert!(parse_cluster_status(b"not json").is_err());
    }
}
