//! `Client`: one method per route of the server's HTTP API, with typed errors and retries.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Failed, Unreachable, is_no_quorum, is_peer_limit};
use crate::members::Members;
use crate::retry::{Next, Schedule};

/// How long [`Client::new`] keeps retrying a request that failed on the way (connection
/// refused or reset, timeout) or on the server (5xx, but not 503 `Too many peers`, see
/// [`Error::TooManyPeers`]). Long enough to ride out a server restart.
pub const DEFAULT_RETRY_BUDGET: Duration = Duration::from_secs(30);

/// The environment variable [`Client::from_env`] reads the token from, the same one the server
/// reads its token from.
pub const TOKEN_VARIABLE: &str = "THROTTLE_TOKEN";

/// The environment variable [`Client::from_environment`] reads the server's URL from (several
/// members' URLs separated by commas), the same one `throttle lock` and `throttle status` read.
pub const URL_VARIABLE: &str = "THROTTLE_URL";

/// The server [`Client::from_environment`] asks when [`URL_VARIABLE`] names none: the server's
/// own default address and port.
pub const DEFAULT_URL: &str = "http://127.0.0.1:8000";

/// How long a request may take beyond the `block_for` it asks the server to wait. A healthy
/// server answers in milliseconds; this only bounds how long a silent connection goes unnoticed.
const ANSWER_MARGIN: Duration = Duration::from_secs(30);

/// [`ANSWER_MARGIN`] for a client of several members. A member answers within its commit
/// timeout (3 s, then `503 No quorum`); one silent for longer is paused, cut off by a firewall
/// that drops, or on a machine that is gone, and the request moves on to the next member
/// instead of waiting out the whole margin while the others elect a leader.
const MEMBER_ANSWER_MARGIN: Duration = Duration::from_secs(5);

/// The id of a peer, the server-side owner of locks. The server picks it at random, below
/// 2^53.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PeerId(pub u64);

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The header of a granted acquire that carries the lock's fencing token.
const FENCING_TOKEN: &str = "Fencing-Token";

/// The header the server adds to `Unknown peer` when the peer expired.
const PEER_STATE: &str = "Throttle-Peer-State";

/// The header of a cluster member's answers that names the member (its id).
const MEMBER: &str = "Throttle-Member";

/// The header of a cluster member's answers that names the leader it knows (its id).
const LEADER: &str = "Throttle-Leader";

/// The longest holder name the server accepts, in bytes.
const MAX_NAME_BYTES: usize = 256;

/// One peer as `GET /peers/` ([`Client::list_peers`]) and `GET /peers/{id}`
/// ([`Client::peer_state`]) describe it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PeerInfo {
    /// The peer's id.
    pub id: PeerId,
    /// Its acquired locks: semaphore name to count.
    pub acquired: BTreeMap<String, i64>,
    /// The fencing tokens of its acquired locks: semaphore name to token. Empty from a server
    /// without fencing tokens.
    #[serde(default)]
    pub fencing_tokens: BTreeMap<String, u64>,
    /// Its pending lock, if any: semaphore name to count (at most one entry).
    pub pending: BTreeMap<String, i64>,
    /// Time left until the peer expires, in milliseconds.
    pub expires_in_ms: u64,
    /// The holder's name, if the peer was created with one.
    #[serde(default)]
    pub name: Option<String>,
}

/// The state of a lock after [`Client::acquire_state`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockState {
    /// The lock is held. `fencing_token` is the number of its grant: larger than every token
    /// the server granted before, the same for a repeat of the acquire and after shrinking.
    /// `None` from a server without fencing tokens (Throttle 0.5).
    Acquired {
        /// The lock's fencing token.
        fencing_token: Option<u64>,
    },
    /// The lock is queued behind others.
    Pending,
}

impl LockState {
    /// Whether the lock is held.
    pub fn is_acquired(self) -> bool {
        matches!(self, LockState::Acquired { .. })
    }
}

/// What [`Client::send`] got back: the status, the body, and the headers this client reads.
struct Answer {
    status: u16,
    body: String,
    fencing_token: Option<u64>,
    peer_expired: bool,
    /// The id of the cluster member that answered, and of the leader it knows.
    member: Option<u64>,
    leader: Option<u64>,
}

