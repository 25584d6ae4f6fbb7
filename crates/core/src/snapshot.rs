//! The snapshot of a whole [`Core`] as bytes, and the core rebuilt from them: what a replicated
//! log hands a member that is too far behind to replay it, and what lets the log be compacted.
//!
//! A rebuilt core is indistinguishable from the original for every future operation: the
//! snapshot holds every semaphore (settings, `removed`, the queue with its tickets, the
//! waiters' `since` and lease), every peer (deadline, name, acquired locks with their fencing
//! tokens), the counters (`next_ticket`, `next_token`, `expired_total`), the grace period and the
//! memory of expired peers exactly as its queue stands. What can be derived is not written but
//! rebuilt: the index of names, the deadlines, the per-semaphore sums and each peer's pending
//! lock (from the queues).
//!
//! Not here: the state file (`export.rs`, which keeps only what survives a restart and counts
//! leases from the time of the export), the encoding of single operations and the reader and
//! writer (`codec.rs`), deciding when to take a snapshot (the cluster's).
//!
//! **Format** (version [`SNAPSHOT_VERSION`], values as in `codec.rs`): the version byte;
//! `next_ticket`, `next_token`, `expired_total`; the end of the grace period if any; the
//! semaphores in index order (name, `max`, level, `removed`); the peers by ascending id (id,
//! deadline, name if any, acquired locks by ascending semaphore index: index, count, token);
//! each semaphore's queue in ticket order (ticket, peer, count, since, lease if any); the expired
//! peers' queue in order (forget at, id) and the remembered ids, ascending. Only ordered
//! structures are walked, so the same state always gives the same bytes.
//!
//! **Decoding checks what it rebuilds** and refuses, never panics on, bytes that describe an
//! impossible state: a name given twice, peers or locks out of order or repeated, a lock on a
//! semaphore that does not exist, counts below 1, sums that overflow, a token not below
//! `next_token`, a ticket not below `next_ticket` or out of order, a waiter that is no live
//! peer, waits twice or waits for a lock it holds, a waiter on a removed semaphore, an expired
//! memory over its bound or remembering an id that is live or not in its queue. Like an
//! operation's, the encoding is canonical: whatever decodes encodes back to the same bytes.

use std::collections::{BTreeMap, HashMap, VecDeque};

use crate::codec::{DecodeError, Reader, Writer};
use crate::expired::{ExpiredPeers, REMEMBER_AT_MOST};
use crate::{
    Core, Held, HeldLock, Peer, PeerId, PendingLock, Semaphore, SemaphoreSettings, Time, Waiter,
};

/// The format version of a snapshot, its first byte.
pub const SNAPSHOT_VERSION: u8 = 1;

/// The fewest bytes each item takes, so counts are checked against the input before anything
/// is allocated for them: a semaphore (empty name, max, level, flag), a peer (id, deadline of
/// two bytes, name flag, number of locks), a lock (index, count, token), a waiter (ticket, id,
/// count, since, lease flag), an expired entry (time, id) and a remembered id.
const SEMAPHORE_BYTES: usize = 4;
const PEER_BYTES: usize = 12;
const LOCK_BYTES: usize = 3;
const WAITER_BYTES: usize = 13;
const EXPIRED_BYTES: usize = 10;
const REMEMBERED_BYTES: usize = 8;

impl Core {
    /// The whole state as bytes (see the module docs). The same state always gives the same
    /// bytes, whatever the order the peers' map keeps. Walks every peer and waiter once, plus
    /// a sort of the peer ids.
    pub fn encode_snapshot(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + 32 * self.peers.len());
        let mut w = Writer::new(&mut out);
        w.byte(SNAPSHOT_VERSION);
        w.varint(self.next_ticket);
        w.varint(self.next_token);
        w.varint(self.expired_total);
        w.option(self.grace_until, Writer::time);

        w.len(self.semaphores.len());
        for sem in &self.semaphores {
            w.str(&sem.settings.name);
            w.int(sem.settings.max);
            w.int(i64::from(sem.settings.level));
            w.flag(sem.removed);
        }

        let mut peers: Vec<(&PeerId, &Peer)> = self.peers.iter().collect();
        peers.sort_unstable_by_key(|&(&id, _)| id);
        w.len(peers.len());
        for (&id, peer) in peers {
            w.id(id);
            w.time(peer.expires_at);
            w.option(peer.name.as_deref(), Writer::str);
            w.len(peer.acquired.len());
            for lock in peer.acquired.iter() {
                w.len(lock.semaphore);
                w.int(lock.count);
                w.varint(lock.token);
            }
        }

