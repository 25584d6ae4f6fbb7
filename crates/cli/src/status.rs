//! `throttle status`: the server's `/status.json` as tables for a terminal, or as it is.
//!
//! Rendering is a pure function of the JSON ([`render`]), tested without a server. Names are
//! printed with control characters escaped, so a semaphore name cannot rewrite the terminal.
//! A cluster member's answer (its `cluster` object is not null) starts with a line about the
//! cluster and, from the leader, a table of how far each member lags.

use std::process::ExitCode;
use std::time::Duration;

use serde_json::Value;

use super::{Failure, connect, exit, failure};
use crate::args::StatusOptions;

pub fn run(options: StatusOptions) -> ExitCode {
    match status(&options) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(failure) => failure.report("status"),
    }
}

fn status(options: &StatusOptions) -> Result<String, Failure> {
    let (client, url) = connect(&options.connection);
    // One question (to each member, of a cluster): an unreachable server is reported at once,
    // not retried for half a minute.
    let client = client.with_retry_budget(Duration::ZERO);
    let text = client
        .status_json()
        .map_err(|error| failure(error, &url, None))?;
    let unexpected = || {
        Failure::new(
            exit::UNEXPECTED,
            format!("unexpected answer from {url}: /status.json is not a Throttle status"),
        )
    };
    let status: Value = serde_json::from_str(&text).map_err(|_| unexpected())?;
    if !status["semaphores"].is_array() {
        return Err(unexpected());
    }
    if options.json {
        let mut text = text;
        if !text.ends_with('\n') {
            text.push('\n');
        }
        return Ok(text);
    }
    Ok(render(&status, options.peers))
}

/// The tables: one row per semaphore; with `peers`, one row per lock (held, then pending).
pub fn render(status: &Value, peers: bool) -> String {
    let mut out = String::new();
    if let Some(ms) = status["grace_remaining_ms"].as_u64() {
        out.push_str(&format!(
            "Grace period after a restart: no new locks for {}, holders restore theirs.\n\n",
            wait(ms)
        ));
    }
    if status["cluster"].is_object() {
        out.push_str(&cluster(&status["cluster"]));
        out.push('\n');
    }
    let mut rows = vec![row(&[
        "SEMAPHORE",
        "LEVEL",
        "MAX",
        "ACQUIRED",
        "PENDING",
        "LONGEST WAIT",
    ])];
    for semaphore in status["semaphores"].as_array().into_iter().flatten() {
        rows.push(vec![
            text(&semaphore["name"]),
            number(&semaphore["level"]),
            number(&semaphore["max"]),
            number(&semaphore["acquired"]),
            number(&semaphore["pending"]),
            semaphore["longest_pending_ms"]
                .as_u64()
                .map_or_else(|| "-".to_owned(), wait),
        ]);
    }
    out.push_str(&table(&rows, &[false, true, true, true, true, false]));
    if !peers {
        return out;
    }

    let mut rows = vec![row(&[
        "SEMAPHORE",
        "LOCK",
        "COUNT",
        "PEER",
        "NAME",
        "FENCING TOKEN",
        "TIME",
    ])];
    let listed = status["peers"].as_array().map_or(&[][..], Vec::as_slice);
    let mut pending = Vec::new();
    for peer in listed {
        let (id, name) = (number(&peer["id"]), text(&peer["name"]));
        let expires = format!(
            "lease {}",
            wait(peer["expires_in_ms"].as_u64().unwrap_or(0))
        );
        for lock in peer["acquired"].as_array().into_iter().flatten() {
            rows.push(vec![
                text(&lock["semaphore"]),
                "held".to_owned(),
                number(&lock["count"]),
                id.clone(),
                name.clone(),
                number(&lock["fencing_token"]),
                expires.clone(),
            ]);
        }
        let lock = &peer["pending"];
        if lock.is_object() {
            let waited = wait(lock["waited_ms"].as_u64().unwrap_or(0));
            pending.push(vec![
                text(&lock["semaphore"]),
                "waits".to_owned(),
                number(&lock["count"]),
                id.clone(),
                name.clone(),
                "-".to_owned(),
                format!("waited {waited}"),
            ]);
        }
    }
    rows.extend(pending);
    out.push('\n');
    if rows.len() == 1 {
        out.push_str("No locks held or waited for.\n");
    } else {
        out.push_str(&table(
            &rows,
            &[false, false, true, true, false, true, false],
        ));
    }
    let total = status["num_peers"].as_u64().unwrap_or(0);
    if total > listed.len() as u64 {
        out.push_str(&format!(
            "Showing the locks of {} of {total} peers: the oldest waiters of each semaphore \
             and the leases that run out first (GET /peers/ lists all).\n",
            listed.len()
        ));
    }
    out
}

