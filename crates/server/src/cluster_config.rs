//! The `[cluster]` table of the configuration file: which member this server is, where the
//! members hear each other, where this one keeps its log, and the secret they share.
//!
//! This module checks the table and nothing else: it resolves no host name (a member's address
//! may name a machine that is not up yet), creates no directory and reads no environment
//! variable (the caller passes `THROTTLE_CLUSTER_SECRET` to [`ClusterConfig::resolve_secret`]).
//! `config.rs` deserializes the table and calls `Table::check`, so the table's errors are one
//! line naming the file, the line and the key, like every other configuration error:
//!
//! ```text
//! throttle.toml:3: `id` in [cluster] is 4, but `members` lists 3: `id` is this member's position in `members`, from 1 to 3 (in `id = 4`)
//! ```
//!
//! The table:
//!
//! ```toml
//! [cluster]
//! id = 1                     # this member: its position in `members`, counting from 1
//! members = ["10.0.0.1:7001", "10.0.0.2:7001", "10.0.0.3:7001"]  # where each member hears the others
//! data_dir = "/var/lib/throttle"   # its log and snapshots
//! # secret = "..."           # or THROTTLE_CLUSTER_SECRET; required with a cluster
//! ```
//!
//! Without the table the server is a single in-memory server (`Config::cluster` is `None`).
//! `THROTTLE_CLUSTER_SECRET`, when set and not empty, wins over `secret` in the file; the file's
//! secret is used only without it.
//! Every member is started with the same `members` in the same order, so that an `id` names the
//! same member everywhere. An even member count is allowed but tolerates no more failures than
//! one member less (4 members survive the loss of one, as 3 do, and need 3 for a majority
//! instead of 2); [`ClusterConfig::warnings`] says so.
//!
//! The table is bound at start: a reload (SIGHUP) that finds it changed applies nothing of it
//! and logs [`restart_needed`]'s advice.

use std::collections::HashSet;
use std::fmt;
use std::net::Ipv6Addr;
use std::path::PathBuf;

use serde::Deserialize;
use toml::Spanned;

use crate::config::{line_number, source_line};

/// The environment variable that holds the cluster secret, so that it can stay out of the file.
/// When set (and not empty) it wins over `secret` in `[cluster]`.
pub const SECRET_VARIABLE: &str = "THROTTLE_CLUSTER_SECRET";

/// The fewest bytes a secret may have. The secret is the key of the HMAC that members sign their
/// traffic with: whoever guesses it can vote and append entries, so it must not be guessable,
/// and 16 bytes is the least that a random key needs for 128 bits.
pub const MIN_SECRET_BYTES: usize = 16;

/// The most members a cluster may have. Every write waits for a majority of them, so each member
/// beyond 7 (which survives the loss of 3) makes every write slower for a tolerance of failures
/// that no deployment of a lock service needs.
pub const MAX_MEMBERS: usize = 7;

/// What a reload logs when the `[cluster]` table differs from the one read at start.
pub const RESTART_NEEDED: &str = "the [cluster] table changed; restart the member to apply it";

/// The checked `[cluster]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// This member: its position in `members`, counting from 1. Always from 1 to
    /// `members.len()`.
    pub id: u64,
    /// Where each member hears the others, as written (`host:port`; a host name, an IPv4 address
    /// or an IPv6 address in brackets). Between 1 and [`MAX_MEMBERS`] of them, no two alike.
    /// Names are resolved when the member connects, not here.
    pub members: Vec<String>,
    /// Where this member keeps its log and snapshots; never empty.
    pub data_dir: PathBuf,
    /// `secret` of the file, if given. [`ClusterConfig::resolve_secret`] decides which secret is
    /// used.
    pub secret: Option<Secret>,
    /// Where this member listens for the others, if not at its own entry of `members`: for a
    /// member whose address as the others dial it is not one it can bind (a proxy, a NAT, a
    /// container's published port). Optional; checked as `members` are.
    pub listen: Option<String>,
    /// Log entries between two snapshots (after which the log before is dropped): fewer keep
    /// the log on disk short and a restart quick, more write the state less often.
    pub snapshot_every: u64,
}

