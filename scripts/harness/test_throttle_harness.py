"""Tests of the server harness against the real binary: starting one and several servers,
reading their addresses and logs, and each way of ending or pausing one; the link proxy's
reading of the members' handshake and its cuts (against an echo server), and a partition of a
real three-member cluster.

Run by ``clients/python/run-tests`` (in the Python client's virtual environment, with
``THROTTLE_BIN`` set, else the binary is built first).
"""

from __future__ import annotations

import json
import os
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
from typing import Iterator, Tuple

import pytest

import throttle_harness
from throttle_harness import Cluster, FrameError, HarnessError, LinkProxy, Server, Servers

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


# --- the link proxy and the cluster ------------------------------------------------------------


def hello(sender: int, to: int = 2) -> bytes:
    """A hello frame as a connecting member sends it (digest and MAC zeroed: the proxy reads
    only the sender)."""
    payload = struct.pack("<QQ", sender, to) + bytes(64)
    return struct.pack("<IB", 1 + len(payload), throttle_harness.HELLO_KIND) + payload


def test_the_proxy_reads_the_sender_of_a_hello_only_once_it_is_whole() -> None:
    frame = hello(3, to=1)
    assert len(frame) == 4 + throttle_harness.HELLO_LENGTH
    for cut in range(len(frame)):
        assert throttle_harness.hello_sender(frame[:cut]) is None
    assert throttle_harness.hello_sender(frame) == 3
    assert throttle_harness.hello_sender(frame + b"next frame") == 3
    assert throttle_harness.hello_sender(hello(2**64 - 1)) == 2**64 - 1


def test_the_proxy_refuses_to_read_a_first_frame_that_is_not_a_hello() -> None:
    with pytest.raises(FrameError, match="bytes"):
        throttle_harness.hello_sender(struct.pack("<IB", 33, 1) + bytes(32))  # a challenge
    wrong_kind = bytearray(hello(1))
    wrong_kind[4] = 5
    with pytest.raises(FrameError, match="kind 5"):
        throttle_harness.hello_sender(bytes(wrong_kind))


@pytest.fixture
def echo() -> Iterator[Tuple[str, int]]:
    """A server that sends back whatever each connection sends it."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)
    done = False

    def serve(conn: socket.socket) -> None:
        with conn:
            try:
                while chunk := conn.recv(4096):
                    conn.sendall(chunk)
            except OSError:
                pass

    def accept() -> None:
        while not done:
            try:
                conn, _ = listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            conn.settimeout(None)
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield ("127.0.0.1", listener.getsockname()[1])
    done = True
    thread.join(timeout=5)
    listener.close()


def connect(proxy: LinkProxy, member: int, sender: int) -> socket.socket:
    """A connection through the proxy to ``member`` that introduced itself as ``sender``, its
    hello echoed back."""
    conn = socket.create_connection(("127.0.0.1", proxy.ports[member]), timeout=5)
    conn.sendall(hello(sender, to=member))
    assert receive(conn, len(hello(sender))) == hello(sender, to=member)
    return conn


def receive(conn: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            break
        data += chunk
    return data


def closed(conn: socket.socket) -> bool:
    """Whether the proxy closed ``conn`` (within its 5 s timeout)."""
    try:
        conn.sendall(b"x")
        return conn.recv(1) == b""
    except OSError:
        return True


def wait_for_links(proxy: LinkProxy, expected: int) -> None:
    deadline = time.monotonic() + 5
    while len([link for link in proxy.links() if link[0] is not None]) != expected:
        assert time.monotonic() < deadline, proxy.links()
        time.sleep(0.01)


def test_the_proxy_relays_both_ways_and_cuts_a_directed_pair(echo: Tuple[str, int]) -> None:
    proxy = LinkProxy({2: echo})
    try:
        from_1, from_3 = connect(proxy, 2, sender=1), connect(proxy, 2, sender=3)
        for conn in (from_1, from_3):
            conn.sendall(b"raft message")
            assert receive(conn, 12) == b"raft message"
        wait_for_links(proxy, 2)
        proxy.cut(1, 2)
        assert proxy.cuts == {(1, 2)}
        assert closed(from_1)
        from_3.sendall(b"still up")
        assert receive(from_3, 8) == b"still up"
        # A new connection from 1 is closed once its hello shows who it is.
        again = socket.create_connection(("127.0.0.1", proxy.ports[2]), timeout=5)
        again.sendall(hello(1))
        assert receive(again, 200) == b""
        assert proxy.refused == 1
        proxy.heal()
        assert proxy.cuts == set()
        healed = connect(proxy, 2, sender=1)
        healed.sendall(b"back")
        assert receive(healed, 4) == b"back"
        for conn in (from_1, from_3, again, healed):
            conn.close()
    finally:
        proxy.close()


def test_a_partition_cuts_both_directions_and_spares_the_rest(echo: Tuple[str, int]) -> None:
    proxy = LinkProxy({1: echo, 2: echo, 3: echo})
    try:
        pairs = {(1, 2): connect(proxy, 2, 1), (2, 1): connect(proxy, 1, 2),
                 (3, 1): connect(proxy, 1, 3), (2, 3): connect(proxy, 3, 2),
                 (3, 2): connect(proxy, 2, 3)}
        wait_for_links(proxy, len(pairs))
        proxy.partition([1], [2, 3])
        assert proxy.cuts == {(1, 2), (2, 1), (1, 3), (3, 1)}
        for (sender, receiver), conn in pairs.items():
            assert closed(conn) == (1 in (sender, receiver)), (sender, receiver)
            conn.close()
        # Garbage is not a hello: relayed unchanged, never cut (the member refuses it).
        stranger = socket.create_connection(("127.0.0.1", proxy.ports[1]), timeout=5)
        stranger.sendall(b"GET / HTTP/1.1\r\n\r\n")
        assert receive(stranger, 18) == b"GET / HTTP/1.1\r\n\r\n"
        stranger.close()
    finally:
        proxy.close()


def call(url: str, method: str = "GET", body: str = "") -> Tuple[int, str]:
    request = urllib.request.Request(url, data=body.encode() if body else None, method=method)
    try:
        with urllib.request.urlopen(request, timeout=20) as answer:
            return int(answer.status), answer.read().decode()
    except urllib.error.HTTPError as error:
        return int(error.code), error.read().decode()


def test_a_partitioned_leader_grants_nothing_and_the_majority_elects_another(
    tmp_path: Path,
) -> None:
    with Cluster(tmp_path, 3) as cluster:
        old = cluster.leader()
        others = [member for member in cluster.ids if member != old]
        status, text = call(f"{cluster.url(old)}/new_peer", "POST", '{"expires_in": "1m"}')
        assert status == 200, text
        peer = int(text)
        cluster.partition([old], others)
        new = cluster.leader(among=others)
        assert new != old
        status, text = call(f"{cluster.url(old)}/peers/{peer}/M", "PUT", "1")
        assert (status, text.split(":")[0]) == (503, "No quorum"), text
        status, text = call(f"{cluster.url(new)}/peers/{peer}/M", "PUT", "1")
        assert status == 200, text
        cluster.heal()
        leader = cluster.leader()
        statuses = [cluster.status(member) for member in cluster.ids]
        assert all(s is not None and s["cluster"]["leader"] == leader for s in statuses)
        status, text = call(f"{cluster.url(old)}/peers/{peer}/is_acquired")
        assert (status, text) == (200, "true")
        status, text = call(f"{cluster.url(old)}/peers/")
        assert status == 200 and [p["id"] for p in json.loads(text)] == [peer], text
