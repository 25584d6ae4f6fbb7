"""Exceptions raised by the Throttle client, one class per way a request can fail.

The server answers a refused request with a status code and a one-line plain-text body whose
first words name the reason (``Unknown peer``, ``Lock hierarchy violation: ...``). Those first
words are part of the server's contract, so this module maps them to exception classes: a caller
can catch exactly the failure it knows how to handle instead of parsing messages. The texts of a
Throttle 0.5 server map to the same classes.

Compatibility with the 0.5 client decides the base classes. ``UnknownPeer`` stays a plain
``Exception`` (it is recovered from with ``restore``, not a programming error), while every other
400, 409 and 413 answer is a ``ValueError`` as before, so existing ``except ValueError`` clauses
keep working. ``LockLost`` (an ``Unknown peer`` the server marks ``Throttle-Peer-State:
expired``) is deliberately no ``UnknownPeer``: such ``except`` clauses restore, and a lost lease
must not be restored. Answers the client cannot interpret become ``UnexpectedResponse``. A 401
(the server needs a token the request did not carry) is ``Unauthorized``, a ``PermissionError``:
Python's exception for "not allowed", and no ``ValueError``, because the request itself was
fine. A 503 ``Too many peers`` (the server holds its ``--max-peers``) is ``TooManyPeers``;
unlike other 5xx answers it is not retried (see its docstring). A server that could not be
reached within ``retry_for`` is ``ServerUnavailable``, whose message names the server and what
went wrong.

Every exception of this package is a ``ThrottleError``, and nothing here depends on the HTTP
library a client is built on: the asyncio client imports this module without ``requests``.
The 0.5 client raised ``requests`` exceptions for a server it could not reach
(``requests.ConnectionError``, ``requests.Timeout``) and for answers it could not use
(``requests.HTTPError``); the blocking client raises subclasses of the classes here that are
those ``requests`` exceptions too (``throttle_client._requests_errors``), so ``except`` clauses
written for 0.5 keep working.
"""

from __future__ import annotations

import errno
import socket
import ssl
from datetime import timedelta
from typing import Any, Dict, Iterator, NamedTuple, Optional, Sequence, Set, Tuple, Type


class ThrottleError(Exception):
    """Base class of every exception this package raises about a server or its answer.

    ``except ThrottleError`` handles every failure of the library, whatever it is built on;
    only misuse of the API (a negative duration, a second lock on one semaphore) raises
    Python's own ``ValueError`` instead.
    """


class UnknownPeer(ThrottleError):
    """The server does not know the peer (it expired, was released, or the server restarted).

    Recover by restoring the peer with its acquired locks (``Peer.restore``); ``lock`` and
    ``PeerWithHeartbeat`` do that on their own.
    """

    def __init__(self, text: str = "Unknown peer") -> None:
        super().__init__(text)
        self.status_code = 400
        self.text = text


class LockLost(ThrottleError):
    """The peer's lease ran out: the server says it *expired* (400 ``Unknown peer`` with the
    header ``Throttle-Peer-State: expired``) and released its locks, so someone else may hold
    them now. Stop using the resource; a new lock gets a new fencing token.

    Unlike ``UnknownPeer`` (a restarted server, recovered by a restore) this is not restored:
    restoring would carry on as if nothing happened, which is what the lock is there to prevent.
    It is no ``UnknownPeer`` on purpose, so ``except UnknownPeer: restore()`` clauses written
    for 0.5 do not catch it. ``Peer.lost`` tells it too, and ``on_lost`` callbacks report it.
    """

    def __init__(self, text: str = "Unknown peer") -> None:
        super().__init__(text)
        self.status_code = 400
        self.text = text


class Unauthorized(ThrottleError, PermissionError):
    """The server needs a token and the request carried none, or a wrong one (401).

    Pass the server's token as ``Client(url, token=...)`` (or ``lock(..., token=...)``,
    ``rate_limit(..., token=...)``), or set ``THROTTLE_TOKEN`` in the environment. Never retried:
    asking again with the same token gets the same answer. ``status_code`` and ``text`` carry
    the server's answer.
    """

    def __init__(self, text: str = "Unauthorized") -> None:
        super().__init__(text)
        self.status_code = 401
        self.text = text


class Timeout(ThrottleError):
    """``lock`` or ``rate_limit`` gave up because its ``timeout`` passed before the grant.

    No pending lock is left behind on the server when this is raised.
    """


class RequestRejected(ThrottleError, ValueError):
    """The server refused the request (400, 409 or 413; a 0.5 server also 415, 422, and 501
    for shrinking a lock); the server state is unchanged.

    Subclasses name the reason. This class itself is raised for a reason this client version
    does not know yet. ``status_code`` and ``text`` carry the server's answer.
    """

    def __init__(self, text: str, status_code: int = 400) -> None:
        super().__init__(text)
        self.status_code = status_code
        self.text = text


class UnknownSemaphore(RequestRejected):
    """The semaphore is not in the server's configuration."""


class InvalidCount(RequestRejected):
    """The lock count is below 1."""


