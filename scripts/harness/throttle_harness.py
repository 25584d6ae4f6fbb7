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
``env`` gives it. ``Servers`` starts several and stops them together; a ``Server`` can be
stopped (SIGTERM), killed (SIGKILL), paused (SIGSTOP) and resumed (SIGCONT), and restarted on
its port.

``Cluster`` starts the members of one cluster (a ``[cluster]`` table each: one data directory
per member, one secret) and finds their leader through ``/status.json``. Every link between
two members runs through a ``LinkProxy`` in this process, which tells who connects from the
first frame of the members' handshake (crates/cluster/src/link.rs) and so can cut a directed
pair of members, or partition two groups, and heal them.

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
import json
import os
import re
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import (Any, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Set, Tuple,
                    Type)

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
    def paused(self) -> bool:
        """Whether ``pause`` stopped the process and ``resume`` did not continue it yet."""
        return self._paused

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


# --- a cluster of members, and the proxy between them --------------------------------------

#: The frame kind of the connecting member's first frame in the members' link handshake (see
#: the module doc of crates/cluster/src/link.rs): `[length: u32 LE][kind: u8][payload]`, the
#: payload of a hello being its sender's id, the id it wants to reach (u64 LE each), the digest
#: of the member list and the MAC (32 bytes each).
HELLO_KIND = 2
#: The length field of a hello: the kind byte and the payload.
HELLO_LENGTH = 1 + 8 + 8 + 32 + 32

#: The secret a ``Cluster``'s members share unless it is given another.
CLUSTER_SECRET = "a secret of the harness, 32 byte"


class FrameError(ValueError):
    """The first frame a connecting member sent is not a hello."""


def hello_sender(data: bytes) -> Optional[int]:
    """The sender id in the hello frame at the start of ``data``, or ``None`` while ``data``
    holds less than the whole frame. Raises ``FrameError`` if the bytes cannot be a hello (a
    wrong length or kind), since the proxy then cannot tell who connects."""
    if len(data) < 4:
        return None
    (length,) = struct.unpack_from("<I", data)
    if length != HELLO_LENGTH:
        raise FrameError(f"a first frame of {length} bytes, not a hello ({HELLO_LENGTH})")
    if len(data) < 4 + length:
        return None
    if data[4] != HELLO_KIND:
        raise FrameError(f"a first frame of kind {data[4]}, not a hello ({HELLO_KIND})")
    (sender,) = struct.unpack_from("<Q", data, 5)
    return int(sender)


def free_port(host: str = "127.0.0.1") -> socket.socket:
    """A socket bound to a free port of ``host``, not listening: close it just before the port
    is bound by someone else, so that nothing else gets it meanwhile."""
    reserved = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    reserved.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    reserved.bind((host, 0))
    return reserved


