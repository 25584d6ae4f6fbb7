//! The envelope around every entry of the members' log and around every snapshot: who proposed
//! the entry and its number there (so the proposer recognises its own entry when it applies),
//! and the log time the leader stamped on it (ARCHITECTURE.md, "Time and leases").
//!
//! What this is not: the meaning of the payload. Inside the envelope the bytes are the
//! machine's; this crate never looks at them.

use std::time::Duration;

/// The format of the envelope; a member refuses entries of another (it would misread them).
const VERSION: u8 = 1;
/// Version, log time, origin, number.
const ENTRY_HEADER: usize = 1 + 8 + 8 + 8;
/// Version, log time.
const SNAPSHOT_HEADER: usize = 1 + 8;

/// An entry, opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Entry<'a> {
    /// The log time the leader stamped, or zero if no leader stamped it.
    pub at: Duration,
    /// The member that proposed it.
    pub origin: u64,
    /// Its number among the proposals of `origin`.
    pub seq: u64,
    /// The machine's bytes.
    pub payload: &'a [u8],
}

/// An entry as its proposer sends it: not stamped yet (the leader does that, [`stamp`]).
pub(crate) fn wrap(origin: u64, seq: u64, payload: &[u8]) -> Vec<u8> {
    let mut data = Vec::with_capacity(ENTRY_HEADER + payload.len());
    data.push(VERSION);
    data.extend_from_slice(&0u64.to_le_bytes());
    data.extend_from_slice(&origin.to_le_bytes());
    data.extend_from_slice(&seq.to_le_bytes());
    data.extend_from_slice(payload);
    data
}

/// Writes the log time into an entry's envelope. Data that is no envelope of this version is
/// left alone (opening it fails later, on every member alike).
pub(crate) fn stamp(data: &mut [u8], at: Duration) {
    if data.len() >= ENTRY_HEADER && data[0] == VERSION {
        data[1..9].copy_from_slice(&nanos(at).to_le_bytes());
    }
}

/// Reads an entry's envelope; `None` if the data is none of this version.
pub(crate) fn open(data: &[u8]) -> Option<Entry<'_>> {
    if data.len() < ENTRY_HEADER || data[0] != VERSION {
        return None;
    }
    Some(Entry {
        at: Duration::from_nanos(u64_at(data, 1)),
        origin: u64_at(data, 9),
        seq: u64_at(data, 17),
        payload: &data[ENTRY_HEADER..],
    })
}

/// A snapshot: the machine's state and the log time of the last entry it applied, from which
/// a member restored from it goes on.
pub(crate) fn wrap_snapshot(at: Duration, payload: &[u8]) -> Vec<u8> {
    let mut data = Vec::with_capacity(SNAPSHOT_HEADER + payload.len());
    data.push(VERSION);
    data.extend_from_slice(&nanos(at).to_le_bytes());
    data.extend_from_slice(payload);
    data
}

/// Reads a snapshot's envelope: the log time and the machine's bytes.
pub(crate) fn open_snapshot(data: &[u8]) -> Option<(Duration, &[u8])> {
    if data.len() < SNAPSHOT_HEADER || data[0] != VERSION {
        return None;
    }
    Some((
        Duration::from_nanos(u64_at(data, 1)),
        &data[SNAPSHOT_HEADER..],
    ))
}

/// Nanoseconds, saturating: 584 years fit, far beyond any log's life.
fn nanos(at: Duration) -> u64 {
    u64::try_from(at.as_nanos()).unwrap_or(u64::MAX)
}

fn u64_at(data: &[u8], offset: usize) -> u64 {
    let mut bytes = [0; 8];
    bytes.copy_from_slice(&data[offset..offset + 8]);
    u64::from_le_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_opens_as_it_was_wrapped_and_stamped() {
        let mut data = wrap(3, 41, b"op");
        assert_eq!(open(&data).unwrap().at, Duration::ZERO);
        stamp(&mut data, Duration::from_millis(1500));
        let entry = open(&data).unwrap();
        assert_eq!(
            entry,
            Entry {
                at: Duration::from_millis(1500),
                origin: 3,
                seq: 41,
                payload: b"op",
            }
        );
    }

    #[test]
    fn data_that_is_no_envelope_does_not_open_and_is_not_stamped() {
        for data in [&b""[..], b"short", &[2; 40]] {
            let mut copy = data.to_vec();
            stamp(&mut copy, Duration::from_secs(1));
            assert_eq!(copy, data);
            assert_eq!(open(data), None);
            assert_eq!(open_snapshot(data), None);
        }
    }

    #[test]
    fn a_snapshot_keeps_its_log_time_and_payload() {
        let data = wrap_snapshot(Duration::from_nanos(7), b"state");
        assert_eq!(
            open_snapshot(&data),
            Some((Duration::from_nanos(7), &b"state"[..]))
        );
        let empty = wrap_snapshot(Duration::MAX, b"");
        assert_eq!(
            open_snapshot(&empty),
            Some((Duration::from_nanos(u64::MAX), &b""[..]))
        );
    }
}