/// The name a client gives its peers unless told otherwise: `hostname:pid`.
///
/// The host name comes, without a dependency, from the first of: `/proc/sys/kernel/hostname`
/// (Linux, containers included), `/etc/hostname`, the environment variables `HOSTNAME` and
/// `COMPUTERNAME` (Windows); `unknown-host` if none has one (macOS without `HOSTNAME`
/// exported, for instance). Cut to fit the server's limit of 256 bytes.
pub fn default_peer_name() -> String {
    let from_file = |path: &str| std::fs::read_to_string(path).ok();
    let host = from_file("/proc/sys/kernel/hostname")
        .or_else(|| from_file("/etc/hostname"))
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .map(|host| host.trim().to_owned())
        .filter(|host| !host.is_empty() && !host.chars().any(char::is_control))
        .unwrap_or_else(|| "unknown-host".to_owned());
    let pid = format!(":{}", std::process::id());
    let mut end = host.len().min(MAX_NAME_BYTES - pid.len());
    while !host.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{pid}", &host[..end])
}

impl PeerInfo {
    /// Time left until the peer expires, unless it is prolonged.
    pub fn expires_in(&self) -> Duration {
        Duration::from_millis(self.expires_in_ms)
    }
}

/// A connection to one Throttle server, or to the members of a Throttle cluster, with one
/// method per route of its HTTP API.
///
/// Cloning is cheap: clones share the connection pool and the member in use. Every method
/// blocks until the server answers. Requests that fail on the way or with a server error (5xx)
/// are retried with growing, jittered pauses for up to [`DEFAULT_RETRY_BUDGET`] (see
/// [`Client::with_retry_budget`]); rejected requests (4xx) are not retried, they become the
/// matching [`Error`] variant at once, and neither is the server's peer limit (503 `Too many
/// peers`, [`Error::TooManyPeers`]), which lasts as long as other clients hold their peers.
/// Retrying is safe because acquire, release, heartbeat and restore are idempotent; a retried
/// [`Client::new_peer`] may leave an unused peer behind, which expires on its own.
///
/// **Several members.** Given the URLs of a cluster's members ([`Client::new`] with commas,
/// [`Client::for_members`]), the client follows the leader. Every answer of a member names the
/// member and the leader it knows (headers `Throttle-Member` and `Throttle-Leader`); the client
/// remembers which URL is which member, and when an answer names another member as the
/// leader, sends its next requests to that member's URL, or, while it does not know which URL
/// that is, to the next member it has not heard from. So it talks to the leader after at most
/// one answer from each member, without asking anything extra, and follows a new leader with
/// the next answer that names it. (Any member answers every route, a follower by way of the
/// leader, so this saves a hop, not a failure.) A request that fails on the way or with a 5xx
/// (503 `No quorum` from a member cut off from the others, say) goes to the next member at
/// once, and for a few seconds no answer leads the client back to the member that failed. A
/// member that stays silent (paused, its machine gone, a firewall that drops) counts as failed
/// after 5 s beyond any long poll, not 30 s: a member answers within 3 s even without a quorum.
/// After a round of all members without an answer it pauses as above, until the retry budget
/// is spent. Even with a budget of zero each member is asked once. A held lock, a waiting
/// acquire and its fencing tokens are the cluster's, so a change of leader is invisible to
/// them. A client of one URL (one server, or a load balancer in front of the members) always
/// asks that URL.
///
/// Most programs want the higher-level [`Client::lock`] and [`Client::rate_limit`] instead.
///
/// A server with access control needs a token: see [`Client::with_token`] and
/// [`Client::from_env`].
///
/// ```no_run
/// use std::time::Duration;
/// use throttle_client::Client;
///
/// let client = Client::new("http://localhost:8000");
/// let peer = client.new_peer(Duration::from_secs(60))?;
/// if client.acquire(peer, "A", 1, Some(Duration::from_secs(5)), None)? {
///     println!("{} of A left", client.remainder("A")?);
/// }
/// client.release(peer)?;
/// # Ok::<(), throttle_client::Error>(())
/// ```
#[derive(Clone)]
pub struct Client {
    agent: ureq::Agent,
    /// The servers' URLs without a trailing slash: one, or the members of a cluster. Never
    /// empty.
    members: Arc<[Box<str>]>,
    /// Which member is asked first, and what the client knows of each (its id, whether it
    /// failed lately). Shared by clones, so a guard's heartbeat and its owner follow the leader
    /// and move on from a lost member together.
    known: Arc<Mutex<Members>>,
    retry_budget: Duration,
    /// The value of the `Authorization` header, `Bearer <token>`, if a token is set.
    authorization: Option<Arc<str>>,
    /// The holder name sent with new peers and restores, if any.
    peer_name: Option<Arc<str>>,
}

