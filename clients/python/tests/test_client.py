"""``Client`` against the real server: every route, and every error answer's type."""

from __future__ import annotations

import json
import threading
import time
from datetime import timedelta

import pytest
import requests

from throttle_client import (
    BodyTooLarge,
    Client,
    CountOverflow,
    CountTooLarge,
    InvalidBody,
    InvalidCount,
    InvalidDuration,
    InvalidRequest,
    LockCountChange,
    LockHierarchyViolation,
    LockLost,
    RequestRejected,
    RestoreConflict,
    SecondPendingLock,
    UnexpectedResponse,
    UnknownPeer,
    UnknownSemaphore,
)
from throttle_client._wire import Request
from throttle_client.errors import error_for

from .conftest import wait_until

MINUTE = timedelta(minutes=1)


def test_new_peer_returns_distinct_ids_javascript_can_hold(client: Client) -> None:
    ids = {client.new_peer(expires_in=MINUTE) for _ in range(20)}
    assert len(ids) == 20
    assert all(0 <= peer_id < 2**53 for peer_id in ids)


def test_acquire_answers_true_when_granted_and_false_when_pending(client: Client) -> None:
    first = client.new_peer(expires_in=MINUTE)
    second = client.new_peer(expires_in=MINUTE)
    assert client.acquire(first, "A") is True
    assert client.acquire(second, "A") is False
    assert client.is_acquired(first) is True
    assert client.is_acquired(second) is False
    client.release(first)
    assert client.is_acquired(second) is True


def test_acquire_is_idempotent(client: Client) -> None:
    peer = client.new_peer(expires_in=MINUTE)
    assert client.acquire(peer, "C", count=2)
    assert client.acquire(peer, "C", count=2)
    assert client.remainder("C") == 3


def test_acquire_with_a_smaller_count_shrinks_the_lock(client: Client) -> None:
    peer = client.new_peer(expires_in=MINUTE)
    assert client.acquire(peer, "C", count=4)
    assert client.acquire(peer, "C", count=1)
    assert client.remainder("C") == 4


def test_block_for_waits_then_answers_pending(client: Client) -> None:
    first = client.new_peer(expires_in=MINUTE)
    second = client.new_peer(expires_in=MINUTE)
    client.acquire(first, "A")
    started = time.monotonic()
    assert not client.acquire(second, "A", block_for=timedelta(milliseconds=300))
    assert 0.25 <= time.monotonic() - started < 3


def test_block_for_answers_as_soon_as_the_lock_is_granted(client: Client) -> None:
    first = client.new_peer(expires_in=MINUTE)
    second = client.new_peer(expires_in=MINUTE)
    client.acquire(first, "A")
    timer = threading.Timer(0.2, client.release, args=(first,))
    timer.start()
    started = time.monotonic()
    assert client.acquire(second, "A", block_for=timedelta(seconds=10))
    assert time.monotonic() - started < 5
    timer.join()


def test_expires_in_on_acquire_prolongs_the_peer(client: Client) -> None:
    peer = client.new_peer(expires_in=timedelta(milliseconds=300))
    client.acquire(peer, "A", expires_in=MINUTE)
    time.sleep(0.5)
    assert client.is_acquired(peer)
    assert client.remainder("A") == 0


def test_expired_peers_release_their_locks(client: Client) -> None:
    peer = client.new_peer(expires_in=MINUTE)
    client.acquire(peer, "A", expires_in=timedelta(milliseconds=200))
    assert client.remainder("A") == 0
    wait_until(lambda: client.remainder("A") == 1, what="the lease to run out")
    # The server says the peer expired, not only that it does not know it.
    with pytest.raises(LockLost):
        client.is_acquired(peer)


def test_release_frees_all_locks_and_ignores_unknown_peers(client: Client) -> None:
    peer = client.new_peer(expires_in=MINUTE)
    client.acquire(peer, "A")
    client.acquire(peer, "B")
    client.release(peer)
    assert (client.remainder("A"), client.remainder("B")) == (1, 1)
    client.release(peer)  # Not an error: the peer is gone already.


