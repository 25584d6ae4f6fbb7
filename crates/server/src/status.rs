//! The live status page: a [`Snapshot`] of the semaphores and a bounded selection of peers, its
//! JSON form (`GET /status.json`) and its server-side HTML rendering (`GET /` for browsers).
//!
//! A snapshot is taken under the state lock by [`Snapshot::take`] and rendered after the lock is
//! released. Taking one never scans all peers: it costs one step per semaphore, plus a bounded
//! walk of each semaphore's FIFO queue and of the ordered deadlines.
//!
//! **The cut rule.** With many live peers the list is cut to: the
//! [`WAITERS_PER_SEMAPHORE`] oldest waiters of every semaphore (from the front of its queue), and
//! the [`PEERS_EXPIRING_FIRST`] peers whose leases run out first. Both sets are merged and ordered
//! by time until expiry; the total number of live peers is shown beside them. A snapshot is
//! therefore O((S·W + N) log n) for S semaphores and n peers, never O(n).
//!
//! The page itself (`status/page.html`, `.css`, `.js`) is embedded in the binary: no CDN, no
//! external font or script. Its JavaScript refreshes the tables from `status.json` once a second
//! and, if the server answers 401, asks once for a bearer token that it keeps in
//! `sessionStorage`. This file does not know HTTP or tiny_http (that is `workers.rs`), nor how to
//! lock the state (that is `service.rs`).

use std::collections::HashSet;
use std::fmt::Write;
use std::time::Duration;

use serde_json::json;

use throttle_core::{Core, PeerId, PeerInfo, SemaphoreStats};

/// How many of the oldest waiters of each semaphore a snapshot lists.
pub const WAITERS_PER_SEMAPHORE: usize = 20;

/// How many of the peers that expire first a snapshot lists, besides the waiters.
pub const PEERS_EXPIRING_FIRST: usize = 100;

/// The media type of the page.
pub const HTML_CONTENT_TYPE: &str = "text/html; charset=utf-8";

const PAGE: &str = include_str!("status/page.html");
const CSS: &str = include_str!("status/page.css");
const JS: &str = include_str!("status/page.js");

/// What the status page shows, copied out of the core (the core's views with owned names, see
/// [`SemaphoreStats`]), so it can be rendered after the state lock is released.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Every semaphore, in configuration order.
    pub semaphores: Vec<SemaphoreStats<String>>,
    /// The selected peers (see the cut rule in the module docs), soonest expiry first.
    pub peers: Vec<ListedPeer>,
    /// Number of live peers, listed or not.
    pub num_peers: usize,
    /// Time left of the grace period after a restart (no new locks are granted); `None`
    /// outside of one. The page shows it as a banner.
    pub grace_remaining: Option<Duration>,
    /// What this member knows of its cluster; `None` on a single server. Not the core's: the
    /// caller fills it in after [`Snapshot::take`].
    pub cluster: Option<ClusterView>,
}

/// A cluster member's view of the cluster, as `/status.json` and the page show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterView {
    /// This member's id.
    pub id: u64,
    /// How many members the cluster has.
    pub members: usize,
    /// The member that leads; `None` during an election or without a quorum.
    pub leader: Option<u64>,
    pub term: u64,
    /// The highest log index on a majority's disks, as this member knows it.
    pub commit: u64,
    /// The highest log index applied here.
    pub applied: u64,
    /// On the leader, each member's log (this one's included), by id: how far it reaches and
    /// how far behind the commit index that is. `None` elsewhere: only the leader knows.
    pub lag: Option<Vec<MemberLag>>,
}

/// How far one member's log reaches, as the leader knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberLag {
    pub id: u64,
    /// The member's match index: the highest entry the leader knows it has on disk.
    pub matched: u64,
    /// The commit index minus `matched`: 0 for a member that is up to date.
    pub lag: u64,
}

/// A listed peer: the core's view, and how long its pending lock has waited, which only the
/// page shows (the core's view leaves it out; see [`PeerInfo::pending`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedPeer {
    pub peer: PeerInfo<String>,
    /// How long the pending lock has waited so far; zero without one.
    pub waited: Duration,
}

