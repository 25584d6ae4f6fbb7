//! `throttle lock` and `throttle status` (issue 16), the real binary against the real server:
//! the command runs holding the lock, exit codes pass through, `--timeout` leaves nothing
//! queued, signals reach the command, a lost lease stops it, a server restart keeps the lock,
//! and the status tables show holders and waiters; given a cluster's members, a command rides
//! through the loss of the leader.
//!
//! Commands run under `sh` and talk to the test through files in a temporary directory (a
//! `ready` file once their trap is set, say), so the test waits for facts, not for time.

#![cfg(unix)]

mod common;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::{BINARY, PROMPTLY, Server, TempDir, run_to_exit};

const CONFIG: &str = r#"
[semaphores]
M = 1
Two = 2
"#;

/// A `throttle lock` (or `status`) process with its stdout and stderr in files. Killed on drop.
struct Run {
    child: Child,
    dir: TempDir,
}

impl Run {
    /// Starts `throttle ARGS` against `server`, in a fresh directory (the working directory of
    /// the command too). `THROTTLE_BIN` names the binary, for commands that run it themselves.
    fn start(server: &Server, args: &[&str]) -> Run {
        Run::start_at(&format!("http://{}", server.addr), args)
    }

    /// [`Run::start`] with `THROTTLE_URL` set to `urls`.
    fn start_at(urls: &str, args: &[&str]) -> Run {
        let dir = TempDir::new();
        let child = Command::new(BINARY)
            .args(args)
            .current_dir(dir.path())
            .env("THROTTLE_URL", urls)
            .env("THROTTLE_BIN", BINARY)
            .env_remove("THROTTLE_TOKEN")
            .env_remove("THROTTLE_LOG")
            .stdin(Stdio::null())
            .stdout(File::create(dir.path().join("stdout")).unwrap())
            .stderr(File::create(dir.path().join("stderr")).unwrap())
            .spawn()
            .expect("start throttle");
        Run { child, dir }
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.file(name)).unwrap_or_default()
    }

    /// Waits until the command created the file `name`.
    #[track_caller]
    fn wait_for_file(&self, name: &str) {
        wait_until(&format!("the file {name}"), || self.file(name).exists());
    }

    #[track_caller]
    fn signal(&self, name: &str) {
        signal(self.child.id(), name);
    }

    /// Waits for the exit, bounded by [`PROMPTLY`].
    #[track_caller]
    fn exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + PROMPTLY;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "throttle did not exit; stderr: {}",
                self.read("stderr")
            );
            thread::sleep(Duration::from_millis(10));
        }
    }

    #[track_caller]
    fn exit_code(&mut self) -> i32 {
        let status = self.exit();
        status
            .code()
            .unwrap_or_else(|| panic!("throttle itself died: {status}"))
    }
}

/// Ends `throttle lock` the way a user would (SIGTERM, which it passes on to its command), so
/// the command does not outlive the test; SIGKILL only if that takes longer than a bound.
impl Drop for Run {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            signal(self.child.id(), "TERM");
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if !matches!(self.child.try_wait(), Ok(None)) {
                    return;
                }
                thread::sleep(Duration::from_millis(10));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[track_caller]
fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{name} {pid} failed");
}

#[track_caller]
fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + PROMPTLY;
    while !condition() {
        assert!(Instant::now() < deadline, "not within {PROMPTLY:?}: {what}");
        thread::sleep(Duration::from_millis(10));
    }
}

/// `throttle ARGS` to its end, against `server`: exit code, stdout, stderr.
fn throttle(server: &Server, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let url = format!("http://{}", server.addr);
    let mut all = vec![("THROTTLE_URL", url.as_str())];
    all.extend_from_slice(env);
    let dir = TempDir::new();
    let (status, stdout, stderr) = run_to_exit(args, dir.path(), &all);
    (status.code().expect("exited"), stdout, stderr)
}

fn pending(server: &Server, semaphore: &str) -> Option<f64> {
    server.metric(&format!("throttle_pending{{semaphore=\"{semaphore}\"}}"))
}

/// Whether the process `pid` still exists.
fn exists(pid: &str) -> bool {
    Path::new(&format!("/proc/{}", pid.trim())).exists()
}