        for sem in &self.semaphores {
            w.len(sem.queue.len());
            for (&ticket, waiter) in &sem.queue {
                w.varint(ticket);
                w.id(waiter.peer);
                w.int(waiter.count);
                w.time(waiter.since);
                w.option(waiter.lease, Writer::duration);
            }
        }

        let queue = self.expired_peers.queue();
        w.len(queue.len());
        for (forget_at, id) in queue {
            w.time(forget_at);
            w.id(id);
        }
        let remembered = self.expired_peers.remembered_ids();
        w.len(remembered.len());
        for id in remembered {
            w.id(id);
        }
        out
    }

    /// The core `bytes` describe, exactly as [`Core::encode_snapshot`] wrote it; indexes and
    /// sums are rebuilt from the data, and a state that could not have been written is refused
    /// (see the module docs). Never panics, and allocates no more than a small multiple of the
    /// input's size.
    pub fn decode_snapshot(bytes: &[u8]) -> Result<Core, DecodeError> {
        let mut r = Reader::new(bytes);
        r.version(SNAPSHOT_VERSION, "a snapshot")?;
        let mut core = Core {
            next_ticket: r.varint()?,
            next_token: r.varint()?,
            expired_total: r.varint()?,
            grace_until: r.option(Reader::time)?,
            ..Core::default()
        };
        read_semaphores(&mut r, &mut core)?;
        read_peers(&mut r, &mut core)?;
        for index in 0..core.semaphores.len() {
            read_queue(&mut r, &mut core, index)?;
        }
        core.expired_peers = read_expired(&mut r, &core)?;
        r.finish()?;
        Ok(core)
    }
}

fn read_semaphores(r: &mut Reader, core: &mut Core) -> Result<(), DecodeError> {
    let count = r.count(SEMAPHORE_BYTES)?;
    core.semaphores.reserve(count);
    for _ in 0..count {
        let at = r.offset();
        let settings = SemaphoreSettings {
            name: r.string()?,
            max: r.int()?,
            level: r.int32()?,
        };
        let removed = r.flag()?;
        if core.by_name.contains_key(&settings.name) {
            return Err(r.invalid(at, "a semaphore name is given twice"));
        }
        core.add_semaphore(settings, removed);
    }
    Ok(())
}

fn read_peers(r: &mut Reader, core: &mut Core) -> Result<(), DecodeError> {
    let count = r.count(PEER_BYTES)?;
    core.peers.reserve(count);
    let mut last = None;
    for _ in 0..count {
        let at = r.offset();
        let id = r.id()?;
        if last.is_some_and(|last| last >= id) {
            return Err(r.invalid(at, "peers out of order or repeated"));
        }
        last = Some(id);
        let expires_at = r.time()?;
        let name = r.option(|r| r.str().map(Box::from))?;
        let locks = r.count(LOCK_BYTES)?;
        let mut acquired = Vec::with_capacity(locks);
        for _ in 0..locks {
            let at = r.offset();
            let lock = HeldLock {
                semaphore: r.index()?,
                count: r.int()?,
                token: r.varint()?,
            };
            let Some(sem) = core.semaphores.get_mut(lock.semaphore) else {
                return Err(r.invalid(at, "a lock on a semaphore that does not exist"));
            };
            if acquired
                .last()
                .is_some_and(|last: &HeldLock| last.semaphore >= lock.semaphore)
            {
                return Err(r.invalid(at, "a peer's locks out of order or repeated"));
            }
            if lock.count < 1 {
                return Err(r.invalid(at, "a lock count below 1"));
            }
            if lock.token >= core.next_token {
                return Err(r.invalid(at, "a fencing token not below the next one"));
            }
            sem.acquired = sem
                .acquired
                .checked_add(lock.count)
                .ok_or_else(|| r.invalid(at, "a semaphore's acquired sum overflows"))?;
            acquired.push(lock);
        }
        core.peers.insert(
            id,
            Peer {
                expires_at,
                acquired: Held(acquired),
                pending: None,
                name,
            },
        );
        core.deadlines.insert((expires_at, id));
    }
    Ok(())
}

