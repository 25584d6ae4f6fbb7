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
from typing import Any, Callable, Dict, List, Optional, Type, TypeVar

import requests

from .client import Client
from .errors import (
    LockLost,
    RestoreConflict,
    TooManyPeers,
    Unauthorized,
    UnexpectedResponse,
    UnknownPeer,
)

_log = logging.getLogger(__name__)

#: How long the server keeps a peer it does not hear from, unless told otherwise.
DEFAULT_EXPIRATION = timedelta(minutes=5)

P = TypeVar("P", bound="Peer")

#: What runs once when a peer's lease is lost; it gets the peer (what it returns is ignored).
OnLost = Callable[["Peer"], object]


class Peer:
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
    lost.
    """

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
        self.expiration_time = (
            expiration_time if expiration_time is not None else DEFAULT_EXPIRATION
        )
        self.name = client.holder_name(name)
        self.id = (
            client.new_peer(expires_in=self.expiration_time, name=self.name)
            if id is None
            else id
        )
        # The client-side copy of the server's state, sent back by `restore`.
        self.acquired: Dict[str, int] = {} if acquired is None else acquired
        # The fencing token of each acquired lock whose grant carried one.
        self.fencing_tokens: Dict[str, int] = {}
        #: Whether the server said the peer expired: its locks are lost (see the module doc).
        self.lost = False
        self.on_lost = on_lost
        self._restore_lock = threading.Lock()
        self._lost_lock = threading.Lock()
        # Callbacks of the `lock` blocks that hold locks of this peer now.
        self._block_callbacks: List[OnLost] = []

    @classmethod
    def from_server_url(cls: Type[P], baseurl: str, token: Optional[str] = None) -> P:
        """A new peer on the server at ``baseurl``, with default settings. ``token`` is the
        server's access token (``None``: from ``THROTTLE_TOKEN``, see ``Client``)."""
        return cls(client=Client(base_url=baseurl, token=token))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(id={self.id}, acquired={self.acquired!r})"

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

    def fencing_token(self, semaphore: str) -> Optional[int]:
        """The fencing token of this peer's lock on ``semaphore``: strictly larger than the
        token of every grant before it on the server, so a resource that remembers the largest
        token it saw can refuse a holder that lost its lease (see the README). ``None`` if the
        peer holds no such lock, or the server (Throttle 0.5) sends no tokens."""
        return self.fencing_tokens.get(semaphore)

    def acquire(
        self, semaphore: str, count: int = 1, block_for: Optional[timedelta] = None
    ) -> bool:
        """Ask for a lock; ``True`` if acquired, ``False`` if still pending. See
        ``Client.acquire``. The request also prolongs the peer by ``expiration_time``.

        Every acquired lock should be released again; ``lock`` does that for you. Raises
        ``LockLost`` if the peer's lease was lost.
        """
        self._raise_if_lost()
        try:
            result = self.client.acquire_with_token(
                self.id,
                semaphore,
                count=count,
                expires_in=self.expiration_time,
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
        self.acquired.pop(semaphore, None)
        self.fencing_tokens.pop(semaphore, None)
        self._raise_if_lost()
        try:
            self.client.release_lock(self.id, semaphore)
        except LockLost:
            self._mark_lost()
            raise

    def heartbeat(self) -> None:
        """Prolong the peer by ``expiration_time`` so it does not expire. Raises ``LockLost``
        if the peer's lease was lost."""
        self._raise_if_lost()
        try:
            self.client.heartbeat(self.id, expires_in=self.expiration_time)
        except LockLost:
            self._mark_lost()
            raise

    def has_acquired(self) -> bool:
        """``True`` if this peer holds at least one lock."""
        return len(self.acquired) != 0

    def remove_from_server(self) -> None:
        """Remove the peer from the server, releasing all its locks. Also the way to clean up
        after a lost lease, so it raises no ``LockLost``."""
        self.acquired.clear()
        self.fencing_tokens.clear()
        self.client.release(self.id)

    def start_heartbeat(self) -> None:
        """Does nothing: a plain ``Peer`` has no heartbeat. Exists so code can treat both kinds
        of peer alike."""

    def stop_heartbeat(self) -> None:
        """Does nothing: a plain ``Peer`` has no heartbeat."""

    # The lost lease.

    def _raise_if_lost(self) -> None:
        if self.lost:
            raise LockLost(
                f"peer {self.id} lost its lease: the server released its locks, which others "
                "may hold now"
            )

    def _mark_lost(self) -> None:
        """Mark the peer lost, stop its heartbeat and run its callbacks, the first time only."""
        with self._lost_lock:
            if self.lost:
                return
            self.lost = True
            callbacks = [self.on_lost, *self._block_callbacks]
        _log.warning("peer %s expired on the server: its locks are lost, not restored", self.id)
        self._stop_beating()
        for callback in callbacks:
            if callback is None:
                continue
            try:
                callback(self)
            except Exception:
                _log.exception("the on_lost callback of peer %s failed", self.id)

    def _stop_beating(self) -> None:
        """Tell the heartbeat (if any) to stop, without waiting: this may run on its thread."""

    def _add_block_callback(self, callback: OnLost) -> None:
        self._block_callbacks.append(callback)

    def _remove_block_callback(self, callback: OnLost) -> None:
        try:
            self._block_callbacks.remove(callback)
        except ValueError:
            pass


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
        self.heartbeat_interval = (
            heartbeat_interval if heartbeat_interval is not None else self.expiration_time / 3
        )
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
        except (
            requests.ConnectionError,
            requests.Timeout,
            UnexpectedResponse,
            Unauthorized,
            TooManyPeers,
        ) as error:
            # The server may be back (or have a free peer slot, for a restore) before the peer
            # expires; the next beat tries again.
            _log.warning("heartbeat for peer %s failed: %s", peer.id, error)
        except Exception:
            _log.exception("heartbeat for peer %s failed", peer.id)
        del peer
