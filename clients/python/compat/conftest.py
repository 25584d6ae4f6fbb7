"""Fixtures for the compatibility suite, which runs with the published ``throttle-client``
0.5.13 installed (not this package); the server fixtures live in ``../conftest.py``."""

from __future__ import annotations

from typing import Iterator

import pytest

import throttle_client


@pytest.fixture(autouse=True)
def fresh_local_peers() -> Iterator[None]:
    throttle_client.clear_peers()
    yield
    throttle_client.clear_peers()


@pytest.fixture
def server(start_server):  # type: ignore[no-untyped-def]
    """The SPEC's nesting example (``A`` level 1, ``B`` level 0) plus a semaphore of max 3."""
    return start_server("[semaphores]\nA = { max = 1, level = 1 }\nB = 1\nC = 3\n")


@pytest.fixture
def url(server) -> str:  # type: ignore[no-untyped-def]
    return server.url  # type: ignore[no-any-return]
