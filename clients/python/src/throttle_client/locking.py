"""``lock``: hold a semaphore for the duration of a ``with`` block.

The context manager combines the lower layers into the behaviour most users want: wait (in
long-poll slices) until the lock is granted, keep it alive with the peer's heartbeat while the
block runs, recover transparently if the server restarts, and release on exit whatever happens
in the block. It works on the calling thread's local peer, so nested ``with lock(...)`` blocks
on one thread form one lock hierarchy.

A lease that ran out (the server says the peer expired) is not recovered: the block's exit
raises ``LockLost`` (see ``peer``), because whatever the block did with the resource since may
have overlapped with the next holder.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from datetime import timedelta
from typing import Iterator, Optional

from ._members import Servers
from ._peers import LOCK_SLICE, check_new_lock, lost_error
from ._waiting import wait_for_grant
from .errors import LockLost, ServerUnavailable, ThrottleError, UnknownPeer
from .local_peers import forget_local_peer, get_local_peer
from .peer import OnLost, Peer

_log = logging.getLogger(__name__)

#: The longest single long poll (see ``_peers.LOCK_SLICE``).
LONGEST_SLICE = LOCK_SLICE


@contextmanager
def lock(
    server_url: Optional[Servers],
    semaphore: str,
    count: int = 1,
    timeout: Optional[timedelta] = None,
    *,
    token: Optional[str] = None,
    name: Optional[str] = None,
    on_lost: Optional[OnLost] = None,
) -> Iterator[Peer]:
    """Acquire a lock on ``semaphore`` for the ``with`` block, and release it afterwards.

    * ``server_url``: the Throttle server, e.g. ``http://localhost:8000``; or a cluster's
      members, as a list of URLs or one string with commas (``None``: ``THROTTLE_URL``, see
      ``Client``). A failover among the members does not show in the block: the lock stays
      held, and a waiting call keeps its place in the queue.
    * ``semaphore``: the semaphore's name, as configured on the server.
    * ``count``: how much of the semaphore to take; at most its ``max``.
    * ``timeout``: give up and raise ``Timeout`` if the lock is not granted within this time.
      ``None`` waits as long as it takes. No pending lock is left on the server after a
      ``Timeout`` (or any other exception while waiting).
    * ``token``: the server's access token, if it needs one; ``None`` takes ``THROTTLE_TOKEN``
      from the environment (see ``Client``). A missing or wrong one raises ``Unauthorized``.
      Nested blocks use the outermost block's peer, and with it its token.
    * ``name``: the holder name of a new peer, shown on the server's status page (``None``:
      ``hostname:pid``). Nested blocks use the outermost block's peer and its name.
    * ``on_lost``: called once, with the peer, if the lease is lost while the block runs (on
      the heartbeat thread, so keep it short: set a flag, stop the work).

    Yields the thread's ``Peer``; ``peer.fencing_token(semaphore)`` is the lock's fencing token
    (``None`` from a Throttle 0.5 server), to hand to a resource that refuses stale holders.
    If the server says the peer expired (its heartbeats did not get through in time), the lock
    is not restored: ``peer.lost`` turns true, ``on_lost`` runs, and the block's exit raises
    ``LockLost`` (chained to the block's own exception, if it raised one). A plain server
    restart is recovered from as before. Locks nest: inside the block, take locks on semaphores of a
    strictly lower level (the server rejects anything else to rule out deadlocks). The peer is
    removed from the server when the outermost block exits.

    Errors from the server (unknown semaphore, count too large, lock hierarchy violation) are
    raised as the typed ``ValueError`` subclasses of ``throttle_client.errors``.
    """
    peer = get_local_peer(server_url, token, name=name)
    longest_slice = check_new_lock(peer, semaphore, "thread")
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
    if on_lost is not None:
        peer._add_block_callback(on_lost)
    peer.start_heartbeat()
    try:
        yield peer
    except BaseException as error:
        _release(server_url, peer, semaphore, on_lost)
        # A block that failed because the lease was lost (a resource refusing its stale fencing
        # token, say) raises `LockLost`, with its own error as the cause. Interrupts and exits
        # go on as they are.
        if peer.lost and isinstance(error, Exception) and not isinstance(error, LockLost):
            raise lost_error(peer, semaphore) from error
        raise
    _release(server_url, peer, semaphore, on_lost)
    if peer.lost:
        raise lost_error(peer, semaphore)


def _withdraw(server_url: Optional[Servers], peer: Peer, semaphore: str) -> None:
    """Take back a request that is still pending (or was granted just now), so that giving up
    does not leave a lock in the queue that blocks everyone behind it until the peer expires."""
    peer.fencing_tokens.pop(semaphore, None)
    if peer.lost:
        _forget_lost(server_url, peer)
        return
    try:
        if peer.has_acquired():
            peer.release(semaphore)
        else:
            _remove_peer(server_url, peer)
    except (UnknownPeer, LockLost):
        pass  # The server lost the peer, and its pending lock with it.
    except ThrottleError as error:
        _log.warning("could not withdraw the request for %r: %s", semaphore, error)


def _release(
    server_url: Optional[Servers], peer: Peer, semaphore: str, on_lost: Optional[OnLost]
) -> None:
    """Release the lock taken by a ``with lock(...)`` block; the peer itself too if that was
    its last lock. A lost peer's locks are gone already; it only leaves the thread."""
    if on_lost is not None:
        peer._remove_block_callback(on_lost)
    peer._forget(semaphore)
    if peer.lost:
        _forget_lost(server_url, peer)
        return
    try:
        if peer.has_acquired():
            try:
                peer.release(semaphore)
            except (UnknownPeer, LockLost):
                # The server lost the peer, so this lock is gone already; the heartbeat
                # restores the remaining ones.
                pass
        else:
            _remove_peer(server_url, peer)
    except ServerUnavailable as error:
        # Retrying already took a while. The peer expires on its own, which frees the lock.
        _log.warning("could not release the lock on %r: %s", semaphore, error)


def _forget_lost(server_url: Optional[Servers], peer: Peer) -> None:
    """Once a lost peer holds no more locks of ``with`` blocks, stop its heartbeat (it has
    stopped beating already) and drop it from the thread, so the next ``lock`` gets a new
    peer. The server released it already: no request is needed."""
    if not peer.has_acquired():
        peer.stop_heartbeat()
        forget_local_peer(server_url, peer)


def _remove_peer(server_url: Optional[Servers], peer: Peer) -> None:
    """Stop the heartbeat and remove the peer from server and thread alike."""
    peer.stop_heartbeat()
    try:
        peer.remove_from_server()
    finally:
        forget_local_peer(server_url, peer)
