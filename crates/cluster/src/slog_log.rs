//! raft-rs logs through `slog`; this drain hands its records to the `log` facade, so they reach
//! the server's stderr and GELF loggers under the target `raft`, with its key-value pairs
//! appended as `key=value`. raft-rs's info records (every step of an election, every proposal
//! dropped while there is no leader) become debug ones: the node logs the changes of leader
//! that operators need at info itself.

use std::fmt::{self, Write as _};

use slog::{Drain, KV, Key, OwnedKVList, Record, Serializer};

/// The logger raft-rs gets.
pub fn logger() -> slog::Logger {
    slog::Logger::root(ToLog, slog::o!())
}

struct ToLog;

impl Drain for ToLog {
    type Ok = ();
    type Err = slog::Never;

    fn log(&self, record: &Record, values: &OwnedKVList) -> Result<(), slog::Never> {
        let level = match record.level() {
            slog::Level::Critical | slog::Level::Error => log::Level::Error,
            slog::Level::Warning => log::Level::Warn,
            slog::Level::Info | slog::Level::Debug => log::Level::Debug,
            slog::Level::Trace => log::Level::Trace,
        };
        if log::log_enabled!(target: "raft", level) {
            let mut pairs = Pairs(String::new());
            let _ = record.kv().serialize(record, &mut pairs);
            let _ = values.serialize(record, &mut pairs);
            log::log!(target: "raft", level, "{}{}", record.msg(), pairs.0);
        }
        Ok(())
    }
}

/// Key-value pairs as ` key=value`.
struct Pairs(String);

impl Serializer for Pairs {
    fn emit_arguments(&mut self, key: Key, value: &fmt::Arguments) -> slog::Result {
        let _ = write!(self.0, " {key}={value}");
        Ok(())
    }
}