impl Snapshot {
    /// Copies what the page shows out of the core. Runs under the state lock, so it only walks
    /// bounded parts of the ordered indexes (see the module docs for the cost).
    pub fn take(core: &Core, now: throttle_core::Time) -> Snapshot {
        let stats = core.stats(now);
        let mut ids: Vec<PeerId> = Vec::new();
        let mut seen: HashSet<PeerId> = HashSet::new();
        for sem in &stats {
            for waiter in core
                .waiters(sem.name, WAITERS_PER_SEMAPHORE, now)
                .unwrap_or_default()
            {
                if seen.insert(waiter.peer) {
                    ids.push(waiter.peer);
                }
            }
        }
        for id in core.peers_expiring_first(PEERS_EXPIRING_FIRST) {
            if seen.insert(id) {
                ids.push(id);
            }
        }
        let mut peers: Vec<ListedPeer> = ids
            .into_iter()
            .filter_map(|id| {
                Some(ListedPeer {
                    peer: core.peer(id, now)?.into_owned(),
                    waited: core.waiting_for(id, now).unwrap_or_default(),
                })
            })
            .collect();
        peers.sort_by_key(|listed| (listed.peer.expires_in, listed.peer.id));
        Snapshot {
            semaphores: stats.into_iter().map(SemaphoreStats::into_owned).collect(),
            peers,
            num_peers: core.num_peers(),
            grace_remaining: core.grace_remaining(now),
            cluster: None,
        }
    }

    /// The JSON answer of `GET /status.json`. Durations are whole milliseconds.
    pub fn to_json(&self) -> String {
        let semaphores: Vec<serde_json::Value> = self
            .semaphores
            .iter()
            .map(|sem| {
                json!({
                    "name": sem.name,
                    "level": sem.level,
                    "max": sem.max,
                    "acquired": sem.acquired,
                    "pending": sem.pending,
                    "longest_pending_ms": sem.longest_pending.map(millis),
                })
            })
            .collect();
        let peers: Vec<serde_json::Value> = self
            .peers
            .iter()
            .map(|ListedPeer { peer, waited }| {
                json!({
                    "id": peer.id,
                    "name": peer.name,
                    "acquired": peer
                        .acquired
                        .iter()
                        .map(|(name, count, token)| {
                            json!({"semaphore": name, "count": count, "fencing_token": token})
                        })
                        .collect::<Vec<_>>(),
                    "pending": peer.pending.as_ref().map(|(semaphore, count)| json!({
                        "semaphore": semaphore,
                        "count": count,
                        "waited_ms": millis(*waited),
                    })),
                    "expires_in_ms": millis(peer.expires_in),
                })
            })
            .collect();
        json!({
            "version": env!("CARGO_PKG_VERSION"),
            "semaphores": semaphores,
            "peers": peers,
            "num_peers": self.num_peers,
            "grace_remaining_ms": self.grace_remaining.map(millis),
            "cluster": self.cluster.as_ref().map(|cluster| json!({
                "id": cluster.id,
                "members": cluster.members,
                "leader": cluster.leader,
                "term": cluster.term,
                "commit": cluster.commit,
                "applied": cluster.applied,
                "members_lag": cluster.lag.as_ref().map(|lag| lag
                    .iter()
                    .map(|member| json!({
                        "id": member.id,
                        "match": member.matched,
                        "lag": member.lag,
                    }))
                    .collect::<Vec<_>>()),
            })),
            "waiters_per_semaphore": WAITERS_PER_SEMAPHORE,
            "peers_expiring_first": PEERS_EXPIRING_FIRST,
        })
        .to_string()
    }

    /// The status page with this snapshot rendered into its tables, so it is useful without
    /// JavaScript. Every name is escaped.
    pub fn to_html(&self) -> String {
        self.render(Access::Open)
    }

