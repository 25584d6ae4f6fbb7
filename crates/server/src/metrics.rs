//! Prometheus metrics: every metric in one struct with its own registry.
//!
//! The state gauges (`throttle_acquired`, `throttle_max`, `throttle_pending`,
//! `throttle_longest_pending_sec`, peers, expirations) are filled from a snapshot of the core
//! when `/metrics` is scraped, not on every state change, so the request path pays nothing for
//! them. Request counters and latencies are recorded per request by `workers.rs`, reloads by
//! `reload.rs`. The metric names are a contract: dashboards and alerts use them, and
//! `contract/wire.toml` lists them with their types and labels (the tests below check that the
//! registry and the list agree both ways). A semaphore removed by a reload loses its series at
//! the next scrape.
//!
//! A cluster member also exports the `throttle_cluster_*` families ([`ClusterMetrics`], marked
//! `cluster = true` in the contract), filled from what its raft thread publishes
//! (`throttle_cluster::node::Status`) when `/metrics` is scraped. They are registered at the
//! member's first scrape, so a single server's `/metrics` has none of them. The lag of each
//! member is known only to the leader: a follower exports no `throttle_cluster_member_lag`
//! series, and a member that stops leading drops them.

use std::sync::OnceLock;
use std::time::Duration;

use parking_lot::Mutex;
use prometheus::{
    Counter, Encoder, Gauge, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::service::LongPolls;
use throttle_cluster::node::Status;
use throttle_core::{Core, Time};

/// The content type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Every metric the server exports.
pub struct Metrics {
    registry: Registry,
    acquired: IntGaugeVec,
    max: IntGaugeVec,
    pending: IntGaugeVec,
    longest_pending: prometheus::GaugeVec,
    num_404: IntCounter,
    peers: IntGauge,
    expired: IntCounter,
    expired_peer_requests: IntCounter,
    expired_remembered: IntGauge,
    next_token: IntGauge,
    long_polls: IntGauge,
    long_polls_refused: IntCounter,
    requests: IntCounterVec,
    latency: HistogramVec,
    grace_remaining: Gauge,
    reloads: IntCounterVec,
    /// The semaphores of the last scrape, so that series of removed ones are dropped.
    labelled: Mutex<Vec<String>>,
    /// A cluster member's figures, registered at its first scrape; never on a single server.
    /// `None` inside if registering them failed (a bug, logged).
    cluster: OnceLock<Option<ClusterMetrics>>,
}

/// The `throttle_cluster_*` families of a cluster member.
pub struct ClusterMetrics {
    member_id: IntGauge,
    members: IntGauge,
    leading: IntGauge,
    leader: IntGauge,
    term: IntGauge,
    commit: IntGauge,
    applied: IntGauge,
    leader_changes: IntCounter,
    fsyncs: IntCounter,
    fsync_seconds: Counter,
    lag: IntGaugeVec,
    /// The members whose lag the last scrape exported, so a member that stops leading drops
    /// their series.
    lagging: Mutex<Vec<u64>>,
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Result<Metrics, prometheus::Error> {
        let by_semaphore =
            |name: &str, help: &str| IntGaugeVec::new(Opts::new(name, help), &["semaphore"]);
        let metrics = Metrics {
            registry: Registry::new(),
            acquired: by_semaphore("throttle_acquired", "Sum of the counts of acquired locks.")?,
            max: by_semaphore("throttle_max", "Full count of the semaphore.")?,
            pending: by_semaphore("throttle_pending", "Sum of the counts of pending locks.")?,
            longest_pending: prometheus::GaugeVec::new(
                Opts::new(
                    "throttle_longest_pending_sec",
                    "Seconds the oldest pending lock has waited.",
                ),
                &["semaphore"],
            )?,
            num_404: IntCounter::new("throttle_num_404", "Requests to unknown routes.")?,
            peers: IntGauge::new("throttle_peers", "Live peers.")?,
            expired: IntCounter::new(
                "throttle_expired_peers_total",
                "Peers removed because they were not prolonged in time.",
            )?,
            expired_peer_requests: IntCounter::new(
                "throttle_expired_peer_requests_total",
                "Requests for a peer that expired recently, answered `Unknown peer` with \
                 `Throttle-Peer-State: expired`: each is a client that lost its lease.",
            )?,
            expired_remembered: IntGauge::new(
                "throttle_expired_peers_remembered",
                "Ids of recently expired peers the server remembers (the last 10 minutes, at \
                 most 100,000), to tell their clients that they expired.",
            )?,
            next_token: IntGauge::new(
                "throttle_next_fencing_token",
                "The fencing token the next grant gets.",
            )?,
            long_polls: IntGauge::new("throttle_long_polls", "Requests waiting in a long poll.")?,
            long_polls_refused: IntCounter::new(
                "throttle_long_polls_refused_total",
                "Long polls answered at once because no waiting thread was left (--max-waiters).",
            )?,
            requests: IntCounterVec::new(
                Opts::new("throttle_requests_total", "Answered requests."),
                &["route", "status"],
            )?,
            latency: HistogramVec::new(
                HistogramOpts::new(
                    "throttle_request_duration_seconds",
                    "Time from routing a request to answering it, long polls included.",
                )
                .buckets(vec![
                    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.1, 1.0, 10.0,
                ]),
                &["route"],
            )?,
            grace_remaining: Gauge::new(
                "throttle_grace_remaining_seconds",
                "Seconds left of the grace period after a restart, in which no new locks are \
                 granted; 0 outside of one.",
            )?,
            reloads: IntCounterVec::new(
                Opts::new(
                    "throttle_config_reloads_total",
                    "Configuration reloads (SIGHUP) by result: ok, or error (the running \
                     configuration stayed).",
                ),
                &["result"],
            )?,
            labelled: Mutex::new(Vec::new()),
            cluster: OnceLock::new(),
        };
        let r = &metrics.registry;
        r.register(Box::new(metrics.acquired.clone()))?;
        r.register(Box::new(metrics.max.clone()))?;
        r.register(Box::new(metrics.pending.clone()))?;
        r.register(Box::new(metrics.longest_pending.clone()))?;
        r.register(Box::new(metrics.num_404.clone()))?;
        r.register(Box::new(metrics.peers.clone()))?;
        r.register(Box::new(metrics.expired.clone()))?;
        r.register(Box::new(metrics.expired_peer_requests.clone()))?;
        r.register(Box::new(metrics.expired_remembered.clone()))?;
        r.register(Box::new(metrics.next_token.clone()))?;
        r.register(Box::new(metrics.long_polls.clone()))?;
        r.register(Box::new(metrics.long_polls_refused.clone()))?;
        r.register(Box::new(metrics.requests.clone()))?;
        r.register(Box::new(metrics.latency.clone()))?;
        r.register(Box::new(metrics.grace_remaining.clone()))?;
        r.register(Box::new(metrics.reloads.clone()))?;
        for result in ["ok", "error"] {
            metrics.reloads.with_label_values(&[result]);
        }
        Ok(metrics)
    }

    /// Records one answered request.
    pub fn observe(&self, route: &str, status: u16, elapsed: Duration) {
        if status == 404 {
            self.num_404.inc();
        }
        self.requests
            .with_label_values(&[route, status_label(status)])
            .inc();
        self.latency
            .with_label_values(&[route])
            .observe(elapsed.as_secs_f64());
    }

    /// Counts one request for a peer that expired recently.
    pub fn count_expired_peer_request(&self) {
        self.expired_peer_requests.inc();
    }

    /// Counts one configuration reload.
    pub fn count_reload(&self, result: ReloadResult) {
        let label = match result {
            ReloadResult::Ok => "ok",
            ReloadResult::Error => "error",
        };
        self.reloads.with_label_values(&[label]).inc();
    }

    /// Copies the state figures from a snapshot. Called under the state lock: only sets numbers.
    pub fn update(&self, core: &Core, long_polls: LongPolls, now: Time) {
        let stats = core.stats(now);
        let mut labelled = self.labelled.lock();
        for gone in labelled
            .iter()
            .filter(|name| !stats.iter().any(|s| s.name == name.as_str()))
        {
            let labels = [gone.as_str()];
            let _ = self.acquired.remove_label_values(&labels);
            let _ = self.max.remove_label_values(&labels);
            let _ = self.pending.remove_label_values(&labels);
            let _ = self.longest_pending.remove_label_values(&labels);
        }
        if labelled.len() != stats.len()
            || labelled
                .iter()
                .zip(&stats)
                .any(|(a, b)| a.as_str() != b.name)
        {
            *labelled = stats.iter().map(|s| s.name.to_owned()).collect();
        }
        drop(labelled);
        let grace = core.grace_remaining(now).unwrap_or_default();
        self.grace_remaining.set(grace.as_secs_f64());
        for stats in stats {
            let labels = [stats.name];
            self.acquired.with_label_values(&labels).set(stats.acquired);
            self.max.with_label_values(&labels).set(stats.max);
            self.pending.with_label_values(&labels).set(stats.pending);
            let waited = stats.longest_pending.unwrap_or_default();
            self.longest_pending
                .with_label_values(&labels)
                .set(waited.as_secs_f64());
        }
        self.peers.set(core.num_peers() as i64);
        raise_to(&self.expired, core.expired_total());
        self.expired_remembered
            .set(i64::try_from(core.expired_remembered()).unwrap_or(i64::MAX));
        self.next_token
            .set(i64::try_from(core.next_token()).unwrap_or(i64::MAX));
        self.long_polls.set(long_polls.waiting as i64);
        raise_to(&self.long_polls_refused, long_polls.refused);
    }

    /// Copies a cluster member's figures: what its raft thread published last, in a cluster of
    /// `members`. The first call registers the `throttle_cluster_*` families; a single server
    /// never calls it.
    pub fn update_cluster(&self, status: &Status, members: usize) {
        let cluster = self.cluster.get_or_init(|| {
            // The names are constants the tests check, registered once: this fails only on a
            // bug, and then the member's other metrics still work.
            ClusterMetrics::new()
                .and_then(|cluster| cluster.register(&self.registry).map(|()| cluster))
                .inspect_err(|error| log::error!("Registering the cluster metrics failed: {error}"))
                .ok()
        });
        if let Some(cluster) = cluster {
            cluster.update(status, members);
        }
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        // Encoding into memory fails only for malformed metric families, which `new` rules out.
        if let Err(error) = TextEncoder::new().encode(&self.registry.gather(), &mut buffer) {
            log::error!("Encoding metrics failed: {error}");
        }
        String::from_utf8_lossy(&buffer).into_owned()
    }
}

impl ClusterMetrics {
    fn new() -> Result<ClusterMetrics, prometheus::Error> {
        Ok(ClusterMetrics {
            member_id: IntGauge::new("throttle_cluster_member_id", "This member's id.")?,
            members: IntGauge::new("throttle_cluster_members", "Members of the cluster.")?,
            leading: IntGauge::new(
                "throttle_cluster_leading",
                "1 while this member leads, else 0.",
            )?,
            leader: IntGauge::new(
                "throttle_cluster_leader",
                "The id of the leader this member knows; 0 while it knows none (an election, or \
                 no majority reachable): then nothing is granted through it.",
            )?,
            term: IntGauge::new("throttle_cluster_term", "The Raft term this member is in.")?,
            commit: IntGauge::new(
                "throttle_cluster_commit_index",
                "The highest log index this member knows to be on a majority's disks.",
            )?,
            applied: IntGauge::new(
                "throttle_cluster_applied_index",
                "The highest log index applied to this member's state.",
            )?,
            leader_changes: IntCounter::new(
                "throttle_cluster_leader_changes_total",
                "Changes of the leader this member knows (to another member, or to none).",
            )?,
            fsyncs: IntCounter::new(
                "throttle_cluster_fsyncs_total",
                "Syncs of this member's log to its disk (one per batch of entries).",
            )?,
            fsync_seconds: Counter::new(
                "throttle_cluster_fsync_seconds_total",
                "Time this member's log spent in its syncs.",
            )?,
            lag: IntGaugeVec::new(
                Opts::new(
                    "throttle_cluster_member_lag",
                    "On the leader: the commit index minus how far the member's log is known \
                     to reach, by member (0 for one that is up to date).",
                ),
                &["member"],
            )?,
            lagging: Mutex::new(Vec::new()),
        })
    }

    fn register(&self, registry: &Registry) -> Result<(), prometheus::Error> {
        registry.register(Box::new(self.member_id.clone()))?;
        registry.register(Box::new(self.members.clone()))?;
        registry.register(Box::new(self.leading.clone()))?;
        registry.register(Box::new(self.leader.clone()))?;
        registry.register(Box::new(self.term.clone()))?;
        registry.register(Box::new(self.commit.clone()))?;
        registry.register(Box::new(self.applied.clone()))?;
        registry.register(Box::new(self.leader_changes.clone()))?;
        registry.register(Box::new(self.fsyncs.clone()))?;
        registry.register(Box::new(self.fsync_seconds.clone()))?;
        registry.register(Box::new(self.lag.clone()))?;
        Ok(())
    }

    fn update(&self, status: &Status, members: usize) {
        let gauge = |value: u64| i64::try_from(value).unwrap_or(i64::MAX);
        self.member_id.set(gauge(status.id));
        self.members.set(i64::try_from(members).unwrap_or(i64::MAX));
        self.leading.set(i64::from(status.leading));
        self.leader.set(gauge(status.leader.unwrap_or(0)));
        self.term.set(gauge(status.term));
        self.commit.set(gauge(status.commit));
        self.applied.set(gauge(status.applied));
        raise_to(&self.leader_changes, status.leader_changes);
        raise_to(&self.fsyncs, status.syncs);
        let seconds = status.sync_time.as_secs_f64();
        let counted = self.fsync_seconds.get();
        if seconds > counted {
            self.fsync_seconds.inc_by(seconds - counted);
        }
        let mut lagging = self.lagging.lock();
        for gone in lagging
            .iter()
            .filter(|id| !status.matched.iter().any(|(member, _)| member == *id))
        {
            let _ = self.lag.remove_label_values(&[&gone.to_string()]);
        }
        *lagging = status.matched.iter().map(|(member, _)| *member).collect();
        for &(member, matched) in &status.matched {
            self.lag
                .with_label_values(&[&member.to_string()])
                .set(gauge(status.commit.saturating_sub(matched)));
        }
    }
}

/// How a configuration reload ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReloadResult {
    /// The new configuration is in force.
    Ok,
    /// The file had an error; the running configuration stayed.
    Error,
}

