//! Fuzz target `decode`: arbitrary bytes into both decoders of the core, `Op::decode` (a log
//! entry's operation) and `Core::decode_snapshot` (a whole core). Neither may panic, and
//! whatever decodes must encode back to exactly the input (both encodings are canonical). A
//! core rebuilt from a snapshot must also be usable: its views are read, and every peer is
//! expired by one sweep far in the future, which must leave nothing held or pending.
//!
//! The seeds (`fuzz/seeds/decode/`) are valid encodings of operations of every kind and of
//! small snapshots, so mutations start from the format rather than from noise.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use throttle_core::{Core, MAX_TOKEN, Op, Time};

fuzz_target!(|data: &[u8]| {
    if let Ok(op) = Op::decode(data) {
        let mut bytes = Vec::new();
        op.encode(&mut bytes);
        assert_eq!(bytes, data, "{op:?} encodes differently");
    }
    if let Ok(mut core) = Core::decode_snapshot(data) {
        assert!(core.encode_snapshot() == data, "a snapshot encodes differently");
        let now = core.next_deadline().unwrap_or(Time::ZERO);
        let _ = core.stats(now);
        let _ = core.export(now);
        for id in core.peer_ids() {
            assert!(core.peer(id, now).is_some());
        }
        // Every grant of the sweep takes a token; a counter near its end could overflow, which
        // is the core's concern with any state, not the snapshot's.
        if core.next_token() < MAX_TOKEN {
            let end = Time::from_epoch(Duration::MAX);
            core.apply(end, &Op::Expire);
            assert_eq!(core.num_peers(), 0);
            for stats in core.stats(end) {
                assert_eq!((stats.acquired, stats.pending), (0, 0), "{}", stats.name);
            }
        }
    }
});
