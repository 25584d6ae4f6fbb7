"""Pickling: a ``Client`` (and a ``Peer``) can be handed to another process."""

from __future__ import annotations

import pickle
from datetime import timedelta

from throttle_client import Client, Peer, PeerWithHeartbeat


def test_client_pickles_without_a_server() -> None:
    original = Client("https://dummy-endpoint", retry_for=timedelta(seconds=3))
    copy = pickle.loads(pickle.dumps(original))
    assert copy.base_url == original.base_url
    assert copy.retry_for == timedelta(seconds=3)


def test_a_used_client_pickles_and_the_copy_reconnects(client: Client) -> None:
    assert client.remainder("A") == 1  # Opens the session that pickling must leave out.
    copy = pickle.loads(pickle.dumps(client))
    assert copy.remainder("A") == 1


def test_peers_pickle(client: Client) -> None:
    peer = PeerWithHeartbeat(client, heartbeat_interval=timedelta(milliseconds=50))
    peer.acquire("A")
    peer.start_heartbeat()
    try:
        copy = pickle.loads(pickle.dumps(peer))
    finally:
        peer.stop_heartbeat()
    assert (copy.id, copy.acquired) == (peer.id, {"A": 1})
    copy.release("A")
    assert client.remainder("A") == 1
    plain = pickle.loads(pickle.dumps(Peer(client)))
    assert plain.client.base_url == client.base_url
