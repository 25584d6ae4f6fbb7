"""Client for Throttle, semaphores for distributed systems served over HTTP.

Wrap access to a shared resource in ``lock``::

    from throttle_client import lock

    with lock("http://localhost:8000", "db", count=1, timeout=timedelta(seconds=10)):
        query_the_database()

Lower layers, for code that manages peers itself: ``Client`` (one method per HTTP route),
``Peer`` and ``PeerWithHeartbeat`` (lock owners that can restore themselves after a server
restart), and the thread-local peers behind ``lock`` (``get_local_peer``, ``set_local_peer``,
``clear_peers``). ``rate_limit`` caps calls per time window. Exceptions live in
``throttle_client.errors`` and are re-exported here.

Every grant carries a fencing token (``peer.fencing_token("db")`` of the peer ``lock`` yields),
strictly larger than all before it, for resources that refuse stale holders; a lease the server
says ran out raises ``LockLost`` instead of being restored (see ``peer``).

This package is a drop-in replacement for the 0.5 client: the same names and signatures.

A server with access control needs its token: ``Client(url, token=...)``,
``lock(url, ..., token=...)``, ``rate_limit(url, ..., token=...)``, or ``THROTTLE_TOKEN`` in
the environment for all of them. A missing or wrong token raises ``Unauthorized``.

Every failure is a ``ThrottleError``: a server that cannot be reached within ``retry_for``
raises ``ServerUnavailable``, whose message names the server and what happened. The blocking
client's exceptions are also the ``requests`` exceptions the 0.5 client raised
(``requests.ConnectionError``, ``requests.Timeout``, ``requests.HTTPError``), so 0.5 code
catching those keeps working.

The blocking client (``Client``, ``lock``, ``Peer``, ``rate_limit``, ...) is imported on first
use of one of its names, so ``throttle_client.aio`` and the exceptions import without
``requests``, which only the blocking client is built on.
"""

from typing import TYPE_CHECKING, Any, Dict

from ._wire import AcquireResult, PeerState
from .errors import (
    Attempt,
    BodyTooLarge,
    CountOverflow,
    CountTooLarge,
    InvalidBody,
    InvalidCount,
    InvalidDuration,
    InvalidFencingToken,
    InvalidName,
    InvalidRequest,
    LockCountChange,
    LockHierarchyViolation,
    LockLost,
    RequestRejected,
    RestoreConflict,
    SecondPendingLock,
    ServerUnavailable,
    ThrottleError,
    Timeout,
    TooManyPeers,
    Unauthorized,
    UnexpectedResponse,
    UnknownPeer,
    UnknownSemaphore,
)

if TYPE_CHECKING:
    from .client import Client
    from .local_peers import clear_peers, get_local_peer, set_local_peer
    from .locking import lock
    from .peer import Peer, PeerWithHeartbeat
    from .rate_limiting import rate_limit

# The blocking client's names, and the module that defines each.
_BLOCKING: Dict[str, str] = {
    "Client": "client",
    "clear_peers": "local_peers",
    "get_local_peer": "local_peers",
    "set_local_peer": "local_peers",
    "lock": "locking",
    "Peer": "peer",
    "PeerWithHeartbeat": "peer",
    "rate_limit": "rate_limiting",
}


def __getattr__(name: str) -> Any:
    """The blocking client's names, imported on first use (see the module doc)."""
    module = _BLOCKING.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value

__version__ = "0.6.0"

__all__ = [
    "AcquireResult",
    "Attempt",
    "BodyTooLarge",
    "Client",
    "CountOverflow",
    "CountTooLarge",
    "InvalidBody",
    "InvalidCount",
    "InvalidDuration",
    "InvalidFencingToken",
    "InvalidName",
    "InvalidRequest",
    "LockCountChange",
    "LockHierarchyViolation",
    "LockLost",
    "Peer",
    "PeerState",
    "PeerWithHeartbeat",
    "RequestRejected",
    "RestoreConflict",
    "SecondPendingLock",
    "ServerUnavailable",
    "ThrottleError",
    "Timeout",
    "TooManyPeers",
    "Unauthorized",
    "UnexpectedResponse",
    "UnknownPeer",
    "UnknownSemaphore",
    "clear_peers",
    "get_local_peer",
    "lock",
    "rate_limit",
    "set_local_peer",
]
