//! The state file (`--state-file`): its format, its atomic write and its load.
//!
//! This module knows bytes and files, nothing about the core, the service or when to write:
//! `persistence.rs` decides that. A file is one JSON object:
//!
//! ```json
//! {"format": "throttle-state", "version": 2, "clean": true,
//!  "saved_at_unix_ms": 1700000000000, "longest_lease_ms": 300000,
//!  "next_fencing_token": 1700000000000123,
//!  "peers": [{"id": 42, "lease_ms": 299000, "acquired": {"A": 3}, "fencing_tokens": {"A": 17},
//!             "name": "build-7:4242"}],
//!  "expired_peers": [[7, 540000]]}
//! ```
//!
//! - `next_fencing_token` is the token of the next grant (in the marker: as the run started).
//!   A restarted server starts at least there, and at least at the wall clock in microseconds
//!   (`persistence.rs`), so its tokens are larger than every token of the previous run.
//! - `fencing_tokens` holds each acquired lock's token, `name` the holder's name (both optional
//!   per peer); `expired_peers` the ids of recently expired peers with the milliseconds each is
//!   still remembered (at `saved_at_unix_ms`), so their clients still learn that they expired.
//! - Version 1 (the first format, without tokens, names and expired ids) is still read: its locks
//!   get new tokens at load.
//!
//! - `clean` is `false` while the server runs (the "running" marker, written at start without
//!   peers) and `true` once a graceful shutdown wrote every live peer. A file found with
//!   `clean: false` means the previous run did not end cleanly (crash, kill -9, power loss).
//! - `longest_lease_ms` is the longest lease granted so far in that run: after an unclean stop it
//!   bounds the grace period.
//! - `lease_ms` is each peer's lease left at `saved_at_unix_ms` (wall clock): the loader shortens
//!   it by the time the server was down.
//! - Pending locks are not saved: a waiter's long poll ends at shutdown and the client asks
//!   again, so there is nothing to keep, and a saved queue would grant in an order nobody is
//!   waiting for any more.
//!
//! Unknown fields are errors, and so is any other `version`: a field is only ever added with a
//! new version, so an older server refuses a newer file instead of dropping what it cannot
//! honour. Every error is one line naming the file and the problem.
//!
//! **Atomic write.** [`write`] writes a temporary file beside the target, fsyncs it, renames it
//! over the target and fsyncs the directory, so a crash at any point leaves the old file or the
//! new one, never half a file.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::de::Error as _;
use serde::ser::{SerializeMap, SerializeStruct};
use serde::{Deserialize, Serialize, Serializer};

use throttle_core::Export;

/// The value of the `format` field: tells a state file from any other JSON.
pub const FORMAT: &str = "throttle-state";

/// The version this server writes.
pub const VERSION: u64 = 2;

/// The older version this server still reads: without fencing tokens, names and expired ids.
pub const VERSION_1: u64 = 1;

/// A state file as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Saved {
    /// The previous run shut down gracefully and wrote its peers.
    pub clean: bool,
    /// When the file was written, by the wall clock.
    pub saved_at: SystemTime,
    /// The longest lease granted in the previous run.
    pub longest_lease: Duration,
    /// Every peer with its acquired locks.
    pub peers: Vec<SavedPeer>,
    /// The fencing token of the next grant; `None` in a version 1 file.
    pub next_token: Option<u64>,
    /// Recently expired peers with the time each is still remembered at [`Saved::saved_at`].
    pub expired: Vec<(u64, Duration)>,
}

/// One peer of a state file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedPeer {
    pub id: u64,
    /// The lease left at [`Saved::saved_at`].
    pub lease: Duration,
    /// Acquired locks by semaphore name.
    pub acquired: BTreeMap<String, i64>,
    /// The fencing tokens of (some of) the acquired locks, by semaphore name.
    pub tokens: BTreeMap<String, u64>,
    /// The holder's name, if it gave one.
    pub name: Option<String>,
}

/// What a running server writes: no peers, `clean: false`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Marker {
    pub longest_lease: Duration,
    /// The fencing token of the next grant when the run started.
    pub next_token: u64,
}

