"""``rate_limit``: at most N calls per time window, without ever releasing anything.

For a resource that allows N calls per window (an API allowing 5 calls a second), configure a
semaphore with ``max = N`` and call ``rate_limit`` before every call. Each call takes one unit
on a fresh peer whose lease runs for one window and is never released: the unit frees itself
when the lease expires, and the server's prompt expiry hands it to the next waiter at once.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Optional

from ._members import Servers
from ._waiting import RATE_LIMIT_SLICE, RATE_LIMIT_WAITING_EXPIRATION, wait_for_grant
from .client import Client
from .errors import LockLost, ThrottleError, UnknownPeer
from .local_peers import local_client

_log = logging.getLogger(__name__)

#: The longest single long poll of a waiting rate limit (see ``_waiting``).
LONGEST_SLICE = RATE_LIMIT_SLICE
#: How long a waiting rate limit's peer lives without an acquire (see ``_waiting``).
WAITING_EXPIRATION = RATE_LIMIT_WAITING_EXPIRATION


def rate_limit(
    url: Optional[Servers],
    semaphore: str,
    per: timedelta,
    count: int = 1,
    timeout: Optional[timedelta] = None,
    *,
    token: Optional[str] = None,
) -> None:
    """Block until a call may proceed, then return; the unit taken frees itself after ``per``.

    With the semaphore ``api = 5`` configured on the server, this lets at most five calls
    start in any one-second window, across all threads and machines that share the server::

        rate_limit("http://localhost:8000", "api", per=timedelta(seconds=1))
        call_the_api()

    * ``url``: the server, or a cluster's members (see ``lock``).
    * ``count``: units this call takes (for calls that cost more than one).
    * ``timeout``: raise ``Timeout`` if no unit frees up in time; nothing is left queued then.
    * ``token``: the server's access token, if it needs one; ``None`` takes ``THROTTLE_TOKEN``
      from the environment (see ``Client``). A missing or wrong one raises ``Unauthorized``.

    The window starts when the unit is granted: a caller that had to wait gets its full window
    from the moment it may proceed.
    """
    client = local_client(url, token)
    waiting_expiration = max(per, WAITING_EXPIRATION)
    # The first acquire starts the window; until it arrives the peer holds nothing, and a short
    # `per` must not let it expire on the way (a busy process may take longer than `per`).
    peer_id = client.new_peer(expires_in=waiting_expiration)
    try:
        _take(client, peer_id, semaphore, per, count, timeout)
    except BaseException:
        try:
            client.release(peer_id)
        except ThrottleError as error:
            _log.warning("could not withdraw the request for %r: %s", semaphore, error)
        raise


def _take(
    client: Client,
    peer_id: int,
    semaphore: str,
    per: timedelta,
    count: int,
    timeout: Optional[timedelta],
) -> None:
    """Take the unit for the peer, waiting if need be; raises ``Timeout`` after ``timeout``."""
    waiting_expiration = max(per, WAITING_EXPIRATION)
    try:
        if client.acquire(peer_id, semaphore, count=count, expires_in=per):
            return
    except (UnknownPeer, LockLost):
        # The peer expired on the way (a process or network slower than its lease). It holds
        # nothing yet, so restoring it and waiting like any waiter loses nothing: unlike a
        # lock's, its lost lease is no `LockLost`.
        client.restore(peer_id, {}, expires_in=waiting_expiration)

    def acquire(block_for: timedelta) -> bool:
        try:
            return client.acquire(
                peer_id, semaphore, count=count, expires_in=waiting_expiration,
                block_for=block_for,
            )
        except LockLost as error:
            raise UnknownPeer(error.text) from None  # Restored by the loop, as above.

    wait_for_grant(
        acquire=acquire,
        restore=lambda: client.restore(peer_id, {}, expires_in=waiting_expiration),
        timeout=timeout,
        longest_slice=LONGEST_SLICE,
        what=f"rate limit unit of {semaphore!r}",
    )
    # While queued, the peer lived on the longer waiting expiration. Start the window now.
    try:
        client.heartbeat(peer_id, expires_in=per)
    except (UnknownPeer, LockLost):
        pass  # The lease has run out already (a window shorter than a round trip).
