"""Clean-up that a cancellation cannot interrupt: withdrawing a pending lock, releasing a held
one, removing a peer.

A task is usually cancelled from outside (``task.cancel()``, ``asyncio.timeout``,
``asyncio.wait_for``) while it waits for the server, and the clean-up of such a task needs the
server too. Run in the cancelled task itself, the clean-up's own request could be cut off by a
second cancellation, and a pending lock would stay queued, blocking everyone behind it until
the peer expired. So the clean-up runs as a task of its own that the caller waits for behind
``asyncio.shield``, and a second cancellation of the caller is held back until it is done.

After a cancellation the clean-up is bounded in time (``AFTER_CANCEL``): a cancelled task should
end promptly, and a server that cannot be reached within that time frees the locks anyway when
the peer, whose heartbeat stops, expires.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Coroutine, Optional

__all__ = ["AFTER_CANCEL", "bound_for", "finish"]

_log = logging.getLogger(__name__)

#: Seconds the clean-up after a cancellation may take at most.
AFTER_CANCEL = 5.0


def bound_for(error: BaseException) -> Optional[float]:
    """The time bound of the clean-up after ``error`` ended a wait or a block: ``AFTER_CANCEL``
    for a cancellation, none for anything else (the usual retries apply)."""
    return AFTER_CANCEL if isinstance(error, asyncio.CancelledError) else None


async def finish(cleanup: Coroutine[Any, Any, None], bound: Optional[float], what: str) -> None:
    """Run ``cleanup`` to its end, within ``bound`` seconds if given, even if the calling task
    is cancelled meanwhile; such a cancellation is raised once the clean-up is over.

    A clean-up that overruns its bound is abandoned with a warning naming ``what``. Other
    errors are the clean-up's own to handle; any it raises are raised here.
    """
    task = asyncio.ensure_future(
        cleanup if bound is None else asyncio.wait_for(cleanup, bound)
    )
    cancelled = False
    while True:
        try:
            await asyncio.shield(task)
            break
        except asyncio.CancelledError:
            if task.done():
                raise  # The clean-up itself was cancelled, e.g. by a loop shutting down.
            cancelled = True
        except asyncio.TimeoutError:
            if bound is None or not task.done():
                raise
            _log.warning("gave up on %s after %.0f s", what, bound)
            break
        except BaseException:
            if cancelled:
                break  # The cancellation wins; the clean-up's error is lost with it.
            raise
    if cancelled:
        raise asyncio.CancelledError()
