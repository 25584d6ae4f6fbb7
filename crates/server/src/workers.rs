//! The HTTP shell: a fixed pool of worker threads pulls requests from the HTTP layer
//! (`throttle-http`, which has read and framed them), asks `routes.rs` what the request means,
//! calls the service and writes the answer.
//!
//! Its job is mapping: a route to a service call, the result to a `Reply` (`reply.rs` decides
//! status codes and headers; `status.rs`, `peers_json.rs` and `metrics.rs` render bodies), the
//! reply to an HTTP response. Only this file (and `server.rs`, which starts the server) knows
//! the HTTP layer. It holds no state of its own beyond the metrics handle.

use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Instant;

use throttle_http::{Header, Request, Response, Server};

use crate::error::{Error, Refusal};
use crate::metrics::{self, Metrics};
use crate::peers_json;
use crate::reply::Reply;
use crate::routes::{self, Route};
use crate::service::{Acquired, Answer, Service, Wait};
use crate::status::{self, ClusterView, MemberLag, Snapshot};
use crate::waiting::WaitPool;
use throttle_cluster::node::Status;
use throttle_core::PeerInfo;

/// Bodies above this size are refused: the largest legitimate body, a restore of a peer with
/// many locks, is far smaller.
pub const BODY_LIMIT: usize = 64 * 1024;

/// Request targets above this size are refused. Leaves room for long semaphore names.
pub const URL_LIMIT: usize = 64 * 1024;

/// The largest request head (request line and headers) the HTTP layer reads before it answers
/// 431 and closes the connection: the longest target plus room for headers.
pub const HEAD_LIMIT: usize = URL_LIMIT + 16 * 1024;

const FAVICON: &[u8] = include_bytes!("favicon.ico");
const GREETING: &str = "Hello from Throttle! Semaphores for distributed systems. \
See /metrics, /health and /version.\n";

/// What the workers share.
pub struct App {
    pub service: Arc<Service>,
    pub metrics: Metrics,
    /// The shared secret every route but `/`, `/health` and `/ready` needs, if any.
    pub token: Option<String>,
}

/// A long poll on its way through the waiting pool: the request to answer, what it waits
/// for, and what the metrics need.
pub struct LongPoll {
    request: Request,
    wait: Wait,
    started: Instant,
}

/// The threads that serve requests: a few workers for everything, and the pool that waits
/// for long polls.
pub struct Pools {
    pub workers: Vec<JoinHandle<()>>,
    pub waiting: Arc<WaitPool<LongPoll>>,
}

/// Starts `workers` threads serving requests until the server is unblocked once per thread,
/// and a waiting pool of at most `max_waiters` threads.
pub fn spawn_pools(
    server: &Arc<Server>,
    app: &Arc<App>,
    workers: usize,
    max_waiters: usize,
) -> std::io::Result<Pools> {
    let waiting = {
        let app = app.clone();
        Arc::new(WaitPool::new(max_waiters, move |poll: LongPoll| {
            let served = panic::catch_unwind(AssertUnwindSafe(|| finish_long_poll(&app, poll)));
            if served.is_err() {
                log::error!("A long poll panicked; it was answered 500");
            }
        }))
    };
    let workers = (0..workers)
        .map(|i| {
            let (server, app, waiting) = (server.clone(), app.clone(), waiting.clone());
            thread::Builder::new()
                .name(format!("worker-{i}"))
                .spawn(move || {
                    for request in server.incoming_requests() {
                        // A panic is a bug, but it must not shrink the pool: the request is
                        // answered 500 as it drops, and the worker goes on. (A panic while the
                        // state is locked aborts instead; see `service.rs`.)
                        let served = panic::catch_unwind(AssertUnwindSafe(|| {
                            serve(&app, &waiting, request)
                        }));
                        if served.is_err() {
                            log::error!("A request panicked; it was answered 500");
                        }
                    }
                })
        })
        .collect::<std::io::Result<Vec<_>>>()?;
    Ok(Pools { workers, waiting })
}

/// What handling a route came to: an answer now, or a wait for the waiting pool.
enum Outcome {
    Reply(Reply),
    Wait(Wait),
}

