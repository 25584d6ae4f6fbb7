//! Logging: where the records of the `log` facade go.
//!
//! Two small loggers, combined with simplelog's `CombinedLogger` and installed once by [`init`]:
//!
//! - **stderr**, always, in the format operators and the integration tests rely on:
//!   `[2020-04-12T18:56:23Z INFO  throttle] Starting` (RFC 3339 UTC to the second, the level
//!   padded to five characters, the first segment of the record's target). Its level comes from
//!   `[logging.stderr]` (default INFO); the environment variable `THROTTLE_LOG` overrides it.
//! - **GELF 1.1 over UDP**, if `[logging.gelf]` is configured: one JSON datagram per record, for
//!   Graylog and compatible collectors.
//!
//! This module does not read the configuration file (it gets a [`LoggingConfig`]) and decides
//! nothing about what is logged. The levels can change while the server runs ([`set_levels`],
//! on a configuration reload); where records go cannot. Logging never takes the server down: a failed write to stderr or
//! a lost datagram is ignored. Only setting up (an invalid `THROTTLE_LOG`, a GELF host that does
//! not resolve) can fail, and then the server does not start.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::io::{self, Write as _};
use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

pub use log::LevelFilter;
use log::{Level, Log, Metadata, Record};
use simplelog::{CombinedLogger, SharedLogger};

use crate::config::{GelfConfig, LoggingConfig, StderrConfig};

/// The environment variable that overrides the stderr level, e.g. `THROTTLE_LOG=DEBUG`.
pub const ENV_VAR: &str = "THROTTLE_LOG";

/// Logging of a client subcommand: stderr only, at `level` unless `THROTTLE_LOG` says
/// otherwise.
pub fn init_stderr(level: LevelFilter) -> Result<(), String> {
    init(&LoggingConfig {
        stderr: Some(StderrConfig { level }),
        gelf: None,
    })
}

/// Installs the global logger. Call once, before the first record is logged.
///
/// Reads [`ENV_VAR`] itself, so that the precedence (environment over file) lives in one place.
/// Fails if `THROTTLE_LOG` is not a level name, if the GELF host does not resolve, or if a
/// logger is already installed.
pub(crate) fn init(config: &LoggingConfig) -> Result<(), String> {
    let env = match std::env::var_os(ENV_VAR) {
        None => None,
        Some(value) => Some(value.into_string().map_err(|value| {
            format!("invalid {ENV_VAR} value {value:?}: expected {LEVEL_NAMES}")
        })?),
    };
    let level = stderr_level(config.stderr.as_ref(), env.as_deref())?;
    STDERR_LEVEL.store(level as usize, Ordering::Relaxed);
    let mut loggers: Vec<Box<dyn SharedLogger>> = vec![Box::new(StderrLogger {
        level: &STDERR_LEVEL,
    })];
    let mut max = level;
    if let Some(gelf) = &config.gelf {
        loggers.push(Box::new(GelfLogger::new(gelf, &GELF_LEVEL)?));
        GELF_ON.store(true, Ordering::Relaxed);
        max = max.max(gelf.level);
    }
    CombinedLogger::init(loggers).map_err(|error| format!("cannot set up logging: {error}"))?;
    log::set_max_level(max);
    Ok(())
}

/// Applies the levels of a reloaded configuration (`THROTTLE_LOG` still wins for stderr).
/// Returns a warning if the GELF logger was added or removed, which only a restart does.
pub fn set_levels(config: &LoggingConfig) -> Result<Option<String>, String> {
    let env = std::env::var(ENV_VAR).ok();
    let stderr = stderr_level(config.stderr.as_ref(), env.as_deref())?;
    STDERR_LEVEL.store(stderr as usize, Ordering::Relaxed);
    let gelf_on = GELF_ON.load(Ordering::Relaxed);
    let mut max = stderr;
    let warning = match (&config.gelf, gelf_on) {
        (Some(gelf), true) => {
            GELF_LEVEL.store(gelf.level as usize, Ordering::Relaxed);
            max = max.max(gelf.level);
            None
        }
        (None, false) => None,
        (_, on) => {
            if on {
                max = max.max(level(&GELF_LEVEL));
            }
            Some("[logging.gelf] was added or removed: that takes a restart".to_owned())
        }
    };
    log::set_max_level(max);
    Ok(warning)
}

