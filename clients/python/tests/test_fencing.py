"""Know your lock (issue 15), blocking client: fencing tokens, the lost lease, holder names and
``peer_state``; the wire rules they rest on first, without a server."""

from __future__ import annotations

import json
import os
import socket
import threading
from datetime import timedelta
from typing import Dict, List, Mapping, Optional

import pytest

from throttle_client import (
    AcquireResult,
    Client,
    InvalidName,
    LockLost,
    Peer,
    PeerWithHeartbeat,
    UnexpectedResponse,
    UnknownPeer,
    lock,
    set_local_peer,
)
from throttle_client import _wire

from .conftest import wait_until

MINUTE = timedelta(minutes=1)
# A lease that runs out long before the first heartbeat: a heartbeat that cannot get through.
SHORT_LEASE = timedelta(milliseconds=300)
LATE_BEAT = timedelta(seconds=1)


# The wire, without a server.


@pytest.mark.parametrize(
    "status, headers, expected",
    [
        (200, {"Fencing-Token": "17"}, AcquireResult(True, 17)),
        (200, {"fencing-token": "9007199254740991"}, AcquireResult(True, 2**53 - 1)),
        (200, {}, AcquireResult(True, None)),  # A Throttle 0.5 server.
        (202, {}, AcquireResult(False, None)),
    ],
)
def test_parse_acquired(status: int, headers: Dict[str, str], expected: AcquireResult) -> None:
    assert _wire.parse_acquired(status, "", headers) == expected


@pytest.mark.parametrize("raw", ["", "-1", "+5", "1.5", "abc", "١٢"])
def test_a_malformed_token_is_an_unexpected_response(raw: str) -> None:
    with pytest.raises(UnexpectedResponse):
        _wire.parse_acquired(200, "", {"Fencing-Token": raw})


@pytest.mark.parametrize(
    "status, text, headers, expected",
    [
        (400, "Unknown peer", {"Throttle-Peer-State": "expired"}, LockLost),
        (400, "Unknown peer", {"throttle-peer-state": "expired"}, LockLost),
        (400, "Unknown peer", {}, UnknownPeer),
        (400, "Unknown peer", {"Throttle-Peer-State": "something-else"}, UnknownPeer),
        (400, "Invalid name: `a\\nb` holds control characters", {}, InvalidName),
    ],
)
def test_check_answer(
    status: int, text: str, headers: Mapping[str, str], expected: type
) -> None:
    with pytest.raises(expected) as raised:
        _wire.check_answer(status, text, headers)
    assert type(raised.value) is expected


def test_lock_lost_is_no_unknown_peer_and_invalid_name_a_value_error() -> None:
    # `except UnknownPeer: restore()` written for 0.5 must not restore a lost lease.
    assert not issubclass(LockLost, UnknownPeer)
    assert issubclass(InvalidName, ValueError)


def _body(request: _wire.Request) -> Dict[str, object]:
    assert request.body is not None
    value = json.loads(request.body)
    assert isinstance(value, dict)
    return value


def test_restore_sends_the_tokens_of_acquired_locks_only() -> None:
    request = _wire.restore(7, {"A": 3}, MINUTE, {"A": 17, "gone": 5}, "host:1")
    assert _body(request) == {
        "expires_in": "60000ms",
        "peer_id": 7,
        "acquired": {"A": 3},
        "fencing_tokens": {"A": 17},
        "name": "host:1",
    }
    # Without tokens and name: the body of a 0.5 client.
    assert _body(_wire.restore(7, {}, MINUTE, {}, "")) == {
        "expires_in": "60000ms", "peer_id": 7, "acquired": {},
    }


def test_new_peer_sends_a_name_unless_it_is_empty() -> None:
    assert _body(_wire.new_peer(MINUTE, "job")) == {"expires_in": "60000ms", "name": "job"}
    assert _body(_wire.new_peer(MINUTE, "")) == {"expires_in": "60000ms"}


@pytest.mark.parametrize(
    "name, expected",
    [
        ("host:1", "host:1"),
        ("x" * 256, "x" * 256),
        ("x" * 300, "x" * 256),
        # A cut inside a two-byte character drops the whole character.
        ("x" * 255 + "ü", "x" * 255),
        ("☃" * 100, "☃" * 85),
    ],
)
def test_clip_name(name: str, expected: str) -> None:
    assert _wire.clip_name(name) == expected


def test_the_default_name_is_host_and_pid() -> None:
    assert _wire.default_peer_name() == f"{socket.gethostname()}:{os.getpid()}"[:256]
    assert Client("http://unused").holder_name() == _wire.default_peer_name()
    assert Client("http://unused", peer_name="job").holder_name() == "job"
    assert Client("http://unused", peer_name="job").holder_name("other") == "other"
    assert Client("http://unused", peer_name="").holder_name() == ""


