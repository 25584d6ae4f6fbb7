#!/usr/bin/env python3
"""Starts the real ``throttle`` binary for the tests and scripts that are not Rust, and reads
the address it logs: the one place outside Rust that knows how a server is started and found.

Used by the Python client's pytest fixtures (``clients/python/conftest.py``) and benchmarks,
the browser test (``tests/browser``), ``scripts/soak``, the static-binary and image checks
(``scripts/check-static``, ``scripts/check-image``), and, through the command line below,
``scripts/bench`` and ``scripts/crowd``. Not for the Rust tests (``tests/common/mod.rs`` is
their harness), nor for a server that does not log ``Listening on`` (Throttle 0.5.13, which
``scripts/crowd`` measures beside ours by polling ``/health``).

It lives in ``scripts/harness/``, outside every package, so that each user imports it without
installing anything: it adds this directory to ``sys.path``. The Python client's tests run in
two virtual environments (one with the published 0.5.13 client, so nothing of this repository's
client may be imported there), the browser test in a third, and the image checks on the
system's ``python3``. Hence: standard library only, one file, Python 3.8 or newer.

How a server starts: its command (``[binary, "-c", config, ...]``, or a wrapper such as
``chroot ROOT /throttle ...``) gets ``--address 127.0.0.1 --port N`` appended (options given
later win, as they do after an image's entrypoint), stderr goes to a log file, and the harness
waits for the ``Listening on http://HOST:PORT`` line in it, then for ``/health`` to answer 200.
Every wait has a deadline, so a broken server fails the caller instead of hanging it. A server
gets ``THROTTLE_LOG=INFO`` and no ``THROTTLE_TOKEN`` from the caller's environment, only what
``env`` gives it. ``Servers`` starts several (the members of a cluster) and stops them together;
a ``Server`` can be stopped (SIGTERM), killed (SIGKILL), paused (SIGSTOP) and resumed (SIGCONT),
and restarted on its port.

Command line, for bash scripts::

    throttle_harness.py start --log FILE [--timeout SECONDS] -- COMMAND...
        starts COMMAND (plus --address 127.0.0.1 --port 0), waits until it serves, prints
        "URL PID" and exits, leaving the server running; exit 1 (the log on stderr) if it
        did not start
    throttle_harness.py stop PID [--timeout SECONDS]
        SIGTERM, then SIGKILL if PID has not exited within the timeout (default 5)
"""

from __future__ import annotations

import argparse
import functools
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Dict, Iterator, List, Mapping, Optional, Sequence, Type

REPO_ROOT = Path(__file__).resolve().parents[2]

#: The line the server logs once its socket is bound; group 1 is its base URL.
LISTENING = re.compile(r"Listening on (http://[^\s/]+)")

#: The environment variable naming a server binary to use instead of building one.
BINARY_VARIABLE = "THROTTLE_BIN"

# How often the log file and /health are polled while waiting for a start.
_POLL_SECONDS = 0.01


class HarnessError(RuntimeError):
    """A server did not start, did not answer, or did not stop in time."""


@functools.lru_cache(maxsize=None)
def server_binary(release: bool = False) -> Path:
    """The server executable: ``$THROTTLE_BIN`` if set, else the build of this checkout.

    Without ``THROTTLE_BIN`` it runs ``cargo build --bin throttle`` (``--release`` with
    ``release``) once per process, so a stale binary is rebuilt, not only a missing one; cargo
    takes a moment when nothing changed. The build's output goes to stderr.
    """
    configured = os.environ.get(BINARY_VARIABLE)
    if configured:
        return Path(configured).resolve()
    command = ["cargo", "build", "--quiet", "--bin", "throttle"]
    if release:
        command.append("--release")
    print(f"throttle_harness: {' '.join(command)}", file=sys.stderr, flush=True)
    subprocess.run(command, cwd=REPO_ROOT, check=True, stdout=sys.stderr)
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO_ROOT / "target"))
    if not target.is_absolute():
        target = REPO_ROOT / target
    return target / ("release" if release else "debug") / "throttle"


def server_env(env: Optional[Mapping[str, str]] = None) -> Dict[str, str]:
    """The environment of a server: the caller's with ``THROTTLE_LOG=INFO`` (the listening line
    is logged at INFO) and without ``THROTTLE_TOKEN``, then ``env`` on top."""
    result = dict(os.environ, THROTTLE_LOG="INFO")
    result.pop("THROTTLE_TOKEN", None)
    result.update(env or {})
    return result


