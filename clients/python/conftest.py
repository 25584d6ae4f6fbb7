"""Pytest fixtures that run the real Throttle server binary, shared by both test suites.

``tests/`` (this package) and ``compat/`` (the published 0.5.13 client) run in separate virtual
environments, because both install the import name ``throttle_client``. This module therefore
imports neither; the servers come from the repository's harness,
``scripts/harness/throttle_harness.py`` (standard library only, imported from its directory).

Each test gets its own servers on free ports (``--port 0``), read from the address each logs;
the binary is ``$THROTTLE_BIN``, else this checkout's debug build, built once per session when
stale. Servers get no ``THROTTLE_TOKEN`` from the test run's environment, only what a test
passes in ``env``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable, Dict, Iterator, Optional, Sequence

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT / "scripts" / "harness"))

from throttle_harness import HarnessError, Server, Servers, server_binary  # noqa: E402

__all__ = ["REPO_ROOT", "StartServer", "ThrottleServer", "server_binary"]

#: One server process; ``url``, ``restart(kill=...)``, ``stop(kill=...)``, ``log()``.
ThrottleServer = Server

StartServer = Callable[..., ThrottleServer]


@pytest.fixture(scope="session")
def throttle_binary() -> Path:
    """The server binary of this test session (built first unless ``THROTTLE_BIN`` is set)."""
    try:
        path = server_binary()
    except Exception as error:  # the build failed: say so once, for every test
        pytest.fail(f"could not build the server binary: {error}")
    if not path.exists():
        pytest.fail(f"no server binary at {path}: run `cargo build` or set THROTTLE_BIN")
    return path


@pytest.fixture
def start_server(tmp_path: Path, throttle_binary: Path) -> Iterator[StartServer]:
    """A function that starts a server with the given TOML configuration (and environment
    variables ``env``, e.g. ``{"THROTTLE_TOKEN": "s3cret"}``, and command-line ``args``, e.g.
    ``["--max-peers", "1"]``); every server it started is stopped after the test."""
    servers = Servers(tmp_path, throttle_binary)

    def start(
        config: str, env: Optional[Dict[str, str]] = None, args: Sequence[str] = ()
    ) -> ThrottleServer:
        try:
            return servers.start_throttle(config, args=args, env=env)
        except HarnessError as error:
            pytest.fail(str(error))

    yield start
    servers.stop_all()


@pytest.fixture
def server(start_server: StartServer) -> ThrottleServer:
    """A server with a few semaphores that cover most tests: ``A`` a mutex of level 1 and
    ``B`` one of level 0 (so ``A`` then ``B`` nests, as in the SPEC's example), ``C`` of max 5,
    and names that need percent-encoding."""
    return start_server(
        "[semaphores]\n"
        "A = { max = 1, level = 1 }\n"
        "B = 1\n"
        "C = 5\n"
        '"with/slash & space" = 1\n'
        '"Ünïcode ☃" = 2\n'
    )
