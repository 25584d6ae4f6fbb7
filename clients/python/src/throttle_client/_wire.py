"""The wire format of Throttle's HTTP API, shared by the blocking and the asyncio client.

Nothing here does I/O. Each route becomes a ``Request`` (method, path, JSON body, long-poll
duration); each answer, a status and a text, becomes a value or a typed exception. Which member a request
goes to and when it is retried is ``_members``'s. ``Client`` (on ``requests``) and
``aio.AsyncClient`` (on ``aio._http``) only send and receive, so the two cannot drift apart on
what they send or how they read an answer.

Durations go out as ``"{milliseconds}ms"``, and semaphore names are percent-encoded as one path
segment, so ``/`` and ``&`` in a name are safe.

Two headers carry what a body cannot without breaking Throttle 0.5 clients: ``Fencing-Token``
on the 200 of a granted acquire (``parse_acquired``), and ``Throttle-Peer-State: expired`` on
the ``Unknown peer`` of a peer whose lease ran out (``check_answer`` raises ``LockLost`` for it
instead of ``UnknownPeer``). A 0.5 server sends neither: its grants have no token, and every
unknown peer is restored as before.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Dict, List, Mapping, Optional
from urllib.parse import quote

from .errors import PEER_STATE_HEADER, ThrottleError, UnexpectedResponse, error_for

#: The environment variable a client without an explicit ``token`` reads its token from.
TOKEN_VARIABLE = "THROTTLE_TOKEN"

# Connecting to a live server on the same network takes milliseconds; a longer wait means it is
# down or unreachable, and the retry loop should move on to the next attempt.
CONNECT_TIMEOUT_SECONDS = 5.0

#: The header of a granted acquire that carries the lock's fencing token.
FENCING_TOKEN_HEADER = "Fencing-Token"

#: The longest holder name the server accepts, in bytes of UTF-8.
MAX_NAME_BYTES = 256

# Statuses in the 5xx range that will not go away by asking again.
_PERMANENT_SERVER_ERRORS = frozenset({501, 505, 506, 507, 508, 510, 511})


@dataclass(frozen=True)
class PeerState:
    """One peer as the server reports it in ``Client.list_peers`` and ``Client.peer_state``.

    ``fencing_tokens`` has the token of each acquired lock, and ``name`` the holder name the
    peer was created with (``None`` for none); a 0.5 server reports neither.
    """

    id: int
    acquired: Dict[str, int]
    pending: Dict[str, int]
    expires_in: timedelta
    fencing_tokens: Dict[str, int] = field(default_factory=dict)
    name: Optional[str] = None


@dataclass(frozen=True)
class AcquireResult:
    """The answer to an acquire: whether the lock is granted, and its fencing token.

    ``fencing_token`` is ``None`` while the lock is pending, and for a grant by a Throttle 0.5
    server, which has no tokens.
    """

    granted: bool
    fencing_token: Optional[int] = None


@dataclass(frozen=True)
class Request:
    """One HTTP request to a Throttle server, before it is sent.

    ``body`` is JSON text (``None`` for none); ``block_for`` is the long poll the server may
    spend before answering, which the read timeout must allow for.
    """

    method: str
    path: str
    body: Optional[str] = None
    block_for: Optional[timedelta] = None

    def headers(self, token: Optional[str]) -> Dict[str, str]:
        """The headers to send: the body's content type and the token, where there are any."""
        headers: Dict[str, str] = {}
        if self.body is not None:
            headers["Content-Type"] = "application/json"
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return headers

    def read_timeout(self, request_timeout: timedelta) -> float:
        """Seconds to wait for the answer: ``request_timeout`` plus the long poll, if any."""
        seconds = request_timeout.total_seconds()
        if self.block_for is not None:
            seconds += self.block_for.total_seconds()
        return seconds


# Routes, one function each, named like the client methods that send them.


def new_peer(expires_in: timedelta, name: Optional[str] = None) -> Request:
    body: Dict[str, Any] = {"expires_in": format_duration(expires_in)}
    if name:
        body["name"] = name
    return _json("POST", "/new_peer", body)


