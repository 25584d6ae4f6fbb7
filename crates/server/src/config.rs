//! The configuration file: semaphores, logging, access control and the state file, read at
//! startup and again on SIGHUP (`reload.rs`).
//!
//! This module turns a TOML file into a validated [`Config`] and nothing else: it does not set up
//! logging (it returns its warnings for `server.rs` to log once logging is up) and it does not know
//! the core or HTTP. A configuration error is a single line naming the file, the line and the
//! offending key, so that an operator sees at once what to fix:
//!
//! ```text
//! throttle.toml:3: unknown field `maxx`, expected `max` or `level` (in `A = { maxx = 1 }`)
//! ```
//!
//! The format:
//!
//! ```toml
//! [semaphores]
//! A = 42                      # short form: max, level 0
//! B = { max = 1, level = 1 }  # long form; level is optional and defaults to 0
//! [semaphores.C]              # long form as a table
//! max = 3
//!
//! [logging.stderr]
//! level = "INFO"              # ERROR WARN INFO DEBUG TRACE OFF, any case; default INFO
//! [logging.gelf]              # optional: GELF 1.1 over UDP
//! name = "MyThrottleServer"   # the GELF `host` field; default "throttle"
//! host = "graylog.example"    # required
//! port = 12201                # default 12201, Graylog's GELF UDP port
//! level = "INFO"              # default INFO
//!
//! [state]
//! file = "/var/lib/throttle/state.json"  # optional; `--state-file` wins
//!
//! [cluster]                   # optional: this server is a member of a cluster
//! id = 1                      # this member: its position in `members`, counting from 1
//! members = ["10.0.0.1:7001", "10.0.0.2:7001", "10.0.0.3:7001"]
//! data_dir = "/var/lib/throttle"
//! # secret = "..."            # or THROTTLE_CLUSTER_SECRET; required with more than one member
//! ```
//!
//! `cluster_config.rs` checks the `[cluster]` table.
//!
//! Unknown keys anywhere are errors, so a typo never silently falls back to a default. The one
//! exception is the top-level `litter_collection_interval` of older Throttle versions: it is
//! accepted with any value and ignored with a warning, because this server releases expired peers
//! at their deadline and has no periodic sweep to configure.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::path::Path;

use log::LevelFilter;
use serde::Deserialize;
use serde::de::{self, IgnoredAny, MapAccess, Visitor};
use toml::Spanned;

use crate::cluster_config::{self, ClusterConfig};

/// The configuration file read when none is named on the command line.
pub const DEFAULT_FILE: &str = "throttle.toml";

/// Everything the configuration file says.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Config {
    /// The semaphores the server offers, sorted by name (byte-wise, as Rust sorts strings), so
    /// that the order in logs and on `/metrics` does not depend on how the file is laid out.
    /// Names are unique (TOML rejects duplicate keys) and never empty.
    pub semaphores: Vec<SemaphoreConfig>,
    /// Where log records go besides the defaults.
    pub logging: LoggingConfig,
    /// Access control; open to everyone unless a token is set.
    pub auth: AuthConfig,
    /// Where peers are kept across restarts.
    pub state: StateConfig,
    /// The `[cluster]` table: `None` without one, which is a single in-memory server.
    pub cluster: Option<ClusterConfig>,
}

/// The `[state]` table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table like `[state]`")]
pub struct StateConfig {
    /// The state file (see `state_file.rs`); `--state-file` on the command line wins. Without
    /// either, nothing is kept across restarts.
    pub file: Option<std::path::PathBuf>,
}

/// The `[auth]` table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table like `[auth]`")]
pub struct AuthConfig {
    /// The shared secret clients send as `Authorization: Bearer <token>`. The environment
    /// variable `THROTTLE_TOKEN` takes precedence, so the secret can stay out of the file.
    pub token: Option<String>,
}

/// One semaphore of the `[semaphores]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SemaphoreConfig {
    /// The name clients use in the URL; any non-empty string (spaces, `/`, unicode).
    pub name: String,
    /// The full count, `>= 0`. A `max` of 0 is allowed: such a semaphore grants nothing, which
    /// lets an operator switch a resource off without breaking clients that name it.
    pub max: i64,
    /// The lock level for deadlock prevention; 0 unless given.
    pub level: i32,
}

/// What the core keeps of a configured semaphore: the same three facts, at start and at a
/// reload alike.
impl From<SemaphoreConfig> for throttle_core::SemaphoreSettings {
    fn from(config: SemaphoreConfig) -> Self {
        throttle_core::SemaphoreSettings {
            name: config.name,
            max: config.max,
            level: config.level,
        }
    }
}

/// The `[logging]` table. Without it, logs go to stderr at INFO and nowhere else.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table like `[logging]`")]
pub struct LoggingConfig {
    /// `[logging.stderr]`; `None` means the default level, INFO.
    pub stderr: Option<StderrConfig>,
    /// `[logging.gelf]`; `None` means no GELF logging.
    pub gelf: Option<GelfConfig>,
}

/// `[logging.stderr]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table like `[logging.stderr]`")]
pub struct StderrConfig {
    /// The most verbose level written to stderr; the environment variable `THROTTLE_LOG`
    /// overrides it. Default INFO.
    #[serde(default = "default_level", deserialize_with = "deserialize_level")]
    pub level: LevelFilter,
}

/// `[logging.gelf]`: send log records as GELF 1.1 datagrams over UDP, e.g. to Graylog.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table like `[logging.gelf]`")]
pub struct GelfConfig {
    /// The GELF `host` field: how this server is named in the log collector. Default `throttle`
    /// (not the machine's host name, which would need a system call and is often meaningless
    /// inside a container).
    #[serde(default = "default_gelf_name")]
    pub name: String,
    /// Host name or IP address of the log collector. Required: there is no sensible default.
    pub host: String,
    /// UDP port of the log collector. Default 12201, the port Graylog's GELF UDP input uses.
    #[serde(default = "default_gelf_port")]
    pub port: u16,
    /// The most verbose level sent. Default INFO, like stderr; `THROTTLE_LOG` does not affect it,
    /// so a noisy debugging session on the console does not flood the collector.
    #[serde(default = "default_level", deserialize_with = "deserialize_level")]
    pub level: LevelFilter,
}