/// Answers one request, or hands it to the waiting pool. Never panics on input; a client that
/// hung up is not an error.
///
/// Never inlined into the worker's loop: its frame is large, and an idle worker sleeps in that
/// loop, so inlined it would keep an extra page of stack resident in each worker.
#[inline(never)]
pub fn serve(app: &App, waiting: &WaitPool<LongPoll>, mut request: Request) {
    let started = Instant::now();
    let (name, outcome) = match read_route(&request) {
        Ok(route) if route.needs_token() && !authorized(&request, app.token.as_deref()) => {
            (route.name(), Err(Error::Unauthorized))
        }
        // The page itself is served without the token, so a browser can load it and ask for
        // the token; without it, it carries no data.
        Ok(Route::StatusPage) if !authorized(&request, app.token.as_deref()) => (
            Route::StatusPage.name(),
            Ok(Outcome::Reply(Reply::status_page(status::locked_html()))),
        ),
        Ok(route) => (route.name(), handle(app, route)),
        Err(error) => ("unknown", Err(error)),
    };
    let reply = match outcome {
        Ok(Outcome::Reply(reply)) => Ok(reply),
        Err(error) => Err(error),
        Ok(Outcome::Wait(wait)) => match waiting.submit(LongPoll {
            request,
            wait,
            started,
        }) {
            Ok(()) => return,
            Err(refused) => {
                // No thread can wait for it: answered with its state, the client asks again.
                app.service.refused_long_poll();
                request = refused.request;
                Ok(Reply::lock(Answer::Pending))
            }
        },
    };
    answer(app, request, name, started, reply);
}

/// A waiting thread's job: waits in the service, then answers.
fn finish_long_poll(app: &App, poll: LongPoll) {
    // A client that closed its connection ends the wait early (`Request::client_closed`): the
    // loop wakes the wait when it sees the connection close.
    let request = &poll.request;
    let service = app.service.clone();
    let peer = poll.wait.peer();
    request.on_client_close(move || service.client_left(peer));
    let reply = app
        .service
        .wait(poll.wait, || request.client_closed())
        .map(Reply::lock);
    answer(app, poll.request, "acquire", poll.started, reply);
}

/// Writes the answer, logs and counts it.
fn answer(
    app: &App,
    request: Request,
    name: &'static str,
    started: Instant,
    reply: Result<Reply, Error>,
) {
    let reply = reply.unwrap_or_else(|error| {
        if error == Error::Refused(Refusal::ExpiredPeer) {
            app.metrics.count_expired_peer_request();
        }
        Reply::error(&error)
    });
    // A cluster member names itself and its leader in every answer: clients follow the leader.
    let reply = match app.service.replication() {
        Some(replication) => reply.with_member(replication.id(), replication.leader()),
        None => reply,
    };
    log::debug!(
        "{} {} -> {}",
        request.method(),
        routes_log_url(request.url()),
        reply.status
    );
    app.metrics.observe(name, reply.status, started.elapsed());
    let content_type = Header::from_bytes("Content-Type", reply.content_type)
        .expect("static header names and values are valid");
    let mut response = Response::from_data(reply.body)
        .with_status_code(reply.status)
        .with_header(content_type);
    for (name, value) in &reply.headers {
        // Names are constants and values digits or static words: always valid.
        if let Ok(header) = Header::from_bytes(*name, value.as_bytes()) {
            response.add_header(header);
        }
    }
    // The connection's thread writes what the socket does not take at once.
    let _ = request.respond(response);
}

/// Whether the request carries the token (or no token is configured). The comparison takes the
/// same time wherever the first difference is, so the secret cannot be found byte by byte.
fn authorized(request: &Request, token: Option<&str>) -> bool {
    let Some(token) = token else {
        return true;
    };
    request
        .headers()
        .iter()
        .filter(|header| header.field.equiv("Authorization"))
        .filter_map(|header| header.value.as_str().trim().split_once(' '))
        // The scheme is case-insensitive (RFC 9110); the token is not.
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .any(|(_, offered)| same_secret(offered.trim().as_bytes(), token.as_bytes()))
}

/// Compares in time that depends on the lengths only.
fn same_secret(offered: &[u8], expected: &[u8]) -> bool {
    let difference = offered
        .iter()
        .zip(expected)
        .fold(0u8, |acc, (a, b)| acc | (a ^ b));
    std::hint::black_box(difference) == 0 && offered.len() == expected.len()
}

/// Keeps log lines short when a client sends a huge URL.
fn routes_log_url(url: &str) -> &str {
    match url.char_indices().nth(200) {
        Some((end, _)) => &url[..end],
        None => url,
    }
}

