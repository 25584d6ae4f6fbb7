"""``rate_limit``: at most N calls per time window, without ever releasing anything.

The asyncio twin of ``throttle_client.rate_limit``: each call takes one unit on a fresh peer
whose lease runs for one window and is never released; the unit frees itself when the lease
expires, and the server's prompt expiry hands it to the next waiter at once. A call cancelled
(or timed out) while it waits removes its peer, so nothing stays queued.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Optional

from .._members import Servers
from .._waiting import RATE_LIMIT_SLICE, RATE_LIMIT_WAITING_EXPIRATION, Waiting
from ..errors import LockLost, ThrottleError, UnknownPeer
from . import _cleanup
from ._waiting import wait_for_grant
from .client import AsyncClient
from .task_peers import local_client

__all__ = ["rate_limit"]

_log = logging.getLogger(__name__)


async def rate_limit(
    url: Optional[Servers],
    semaphore: str,
    per: timedelta,
    count: int = 1,
    timeout: Optional[timedelta] = None,
    *,
    token: Optional[str] = None,
) -> None:
    """Wait until a call may proceed, then return; the unit taken frees itself after ``per``.

    With the semaphore ``api = 5`` configured on the server, this lets at most five calls
    start in any one-second window, across all tasks, threads and machines that share the
    server::

        await rate_limit("http://localhost:8000", "api", per=timedelta(seconds=1))
        await call_the_api()

    * ``url``: the server, or a cluster's members (see ``lock``).
    * ``count``: units this call takes (for calls that cost more than one).
    * ``timeout``: raise ``Timeout`` if no unit frees up in time; nothing is left queued then,
      nor after a cancellation.
    * ``token``: the server's access token, if it needs one; ``None`` takes ``THROTTLE_TOKEN``
      from the environment. A missing or wrong one raises ``Unauthorized``.

    The window starts when the unit is granted: a caller that had to wait gets its full window
    from the moment it may proceed.
    """
    client = local_client(url, token)
    # The first acquire starts the window; until it arrives the peer holds nothing, and a short
    # `per` must not let it expire on the way (a busy event loop may take longer than `per`).
    peer_id = await client.new_peer(expires_in=max(per, RATE_LIMIT_WAITING_EXPIRATION))
    try:
        await _take(client, peer_id, semaphore, per, count, timeout)
    except BaseException as error:
        what = f"withdrawing the request for {semaphore!r}"
        await _cleanup.finish(_withdraw(client, peer_id, what), _cleanup.bound_for(error), what)
        raise


async def _take(
    client: AsyncClient,
    peer_id: int,
    semaphore: str,
    per: timedelta,
    count: int,
    timeout: Optional[timedelta],
) -> None:
    """Take the unit for the peer, waiting if need be; raises ``Timeout`` after ``timeout``."""
    waiting_expiration = max(per, RATE_LIMIT_WAITING_EXPIRATION)
    lease = [per]

    async def acquire(block_for: timedelta) -> bool:
        # An ask that does not block (the first) is granted at once or not at all, and its
        # lease is the window itself. A waiting one keeps the peer alive for a few slices.
        expires_in = per if block_for <= timedelta(0) else waiting_expiration
        try:
            granted = await client.acquire(
                peer_id, semaphore, count=count, expires_in=expires_in, block_for=block_for
            )
        except LockLost as error:
            # Unlike a lock's, this peer's lost lease loses nothing (it holds nothing yet):
            # the loop restores it as after a server restart.
            raise UnknownPeer(error.text) from None
        lease[0] = expires_in
        return granted

    async def restore() -> None:
        # Lost on the way (an event loop or network slower than the lease): the peer holds
        # nothing yet, so restoring it and waiting on loses nothing.
        await client.restore(peer_id, {}, expires_in=waiting_expiration)

    await wait_for_grant(
        acquire, restore, Waiting(timeout, RATE_LIMIT_SLICE, f"rate limit unit of {semaphore!r}")
    )
    if lease[0] == per:
        return
    # Granted while waiting, on the longer waiting expiration. Start the window now.
    try:
        await client.heartbeat(peer_id, expires_in=per)
    except (UnknownPeer, LockLost):
        pass  # The lease has run out already (a window shorter than a round trip).


async def _withdraw(client: AsyncClient, peer_id: int, what: str) -> None:
    try:
        await client.release(peer_id)
    except ThrottleError as error:
        _log.warning("%s failed: %s", what, error)
