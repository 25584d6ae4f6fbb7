//! A child process of the binary under test: its stderr kept line by line, its own temporary
//! directory, killed on drop.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// A directory under the system's temporary directory with a name no other test or run uses,
/// removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    /// Creates the directory. Panics if it cannot, failing the test.
    pub fn new() -> TempDir {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let path = std::env::temp_dir().join(format!(
            "throttle-test-{}-{}-{nanos}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).expect("create a temporary directory");
        TempDir(path)
    }

    /// The directory's path.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Writes `text` to the file `name` in this directory and returns its path.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).expect("write a file into the temporary directory");
        path
    }

    /// Takes the directory out of `self`, which then removes nothing on drop.
    fn take(&mut self) -> TempDir {
        TempDir(std::mem::take(&mut self.0))
    }
}

impl Default for TempDir {
    /// A new directory, as [`TempDir::new`].
    fn default() -> TempDir {
        TempDir::new()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if !self.0.as_os_str().is_empty() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// The lines a child wrote to stderr so far, shared with the thread that drains the pipe.
#[derive(Clone, Default)]
pub struct Lines(Arc<(Mutex<LinesState>, Condvar)>);

#[derive(Default)]
struct LinesState {
    lines: Vec<String>,
    closed: bool,
}

impl Lines {
    /// Starts a thread that reads `stderr` line by line until the pipe closes.
    fn drain(stderr: ChildStderr) -> (Lines, JoinHandle<()>) {
        let lines = Lines::default();
        let shared = lines.clone();
        let handle = thread::spawn(move || {
            let mut reader = BufReader::new(stderr);
            let mut buffer = Vec::new();
            loop {
                buffer.clear();
                match reader.read_until(b'\n', &mut buffer) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let line = String::from_utf8_lossy(&buffer).trim_end().to_owned();
                        shared.state().lines.push(line);
                        shared.0.1.notify_all();
                    }
                }
            }
            shared.state().closed = true;
            shared.0.1.notify_all();
        });
        (lines, handle)
    }

    /// The state, also after a test thread panicked holding it (the lines are still whole).
    fn state(&self) -> MutexGuard<'_, LinesState> {
        self.0
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A copy of every line so far.
    pub fn all(&self) -> Vec<String> {
        self.state().lines.clone()
    }

    /// Fails the test, showing every line, unless a line so far matches `predicate`.
    #[track_caller]
    pub fn assert_logged(&self, predicate: impl Fn(&str) -> bool) {
        let lines = self.all();
        assert!(lines.iter().any(|line| predicate(line)), "{lines:#?}");
    }

    /// Waits until a line satisfies `predicate` and returns it; `None` if the pipe closed or
    /// `timeout` passed first.
    pub fn wait_for(&self, timeout: Duration, predicate: impl Fn(&str) -> bool) -> Option<String> {
        let deadline = Instant::now() + timeout;
        let mut state = self.state();
        loop {
            if let Some(line) = state.lines.iter().find(|line| predicate(line)) {
                return Some(line.clone());
            }
            let now = Instant::now();
            if state.closed || now >= deadline {
                return None;
            }
            state = self
                .0
                .1
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .0;
        }
    }
}

/// A running child process whose stderr is being collected. Killed on drop.
pub struct Process {
    child: Child,
    /// Every line the process wrote to stderr so far.
    pub lines: Lines,
    drainer: Option<JoinHandle<()>>,
    /// The working directory of the process, holding its configuration file; removed when the
    /// process is dropped.
    pub dir: TempDir,
}

impl Process {
    /// Starts `binary` with exactly `args`, in `dir` as its working directory. `THROTTLE_LOG`
    /// and `THROTTLE_TOKEN` are removed from the environment unless `env` sets them, so the
    /// tests' own environment does not change what the server does.
    pub fn spawn(binary: &Path, dir: TempDir, args: &[&str], env: &[(&str, &str)]) -> Process {
        let (child, lines, drainer) = start(binary, &dir, args, env);
        Process {
            child,
            lines,
            drainer: Some(drainer),
            dir,
        }
    }

    /// Kills the process (as in a crash) and starts `binary` with `args` in its place, in the
    /// same directory; the lines start afresh.
    pub fn respawn(&mut self, binary: &Path, args: &[&str], env: &[(&str, &str)]) {
        self.kill();
        let (child, lines, drainer) = start(binary, &self.dir, args, env);
        self.child = child;
        self.lines = lines;
        self.drainer = Some(drainer);
    }

    /// The process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal by name (`TERM`, `INT`, `HUP`) with the `kill` command.
    #[cfg(unix)]
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} failed: {status}");
    }

    /// Polls until the child exits and returns its status, or `None` after `timeout`. Once it
    /// returns `Some`, every line of stderr has been collected.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("query the child") {
                if let Some(drainer) = self.drainer.take() {
                    let _ = drainer.join();
                }
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Kills the process (no graceful shutdown, as in a crash) and waits for it to end.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Kills the process and hands over its directory, which then outlives it (to start
    /// another process in it, as after a crash).
    pub fn kill_keeping_dir(mut self) -> TempDir {
        self.kill();
        self.dir.take()
    }
}

/// Starts `binary` in `dir` and a thread that collects its stderr.
fn start(
    binary: &Path,
    dir: &TempDir,
    args: &[&str],
    env: &[(&str, &str)],
) -> (Child, Lines, JoinHandle<()>) {
    let mut child = Command::new(binary)
        .args(args)
        .current_dir(dir.path())
        .env_remove("THROTTLE_LOG")
        .env_remove("THROTTLE_TOKEN")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start {}: {e}", binary.display()));
    let stderr = child.stderr.take().expect("stderr is piped");
    let (lines, drainer) = Lines::drain(stderr);
    (child, lines, drainer)
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
        if thread::panicking() {
            eprintln!(
                "stderr of the server (pid {}), for the failed test:\n{}",
                self.child.id(),
                self.lines.all().join("\n")
            );
        }
    }
}

/// Runs `binary` with `args` in `dir` to its end, returning its exit status, stdout and stderr:
/// for commands that do not serve (`--help`, a client subcommand, a configuration error).
/// Fails the test if it is still running after `timeout`. `THROTTLE_LOG` and `THROTTLE_TOKEN`
/// are removed from the environment unless `env` sets them.
pub fn run_to_exit(
    binary: &Path,
    args: &[&str],
    dir: &Path,
    env: &[(&str, &str)],
    timeout: Duration,
) -> (ExitStatus, String, String) {
    let mut child = Command::new(binary)
        .args(args)
        .current_dir(dir)
        .env_remove("THROTTLE_LOG")
        .env_remove("THROTTLE_TOKEN")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start {}: {e}", binary.display()));
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let out = thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let err = thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("query the child") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("`{} {}` did not exit", binary.display(), args.join(" "));
        }
        thread::sleep(Duration::from_millis(10));
    };
    let out = out.join().unwrap_or_default();
    let err = err.join().unwrap_or_default();
    (status, out, err)
}
