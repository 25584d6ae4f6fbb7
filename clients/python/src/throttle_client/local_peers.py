"""The thread-local peer per server (or cluster) that ``lock`` uses.

Lock hierarchies are enforced per peer, and a thread's nested ``with lock(...)`` blocks must all
belong to one peer for the hierarchy check to mean anything, while two threads must not share a
peer (one thread's locks would count against the other's level). One peer per thread and server
is therefore the default.

The ``Client`` is kept per thread as well, beyond the peer's lifetime: ``lock`` removes the peer
when its outermost block exits, but the next ``lock`` in the same thread reuses the client's
keep-alive connection instead of opening a new one. Clients are kept per server URL and token,
so a call with another token gets a client of its own.

A server is named by its URL, or a cluster by its members' URLs (a list, or one string with
commas, see ``_members.parse_servers``); every spelling of the same members in the same order
shares one peer and one client.
"""

from __future__ import annotations

import os
import threading
from typing import Dict, Optional

from ._members import Servers, servers_key
from ._settings import Clients, shared_client
from .client import Client
from .peer import Peer, PeerWithHeartbeat


class _ThreadState(threading.local):
    """Per-thread maps from server URL to peer and to client."""

    def __init__(self) -> None:
        self.peers: Dict[str, Peer] = {}
        self.clients: Clients[Client] = {}


_state = _ThreadState()


def get_local_peer(
    url: Optional[Servers], token: Optional[str] = None, *, name: Optional[str] = None
) -> Peer:
    """This thread's peer for the server at ``url`` (e.g. ``http://localhost:8000``, or the
    members of a cluster; ``None``: ``THROTTLE_URL``), created
    (as a ``PeerWithHeartbeat`` with default settings) if there is none yet.

    ``token`` is the server's access token for a new peer's client (``None``: from
    ``THROTTLE_TOKEN``, see ``Client``), and ``name`` a new peer's holder name (``None``:
    ``hostname:pid``). An existing peer keeps the client and the name it was created with.
    """
    key = servers_key(url, os.environ)
    peer = _state.peers.get(key)
    if peer is None:
        peer = PeerWithHeartbeat(client=local_client(key, token), name=name)
        _state.peers[key] = peer
    return peer


def set_local_peer(url: Optional[Servers], peer: Peer) -> Optional[Peer]:
    """Make ``peer`` this thread's peer for ``url``, e.g. one built with a custom expiration
    time or heartbeat interval. Returns the peer it replaces, if any."""
    key = servers_key(url, os.environ)
    old = _state.peers.get(key)
    _state.peers[key] = peer
    return old


def clear_peers() -> None:
    """Forget this thread's peers. It neither releases them nor stops their heartbeats."""
    _state.peers = {}


def local_client(url: Optional[Servers], token: Optional[str] = None) -> Client:
    """This thread's client for ``url`` and ``token`` (``None``: from ``THROTTLE_TOKEN``),
    created on first use and kept for the thread's lifetime so its connection is reused."""
    return shared_client(_state.clients, url, token, lambda url, token: Client(url, token=token))


def forget_local_peer(url: Optional[Servers], peer: Peer) -> None:
    """Drop ``peer`` as this thread's peer for ``url``, if it still is."""
    key = servers_key(url, os.environ)
    if _state.peers.get(key) is peer:
        del _state.peers[key]