fn read_queue(r: &mut Reader, core: &mut Core, index: usize) -> Result<(), DecodeError> {
    let count = r.count(WAITER_BYTES)?;
    let mut queue = BTreeMap::new();
    let mut pending_sum: i64 = 0;
    for _ in 0..count {
        let at = r.offset();
        let ticket = r.varint()?;
        let waiter = Waiter {
            peer: r.id()?,
            count: r.int()?,
            since: r.time()?,
            lease: r.option(Reader::duration)?,
        };
        if core.semaphores[index].removed {
            return Err(r.invalid(at, "a waiter on a removed semaphore"));
        }
        if ticket >= core.next_ticket
            || queue
                .last_key_value()
                .is_some_and(|(&last, _)| last >= ticket)
        {
            return Err(r.invalid(at, "a ticket out of order or not below the next one"));
        }
        if waiter.count < 1 {
            return Err(r.invalid(at, "a lock count below 1"));
        }
        let Some(peer) = core.peers.get_mut(&waiter.peer) else {
            return Err(r.invalid(at, "a waiter that is no live peer"));
        };
        if peer.pending.is_some() {
            return Err(r.invalid(at, "a peer that waits twice"));
        }
        if peer.acquired.get(index).is_some() {
            return Err(r.invalid(at, "a peer that waits for a lock it holds"));
        }
        pending_sum = pending_sum
            .checked_add(waiter.count)
            .ok_or_else(|| r.invalid(at, "a semaphore's pending sum overflows"))?;
        peer.pending = Some(PendingLock {
            semaphore: index,
            count: waiter.count,
            ticket,
        });
        queue.insert(ticket, waiter);
    }
    let sem: &mut Semaphore = &mut core.semaphores[index];
    sem.queue = queue;
    sem.pending = pending_sum;
    Ok(())
}

