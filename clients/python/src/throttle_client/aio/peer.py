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
from typing import Any, Callable, Dict, List, Optional, Type, TypeVar

from ..errors import (
    LockLost,
    RestoreConflict,
    TooManyPeers,
    Unauthorized,
    UnexpectedResponse,
    UnknownPeer,
)
from ..peer import DEFAULT_EXPIRATION
from .client import RETRIED_ERRORS, AsyncClient, stopped_within

__all__ = ["AsyncPeer"]

_log = logging.getLogger(__name__)

P = TypeVar("P", bound="AsyncPeer")

#: What runs once when a peer's lease is lost; it gets the peer. It runs on the event loop (in
#: the heartbeat task, usually), so it must not block; to stop the work, cancel its task.
AsyncOnLost = Callable[["AsyncPeer"], object]


class AsyncPeer:
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
    lost.
    """

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
        self.expiration_time = (
            expiration_time if expiration_time is not None else DEFAULT_EXPIRATION
        )
        self.heartbeat_interval = (
            heartbeat_interval if heartbeat_interval is not None else self.expiration_time / 3
        )
        # The client-side copy of the server's state, sent back by `restore`.
        self.acquired: Dict[str, int] = {} if acquired is None else acquired
        # The fencing token of each acquired lock whose grant carried one.
        self.fencing_tokens: Dict[str, int] = {}
        #: Whether the server said the peer expired: its locks are lost (see the module doc).
        self.lost = False
        self.on_lost = on_lost
        # Callbacks of the `lock` blocks that hold locks of this peer now.
        self._block_callbacks: List[AsyncOnLost] = []
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
        expires_in = expiration_time if expiration_time is not None else DEFAULT_EXPIRATION
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

    def __repr__(self) -> str:
        return f"{type(self).__name__}(id={self.id}, acquired={self.acquired!r})"

    def __getstate__(self) -> Dict[str, Any]:
        state = dict(self.__dict__)
        for name in ("_heartbeat", "_stop", "_restoring", "on_lost"):
            state[name] = None
        state["_block_callbacks"] = []
        return state

    def fencing_token(self, semaphore: str) -> Optional[int]:
        """The fencing token of this peer's lock on ``semaphore`` (see
        ``Peer.fencing_token``); ``None`` if it holds none, or the server sends no tokens."""
        return self.fencing_tokens.get(semaphore)

    async def acquire(
        self, semaphore: str, count: int = 1, block_for: Optional[timedelta] = None
    ) -> bool:
        """Ask for a lock; ``True`` if acquired, ``False`` if still pending (see
        ``Client.acquire``). The request also prolongs the peer by ``expiration_time``.
        Raises ``LockLost`` if the peer's lease was lost."""
        self._raise_if_lost()
        try:
            result = await self.client.acquire_with_token(
                self.id, semaphore, count=count, expires_in=self.expiration_time,
                block_for=block_for,
            )
        except LockLost:
            self._mark_lost()
            raise
        if result.granted:
            self.acquired[semaphore] = count
            if result.fencing_token is None:
                self.fencing_tokens.pop(semaphore, None)
            else:
                self.fencing_tokens[semaphore] = result.fencing_token
        return result.granted

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
        self.acquired.pop(semaphore, None)
        self.fencing_tokens.pop(semaphore, None)
        self._raise_if_lost()
        try:
            await self.client.release_lock(self.id, semaphore)
        except LockLost:
            self._mark_lost()
            raise

    async def heartbeat(self) -> None:
        """Prolong the peer by ``expiration_time`` so it does not expire. Raises ``LockLost``
        if the peer's lease was lost."""
        self._raise_if_lost()
        try:
            await self.client.heartbeat(self.id, expires_in=self.expiration_time)
        except LockLost:
            self._mark_lost()
            raise

    def has_acquired(self) -> bool:
        """``True`` if this peer holds at least one lock."""
        return len(self.acquired) != 0

    async def remove_from_server(self) -> None:
        """Remove the peer from the server, releasing all its locks. Also the way to clean up
        after a lost lease, so it raises no ``LockLost``."""
        self.acquired.clear()
        self.fencing_tokens.clear()
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

    # The lost lease.

    def _raise_if_lost(self) -> None:
        if self.lost:
            raise LockLost(
                f"peer {self.id} lost its lease: the server released its locks, which others "
                "may hold now"
            )

    def _mark_lost(self) -> None:
        """Mark the peer lost, stop its heartbeat and run its callbacks, the first time only.
        Synchronous, so no other task runs in between."""
        if self.lost:
            return
        self.lost = True
        _log.warning("peer %s expired on the server: its locks are lost, not restored", self.id)
        if self._stop is not None:
            self._stop.set()
        for callback in [self.on_lost, *self._block_callbacks]:
            if callback is None:
                continue
            try:
                callback(self)
            except Exception:
                _log.exception("the on_lost callback of peer %s failed", self.id)

    def _add_block_callback(self, callback: AsyncOnLost) -> None:
        self._block_callbacks.append(callback)

    def _remove_block_callback(self, callback: AsyncOnLost) -> None:
        try:
            self._block_callbacks.remove(callback)
        except ValueError:
            pass

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
        except (*RETRIED_ERRORS, UnexpectedResponse, Unauthorized, TooManyPeers) as error:
            # The server may be back (or have a free peer slot, for a restore) before the peer
            # expires; the next beat tries again.
            _log.warning("heartbeat for peer %s failed: %s", peer.id, error)
        except Exception:
            _log.exception("heartbeat for peer %s failed", peer.id)
        del peer