class InvalidBody(RequestRejected):
    """The request body is not the JSON the route expects."""


class InvalidDuration(RequestRejected):
    """A duration did not parse or is out of the server's range (at most a hundred years)."""


class InvalidRequest(RequestRejected):
    """The path or query is malformed (bad peer id, missing parameter, bad percent-encoding)."""


class BodyTooLarge(RequestRejected):
    """The request body exceeds the server's size limit (413)."""


class CountTooLarge(RequestRejected):
    """The lock count exceeds the semaphore's ``max``: such a lock could never be granted."""


class LockHierarchyViolation(RequestRejected):
    """The semaphore's level is not strictly below the lowest level of the peer's locks.

    The server refuses such a request because granting it could deadlock; acquire locks in
    descending level order instead.
    """


class SecondPendingLock(RequestRejected):
    """The peer already waits for another lock; a peer may wait for at most one at a time."""


class LockCountChange(RequestRejected):
    """Growing a held lock, or asking another count for a pending one (shrinking is allowed)."""


class RestoreConflict(RequestRejected):
    """``restore`` for a peer the server knows with other locks than the ones restored."""


class CountOverflow(RequestRejected):
    """Restored counts would overflow a semaphore's sum."""


class InvalidName(RequestRejected):
    """A holder name is longer than 256 bytes of UTF-8 or holds control characters."""


class InvalidFencingToken(RequestRejected):
    """A restored fencing token is above the largest the server hands out (2^53 - 1)."""


class TooManyPeers(ThrottleError):
    """The server holds its maximum of live peers (503 ``Too many peers``, the server's
    ``--max-peers``) and refused to create another: ``new_peer``, or ``restore`` of a peer it
    no longer knows. The server state is unchanged.

    Raised at once, never retried: the server is up and answering, and a peer slot frees only
    when other clients release their peers or let them expire, which may take as long as their
    leases. Retrying for the whole ``retry_for`` would hide the cause and add load to a server
    that sheds it; whether and when to try again is the caller's decision. A
    ``PeerWithHeartbeat`` that fails to restore with this tries again at its next beat.
    ``status_code`` and ``text`` carry the server's answer.
    """

    def __init__(self, text: str = "Too many peers") -> None:
        super().__init__(text)
        self.status_code = 503
        self.text = text


class UnexpectedResponse(ThrottleError):
    """An answer the client cannot interpret: an unknown route (404, usually a wrong base URL),
    another unexpected status, or a server error (5xx) that persisted through all retries."""

    def __init__(self, text: str, status_code: int) -> None:
        super().__init__(f"{status_code}: {text}")
        self.status_code = status_code
        self.text = text


class Attempt(NamedTuple):
    """One server a request was sent to, and why it did not answer (``connection refused``,
    ``timed out``, ...)."""

    url: str
    reason: str


class ServerUnavailable(ThrottleError):
    """No answer from the server within ``retry_for``: it refused or dropped the connection,
    did not answer in time, or could not be found. Such failures are retried with backoff
    until ``retry_for`` has passed; this is raised after the last attempt (or at once for a
    failure no retry heals, such as a malformed URL).

    ``attempts`` lists each server tried with the last failure it gave, so the message reads
    ``server http://a:8000 unreachable within 60 s: connection refused``; ``retry_for`` is how
    long the client kept trying (``None`` for a failure that is not retried). A 5xx answer
    that persisted is no ``ServerUnavailable`` but an ``UnexpectedResponse``: the server is
    there and says what is wrong.
    """

    def __init__(self, attempts: Sequence[Attempt], retry_for: Optional[timedelta]) -> None:
        self.attempts = list(attempts)
        self.retry_for = retry_for
        super().__init__(_unavailable_message(self.attempts, retry_for))

    def __reduce__(self) -> Tuple[Any, ...]:
        # Pickled by its arguments (e.g. from a worker process to its parent), not its message.
        return (type(self), (self.attempts, self.retry_for))


def _unavailable_message(attempts: Sequence[Attempt], retry_for: Optional[timedelta]) -> str:
    within = "" if retry_for is None else f" within {retry_for.total_seconds():g} s"
    if len(attempts) == 1:
        url, reason = attempts[0]
        return f"server {url} unreachable{within}: {reason}"
    tried = ", ".join(f"{url}: {reason}" for url, reason in attempts)
    return f"no member reachable{within} ({tried})"


def transport_reason(error: BaseException) -> str:
    """What went wrong with a connection, in a few words, for ``ServerUnavailable``: the
    operating system's error found in ``error`` or the errors it wraps (``requests`` wraps
    ``urllib3``'s, which wraps the socket's), else ``error``'s own message."""
    for cause in _causes(error):
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        if isinstance(cause, TimeoutError) or type(cause).__name__.endswith("Timeout"):
            return "timed out"
        if isinstance(cause, (ConnectionResetError, BrokenPipeError)):
            return "connection reset"
        if isinstance(cause, socket.gaierror):
            return f"name not resolved ({cause.strerror or cause})"
        if isinstance(cause, ssl.SSLError):
            return f"TLS failed ({cause.reason or cause})"
        if isinstance(cause, OSError) and cause.errno in _ERRNO_REASONS:
            return _ERRNO_REASONS[cause.errno]
    return str(error) or type(error).__name__


