"""The long-poll loop shared by ``lock`` and ``rate_limit``.

Waiting for a grant is a series of acquire requests, each a long poll of at most one *slice*.
Slicing keeps the peer alive (every acquire prolongs it), lets the loop notice its own deadline,
and bounds how long a lost connection goes unnoticed. Acquire is idempotent, so asking again
neither queues a second lock nor loses the place in the queue.

The server may answer "still pending" long before the slice is over: when all its long-poll
slots are taken, while it shuts down, or when the pending lock was released under us. Asking
again at once would turn waiting into a busy loop against a busy server, so an early answer is
followed by a jittered, growing pause.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Callable, Optional

from ._backoff import Backoff
from .errors import Timeout, UnknownPeer

# An answer that arrives in less than this fraction of the slice counts as early.
_EARLY_FRACTION = 0.5


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
    deadline = None if timeout is None else time.monotonic() + timeout.total_seconds()
    pause = Backoff(first=0.02, cap=1.0)
    while True:
        block_for = longest_slice
        if deadline is not None:
            remaining = max(0.0, deadline - time.monotonic())
            block_for = min(block_for, timedelta(seconds=remaining))
        asked_at = time.monotonic()
        try:
            if acquire(block_for):
                return
            early = time.monotonic() - asked_at < block_for.total_seconds() * _EARLY_FRACTION
        except UnknownPeer:
            restore()
            # A restore right after another `UnknownPeer` would loop fast if the peer keeps
            # vanishing (e.g. an expiration time shorter than a round trip): pause as well.
            early = True
        now = time.monotonic()
        if deadline is not None and now >= deadline:
            raise Timeout(f"{what} not granted within {timeout}")
        if early:
            delay = pause.next_delay()
            if deadline is not None:
                delay = min(delay, deadline - now)
            time.sleep(delay)
        else:
            pause.reset()