#[test]
fn the_command_runs_holding_the_lock_and_its_exit_code_passes_through() {
    let server = Server::start(CONFIG);
    let script = r#""$THROTTLE_BIN" status --json > status.json
        echo "$THROTTLE_PEER_ID $THROTTLE_FENCING_TOKEN" > lock; exit 7"#;
    let mut run = Run::start(&server, &["lock", "M", "--", "sh", "-c", script]);
    assert_eq!(run.exit_code(), 7);
    // From inside: the command's peer held M, with the token it was given.
    let status: serde_json::Value = serde_json::from_str(&run.read("status.json")).unwrap();
    assert_eq!(status["semaphores"][0]["acquired"], 1);
    let lock = run.read("lock");
    let (peer, token) = lock.trim().split_once(' ').unwrap();
    assert_eq!(status["peers"][0]["id"].to_string(), peer);
    assert_eq!(
        status["peers"][0]["acquired"][0]["fencing_token"].to_string(),
        token
    );
    // Released at the exit.
    assert_eq!(server.remainder("M"), 1);
    assert_eq!(run.read("stderr"), "");

    let (code, _, _) = throttle(
        &server,
        &["lock", "M", "--", "sh", "-c", "kill -TERM $$"],
        &[],
    );
    assert_eq!(code, 128 + 15, "a signal's death is 128+N");
    let (code, _, _) = throttle(&server, &["lock", "M", "true"], &[]);
    assert_eq!(code, 0, "without `--` too");
    assert_eq!(server.remainder("M"), 1);
}

#[test]
fn two_commands_on_a_mutex_run_one_after_the_other() {
    let server = Server::start(CONFIG);
    let dir = TempDir::new();
    let log = dir.path().join("log");
    let log = log.to_str().unwrap();
    let script = format!("echo start >> {log}; sleep 0.3; echo end >> {log}");
    let mut runs: Vec<Run> = (0..2)
        .map(|_| Run::start(&server, &["lock", "M", "--", "sh", "-c", &script]))
        .collect();
    for run in &mut runs {
        assert_eq!(run.exit_code(), 0);
    }
    assert_eq!(
        std::fs::read_to_string(log).unwrap(),
        "start\nend\nstart\nend\n"
    );
}

#[test]
fn with_a_count_of_two_two_run_at_once_and_the_third_waits() {
    let server = Server::start(CONFIG);
    let script = "touch running; while [ ! -e go ]; do sleep 0.02; done";
    let mut runs: Vec<Run> = (0..3)
        .map(|_| Run::start(&server, &["lock", "Two", "--", "sh", "-c", script]))
        .collect();
    wait_until("two hold, one waits", || {
        runs.iter()
            .filter(|run| run.file("running").exists())
            .count()
            == 2
            && pending(&server, "Two") == Some(1.0)
    });
    let (first, third): (Vec<_>, Vec<_>) = runs
        .iter_mut()
        .partition(|run| run.file("running").exists());
    for run in first {
        std::fs::write(run.file("go"), "").unwrap();
        assert_eq!(run.exit_code(), 0);
    }
    let third = third.into_iter().next().unwrap();
    third.wait_for_file("running");
    std::fs::write(third.file("go"), "").unwrap();
    assert_eq!(third.exit_code(), 0);
    assert_eq!(server.remainder("Two"), 2);
}

#[test]
fn a_timeout_exits_75_and_leaves_nothing_queued() {
    let server = Server::start(CONFIG);
    let holder = server.new_peer();
    server.acquire(holder, "M", 1, "").expect(200, "");
    let started = Instant::now();
    let (code, _, stderr) = throttle(
        &server,
        &["lock", "--timeout", "300ms", "M", "--", "true"],
        &[],
    );
    assert_eq!(code, 75);
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(
        stderr,
        "throttle lock: timed out: the lock on \"M\" was not granted within 300ms; nothing \
         stays queued\n"
    );
    assert_eq!(pending(&server, "M"), Some(0.0));
    assert_eq!(
        server.state().as_array().unwrap().len(),
        1,
        "only the holder"
    );
    let args = [
        "lock",
        "--timeout=0s",
        "--exit-code-on-timeout",
        "9",
        "M",
        "true",
    ];
    assert_eq!(throttle(&server, &args, &[]).0, 9);
    assert_eq!(pending(&server, "M"), Some(0.0));
}

