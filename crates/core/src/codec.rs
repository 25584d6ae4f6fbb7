//! The core's byte encoding: a writer and a reader of plain values (integers, strings, times),
//! the encoding of an [`Op`], and [`DecodeError`], so that a replicated log can carry
//! operations and a snapshot can carry a whole core (`snapshot.rs`, which uses the same reader
//! and writer).
//!
//! Not here: what a log entry carries beside its operation (the time it applies at, a proposal
//! id; the cluster frames those), any I/O, and any judgement of an operation's arguments (a
//! count of 0 decodes fine; [`Core::apply`](crate::Core::apply) refuses it).
//!
//! **Format.** Every encoded value starts with a version byte ([`OP_VERSION`] for an operation),
//! so a later format can be told apart; an operation then has a tag byte naming its variant.
//! Peer ids are 8 bytes little-endian (they are random, so a variable-length form would only
//! make them longer); other unsigned integers (tokens, lengths, counts of items, seconds) are
//! LEB128; signed ones (lock counts, `max`, levels) are zigzag LEB128; a string is its length
//! and its UTF-8 bytes; an `Option` is a byte 0 or 1 and then the value; a [`Time`] or a
//! `Duration` is its whole seconds and its nanoseconds below a second, both LEB128. (A `Time`
//! holds a `Duration`, whose range is larger than a `u64` of nanoseconds: the two numbers keep
//! every value exact.)
//!
//! **Decoding is strict and canonical.** The reader accepts exactly the bytes the writer
//! produces: an overlong or overflowing LEB128 integer, a boolean or option byte other than 0
//! and 1, nanoseconds of a second or more, invalid UTF-8, map keys out of order or repeated,
//! and bytes after the value are errors. So whatever decodes encodes back to the same bytes.
//! Counts of items are checked against the bytes left before anything is allocated, so no
//! input makes the decoder allocate more than a small multiple of the input's size, and no
//! input makes it panic.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use crate::{Op, SemaphoreSettings, Time};

/// The format version of an encoded [`Op`], its first byte.
pub const OP_VERSION: u8 = 1;

/// The tag bytes of the variants of [`Op`], after the version.
mod tag {
    pub const NEW_PEER: u8 = 1;
    pub const HEARTBEAT: u8 = 2;
    pub const REMOVE_PEER: u8 = 3;
    pub const ACQUIRE: u8 = 4;
    pub const RELEASE_LOCK: u8 = 5;
    pub const RESTORE: u8 = 6;
    pub const EXPIRE: u8 = 7;
    pub const RECONFIGURE: u8 = 8;
}