_ERRNO_REASONS = {
    errno.ECONNREFUSED: "connection refused",
    errno.ETIMEDOUT: "timed out",
    errno.EHOSTUNREACH: "host unreachable",
    errno.ENETUNREACH: "network unreachable",
}


def _causes(error: BaseException) -> Iterator[BaseException]:
    """``error`` and what it wraps: its cause, its context, the ``reason`` of a ``urllib3``
    error and exceptions among its arguments, breadth first, each once."""
    queue = [error]
    seen: Set[int] = set()
    while queue and len(seen) < 16:
        current = queue.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        wrapped = [current.__cause__, current.__context__, getattr(current, "reason", None)]
        wrapped.extend(current.args)
        queue.extend(e for e in wrapped if isinstance(e, BaseException))


# The first words of an error body, as fixed by the server's contract, and the class they map
# to. Matching on a prefix (not the whole text) leaves the server free to add detail after it.
_BY_PREFIX: Dict[str, Type[RequestRejected]] = {
    "Unknown semaphore": UnknownSemaphore,
    "Invalid count": InvalidCount,
    "Invalid body": InvalidBody,
    "Invalid duration": InvalidDuration,
    "Invalid request": InvalidRequest,
    "Body too large": BodyTooLarge,
    "Count too large": CountTooLarge,
    "Lock hierarchy violation": LockHierarchyViolation,
    "Second pending lock": SecondPendingLock,
    "Lock count change": LockCountChange,
    "Restore conflict": RestoreConflict,
    "Count overflow": CountOverflow,
    "Invalid name": InvalidName,
    "Invalid fencing token": InvalidFencingToken,
}

# Throttle 0.5 (the server this one replaces) words the same refusals differently, and its HTTP
# layer (axum) words its own refusals of malformed requests; both as 0.5.13 answers them. A
# client talking to a 0.5 server raises the same classes as against this one. Two differ in
# what 0.5 decides, not only in words: it calls growing a held lock a lock hierarchy violation
# (as its text says, so it stays one here), and it refuses shrinking one with a 501.
_BY_PREFIX_0_5: Dict[str, Type[RequestRejected]] = {
    "Lock can never be acquired": CountTooLarge,
    "Lock hierachy violation": LockHierarchyViolation,  # sic
    "Already pending": SecondPendingLock,
    "Lock count must be a positive number": InvalidCount,
    "Restore is not allowed to change existing peers": RestoreConflict,
    "Shrinking the count of an existing lock": LockCountChange,
    "Failed to parse the request body as JSON": InvalidBody,  # 400
    "Failed to deserialize the JSON body into the target type": InvalidBody,  # 422
    "Expected request with `Content-Type: application/json`": InvalidBody,  # 415
    "Failed to buffer the request body": BodyTooLarge,  # 413
    "Failed to deserialize query string": InvalidRequest,  # 400
    "Invalid URL": InvalidRequest,  # 400, e.g. a peer id that is no number
}

# What axum's text says of a JSON body or query string whose duration did not parse: 0.5's
# `Invalid duration`.
_DURATION_0_5 = "expected a duration"

# Statuses that refuse a request: ours, and the ones 0.5's HTTP layer uses besides (415
# Unsupported Media Type, 422 Unprocessable Content).
_REJECTING_STATUSES = (400, 409, 413, 415, 422)


#: The header with which the server marks the ``Unknown peer`` of a peer that expired.
PEER_STATE_HEADER = "Throttle-Peer-State"


def error_for(
    status_code: int, text: str, peer_state: Optional[str] = None
) -> Optional[ThrottleError]:
    """The exception for an error answer that must not be retried, or ``None`` if the answer
    is not such an error (success, or a status the retry policy decides about).

    ``peer_state`` is the answer's ``Throttle-Peer-State`` header: ``expired`` turns an
    ``Unknown peer`` into ``LockLost``."""
    if status_code == 401:
        return Unauthorized(text.strip())
    if status_code == 503 and text.startswith("Too many peers"):
        return TooManyPeers(text.strip())
    text = text.strip()
    if status_code == 501 and text.startswith("Shrinking the count of an existing lock"):
        return LockCountChange(text, status_code)
    if status_code in _REJECTING_STATUSES:
        if text.startswith("Unknown peer"):
            if status_code == 400 and peer_state == "expired":
                return LockLost(text)
            return UnknownPeer(text)
        return _rejection_class(text)(text, status_code)
    return None


def _rejection_class(text: str) -> Type[RequestRejected]:
    """The class for the text of a refusal: by its first words, ours or 0.5's."""
    for prefix, cls in _BY_PREFIX.items():
        if text.startswith(prefix):
            return cls
    for prefix, cls in _BY_PREFIX_0_5.items():
        if text.startswith(prefix):
            if cls in (InvalidBody, InvalidRequest) and _DURATION_0_5 in text:
                return InvalidDuration
            return cls
    return RequestRejected
