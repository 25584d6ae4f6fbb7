"""The pure decisions both clients share: long-poll slices and pauses (``Waiting``), and retry
pauses of one server (``_members.Attempts``; several members in ``test_members``), driven by a
fake clock, with no server."""

from __future__ import annotations

from datetime import timedelta
from typing import Optional

import pytest

from throttle_client import Timeout, UnexpectedResponse
from throttle_client._waiting import Waiting
from throttle_client._members import Attempts, Members

SLICE = timedelta(seconds=5)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def waiting(clock: Clock, timeout: Optional[float]) -> Waiting:
    limit = None if timeout is None else timedelta(seconds=timeout)
    return Waiting(limit, SLICE, "lock on 'A'", clock=clock)


def test_slices_are_the_longest_slice_until_the_deadline_is_nearer() -> None:
    clock = Clock()
    w = waiting(clock, 7.0)
    assert w.next_slice() == SLICE
    clock.now += 5.0
    assert w.after_pending() == 0.0  # A full long poll: ask again at once.
    assert w.next_slice() == timedelta(seconds=2)


def test_without_a_timeout_every_slice_is_full_and_never_times_out() -> None:
    clock = Clock()
    w = waiting(clock, None)
    for _ in range(100):
        assert w.next_slice() == SLICE
        clock.now += 3600.0
        assert w.after_pending() == 0.0


def test_early_answers_pause_longer_and_longer_up_to_a_second() -> None:
    clock = Clock()
    w = waiting(clock, None)
    pauses = []
    for _ in range(10):
        w.next_slice()
        clock.now += 0.001
        pauses.append(w.after_pending())
    assert 0.01 <= pauses[0] <= 0.02
    assert all(0.5 <= pause <= 1.0 for pause in pauses[-3:])
    # A full long poll resets the pause.
    w.next_slice()
    clock.now += 5.0
    assert w.after_pending() == 0.0
    w.next_slice()
    clock.now += 0.001
    assert w.after_pending() <= 0.02


def test_a_pause_never_reaches_past_the_deadline() -> None:
    clock = Clock()
    w = waiting(clock, 1.0)
    for _ in range(8):  # Grow the pause towards its cap of a second.
        w.next_slice()
        clock.now += 0.001
        w.after_pending()
    assert w.after_pending() <= 1.0 - 0.008 + 1e-9


def test_past_the_deadline_pending_and_restore_raise_timeout() -> None:
    clock = Clock()
    w = waiting(clock, 1.0)
    w.next_slice()
    clock.now += 1.0
    with pytest.raises(Timeout, match="lock on 'A' not granted within 0:00:01"):
        w.after_pending()
    with pytest.raises(Timeout):
        w.after_restore()


def test_a_restore_counts_as_an_early_answer() -> None:
    clock = Clock()
    w = waiting(clock, None)
    w.next_slice()
    clock.now += 5.0
    assert w.after_restore() > 0


def test_a_zero_timeout_asks_once_without_blocking() -> None:
    clock = Clock()
    w = waiting(clock, 0.0)
    assert w.next_slice() == timedelta(0)
    with pytest.raises(Timeout):
        w.after_pending()


def test_retries_pause_with_backoff_and_end_at_the_deadline() -> None:
    clock = Clock()
    attempts = Attempts(Members(["http://a:8000"]), timedelta(seconds=3), clock=clock)
    failure = UnexpectedResponse("Oops", 500)
    pauses = []
    with pytest.raises(UnexpectedResponse):
        while True:
            pause = attempts.failed(0, failure)
            pauses.append(pause)
            clock.now += pause
    assert 0.025 <= pauses[0] <= 0.05
    assert all(later > 0 for later in pauses)
    assert sum(pauses) == pytest.approx(3.0)