/// The default of `snapshot_every`: with 100,000 peers a snapshot is about 5 MB, written once
/// per 10,000 changes.
pub const DEFAULT_SNAPSHOT_EVERY: u64 = 10_000;

/// The shared secret of the cluster's members, at least [`MIN_SECRET_BYTES`] long. Its `Debug`
/// does not show it, so that a logged configuration does not leak it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The secret, or how many bytes it has if it is too short to be one.
    pub fn new(secret: String) -> Result<Secret, usize> {
        if secret.len() < MIN_SECRET_BYTES {
            return Err(secret.len());
        }
        Ok(Secret(secret))
    }

    /// The bytes of the secret: the HMAC key.
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("Secret(..)")
    }
}

impl ClusterConfig {
    /// The secret the members use: `THROTTLE_CLUSTER_SECRET` if set and not empty (pass
    /// `std::env::var(SECRET_VARIABLE).ok()` as `env`), else `secret` of the file. The
    /// environment wins, as `THROTTLE_TOKEN` does over `[auth] token`, so that one file can be
    /// shared while the secret comes from a secret store.
    ///
    /// A cluster of more than one member without a secret is an error: anyone who reaches a
    /// member's address could otherwise vote and append. A cluster of one has no traffic between
    /// members and needs none.
    pub fn resolve_secret(&self, env: Option<String>) -> Result<Option<Secret>, String> {
        let secret = match env.filter(|value| !value.is_empty()) {
            Some(value) => Some(Secret::new(value).map_err(|bytes| {
                format!("{SECRET_VARIABLE} is {bytes} bytes: {}", secret_advice())
            })?),
            None => self.secret.clone(),
        };
        let count = self.members.len();
        if secret.is_none() && count > 1 {
            return Err(format!(
                "a cluster of {count} members needs a secret: set `secret` in [cluster] or \
                 {SECRET_VARIABLE}"
            ));
        }
        Ok(secret)
    }

    /// Advice about a valid table, one line each, for the caller to log: an even member count
    /// tolerates no more failures than one member less.
    pub fn warnings(&self) -> Vec<String> {
        let count = self.members.len();
        if count % 2 == 1 {
            return Vec::new();
        }
        let tolerated = (count - 1) / 2;
        vec![format!(
            "[cluster] lists {count} members: an even count tolerates no more failures than {} \
             ({tolerated} member{} may be down) and needs {} for a majority instead of {}; 3 or \
             5 members are the usual sizes",
            count - 1,
            if tolerated == 1 { "" } else { "s" },
            count / 2 + 1,
            count / 2,
        )]
    }
}

/// What a reload logs about the `[cluster]` table: `None` if it is as at start, else
/// [`RESTART_NEEDED`]. A table added, removed or changed in any key (the secret included) counts:
/// membership and identity are bound when the member starts.
pub fn restart_needed(
    running: Option<&ClusterConfig>,
    reloaded: Option<&ClusterConfig>,
) -> Option<&'static str> {
    (running != reloaded).then_some(RESTART_NEEDED)
}

/// The `[cluster]` table as written. Every key is required but `secret`; unknown keys are
/// refused. The spans point errors at their line.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table like `[cluster]`")]
pub(crate) struct Table {
    id: Spanned<u64>,
    members: Spanned<Vec<Spanned<String>>>,
    data_dir: Spanned<PathBuf>,
    secret: Option<Spanned<String>>,
    listen: Option<Spanned<String>>,
    snapshot_every: Option<Spanned<u64>>,
}