class Server:
    """One server process, started with ``start`` and restartable on the same port.

    * ``command``: the argv before ``--address 127.0.0.1 --port N``, e.g.
      ``[binary, "-c", "throttle.toml", "--max-peers", "1"]``.
    * ``log_dir``: where the log files go: ``{name}-{n}.log`` for the n-th start, unless
      ``start`` is given a path.
    * ``env``: variables on top of ``server_env``.
    * ``start_timeout``: seconds a start may take, from spawning to the first ``/health``.
    """

    def __init__(
        self,
        command: Sequence[str],
        *,
        log_dir: Path,
        name: str = "throttle",
        env: Optional[Mapping[str, str]] = None,
        start_timeout: float = 15.0,
    ) -> None:
        self.command = [str(part) for part in command]
        self.log_dir = Path(log_dir)
        self.name = name
        self.env = dict(env or {})
        self.start_timeout = start_timeout
        #: The base URL of the running server, e.g. ``http://127.0.0.1:40123``.
        self.url = ""
        #: Its port: the one the first start got, kept by ``restart``.
        self.port = 0
        #: The process of the current start.
        self.process: Optional[subprocess.Popen[bytes]] = None
        #: How many times ``start`` was called.
        self.starts = 0
        #: The log file of the current start.
        self.log_path: Optional[Path] = None
        #: ``time.monotonic()`` just before the current process was spawned, and when it first
        #: answered ``/health``.
        self.spawned = 0.0
        self.healthy = 0.0
        self._paused = False

    # --- starting and stopping ----------------------------------------------------------------

    def start(self, port: int = 0, log: Optional[Path] = None) -> "Server":
        """Start the server on ``port`` (0: a free one) and return once it answers ``/health``.

        A start on a fixed port may fail while a socket of the previous process is released, so
        there a process that exits before it listens is started again, while at least a second
        of the deadline is left. On a free port such an exit is final (a bad configuration).
        """
        self.starts += 1
        self.log_path = Path(log) if log is not None else (
            self.log_dir / f"{self.name}-{self.starts}.log"
        )
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + self.start_timeout
        argv = [*self.command, "--address", "127.0.0.1", "--port", str(port)]
        while True:
            with open(self.log_path, "wb") as stderr:
                self.spawned = time.monotonic()
                process = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=stderr,
                    env=server_env(self.env),
                )
            url = self._wait_for_listening(process, deadline)
            if url is not None:
                break
            if process.poll() is None:
                process.kill()
                process.wait()
                raise HarnessError(f"{argv[0]} logged no address within {self.start_timeout:g}s; "
                                   f"its log:\n{self.log_text()}")
            if port == 0 or time.monotonic() + 1.0 >= deadline:
                raise HarnessError(f"{argv[0]} exited with {process.returncode} before it "
                                   f"listened; its log:\n{self.log_text()}")
            time.sleep(0.05)
        self.process = process
        self._paused = False
        self.url = url
        self.port = int(url.rsplit(":", 1)[1])
        self._wait_for_health(deadline)
        return self

    def stop(self, kill: bool = False, timeout: float = 5.0) -> Optional[int]:
        """Stop the server: SIGTERM (a graceful shutdown) by default, SIGKILL (a crash) with
        ``kill``. Returns its exit code (negative: the signal that ended it), or ``None`` if it
        did not exit within ``timeout`` seconds; it is then killed. A paused server is resumed
        after the signal, so that it can act on it."""
        process = self.process
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            if self._paused:
                process.send_signal(signal.SIGCONT)
        self._paused = False
        try:
            return process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            return None

    def kill(self) -> Optional[int]:
        """SIGKILL: the server dies at once, as in a crash; its state file stays as it was."""
        return self.stop(kill=True)

    def restart(self, kill: bool = False) -> "Server":
        """Stop the server (SIGTERM, or SIGKILL with ``kill``) and start it on the same port.

        Raises ``HarnessError`` if a graceful stop takes more than 5 s."""
        if self.stop(kill=kill) is None and not kill:
            raise HarnessError(f"{self.name} did not exit within 5 s of SIGTERM")
        return self.start(port=self.port)

    def pause(self) -> None:
        """SIGSTOP: the process stays, but answers nothing until ``resume`` (a hung member)."""
        self.send_signal(signal.SIGSTOP)
        self._paused = True

    def resume(self) -> None:
        """SIGCONT after ``pause``."""
        self.send_signal(signal.SIGCONT)
        self._paused = False

    def send_signal(self, signum: int) -> None:
        """Send ``signum`` to the running process."""
        if self.process is None or self.process.poll() is not None:
            raise HarnessError(f"{self.name} is not running")
        self.process.send_signal(signum)

    # --- what it is doing -----------------------------------------------------------------

    @property
    def pid(self) -> int:
        """The process id of the current start."""
        if self.process is None:
            raise HarnessError(f"{self.name} was never started")
        return self.process.pid

    @property
    def running(self) -> bool:
        """Whether the process of the current start has not exited."""
        return self.process is not None and self.process.poll() is None

    def log_text(self) -> str:
        """Everything the current start logged so far."""
        if self.log_path is None:
            return ""
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""

    def log_lines(self, last: Optional[int] = None) -> List[str]:
        """The lines the current start logged, or only the ``last`` ones."""
        lines = self.log_text().splitlines()
        return lines if last is None else lines[-last:]

    def log(self) -> str:
        """The last 200 log lines as one text, for failure messages."""
        return "\n".join(self.log_lines(last=200))

    # --- waiting --------------------------------------------------------------------------

    def _wait_for_listening(
        self, process: "subprocess.Popen[bytes]", deadline: float
    ) -> Optional[str]:
        """The URL of the listening line, or ``None`` if the process exited first or the
        deadline passed."""
        while True:
            match = LISTENING.search(self.log_text())
            if match:
                return match.group(1)
            if process.poll() is not None or time.monotonic() >= deadline:
                # One more look: the line may have been written just before the exit.
                match = LISTENING.search(self.log_text())
                return match.group(1) if match else None
            time.sleep(_POLL_SECONDS)

    def _wait_for_health(self, deadline: float) -> None:
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=1) as response:
                    if response.status == 200:
                        self.healthy = time.monotonic()
                        return
            except (urllib.error.URLError, OSError):
                pass
            if not self.running:
                raise HarnessError(f"{self.name} at {self.url} exited before it answered "
                                   f"/health; its log:\n{self.log()}")
            if time.monotonic() >= deadline:
                raise HarnessError(f"{self.name} at {self.url} never answered /health; its "
                                   f"log:\n{self.log()}")
            time.sleep(_POLL_SECONDS)