/// A successfully read configuration and what the operator should be told about it.
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded {
    /// The configuration.
    pub config: Config,
    /// Warnings, one line each. The configuration is read before logging is set up (logging is
    /// configured by it), so `server.rs` logs these once logging is up.
    pub warnings: Vec<String>,
}

/// Reads the configuration file at `path`, or [`DEFAULT_FILE`] in the working directory if
/// `path` is `None`.
///
/// A missing default file is not an error: the server then runs without semaphores and the
/// result carries a warning, so `throttle` can be started anywhere to try it out. A file the
/// operator named but that cannot be read is an error, because silently serving nothing would
/// hide the mistake.
pub fn load(path: Option<&Path>) -> Result<Loaded, String> {
    match path {
        Some(path) => read(path).and_then(|source| parse(&source, &path.display().to_string())),
        None => load_default(Path::new(DEFAULT_FILE)),
    }
}

/// [`load`] for the default file at `path`: missing is only a warning.
fn load_default(path: &Path) -> Result<Loaded, String> {
    match std::fs::metadata(path) {
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(Loaded {
            config: Config::default(),
            warnings: vec![format!(
                "no configuration file {DEFAULT_FILE} in the working directory: serving no \
                 semaphores, every lock request will be answered `Unknown semaphore`"
            )],
        }),
        _ => read(path).and_then(|source| parse(&source, &path.display().to_string())),
    }
}

/// Reads the whole file, with an error naming it.
fn read(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|error| {
        format!(
            "{}: cannot read the configuration file: {error}",
            path.display()
        )
    })
}

/// Parses the text of a configuration file. `file_name` is only used in messages.
///
/// This is the pure part of [`load`], so that every form and every error can be tested without
/// files.
pub fn parse(source: &str, file_name: &str) -> Result<Loaded, String> {
    let file: File = toml::from_str(source).map_err(|error| describe(&error, source, file_name))?;
    let mut warnings = Vec::new();
    if let Some(ignored) = file.litter_collection_interval {
        warnings.push(format!(
            "{file_name}:{}: `litter_collection_interval` is ignored: expired peers are released \
             at their deadline, there is no periodic collection to configure",
            line_number(source, ignored.span().start)
        ));
    }
    let semaphores: Vec<SemaphoreConfig> = file
        .semaphores
        .into_iter()
        .map(|(name, semaphore)| SemaphoreConfig {
            name: name.0,
            max: semaphore.max,
            level: semaphore.level,
        })
        .collect();
    if file.auth.token.as_deref() == Some("") {
        return Err(format!(
            "{file_name}: `token` in [auth] is empty: remove it to serve without a token"
        ));
    }
    let cluster = match file.cluster {
        Some(table) => Some(table.check(source, file_name)?),
        None => None,
    };
    if let Some(cluster) = &cluster {
        warnings.extend(
            cluster
                .warnings()
                .into_iter()
                .map(|warning| format!("{file_name}: {warning}")),
        );
    }
    if semaphores.is_empty() {
        warnings.push(format!(
            "{file_name}: no semaphores configured: every lock request will be answered \
             `Unknown semaphore`"
        ));
    }
    Ok(Loaded {
        config: Config {
            semaphores,
            logging: file.logging,
            auth: file.auth,
            state: file.state,
            cluster,
        },
        warnings,
    })
}

/// The file as written, before it becomes a [`Config`].
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    /// A `BTreeMap`, so the semaphores come out sorted by name.
    #[serde(default)]
    semaphores: BTreeMap<Name, Semaphore>,
    #[serde(default)]
    logging: LoggingConfig,
    #[serde(default)]
    auth: AuthConfig,
    #[serde(default)]
    state: StateConfig,
    cluster: Option<cluster_config::Table>,
    /// Accepted for compatibility with Throttle 0.5 configurations; the span points the warning
    /// at the line.
    litter_collection_interval: Option<Spanned<IgnoredAny>>,
}

/// A semaphore name: any string but the empty one, which no URL could name.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Name(String);

impl<'de> Deserialize<'de> for Name {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        if name.is_empty() {
            return Err(de::Error::invalid_value(
                de::Unexpected::Str(""),
                &"a non-empty semaphore name",
            ));
        }
        Ok(Name(name))
    }
}

/// A semaphore in either form: `A = 42` or `A = { max = 42, level = 1 }`.
struct Semaphore {
    max: i64,
    level: i32,
}

impl<'de> Deserialize<'de> for Semaphore {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(SemaphoreVisitor)
    }
}

/// Dispatches on the form by the type of the value, so that an error inside the long form is
/// reported as such (an untagged enum would only say that no form matched).
struct SemaphoreVisitor;

impl<'de> Visitor<'de> for SemaphoreVisitor {
    type Value = Semaphore;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter
            .write_str("a max count like `A = 42` or a table like `A = { max = 42, level = 1 }`")
    }

    fn visit_i64<E: de::Error>(self, max: i64) -> Result<Semaphore, E> {
        Ok(Semaphore {
            max: check_max(max)?,
            level: 0,
        })
    }

    fn visit_u64<E: de::Error>(self, max: u64) -> Result<Semaphore, E> {
        let max = i64::try_from(max)
            .map_err(|_| E::invalid_value(de::Unexpected::Unsigned(max), &"a max that fits i64"))?;
        self.visit_i64(max)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Semaphore, A::Error> {
        let long = LongForm::deserialize(de::value::MapAccessDeserializer::new(map))?;
        Ok(Semaphore {
            max: long.max.0,
            level: long.level,
        })
    }
}

/// The long form of a semaphore.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LongForm {
    max: Max,
    #[serde(default)]
    level: i32,
}

/// A semaphore's full count, checked to be `>= 0` while deserializing so the error points at it.
struct Max(i64);

impl<'de> Deserialize<'de> for Max {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        check_max(i64::deserialize(deserializer)?).map(Max)
    }
}