class _Link:
    """One relayed connection between two members: who connected (``None`` until its hello
    has arrived), to whom, and the two sockets."""

    def __init__(self, client: socket.socket, upstream: socket.socket, to: int) -> None:
        self.client = client
        self.upstream = upstream
        self.to = to
        self.sender: Optional[int] = None
        self._closed = False

    def shut(self) -> None:
        """Ends both directions at once; the relaying threads see it and close the sockets.
        ``shutdown`` (not ``close``) wakes a thread blocked in ``recv``."""
        self._closed = True
        for sock in (self.client, self.upstream):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class LinkProxy:
    """A TCP proxy between the members of a cluster, for partitions.

    For each member id it listens on a port of its own (``ports[id]``, the address the others
    have for that member in ``members``) and relays every connection to the member's own
    listening address (``targets[id]``, its ``listen``). Bytes go through unchanged both ways;
    the proxy reads only the connecting member's first frame, the hello of the handshake, to
    learn who connects. A *directed pair* ``(sender, receiver)`` can be cut: the connections
    ``sender`` opened to ``receiver`` are closed, and new ones are closed as soon as their hello
    shows who opened them (each member sends its Raft messages on its own outgoing connection,
    so cutting ``(a, b)`` stops a's messages to b, not b's to a). A connection whose first frame
    is not a hello is relayed as it is (the member refuses it) and never cut.

    Not a network emulator: no delays, no loss short of a cut. Threads: one accepting per
    member, two per relayed connection; all are daemons and end with ``close``.
    """

    def __init__(self, targets: Mapping[int, Tuple[str, int]], host: str = "127.0.0.1") -> None:
        self.targets = dict(targets)
        self.host = host
        #: Member id -> the port the proxy listens on for it.
        self.ports: Dict[int, int] = {}
        #: Connections closed because their pair was cut, and connections relayed.
        self.refused = 0
        self.relayed = 0
        self._lock = threading.Lock()
        self._cut: Set[Tuple[int, int]] = set()
        self._links: Set[_Link] = set()
        self._closed = threading.Event()
        self._listeners: List[socket.socket] = []
        for member in self.targets:
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((host, 0))
            listener.listen(64)
            listener.settimeout(0.1)  # so the accepting thread sees `close`
            self._listeners.append(listener)
            self.ports[member] = listener.getsockname()[1]
            threading.Thread(target=self._accept, args=(listener, member), daemon=True,
                             name=f"proxy-accept-{member}").start()

    def address(self, member: int) -> str:
        """``HOST:PORT`` where the others reach ``member`` through the proxy."""
        return f"{self.host}:{self.ports[member]}"

    # --- cuts -----------------------------------------------------------------------------

    def cut(self, sender: int, receiver: int) -> None:
        """Cuts the directed pair: closes ``sender``'s connections to ``receiver`` and refuses
        new ones until ``heal``."""
        self.partition([sender], [receiver], both=False)

    def partition(self, group_a: Iterable[int], group_b: Iterable[int], both: bool = True) -> None:
        """Cuts every pair from ``group_a`` to ``group_b`` and, with ``both``, back."""
        a, b = list(group_a), list(group_b)
        pairs = {(x, y) for x in a for y in b}
        if both:
            pairs |= {(y, x) for x in a for y in b}
        with self._lock:
            self._cut |= pairs
            doomed = [link for link in self._links if (link.sender, link.to) in self._cut]
        for link in doomed:
            link.shut()

    def heal(self) -> None:
        """Lifts every cut; the members reconnect on their own (they retry every 100 ms)."""
        with self._lock:
            self._cut.clear()

    @property
    def cuts(self) -> Set[Tuple[int, int]]:
        """The directed pairs cut now."""
        with self._lock:
            return set(self._cut)

    def links(self) -> List[Tuple[Optional[int], int]]:
        """(sender, receiver) of every connection relayed now (sender ``None`` until its hello
        arrived)."""
        with self._lock:
            return [(link.sender, link.to) for link in self._links]

    def close(self) -> None:
        """Stops accepting and closes every relayed connection."""
        self._closed.set()
        for listener in self._listeners:
            listener.close()
        with self._lock:
            links = list(self._links)
        for link in links:
            link.shut()

    # --- relaying -------------------------------------------------------------------------

    def _accept(self, listener: socket.socket, member: int) -> None:
        while not self._closed.is_set():
            try:
                client, _ = listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            client.settimeout(None)
            threading.Thread(target=self._serve, args=(client, member), daemon=True,
                             name=f"proxy-to-{member}").start()

    def _serve(self, client: socket.socket, member: int) -> None:
        try:
            upstream = socket.create_connection(self.targets[member], timeout=2)
        except OSError:
            client.close()  # the member is down: the connecting member sees a closed link
            return
        upstream.settimeout(None)
        link = _Link(client, upstream, member)
        with self._lock:
            self._links.add(link)
        back = threading.Thread(target=self._pump, args=(upstream, client, link), daemon=True,
                                name=f"proxy-from-{member}")
        back.start()
        try:
            first = self._read_hello(client, link)
            if first is not None:
                upstream.sendall(first)
                self._pump(client, upstream, link)
        except OSError:
            pass
        finally:
            link.shut()
            back.join(timeout=5)
            with self._lock:
                self._links.discard(link)
            client.close()
            upstream.close()

    def _read_hello(self, client: socket.socket, link: _Link) -> Optional[bytes]:
        """The bytes read up to the end of the hello (to be relayed), once the link's sender is
        known and its pair is not cut; ``None`` if the link is to be closed."""
        data = b""
        while True:
            try:
                sender = hello_sender(data)
            except FrameError:
                return data  # not a member: relayed as it is, the member refuses it
            if sender is not None:
                with self._lock:
                    if (sender, link.to) in self._cut or self._closed.is_set():
                        self.refused += 1
                        return None
                    link.sender = sender
                    self.relayed += 1
                return data
            chunk = client.recv(4 + HELLO_LENGTH - len(data))
            if not chunk:
                return None
            data += chunk

    @staticmethod
    def _pump(source: socket.socket, target: socket.socket, link: _Link) -> None:
        try:
            while True:
                chunk = source.recv(65536)
                if not chunk:
                    break
                target.sendall(chunk)
        except OSError:
            pass
        link.shut()