/// The levels of the installed loggers; numbers, so a reload can change them under running
/// threads.
static STDERR_LEVEL: AtomicUsize = AtomicUsize::new(LevelFilter::Info as usize);
static GELF_LEVEL: AtomicUsize = AtomicUsize::new(LevelFilter::Info as usize);
/// Whether a GELF logger was installed at start.
static GELF_ON: AtomicBool = AtomicBool::new(false);

fn level(stored: &AtomicUsize) -> LevelFilter {
    match stored.load(Ordering::Relaxed) {
        0 => LevelFilter::Off,
        1 => LevelFilter::Error,
        2 => LevelFilter::Warn,
        3 => LevelFilter::Info,
        4 => LevelFilter::Debug,
        _ => LevelFilter::Trace,
    }
}

const LEVEL_NAMES: &str = "ERROR, WARN, INFO, DEBUG, TRACE or OFF";

/// The level of the stderr logger: `THROTTLE_LOG` if set, else `[logging.stderr] level`, else
/// INFO.
///
/// An empty `THROTTLE_LOG` counts as unset (`THROTTLE_LOG= throttle` is a common way to clear
/// it). Any other value that is not a level name, in any case, is an error rather than a silent
/// fallback: an operator who asked for DEBUG and gets INFO would chase a ghost.
fn stderr_level(config: Option<&StderrConfig>, env: Option<&str>) -> Result<LevelFilter, String> {
    match env {
        Some(value) if !value.is_empty() => value
            .trim()
            .parse()
            .map_err(|_| format!("invalid {ENV_VAR} value {value:?}: expected {LEVEL_NAMES}")),
        _ => Ok(config.map_or(LevelFilter::Info, |stderr| stderr.level)),
    }
}

/// Writes records to stderr, one line each.
struct StderrLogger {
    /// `STDERR_LEVEL` once installed.
    level: &'static AtomicUsize,
}

impl Log for StderrLogger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= level(self.level)
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let line = stderr_line(
            SystemTime::now(),
            record.level(),
            &shown_target(record.target()),
            &record.args().to_string(),
        );
        // One write of the whole line, so that lines of concurrent threads do not interleave.
        let _ = io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {
        let _ = io::stderr().flush();
    }
}

impl SharedLogger for StderrLogger {
    /// The most verbose level a reload could set, not the current one: simplelog's
    /// `CombinedLogger` filters by the levels it saw at start and would never pass on what a
    /// reload turned on. The logger filters by its current level itself, and `init` and
    /// `set_levels` keep the `log` crate's maximum (its cheap early filter) at the current one.
    fn level(&self) -> LevelFilter {
        LevelFilter::Trace
    }

    fn config(&self) -> Option<&simplelog::Config> {
        None
    }

    fn as_log(self: Box<Self>) -> Box<dyn Log> {
        self
    }
}

/// The target a log line names. The executable's own crates (`throttle_server`, `throttle_cli`)
/// speak as `throttle`, as the single crate did before the workspace was split, so log lines and
/// GELF `_target`s name the program, not how its code is cut up; other crates keep their names.
fn shown_target(target: &str) -> Cow<'_, str> {
    for own in ["throttle_server", "throttle_cli"] {
        if let Some(rest) = target.strip_prefix(own)
            && (rest.is_empty() || rest.starts_with("::"))
        {
            return Cow::Owned(format!("throttle{rest}"));
        }
    }
    Cow::Borrowed(target)
}

/// One stderr line, newline included: `[2020-04-12T18:56:23Z INFO  throttle] Starting`.
///
/// Only the first segment of the target is shown (`throttle` for `throttle::http`): it says which
/// crate speaks, which is what an operator needs; the module is noise in a log.
fn stderr_line(time: SystemTime, level: Level, target: &str, message: &str) -> String {
    let crate_name = target.split("::").next().unwrap_or(target);
    let mut line = String::with_capacity(40 + message.len());
    let _ = writeln!(
        line,
        "[{} {level:<5} {crate_name}] {message}",
        rfc3339_seconds(time)
    );
    line
}

