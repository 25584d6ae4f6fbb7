"""Pytest fixtures that run the real Throttle server binary, shared by both test suites.

``tests/`` (this package) and ``compat/`` (the published 0.5.13 client) run in separate virtual
environments, because both install the import name ``throttle_client``. This module therefore
uses the standard library only and imports neither.

Each test gets its own server on a free port (``--port 0``); the port is read from the
``Listening on http://HOST:PORT`` line the server logs, then ``/health`` is polled. Every wait
has a deadline, so a broken server fails a test instead of hanging it. Servers get no
``THROTTLE_TOKEN`` from the test run's environment, only what a test passes in ``env``.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from pathlib import Path
from typing import Callable, Deque, Dict, Iterator, List, Optional, Sequence

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
_LISTENING = re.compile(r"Listening on (http://\S+)")
_START_DEADLINE_SECONDS = 15.0
_STOP_DEADLINE_SECONDS = 5.0


def server_binary() -> Path:
    """The server executable: ``$THROTTLE_BIN``, or the debug build at the repository root."""
    configured = os.environ.get("THROTTLE_BIN")
    return Path(configured) if configured else REPO_ROOT / "target" / "debug" / "throttle"


class ThrottleServer:
    """One server process with a given configuration (and extra command-line ``args``, e.g.
    ``["--max-peers", "1"]``), restartable on the same port."""

    def __init__(
        self,
        binary: Path,
        config_file: Path,
        env: Optional[Dict[str, str]] = None,
        args: Sequence[str] = (),
    ) -> None:
        self.binary = binary
        self.config_file = config_file
        self.env = dict(env or {})
        self.args = list(args)
        self.url = ""
        self.port = 0
        self._process: Optional[subprocess.Popen[str]] = None
        self._log: Deque[str] = deque(maxlen=200)

    def start(self, port: int = 0) -> None:
        """Start the server and return once it answers ``/health``.

        Restarting on a fixed port may briefly fail while the old socket is released, so a
        failed start is retried until the deadline.
        """
        deadline = time.monotonic() + _START_DEADLINE_SECONDS
        while True:
            if self._try_start(port, deadline):
                return
            if time.monotonic() >= deadline:
                raise RuntimeError(
                    f"throttle did not start on port {port}; its log:\n" + self.log()
                )
            time.sleep(0.05)

    def stop(self, kill: bool = False) -> None:
        """Stop the server: SIGTERM (graceful) by default, SIGKILL (a crash) with ``kill``."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            process.wait(timeout=_STOP_DEADLINE_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=_STOP_DEADLINE_SECONDS)
            raise RuntimeError("throttle did not exit on SIGTERM in time")

    def restart(self, kill: bool = False) -> None:
        """Stop the server, losing all its state, and start it again on the same port."""
        self.stop(kill=kill)
        self.start(port=self.port)

    def log(self) -> str:
        """The server's most recent stderr lines, for failure messages."""
        return "\n".join(self._log)

    def _try_start(self, port: int, deadline: float) -> bool:
        env = dict(os.environ, THROTTLE_LOG="INFO")
        env.pop("THROTTLE_TOKEN", None)
        env.update(self.env)
        process = subprocess.Popen(
            [str(self.binary), "--address", "127.0.0.1", "--port", str(port),
             "-c", str(self.config_file), *self.args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        url = self._wait_for_listening(process, deadline)
        if url is None:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=_STOP_DEADLINE_SECONDS)
            return False
        self._process = process
        self.url = url
        self.port = int(url.rsplit(":", 1)[1])
        self._wait_for_health(deadline)
        return True

    def _wait_for_listening(
        self, process: subprocess.Popen[str], deadline: float
    ) -> Optional[str]:
        """Read stderr (on a thread, so the wait has a deadline) until the listening line.

        The thread keeps draining stderr for the process's lifetime, so a chatty server never
        blocks on a full pipe.
        """
        found = threading.Event()
        urls: List[str] = []

        def drain() -> None:
            assert process.stderr is not None
            for line in process.stderr:
                self._log.append(line.rstrip("\n"))
                match = _LISTENING.search(line)
                if match and not found.is_set():
                    urls.append(match.group(1).rstrip("/"))
                    found.set()
            found.set()  # The process ended; wake the waiter.

        threading.Thread(target=drain, daemon=True).start()
        found.wait(max(0.0, deadline - time.monotonic()))
        return urls[0] if urls else None

    def _wait_for_health(self, deadline: float) -> None:
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=1) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() >= deadline:
                raise RuntimeError(f"throttle at {self.url} never became healthy:\n" + self.log())
            time.sleep(0.02)


StartServer = Callable[..., ThrottleServer]


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[StartServer]:
    """A function that starts a server with the given TOML configuration (and environment
    variables ``env``, e.g. ``{"THROTTLE_TOKEN": "s3cret"}``, and command-line ``args``, e.g.
    ``["--max-peers", "1"]``); every server it started is stopped after the test."""
    binary = server_binary()
    if not binary.exists():
        pytest.fail(f"no server binary at {binary}: run `cargo build` or set THROTTLE_BIN")
    servers: List[ThrottleServer] = []

    def start(
        config: str, env: Optional[Dict[str, str]] = None, args: Sequence[str] = ()
    ) -> ThrottleServer:
        config_file = tmp_path / f"throttle-{len(servers)}.toml"
        config_file.write_text(config)
        server = ThrottleServer(binary, config_file, env, args)
        servers.append(server)
        server.start()
        return server

    yield start
    for server in servers:
        server.stop()


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
