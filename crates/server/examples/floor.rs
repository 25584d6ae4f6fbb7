//! The floor of the design card: a server with Throttle's HTTP shell and nothing else.
//!
//! It runs the same HTTP layer (`throttle-http`) with the same limits and the same worker pool as the
//! real server (the readiness loop reading connections, the default number of worker threads
//! pulling requests; both from the library, so they cannot drift), but answers
//! every request with `200 Ok` without parsing, locking or counting anything. What it costs per
//! request is what any server on that design pays before Throttle does any work, so its rates
//! bound the real server's from above. docs/benchmark.md compares it with Throttle 0.5.13.
//!
//! ```sh
//! cargo run --release --example floor -- 8000 &
//! cargo run --release --example loadgen -- --url http://127.0.0.1:8000 --scenario health --clients 64
//! ```
//!
//! Not a server to deploy: it answers `Ok` to everything.

use std::sync::Arc;
use std::thread;

use throttle_http::{Response, Server};
use throttle_server::options::Options;
use throttle_server::{fd_limit, options, server};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let port: u16 = match std::env::args().nth(1) {
        Some(port) => port.parse()?,
        None => 8000,
    };
    // The server's defaults, from the library: the same limits, the same number of workers.
    let options = Options::default();
    let (max_connections, _) = fd_limit::fit_connections(options.max_connections);
    let limits = server::connection_limits(&options, max_connections);
    let server =
        Arc::new(Server::http_with_limits(("127.0.0.1", port), limits).map_err(|e| e.to_string())?);
    eprintln!("Listening on http://127.0.0.1:{port}");
    let workers: Vec<_> = (0..options.workers.unwrap_or(options::DEFAULT_WORKERS))
        .map(|_| {
            let server = server.clone();
            thread::spawn(move || {
                for request in server.incoming_requests() {
                    let _ = request.respond(Response::from_string("Ok"));
                }
            })
        })
        .collect();
    for worker in workers {
        let _ = worker.join();
    }
    Ok(())
}
