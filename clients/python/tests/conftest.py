"""Fixtures for this package's tests; the server fixtures live in ``../conftest.py``."""

from __future__ import annotations

import time
from typing import Callable, Iterator

import pytest

from throttle_client import Client, clear_peers


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
