"""Throttle for asyncio: ``async with lock(...)``, ``await rate_limit(...)``.

Wrap access to a shared resource in ``lock``::

    from throttle_client.aio import lock

    async with lock("http://localhost:8000", "db", count=1, timeout=timedelta(seconds=10)):
        await query_the_database()

The names and semantics are the blocking client's: ``lock`` waits in long-poll slices, keeps
the lock alive with a heartbeat task while the block runs, restores it after a server restart,
and releases it on exit; errors are the typed exceptions of ``throttle_client.errors``
(re-exported from ``throttle_client``). Cancellation is an exit like any other: a task
cancelled while it waits leaves nothing pending on the server, and one cancelled while it holds
releases. Nested ``lock`` blocks in one task follow the lock hierarchy, as nested blocks on one
thread do in the blocking client: each task owns its peer (``get_task_peer``,
``set_task_peer``). Connection failures are retried for ``retry_for`` like the blocking
client's, then raise ``ServerUnavailable`` (a ``ThrottleError``), naming the server.

Lower layers: ``AsyncClient`` (one coroutine per HTTP route, one pool of keep-alive
connections per event loop) and ``AsyncPeer`` (a lock owner with a heartbeat task that restores
it if the server lost it).

This module needs nothing beyond the standard library: it speaks HTTP/1.1 on asyncio's own
transports (see ``_http``), and imports neither ``requests`` nor an HTTP library.
"""

from .client import AsyncClient
from .locking import lock
from .peer import AsyncPeer
from .rate_limiting import rate_limit
from .task_peers import (
    aclose_local_clients,
    get_task_peer,
    local_client,
    set_task_peer,
    task_peer,
)

__all__ = [
    "AsyncClient",
    "AsyncPeer",
    "aclose_local_clients",
    "get_task_peer",
    "local_client",
    "lock",
    "rate_limit",
    "set_task_peer",
    "task_peer",
]