/// Shows whether a token is set, never the token.
impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("members", &self.members)
            .field("retry_budget", &self.retry_budget)
            .field("has_token", &self.has_token())
            .field("peer_name", &self.peer_name)
            .finish_non_exhaustive()
    }
}

/// The body of `PUT /peers/{id}`.
#[derive(Serialize)]
struct ExpiresIn {
    expires_in: String,
}

/// The body of `POST /new_peer`.
#[derive(Serialize)]
struct NewPeer<'a> {
    expires_in: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
}

/// The body of `POST /restore`.
#[derive(Serialize)]
struct Restore<'a> {
    expires_in: String,
    peer_id: PeerId,
    acquired: &'a BTreeMap<String, i64>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    fencing_tokens: &'a BTreeMap<String, u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
}

/// A request before it is sent: the method, and the body for those that have one.
enum Method {
    Get,
    Delete,
    Put(String),
    Post(String),
}

impl Client {
    /// A client for the server at `base_url`, e.g. `http://localhost:8000`, or for the members
    /// of a cluster, their URLs separated by commas:
    /// `http://a:8000,http://b:8000,http://c:8000` (see [`Client::for_members`]). Nothing is
    /// sent until the first request; a malformed URL shows as [`Error::Transport`] then.
    pub fn new(base_url: &str) -> Client {
        Client::for_members(base_url.split(','))
    }

    /// A client for the members of a Throttle cluster: requests go to the leader once the
    /// members' answers have said which member leads and which URL it has, and on to the next
    /// member when one cannot be reached or has no quorum (see [`Client`]). One URL makes the
    /// same client as [`Client::new`]. Blank entries are left out.
    ///
    /// ```no_run
    /// use throttle_client::Client;
    ///
    /// let client = Client::for_members(["http://a:8000", "http://b:8000", "http://c:8000"]);
    /// let guard = client.lock("db").acquire()?;
    /// // ... the lock stays held, and its heartbeats go on, if one member fails ...
    /// # Ok::<(), throttle_client::Error>(())
    /// ```
    pub fn for_members<S: AsRef<str>>(urls: impl IntoIterator<Item = S>) -> Client {
        let mut members: Vec<Box<str>> = urls
            .into_iter()
            .map(|url| url.as_ref().trim().trim_end_matches('/').to_owned())
            .filter(|url| !url.is_empty())
            .map(String::into_boxed_str)
            .collect();
        if members.is_empty() {
            // Fails at the first request, as a malformed URL does.
            members.push("".into());
        }
        let agent = ureq::Agent::config_builder()
            // Rejections carry their reason in the body, so 4xx and 5xx must be read, not raised.
            .http_status_as_error(false)
            // Requests that carry `block_for` raise this per request.
            .timeout_global(Some(ANSWER_MARGIN))
            .build()
            .new_agent();
        Client {
            agent,
            known: Arc::new(Mutex::new(Members::new(members.len()))),
            members: members.into(),
            retry_budget: DEFAULT_RETRY_BUDGET,
            authorization: None,
            peer_name: Some(default_peer_name().into()),
        }
    }

    /// A client for the server at `base_url` (or the members of a cluster, separated by
    /// commas, as for [`Client::new`]) with the token from the environment variable
    /// `THROTTLE_TOKEN` ([`TOKEN_VARIABLE`]), if it is set and not empty; without it, the same
    /// as [`Client::new`]. The server reads the same variable, so one setting serves both.
    ///
    /// ```no_run
    /// use throttle_client::Client;
    ///
    /// // THROTTLE_TOKEN=s3cret in the environment of the program.
    /// let client = Client::from_env("http://localhost:8000");
    /// println!("{} units of A free", client.remainder("A")?);
    /// # Ok::<(), throttle_client::Error>(())
    /// ```
    pub fn from_env(base_url: &str) -> Client {
        let client = Client::new(base_url);
        match std::env::var(TOKEN_VARIABLE) {
            Ok(token) => client.with_token(token),
            Err(_) => client,
        }
    }

