//! Which `throttle` executable the tests run, built fresh once per test process.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use crate::process::run_to_exit;

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
    let cargo = PathBuf::from(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    let args = [
        "build",
        "--quiet",
        "--bin",
        "throttle",
        "--message-format=json",
    ];
    let (status, out, err) = run_to_exit(&cargo, &args, &workspace, &[], BUILD);
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
