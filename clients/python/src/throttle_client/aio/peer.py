"""``AsyncPeer``: a lock owner that remembers its locks client-side, with a heartbeat task.

The asyncio twin of ``PeerWithHeartbeat``. The server keeps its state in memory only, so the
copy of "which locks does this peer hold" kept here is what ``restore`` sends back after the
server restarted or lost the peer; it is updated on every grant and release. The heartbeat task
prolongs the peer while it holds locks, and restores it if the server lost it, so a lock can be
held far longer than the peer's expiration time while a crashed process still frees its locks
within that time.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from datetime import timedelta
from typing import Any, Dict, Optional, Type, TypeVar

from ..errors import RestoreConflict, TooManyPeers, Unauthorized, UnexpectedResponse, UnknownPeer
from ..peer import DEFAULT_EXPIRATION
from .client import RETRIED_ERRORS, AsyncClient, stopped_within

__all__ = ["AsyncPeer"]

_log = logging.getLogger(__name__)

P = TypeVar("P", bound="AsyncPeer")


class AsyncPeer:
    """A peer on a Throttle server: its id, its client, the locks it holds, and a heartbeat.

    Create a new one on the server with ``await AsyncPeer.create(client)``; the constructor
    wraps an existing id (with the locks it holds already, for a peer taken over from
    elsewhere). The arguments are ``PeerWithHeartbeat``'s:

    * ``expiration_time``: how long the server keeps the peer without hearing from it (default
      five minutes). Each ``acquire`` and heartbeat prolongs it by this much.
    * ``heartbeat_interval``: how often the heartbeat task beats while it runs; defaults to a
      third of ``expiration_time``, so two beats in a row may fail before the peer expires.
    """

    def __init__(
        self,
        client: AsyncClient,
        id: int,
        acquired: Optional[Dict[str, int]] = None,
        expiration_time: Optional[timedelta] = None,
        heartbeat_interval: Optional[timedelta] = None,
    ) -> None:
        self.client = client
        self.id = id
        self.expiration_time = (
            expiration_time if expiration_time is not None else DEFAULT_EXPIRATION
        )
        self.heartbeat_interval = (
            heartbeat_interval if heartbeat_interval is not None else self.expiration_time / 3
        )
        # The client-side copy of the server's state, sent back by `restore`.
        self.acquired: Dict[str, int] = {} if acquired is None else acquired
        self._heartbeat: Optional["asyncio.Task[None]"] = None
        self._stop: Optional[asyncio.Event] = None
        self._restoring: Optional[asyncio.Lock] = None

    @classmethod
    async def create(
        cls: Type[P],
        client: AsyncClient,
        expiration_time: Optional[timedelta] = None,
        heartbeat_interval: Optional[timedelta] = None,
    ) -> P:
        """A new peer on the server. Match it with ``remove_from_server``."""
        expires_in = expiration_time if expiration_time is not None else DEFAULT_EXPIRATION
        peer_id = await client.new_peer(expires_in=expires_in)
        return cls(
            client, peer_id, expiration_time=expires_in, heartbeat_interval=heartbeat_interval
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(id={self.id}, acquired={self.acquired!r})"

    def __getstate__(self) -> Dict[str, Any]:
        state = dict(self.__dict__)
        for name in ("_heartbeat", "_stop", "_restoring"):
            state[name] = None
        return state

    async def acquire(
        self, semaphore: str, count: int = 1, block_for: Optional[timedelta] = None
    ) -> bool:
        """Ask for a lock; ``True`` if acquired, ``False`` if still pending (see
        ``Client.acquire``). The request also prolongs the peer by ``expiration_time``."""
        granted = await self.client.acquire(
            self.id, semaphore, count=count, expires_in=self.expiration_time,
            block_for=block_for,
        )
        if granted:
            self.acquired[semaphore] = count
        return granted

    async def restore(self, *, stop: Optional[asyncio.Event] = None) -> None:
        """Re-create this peer with its acquired locks on a server that lost it.

        Call it after ``UnknownPeer``; ``lock`` and the heartbeat do. A ``RestoreConflict``
        answer means the server knows the peer already (the heartbeat or a waiter restored it
        first), which is the state this call aims for, so it is not raised.
        """
        # FIXME(issue 15): the server marks the `Unknown peer` of an expired peer with
        # `Throttle-Peer-State: expired`; such a peer should raise `LockLost` here instead of
        # being restored. This client does not read the header yet, so every `UnknownPeer` is
        # answered with a restore, as in the blocking client.
        if self._restoring is None:
            self._restoring = asyncio.Lock()
        async with self._restoring:
            try:
                await self.client.restore(
                    self.id, dict(self.acquired), expires_in=self.expiration_time, stop=stop
                )
            except RestoreConflict:
                _log.debug("peer %s was restored already", self.id)

    async def release(self, semaphore: str) -> None:
        """Release the lock on ``semaphore`` (acquired or pending); the peer stays."""
        self.acquired.pop(semaphore, None)
        await self.client.release_lock(self.id, semaphore)

    async def heartbeat(self) -> None:
        """Prolong the peer by ``expiration_time`` so it does not expire."""
        await self.client.heartbeat(self.id, expires_in=self.expiration_time)

    def has_acquired(self) -> bool:
        """``True`` if this peer holds at least one lock."""
        return len(self.acquired) != 0

    async def remove_from_server(self) -> None:
        """Remove the peer from the server, releasing all its locks."""
        self.acquired.clear()
        await self.client.release(self.id)

    def start_heartbeat(self) -> None:
        """Start the heartbeat task on the running event loop, unless it runs already."""
        if self._heartbeat is not None and not self._heartbeat.done():
            return
        # A fresh event per task: a task still finishing its last beat after a stop must not
        # be revived by clearing the event it watches.
        self._stop = asyncio.Event()
        self._heartbeat = asyncio.ensure_future(
            _heartbeat_loop(
                weakref.ref(self), self._stop, self.heartbeat_interval.total_seconds()
            )
        )

    async def stop_heartbeat(self) -> None:
        """Stop the heartbeat task and wait for it.

        The task is not cancelled but told to stop: a beat or restore already on the wire is
        waited for (a short wait: one request), so that the server never handles it after
        what the caller does next, e.g. after removing the peer, which would bring its locks
        back. A beat that is between retries stops at once.
        """
        task, self._heartbeat = self._heartbeat, None
        if self._stop is not None:
            self._stop.set()
        if task is not None and task is not asyncio.current_task():
            await asyncio.wait([task])

    async def _beat(self, stop: asyncio.Event) -> None:
        """One heartbeat; restores the peer if the server lost it."""
        try:
            await self.client.heartbeat(self.id, expires_in=self.expiration_time, stop=stop)
        except UnknownPeer:
            # Checked again here: a stop that raced with this beat means the peer was released
            # on purpose, and restoring it would bring its locks back.
            if not stop.is_set():
                _log.warning("server lost peer %s, restoring it", self.id)
                await self.restore(stop=stop)


async def _heartbeat_loop(
    peer_ref: "weakref.ref[AsyncPeer]", stop: asyncio.Event, interval: float
) -> None:
    """The heartbeat task's body. It holds the peer only through a weak reference, so a peer
    that nobody uses any more is garbage collected and its task ends with it."""
    while not await stopped_within(stop, interval):
        peer = peer_ref()
        if peer is None:
            return
        try:
            await peer._beat(stop)
        except (*RETRIED_ERRORS, UnexpectedResponse, Unauthorized, TooManyPeers) as error:
            # The server may be back (or have a free peer slot, for a restore) before the peer
            # expires; the next beat tries again.
            _log.warning("heartbeat for peer %s failed: %s", peer.id, error)
        except Exception:
            _log.exception("heartbeat for peer %s failed", peer.id)
        del peer
