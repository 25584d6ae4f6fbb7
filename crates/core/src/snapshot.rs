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