/// Bytes that could not be decoded: what was wrong, and at which offset of the input.
///
/// Decoding checks every byte, so a log entry or a snapshot that was damaged or written by an
/// incompatible version is refused with this instead of yielding a wrong state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    offset: usize,
    problem: Problem,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Problem {
    /// The input ends inside a value.
    Truncated,
    /// The value ends before the input does; the number of bytes left.
    TrailingBytes(usize),
    /// A version byte this build does not read.
    Version { what: &'static str, found: u8 },
    /// An operation's tag byte names no variant.
    Tag(u8),
    /// A LEB128 integer is longer than its value needs, or larger than its type.
    Integer,
    /// A byte that must be 0 or 1 (a boolean, an option) is neither.
    Flag(u8),
    /// Nanoseconds of a time or duration at or above a second.
    Nanoseconds,
    /// A string is not UTF-8.
    Utf8,
    /// A count of items larger than the bytes left could hold.
    Count(u64),
    /// The bytes are well formed but describe something impossible.
    Invalid(&'static str),
}

impl DecodeError {
    /// The offset in the input at which the problem was found (for a value that is invalid as a
    /// whole, where it starts).
    pub fn offset(&self) -> usize {
        self.offset
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.problem {
            Problem::Truncated => f.write_str("the input ends early")?,
            Problem::TrailingBytes(left) => write!(f, "{left} bytes follow the value")?,
            Problem::Version { what, found } => {
                write!(f, "unknown format version {found} of {what}")?;
            }
            Problem::Tag(tag) => write!(f, "unknown operation tag {tag}")?,
            Problem::Integer => f.write_str("an integer is overlong or out of range")?,
            Problem::Flag(byte) => write!(f, "a flag byte is {byte}, not 0 or 1")?,
            Problem::Nanoseconds => f.write_str("nanoseconds of a second or more")?,
            Problem::Utf8 => f.write_str("a string is not UTF-8")?,
            Problem::Count(count) => write!(f, "a count of {count} items exceeds the input")?,
            Problem::Invalid(what) => f.write_str(what)?,
        }
        write!(f, " (at byte {})", self.offset)
    }
}

impl std::error::Error for DecodeError {}

/// Appends values to a buffer in the format of the module docs.
pub(crate) struct Writer<'a> {
    out: &'a mut Vec<u8>,
}

impl<'a> Writer<'a> {
    pub(crate) fn new(out: &'a mut Vec<u8>) -> Writer<'a> {
        Writer { out }
    }

    pub(crate) fn byte(&mut self, byte: u8) {
        self.out.push(byte);
    }

    /// A peer id: 8 bytes, little-endian.
    pub(crate) fn id(&mut self, id: u64) {
        self.out.extend_from_slice(&id.to_le_bytes());
    }

    /// An unsigned integer, LEB128.
    pub(crate) fn varint(&mut self, mut value: u64) {
        while value >= 0x80 {
            self.out.push((value as u8) | 0x80);
            value >>= 7;
        }
        self.out.push(value as u8);
    }

    /// A length or a number of items.
    pub(crate) fn len(&mut self, len: usize) {
        self.varint(len as u64);
    }

    /// A signed integer, zigzag LEB128: small magnitudes of either sign stay short.
    pub(crate) fn int(&mut self, value: i64) {
        self.varint(((value << 1) ^ (value >> 63)) as u64);
    }

    pub(crate) fn flag(&mut self, flag: bool) {
        self.byte(u8::from(flag));
    }

    pub(crate) fn str(&mut self, text: &str) {
        self.len(text.len());
        self.out.extend_from_slice(text.as_bytes());
    }

    pub(crate) fn duration(&mut self, duration: Duration) {
        self.varint(duration.as_secs());
        self.varint(u64::from(duration.subsec_nanos()));
    }

    pub(crate) fn time(&mut self, time: Time) {
        self.duration(time.since_epoch());
    }

    /// The option's flag byte, then its value written by `write`.
    pub(crate) fn option<T>(&mut self, value: Option<T>, write: impl FnOnce(&mut Self, T)) {
        self.flag(value.is_some());
        if let Some(value) = value {
            write(self, value);
        }
    }
}

/// Reads values in the format of the module docs from a byte slice, refusing anything the
/// [`Writer`] would not have written.
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    offset: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { bytes, offset: 0 }
    }

    /// Where the next value starts.
    pub(crate) fn offset(&self) -> usize {
        self.offset
    }

    fn left(&self) -> usize {
        self.bytes.len() - self.offset
    }

    fn error(&self, offset: usize, problem: Problem) -> DecodeError {
        DecodeError { offset, problem }
    }

    /// An error for a value, starting at `offset`, that is well formed but impossible.
    pub(crate) fn invalid(&self, offset: usize, what: &'static str) -> DecodeError {
        self.error(offset, Problem::Invalid(what))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if n > self.left() {
            return Err(self.error(self.bytes.len(), Problem::Truncated));
        }
        let bytes = &self.bytes[self.offset..self.offset + n];
        self.offset += n;
        Ok(bytes)
    }

    pub(crate) fn byte(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    /// The version byte, which must be `expected`; `what` names the value for the error.
    pub(crate) fn version(&mut self, expected: u8, what: &'static str) -> Result<(), DecodeError> {
        let at = self.offset;
        let found = self.byte()?;
        if found != expected {
            return Err(self.error(at, Problem::Version { what, found }));
        }
        Ok(())
    }

    pub(crate) fn id(&mut self) -> Result<u64, DecodeError> {
        let mut bytes = [0; 8];
        bytes.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(bytes))
    }

    pub(crate) fn varint(&mut self) -> Result<u64, DecodeError> {
        let at = self.offset;
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.byte()?;
            let bits = u64::from(byte & 0x7f);
            // The tenth byte holds the top bit only; a last byte of 0 after others is overlong.
            if (shift == 63 && bits > 1) || (shift > 0 && byte == 0) {
                return Err(self.error(at, Problem::Integer));
            }
            value |= bits << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(self.error(at, Problem::Integer))
    }

    /// An unsigned integer that must fit `usize` (an index).
    pub(crate) fn index(&mut self) -> Result<usize, DecodeError> {
        let at = self.offset;
        let value = self.varint()?;
        usize::try_from(value).map_err(|_| self.error(at, Problem::Integer))
    }

    /// A number of items, each of which takes at least `min_bytes` bytes: a count the rest of
    /// the input cannot hold is refused before anything is allocated for it.
    pub(crate) fn count(&mut self, min_bytes: usize) -> Result<usize, DecodeError> {
        let at = self.offset;
        let count = self.varint()?;
        match usize::try_from(count) {
            Ok(n) if n <= self.left() / min_bytes.max(1) => Ok(n),
            _ => Err(self.error(at, Problem::Count(count))),
        }
    }

    pub(crate) fn int(&mut self) -> Result<i64, DecodeError> {
        let zigzag = self.varint()?;
        Ok(((zigzag >> 1) as i64) ^ -((zigzag & 1) as i64))
    }

    /// A signed integer that must fit `i32` (a lock level).
    pub(crate) fn int32(&mut self) -> Result<i32, DecodeError> {
        let at = self.offset;
        let value = self.int()?;
        i32::try_from(value).map_err(|_| self.error(at, Problem::Integer))
    }

    pub(crate) fn flag(&mut self) -> Result<bool, DecodeError> {
        let at = self.offset;
        match self.byte()? {
            0 => Ok(false),
            1 => Ok(true),
            byte => Err(self.error(at, Problem::Flag(byte))),
        }
    }

    pub(crate) fn str(&mut self) -> Result<&'a str, DecodeError> {
        // A length beyond the input (or beyond `usize`) fails in `take` as a truncation.
        let len = usize::try_from(self.varint()?).unwrap_or(usize::MAX);
        let at = self.offset;
        std::str::from_utf8(self.take(len)?).map_err(|_| self.error(at, Problem::Utf8))
    }

    pub(crate) fn string(&mut self) -> Result<String, DecodeError> {
        Ok(self.str()?.to_owned())
    }

    pub(crate) fn duration(&mut self) -> Result<Duration, DecodeError> {
        let secs = self.varint()?;
        let at = self.offset;
        match u32::try_from(self.varint()?) {
            Ok(nanos) if nanos < 1_000_000_000 => Ok(Duration::new(secs, nanos)),
            _ => Err(self.error(at, Problem::Nanoseconds)),
        }
    }

    pub(crate) fn time(&mut self) -> Result<Time, DecodeError> {
        Ok(Time::from_epoch(self.duration()?))
    }

    /// An option's flag byte, then its value read by `read`.
    pub(crate) fn option<T>(
        &mut self,
        read: impl FnOnce(&mut Self) -> Result<T, DecodeError>,
    ) -> Result<Option<T>, DecodeError> {
        if self.flag()? {
            Ok(Some(read(self)?))
        } else {
            Ok(None)
        }
    }

    /// Ends the reading: the value must have used every byte.
    pub(crate) fn finish(self) -> Result<(), DecodeError> {
        match self.left() {
            0 => Ok(()),
            left => Err(self.error(self.offset, Problem::TrailingBytes(left))),
        }
    }
}

