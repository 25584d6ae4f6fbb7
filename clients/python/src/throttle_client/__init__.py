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
"""

from .client import AcquireResult, Client, PeerState
from .errors import (
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
    ThrottleError,
    Timeout,
    TooManyPeers,
    Unauthorized,
    UnexpectedResponse,
    UnknownPeer,
    UnknownSemaphore,
)
from .local_peers import clear_peers, get_local_peer, set_local_peer
from .locking import lock
from .peer import Peer, PeerWithHeartbeat
from .rate_limiting import rate_limit

__version__ = "0.6.0"

__all__ = [
    "AcquireResult",
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
