"""``AsyncClient``: the HTTP routes of a Throttle server, one coroutine each, over ``httpx``.

The twin of ``throttle_client.Client``: the same routes, arguments, retries and typed errors,
because both build their requests and read their answers with ``throttle_client._wire``. This
module only sends and receives. All requests of one client share one ``httpx.AsyncClient``
connection pool, so the tasks of an event loop reuse a few keep-alive connections instead of
opening one each.

At most half of the pool's connections carry long polls at a time; an acquire beyond that asks
without blocking, and its early "pending" makes the waiting loop pause as after the server's own
early answers (it refuses long polls beyond its share of workers too). This keeps the other
half free for the requests that make progress (releases, heartbeats, new peers), which would
otherwise queue behind long polls for seconds, and it keeps the pool small: httpcore's pool (as
of 1.0.9) spends time proportional to the square of its connections on every request, which
made a pool of 100 connections cost 4 ms of CPU per request with 200 waiting tasks.

An ``httpx.AsyncClient`` belongs to the event loop it first ran on. An ``AsyncClient`` used on
another loop (a second ``asyncio.run``, say) opens a new pool there and drops the old one, as
the blocking client does after a ``fork``.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import Any, Dict, List, Mapping, Optional, Type

import httpx

from .. import _wire
from .._wire import PeerState
from ..client import resolve_token

__all__ = ["AsyncClient", "RETRIED_ERRORS"]

_log = logging.getLogger(__name__)

#: The ``httpx`` errors a request is retried after (for up to ``retry_for``), and raised once
#: retrying is over: the counterparts of ``requests.ConnectionError`` and ``requests.Timeout``.
RETRIED_ERRORS = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)

_DEFAULT_MAX_CONNECTIONS = 64


class _Pool:
    """The connections of one event loop, and how many of them carry long polls now."""

    def __init__(self, loop: asyncio.AbstractEventLoop, max_connections: int) -> None:
        self.loop = loop
        self.http = httpx.AsyncClient(
            limits=httpx.Limits(
                max_connections=max_connections,
                # As many as may be open: fewer would close and reopen connections in bursts.
                max_keepalive_connections=max_connections,
            ),
        )
        self.long_polls = 0
        # Requests wait here for a connection, not in httpcore's queue: each pass over that
        # queue scans every connection for every waiting request, and a freed connection is
        # offered to all of them at once (a herd that makes a dozen passes per request).
        self.gate = asyncio.Semaphore(max_connections)


class AsyncClient:
    """A connection pool to one Throttle server, with one coroutine per HTTP route.

    For most uses ``throttle_client.aio.lock`` is the better interface; this class is for code
    that manages peers and locks itself. The arguments are the blocking ``Client``'s:

    * ``base_url``: the server's URL, e.g. ``http://localhost:8000``.
    * ``retry_for``: how long a request keeps being retried after connection errors and 5xx
      answers before the last error is raised (an ``httpx.TransportError`` or
      ``UnexpectedResponse``). A 503 ``Too many peers`` raises ``TooManyPeers`` at once.
    * ``request_timeout``: how long to wait for an answer, on top of any ``block_for``.
    * ``token``: the server's access token (``None``: from ``THROTTLE_TOKEN``, if set; ``""``:
      none). A wrong or missing token raises ``Unauthorized``.

    and one of its own:

    * ``max_connections``: connections open at once (default 64), at most half of them long
      polls (see the module's doc). More requests at a time wait for a free connection.

    Use it as ``async with AsyncClient(url) as client:`` or call ``aclose`` when done. A
    closed client reconnects when used again. It can be pickled; the copy connects on first
    use. Every coroutine may be cancelled; a request cancelled on the wire may still take
    effect on the server, like one whose answer was lost.
    """

    def __init__(
        self,
        base_url: str,
        *,
        retry_for: timedelta = timedelta(seconds=60),
        request_timeout: timedelta = timedelta(seconds=30),
        token: Optional[str] = None,
        max_connections: int = _DEFAULT_MAX_CONNECTIONS,
    ) -> None:
        if max_connections < 2:
            raise ValueError(f"max_connections must be at least 2, got {max_connections}")
        self.base_url = base_url
        self.retry_for = retry_for
        self.request_timeout = request_timeout
        self.max_connections = max_connections
        self._token = resolve_token(token)
        self._pool: Optional[_Pool] = None

    def __getstate__(self) -> Dict[str, Any]:
        return {
            "base_url": self.base_url,
            "retry_for": self.retry_for,
            "request_timeout": self.request_timeout,
            "max_connections": self.max_connections,
            "token": self._token,
        }

    def __setstate__(self, state: Dict[str, Any]) -> None:
        self.base_url = state["base_url"]
        self.retry_for = state["retry_for"]
        self.request_timeout = state["request_timeout"]
        self.max_connections = state["max_connections"]
        self._token = state["token"]
        self._pool = None

    def __repr__(self) -> str:
        return f"AsyncClient({self.base_url!r})"

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    @property
    def has_token(self) -> bool:
        """Whether requests carry a token (see ``token`` above)."""
        return self._token is not None

    async def aclose(self) -> None:
        """Close the pooled connections. The client stays usable and reconnects when needed."""
        pool, self._pool = self._pool, None
        if pool is not None and pool.loop is asyncio.get_running_loop():
            await pool.http.aclose()
        # A pool of another loop cannot be closed from this one; it goes with its loop.

    # Routes, documented on ``throttle_client.Client``.

    async def new_peer(self, expires_in: timedelta) -> int:
        """Create a peer on the server and return its id (see ``Client.new_peer``)."""
        response = await self._send(_wire.new_peer(expires_in))
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

        A ``block_for`` answers ``False`` at once, like a busy server, while half of
        ``max_connections`` carry long polls already.
        """
        pool = self._pool_for_this_loop()
        long_poll = block_for is not None and block_for > timedelta(0)
        if long_poll and pool.long_polls >= self.max_connections // 2:
            block_for, long_poll = None, False
        request = _wire.acquire(peer_id, semaphore, count, expires_in, block_for)
        if long_poll:
            pool.long_polls += 1
        try:
            response = await self._send(request)
        finally:
            if long_poll:
                pool.long_polls -= 1
        return _wire.parse_acquired(response.status_code, response.text)

    async def release(self, peer_id: int) -> None:
        """Remove the peer and release all its locks, whether or not the server knew it."""
        await self._send(_wire.release(peer_id))

    async def release_lock(self, peer_id: int, semaphore: str) -> None:
        """Release the peer's lock on ``semaphore``, acquired or pending; the peer stays."""
        await self._send(_wire.release_lock(peer_id, semaphore))

    async def heartbeat(
        self, peer_id: int, expires_in: timedelta, *, stop: Optional[asyncio.Event] = None
    ) -> None:
        """Prolong the peer; ``UnknownPeer`` if it has expired already. Retrying stops early
        once ``stop`` is set."""
        await self._send(_wire.heartbeat(peer_id, expires_in), stop=stop)

    async def restore(
        self,
        peer_id: int,
        acquired: Mapping[str, int],
        expires_in: timedelta,
        *,
        stop: Optional[asyncio.Event] = None,
    ) -> None:
        """Re-create a peer the server lost with the same id and the locks it held (see
        ``Client.restore``). Retrying stops early once ``stop`` is set."""
        await self._send(_wire.restore(peer_id, acquired, expires_in), stop=stop)

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

    async def version(self) -> str:
        """The server's version."""
        return (await self._send(_wire.version())).text.strip()

    async def metrics(self) -> str:
        """The server's metrics in Prometheus text format."""
        return (await self._send(_wire.metrics())).text

    # Transport.

    def _pool_for_this_loop(self) -> _Pool:
        loop = asyncio.get_running_loop()
        if self._pool is None or self._pool.loop is not loop:
            self._pool = _Pool(loop, self.max_connections)
        return self._pool

    async def _send(
        self, request: _wire.Request, *, stop: Optional[asyncio.Event] = None
    ) -> httpx.Response:
        """Send one request, retrying what may heal, and turn error answers into exceptions.

        Returns only responses with a status below 400.
        """
        url = self.base_url.rstrip("/") + request.path
        headers = request.headers(self._token)
        read = request.read_timeout(self.request_timeout)
        # No pool timeout: waiting for a free connection is bounded by the caller's timeout.
        timeout = httpx.Timeout(
            connect=_wire.CONNECT_TIMEOUT_SECONDS, read=read, write=read, pool=None
        )
        retrying = _wire.Retrying(self.retry_for)
        while True:
            failure: Exception
            try:
                pool = self._pool_for_this_loop()
                async with pool.gate:
                    response = await pool.http.request(
                        request.method, url, content=request.body, headers=headers,
                        timeout=timeout,
                    )
            except RETRIED_ERRORS as error:
                failure = error
            else:
                transient = _wire.check_answer(response.status_code, response.text)
                if transient is None:
                    return response
                failure = transient
            delay = retrying.pause_after(failure)
            _log.info(
                "%s %s failed (%s), retrying in %.2fs", request.method, request.path,
                _describe(failure), delay,
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


def _describe(failure: Exception) -> str:
    """A failure for a log line; some ``httpx`` errors have an empty message."""
    kind: Type[Exception] = type(failure)
    return str(failure) or kind.__name__
