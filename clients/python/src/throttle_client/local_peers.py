"""The thread-local peer per server URL that ``lock`` uses.

Lock hierarchies are enforced per peer, and a thread's nested ``with lock(...)`` blocks must all
belong to one peer for the hierarchy check to mean anything, while two threads must not share a
peer (one thread's locks would count against the other's level). One peer per thread and server
is therefore the default.

The ``Client`` is kept per thread as well, beyond the peer's lifetime: ``lock`` removes the peer
when its outermost block exits, but the next ``lock`` in the same thread reuses the client's
keep-alive connection instead of opening a new one.
"""

from __future__ import annotations

import threading
from typing import Dict, Optional

from .client import Client
from .peer import Peer, PeerWithHeartbeat


class _ThreadState(threading.local):
    """Per-thread maps from server URL to peer and to client."""

    def __init__(self) -> None:
        self.peers: Dict[str, Peer] = {}
        self.clients: Dict[str, Client] = {}


_state = _ThreadState()


def get_local_peer(url: str) -> Peer:
    """This thread's peer for the server at ``url`` (e.g. ``http://localhost:8000``), created
    (as a ``PeerWithHeartbeat`` with default settings) if there is none yet."""
    peer = _state.peers.get(url)
    if peer is None:
        peer = PeerWithHeartbeat(client=local_client(url))
        _state.peers[url] = peer
    return peer


def set_local_peer(url: str, peer: Peer) -> Optional[Peer]:
    """Make ``peer`` this thread's peer for ``url``, e.g. one built with a custom expiration
    time or heartbeat interval. Returns the peer it replaces, if any."""
    old = _state.peers.get(url)
    _state.peers[url] = peer
    return old


def clear_peers() -> None:
    """Forget this thread's peers. It neither releases them nor stops their heartbeats."""
    _state.peers = {}


def local_client(url: str) -> Client:
    """This thread's client for ``url``, created on first use and kept for the thread's
    lifetime so its connection is reused."""
    client = _state.clients.get(url)
    if client is None:
        client = Client(url)
        _state.clients[url] = client
    return client


def forget_local_peer(url: str, peer: Peer) -> None:
    """Drop ``peer`` as this thread's peer for ``url``, if it still is."""
    if _state.peers.get(url) is peer:
        del _state.peers[url]
