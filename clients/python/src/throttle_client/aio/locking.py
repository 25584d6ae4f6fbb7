"""``lock``: hold a semaphore for the duration of an ``async with`` block.

The asyncio twin of ``throttle_client.lock``, with the same behaviour: wait in long-poll slices
until the lock is granted, keep it alive with the peer's heartbeat task while the block runs,
recover transparently if the server restarts, and release on exit whatever happens in the
block. Nested blocks in one task share the task's peer and form one lock hierarchy. A lease the
server says ran out is not restored: the block's exit raises ``LockLost``.

Cancellation is an exit like any other. A task cancelled while it waits (``task.cancel()``,
``asyncio.timeout``, ``asyncio.wait_for``) withdraws its pending lock before the cancellation
goes on, and one cancelled while it holds releases; the clean-up is shielded from further
cancellations (see ``_cleanup``).
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import AsyncIterator, Optional

from .._members import Servers
from .._waiting import Waiting
from .._peers import check_new_lock, lost_error
from ..errors import LockLost, ThrottleError, UnknownPeer
from . import _cleanup
from .peer import AsyncOnLost, AsyncPeer
from .task_peers import forget_task_peer, get_task_peer
from ._waiting import wait_for_grant

__all__ = ["lock"]

_log = logging.getLogger(__name__)


@asynccontextmanager
async def lock(
    server_url: Optional[Servers],
    semaphore: str,
    count: int = 1,
    timeout: Optional[timedelta] = None,
    *,
    token: Optional[str] = None,
    name: Optional[str] = None,
    on_lost: Optional[AsyncOnLost] = None,
) -> AsyncIterator[AsyncPeer]:
    """Acquire a lock on ``semaphore`` for the ``async with`` block, and release it afterwards.

    * ``server_url``: the Throttle server, e.g. ``http://localhost:8000``; or a cluster's
      members, as a list of URLs or one string with commas (``None``: ``THROTTLE_URL``, see
      ``Client``). A failover among the members does not show in the block: the lock stays
      held, and a waiting call keeps its place in the queue.
    * ``semaphore``: the semaphore's name, as configured on the server.
    * ``count``: how much of the semaphore to take; at most its ``max``.
    * ``timeout``: give up and raise ``Timeout`` if the lock is not granted within this time.
      ``None`` waits as long as it takes. Nothing is left pending on the server after a
      ``Timeout``, a cancellation or any other exception while waiting.
    * ``token``: the server's access token, if it needs one; ``None`` takes ``THROTTLE_TOKEN``
      from the environment. Nested blocks use the outermost block's peer and its token.
    * ``name``: the holder name of a new peer (``None``: ``hostname:pid``), shown on the
      server's status page. Nested blocks use the outermost block's peer and its name.
    * ``on_lost``: called once, with the peer, if the lease is lost while the block runs. It
      runs on the event loop and must not block; ``on_lost=lambda _: task.cancel()`` stops the
      work at its next ``await``.

    Yields the task's ``AsyncPeer``. Inside the block, take locks on semaphores of a strictly
    lower level only (the server rejects anything else to rule out deadlocks). The peer is
    removed from the server when the task's outermost block exits. Errors from the server are
    the typed exceptions of ``throttle_client.errors``, as in the blocking client.

    ``peer.fencing_token(semaphore)`` is the lock's fencing token. If the server says the peer
    expired, nothing is restored: ``peer.lost`` turns true, ``on_lost`` runs, and the block's
    exit raises ``LockLost`` (chained to the block's own exception, if it raised one; a
    cancellation goes on as it is).
    """
    peer = await get_task_peer(server_url, token, name=name)
    longest_slice = check_new_lock(peer, semaphore, "task")
    try:
        await wait_for_grant(
            acquire=lambda block_for: peer.acquire(semaphore, count=count, block_for=block_for),
            restore=peer.restore,
            waiting=Waiting(timeout, longest_slice, f"lock on {semaphore!r}"),
        )
    except BaseException as error:
        await _end(server_url, peer, semaphore, _cleanup.bound_for(error), "withdrawing", None)
        raise
    if on_lost is not None:
        peer._add_block_callback(on_lost)
    peer.start_heartbeat()
    try:
        yield peer
    except BaseException as error:
        await _end(server_url, peer, semaphore, _cleanup.bound_for(error), "releasing", on_lost)
        # A block that failed because the lease was lost (a resource refusing its stale fencing
        # token, say) raises `LockLost`, with its own error as the cause. Cancellations go on.
        if peer.lost and isinstance(error, Exception) and not isinstance(error, LockLost):
            raise lost_error(peer, semaphore) from error
        raise
    await _end(server_url, peer, semaphore, None, "releasing", on_lost)
    if peer.lost:
        raise lost_error(peer, semaphore)


async def _end(
    server_url: Optional[Servers],
    peer: AsyncPeer,
    semaphore: str,
    bound: Optional[float],
    doing: str,
    on_lost: Optional[AsyncOnLost],
) -> None:
    """Withdraw or release the lock on ``semaphore`` (the server treats a pending lock and an
    acquired one alike), and the peer with it if that was its last lock, so that giving up does
    not leave a lock in the queue that blocks everyone behind it until the peer expires.

    The task's bookkeeping changes here, in the task itself (a context variable set in the
    clean-up task would not reach it); the requests run behind the shield.
    """
    if on_lost is not None:
        peer._remove_block_callback(on_lost)
    peer._forget(semaphore)
    last = not peer.has_acquired()
    if last:
        forget_task_peer(server_url, peer)
    if peer.lost:
        # The server released the locks already; only the heartbeat task is left to end.
        if last:
            await peer.stop_heartbeat()
        return
    what = f"{doing} the lock on {semaphore!r}"
    await _cleanup.finish(_requests(peer, semaphore, last, what), bound, what)


async def _requests(peer: AsyncPeer, semaphore: str, last: bool, what: str) -> None:
    try:
        if last:
            await peer.stop_heartbeat()
            await peer.remove_from_server()
        else:
            await peer.release(semaphore)
    except (UnknownPeer, LockLost):
        # The server lost the peer, and this lock with it; the heartbeat restores the rest
        # (unless it was lost, which the block's exit raises).
        pass
    except ThrottleError as error:
        # Retrying already took a while. The peer expires on its own, which frees the lock.
        _log.warning("%s failed: %s", what, error)