    fn render(&self, access: Access) -> String {
        let mut semaphores = String::new();
        for sem in &self.semaphores {
            semaphores.push_str(if sem.pending > 0 {
                "<tr class=\"waiting\">"
            } else {
                "<tr>"
            });
            td(&mut semaphores, "Name", "name", &escape(&sem.name));
            td(&mut semaphores, "Level", "n", &sem.level.to_string());
            td(&mut semaphores, "Max", "n", &sem.max.to_string());
            td(&mut semaphores, "Acquired", "n", &sem.acquired.to_string());
            td(&mut semaphores, "Pending", "n", &sem.pending.to_string());
            let longest = sem.longest_pending.map_or("—".to_owned(), human);
            td(&mut semaphores, "Longest wait", "n", &longest);
            td(&mut semaphores, "Load", "", &bar(sem));
            semaphores.push_str("</tr>\n");
        }
        let mut peers = String::new();
        for ListedPeer { peer, waited } in &self.peers {
            peers.push_str(if peer.pending.is_some() {
                "<tr class=\"waiting\">"
            } else {
                "<tr>"
            });
            td(&mut peers, "Peer", "n", &peer.id.to_string());
            let holder = peer.name.as_deref().map_or("—".to_owned(), escape);
            td(&mut peers, "Holder", "name", &holder);
            let held: Vec<String> = peer
                .acquired
                .iter()
                .map(|(name, count, token)| format!("{} #{token}", lock(name, *count)))
                .collect();
            let held = if held.is_empty() {
                "—".to_owned()
            } else {
                held.join(", ")
            };
            td(&mut peers, "Holds", "name", &held);
            let waits = peer
                .pending
                .as_ref()
                .map_or("—".to_owned(), |(semaphore, count)| {
                    format!("{} for {}", lock(semaphore, *count), human(*waited))
                });
            td(&mut peers, "Waits for", "name", &waits);
            td(&mut peers, "Expires in", "n", &human(peer.expires_in));
            peers.push_str("</tr>\n");
        }
        let peer_count = match access {
            Access::Open => format!("showing {} of {}", self.peers.len(), self.num_peers),
            Access::Locked => "(this server needs a token)".to_owned(),
        };
        fill(PAGE, |marker, out| match marker {
            "CSS" => out.push_str(CSS),
            "JS" => out.push_str(JS),
            "SEMAPHORES" => out.push_str(&semaphores),
            "PEERS" => out.push_str(&peers),
            "PEER_COUNT" => out.push_str(&peer_count),
            "GRACE" => match self.grace_remaining {
                Some(left) => {
                    let _ = write!(out, "<p id=\"grace\" class=\"banner\">{}</p>", grace(left));
                }
                None => out.push_str("<p id=\"grace\" class=\"banner\" hidden></p>"),
            },
            "CLUSTER" => match &self.cluster {
                Some(cluster) => {
                    let _ = write!(
                        out,
                        "<p id=\"cluster\" class=\"banner\">{}</p>",
                        escape(&cluster_line(cluster))
                    );
                }
                None => out.push_str("<p id=\"cluster\" class=\"banner\" hidden></p>"),
            },
            "MEMBERS_HIDDEN" if self.cluster.is_none() => out.push_str(" hidden"),
            "MEMBERS" => {
                if let Some(cluster) = &self.cluster {
                    for row in member_rows(cluster) {
                        out.push_str("<tr>");
                        for (label, class, text) in [
                            ("Member", "n", row.member),
                            ("Role", "", row.role.to_owned()),
                            ("Log reaches", "n", row.matched),
                            ("Lag", "n", row.lag),
                        ] {
                            td(out, label, class, &escape(&text));
                        }
                        out.push_str("</tr>\n");
                    }
                }
            }
            "MEMBERS_NOTE" => {
                if let Some(cluster) = &self.cluster {
                    out.push_str(&escape(&members_note(cluster)));
                }
            }
            "WAITERS" => out.push_str(&WAITERS_PER_SEMAPHORE.to_string()),
            "FIRST" => out.push_str(&PEERS_EXPIRING_FIRST.to_string()),
            "VERSION" => out.push_str(env!("CARGO_PKG_VERSION")),
            "LOCKED" => out.push_str(match access {
                Access::Open => "no",
                Access::Locked => "yes",
            }),
            _ => {}
        })
    }
}

