"""The peer of each task that ``lock`` uses, and the clients shared by ``lock`` and
``rate_limit``.

Lock hierarchies are enforced per peer. The blocking client gives each thread its own peer, so
that nested ``with lock(...)`` blocks on one thread form one hierarchy while two threads never
share one. On an event loop the unit of "one flow of control" is the task, so here each task
owns its peer, kept in a ``contextvars.ContextVar``.

A context variable alone is not enough: a task inherits a copy of its parent's context, and
with it the parent's peer. A task started inside ``async with lock(...)`` must not nest under
the parent's locks (it runs concurrently with the parent, which could then deadlock on itself),
so each binding remembers the task that made it, and a task sees only its own bindings.

The clients are shared more widely: one ``AsyncClient`` per server URL and token for the whole
thread, whatever loop runs on it, so all the tasks of a loop share one connection pool. An
``AsyncClient`` opens a new pool when it finds itself on a new event loop.
"""

from __future__ import annotations

import asyncio
import os
import threading
from contextvars import ContextVar
from typing import Any, Mapping, Optional, Tuple

from .._members import Servers, servers_key
from .._settings import Clients, shared_client
from .client import AsyncClient
from .peer import AsyncPeer

__all__ = [
    "aclose_local_clients",
    "forget_task_peer",
    "get_task_peer",
    "local_client",
    "set_task_peer",
    "task_peer",
]

# Server URLs (`servers_key`) -> (the task that bound the peer, the peer). Never mutated: every change sets a
# new mapping, so the copies other tasks inherited stay as they were.
_Bindings = Mapping[str, Tuple["asyncio.Task[Any]", AsyncPeer]]
_bindings: ContextVar[_Bindings] = ContextVar("throttle_client_task_peers", default={})


class _ThreadClients(threading.local):
    def __init__(self) -> None:
        self.clients: Clients[AsyncClient] = {}


_clients = _ThreadClients()


def task_peer(url: Optional[Servers]) -> Optional[AsyncPeer]:
    """The current task's peer for the server at ``url`` (or the members of a cluster, see
    ``throttle_client.local_peers``), or ``None`` if it has none."""
    binding = _bindings.get().get(servers_key(url, os.environ))
    if binding is None or binding[0] is not _current_task():
        return None
    return binding[1]


async def get_task_peer(
    url: Optional[Servers], token: Optional[str] = None, *, name: Optional[str] = None
) -> AsyncPeer:
    """The current task's peer for the server at ``url``, created on the server (with default
    settings) if the task has none yet. ``token``: see ``AsyncClient``; ``name``: a new peer's
    holder name (``None``: ``hostname:pid``). An existing peer keeps the client and the name
    it was created with."""
    peer = task_peer(url)
    if peer is None:
        peer = await AsyncPeer.create(local_client(url, token), name=name)
        set_task_peer(url, peer)
    return peer


def set_task_peer(url: Optional[Servers], peer: AsyncPeer) -> Optional[AsyncPeer]:
    """Make ``peer`` the current task's peer for ``url``, e.g. one created with a custom
    expiration time or heartbeat interval. Returns the peer it replaces, if any.

    The binding lasts until the task ends or its outermost ``lock`` on ``url`` exits, which
    removes the peer from the server. Tasks the current task starts afterwards do not see it.
    """
    old = task_peer(url)
    task = _current_task()
    bindings = {u: b for u, b in _bindings.get().items() if b[0] is task}
    bindings[servers_key(url, os.environ)] = (task, peer)
    _bindings.set(bindings)
    return old


def forget_task_peer(url: Optional[Servers], peer: AsyncPeer) -> None:
    """Drop ``peer`` as the current task's peer for ``url``, if it still is."""
    if task_peer(url) is not peer:
        return
    task = _current_task()
    key = servers_key(url, os.environ)
    _bindings.set({u: b for u, b in _bindings.get().items() if b[0] is task and u != key})


def local_client(url: Optional[Servers], token: Optional[str] = None) -> AsyncClient:
    """This thread's shared client for ``url`` and ``token`` (``None``: from
    ``THROTTLE_TOKEN``), created on first use, the one ``lock`` and ``rate_limit`` use."""
    return shared_client(
        _clients.clients, url, token, lambda url, token: AsyncClient(url, token=token)
    )


async def aclose_local_clients() -> None:
    """Close the connections of this thread's shared clients, e.g. before the event loop
    ends. They reconnect if used again."""
    for client in list(_clients.clients.values()):
        await client.aclose()


def _current_task() -> "asyncio.Task[Any]":
    task = asyncio.current_task()
    if task is None:
        raise RuntimeError("throttle_client.aio needs to run inside an asyncio task")
    return task