def test_release_lock_frees_one_lock_and_keeps_the_peer(client: Client) -> None:
    peer = client.new_peer(expires_in=MINUTE)
    client.acquire(peer, "A")
    client.acquire(peer, "B")
    client.release_lock(peer, "A")
    assert (client.remainder("A"), client.remainder("B")) == (1, 0)
    assert client.is_acquired(peer)


def test_release_lock_withdraws_a_pending_lock(client: Client) -> None:
    holder = client.new_peer(expires_in=MINUTE)
    waiter = client.new_peer(expires_in=MINUTE)
    client.acquire(holder, "A")
    assert not client.acquire(waiter, "A")
    client.release_lock(waiter, "A")
    assert client.is_acquired(waiter)
    client.release(holder)
    assert client.remainder("A") == 1


def test_heartbeat_keeps_a_peer_past_its_expiry(client: Client) -> None:
    peer = client.new_peer(expires_in=timedelta(milliseconds=400))
    client.acquire(peer, "A")
    for _ in range(4):
        time.sleep(0.2)
        client.heartbeat(peer, expires_in=timedelta(milliseconds=400))
    assert client.remainder("A") == 0


def test_heartbeat_of_an_unknown_peer_raises_unknown_peer(client: Client) -> None:
    with pytest.raises(UnknownPeer) as raised:
        client.heartbeat(12345, expires_in=MINUTE)
    assert not isinstance(raised.value, ValueError)


def test_restore_recreates_a_peer_and_may_overcommit(client: Client) -> None:
    holder = client.new_peer(expires_in=MINUTE)
    client.acquire(holder, "A")
    client.restore(777, {"A": 1, "C": 2}, expires_in=MINUTE)
    assert client.remainder("A") == -1
    assert client.remainder("C") == 3
    assert client.is_acquired(777)
    # The same restore again is idempotent; other locks conflict.
    client.restore(777, {"A": 1, "C": 2}, expires_in=MINUTE)
    with pytest.raises(RestoreConflict):
        client.restore(777, {"C": 1}, expires_in=MINUTE)


@pytest.mark.parametrize("name, full", [("with/slash & space", 1), ("Ünïcode ☃", 2)])
def test_names_are_percent_encoded_on_every_route(client: Client, name: str, full: int) -> None:
    peer = client.new_peer(expires_in=MINUTE)
    assert client.remainder(name) == full
    assert client.acquire(peer, name, count=1, block_for=timedelta(seconds=1))
    assert client.remainder(name) == full - 1
    assert client.list_peers()[0].acquired == {name: 1}
    client.release_lock(peer, name)
    assert client.remainder(name) == full


def test_list_peers_shows_acquired_and_pending_locks(client: Client) -> None:
    holder = client.new_peer(expires_in=MINUTE)
    waiter = client.new_peer(expires_in=MINUTE)
    client.acquire(holder, "A")
    client.acquire(waiter, "A", count=1)
    peers = {state.id: state for state in client.list_peers()}
    assert peers[holder].acquired == {"A": 1} and peers[holder].pending == {}
    assert peers[waiter].acquired == {} and peers[waiter].pending == {"A": 1}
    assert timedelta(seconds=50) < peers[holder].expires_in <= MINUTE


def test_version_and_metrics(client: Client) -> None:
    assert client.version()
    assert "throttle_max" in client.metrics()


# Errors: each refusal maps to its own type, every one of them a ValueError.


def _peer(client: Client) -> int:
    return client.new_peer(expires_in=MINUTE)


def test_unknown_semaphore(client: Client) -> None:
    peer = _peer(client)
    for call in (
        lambda: client.acquire(peer, "nope"),
        lambda: client.remainder("nope"),
        lambda: client.release_lock(peer, "nope"),
    ):
        with pytest.raises(UnknownSemaphore, match="^Unknown semaphore"):
            call()