/// Advances a counter to a total kept elsewhere.
fn raise_to(counter: &IntCounter, total: u64) {
    counter.inc_by(total.saturating_sub(counter.get()));
}

/// A static label for the status codes the server answers with, to spare an allocation per
/// request.
fn status_label(status: u16) -> &'static str {
    match status {
        200 => "200",
        202 => "202",
        400 => "400",
        401 => "401",
        404 => "404",
        409 => "409",
        411 => "411",
        413 => "413",
        503 => "503",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use throttle_core::SemaphoreSettings;

    /// What these tests read of `contract/wire.toml`.
    #[derive(Deserialize)]
    struct Contract {
        metrics: Vec<MetricEntry>,
    }

    #[derive(Deserialize)]
    struct MetricEntry {
        name: String,
        kind: String,
        labels: Vec<String>,
        /// Exported by cluster members only.
        #[serde(default)]
        cluster: bool,
    }

    /// What a leader of three publishes: member 3 is 5 entries behind.
    fn leading() -> Status {
        Status {
            id: 1,
            leader: Some(1),
            term: 4,
            leading: true,
            commit: 120,
            applied: 120,
            leader_changes: 2,
            matched: vec![(1, 120), (2, 120), (3, 115)],
            syncs: 40,
            sync_time: Duration::from_millis(1500),
            ..Status::default()
        }
    }

    /// Every metric family of the registry: name, type and label names, from what it gathers
    /// (the exposition text omits label names of vectors without samples).
    fn families(metrics: &Metrics) -> Vec<(String, String, Vec<String>)> {
        metrics
            .registry
            .gather()
            .iter()
            .map(|family| {
                let kind = format!("{:?}", family.get_field_type()).to_lowercase();
                let mut labels: Vec<String> = family
                    .get_metric()
                    .first()
                    .map(|sample| {
                        sample
                            .get_label()
                            .iter()
                            .map(|label| label.name().to_owned())
                            .collect()
                    })
                    .unwrap_or_default();
                labels.sort();
                (family.name().to_owned(), kind, labels)
            })
            .collect()
    }

    /// Checks that `metrics` exports exactly the contract's entries that `listed` selects, each
    /// with its kind and labels.
    #[track_caller]
    fn check_contract(metrics: &Metrics, listed: impl Fn(&MetricEntry) -> bool) {
        let contract: Contract = toml::from_str(include_str!("../../../contract/wire.toml"))
            .expect("contract/wire.toml");
        let exported = families(metrics);
        let text = metrics.render();
        for entry in contract.metrics.iter().filter(|entry| listed(entry)) {
            let mut labels = entry.labels.clone();
            labels.sort();
            let expected = (entry.name.clone(), entry.kind.clone(), labels);
            assert!(
                exported.contains(&expected),
                "{expected:?} is not exported: {exported:#?}"
            );
            let type_line = format!("# TYPE {} {}", entry.name, entry.kind);
            assert!(
                text.contains(&type_line),
                "`{type_line}` missing in:\n{text}"
            );
        }
        let known = |name: &str| {
            contract
                .metrics
                .iter()
                .any(|entry| entry.name == name && listed(entry))
        };
        for (name, _, _) in &exported {
            assert!(
                known(name),
                "{name} is exported but not in contract/wire.toml (or not for this server)"
            );
        }
        for line in text.lines().filter_map(|line| line.strip_prefix("# TYPE ")) {
            let name = line.split_whitespace().next().unwrap_or_default();
            if name.starts_with("throttle_") {
                assert!(
                    known(name),
                    "{name} is exported but not in contract/wire.toml (or not for this server)"
                );
            }
        }
    }

    /// Metrics with one sample in every vector, so its label names show.
    fn sampled() -> Metrics {
        let t0 = Time::from_epoch(Duration::from_secs(1_000));
        let mut core = Core::new([SemaphoreSettings {
            name: "A".into(),
            max: 1,
            level: 0,
        }]);
        core.new_peer(1, t0 + Duration::from_secs(60));
        let metrics = Metrics::new().unwrap();
        metrics.observe("acquire", 200, Duration::from_millis(1));
        metrics.update(&core, LongPolls::default(), t0);
        metrics
    }

    #[test]
    fn the_metrics_are_the_contract_both_ways() {
        // A single server: every entry but the cluster's, and nothing else.
        check_contract(&sampled(), |entry| !entry.cluster);
        // A cluster member (the leader, so the lag by member shows): every entry.
        let member = sampled();
        member.update_cluster(&leading(), 3);
        check_contract(&member, |_| true);
    }

    #[test]
    fn a_member_exports_its_cluster_figures_and_the_lag_only_while_it_leads() {
        let metrics = Metrics::new().unwrap();
        metrics.update_cluster(&leading(), 3);
        let text = metrics.render();
        for line in [
            "throttle_cluster_member_id 1",
            "throttle_cluster_members 3",
            "throttle_cluster_leading 1",
            "throttle_cluster_leader 1",
            "throttle_cluster_term 4",
            "throttle_cluster_commit_index 120",
            "throttle_cluster_applied_index 120",
            "throttle_cluster_leader_changes_total 2",
            "throttle_cluster_fsyncs_total 40",
            "throttle_cluster_fsync_seconds_total 1.5",
            "throttle_cluster_member_lag{member=\"1\"} 0",
            "throttle_cluster_member_lag{member=\"3\"} 5",
        ] {
            assert!(text.contains(line), "`{line}` missing in:\n{text}");
        }
        // It follows nobody now (an election): leader 0, and no lag it could know.
        let electing = Status {
            leader: None,
            leading: false,
            matched: Vec::new(),
            leader_changes: 3,
            term: 5,
            ..leading()
        };
        metrics.update_cluster(&electing, 3);
        let text = metrics.render();
        for line in [
            "throttle_cluster_leading 0",
            "throttle_cluster_leader 0",
            "throttle_cluster_leader_changes_total 3",
            "throttle_cluster_term 5",
        ] {
            assert!(text.contains(line), "`{line}` missing in:\n{text}");
        }
        assert!(!text.contains("throttle_cluster_member_lag{"), "{text}");
    }

    #[test]
    fn every_contract_metric_is_rendered_with_its_value() {
        let t0 = Time::from_epoch(Duration::from_secs(1_000));
        let mut core = Core::new([SemaphoreSettings {
            name: "A".into(),
            max: 2,
            level: 0,
        }]);
        core.new_peer(1, t0 + Duration::from_secs(60));
        core.new_peer(2, t0 + Duration::from_secs(60));
        core.acquire(1, "A", 2, None, t0).unwrap();
        core.acquire(2, "A", 1, None, t0).unwrap();
        let metrics = Metrics::new().unwrap();
        metrics.observe("unknown", 404, Duration::from_millis(1));
        metrics.count_expired_peer_request();
        metrics.update(&core, LongPolls::default(), t0 + Duration::from_secs(3));
        let text = metrics.render();
        for line in [
            "throttle_acquired{semaphore=\"A\"} 2",
            "throttle_max{semaphore=\"A\"} 2",
            "throttle_pending{semaphore=\"A\"} 1",
            "throttle_longest_pending_sec{semaphore=\"A\"} 3",
            "throttle_num_404 1",
            "throttle_peers 2",
            "throttle_requests_total{route=\"unknown\",status=\"404\"} 1",
            "throttle_grace_remaining_seconds 0",
            "throttle_config_reloads_total{result=\"error\"} 0",
            "throttle_expired_peer_requests_total 1",
            "throttle_expired_peers_remembered 0",
            "throttle_next_fencing_token 2",
        ] {
            assert!(text.contains(line), "`{line}` missing in:\n{text}");
        }
    }

    #[test]
    fn removed_semaphores_lose_their_series_and_grace_shows() {
        let t0 = Time::from_epoch(Duration::from_secs(1_000));
        let settings = |name: &str| SemaphoreSettings {
            name: name.into(),
            max: 1,
            level: 0,
        };
        let mut core = Core::new([settings("A"), settings("B")]);
        let metrics = Metrics::new().unwrap();
        metrics.update(&core, LongPolls::default(), t0);
        assert!(metrics.render().contains("throttle_max{semaphore=\"A\"} 1"));
        core.reconfigure([settings("B")], t0);
        core.begin_grace(t0 + Duration::from_secs(3));
        metrics.update(&core, LongPolls::default(), t0 + Duration::from_secs(1));
        metrics.count_reload(ReloadResult::Ok);
        let text = metrics.render();
        assert!(!text.contains("semaphore=\"A\""), "{text}");
        assert!(text.contains("throttle_max{semaphore=\"B\"} 1"), "{text}");
        assert!(
            text.contains("throttle_grace_remaining_seconds 2"),
            "{text}"
        );
        assert!(
            text.contains("throttle_config_reloads_total{result=\"ok\"} 1"),
            "{text}"
        );
    }
}
