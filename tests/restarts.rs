//! Restarts never hand a lock out twice (issue 14): the state file across a graceful shutdown,
//! the grace period after a crash or with `--grace`, leases shortened by the downtime, bad state
//! files, and a state file that cannot be written at shutdown.
//!
//! Grace periods here are one to two seconds and every assertion about time has seconds of
//! slack, so the tests hold on a loaded two-core machine.

#![cfg(unix)]

mod common;

use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use common::{PROMPTLY, STARTUP, Server, TempDir, answered, run_to_exit};

const CONFIG: &str = r#"
[semaphores]
M = 1
"#;

/// How long a graceful shutdown may take.
const SHUTDOWN: Duration = Duration::from_secs(10);

/// The state file in `dir`, as a string argument.
fn state_in(dir: &TempDir) -> (PathBuf, String) {
    let path = dir.path().join("state.json");
    let arg = path.to_str().expect("temporary paths are UTF-8").to_owned();
    (path, arg)
}

fn start(state: &str, extra: &[&str]) -> Server {
    let mut args = vec!["--state-file", state];
    args.extend_from_slice(extra);
    Server::start_with(CONFIG, &args, &[])
}

/// Stops `server` with `signal` and returns its exit code.
#[track_caller]
fn stop(mut server: Server, signal: &str) -> Option<i32> {
    server.process.signal(signal);
    let status = server
        .process
        .wait_exit(SHUTDOWN)
        .unwrap_or_else(|| panic!("still running after SIG{signal}"));
    status.code()
}

