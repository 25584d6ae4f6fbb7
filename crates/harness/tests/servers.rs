//! The harness against the real binary: it starts servers, several at once, reads their
//! addresses, keeps their logs and restarts them in place.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use throttle_harness::{Cluster, LISTENING, Launch, Server};

const CONFIG: &str = "[semaphores]\nA = 1\n";

/// The status and body of `GET path`, on a connection of its own.
fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("set a read timeout");
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).expect("send");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("read the answer");
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|status| status.parse().ok())
        .unwrap_or_else(|| panic!("no status in {answer:?}"));
    let body = answer
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    (status, body)
}

#[test]
fn a_server_serves_its_configuration_and_its_log_is_kept() {
    let server = Server::start(CONFIG);
    assert_eq!(
        get(server.addr, "/remainder?semaphore=A"),
        (200, "1".into())
    );
    assert_eq!(get(server.addr, "/remainder?semaphore=B").0, 400);
    server
        .lines()
        .assert_logged(|line| line.contains(&format!("{LISTENING}{}", server.addr)));
}

#[test]
fn a_cluster_starts_each_member_with_its_own_launch() {
    let cluster = Cluster::start((1..=3).map(|max| {
        Launch::new()
            .config(&format!("[semaphores]\nA = {max}\n"))
            .env("THROTTLE_LOG", "DEBUG")
    }));
    assert_eq!(cluster.servers().len(), 3);
    let mut urls = cluster.urls();
    urls.dedup();
    assert_eq!(urls.len(), 3, "{urls:?}");
    for (index, server) in cluster.servers().iter().enumerate() {
        let expected = (index + 1).to_string();
        assert_eq!(get(server.addr, "/remainder?semaphore=A"), (200, expected));
    }
    cluster[2]
        .lines()
        .assert_logged(|line| line.contains("DEBUG"));
}

#[test]
fn a_restart_keeps_the_port_and_directory() {
    let mut server = Launch::new().config(CONFIG).start();
    let addr = server.addr;
    let dir = server.process.dir.path().to_owned();
    let pid = server.process.id();
    server.restart();
    assert_eq!(server.addr, addr);
    assert_ne!(server.process.id(), pid);
    assert_eq!(server.process.dir.path(), dir);
    assert!(dir.join("throttle.toml").exists());
    assert_eq!(get(addr, "/health").0, 200);
}

#[test]
fn a_server_that_cannot_start_fails_the_test_with_its_log() {
    let failed =
        std::panic::catch_unwind(|| Launch::new().config("[semaphores]\nA = \"many\"\n").start());
    let message = failed.err().expect("a broken configuration does not start");
    let message = message
        .downcast_ref::<String>()
        .cloned()
        .unwrap_or_default();
    assert!(message.contains("did not log"), "{message}");
    assert!(message.contains("throttle.toml"), "{message}");
}
