// From tiny_http 0.12.0's tests/ (MIT OR Apache-2.0, like the rest of this crate): the tests
// of behaviour this crate keeps, run against the readiness loop. PATCHED.md, "Tests", says
// which upstream tests were removed and why.

extern crate throttle_http;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::thread;
use std::time::Duration;

#[allow(dead_code)]
mod support;

#[test]
fn connection_close_header() {
    let mut client = support::new_client_to_hello_world_server();

    (write!(client, "GET / HTTP/1.1\r\nConnection: keep-alive\r\n\r\n")).unwrap();
    thread::sleep(Duration::from_millis(1000));

    (write!(client, "GET / HTTP/1.1\r\nConnection: close\r\n\r\n")).unwrap();

    // if the connection was not closed, this will err with timeout
    let mut out = Vec::new();
    client.read_to_end(&mut out).unwrap();
}

#[test]
fn http_1_0_connection_close() {
    let mut client = support::new_client_to_hello_world_server();

    (write!(client, "GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")).unwrap();

    // if the connection was not closed, this will err with timeout
    let mut out = Vec::new();
    client.read_to_end(&mut out).unwrap();
}

#[test]
fn detect_connection_closed() {
    let mut client = support::new_client_to_hello_world_server();

    (write!(client, "GET / HTTP/1.1\r\nConnection: keep-alive\r\n\r\n")).unwrap();
    thread::sleep(Duration::from_millis(1000));

    client.shutdown(Shutdown::Write).unwrap();

    // if the connection was not closed, this will err with timeout
    let mut out = Vec::new();
    client.read_to_end(&mut out).unwrap();
}

#[test]
fn poor_network_test() {
    let mut client = support::new_client_to_hello_world_server();

    (write!(client, "G")).unwrap();
    thread::sleep(Duration::from_millis(100));
    (write!(client, "ET /he")).unwrap();
    thread::sleep(Duration::from_millis(100));
    (write!(client, "llo HT")).unwrap();
    thread::sleep(Duration::from_millis(100));
    (write!(client, "TP/1.")).unwrap();
    thread::sleep(Duration::from_millis(100));
    (write!(client, "1\r\nHo")).unwrap();
    thread::sleep(Duration::from_millis(100));
    (write!(client, "st: localho")).unwrap();
    thread::sleep(Duration::from_millis(100));
    (write!(client, "st\r\nConnec")).unwrap();
    thread::sleep(Duration::from_millis(100));
    (write!(client, "tion: close\r")).unwrap();
    thread::sleep(Duration::from_millis(100));
    (write!(client, "\n\r")).unwrap();
    thread::sleep(Duration::from_millis(100));
    (writeln!(client)).unwrap();

    let mut data = String::new();
    client.read_to_string(&mut data).unwrap();
    assert!(data.ends_with("hello world"));
}

#[test]
fn pipelining_test() {
    let mut client = support::new_client_to_hello_world_server();

    (write!(client, "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")).unwrap();
    (write!(client, "GET /hello HTTP/1.1\r\nHost: localhost\r\n\r\n")).unwrap();
    (write!(
        client,
        "GET /world HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    ))
    .unwrap();

    let mut data = String::new();
    client.read_to_string(&mut data).unwrap();
    assert_eq!(data.split("hello world").count(), 4);
}

#[test]
fn server_crash_results_in_response() {
    let server = throttle_http::Server::http("0.0.0.0:0").unwrap();
    let port = server.server_addr().port();
    let mut client = TcpStream::connect(("127.0.0.1", port)).unwrap();

    thread::spawn(move || {
        server.recv().unwrap();
        // oops, server crash
    });

    (write!(
        client,
        "GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    ))
    .unwrap();

    let mut content = String::new();
    client.read_to_string(&mut content).unwrap();
    assert!(&content[9..].starts_with('5')); // 5xx status code
}

#[test]
fn no_transfer_encoding_on_204() {
    let (server, mut client) = support::new_one_server_one_client();

    (write!(
        client,
        "GET / HTTP/1.1\r\nHost: localhost\r\nTE: chunked\r\nConnection: close\r\n\r\n"
    ))
    .unwrap();

    thread::spawn(move || {
        let rq = server.recv().unwrap();

        let resp = throttle_http::Response::empty(throttle_http::StatusCode(204));
        rq.respond(resp).unwrap();
    });

    let mut content = String::new();
    client.read_to_string(&mut content).unwrap();

    assert!(content.starts_with("HTTP/1.1 204"));
    assert!(!content.contains("Transfer-Encoding: chunked"));
}

/// A request that does not arrive in full within the request timeout is answered 408 and
/// its connection closed. (Upstream's version, commented out, used a builder this crate does not
/// have.)
#[test]
fn connection_timeout() {
    let limits = throttle_http::ConnectionLimits {
        request_timeout: Duration::from_millis(200),
        idle_timeout: Some(Duration::from_secs(30)),
        ..throttle_http::ConnectionLimits::default()
    };
    let server = throttle_http::Server::http_with_limits("127.0.0.1:0", limits).unwrap();
    let mut client = TcpStream::connect(server.server_addr()).unwrap();
    support::bound_reads(&client);

    // Half a head, then nothing.
    (write!(client, "GET / HTTP/1.1\r\nHost: loc")).unwrap();

    let mut content = String::new();
    client.read_to_string(&mut content).unwrap();
    assert!(content[9..].starts_with("408"), "{content}");
    drop(server);
}

#[test]
fn chunked_threshold() {
    let resp = throttle_http::Response::from_string("test".to_string());
    assert_eq!(resp.chunked_threshold(), 32768);
    assert_eq!(resp.with_chunked_threshold(42).chunked_threshold(), 42);
}
