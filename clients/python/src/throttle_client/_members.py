"""Which member of a cluster a client's requests go to, and when a request gives up.

Shared by the blocking and the asyncio client; nothing here does I/O or reads a clock of its own
(the clock is a parameter). A client is given one server URL or the URLs of a cluster's members
(``parse_servers``). ``Members`` is the client's memory across requests: which member it sends
to, and which member id each URL answered with, so it can follow the leader the members name in
their answers. ``Attempts`` is one request's schedule: the next member after a failure, a
jittered pause after each round of all members, and the error once ``retry_for`` is spent,
naming every member tried and why it failed.

It is not the waiting loop of a pending lock (``_waiting``), which waits on the server's side
and counts against a lock's ``timeout``, not ``retry_for``.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Callable, List, Mapping, Optional, Sequence, Tuple, Type, Union

from ._backoff import Backoff
from ._wire import header
from .errors import Attempt, ServerUnavailable, UnexpectedResponse

#: The environment variable a client given no server URL reads them from: one URL, or the
#: members of a cluster separated by commas.
URL_VARIABLE = "THROTTLE_URL"

#: The server of a client given no URL while ``THROTTLE_URL`` is unset: the server's own
#: default address and port.
DEFAULT_URL = "http://127.0.0.1:8000"

#: The header of a cluster member's answers that carries its id.
MEMBER_HEADER = "Throttle-Member"

#: The header of a cluster member's answers that carries the id of the member it knows leads.
LEADER_HEADER = "Throttle-Leader"

#: What a client takes as its server: a URL, URLs separated by commas, or a sequence of URLs.
Servers = Union[str, Sequence[str]]

#: The longest a client of several members waits for an answer beyond its long poll. A member
#: answers within its commit timeout (3 s, then ``503 No quorum``); one silent for longer is
#: paused, cut off by a firewall that drops, or on a machine that is gone, and the request
#: moves on to the next member rather than wait out ``request_timeout`` while the others elect
#: a leader.
MEMBER_ANSWER_TIMEOUT = timedelta(seconds=5)

#: Seconds during which a leader hint does not lead back to a member that failed: longer than
#: an election, short enough to follow a member that is back and leads again.
AVOID_AFTER_FAILURE = 5.0

# The first pause after a round of failures, and the longest, in seconds.
_FIRST_PAUSE = 0.05
_LONGEST_PAUSE = 2.0


def parse_servers(servers: Optional[Servers], environ: Mapping[str, str]) -> Tuple[str, ...]:
    """The member URLs of ``servers``, in order: a URL, several separated by commas, or a
    sequence of URLs. ``None`` takes ``THROTTLE_URL`` from ``environ``, else ``DEFAULT_URL``.
    Blanks around each URL are dropped; ``ValueError`` if no URL is left."""
    if servers is None:
        servers = environ.get(URL_VARIABLE, "").strip() or DEFAULT_URL
    parts = [servers] if isinstance(servers, str) else list(servers)
    urls: List[str] = []
    for part in parts:
        if not isinstance(part, str):
            raise TypeError(f"a server URL must be a string, got {part!r}")
        urls.extend(url.strip() for url in part.split(",") if url.strip())
    if not urls:
        raise ValueError(f"no server URL in {servers!r}")
    return tuple(urls)


def servers_key(servers: Optional[Servers], environ: Mapping[str, str]) -> str:
    """``servers`` as one string, the same for every spelling of the same members in the same
    order: the key of the clients and peers a process shares per server."""
    return ",".join(parse_servers(servers, environ))


class Members:
    """A client's members and the one its requests go to, shared by all its requests.

    Requests go to one member at a time: the first one given, until it fails (then the next),
    or until an answer names another member as the leader. Any member answers every route, so
    following the leader only saves the hop from a follower to it. Answers carry the member's
    id and the leader's (``MEMBER_HEADER``, ``LEADER_HEADER``); the client learns which URL is
    which member from them, and while the leader's URL is unknown it tries the members whose
    id it has not seen yet, one per request, so it reaches the leader after at most one answer
    of each member, without asking anyone extra. A server without these headers (a single
    server, Throttle 0.5, a load balancer) leaves the member in use as it is.

    For ``AVOID_AFTER_FAILURE`` a hint does not lead back to a member that failed: the others
    go on naming a killed leader until they elect another.

    Threads and tasks share it without a lock: each change is a few assignments, and a lost
    race only sends one request to a member that answers it too.
    """

    def __init__(
        self, urls: Sequence[str], clock: Callable[[], float] = time.monotonic
    ) -> None:
        if not urls:
            raise ValueError("a client needs at least one server URL")
        self.urls: Tuple[str, ...] = tuple(urls)
        self._clock = clock
        self._ids: List[Optional[int]] = [None] * len(self.urls)
        self._failed: List[Optional[float]] = [None] * len(self.urls)
        self._current = 0

    @property
    def current(self) -> int:
        """The index of the member requests go to now."""
        return self._current

    def answered(self, index: int, headers: Optional[Mapping[str, str]]) -> None:
        """Learn from an answer (any status) of member ``index``: its id, and the leader it
        names. Requests go to that leader's URL if it is known, else to the next member of
        unknown id; to member ``index`` itself if it leads."""
        if len(self.urls) == 1 or headers is None:
            return
        member = _member_id(header(headers, MEMBER_HEADER))
        leader = _member_id(header(headers, LEADER_HEADER))
        if member is not None:
            self._ids[index] = member
        self._failed[index] = None
        if member is None or leader is None:
            return
        if member == leader:
            self._current = index
            return
        target = self._towards(leader, index)
        if target is not None:
            self._current = target

    def failed(self, index: int) -> None:
        """Member ``index`` did not answer (or has no quorum): move on to the next, unless
        another request moved on already."""
        self._failed[index] = self._clock()
        if self._current == index:
            self._current = (index + 1) % len(self.urls)

    def _towards(self, leader: int, index: int) -> Optional[int]:
        """Where to go for ``leader``, named by member ``index``: a member known to have its
        id, else the next member after ``index`` of unknown id; one that did not fail lately.
        ``None`` to stay."""
        now = self._clock()

        def usable(other: int) -> bool:
            failed = self._failed[other]
            return failed is None or now - failed >= AVOID_AFTER_FAILURE

        count = len(self.urls)
        known = [other for other in range(count) if self._ids[other] == leader]
        if known:
            return next((other for other in known if usable(other)), None)
        later = ((index + step) % count for step in range(1, count))
        return next((o for o in later if self._ids[o] is None and usable(o)), None)


class Attempts:
    """The schedule of one request over its client's ``Members``.

    Each failure moves the request to the next member at once; after a round of all members
    comes a jittered pause, from 50 ms doubling up to 2 s. Every member is asked at least
    once, however short ``retry_for``. The pause that would reach past ``retry_for`` is cut to
    end at it and one last round follows, so a request keeps trying for all of ``retry_for``.
    Past it, a round under way ends at its next failure.

    ``failed`` raises the request's error once it gives up: a 5xx answer that may heal
    (``UnexpectedResponse``) if the last member gave one, else ``ServerUnavailable`` naming
    each member tried with the last reason it failed for (``connection refused``, ``no quorum
    (...)``).
    """

    def __init__(
        self,
        members: Members,
        retry_for: timedelta,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._members = members
        self._retry_for = retry_for
        self._clock = clock
        self._started = clock()
        self._budget = retry_for.total_seconds()
        self._backoff = Backoff(first=_FIRST_PAUSE, cap=_LONGEST_PAUSE)
        self._failures: List[Optional[Exception]] = [None] * len(members.urls)
        self._asked = 0
        self._asked_all = False
        self._last_round = False

    def target(self) -> int:
        """The index of the member to send the next attempt to."""
        return self._members.current

    def failed(self, index: int, failure: Exception) -> float:
        """Record that member ``index`` failed with ``failure`` (a single-member
        ``ServerUnavailable``, or the ``UnexpectedResponse`` of a 5xx that may heal). Returns
        the seconds to pause before the next attempt (``0.0``: at once); raises the request's
        error once it gives up."""
        self._failures[index] = failure
        self._members.failed(index)
        elapsed = self._clock() - self._started
        count = len(self._failures)
        self._asked += 1
        if self._asked < count:
            if self._asked_all and not self._last_round and elapsed >= self._budget:
                raise self._error(failure)
            return 0.0
        self._asked = 0
        self._asked_all = True
        remaining = self._budget - elapsed
        if self._last_round or remaining <= 0:
            raise self._error(failure)
        pause = self._backoff.next_delay()
        if pause >= remaining:
            self._last_round = True
            return remaining
        return pause

    def _error(self, last: Exception) -> Exception:
        """The request's error after ``last`` ended it."""
        if isinstance(last, UnexpectedResponse) and not is_no_quorum(last):
            # The member that answered last is up, and says what is wrong.
            return last
        attempts: List[Attempt] = []
        kind: Type[ServerUnavailable] = ServerUnavailable
        cause: Optional[BaseException] = None
        for url, failure in zip(self._members.urls, self._failures):
            if failure is None:
                continue
            attempts.append(Attempt(url, _reason(failure)))
            if isinstance(failure, ServerUnavailable):
                kind, cause = type(failure), failure.__cause__
        error = kind(attempts, self._retry_for)
        error.__cause__ = cause
        return error


def is_no_quorum(failure: Exception) -> bool:
    """Whether ``failure`` is a member's 503 ``No quorum``: it is cut off from the others."""
    return (
        isinstance(failure, UnexpectedResponse)
        and failure.status_code == 503
        and failure.text.startswith("No quorum")
    )


def _reason(failure: Exception) -> str:
    """Why a member failed, in a few words, for ``ServerUnavailable``'s attempts."""
    if isinstance(failure, ServerUnavailable) and failure.attempts:
        return failure.attempts[-1].reason
    if is_no_quorum(failure):
        assert isinstance(failure, UnexpectedResponse)
        why = failure.text.strip()[len("No quorum") :].lstrip(":").strip()
        return f"no quorum ({why})" if why else "no quorum"
    if isinstance(failure, UnexpectedResponse):
        return f"{failure.status_code} {failure.text.strip()}"
    return str(failure) or type(failure).__name__


def _member_id(value: Optional[str]) -> Optional[int]:
    """A member id from a header, ``None`` for none or anything but plain decimal digits."""
    if value is None:
        return None
    value = value.strip()
    if not (value.isascii() and value.isdigit()) or len(value) > 20:
        return None
    return int(value)
