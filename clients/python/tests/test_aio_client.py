"""``throttle_client.aio.AsyncClient`` and ``AsyncPeer``: routes, typed errors, retries, tokens,
pickling and restoring."""

from __future__ import annotations

import asyncio
import pickle
import socket
import threading
import time
from datetime import timedelta
from typing import Tuple

import pytest

from throttle_client import (
    CountTooLarge,
    InvalidCount,
    LockHierarchyViolation,
    RestoreConflict,
    ServerUnavailable,
    Timeout,
    TooManyPeers,
    Unauthorized,
    UnexpectedResponse,
    UnknownPeer,
    UnknownSemaphore,
)
from throttle_client.aio import AsyncClient, AsyncPeer, lock

from conftest import StartServer, ThrottleServer
from .conftest import ASYNCIO_TESTS, eventually
from .stub_server import StubServer

pytestmark = ASYNCIO_TESTS

MINUTE = timedelta(minutes=1)


async def test_every_route(aclient: AsyncClient) -> None:
    first = await aclient.new_peer(expires_in=MINUTE)
    second = await aclient.new_peer(expires_in=MINUTE)
    assert 0 <= first < 2**53 and first != second
    assert await aclient.acquire(first, "C", count=3) is True
    assert await aclient.acquire(first, "C", count=3) is True  # Idempotent.
    assert await aclient.acquire(second, "C", count=3, block_for=timedelta(milliseconds=50)) is False
    assert await aclient.is_acquired(second) is False
    assert await aclient.remainder("C") == 2
    peers = {p.id: p for p in await aclient.list_peers()}
    assert peers[first].acquired == {"C": 3} and peers[second].pending == {"C": 3}
    await aclient.heartbeat(first, expires_in=MINUTE)
    await aclient.release_lock(first, "C")
    assert await aclient.is_acquired(second) is True
    await aclient.release(second)
    await aclient.release(second)  # Releasing an unknown peer succeeds.
    await aclient.release(first)
    await aclient.restore(first, {"A": 1}, expires_in=MINUTE)
    with pytest.raises(RestoreConflict):
        await aclient.restore(first, {"B": 1}, expires_in=MINUTE)
    assert await aclient.remainder("A") == 0
    assert "throttle_acquired" in await aclient.metrics()
    assert await aclient.version()


async def test_names_that_need_percent_encoding(aclient: AsyncClient) -> None:
    peer = await aclient.new_peer(expires_in=MINUTE)
    for name in ("with/slash & space", "Ünïcode ☃"):
        assert await aclient.acquire(peer, name)
        assert await aclient.remainder(name) == (0 if name.startswith("with") else 1)
        await aclient.release_lock(peer, name)


async def test_refusals_raise_the_blocking_clients_types(aclient: AsyncClient) -> None:
    peer = await aclient.new_peer(expires_in=MINUTE)
    with pytest.raises(UnknownSemaphore):
        await aclient.acquire(peer, "Nope")
    with pytest.raises(CountTooLarge):
        await aclient.acquire(peer, "A", count=2)
    with pytest.raises(InvalidCount):
        await aclient.acquire(peer, "A", count=0)
    assert await aclient.acquire(peer, "B")
    with pytest.raises(LockHierarchyViolation):
        await aclient.acquire(peer, "A")
    with pytest.raises(UnknownPeer):
        await aclient.heartbeat(12345, expires_in=MINUTE)
    with pytest.raises(UnexpectedResponse) as raised:
        await AsyncClient(aclient.base_url + "/not-throttle").remainder("A")
    assert raised.value.status_code == 404


async def test_server_errors_are_retried_until_they_heal() -> None:
    answers = [(503, "Shutting down"), (502, "Bad gateway"), (200, "7")]

    def script(method: str, path: str) -> Tuple[int, str]:
        return answers.pop(0)

    with StubServer(script) as stub:
        async with AsyncClient(stub.url) as client:
            assert await client.remainder("A") == 7
        assert len(stub.requests) == 3


async def test_refusals_are_never_retried_and_connections_are_reused() -> None:
    with StubServer(lambda method, path: (400, "Unknown semaphore")) as stub:
        async with AsyncClient(stub.url) as client:
            for _ in range(5):
                with pytest.raises(UnknownSemaphore):
                    await client.remainder("A")
        assert len(stub.requests) == 5
        assert len(stub.connections) == 1


async def test_connection_errors_are_retried_for_a_bounded_time() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    started = time.monotonic()
    async with AsyncClient(url, retry_for=timedelta(milliseconds=400)) as client:
        with pytest.raises(ServerUnavailable) as raised:
            await client.remainder("A")
    assert 0.3 <= time.monotonic() - started < 3
    assert str(raised.value) == f"server {url} unreachable within 0.4 s: connection refused"
    assert raised.value.attempts == [(url, "connection refused")]


