"""Fixtures for this package's tests; the server fixtures live in ``../conftest.py``.

The asyncio tests run on anyio's pytest plugin: a module marks itself with ``ASYNCIO_TESTS``
and gets ``anyio_backend``, ``aclient`` and ``eventually`` from here.
"""

from __future__ import annotations

import asyncio
import time
from typing import AsyncIterator, Awaitable, Callable, Iterator, List

import pytest

from throttle_client import Client, clear_peers
from throttle_client.aio import AsyncClient, aclose_local_clients

#: The ``pytestmark`` of a module of asyncio tests: run on anyio, and close the clients that
#: ``throttle_client.aio`` shares after each test, whose server is gone with the test.
ASYNCIO_TESTS: List[pytest.MarkDecorator] = [
    pytest.mark.anyio,
    pytest.mark.usefixtures("close_shared_clients"),
]


@pytest.fixture(autouse=True)
def fresh_local_peers() -> Iterator[None]:
    """Each test starts without thread-local peers left over from another test's server."""
    clear_peers()
    yield
    clear_peers()


@pytest.fixture
def url(server) -> str:  # type: ignore[no-untyped-def]
    """The base URL of the test's default server."""
    return server.url  # type: ignore[no-any-return]


@pytest.fixture
def client(url: str) -> Client:
    return Client(url)


def wait_until(condition: Callable[[], bool], seconds: float = 5.0, what: str = "") -> None:
    """Poll ``condition`` until it holds; fail the test after ``seconds``."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {seconds}s waiting for {what or condition}")
        time.sleep(0.01)


async def eventually(
    condition: Callable[[], Awaitable[bool]], what: str, seconds: float = 10.0
) -> None:
    """Poll ``condition`` until it holds; fail the test after ``seconds``."""
    deadline = time.monotonic() + seconds
    while not await condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {seconds}s waiting for {what}")
        await asyncio.sleep(0.02)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def close_shared_clients() -> AsyncIterator[None]:
    yield
    await aclose_local_clients()


@pytest.fixture
async def aclient(url: str) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(url) as client:
        yield client