/// Reads the state file at `path`. A missing file is `Ok(None)`: a first start.
pub fn load(path: &Path) -> Result<Option<Saved>, String> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => {
            return Err(format!(
                "{}: cannot read the state file: {error}",
                path.display()
            ));
        }
    };
    decode(&bytes)
        .map(Some)
        .map_err(|problem| format!("{}: {problem}", path.display()))
}

/// Parses the bytes of a state file. The error says what is wrong, without the file name.
pub fn decode(bytes: &[u8]) -> Result<Saved, String> {
    // The version first, so a newer file is reported as such and not as "unknown field".
    let header: Header = serde_json::from_slice(bytes)
        .map_err(|error| format!("the state file is corrupt: {error}"))?;
    if header.format.as_deref() != Some(FORMAT) {
        return Err(format!(
            "not a Throttle state file (no \"format\": \"{FORMAT}\")"
        ));
    }
    match header.version {
        Some(VERSION) => {
            let file: FileV2 = serde_json::from_slice(bytes)
                .map_err(|error| format!("the state file is corrupt: {error}"))?;
            let peers = file
                .peers
                .into_iter()
                .map(|peer| {
                    if let Some(name) = peer
                        .fencing_tokens
                        .keys()
                        .find(|name| !peer.acquired.contains_key(*name))
                    {
                        return Err(format!(
                            "the state file is corrupt: peer {} has a fencing token for {name:?}, \
                             which it does not hold",
                            peer.id
                        ));
                    }
                    Ok(SavedPeer {
                        id: peer.id,
                        lease: Duration::from_millis(peer.lease_ms),
                        acquired: peer.acquired,
                        tokens: peer.fencing_tokens,
                        name: peer.name,
                    })
                })
                .collect::<Result<_, String>>()?;
            Ok(Saved {
                clean: file.clean,
                saved_at: saved_at(file.saved_at_unix_ms)?,
                longest_lease: Duration::from_millis(file.longest_lease_ms),
                peers,
                next_token: Some(file.next_fencing_token),
                expired: file
                    .expired_peers
                    .into_iter()
                    .map(|(id, ms)| (id, Duration::from_millis(ms)))
                    .collect(),
            })
        }
        Some(VERSION_1) => {
            let file: FileV1 = serde_json::from_slice(bytes)
                .map_err(|error| format!("the state file is corrupt: {error}"))?;
            Ok(Saved {
                clean: file.clean,
                saved_at: saved_at(file.saved_at_unix_ms)?,
                longest_lease: Duration::from_millis(file.longest_lease_ms),
                peers: file
                    .peers
                    .into_iter()
                    .map(|peer| SavedPeer {
                        id: peer.id,
                        lease: Duration::from_millis(peer.lease_ms),
                        acquired: peer.acquired,
                        tokens: BTreeMap::new(),
                        name: None,
                    })
                    .collect(),
                next_token: None,
                expired: Vec::new(),
            })
        }
        Some(version) => Err(format!(
            "the state file has format version {version}, this server reads versions \
             {VERSION_1} and {VERSION} only"
        )),
        None => Err("the state file has no format version".to_owned()),
    }
}

fn saved_at(unix_ms: u64) -> Result<SystemTime, String> {
    UNIX_EPOCH
        .checked_add(Duration::from_millis(unix_ms))
        .ok_or_else(|| "the state file is corrupt: saved_at_unix_ms is out of range".to_owned())
}

/// The bytes of a clean state file with every peer of `export`, saved at `saved_at`.
pub fn encode_clean(export: &Export, saved_at: SystemTime, longest_lease: Duration) -> Vec<u8> {
    let file = CleanFile {
        export,
        saved_at: unix_ms(saved_at),
        longest_lease_ms: millis(longest_lease),
    };
    // Serializing into memory fails only for maps with non-string keys, which there are none.
    serde_json::to_vec(&file).unwrap_or_default()
}

