"""A server at its peer limit (``--max-peers``) answers 503 ``Too many peers``: the client raises
``TooManyPeers`` at once instead of retrying it like a server error."""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from typing import Tuple

import pytest
import requests

from throttle_client import (
    Client,
    PeerWithHeartbeat,
    ThrottleError,
    TooManyPeers,
    lock,
)
from throttle_client.errors import error_for

from conftest import StartServer, ThrottleServer

from .conftest import wait_until
from .stub_server import StubServer

MINUTE = timedelta(minutes=1)

# Far below the default retry budget of 60 s: an answer this fast was not retried for long.
PROMPTLY_SECONDS = 2.0


@pytest.fixture
def full_server(start_server: StartServer) -> ThrottleServer:
    """A server that allows one live peer."""
    return start_server("[semaphores]\nA = 1\n", args=["--max-peers", "1"])


@pytest.fixture
def full_client(full_server: ThrottleServer) -> Client:
    return Client(full_server.url)


def test_new_peer_beyond_the_limit_raises_too_many_peers_at_once(full_client: Client) -> None:
    first = full_client.new_peer(expires_in=MINUTE)
    started = time.monotonic()
    with pytest.raises(TooManyPeers) as raised:
        full_client.new_peer(expires_in=MINUTE)
    assert time.monotonic() - started < PROMPTLY_SECONDS
    error = raised.value
    assert error.status_code == 503
    assert error.text.startswith("Too many peers")
    # Catchable as the package's base error, and as the HTTPError the 0.5 client raised.
    assert isinstance(error, ThrottleError)
    assert isinstance(error, requests.HTTPError)
    assert not isinstance(error, ValueError)
    # Once the slot is free, a new peer is welcome again.
    full_client.release(first)
    full_client.release(full_client.new_peer(expires_in=MINUTE))


def test_restore_of_a_new_peer_beyond_the_limit_raises_too_many_peers(
    full_client: Client,
) -> None:
    holder = full_client.new_peer(expires_in=MINUTE)
    assert full_client.acquire(holder, "A")
    started = time.monotonic()
    with pytest.raises(TooManyPeers):
        full_client.restore(holder + 1, {}, expires_in=MINUTE)
    assert time.monotonic() - started < PROMPTLY_SECONDS
    # Restoring the peer the server knows is no new peer: it only prolongs it.
    full_client.restore(holder, {"A": 1}, expires_in=MINUTE)
    assert full_client.remainder("A") == 0


def test_lock_on_a_full_server_raises_too_many_peers_at_once(
    full_server: ThrottleServer, full_client: Client
) -> None:
    other = full_client.new_peer(expires_in=MINUTE)
    started = time.monotonic()
    with pytest.raises(TooManyPeers):
        with lock(full_server.url, "A", timeout=timedelta(seconds=10)):
            pytest.fail("no lock without a peer")
    assert time.monotonic() - started < PROMPTLY_SECONDS
    full_client.release(other)
    with lock(full_server.url, "A", timeout=timedelta(seconds=10)):
        assert full_client.remainder("A") == 0


def test_the_heartbeat_retries_a_refused_restore_at_its_next_beat(
    full_client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    # The server lost peer 5 (as after a restart), and another peer took the only slot.
    other = full_client.new_peer(expires_in=MINUTE)
    peer = PeerWithHeartbeat(
        full_client, id=5, acquired={"A": 1}, heartbeat_interval=timedelta(milliseconds=20)
    )
    with caplog.at_level(logging.WARNING, logger="throttle_client"):
        peer.start_heartbeat()
        try:
            wait_until(
                lambda: any("Too many peers" in r.getMessage() for r in caplog.records),
                what="a refused restore",
            )
            # A warning, not a traceback: the heartbeat expects this and goes on.
            assert not any(r.exc_info for r in caplog.records)
            full_client.release(other)
            wait_until(lambda: full_client.remainder("A") == 0, what="the restore of A")
        finally:
            peer.stop_heartbeat()


def test_only_the_peer_limit_skips_the_retries_of_a_503() -> None:
    answers = [(503, "Shutting down"), (503, "Too many peers: the server holds its limit")]

    def script(method: str, path: str) -> Tuple[int, str]:
        return answers.pop(0) if answers else (200, "7")

    with StubServer(script) as stub:
        with pytest.raises(TooManyPeers):
            Client(stub.url).new_peer(expires_in=MINUTE)
        # The first 503 was retried, the second ended the call.
        assert len(stub.requests) == 2


def test_error_for_maps_the_peer_limit_by_status_and_first_words() -> None:
    assert isinstance(error_for(503, "Too many peers: limit 1\n"), TooManyPeers)
    # Other 503s are left to the retry policy, and the words alone do not count.
    assert error_for(503, "Service unavailable") is None
    assert not isinstance(error_for(400, "Too many peers"), TooManyPeers)