/// The cluster line, and on the leader a row per member: its role, how far its log reaches and
/// how far that is behind the commit index.
fn cluster(cluster: &Value) -> String {
    let id = cluster["id"].as_u64();
    let leader = match cluster["leader"].as_u64() {
        Some(leader) if Some(leader) == id => "this member leads".to_owned(),
        Some(leader) => format!("member {leader} leads"),
        None => "no leader: nothing is granted until a majority elects one".to_owned(),
    };
    let mut out = format!(
        "Cluster: member {} of {}, {leader} (term {}, commit {}, applied {})\n",
        number(&cluster["id"]),
        number(&cluster["members"]),
        number(&cluster["term"]),
        number(&cluster["commit"]),
        number(&cluster["applied"]),
    );
    let Some(lags) = cluster["members_lag"].as_array() else {
        if let Some(leader) = cluster["leader"].as_u64() {
            out.push_str(&format!(
                "How far each member lags is known on the leader (member {leader}).\n"
            ));
        }
        return out;
    };
    let mut rows = vec![row(&["MEMBER", "ROLE", "LOG REACHES", "LAG"])];
    for member in lags {
        let role = if member["id"] == cluster["leader"] {
            "leader"
        } else {
            "follower"
        };
        rows.push(vec![
            number(&member["id"]),
            role.to_owned(),
            number(&member["match"]),
            number(&member["lag"]),
        ]);
    }
    out.push_str(&table(&rows, &[true, false, true, true]));
    out
}

fn row(cells: &[&str]) -> Vec<String> {
    cells.iter().map(|cell| (*cell).to_owned()).collect()
}

