//! Which `throttle` executable the tests run, built fresh once per test process.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

/// How long a build of the server may take: a cold debug build on a loaded machine.
const BUILD: Duration = Duration::from_secs(900);

/// The server binary for tests outside the root package: `THROTTLE_BIN` if set, else the
/// workspace's build of the `throttle` binary, brought up to date by `cargo build --bin throttle`
/// the first time a test process asks (cargo does nothing if it is fresh). Building rather than
/// only checking for a file keeps a test from running an old server after a change to it.
///
/// Panics, failing the test, if the build fails.
pub fn binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| match std::env::var_os("THROTTLE_BIN") {
        Some(path) => PathBuf::from(path),
        None => build(),
    })
}

/// Runs `cargo build --bin throttle` in the workspace and returns the executable it names.
fn build() -> PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut child = Command::new(cargo)
        .args([
            "build",
            "--quiet",
            "--bin",
            "throttle",
            "--message-format=json",
        ])
        .current_dir(&workspace)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run cargo build");
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
    let deadline = Instant::now() + BUILD;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for cargo build") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("cargo build --bin throttle took longer than {BUILD:?}");
        }
        thread::sleep(Duration::from_millis(50));
    };
    let out = out.join().unwrap_or_default();
    let err = err.join().unwrap_or_default();
    assert!(
        status.success(),
        "cargo build --bin throttle failed:\n{err}"
    );
    executable(&out).unwrap_or_else(|| panic!("cargo build named no throttle executable:\n{out}"))
}

/// The path of the `throttle` executable in cargo's JSON messages.
fn executable(messages: &str) -> Option<PathBuf> {
    messages
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|message| message["reason"] == "compiler-artifact")
        .filter(|message| message["target"]["name"] == "throttle")
        .find_map(|message| message["executable"].as_str().map(PathBuf::from))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_executable_is_read_from_cargos_messages() {
        let messages = concat!(
            r#"{"reason":"compiler-artifact","target":{"name":"throttle_core"},"executable":null}"#,
            "\n",
            r#"{"reason":"compiler-artifact","target":{"name":"throttle"},"executable":"/t/debug/throttle"}"#,
            "\n",
            r#"{"reason":"build-finished","success":true}"#,
        );
        assert_eq!(
            executable(messages),
            Some(PathBuf::from("/t/debug/throttle"))
        );
        assert_eq!(executable(r#"{"reason":"build-finished"}"#), None);
    }
}