def test_unknown_peer_on_every_peer_route(client: Client) -> None:
    for call in (
        lambda: client.acquire(4242, "A"),
        lambda: client.is_acquired(4242),
        lambda: client.release_lock(4242, "A"),
        lambda: client.heartbeat(4242, MINUTE),
    ):
        with pytest.raises(UnknownPeer):
            call()


def test_invalid_count(client: Client) -> None:
    with pytest.raises(InvalidCount):
        client.acquire(_peer(client), "C", count=0)


def test_count_too_large(client: Client) -> None:
    with pytest.raises(CountTooLarge) as raised:
        client.acquire(_peer(client), "A", count=2)
    assert raised.value.status_code == 409


def test_lock_hierarchy_violation(client: Client) -> None:
    peer = _peer(client)
    client.acquire(peer, "B")  # level 0
    with pytest.raises(LockHierarchyViolation):
        client.acquire(peer, "A")  # level 1: not below 0
    assert client.remainder("A") == 1


def test_second_pending_lock(client: Client) -> None:
    first, second, waiter = _peer(client), _peer(client), _peer(client)
    client.acquire(first, "B")
    client.acquire(second, "C", count=5)
    assert not client.acquire(waiter, "C")
    with pytest.raises(SecondPendingLock):
        client.acquire(waiter, "B")


def test_lock_count_change(client: Client) -> None:
    peer = _peer(client)
    client.acquire(peer, "C", count=2)
    with pytest.raises(LockCountChange):
        client.acquire(peer, "C", count=3)


def test_invalid_duration(client: Client) -> None:
    with pytest.raises(InvalidDuration):
        client.new_peer(expires_in=timedelta(days=101 * 365))
    with pytest.raises(ValueError):
        client.new_peer(expires_in=timedelta(seconds=-1))  # caught before sending


def test_invalid_body_request_and_too_large(client: Client) -> None:
    with pytest.raises(InvalidBody):
        client._send(Request("POST", "/new_peer", json.dumps({"expires_in": 5})))
    with pytest.raises(InvalidRequest):
        client._send(Request("GET", "/remainder"))
    with pytest.raises(InvalidRequest):
        client._send(Request("GET", "/peers/not-a-number/is_acquired"))
    with pytest.raises(BodyTooLarge):
        body = json.dumps({"expires_in": "1s", "pad": "x" * 70_000})
        client._send(Request("POST", "/new_peer", body))


def test_count_overflow(client: Client) -> None:
    client.restore(1, {"C": 2**63 - 1}, expires_in=MINUTE)
    with pytest.raises(CountOverflow):
        client.restore(2, {"C": 5}, expires_in=MINUTE)


def test_every_refusal_is_a_value_error_except_unknown_peer() -> None:
    for cls in (UnknownSemaphore, InvalidCount, InvalidBody, InvalidDuration, InvalidRequest,
                BodyTooLarge, CountTooLarge, LockHierarchyViolation, SecondPendingLock,
                LockCountChange, RestoreConflict, CountOverflow):
        assert issubclass(cls, RequestRejected) and issubclass(cls, ValueError)
    assert not issubclass(UnknownPeer, ValueError)


def test_an_unknown_reason_is_still_a_value_error() -> None:
    error = error_for(409, "Something new: the server learned a new refusal")
    assert type(error) is RequestRejected and isinstance(error, ValueError)
    assert error_for(200, "Ok") is None and error_for(503, "Shutting down") is None


def test_unknown_route_raises_unexpected_response(url: str) -> None:
    with pytest.raises(UnexpectedResponse) as raised:
        Client(url + "/not-throttle").remainder("A")
    assert raised.value.status_code == 404
    assert isinstance(raised.value, requests.HTTPError)


def test_trailing_slash_in_base_url_is_fine(url: str) -> None:
    assert Client(url + "/").remainder("A") == 1