    /// A client configured by the environment alone, as `throttle lock` is: the server, or the
    /// cluster's members separated by commas, from `THROTTLE_URL` ([`URL_VARIABLE`]), else
    /// [`DEFAULT_URL`]; the token as in [`Client::from_env`].
    ///
    /// ```no_run
    /// // THROTTLE_URL=http://a:8000,http://b:8000,http://c:8000 in the environment.
    /// let client = throttle_client::Client::from_environment();
    /// let guard = client.lock("db").acquire()?;
    /// # Ok::<(), throttle_client::Error>(())
    /// ```
    pub fn from_environment() -> Client {
        let urls = std::env::var(URL_VARIABLE)
            .ok()
            .filter(|urls| !urls.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_URL.to_owned());
        Client::from_env(&urls)
    }

    /// This client, sending `Authorization: Bearer <token>` with every request, for a server
    /// started with a token (`[auth] token` or `THROTTLE_TOKEN`). Without the right token such
    /// a server answers everything but its health check with 401, which becomes
    /// [`Error::Unauthorized`]. An empty `token` removes the token.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use throttle_client::{Client, Error};
    ///
    /// let client = Client::new("http://localhost:8000").with_token("s3cret");
    /// match client.lock("db").timeout(Duration::from_secs(10)).acquire() {
    ///     Ok(_guard) => { /* use the database */ }
    ///     Err(Error::Unauthorized) => eprintln!("wrong token"),
    ///     Err(other) => eprintln!("failed: {other}"),
    /// }
    /// ```
    ///
    /// A token with characters a header may not hold (a line break, say) makes every request
    /// fail with [`Error::Transport`].
    pub fn with_token(mut self, token: impl Into<String>) -> Client {
        let token = token.into();
        self.authorization = (!token.is_empty()).then(|| format!("Bearer {token}").into());
        self
    }

    /// This client, naming the peers it creates `name` (sent with [`Client::new_peer`] and
    /// [`Client::restore`]): the server shows it on its status page, in `GET /peers/` and in its
    /// debug log, so an operator sees who holds a semaphore. The default is
    /// [`default_peer_name`], `hostname:pid`; an empty `name` sends none. The server refuses
    /// names above 256 bytes or with control characters ([`Error::InvalidRequest`], 400).
    ///
    /// ```no_run
    /// let client = throttle_client::Client::new("http://localhost:8000")
    ///     .with_peer_name(format!("nightly-import:{}", std::process::id()));
    /// ```
    pub fn with_peer_name(mut self, name: impl Into<String>) -> Client {
        let name = name.into();
        self.peer_name = (!name.is_empty()).then(|| name.into());
        self
    }

    /// The holder name sent with new peers and restores, see [`Client::with_peer_name`].
    pub fn peer_name(&self) -> Option<&str> {
        self.peer_name.as_deref()
    }

    /// Whether requests carry a token (see [`Client::with_token`]).
    pub fn has_token(&self) -> bool {
        self.authorization.is_some()
    }

    /// This client with another retry budget: the longest time a request is retried after
    /// transport errors and 5xx answers (but not [`Error::TooManyPeers`], which is never
    /// retried). `Duration::ZERO` turns retries off.
    pub fn with_retry_budget(mut self, budget: Duration) -> Client {
        self.retry_budget = budget;
        self
    }

    /// The server's URL, without a trailing slash; of a cluster, the member requests go to
    /// now: the leader, once the answers have led the client there (see [`Client`]).
    pub fn base_url(&self) -> &str {
        &self.members[self.known().current() % self.members.len()]
    }

    /// The URLs of every server this client knows, without trailing slashes: one, or the
    /// members of a cluster in the order given.
    pub fn members(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        self.members.iter().map(|member| &**member)
    }

    /// The retry budget, see [`Client::with_retry_budget`].
    pub fn retry_budget(&self) -> Duration {
        self.retry_budget
    }

    /// Creates a peer (`POST /new_peer`) that expires `expires_in` from now unless prolonged by
    /// [`Client::heartbeat`] or an acquire with `expires_in`. Release it with
    /// [`Client::release`] when done. Fails with [`Error::TooManyPeers`] at once if the server
    /// holds its maximum of live peers.
    pub fn new_peer(&self, expires_in: Duration) -> Result<PeerId, Error> {
        let body = json(&NewPeer {
            expires_in: duration(expires_in),
            name: self.peer_name(),
        });
        self.send_json(Method::Post(body), "/new_peer", None)
    }

