//! The JSON of peers, as `GET /peers/` (every peer) and `GET /peers/{id}` (one) answer it,
//! from the core's [`PeerInfo`] views.
//!
//! The listing is the one body written under the state lock: batch by batch (`LISTING_BATCH`
//! says what was measured), straight from the borrowed views into a buffer, so no peer is
//! copied. One peer is copied out under the lock and written after it. This file knows the
//! service only to hold the lock once per batch; it knows nothing of HTTP (that is `workers.rs`)
//! and nothing of the status page's JSON (that is `status.rs`).

use std::io::Write as _;

use crate::error::Error;
use crate::service::Service;
use throttle_core::{Core, PeerId, PeerInfo, Time};

/// Peers written per hold of the state lock by `GET /peers/`: with 500,000 peers, one hold
/// for all of them kept every other request waiting for a quarter of a second.
const LISTING_BATCH: usize = 2_000;

/// The body of `GET /peers/`: every peer, ordered by id. The ids are taken under the lock at
/// once, the peers looked up and written in batches, each under the lock for about a
/// millisecond, so an acquire never waits long behind a listing. Each peer is shown as it was
/// when its batch was written; a peer that went away meanwhile is left out, one created
/// meanwhile is not shown.
pub fn list(service: &Service) -> Result<Vec<u8>, Error> {
    let mut ids = service.read(|core, _, _| core.peer_ids())?;
    ids.sort_unstable();
    let mut out = Vec::with_capacity(ids.len().saturating_mul(120).saturating_add(2));
    out.push(b'[');
    // Each batch is written under the lock into a buffer of its own, which keeps its capacity
    // from batch to batch; appending it to the answer (which may grow, a copy of tens of
    // megabytes) happens after the lock is released.
    let mut batch_json = Vec::new();
    for batch in ids.chunks(LISTING_BATCH) {
        batch_json.clear();
        service.inspect(|core, _, now| write_batch(&mut batch_json, core, batch, now));
        if !batch_json.is_empty() {
            if out.len() > 1 {
                out.push(b',');
            }
            out.extend_from_slice(&batch_json);
        }
    }
    out.push(b']');
    Ok(out)
}

/// Appends the peers of `ids` that are known, each as [`write_peer`] writes it, separated by
/// commas. Written straight into the buffer from the core's borrowed views, because it runs
/// under the state lock.
fn write_batch(out: &mut Vec<u8>, core: &Core, ids: &[PeerId], now: Time) {
    for &id in ids {
        let Some(peer) = core.peer(id, now) else {
            continue;
        };
        if !out.is_empty() {
            out.push(b',');
        }
        write_peer(out, peer);
    }
}

/// The body of `GET /peers/{id}`: one peer as [`write_peer`] writes it. It takes an owned copy
/// (see [`PeerInfo`]), so it is written after the state lock is released.
pub fn peer(peer: PeerInfo<String>) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    write_peer(&mut out, peer);
    out
}

/// Appends one peer as `{"acquired":{..},"expires_in_ms":..,"fencing_tokens":{..},"id":..,
/// "name":..,"pending":{..}}`: keys and semaphore names in alphabetical order, `acquired` and
/// `pending` as Throttle 0.5 wrote them (name to count), the tokens beside them as a restore
/// takes them (name to token), `name` null for a peer without one. `GET /peers/{id}` answers
/// this object, `GET /peers/` a list of them. Takes the view by value to sort its locks in
/// place: under the lock, that saves an allocation per peer.
fn write_peer<N: AsRef<str>>(out: &mut Vec<u8>, mut peer: PeerInfo<N>) {
    peer.acquired
        .sort_unstable_by(|(a, _, _), (b, _, _)| a.as_ref().cmp(b.as_ref()));
    out.extend_from_slice(b"{\"acquired\":");
    json_map(
        out,
        peer.acquired
            .iter()
            .map(|(name, count, _)| (name.as_ref(), count)),
    );
    // Writing into a Vec cannot fail.
    let _ = write!(
        out,
        ",\"expires_in_ms\":{},\"fencing_tokens\":",
        peer.expires_in.as_millis()
    );
    json_map(
        out,
        peer.acquired
            .iter()
            .map(|(name, _, token)| (name.as_ref(), token)),
    );
    let _ = write!(out, ",\"id\":{},\"name\":", peer.id);
    let _ = serde_json::to_writer(&mut *out, &peer.name.as_ref().map(AsRef::as_ref));
    out.extend_from_slice(b",\"pending\":");
    json_map(
        out,
        peer.pending
            .iter()
            .map(|(name, count)| (name.as_ref(), count)),
    );
    out.push(b'}');
}

