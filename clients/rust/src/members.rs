//! Which member a client of several asks first, and how that follows the leader: plain
//! bookkeeping with time as a parameter, fed by [`Client`](crate::Client)'s requests.
//!
//! A cluster member names itself (`Throttle-Member: <id>`) and the leader it knows
//! (`Throttle-Leader: <id>`) in every answer. From that the bookkeeping learns which URL is which
//! member, and moves the next requests to the URL known to have the leader's id, or, while none
//! is known to have it, to the next member whose id it does not know yet: after at most one
//! answer from each member it talks to the leader, without asking anyone extra. A failure
//! (unreachable, no quorum) moves on to the next member, as before any member is known, and for
//! [`AVOID_AFTER_FAILURE`] the hints do not lead back to the member that failed: followers go on
//! naming a killed leader until they elect another.
//!
//! What this is not: the retry schedule (`retry.rs`), the requests themselves (`client.rs`).

use std::time::{Duration, Instant};

/// How long a member that failed is not chosen by a leader hint. Longer than an election, so
/// the hints naming a killed leader (until the others elect one) do not lead back to it; short
/// enough that a member back on its feet and leading again is followed soon.
pub(crate) const AVOID_AFTER_FAILURE: Duration = Duration::from_secs(5);

/// What a client knows of the members it was given, by their index in its list of URLs.
#[derive(Debug, Clone)]
pub(crate) struct Members {
    /// The member asked first.
    current: usize,
    /// The id each member named itself with in its last answer; `None` until it answers with
    /// one (a single server, or a server without the header, never does).
    ids: Vec<Option<u64>>,
    /// When each member last failed, unless it answered since.
    failed: Vec<Option<Instant>>,
}

impl Members {
    /// `count` members (at least one), none known yet; the first is asked first.
    pub(crate) fn new(count: usize) -> Members {
        let count = count.max(1);
        Members {
            current: 0,
            ids: vec![None; count],
            failed: vec![None; count],
        }
    }

    /// The index of the member to ask first.
    pub(crate) fn current(&self) -> usize {
        self.current
    }

    /// Records an answer (any status) of member `index` at `now`: the id it named itself with
    /// and the leader it named. When it names a leader other than itself, the next requests
    /// go where that leader is known to be, or to the next member of unknown id; when it leads
    /// itself, they go to it.
    pub(crate) fn answered(
        &mut self,
        index: usize,
        member: Option<u64>,
        leader: Option<u64>,
        now: Instant,
    ) {
        let Some(slot) = self.ids.get_mut(index) else {
            return;
        };
        if member.is_some() {
            *slot = member;
        }
        self.failed[index] = None;
        let (Some(member), Some(leader)) = (member, leader) else {
            return;
        };
        if member == leader {
            self.current = index;
        } else if let Some(target) = self.towards(leader, index, now) {
            self.current = target;
        }
    }

    /// Records that member `index` failed at `now` (unreachable, or no quorum): the next
    /// request goes to the next member, unless another request moved on already.
    pub(crate) fn failed(&mut self, index: usize, now: Instant) {
        let count = self.ids.len();
        if let Some(failed) = self.failed.get_mut(index) {
            *failed = Some(now);
        }
        if self.current == index {
            self.current = (index + 1) % count;
        }
    }