def acquire(
    peer_id: int,
    semaphore: str,
    count: int,
    expires_in: Optional[timedelta],
    block_for: Optional[timedelta],
) -> Request:
    query: List[str] = []
    if expires_in is not None:
        query.append(f"expires_in={format_duration(expires_in)}")
    if block_for is not None:
        query.append(f"block_for={format_duration(block_for)}")
    path = f"/peers/{peer_id}/{segment(semaphore)}"
    if query:
        path += "?" + "&".join(query)
    return Request("PUT", path, json.dumps(count), block_for)


def release(peer_id: int) -> Request:
    return Request("DELETE", f"/peers/{peer_id}")


def release_lock(peer_id: int, semaphore: str) -> Request:
    return Request("DELETE", f"/peers/{peer_id}/{segment(semaphore)}")


def heartbeat(peer_id: int, expires_in: timedelta) -> Request:
    return _json("PUT", f"/peers/{peer_id}", {"expires_in": format_duration(expires_in)})


def restore(
    peer_id: int,
    acquired: Mapping[str, int],
    expires_in: timedelta,
    fencing_tokens: Optional[Mapping[str, int]] = None,
    name: Optional[str] = None,
) -> Request:
    """The restore of a peer with its locks, their tokens and its name.

    Only the tokens of locks in ``acquired`` are sent (the server refuses others), so a token
    left behind by a release cannot break a restore. A lock restored without a token gets a
    new one. Without tokens and name the body is a 0.5 client's, which a 0.5 server accepts.
    """
    body: Dict[str, Any] = {
        "expires_in": format_duration(expires_in),
        "peer_id": peer_id,
        "acquired": dict(acquired),
    }
    tokens = {k: v for k, v in (fencing_tokens or {}).items() if k in acquired}
    if tokens:
        body["fencing_tokens"] = tokens
    if name:
        body["name"] = name
    return _json("POST", "/restore", body)


def remainder(semaphore: str) -> Request:
    return Request("GET", f"/remainder?semaphore={segment(semaphore)}")


def is_acquired(peer_id: int) -> Request:
    return Request("GET", f"/peers/{peer_id}/is_acquired")


def list_peers() -> Request:
    return Request("GET", "/peers/")


def peer_state(peer_id: int) -> Request:
    return Request("GET", f"/peers/{peer_id}")


def version() -> Request:
    return Request("GET", "/version")


def metrics() -> Request:
    return Request("GET", "/metrics")


# Answers.


def check_answer(
    status: int, text: str, headers: Optional[Mapping[str, str]] = None
) -> Optional[UnexpectedResponse]:
    """Classify an answer: ``None`` for a success (a status below 400); raises the typed
    exception of an answer that must not be retried (a refusal, or a failure that asking again
    will not heal; ``LockLost`` for the ``Unknown peer`` of an expired peer, by ``headers``);
    returns the failure of one that may heal (a transient 5xx), for ``_members.Attempts`` to
    decide about."""
    if status < 400:
        return None
    peer_state = header(headers, PEER_STATE_HEADER)
    refusal: Optional[ThrottleError] = error_for(status, text, peer_state)
    if refusal is not None:
        raise refusal
    failure = UnexpectedResponse(text, status)
    if not (500 <= status < 600) or status in _PERMANENT_SERVER_ERRORS:
        raise failure
    return failure


def parse_acquired(
    status: int, text: str, headers: Optional[Mapping[str, str]] = None
) -> AcquireResult:
    """The answer to an acquire: granted (200, with the ``Fencing-Token`` header's token if
    there is one) or pending (202)."""
    if status == 202:
        return AcquireResult(granted=False)
    if status != 200:
        raise UnexpectedResponse(text, status)
    raw = header(headers, FENCING_TOKEN_HEADER)
    if raw is None:
        return AcquireResult(granted=True)  # A Throttle 0.5 server.
    raw = raw.strip()
    # `int` would also take "+5", " 5" or "5_0"; the server sends plain decimal digits.
    if not (raw.isascii() and raw.isdigit()):
        raise UnexpectedResponse(f"{FENCING_TOKEN_HEADER}: {raw!r}", status)
    return AcquireResult(granted=True, fencing_token=int(raw))