/// Writes `{"name":number,...}` in the order given.
fn json_map<'a, N: std::fmt::Display>(
    out: &mut Vec<u8>,
    entries: impl Iterator<Item = (&'a str, N)>,
) {
    out.push(b'{');
    for (i, (name, number)) in entries.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let _ = serde_json::to_writer(&mut *out, name);
        let _ = write!(out, ":{number}");
    }
    out.push(b'}');
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_peer_listing_is_the_json_of_its_fields() {
        use throttle_core::SemaphoreSettings;
        let settings = |name: &str, max, level| SemaphoreSettings {
            name: name.into(),
            max,
            level,
        };
        let mut core = Core::new(vec![
            settings("zeta", 1, 3),
            settings("a\"b", 1, 2),
            settings("q", 1, 1),
        ]);
        let now = Time::from_epoch(Duration::from_secs(1_000));
        core.new_peer(7, now + Duration::from_secs(10));
        core.acquire(7, "zeta", 1, None, now).unwrap();
        core.acquire(7, "a\"b", 1, None, now).unwrap();
        core.new_peer(3, now + Duration::from_millis(1500));
        core.new_peer(5, now + Duration::from_secs(1));
        core.acquire(5, "zeta", 1, None, now).unwrap();
        core.acquire(3, "q", 1, None, now).unwrap();
        core.set_name(3, Some("host \"x\" ü:42"));
        let expected = serde_json::json!([
            {"id": 3, "acquired": {"q": 1}, "pending": {}, "expires_in_ms": 1500,
                "fencing_tokens": {"q": 3}, "name": "host \"x\" ü:42"},
            {"id": 5, "acquired": {}, "pending": {"zeta": 1}, "expires_in_ms": 1000,
                "fencing_tokens": {}, "name": null},
            {"id": 7, "acquired": {"zeta": 1, "a\"b": 1}, "pending": {}, "expires_in_ms": 10000,
                "fencing_tokens": {"zeta": 1, "a\"b": 2}, "name": null},
        ]);
        let listing = |core: &Core, ids: &[PeerId]| {
            let mut out = Vec::new();
            write_batch(&mut out, core, ids, now);
            [b"[".as_slice(), &out, b"]"].concat()
        };
        // Unknown ids (a peer gone between taking the ids and writing its batch) are skipped.
        assert_eq!(
            listing(&core, &[3, 4, 5, 7]),
            expected.to_string().into_bytes()
        );
        assert_eq!(listing(&Core::new(Vec::new()), &[1]), b"[]");
    }

    #[test]
    fn one_peer_is_the_object_the_listing_holds() {
        let peer = PeerInfo {
            id: 9,
            acquired: vec![("b".to_owned(), 2, 5), ("a".to_owned(), 1, 4)],
            pending: None,
            expires_in: Duration::from_millis(250),
            name: None,
        };
        assert_eq!(
            String::from_utf8(super::peer(peer)).unwrap(),
            r#"{"acquired":{"a":1,"b":2},"expires_in_ms":250,"fencing_tokens":{"a":4,"b":5},"id":9,"name":null,"pending":{}}"#
        );
    }
}
