"""Both clients against a real cluster of three members (the harness's ``Cluster``), through
the loss of the leader: a held lock stays held, a waiting lock keeps its place, ``rate_limit``
keeps its rate, tokens keep growing, and the errors name every member tried.

The client is given the leader first, so the member it talks to is the one that dies.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Iterator, List, Tuple

import pytest
import requests
from throttle_harness import Cluster

from throttle_client import (
    Client,
    LockLost,
    Peer,
    PeerWithHeartbeat,
    ServerUnavailable,
    lock,
    rate_limit,
    set_local_peer,
)
from throttle_client import aio

from .conftest import eventually, wait_until

CONFIG = "[semaphores]\nM = 1\nR = 2\n"


@pytest.fixture
def cluster(tmp_path: Path, throttle_binary: Path) -> Iterator[Cluster]:
    with Cluster(tmp_path, 3, CONFIG, binary=throttle_binary) as cluster:
        cluster.leader()
        yield cluster


def leader_first(cluster: Cluster) -> Tuple[int, List[str]]:
    """The leader's id, and every member's URL with the leader's first."""
    leader = cluster.leader()
    others = [member for member in cluster.ids if member != leader]
    return leader, [cluster.url(member) for member in [leader, *others]]


def new_leader(cluster: Cluster, old: int) -> int:
    return cluster.leader(among=[member for member in cluster.ids if member != old])


def assert_rate(calls: List[Tuple[float, float]], per: float, limit: int) -> None:
    """Each grant happened between its call and its return, and the server lets no more than
    ``limit`` grants fall within ``per`` of each other: no ``limit + 1`` calls may span less."""
    assert len(calls) >= 6, calls
    for group in itertools.combinations(calls, limit + 1):
        first_call = min(called for called, _ in group)
        last_return = max(returned for _, returned in group)
        assert last_return - first_call >= per, group


def test_a_held_lock_rides_through_the_loss_of_the_leader(cluster: Cluster) -> None:
    leader, urls = leader_first(cluster)
    client = Client(urls)
    lease = timedelta(seconds=2)
    set_local_peer(urls, PeerWithHeartbeat(client, expiration_time=lease))
    lost: List[Peer] = []
    with lock(urls, "M", on_lost=lost.append) as held:
        token = held.fencing_token("M")
        assert token is not None
        cluster.kill(leader)
        # Three leases long: without heartbeats reaching the new leader, the lock would expire.
        until = time.monotonic() + 3 * lease.total_seconds()
        while time.monotonic() < until:
            state = client.peer_state(held.id)
            assert state.acquired == {"M": 1}
            assert state.fencing_tokens == {"M": token}
            time.sleep(0.2)
    assert not lost and not held.lost
    assert client.remainder("M") == 1
    with lock(urls, "M") as after:
        later = after.fencing_token("M")
        assert later is not None and later > token


def test_a_held_lock_rides_through_a_leader_that_falls_silent(cluster: Cluster) -> None:
    """SIGSTOP, not kill: the leader's connections stay open and nothing answers, as when its
    machine is gone. A heartbeat sent there moves on after 5 s (not ``request_timeout``'s 30),
    well within a 10 s lease."""
    leader, urls = leader_first(cluster)
    client = Client(urls)
    lease = timedelta(seconds=10)
    beat = timedelta(seconds=1)
    set_local_peer(urls, PeerWithHeartbeat(client, expiration_time=lease, heartbeat_interval=beat))
    lost: List[Peer] = []
    with lock(urls, "M", on_lost=lost.append) as held:
        cluster.pause(leader)
        try:
            observer = Client([cluster.url(new_leader(cluster, leader))])
            until = time.monotonic() + lease.total_seconds() + 2
            while time.monotonic() < until:
                assert observer.peer_state(held.id).acquired == {"M": 1}
                time.sleep(0.2)
        finally:
            cluster.resume(leader)
    assert not lost and not held.lost


