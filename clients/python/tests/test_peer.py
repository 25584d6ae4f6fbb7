"""``Peer``, ``PeerWithHeartbeat`` and the thread-local peers."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

from throttle_client import (
    Client,
    Peer,
    PeerWithHeartbeat,
    clear_peers,
    get_local_peer,
    set_local_peer,
)

from .conftest import wait_until


def test_peer_tracks_its_acquired_locks(client: Client) -> None:
    peer = Peer(client)
    assert not peer.has_acquired()
    assert peer.acquire("C", count=2)
    assert peer.acquired == {"C": 2} and peer.has_acquired()
    peer.release("C")
    assert peer.acquired == {} and client.remainder("C") == 5
    peer.remove_from_server()
    assert client.list_peers() == []


def test_a_pending_lock_is_not_counted_as_acquired(client: Client) -> None:
    holder, waiter = Peer(client), Peer(client)
    holder.acquire("C", count=3)
    assert not waiter.acquire("C", count=3)
    assert waiter.acquired == {}


def test_restore_brings_back_a_lost_peer(client: Client) -> None:
    peer = Peer(client, id=99, acquired={"A": 1, "C": 2})
    peer.restore()
    assert (client.remainder("A"), client.remainder("C")) == (0, 3)
    peer.restore()  # Again: the server knows it already; not an error.


def test_the_heartbeat_restores_a_peer_the_server_lost(client: Client) -> None:
    peer = PeerWithHeartbeat(
        client, id=5, acquired={"A": 1}, heartbeat_interval=timedelta(milliseconds=20)
    )
    peer.start_heartbeat()
    try:
        wait_until(lambda: client.remainder("A") == 0, what="the heartbeat to restore A")
    finally:
        peer.stop_heartbeat()


def test_stop_heartbeat_returns_at_once(client: Client) -> None:
    peer = PeerWithHeartbeat(client, heartbeat_interval=timedelta(minutes=10))
    peer.start_heartbeat()
    peer.start_heartbeat()  # Idempotent: still one thread.
    started = time.monotonic()
    peer.stop_heartbeat()
    assert time.monotonic() - started < 0.5
    assert not [t for t in threading.enumerate() if t.name.startswith("throttle-heartbeat")]


def test_heartbeat_defaults_follow_the_expiration_time(client: Client) -> None:
    peer = PeerWithHeartbeat(client, expiration_time=timedelta(seconds=30))
    assert peer.heartbeat_interval == timedelta(seconds=10)
    assert peer.interval_sec == 10.0


def test_from_server_url(url: str, client: Client) -> None:
    peer = PeerWithHeartbeat.from_server_url(url)
    assert isinstance(peer, PeerWithHeartbeat)
    assert [p.id for p in client.list_peers()] == [peer.id]


def test_local_peers_are_per_thread_and_per_url(url: str) -> None:
    mine = get_local_peer(url)
    assert get_local_peer(url) is mine
    assert isinstance(mine, PeerWithHeartbeat)
    theirs = []
    thread = threading.Thread(target=lambda: theirs.append(get_local_peer(url)))
    thread.start()
    thread.join()
    assert theirs[0] is not mine and theirs[0].id != mine.id


def test_set_local_peer_replaces_and_returns_the_old_one(url: str, client: Client) -> None:
    first = get_local_peer(url)
    custom = Peer(client, expiration_time=timedelta(seconds=10))
    assert set_local_peer(url, custom) is first
    assert get_local_peer(url) is custom
    clear_peers()
    assert get_local_peer(url) is not custom
