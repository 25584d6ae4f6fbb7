"""``AsyncPeer``: a lock owner that remembers its locks client-side, with a heartbeat task.

The asyncio twin of ``PeerWithHeartbeat``. The server keeps its state in memory only, so the
copy of "which locks does this peer hold" kept here is what ``restore`` sends back after the
server restarted or lost the peer; it is updated on every grant and release. The heartbeat task
prolongs the peer while it holds locks, and restores it if the server lost it, so a lock can be
held far longer than the peer's expiration time while a crashed process still frees its locks
within that time.

Restore or lost, as in the blocking client (see ``throttle_client.peer``): a plain ``Unknown
peer`` (the server restarted) is restored with the locks' fencing tokens; one marked
``Throttle-Peer-State: expired`` (the lease ran out) is not. The peer is marked ``lost``, its
heartbeat ends, its ``on_lost`` callbacks run once, and later calls raise ``LockLost``.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from datetime import timedelta
from typing import Any, Callable, Dict, Optional, Type, TypeVar

from .._peers import (
    PASSING_BEAT_FAILURES,
    PeerBook,
    expiration_or_default,
    interval_or_default,
)
from ..errors import LockLost, RestoreConflict, UnknownPeer
from .client import AsyncClient, stopped_within

__all__ = ["AsyncPeer"]

_log = logging.getLogger(__name__)

P = TypeVar("P", bound="AsyncPeer")

#: What runs once when a peer's lease is lost; it gets the peer. It runs on the event loop (in
#: the heartbeat task, usually), so it must not block; to stop the work, cancel its task.
AsyncOnLost = Callable[["AsyncPeer"], object]


class AsyncPeer(PeerBook):
    """A peer on a Throttle server: its id, its client, the locks it holds, and a heartbeat.

    Create a new one on the server with ``await AsyncPeer.create(client)``; the constructor
    wraps an existing id (with the locks it holds already, for a peer taken over from
    elsewhere). The arguments are ``PeerWithHeartbeat``'s:

    * ``expiration_time``: how long the server keeps the peer without hearing from it (default
      five minutes). Each ``acquire`` and heartbeat prolongs it by this much.
    * ``heartbeat_interval``: how often the heartbeat task beats while it runs; defaults to a
      third of ``expiration_time``, so two beats in a row may fail before the peer expires.
    * ``name``: the holder name (``None``: the client's ``peer_name``, by default
      ``hostname:pid``; ``""``: none), sent on creation and restore.
    * ``on_lost``: called once, with the peer, when its lease is lost (see the module doc).

    ``fencing_token(semaphore)`` is the token of a held lock; ``lost`` whether the lease was
    lost. The bookkeeping is ``_peers.PeerBook``'s, shared with the blocking peer.
    """

    _logger = _log

    def __init__(
        self,
        client: AsyncClient,
        id: int,
        acquired: Optional[Dict[str, int]] = None,
        expiration_time: Optional[timedelta] = None,
        heartbeat_interval: Optional[timedelta] = None,
        *,
        name: Optional[str] = None,
        on_lost: Optional[AsyncOnLost] = None,
    ) -> None:
        self.client = client
        self.id = id
        self.name = client.holder_name(name)
        self.expiration_time = expiration_or_default(expiration_time)
        self.heartbeat_interval = interval_or_default(heartbeat_interval, self.expiration_time)
        self._open_book(acquired, on_lost)
        self._heartbeat: Optional["asyncio.Task[None]"] = None
        self._stop: Optional[asyncio.Event] = None
        self._restoring: Optional[asyncio.Lock] = None

    @classmethod
    async def create(
        cls: Type[P],
        client: AsyncClient,
        expiration_time: Optional[timedelta] = None,
        heartbeat_interval: Optional[timedelta] = None,
        *,
        name: Optional[str] = None,
        on_lost: Optional[AsyncOnLost] = None,
    ) -> P:
        """A new peer on the server. Match it with ``remove_from_server``."""
        expires_in = expiration_or_default(expiration_time)
        name = client.holder_name(name)
        peer_id = await client.new_peer(expires_in=expires_in, name=name)
        return cls(
            client,
            peer_id,
            expiration_time=expires_in,
            heartbeat_interval=heartbeat_interval,
            name=name,
            on_lost=on_lost,
        )

    def __getstate__(self) -> Dict[str, Any]:
        state = dict(self.__dict__)
        for name in ("_heartbeat", "_stop", "_restoring", "on_lost"):
            state[name] = None
        state["_block_callbacks"] = []
        return state

    async def acquire(
        self, semaphore: str, count: int = 1, block_for: Optional[timedelta] = None
    ) -> bool:
        """Ask for a lock; ``True`` if acquired, ``False`` if still pending (see
        ``Client.acquire``). The request also prolongs the peer by ``expiration_time``.
        Raises ``LockLost`` if the peer's lease was lost."""
        with self._watching_lease():
            result = await self.client.acquire_with_token(
                self.id, semaphore, count=count, expires_in=self.expiration_time,
                block_for=block_for,
            )
        return self._record(semaphore, count, result)

    async def restore(self, *, stop: Optional[asyncio.Event] = None) -> None:
        """Re-create this peer with its acquired locks on a server that lost it.

        Call it after ``UnknownPeer``; ``lock`` and the heartbeat do. A ``RestoreConflict``
        answer means the server knows the peer already (the heartbeat or a waiter restored it
        first), which is the state this call aims for, so it is not raised. The locks keep
        their fencing tokens. A lost peer is never restored: this raises ``LockLost``.
        """
        if self._restoring is None:
            self._restoring = asyncio.Lock()
        async with self._restoring:
            self._raise_if_lost()
            try:
                await self.client.restore(
                    self.id,
                    dict(self.acquired),
                    expires_in=self.expiration_time,
                    fencing_tokens=dict(self.fencing_tokens),
                    name=self.name,
                    stop=stop,
                )
            except RestoreConflict:
                _log.debug("peer %s was restored already", self.id)

    async def release(self, semaphore: str) -> None:
        """Release the lock on ``semaphore`` (acquired or pending); the peer stays. Raises
        ``LockLost`` if the peer's lease was lost (the server released the lock already)."""
        self._forget(semaphore)
        with self._watching_lease():
            await self.client.release_lock(self.id, semaphore)

    async def heartbeat(self) -> None:
        """Prolong the peer by ``expiration_time`` so it does not expire. Raises ``LockLost``
        if the peer's lease was lost."""
        with self._watching_lease():
            await self.client.heartbeat(self.id, expires_in=self.expiration_time)

    async def remove_from_server(self) -> None:
        """Remove the peer from the server, releasing all its locks. Also the way to clean up
        after a lost lease, so it raises no ``LockLost``."""
        self._forget_all()
        await self.client.release(self.id)

    def start_heartbeat(self) -> None:
        """Start the heartbeat task on the running event loop, unless it runs already or the
        peer is lost."""
        if self.lost or (self._heartbeat is not None and not self._heartbeat.done()):
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

    def _stop_beating(self) -> None:
        # `_mark_lost` checks and sets `lost` synchronously, so no other task runs in between.
        if self._stop is not None:
            self._stop.set()

    async def _beat(self, stop: asyncio.Event) -> None:
        """One heartbeat; restores the peer if the server restarted, marks it lost if the
        server says it expired."""
        try:
            await self.client.heartbeat(self.id, expires_in=self.expiration_time, stop=stop)
        except LockLost:
            self._mark_lost()
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
        except LockLost:
            return  # Lost while restoring: marked so by whoever found out.
        except PASSING_BEAT_FAILURES as error:
            # The next beat tries again (see `_peers.PASSING_BEAT_FAILURES`).
            _log.warning("heartbeat for peer %s failed: %s", peer.id, error)
        except Exception:
            _log.exception("heartbeat for peer %s failed", peer.id)
        del peer