/// Parses the request, head and body, into a route.
fn read_route(request: &Request) -> Result<Route, Error> {
    if request.url().len() > URL_LIMIT {
        return Err(Error::InvalidRequest(format!(
            "the request target is longer than {URL_LIMIT} bytes"
        )));
    }
    // The HTTP layer has already refused a `Transfer-Encoding` (411) and a body over
    // `BODY_LIMIT` (413, its `max_body_bytes`), and hands the body over read in full.
    let accept = request
        .headers()
        .iter()
        .find(|header| header.field.equiv("Accept"))
        .map(|header| header.value.as_str());
    routes::route(request.method().as_str(), request.url(), request.body())
        .map(|route| routes::negotiate(route, accept))
}

/// Applies a route to the service: an answer now, or for an acquire that must wait, a wait for
/// the waiting pool.
fn handle(app: &App, route: Route) -> Result<Outcome, Error> {
    let service = &app.service;
    let reply = match route {
        // The one route that may wait: every other is answered now.
        Route::Acquire(request) => {
            return Ok(match service.acquire(request)? {
                Acquired::Now(state) => Outcome::Reply(Reply::lock(state)),
                Acquired::Wait(wait) => Outcome::Wait(wait),
            });
        }
        Route::Greeting => Reply::greeting(GREETING),
        // The snapshot is copied under the lock and rendered after it is released.
        Route::StatusPage => Reply::status_page(status_snapshot(service).to_html()),
        Route::StatusJson => Reply::json(status_snapshot(service).to_json()),
        Route::Health => Reply::text(200, "Ok"),
        Route::Ready => readiness(service),
        Route::Version => Reply::text(200, env!("CARGO_PKG_VERSION")),
        Route::Favicon => Reply::ok("image/x-icon", FAVICON.to_vec()),
        Route::Metrics => {
            service.inspect(|core, long_polls, now| app.metrics.update(core, long_polls, now));
            if let Some(replication) = service.replication() {
                app.metrics
                    .update_cluster(&replication.status(), replication.members());
            }
            Reply::ok(metrics::CONTENT_TYPE, app.metrics.render().into_bytes())
        }
        Route::NewPeer { expires_in, name } => {
            Reply::json(service.new_peer(expires_in, name.as_deref())?.to_string())
        }
        Route::Heartbeat { peer, expires_in } => {
            service.heartbeat(peer, expires_in)?;
            Reply::text(200, "Ok")
        }
        Route::RemovePeer { peer } => {
            service.remove_peer(peer)?;
            Reply::text(200, "Ok")
        }
        Route::ReleaseLock { peer, semaphore } => {
            service.release_lock(peer, &semaphore)?;
            Reply::text(200, "Ok")
        }
        Route::IsAcquired { peer } => {
            let acquired = service.read(|core, _, _| core.is_acquired(peer))??;
            Reply::json(acquired.to_string())
        }
        Route::PeerState { peer } => {
            let info = service.read(|core, _, now| {
                core.peer(peer, now)
                    .map(PeerInfo::into_owned)
                    .ok_or_else(|| core.unknown_peer(peer))
            })??;
            Reply::json(peers_json::peer(info))
        }
        Route::ListPeers => Reply::json(peers_json::list(service)?),
        Route::Remainder { semaphore } => {
            let remainder = service.read(|core, _, _| core.remainder(&semaphore))??;
            Reply::json(remainder.to_string())
        }
        Route::Restore(restore) => {
            service.restore(&restore)?;
            Reply::text(200, "Ok")
        }
    };
    Ok(Outcome::Reply(reply))
}

/// What the status page and `/status.json` show: the core's view, taken under the lock, and on
/// a cluster member what it knows of the cluster.
fn status_snapshot(service: &Service) -> Snapshot {
    let mut snapshot = service.inspect(|core, _, now| Snapshot::take(core, now));
    snapshot.cluster = service.replication().map(|replication| {
        let status = replication.status();
        ClusterView {
            id: status.id,
            members: replication.members(),
            leader: status.leader,
            term: status.term,
            commit: status.commit,
            applied: status.applied,
            lag: status.leading.then(|| {
                status
                    .matched
                    .iter()
                    .map(|&(id, matched)| MemberLag {
                        id,
                        matched,
                        lag: status.commit.saturating_sub(matched),
                    })
                    .collect()
            }),
        }
    });
    snapshot
}

/// The answer of `GET /ready`: `200 Ready` when this process can serve through a quorum, else
/// `503 Not ready: <why>`. A single server is always ready. For a cluster member see
/// [`not_ready`]. `/health` is the other probe: 200 whenever the process answers at all.
fn readiness(service: &Service) -> Reply {
    ready_or_not(
        service
            .replication()
            .and_then(|replication| not_ready(&replication.status(), replication.members())),
    )
}

