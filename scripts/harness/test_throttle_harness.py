"""Tests of the server harness against the real binary: starting one and several servers,
reading their addresses and logs, and each way of ending or pausing one.

Run by ``clients/python/run-tests`` (in the Python client's virtual environment, with
``THROTTLE_BIN`` set, else the binary is built first).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest

import throttle_harness
from throttle_harness import HarnessError, Server, Servers

CONFIG = "[semaphores]\nA = 1\n"


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[Servers]:
    with Servers(tmp_path) as group:
        yield group


def health(url: str, timeout: float = 2.0) -> int:
    with urllib.request.urlopen(f"{url}/health", timeout=timeout) as answer:
        return int(answer.status)


def test_a_server_starts_on_a_free_port_and_logs_its_address(servers: Servers) -> None:
    server = servers.start_throttle(CONFIG)
    assert server.url == f"http://127.0.0.1:{server.port}" and server.port > 0
    assert health(server.url) == 200
    assert any(f"Listening on {server.url}" in line for line in server.log_lines())
    assert server.spawned <= server.healthy


def test_several_servers_run_side_by_side_and_stop_together(servers: Servers) -> None:
    members = [servers.start_throttle(CONFIG) for _ in range(3)]
    assert len({member.port for member in members}) == 3
    assert all(health(member.url) == 200 for member in members)
    servers.stop_all()
    assert [member.process.returncode for member in members if member.process] == [0, 0, 0]
    assert not any(member.running for member in servers)


def test_kill_ends_the_server_by_sigkill(servers: Servers) -> None:
    server = servers.start_throttle(CONFIG)
    assert server.kill() == -signal.SIGKILL
    assert not server.running


def test_a_paused_server_answers_only_after_it_is_resumed(servers: Servers) -> None:
    server = servers.start_throttle(CONFIG)
    server.pause()
    with pytest.raises(OSError):  # urllib's timeout (socket.timeout, URLError) is an OSError
        health(server.url, timeout=0.3)
    server.resume()
    assert health(server.url) == 200


def test_a_paused_server_still_stops(servers: Servers) -> None:
    server = servers.start_throttle(CONFIG)
    server.pause()
    assert server.stop() == 0


def test_restart_keeps_the_port(servers: Servers) -> None:
    server = servers.start_throttle(CONFIG)
    port, pid = server.port, server.pid
    server.restart(kill=True)
    assert (server.port, server.starts) == (port, 2) and server.pid != pid
    assert health(server.url) == 200


def test_a_server_that_cannot_start_fails_with_its_log(servers: Servers) -> None:
    with pytest.raises(HarnessError, match="before it listened") as failed:
        servers.start_throttle("[semaphores]\nA = \"not a number\"\n", start_timeout=5)
    assert "not a number" in str(failed.value).split("its log:", 1)[1]


def test_a_server_gets_no_token_from_the_callers_environment(
    servers: Servers, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("THROTTLE_TOKEN", "from-the-test-run")
    open_server = servers.start_throttle(CONFIG)
    with urllib.request.urlopen(f"{open_server.url}/remainder?semaphore=A", timeout=2) as answer:
        assert answer.read() == b"1"
    closed_server = servers.start_throttle(CONFIG, env={"THROTTLE_TOKEN": "s3cret"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{closed_server.url}/remainder?semaphore=A", timeout=2)
    assert refused.value.code == 401


def test_the_command_line_starts_a_server_that_outlives_it_and_stops_it(tmp_path: Path) -> None:
    config = tmp_path / "throttle.toml"
    config.write_text(CONFIG)
    log = tmp_path / "cli.log"
    script = str(Path(throttle_harness.__file__))
    binary = str(throttle_harness.server_binary())
    started = subprocess.run(
        [sys.executable, script, "start", "--log", str(log), "--", binary, "-c", str(config)],
        capture_output=True, text=True, timeout=30, check=True,
    )
    url, pid_text = started.stdout.split()
    pid = int(pid_text)
    try:
        assert health(url) == 200
        assert "Listening on" in log.read_text()
    finally:
        subprocess.run([sys.executable, script, "stop", str(pid)], timeout=30, check=True)
    deadline = time.monotonic() + 10
    while alive(pid):
        assert time.monotonic() < deadline, f"process {pid} still there after stop"
        time.sleep(0.05)


def alive(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie (the server is not this process's child)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def test_the_binary_is_the_one_throttle_bin_names(monkeypatch: pytest.MonkeyPatch) -> None:
    throttle_harness.server_binary.cache_clear()
    monkeypatch.setenv("THROTTLE_BIN", "/nowhere/throttle")
    try:
        assert throttle_harness.server_binary() == Path("/nowhere/throttle")
    finally:
        throttle_harness.server_binary.cache_clear()
    assert os.environ["THROTTLE_BIN"] == "/nowhere/throttle"