/// `2020-04-12T18:56:23Z`: UTC, to the second.
fn rfc3339_seconds(system_time: SystemTime) -> String {
    time::OffsetDateTime::from(system_time)
        .replace_nanosecond(0)
        .ok()
        .and_then(|time| {
            time.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        // Only years beyond 9999 fail to format; a clock that far off is still worth a line.
        .unwrap_or_else(|| format!("{}s", unix_seconds(system_time)))
}

/// Seconds since the Unix epoch, to the millisecond; 0 for times before it.
fn unix_seconds(time: SystemTime) -> f64 {
    let millis = time
        .duration_since(UNIX_EPOCH)
        .map_or(0, |duration| duration.as_millis());
    millis as f64 / 1000.0
}

/// Sends records as GELF 1.1 datagrams to a collector over UDP.
///
/// Each record is one uncompressed, unchunked datagram. Messages are cut at
/// [`GELF_MESSAGE_LIMIT`] bytes so a datagram stays well below Graylog's 8192 byte chunk size and
/// never needs chunking; this server's log messages are short lines anyway.
struct GelfLogger {
    socket: UdpSocket,
    collector: SocketAddr,
    name: String,
    /// `GELF_LEVEL` once installed.
    level: &'static AtomicUsize,
}

/// The longest `short_message` sent, in bytes.
const GELF_MESSAGE_LIMIT: usize = 7000;

impl GelfLogger {
    /// Resolves the collector once, now: a typo in the host name should stop the server at
    /// startup, not lose every log record silently later. The local socket is bound to an
    /// ephemeral port of the collector's address family.
    /// `level` is the cell the logger's level is kept in; set to the configured one here.
    fn new(config: &GelfConfig, level: &'static AtomicUsize) -> Result<GelfLogger, String> {
        let cannot_resolve =
            |reason: String| format!("cannot resolve the GELF host {:?}: {reason}", config.host);
        let collector = (config.host.as_str(), config.port)
            .to_socket_addrs()
            .map_err(|error| cannot_resolve(error.to_string()))?
            .next()
            .ok_or_else(|| cannot_resolve("no address found".to_owned()))?;
        let local = match collector {
            SocketAddr::V4(_) => "0.0.0.0:0",
            SocketAddr::V6(_) => "[::]:0",
        };
        let socket = UdpSocket::bind(local)
            .map_err(|error| format!("cannot open a UDP socket for GELF logging: {error}"))?;
        level.store(config.level as usize, Ordering::Relaxed);
        Ok(GelfLogger {
            socket,
            collector,
            name: config.name.clone(),
            level,
        })
    }
}

impl Log for GelfLogger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= level(self.level)
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let json = gelf_json(
            &self.name,
            SystemTime::now(),
            record.level(),
            &shown_target(record.target()),
            &record.args().to_string(),
        );
        // A collector that is down must not take the server with it.
        let _ = self.socket.send_to(json.as_bytes(), self.collector);
    }

    fn flush(&self) {}
}

impl SharedLogger for GelfLogger {
    /// The most verbose level a reload could set, as for the stderr logger.
    fn level(&self) -> LevelFilter {
        LevelFilter::Trace
    }

    fn config(&self) -> Option<&simplelog::Config> {
        None
    }

    fn as_log(self: Box<Self>) -> Box<dyn Log> {
        self
    }
}

/// A GELF 1.1 message: `{"version":"1.1","host":..,"short_message":..,"timestamp":..,
/// "level":..,"_target":..}`.
///
/// `host` is the configured server name; `level` is the syslog severity GELF expects (TRACE has
/// none of its own and shares DEBUG's 7); the full target goes into the additional field
/// `_target`.
fn gelf_json(name: &str, time: SystemTime, level: Level, target: &str, message: &str) -> String {
    let severity = match level {
        Level::Error => 3,
        Level::Warn => 4,
        Level::Info => 6,
        Level::Debug | Level::Trace => 7,
    };
    serde_json::json!({
        "version": "1.1",
        "host": name,
        "short_message": truncate(message, GELF_MESSAGE_LIMIT),
        "timestamp": unix_seconds(time),
        "level": severity,
        "_target": target,
    })
    .to_string()
}