# Fencing tokens, against the server.


def test_a_grant_carries_a_token_a_repeat_and_a_shrink_keep_it(client: Client) -> None:
    peer = Peer(client)
    assert peer.acquire("C", count=3)
    first = peer.fencing_token("C")
    assert isinstance(first, int)
    assert peer.acquire("C", count=3)  # The idempotent repeat.
    assert peer.fencing_token("C") == first
    assert peer.acquire("C", count=2)  # A shrink.
    assert peer.fencing_token("C") == first
    assert client.peer_state(peer.id).fencing_tokens == {"C": first}
    peer.release("C")
    assert peer.fencing_token("C") is None
    assert peer.acquire("C")
    second = peer.fencing_token("C")
    assert second is not None and second > first
    peer.remove_from_server()


def test_a_pending_lock_has_no_token_and_its_grant_a_larger_one(client: Client) -> None:
    holder, waiter = Peer(client), Peer(client)
    assert holder.acquire("A")
    held = holder.fencing_token("A")
    assert client.acquire_with_token(waiter.id, "A") == AcquireResult(False, None)
    assert not waiter.acquire("A")
    assert waiter.fencing_token("A") is None
    holder.remove_from_server()
    assert waiter.acquire("A", block_for=MINUTE)
    granted = waiter.fencing_token("A")
    assert held is not None and granted is not None and granted > held
    waiter.remove_from_server()


def test_a_lock_granted_while_its_long_poll_waits_carries_a_larger_token(client: Client) -> None:
    holder, waiter = Peer(client), Peer(client)
    assert holder.acquire("A")
    held = holder.fencing_token("A")
    answers: List[bool] = []
    poll = threading.Thread(target=lambda: answers.append(waiter.acquire("A", block_for=MINUTE)))
    poll.start()
    # Queued by the long poll itself: the grant below answers that request.
    wait_until(lambda: client.peer_state(waiter.id).pending == {"A": 1}, what="the long poll")
    holder.remove_from_server()
    poll.join(timeout=10)
    assert not poll.is_alive(), "the long poll was not answered within 10 s"
    assert answers == [True]
    granted = waiter.fencing_token("A")
    assert held is not None and granted is not None and granted > held
    assert client.peer_state(waiter.id).fencing_tokens == {"A": granted}
    waiter.remove_from_server()


def test_lock_yields_the_peer_with_the_token(url: str, client: Client) -> None:
    with lock(url, "A") as peer:
        token = peer.fencing_token("A")
        assert token is not None
        assert client.peer_state(peer.id).fencing_tokens == {"A": token}
        with lock(url, "B"):
            other = peer.fencing_token("B")
            assert other is not None and other > token
    with lock(url, "A") as again:
        newer = again.fencing_token("A")
        assert newer is not None and newer > token


@pytest.mark.parametrize("kill", [False, True], ids=["sigterm", "sigkill"])
def test_a_server_restart_restores_the_lock_with_its_token(server, client: Client, kill: bool) -> None:  # type: ignore[no-untyped-def]
    lost: List[Peer] = []
    peer = PeerWithHeartbeat(client, heartbeat_interval=timedelta(milliseconds=100))
    set_local_peer(server.url, peer)
    with lock(server.url, "A", on_lost=lost.append):
        token = peer.fencing_token("A")
        server.restart(kill=kill)
        wait_until(lambda: client.remainder("A") == 0, what="the heartbeat to restore A")
        state = client.peer_state(peer.id)
        assert state.fencing_tokens == {"A": token}
        assert state.name == peer.name
        assert peer.fencing_token("A") == token
        assert not peer.lost
    assert lost == []
    assert client.remainder("A") == 1


# The lost lease.


def test_a_lease_that_ran_out_raises_lock_lost_and_is_not_restored(
    url: str, client: Client
) -> None:
    calls: List[Peer] = []
    peer = PeerWithHeartbeat(client, expiration_time=SHORT_LEASE, heartbeat_interval=LATE_BEAT)
    set_local_peer(url, peer)
    with pytest.raises(LockLost, match="ran out while it held 'A'"):
        with lock(url, "A", on_lost=calls.append):
            wait_until(lambda: peer.lost, what="the heartbeat to find the lease lost")
            # Nothing was restored: the server released A, and another peer may take it.
            assert client.remainder("A") == 1
            assert client.list_peers() == []
            # Later calls on the peer raise too, without asking the server.
            with pytest.raises(LockLost):
                peer.heartbeat()
            with pytest.raises(LockLost):
                peer.restore()
    assert calls == [peer]
    assert client.list_peers() == []
    # The thread's next lock gets a new peer.
    with lock(url, "A") as fresh:
        assert fresh is not peer and not fresh.lost
    assert calls == [peer]


