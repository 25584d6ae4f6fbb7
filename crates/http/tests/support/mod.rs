// From tiny_http 0.12.0's tests/ (MIT OR Apache-2.0, like the rest of this crate): the tests
// of behaviour this crate keeps, run against the readiness loop. PATCHED.md, "Tests", says
// which upstream tests were removed and why.

use std::net::TcpStream;
use std::thread;
use std::time::Duration;

/// Creates a server and a client connected to the server.
pub fn new_one_server_one_client() -> (throttle_http::Server, TcpStream) {
    let server = throttle_http::Server::http("0.0.0.0:0").unwrap();
    let port = server.server_addr().port();
    let client = TcpStream::connect(("127.0.0.1", port)).unwrap();
    bound_reads(&client);
    (server, client)
}

/// Creates a "hello world" server with a client connected to the server.
///
/// The server will automatically close after 3 seconds.
pub fn new_client_to_hello_world_server() -> TcpStream {
    let server = throttle_http::Server::http("0.0.0.0:0").unwrap();
    let port = server.server_addr().port();
    let client = TcpStream::connect(("127.0.0.1", port)).unwrap();
    bound_reads(&client);

    thread::spawn(move || {
        let mut cycles = 3 * 1000 / 20;

        loop {
            if let Some(rq) = server.try_recv().unwrap() {
                let response = throttle_http::Response::from_string("hello world".to_string());
                rq.respond(response).unwrap();
            }

            thread::sleep(Duration::from_millis(20));

            cycles -= 1;
            if cycles == 0 {
                break;
            }
        }
    });

    client
}

/// Bounds every read of a test's client, so that a server that never answers or never closes
/// fails the test instead of hanging it.
pub fn bound_reads(client: &TcpStream) {
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
}
