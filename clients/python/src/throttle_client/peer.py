"""``Peer`` and ``PeerWithHeartbeat``: a lock owner that remembers its locks client-side.

The server keeps its state in memory only. After a restart (or after a peer expired because the
network was down) it no longer knows the peer, and the only copy of "which locks does this peer
hold" is the one kept here. That copy is what ``restore`` sends back, so it is updated on every
grant and release.

``PeerWithHeartbeat`` adds a thread that prolongs the peer while it holds locks, so a lock can
be held far longer than the peer's expiration time while a crashed process still frees its locks
within that time.

**Restore or lost.** A plain ``Unknown peer`` means the server restarted and forgot the peer:
it is restored with its locks and their fencing tokens, and nothing changes for the holder. An
``Unknown peer`` marked ``Throttle-Peer-State: expired`` means the lease ran out (heartbeats did
not get through), the server released the locks and others may hold them now: then nothing is
restored. The peer is marked ``lost``, its heartbeat stops, its ``on_lost`` callbacks run once,
and every later call on it raises ``LockLost``.
"""

from __future__ import annotations

import logging
import threading
import weakref
from datetime import timedelta
from typing import Any, Callable, ContextManager, Dict, Optional, Type, TypeVar

# Still importable from here, where it was defined before `_peers`.
from ._peers import DEFAULT_EXPIRATION as DEFAULT_EXPIRATION
from ._peers import (
    PASSING_BEAT_FAILURES,
    PeerBook,
    expiration_or_default,
    interval_or_default,
)
from ._members import Servers
from .client import Client
from .errors import LockLost, RestoreConflict, UnknownPeer

_log = logging.getLogger(__name__)

P = TypeVar("P", bound="Peer")

#: What runs once when a peer's lease is lost; it gets the peer (what it returns is ignored).
OnLost = Callable[["Peer"], object]


class Peer(PeerBook):
    """A peer on a Throttle server: its id, its client and the locks it holds.

    * ``client``: the server connection.
    * ``id``: an existing peer id; ``None`` creates a new peer on the server.
    * ``acquired``: the locks the peer holds already (semaphore name to count), for a peer
      taken over from elsewhere.
    * ``expiration_time``: how long the server keeps the peer without hearing from it
      (default five minutes). Each ``acquire`` and ``heartbeat`` prolongs it by this much.
    * ``name``: the holder name shown on the server's status page (``None``: the client's
      ``peer_name``, by default ``hostname:pid``; ``""``: none). Sent on creation and restore.
    * ``on_lost``: called once, with the peer, when the server says the peer's lease ran out
      (see the module doc). On a ``PeerWithHeartbeat`` it usually runs on the heartbeat thread,
      so keep it short: set a flag, cancel the work.

    ``fencing_token(semaphore)`` is the token of a held lock; ``lost`` whether the lease was
    lost. The bookkeeping is ``_peers.PeerBook``'s, shared with the asyncio peer.
    """

    _logger = _log

    def __init__(
        self,
        client: Client,
        id: Optional[int] = None,
        acquired: Optional[Dict[str, int]] = None,
        expiration_time: Optional[timedelta] = None,
        *,
        name: Optional[str] = None,
        on_lost: Optional[OnLost] = None,
    ) -> None:
        self.client = client
        self.expiration_time = expiration_or_default(expiration_time)
        self.name = client.holder_name(name)
        self.id = (
            client.new_peer(expires_in=self.expiration_time, name=self.name)
            if id is None
            else id
        )
        self._open_book(acquired, on_lost)
        self._restore_lock = threading.Lock()
        self._lost_lock = threading.Lock()

    @classmethod
    def from_server_url(cls: Type[P], baseurl: Optional[Servers], token: Optional[str] = None) -> P:
        """A new peer on the server at ``baseurl``, with default settings. ``token`` is the
        server's access token (``None``: from ``THROTTLE_TOKEN``, see ``Client``)."""
        return cls(client=Client(base_url=baseurl, token=token))

    def __getstate__(self) -> Dict[str, Any]:
        state = dict(self.__dict__)
        for name in self._runtime_attributes():
            state.pop(name, None)
        return state

    def __setstate__(self, state: Dict[str, Any]) -> None:
        # A peer pickled by an older version lacks what came later.
        self.__dict__.update({"fencing_tokens": {}, "lost": False, "name": ""})
        self.__dict__.update(state)
        self.on_lost = None
        self._restore_lock = threading.Lock()
        self._lost_lock = threading.Lock()
        self._block_callbacks = []

    def _runtime_attributes(self) -> tuple[str, ...]:
        """Attributes tied to this process (locks, threads, callbacks) that pickling leaves
        out."""
        return ("_restore_lock", "_lost_lock", "_block_callbacks", "on_lost")

    def acquire(
        self, semaphore: str, count: int = 1, block_for: Optional[timedelta] = None
    ) -> bool:
        """Ask for a lock; ``True`` if acquired, ``False`` if still pending. See
        ``Client.acquire``. The request also prolongs the peer by ``expiration_time``.

        Every acquired lock should be released again; ``lock`` does that for you. Raises
        ``LockLost`` if the peer's lease was lost.
        """
        with self._watching_lease():
            result = self.client.acquire_with_token(
                self.id,
                semaphore,
                count=count,
                expires_in=self.expiration_time,
                block_for=block_for,
            )
        return self._record(semaphore, count, result)

    def restore(self, *, cancel: Optional[threading.Event] = None) -> None:
        """Re-create this peer with its acquired locks on a server that lost it.

        Call it after ``UnknownPeer``. A ``RestoreConflict`` answer means the server knows the
        peer already (another thread, e.g. the heartbeat, restored it first), which is the state
        this call aims for, so it is not raised. The locks keep their fencing tokens. A lost
        peer is never restored: this raises ``LockLost``.
        """
        with self._restore_lock:
            self._raise_if_lost()
            try:
                self.client.restore(
                    self.id,
                    dict(self.acquired),
                    expires_in=self.expiration_time,
                    fencing_tokens=dict(self.fencing_tokens),
                    name=self.name,
                    cancel=cancel,
                )
            except RestoreConflict:
                _log.debug("peer %s was restored already", self.id)

    def release(self, semaphore: str) -> None:
        """Release the lock on ``semaphore`` (acquired or pending); the peer stays. Raises
        ``LockLost`` if the peer's lease was lost (the server released the lock already)."""
        self._forget(semaphore)
        with self._watching_lease():
            self.client.release_lock(self.id, semaphore)

    def heartbeat(self) -> None:
        """Prolong the peer by ``expiration_time`` so it does not expire. Raises ``LockLost``
        if the peer's lease was lost."""
        with self._watching_lease():
            self.client.heartbeat(self.id, expires_in=self.expiration_time)

    def remove_from_server(self) -> None:
        """Remove the peer from the server, releasing all its locks. Also the way to clean up
        after a lost lease, so it raises no ``LockLost``."""
        self._forget_all()
        self.client.release(self.id)

    def start_heartbeat(self) -> None:
        """Does nothing: a plain ``Peer`` has no heartbeat. Exists so code can treat both kinds
        of peer alike."""

    def stop_heartbeat(self) -> None:
        """Does nothing: a plain ``Peer`` has no heartbeat."""

    def _lost_guard(self) -> ContextManager[object]:
        return self._lost_lock