/// `200 Ready`, or `503 Not ready: <reason>` (the answers `contract/wire.toml` lists).
fn ready_or_not(reason: Option<String>) -> Reply {
    match reason {
        None => Reply::text(200, "Ready"),
        Some(reason) => Reply::text(503, format!("Not ready: {reason}")),
    }
}

/// Why a cluster member cannot serve through a quorum now, or `None` when it can: it knows a
/// leader (itself or another member, so a majority elected one and, with Raft's check of the
/// quorum, still follows it; a leader cut off from its majority steps down within an election
/// timeout, a follower cut off from its leader stops following it as soon), and it has applied
/// every entry it knows to be committed (a member that restarts or returns replays or receives
/// the log first, and is not ready until it is through). Writes and reads through a ready
/// member are answered at once; through one that is not, they wait for a leader and answer
/// `503 No quorum` after a few seconds.
pub fn not_ready(status: &Status, members: usize) -> Option<String> {
    let Some(leader) = status.leader else {
        return Some(format!(
            "no leader (an election, or fewer than {} of the {members} members reachable)",
            members / 2 + 1
        ));
    };
    if status.applied < status.commit {
        return Some(format!(
            "catching up: applied {} of {} committed entries (leader {leader})",
            status.applied, status.commit
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// README documents these limits (64 KiB bodies and targets, 80 KiB heads); tests elsewhere
    /// use the constants, so this one pins them to what the documentation says.
    #[test]
    fn the_documented_limits() {
        assert_eq!(BODY_LIMIT, 64 * 1024);
        assert_eq!(URL_LIMIT, 64 * 1024);
        assert_eq!(HEAD_LIMIT, 80 * 1024);
        assert_eq!(crate::routes::MAX_NAME_BYTES, 256);
    }

    #[test]
    fn a_member_is_ready_with_a_leader_and_its_committed_entries_applied() {
        let status = |leader, commit, applied| Status {
            id: 2,
            leader,
            commit,
            applied,
            ..Status::default()
        };
        assert_eq!(not_ready(&status(Some(1), 40, 40), 3), None);
        assert_eq!(not_ready(&status(Some(2), 40, 40), 3), None);
        assert_eq!(
            not_ready(&status(None, 40, 40), 3).as_deref(),
            Some("no leader (an election, or fewer than 2 of the 3 members reachable)")
        );
        assert_eq!(
            not_ready(&status(None, 0, 0), 5).as_deref(),
            Some("no leader (an election, or fewer than 3 of the 5 members reachable)")
        );
        assert_eq!(
            not_ready(&status(Some(3), 40, 12), 3).as_deref(),
            Some("catching up: applied 12 of 40 committed entries (leader 3)")
        );
    }

    /// `/ready`'s answers are the ones `contract/wire.toml` lists.
    #[test]
    fn readiness_answers_are_the_contract() {
        #[derive(serde::Deserialize)]
        struct Contract {
            readiness: std::collections::BTreeMap<String, Entry>,
        }
        #[derive(serde::Deserialize)]
        struct Entry {
            words: String,
            status: u16,
        }
        let contract: Contract = toml::from_str(include_str!("../../../contract/wire.toml"))
            .expect("contract/wire.toml");
        let entry = |key: &str| {
            let entry = &contract.readiness[key];
            (entry.status, entry.words.clone())
        };
        let reply = |status: &Status| {
            let reply = ready_or_not(not_ready(status, 3));
            (reply.status, String::from_utf8(reply.body).expect("text"))
        };
        let (status, body) = reply(&Status {
            leader: Some(1),
            ..Status::default()
        });
        assert_eq!((status, body), entry("ready"));
        let (status, body) = reply(&Status::default());
        let (expected_status, words) = entry("not_ready");
        assert_eq!(status, expected_status);
        assert!(body.starts_with(&format!("{words}: ")), "{body}");
    }

    #[test]
    fn secrets_compare_equal_only_when_identical() {
        assert!(same_secret(b"s3cret", b"s3cret"));
        assert!(!same_secret(b"s3cret", b"s3creT"));
        assert!(!same_secret(b"s3cre", b"s3cret"));
        assert!(!same_secret(b"s3crett", b"s3cret"));
        assert!(!same_secret(b"", b"s3cret"));
    }
}
