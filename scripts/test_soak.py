"""Unit tests of the soak test's own checks (scripts/soak.py), without a server."""

import sys
from datetime import timedelta
from pathlib import Path
from typing import Dict, List, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))
import soak  # noqa: E402
from throttle_client import PeerState  # noqa: E402


def peer(lease_ms: int, acquired: Optional[Dict[str, int]] = None,
         pending: Optional[Dict[str, int]] = None) -> PeerState:
    return PeerState(id=7, acquired=acquired or {}, pending=pending or {},
                     expires_in=timedelta(milliseconds=lease_ms))


def problems(before: PeerState, after: PeerState, between: float) -> List[str]:
    # Listed at 0 s and at `between` s, each answered at once.
    found, _, _, _ = soak.compare_peers([before], 0.0, 0.0, [after], between, between)
    return found


def test_a_lease_shortened_by_the_time_between_the_listings_is_kept() -> None:
    assert problems(peer(2000, {"db": 1}), peer(1000, {"db": 1}), 1.0) == []


def test_a_lease_that_outlived_its_deadline_is_a_problem() -> None:
    found = problems(peer(829, {"db": 1}), peer(35, {"db": 1}), 0.968)
    assert len(found) == 1 and "lease 35 ms after the restart" in found[0]


def test_a_lock_granted_in_between_starts_its_lease_at_the_grant() -> None:
    # Pending before, granted by an expiry between the listings: the lease asked for began
    # at the grant, so it outlasts the one listed before.
    assert problems(peer(829, pending={"db": 1}), peer(35, {"db": 1}), 0.968) == []


def test_a_granted_lock_still_cannot_outlast_the_longest_lease() -> None:
    longest = int(soak.MAX_LEASE * 1000)
    found = problems(peer(829, pending={"db": 1}), peer(longest + 500, {"db": 1}), 0.968)
    assert len(found) == 1


def grant(token: int, earliest: float, latest: float, who: str = "c") -> soak.Grant:
    return soak.Grant("mutex", token, earliest, latest, who)


def test_fencing_tokens_growing_in_grant_order_are_no_problem() -> None:
    grants = [grant(5, 0.0, 1.0), grant(9, 1.5, 2.0), grant(12, 2.5, 3.0)]
    assert soak.fencing_problems(grants) == []


def test_a_token_below_one_granted_certainly_before_is_a_problem() -> None:
    found = soak.fencing_problems([grant(9, 0.0, 1.0, "first"), grant(7, 1.5, 2.0, "second")])
    assert len(found) == 1 and "token 7 granted to second" in found[0] and "token 9" in found[0]


def test_a_repeated_token_is_a_problem() -> None:
    assert len(soak.fencing_problems([grant(4, 0.0, 1.0), grant(4, 2.0, 3.0)])) == 1


def test_grants_whose_windows_overlap_may_come_in_either_order() -> None:
    # Both may have been granted between 0.5 and 1.0: no order is certain.
    assert soak.fencing_problems([grant(9, 0.0, 1.0), grant(7, 0.5, 2.0)]) == []


def test_a_grant_without_a_token_is_a_problem() -> None:
    found = soak.fencing_problems([soak.Grant("db", None, 0.0, 1.0, "c")])
    assert len(found) == 1 and "without a fencing token" in found[0]


def test_the_faults_take_turns_one_per_thirty_seconds_each_at_least_once() -> None:
    kinds = ["kill-leader", "pause"]
    assert soak.chaos_schedule(kinds, 30) == kinds
    assert soak.chaos_schedule(kinds, 95) == kinds + ["kill-leader"]
    assert soak.chaos_schedule([], 600) == []
    assert len(soak.chaos_schedule(list(soak.CHAOS), 600)) == 20