    /// Asks for a lock of `count` on `semaphore` for `peer`
    /// (`PUT /peers/{id}/{semaphore}`). Returns `true` once the lock is acquired, `false` while
    /// it is pending (queued behind others).
    ///
    /// With `block_for` the server holds the answer until the lock is granted or `block_for`
    /// has passed (long poll); without it, it answers at once. The server may also answer
    /// `false` early, e.g. when all its long-poll slots are taken, so callers should pause a
    /// little before asking again after an early `false`. `expires_in` also prolongs the
    /// peer. Asking again with the same count is idempotent and keeps the place in the queue;
    /// a smaller count shrinks a held lock.
    ///
    /// [`Client::acquire_state`] does the same and also returns the lock's fencing token. A
    /// peer that expired on the server fails with [`Error::LockLost`].
    pub fn acquire(
        &self,
        peer: PeerId,
        semaphore: &str,
        count: i64,
        block_for: Option<Duration>,
        expires_in: Option<Duration>,
    ) -> Result<bool, Error> {
        self.acquire_state(peer, semaphore, count, block_for, expires_in)
            .map(LockState::is_acquired)
    }

    /// [`Client::acquire`], answering the lock's state with its fencing token once it is held.
    ///
    /// ```no_run
    /// use throttle_client::{Client, LockState};
    ///
    /// let client = Client::new("http://localhost:8000");
    /// let peer = client.new_peer(std::time::Duration::from_secs(60))?;
    /// if let LockState::Acquired { fencing_token } = client.acquire_state(peer, "db", 1, None, None)? {
    ///     println!("writing with token {fencing_token:?}");
    /// }
    /// # Ok::<(), throttle_client::Error>(())
    /// ```
    pub fn acquire_state(
        &self,
        peer: PeerId,
        semaphore: &str,
        count: i64,
        block_for: Option<Duration>,
        expires_in: Option<Duration>,
    ) -> Result<LockState, Error> {
        let mut path = format!("/peers/{peer}/{}", encode(semaphore));
        let mut separator = '?';
        for (key, value) in [("block_for", block_for), ("expires_in", expires_in)] {
            if let Some(value) = value {
                path.push_str(&format!("{separator}{key}={}", duration(value)));
                separator = '&';
            }
        }
        let timeout = block_for.map(|block_for| block_for + self.answer_margin());
        let answer = self.send(Method::Put(count.to_string()), &path, timeout)?;
        match answer.status {
            200 => Ok(LockState::Acquired {
                fencing_token: answer.fencing_token,
            }),
            202 => Ok(LockState::Pending),
            status => Err(Error::UnexpectedResponse {
                status,
                body: answer.body,
            }),
        }
    }

    /// Releases `peer` and all its locks (`DELETE /peers/{id}`). Succeeds also if the server
    /// did not know the peer.
    pub fn release(&self, peer: PeerId) -> Result<(), Error> {
        self.send(Method::Delete, &format!("/peers/{peer}"), None)
            .map(drop)
    }

    /// Releases the lock of `peer` on `semaphore`, acquired or pending
    /// (`DELETE /peers/{id}/{semaphore}`). Succeeds also if the peer holds no such lock.
    pub fn release_lock(&self, peer: PeerId, semaphore: &str) -> Result<(), Error> {
        let path = format!("/peers/{peer}/{}", encode(semaphore));
        self.send(Method::Delete, &path, None).map(drop)
    }

    /// Prolongs `peer` to expire `expires_in` from now (`PUT /peers/{id}`). Fails with
    /// [`Error::UnknownPeer`] if the server no longer knows it; [`Client::restore`] helps then.
    pub fn heartbeat(&self, peer: PeerId, expires_in: Duration) -> Result<(), Error> {
        let body = json(&ExpiresIn {
            expires_in: duration(expires_in),
        });
        self.send(Method::Put(body), &format!("/peers/{peer}"), None)
            .map(drop)
    }

    /// Re-creates `peer` with the same id and the locks it had `acquired` (`POST /restore`),
    /// after the server forgot it (it restarted). The restored locks count even if that
    /// overcommits a semaphore: their owner already uses the resource. Each lock gets a new
    /// fencing token; [`Client::restore_with_tokens`] keeps the ones the locks had.
    ///
    /// Restoring a peer the server still knows with exactly these locks only prolongs it; with
    /// other locks it fails with [`Error::RestoreConflict`]. Re-creating a peer on a server that
    /// holds its maximum of live peers fails with [`Error::TooManyPeers`] at once.
    ///
    /// The server also restores a peer that *expired* ([`Error::LockLost`]); whether that is
    /// safe is the caller's decision (others may hold its locks by now). The lock guards never
    /// restore an expired peer.
    pub fn restore(
        &self,
        peer: PeerId,
        acquired: &BTreeMap<String, i64>,
        expires_in: Duration,
    ) -> Result<(), Error> {
        self.restore_with_tokens(peer, acquired, &BTreeMap::new(), expires_in)
    }

