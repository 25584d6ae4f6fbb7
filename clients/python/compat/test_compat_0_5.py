"""The published ``throttle-client==0.5.13`` against this server (issue 2).

Existing users upgrade the server before (or without) upgrading their clients, so the old
client's requests must keep working word for word: its routes and bodies, the exact
``Unknown peer`` text it compares against, and its recovery path (restore after a restart).
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest

import throttle_client
from throttle_client import Client, Peer, PeerWithHeartbeat, lock, set_local_peer

MINUTE = timedelta(minutes=1)


def test_the_installed_client_is_the_published_one() -> None:
    assert not hasattr(throttle_client, "rate_limit"), "run this suite against 0.5.13"


def test_lock(url: str) -> None:
    client = Client(url)
    with lock(url, "A"):
        assert client.remainder("A") == 0
    assert client.remainder("A") == 1


def test_lock_with_a_count(url: str) -> None:
    client = Client(url)
    with lock(url, "C", count=2):
        assert client.remainder("C") == 1
    assert client.remainder("C") == 3


def test_nested_locks_in_level_order(url: str) -> None:
    client = Client(url)
    with lock(url, "A"):
        with lock(url, "B"):
            assert (client.remainder("A"), client.remainder("B")) == (0, 0)
        assert (client.remainder("A"), client.remainder("B")) == (0, 1)
    assert (client.remainder("A"), client.remainder("B")) == (1, 1)


def test_every_client_route(url: str) -> None:
    client = Client(url)
    first = client.new_peer(expires_in=MINUTE)
    second = client.new_peer(expires_in=MINUTE)
    assert client.acquire(first, "A")  # No query at all: the URL ends in "?".
    assert not client.acquire(second, "A", block_for=timedelta(milliseconds=100))
    assert client.is_acquired(first) and not client.is_acquired(second)
    client.heartbeat(first, expires_in=MINUTE)
    client.release_lock(first, "A")
    assert client.is_acquired(second)
    client.release(second)
    client.release(first)
    assert client.remainder("A") == 1


def test_refusals_are_value_errors_with_the_servers_reason(url: str) -> None:
    with pytest.raises(ValueError, match="Unknown semaphore"):
        with lock(url, "Unknown"):
            pass
    with pytest.raises(ValueError):
        Peer(client=Client(url)).acquire("A", count=2)


def test_unknown_peer_is_recognised(url: str) -> None:
    """0.5.13 compares the whole body with ``Unknown peer``: a byte more breaks recovery."""
    with pytest.raises(throttle_client.UnknownPeer):
        Client(url).heartbeat(4242, expires_in=MINUTE)


def test_lock_restores_a_peer_the_server_does_not_know(url: str) -> None:
    set_local_peer(url, PeerWithHeartbeat(client=Client(url), id=42))
    with lock(url, "A", timeout=timedelta(seconds=10)):
        assert Client(url).remainder("A") == 0


def test_a_held_lock_survives_a_server_restart(server) -> None:  # type: ignore[no-untyped-def]
    client = Client(server.url)
    with lock(server.url, "A"):
        server.restart()
        # The server forgot the peer. The next acquire gets `Unknown peer`, restores the peer
        # with A, then takes B.
        with lock(server.url, "B", timeout=timedelta(seconds=10)):
            assert (client.remainder("A"), client.remainder("B")) == (0, 0)
    assert (client.remainder("A"), client.remainder("B")) == (1, 1)


def test_the_heartbeat_restores_after_a_server_restart(server) -> None:  # type: ignore[no-untyped-def]
    client = Client(server.url)
    peer = PeerWithHeartbeat(client=client, heartbeat_interval=timedelta(milliseconds=100))
    set_local_peer(server.url, peer)
    with lock(server.url, "A"):
        server.restart()
        deadline = time.monotonic() + 20
        while client.remainder("A") != 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert client.remainder("A") == 0
    assert client.remainder("A") == 1


def test_a_waiting_lock_is_granted_after_a_server_restart(server) -> None:  # type: ignore[no-untyped-def]
    client = Client(server.url)
    holder = Peer(client=client)
    holder.acquire("A")
    granted = threading.Event()

    def wait_for_a() -> None:
        with lock(server.url, "A", timeout=timedelta(seconds=30)):
            granted.set()

    thread = threading.Thread(target=wait_for_a)
    thread.start()
    deadline = time.monotonic() + 10
    while not any(p["pending"] for p in _peers(server.url)) and time.monotonic() < deadline:
        time.sleep(0.01)
    server.restart()
    thread.join(timeout=40)
    assert granted.is_set()


def _peers(url: str) -> list:  # type: ignore[type-arg]
    import json
    import urllib.request

    with urllib.request.urlopen(f"{url}/peers/", timeout=5) as response:
        return json.loads(response.read())  # type: ignore[no-any-return]
