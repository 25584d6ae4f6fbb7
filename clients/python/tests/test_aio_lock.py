"""``throttle_client.aio.lock`` and ``rate_limit`` against the real server: crowds on one event
loop, cancellation while waiting and while holding, nesting per task, server restarts, rate
limits, and the blocking client on the same semaphore.

Time bounds are generous on purpose: they catch hangs, not slowness.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from datetime import timedelta
from typing import List

import pytest

from throttle_client import (
    Client,
    LockHierarchyViolation,
    Timeout,
    UnknownSemaphore,
)
from throttle_client import lock as blocking_lock
from throttle_client.aio import (
    AsyncClient,
    AsyncPeer,
    lock,
    rate_limit,
    set_task_peer,
    task_peer,
)

from conftest import StartServer, ThrottleServer
from .conftest import ASYNCIO_TESTS, eventually

pytestmark = ASYNCIO_TESTS

MINUTE = timedelta(minutes=1)


def pending(metrics: str, semaphore: str) -> int:
    match = re.search(rf'^throttle_pending{{semaphore="{semaphore}"}} (\d+)', metrics, re.M)
    assert match, f"no throttle_pending for {semaphore} in /metrics"
    return int(match.group(1))


async def pending_is(client: AsyncClient, semaphore: str, count: int) -> bool:
    return pending(await client.metrics(), semaphore) == count


# Basics, as in the blocking client's tests.


async def test_lock_holds_the_semaphore_for_the_block(url: str, aclient: AsyncClient) -> None:
    async with lock(url, "C", count=3) as peer:
        assert await aclient.remainder("C") == 2
        assert peer.acquired == {"C": 3}
    assert await aclient.remainder("C") == 5
    assert await aclient.list_peers() == []


async def test_refusals_leave_no_peer(url: str, aclient: AsyncClient) -> None:
    with pytest.raises(UnknownSemaphore):
        async with lock(url, "Nope"):
            pass
    assert await aclient.list_peers() == []


async def test_timeout_raises_and_leaves_nothing_pending(url: str, aclient: AsyncClient) -> None:
    holder = await aclient.new_peer(expires_in=MINUTE)
    assert await aclient.acquire(holder, "A")
    started = time.monotonic()
    with pytest.raises(Timeout):
        async with lock(url, "A", timeout=timedelta(milliseconds=300)):
            pytest.fail("granted although held")
    assert 0.25 <= time.monotonic() - started < 5
    assert [p.id for p in await aclient.list_peers()] == [holder]
    assert pending(await aclient.metrics(), "A") == 0


async def test_an_exception_in_the_block_releases(url: str, aclient: AsyncClient) -> None:
    with pytest.raises(ZeroDivisionError):
        async with lock(url, "A"):
            1 / 0
    assert await aclient.remainder("A") == 1
    assert await aclient.list_peers() == []


# Nesting: the task owns its peer.


async def test_nested_locks_in_one_task_share_its_peer(url: str, aclient: AsyncClient) -> None:
    async with lock(url, "A") as outer:
        async with lock(url, "B") as inner:
            assert inner is outer and task_peer(url) is outer
            assert outer.acquired == {"A": 1, "B": 1}
        assert outer.acquired == {"A": 1}
        assert await aclient.remainder("B") == 1
    assert task_peer(url) is None
    assert await aclient.list_peers() == []


async def test_nesting_against_the_hierarchy_is_refused(url: str, aclient: AsyncClient) -> None:
    async with lock(url, "B"):
        with pytest.raises(LockHierarchyViolation):
            async with lock(url, "A"):
                pass
        assert await aclient.remainder("B") == 0
    assert await aclient.remainder("B") == 1


async def test_the_same_semaphore_twice_in_one_task_is_refused(url: str) -> None:
    async with lock(url, "C"):
        with pytest.raises(ValueError, match="already holds"):
            async with lock(url, "C"):
                pass


async def test_a_task_started_inside_a_block_has_a_peer_of_its_own(
    url: str, aclient: AsyncClient
) -> None:
    async def child() -> int:
        assert task_peer(url) is None  # The parent's binding is not inherited.
        # B has the level of C: on the parent's peer this would violate the hierarchy.
        async with lock(url, "B") as peer:
            return peer.id

    async with lock(url, "C") as parent:
        child_id = await asyncio.create_task(child())
        assert child_id != parent.id
        assert task_peer(url) is parent
    assert await aclient.list_peers() == []


async def test_concurrent_tasks_never_share_a_peer(url: str) -> None:
    ids: List[int] = []

    async def take() -> None:
        async with lock(url, "C") as peer:
            ids.append(peer.id)
            await asyncio.sleep(0.05)

    await asyncio.gather(*(take() for _ in range(5)))
    assert len(set(ids)) == 5


# Crowds.


async def test_200_tasks_never_exceed_the_semaphores_max(start_server: StartServer) -> None:
    server = start_server("[semaphores]\nM = 3\n")
    inside = 0
    most = 0
    finished = 0

    async def worker() -> None:
        nonlocal inside, most, finished
        async with lock(server.url, "M"):
            inside += 1
            most = max(most, inside)
            assert inside <= 3
            await asyncio.sleep(0.02)
            inside -= 1
        finished += 1

    started = time.monotonic()
    await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(200))), 180)
    print(f"200 tasks through M = 3 in {time.monotonic() - started:.1f}s, at most {most} inside")
    assert finished == 200 and most <= 3
    async with AsyncClient(server.url) as client:
        assert await client.remainder("M") == 3
        assert await client.list_peers() == []


# Cancellation.


async def test_cancelled_waiters_leave_nothing_pending(url: str, aclient: AsyncClient) -> None:
    holder = await aclient.new_peer(expires_in=MINUTE)
    assert await aclient.acquire(holder, "A")

    async def wait_forever() -> None:
        async with lock(url, "A"):
            pytest.fail("granted although held")

    tasks = [asyncio.create_task(wait_forever()) for _ in range(10)]
    await eventually(lambda: pending_is(aclient, "A", 10), "ten waiters queued")
    for task in tasks:
        task.cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(result, asyncio.CancelledError) for result in results)
    # Withdrawn before the cancellation reached the caller: no waiting for expiry.
    assert pending(await aclient.metrics(), "A") == 0
    assert [p.id for p in await aclient.list_peers()] == [holder]


async def test_wait_for_timing_out_a_waiter_withdraws_it(url: str, aclient: AsyncClient) -> None:
    holder = await aclient.new_peer(expires_in=MINUTE)
    assert await aclient.acquire(holder, "A")

    async def enter() -> None:
        async with lock(url, "A"):
            pytest.fail("granted although held")

    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(enter(), 0.5)
    assert pending(await aclient.metrics(), "A") == 0
    assert [p.id for p in await aclient.list_peers()] == [holder]


async def test_asyncio_timeout_on_a_nested_waiter_withdraws_only_it(
    url: str, aclient: AsyncClient
) -> None:
    blocker = await aclient.new_peer(expires_in=MINUTE)
    assert await aclient.acquire(blocker, "B")
    async with lock(url, "A") as peer:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.5):
                async with lock(url, "B"):
                    pytest.fail("granted although held")
        state = {p.id: p for p in await aclient.list_peers()}[peer.id]
        assert state.acquired == {"A": 1} and state.pending == {}
        assert peer.acquired == {"A": 1}
    assert pending(await aclient.metrics(), "B") == 0
    assert await aclient.remainder("A") == 1


async def test_a_second_cancellation_does_not_stop_the_withdrawal(
    url: str, aclient: AsyncClient
) -> None:
    holder = await aclient.new_peer(expires_in=MINUTE)
    assert await aclient.acquire(holder, "A")

    async def enter() -> None:
        async with lock(url, "A"):
            pytest.fail("granted although held")

    task = asyncio.create_task(enter())
    await eventually(lambda: pending_is(aclient, "A", 1), "the waiter queued")
    task.cancel()
    await asyncio.sleep(0)  # The withdrawal starts ...
    task.cancel()  # ... and is cancelled again at once.
    with pytest.raises(asyncio.CancelledError):
        await task
    assert pending(await aclient.metrics(), "A") == 0


async def test_cancelled_while_holding_releases(url: str, aclient: AsyncClient) -> None:
    entered = asyncio.Event()

    async def hold_forever() -> None:
        async with lock(url, "C", count=2):
            entered.set()
            await asyncio.Event().wait()

    task = asyncio.create_task(hold_forever())
    await asyncio.wait_for(entered.wait(), 10)
    assert await aclient.remainder("C") == 3
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await aclient.remainder("C") == 5
    assert await aclient.list_peers() == []


async def test_a_holder_cancelled_while_the_server_is_down_ends_within_bounds(
    start_server: StartServer,
) -> None:
    server = start_server("[semaphores]\nA = 1\n")
    entered = asyncio.Event()

    async def hold_forever() -> None:
        async with lock(server.url, "A"):
            entered.set()
            await asyncio.Event().wait()

    task = asyncio.create_task(hold_forever())
    await asyncio.wait_for(entered.wait(), 10)
    await asyncio.to_thread(server.stop)
    started = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 30)
    # The release is retried for a few seconds only, not for the client's retry_for (60 s):
    # the peer expires on its own, and a cancelled task should end promptly.
    assert time.monotonic() - started < 20


async def test_a_cancelled_holder_hands_over_to_a_waiter(url: str, aclient: AsyncClient) -> None:
    entered = asyncio.Event()

    async def hold_forever() -> None:
        async with lock(url, "A"):
            entered.set()
            await asyncio.Event().wait()

    async def take() -> str:
        async with lock(url, "A", timeout=timedelta(seconds=30)):
            return "granted"

    holder = asyncio.create_task(hold_forever())
    await asyncio.wait_for(entered.wait(), 10)
    waiter = asyncio.create_task(take())
    await eventually(lambda: pending_is(aclient, "A", 1), "the waiter queued")
    holder.cancel()
    assert await asyncio.wait_for(waiter, 30) == "granted"


# Server restarts.


@pytest.mark.parametrize("kill", [False, True], ids=["sigterm", "sigkill"])
async def test_50_held_locks_are_restored_after_a_server_restart(
    start_server: StartServer, kill: bool
) -> None:
    server = start_server("[semaphores]\nR = { max = 60, level = 1 }\nS = 1\n")
    client = AsyncClient(server.url)
    holding = 0
    release = asyncio.Event()

    async def hold() -> None:
        nonlocal holding
        peer = await AsyncPeer.create(client, heartbeat_interval=timedelta(milliseconds=100))
        set_task_peer(server.url, peer)
        async with lock(server.url, "R"):
            holding += 1
            await release.wait()
            # The restored peer still nests.
            async with lock(server.url, "S", timeout=MINUTE):
                pass

    tasks = [asyncio.create_task(hold()) for _ in range(50)]

    async def all_holding() -> bool:
        return holding == 50

    await eventually(all_holding, "50 holders")
    await asyncio.to_thread(server.restart, kill)

    async def restored() -> bool:
        return await client.remainder("R") == 10

    await eventually(restored, "the heartbeats to restore 50 locks", seconds=60)
    assert len(await client.list_peers()) == 50
    release.set()
    await asyncio.wait_for(asyncio.gather(*tasks), 60)
    assert await client.remainder("R") == 60
    assert await client.list_peers() == []
    await client.aclose()


async def test_a_waiting_lock_is_granted_after_a_server_restart(server: ThrottleServer) -> None:
    async with AsyncClient(server.url) as client:
        holder = await client.new_peer(expires_in=MINUTE)  # Nobody restores it.
        assert await client.acquire(holder, "A")

        async def take() -> str:
            async with lock(server.url, "A", timeout=MINUTE):
                return "granted"

        waiter = asyncio.create_task(take())
        await eventually(lambda: pending_is(client, "A", 1), "the waiter queued")
        await asyncio.to_thread(server.restart)
        assert await asyncio.wait_for(waiter, 60) == "granted"


async def test_the_heartbeat_keeps_a_lock_past_the_peers_expiry(
    url: str, aclient: AsyncClient
) -> None:
    peer = await AsyncPeer.create(
        aclient,
        expiration_time=timedelta(milliseconds=600),
        heartbeat_interval=timedelta(milliseconds=150),
    )
    set_task_peer(url, peer)
    async with lock(url, "A"):
        await asyncio.sleep(1.8)  # Three expiration times.
        assert await aclient.is_acquired(peer.id)
        assert await aclient.remainder("A") == 0
    assert await aclient.remainder("A") == 1


# Rate limits.


async def test_rate_limit_from_100_tasks_keeps_n_starts_per_window(
    start_server: StartServer,
) -> None:
    n, per = 10, timedelta(milliseconds=500)
    server = start_server(f"[semaphores]\napi = {n}\n")
    starts: List[float] = []

    async def call() -> None:
        await rate_limit(server.url, "api", per=per, timeout=MINUTE)
        starts.append(time.monotonic())

    began = time.monotonic()
    await asyncio.wait_for(asyncio.gather(*(call() for _ in range(100))), 120)
    starts.sort()
    assert len(starts) == 100
    # Each unit's next window opens on the server once its lease ran out, but a caller sees its
    # start a little after the server granted it, by more on a busy machine. Windows of half
    # the lease leave room for that jitter; a rate limit that let more through would still
    # show in them.
    window = per.total_seconds() / 2
    most = max(
        sum(1 for other in starts[i:] if other - start < window) for i, start in enumerate(starts)
    )
    print(f"100 rate-limited starts in {starts[-1] - began:.1f}s, at most {most} per {window}s")
    assert most <= n
    # Ten starts per unit, a full window apart: at least nine windows from the first to the last.
    assert starts[-1] - began >= 9 * per.total_seconds() - 0.1


async def test_a_cancelled_rate_limit_leaves_nothing_queued(
    start_server: StartServer,
) -> None:
    server = start_server("[semaphores]\napi = 1\n")
    async with AsyncClient(server.url) as client:
        await rate_limit(server.url, "api", per=MINUTE)  # Takes the only unit for a minute.
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(rate_limit(server.url, "api", per=MINUTE), 0.5)
        with pytest.raises(Timeout):
            await rate_limit(server.url, "api", per=MINUTE, timeout=timedelta(milliseconds=300))
        assert pending(await client.metrics(), "api") == 0
        assert len(await client.list_peers()) == 1


# Blocking and asyncio clients together.


async def test_blocking_and_async_clients_interleave_on_one_semaphore(
    start_server: StartServer,
) -> None:
    server = start_server("[semaphores]\nX = 2\n")
    guard = threading.Lock()
    inside = 0
    most = 0
    by_kind = {"blocking": 0, "async": 0}

    def enter(kind: str) -> None:
        nonlocal inside, most
        with guard:
            inside += 1
            most = max(most, inside)
            by_kind[kind] += 1
            assert inside <= 2

    def leave() -> None:
        nonlocal inside
        with guard:
            inside -= 1

    def blocking_worker() -> None:
        for _ in range(10):
            with blocking_lock(server.url, "X", timeout=MINUTE):
                enter("blocking")
                time.sleep(0.01)
                leave()

    async def async_worker() -> None:
        for _ in range(10):
            async with lock(server.url, "X", timeout=MINUTE):
                enter("async")
                await asyncio.sleep(0.01)
                leave()

    threads = [asyncio.to_thread(blocking_worker) for _ in range(4)]
    tasks = [async_worker() for _ in range(4)]
    await asyncio.wait_for(asyncio.gather(*threads, *tasks), 120)
    assert by_kind == {"blocking": 40, "async": 40}
    assert most == 2
    assert Client(server.url).remainder("X") == 2