    /// Where to go for `leader`, named by member `index`: a member known to have its id, or,
    /// if none is known to, the next member after `index` whose id is unknown; in both cases
    /// one that has not failed lately. `None` to stay.
    fn towards(&self, leader: u64, index: usize, now: Instant) -> Option<usize> {
        let count = self.ids.len();
        let usable = |j: usize| {
            self.failed[j].is_none_or(|at| now.saturating_duration_since(at) >= AVOID_AFTER_FAILURE)
        };
        let mut known = (0..count)
            .filter(|&j| self.ids[j] == Some(leader))
            .peekable();
        if known.peek().is_some() {
            return known.find(|&j| usable(j));
        }
        (1..count)
            .map(|offset| (index + offset) % count)
            .find(|&j| self.ids[j].is_none() && usable(j))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Asks the members in `members` order; answers as the member at each index with its id and
    /// the leader `leader`, until the client asks the leader. The number of requests it took.
    fn requests_to_reach(members: &mut Members, ids: &[u64], leader: u64, now: Instant) -> usize {
        for request in 1..=ids.len() {
            let index = members.current();
            if ids[index] == leader {
                return request;
            }
            members.answered(index, Some(ids[index]), Some(leader), now);
        }
        panic!("the leader was not reached: {members:?}");
    }

    #[test]
    fn the_first_answer_of_a_follower_leads_to_the_leader_when_its_url_is_known() {
        let now = Instant::now();
        let mut members = Members::new(3);
        // The client learned every id before: member 3 (index 2) leads, 1 answers.
        members.answered(0, Some(1), Some(1), now);
        members.answered(1, Some(2), Some(1), now);
        members.answered(2, Some(3), Some(3), now);
        assert_eq!(members.current(), 2);
        members.answered(2, Some(3), Some(2), now);
        assert_eq!(members.current(), 1, "straight to the URL with id 2");
    }

    #[test]
    fn unknown_members_are_tried_in_order_until_the_leader_answers() {
        let now = Instant::now();
        // URLs in an order unrelated to the ids; the leader is the last one asked.
        let ids = [2, 3, 1];
        let mut members = Members::new(3);
        assert_eq!(requests_to_reach(&mut members, &ids, 1, now), 3);
        assert_eq!(members.current(), 2);
        // Once there, the leader's own answers keep the client there.
        members.answered(2, Some(1), Some(1), now);
        assert_eq!(members.current(), 2);
        // The leader at the second URL: one hop.
        let mut members = Members::new(3);
        assert_eq!(requests_to_reach(&mut members, &ids, 3, now), 2);
        // The leader first: no hop at all.
        let mut members = Members::new(3);
        assert_eq!(requests_to_reach(&mut members, &ids, 2, now), 1);
    }

    #[test]
    fn a_change_of_leader_is_followed() {
        let now = Instant::now();
        let mut members = Members::new(3);
        for (index, id) in [(0, 1), (1, 2), (2, 3)] {
            members.answered(index, Some(id), Some(1), now);
        }
        assert_eq!(members.current(), 0);
        // Member 1 hands the lead to 3 and says so.
        members.answered(0, Some(1), Some(3), now);
        assert_eq!(members.current(), 2);
    }

    #[test]
    fn answers_without_a_leader_or_without_ids_move_nothing() {
        let now = Instant::now();
        let mut members = Members::new(3);
        // An election: the member names no leader.
        members.answered(0, Some(1), None, now);
        assert_eq!(members.current(), 0);
        // A server that names no member (a single server, an older version).
        members.answered(0, None, None, now);
        members.answered(0, None, Some(2), now);
        assert_eq!(members.current(), 0);
        // The id learned before is kept.
        members.answered(0, Some(1), Some(2), now);
        assert_eq!(members.current(), 1, "1 is known, so 2 is the next unknown");
    }

    #[test]
    fn failures_rotate_and_hints_do_not_lead_back_to_a_failed_member_for_a_while() {
        let now = Instant::now();
        let mut members = Members::new(3);
        for (index, id) in [(0, 1), (1, 2), (2, 3)] {
            members.answered(index, Some(id), Some(1), now);
        }
        assert_eq!(members.current(), 0);
        // The leader is killed: its failure moves on to the next member.
        members.failed(0, now);
        assert_eq!(members.current(), 1);
        // The survivors name the dead leader until they elect another: the client stays.
        let soon = now + Duration::from_millis(300);
        members.answered(1, Some(2), Some(1), soon);
        assert_eq!(members.current(), 1);
        // They elect member 3: followed.
        members.answered(1, Some(2), Some(3), soon);
        assert_eq!(members.current(), 2);
        // Long after, the old leader may be followed again.
        let later = now + AVOID_AFTER_FAILURE;
        members.answered(2, Some(3), Some(1), later);
        assert_eq!(members.current(), 0);
    }

    #[test]
    fn an_unknown_member_that_failed_is_skipped_when_looking_for_the_leader() {
        let now = Instant::now();
        let mut members = Members::new(3);
        members.failed(0, now);
        assert_eq!(members.current(), 1);
        // Member 2 (index 1) names leader 1, not known anywhere: index 2 is the next unknown
        // member, index 0 failed lately.
        members.answered(1, Some(2), Some(1), now);
        assert_eq!(members.current(), 2);
        members.answered(2, Some(3), Some(1), now);
        assert_eq!(members.current(), 2, "nowhere else to look: stays");
    }

    #[test]
    fn a_failure_of_a_member_not_asked_first_moves_nothing() {
        let now = Instant::now();
        let mut members = Members::new(3);
        members.answered(0, Some(1), Some(1), now);
        members.failed(2, now);
        assert_eq!(members.current(), 0);
        // A failure of the only member comes back to it.
        let mut alone = Members::new(1);
        alone.failed(0, now);
        assert_eq!(alone.current(), 0);
        alone.answered(0, Some(1), Some(2), now);
        assert_eq!(alone.current(), 0);
    }

    #[test]
    fn an_answer_from_the_leader_brings_the_client_to_it() {
        let now = Instant::now();
        let mut members = Members::new(3);
        members.failed(0, now);
        members.answered(2, Some(3), Some(3), now);
        assert_eq!(members.current(), 2);
        // An answer of an index out of range (never given by the client) changes nothing.
        members.answered(7, Some(1), Some(1), now);
        assert_eq!(members.current(), 2);
    }
}
