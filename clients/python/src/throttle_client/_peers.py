"""What a peer keeps client-side, shared by ``Peer`` (threads) and ``aio.AsyncPeer`` (tasks).

Nothing here does I/O. ``PeerBook`` holds the copy of the server's state that ``restore`` sends
back (the acquired locks and their fencing tokens), whether the lease was lost, and the
callbacks to run when it is; it updates them from the answers the peer's client reads. The two
peers only send the requests, each in its own colour (blocking or awaited), and run the
heartbeat on a thread or a task.

**Lost, once.** ``_mark_lost`` marks the peer lost, stops its heartbeat and runs its callbacks,
the first time only; every later call raises ``LockLost`` (``_raise_if_lost``) and nothing is
restored, because the server released the locks and others may hold them now.
"""

from __future__ import annotations

import contextlib
import logging
from datetime import timedelta
from typing import Callable, ClassVar, ContextManager, Dict, Iterator, List, Optional, Self

from ._wire import AcquireResult
from .errors import (
    LockLost,
    ServerUnavailable,
    TooManyPeers,
    Unauthorized,
    UnexpectedResponse,
)

#: How long the server keeps a peer it does not hear from, unless told otherwise.
DEFAULT_EXPIRATION = timedelta(minutes=5)

#: The longest single long poll of ``lock``. Short enough that a silently dropped connection is
#: noticed soon, long enough that a waiting client sends a request only every few seconds.
LOCK_SLICE = timedelta(seconds=5)

#: The failures of a heartbeat that the next beat may not meet: the server may be back (or have
#: a free peer slot, for a restore) before the peer expires, so the heartbeat logs them and
#: beats on.
PASSING_BEAT_FAILURES = (ServerUnavailable, UnexpectedResponse, Unauthorized, TooManyPeers)


def expiration_or_default(expiration_time: Optional[timedelta]) -> timedelta:
    """A peer's expiration time: ``expiration_time``, else ``DEFAULT_EXPIRATION``."""
    return expiration_time if expiration_time is not None else DEFAULT_EXPIRATION


def interval_or_default(interval: Optional[timedelta], expiration_time: timedelta) -> timedelta:
    """A heartbeat interval: ``interval``, else a third of ``expiration_time``, so two beats in
    a row may fail (a short network hiccup) before the peer expires."""
    return interval if interval is not None else expiration_time / 3