/// At most `limit` bytes of `text`, cut at a character boundary.
fn truncate(text: &str, limit: usize) -> &str {
    if text.len() <= limit {
        return text;
    }
    let mut end = limit;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::{Value, json};

    use super::*;

    /// 2020-04-12T18:56:23Z plus `millis`.
    fn april(millis: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(1_586_717_783_000 + millis)
    }

    #[track_caller]
    fn check_line(level: Level, target: &str, message: &str, expected: &str) {
        assert_eq!(stderr_line(april(0), level, target, message), expected);
    }

    #[test]
    fn stderr_lines() {
        check_line(
            Level::Info,
            "throttle",
            "Starting",
            "[2020-04-12T18:56:23Z INFO  throttle] Starting\n",
        );
        check_line(
            Level::Error,
            "throttle::http",
            "x",
            "[2020-04-12T18:56:23Z ERROR throttle] x\n",
        );
        check_line(
            Level::Warn,
            "tiny_http::util",
            "y",
            "[2020-04-12T18:56:23Z WARN  tiny_http] y\n",
        );
        check_line(Level::Debug, "a", "", "[2020-04-12T18:56:23Z DEBUG a] \n");
        check_line(Level::Trace, "", "z", "[2020-04-12T18:56:23Z TRACE ] z\n");
    }

    #[test]
    fn stderr_time_is_cut_to_the_second() {
        assert_eq!(
            stderr_line(april(999), Level::Info, "throttle", "m"),
            "[2020-04-12T18:56:23Z INFO  throttle] m\n"
        );
        assert_eq!(
            stderr_line(UNIX_EPOCH, Level::Info, "throttle", "m"),
            "[1970-01-01T00:00:00Z INFO  throttle] m\n"
        );
    }

    #[test]
    fn stderr_level_defaults_to_info() {
        assert_eq!(stderr_level(None, None), Ok(LevelFilter::Info));
    }

    #[test]
    fn stderr_level_from_the_configuration() {
        let config = StderrConfig {
            level: LevelFilter::Warn,
        };
        assert_eq!(stderr_level(Some(&config), None), Ok(LevelFilter::Warn));
    }

    #[test]
    fn stderr_level_from_the_environment_wins() {
        let config = StderrConfig {
            level: LevelFilter::Warn,
        };
        assert_eq!(
            stderr_level(Some(&config), Some("DEBUG")),
            Ok(LevelFilter::Debug)
        );
        assert_eq!(stderr_level(None, Some("trace")), Ok(LevelFilter::Trace));
        assert_eq!(stderr_level(None, Some("Error")), Ok(LevelFilter::Error));
        assert_eq!(stderr_level(None, Some("OFF")), Ok(LevelFilter::Off));
        assert_eq!(stderr_level(None, Some(" warn\n")), Ok(LevelFilter::Warn));
    }

    #[test]
    fn empty_environment_value_counts_as_unset() {
        let config = StderrConfig {
            level: LevelFilter::Error,
        };
        assert_eq!(
            stderr_level(Some(&config), Some("")),
            Ok(LevelFilter::Error)
        );
    }

    #[test]
    fn invalid_environment_value_is_an_error() {
        assert_eq!(
            stderr_level(None, Some("VERBOSE")),
            Err(
                "invalid THROTTLE_LOG value \"VERBOSE\": expected ERROR, WARN, INFO, DEBUG, \
                 TRACE or OFF"
                    .to_owned()
            )
        );
        assert!(stderr_level(None, Some("3")).is_err());
    }

    #[track_caller]
    fn parse_json(text: &str) -> Value {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn gelf_message() {
        let json = gelf_json(
            "my-throttle",
            april(250),
            Level::Warn,
            "throttle::http",
            "Hi \"you\"",
        );
        assert_eq!(
            parse_json(&json),
            json!({
                "version": "1.1",
                "host": "my-throttle",
                "short_message": "Hi \"you\"",
                "timestamp": 1_586_717_783.25,
                "level": 4,
                "_target": "throttle::http",
            })
        );
    }

    #[test]
    fn gelf_levels_are_syslog_severities() {
        for (level, severity) in [
            (Level::Error, 3),
            (Level::Warn, 4),
            (Level::Info, 6),
            (Level::Debug, 7),
            (Level::Trace, 7),
        ] {
            let json = parse_json(&gelf_json("t", april(0), level, "t", "m"));
            assert_eq!(json["level"], severity, "{level}");
        }
    }

    #[test]
    fn gelf_messages_are_cut() {
        let long = "ä".repeat(GELF_MESSAGE_LIMIT);
        let json = parse_json(&gelf_json("t", april(0), Level::Info, "t", &long));
        let sent = json["short_message"].as_str().unwrap();
        assert_eq!(sent.len(), GELF_MESSAGE_LIMIT);
        assert!(long.starts_with(sent));
        assert_eq!(truncate("abc", 2), "ab");
        assert_eq!(truncate("aä", 2), "a");
        assert_eq!(truncate("abc", 5), "abc");
    }

    #[test]
    fn gelf_logger_sends_a_datagram() {
        let collector = UdpSocket::bind("127.0.0.1:0").unwrap();
        collector
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let config = GelfConfig {
            name: "test-server".to_owned(),
            host: "127.0.0.1".to_owned(),
            port: collector.local_addr().unwrap().port(),
            level: LevelFilter::Info,
        };
        let logger = GelfLogger::new(&config, cell()).unwrap();
        let before = unix_seconds(SystemTime::now());

        let log = |level, target, message: &str| {
            logger.log(
                &Record::builder()
                    .level(level)
                    .target(target)
                    .args(format_args!("{message}"))
                    .build(),
            );
        };
        // Below the logger's level: not sent.
        log(Level::Debug, "throttle::core", "too chatty");
        log(Level::Error, "throttle::http", "answer 42");
        log(Level::Info, "throttle", "last");

        // Loopback keeps the order of datagrams: had the DEBUG record been sent, it would come
        // first. Each came from the logger's own socket.
        let own = logger.socket.local_addr().unwrap().port();
        let receive = || {
            let mut buffer = [0; 65536];
            let (length, sender) = collector.recv_from(&mut buffer).unwrap();
            assert_eq!(sender.port(), own, "a datagram from someone else");
            parse_json(std::str::from_utf8(&buffer[..length]).unwrap())
        };
        let mut json = receive();
        let last = receive();
        assert_eq!(last["short_message"], "last", "{last}");
        let timestamp = json["timestamp"].take().as_f64().unwrap();
        assert!(
            before <= timestamp && timestamp <= unix_seconds(SystemTime::now()),
            "{timestamp}"
        );
        assert_eq!(
            json,
            json!({
                "version": "1.1",
                "host": "test-server",
                "short_message": "answer 42",
                "timestamp": null,
                "level": 3,
                "_target": "throttle::http",
            })
        );
    }

    #[test]
    fn gelf_host_that_does_not_resolve_is_an_error() {
        let config = GelfConfig {
            name: "throttle".to_owned(),
            host: String::new(),
            port: 12201,
            level: LevelFilter::Info,
        };
        let error = GelfLogger::new(&config, cell()).err().unwrap();
        assert!(
            error.starts_with("cannot resolve the GELF host \"\": "),
            "{error}"
        );
    }

    #[test]
    fn gelf_sending_to_nobody_is_not_an_error() {
        // Find a port nobody listens on by binding and dropping a socket.
        let port = UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = GelfConfig {
            name: "throttle".to_owned(),
            host: "localhost".to_owned(),
            port,
            level: LevelFilter::Trace,
        };
        let logger = GelfLogger::new(&config, cell()).unwrap();
        for _ in 0..3 {
            logger.log(
                &Record::builder()
                    .level(Level::Info)
                    .args(format_args!("into the void"))
                    .build(),
            );
        }
        assert_eq!(level(logger.level), LevelFilter::Trace);
    }

    /// A level cell of one test's own, so tests running at once do not share one.
    fn cell() -> &'static AtomicUsize {
        Box::leak(Box::new(AtomicUsize::new(0)))
    }

    #[test]
    fn loggers_filter_by_their_current_level() {
        let cell = cell();
        cell.store(LevelFilter::Warn as usize, Ordering::Relaxed);
        let logger = StderrLogger { level: cell };
        // simplelog passes everything on; the logger filters (see `SharedLogger::level`).
        assert_eq!(SharedLogger::level(&logger), LevelFilter::Trace);
        assert!(logger.enabled(&Metadata::builder().level(Level::Error).build()));
        assert!(logger.enabled(&Metadata::builder().level(Level::Warn).build()));
        assert!(!logger.enabled(&Metadata::builder().level(Level::Info).build()));
        // A reload changes the level under the running logger.
        cell.store(LevelFilter::Debug as usize, Ordering::Relaxed);
        assert!(logger.enabled(&Metadata::builder().level(Level::Debug).build()));
        assert!(!logger.enabled(&Metadata::builder().level(Level::Trace).build()));
    }

    #[test]
    fn the_executables_crates_speak_as_throttle() {
        assert_eq!(shown_target("throttle_server::server"), "throttle::server");
        assert_eq!(shown_target("throttle_cli"), "throttle");
        assert_eq!(
            shown_target("throttle_client::lock"),
            "throttle_client::lock"
        );
        assert_eq!(shown_target("throttle_serverless"), "throttle_serverless");
    }
}