impl Op {
    /// Appends the operation's encoding (see the module docs) to `out`. The same operation
    /// always gives the same bytes.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let mut w = Writer::new(out);
        w.byte(OP_VERSION);
        match self {
            Op::NewPeer {
                id,
                expires_at,
                name,
            } => {
                w.byte(tag::NEW_PEER);
                w.id(*id);
                w.time(*expires_at);
                w.option(name.as_deref(), Writer::str);
            }
            Op::Heartbeat { id, expires_at } => {
                w.byte(tag::HEARTBEAT);
                w.id(*id);
                w.time(*expires_at);
            }
            Op::RemovePeer { id } => {
                w.byte(tag::REMOVE_PEER);
                w.id(*id);
            }
            Op::Acquire {
                id,
                semaphore,
                count,
                expires_at,
            } => {
                w.byte(tag::ACQUIRE);
                w.id(*id);
                w.str(semaphore);
                w.int(*count);
                w.option(*expires_at, Writer::time);
            }
            Op::ReleaseLock { id, semaphore } => {
                w.byte(tag::RELEASE_LOCK);
                w.id(*id);
                w.str(semaphore);
            }
            Op::Restore {
                id,
                expires_at,
                acquired,
                tokens,
                name,
            } => {
                w.byte(tag::RESTORE);
                w.id(*id);
                w.time(*expires_at);
                w.len(acquired.len());
                for (semaphore, &count) in acquired {
                    w.str(semaphore);
                    w.int(count);
                }
                w.len(tokens.len());
                for (semaphore, &token) in tokens {
                    w.str(semaphore);
                    w.varint(token);
                }
                w.option(name.as_deref(), Writer::str);
            }
            Op::Expire => w.byte(tag::EXPIRE),
            Op::Reconfigure { semaphores } => {
                w.byte(tag::RECONFIGURE);
                w.len(semaphores.len());
                for settings in semaphores {
                    w.str(&settings.name);
                    w.int(settings.max);
                    w.int(i64::from(settings.level));
                }
            }
        }
    }

    /// The operation `bytes` encode, exactly: bytes after it are an error, and so is anything
    /// [`Op::encode`] would not have written. Never panics.
    pub fn decode(bytes: &[u8]) -> Result<Op, DecodeError> {
        let mut r = Reader::new(bytes);
        r.version(OP_VERSION, "an operation")?;
        let at = r.offset();
        let op = match r.byte()? {
            tag::NEW_PEER => Op::NewPeer {
                id: r.id()?,
                expires_at: r.time()?,
                name: r.option(Reader::string)?,
            },
            tag::HEARTBEAT => Op::Heartbeat {
                id: r.id()?,
                expires_at: r.time()?,
            },
            tag::REMOVE_PEER => Op::RemovePeer { id: r.id()? },
            tag::ACQUIRE => Op::Acquire {
                id: r.id()?,
                semaphore: r.string()?,
                count: r.int()?,
                expires_at: r.option(Reader::time)?,
            },
            tag::RELEASE_LOCK => Op::ReleaseLock {
                id: r.id()?,
                semaphore: r.string()?,
            },
            tag::RESTORE => Op::Restore {
                id: r.id()?,
                expires_at: r.time()?,
                acquired: read_map(&mut r, Reader::int)?,
                tokens: read_map(&mut r, Reader::varint)?,
                name: r.option(Reader::string)?,
            },
            tag::EXPIRE => Op::Expire,
            tag::RECONFIGURE => {
                // A row takes at least 3 bytes: an empty name, a max and a level of one each.
                let rows = r.count(3)?;
                let mut semaphores = Vec::with_capacity(rows);
                for _ in 0..rows {
                    semaphores.push(SemaphoreSettings {
                        name: r.string()?,
                        max: r.int()?,
                        level: r.int32()?,
                    });
                }
                Op::Reconfigure { semaphores }
            }
            other => return Err(r.error(at, Problem::Tag(other))),
        };
        r.finish()?;
        Ok(op)
    }
}

