"""``Client``: the HTTP routes of a Throttle server, one method each.

This layer sends and receives and knows nothing about lock bookkeeping. What goes on the wire
and how answers are read (durations, percent-encoded names, typed errors, which failures are
retried) is in ``_wire``, which the asyncio client shares. All requests go through one
``requests.Session``, so consecutive calls reuse a keep-alive connection instead of paying a
TCP handshake each.

Failures that may heal on their own (the server is restarting, a connection dropped, a 5xx) are
retried with jittered exponential backoff for at most ``retry_for``, on the next member of a
cluster after each failure (``_members``); a server still unreachable then raises
``ServerUnavailable`` (also a ``requests.ConnectionError`` or ``requests.Timeout``,
see ``_requests_errors``), naming the server and what went wrong. A 4xx answer is never
retried: repeating a refused request gets the same refusal. Nor is a 503 ``Too many peers``: the
server is up and at its peer limit, which lasts as long as other clients hold their peers, so it
raises ``TooManyPeers`` at once and leaves trying again to the caller.

Every new peer carries a holder name, shown on the server's status page and in ``/peers/``:
``hostname:pid`` unless ``Client(url, peer_name=...)`` or the call says otherwise.

A server with access control needs ``Authorization: Bearer <token>`` on every route but ``/``
and ``/health``; ``Client(url, token=...)`` sends it, and without ``token`` the environment
variable ``THROTTLE_TOKEN`` (the one the server reads) supplies it.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from datetime import timedelta
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple
from urllib.parse import urlsplit

import requests

from . import _wire
from ._requests_errors import RETRIED, RequestFailed, as_requests_errors, unavailable_class
from ._members import Attempts, Servers
from ._settings import DEFAULT_REQUEST_TIMEOUT, DEFAULT_RETRY_FOR, Settings
from ._wire import TOKEN_VARIABLE, AcquireResult, PeerState

__all__ = ["TOKEN_VARIABLE", "AcquireResult", "Client", "PeerState", "resolve_token"]

_log = logging.getLogger(__name__)


class Client(Settings):
    """A connection to one Throttle server, or to the members of a Throttle cluster, with one
    method per HTTP route.

    For most uses the ``lock`` context manager is the better interface; this class is for code
    that manages peers and locks itself.

    * ``base_url``: the server's URL, e.g. ``http://localhost:8000``; or a cluster's members,
      as a list of URLs or as one string with the URLs separated by commas. ``None`` (the
      default) takes them from the environment variable ``THROTTLE_URL``, else
      ``http://127.0.0.1:8000``.
    * ``retry_for``: how long a request keeps being retried after connection errors and 5xx
      answers before the last error is raised (``ServerUnavailable`` for a server that could
      not be reached, ``UnexpectedResponse`` for a 5xx answer). A 503 ``Too many peers`` is
      not retried; it raises ``TooManyPeers`` at once.
    * ``request_timeout``: how long to wait for an answer, on top of any ``block_for``; with
      several members at most 5 s, after which the request moves on to the next member (a
      member answers within 3 s, if only ``503 No quorum``: a silent one is paused or gone).
    * ``token``: the server's access token, sent as ``Authorization: Bearer <token>``. ``None``
      (the default) takes it from the environment variable ``THROTTLE_TOKEN`` when the client is
      created, if it is set and not empty; an explicit ``token`` wins over the environment, and
      ``token=""`` sends no token even if the variable is set. A wrong or missing token raises
      ``Unauthorized``.
    * ``peer_name``: the holder name of the peers this client creates (and restores), shown
      on the server's status page and in ``/peers/``. ``None`` (the default) sends
      ``hostname:pid`` of the calling process, cut to 256 bytes; ``""`` sends none. A name
      with control characters or longer than 256 bytes of UTF-8 raises ``InvalidName``.

    **Several members.** Requests go to one member at a time, the first one to begin with. Any
    member answers every route and their state is one; answers name the member that leads, and
    the client moves its requests there to save a follower's hop to the leader. A request that
    fails on the way or with a 5xx (503 ``No quorum`` from a member cut off from the others,
    say) goes to the next member at once; after a round of all members without an answer it
    pauses as above, until ``retry_for`` is spent, and then raises ``ServerUnavailable`` naming
    each member and why it failed. Every member is asked at least once. Locks, waits and
    fencing tokens are the cluster's, so a change of leader does not show in them.

    A ``Client`` may be shared between threads and can be pickled (e.g. to hand it to a worker
    process); the unpickled copy opens its own connections on first use. The pickle carries the
    token, so the copy works where the environment lacks it; ``repr`` never shows it.
    """

    def __init__(
        self,
        base_url: Optional[Servers] = None,
        *,
        retry_for: timedelta = DEFAULT_RETRY_FOR,
        request_timeout: timedelta = DEFAULT_REQUEST_TIMEOUT,
        token: Optional[str] = None,
        peer_name: Optional[str] = None,
    ) -> None:
        self._configure(base_url, retry_for, request_timeout, token, peer_name)
        self._session: Optional[requests.Session] = None
        self._session_pid = 0
        self._session_lock = threading.Lock()

    # Pickling: the session (sockets) and the lock cannot cross process boundaries, so only the
    # configuration travels and the session is created again on first use.

    def __getstate__(self) -> Dict[str, Any]:
        return self._settings()

    def __setstate__(self, state: Dict[str, Any]) -> None:
        self._load_settings(state)
        self._session = None
        self._session_pid = 0
        self._session_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Client({self.base_url!r})"

    def close(self) -> None:
        """Close the pooled connections. The client stays usable and reconnects when needed."""
        with self._session_lock:
            session, self._session = self._session, None
        if session is not None:
            session.close()

    # Routes.

    @as_requests_errors
    def new_peer(self, expires_in: timedelta, name: Optional[str] = None) -> int:
        """Create a peer on the server and return its id.

        A peer owns locks; if it is not prolonged (``heartbeat``, or ``expires_in`` on
        ``acquire``) within ``expires_in``, the server removes it and releases its locks, so a
        crashed client cannot leak count. Match every ``new_peer`` with a ``release``. Raises
        ``TooManyPeers`` if the server holds its maximum of live peers.

        ``name`` is the peer's holder name (``None``: the client's, see ``holder_name``; ``""``:
        none); ``InvalidName`` if the server refuses it.
        """
        response = self._send(_wire.new_peer(expires_in, self.holder_name(name)))
        return _wire.parse_int(response.status_code, response.text)

    def acquire(
        self,
        peer_id: int,
        semaphore: str,
        count: int = 1,
        expires_in: Optional[timedelta] = None,
        block_for: Optional[timedelta] = None,
    ) -> bool:
        """Ask for a lock of ``count`` on ``semaphore`` for the peer. ``True`` if it is
        acquired, ``False`` if it is still pending (queued behind earlier requests).

        * ``block_for``: wait up to this long for the grant (a long poll); ``None`` answers at
          once. The server may answer ``False`` earlier than that, e.g. when it is busy.
        * ``expires_in``: also prolong the peer by this, saving a heartbeat while waiting.

        Asking again with the same count is idempotent, which is what makes waiting in slices
        (and retrying after a lost answer) safe. A pending lock is not forgotten when the call
        returns ``False``: it stays queued until granted, released or the peer expires.

        ``acquire_with_token`` answers the grant's fencing token too.
        """
        return self.acquire_with_token(peer_id, semaphore, count, expires_in, block_for).granted

    @as_requests_errors
    def acquire_with_token(
        self,
        peer_id: int,
        semaphore: str,
        count: int = 1,
        expires_in: Optional[timedelta] = None,
        block_for: Optional[timedelta] = None,
    ) -> AcquireResult:
        """``acquire``, answering whether the lock is granted and its fencing token.

        The token is strictly larger than that of every grant before it on this server,
        across restarts too; a repeat, or a shrink, of a held lock answers the same token. It
        is ``None`` while pending, and from a Throttle 0.5 server.
        """
        request = _wire.acquire(peer_id, semaphore, count, expires_in, block_for)
        response = self._send(request)
        return _wire.parse_acquired(response.status_code, response.text, response.headers)

    @as_requests_errors
    def release(self, peer_id: int) -> None:
        """Remove the peer and release all its locks, waking whoever waits for them.

        Succeeds whether or not the server still knew the peer.
        """
        self._send(_wire.release(peer_id))

    @as_requests_errors
    def release_lock(self, peer_id: int, semaphore: str) -> None:
        """Release the peer's lock on ``semaphore``, acquired or pending; the peer stays."""
        self._send(_wire.release_lock(peer_id, semaphore))

    @as_requests_errors
    def heartbeat(
        self,
        peer_id: int,
        expires_in: timedelta,
        *,
        cancel: Optional[threading.Event] = None,
    ) -> None:
        """Prolong the peer: it now expires ``expires_in`` from now.

        Raises ``LockLost`` if the server says the peer expired (its locks are released), and
        ``UnknownPeer`` if it does not know the peer otherwise (it restarted). Retrying stops
        early once ``cancel`` is set, so a heartbeat thread can be stopped without waiting out
        the backoff.
        """
        self._send(_wire.heartbeat(peer_id, expires_in), cancel=cancel)

    @as_requests_errors
    def restore(
        self,
        peer_id: int,
        acquired: Mapping[str, int],
        expires_in: timedelta,
        *,
        fencing_tokens: Optional[Mapping[str, int]] = None,
        name: Optional[str] = None,
        cancel: Optional[threading.Event] = None,
    ) -> None:
        """Re-create a peer the server lost (it restarted) with the same id and the locks it
        held. The server counts them even if that overcommits a semaphore, because the client
        holds the resource already.

        ``fencing_tokens`` are the tokens of (some of) the ``acquired`` locks, which keep them;
        a lock restored without one gets a new token. ``name`` is the holder name (``None``:
        the client's, see ``holder_name``).

        Restoring a peer the server knows with exactly these locks changes nothing; with other
        locks or tokens it raises ``RestoreConflict``. Re-creating one on a server that holds
        its maximum of live peers raises ``TooManyPeers``.
        """
        request = _wire.restore(
            peer_id, acquired, expires_in, fencing_tokens, self.holder_name(name)
        )
        self._send(request, cancel=cancel)

    @as_requests_errors
    def remainder(self, semaphore: str) -> int:
        """The semaphore's ``max`` minus the counts acquired now: what is still free.

        Negative if restores overcommitted it.
        """
        response = self._send(_wire.remainder(semaphore))
        return _wire.parse_int(response.status_code, response.text)

    @as_requests_errors
    def is_acquired(self, peer_id: int) -> bool:
        """``True`` if the peer waits for no lock, i.e. all its locks are acquired."""
        response = self._send(_wire.is_acquired(peer_id))
        return _wire.parse_bool(response.status_code, response.text)

    @as_requests_errors
    def list_peers(self) -> List[PeerState]:
        """All peers the server knows, with their acquired and pending locks."""
        response = self._send(_wire.list_peers())
        return _wire.parse_peers(response.status_code, response.text)

    @as_requests_errors
    def peer_state(self, peer_id: int) -> PeerState:
        """One peer as the server knows it: its locks, their fencing tokens, the pending lock,
        the lease left and the holder name. ``UnknownPeer`` if the server does not know it
        (``LockLost`` if it says the peer expired)."""
        response = self._send(_wire.peer_state(peer_id))
        return _wire.parse_peer_state(response.status_code, response.text)

    @as_requests_errors
    def version(self) -> str:
        """The server's version."""
        return self._send(_wire.version()).text.strip()

    @as_requests_errors
    def metrics(self) -> str:
        """The server's metrics in Prometheus text format."""
        return self._send(_wire.metrics()).text

    # Transport.

    def _session_for_this_process(self) -> requests.Session:
        """The pooled session, created on first use and again after a ``fork``: a child
        process must not share the parent's sockets."""
        pid = os.getpid()
        with self._session_lock:
            if self._session is None or self._session_pid != pid:
                self._session = _new_session(self.members)
                self._session_pid = pid
            return self._session

    def _send(
        self, request: _wire.Request, *, cancel: Optional[threading.Event] = None
    ) -> requests.Response:
        """Send one request, retrying what may heal, and turn error answers into exceptions.

        Returns only responses with a status below 400.
        """
        headers, read = self._headers_and_timeout(request)
        timeout: Tuple[float, float] = (_wire.CONNECT_TIMEOUT_SECONDS, read)
        attempts = Attempts(self._members, self.retry_for)
        while True:
            member = attempts.target()
            failure: Exception
            try:
                response = self._session_for_this_process().request(
                    request.method,
                    self._url(member, request),
                    data=request.body,
                    headers=headers,
                    timeout=timeout,
                )
            except RETRIED as error:
                failure = self._unavailable(member, error, unavailable_class(error))
            except requests.RequestException as error:
                # No retry heals it: a malformed URL, a scheme requests cannot speak, ...
                raise self._unavailable(member, error, RequestFailed, retried=False) from error
            else:
                self._members.answered(member, response.headers)
                transient = _wire.check_answer(
                    response.status_code, response.text, response.headers
                )
                if transient is None:
                    return response
                failure = transient
            delay = attempts.failed(member, failure)
            if delay <= 0:
                continue
            _log.info(
                "%s %s failed (%s), retrying in %.2fs", request.method, request.path, failure,
                delay,
            )
            if cancel is None:
                time.sleep(delay)
            elif cancel.wait(delay):
                raise failure


def resolve_token(token: Optional[str]) -> Optional[str]:
    """The token a client with the argument ``token`` sends: the argument if given, else
    ``THROTTLE_TOKEN`` from the environment; ``None`` for no token (an empty string is none)."""
    return _wire.resolve_token(token, os.environ)


def _new_session(members: Sequence[str]) -> requests.Session:
    """A session that reads proxy settings from the environment once, not per request.

    By default ``requests`` looks up proxy variables, ``NO_PROXY`` and ``~/.netrc`` on every
    request, which costs about a third of a loopback round trip. The proxies the members need
    do not change while the process runs, so they are resolved here and pinned, by scheme and
    host where the members need different ones.
    """
    session = requests.Session()
    session.trust_env = False
    for url in members:
        proxies = requests.utils.get_environ_proxies(url)
        parts = urlsplit(url)
        for scheme, proxy in proxies.items():
            if scheme in ("http", "https") and len(members) > 1:
                # `requests` picks a proxy by "scheme://host" before "scheme".
                session.proxies[f"{scheme}://{parts.hostname}"] = proxy
            else:
                session.proxies[scheme] = proxy
    return session