class PeerWithHeartbeat(Peer):
    """A ``Peer`` whose heartbeat thread prolongs it every ``heartbeat_interval`` while the
    heartbeat runs, and restores it if the server lost it.

    ``heartbeat_interval`` defaults to a third of ``expiration_time``, so two beats in a row
    may fail (a short network hiccup) before the peer expires.
    """

    def __init__(
        self,
        client: Client,
        id: Optional[int] = None,
        acquired: Optional[Dict[str, int]] = None,
        expiration_time: Optional[timedelta] = None,
        heartbeat_interval: Optional[timedelta] = None,
        *,
        name: Optional[str] = None,
        on_lost: Optional[OnLost] = None,
    ) -> None:
        super().__init__(
            client=client,
            id=id,
            acquired=acquired,
            expiration_time=expiration_time,
            name=name,
            on_lost=on_lost,
        )
        self.heartbeat_interval = interval_or_default(heartbeat_interval, self.expiration_time)
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def __setstate__(self, state: Dict[str, Any]) -> None:
        super().__setstate__(state)
        self._stop = threading.Event()
        self._thread = None

    def _runtime_attributes(self) -> tuple[str, ...]:
        return super()._runtime_attributes() + ("_stop", "_thread")

    @property
    def interval_sec(self) -> float:
        """The heartbeat interval in seconds (the 0.5 client's attribute name)."""
        return self.heartbeat_interval.total_seconds()

    def start_heartbeat(self) -> None:
        """Start the heartbeat thread, unless it runs already or the peer is lost."""
        if self.lost or (self._thread is not None and self._thread.is_alive()):
            return
        # A fresh event per thread: a thread still finishing its last beat after a stop must
        # not be revived by clearing the event it watches.
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=_heartbeat_loop,
            args=(weakref.ref(self), self._stop, self.heartbeat_interval.total_seconds()),
            name=f"throttle-heartbeat-{self.id}",
            daemon=True,
        )
        self._thread.start()

    def stop_heartbeat(self) -> None:
        """Stop the heartbeat thread and wait for it.

        The wait is short: the thread sleeps on an event that this sets, and a beat in progress
        stops retrying at once; at most one HTTP request already on the wire is waited for.
        """
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def _stop_beating(self) -> None:
        self._stop.set()

    def _beat(self, stop: threading.Event) -> None:
        """One heartbeat; restores the peer if the server restarted, marks it lost if the
        server says it expired."""
        try:
            self.client.heartbeat(self.id, expires_in=self.expiration_time, cancel=stop)
        except LockLost:
            self._mark_lost()
        except UnknownPeer:
            # Checked again here: a stop that raced with this beat means the peer was released
            # on purpose, and restoring it would bring its locks back.
            if not stop.is_set():
                _log.warning("server lost peer %s, restoring it", self.id)
                self.restore(cancel=stop)


def _heartbeat_loop(
    peer_ref: "weakref.ref[PeerWithHeartbeat]", stop: threading.Event, interval: float
) -> None:
    """The heartbeat thread's body. It holds the peer only through a weak reference, so a peer
    that nobody uses any more is garbage collected and its thread ends with it."""
    while not stop.wait(interval):
        peer = peer_ref()
        if peer is None:
            return
        try:
            peer._beat(stop)
        except LockLost:
            return  # Lost while restoring: marked so by whoever found out.
        except PASSING_BEAT_FAILURES as error:
            # The next beat tries again (see `_peers.PASSING_BEAT_FAILURES`).
            _log.warning("heartbeat for peer %s failed: %s", peer.id, error)
        except Exception:
            _log.exception("heartbeat for peer %s failed", peer.id)
        del peer