class Cluster:
    """The members of one Throttle cluster on loopback, with the ``LinkProxy`` between them.

    Member ``id`` (1 to ``size``, its position in ``members``) gets its own data directory
    (``work_dir/member-{id}/data``, kept by ``kill``), a free HTTP port (kept by ``restart``), a
    private port it binds for the others (``listen``), and in ``members`` the proxy's port for
    it, so every link between two members runs through the proxy and can be cut. All share one
    secret. ``config`` is everything of the configuration but the ``[cluster]`` table (the
    semaphores, logging); ``args`` are command-line options (e.g. ``--workers 16``).

    Members are addressed by id everywhere (``member``, ``kill``, ``leader``...), as
    ``/status.json`` names them.
    """

    def __init__(
        self,
        work_dir: Path,
        size: int = 3,
        config: str = "[semaphores]\nM = 1\n",
        *,
        args: Sequence[str] = (),
        binary: Optional[Path] = None,
        env: Optional[Mapping[str, str]] = None,
        secret: str = CLUSTER_SECRET,
        start_timeout: float = 30.0,
    ) -> None:
        self.work_dir = Path(work_dir)
        self.size = size
        self.config = config
        self.args = [str(arg) for arg in args]
        self._binary = binary
        self.env = dict(env or {})
        self.secret = secret
        self.start_timeout = start_timeout
        self.members: Dict[int, Server] = {}
        self.proxy: Optional[LinkProxy] = None

    @property
    def ids(self) -> List[int]:
        """Every member's id, in order."""
        return list(range(1, self.size + 1))

    def start(self) -> "Cluster":
        """Writes the configurations and starts every member; returns once each answers
        ``/health`` (not once they elected a leader: see ``leader``)."""
        self.work_dir.mkdir(parents=True, exist_ok=True)
        binary = self._binary if self._binary is not None else server_binary()
        reserved = {member: free_port() for member in self.ids}
        listen = {member: sock.getsockname()[1] for member, sock in reserved.items()}
        self.proxy = LinkProxy({member: ("127.0.0.1", port) for member, port in listen.items()})
        for sock in reserved.values():
            sock.close()
        members = ", ".join(json.dumps(self.proxy.address(member)) for member in self.ids)
        try:
            for member in self.ids:
                data_dir = self.work_dir / f"member-{member}" / "data"
                data_dir.parent.mkdir(parents=True, exist_ok=True)
                table = (f"\n[cluster]\nid = {member}\nmembers = [{members}]\n"
                         f"data_dir = {json.dumps(str(data_dir))}\n"
                         f"secret = {json.dumps(self.secret)}\n"
                         f"listen = \"127.0.0.1:{listen[member]}\"\n")
                config_file = self.work_dir / f"member-{member}.toml"
                config_file.write_text(self.config + table, encoding="utf-8")
                server = Server([str(binary), "-c", str(config_file), *self.args],
                                log_dir=self.work_dir, name=f"member-{member}", env=self.env,
                                start_timeout=self.start_timeout)
                self.members[member] = server
                server.start()
        except BaseException:
            self.stop_all(kill=True)
            raise
        return self

    def member(self, member: int) -> Server:
        """The server of member ``member``."""
        return self.members[member]

    def url(self, member: int) -> str:
        return self.members[member].url

    def running(self) -> List[int]:
        """The members whose process runs and is not paused: the ones that can answer."""
        return [member for member, server in self.members.items()
                if server.running and not server.paused]

    # --- what the members say -------------------------------------------------------------

    def status(self, member: int, timeout: float = 2.0) -> Optional[Dict[str, Any]]:
        """``/status.json`` of ``member``, or ``None`` if it did not answer."""
        try:
            with urllib.request.urlopen(f"{self.url(member)}/status.json",
                                        timeout=timeout) as response:
                status = json.loads(response.read())
        except (urllib.error.URLError, OSError, ValueError):
            return None
        return status if isinstance(status, dict) else None

    def leaders(self, among: Optional[Iterable[int]] = None) -> Dict[int, Optional[int]]:
        """Member -> the leader it names in ``/status.json`` (``None``: none, or no answer), for
        ``among`` (default: the running members)."""
        result: Dict[int, Optional[int]] = {}
        for member in (self.running() if among is None else among):
            status = self.status(member)
            cluster = status.get("cluster") if status else None
            leader = cluster.get("leader") if isinstance(cluster, dict) else None
            result[member] = leader if isinstance(leader, int) else None
        return result

    def leader(self, among: Optional[Iterable[int]] = None, timeout: float = 30.0) -> int:
        """The id of the leader, once every member of ``among`` (default: the running ones)
        names the same one, itself among them. Raises ``HarnessError`` after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            group = list(self.running() if among is None else among)
            named = self.leaders(group)
            values = set(named.values())
            if len(values) == 1:
                (leader,) = values
                if leader is not None and leader in group:
                    return leader
            if time.monotonic() >= deadline:
                raise HarnessError(f"the members {group} did not agree on a leader among them "
                                   f"within {timeout:g}s: {named}")
            time.sleep(0.02)

    # --- faults ---------------------------------------------------------------------------

    def kill(self, member: int) -> None:
        """SIGKILL of ``member``; its data directory stays for ``restart``."""
        self.members[member].kill()

    def restart(self, member: int) -> Server:
        """Starts ``member`` again in its directory, on its HTTP port (killing it first if it
        still runs); returns once it answers ``/health``."""
        server = self.members[member]
        if server.running:
            server.kill()
        return server.start(port=server.port)

    def pause(self, member: int) -> None:
        """SIGSTOP of ``member``: it answers nothing, to clients or members, until ``resume``."""
        self.members[member].pause()

    def resume(self, member: int) -> None:
        self.members[member].resume()

    def partition(self, group_a: Iterable[int], group_b: Iterable[int]) -> None:
        """Cuts the links between the two groups, both ways, until ``heal``."""
        assert self.proxy is not None, "the cluster was never started"
        self.proxy.partition(group_a, group_b)

    def cut(self, sender: int, receiver: int) -> None:
        """Cuts only ``sender``'s messages to ``receiver`` (see ``LinkProxy``)."""
        assert self.proxy is not None, "the cluster was never started"
        self.proxy.cut(sender, receiver)

    def heal(self) -> None:
        """Lifts every cut."""
        if self.proxy is not None:
            self.proxy.heal()

    def stop_all(self, kill: bool = False) -> None:
        """Stops every member (SIGTERM, or SIGKILL with ``kill``) and the proxy; raises
        ``HarnessError`` at the end if a member did not exit within 5 s of SIGTERM."""
        late = [server.name for server in self.members.values()
                if server.running and server.stop(kill=kill) is None]
        if self.proxy is not None:
            self.proxy.close()
        if late and not kill:
            raise HarnessError(f"did not exit within 5 s of SIGTERM: {', '.join(late)}")

    def __enter__(self) -> "Cluster":
        return self.start()

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