fn check_max<E: de::Error>(max: i64) -> Result<i64, E> {
    if max < 0 {
        return Err(E::invalid_value(
            de::Unexpected::Signed(max),
            &"a max count >= 0",
        ));
    }
    Ok(max)
}

fn default_level() -> LevelFilter {
    LevelFilter::Info
}

fn default_gelf_name() -> String {
    "throttle".to_owned()
}

fn default_gelf_port() -> u16 {
    12201
}

/// Reads a level name in any case: `ERROR`, `WARN`, `INFO`, `DEBUG`, `TRACE` or `OFF`.
fn deserialize_level<'de, D: de::Deserializer<'de>>(
    deserializer: D,
) -> Result<LevelFilter, D::Error> {
    struct LevelVisitor;
    impl Visitor<'_> for LevelVisitor {
        type Value = LevelFilter;

        fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
            formatter.write_str("a log level (ERROR, WARN, INFO, DEBUG, TRACE or OFF)")
        }

        fn visit_str<E: de::Error>(self, value: &str) -> Result<LevelFilter, E> {
            value
                .parse()
                .map_err(|_| E::invalid_value(de::Unexpected::Str(value), &self))
        }
    }
    deserializer.deserialize_str(LevelVisitor)
}

/// Turns a TOML error into one line: `file:line: message (in `source line`)`.
///
/// toml's own `Display` draws a multi-line picture; a startup error should be one line that fits
/// a log. The source line is appended because toml's message does not always name the key (a
/// wrong type says what was found, not where).
fn describe(error: &toml::de::Error, source: &str, file_name: &str) -> String {
    let Some(span) = error.span() else {
        // Without a span, toml's `Display` names the key path instead ("in `semaphores.C`").
        return format!("{file_name}: {}", one_line(&error.to_string()));
    };
    let line = line_number(source, span.start);
    let message = one_line(error.message());
    let text = source_line(source, span.start);
    if text.is_empty() {
        format!("{file_name}:{line}: {message}")
    } else {
        format!("{file_name}:{line}: {message} (in `{text}`)")
    }
}

