// Upstream's test suite: tiny_http 0.12.0's tests/ as published on crates.io (MIT OR
// Apache-2.0, like the rest of this crate), unchanged except where "Throttle:" says why: the
// `#[ignore]` reason of a test of something Throttle's patches change on purpose (PATCHED.md,
// "Upstream's test suite", lists them), or a comment.

#![cfg(unix)]

extern crate throttle_http;

use std::{
    io::{Read, Write},
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
};

#[allow(dead_code)]
mod support;

#[test]
fn unix_basic_handling() {
    // Throttle: a path of this process's own (upstream: "/tmp/tiny-http-test.sock"), so that
    // test runs in two worktrees at once do not take each other's socket.
    let socket = std::env::temp_dir().join(format!("tiny-http-test-{}.sock", std::process::id()));
    let server = throttle_http::Server::http_unix(Path::new(&socket)).unwrap();
    let path: PathBuf = server
        .server_addr()
        .to_unix()
        .unwrap()
        .as_pathname()
        .unwrap()
        .into();
    let mut client = UnixStream::connect(path).unwrap();

    write!(
        client,
        "GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();

    let request = server.recv().unwrap();
    assert!(*request.method() == throttle_http::Method::Get);
    //assert!(request.url() == "/");
    request
        .respond(throttle_http::Response::from_string(
            "hello world".to_owned(),
        ))
        .unwrap();

    server.try_recv().unwrap();

    let mut content = String::new();
    client.read_to_string(&mut content).unwrap();
    assert!(content.ends_with("hello world"));
}