/// The cluster banner's text; the page's script writes the same from `status.json`.
fn cluster_line(cluster: &ClusterView) -> String {
    let leader = match cluster.leader {
        Some(leader) if leader == cluster.id => "this member leads".to_owned(),
        Some(leader) => format!("member {leader} leads"),
        None => "no leader: nothing is granted until a majority elects one".to_owned(),
    };
    format!(
        "Member {} of a cluster of {}: {leader} (term {}, commit {}, applied {})",
        cluster.id, cluster.members, cluster.term, cluster.commit, cluster.applied
    )
}

/// One row of the members table; the page's script writes the same from `status.json`.
struct MemberRow {
    member: String,
    role: &'static str,
    matched: String,
    lag: String,
}

/// A row per member, by id: its role as this member knows it, and on the leader how far its log
/// reaches and how far that is behind the commit index (`—` where this member does not know).
fn member_rows(cluster: &ClusterView) -> Vec<MemberRow> {
    (1..=cluster.members as u64)
        .map(|id| {
            let known = cluster.lag.iter().flatten().find(|member| member.id == id);
            MemberRow {
                member: if id == cluster.id {
                    format!("{id} (this member)")
                } else {
                    id.to_string()
                },
                role: match cluster.leader {
                    Some(leader) if leader == id => "leader",
                    Some(_) => "follower",
                    None => "—",
                },
                matched: known.map_or("—".to_owned(), |member| member.matched.to_string()),
                lag: known.map_or("—".to_owned(), |member| member.lag.to_string()),
            }
        })
        .collect()
}

/// The line under the members table: where the lags are known.
fn members_note(cluster: &ClusterView) -> String {
    match (cluster.lag.is_some(), cluster.leader) {
        (true, _) => "Lag: entries the member's log is behind the commit index.".to_owned(),
        (false, Some(leader)) => {
            format!("Only the leader knows how far each member lags: see member {leader}'s page.")
        }
        (false, None) => "Only a leader knows how far each member lags; there is none.".to_owned(),
    }
}

/// The page without data, for a browser that has not sent the token the server needs. Its
/// script asks for the token at once and fills the tables from `status.json`.
pub fn locked_html() -> String {
    Snapshot::default().render(Access::Locked)
}

/// Whether the page may carry data.
#[derive(Debug, Clone, Copy)]
enum Access {
    Open,
    Locked,
}

/// Escapes text for HTML element content and quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            c => escaped.push(c),
        }
    }
    escaped
}

