// From tiny_http 0.12.0's tests/ (MIT OR Apache-2.0, like the rest of this crate): the tests
// of behaviour this crate keeps, run against the readiness loop. PATCHED.md, "Tests", says
// which upstream tests were removed and why.

extern crate throttle_http;

use std::io::{Read, Write};

#[allow(dead_code)]
mod support;

#[test]
fn basic_handling() {
    let (server, mut stream) = support::new_one_server_one_client();
    write!(
        stream,
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
    stream.read_to_string(&mut content).unwrap();
    assert!(content.ends_with("hello world"));
}
