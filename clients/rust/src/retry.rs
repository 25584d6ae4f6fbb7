//! When to ask the next member, when to pause and when to give up: the retry schedule of
//! [`Client`](crate::Client)'s requests, as plain bookkeeping with time as a parameter.
//!
//! It is not the long-poll loop of a waiting lock (see `lock.rs`), which waits on the server's
//! side and has a timeout of its own rather than a retry budget.

use std::time::Duration;

use crate::backoff::Backoff;

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Next {
    /// Ask the next member now: the round of all members is not over.
    Ask,
    /// Every member was asked: pause this long, then start a round again.
    Pause(Duration),
    /// The budget is spent: report the failures.
    GiveUp,
}

/// The schedule of one request over `members` members and a retry `budget`.
///
/// Every member is asked at least once, whatever the budget. After each round of all members
/// comes a growing, jittered pause; the pause that would reach past the budget is cut to end
/// at it, and one last round follows, so a request keeps trying for its whole budget, not for
/// a random part of it.
#[derive(Debug)]
pub(crate) struct Schedule {
    members: usize,
    budget: Duration,
    backoff: Backoff,
    /// Members asked since the last pause.
    asked: usize,
    /// Whether a round was completed already.
    asked_all: bool,
    /// Whether the round under way began at the end of the budget.
    last_round: bool,
}

impl Schedule {
    pub(crate) fn new(members: usize, budget: Duration) -> Schedule {
        Schedule {
            members: members.max(1),
            budget,
            backoff: Backoff::new(Duration::from_millis(50), Duration::from_secs(2)),
            asked: 0,
            asked_all: false,
            last_round: false,
        }
    }

    /// Decides what follows a failure, `elapsed` after the request began.
    pub(crate) fn after_failure(&mut self, elapsed: Duration) -> Next {
        self.asked += 1;
        if self.asked < self.members {
            // Within a round, stop early only once the budget is spent and every member was
            // asked at least once; the last round asks every member.
            return if self.asked_all && !self.last_round && elapsed >= self.budget {
                Next::GiveUp
            } else {
                Next::Ask
            };
        }
        self.asked = 0;
        self.asked_all = true;
        let remaining = self.budget.saturating_sub(elapsed);
        if self.last_round || remaining.is_zero() {
            return Next::GiveUp;
        }
        let pause = self.backoff.next_pause();
        if pause >= remaining {
            self.last_round = true;
            return Next::Pause(remaining);
        }
        Next::Pause(pause)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const fn ms(millis: u64) -> Duration {
        Duration::from_millis(millis)
    }

    /// Runs a schedule whose attempts each take `attempt`, returning the time it gives up at.
    fn give_up_time(members: usize, budget: Duration, attempt: Duration) -> (Duration, usize) {
        let mut schedule = Schedule::new(members, budget);
        let (mut now, mut attempts) = (Duration::ZERO, 0);
        loop {
            now += attempt;
            attempts += 1;
            match schedule.after_failure(now) {
                Next::Ask => {}
                Next::Pause(pause) => now += pause,
                Next::GiveUp => return (now, attempts),
            }
        }
    }

    #[test]
    fn every_member_is_asked_once_even_without_a_budget() {
        assert_eq!(give_up_time(3, Duration::ZERO, ms(1)), (ms(3), 3));
        assert_eq!(give_up_time(1, Duration::ZERO, ms(1)), (ms(1), 1));
    }

    #[test]
    fn a_request_keeps_trying_for_its_whole_budget() {
        for _ in 0..200 {
            let (gave_up, attempts) = give_up_time(3, ms(1000), ms(1));
            assert!(gave_up >= ms(1000) && gave_up <= ms(1003), "{gave_up:?}");
            assert!(attempts >= 3 * 5, "{attempts} attempts: too few rounds");
        }
    }

    #[test]
    fn pauses_come_only_between_rounds() {
        let mut schedule = Schedule::new(3, ms(10_000));
        assert_eq!(schedule.after_failure(ms(1)), Next::Ask);
        assert_eq!(schedule.after_failure(ms(2)), Next::Ask);
        let Next::Pause(pause) = schedule.after_failure(ms(3)) else {
            panic!("no pause after a round");
        };
        assert!(pause >= ms(25) && pause <= ms(50), "{pause:?}");
        assert_eq!(schedule.after_failure(ms(60)), Next::Ask);
    }

    #[test]
    fn slow_members_end_the_request_once_the_budget_is_spent() {
        // Each attempt takes longer than the budget: one round, then the error.
        assert_eq!(give_up_time(3, ms(100), ms(500)), (ms(1500), 3));
        // Past the budget, a round under way stops at the next failure: two members, 400 ms
        // each, a round ends at 800 ms, a pause of 25 to 50 ms, and the third attempt ends
        // past the budget.
        let (gave_up, attempts) = give_up_time(2, ms(1000), ms(400));
        assert_eq!(attempts, 3);
        assert!(gave_up >= ms(1225) && gave_up <= ms(1250), "{gave_up:?}");
    }
}
