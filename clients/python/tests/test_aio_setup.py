"""``throttle_client.aio`` outside a test's event loop: clients across event loops, and the
import error without the ``async`` extra."""

from __future__ import annotations

import asyncio
import importlib
import sys

import pytest

from throttle_client.aio import AsyncClient

from conftest import ThrottleServer


def test_one_client_serves_one_event_loop_after_another(server: ThrottleServer) -> None:
    client = AsyncClient(server.url)
    assert asyncio.run(client.remainder("A")) == 1
    assert asyncio.run(client.remainder("A")) == 1  # A new loop, a new pool.
    asyncio.run(client.aclose())


def test_without_httpx_the_import_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in sys.modules if n.startswith("throttle_client.aio")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "httpx", None)
    with pytest.raises(ImportError, match=r"pip install 'throttle-client\[async\]'"):
        importlib.import_module("throttle_client.aio")
