"""``throttle_client.aio`` outside a test's event loop: clients across event loops, and a
program that has neither ``requests`` nor an HTTP library."""

from __future__ import annotations

import asyncio
import subprocess
import sys

from throttle_client.aio import AsyncClient

from conftest import ThrottleServer


def test_one_client_serves_one_event_loop_after_another(server: ThrottleServer) -> None:
    client = AsyncClient(server.url)
    assert asyncio.run(client.remainder("A")) == 1
    assert asyncio.run(client.remainder("A")) == 1  # A new loop, a new pool.
    asyncio.run(client.aclose())


def test_asyncio_needs_neither_requests_nor_an_http_library(server: ThrottleServer) -> None:
    # A fresh interpreter in which importing `requests` or `httpx` fails, as where neither is
    # installed: takes a lock and catches the library's own error for a server that is down.
    program = f"""
import asyncio, sys
from datetime import timedelta
sys.modules["requests"] = sys.modules["httpx"] = None
from throttle_client import ServerUnavailable
from throttle_client.aio import AsyncClient, lock

async def main():
    async with lock({server.url!r}, "A") as peer:
        assert peer.fencing_token("A") is not None
    try:
        await AsyncClient("http://127.0.0.1:9", retry_for=timedelta(0)).remainder("A")
    except ServerUnavailable as error:
        print(error)

asyncio.run(main())
"""
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "server http://127.0.0.1:9 unreachable within 0 s: connection refused\n"
