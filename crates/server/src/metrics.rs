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

use std::time::Duration;

use parking_lot::Mutex;
use prometheus::{
    Encoder, Gauge, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};

use crate::service::LongPolls;
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

    #[test]
    fn the_metrics_are_the_contract_both_ways() {
        let contract: Contract = toml::from_str(include_str!("../../../contract/wire.toml"))
            .expect("contract/wire.toml");
        // Give every vector one sample, so its label names show.
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
        let exported = families(&metrics);
        let text = metrics.render();
        for entry in &contract.metrics {
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
        for (name, _, _) in &exported {
            assert!(
                contract.metrics.iter().any(|entry| &entry.name == name),
                "{name} is exported but not in contract/wire.toml"
            );
        }
        for line in text.lines().filter_map(|line| line.strip_prefix("# TYPE ")) {
            let name = line.split_whitespace().next().unwrap_or_default();
            if name.starts_with("throttle_") {
                assert!(
                    contract.metrics.iter().any(|entry| entry.name == name),
                    "{name} is exported but not in contract/wire.toml"
                );
            }
        }
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