async def test_a_timeout_is_server_unavailable() -> None:
    answer = threading.Event()

    def script(method: str, path: str) -> Tuple[int, str]:
        answer.wait(timeout=10)
        return 200, "1"

    with StubServer(script) as stub:
        async with AsyncClient(
            stub.url,
            retry_for=timedelta(milliseconds=0),
            request_timeout=timedelta(milliseconds=100),
        ) as client:
            with pytest.raises(ServerUnavailable) as raised:
                await client.remainder("A")
        answer.set()
    assert str(raised.value) == f"server {stub.url} unreachable within 0 s: timed out"


async def test_a_url_that_is_no_http_url_is_server_unavailable_at_once() -> None:
    async with AsyncClient("localhost:8000") as client:
        with pytest.raises(ServerUnavailable, match="^server localhost:8000 unreachable: "):
            await client.remainder("A")


async def test_an_early_202_does_not_turn_lock_into_a_busy_loop() -> None:
    def script(method: str, path: str) -> Tuple[int, str]:
        return (202, "") if method == "PUT" else (200, "1")

    with StubServer(script) as stub:
        started = time.monotonic()
        with pytest.raises(Timeout):
            async with lock(stub.url, "A", timeout=timedelta(seconds=1)):
                pass
        assert time.monotonic() - started < 3
        polls = [r for r in stub.requests if r[0] == "PUT"]
        assert 2 <= len(polls) <= 20
        assert stub.requests[-1] == ("DELETE", "/peers/1")


async def test_too_many_peers_is_raised_at_once(start_server: StartServer) -> None:
    server = start_server("[semaphores]\nA = 1\n", args=["--max-peers", "1"])
    async with AsyncClient(server.url) as client:
        await client.new_peer(expires_in=MINUTE)
        started = time.monotonic()
        with pytest.raises(TooManyPeers):
            await client.new_peer(expires_in=MINUTE)
        with pytest.raises(TooManyPeers):
            async with lock(server.url, "A"):
                pass
        assert time.monotonic() - started < 2


async def test_a_token_is_sent_and_a_missing_one_is_unauthorized(
    start_server: StartServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = start_server("[semaphores]\nA = 1\n", env={"THROTTLE_TOKEN": "s3cret"})
    monkeypatch.delenv("THROTTLE_TOKEN", raising=False)
    with pytest.raises(Unauthorized):
        await AsyncClient(server.url).remainder("A")
    async with AsyncClient(server.url, token="s3cret") as client:
        assert client.has_token and await client.remainder("A") == 1
        async with lock(server.url, "A", token="s3cret"):
            assert await client.remainder("A") == 0
    monkeypatch.setenv("THROTTLE_TOKEN", "s3cret")
    assert await AsyncClient(server.url).remainder("A") == 1
    assert "s3cret" not in repr(AsyncClient(server.url))


async def test_an_async_client_can_be_pickled(aclient: AsyncClient) -> None:
    await aclient.remainder("A")  # Opens the pool, which must not travel.
    copy = pickle.loads(pickle.dumps(aclient))
    assert copy.base_url == aclient.base_url
    assert await copy.remainder("A") == 1
    await copy.aclose()


async def test_an_async_peer_restores_itself(server: ThrottleServer, aclient: AsyncClient) -> None:
    peer = await AsyncPeer.create(aclient, heartbeat_interval=timedelta(milliseconds=100))
    assert await peer.acquire("A")
    peer.start_heartbeat()
    await asyncio.to_thread(server.restart)

    async def restored() -> bool:
        return await aclient.remainder("A") == 0

    await eventually(restored, "the heartbeat to restore the peer")
    await peer.stop_heartbeat()
    await peer.remove_from_server()
    assert await aclient.remainder("A") == 1


async def test_long_polls_beyond_the_limit_answer_at_once(url: str) -> None:
    async with AsyncClient(url, max_connections=1, max_long_polls=2) as client:

        async def pending_on_a() -> int:
            return sum(p.pending.get("A", 0) for p in await client.list_peers())

        async def wait_for_pending(count: int) -> None:
            async def queued() -> bool:
                return await pending_on_a() == count

            await eventually(queued, f"{count} waiters to queue")

        holder = await client.new_peer(expires_in=MINUTE)
        assert await client.acquire(holder, "A")
        waiters = [await client.new_peer(expires_in=MINUTE) for _ in range(3)]
        polls = []
        for count, waiter in enumerate(waiters[:2], start=1):
            poll = client.acquire(waiter, "A", block_for=timedelta(seconds=20))
            polls.append(asyncio.create_task(poll))
            await wait_for_pending(count)
        # Both long polls hold their connections. A third acquire asks without blocking, and a
        # release takes the one quick connection without waiting behind them.
        started = time.monotonic()
        assert await client.acquire(waiters[2], "A", block_for=timedelta(seconds=20)) is False
        await client.release(waiters[2])
        assert time.monotonic() - started < 5
        await client.release(holder)
        assert await asyncio.wait_for(polls[0], 20) is True
        await client.release(waiters[0])
        assert await asyncio.wait_for(polls[1], 20) is True