def test_lock_lost_is_raised_from_the_blocks_own_error(url: str, client: Client) -> None:
    peer = PeerWithHeartbeat(client, expiration_time=SHORT_LEASE, heartbeat_interval=LATE_BEAT)
    set_local_peer(url, peer)
    with pytest.raises(LockLost) as raised:
        with lock(url, "A"):
            wait_until(lambda: peer.lost, what="the lease lost")
            raise RuntimeError("the database refused the stale token")
    assert isinstance(raised.value.__cause__, RuntimeError)


def test_nested_blocks_of_a_lost_peer_all_raise(url: str, client: Client) -> None:
    peer = PeerWithHeartbeat(client, expiration_time=SHORT_LEASE, heartbeat_interval=LATE_BEAT)
    set_local_peer(url, peer)
    outer: List[Peer] = []
    inner: List[Peer] = []
    with pytest.raises(LockLost):
        with lock(url, "A", on_lost=outer.append):
            try:
                with lock(url, "B", on_lost=inner.append):
                    wait_until(lambda: peer.lost, what="the lease lost")
            except LockLost:
                pass
            # The outer lock is lost as well; a new lock on the lost peer is refused.
            with pytest.raises(LockLost):
                with lock(url, "B"):
                    pass
    assert (outer, inner) == ([peer], [peer])


def test_a_peer_without_heartbeat_learns_it_at_its_next_call(client: Client) -> None:
    calls: List[Peer] = []
    peer = Peer(client, expiration_time=SHORT_LEASE, on_lost=calls.append)
    assert peer.acquire("A")
    wait_until(lambda: client.remainder("A") == 1, what="the lease to run out")
    with pytest.raises(LockLost):
        peer.acquire("B")
    assert peer.lost and calls == [peer]
    with pytest.raises(LockLost):
        peer.acquire("B")
    assert calls == [peer]
    peer.remove_from_server()  # Clean-up raises nothing.


def test_a_plain_unknown_peer_is_still_restored(client: Client) -> None:
    peer = Peer(client)
    assert peer.acquire("A")
    token = peer.fencing_token("A")
    client.release(peer.id)  # Released, not expired: the server answers no header.
    with pytest.raises(UnknownPeer):
        peer.heartbeat()
    peer.restore()
    assert client.peer_state(peer.id).fencing_tokens == {"A": token}
    assert not peer.lost
    peer.remove_from_server()


def test_on_lost_runs_once_under_concurrent_discoveries(client: Client) -> None:
    calls: List[Peer] = []
    peer = Peer(client, expiration_time=SHORT_LEASE, on_lost=calls.append)
    assert peer.acquire("A")
    wait_until(lambda: client.remainder("A") == 1, what="the lease to run out")
    errors: List[Optional[BaseException]] = []

    def heartbeat() -> None:
        try:
            peer.heartbeat()
            errors.append(None)
        except LockLost as error:
            errors.append(error)

    threads = [threading.Thread(target=heartbeat) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(errors) == 8 and all(isinstance(e, LockLost) for e in errors)
    assert calls == [peer]


# Names and peer_state.


def test_names_are_sent_and_shown(url: str, client: Client) -> None:
    default = Peer(client)
    assert client.peer_state(default.id).name == f"{socket.gethostname()}:{os.getpid()}"
    named = Peer(Client(url, peer_name="build-7"))
    assert client.peer_state(named.id).name == "build-7"
    override = Peer(Client(url, peer_name="build-7"), name="Datenbank-Job 🚦")
    assert client.peer_state(override.id).name == "Datenbank-Job 🚦"
    nameless = Peer(client, name="")
    assert client.peer_state(nameless.id).name is None
    with lock(url, "A", name="nightly report") as peer:
        state = client.peer_state(peer.id)
        assert state.name == "nightly report"
        assert state.acquired == {"A": 1} and state.pending == {}
        assert timedelta(0) < state.expires_in <= peer.expiration_time
    listed = {p.id: p.name for p in client.list_peers()}
    assert listed[named.id] == "build-7"
    for peer in (default, named, override, nameless):
        peer.remove_from_server()


@pytest.mark.parametrize("name", ["line\nbreak", "bell\u0007", "x" * 257])
def test_a_bad_name_is_refused(client: Client, name: str) -> None:
    with pytest.raises(InvalidName):
        Peer(client, name=name)
    assert client.list_peers() == []


def test_peer_state_of_an_unknown_peer(client: Client) -> None:
    with pytest.raises(UnknownPeer):
        client.peer_state(12345)