def parse_int(status: int, text: str) -> int:
    value = _parse_json(status, text)
    if isinstance(value, bool) or not isinstance(value, int):
        raise UnexpectedResponse(text, status)
    return value


def parse_bool(status: int, text: str) -> bool:
    value = _parse_json(status, text)
    if not isinstance(value, bool):
        raise UnexpectedResponse(text, status)
    return value


def parse_peers(status: int, text: str) -> List[PeerState]:
    value = _parse_json(status, text)
    try:
        return [_peer_from_json(item) for item in value]
    except (TypeError, KeyError, ValueError, AttributeError):
        raise UnexpectedResponse(text, status) from None


def parse_peer_state(status: int, text: str) -> PeerState:
    value = _parse_json(status, text)
    try:
        return _peer_from_json(value)
    except (TypeError, KeyError, ValueError, AttributeError):
        raise UnexpectedResponse(text, status) from None


def _peer_from_json(item: Any) -> PeerState:
    """One peer of ``/peers/`` or ``/peers/{id}``; fields a 0.5 server lacks default."""
    name = item.get("name")
    return PeerState(
        id=int(item["id"]),
        acquired={str(k): int(v) for k, v in item.get("acquired", {}).items()},
        pending={str(k): int(v) for k, v in item.get("pending", {}).items()},
        expires_in=timedelta(milliseconds=int(item.get("expires_in_ms", 0))),
        fencing_tokens={str(k): int(v) for k, v in item.get("fencing_tokens", {}).items()},
        name=None if name is None else str(name),
    )


# Formats.


def resolve_token(token: Optional[str], environ: Mapping[str, str]) -> Optional[str]:
    """The token a client with the argument ``token`` sends: the argument if given, else
    ``THROTTLE_TOKEN`` from ``environ``; ``None`` for no token (an empty string is none)."""
    if token is None:
        token = environ.get(TOKEN_VARIABLE)
    return token or None


def format_duration(duration: timedelta) -> str:
    """A ``timedelta`` in the server's duration syntax, in whole milliseconds."""
    milliseconds = duration // timedelta(milliseconds=1)
    if milliseconds < 0:
        raise ValueError(f"a duration must not be negative, got {duration}")
    return f"{milliseconds}ms"


def default_peer_name() -> str:
    """The holder name a client sends unless told otherwise: ``hostname:pid``, cut to
    ``MAX_NAME_BYTES``. Computed at each call, so a forked child names its own process."""
    return clip_name(f"{socket.gethostname()}:{os.getpid()}")


def holder_name(name: Optional[str], default: Optional[str]) -> str:
    """The holder name to send: ``name``, else ``default``, else ``default_peer_name()``; an
    empty string for none (the server takes an empty name as none)."""
    if name is not None:
        return name
    if default is not None:
        return default
    return default_peer_name()


def clip_name(name: str) -> str:
    """``name`` cut to at most ``MAX_NAME_BYTES`` of UTF-8, never inside a character."""
    encoded = name.encode("utf-8")
    if len(encoded) <= MAX_NAME_BYTES:
        return name
    return encoded[:MAX_NAME_BYTES].decode("utf-8", errors="ignore")


def header(headers: Optional[Mapping[str, str]], name: str) -> Optional[str]:
    """The value of the header ``name`` in ``headers``, matched regardless of case (as HTTP
    does; ``requests`` hands over a case-insensitive mapping, the asyncio client a dict by
    lower-case name, tests plain dicts)."""
    if headers is None:
        return None
    value = headers.get(name)
    if value is not None:
        return value
    lowered = name.lower()
    value = headers.get(lowered)
    if value is not None:
        return value
    for key, value in headers.items():
        if key.lower() == lowered:
            return value
    return None


def segment(name: str) -> str:
    """A semaphore name as one percent-encoded URL segment (``/`` and ``&`` included)."""
    return quote(name, safe="")


def _json(method: str, path: str, body: Any) -> Request:
    return Request(method, path, json.dumps(body))


def _parse_json(status: int, text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        raise UnexpectedResponse(text, status) from None
