"""Access control: a server with a token, and the client's ``token`` and ``THROTTLE_TOKEN``."""

from __future__ import annotations

import pickle
import time
from datetime import timedelta
from typing import Any, Callable, Iterator, List

import pytest

from throttle_client import (
    Client,
    Peer,
    PeerWithHeartbeat,
    ThrottleError,
    Unauthorized,
    get_local_peer,
    lock,
    rate_limit,
)
from throttle_client.errors import error_for

from .conftest import wait_until
from .stub_server import StubServer

TOKEN = "s3cret"
CONFIG = "[semaphores]\nA = { max = 1, level = 1 }\nB = 1\nC = 5\n"
MINUTE = timedelta(minutes=1)


@pytest.fixture(autouse=True)
def no_token_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Tests set ``THROTTLE_TOKEN`` themselves where they mean to."""
    monkeypatch.delenv("THROTTLE_TOKEN", raising=False)
    yield


@pytest.fixture
def token_server(start_server: Any) -> Any:
    """A server that needs ``TOKEN``, given to it in its environment."""
    return start_server(CONFIG, env={"THROTTLE_TOKEN": TOKEN})


@pytest.fixture
def token_url(token_server: Any) -> str:
    return token_server.url  # type: ignore[no-any-return]


def test_with_the_token_every_route_works(token_url: str) -> None:
    client = Client(token_url, token=TOKEN)
    assert client.has_token
    peer_id = client.new_peer(expires_in=MINUTE)
    assert client.acquire(peer_id, "C", count=2)
    assert client.remainder("C") == 3
    assert client.is_acquired(peer_id)
    assert [peer.id for peer in client.list_peers()] == [peer_id]
    client.heartbeat(peer_id, expires_in=MINUTE)
    client.release_lock(peer_id, "C")
    client.restore(4242, {"B": 1}, expires_in=MINUTE)
    assert client.remainder("B") == 0
    client.release(4242)
    assert client.version()
    assert "throttle_peers 1" in client.metrics()
    client.release(peer_id)
    assert client.list_peers() == []


def test_without_the_token_every_route_raises_unauthorized_and_changes_nothing(
    token_url: str,
) -> None:
    holder = Client(token_url, token=TOKEN)
    peer_id = holder.new_peer(expires_in=MINUTE)
    assert holder.acquire(peer_id, "B")
    for client in (Client(token_url), Client(token_url, token="wrong")):
        calls: List[Callable[[], object]] = [
            lambda: client.new_peer(expires_in=MINUTE),
            lambda: client.acquire(peer_id, "C"),
            lambda: client.release_lock(peer_id, "B"),
            lambda: client.release(peer_id),
            lambda: client.heartbeat(peer_id, expires_in=MINUTE),
            lambda: client.restore(4242, {"C": 1}, expires_in=MINUTE),
            lambda: client.remainder("B"),
            lambda: client.is_acquired(peer_id),
            lambda: client.list_peers(),
            lambda: client.version(),
            lambda: client.metrics(),
        ]
        for call in calls:
            started = time.monotonic()
            with pytest.raises(Unauthorized) as raised:
                call()
            # Not retried (the client's retry_for is 60 s).
            assert time.monotonic() - started < 5
            assert raised.value.status_code == 401
            assert raised.value.text.startswith("Unauthorized")
    assert holder.remainder("B") == 0
    assert holder.remainder("C") == 5
    assert [peer.id for peer in holder.list_peers()] == [peer_id]


def test_unauthorized_is_a_permission_error_and_a_throttle_error() -> None:
    error = error_for(401, "Unauthorized: this server needs a token\n")
    assert isinstance(error, Unauthorized)
    assert isinstance(error, PermissionError)
    assert isinstance(error, ThrottleError)
    assert not isinstance(error, ValueError)
    assert str(error) == "Unauthorized: this server needs a token"


def test_a_401_is_never_retried() -> None:
    with StubServer(lambda method, path: (401, "Unauthorized")) as stub:
        with pytest.raises(Unauthorized):
            Client(stub.url, token="wrong").remainder("A")
        assert len(stub.requests) == 1


def test_the_environment_supplies_the_token_and_an_explicit_one_wins(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with StubServer(lambda method, path: (200, "1")) as stub:
        Client(stub.url).remainder("A")
        monkeypatch.setenv("THROTTLE_TOKEN", "from-env")
        Client(stub.url).remainder("A")
        Client(stub.url, token="explicit").remainder("A")
        # An empty token sends none, whatever the environment says.
        Client(stub.url, token="").remainder("A")
        monkeypatch.setenv("THROTTLE_TOKEN", "")
        Client(stub.url).remainder("A")
    assert stub.authorizations == ["", "Bearer from-env", "Bearer explicit", "", ""]


def test_the_token_from_the_environment_works_with_the_real_server(
    token_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("THROTTLE_TOKEN", TOKEN)
    with lock(token_url, "B"):
        assert Client(token_url).remainder("B") == 0
    rate_limit(token_url, "C", per=timedelta(milliseconds=100))
    assert Peer.from_server_url(token_url).client.has_token
    # The token is read when the client is made: later changes do not affect it.
    client = Client(token_url)
    monkeypatch.delenv("THROTTLE_TOKEN")
    assert client.remainder("B") == 1


def test_lock_and_rate_limit_take_a_token(token_url: str) -> None:
    checker = Client(token_url, token=TOKEN)
    with lock(token_url, "A", token=TOKEN):
        with lock(token_url, "B", token=TOKEN):
            assert checker.remainder("A") == 0
            assert checker.remainder("B") == 0
    assert checker.remainder("A") == 1
    assert checker.list_peers() == []
    rate_limit(token_url, "C", per=timedelta(milliseconds=200), token=TOKEN)
    wait_until(lambda: checker.remainder("C") == 5, what="the unit to free itself")


def test_lock_and_rate_limit_without_the_token_raise_and_leave_nothing(token_url: str) -> None:
    with pytest.raises(Unauthorized):
        with lock(token_url, "A", timeout=timedelta(seconds=5)):
            pytest.fail("the block ran without the token")
    with pytest.raises(Unauthorized):
        with lock(token_url, "A", token="wrong"):
            pytest.fail("the block ran with a wrong token")
    with pytest.raises(Unauthorized):
        rate_limit(token_url, "C", per=timedelta(seconds=1))
    checker = Client(token_url, token=TOKEN)
    assert checker.list_peers() == []
    # The failures left no thread-local peer behind: with the token it works.
    with lock(token_url, "A", token=TOKEN):
        assert checker.remainder("A") == 0


def test_local_peers_and_from_server_url_pass_the_token_on(token_url: str) -> None:
    peer = get_local_peer(token_url, token=TOKEN)
    assert peer.client.has_token
    assert peer.acquire("B")
    peer.remove_from_server()
    other = PeerWithHeartbeat.from_server_url(token_url, token=TOKEN)
    assert other.acquire("C", count=3)
    assert Client(token_url, token=TOKEN).remainder("C") == 2
    other.remove_from_server()
    with pytest.raises(Unauthorized):
        PeerWithHeartbeat.from_server_url(token_url)


def test_the_heartbeat_carries_the_token_and_restores_after_a_restart(
    token_server: Any,
) -> None:
    client = Client(token_server.url, token=TOKEN)
    peer = PeerWithHeartbeat(
        client,
        expiration_time=timedelta(milliseconds=600),
        heartbeat_interval=timedelta(milliseconds=100),
    )
    assert peer.acquire("C", count=2)
    peer.start_heartbeat()
    try:
        # Several leases pass: only beats with the token keep the peer.
        time.sleep(1.5)
        assert client.remainder("C") == 3
        token_server.restart()
        wait_until(lambda: client.remainder("C") == 3, seconds=10, what="a restore")
    finally:
        peer.stop_heartbeat()
    peer.remove_from_server()
    assert client.remainder("C") == 5


def test_a_client_with_a_token_pickles_and_keeps_it(token_url: str) -> None:
    client = Client(token_url, token=TOKEN)
    assert TOKEN not in repr(client)
    copy = pickle.loads(pickle.dumps(client))
    assert copy.has_token
    assert copy.remainder("C") == 5
    plain = pickle.loads(pickle.dumps(Client(token_url)))
    assert not plain.has_token
    with pytest.raises(Unauthorized):
        plain.remainder("C")


def test_a_server_without_a_token_ignores_one(url: str) -> None:
    with lock(url, "A", token="not needed"):
        assert Client(url, token="whatever").remainder("A") == 0
