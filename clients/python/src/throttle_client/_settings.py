"""The configuration both clients share: ``Client`` (threads) and ``aio.AsyncClient`` (tasks).

Nothing here does I/O. ``Settings`` holds what a client is told when it is created (the server,
how long to retry and to wait, the token, the holder name), what of it a pickle carries, and
what each request derives from it (URL, headers, timeouts). The connections are each client's
own, and are never pickled: a copy opens its own on first use.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any, Callable, Dict, Optional, Tuple, Type, TypeVar

from . import _wire
from .errors import Attempt, ServerUnavailable, transport_reason

#: ``retry_for`` unless told otherwise.
DEFAULT_RETRY_FOR = timedelta(seconds=60)
#: ``request_timeout`` unless told otherwise.
DEFAULT_REQUEST_TIMEOUT = timedelta(seconds=30)


C = TypeVar("C", bound="Settings")

#: Shared clients, by server URL and resolved token (``None`` for none).
Clients = Dict[Tuple[str, Optional[str]], C]


class Settings:
    """A client's configuration; see ``Client`` for what each setting means."""

    base_url: str
    retry_for: timedelta
    request_timeout: timedelta
    peer_name: Optional[str]
    _token: Optional[str]

    def _configure(
        self,
        base_url: str,
        retry_for: timedelta,
        request_timeout: timedelta,
        token: Optional[str],
        peer_name: Optional[str],
    ) -> None:
        self.base_url = base_url
        self.retry_for = retry_for
        self.request_timeout = request_timeout
        self.peer_name = peer_name
        self._token = _wire.resolve_token(token, os.environ)

    def _settings(self) -> Dict[str, Any]:
        """The configuration a pickle carries, the resolved token included."""
        return {
            "base_url": self.base_url,
            "retry_for": self.retry_for,
            "request_timeout": self.request_timeout,
            "token": self._token,
            "peer_name": self.peer_name,
        }

    def _load_settings(self, state: Dict[str, Any]) -> None:
        """The configuration of an unpickled client; a pickle of an older version may lack
        what came later."""
        self.base_url = state["base_url"]
        self.retry_for = state.get("retry_for", DEFAULT_RETRY_FOR)
        self.request_timeout = state.get("request_timeout", DEFAULT_REQUEST_TIMEOUT)
        self._token = state.get("token")
        self.peer_name = state.get("peer_name")

    @property
    def has_token(self) -> bool:
        """Whether requests carry a token (see ``token`` above)."""
        return self._token is not None

    def holder_name(self, name: Optional[str] = None) -> str:
        """The holder name a new peer gets: ``name`` if given, else ``peer_name``, else
        ``hostname:pid`` (see ``Client``'s ``peer_name``); ``""`` for none."""
        return _wire.holder_name(name, self.peer_name)

    def _prepare(self, request: _wire.Request) -> Tuple[str, Dict[str, str], float]:
        """What sending ``request`` takes: its URL, its headers and the seconds to wait for
        the answer (``request_timeout`` plus the long poll, if any)."""
        url = self.base_url.rstrip("/") + request.path
        return url, request.headers(self._token), request.read_timeout(self.request_timeout)

    def _unavailable(
        self,
        error: BaseException,
        kind: Type[ServerUnavailable] = ServerUnavailable,
        *,
        retried: bool = True,
    ) -> ServerUnavailable:
        """The exception for an attempt that failed on the transport with ``error`` (the HTTP
        library's or the socket's), naming the server and what went wrong; ``kind`` is the
        class, a subclass for a client that raises its library's exceptions too. ``retried``:
        whether the failure is one that is retried for ``retry_for``."""
        retry_for = self.retry_for if retried else None
        failure = kind([Attempt(self.base_url, transport_reason(error))], retry_for)
        failure.__cause__ = error
        return failure


def shared_client(
    clients: Clients[C], url: str, token: Optional[str], make: Callable[[str, str], C]
) -> C:
    """The client in ``clients`` for ``url`` and ``token`` (``None``: from
    ``THROTTLE_TOKEN``), made by ``make(url, token)`` on first use. The resolved token is
    the key, so a call with another token gets a client of its own."""
    key = (url, _wire.resolve_token(token, os.environ))
    client = clients.get(key)
    if client is None:
        # The resolved token, or "" for none, so the environment is read once, above.
        client = make(url, key[1] or "")
        clients[key] = client
    return client