    /// [`Client::restore`] that brings the locks' fencing tokens back (`fencing_tokens` in the
    /// body): a restored lock keeps its token, so the resource it protects sees no change, and
    /// the server's next tokens are larger. Every name of `fencing_tokens` must be one of
    /// `acquired`; locks without a token get a new one.
    pub fn restore_with_tokens(
        &self,
        peer: PeerId,
        acquired: &BTreeMap<String, i64>,
        fencing_tokens: &BTreeMap<String, u64>,
        expires_in: Duration,
    ) -> Result<(), Error> {
        let body = json(&Restore {
            expires_in: duration(expires_in),
            peer_id: peer,
            acquired,
            fencing_tokens,
            name: self.peer_name(),
        });
        self.send(Method::Post(body), "/restore", None).map(drop)
    }

    /// One peer with its locks, their fencing tokens, its lease and its name
    /// (`GET /peers/{id}`). Fails with [`Error::UnknownPeer`] if the server does not know it, or
    /// [`Error::LockLost`] if it expired.
    pub fn peer_state(&self, peer: PeerId) -> Result<PeerInfo, Error> {
        self.send_json(Method::Get, &format!("/peers/{peer}"), None)
    }

    /// The count still free on `semaphore` (`GET /remainder`): its `max` minus the counts of
    /// acquired locks. Negative after a restore overcommitted it.
    pub fn remainder(&self, semaphore: &str) -> Result<i64, Error> {
        let path = format!("/remainder?semaphore={}", encode(semaphore));
        self.send_json(Method::Get, &path, None)
    }

    /// `true` if `peer` has no pending lock, i.e. all the locks it asked for are acquired
    /// (`GET /peers/{id}/is_acquired`).
    pub fn is_acquired(&self, peer: PeerId) -> Result<bool, Error> {
        self.send_json(Method::Get, &format!("/peers/{peer}/is_acquired"), None)
    }

    /// All peers the server knows, with their locks (`GET /peers/`).
    pub fn list_peers(&self) -> Result<Vec<PeerInfo>, Error> {
        self.send_json(Method::Get, "/peers/", None)
    }

    /// The status page's data as the server sends it (`GET /status.json`): every semaphore
    /// with its figures and a bounded selection of peers (see the server's README). Returned
    /// as text, to print or to parse; `throttle status --json` prints it.
    pub fn status_json(&self) -> Result<String, Error> {
        self.send(Method::Get, "/status.json", None)
            .map(|answer| answer.body)
    }

    /// Succeeds if the server answers its health check (`GET /health`).
    pub fn health(&self) -> Result<(), Error> {
        self.send(Method::Get, "/health", None).map(drop)
    }

    /// The server's version, e.g. `0.1.0` (`GET /version`).
    pub fn version(&self) -> Result<String, Error> {
        let answer = self.send(Method::Get, "/version", None)?;
        Ok(answer.body.trim().to_owned())
    }