def test_a_waiting_lock_keeps_its_place_through_the_loss_of_the_leader(
    cluster: Cluster,
) -> None:
    leader, urls = leader_first(cluster)
    holder = Client(urls)
    holder_id = holder.new_peer(timedelta(minutes=1))
    assert holder.acquire(holder_id, "M")
    timeout = timedelta(seconds=60)
    grants: List[Tuple[int, float]] = []
    errors: List[BaseException] = []

    def wait(number: int) -> None:
        called = time.monotonic()
        try:
            with lock(urls, "M", timeout=timeout):
                grants.append((number, time.monotonic() - called))
                time.sleep(0.1)
        except BaseException as error:  # noqa: BLE001 - reported by the test below.
            errors.append(error)

    def queued() -> int:
        return sum(len(peer.pending) for peer in holder.list_peers())

    waiters = []
    for number in (1, 2):
        waiter = threading.Thread(target=wait, args=(number,))
        waiter.start()
        waiters.append(waiter)
        wait_until(lambda: queued() == number, 20, f"waiter {number} queued")
    cluster.kill(leader)
    new_leader(cluster, leader)
    holder.release(holder_id)
    for waiter in waiters:
        waiter.join(60)
    assert not errors, errors
    assert [number for number, _ in grants] == [1, 2]
    assert all(waited < timeout.total_seconds() for _, waited in grants)


def test_rate_limit_keeps_its_rate_through_the_loss_of_the_leader(cluster: Cluster) -> None:
    leader, urls = leader_first(cluster)
    per, limit = 1.0, 2  # R = 2 in CONFIG.
    calls: List[Tuple[float, float]] = []
    errors: List[BaseException] = []
    stop = time.monotonic() + 6.0

    def work() -> None:
        try:
            while time.monotonic() < stop:
                called = time.monotonic()
                rate_limit(urls, "R", per=timedelta(seconds=per))
                calls.append((called, time.monotonic()))
        except BaseException as error:  # noqa: BLE001 - reported by the test below.
            errors.append(error)

    workers = [threading.Thread(target=work) for _ in range(3)]
    for worker in workers:
        worker.start()
    time.sleep(2.0)
    cluster.kill(leader)
    for worker in workers:
        worker.join(60)
    assert not errors, errors
    assert_rate(calls, per, limit)


def test_the_client_finds_the_leader_and_follows_a_new_one(cluster: Cluster) -> None:
    leader = cluster.leader()
    followers = [member for member in cluster.ids if member != leader]
    # The leader last: the client has to learn where it is from the followers' answers.
    client = Client([cluster.url(member) for member in [*followers, leader]])
    for _ in range(3):
        client.remainder("M")
    assert client.member == cluster.url(leader)
    cluster.kill(leader)
    successor = new_leader(cluster, leader)
    for _ in range(3):
        client.remainder("M")
    assert client.member == cluster.url(successor)


def test_with_every_member_down_the_error_names_each_after_retry_for(
    cluster: Cluster,
) -> None:
    urls = [cluster.url(member) for member in cluster.ids]
    client = Client(urls, retry_for=timedelta(seconds=1))
    for member in cluster.ids:
        cluster.kill(member)
    started = time.monotonic()
    with pytest.raises(ServerUnavailable) as raised:
        client.new_peer(timedelta(minutes=1))
    elapsed = time.monotonic() - started
    assert [(a.url, a.reason) for a in raised.value.attempts] == [
        (url, "connection refused") for url in urls
    ]
    assert str(raised.value).startswith("no member reachable within 1 s (")
    # Code written for 0.5 catches the requests exception.
    assert isinstance(raised.value, requests.ConnectionError)
    assert 1.0 <= elapsed < 10.0, elapsed


def test_a_member_without_a_quorum_grants_nothing_and_the_error_says_why(
    cluster: Cluster,
) -> None:
    leader, urls = leader_first(cluster)
    client = Client(urls, retry_for=timedelta(seconds=1))
    peer = client.new_peer(timedelta(minutes=1))
    for member in cluster.ids:
        if member != leader:
            cluster.kill(member)
    with pytest.raises(ServerUnavailable) as raised:
        client.acquire(peer, "M")
    reasons = {a.url: a.reason for a in raised.value.attempts}
    assert reasons[urls[0]].startswith("no quorum"), reasons
    assert [reasons[url] for url in urls[1:]] == ["connection refused"] * 2


# The asyncio client, on the same cluster and the same bookkeeping.


@pytest.mark.anyio
@pytest.mark.usefixtures("close_shared_clients")
async def test_an_async_held_lock_rides_through_the_loss_of_the_leader(
    cluster: Cluster,
) -> None:
    leader, urls = leader_first(cluster)
    lease = timedelta(seconds=2)
    async with aio.AsyncClient(urls) as client:
        aio.set_task_peer(urls, await aio.AsyncPeer.create(client, expiration_time=lease))
        async with aio.lock(urls, "M") as held:
            token = held.fencing_token("M")
            assert token is not None
            cluster.kill(leader)
            until = time.monotonic() + 3 * lease.total_seconds()
            while time.monotonic() < until:
                state = await client.peer_state(held.id)
                assert state.acquired == {"M": 1}
                await asyncio.sleep(0.2)
        assert not held.lost
        async with aio.lock(urls, "M") as after:
            later = after.fencing_token("M")
            assert later is not None and later > token


