"""The configuration both clients share: ``Client`` (threads) and ``aio.AsyncClient`` (tasks).

Nothing here does I/O. ``Settings`` holds what a client is told when it is created (the server
or the members of a cluster, how long to retry and to wait, the token, the holder name), what of
it a pickle carries, and what each request derives from it (URL, headers, timeouts). The connections are each client's
own, and are never pickled: a copy opens its own on first use.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any, Callable, Dict, Optional, Tuple, Type, TypeVar

from . import _wire
from ._members import MEMBER_ANSWER_TIMEOUT, Members, Servers, parse_servers, servers_key
from .errors import Attempt, ServerUnavailable, transport_reason

#: ``retry_for`` unless told otherwise.
DEFAULT_RETRY_FOR = timedelta(seconds=60)
#: ``request_timeout`` unless told otherwise.
DEFAULT_REQUEST_TIMEOUT = timedelta(seconds=30)


C = TypeVar("C", bound="Settings")

#: Shared clients, by server URLs (``servers_key``) and resolved token (``None`` for none).
Clients = Dict[Tuple[str, Optional[str]], C]


class Settings:
    """A client's configuration; see ``Client`` for what each setting means."""

    retry_for: timedelta
    request_timeout: timedelta
    peer_name: Optional[str]
    _token: Optional[str]
    _members: Members

    def _configure(
        self,
        servers: Optional[Servers],
        retry_for: timedelta,
        request_timeout: timedelta,
        token: Optional[str],
        peer_name: Optional[str],
    ) -> None:
        self._members = Members(parse_servers(servers, os.environ))
        self.retry_for = retry_for
        self.request_timeout = request_timeout
        self.peer_name = peer_name
        self._token = _wire.resolve_token(token, os.environ)

    def _settings(self) -> Dict[str, Any]:
        """The configuration a pickle carries, the resolved token included."""
        return {
            "base_url": self.base_url,  # The key of older versions' pickles.
            "retry_for": self.retry_for,
            "request_timeout": self.request_timeout,
            "token": self._token,
            "peer_name": self.peer_name,
        }

    def _load_settings(self, state: Dict[str, Any]) -> None:
        """The configuration of an unpickled client; a pickle of an older version may lack
        what came later."""
        self._members = Members(parse_servers(state["base_url"], {}))
        self.retry_for = state.get("retry_for", DEFAULT_RETRY_FOR)
        self.request_timeout = state.get("request_timeout", DEFAULT_REQUEST_TIMEOUT)
        self._token = state.get("token")
        self.peer_name = state.get("peer_name")

    @property
    def base_url(self) -> str:
        """The server's URL as given, or the members' URLs separated by commas."""
        return ",".join(self._members.urls)

    @property
    def members(self) -> Tuple[str, ...]:
        """The URL of each member, in the order given; one for a single server."""
        return self._members.urls

    @property
    def member(self) -> str:
        """The URL requests go to now: the leader once an answer named it, else the member
        that answered last (see ``Client``)."""
        return self._members.urls[self._members.current]

    @property
    def has_token(self) -> bool:
        """Whether requests carry a token (see ``token`` above)."""
        return self._token is not None

    def holder_name(self, name: Optional[str] = None) -> str:
        """The holder name a new peer gets: ``name`` if given, else ``peer_name``, else
        ``hostname:pid`` (see ``Client``'s ``peer_name``); ``""`` for none."""
        return _wire.holder_name(name, self.peer_name)

    def _headers_and_timeout(self, request: _wire.Request) -> Tuple[Dict[str, str], float]:
        """The headers of ``request`` and the seconds to wait for its answer:
        ``request_timeout`` (with several members at most ``MEMBER_ANSWER_TIMEOUT``, after
        which the request moves on to the next member) plus the long poll, if any."""
        answer_timeout = self.request_timeout
        if len(self._members.urls) > 1:
            answer_timeout = min(answer_timeout, MEMBER_ANSWER_TIMEOUT)
        return request.headers(self._token), request.read_timeout(answer_timeout)

    def _url(self, member: int, request: _wire.Request) -> str:
        """The URL of ``request`` on member ``member``."""
        return self._members.urls[member].rstrip("/") + request.path

    def _unavailable(
        self,
        member: int,
        error: BaseException,
        kind: Type[ServerUnavailable] = ServerUnavailable,
        *,
        retried: bool = True,
    ) -> ServerUnavailable:
        """The exception for an attempt on member ``member`` that failed on the transport with
        ``error`` (the HTTP library's or the socket's), naming the member and what went wrong;
        ``kind`` is the class, a subclass for a client that raises its library's exceptions
        too. ``retried``: whether the failure is one that is retried for ``retry_for``."""
        retry_for = self.retry_for if retried else None
        url = self._members.urls[member]
        failure = kind([Attempt(url, transport_reason(error))], retry_for)
        failure.__cause__ = error
        return failure


def shared_client(
    clients: Clients[C],
    servers: Optional[Servers],
    token: Optional[str],
    make: Callable[[str, str], C],
) -> C:
    """The client in ``clients`` for ``servers`` (``None``: from ``THROTTLE_URL``) and
    ``token`` (``None``: from ``THROTTLE_TOKEN``), made by ``make(urls, token)`` on first use.
    The members and the resolved token are the key, so a call with another token gets a client
    of its own."""
    key = (servers_key(servers, os.environ), _wire.resolve_token(token, os.environ))
    client = clients.get(key)
    if client is None:
        # The resolved token, or "" for none, so the environment is read once, above.
        client = make(key[0], key[1] or "")
        clients[key] = client
    return client