fn heartbeat(server: &Server, peer: u64) -> common::Reply {
    server.put(&format!("/peers/{peer}"), r#"{"expires_in": "1m"}"#)
}

fn restore(server: &Server, peer: u64) -> common::Reply {
    let body = format!(r#"{{"expires_in": "1m", "peer_id": {peer}, "acquired": {{"M": 1}}}}"#);
    server.post("/restore", &body)
}

/// Polls the state file until its marker records a longest lease of at least `ms`.
#[track_caller]
fn wait_for_marker(path: &Path, ms: u64) {
    let deadline = Instant::now() + PROMPTLY;
    loop {
        let longest = std::fs::read(path)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
            .and_then(|json| json["longest_lease_ms"].as_u64());
        if longest.is_some_and(|longest| longest >= ms) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the marker's longest lease stayed at {longest:?}"
        );
        thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn after_sigterm_holders_keep_their_locks_and_newcomers_wait() {
    let dir = TempDir::new();
    let (_, state) = state_in(&dir);
    let server = start(&state, &[]);
    let holder = server.new_peer_for("1m");
    server.acquire(holder, "M", 1, "").expect(200, "");
    assert_eq!(stop(server, "TERM"), Some(0));

    let server = start(&state, &[]);
    server.process.lines.assert_logged(|line| {
        line.contains("Loaded 1 peers") && line.contains("shut down cleanly")
    });
    // No grace period after a clean shutdown: the state is known.
    assert_eq!(server.metric("throttle_grace_remaining_seconds"), Some(0.0));
    let newcomer = server.new_peer();
    server.acquire(newcomer, "M", 1, "").expect(202, "");
    assert_eq!(server.remainder("M"), 0);
    // The holder's next heartbeat just works: no restore needed.
    heartbeat(&server, holder).expect(200, "");
    assert!(server.is_acquired(holder));
    server.acquire(holder, "M", 1, "").expect(200, "");
    server.release(holder, "M").expect(200, "");
    assert!(server.is_acquired(newcomer));
    assert_eq!(server.remainder("M"), 0);
}

#[test]
fn after_kill_9_newcomers_wait_through_the_grace_period_while_holders_restore() {
    let dir = TempDir::new();
    let (path, state) = state_in(&dir);
    let server = start(&state, &[]);
    // A lease of 3 s: the grace period after the crash lasts as long.
    let holder = server.new_peer_for("3s");
    server.acquire(holder, "M", 1, "").expect(200, "");
    wait_for_marker(&path, 3000);
    assert_eq!(stop(server, "KILL"), None);

    let started = Instant::now();
    let server = start(&state, &[]);
    let newcomer = server.new_peer();
    server.acquire(newcomer, "M", 1, "").expect(202, "");
    // The grace period shows everywhere, and the server stays healthy.
    let grace = server
        .metric("throttle_grace_remaining_seconds")
        .expect("the grace metric");
    assert!(grace > 0.0 && grace <= 3.0, "{grace}");
    let status = server.get("/status.json").json();
    assert!(status["grace_remaining_ms"].as_u64().is_some(), "{status}");
    server.get("/health").expect(200, "Ok");
    server
        .process
        .lines
        .assert_logged(|line| line.contains("Grace period of"));
    // The holder notices the restart and restores: served at once, even in the grace period.
    heartbeat(&server, holder).expect(400, "Unknown peer");
    restore(&server, holder).expect(200, "");
    assert_eq!(server.remainder("M"), 0);

    // The newcomer waits on; the grace period ends, the holder still holds M.
    let poll = server.acquire_in_background(newcomer, "M", 1, "?block_for=60s");
    server
        .process
        .lines
        .wait_for(PROMPTLY, |line| line.contains("Grace period over"))
        .expect("the grace period ends");
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(server.remainder("M"), 0);
    assert!(!server.is_acquired(newcomer));
    server.release(holder, "M").expect(200, "");
    let (reply, _) = answered(poll);
    reply.expect(200, "");
    assert_eq!(server.remainder("M"), 0);
}

#[test]
fn grace_without_a_state_file_grants_waiters_when_it_ends() {
    let started = Instant::now();
    let server = Server::start_with(CONFIG, &["--grace", "1500ms"], &[]);
    let peer = server.new_peer();
    let (reply, _) = answered(server.acquire_in_background(peer, "M", 1, "?block_for=60s"));
    reply.expect(200, "");
    // Granted by the expiry thread at the end of the grace period, not earlier.
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(1500), "{waited:?}");
    assert!(waited < STARTUP + PROMPTLY, "{waited:?}");
    assert_eq!(server.metric("throttle_grace_remaining_seconds"), Some(0.0));
    assert_eq!(server.remainder("M"), 0);

    // `--grace 0s`: none at all.
    let server = Server::start_with(CONFIG, &["--grace", "0s"], &[]);
    let peer = server.new_peer();
    server.acquire(peer, "M", 1, "").expect(200, "");
}

#[test]
fn leases_are_shortened_by_the_downtime() {
    let dir = TempDir::new();
    let (_, state) = state_in(&dir);
    let server = start(&state, &[]);
    let long = server.new_peer_for("1m");
    server.acquire(long, "M", 1, "").expect(200, "");
    let short = server.new_peer_for("2500ms");
    assert_eq!(stop(server, "TERM"), Some(0));
    // The downtime is what this test measures, so it sleeps.
    let stopped = Instant::now();
    thread::sleep(Duration::from_millis(3000));

    let server = start(&state, &[]);
    let down = stopped.elapsed();
    let peers = server.get("/peers/").json();
    let peers = peers.as_array().expect("a list");
    assert_eq!(peers.len(), 1, "{peers:?}");
    assert_eq!(peers[0]["id"].as_u64(), Some(long));
    let left = peers[0]["expires_in_ms"].as_u64().expect("a lease");
    assert!(
        left <= 60_000 - 3000 && left + down.as_millis() as u64 >= 50_000,
        "{left} ms left after {down:?} down"
    );
    heartbeat(&server, short).expect(400, "Unknown peer");
    assert_eq!(server.metric("throttle_expired_peers_total"), Some(1.0));
    assert_eq!(server.remainder("M"), 0);
}

/// Starting on the state file `write` makes fails with one line naming the file and `problem`.
#[track_caller]
fn check_refused(dir: &TempDir, write: impl Fn(&Path), problem: &str) {
    let (path, state) = state_in(dir);
    write(&path);
    let config = dir.write("throttle.toml", CONFIG);
    let config = config.to_str().unwrap();
    let (status, _, stderr) = run_to_exit(
        &["-c", config, "--port", "0", "--state-file", &state],
        dir.path(),
        &[],
    );
    assert_eq!(status.code(), Some(1), "{stderr}");
    let line = stderr
        .lines()
        .find(|line| line.starts_with("throttle: "))
        .unwrap_or_else(|| panic!("no error line in {stderr:?}"));
    assert!(
        line.contains(&state) && line.contains(problem),
        "{line:?} should name {state} and {problem:?}"
    );
}

/// Like [`check_refused`]; with `--state-file-reset` the server then starts empty.
#[track_caller]
fn check_bad_file(write: impl Fn(&Path), problem: &str) {
    let dir = TempDir::new();
    check_refused(&dir, write, problem);
    let (_, state) = state_in(&dir);
    let server = start(&state, &["--state-file-reset"]);
    assert!(server.get("/peers/").json().as_array().unwrap().is_empty());
    server
        .process
        .lines
        .assert_logged(|line| line.contains(" WARN ") && line.contains("--state-file-reset"));
}

/// A real state file with one peer holding `M`.
fn clean_file() -> Vec<u8> {
    let dir = TempDir::new();
    let (path, state) = state_in(&dir);
    let server = start(&state, &[]);
    let peer = server.new_peer();
    server.acquire(peer, "M", 1, "").expect(200, "");
    assert_eq!(stop(server, "TERM"), Some(0));
    std::fs::read(path).expect("the state file")
}

#[test]
fn corrupt_files_stop_the_start_unless_reset() {
    check_bad_file(|path| std::fs::write(path, "{not json").unwrap(), "corrupt");
    let good = clean_file();
    check_bad_file(
        |path| std::fs::write(path, &good[..good.len() / 2]).unwrap(),
        "corrupt",
    );
    check_bad_file(|path| std::fs::write(path, "").unwrap(), "corrupt");
}

#[test]
fn a_newer_format_version_stops_the_start_unless_reset() {
    let good = String::from_utf8(clean_file()).unwrap();
    let newer = good.replace("\"version\":2", "\"version\":3");
    assert_ne!(good, newer);
    check_bad_file(
        |path| std::fs::write(path, &newer).unwrap(),
        "format version 3",
    );
}

#[test]
fn an_unreadable_file_stops_the_start_unless_reset() {
    // A directory where the file should be: unreadable even for root. It cannot be written
    // either, so `--state-file-reset` does not help here.
    let dir = TempDir::new();
    check_refused(
        &dir,
        |path| std::fs::create_dir(path).unwrap(),
        "cannot read the state file",
    );
}

#[test]
fn a_state_file_that_cannot_be_written_at_shutdown_is_an_error() {
    let dir = TempDir::new();
    let sub = dir.path().join("state");
    std::fs::create_dir(&sub).unwrap();
    let path = sub.join("state.json");
    let state = path.to_str().unwrap();
    let server = start(state, &[]);
    let peer = server.new_peer();
    server.acquire(peer, "M", 1, "").expect(200, "");
    wait_for_marker(&path, 300_000);
    // The marker is written (no write is under way), then the directory goes away (as a full disk or a read-only mount would refuse the write;
    // the tests run as root, which permissions do not stop).
    std::fs::remove_dir_all(&sub).unwrap();
    let lines = server.process.lines.clone();
    assert_eq!(stop(server, "TERM"), Some(1));
    lines.assert_logged(|line| {
        line.contains(" ERROR ") && line.contains("cannot write the state file")
    });
}

#[test]
fn a_state_file_that_cannot_be_written_at_start_is_a_startup_error() {
    let dir = TempDir::new();
    let state = dir.path().join("missing").join("state.json");
    let config = dir.write("throttle.toml", CONFIG);
    let (status, _, stderr) = run_to_exit(
        &[
            "-c",
            config.to_str().unwrap(),
            "--port",
            "0",
            "--state-file",
            state.to_str().unwrap(),
        ],
        dir.path(),
        &[],
    );
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cannot write the state file"), "{stderr}");
}

#[test]
fn the_configuration_can_name_the_state_file() {
    let dir = TempDir::new();
    let (path, state) = state_in(&dir);
    let config = format!("{CONFIG}\n[state]\nfile = {state:?}\n");
    let server = Server::start_with(&config, &[], &[]);
    let peer = server.new_peer();
    server.acquire(peer, "M", 1, "").expect(200, "");
    assert_eq!(stop(server, "TERM"), Some(0));
    let saved: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    assert_eq!(saved["clean"], true);
    assert_eq!(saved["peers"][0]["id"].as_u64(), Some(peer));
    assert_eq!(saved["peers"][0]["acquired"], serde_json::json!({"M": 1}));
}