@pytest.mark.anyio
@pytest.mark.usefixtures("close_shared_clients")
async def test_an_async_waiting_lock_keeps_its_place_through_the_loss_of_the_leader(
    cluster: Cluster,
) -> None:
    leader, urls = leader_first(cluster)
    timeout = timedelta(seconds=60)
    grants: List[Tuple[int, float]] = []
    async with aio.AsyncClient(urls) as holder:
        holder_id = await holder.new_peer(timedelta(minutes=1))
        assert await holder.acquire(holder_id, "M")

        async def wait(number: int) -> None:
            called = time.monotonic()
            async with aio.lock(urls, "M", timeout=timeout):
                grants.append((number, time.monotonic() - called))
                await asyncio.sleep(0.1)

        async def queued(count: int) -> bool:
            return sum(len(peer.pending) for peer in await holder.list_peers()) == count

        waiters = []
        for number in (1, 2):
            waiters.append(asyncio.create_task(wait(number)))
            await eventually(lambda: queued(number), f"waiter {number} queued", 20)
        cluster.kill(leader)
        await asyncio.to_thread(new_leader, cluster, leader)
        await holder.release(holder_id)
        await asyncio.wait_for(asyncio.gather(*waiters), 60)
    assert [number for number, _ in grants] == [1, 2]
    assert all(waited < timeout.total_seconds() for _, waited in grants)


@pytest.mark.anyio
@pytest.mark.usefixtures("close_shared_clients")
async def test_async_rate_limit_keeps_its_rate_through_the_loss_of_the_leader(
    cluster: Cluster,
) -> None:
    leader, urls = leader_first(cluster)
    per, limit = 1.0, 2
    calls: List[Tuple[float, float]] = []
    stop = time.monotonic() + 6.0

    async def work() -> None:
        while time.monotonic() < stop:
            called = time.monotonic()
            await aio.rate_limit(urls, "R", per=timedelta(seconds=per))
            calls.append((called, time.monotonic()))

    workers = [asyncio.create_task(work()) for _ in range(3)]
    await asyncio.sleep(2.0)
    cluster.kill(leader)
    await asyncio.wait_for(asyncio.gather(*workers), 60)
    assert_rate(calls, per, limit)


@pytest.mark.anyio
async def test_async_with_every_member_down_the_error_names_each(cluster: Cluster) -> None:
    urls = ",".join(cluster.url(member) for member in cluster.ids)
    for member in cluster.ids:
        cluster.kill(member)
    async with aio.AsyncClient(urls, retry_for=timedelta(seconds=1)) as client:
        started = time.monotonic()
        with pytest.raises(ServerUnavailable) as raised:
            await client.new_peer(timedelta(minutes=1))
        elapsed = time.monotonic() - started
    assert [a.url for a in raised.value.attempts] == urls.split(",")
    assert {a.reason for a in raised.value.attempts} == {"connection refused"}
    assert not isinstance(raised.value, requests.RequestException)
    assert 1.0 <= elapsed < 10.0, elapsed


@pytest.mark.anyio
async def test_an_async_member_without_a_quorum_grants_nothing_and_says_why(
    cluster: Cluster,
) -> None:
    leader, urls = leader_first(cluster)
    async with aio.AsyncClient(urls, retry_for=timedelta(seconds=1)) as client:
        peer = await client.new_peer(timedelta(minutes=1))
        for member in cluster.ids:
            if member != leader:
                cluster.kill(member)
        with pytest.raises(ServerUnavailable) as raised:
            await client.acquire(peer, "M")
    reasons = {a.url: a.reason for a in raised.value.attempts}
    assert reasons[urls[0]].startswith("no quorum"), reasons
    assert [reasons[url] for url in urls[1:]] == ["connection refused"] * 2


def test_a_lease_that_runs_out_on_a_cluster_is_lost(cluster: Cluster) -> None:
    """The control: a lease that does run out still raises ``LockLost``, so the tests above
    would see one."""
    _, urls = leader_first(cluster)
    client = Client(urls)
    # The first heartbeat comes after the lease ran out, and finds the peer expired.
    late = PeerWithHeartbeat(
        client,
        expiration_time=timedelta(milliseconds=300),
        heartbeat_interval=timedelta(seconds=1),
    )
    set_local_peer(urls, late)
    with pytest.raises(LockLost):
        with lock(urls, "M"):
            wait_until(lambda: late.lost, 10, "the heartbeat finds the lease lost")