/// A map from semaphore names, its keys in strictly increasing order (as a `BTreeMap` writes
/// them), each with a value read by `value`.
fn read_map<'a, T>(
    r: &mut Reader<'a>,
    mut value: impl FnMut(&mut Reader<'a>) -> Result<T, DecodeError>,
) -> Result<BTreeMap<String, T>, DecodeError> {
    // An entry takes at least 2 bytes: an empty name and a value of one.
    let entries = r.count(2)?;
    let mut map = BTreeMap::new();
    for _ in 0..entries {
        let at = r.offset();
        let key = r.string()?;
        if map.last_key_value().is_some_and(|(last, _)| *last >= key) {
            return Err(r.invalid(at, "semaphore names out of order or repeated"));
        }
        let value = value(r)?;
        map.insert(key, value);
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PeerId;
    use crate::tests::support::*;

    fn encode(op: &Op) -> Vec<u8> {
        let mut bytes = Vec::new();
        op.encode(&mut bytes);
        bytes
    }

    /// The decoding of `bytes` fails with a message that contains `expected`.
    #[track_caller]
    fn refused(bytes: &[u8], expected: &str) {
        match Op::decode(bytes) {
            Ok(op) => panic!("decoded {op:?} from {bytes:?}"),
            Err(error) => {
                let message = error.to_string();
                assert!(message.contains(expected), "{message:?} lacks {expected:?}");
            }
        }
    }

    /// One operation of every variant, most of them at the edges of their values.
    fn samples() -> Vec<Op> {
        let max_time = Time::from_epoch(Duration::MAX);
        let t = Time::from_epoch(Duration::new(1_000, 123_456_789));
        let names = ["", "A", "ünïcødé 🚦", "a/b?c=d&e%20f"];
        let mut ops = Vec::new();
        for (i, name) in names.iter().enumerate() {
            let id = [0, 1, u64::MAX, 1 << 63][i];
            ops.push(Op::NewPeer {
                id,
                expires_at: [Time::ZERO, t, max_time, t][i],
                name: (i % 2 == 1).then(|| (*name).to_owned()),
            });
            ops.push(Op::Acquire {
                id,
                semaphore: (*name).to_owned(),
                count: [i64::MIN, -1, 0, i64::MAX][i],
                expires_at: (i != 0).then_some([t, max_time, Time::ZERO, t][i]),
            });
            ops.push(Op::ReleaseLock {
                id,
                semaphore: (*name).to_owned(),
            });
        }
        ops.extend([
            Op::NewPeer {
                id: 7,
                expires_at: t,
                name: Some("x".repeat(1 << 20)),
            },
            Op::Heartbeat {
                id: u64::MAX,
                expires_at: max_time,
            },
            Op::Heartbeat {
                id: 0,
                expires_at: Time::ZERO,
            },
            Op::RemovePeer { id: 42 },
            Op::Restore {
                id: 3,
                expires_at: t,
                acquired: BTreeMap::new(),
                tokens: BTreeMap::new(),
                name: None,
            },
            Op::Restore {
                id: u64::MAX,
                expires_at: max_time,
                acquired: BTreeMap::from([
                    (String::new(), i64::MIN),
                    ("A".to_owned(), 1),
                    ("B".to_owned(), i64::MAX),
                    ("🚦".to_owned(), 0),
                ]),
                tokens: BTreeMap::from([
                    ("A".to_owned(), 0),
                    ("B".to_owned(), u64::MAX),
                    ("Z".to_owned(), crate::MAX_TOKEN + 1),
                ]),
                name: Some("restored".to_owned()),
            },
            Op::Expire,
            Op::Reconfigure { semaphores: vec![] },
            Op::Reconfigure {
                semaphores: vec![
                    SemaphoreSettings {
                        name: "A".to_owned(),
                        max: i64::MAX,
                        level: i32::MIN,
                    },
                    SemaphoreSettings {
                        name: "A".to_owned(),
                        max: i64::MIN,
                        level: i32::MAX,
                    },
                    SemaphoreSettings {
                        name: String::new(),
                        max: 0,
                        level: 0,
                    },
                ],
            },
        ]);
        ops
    }

    #[test]
    fn every_operation_survives_a_round_trip() {
        for op in samples() {
            let bytes = encode(&op);
            assert_eq!(Op::decode(&bytes).as_ref(), Ok(&op), "{bytes:?}");
            // Appending keeps what the buffer held.
            let mut appended = vec![9];
            op.encode(&mut appended);
            assert_eq!((appended[0], &appended[1..]), (9, &bytes[..]));
        }
    }

    #[test]
    fn the_format_is_as_documented() {
        let remove = Op::RemovePeer { id: 0x0102 };
        assert_eq!(encode(&remove), [1, 3, 2, 1, 0, 0, 0, 0, 0, 0]);
        // Seconds 300 (LEB128: 0xac 0x02), nanoseconds 1; no name.
        let new_peer = Op::NewPeer {
            id: 1,
            expires_at: Time::from_epoch(Duration::new(300, 1)),
            name: None,
        };
        assert_eq!(
            encode(&new_peer),
            [1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0xac, 0x02, 1, 0]
        );
        // Count -2 zigzags to 3; the name is its length and bytes; no deadline.
        let acquire = Op::Acquire {
            id: 0,
            semaphore: "é".to_owned(),
            count: -2,
            expires_at: None,
        };
        assert_eq!(
            encode(&acquire),
            [1, 4, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0xc3, 0xa9, 3, 0]
        );
        assert_eq!(encode(&Op::Expire), [OP_VERSION, 7]);
    }

    #[test]
    fn integers_take_their_canonical_form_only() {
        let mut bytes = Vec::new();
        let mut w = Writer::new(&mut bytes);
        for value in [0, 127, 128, u64::MAX] {
            w.varint(value);
        }
        for value in [0, -1, 1, i64::MIN, i64::MAX] {
            w.int(value);
        }
        let mut r = Reader::new(&bytes);
        for value in [0, 127, 128, u64::MAX] {
            assert_eq!(r.varint(), Ok(value));
        }
        for value in [0, -1, 1, i64::MIN, i64::MAX] {
            assert_eq!(r.int(), Ok(value));
        }
        assert_eq!(r.finish(), Ok(()));
        let problem = |bytes: &[u8]| Reader::new(bytes).varint().map_err(|e| e.problem);
        // Overlong (a last byte of 0), above u64::MAX (tenth byte 2), longer than ten bytes.
        assert_eq!(problem(&[0x80, 0x00]), Err(Problem::Integer));
        let mut above = [0xff; 10];
        above[9] = 0x02;
        assert_eq!(problem(&above), Err(Problem::Integer));
        assert_eq!(problem(&[0xff; 11]), Err(Problem::Integer));
        assert_eq!(problem(&[0x80]), Err(Problem::Truncated));
        // A level beyond i32 and a count the input cannot hold.
        let mut level = Vec::new();
        Writer::new(&mut level).int(i64::from(i32::MAX) + 1);
        assert_eq!(
            Reader::new(&level).int32().map_err(|e| e.problem),
            Err(Problem::Integer)
        );
        assert_eq!(
            Reader::new(&[3, 0, 0]).count(1).map_err(|e| e.problem),
            Err(Problem::Count(3))
        );
    }

    #[test]
    fn malformed_operations_are_refused_with_the_offset() {
        let expire = encode(&Op::Expire);
        refused(&[], "the input ends early (at byte 0)");
        refused(
            &[2, 7],
            "unknown format version 2 of an operation (at byte 0)",
        );
        refused(&[1, 0], "unknown operation tag 0 (at byte 1)");
        refused(&[1, 99], "unknown operation tag 99 (at byte 1)");
        refused(&[expire.clone(), vec![0, 0]].concat(), "2 bytes follow");
        let mut new_peer = encode(&Op::NewPeer {
            id: 1,
            expires_at: Time::ZERO,
            name: Some("ab".to_owned()),
        });
        // The name's flag is at byte 12, its bytes at 14 and 15.
        new_peer[12] = 2;
        refused(&new_peer, "a flag byte is 2, not 0 or 1 (at byte 12)");
        new_peer[12] = 1;
        new_peer[14] = 0xff;
        refused(&new_peer, "not UTF-8 (at byte 14)");
        // Nanoseconds of a whole second: [1, 2, id, secs 0, nanos 1e9].
        let mut heartbeat = vec![1, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        Writer::new(&mut heartbeat).varint(1_000_000_000);
        refused(&heartbeat, "nanoseconds of a second or more (at byte 11)");
        // A restore whose names repeat.
        let mut restore = vec![1, 6, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
        restore.extend([1, b'A', 2, 1, b'A', 2, 0, 0]);
        refused(&restore, "out of order or repeated (at byte 16)");
    }

    #[test]
    fn truncated_operations_are_refused() {
        for op in samples() {
            let bytes = encode(&op);
            // Far from every prefix of the megabyte name: a few hundred of each.
            for len in (0..bytes.len()).filter(|&len| len < 300 || bytes.len() - len < 300) {
                let error = Op::decode(&bytes[..len]).expect_err("a prefix decoded");
                assert!(error.offset() <= len, "{error} for {len} bytes");
            }
        }
    }

    #[test]
    fn damaged_operations_never_panic_and_decode_canonically() {
        let mut rng = Rng::new(25);
        let ops: Vec<Vec<u8>> = samples()
            .iter()
            .map(encode)
            .filter(|bytes| bytes.len() < 1000)
            .collect();
        let mut decoded = 0;
        for _ in 0..20_000 {
            let mut bytes = ops[rng.below(ops.len() as u64) as usize].clone();
            for _ in 0..1 + rng.below(3) {
                let i = rng.below(bytes.len() as u64) as usize;
                bytes[i] ^= 1 << rng.below(8);
            }
            if let Ok(op) = Op::decode(&bytes) {
                assert_eq!(encode(&op), bytes, "{op:?}");
                decoded += 1;
            }
        }
        // Flips in ids, counts and names still decode: the check above has work.
        assert!(decoded > 1000, "{decoded}");
    }

    #[test]
    fn an_operation_applied_after_decoding_changes_the_state_alike() {
        let t0 = Time::from_epoch(secs(1_000));
        let new_peer = |id: PeerId| Op::NewPeer {
            id,
            expires_at: t0 + secs(10),
            name: Some(format!("peer {id}")),
        };
        let acquire = |id: PeerId, count: i64| Op::Acquire {
            id,
            semaphore: "A".to_owned(),
            count,
            expires_at: Some(t0 + secs(20)),
        };
        let ops = [
            new_peer(1),
            new_peer(2),
            new_peer(3),
            acquire(1, 2),
            acquire(2, 2),
            acquire(3, 1),
            Op::Heartbeat {
                id: 3,
                expires_at: t0 + secs(30),
            },
            Op::Restore {
                id: 4,
                expires_at: t0 + secs(60),
                acquired: locks(&[("A", 1)]),
                tokens: BTreeMap::from([("A".to_owned(), 100)]),
                name: None,
            },
            Op::ReleaseLock {
                id: 1,
                semaphore: "A".to_owned(),
            },
            Op::Reconfigure {
                semaphores: settings(&[("A", 4, 0), ("B", 1, 0)]),
            },
            Op::RemovePeer { id: 2 },
            Op::Expire,
        ];
        let mut direct = core(&[("A", 3, 0)]);
        let mut decoded = core(&[("A", 3, 0)]);
        for (i, op) in ops.iter().enumerate() {
            let at = t0 + secs(i as u64);
            let op_again = Op::decode(&encode(op)).unwrap();
            assert_eq!(decoded.apply(at, &op_again), direct.apply(at, op), "{op:?}");
            assert!(
                decoded.encode_snapshot() == direct.encode_snapshot(),
                "{op:?}"
            );
        }
        // The sequence did something: the restored token moved the counter.
        assert_eq!(decoded.token(4, "A"), Some(100));
    }
}
