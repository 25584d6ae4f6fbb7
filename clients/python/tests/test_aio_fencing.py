"""Know your lock (issue 15), asyncio client: fencing tokens, the lost lease, holder names and
``peer_state`` against the real server, as ``test_fencing`` for the blocking client."""

from __future__ import annotations

import asyncio
import os
import socket
from datetime import timedelta
from typing import List

import pytest

from throttle_client import AcquireResult, InvalidName, LockLost, UnknownPeer
from throttle_client.aio import AsyncClient, AsyncPeer, lock, set_task_peer

from conftest import ThrottleServer

from .conftest import ASYNCIO_TESTS, eventually

pytestmark = ASYNCIO_TESTS

MINUTE = timedelta(minutes=1)
SHORT_LEASE = timedelta(milliseconds=300)
LATE_BEAT = timedelta(seconds=1)


async def test_a_grant_carries_a_token_a_repeat_keeps_it(aclient: AsyncClient) -> None:
    peer = await AsyncPeer.create(aclient)
    other = await AsyncPeer.create(aclient)
    assert await peer.acquire("A")
    first = peer.fencing_token("A")
    assert first is not None
    assert await peer.acquire("A")
    assert peer.fencing_token("A") == first
    assert await aclient.acquire_with_token(other.id, "A") == AcquireResult(False, None)
    await peer.remove_from_server()
    assert peer.fencing_token("A") is None
    assert await other.acquire("A", block_for=MINUTE)
    second = other.fencing_token("A")
    assert second is not None and second > first
    assert (await aclient.peer_state(other.id)).fencing_tokens == {"A": second}
    await other.remove_from_server()


async def test_a_lock_granted_while_its_long_poll_waits_carries_a_larger_token(
    aclient: AsyncClient,
) -> None:
    holder = await AsyncPeer.create(aclient)
    waiter = await AsyncPeer.create(aclient)
    assert await holder.acquire("A")
    held = holder.fencing_token("A")
    poll = asyncio.create_task(waiter.acquire("A", block_for=MINUTE))

    async def queued() -> bool:
        return (await aclient.peer_state(waiter.id)).pending == {"A": 1}

    # Queued by the long poll itself: the grant below answers that request.
    await eventually(queued, "the long poll")
    await holder.remove_from_server()
    assert await asyncio.wait_for(poll, timeout=10)
    granted = waiter.fencing_token("A")
    assert held is not None and granted is not None and granted > held
    assert (await aclient.peer_state(waiter.id)).fencing_tokens == {"A": granted}
    await waiter.remove_from_server()


async def test_lock_yields_the_peer_with_the_token(url: str, aclient: AsyncClient) -> None:
    async with lock(url, "A") as peer:
        token = peer.fencing_token("A")
        assert token is not None
        assert (await aclient.peer_state(peer.id)).fencing_tokens == {"A": token}
    async with lock(url, "A") as again:
        newer = again.fencing_token("A")
        assert newer is not None and newer > token


async def test_a_lease_that_ran_out_raises_lock_lost_and_is_not_restored(
    url: str, aclient: AsyncClient
) -> None:
    calls: List[AsyncPeer] = []
    peer = await AsyncPeer.create(
        aclient, expiration_time=SHORT_LEASE, heartbeat_interval=LATE_BEAT
    )
    set_task_peer(url, peer)
    with pytest.raises(LockLost, match="ran out while it held 'A'"):
        async with lock(url, "A", on_lost=calls.append):

            async def lost() -> bool:
                return peer.lost

            await eventually(lost, "the heartbeat to find the lease lost")
            assert await aclient.remainder("A") == 1
            assert await aclient.list_peers() == []
            with pytest.raises(LockLost):
                await peer.heartbeat()
            with pytest.raises(LockLost):
                await peer.restore()
    assert calls == [peer]
    assert await aclient.list_peers() == []
    async with lock(url, "A") as fresh:
        assert fresh is not peer and not fresh.lost


async def test_on_lost_can_cancel_the_work(url: str, aclient: AsyncClient) -> None:
    peer = await AsyncPeer.create(
        aclient, expiration_time=SHORT_LEASE, heartbeat_interval=LATE_BEAT
    )

    async def work() -> None:
        set_task_peer(url, peer)
        task = asyncio.current_task()
        assert task is not None
        async with lock(url, "A", on_lost=lambda _: task.cancel()):
            await asyncio.sleep(60)

    worker = asyncio.create_task(work())
    # The cancellation goes on as it is; the peer says why.
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(worker, 30)
    assert peer.lost
    assert await aclient.remainder("A") == 1


@pytest.mark.parametrize("kill", [False, True], ids=["sigterm", "sigkill"])
async def test_a_server_restart_restores_the_lock_with_its_token(
    server: ThrottleServer, kill: bool
) -> None:
    async with AsyncClient(server.url) as client:
        peer = await AsyncPeer.create(
            client, heartbeat_interval=timedelta(milliseconds=100), name="restored-job"
        )
        set_task_peer(server.url, peer)
        async with lock(server.url, "A") as held:
            token = held.fencing_token("A")
            await asyncio.to_thread(server.restart, kill)

            async def restored() -> bool:
                return await client.remainder("A") == 0

            await eventually(restored, "the heartbeat to restore A")
            state = await client.peer_state(peer.id)
            assert state.fencing_tokens == {"A": token}
            assert state.name == "restored-job"
            assert not peer.lost
        assert await client.remainder("A") == 1


async def test_names_are_sent_and_shown(url: str, aclient: AsyncClient) -> None:
    default = await AsyncPeer.create(aclient)
    state = await aclient.peer_state(default.id)
    assert state.name == f"{socket.gethostname()}:{os.getpid()}"
    async with AsyncClient(url, peer_name="worker-3") as named_client:
        named = await AsyncPeer.create(named_client)
        assert (await aclient.peer_state(named.id)).name == "worker-3"
        await named.remove_from_server()
    async with lock(url, "A", name="nightly report") as peer:
        assert (await aclient.peer_state(peer.id)).name == "nightly report"
    with pytest.raises(InvalidName):
        await AsyncPeer.create(aclient, name="tab\there")
    await default.remove_from_server()
    with pytest.raises(UnknownPeer):
        await aclient.peer_state(default.id)
