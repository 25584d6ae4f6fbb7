//! What operators look at, against the real binary: the readiness route `GET /ready`, the
//! `throttle_cluster_*` metrics and the members in `/status.json`, and the three-member example
//! of `contrib/cluster/`, started from its own configuration files.
//!
//! Not here: the cluster's semantics (tests/cluster.rs), the metrics of a single server
//! (tests/routes.rs), the texts of the alerts (contrib/alerts.test.yml, scripts/check-contrib).

#![cfg(unix)]

mod common;

use std::thread;
use std::time::{Duration, Instant};

use common::{CLUSTER_OF_ONE, PROMPTLY, Server, TempDir};

/// The secret the members of these tests share (THROTTLE_CLUSTER_SECRET).
const SECRET: &str = "a secret of the ops tests, 32 b.";

/// Polls `GET /ready` until it answers `status`, bounded by [`PROMPTLY`]; the last answer's
/// body.
#[track_caller]
fn wait_for_readiness(server: &Server, status: u16) -> String {
    let deadline = Instant::now() + PROMPTLY;
    loop {
        let reply = server.get("/ready");
        if reply.status == status {
            return reply.text();
        }
        assert!(
            Instant::now() < deadline,
            "/ready stayed {} {}",
            reply.status,
            reply.text()
        );
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_single_server_is_always_ready_without_a_token_and_has_no_cluster_metrics() {
    let server = Server::start("[semaphores]\nA = 1\n\n[auth]\ntoken = \"s3cret-token\"\n");
    let reply = server.get("/ready");
    reply.expect(200, "Ready");
    assert_eq!(reply.text(), "Ready");
    assert_eq!(server.get("/health").status, 200);
    let authorized = server
        .client
        .clone()
        .with_header("Authorization", "Bearer s3cret-token");
    authorized.get("/ready").expect(200, "Ready");
    let metrics = authorized.get("/metrics");
    assert_eq!(metrics.status, 200);
    assert!(
        !metrics.text().contains("throttle_cluster_"),
        "{}",
        metrics.text()
    );
    assert!(
        metrics
            .text()
            .contains("throttle_requests_total{route=\"ready\",status=\"200\"} 2"),
        "{}",
        metrics.text()
    );
    let status = authorized.get("/status.json").json();
    assert_eq!(status["cluster"], serde_json::Value::Null);
}

#[test]
fn a_cluster_of_one_is_ready_once_elected_and_exports_its_figures() {
    let server = Server::start(CLUSTER_OF_ONE);
    assert_eq!(wait_for_readiness(&server, 200), "Ready");
    let holder = server.new_peer();
    assert_eq!(server.acquire(holder, "M", 1, "").status, 200);
    let metrics = server.metrics();
    for (sample, value) in [
        ("throttle_cluster_member_id", 1.0),
        ("throttle_cluster_members", 1.0),
        ("throttle_cluster_leading", 1.0),
        ("throttle_cluster_leader", 1.0),
        ("throttle_cluster_member_lag{member=\"1\"}", 0.0),
    ] {
        assert_eq!(
            common::metric(&metrics, sample),
            Some(value),
            "{sample} in:\n{metrics}"
        );
    }
    let commit = common::metric(&metrics, "throttle_cluster_commit_index").expect("commit");
    assert!(
        commit >= 2.0,
        "a new peer and a grant were committed: {metrics}"
    );
    assert_eq!(
        common::metric(&metrics, "throttle_cluster_applied_index"),
        Some(commit)
    );
    assert!(common::metric(&metrics, "throttle_cluster_fsyncs_total") >= Some(2.0));
    assert!(common::metric(&metrics, "throttle_cluster_fsync_seconds_total") > Some(0.0));
    assert!(common::metric(&metrics, "throttle_cluster_leader_changes_total") >= Some(1.0));
    let cluster = server.get("/status.json").json()["cluster"].clone();
    assert_eq!(cluster["leader"], 1);
    assert_eq!(
        cluster["members_lag"],
        serde_json::json!([{"id": 1, "match": cluster["commit"], "lag": 0}]),
        "{cluster}"
    );
    // `throttle status` starts with the cluster and the members' lag.
    let url = format!("http://{}", server.addr);
    let dir = TempDir::new();
    let (code, stdout, stderr) =
        common::run_to_exit(&["status"], dir.path(), &[("THROTTLE_URL", &url)]);
    assert!(code.success(), "{stderr}");
    assert!(
        stdout.starts_with("Cluster: member 1 of 1, this member leads (term "),
        "{stdout}"
    );
    assert!(
        stdout.contains("\nMEMBER  ROLE    LOG REACHES  LAG\n     1  leader  "),
        "{stdout}"
    );
}

/// One member of `contrib/cluster/` with only its addresses and its data directory changed:
/// `members` on the loopback `ports`, `listen` at its own, `data_dir` in its temporary directory.
fn contrib_config(id: usize, ports: &[u16]) -> String {
    let path = format!(
        "{}/contrib/cluster/throttle-{id}.toml",
        env!("CARGO_MANIFEST_DIR")
    );
    let original = std::fs::read_to_string(&path).expect("the example's configuration");
    let members: Vec<String> = ports.iter().map(|p| format!("\"127.0.0.1:{p}\"")).collect();
    let mut replaced = [0; 3];
    let lines: Vec<String> = original
        .lines()
        .map(|line| {
            if line.starts_with("members = ") {
                replaced[0] += 1;
                format!("members = [{}]", members.join(", "))
            } else if line.starts_with("listen = ") {
                replaced[1] += 1;
                format!("listen = \"127.0.0.1:{}\"", ports[id - 1])
            } else if line.starts_with("data_dir = ") {
                replaced[2] += 1;
                "data_dir = \"data\"".to_owned()
            } else {
                line.to_owned()
            }
        })
        .collect();
    assert_eq!(
        replaced,
        [1, 1, 1],
        "{path}: members, listen and data_dir once each"
    );
    lines.join("\n")
}

/// The member every running member follows, once they agree: its index in `servers`.
#[track_caller]
fn agreed_leader(servers: &[Server]) -> usize {
    let deadline = Instant::now() + PROMPTLY;
    loop {
        let leaders: Vec<serde_json::Value> = servers
            .iter()
            .map(|server| server.get("/status.json").json()["cluster"]["leader"].clone())
            .collect();
        if let Some(id) = leaders[0].as_u64()
            && leaders.iter().all(|leader| *leader == leaders[0])
        {
            return (id - 1) as usize;
        }
        assert!(Instant::now() < deadline, "no agreed leader: {leaders:?}");
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_contrib_example_elects_and_serves_and_a_member_left_alone_is_not_ready() {
    let ports = common::free_ports(3);
    let mut servers: Vec<Server> = (1..=3)
        .map(|id| {
            Server::start_with(
                &contrib_config(id, &ports),
                &[],
                &[("THROTTLE_CLUSTER_SECRET", SECRET)],
            )
        })
        .collect();
    let leader = agreed_leader(&servers);
    let follower = (leader + 1) % 3;
    // Served through a follower: the example's semaphores are there.
    let holder = servers[follower].new_peer();
    assert_eq!(servers[follower].acquire(holder, "db", 2, "").status, 200);
    assert_eq!(servers[(leader + 2) % 3].remainder("db"), 6);
    for server in &servers {
        assert_eq!(wait_for_readiness(server, 200), "Ready");
    }
    // The leader knows how far each member's log reaches; the followers do not.
    let cluster = servers[leader].get("/status.json").json()["cluster"].clone();
    let lag = cluster["members_lag"]
        .as_array()
        .expect("the leader's lags");
    let ids: Vec<u64> = lag
        .iter()
        .filter_map(|member| member["id"].as_u64())
        .collect();
    assert_eq!(ids, [1, 2, 3], "{cluster}");
    let metrics = servers[leader].metrics();
    assert_eq!(
        common::metric(&metrics, "throttle_cluster_leading"),
        Some(1.0)
    );
    for id in 1..=3 {
        let sample = format!("throttle_cluster_member_lag{{member=\"{id}\"}}");
        assert!(
            common::metric(&metrics, &sample).is_some(),
            "{sample}: {metrics}"
        );
    }
    let cluster = servers[follower].get("/status.json").json()["cluster"].clone();
    assert_eq!(cluster["members_lag"], serde_json::Value::Null, "{cluster}");
    let metrics = servers[follower].metrics();
    assert_eq!(
        common::metric(&metrics, "throttle_cluster_leading"),
        Some(0.0)
    );
    assert_eq!(
        common::metric(&metrics, "throttle_cluster_leader"),
        Some((leader + 1) as f64)
    );
    assert!(
        !metrics.contains("throttle_cluster_member_lag{"),
        "{metrics}"
    );

    // Two of three gone: the last one cannot serve through a quorum, and says so, whether it
    // led or followed. It stays alive.
    let survivor = servers.remove(follower);
    drop(servers);
    let reason = wait_for_readiness(&survivor, 503);
    assert!(reason.starts_with("Not ready: no leader"), "{reason}");
    assert_eq!(survivor.get("/health").status, 200);
    let metrics = survivor.metrics();
    assert_eq!(
        common::metric(&metrics, "throttle_cluster_leader"),
        Some(0.0)
    );
}
