//! The log file's records: how bytes are framed on disk and read back after a crash.
//!
//! A record is `[length: u32 LE][crc32 of kind and payload: u32 LE][kind: u8][payload]`, where
//! `length` counts the kind byte and the payload. Records are only ever appended; a file is
//! read from the start until the first record that is incomplete or whose checksum fails, which
//! is where a crash cut a write short (a torn tail). [`read`] returns the records before it and
//! the offset where the valid part ends, so the caller can cut the rest off before it appends.
//!
//! This file knows nothing of Raft: a kind is a byte, a payload is bytes. What they mean is
//! `log_store.rs`'s business.

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};

/// The largest record accepted when reading: a length field above it is damage, not data.
/// Entries are a few hundred bytes; snapshots live in a file of their own.
pub const MAX_RECORD: usize = 16 << 20;

/// Bytes before a record's kind: its length and its checksum.
const HEADER: usize = 8;

/// One record: what it is and its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub kind: u8,
    pub payload: Vec<u8>,
}

/// What a read found: the valid records and where they end.
#[derive(Debug, Default)]
pub struct Contents {
    pub records: Vec<Record>,
    /// Bytes of the file that hold valid records; anything after is a torn tail.
    pub valid_len: u64,
    /// Bytes after `valid_len` (zero for a file that ends cleanly).
    pub torn: u64,
}

/// Reads every valid record of `file` from its start.
pub fn read(file: &mut File) -> io::Result<Contents> {
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    Ok(parse(&bytes))
}

/// Splits `bytes` into records up to the first invalid one.
pub fn parse(bytes: &[u8]) -> Contents {
    let mut contents = Contents::default();
    let mut at = 0;
    while let Some((record, len)) = parse_one(&bytes[at..]) {
        contents.records.push(record);
        at += len;
    }
    contents.valid_len = at as u64;
    contents.torn = (bytes.len() - at) as u64;
    contents
}

/// The record at the start of `bytes` and its size on disk, if it is complete and intact.
fn parse_one(bytes: &[u8]) -> Option<(Record, usize)> {
    let length = u32::from_le_bytes(bytes.get(0..4)?.try_into().ok()?) as usize;
    let checksum = u32::from_le_bytes(bytes.get(4..8)?.try_into().ok()?);
    if length == 0 || length > MAX_RECORD {
        return None;
    }
    let body = bytes.get(HEADER..HEADER.checked_add(length)?)?;
    if crc32fast::hash(body) != checksum {
        return None;
    }
    let record = Record {
        kind: body[0],
        payload: body[1..].to_vec(),
    };
    Some((record, HEADER + length))
}

/// Appends records to a file through a buffer; nothing is durable before [`Writer::sync`].
pub struct Writer {
    out: BufWriter<File>,
    /// Records appended since the last sync.
    dirty: bool,
}

impl Writer {
    /// Appends at the end of `file` (opened for appending by the caller).
    pub fn new(file: File) -> Writer {
        Writer {
            out: BufWriter::with_capacity(64 * 1024, file),
            dirty: false,
        }
    }

    /// Buffers one record.
    pub fn append(&mut self, kind: u8, payload: &[u8]) -> io::Result<()> {
        let length = payload.len() + 1;
        if length > MAX_RECORD {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("a log record of {length} bytes exceeds the limit of {MAX_RECORD}"),
            ));
        }
        self.dirty = true;
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&[kind]);
        hasher.update(payload);
        self.out.write_all(&(length as u32).to_le_bytes())?;
        self.out.write_all(&hasher.finalize().to_le_bytes())?;
        self.out.write_all(&[kind])?;
        self.out.write_all(payload)
    }

    /// Writes the buffer and waits until the disk has it (`fsync`): one call per batch of
    /// records, however many there are; none if nothing was appended since the last. Says
    /// whether it synced.
    pub fn sync(&mut self) -> io::Result<bool> {
        if !self.dirty {
            return Ok(false);
        }
        self.out.flush()?;
        self.out.get_ref().sync_data()?;
        self.dirty = false;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::TempDir;
    use std::fs::OpenOptions;

    fn encoded(records: &[(u8, &[u8])]) -> Vec<u8> {
        let dir = TempDir::new();
        let path = dir.0.join("log");
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap();
        let mut writer = Writer::new(file);
        for (kind, payload) in records {
            writer.append(*kind, payload).unwrap();
        }
        writer.sync().unwrap();
        std::fs::read(&path).unwrap()
    }

    #[test]
    fn records_read_back_as_written() {
        let bytes = encoded(&[(1, b"one"), (2, b""), (1, &[7; 1000])]);
        let contents = parse(&bytes);
        assert_eq!(contents.torn, 0);
        assert_eq!(contents.valid_len, bytes.len() as u64);
        let kinds: Vec<_> = contents.records.iter().map(|r| r.kind).collect();
        assert_eq!(kinds, [1, 2, 1]);
        assert_eq!(contents.records[2].payload, vec![7; 1000]);
    }

    #[test]
    fn every_cut_of_the_last_record_is_a_torn_tail() {
        let bytes = encoded(&[(1, b"kept"), (1, b"cut short")]);
        let first = HEADER + 1 + 4;
        for cut in first..bytes.len() {
            let contents = parse(&bytes[..cut]);
            assert_eq!(contents.records.len(), 1, "cut at {cut}");
            assert_eq!(contents.valid_len, first as u64);
            assert_eq!(contents.torn, (cut - first) as u64);
        }
    }

    #[test]
    fn a_flipped_bit_ends_the_valid_part() {
        let mut bytes = encoded(&[(1, b"first"), (1, b"second"), (1, b"third")]);
        let second = HEADER + 1 + 5;
        bytes[second + HEADER + 2] ^= 0x10;
        let contents = parse(&bytes);
        assert_eq!(contents.records.len(), 1);
        assert_eq!(contents.valid_len, second as u64);
    }

    #[test]
    fn absurd_lengths_are_damage() {
        let mut bytes = vec![0xff, 0xff, 0xff, 0x7f, 0, 0, 0, 0];
        bytes.extend([1; 32]);
        assert_eq!(parse(&bytes).records.len(), 0);
        assert_eq!(parse(&[0, 0, 0, 0, 0, 0, 0, 0]).records.len(), 0);
        assert_eq!(parse(&[]).valid_len, 0);
    }
}
