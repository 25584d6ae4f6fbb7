"""``lock``: hold a semaphore for the duration of a ``with`` block.

The context manager combines the lower layers into the behaviour most users want: wait (in
long-poll slices) until the lock is granted, keep it alive with the peer's heartbeat while the
block runs, recover transparently if the server restarts, and release on exit whatever happens
in the block. It works on the calling thread's local peer, so nested ``with lock(...)`` blocks
on one thread form one lock hierarchy.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from datetime import timedelta
from typing import Iterator, Optional

import requests

from ._waiting import wait_for_grant
from .errors import ThrottleError, UnknownPeer
from .local_peers import forget_local_peer, get_local_peer
from .peer import Peer

_log = logging.getLogger(__name__)

# The longest single long poll. Short enough that a silently dropped connection is noticed
# soon, long enough that a waiting client sends a request only every few seconds.
LONGEST_SLICE = timedelta(seconds=5)


@contextmanager
def lock(
    server_url: str,
    semaphore: str,
    count: int = 1,
    timeout: Optional[timedelta] = None,
    *,
    token: Optional[str] = None,
) -> Iterator[Peer]:
    """Acquire a lock on ``semaphore`` for the ``with`` block, and release it afterwards.

    * ``server_url``: the Throttle server, e.g. ``http://localhost:8000``.
    * ``semaphore``: the semaphore's name, as configured on the server.
    * ``count``: how much of the semaphore to take; at most its ``max``.
    * ``timeout``: give up and raise ``Timeout`` if the lock is not granted within this time.
      ``None`` waits as long as it takes. No pending lock is left on the server after a
      ``Timeout`` (or any other exception while waiting).
    * ``token``: the server's access token, if it needs one; ``None`` takes ``THROTTLE_TOKEN``
      from the environment (see ``Client``). A missing or wrong one raises ``Unauthorized``.
      Nested blocks use the outermost block's peer, and with it its token.

    Yields the thread's ``Peer``. Locks nest: inside the block, take locks on semaphores of a
    strictly lower level (the server rejects anything else to rule out deadlocks). The peer is
    removed from the server when the outermost block exits.

    Errors from the server (unknown semaphore, count too large, lock hierarchy violation) are
    raised as the typed ``ValueError`` subclasses of ``throttle_client.errors``.
    """
    peer = get_local_peer(server_url, token)
    if semaphore in peer.acquired:
        # The server would answer the repeat idempotently, and the inner block's exit would then
        # release the outer block's lock.
        raise ValueError(f"this thread's peer already holds a lock on {semaphore!r}")
    longest_slice = min(LONGEST_SLICE, peer.expiration_time / 2)
    try:
        wait_for_grant(
            acquire=lambda block_for: peer.acquire(semaphore, count=count, block_for=block_for),
            restore=peer.restore,
            timeout=timeout,
            longest_slice=longest_slice,
            what=f"lock on {semaphore!r}",
        )
    except BaseException:
        _withdraw(server_url, peer, semaphore)
        raise
    peer.start_heartbeat()
    try:
        yield peer
    finally:
        _release(server_url, peer, semaphore)


def _withdraw(server_url: str, peer: Peer, semaphore: str) -> None:
    """Take back a request that is still pending (or was granted just now), so that giving up
    does not leave a lock in the queue that blocks everyone behind it until the peer expires."""
    try:
        if peer.has_acquired():
            peer.release(semaphore)
        else:
            _remove_peer(server_url, peer)
    except UnknownPeer:
        pass  # The server lost the peer, and its pending lock with it.
    except (requests.ConnectionError, requests.Timeout, ThrottleError) as error:
        _log.warning("could not withdraw the request for %r: %s", semaphore, error)


def _release(server_url: str, peer: Peer, semaphore: str) -> None:
    """Release the lock taken by a ``with lock(...)`` block; the peer itself too if that was
    its last lock."""
    peer.acquired.pop(semaphore, None)
    try:
        if peer.has_acquired():
            try:
                peer.release(semaphore)
            except UnknownPeer:
                # The server lost the peer, so this lock is gone already; the heartbeat
                # restores the remaining ones.
                pass
        else:
            _remove_peer(server_url, peer)
    except (requests.ConnectionError, requests.Timeout) as error:
        # Retrying already took a while. The peer expires on its own, which frees the lock.
        _log.warning("could not release the lock on %r: %s", semaphore, error)


def _remove_peer(server_url: str, peer: Peer) -> None:
    """Stop the heartbeat and remove the peer from server and thread alike."""
    peer.stop_heartbeat()
    try:
        peer.remove_from_server()
    finally:
        forget_local_peer(server_url, peer)
