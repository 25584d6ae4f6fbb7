//! SIGHUP reloads the configuration without touching the state (issue 14): semaphores grown,
//! shrunk, removed and added; a broken file keeps the running configuration; logging levels
//! follow; every reload is counted.

#![cfg(unix)]

mod common;

use common::{PROMPTLY, Server, answered};

const BEFORE: &str = r#"
[semaphores]
grown = 1
shrunk = 3
removed = 1
"#;

const AFTER: &str = r#"
[semaphores]
grown = 2
shrunk = 1
added = 1

[logging.stderr]
level = "DEBUG"
"#;

/// Rewrites the server's configuration file and sends SIGHUP; returns once the reload was
/// counted as `result`.
#[track_caller]
fn reload(server: &Server, config: &str, result: &str, count: f64) {
    server.process.dir.write("throttle.toml", config);
    server.process.signal("HUP");
    server.wait_for_metric(
        &format!("throttle_config_reloads_total{{result=\"{result}\"}}"),
        count,
    );
}

#[test]
fn sighup_applies_a_new_configuration_to_the_live_state() {
    let server = Server::start(BEFORE);
    let (a, b, c, d) = (
        server.new_peer(),
        server.new_peer(),
        server.new_peer(),
        server.new_peer(),
    );
    server.acquire(a, "grown", 1, "").expect(200, "");
    let waiting = server.acquire_in_background(b, "grown", 1, "?block_for=60s");
    server.wait_for_long_polls(1);
    server.acquire(c, "shrunk", 3, "").expect(200, "");
    server.acquire(d, "removed", 1, "").expect(200, "");

    reload(&server, AFTER, "ok", 1.0);

    // A grown max grants the waiter at once.
    let (reply, _) = answered(waiting);
    reply.expect(200, "");
    assert_eq!(server.remainder("grown"), 0);
    // A shrunk max keeps the held count and blocks what does not fit.
    assert_eq!(server.remainder("shrunk"), -2);
    let e = server.new_peer();
    server.acquire(e, "shrunk", 1, "").expect(202, "");
    server.acquire(c, "shrunk", 3, "").expect(200, "");
    // A removed semaphore keeps its held lock until released, and takes no new ones.
    let f = server.new_peer();
    server
        .acquire(f, "removed", 1, "")
        .expect(400, "Unknown semaphore");
    server.acquire(d, "removed", 1, "").expect(200, "");
    server
        .get("/remainder?semaphore=removed")
        .expect(400, "Unknown semaphore");
    server.release(d, "removed").expect(200, "");
    let metrics = server.metrics();
    assert!(
        !metrics.contains("semaphore=\"removed\""),
        "the removed semaphore's series stay: {metrics}"
    );
    // An added one serves.
    server.acquire(f, "added", 1, "").expect(200, "");
    // The log level followed the file.
    server
        .process
        .lines
        .wait_for(PROMPTLY, |line| line.contains(" DEBUG "))
        .expect("DEBUG lines after the reload");
    server.process.lines.assert_logged(|line| {
        line.contains("Configuration reloaded: 1 added, 2 changed, 1 removed")
    });
}

#[test]
fn a_broken_file_keeps_the_running_configuration() {
    let server = Server::start(BEFORE);
    reload(&server, "[semaphores]\ngrown = -1\n", "error", 1.0);
    let line = server
        .process
        .lines
        .wait_for(PROMPTLY, |line| line.contains("Reload failed"))
        .expect("the error is logged");
    assert!(
        line.contains(" ERROR ") && line.contains("throttle.toml:2"),
        "{line}"
    );
    let peer = server.new_peer();
    server.acquire(peer, "removed", 1, "").expect(200, "");
    assert_eq!(server.remainder("grown"), 1);
    assert_eq!(
        server.metric("throttle_config_reloads_total{result=\"ok\"}"),
        Some(0.0)
    );
    // Fixed, the next reload works.
    reload(&server, AFTER, "ok", 1.0);
    server.get("/remainder?semaphore=added").expect(200, "1");
}