/// A duration as the page shows it, the same way its JavaScript does: `4.2 s`, `42 s`,
/// `4m 02s`, `4h 02m`.
pub fn human(duration: Duration) -> String {
    let ms = duration.as_millis();
    let (s, m, h) = (ms / 1000, ms / 60_000, ms / 3_600_000);
    if ms < 10_000 {
        format!("{s}.{} s", ms / 100 % 10)
    } else if s < 60 {
        format!("{s} s")
    } else if h < 1 {
        format!("{m}m {:02}s", s % 60)
    } else {
        format!("{h}h {:02}m", m % 60)
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// The banner text of a grace period; the page's script writes the same.
fn grace(left: Duration) -> String {
    format!(
        "Grace period after a restart: no new locks are granted for {} while holders restore \
         theirs.",
        human(left)
    )
}

/// An escaped lock, `name ×count`.
fn lock(name: &str, count: i64) -> String {
    format!("{} ×{count}", escape(name))
}

/// Appends a cell whose `data-label` is the column's name (the phone layout shows it).
/// `html` must already be escaped.
fn td(out: &mut String, label: &str, class: &str, html: &str) {
    let _ = write!(out, "<td data-label=\"{label}\"");
    if !class.is_empty() {
        let _ = write!(out, " class=\"{class}\"");
    }
    let _ = write!(out, ">{html}</td>");
}

/// The load bar: acquired, then pending. Its track is `max` long, or the whole demand
/// (acquired plus pending) if that is more, with a tick where `max` is: a queue beyond
/// capacity stays visible.
fn bar(sem: &SemaphoreStats<String>) -> String {
    let scale = sem.max.max(sem.acquired.saturating_add(sem.pending));
    let percent = |part: i64| {
        if scale <= 0 {
            0.0
        } else {
            100.0 * part.max(0) as f64 / scale as f64
        }
    };
    let cap = if sem.max > 0 && scale > sem.max {
        format!(
            "<i class=\"cap\" style=\"left:{:.1}%\"></i>",
            percent(sem.max)
        )
    } else {
        String::new()
    };
    format!(
        "<div class=\"bar\" title=\"{} acquired, {} pending of {}\">\
         <span class=\"a\" style=\"width:{:.1}%\"></span>\
         <span class=\"p\" style=\"width:{:.1}%\"></span>{cap}</div>",
        sem.acquired,
        sem.pending,
        sem.max,
        percent(sem.acquired),
        percent(sem.pending),
    )
}

/// Copies `template`, replacing each `@@MARKER@@` by what `value` appends. One pass, so text
/// inserted for one marker is never searched for another.
fn fill(template: &str, mut value: impl FnMut(&str, &mut String)) -> String {
    let mut out = String::with_capacity(template.len() * 2);
    for (i, piece) in template.split("@@").enumerate() {
        if i % 2 == 0 {
            out.push_str(piece);
        } else {
            value(piece, &mut out);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use throttle_core::SemaphoreSettings;
    use throttle_core::Time;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    /// A core with the given `(name, max)` semaphores; each has a lower level than the one
    /// before, so a peer may hold them all.
    fn core(semaphores: &[(&str, i64)]) -> Core {
        let levels = (0..semaphores.len() as i32).rev();
        Core::new(
            semaphores
                .iter()
                .zip(levels)
                .map(|(&(name, max), level)| SemaphoreSettings {
                    name: name.to_owned(),
                    max,
                    level,
                }),
        )
    }

    /// A snapshot of one semaphore called `name`, held by peer 1 and waited for by peer 2.
    fn contended(name: &str) -> Snapshot {
        let t0 = Time::from_epoch(Duration::from_secs(1_000));
        let mut c = core(&[(name, 1)]);
        c.new_peer(1, t0 + secs(60));
        c.new_peer(2, t0 + secs(30));
        c.acquire(1, name, 1, None, t0).unwrap();
        c.acquire(2, name, 1, None, t0).unwrap();
        Snapshot::take(&c, t0 + secs(5))
    }

    /// A listed peer without a name.
    fn listed(
        id: PeerId,
        acquired: Vec<(String, i64, throttle_core::Token)>,
        pending: Option<(String, i64)>,
        expires_in: Duration,
        waited: Duration,
    ) -> ListedPeer {
        let peer = PeerInfo {
            id,
            acquired,
            pending,
            expires_in,
            name: None,
        };
        ListedPeer { peer, waited }
    }

    #[track_caller]
    fn check_human(ms: u64, expected: &str) {
        assert_eq!(human(Duration::from_millis(ms)), expected);
    }

    #[test]
    fn snapshot_holds_figures_locks_and_waits() {
        let t0 = Time::from_epoch(Duration::from_secs(1_000));
        let mut c = core(&[("A", 2), ("B", 5)]);
        c.new_peer(1, t0 + secs(60));
        c.new_peer(2, t0 + secs(30));
        c.new_peer(3, t0 + secs(90));
        c.acquire(1, "A", 2, None, t0).unwrap();
        c.acquire(1, "B", 3, None, t0).unwrap();
        c.acquire(2, "A", 1, None, t0 + secs(1)).unwrap();
        let snapshot = Snapshot::take(&c, t0 + secs(5));
        assert_eq!(
            snapshot.semaphores[0],
            SemaphoreStats {
                name: "A".into(),
                level: 1,
                max: 2,
                acquired: 2,
                pending: 1,
                longest_pending: Some(secs(4)),
            }
        );
        assert_eq!(snapshot.semaphores[1].acquired, 3);
        assert_eq!(snapshot.semaphores[1].longest_pending, None);
        assert_eq!(snapshot.num_peers, 3);
        assert_eq!(
            snapshot.peers,
            vec![
                listed(2, vec![], Some(("A".into(), 1)), secs(25), secs(4)),
                listed(
                    1,
                    vec![("A".into(), 2, 1), ("B".into(), 3, 2)],
                    None,
                    secs(55),
                    Duration::ZERO
                ),
                listed(3, vec![], None, secs(85), Duration::ZERO),
            ]
        );
    }

    #[test]
    fn many_peers_are_cut_to_the_oldest_waiters_and_the_first_to_expire() {
        let t0 = Time::from_epoch(Duration::from_secs(1_000));
        let mut c = core(&[("A", 1)]);
        let n = 1000;
        // Peer 0 holds A; peers 1.. wait in id order and expire later the later they asked.
        for id in 0..n {
            c.new_peer(id, t0 + secs(10_000 - id));
            c.acquire(id, "A", 1, None, t0 + Duration::from_millis(id))
                .unwrap();
        }
        let snapshot = Snapshot::take(&c, t0 + secs(1));
        assert_eq!(snapshot.num_peers, n as usize);
        let ids: HashSet<PeerId> = snapshot.peers.iter().map(|p| p.peer.id).collect();
        assert_eq!(ids.len(), WAITERS_PER_SEMAPHORE + PEERS_EXPIRING_FIRST);
        // The oldest waiters are listed, and so are the peers that expire first.
        assert!((1..=WAITERS_PER_SEMAPHORE as u64).all(|id| ids.contains(&id)));
        assert!((n - PEERS_EXPIRING_FIRST as u64..n).all(|id| ids.contains(&id)));
        // Ordered by time until expiry.
        assert!(
            snapshot
                .peers
                .windows(2)
                .all(|w| w[0].peer.expires_in <= w[1].peer.expires_in)
        );
    }

    #[test]
    fn json_carries_the_same_data() {
        let json: serde_json::Value = serde_json::from_str(&contended("A").to_json()).unwrap();
        assert_eq!(
            json["semaphores"][0],
            serde_json::json!({"name": "A", "level": 0, "max": 1, "acquired": 1, "pending": 1,
                "longest_pending_ms": 5000})
        );
        assert_eq!(
            json["peers"][0],
            serde_json::json!({"id": 2, "name": null, "acquired": [],
                "pending": {"semaphore": "A", "count": 1, "waited_ms": 5000},
                "expires_in_ms": 25_000})
        );
        assert_eq!(
            json["peers"][1]["acquired"],
            serde_json::json!([{"semaphore": "A", "count": 1, "fencing_token": 1}])
        );
        assert_eq!(json["peers"][1]["pending"], serde_json::Value::Null);
        assert_eq!(json["num_peers"], 2);
    }

    #[test]
    fn a_grace_period_shows_as_a_banner_and_in_json() {
        let t0 = Time::from_epoch(Duration::from_secs(1_000));
        let mut c = core(&[("A", 1)]);
        c.begin_grace(t0 + secs(5));
        let snapshot = Snapshot::take(&c, t0 + secs(1));
        assert_eq!(snapshot.grace_remaining, Some(secs(4)));
        let html = snapshot.to_html();
        assert!(
            html.contains("<p id=\"grace\" class=\"banner\">Grace period"),
            "{html}"
        );
        assert!(html.contains("for 4.0 s"));
        let json: serde_json::Value = serde_json::from_str(&snapshot.to_json()).unwrap();
        assert_eq!(json["grace_remaining_ms"], 4000);
        let calm = contended("A");
        assert!(
            calm.to_html()
                .contains("<p id=\"grace\" class=\"banner\" hidden></p>")
        );
        let json: serde_json::Value = serde_json::from_str(&calm.to_json()).unwrap();
        assert_eq!(json["grace_remaining_ms"], serde_json::Value::Null);
    }

    /// Member 1 of three leads; member 3 is 5 entries behind.
    fn leading() -> ClusterView {
        let lag = |id, matched| MemberLag {
            id,
            matched,
            lag: 120 - matched,
        };
        ClusterView {
            id: 1,
            members: 3,
            leader: Some(1),
            term: 4,
            commit: 120,
            applied: 120,
            lag: Some(vec![lag(1, 120), lag(2, 120), lag(3, 115)]),
        }
    }

    #[test]
    fn a_cluster_shows_its_members_and_on_the_leader_their_lag() {
        let mut snapshot = contended("A");
        snapshot.cluster = Some(leading());
        let json: serde_json::Value = serde_json::from_str(&snapshot.to_json()).unwrap();
        assert_eq!(
            json["cluster"],
            serde_json::json!({"id": 1, "members": 3, "leader": 1, "term": 4, "commit": 120,
                "applied": 120, "members_lag": [{"id": 1, "match": 120, "lag": 0},
                {"id": 2, "match": 120, "lag": 0}, {"id": 3, "match": 115, "lag": 5}]})
        );
        let html = snapshot.to_html();
        assert!(html.contains("<section id=\"members-section\">"), "{html}");
        assert!(html.contains(
            "<tr><td data-label=\"Member\" class=\"n\">1 (this member)</td>\
             <td data-label=\"Role\">leader</td>\
             <td data-label=\"Log reaches\" class=\"n\">120</td>\
             <td data-label=\"Lag\" class=\"n\">0</td></tr>"
        ));
        assert!(html.contains(
            "<tr><td data-label=\"Member\" class=\"n\">3</td>\
             <td data-label=\"Role\">follower</td>\
             <td data-label=\"Log reaches\" class=\"n\">115</td>\
             <td data-label=\"Lag\" class=\"n\">5</td></tr>"
        ));
        assert!(html.contains("this member leads (term 4, commit 120, applied 120)"));

        // A follower knows the leader, not the lags.
        snapshot.cluster = Some(ClusterView {
            id: 2,
            leader: Some(1),
            lag: None,
            ..leading()
        });
        let json: serde_json::Value = serde_json::from_str(&snapshot.to_json()).unwrap();
        assert_eq!(json["cluster"]["members_lag"], serde_json::Value::Null);
        let html = snapshot.to_html();
        assert!(html.contains(
            "<tr><td data-label=\"Member\" class=\"n\">2 (this member)</td>\
             <td data-label=\"Role\">follower</td>\
             <td data-label=\"Log reaches\" class=\"n\">—</td>\
             <td data-label=\"Lag\" class=\"n\">—</td></tr>"
        ));
        assert!(html.contains("see member 1&#39;s page"), "{html}");

        // Without a leader nobody's role is known.
        snapshot.cluster = Some(ClusterView {
            leader: None,
            lag: None,
            ..leading()
        });
        let html = snapshot.to_html();
        assert!(html.contains("<td data-label=\"Role\">—</td>"));
        assert!(html.contains("no leader: nothing is granted"));

        // A single server has no members table.
        let html = contended("A").to_html();
        assert!(html.contains("<section id=\"members-section\" hidden>"));
        assert!(html.contains("<tbody></tbody>"));
        let json: serde_json::Value = serde_json::from_str(&contended("A").to_json()).unwrap();
        assert_eq!(json["cluster"], serde_json::Value::Null);
    }

    #[test]
    fn html_shows_rows_and_bars() {
        let html = contended("db").to_html();
        assert!(html.starts_with("<!doctype html>"));
        assert!(html.contains("<td data-label=\"Name\" class=\"name\">db</td>"));
        assert!(html.contains("width:50.0%"));
        assert!(html.contains("class=\"cap\""));
        assert!(html.contains("db ×1 for 5.0 s"));
        assert!(html.contains("showing 2 of 2"));
        assert!(!html.contains("@@"), "an unfilled marker");
    }

    #[test]
    fn hostile_names_are_text() {
        for name in [
            "<script>alert(1)</script>",
            "\"><img src=x onerror=alert(1)>",
            "' onmouseover='alert(1)",
            "a & b </td></tr></table>",
        ] {
            let html = contended(name).to_html();
            let escaped = escape(name);
            assert!(!html.contains(name), "{name} unescaped");
            assert!(html.contains(&format!(">{escaped}</td>")), "{name}");
            assert!(html.contains(&format!("{escaped} ×1 for")), "{name}");
        }
        assert_eq!(
            escape("<script>\"'&"),
            "&lt;script&gt;&quot;&#39;&amp;".to_owned()
        );
        // The page's own scripts are the only ones.
        let html = contended("<script>").to_html();
        assert_eq!(html.matches("<script>").count(), 1);
    }

    #[test]
    fn a_name_that_looks_like_a_marker_stays_itself() {
        let html = contended("@@PEERS@@ @@JS@@").to_html();
        assert!(html.contains(">@@PEERS@@ @@JS@@</td>"));
        assert_eq!(html.matches("use strict").count(), 1);
    }

    #[test]
    fn unicode_and_long_names_survive_intact() {
        let unicode = "Datenbank 🚦 ä/ß & 東京";
        let html = contended(unicode).to_html();
        assert!(html.contains(">Datenbank 🚦 ä/ß &amp; 東京</td>"));
        let json: serde_json::Value = serde_json::from_str(&contended(unicode).to_json()).unwrap();
        assert_eq!(json["semaphores"][0]["name"], unicode);

        let long = "<x>".repeat(10 * 1024 / 3 + 1);
        assert!(long.len() > 10 * 1024);
        let html = contended(&long).to_html();
        assert!(html.contains(&format!(">{}</td>", escape(&long))));
        assert!(!html.contains("<x>"));
        let json: serde_json::Value = serde_json::from_str(&contended(&long).to_json()).unwrap();
        assert_eq!(json["semaphores"][0]["name"], long.as_str());
    }

    #[test]
    fn an_empty_snapshot_renders_a_page_without_rows() {
        let html = Snapshot::default().to_html();
        assert!(html.contains("<tbody></tbody>"));
        assert!(html.contains("showing 0 of 0"));
        let json: serde_json::Value = serde_json::from_str(&Snapshot::default().to_json()).unwrap();
        assert_eq!(json["semaphores"], serde_json::json!([]));
    }

    #[test]
    fn the_locked_page_carries_no_data_and_asks_at_once() {
        let html = locked_html();
        assert!(html.contains("<body data-locked=\"yes\">"));
        assert!(html.contains("<tbody></tbody>"));
        assert!(html.contains("needs a token"));
        assert!(
            contended("A")
                .to_html()
                .contains("<body data-locked=\"no\">")
        );
    }

    #[test]
    fn bars_stay_within_the_track() {
        let row = |max, acquired, pending| SemaphoreStats {
            name: "A".into(),
            level: 0,
            max,
            acquired,
            pending,
            longest_pending: None,
        };
        let a_p =
            |a: &str, p: &str| format!("width:{a}%\"></span><span class=\"p\" style=\"width:{p}%");
        assert!(bar(&row(4, 1, 2)).contains(&a_p("25.0", "50.0")));
        assert!(!bar(&row(4, 1, 2)).contains("cap"));
        // Full with a queue: the track is the demand, the tick marks max.
        let full = bar(&row(8, 8, 8));
        assert!(full.contains(&a_p("50.0", "50.0")));
        assert!(full.contains("<i class=\"cap\" style=\"left:50.0%\">"));
        // Overcommitted by restore.
        assert!(bar(&row(2, 4, 0)).contains(&a_p("100.0", "0.0")));
        assert!(bar(&row(0, 0, 0)).contains(&a_p("0.0", "0.0")));
    }

    #[test]
    fn durations_read_like_the_pages_script_writes_them() {
        check_human(0, "0.0 s");
        check_human(4_289, "4.2 s");
        check_human(9_999, "9.9 s");
        check_human(10_000, "10 s");
        check_human(59_999, "59 s");
        check_human(62_000, "1m 02s");
        check_human(3_599_999, "59m 59s");
        check_human(3_600_000 + 2 * 60_000, "1h 02m");
        check_human(49 * 3_600_000, "49h 00m");
    }
}
