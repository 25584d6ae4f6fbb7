"""``AsyncClient``: the HTTP routes of a Throttle server, one coroutine each.

The twin of ``throttle_client.Client``: the same routes, arguments, retries and typed errors,
because both build their requests and read their answers with ``throttle_client._wire``. This
module only sends and receives, over the small HTTP/1.1 client of ``_http`` (on asyncio's own
transports, no HTTP library). All tasks of an event loop that use one client share its
keep-alive connections instead of opening their own.

Two kinds of requests share the connections: those the server answers at once, at most
``max_connections`` at a time, and long polls, which hold a connection for seconds, at most
``max_long_polls`` at a time. Bounded apart, a release or heartbeat never waits behind long
polls. Quick requests beyond the bound wait for their turn in a FIFO semaphore.

An acquire that would be a long poll beyond ``max_long_polls`` asks without blocking instead;
its early "pending" makes the waiting loop pause as after a busy server's early answers. Waiters
that pause are slow to notice a grant (FIFO hands it to them all the same), so the default is
high, 256: the server keeps every long poll waiting on a thread of its own, cheaply. Each open
long poll is a socket of the process.

Connections belong to the event loop that opened them. An ``AsyncClient`` used on another loop
(a second ``asyncio.run``, say) opens new ones there and drops the old ones, as the blocking
client does after a ``fork``.

A server that cannot be reached within ``retry_for`` raises ``ServerUnavailable``, naming the
server and what went wrong, as the blocking client does; a client of a cluster's members moves
on from member to member as the blocking client does (``_members``), with a pool of
connections per member.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import Any, Dict, List, Mapping, Optional, Sequence

from .. import _wire
from .._members import Attempts, Servers
from .._settings import DEFAULT_REQUEST_TIMEOUT, DEFAULT_RETRY_FOR, Settings
from .._wire import AcquireResult, PeerState
from ._http import Answer, InvalidURL, Pool

__all__ = ["AsyncClient"]

_log = logging.getLogger(__name__)

_DEFAULT_MAX_CONNECTIONS = 8
_DEFAULT_MAX_LONG_POLLS = 256


class _Pools:
    """The connections of one event loop, a pool per member opened on first use, and how
    many of each kind of request are open (across members)."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, members: Sequence[str], max_connections: int
    ) -> None:
        self.loop = loop
        self._members = members
        self._pools: List[Optional[Pool]] = [None] * len(members)
        self.quick_gate = asyncio.Semaphore(max_connections)
        self.long_polls = 0

    def connections(self, member: int) -> Pool:
        """The pool of member ``member``; ``InvalidURL`` for a URL that is none."""
        pool = self._pools[member]
        if pool is None:
            pool = Pool(self._members[member], _wire.CONNECT_TIMEOUT_SECONDS)
            self._pools[member] = pool
        return pool

    def close(self) -> None:
        for pool in self._pools:
            if pool is not None:
                pool.close()