class PeerBook:
    """The bookkeeping of one peer: its id, the locks it holds with their fencing tokens, and
    its lost lease. ``Peer`` and ``aio.AsyncPeer`` derive from it and do the I/O."""

    id: int
    #: How long the server keeps the peer without hearing from it; every acquire and heartbeat
    #: prolongs it by this much.
    expiration_time: timedelta
    #: The client-side copy of the server's state, sent back by ``restore``.
    acquired: Dict[str, int]
    #: The fencing token of each acquired lock whose grant carried one.
    fencing_tokens: Dict[str, int]
    #: Whether the server said the peer expired: its locks are lost (see the module doc).
    lost: bool
    on_lost: Optional[Callable[[Self], object]]
    # Callbacks of the `lock` blocks that hold locks of this peer now.
    _block_callbacks: List[Callable[[Self], object]]
    #: The logger of the module that defines the peer class.
    _logger: ClassVar[logging.Logger]

    def _open_book(
        self,
        acquired: Optional[Dict[str, int]],
        on_lost: Optional[Callable[[Self], object]],
    ) -> None:
        """Set up the bookkeeping of a new (or taken over) peer; ``id`` is set by the caller."""
        self.acquired = {} if acquired is None else acquired
        self.fencing_tokens = {}
        self.lost = False
        self.on_lost = on_lost
        self._block_callbacks = []

    def __repr__(self) -> str:
        return f"{type(self).__name__}(id={self.id}, acquired={self.acquired!r})"

    def fencing_token(self, semaphore: str) -> Optional[int]:
        """The fencing token of this peer's lock on ``semaphore``: strictly larger than the
        token of every grant before it on the server, so a resource that remembers the largest
        token it saw can refuse a holder that lost its lease (see the README). ``None`` if the
        peer holds no such lock, or the server (Throttle 0.5) sends no tokens."""
        return self.fencing_tokens.get(semaphore)

    def has_acquired(self) -> bool:
        """``True`` if this peer holds at least one lock."""
        return len(self.acquired) != 0

    # Answers.

    def _record(self, semaphore: str, count: int, result: AcquireResult) -> bool:
        """Note the answer to an acquire of ``count`` on ``semaphore``; whether it is granted."""
        if result.granted:
            self.acquired[semaphore] = count
            if result.fencing_token is None:
                self.fencing_tokens.pop(semaphore, None)
            else:
                self.fencing_tokens[semaphore] = result.fencing_token
        return result.granted

    def _forget(self, semaphore: str) -> None:
        """Forget the lock on ``semaphore``, before it is released on the server."""
        self.acquired.pop(semaphore, None)
        self.fencing_tokens.pop(semaphore, None)

    def _forget_all(self) -> None:
        """Forget every lock, before the peer is removed from the server."""
        self.acquired.clear()
        self.fencing_tokens.clear()

    # The lost lease.

    @contextlib.contextmanager
    def _watching_lease(self) -> Iterator[None]:
        """Around a request on the peer: raises ``LockLost`` at once if the lease was lost,
        and marks the peer lost if the request raises it."""
        self._raise_if_lost()
        try:
            yield
        except LockLost:
            self._mark_lost()
            raise

    def _raise_if_lost(self) -> None:
        if self.lost:
            raise LockLost(
                f"peer {self.id} lost its lease: the server released its locks, which others "
                "may hold now"
            )

    def _mark_lost(self: Self) -> None:
        """Mark the peer lost, stop its heartbeat and run its callbacks, the first time only."""
        with self._lost_guard():
            if self.lost:
                return
            self.lost = True
            callbacks: List[Optional[Callable[[Self], object]]] = [
                self.on_lost, *self._block_callbacks
            ]
        self._logger.warning(
            "peer %s expired on the server: its locks are lost, not restored", self.id
        )
        self._stop_beating()
        for callback in callbacks:
            if callback is None:
                continue
            try:
                callback(self)
            except Exception:
                self._logger.exception("the on_lost callback of peer %s failed", self.id)

    def _lost_guard(self) -> ContextManager[object]:
        """What makes ``_mark_lost``'s check and set one step: nothing on an event loop, where
        no other task runs in between; a lock where threads may race."""
        return contextlib.nullcontext()

    def _stop_beating(self) -> None:
        """Tell the heartbeat (if any) to stop, without waiting: this may run on it."""

    def _add_block_callback(self, callback: Callable[[Self], object]) -> None:
        self._block_callbacks.append(callback)

    def _remove_block_callback(self, callback: Callable[[Self], object]) -> None:
        try:
            self._block_callbacks.remove(callback)
        except ValueError:
            pass


def check_new_lock(peer: PeerBook, semaphore: str, owner: str) -> timedelta:
    """Refuse a second lock of the ``owner``'s (thread's or task's) peer on ``semaphore``: the
    server would answer the repeat idempotently, and the inner block's exit would then release
    the outer block's lock. Returns the longest slice to wait in, short enough that a peer
    kept alive by its acquires alone does not expire between two of them."""
    if semaphore in peer.acquired:
        raise ValueError(f"this {owner}'s peer already holds a lock on {semaphore!r}")
    return min(LOCK_SLICE, peer.expiration_time / 2)


def lost_error(peer: PeerBook, semaphore: str) -> LockLost:
    """What the exit of a ``lock`` block raises when its peer's lease ran out while it held the
    lock."""
    return LockLost(
        f"the lease of peer {peer.id} ran out while it held {semaphore!r}: the server released "
        "the lock, and others may have held it since"
    )
