"""The long-poll loop of ``lock`` and ``rate_limit`` on an event loop.

The decisions (slice lengths, pauses after early answers, the deadline) are the blocking loop's,
made by the same ``throttle_client._waiting.Waiting``; only sending and pausing are awaited, and
the first ask does not block.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Awaitable, Callable

from .._waiting import Waiting
from ..errors import UnknownPeer

__all__ = ["wait_for_grant"]


async def wait_for_grant(
    acquire: Callable[[timedelta], Awaitable[bool]],
    restore: Callable[[], Awaitable[None]],
    waiting: Waiting,
) -> None:
    """Await ``acquire(block_for)`` until it returns ``True``.

    ``restore`` is awaited when the server answers ``UnknownPeer`` (it restarted, or the peer
    expired), then waiting goes on. Raises ``Timeout`` once ``waiting``'s deadline has passed;
    withdrawing the pending lock is the caller's job, as only it knows what else the peer holds.
    """
    # The first ask does not block: most locks are granted at once, and an answer that needs
    # no long poll takes a quick connection, not a long-poll one (see `client`).
    block_for = timedelta(0)
    while True:
        try:
            if await acquire(block_for):
                return
            pause = waiting.after_pending()
        except UnknownPeer:
            await restore()
            pause = waiting.after_restore()
        if pause > 0:
            await asyncio.sleep(pause)
        block_for = waiting.next_slice()