class AsyncClient(Settings):
    """A connection pool to one Throttle server, with one coroutine per HTTP route.

    For most uses ``throttle_client.aio.lock`` is the better interface; this class is for code
    that manages peers and locks itself. The arguments are the blocking ``Client``'s:

    * ``base_url``: the server's URL, e.g. ``http://localhost:8000``, or a cluster's members
      (a list, or URLs separated by commas; ``None``: ``THROTTLE_URL``, see ``Client``). A
      client of several members sends to one at a time and moves on as ``Client`` does.
    * ``retry_for``: how long a request keeps being retried after connection errors and 5xx
      answers before the last error is raised (``ServerUnavailable`` or
      ``UnexpectedResponse``). A 503 ``Too many peers`` raises ``TooManyPeers`` at once.
    * ``request_timeout``: how long to wait for an answer, on top of any ``block_for``.
    * ``token``: the server's access token (``None``: from ``THROTTLE_TOKEN``, if set; ``""``:
      none). A wrong or missing token raises ``Unauthorized``.
    * ``peer_name``: the holder name of the peers it creates (``None``: ``hostname:pid``;
      ``""``: none).

    and two of its own (see the module's doc):

    * ``max_connections``: connections for requests the server answers at once (default 8).
      More such requests at a time wait for a free connection, in order.
    * ``max_long_polls``: long polls open at once (default 256). An acquire beyond them asks
      without blocking and answers ``False`` if the lock is not free.

    Use it as ``async with AsyncClient(url) as client:`` or call ``aclose`` when done. A
    closed client reconnects when used again. It can be pickled; the copy connects on first
    use. Every coroutine may be cancelled; a request cancelled on the wire may still take
    effect on the server, like one whose answer was lost.
    """

    def __init__(
        self,
        base_url: Optional[Servers] = None,
        *,
        retry_for: timedelta = DEFAULT_RETRY_FOR,
        request_timeout: timedelta = DEFAULT_REQUEST_TIMEOUT,
        token: Optional[str] = None,
        max_connections: int = _DEFAULT_MAX_CONNECTIONS,
        max_long_polls: int = _DEFAULT_MAX_LONG_POLLS,
        peer_name: Optional[str] = None,
    ) -> None:
        if max_connections < 1 or max_long_polls < 1:
            raise ValueError(
                "max_connections and max_long_polls must be at least 1, got "
                f"{max_connections} and {max_long_polls}"
            )
        self._configure(base_url, retry_for, request_timeout, token, peer_name)
        self.max_connections = max_connections
        self.max_long_polls = max_long_polls
        self._pools: Optional[_Pools] = None

    def __getstate__(self) -> Dict[str, Any]:
        return {
            **self._settings(),
            "max_connections": self.max_connections,
            "max_long_polls": self.max_long_polls,
        }

    def __setstate__(self, state: Dict[str, Any]) -> None:
        self._load_settings(state)
        self.max_connections = state["max_connections"]
        self.max_long_polls = state["max_long_polls"]
        self._pools = None

    def __repr__(self) -> str:
        return f"AsyncClient({self.base_url!r})"

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the pooled connections. The client stays usable and reconnects when needed."""
        pools, self._pools = self._pools, None
        if pools is not None and pools.loop is asyncio.get_running_loop():
            pools.close()
        # Connections of another loop cannot be closed from this one; they go with their loop.

    # Routes, documented on ``throttle_client.Client``.

    async def new_peer(self, expires_in: timedelta, name: Optional[str] = None) -> int:
        """Create a peer on the server and return its id (see ``Client.new_peer``)."""
        response = await self._send(_wire.new_peer(expires_in, self.holder_name(name)))
        return _wire.parse_int(response.status_code, response.text)

    async def acquire(
        self,
        peer_id: int,
        semaphore: str,
        count: int = 1,
        expires_in: Optional[timedelta] = None,
        block_for: Optional[timedelta] = None,
    ) -> bool:
        """Ask for a lock; ``True`` if acquired, ``False`` if still pending (see
        ``Client.acquire``). Cancelling it does not withdraw the request: the lock stays
        queued on the server until released (``release_lock``) or the peer expires.

        While ``max_long_polls`` long polls are open already, a ``block_for`` is not waited
        for: the answer comes at once, like a busy server's.
        """
        result = await self.acquire_with_token(peer_id, semaphore, count, expires_in, block_for)
        return result.granted

    async def acquire_with_token(
        self,
        peer_id: int,
        semaphore: str,
        count: int = 1,
        expires_in: Optional[timedelta] = None,
        block_for: Optional[timedelta] = None,
    ) -> AcquireResult:
        """``acquire``, answering the grant's fencing token too (see
        ``Client.acquire_with_token``)."""
        pools = self._pools_for_this_loop()
        long_poll = block_for is not None and block_for > timedelta(0)
        if long_poll and pools.long_polls >= self.max_long_polls:
            block_for, long_poll = None, False
        request = _wire.acquire(peer_id, semaphore, count, expires_in, block_for)
        if not long_poll:
            response = await self._send(request)
        else:
            pools.long_polls += 1
            try:
                response = await self._send(request)
            finally:
                pools.long_polls -= 1
        return _wire.parse_acquired(response.status_code, response.text, response.headers)

    async def release(self, peer_id: int) -> None:
        """Remove the peer and release all its locks, whether or not the server knew it."""
        await self._send(_wire.release(peer_id))

    async def release_lock(self, peer_id: int, semaphore: str) -> None:
        """Release the peer's lock on ``semaphore``, acquired or pending; the peer stays."""
        await self._send(_wire.release_lock(peer_id, semaphore))

    async def heartbeat(
        self, peer_id: int, expires_in: timedelta, *, stop: Optional[asyncio.Event] = None
    ) -> None:
        """Prolong the peer; ``LockLost`` if the server says it expired, ``UnknownPeer`` if it
        does not know it otherwise (it restarted). Retrying stops early once ``stop`` is set."""
        await self._send(_wire.heartbeat(peer_id, expires_in), stop=stop)

    async def restore(
        self,
        peer_id: int,
        acquired: Mapping[str, int],
        expires_in: timedelta,
        *,
        fencing_tokens: Optional[Mapping[str, int]] = None,
        name: Optional[str] = None,
        stop: Optional[asyncio.Event] = None,
    ) -> None:
        """Re-create a peer the server lost with the same id, the locks it held and their
        fencing tokens (see ``Client.restore``). Retrying stops early once ``stop`` is set."""
        request = _wire.restore(
            peer_id, acquired, expires_in, fencing_tokens, self.holder_name(name)
        )
        await self._send(request, stop=stop)

    async def remainder(self, semaphore: str) -> int:
        """The semaphore's ``max`` minus the counts acquired now (negative if overcommitted)."""
        response = await self._send(_wire.remainder(semaphore))
        return _wire.parse_int(response.status_code, response.text)

    async def is_acquired(self, peer_id: int) -> bool:
        """``True`` if the peer waits for no lock, i.e. all its locks are acquired."""
        response = await self._send(_wire.is_acquired(peer_id))
        return _wire.parse_bool(response.status_code, response.text)

    async def list_peers(self) -> List[PeerState]:
        """All peers the server knows, with their acquired and pending locks."""
        response = await self._send(_wire.list_peers())
        return _wire.parse_peers(response.status_code, response.text)

    async def peer_state(self, peer_id: int) -> PeerState:
        """One peer as the server knows it (see ``Client.peer_state``)."""
        response = await self._send(_wire.peer_state(peer_id))
        return _wire.parse_peer_state(response.status_code, response.text)

    async def version(self) -> str:
        """The server's version."""
        return (await self._send(_wire.version())).text.strip()

    async def metrics(self) -> str:
        """The server's metrics in Prometheus text format."""
        return (await self._send(_wire.metrics())).text

    # Transport.

    def _pools_for_this_loop(self) -> _Pools:
        loop = asyncio.get_running_loop()
        if self._pools is None or self._pools.loop is not loop:
            self._pools = _Pools(loop, self.members, self.max_connections)
        return self._pools

    async def _exchange(
        self, member: int, request: _wire.Request, headers: Dict[str, str], read: float
    ) -> Answer:
        """One attempt on member ``member``: a long poll at once (``acquire`` counted it), any
        other request once its turn among the quick ones has come."""
        pools = self._pools_for_this_loop()
        connections = pools.connections(member)
        if request.block_for is not None and request.block_for > timedelta(0):
            return await connections.request(
                request.method, request.path, headers, request.body, read
            )
        async with pools.quick_gate:
            return await connections.request(
                request.method, request.path, headers, request.body, read
            )

    async def _send(
        self, request: _wire.Request, *, stop: Optional[asyncio.Event] = None
    ) -> Answer:
        """Send one request, retrying what may heal, and turn error answers into exceptions.

        Returns only answers with a status below 400.
        """
        headers, read = self._headers_and_timeout(request)
        attempts = Attempts(self._members, self.retry_for)
        while True:
            member = attempts.target()
            failure: Exception
            try:
                answer = await self._exchange(member, request, headers, read)
            except OSError as error:
                # Refused, reset, timed out, not resolved, a broken answer (see `_http`).
                failure = self._unavailable(member, error)
            except InvalidURL as error:
                # No retry heals it.
                raise self._unavailable(member, error, retried=False) from error
            else:
                self._members.answered(member, answer.headers)
                transient = _wire.check_answer(answer.status_code, answer.text, answer.headers)
                if transient is None:
                    return answer
                failure = transient
            delay = attempts.failed(member, failure)
            if delay <= 0:
                continue
            _log.info(
                "%s %s failed (%s), retrying in %.2fs", request.method, request.path, failure,
                delay,
            )
            if await stopped_within(stop, delay):
                raise failure


async def stopped_within(stop: Optional[asyncio.Event], seconds: float) -> bool:
    """Sleep ``seconds``, or less if ``stop`` is set meanwhile; ``True`` if it was set."""
    if stop is None:
        await asyncio.sleep(seconds)
        return False
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except asyncio.TimeoutError:
        return False
    return True
