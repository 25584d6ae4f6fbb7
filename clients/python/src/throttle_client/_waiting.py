"""The long-poll loop shared by ``lock`` and ``rate_limit``, blocking and asyncio alike.

Waiting for a grant is a series of acquire requests, each a long poll of at most one *slice*.
Slicing keeps the peer alive (every acquire prolongs it), lets the loop notice its own deadline,
and bounds how long a lost connection goes unnoticed. Acquire is idempotent, so asking again
neither queues a second lock nor loses the place in the queue.

The server may answer "still pending" long before the slice is over: when all its long-poll
slots are taken, while it shuts down, or when the pending lock was released under us. Asking
again at once would turn waiting into a busy loop against a busy server, so an early answer is
followed by a jittered, growing pause.

``Waiting`` holds these decisions and does no I/O, so the blocking loop here and the asyncio
loop of ``aio`` differ only in how they send a request and how they pause.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Callable, Optional

from ._backoff import Backoff
from .errors import Timeout, UnknownPeer

#: The longest single long poll of a waiting ``rate_limit``.
RATE_LIMIT_SLICE = timedelta(seconds=2)
#: How long a waiting ``rate_limit``'s peer lives without an acquire. While queued, the peer is
#: kept alive by each slice's acquire. A waiter that crashes blocks the queue behind it until its
#: peer expires, so this is kept to a few slices.
RATE_LIMIT_WAITING_EXPIRATION = 3 * RATE_LIMIT_SLICE

# An answer that arrives in less than this fraction of the slice counts as early.
_EARLY_FRACTION = 0.5


class Waiting:
    """The decisions of one wait for a grant: how long the next long poll may block, and how
    long to pause after an answer that did not grant the lock.

    * ``timeout``: raise ``Timeout`` once this has passed (``None``: wait as long as it takes).
    * ``longest_slice``: the longest single long poll.
    * ``what``: names the lock in the ``Timeout`` message.
    * ``clock``: seconds of a monotonic clock (a parameter so tests can drive it).
    """

    def __init__(
        self,
        timeout: Optional[timedelta],
        longest_slice: timedelta,
        what: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._timeout = timeout
        self._longest_slice = longest_slice
        self._what = what
        self._clock = clock
        self._deadline = None if timeout is None else clock() + timeout.total_seconds()
        self._pause = Backoff(first=0.02, cap=1.0)
        # As if an acquire without blocking had just been sent: a loop may ask once that way
        # before its first slice, and its "pending" is then not early.
        self._asked_at = clock()
        self._block_for = timedelta(0)

    def next_slice(self) -> timedelta:
        """The ``block_for`` of the next acquire: a slice, or what is left until the deadline
        if that is less. Call it right before sending the acquire."""
        block_for = self._longest_slice
        if self._deadline is not None:
            remaining = max(0.0, self._deadline - self._clock())
            block_for = min(block_for, timedelta(seconds=remaining))
        self._asked_at = self._clock()
        self._block_for = block_for
        return block_for

    def after_pending(self) -> float:
        """Seconds to pause after the server answered "still pending" (0 after a full long
        poll, a growing pause after an early one). Raises ``Timeout`` past the deadline."""
        elapsed = self._clock() - self._asked_at
        early = elapsed < self._block_for.total_seconds() * _EARLY_FRACTION
        return self._pause_or_give_up(early)

    def after_restore(self) -> float:
        """Seconds to pause after the server lost the peer and it was restored. Raises
        ``Timeout`` past the deadline.

        A restore right after another ``UnknownPeer`` would loop fast if the peer keeps
        vanishing (e.g. an expiration time shorter than a round trip), so it counts as early.
        """
        return self._pause_or_give_up(True)

    def _pause_or_give_up(self, early: bool) -> float:
        now = self._clock()
        if self._deadline is not None and now >= self._deadline:
            raise Timeout(f"{self._what} not granted within {self._timeout}")
        if not early:
            self._pause.reset()
            return 0.0
        delay = self._pause.next_delay()
        if self._deadline is not None:
            delay = min(delay, self._deadline - now)
        return delay


def wait_for_grant(
    acquire: Callable[[timedelta], bool],
    restore: Callable[[], None],
    timeout: Optional[timedelta],
    longest_slice: timedelta,
    what: str,
) -> None:
    """Call ``acquire(block_for)`` until it returns ``True``.

    ``restore`` is called when the server answers ``UnknownPeer`` (it restarted, or the peer
    expired), then waiting goes on. Raises ``Timeout`` once ``timeout`` has passed; cleaning up
    the pending lock is the caller's job, as only it knows what else the peer holds.
    """
    waiting = Waiting(timeout, longest_slice, what)
    while True:
        try:
            if acquire(waiting.next_slice()):
                return
            pause = waiting.after_pending()
        except UnknownPeer:
            restore()
            pause = waiting.after_restore()
        if pause > 0:
            time.sleep(pause)