fn read_expired(r: &mut Reader, core: &Core) -> Result<ExpiredPeers, DecodeError> {
    let at = r.offset();
    let count = r.count(EXPIRED_BYTES)?;
    if count > REMEMBER_AT_MOST {
        return Err(r.invalid(at, "more expired peers than are ever remembered"));
    }
    let mut queue = VecDeque::with_capacity(count);
    // Each id with the time of its last entry: the time it is remembered until, if it is.
    let mut last_entry: HashMap<PeerId, Time> = HashMap::with_capacity(count);
    for _ in 0..count {
        let forget_at = r.time()?;
        let id = r.id()?;
        queue.push_back((forget_at, id));
        last_entry.insert(id, forget_at);
    }
    let count = r.count(REMEMBERED_BYTES)?;
    let mut forget_at = HashMap::with_capacity(count);
    let mut last = None;
    for _ in 0..count {
        let at = r.offset();
        let id = r.id()?;
        if last.is_some_and(|last| last >= id) {
            return Err(r.invalid(at, "remembered ids out of order or repeated"));
        }
        last = Some(id);
        let Some(&until) = last_entry.get(&id) else {
            return Err(r.invalid(at, "a remembered id that is not in the queue"));
        };
        if core.peers.contains_key(&id) {
            return Err(r.invalid(at, "a remembered id that is a live peer"));
        }
        forget_at.insert(id, until);
    }
    Ok(ExpiredPeers::from_parts(queue, forget_at))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::properties::Observed;
    use crate::tests::support::*;
    use crate::{LockState, Op};

    /// A state with something of everything: names, held and queued locks with leases, a
    /// removed semaphore still held, restored tokens, a grace period, expired peers (one of
    /// them restored and expired again, so the memory's queue has a stale entry).
    fn busy_core() -> (Core, Time) {
        let (mut c, t0) = with_peers(&[("A", 2, 1), ("B", 1, 0), ("gone", 1, 0)], 6);
        c.set_name(1, Some("build-7 ✓"));
        acquire(&mut c, 1, "A", 2, t0);
        c.acquire(2, "A", 1, Some(t0 + secs(30)), t0 + secs(1))
            .unwrap();
        acquire(&mut c, 3, "A", 2, t0 + secs(2));
        acquire(&mut c, 4, "gone", 1, t0);
        acquire(&mut c, 5, "B", 1, t0);
        acquire(&mut c, 6, "B", 1, t0 + secs(3));
        c.reconfigure(settings(&[("A", 2, 1), ("B", 1, 0)]), t0 + secs(4));
        let tokens = BTreeMap::from([("A".to_owned(), 1_000)]);
        c.restore(9, t0 + secs(50), &locks(&[("A", 1), ("B", 1)]), &tokens)
            .unwrap();
        c.new_peer(20, t0 + secs(5));
        c.new_peer(21, t0 + secs(6));
        c.expire(t0 + secs(5));
        c.restore(20, t0 + secs(6), &BTreeMap::new(), &BTreeMap::new())
            .unwrap();
        c.expire(t0 + secs(6));
        c.load_expired(30, t0 + secs(100));
        c.begin_grace(t0 + secs(8));
        c.new_peer(22, t0 + secs(60));
        acquire(&mut c, 22, "A", 1, t0 + secs(7));
        (c, t0 + secs(7))
    }

    #[track_caller]
    fn round_trip(core: &Core) -> Core {
        let bytes = core.encode_snapshot();
        let rebuilt = Core::decode_snapshot(&bytes).unwrap();
        assert!(rebuilt.encode_snapshot() == bytes);
        rebuilt
    }

    /// Both cores look the same at `now`, queues and deadlines included.
    #[track_caller]
    fn same(a: &Core, b: &Core, now: Time) {
        assert_eq!(Observed::of(a, now), Observed::of(b, now));
        assert_eq!(a.export(now), b.export(now));
        assert_eq!(
            a.peers_expiring_first(usize::MAX),
            b.peers_expiring_first(usize::MAX)
        );
        for name in ["A", "B", "gone"] {
            assert_eq!(
                a.waiters(name, usize::MAX, now),
                b.waiters(name, usize::MAX, now)
            );
        }
    }

    #[test]
    fn a_rebuilt_core_answers_every_later_operation_alike() {
        let (original, now) = busy_core();
        let mut original = original;
        let mut rebuilt = round_trip(&original);
        same(&original, &rebuilt, now);
        assert_eq!(rebuilt.lock_state(22, "A"), Ok(Some(LockState::Pending)));
        assert_eq!(
            rebuilt.acquire(4, "gone", 1, None, now).unwrap().token,
            Some(2)
        );
        let acquire = |id, semaphore: &str, count| Op::Acquire {
            id,
            semaphore: semaphore.to_owned(),
            count,
            expires_at: None,
        };
        let release = |id, semaphore: &str| Op::ReleaseLock {
            id,
            semaphore: semaphore.to_owned(),
        };
        let ops = [
            acquire(4, "gone", 1),
            acquire(3, "A", 2),
            Op::Expire,
            release(1, "A"),
            acquire(6, "B", 1),
            release(9, "B"),
            Op::NewPeer {
                id: 20,
                expires_at: now + secs(100),
                name: None,
            },
            release(2, "A"),
            Op::Reconfigure {
                semaphores: settings(&[("A", 5, 1), ("gone", 1, 0)]),
            },
            acquire(6, "gone", 1),
            Op::Expire,
        ];
        for (i, op) in ops.iter().enumerate() {
            let at = now + secs(2 * i as u64);
            assert_eq!(rebuilt.apply(at, op), original.apply(at, op), "{op:?}");
            same(&original, &rebuilt, at);
        }
        // Past every deadline and the memory's bound in time: both empty out alike.
        let late = now + secs(3_600);
        assert_eq!(
            rebuilt.apply(late, &Op::Expire),
            original.apply(late, &Op::Expire)
        );
        assert_eq!(rebuilt.num_peers(), 0);
        assert!(rebuilt.encode_snapshot() == original.encode_snapshot());
    }

    #[test]
    fn empty_cores_round_trip() {
        let t0 = Time::ZERO;
        for c in [
            Core::default(),
            core(&[]),
            core(&[("", i64::MIN, i32::MIN)]),
        ] {
            same(&c, &round_trip(&c), t0);
        }
        assert_eq!(
            Core::default().encode_snapshot(),
            [1, 0, 0, 0, 0, 0, 0, 0, 0]
        );
    }

    #[test]
    fn extreme_values_round_trip() {
        let max_time = Time::from_epoch(Duration::MAX);
        let mut c = core(&[("A", i64::MAX, i32::MAX), ("🚦", 1, i32::MIN)]);
        c.raise_next_token(u64::MAX - 1);
        let locks = locks(&[("A", i64::MAX)]);
        let tokens = BTreeMap::from([("A".to_owned(), crate::MAX_TOKEN)]);
        c.restore(u64::MAX, max_time, &locks, &tokens).unwrap();
        c.new_peer(0, max_time);
        c.set_name(0, Some(&"n".repeat(100_000)));
        c.acquire(0, "🚦", 1, Some(max_time), Time::ZERO).unwrap();
        c.begin_grace(max_time);
        c.load_expired(1, max_time);
        let rebuilt = round_trip(&c);
        same(&c, &rebuilt, Time::ZERO);
        assert_eq!(rebuilt.next_token(), u64::MAX);
        assert_eq!(rebuilt.remainder("A"), Ok(0));
    }

    #[test]
    fn truncated_and_damaged_snapshots_never_panic() {
        let bytes = busy_core().0.encode_snapshot();
        for len in 0..bytes.len() {
            let error = Core::decode_snapshot(&bytes[..len]).expect_err("a prefix decoded");
            assert!(error.offset() <= len, "{error} for {len} bytes");
        }
        let mut rng = Rng::new(25);
        let mut decoded = 0;
        for _ in 0..20_000 {
            let mut damaged = bytes.clone();
            for _ in 0..1 + rng.below(3) {
                let i = rng.below(damaged.len() as u64) as usize;
                damaged[i] ^= 1 << rng.below(8);
            }
            if let Ok(core) = Core::decode_snapshot(&damaged) {
                assert!(core.encode_snapshot() == damaged);
                decoded += 1;
            }
        }
        // Flips in deadlines, names and counts still decode: the check above has work.
        assert!(decoded > 1000, "{decoded}");
    }

    /// `(semaphore, count, token)`.
    type RawLock = (usize, i64, u64);

    /// A snapshot written field by field, to state what the decoder must refuse.
    struct Raw {
        next_ticket: u64,
        next_token: u64,
        /// `(name, removed)`.
        semaphores: Vec<(&'static str, bool)>,
        /// `(id, locks)`.
        peers: Vec<(PeerId, Vec<RawLock>)>,
        /// Per semaphore: `(ticket, peer, count)`.
        queues: Vec<Vec<(u64, PeerId, i64)>>,
        /// `(forget at in seconds, id)`.
        expired: Vec<(u64, PeerId)>,
        remembered: Vec<PeerId>,
    }

    impl Raw {
        /// Two semaphores (`B` removed), peers 1 and 2, peer 2 waiting on `A`, peer 7 expired.
        fn valid() -> Raw {
            Raw {
                next_ticket: 5,
                next_token: 10,
                semaphores: vec![("A", false), ("B", true)],
                peers: vec![(1, vec![(0, 1, 3), (1, 2, 4)]), (2, vec![])],
                queues: vec![vec![(4, 2, 1)], vec![]],
                expired: vec![(60, 7), (70, 8)],
                remembered: vec![7],
            }
        }

        fn bytes(&self) -> Vec<u8> {
            let mut out = Vec::new();
            let mut w = Writer::new(&mut out);
            w.byte(SNAPSHOT_VERSION);
            w.varint(self.next_ticket);
            w.varint(self.next_token);
            w.varint(0);
            w.option(None, Writer::time);
            w.len(self.semaphores.len());
            for &(name, removed) in &self.semaphores {
                w.str(name);
                w.int(1);
                w.int(0);
                w.flag(removed);
            }
            w.len(self.peers.len());
            for (id, locks) in &self.peers {
                w.id(*id);
                w.time(Time::ZERO);
                w.option(None, Writer::str);
                w.len(locks.len());
                for &(semaphore, count, token) in locks {
                    w.len(semaphore);
                    w.int(count);
                    w.varint(token);
                }
            }
            for queue in &self.queues {
                w.len(queue.len());
                for &(ticket, peer, count) in queue {
                    w.varint(ticket);
                    w.id(peer);
                    w.int(count);
                    w.time(Time::ZERO);
                    w.option(None, Writer::duration);
                }
            }
            w.len(self.expired.len());
            for &(secs, id) in &self.expired {
                w.time(Time::from_epoch(Duration::from_secs(secs)));
                w.id(id);
            }
            w.len(self.remembered.len());
            for &id in &self.remembered {
                w.id(id);
            }
            out
        }
    }

    /// The snapshot `change` makes of a valid one is refused with a message containing
    /// `expected`.
    #[track_caller]
    fn refused(change: impl FnOnce(&mut Raw), expected: &str) {
        let mut raw = Raw::valid();
        change(&mut raw);
        match Core::decode_snapshot(&raw.bytes()) {
            Ok(core) => panic!("decoded {core:?}"),
            Err(error) => {
                let message = error.to_string();
                assert!(message.contains(expected), "{message:?} lacks {expected:?}");
            }
        }
    }

    #[test]
    fn the_field_by_field_snapshot_is_valid() {
        let bytes = Raw::valid().bytes();
        let mut c = Core::decode_snapshot(&bytes).unwrap();
        assert!(c.encode_snapshot() == bytes);
        assert_eq!(c.lock_state(2, "A"), Ok(Some(LockState::Pending)));
        assert_eq!(c.heartbeat(7, Time::ZERO), Err(crate::Error::ExpiredPeer));
        assert_eq!(c.heartbeat(8, Time::ZERO), Err(crate::Error::UnknownPeer));
        assert_eq!(c.overcommitted(), vec![("B", 2, 0)]);
    }

    #[test]
    fn impossible_states_are_refused() {
        refused(
            |r| r.semaphores[1].0 = "A",
            "a semaphore name is given twice",
        );
        refused(|r| r.peers.swap(0, 1), "peers out of order or repeated");
        refused(|r| r.peers[1].0 = 1, "peers out of order or repeated");
        refused(
            |r| r.peers[0].1[1].0 = 2,
            "a lock on a semaphore that does not exist",
        );
        refused(|r| r.peers[0].1.swap(0, 1), "a peer's locks out of order");
        refused(|r| r.peers[0].1[0].1 = 0, "a lock count below 1");
        refused(
            |r| r.peers[0].1[0].2 = 10,
            "a fencing token not below the next one",
        );
        refused(
            |r| r.peers[1].1.push((0, i64::MAX, 5)),
            "a semaphore's acquired sum overflows",
        );
        refused(
            |r| r.queues[0][0].0 = 5,
            "a ticket out of order or not below",
        );
        refused(
            |r| r.queues[0].push((3, 2, 1)),
            "a ticket out of order or not below",
        );
        refused(|r| r.queues[0][0].1 = 3, "a waiter that is no live peer");
        refused(|r| r.queues[0][0].2 = -1, "a lock count below 1");
        refused(
            |r| r.queues[0][0].1 = 1,
            "a peer that waits for a lock it holds",
        );
        refused(
            |r| {
                r.semaphores.push(("C", false));
                r.queues.push(vec![(3, 2, 1)]);
            },
            "a peer that waits twice",
        );
        refused(
            |r| r.queues[1].push((3, 2, 1)),
            "a waiter on a removed semaphore",
        );
        refused(|r| r.remembered = vec![8, 7], "remembered ids out of order");
        refused(
            |r| r.remembered.push(9),
            "a remembered id that is not in the queue",
        );
        refused(
            |r| {
                r.expired.push((80, 2));
                r.remembered.insert(0, 2);
            },
            "a remembered id that is a live peer",
        );
        refused(
            |r| r.expired = vec![(1, 1); REMEMBER_AT_MOST + 1],
            "more expired peers than are ever remembered",
        );
    }

    #[test]
    fn counts_beyond_the_input_and_other_versions_are_refused() {
        let mut bytes = vec![SNAPSHOT_VERSION, 0, 0, 0, 0];
        Writer::new(&mut bytes).varint(u64::MAX);
        let error = Core::decode_snapshot(&bytes).unwrap_err();
        assert_eq!(
            error.to_string(),
            format!(
                "a count of {} items exceeds the input (at byte 5)",
                u64::MAX
            )
        );
        let mut bytes = Raw::valid().bytes();
        bytes[0] = 2;
        let error = Core::decode_snapshot(&bytes).unwrap_err();
        assert_eq!(
            error.to_string(),
            "unknown format version 2 of a snapshot (at byte 0)"
        );
        let mut bytes = Raw::valid().bytes();
        bytes.push(0);
        let error = Core::decode_snapshot(&bytes).unwrap_err();
        assert!(
            error.to_string().starts_with("1 bytes follow the value"),
            "{error}"
        );
    }

    #[test]
    fn ten_thousand_peers_round_trip() {
        let t0 = Time::from_epoch(secs(1_000));
        let mut c = core(&[("A", 5_000, 1), ("B", 1, 0)]);
        for i in 0..10_000u64 {
            // Ids spread over the whole range, as the server draws them.
            let id = i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
            c.new_peer(id, t0 + secs(60 + i % 100));
            c.set_name(id, Some(&format!("worker-{i}")));
            c.acquire(id, "A", 1, None, t0 + Duration::from_millis(i))
                .unwrap();
        }
        let bytes = c.encode_snapshot();
        let rebuilt = Core::decode_snapshot(&bytes).unwrap();
        assert!(rebuilt.encode_snapshot() == bytes);
        assert_eq!(rebuilt.num_peers(), 10_000);
        assert_eq!(rebuilt.stats(t0)[0].pending, 5_000);
        same(&c, &rebuilt, t0 + secs(30));
    }
}