/// The bytes of the "running" marker.
pub fn encode_marker(marker: Marker, saved_at: SystemTime) -> Vec<u8> {
    serde_json::json!({
        "format": FORMAT,
        "version": VERSION,
        "clean": false,
        "saved_at_unix_ms": unix_ms(saved_at),
        "longest_lease_ms": millis(marker.longest_lease),
        "next_fencing_token": marker.next_token,
        "peers": [],
        "expired_peers": [],
    })
    .to_string()
    .into_bytes()
}

/// Replaces the file at `path` by `bytes` atomically (see the module docs). On error the
/// temporary file is removed and the old file is left as it was.
pub fn write(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let temporary = temporary_path(path);
    let result = write_and_rename(path, &temporary, bytes);
    if result.is_err() {
        let _ = fs::remove_file(&temporary);
    }
    result
}

fn write_and_rename(path: &Path, temporary: &Path, bytes: &[u8]) -> io::Result<()> {
    let file = File::create(temporary)?;
    let mut writer = BufWriter::with_capacity(1 << 16, file);
    writer.write_all(bytes)?;
    let file = writer.into_inner().map_err(|error| error.into_error())?;
    file.sync_all()?;
    drop(file);
    fs::rename(temporary, path)?;
    sync_directory(path)
}

/// Makes the rename durable. Windows cannot open a directory as a file; its rename is
/// journaled by NTFS instead.
#[cfg(unix)]
fn sync_directory(path: &Path) -> io::Result<()> {
    let directory = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    File::open(directory)?.sync_all()
}

#[cfg(not(unix))]
fn sync_directory(_path: &Path) -> io::Result<()> {
    Ok(())
}

/// `.NAME.tmp` beside `path`: same directory (a rename never crosses file systems), hidden.
fn temporary_path(path: &Path) -> PathBuf {
    let name = path.file_name().map_or_else(
        || "state".into(),
        |name| name.to_string_lossy().into_owned(),
    );
    path.with_file_name(format!(".{name}.tmp"))
}

/// Whole milliseconds, rounded up. Leases and the time of saving are both rounded up, so that a
/// reloaded lease ends at or (by under 2 ms) after the deadline the holder was given, never
/// before it: truncating both made leases end up to 2 ms early after a graceful restart, and a
/// newcomer could be granted while the holder still counted on its lock (found by the soak's
/// exclusivity check).
fn millis(duration: Duration) -> u64 {
    let whole = duration.as_millis();
    let up = if duration.subsec_nanos().is_multiple_of(1_000_000) {
        whole
    } else {
        whole.saturating_add(1)
    };
    u64::try_from(up).unwrap_or(u64::MAX)
}

fn unix_ms(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, millis)
}

/// Just enough to check the format and version before the rest.
#[derive(Deserialize)]
struct Header {
    format: Option<String>,
    version: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileV2 {
    #[serde(rename = "format")]
    _format: String,
    #[serde(rename = "version")]
    _version: u64,
    clean: bool,
    saved_at_unix_ms: u64,
    longest_lease_ms: u64,
    next_fencing_token: u64,
    peers: Vec<PeerV2>,
    #[serde(default)]
    expired_peers: Vec<(u64, u64)>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PeerV2 {
    id: u64,
    lease_ms: u64,
    #[serde(deserialize_with = "positive_counts")]
    acquired: BTreeMap<String, i64>,
    #[serde(default)]
    fencing_tokens: BTreeMap<String, u64>,
    #[serde(default)]
    name: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileV1 {
    #[serde(rename = "format")]
    _format: String,
    #[serde(rename = "version")]
    _version: u64,
    clean: bool,
    saved_at_unix_ms: u64,
    longest_lease_ms: u64,
    peers: Vec<PeerV1>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PeerV1 {
    id: u64,
    lease_ms: u64,
    #[serde(deserialize_with = "positive_counts")]
    acquired: BTreeMap<String, i64>,
}

/// Lock counts are at least 1; anything else is a corrupt file, not a lock.
fn positive_counts<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<BTreeMap<String, i64>, D::Error> {
    let locks = BTreeMap::<String, i64>::deserialize(deserializer)?;
    if let Some((name, count)) = locks.iter().find(|&(_, &count)| count < 1) {
        return Err(D::Error::custom(format!(
            "the lock on {name:?} has count {count}, expected at least 1"
        )));
    }
    Ok(locks)
}

/// A clean file, serialized straight from an [`Export`] without copying names per lock.
struct CleanFile<'a> {
    export: &'a Export,
    saved_at: u64,
    longest_lease_ms: u64,
}

impl Serialize for CleanFile<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut file = serializer.serialize_struct("State", 8)?;
        file.serialize_field("format", FORMAT)?;
        file.serialize_field("version", &VERSION)?;
        file.serialize_field("clean", &true)?;
        file.serialize_field("saved_at_unix_ms", &self.saved_at)?;
        file.serialize_field("longest_lease_ms", &self.longest_lease_ms)?;
        file.serialize_field("next_fencing_token", &self.export.next_token)?;
        file.serialize_field("peers", &Peers(self.export))?;
        let expired: Vec<(u64, u64)> = self
            .export
            .expired
            .iter()
            .map(|&(id, left)| (id, millis(left)))
            .collect();
        file.serialize_field("expired_peers", &expired)?;
        file.end()
    }
}

struct Peers<'a>(&'a Export);