impl Table {
    /// Checks what deserializing cannot: `source` and `file_name` are only used in messages.
    pub(crate) fn check(self, source: &str, file_name: &str) -> Result<ClusterConfig, String> {
        let error = |start: usize, message: String| {
            let line = line_number(source, start);
            format!(
                "{file_name}:{line}: {message} (in `{}`)",
                source_line(source, start)
            )
        };
        let members_start = self.members.span().start;
        let members = self.members.into_inner();
        if members.is_empty() {
            return Err(error(
                members_start,
                "`members` in [cluster] is empty: list the address (host:port) of every member, \
                 this one's included"
                    .to_owned(),
            ));
        }
        if members.len() > MAX_MEMBERS {
            return Err(error(
                members_start,
                format!(
                    "`members` in [cluster] lists {} members, at most {MAX_MEMBERS} are allowed: \
                     every write waits for a majority, so more members slow every write",
                    members.len()
                ),
            ));
        }
        let mut seen = HashSet::new();
        for member in &members {
            let address = member.get_ref();
            let key = check_address(address).map_err(|reason| {
                error(
                    member.span().start,
                    format!("`members` in [cluster]: {address:?} {reason}"),
                )
            })?;
            if !seen.insert(key) {
                return Err(error(
                    member.span().start,
                    format!(
                        "`members` in [cluster] lists {address:?} twice: each member has one \
                         address"
                    ),
                ));
            }
        }
        let count = members.len();
        let id = *self.id.get_ref();
        if id == 0 || id > count as u64 {
            return Err(error(
                self.id.span().start,
                format!(
                    "`id` in [cluster] is {id}, but `members` lists {count}: `id` is this \
                     member's position in `members`, from 1 to {count}"
                ),
            ));
        }
        if self.data_dir.get_ref().as_os_str().is_empty() {
            return Err(error(
                self.data_dir.span().start,
                "`data_dir` in [cluster] is empty: name the directory of this member's log and \
                 snapshots"
                    .to_owned(),
            ));
        }
        let listen = match self.listen {
            None => None,
            Some(listen) => {
                let address = listen.get_ref();
                check_address(address).map_err(|reason| {
                    error(
                        listen.span().start,
                        format!("`listen` in [cluster]: {address:?} {reason}"),
                    )
                })?;
                Some(listen.into_inner())
            }
        };
        let snapshot_every = match self.snapshot_every {
            None => DEFAULT_SNAPSHOT_EVERY,
            Some(every) if *every.get_ref() == 0 => {
                return Err(error(
                    every.span().start,
                    "`snapshot_every` in [cluster] is 0: it counts the log entries between two \
                     snapshots, at least 1"
                        .to_owned(),
                ));
            }
            Some(every) => every.into_inner(),
        };
        let secret = match self.secret {
            None => None,
            Some(secret) => {
                let line = line_number(source, secret.span().start);
                // No source line in this message: it would show the secret.
                Some(Secret::new(secret.into_inner()).map_err(|bytes| {
                    format!(
                        "{file_name}:{line}: `secret` in [cluster] is {bytes} bytes: {}",
                        secret_advice()
                    )
                })?)
            }
        };
        Ok(ClusterConfig {
            id,
            members: members.into_iter().map(Spanned::into_inner).collect(),
            data_dir: self.data_dir.into_inner(),
            secret,
            listen,
            snapshot_every,
        })
    }
}

/// Why a secret needs [`MIN_SECRET_BYTES`]: the end of every too-short-secret error.
fn secret_advice() -> String {
    format!(
        "a secret needs at least {MIN_SECRET_BYTES} bytes, because it is the HMAC key of the \
         traffic between members, which an attacker must not be able to guess (e.g. `openssl \
         rand -hex 32`)"
    )
}