/// Columns padded to their widest cell, two spaces apart; `right` aligns numbers.
fn table(rows: &[Vec<String>], right: &[bool]) -> String {
    let mut widths = vec![0; right.len()];
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            let pad = " ".repeat(widths[i] - cell.chars().count());
            if i > 0 {
                line.push_str("  ");
            }
            if right[i] {
                line.push_str(&pad);
                line.push_str(cell);
            } else {
                line.push_str(cell);
                line.push_str(&pad);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// A string with control characters escaped (`\n`, `\u{1b}`); `-` for null.
fn text(value: &Value) -> String {
    match value.as_str() {
        Some(text) => text
            .chars()
            .flat_map(|c| {
                let escaped: Vec<char> = if c.is_control() {
                    c.escape_default().collect()
                } else {
                    vec![c]
                };
                escaped
            })
            .collect(),
        None => "-".to_owned(),
    }
}

/// An integer; `-` for null.
fn number(value: &Value) -> String {
    match value {
        Value::Number(number) => number.to_string(),
        _ => "-".to_owned(),
    }
}

/// Milliseconds as a person reads them: `350ms`, `12s`, `1h 5m 3s`.
fn wait(ms: u64) -> String {
    if ms < 1000 {
        return format!("{ms}ms");
    }
    humantime::format_duration(Duration::from_secs(ms / 1000)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample() -> Value {
        json!({
            "semaphores": [
                {"name": "A", "level": 0, "max": 1, "acquired": 1, "pending": 2,
                 "longest_pending_ms": 65_400},
                {"name": "db pool", "level": 10, "max": 8, "acquired": 0, "pending": 0,
                 "longest_pending_ms": null}
            ],
            "peers": [
                {"id": 7, "name": "web-1:42",
                 "acquired": [{"semaphore": "A", "count": 1, "fencing_token": 1_700_000_000_000_017_u64}],
                 "pending": null, "expires_in_ms": 59_000},
                {"id": 12, "name": null, "acquired": [],
                 "pending": {"semaphore": "A", "count": 1, "waited_ms": 65_400},
                 "expires_in_ms": 30_000},
                {"id": 13, "name": "evil\u{1b}[2J", "acquired": [],
                 "pending": {"semaphore": "A", "count": 1, "waited_ms": 800},
                 "expires_in_ms": 30_000}
            ],
            "num_peers": 5,
            "grace_remaining_ms": null
        })
    }

    #[test]
    fn semaphores_make_one_table() {
        assert_eq!(
            render(&sample(), false),
            "\
SEMAPHORE  LEVEL  MAX  ACQUIRED  PENDING  LONGEST WAIT
A              0    1         1        2  1m 5s
db pool       10    8         0        0  -
"
        );
    }

    #[test]
    fn peers_list_held_locks_then_waiters() {
        let text = render(&sample(), true);
        let locks = text.split("\n\n").nth(1).unwrap();
        assert_eq!(
            locks,
            "\
SEMAPHORE  LOCK   COUNT  PEER  NAME              FENCING TOKEN  TIME
A          held       1     7  web-1:42       1700000000000017  lease 59s
A          waits      1    12  -                             -  waited 1m 5s
A          waits      1    13  evil\\u{1b}[2J                 -  waited 800ms
Showing the locks of 3 of 5 peers: the oldest waiters of each semaphore and the leases that run \
out first (GET /peers/ lists all).
"
        );
    }

    #[test]
    fn a_leader_shows_the_cluster_and_each_members_lag() {
        let mut status = sample();
        status["cluster"] = json!({"id": 1, "members": 3, "leader": 1, "term": 7,
            "commit": 1234, "applied": 1234, "members_lag": [
                {"id": 1, "match": 1234, "lag": 0}, {"id": 2, "match": 1234, "lag": 0},
                {"id": 3, "match": 1200, "lag": 34}]});
        let text = render(&status, false);
        assert!(
            text.starts_with(
                "\
Cluster: member 1 of 3, this member leads (term 7, commit 1234, applied 1234)
MEMBER  ROLE      LOG REACHES  LAG
     1  leader           1234    0
     2  follower         1234    0
     3  follower         1200   34

SEMAPHORE"
            ),
            "{text}"
        );
        assert!(
            text.ends_with("db pool       10    8         0        0  -\n"),
            "{text}"
        );
    }

    #[test]
    fn a_follower_and_a_member_without_a_leader_say_what_they_know() {
        let mut status = sample();
        status["cluster"] = json!({"id": 2, "members": 3, "leader": 1, "term": 7,
            "commit": 1234, "applied": 1230, "members_lag": null});
        assert!(render(&status, false).starts_with(
            "Cluster: member 2 of 3, member 1 leads (term 7, commit 1234, applied 1230)\n\
             How far each member lags is known on the leader (member 1).\n\nSEMAPHORE"
        ));
        status["cluster"]["leader"] = serde_json::Value::Null;
        assert!(render(&status, false).starts_with(
            "Cluster: member 2 of 3, no leader: nothing is granted until a majority elects \
             one (term 7, commit 1234, applied 1230)\n\nSEMAPHORE"
        ));
        // A single server says nothing of a cluster.
        status["cluster"] = serde_json::Value::Null;
        assert!(render(&status, false).starts_with("SEMAPHORE"));
    }

    #[test]
    fn no_locks_and_a_grace_period_say_so() {
        let status = json!({"semaphores": [], "peers": [], "num_peers": 0,
            "grace_remaining_ms": 12_000});
        let text = render(&status, true);
        assert!(text.starts_with("Grace period after a restart: no new locks for 12s"));
        assert!(text.ends_with("\nNo locks held or waited for.\n"), "{text}");
    }
}