class Servers:
    """Several servers, e.g. the members of a cluster, stopped together by ``stop_all`` or at
    the end of a ``with`` block. Their configurations and logs go to ``log_dir``."""

    def __init__(self, log_dir: Path, binary: Optional[Path] = None) -> None:
        self.log_dir = Path(log_dir)
        self._binary = binary
        self.members: List[Server] = []

    @property
    def binary(self) -> Path:
        """The binary ``start_throttle`` runs: the one given, else ``server_binary()``."""
        if self._binary is None:
            self._binary = server_binary()
        return self._binary

    def start(self, server: Server, port: int = 0) -> Server:
        """Start ``server`` and keep it for ``stop_all``."""
        self.members.append(server)
        return server.start(port)

    def start_throttle(
        self,
        config: str,
        args: Sequence[str] = (),
        env: Optional[Mapping[str, str]] = None,
        start_timeout: float = 15.0,
    ) -> Server:
        """Start the binary with the TOML ``config`` (written to a file of its own), extra
        command-line ``args`` (e.g. ``["--max-peers", "1"]``) and environment ``env`` (e.g.
        ``{"THROTTLE_TOKEN": "s3cret"}``)."""
        name = f"throttle-{len(self.members)}"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        config_file = self.log_dir / f"{name}.toml"
        config_file.write_text(config, encoding="utf-8")
        command = [str(self.binary), "-c", str(config_file), *args]
        server = Server(command, log_dir=self.log_dir, name=name, env=env,
                        start_timeout=start_timeout)
        return self.start(server)

    def stop_all(self, kill: bool = False) -> None:
        """Stop every server (SIGTERM, or SIGKILL with ``kill``); raises ``HarnessError`` at the
        end if one did not exit within 5 s of SIGTERM."""
        late = [server.name for server in self.members
                if server.running and server.stop(kill=kill) is None]
        if late and not kill:
            raise HarnessError(f"did not exit within 5 s of SIGTERM: {', '.join(late)}")

    def __iter__(self) -> Iterator[Server]:
        return iter(self.members)

    def __len__(self) -> int:
        return len(self.members)

    def __enter__(self) -> "Servers":
        return self

    def __exit__(
        self,
        kind: Optional[Type[BaseException]],
        value: Optional[BaseException],
        traceback: Optional[TracebackType],
    ) -> None:
        self.stop_all()


def stop_pid(pid: int, timeout: float = 5.0) -> None:
    """SIGTERM to ``pid``, then SIGKILL if it is still there after ``timeout`` seconds; for a
    server that is not this process's child (started by the command line)."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def main(argv: Optional[Sequence[str]] = None) -> int:
    """The command line of the module docstring."""
    parser = argparse.ArgumentParser(
        prog="throttle_harness.py", description="Start or stop a Throttle server for a script.")
    commands = parser.add_subparsers(dest="action", required=True)
    start = commands.add_parser("start", help="start COMMAND, print 'URL PID'")
    start.add_argument("--log", type=Path, required=True, help="the server's stderr goes here")
    start.add_argument("--timeout", type=float, default=10.0, help="seconds [default: 10]")
    start.add_argument("command", nargs="+", help="the server's argv (after --)")
    stop = commands.add_parser("stop", help="SIGTERM PID, SIGKILL after the timeout")
    stop.add_argument("pid", type=int)
    stop.add_argument("--timeout", type=float, default=5.0, help="seconds [default: 5]")
    args = parser.parse_args(argv)
    if args.action == "stop":
        stop_pid(args.pid, args.timeout)
        return 0
    server = Server(args.command, log_dir=args.log.parent, start_timeout=args.timeout)
    try:
        server.start(log=args.log)
    except HarnessError as error:
        print(f"throttle_harness: {error}", file=sys.stderr)
        return 1
    print(f"{server.url} {server.pid}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