/// Checks that `address` is `host:port` with a port from 1 to 65535, without resolving the
/// host. Returns the host in lower case and the port (what tells two members apart: host names
/// are case-insensitive and `7001` is `07001`), or why not, as the end of a sentence that starts
/// with the address.
fn check_address(address: &str) -> Result<(String, u16), String> {
    const SHAPE: &str = "(host:port with a port from 1 to 65535)";
    let Some((host, port)) = address.rsplit_once(':') else {
        return Err(format!("has no port {SHAPE}"));
    };
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("has no port {SHAPE}"));
    }
    let port = match port.parse::<u16>() {
        Ok(0) | Err(_) => return Err(format!("has port {port}, not one from 1 to 65535")),
        Ok(port) => port,
    };
    if host.is_empty() {
        return Err(format!("has no host {SHAPE}"));
    }
    if let Some(inner) = host.strip_prefix('[') {
        let is_ipv6 = inner
            .strip_suffix(']')
            .is_some_and(|inner| inner.parse::<Ipv6Addr>().is_ok());
        if !is_ipv6 {
            return Err(format!("has no IPv6 address in brackets {SHAPE}"));
        }
        return Ok((host.to_ascii_lowercase(), port));
    }
    if host.parse::<Ipv6Addr>().is_ok() {
        return Err("is an IPv6 address without brackets: write it as [address]:port".to_owned());
    }
    let is_name = host
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
    if !is_name {
        return Err(format!(
            "has a host that is neither a name nor an IP address {SHAPE}"
        ));
    }
    Ok((host.to_ascii_lowercase(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(count: usize, id: u64, secret: Option<&str>) -> ClusterConfig {
        ClusterConfig {
            id,
            members: (1..=count).map(|i| format!("10.0.0.{i}:7001")).collect(),
            data_dir: "/var/lib/throttle".into(),
            secret: secret.map(|s| Secret::new(s.to_owned()).unwrap()),
            listen: None,
            snapshot_every: DEFAULT_SNAPSHOT_EVERY,
        }
    }

    const FILE_SECRET: &str = "file-secret-0123456789";
    const ENV_SECRET: &str = "env-secret-0123456789";

    #[test]
    fn the_environment_wins_over_the_file() {
        let three = cluster(3, 1, Some(FILE_SECRET));
        let secret = three.resolve_secret(Some(ENV_SECRET.into())).unwrap();
        assert_eq!(secret.unwrap().as_bytes(), ENV_SECRET.as_bytes());
    }

    #[test]
    fn the_file_counts_without_the_environment() {
        let three = cluster(3, 2, Some(FILE_SECRET));
        for env in [None, Some(String::new())] {
            let secret = three.resolve_secret(env).unwrap();
            assert_eq!(secret.unwrap().as_bytes(), FILE_SECRET.as_bytes());
        }
    }

    #[test]
    fn the_environment_alone_is_enough() {
        let three = cluster(3, 3, None);
        let secret = three.resolve_secret(Some(ENV_SECRET.into())).unwrap();
        assert_eq!(secret.unwrap().as_bytes(), ENV_SECRET.as_bytes());
    }

    #[test]
    fn a_cluster_of_several_needs_a_secret() {
        for count in [2, 3, 5, 7] {
            let error = cluster(count, 1, None)
                .resolve_secret(Some(String::new()))
                .unwrap_err();
            assert_eq!(
                error,
                format!(
                    "a cluster of {count} members needs a secret: set `secret` in [cluster] or \
                     THROTTLE_CLUSTER_SECRET"
                )
            );
        }
    }

    #[test]
    fn a_cluster_of_one_needs_no_secret() {
        assert_eq!(cluster(1, 1, None).resolve_secret(None), Ok(None));
        let secret = cluster(1, 1, Some(FILE_SECRET)).resolve_secret(None);
        assert_eq!(secret.unwrap().unwrap().as_bytes(), FILE_SECRET.as_bytes());
    }

    #[test]
    fn a_short_secret_in_the_environment_is_refused_without_showing_it() {
        let error = cluster(3, 1, Some(FILE_SECRET))
            .resolve_secret(Some("tooshort".into()))
            .unwrap_err();
        assert!(
            error.starts_with(
                "THROTTLE_CLUSTER_SECRET is 8 bytes: a secret needs at least 16 bytes, because it \
                 is the HMAC key of the traffic between members, which an attacker must not be \
                 able to guess"
            ),
            "{error}"
        );
        assert!(!error.contains("tooshort"), "{error}");
    }

    #[test]
    fn debug_does_not_show_the_secret() {
        let secret = Secret::new(FILE_SECRET.to_owned()).unwrap();
        assert_eq!(format!("{secret:?}"), "Secret(..)");
        let config = format!("{:?}", cluster(3, 1, Some(FILE_SECRET)));
        assert!(!config.contains(FILE_SECRET), "{config}");
        assert!(config.contains("secret: Some(Secret(..))"), "{config}");
        let pretty = format!("{:#?}", cluster(3, 1, Some(FILE_SECRET)));
        assert!(!pretty.contains(FILE_SECRET), "{pretty}");
    }

    #[test]
    fn secrets_of_16_bytes_and_more() {
        assert_eq!(
            Secret::new("0123456789abcdef".into())
                .unwrap()
                .as_bytes()
                .len(),
            16
        );
        assert_eq!(Secret::new("0123456789abcde".into()), Err(15));
        assert_eq!(Secret::new(String::new()), Err(0));
        // Bytes, not characters: 8 two-byte characters are enough.
        assert!(Secret::new("ääääääää".into()).is_ok());
    }

    #[test]
    fn odd_counts_need_no_advice() {
        for count in [1, 3, 5, 7] {
            assert_eq!(cluster(count, 1, None).warnings(), Vec::<String>::new());
        }
    }

    #[test]
    fn even_counts_are_advised_against() {
        assert_eq!(
            cluster(4, 1, None).warnings(),
            [
                "[cluster] lists 4 members: an even count tolerates no more failures than 3 \
              (1 member may be down) and needs 3 for a majority instead of 2; 3 or 5 members are \
              the usual sizes"
            ]
        );
        assert_eq!(
            cluster(2, 1, None).warnings(),
            [
                "[cluster] lists 2 members: an even count tolerates no more failures than 1 \
              (0 members may be down) and needs 2 for a majority instead of 1; 3 or 5 members are \
              the usual sizes"
            ]
        );
        let six = cluster(6, 1, None).warnings();
        assert!(six[0].contains("than 5 (2 members may be down)"), "{six:?}");
    }

    #[test]
    fn a_reload_tells_a_changed_table_apart() {
        let three = cluster(3, 1, Some(FILE_SECRET));
        assert_eq!(restart_needed(None, None), None);
        assert_eq!(restart_needed(Some(&three), Some(&three.clone())), None);
        assert_eq!(restart_needed(None, Some(&three)), Some(RESTART_NEEDED));
        assert_eq!(restart_needed(Some(&three), None), Some(RESTART_NEEDED));
        for changed in [
            ClusterConfig {
                id: 2,
                ..three.clone()
            },
            ClusterConfig {
                members: three.members[..2].to_vec(),
                ..three.clone()
            },
            ClusterConfig {
                data_dir: "/srv/throttle".into(),
                ..three.clone()
            },
            ClusterConfig {
                secret: None,
                ..three.clone()
            },
            ClusterConfig {
                secret: Some(Secret::new(ENV_SECRET.into()).unwrap()),
                ..three.clone()
            },
            ClusterConfig {
                listen: Some("0.0.0.0:7001".into()),
                ..three.clone()
            },
        ] {
            assert_eq!(
                restart_needed(Some(&three), Some(&changed)),
                Some("the [cluster] table changed; restart the member to apply it")
            );
        }
    }

    #[test]
    fn addresses() {
        for good in [
            "10.0.0.1:7001",
            "localhost:1",
            "throttle-1.example.com:65535",
            "member_2:7001",
            "[::1]:7001",
            "[fe80::1]:80",
            "A.Example:7001",
        ] {
            assert!(check_address(good).is_ok(), "{good}");
        }
        assert_eq!(
            check_address("Node.Example:07001"),
            Ok(("node.example".to_owned(), 7001))
        );
        for (bad, reason) in [
            ("10.0.0.1", "has no port"),
            ("10.0.0.1:", "has no port"),
            ("10.0.0.1:x", "has no port"),
            ("10.0.0.1:+7", "has no port"),
            ("10.0.0.1:0", "has port 0, not one from 1 to 65535"),
            ("10.0.0.1:65536", "has port 65536, not one from 1 to 65535"),
            ("10.0.0.1:99999999999", "has port 99999999999"),
            (":7001", "has no host"),
            ("::1:7001", "is an IPv6 address without brackets"),
            ("[::1:7001", "has no IPv6 address in brackets"),
            ("[nope]:7001", "has no IPv6 address in brackets"),
            (
                "http://a:7001",
                "has a host that is neither a name nor an IP address",
            ),
            (
                "a b:7001",
                "has a host that is neither a name nor an IP address",
            ),
            (
                "a/b:7001",
                "has a host that is neither a name nor an IP address",
            ),
            ("", "has no port"),
        ] {
            let error = check_address(bad).unwrap_err();
            assert!(error.starts_with(reason), "{bad}: {error}");
        }
    }
}
