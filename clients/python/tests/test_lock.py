"""``lock``: counts, nesting, timeouts, exceptions, fairness, heartbeat and server restarts."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import List

import pytest

from throttle_client import (
    Client,
    CountTooLarge,
    LockHierarchyViolation,
    Peer,
    PeerWithHeartbeat,
    Timeout,
    UnknownSemaphore,
    get_local_peer,
    lock,
    set_local_peer,
)

from .conftest import wait_until

MINUTE = timedelta(minutes=1)


def test_lock_holds_the_semaphore_for_the_block(url: str, client: Client) -> None:
    with lock(url, "A") as peer:
        assert client.remainder("A") == 0
        assert peer.acquired == {"A": 1}
    assert client.remainder("A") == 1
    assert client.list_peers() == []  # The peer left with its last lock.


def test_lock_with_a_count(url: str, client: Client) -> None:
    with lock(url, "C", count=3):
        assert client.remainder("C") == 2
        with pytest.raises(Timeout):
            # Another thread's peer cannot get 3 more out of the remaining 2.
            _in_thread(lambda: _enter(url, "C", 3, timedelta(milliseconds=200)))
    assert client.remainder("C") == 5


def test_a_count_above_max_is_refused(url: str, client: Client) -> None:
    with pytest.raises(CountTooLarge):
        with lock(url, "A", count=2):
            pass
    assert client.list_peers() == []


def test_an_unknown_semaphore_is_refused_and_leaves_no_peer(url: str, client: Client) -> None:
    with pytest.raises(UnknownSemaphore, match="Unknown semaphore"):
        with lock(url, "Unknown"):
            pass
    assert client.list_peers() == []


def test_nested_locks_in_level_order(url: str, client: Client) -> None:
    with lock(url, "A") as outer:
        with lock(url, "B") as inner:
            assert inner is outer
            assert (client.remainder("A"), client.remainder("B")) == (0, 0)
        assert (client.remainder("A"), client.remainder("B")) == (0, 1)
        assert outer.acquired == {"A": 1}
    assert (client.remainder("A"), client.remainder("B")) == (1, 1)
    assert client.list_peers() == []


def test_nesting_against_the_hierarchy_is_refused(url: str, client: Client) -> None:
    with lock(url, "B"):
        with pytest.raises(LockHierarchyViolation):
            with lock(url, "A"):
                pass
        assert client.remainder("B") == 0
    assert client.remainder("B") == 1


def test_locking_the_same_semaphore_twice_on_one_thread_is_refused(url: str) -> None:
    with lock(url, "C"):
        with pytest.raises(ValueError, match="already holds"):
            with lock(url, "C"):
                pass


def test_timeout_raises_and_leaves_no_pending_lock(url: str, client: Client) -> None:
    holder = Peer(client)
    holder.acquire("A")
    started = time.monotonic()
    with pytest.raises(Timeout):
        with lock(url, "A", timeout=timedelta(milliseconds=500)):
            pytest.fail("granted although held")
    elapsed = time.monotonic() - started
    assert 0.45 <= elapsed < 3
    assert [p.id for p in client.list_peers()] == [holder.id]
    holder.remove_from_server()
    assert client.remainder("A") == 1


def test_a_nested_timeout_withdraws_only_the_pending_lock(url: str, client: Client) -> None:
    blocker = Peer(client)
    blocker.acquire("B")
    with lock(url, "A") as peer:
        with pytest.raises(Timeout):
            with lock(url, "B", timeout=timedelta(milliseconds=200)):
                pass
        state = {p.id: p for p in client.list_peers()}[peer.id]
        assert state.acquired == {"A": 1} and state.pending == {}
    assert client.remainder("A") == 1


def test_a_zero_timeout_is_a_try_lock(url: str, client: Client) -> None:
    with lock(url, "A", timeout=timedelta(0)):
        with pytest.raises(Timeout):
            _in_thread(lambda: _enter(url, "A", 1, timedelta(0)))


def test_an_exception_in_the_block_releases_the_lock(url: str, client: Client) -> None:
    class OutOfCheese(Exception):
        pass

    with pytest.raises(OutOfCheese):
        with lock(url, "A"):
            raise OutOfCheese()
    assert client.remainder("A") == 1
    assert client.list_peers() == []


def test_waiters_are_served_in_the_order_they_came(url: str, client: Client) -> None:
    holder = Peer(client)
    holder.acquire("A")
    order: List[int] = []
    threads = []
    for index in range(5):
        def take(index: int = index) -> None:
            with lock(url, "A", timeout=timedelta(seconds=30)):
                order.append(index)
                time.sleep(0.01)

        thread = threading.Thread(target=take)
        thread.start()
        threads.append(thread)
        # Start the next thread only once this one is queued.
        wait_until(lambda: _pending(client, "A") == index + 1, what=f"waiter {index} queued")
    holder.remove_from_server()
    for thread in threads:
        thread.join(timeout=30)
    assert order == [0, 1, 2, 3, 4]


def test_a_big_waiter_is_not_starved_by_small_ones(url: str, client: Client) -> None:
    holder = Peer(client)
    holder.acquire("C", count=3)
    granted: List[str] = []
    # The big waiter needs all of C, so the small one can only follow after it released.
    big = threading.Thread(target=lambda: _record(url, "C", 5, "big", granted))
    big.start()
    wait_until(lambda: _pending(client, "C") == 1, what="big waiter queued")
    # 2 units are free, but the big waiter came first: the small one queues behind it.
    small = threading.Thread(target=lambda: _record(url, "C", 1, "small", granted))
    small.start()
    wait_until(lambda: _pending(client, "C") == 2, what="small waiter queued")
    holder.remove_from_server()
    big.join(timeout=30)
    small.join(timeout=30)
    assert granted == ["big", "small"]


def test_the_heartbeat_keeps_a_lock_past_the_peers_expiry(url: str, client: Client) -> None:
    peer = PeerWithHeartbeat(
        client,
        expiration_time=timedelta(milliseconds=600),
        heartbeat_interval=timedelta(milliseconds=150),
    )
    set_local_peer(url, peer)
    with lock(url, "A"):
        time.sleep(1.8)  # three expiration times
        assert client.is_acquired(peer.id)
        assert client.remainder("A") == 0
    assert client.remainder("A") == 1


@pytest.mark.parametrize("kill", [False, True], ids=["sigterm", "sigkill"])
def test_a_held_lock_is_restored_after_a_server_restart(server, client: Client, kill: bool) -> None:  # type: ignore[no-untyped-def]
    peer = PeerWithHeartbeat(client, heartbeat_interval=timedelta(milliseconds=100))
    set_local_peer(server.url, peer)
    with lock(server.url, "A"):
        server.restart(kill=kill)
        wait_until(lambda: client.remainder("A") == 0, what="the heartbeat to restore A")
        # Nesting still works on the restored peer.
        with lock(server.url, "B"):
            assert client.remainder("B") == 0
    assert (client.remainder("A"), client.remainder("B")) == (1, 1)


@pytest.mark.parametrize("kill", [False, True], ids=["sigterm", "sigkill"])
def test_a_waiting_lock_is_granted_after_a_server_restart(server, client: Client, kill: bool) -> None:  # type: ignore[no-untyped-def]
    holder = Peer(client)  # No heartbeat: after the restart nobody restores it.
    holder.acquire("A")
    granted = threading.Event()

    def wait_for_a() -> None:
        with lock(server.url, "A", timeout=timedelta(seconds=30)):
            granted.set()

    thread = threading.Thread(target=wait_for_a)
    thread.start()
    wait_until(lambda: _pending(client, "A") == 1, what="waiter queued")
    server.restart(kill=kill)
    thread.join(timeout=30)
    assert granted.is_set()
    assert client.remainder("A") == 1


def test_lock_yields_the_threads_local_peer(url: str) -> None:
    with lock(url, "A") as peer:
        assert get_local_peer(url) is peer
        assert isinstance(peer, PeerWithHeartbeat)


# Helpers.


def _enter(url: str, semaphore: str, count: int, timeout: timedelta) -> None:
    with lock(url, semaphore, count=count, timeout=timeout):
        pass


def _record(url: str, semaphore: str, count: int, name: str, into: List[str]) -> None:
    with lock(url, semaphore, count=count, timeout=timedelta(seconds=30)):
        into.append(name)


def _in_thread(function: "object") -> None:
    """Run ``function`` on another thread (so it gets its own peer) and re-raise its error."""
    errors: List[BaseException] = []

    def run() -> None:
        try:
            function()  # type: ignore[operator]
        except BaseException as error:
            errors.append(error)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(timeout=30)
    if errors:
        raise errors[0]


def _pending(client: Client, semaphore: str) -> int:
    return sum(1 for p in client.list_peers() if semaphore in p.pending)