/// The 1-based line number of the byte `offset` in `source`.
pub(crate) fn line_number(source: &str, offset: usize) -> usize {
    let offset = offset.min(source.len());
    source.as_bytes()[..offset]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// The line containing the byte `offset`, trimmed, and shortened if it is very long.
pub(crate) fn source_line(source: &str, offset: usize) -> String {
    const LIMIT: usize = 80;
    let line = source
        .split('\n')
        .nth(line_number(source, offset) - 1)
        .unwrap_or("")
        .trim();
    if line.chars().count() <= LIMIT {
        return line.to_owned();
    }
    let mut short: String = line.chars().take(LIMIT).collect();
    short.push_str("...");
    short
}

/// Joins the lines of a message with spaces.
fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn ok(source: &str) -> Loaded {
        match parse(source, "throttle.toml") {
            Ok(loaded) => loaded,
            Err(error) => panic!("unexpected error: {error}"),
        }
    }

    #[track_caller]
    fn semaphores(source: &str) -> Vec<(String, i64, i32)> {
        ok(source)
            .config
            .semaphores
            .into_iter()
            .map(|s| (s.name, s.max, s.level))
            .collect()
    }

    #[track_caller]
    fn check_error(source: &str, expected: &str) {
        match parse(source, "throttle.toml") {
            Ok(loaded) => panic!("expected an error, got {loaded:?}"),
            Err(error) => assert_eq!(error, expected),
        }
    }

    fn s(name: &str, max: i64, level: i32) -> (String, i64, i32) {
        (name.to_owned(), max, level)
    }

    #[test]
    fn state_file() {
        let loaded = ok("[state]\nfile = \"/var/lib/throttle/state.json\"\n");
        assert_eq!(
            loaded.config.state.file,
            Some("/var/lib/throttle/state.json".into())
        );
        check_error(
            "[state]\nfiles = \"x\"\n",
            "throttle.toml:2: unknown field `files`, expected `file` (in `files = \"x\"`)",
        );
    }

    /// The `[cluster]` table of the issue, as outside checks write it, with `id` and `members`
    /// replaced.
    fn cluster_table(id: &str, members: &str) -> String {
        format!(
            "[semaphores]\nA = 1\n\n[cluster]\nid = {id}\nmembers = {members}\n\
             data_dir = \"/var/lib/throttle\"\n"
        )
    }

    const THREE: &str = r#"["10.0.0.1:7001", "10.0.0.2:7001", "10.0.0.3:7001"]"#;

    #[test]
    fn without_a_cluster_table_there_is_no_cluster() {
        assert_eq!(ok("[semaphores]\nA = 1\n").config.cluster, None);
        assert_eq!(ok("").config.cluster, None);
    }

    #[test]
    fn the_cluster_table_of_the_issue() {
        let source = r#"
[cluster]
id = 1                     # this member: its position in `members`, counting from 1
members = ["10.0.0.1:7001", "10.0.0.2:7001", "10.0.0.3:7001"]  # where each member hears the others
data_dir = "/var/lib/throttle"   # its log and snapshots
# secret = "..."           # or THROTTLE_CLUSTER_SECRET; required with a cluster

[semaphores]
A = 1
"#;
        let loaded = ok(source);
        assert_eq!(loaded.warnings, Vec::<String>::new());
        assert_eq!(
            loaded.config.cluster,
            Some(ClusterConfig {
                id: 1,
                members: vec![
                    "10.0.0.1:7001".into(),
                    "10.0.0.2:7001".into(),
                    "10.0.0.3:7001".into()
                ],
                data_dir: "/var/lib/throttle".into(),
                secret: None,
                listen: None,
                snapshot_every: crate::cluster_config::DEFAULT_SNAPSHOT_EVERY,
            })
        );
    }

    #[test]
    fn clusters_of_one_three_and_five() {
        let one = ok(&cluster_table("1", r#"["localhost:7001"]"#)).config;
        let one = one.cluster.unwrap();
        assert_eq!((one.id, one.members.len()), (1, 1));
        let three = ok(&cluster_table("3", THREE)).config.cluster.unwrap();
        assert_eq!((three.id, three.members.len()), (3, 3));
        let members = r#"["a:1", "b.example:2", "[::1]:3", "10.0.0.4:65535", "e:7001"]"#;
        let loaded = ok(&cluster_table("4", members));
        assert_eq!(loaded.warnings, Vec::<String>::new());
        let five = loaded.config.cluster.unwrap();
        assert_eq!(five.id, 4);
        assert_eq!(
            five.members,
            ["a:1", "b.example:2", "[::1]:3", "10.0.0.4:65535", "e:7001"]
        );
    }

    #[test]
    fn a_cluster_table_in_other_forms() {
        let source = "cluster.id = 2\ncluster.members = [\"a:1\", \"b:1\", \"c:1\"]\n\
                      cluster.data_dir = \"d\"\ncluster.secret = \"0123456789abcdef\"\n";
        let cluster = ok(source).config.cluster.unwrap();
        assert_eq!(cluster.id, 2);
        assert_eq!(cluster.data_dir, Path::new("d"));
        assert_eq!(
            cluster.secret.as_ref().map(|s| s.as_bytes()),
            Some(&b"0123456789abcdef"[..])
        );
        let inline = "cluster = { id = 1, members = [\"a:1\"], data_dir = \"d\" }\n";
        assert_eq!(ok(inline).config.cluster.unwrap().members, ["a:1"]);
    }

    #[test]
    fn an_even_cluster_is_a_warning() {
        let loaded = ok(&cluster_table("1", r#"["a:1", "b:1", "c:1", "d:1"]"#));
        assert_eq!(
            loaded.warnings,
            [
                "throttle.toml: [cluster] lists 4 members: an even count tolerates no more failures \
              than 3 (1 member may be down) and needs 3 for a majority instead of 2; 3 or 5 \
              members are the usual sizes"
            ]
        );
        assert_eq!(loaded.config.cluster.unwrap().members.len(), 4);
    }

    #[test]
    fn cluster_id_out_of_range() {
        check_error(
            &cluster_table("4", THREE),
            "throttle.toml:5: `id` in [cluster] is 4, but `members` lists 3: `id` is this \
             member's position in `members`, from 1 to 3 (in `id = 4`)",
        );
        check_error(
            &cluster_table("0", THREE),
            "throttle.toml:5: `id` in [cluster] is 0, but `members` lists 3: `id` is this \
             member's position in `members`, from 1 to 3 (in `id = 0`)",
        );
        check_error(
            &cluster_table("-1", THREE),
            "throttle.toml:5: invalid value: integer `-1`, expected u64 (in `id = -1`)",
        );
        check_error(
            &cluster_table("\"1\"", THREE),
            "throttle.toml:5: invalid type: string \"1\", expected u64 (in `id = \"1\"`)",
        );
    }

    #[test]
    fn cluster_members_empty_or_too_many() {
        check_error(
            &cluster_table("1", "[]"),
            "throttle.toml:6: `members` in [cluster] is empty: list the address (host:port) of \
             every member, this one's included (in `members = []`)",
        );
        let eight: Vec<String> = (1..=8).map(|i| format!("\"m{i}:7001\"")).collect();
        let error = parse(
            &cluster_table("1", &format!("[{}]", eight.join(", "))),
            "throttle.toml",
        )
        .unwrap_err();
        assert!(
            error.starts_with(
                "throttle.toml:6: `members` in [cluster] lists 8 members, at most 7 are allowed: \
                 every write waits for a majority, so more members slow every write (in \
                 `members = [\"m1:7001\""
            ),
            "{error}"
        );
        let seven: Vec<String> = (1..=7).map(|i| format!("\"m{i}:7001\"")).collect();
        let seven = ok(&cluster_table("7", &format!("[{}]", seven.join(", "))));
        assert_eq!(seven.config.cluster.unwrap().members.len(), 7);
    }

    #[test]
    fn cluster_members_twice() {
        check_error(
            &cluster_table("1", r#"["a:7001", "b:7001", "a:7001"]"#),
            "throttle.toml:6: `members` in [cluster] lists \"a:7001\" twice: each member has one \
             address (in `members = [\"a:7001\", \"b:7001\", \"a:7001\"]`)",
        );
        let error = parse(
            &cluster_table("1", r#"["Node.example:7001", "node.EXAMPLE:7001"]"#),
            "throttle.toml",
        )
        .unwrap_err();
        assert!(error.contains("twice"), "{error}");
        // The same host on other ports is other members.
        ok(&cluster_table("1", r#"["a:7001", "a:7002", "a:7003"]"#));
        let error = parse(
            &cluster_table("1", r#"["a:7001", "a:07001"]"#),
            "throttle.toml",
        )
        .unwrap_err();
        assert!(error.contains("lists \"a:07001\" twice"), "{error}");
    }

    #[test]
    fn a_duplicate_member_is_pointed_at_on_its_line() {
        let source = "[cluster]\nid = 1\nmembers = [\n  \"a:1\",\n  \"b:1\",\n  \"a:1\",\n]\n\
                      data_dir = \"d\"\n";
        check_error(
            source,
            "throttle.toml:6: `members` in [cluster] lists \"a:1\" twice: each member has one \
             address (in `\"a:1\",`)",
        );
    }

    #[test]
    fn cluster_members_that_are_not_host_and_port() {
        for (member, reason) in [
            (
                "10.0.0.1",
                "has no port (host:port with a port from 1 to 65535)",
            ),
            ("10.0.0.1:0", "has port 0, not one from 1 to 65535"),
            ("10.0.0.1:65536", "has port 65536, not one from 1 to 65535"),
            (
                ":7001",
                "has no host (host:port with a port from 1 to 65535)",
            ),
            (
                "::1:7001",
                "is an IPv6 address without brackets: write it as [address]:port",
            ),
        ] {
            let members = format!("[\"a:1\", \"{member}\"]");
            check_error(
                &cluster_table("1", &members),
                &format!(
                    "throttle.toml:6: `members` in [cluster]: \"{member}\" {reason} (in \
                     `members = {members}`)"
                ),
            );
        }
        check_error(
            &cluster_table("1", "[7001]"),
            "throttle.toml:6: invalid type: integer `7001`, expected a string (in \
             `members = [7001]`)",
        );
        check_error(
            &cluster_table("1", "\"a:1\""),
            "throttle.toml:6: invalid type: string \"a:1\", expected a sequence (in \
             `members = \"a:1\"`)",
        );
    }

    #[test]
    fn cluster_data_dir() {
        check_error(
            "[cluster]\nid = 1\nmembers = [\"a:1\"]\ndata_dir = \"\"\n",
            "throttle.toml:4: `data_dir` in [cluster] is empty: name the directory of this \
             member's log and snapshots (in `data_dir = \"\"`)",
        );
    }

    #[test]
    fn cluster_listen_and_snapshot_every() {
        let source = format!("{}listen = \"0.0.0.0:7101\"\n", cluster_table("1", THREE));
        let loaded = ok(&source);
        let cluster = loaded.config.cluster.expect("a cluster");
        assert_eq!(cluster.listen.as_deref(), Some("0.0.0.0:7101"));
        assert_eq!(cluster.snapshot_every, 10_000);
        let source = format!("{}snapshot_every = 20\n", cluster_table("1", THREE));
        assert_eq!(
            ok(&source)
                .config
                .cluster
                .expect("a cluster")
                .snapshot_every,
            20
        );
        let source = format!("{}snapshot_every = 0\n", cluster_table("1", THREE));
        let error = parse(&source, "throttle.toml").expect_err("zero");
        assert!(
            error.contains("`snapshot_every` in [cluster] is 0"),
            "{error}"
        );
        let source = "[cluster]\nid = 1\nmembers = [\"a:1\"]\ndata_dir = \"d\"\nlisten = \"a\"\n";
        let error = parse(source, "throttle.toml").expect_err("no port");
        assert!(
            error.starts_with("throttle.toml:5: `listen` in [cluster]: \"a\""),
            "{error}"
        );
    }

    #[test]
    fn cluster_keys_missing() {
        for (source, key) in [
            ("[cluster]\nmembers = [\"a:1\"]\ndata_dir = \"d\"\n", "id"),
            ("[cluster]\nid = 1\ndata_dir = \"d\"\n", "members"),
            ("[cluster]\nid = 1\nmembers = [\"a:1\"]\n", "data_dir"),
        ] {
            check_error(
                source,
                &format!("throttle.toml:1: missing field `{key}` (in `[cluster]`)"),
            );
        }
    }

    #[test]
    fn cluster_unknown_keys() {
        check_error(
            "[cluster]\nid = 1\nmembers = [\"a:1\"]\ndata_dir = \"d\"\npeers = []\n",
            "throttle.toml:5: unknown field `peers`, expected one of `id`, `members`, \
             `data_dir`, `secret`, `listen`, `snapshot_every` (in `peers = []`)",
        );
        check_error(
            "cluster = 3\n",
            "throttle.toml:1: invalid type: integer `3`, expected a table like `[cluster]` (in \
             `cluster = 3`)",
        );
    }

    #[test]
    fn cluster_secret_too_short_is_refused_without_showing_it() {
        let source = format!("{}secret = \"hunter2hunter2\"\n", cluster_table("1", THREE));
        check_error(
            &source,
            "throttle.toml:8: `secret` in [cluster] is 14 bytes: a secret needs at least 16 \
             bytes, because it is the HMAC key of the traffic between members, which an attacker \
             must not be able to guess (e.g. `openssl rand -hex 32`)",
        );
        let source = format!("{}secret = \"\"\n", cluster_table("1", THREE));
        let error = parse(&source, "throttle.toml").unwrap_err();
        assert!(
            error.starts_with("throttle.toml:8: `secret` in [cluster] is 0 bytes"),
            "{error}"
        );
    }

    #[test]
    fn cluster_secret_from_the_file() {
        let source = format!(
            "{}secret = \"correct horse battery staple\"\n",
            cluster_table("2", THREE)
        );
        let loaded = ok(&source);
        let debug = format!("{loaded:?}");
        assert!(!debug.contains("correct horse"), "{debug}");
        let cluster = loaded.config.cluster.unwrap();
        assert_eq!(
            cluster.secret.as_ref().map(|s| s.as_bytes()),
            Some(&b"correct horse battery staple"[..])
        );
        let secret = cluster.resolve_secret(None).unwrap().unwrap();
        assert_eq!(secret.as_bytes(), b"correct horse battery staple");
    }

    #[test]
    fn the_sample_file_of_the_repository_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../throttle.toml");
        let loaded = load(Some(&path)).unwrap();
        assert_eq!(loaded.warnings, Vec::<String>::new());
        assert_eq!(loaded.config.cluster, None);
        // Its commented-out [cluster] table, uncommented, is valid too.
        let source = std::fs::read_to_string(&path).unwrap();
        let uncommented: String = source
            .lines()
            .map(|line| match line.strip_prefix("# ") {
                Some(rest)
                    if ["[cluster]", "id ", "members ", "data_dir ", "secret "]
                        .iter()
                        .any(|key| rest.starts_with(key)) =>
                {
                    format!("{rest}\n")
                }
                _ => format!("{line}\n"),
            })
            .collect();
        let cluster = ok(&uncommented).config.cluster;
        let cluster = cluster.expect("the sample's [cluster] table, uncommented");
        assert_eq!(cluster.members.len(), 3);
        assert!(cluster.secret.is_some());
    }

    #[test]
    fn short_form() {
        assert_eq!(semaphores("[semaphores]\nA = 42\n"), [s("A", 42, 0)]);
    }

    #[test]
    fn inline_long_form() {
        assert_eq!(
            semaphores("[semaphores]\nB = { max = 1, level = 1 }\n"),
            [s("B", 1, 1)]
        );
    }

    #[test]
    fn long_form_level_defaults_to_zero() {
        assert_eq!(
            semaphores("[semaphores]\nB = { max = 7 }\n"),
            [s("B", 7, 0)]
        );
    }

    #[test]
    fn table_form() {
        assert_eq!(
            semaphores("[semaphores.C]\nmax = 3\n\n[semaphores.D]\nmax = 2\nlevel = -4\n"),
            [s("C", 3, 0), s("D", 2, -4)]
        );
    }

    #[test]
    fn dotted_keys() {
        assert_eq!(semaphores("semaphores.A = 5\n"), [s("A", 5, 0)]);
    }

    #[test]
    fn all_forms_together_sorted_by_name() {
        let source = r#"
[semaphores]
Z = 42
B = { max = 1, level = 1 }
[semaphores.C]
max = 3
"#;
        assert_eq!(
            semaphores(source),
            [s("B", 1, 1), s("C", 3, 0), s("Z", 42, 0)]
        );
    }

    #[test]
    fn the_sample_of_the_spec() {
        let source = r#"
[semaphores]
A = 42                      # short form: max, level 0
B = { max = 1, level = 1 }  # long form
[semaphores.C]
max = 3

[logging.stderr]
level = "INFO"              # ERROR WARN INFO DEBUG TRACE
[logging.gelf]              # optional: send logs to Graylog over UDP
name = "MyThrottleServer"
host = "graylog.example"
port = 12201
level = "INFO"
"#;
        let loaded = ok(source);
        assert_eq!(loaded.warnings, Vec::<String>::new());
        assert_eq!(
            loaded.config,
            Config {
                semaphores: vec![
                    SemaphoreConfig {
                        name: "A".into(),
                        max: 42,
                        level: 0
                    },
                    SemaphoreConfig {
                        name: "B".into(),
                        max: 1,
                        level: 1
                    },
                    SemaphoreConfig {
                        name: "C".into(),
                        max: 3,
                        level: 0
                    },
                ],
                logging: LoggingConfig {
                    stderr: Some(StderrConfig {
                        level: LevelFilter::Info
                    }),
                    gelf: Some(GelfConfig {
                        name: "MyThrottleServer".into(),
                        host: "graylog.example".into(),
                        port: 12201,
                        level: LevelFilter::Info,
                    }),
                },
                auth: AuthConfig::default(),
                state: StateConfig::default(),
                cluster: None,
            }
        );
    }

    #[test]
    fn limits_of_max_and_level() {
        let source = format!(
            "[semaphores]\nzero = 0\nbig = {}\nlow = {{ max = 1, level = {} }}\nhigh = {{ max = 1, level = {} }}\n",
            i64::MAX,
            i32::MIN,
            i32::MAX
        );
        assert_eq!(
            semaphores(&source),
            [
                s("big", i64::MAX, 0),
                s("high", 1, i32::MAX),
                s("low", 1, i32::MIN),
                s("zero", 0, 0)
            ]
        );
    }

    #[test]
    fn quoted_and_unicode_names() {
        let source =
            "[semaphores]\n\"a b/c\" = 3\n'x&y=z' = 1\n\"Äpfel\" = 2\n\"数据库\" = { max = 8 }\n";
        assert_eq!(
            semaphores(source),
            [
                s("a b/c", 3, 0),
                s("x&y=z", 1, 0),
                s("Äpfel", 2, 0),
                s("数据库", 8, 0)
            ]
        );
    }

    #[test]
    fn empty_file_has_no_semaphores_and_warns() {
        let loaded = ok("");
        assert_eq!(loaded.config, Config::default());
        assert_eq!(
            loaded.warnings,
            [
                "throttle.toml: no semaphores configured: every lock request will be answered \
              `Unknown semaphore`"
            ]
        );
        assert_eq!(ok("# only a comment\n[semaphores]\n").warnings.len(), 1);
    }

    #[test]
    fn logging_defaults() {
        let loaded = ok("[semaphores]\nA = 1\n");
        assert_eq!(loaded.config.logging, LoggingConfig::default());
        assert_eq!(loaded.warnings, Vec::<String>::new());

        let logging = ok("[logging.stderr]\n[logging.gelf]\nhost = \"localhost\"\n")
            .config
            .logging;
        assert_eq!(
            logging.stderr,
            Some(StderrConfig {
                level: LevelFilter::Info
            })
        );
        assert_eq!(
            logging.gelf,
            Some(GelfConfig {
                name: "throttle".into(),
                host: "localhost".into(),
                port: 12201,
                level: LevelFilter::Info,
            })
        );
    }

    #[test]
    fn levels_in_any_case() {
        for (text, level) in [
            ("ERROR", LevelFilter::Error),
            ("warn", LevelFilter::Warn),
            ("Info", LevelFilter::Info),
            ("debug", LevelFilter::Debug),
            ("TRACE", LevelFilter::Trace),
            ("off", LevelFilter::Off),
        ] {
            let source = format!("[logging.stderr]\nlevel = \"{text}\"\n");
            let stderr = ok(&source).config.logging.stderr.unwrap();
            assert_eq!(stderr.level, level, "{text}");
        }
    }

    #[test]
    fn a_token_may_be_configured() {
        let loaded = ok("[semaphores]\nA = 1\n[auth]\ntoken = \"s3cret\"\n");
        assert_eq!(loaded.config.auth.token.as_deref(), Some("s3cret"));
        assert_eq!(ok("[semaphores]\nA = 1\n").config.auth.token, None);
        let error = parse("[auth]\ntoken = \"\"\n", "throttle.toml").unwrap_err();
        assert!(error.contains("empty"), "{error}");
        let error = parse("[auth]\ntokn = \"x\"\n", "throttle.toml").unwrap_err();
        assert!(
            error.starts_with("throttle.toml:2: unknown field `tokn`"),
            "{error}"
        );
    }

    #[test]
    fn litter_collection_interval_is_ignored_with_a_warning() {
        let loaded = ok("litter_collection_interval = \"1s\"\n[semaphores]\nA = 1\n");
        assert_eq!(loaded.config.semaphores.len(), 1);
        assert_eq!(
            loaded.warnings,
            [
                "throttle.toml:1: `litter_collection_interval` is ignored: expired peers are \
              released at their deadline, there is no periodic collection to configure"
            ]
        );
        // Any value is accepted, on any line.
        let loaded = ok("[semaphores]\nA = 1\n");
        assert!(loaded.warnings.is_empty());
        let loaded = ok("\n\nlitter_collection_interval = { a = [1, 2] }\nsemaphores.A = 1\n");
        assert_eq!(loaded.warnings.len(), 1);
        assert!(
            loaded.warnings[0].starts_with("throttle.toml:3: "),
            "{:?}",
            loaded.warnings
        );
    }

    #[test]
    fn typo_in_a_semaphore_key() {
        check_error(
            "[semaphores]\nB = 1\nA = { maxx = 1 }\n",
            "throttle.toml:3: unknown field `maxx`, expected `max` or `level` (in `A = { maxx = 1 }`)",
        );
    }

    #[test]
    fn typo_in_a_semaphore_table() {
        check_error(
            "[semaphores.C]\nmax = 3\nlevle = 1\n",
            "throttle.toml:3: unknown field `levle`, expected `max` or `level` (in `levle = 1`)",
        );
    }

    #[test]
    fn missing_max() {
        check_error(
            "[semaphores]\nA = { level = 1 }\n",
            "throttle.toml:2: missing field `max` (in `A = { level = 1 }`)",
        );
    }

    #[test]
    fn missing_max_in_a_table() {
        let error = parse("[semaphores.C]\nlevel = 2\n", "throttle.toml").unwrap_err();
        assert!(error.starts_with("throttle.toml:"), "{error}");
        assert!(error.contains("missing field `max`"), "{error}");
        assert!(error.contains("C"), "{error}");
    }

    #[test]
    fn negative_max() {
        check_error(
            "[semaphores]\nA = -1\n",
            "throttle.toml:2: invalid value: integer `-1`, expected a max count >= 0 (in `A = -1`)",
        );
        check_error(
            "[semaphores]\nA = { max = -5 }\n",
            "throttle.toml:2: invalid value: integer `-5`, expected a max count >= 0 (in `A = { max = -5 }`)",
        );
    }

    #[test]
    fn max_of_the_wrong_type() {
        check_error(
            "[semaphores]\nA = \"42\"\n",
            "throttle.toml:2: invalid type: string \"42\", expected a max count like `A = 42` or \
             a table like `A = { max = 42, level = 1 }` (in `A = \"42\"`)",
        );
        check_error(
            "[semaphores]\nA = 4.5\n",
            "throttle.toml:2: invalid type: floating point `4.5`, expected a max count like \
             `A = 42` or a table like `A = { max = 42, level = 1 }` (in `A = 4.5`)",
        );
        check_error(
            "[semaphores]\nA = { max = true }\n",
            "throttle.toml:2: invalid type: boolean `true`, expected i64 (in `A = { max = true }`)",
        );
    }

    #[test]
    fn level_out_of_i32() {
        check_error(
            "[semaphores]\n\nA = { max = 1, level = 3000000000 }\n",
            "throttle.toml:3: invalid value: integer `3000000000`, expected i32 (in `A = { max = 1, level = 3000000000 }`)",
        );
    }

    #[test]
    fn max_beyond_i64_is_a_toml_error() {
        let error = parse("[semaphores]\nA = 9223372036854775808\n", "throttle.toml").unwrap_err();
        assert!(error.starts_with("throttle.toml:2: "), "{error}");
        assert!(error.ends_with("(in `A = 9223372036854775808`)"), "{error}");
    }

    #[test]
    fn empty_semaphore_name() {
        let error = parse("[semaphores]\n\"\" = 1\n", "throttle.toml").unwrap_err();
        assert!(error.starts_with("throttle.toml:2: "), "{error}");
        assert!(
            error.contains("expected a non-empty semaphore name"),
            "{error}"
        );
    }

    #[test]
    fn unknown_top_level_key() {
        check_error(
            "[semaphores]\nA = 1\n[semaphore]\nB = 2\n",
            "throttle.toml:3: unknown field `semaphore`, expected one of `semaphores`, \
             `logging`, `auth`, `state`, `cluster`, `litter_collection_interval` (in \
             `[semaphore]`)",
        );
        check_error(
            "port = 8000\n",
            "throttle.toml:1: unknown field `port`, expected one of `semaphores`, `logging`, \
             `auth`, `state`, `cluster`, `litter_collection_interval` (in `port = 8000`)",
        );
    }

    #[test]
    fn logging_sections_must_be_tables() {
        check_error(
            "[logging]\nstderr = 1\n",
            "throttle.toml:2: invalid type: integer `1`, expected a table like \
             `[logging.stderr]` (in `stderr = 1`)",
        );
        check_error(
            "logging = \"stderr\"\n",
            "throttle.toml:1: invalid type: string \"stderr\", expected a table like \
             `[logging]` (in `logging = \"stderr\"`)",
        );
    }

    #[test]
    fn unicode_names_must_be_quoted() {
        check_error(
            "[semaphores]\nÄpfel = 2\n",
            "throttle.toml:2: invalid unquoted key, expected letters, numbers, `-`, `_` \
             (in `Äpfel = 2`)",
        );
    }

    #[test]
    fn a_semaphore_given_twice_is_an_error() {
        check_error(
            "[semaphores]\nA = 1\n[semaphores.A]\nmax = 1\n",
            "throttle.toml:3: duplicate key (in `[semaphores.A]`)",
        );
    }

    #[test]
    fn semaphores_must_be_a_table() {
        let error = parse("semaphores = 3\n", "throttle.toml").unwrap_err();
        assert!(
            error.starts_with("throttle.toml:1: invalid type: integer `3`"),
            "{error}"
        );
    }

    #[test]
    fn unknown_logging_keys() {
        check_error(
            "[logging.file]\npath = \"x\"\n",
            "throttle.toml:1: unknown field `file`, expected `stderr` or `gelf` (in `[logging.file]`)",
        );
        check_error(
            "[logging.stderr]\nlevl = \"INFO\"\n",
            "throttle.toml:2: unknown field `levl`, expected `level` (in `levl = \"INFO\"`)",
        );
        check_error(
            "[logging.gelf]\nhost = \"h\"\nadress = \"x\"\n",
            "throttle.toml:3: unknown field `adress`, expected one of `name`, `host`, `port`, \
             `level` (in `adress = \"x\"`)",
        );
    }

    #[test]
    fn level_of_the_wrong_type() {
        check_error(
            "[semaphores]\nA = 1\n\n[logging.stderr]\n\n\nlevel = 5\n",
            "throttle.toml:7: invalid type: integer `5`, expected a log level (ERROR, WARN, \
             INFO, DEBUG, TRACE or OFF) (in `level = 5`)",
        );
    }

    #[test]
    fn unknown_level_name() {
        check_error(
            "[logging.stderr]\nlevel = \"VERBOSE\"\n",
            "throttle.toml:2: invalid value: string \"VERBOSE\", expected a log level (ERROR, \
             WARN, INFO, DEBUG, TRACE or OFF) (in `level = \"VERBOSE\"`)",
        );
    }

    #[test]
    fn gelf_errors() {
        let error = parse("[logging.gelf]\nname = \"x\"\n", "throttle.toml").unwrap_err();
        assert!(error.contains("missing field `host`"), "{error}");
        assert!(!error.contains('\n'), "{error}");
        check_error(
            "[logging.gelf]\nhost = \"h\"\nport = 70000\n",
            "throttle.toml:3: invalid value: integer `70000`, expected u16 (in `port = 70000`)",
        );
    }

    #[test]
    fn toml_syntax_error() {
        let error = parse("[semaphores]\nA = = 1\n", "throttle.toml").unwrap_err();
        assert!(error.starts_with("throttle.toml:2: "), "{error}");
        assert!(error.ends_with("(in `A = = 1`)"), "{error}");
        assert!(!error.contains('\n'), "{error}");
    }

    #[test]
    fn duplicate_semaphore() {
        let error = parse("[semaphores]\nA = 1\nA = 2\n", "throttle.toml").unwrap_err();
        assert!(error.starts_with("throttle.toml:3: "), "{error}");
        assert!(error.ends_with("(in `A = 2`)"), "{error}");
    }

    #[test]
    fn errors_name_the_file_given() {
        let error = parse("bogus = 1\n", "/etc/throttle/prod.toml").unwrap_err();
        assert!(error.starts_with("/etc/throttle/prod.toml:1: "), "{error}");
    }

    #[test]
    fn long_source_lines_are_shortened() {
        let name = "n".repeat(200);
        let error = parse(&format!("[semaphores]\n{name} = -1\n"), "throttle.toml").unwrap_err();
        assert!(error.ends_with("...`)"), "{error}");
        assert!(error.len() < 200, "{error}");
    }

    #[test]
    fn line_numbers() {
        assert_eq!(line_number("", 0), 1);
        assert_eq!(line_number("a\nb\nc", 0), 1);
        assert_eq!(line_number("a\nb\nc", 2), 2);
        assert_eq!(line_number("a\nb\nc", 4), 3);
        assert_eq!(line_number("a\nb\nc", 99), 3);
        assert_eq!(source_line("a\n  b = 1  \nc", 4), "b = 1");
        assert_eq!(source_line("a\nb\n", 4), "");
        assert_eq!(source_line("a\r\nb\r\n", 3), "b");
    }

    #[test]
    fn missing_default_file_is_a_warning() {
        let directory = temporary_directory("missing-default");
        let loaded = load_default_in(&directory).unwrap();
        assert_eq!(loaded.config, Config::default());
        assert_eq!(loaded.warnings.len(), 1);
        assert!(loaded.warnings[0].contains("no configuration file throttle.toml"));
    }

    #[test]
    fn present_default_file_is_read() {
        let directory = temporary_directory("present-default");
        std::fs::write(directory.join(DEFAULT_FILE), "[semaphores]\nA = 3\n").unwrap();
        let loaded = load_default_in(&directory).unwrap();
        assert_eq!(loaded.warnings, Vec::<String>::new());
        assert_eq!(loaded.config.semaphores[0].max, 3);
        std::fs::write(directory.join(DEFAULT_FILE), "[semaphores]\nA = -3\n").unwrap();
        let error = load_default_in(&directory).unwrap_err();
        assert!(
            error.ends_with(
                ":2: invalid value: integer `-3`, expected a max count >= 0 (in `A = -3`)"
            ),
            "{error}"
        );
    }

    #[test]
    fn missing_named_file_is_an_error() {
        let directory = temporary_directory("missing-named");
        let path = directory.join("nowhere.toml");
        let error = load(Some(&path)).unwrap_err();
        assert!(
            error.starts_with(&format!(
                "{}: cannot read the configuration file: ",
                path.display()
            )),
            "{error}"
        );
    }

    #[test]
    fn a_named_directory_is_an_error() {
        let directory = temporary_directory("directory");
        let error = load(Some(&directory)).unwrap_err();
        assert!(
            error.contains("cannot read the configuration file"),
            "{error}"
        );
    }

    #[test]
    fn named_file_is_read() {
        let directory = temporary_directory("named");
        let path = directory.join("my.toml");
        std::fs::write(&path, "[semaphores]\nA = 2\nB = -1\n").unwrap();
        let error = load(Some(&path)).unwrap_err();
        assert!(
            error.starts_with(&format!("{}:3: ", path.display())),
            "{error}"
        );
        std::fs::write(&path, "[semaphores]\nA = 2\n").unwrap();
        let loaded = load(Some(&path)).unwrap();
        assert_eq!(loaded.config.semaphores[0].max, 2);
    }

    /// `load(None)` as if the working directory were `directory`, without changing the working
    /// directory of the test process (tests run in parallel, and the crate root where `cargo
    /// test` runs has a sample `throttle.toml`).
    fn load_default_in(directory: &Path) -> Result<Loaded, String> {
        load_default(&directory.join(DEFAULT_FILE))
    }

    /// A fresh directory under the system's temporary directory, removed when dropped.
    struct TemporaryDirectory(std::path::PathBuf);

    impl std::ops::Deref for TemporaryDirectory {
        type Target = Path;
        fn deref(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TemporaryDirectory {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn temporary_directory(name: &str) -> TemporaryDirectory {
        let directory = std::env::temp_dir().join(format!(
            "throttle-config-test-{}-{name}",
            std::process::id()
        ));
        std::fs::create_dir_all(&directory).unwrap();
        TemporaryDirectory(directory)
    }
}
