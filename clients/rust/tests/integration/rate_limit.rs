//! `rate_limit`: at most N grants in any window of length `per`.

use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Instant;

use throttle_client::Error;

use crate::support::{Server, ms, secs};

#[test]
fn at_most_max_calls_start_in_any_window() {
    let server = Server::start();
    let client = server.client();
    let per = ms(500);
    let grants = Arc::new(Mutex::new(Vec::new()));
    let started = Instant::now();
    let callers: Vec<_> = (0..4)
        .map(|_| {
            let (client, grants) = (client.clone(), grants.clone());
            thread::spawn(move || {
                for _ in 0..3 {
                    client.rate_limit("api", per).unwrap();
                    grants.lock().unwrap().push(Instant::now());
                }
            })
        })
        .collect();
    for caller in callers {
        caller.join().unwrap();
    }
    let mut grants = grants.lock().unwrap().clone();
    grants.sort();
    assert_eq!(grants.len(), 12);
    // `api = 3`: the fourth grant after any grant comes a full window later. The grants are
    // stamped on return, so allow for the answer's way back.
    for window in grants.windows(4) {
        let gap = window[3] - window[0];
        assert!(gap >= per - ms(60), "4 grants within {gap:?}");
    }
    // Expiry is prompt: 12 grants of 3 per window take about 3 windows, not 12.
    assert!(started.elapsed() < secs(8), "took {:?}", started.elapsed());
    // No unit is ever released: the last ones are still held, and every one frees itself.
    assert!(client.remainder("api").unwrap() < 3);
    crate::support::eventually(secs(10), "all units to free themselves", || {
        client.remainder("api").unwrap() == 3 && client.list_peers().unwrap().is_empty()
    });
}

#[test]
fn a_rate_limit_times_out_without_leaving_a_request_behind() {
    let server = Server::start();
    let client = server.client();
    for _ in 0..3 {
        client.rate_limit("api", secs(60)).unwrap();
    }
    let error = client
        .rate_limit_with("api", secs(60), 1, Some(ms(300)))
        .unwrap_err();
    assert!(matches!(error, Error::Timeout { .. }), "{error:?}");
    let peers = client.list_peers().unwrap();
    assert_eq!(peers.len(), 3);
    assert!(peers.iter().all(|peer| peer.pending.is_empty()));
}

#[test]
fn a_rate_limit_reports_rejections() {
    let server = Server::start();
    let client = server.client();
    assert!(matches!(
        client.rate_limit("nope", secs(1)),
        Err(Error::UnknownSemaphore)
    ));
    assert!(matches!(
        client.rate_limit_with("api", secs(1), 4, None),
        Err(Error::CountTooLarge { .. })
    ));
}