impl Serialize for Peers<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let names = &self.0.semaphores;
        serializer.collect_seq(self.0.peers.iter().map(|peer| PeerOut {
            id: peer.id,
            lease_ms: millis(peer.expires_in),
            acquired: Locks(names, &peer.acquired, Column::Count),
            fencing_tokens: Locks(names, &peer.acquired, Column::Token),
            name: peer.name.as_deref(),
        }))
    }
}

#[derive(Serialize)]
struct PeerOut<'a> {
    id: u64,
    lease_ms: u64,
    acquired: Locks<'a>,
    fencing_tokens: Locks<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
}

/// Which number of a lock a [`Locks`] map holds.
#[derive(Clone, Copy)]
enum Column {
    Count,
    Token,
}

/// The locks of a peer as a map from semaphore name to count or to token.
struct Locks<'a>(&'a [String], &'a [(usize, i64, u64)], Column);

impl Serialize for Locks<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.1.len()))?;
        for &(semaphore, count, token) in self.1 {
            let name = self.0.get(semaphore).map_or("", String::as_str);
            match self.2 {
                Column::Count => map.serialize_entry(name, &count)?,
                Column::Token => map.serialize_entry(name, &token)?,
            }
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn milliseconds_are_rounded_up_so_leases_never_end_early() {
        assert_eq!(millis(Duration::from_millis(1500)), 1500);
        assert_eq!(millis(Duration::from_micros(1_499_001)), 1500);
        assert_eq!(millis(Duration::from_nanos(1)), 1);
        assert_eq!(millis(Duration::ZERO), 0);
        assert_eq!(millis(Duration::MAX), u64::MAX);
    }
    use throttle_core::ExportedPeer;

    fn export() -> Export {
        Export {
            semaphores: vec!["A".into(), "B b/ä".into()],
            peers: vec![
                ExportedPeer {
                    id: 42,
                    expires_in: Duration::from_millis(1500),
                    acquired: vec![(0, 1, 17), (1, 3, 18)],
                    name: Some("build-7:4242".into()),
                },
                ExportedPeer {
                    id: (1 << 53) - 1,
                    expires_in: Duration::from_secs(60),
                    acquired: vec![],
                    name: None,
                },
            ],
            next_token: 19,
            expired: vec![(7, Duration::from_secs(540))],
        }
    }

    #[track_caller]
    fn check_error(text: &str, expected: &str) {
        match decode(text.as_bytes()) {
            Ok(saved) => panic!("expected an error for {text:?}, got {saved:?}"),
            Err(error) => assert!(
                error.contains(expected),
                "{error:?} does not contain {expected:?}"
            ),
        }
    }

    #[test]
    fn a_clean_file_comes_back_as_written() {
        let saved_at = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        let bytes = encode_clean(&export(), saved_at, Duration::from_secs(300));
        let saved = decode(&bytes).unwrap();
        assert_eq!(
            saved,
            Saved {
                clean: true,
                saved_at,
                longest_lease: Duration::from_secs(300),
                peers: vec![
                    SavedPeer {
                        id: 42,
                        lease: Duration::from_millis(1500),
                        acquired: BTreeMap::from([("A".into(), 1), ("B b/ä".into(), 3)]),
                        tokens: BTreeMap::from([("A".into(), 17), ("B b/ä".into(), 18)]),
                        name: Some("build-7:4242".into()),
                    },
                    SavedPeer {
                        id: (1 << 53) - 1,
                        lease: Duration::from_secs(60),
                        acquired: BTreeMap::new(),
                        tokens: BTreeMap::new(),
                        name: None,
                    },
                ],
                next_token: Some(19),
                expired: vec![(7, Duration::from_secs(540))],
            }
        );
    }

    #[test]
    fn a_version_1_file_is_still_read() {
        let v1 = r#"{"format": "throttle-state", "version": 1, "clean": true,
            "saved_at_unix_ms": 1700000000000, "longest_lease_ms": 300000,
            "peers": [{"id": 42, "lease_ms": 299000, "acquired": {"A": 3}}]}"#;
        let saved = decode(v1.as_bytes()).unwrap();
        assert!(saved.clean);
        assert_eq!(saved.next_token, None);
        assert!(saved.expired.is_empty());
        assert_eq!(saved.peers[0].acquired, BTreeMap::from([("A".into(), 3)]));
        assert!(saved.peers[0].tokens.is_empty());
        assert_eq!(saved.peers[0].name, None);
    }

    #[test]
    fn the_marker_says_running_without_peers() {
        let saved_at = UNIX_EPOCH + Duration::from_secs(5);
        let marker = Marker {
            longest_lease: Duration::from_secs(90),
            next_token: 1234,
        };
        let saved = decode(&encode_marker(marker, saved_at)).unwrap();
        assert!(!saved.clean);
        assert_eq!(saved.next_token, Some(1234));
        assert_eq!(saved.longest_lease, Duration::from_secs(90));
        assert_eq!(saved.saved_at, saved_at);
        assert!(saved.peers.is_empty());
    }

    #[test]
    fn bad_files_say_what_is_wrong() {
        let good = String::from_utf8(encode_clean(&export(), UNIX_EPOCH, Duration::ZERO)).unwrap();
        check_error("", "corrupt");
        check_error(&good[..good.len() / 2], "corrupt");
        check_error(
            "{\"format\": \"other\", \"version\": 1}",
            "not a Throttle state file",
        );
        check_error("[1, 2]", "corrupt");
        check_error(
            &good.replace("\"version\":2", "\"version\":3"),
            "format version 3",
        );
        check_error(&good.replace("\"version\":2,", ""), "no format version");
        check_error(
            &good.replace(
                "\"fencing_tokens\":{\"A\":17,",
                "\"fencing_tokens\":{\"Z\":17,",
            ),
            "fencing token for \"Z\", which it does not hold",
        );
        // Version 1 has no tokens: a field of version 2 in it is unknown.
        check_error(
            &good.replace("\"version\":2", "\"version\":1"),
            "unknown field",
        );
        check_error(
            &good.replace("\"clean\":true", "\"clean\":true,\"x\":1"),
            "unknown field",
        );
        check_error(&good.replace("\"A\":1,", "\"A\":0,"), "expected at least 1");
        check_error(&good.replace("\"id\":42", "\"id\":-1"), "corrupt");
        check_error(&good.replace("\"A\":1,", "\"A\":\"1\","), "corrupt");
    }

    #[test]
    fn write_replaces_the_file_and_leaves_no_temporary() {
        let dir = std::env::temp_dir().join(format!("throttle-state-unit-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("state.json");
        write(&path, b"one").unwrap();
        write(&path, b"two").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(load(&dir.join("missing.json")), Ok(None));
        assert!(
            load(&path)
                .unwrap_err()
                .starts_with(&format!("{}: ", path.display()))
        );
        // A directory that is gone: an error, nothing left behind.
        let gone = dir.join("gone").join("state.json");
        assert!(write(&gone, b"x").is_err());
        let names: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("state.json")]);
        fs::remove_dir_all(&dir).unwrap();
    }
}