    /// Sends a request and parses the JSON body of a successful answer.
    fn send_json<T: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        timeout: Option<Duration>,
    ) -> Result<T, Error> {
        let Answer { status, body, .. } = self.send(method, path, timeout)?;
        serde_json::from_str(&body).map_err(|_| Error::UnexpectedResponse { status, body })
    }

    /// Sends a request, retrying transport errors and transient 5xx answers within the retry
    /// budget, on the next member after each failure (see [`Client`]). Returns a successful
    /// (< 400) answer.
    fn send(&self, method: Method, path: &str, timeout: Option<Duration>) -> Result<Answer, Error> {
        let started = Instant::now();
        let count = self.members.len();
        let mut schedule = Schedule::new(count, self.retry_budget);
        // The last failure of each member, for the error once the budget is spent.
        let mut failures: Vec<Option<Failed>> = (0..count).map(|_| None).collect();
        loop {
            let index = self.known().current() % count;
            let outcome = self.send_once(&self.members[index], &method, path, timeout);
            if let Ok(answer) = &outcome
                && count > 1
            {
                self.known()
                    .answered(index, answer.member, answer.leader, Instant::now());
            }
            let (failure, answer) = match outcome {
                Ok(answer) if is_no_quorum(answer.status, &answer.body) => {
                    (Failed::NoQuorum(answer.body.trim_end().to_owned()), None)
                }
                Ok(answer) if is_retryable_answer(answer.status, &answer.body) => {
                    let shown = format!("{} {}", answer.status, answer.body.trim_end());
                    (Failed::Answer(shown), Some(answer))
                }
                Ok(answer) if answer.status >= 400 => {
                    return Err(Error::from_answer(
                        answer.status,
                        answer.body,
                        answer.peer_expired,
                    ));
                }
                Ok(answer) => return Ok(answer),
                Err(error) if !is_retryable_error(&error) => {
                    let mut failures: Vec<Option<Failed>> = (0..count).map(|_| None).collect();
                    failures[index] = Some(Failed::Transport(error));
                    let error = Unreachable::new(&self.members, failures, index, None);
                    return Err(Error::Transport(error));
                }
                Err(error) => (Failed::Transport(error), None),
            };
            log::debug!("{path} failed on {}: {failure:?}", self.members[index]);
            failures[index] = Some(failure);
            // Move on to the next member, unless another request moved on already.
            self.known().failed(index, Instant::now());
            match schedule.after_failure(started.elapsed()) {
                Next::Ask => {}
                Next::Pause(pause) => {
                    log::debug!("retrying {path} in {pause:?}");
                    thread::sleep(pause);
                }
                Next::GiveUp => {
                    return Err(match answer {
                        // A server error (but `No quorum`) answered last: it is the one to report.
                        Some(answer) => {
                            Error::from_answer(answer.status, answer.body, answer.peer_expired)
                        }
                        None => Error::Transport(Unreachable::new(
                            &self.members,
                            failures,
                            index,
                            Some(self.retry_budget),
                        )),
                    });
                }
            }
        }
    }

    /// Sends a request to `member` once.
    fn send_once(
        &self,
        member: &str,
        method: &Method,
        path: &str,
        timeout: Option<Duration>,
    ) -> Result<Answer, ureq::Error> {
        let url = format!("{member}{path}");
        let timeout = Some(timeout.unwrap_or(self.answer_margin()));
        let mut response = match method {
            Method::Get => self.prepare(self.agent.get(&url), timeout).call(),
            Method::Delete => self.prepare(self.agent.delete(&url), timeout).call(),
            Method::Put(body) => send_json(self.prepare(self.agent.put(&url), timeout), body),
            Method::Post(body) => send_json(self.prepare(self.agent.post(&url), timeout), body),
        }?;
        let status = response.status().as_u16();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|value| value.to_str().ok())
                .map(|value| value.trim().to_owned())
        };
        let fencing_token = header(FENCING_TOKEN).and_then(|token| token.parse().ok());
        let peer_expired = header(PEER_STATE).is_some_and(|state| state == "expired");
        let member = header(MEMBER).and_then(|id| id.parse().ok());
        let leader = header(LEADER).and_then(|id| id.parse().ok());
        let body = response.body_mut().read_to_string()?;
        Ok(Answer {
            status,
            body,
            fencing_token,
            peer_expired,
            member,
            leader,
        })
    }

    /// What the client knows of the members. Held only to read or record, never across a
    /// request; nothing panics while it is held, but a poisoned lock is used as it is.
    fn known(&self) -> MutexGuard<'_, Members> {
        self.known.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How long an attempt may take beyond its `block_for`: shorter with several members, where
    /// a silent one is better left for the next.
    fn answer_margin(&self) -> Duration {
        if self.members.len() > 1 {
            MEMBER_ANSWER_MARGIN
        } else {
            ANSWER_MARGIN
        }
    }

    /// Adds what every request carries: the `Authorization` header if a token is set, and the
    /// time limit of one attempt.
    fn prepare<B>(
        &self,
        request: ureq::RequestBuilder<B>,
        timeout: Option<Duration>,
    ) -> ureq::RequestBuilder<B> {
        let request = match &self.authorization {
            Some(value) => request.header("Authorization", &**value),
            None => request,
        };
        request.config().timeout_global(timeout).build()
    }
}

/// Sends `body` as JSON, the only kind of body the server takes.
fn send_json(
    request: ureq::RequestBuilder<ureq::typestate::WithBody>,
    body: &str,
) -> Result<ureq::http::Response<ureq::Body>, ureq::Error> {
    request
        .header("Content-Type", "application/json")
        .send(body)
}