#[test]
fn errors_are_one_line_with_a_code_of_their_own() {
    let server = Server::start(CONFIG);
    let check = |args: &[&str], code: i32, start: &str| {
        let (got, stdout, stderr) = throttle(&server, args, &[]);
        assert_eq!(got, code, "{args:?}: {stderr}");
        assert!(stderr.starts_with(start), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert_eq!(stdout, "");
    };
    check(
        &["lock", "Nope", "--", "true"],
        66,
        "throttle lock: unknown semaphore \"Nope\"",
    );
    check(
        &["lock", "-n", "2", "M", "--", "true"],
        65,
        "throttle lock: Count too large",
    );
    check(
        &["lock", "M", "--", "/does/not/exist"],
        127,
        "throttle lock: cannot run \"/does/not/exist\"",
    );
    // Retried for up to 30 s (to ride out a restart), at most for the timeout.
    let started = Instant::now();
    check(
        &[
            "lock",
            "--timeout",
            "1s",
            "--server",
            "http://127.0.0.1:9",
            "M",
            "true",
        ],
        69,
        "throttle lock: server http://127.0.0.1:9 unreachable within",
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    check(
        &["status", "--server", "http://127.0.0.1:9"],
        69,
        "throttle status: server http://127.0.0.1:9 unreachable within",
    );
    // Several members: a dead one is skipped, from --server or THROTTLE_URL; with none alive,
    // the message names each.
    let dead_first = format!("http://127.0.0.1:9,http://{}", server.addr);
    assert_eq!(
        throttle(&server, &["status", "--server", &dead_first], &[]).0,
        0
    );
    let env = [("THROTTLE_URL", dead_first.as_str())];
    assert_eq!(throttle(&server, &["lock", "M", "--", "true"], &env).0, 0);
    check(
        &[
            "lock",
            "--timeout",
            "1s",
            "--server",
            "http://127.0.0.1:9,http://127.0.0.1:7",
            "M",
            "true",
        ],
        69,
        "throttle lock: no member reachable within 1s (http://127.0.0.1:9: connection refused, \
         http://127.0.0.1:7: connection refused)",
    );
    // A usage error also says where the help is, as for the server.
    let (code, _, stderr) = throttle(&server, &["lock", "M"], &[]);
    assert_eq!(code, 2);
    assert_eq!(
        stderr,
        "throttle: missing the command to run: throttle lock [OPTIONS] M -- COMMAND [ARGS...]\n\
         Try 'throttle lock --help' for more information.\n"
    );
    assert_eq!(throttle(&server, &["lock", "M", "--", "true"], &[]).0, 0);
    assert_eq!(pending(&server, "M"), Some(0.0));
    assert_eq!(server.remainder("M"), 1);

    // A server with a token.
    let guarded = Server::start_with(CONFIG, &[], &[("THROTTLE_TOKEN", "s3cret")]);
    let (code, _, stderr) = throttle(&guarded, &["lock", "M", "--", "true"], &[]);
    assert_eq!(code, 77, "{stderr}");
    assert!(
        stderr.starts_with("throttle lock: unauthorized by"),
        "{stderr}"
    );
    assert_eq!(throttle(&guarded, &["status"], &[]).0, 77);
    let with_token = [("THROTTLE_TOKEN", "s3cret")];
    assert_eq!(
        throttle(&guarded, &["lock", "M", "--", "true"], &with_token).0,
        0
    );
    assert_eq!(
        throttle(&guarded, &["status", "--token", "s3cret"], &[]).0,
        0
    );
}

#[test]
fn sigterm_reaches_the_command_and_the_lock_is_released() {
    let server = Server::start(CONFIG);
    let script = r#"trap 'echo got-term > term; exit 5' TERM; touch ready
        while :; do sleep 0.02; done"#;
    let mut run = Run::start(&server, &["lock", "M", "--", "sh", "-c", script]);
    run.wait_for_file("ready");
    assert_eq!(server.remainder("M"), 0);
    run.signal("TERM");
    assert_eq!(run.exit_code(), 5, "the command's own code");
    assert_eq!(run.read("term"), "got-term\n");
    assert_eq!(server.remainder("M"), 1);
}

#[test]
fn a_signal_while_waiting_withdraws_the_request() {
    let server = Server::start(CONFIG);
    let holder = server.new_peer();
    server.acquire(holder, "M", 1, "").expect(200, "");
    let mut run = Run::start(&server, &["lock", "M", "--", "touch", "ran"]);
    wait_until("the request is queued", || {
        pending(&server, "M") == Some(1.0)
    });
    let signalled = Instant::now();
    run.signal("INT");
    assert_eq!(run.exit_code(), 128 + 2);
    assert!(signalled.elapsed() < Duration::from_secs(3), "cut short");
    assert_eq!(pending(&server, "M"), Some(0.0));
    assert_eq!(
        server.state().as_array().unwrap().len(),
        1,
        "only the holder"
    );
    assert!(!run.file("ran").exists());
}

#[test]
fn a_lost_lease_stops_the_command() {
    let server = Server::start(CONFIG);
    let script = "echo $$ > pid; exec sleep 60";
    let mut run = Run::start(
        &server,
        &["lock", "--expires-in", "1s", "M", "--", "sh", "-c", script],
    );
    run.wait_for_file("pid");
    wait_until("the pid is written", || !run.read("pid").trim().is_empty());
    let pid = run.read("pid");
    // Paused past its lease, `throttle lock` cannot send heartbeats: the server frees M.
    run.signal("STOP");
    server.wait_for_metric("throttle_acquired{semaphore=\"M\"}", 0.0);
    run.signal("CONT");
    assert_eq!(run.exit_code(), 70);
    let stderr = run.read("stderr");
    assert!(
        stderr.contains("throttle lock: lost the lock on \"M\": the server says its lease expired"),
        "{stderr}"
    );
    assert!(!exists(&pid), "the command was stopped");
}

#[test]
fn with_on_lost_ignore_the_command_runs_on() {
    let server = Server::start(CONFIG);
    let script = "touch ready; while [ ! -e go ]; do sleep 0.02; done; exit 4";
    let args = [
        "lock",
        "--expires-in",
        "1s",
        "--on-lost",
        "ignore",
        "M",
        "--",
    ];
    let mut run = Run::start(&server, &[&args[..], &["sh", "-c", script]].concat());
    run.wait_for_file("ready");
    run.signal("STOP");
    server.wait_for_metric("throttle_acquired{semaphore=\"M\"}", 0.0);
    run.signal("CONT");
    wait_until("the loss is reported", || {
        run.read("stderr").contains("runs on (--on-lost ignore)")
    });
    std::fs::write(run.file("go"), "").unwrap();
    assert_eq!(run.exit_code(), 4);
}

#[test]
fn a_server_restart_keeps_the_lock() {
    let server = Server::start(CONFIG);
    let port = server.addr.port().to_string();
    let script = "touch ready; while [ ! -e go ]; do sleep 0.02; done";
    let args = ["lock", "--expires-in", "2s", "M", "--", "sh", "-c", script];
    let mut run = Run::start(&server, &args);
    run.wait_for_file("ready");
    drop(server);
    let server = Server::start_with(CONFIG, &["--port", &port], &[]);
    // The heartbeat restores the lock on the new server.
    server.wait_for_metric("throttle_acquired{semaphore=\"M\"}", 1.0);
    std::fs::write(run.file("go"), "").unwrap();
    assert_eq!(run.exit_code(), 0);
    assert_eq!(server.remainder("M"), 1);
}

/// The index of the member the running members of `cluster` agree leads (member id = index +
/// 1), skipping the members in `down`.
#[track_caller]
fn leader(cluster: &throttle_harness::Cluster, down: &[usize]) -> usize {
    let deadline = Instant::now() + PROMPTLY;
    loop {
        let leaders: Vec<Option<u64>> = (0..cluster.servers().len())
            .filter(|index| !down.contains(index))
            .map(|index| {
                let client = common::Client::new(cluster[index].addr);
                let reply = client.try_request("GET", "/status.json", None).ok()?;
                (reply.status == 200).then(|| reply.json()["cluster"]["leader"].as_u64())?
            })
            .collect();
        if let Some(Some(id)) = leaders.first()
            && leaders.iter().all(|leader| *leader == Some(*id))
            && !down.contains(&((*id - 1) as usize))
        {
            return (*id - 1) as usize;
        }
        assert!(Instant::now() < deadline, "no agreed leader: {leaders:?}");
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_command_rides_through_the_loss_of_the_leader() {
    let launch = throttle_harness::Launch::new()
        .binary(BINARY)
        .config(CONFIG);
    let mut cluster = throttle_harness::Cluster::members(&launch, 3);
    let old = leader(&cluster, &[]);
    // The leader first, so the kill hits the member `throttle lock` talks to.
    let urls: Vec<String> = (0..3).map(|i| cluster[(old + i) % 3].url()).collect();
    let urls = urls.join(",");
    let script = "touch running; sleep 4; echo done > done";
    let mut run = Run::start_at(
        "http://127.0.0.1:1",
        &[
            "lock",
            "--server",
            &urls,
            "--expires-in",
            "3s",
            "M",
            "--",
            "sh",
            "-c",
            script,
        ],
    );
    run.wait_for_file("running");
    cluster.server_mut(old).process.kill();
    let new = leader(&cluster, &[old]);
    let survivor = common::Client::new(cluster[new].addr);
    assert_eq!(survivor.get("/remainder?semaphore=M").text(), "0", "held");
    assert_eq!(run.exit_code(), 0, "stderr: {}", run.read("stderr"));
    assert_eq!(run.read("done"), "done\n", "the command ran to its end");
    let stderr = run.read("stderr");
    assert!(!stderr.contains("lost"), "{stderr}");
    assert_eq!(survivor.get("/remainder?semaphore=M").text(), "1", "freed");
}

#[test]
fn status_shows_semaphores_holders_and_waiters() {
    let server = Server::start(CONFIG);
    let script = "touch ready; while [ ! -e go ]; do sleep 0.02; done";
    let holder = Run::start(&server, &["lock", "M", "--", "sh", "-c", script]);
    holder.wait_for_file("ready");
    let _waiter = Run::start(&server, &["lock", "M", "--", "true"]);
    wait_until("the waiter is queued", || {
        pending(&server, "M") == Some(1.0)
    });

    let (code, table, stderr) = throttle(&server, &["status"], &[]);
    assert_eq!((code, stderr.as_str()), (0, ""));
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(
        lines[0],
        "SEMAPHORE  LEVEL  MAX  ACQUIRED  PENDING  LONGEST WAIT"
    );
    assert!(
        lines[1].starts_with("M              0    1         1        1  "),
        "{table}"
    );
    assert!(
        lines[2].starts_with("Two            0    2         0        0  -"),
        "{table}"
    );
    assert_eq!(lines.len(), 3);

    let (code, table, _) = throttle(&server, &["status", "--peers"], &[]);
    assert_eq!(code, 0);
    let held: Vec<&str> = table
        .lines()
        .filter(|l| l.starts_with("M          held"))
        .collect();
    let waits: Vec<&str> = table
        .lines()
        .filter(|l| l.starts_with("M          waits"))
        .collect();
    assert_eq!((held.len(), waits.len()), (1, 1), "{table}");
    let status = server.get("/status.json").json();
    let token = status["peers"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|peer| peer["acquired"][0]["fencing_token"].as_u64())
        .unwrap();
    assert!(held[0].contains(&token.to_string()), "{table}");
    // Named hostname:pid by the client crate.
    assert!(
        held[0].contains(&format!(":{}", holder.child.id())),
        "{table}"
    );

    let (code, json, _) = throttle(&server, &["status", "--json"], &[]);
    assert_eq!(code, 0);
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    let figures = |status: &serde_json::Value| -> Vec<_> {
        let semaphores = status["semaphores"].as_array().unwrap().iter();
        semaphores
            .map(|s| {
                (
                    s["name"].clone(),
                    s["acquired"].clone(),
                    s["pending"].clone(),
                )
            })
            .collect()
    };
    assert_eq!(figures(&json), figures(&status));
    std::fs::write(holder.file("go"), "").unwrap();
}

#[test]
fn help() {
    let server = Server::start(CONFIG);
    for args in [&["help", "lock"][..], &["lock", "--help"]] {
        let (code, text, _) = throttle(&server, args, &[]);
        assert_eq!(code, 0);
        assert!(text.contains("throttle lock [OPTIONS] SEMAPHORE -- COMMAND [ARGS...]"));
        assert!(text.contains("EXIT CODES:"));
    }
    let (code, text, _) = throttle(&server, &["help", "status"], &[]);
    assert_eq!(code, 0);
    assert!(text.contains("throttle status [--server URL[,URL...]]"));
    let (code, text, _) = throttle(&server, &["help"], &[]);
    assert_eq!(code, 0);
    assert!(text.contains("OPTIONS (of the server):"));
}