/// Server errors that a later attempt may not meet. Those that say the request itself cannot
/// work (501 Not Implemented, 505 HTTP Version Not Supported, ...) are final, and so is the
/// server's peer limit: it is up, and the limit lasts as long as other clients hold their peers.
fn is_retryable_answer(status: u16, body: &str) -> bool {
    is_retryable_status(status) && !is_peer_limit(status, body)
}

/// Server errors (5xx) but those that say the request itself cannot work.
fn is_retryable_status(status: u16) -> bool {
    (500..600).contains(&status) && !matches!(status, 501 | 505 | 506 | 507 | 508 | 510 | 511)
}

/// Transport errors that a later attempt may not meet: the connection, not the request, failed.
fn is_retryable_error(error: &ureq::Error) -> bool {
    matches!(
        error,
        ureq::Error::Io(_)
            | ureq::Error::Timeout(_)
            | ureq::Error::ConnectionFailed
            | ureq::Error::HostNotFound
            | ureq::Error::Protocol(_)
    )
}

/// A duration as the server reads it: whole milliseconds, e.g. `"1500ms"`.
fn duration(duration: Duration) -> String {
    format!("{}ms", duration.as_millis())
}

fn json(value: &impl Serialize) -> String {
    serde_json::to_string(value).expect("request bodies always serialize")
}

/// Percent-encodes `text` as one path segment or query value: every byte except the unreserved
/// characters of RFC 3986 (`A-Z a-z 0-9 - . _ ~`), so `/`, `?`, `&`, `+`, `%`, spaces and
/// non-ASCII characters all arrive as part of the name.
pub(crate) fn encode(text: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut encoded = String::with_capacity(text.len());
    for &byte in text.as_bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            encoded.push(byte as char);
        } else {
            encoded.push('%');
            encoded.push(HEX[usize::from(byte >> 4)] as char);
            encoded.push(HEX[usize::from(byte & 0xf)] as char);
        }
    }
    encoded
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_peer_name_is_host_and_pid() {
        let name = default_peer_name();
        assert!(
            name.ends_with(&format!(":{}", std::process::id())),
            "{name}"
        );
        assert!(name.len() <= MAX_NAME_BYTES && name.len() > 2);
        assert!(!name.chars().any(char::is_control), "{name:?}");
        let client = Client::new("http://localhost:8000");
        assert_eq!(client.peer_name(), Some(name.as_str()));
        assert_eq!(client.clone().with_peer_name("").peer_name(), None);
        assert_eq!(client.with_peer_name("job").peer_name(), Some("job"));
    }

    #[test]
    fn names_are_encoded_as_one_segment() {
        assert_eq!(encode("A"), "A");
        assert_eq!(encode("a/b c"), "a%2Fb%20c");
        assert_eq!(encode("x&y=z+1%?#"), "x%26y%3Dz%2B1%25%3F%23");
        assert_eq!(encode("Grüße-._~"), "Gr%C3%BC%C3%9Fe-._~");
    }

    #[test]
    fn durations_go_on_the_wire_in_milliseconds() {
        assert_eq!(duration(Duration::from_secs(90)), "90000ms");
        assert_eq!(duration(Duration::from_micros(1500)), "1ms");
        assert_eq!(duration(Duration::ZERO), "0ms");
    }

    #[test]
    fn only_transient_server_errors_are_retried() {
        assert!(is_retryable_status(500) && is_retryable_status(503));
        assert!(!is_retryable_status(501) && !is_retryable_status(409));
        assert!(!is_retryable_status(200) && !is_retryable_status(202));
        assert!(is_retryable_answer(503, "Shutting down"));
        assert!(!is_retryable_answer(
            503,
            "Too many peers: the server holds its limit"
        ));
        assert!(is_retryable_answer(502, "Too many peers"));
    }

    #[test]
    fn clients_are_cheap_to_clone_and_share_across_threads() {
        fn assert_send_sync<T: Send + Sync + Clone>() {}
        assert_send_sync::<Client>();
        let client = Client::new("http://localhost:8000/");
        assert_eq!(client.clone().base_url(), "http://localhost:8000");
    }

    #[test]
    fn a_token_is_kept_by_clones_and_never_shown() {
        let client = Client::new("http://localhost:8000").with_token("s3cret");
        assert!(client.has_token() && client.clone().has_token());
        let shown = format!("{client:?}");
        assert!(
            !shown.contains("s3cret") && shown.contains("has_token: true"),
            "{shown}"
        );
        assert!(!client.with_token("").has_token());
    }
}
