"""Soak and chaos test of the Throttle server (Python 3.11+, as CI runs it).

    scripts/soak [--duration 60s] [--clients 32] [--workers 16] [--seed N]
                 [--restarts term,kill] [--grace 3s] [--binary PATH] [--rss-slack-mib 8]
                 [--keep]
    scripts/soak --cluster [--members 3] [--duration 2m] [--chaos kill-leader,kill-follower,
                 pause,partition] [--clients 32] [--workers 16] [--seed N] [--binary PATH]

`scripts/soak` runs this file in the Python client's virtual environment, with the client of
this checkout installed: the soak speaks the client's wire format (`throttle_client._wire`
builds every request and reads the answers) and checks the end state through
`throttle_client.Client`, but sends the requests of the clients it simulates over connections
of its own (see `Connection`: they measure what the client hides). The server is started by the
repository's harness (scripts/harness/throttle_harness.py). mypy --strict checks this file
(clients/python/run-tests).

Builds the release binary (unless --binary is given), writes a configuration with several
semaphores of different max and level, starts the server on a free loopback port with
`--state-file` in a temporary directory, and runs many client threads against it for --duration:

- workers take one or two locks (respecting the lock hierarchy) with random counts, some with
  block_for long polls, hold them briefly, check mid-hold that the server still counts them, and
  release them (lock by lock, or the whole peer at once);
- crashers do the same with short leases but vanish mid-lock, never releasing: their peers must
  expire and give the count back;
- heartbeaters hold locks for several seconds with short leases kept alive by heartbeats;
- expirers use the server as a rate limiter (`api = 3`, fewer slots than expirers): a lock on a
  fresh peer with a 1 s lease, never released, left to expire.

**Restarts** (--restarts, spread evenly over the run; default `term,kill`):

- `term`: a graceful restart. The clients pause (requests in flight finish, long polls keep
  waiting), GET /peers/ is listed, the server gets SIGTERM (it answers the long polls, writes the
  state file and must exit 0) and starts again on the same port with the same state file. The
  peers listed after the start must be the ones listed before with the same acquired locks
  (modulo leases: each shortened by the time between the listings; a peer whose lease ran out
  in between may be gone; a lock pending before may be acquired after), and no holder may need a
  restore: `Unknown peer` for a peer whose lease the client knows to be running is a violation.
- `kill`: SIGKILL, then a start with the same state file, which still says "running": the
  server must start a grace period of the longest lease granted (3 s: the clients' longest
  lease) capped by --grace. Holders restore (POST /restore) when a request answers `Unknown
  peer`; newcomers must not be granted meanwhile.
- `lost`: SIGKILL and the state file deleted, so the start is a first start and only --grace
  protects the holders (README: "a state file that is lost ... --grace is the remedy").

After every start a probe peer asks for the semaphore `probe`, which no client uses: after a
crash it must pend (202) and be granted only when the grace period the log announces has
passed; after a graceful restart it must be granted at once. Before a `kill` the state file
must record a longest lease of at least the clients' longest one.

**Exclusivity.** Every client records in a shared ledger (a list behind a lock; the clients are
threads of this process, so one monotonic clock) when it starts and stops holding each lock,
and the ledger fails the run on any moment when the holders of a semaphore hold more than its
max: `mutex = 1`, `gpu pool/ä = 2` and all the others, including across restarts. What a
client records is only what it knows for sure, so that any overlap is a real double grant:

- it holds from the moment the 200 arrived (the server granted before that) until just before
  it sends the release, or until it vanishes (a crasher);
- it knows its lease runs at least until the last request that prolonged the peer was *sent*
  plus the lease (the server set the deadline when the request arrived). An answer `Unknown
  peer` that came after that point means the lease may have run out: the client then counts
  its locks as lost from that point on (it stopped holding when its lease may have ended, less
  5 ms: the state file keeps leases to the millisecond) and starts over with a new peer instead
  of restoring. An answer before that point means the server forgot a live peer: after a crash
  the client restores and keeps holding (the grace period protects it, since every lease is at
  most --grace); without a crash it is a violation;
- a release that answers `Unknown peer`, and the removal of a whole peer (200 either way), end
  the hold at the earlier of the release and the lease the client knows of.

The ledger is swept once a second for the past minute, and once over the whole run at the end;
an overlap is reported with every party's client, peer, count, times, how its hold ended, its
restores and its last requests. The ledger is also written to holds.jsonl in the work
directory, which is kept when the run fails.

A sampler polls /metrics and checks at every sample that no semaphore's acquired count exceeds
its max (no allowance: restores come only from live holders, so they never overcommit).

At the end every client releases, abandoned peers expire, and the test checks that no peer is
left (GET /peers/ is []), every remainder equals max, nothing is pending, no request got a 5xx,
no client found the server had lost its lock, and the server's resident memory (VmRSS from /proc)
returned near its start: at most --rss-slack-mib MiB above the last server's RSS right after it
started with all its threads. The slack covers the allocator arenas and worker stacks that a
server keeps once it has been loaded: measured at +2.3 to +2.5 MiB after 20 to 30 s and +3.0 MiB
after 10 minutes (3.2 MiB at the start, 6.2 MiB at the end), so it hardly grows with the length
of the run. A 10-minute soak creates about 14,000 peers: leaking the 0.4 KB a peer costs would
add about 5.5 MiB on top and fail the check. Finally the server is stopped with SIGTERM and must
exit 0.

Prints a summary (operations, clients crashed, restarts and what each kept, holds and their
peak per semaphore, counts lost, peak memory) and exits 1 on any violation, 2 on a setup
failure. Linux only (/proc, signals). Loopback only; every wait is bounded.

**--cluster.** The same clients, ledger and checks against the members of one cluster (the
harness's `Cluster`: one data directory each, every link between members through the harness's
proxy), with no restarts of the whole state, no state file, no grace period and no probe. Each
client talks to one member (the clients are spread over all of them) and moves to the next on
a transport error or a `503 No quorum`; a request to a paused member waits for it (30 s and
more of timeout), since sending it again elsewhere while the first may still be applied could
apply a stale release after a newer grant. The faults (--chaos, spread evenly over the run):

- `kill-leader`: SIGKILL of the leader, restarted in its directory on its port 0.5 to 1.5 s later;
- `kill-follower`: the same for a follower;
- `pause`: SIGSTOP of the leader for 5 s (longer than any lease: every lease it knew of runs out
  meanwhile), then SIGCONT;
- `partition`: the leader cut off from the others for 5 s (the proxy closes and refuses their
  links both ways), then healed.

The kinds take turns, one fault per 30 s of the run (each at least once: 4 in 2 minutes, 20 in
10).
After each, the members that run must agree on a leader within 30 s. A cluster forgets nothing
it acknowledged, so clients never restore: `Unknown peer` before the lease the client knows of
(on a heartbeat, a verify, an acquire or a release) is a violation, whatever happened, and
after it the client was merely too slow (it waited on a paused member). Leases are never cut
short, so a client counts on its lease exactly as against one server. On top of the ledger:

- **fencing tokens**: every grant is recorded with its token and the window in which the server
  granted it (from the first sending of the last request that found it not granted, or of the
  one that got 200, to the 200's arrival); per semaphore, of two grants where one certainly came
  first, its token must be the smaller; a verify (an idempotent repeat) must answer the token
  of the grant;
- **capacity**: every member's /metrics (acquired at most max, on whichever prefix of the log it
  applied) and a linearizable /remainder from one member in turn (never below 0);
- **the end**: once the members agree on a leader and the abandoned peers expired, every
  member lists no peer, has every remainder at max and nothing pending, and exits 0 on SIGTERM.

The summary gives, per fault, how long grants paused: from the fault to the first grant whose
request was sent after it (the failover time, for a fault of the leader). Figures only: the
run fails on violations, never on a time.

The old chaos step, SIGKILL and a start without state file or grace period, is gone: there a
newcomer may be granted what a revenant then restores, by design (it is what issue 14 closed),
so it cannot pass a strict exclusivity check; `kill` goes through the same restores (the
"running" marker holds no peers, so every holder restores), and `--grace 0s` shows what an
unprotected crash does: the run is then expected to fail (see --grace).
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import re
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter, deque
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable, Deque, Dict, List, Optional, Sequence, Set, TextIO, Tuple

import requests
from throttle_client import Client, LockLost, PeerState, ThrottleError, UnknownPeer, _wire
from throttle_client.errors import PEER_STATE_HEADER, error_for

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts" / "harness"))
import throttle_harness  # noqa: E402

# name -> (max, level). Different sizes and levels; one name that needs percent-encoding.
SEMAPHORES = {
    "mutex": (1, 3),
    "small": (3, 2),
    "db": (20, 1),
    "big": (50, 0),
    "gpu pool/ä": (2, 0),
    "api": (3, 0),
    "probe": (1, 0),  # the soak's own probe of the grace period after each start; no client
}
# Semaphores the lock-taking roles use, with weights (api is the rate limiter's). Heartbeaters
# hold for seconds, so they keep to the large ones: a mutex held that long would starve the rest.
LOCKABLE = {"mutex": 1, "small": 2, "db": 3, "big": 3, "gpu pool/ä": 1}
LONG_HOLD = {"big": 1}
# The longest lease any client (and the probe) asks for. The exclusivity check relies on every
# lease being at most the grace period after a crash: a holder that restores within its lease
# restores within the grace period.
MAX_LEASE = 3.0
# A client counts on its lease only up to this long before it ends: the state file keeps leases
# and its time stamp to the millisecond, so a lease carried across a graceful restart may end up
# to 2 ms early.
LEASE_MARGIN = 0.005
KINDS = ("term", "kill", "lost")
# The faults of --cluster, and how long a pause or a partition lasts: longer than any lease, so
# that every lease a paused or cut-off leader knows of runs out meanwhile.
CHAOS = ("kill-leader", "kill-follower", "pause", "partition")
PAUSE = MAX_LEASE + 2.0
CHAOS_EVERY = 30.0


# The command line's durations and the server's log are read here; the client only writes
# durations (`_wire.format_duration`), it never reads one.
def parse_duration(text: str) -> float:
    """Seconds of a duration on the command line: `45s`, `10m`, `1h`, `500ms`, or `7`."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h)?", text.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 45s, 10m, 1h)")
    value, unit = float(match.group(1)), match.group(2) or "s"
    return value * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]


def parse_restarts(text: str) -> List[str]:
    kinds = [kind.strip() for kind in text.split(",") if kind.strip()]
    if kinds == ["none"]:
        return []
    for kind in kinds:
        if kind not in KINDS:
            raise argparse.ArgumentTypeError(
                f"not a kind of restart: {kind!r} (term, kill, lost, or none)")
    return kinds


def parse_humantime(text: str) -> float:
    """Seconds of a duration as the server logs it (humantime: `3s`, `2s 999ms`, `1m 30s`)."""
    units = {"h": 3600, "m": 60, "s": 1, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}
    total = 0.0
    for value, unit in re.findall(r"(\d+)(ms|us|ns|h|m|s)", text):
        total += int(value) * units[unit]
    return total


def lease(seconds: float) -> timedelta:
    """Seconds as the `timedelta` the client's wire format takes (sent in whole ms)."""
    return timedelta(seconds=seconds)


def unknown_peer(status: int, text: str, peer_state: Optional[str] = None) -> bool:
    """Whether an answer says the server does not know the peer, as the client reads it:
    `UnknownPeer`, or `LockLost` for a peer the server says expired. The soak judges both by
    what it knows of the lease (see `Client.on_unknown_peer`), not by the server's word."""
    return isinstance(error_for(status, text, peer_state), (UnknownPeer, LockLost))


class Violation(Exception):
    """A finding that ends what the thread was doing; reported by the thread's runner."""


class PeerGone(Exception):
    """The client's lease may have run out: its locks are gone, it starts over."""


class Restart:
    """One restart of the server, for the clients' judgement and the summary."""

    def __init__(self, kind: str, at: float) -> None:
        self.kind = kind
        self.at = at  # seconds since the start of the run
        self.generation = 0  # the server generation it started (set once it has)
        self.downtime: Optional[float] = None
        self.grace: Optional[float] = None  # seconds the restarted server announced, or None
        self.notes: List[str] = []  # what the checks of this restart found, for the summary


class World:
    """Everything the threads share: the server's address and state, counters, violations."""

    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.lock = threading.Lock()
        self.idle = threading.Condition(self.lock)  # notified when a request finishes
        self.host = "127.0.0.1"
        self.port = 0
        self.up = threading.Event()  # set while clients may send
        self.inflight = 0  # requests sent by gated connections, long polls excepted
        self.inflight_long = 0  # long polls sent by gated connections
        self.generation = 0  # incremented by every restart
        self.restarts: List[Restart] = []  # in order
        self.stop = threading.Event()  # clients finish their round and release
        self.ops: Counter[Tuple[str, int]] = Counter()  # (route, status)
        self.events: Counter[str] = Counter()  # named happenings, for the summary
        self.violations: List[str] = []
        self.transport_errors_up = 0
        self.transport_errors_down = 0
        self.transport_errors_stale = 0
        self.base = time.monotonic()  # the zero of the times in reports
        self.ledger = Ledger(self, workdir / "holds.jsonl")
        # With --cluster: the members, every grant with its fencing token, the chaos events.
        self.cluster: Optional[throttle_harness.Cluster] = None
        self.grants: List[Grant] = []
        self.chaos: List[Chaos] = []
        self.transport_errors_cluster = 0

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def count(self, event: str, n: int = 1) -> None:
        with self.lock:
            self.events[event] += n

    def violation(self, text: str) -> None:
        with self.lock:
            if len(self.violations) < 1000:
                self.violations.append(f"{time.strftime('%H:%M:%S')} {text}")
        print(f"VIOLATION: {text}", file=sys.stderr, flush=True)

    def rel(self, t: float) -> str:
        """A monotonic time as seconds into the run, for reports."""
        return f"+{t - self.base:.3f}s"

    def kinds_between(self, older: int, newer: int) -> List[str]:
        """The kinds of the restarts after server generation `older` up to `newer`."""
        with self.lock:
            return [r.kind for r in self.restarts if older < r.generation <= newer]

    def pause(self, timeout: float = 10.0) -> bool:
        """Stops the clients from sending and waits until their requests in flight (long polls
        excepted) are answered. Returns False if some were still in flight at the timeout.
        Long polls are left waiting, for the shutdown to answer (see settle_long_polls)."""
        deadline = time.monotonic() + timeout
        with self.idle:
            self.up.clear()
            while self.inflight and time.monotonic() < deadline:
                self.idle.wait(max(0.0, deadline - time.monotonic()))
            return self.inflight == 0


class Connection:
    """One keep-alive HTTP connection of one client thread, riding out server restarts.

    The requests are the Python client's (`throttle_client._wire` builds them), but they go
    over `http.client` rather than through `throttle_client.Client`, because the soak measures
    what the client hides: the moment each request was sent and its answer arrived (the
    ledger's proof of a lease, the probe's timing of the grace period), every status as it came
    (a 5xx is a violation here, a retry there), every transport error by server generation,
    and `Unknown peer` answers (the client restores the peer itself). It also pauses for the
    soak's restarts, which the client cannot be told about.

    A gated connection (the clients', the sampler's) sends only while `world.up` is set and
    counts its requests in flight, so a restart can pause it; an ungated one (the soak's own
    checks) sends at once and fails after three transport errors."""

    def __init__(self, world: World, gated: bool = True) -> None:
        self.world = world
        self.gated = gated
        self.conn: Optional[http.client.HTTPConnection] = None
        self.conn_generation = 0  # the server generation the connection was opened to
        self.generation = 0  # the server generation of the last answer
        self.sent = 0.0  # when the last request was sent (monotonic)
        self.answered = 0.0  # when its answer had arrived
        self.peer_state: Optional[str] = None  # the last answer's Throttle-Peer-State header
        self.history: Deque[str] = deque(maxlen=8)  # the last answers, for violation reports
        self.holds: Dict[str, Hold] = {}  # the owner's open holds: every answer is noted in them
        # With --cluster: the member this connection talks to (an id, from 1), when the first
        # attempt of the last request was sent (its retries on other members come later), and
        # the last answer's Fencing-Token.
        self.member = 1
        self.first_sent = 0.0
        self.fencing: Optional[int] = None

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def request(
        self,
        route: str,
        request: _wire.Request,
        timeout: float = 30.0,
        deadline: Optional[float] = None,
    ) -> Tuple[int, str]:
        """Sends until a server answers. Returns (status, text). Connection errors while the
        server is down wait for it; any 5xx is a violation. `deadline` bounds the whole call."""
        world = self.world
        if world.cluster is not None:
            return self.request_member(world.cluster, route, request, timeout, deadline)
        method, path = request.method, request.path
        deadline = deadline or time.monotonic() + 120
        long_poll = request.block_for is not None
        attempt = 0
        while True:
            attempt += 1
            if time.monotonic() > deadline:
                raise Violation(f"{method} {path}: no answer before the deadline")
            if self.gated:
                if not world.up.wait(timeout=max(0.0, deadline - time.monotonic())):
                    continue
                with world.lock:
                    if not world.up.is_set():
                        continue
                    generation = world.generation
                    if long_poll:
                        world.inflight_long += 1
                    else:
                        world.inflight += 1
            else:
                generation = world.generation
            try:
                if self.conn is None:
                    self.conn = http.client.HTTPConnection(world.host, world.port, timeout=timeout)
                    self.conn_generation = generation
                self.conn.timeout = timeout
                if self.conn.sock is not None:
                    self.conn.sock.settimeout(timeout)
                data = None if request.body is None else request.body.encode()
                self.sent = time.monotonic()
                self.conn.request(method, path, body=data, headers=request.headers(None))
                response = self.conn.getresponse()
                text = response.read().decode("utf-8", "replace")
                status = response.status
                self.peer_state = response.getheader(PEER_STATE_HEADER)
                self.answered = time.monotonic()
            except (OSError, http.client.HTTPException) as error:
                # A connection to a server that has since been stopped fails once: not a finding.
                stale = self.conn_generation != generation
                self.close()
                with world.lock:
                    if stale:
                        world.transport_errors_stale += 1
                    elif world.up.is_set() and world.generation == generation:
                        world.transport_errors_up += 1
                    else:
                        world.transport_errors_down += 1
                if not self.gated and attempt >= 3:
                    raise Violation(f"{method} {path}: transport error: {error!r}")
                if (self.gated and world.up.is_set() and world.generation == generation
                        and attempt >= 3):
                    # Two immediate retries cover a keep-alive connection the server closed;
                    # after that a live server that does not answer is a finding.
                    world.violation(f"{method} {path}: transport error while up: {error!r}")
                    time.sleep(0.2)
                continue
            finally:
                if self.gated:
                    with world.idle:
                        if long_poll:
                            world.inflight_long -= 1
                        else:
                            world.inflight -= 1
                        world.idle.notify_all()
            self.generation = generation
            line = (f"{world.rel(self.sent)}..{world.rel(self.answered)[1:]} {method} {path} "
                    f"-> {status} {text[:40]!r}")
            self.history.append(line)
            for hold in list(self.holds.values()):
                hold.events.append(line)
            with world.lock:
                world.ops[(route, status)] += 1
            if status >= 500:
                world.violation(f"{method} {path} -> {status} {text!r}")
            return status, text

    def request_member(
        self,
        cluster: throttle_harness.Cluster,
        route: str,
        request: _wire.Request,
        timeout: float,
        deadline: Optional[float],
    ) -> Tuple[int, str]:
        """`request` against a cluster: sends to this connection's member until one answers
        other than 503, moving to the next member on a transport error (a member killed,
        restarting) or a `503 No quorum` (a member cut off, or no leader yet). Neither is a
        finding; another 5xx is. `timeout` is generous, so that a request to a paused member
        waits for it rather than being sent again elsewhere while the first may still be
        applied. `deadline` bounds the whole call (an unanswered call is a violation)."""
        world = self.world
        method, path = request.method, request.path
        deadline = deadline or time.monotonic() + 120
        self.first_sent = 0.0
        failures = 0
        while True:
            if time.monotonic() > deadline:
                raise Violation(f"{method} {path}: no member answered before the deadline "
                                f"(last: {list(self.history)[-3:]})")
            if failures and failures % cluster.size == 0:
                time.sleep(0.05)  # every member refused once: give the cluster a moment
            try:
                if self.conn is None:
                    server = cluster.member(self.member)
                    self.conn = http.client.HTTPConnection("127.0.0.1", server.port,
                                                           timeout=timeout)
                self.conn.timeout = timeout
                if self.conn.sock is not None:
                    self.conn.sock.settimeout(timeout)
                data = None if request.body is None else request.body.encode()
                self.sent = time.monotonic()
                self.first_sent = self.first_sent or self.sent
                self.conn.request(method, path, body=data, headers=request.headers(None))
                response = self.conn.getresponse()
                text = response.read().decode("utf-8", "replace")
                status = response.status
                self.peer_state = response.getheader(PEER_STATE_HEADER)
                token = response.getheader(_wire.FENCING_TOKEN_HEADER)
                self.fencing = int(token) if token and token.isdigit() else None
                self.answered = time.monotonic()
            except (OSError, http.client.HTTPException):
                self.close()
                with world.lock:
                    world.transport_errors_cluster += 1
                self.move()
                failures += 1
                continue
            line = (f"{world.rel(self.sent)}..{world.rel(self.answered)[1:]} member "
                    f"{self.member} {method} {path} -> {status} {text[:40]!r}")
            self.history.append(line)
            for hold in list(self.holds.values()):
                hold.events.append(line)
            with world.lock:
                world.ops[(route, status)] += 1
            if status == 503 and text.startswith("No quorum"):
                self.close()
                self.move()
                failures += 1
                continue
            if status >= 500:
                world.violation(f"member {self.member}: {method} {path} -> {status} {text!r}")
            return status, text

    def move(self) -> None:
        """On to the next member (cluster only)."""
        cluster = self.world.cluster
        if cluster is not None:
            self.member = self.member % cluster.size + 1
            self.world.count("moves to another member")


class Grant:
    """A lock granted to a client of a cluster: its fencing token and when it was granted, at
    the earliest and at the latest, as the client knows it (`first_sent` of the last request
    that found it not yet granted, or of the one that got 200; the 200's arrival)."""

    def __init__(self, sem: str, token: Optional[int], earliest: float, latest: float,
                 who: str) -> None:
        self.sem = sem
        self.token = token
        self.earliest = earliest
        self.latest = latest
        self.who = who


def fencing_problems(grants: Sequence[Grant], base: float = 0.0) -> List[str]:
    """Grants of one semaphore whose fencing tokens do not grow in grant order: for every two
    grants where one certainly came first (its latest moment before the other's earliest), the
    first one's token must be the smaller. A grant without a token is a problem too."""
    problems = [f"{g.who} granted {g.sem!r} at +{g.latest - base:.3f}s without a fencing token"
                for g in grants if g.token is None]
    by_latest = sorted((g for g in grants if g.token is not None), key=lambda g: g.latest)
    by_earliest = sorted(by_latest, key=lambda g: g.earliest)
    highest: Optional[Grant] = None  # the largest token among the grants certainly before
    i = 0
    for grant in by_earliest:
        while i < len(by_latest) and by_latest[i].latest < grant.earliest:
            before = by_latest[i]
            if highest is None or (before.token or 0) > (highest.token or 0):
                highest = before
            i += 1
        if highest is not None and (highest.token or 0) >= (grant.token or 0):
            problems.append(
                f"fencing: {grant.sem!r} token {grant.token} granted to {grant.who} between "
                f"+{grant.earliest - base:.3f}s and +{grant.latest - base:.3f}s, after token "
                f"{highest.token} granted to {highest.who} by +{highest.latest - base:.3f}s")
    return problems


class Chaos:
    """One fault injected into a cluster, for the summary: when, to whom, and how long grants
    paused after it."""

    def __init__(self, kind: str, at: float, member: int, leader: Optional[int]) -> None:
        self.kind = kind
        self.at = at  # monotonic, when the fault began
        self.member = member
        self.leader = leader  # the leader before
        self.lasted = 0.0  # seconds until the member was back (restarted, resumed, healed)
        self.new_leader: Optional[int] = None  # the leader the members agreed on afterwards
        self.resumed: Optional[float] = None  # seconds from the fault to the next grant


class Hold:
    """One client holding one lock, as far as the client knows for sure."""

    def __init__(self, number: int, client: SoakClient, sem: str, count: int,
                 start: float) -> None:
        self.number = number
        self.client = client
        self.name = client.name
        self.peer = client.peer
        self.sem = sem
        self.count = count
        self.start = start
        self.generation = client.http.generation  # the server generation it began on
        # Set just before the release is sent: the hold ends by then.
        self.leaving: Optional[float] = None
        self.end: Optional[float] = None  # set when closed
        self.how: Optional[str] = None  # how it ended
        self.token: Optional[int] = None  # its fencing token (cluster only)
        # (time, server generation) of restores while held
        self.restores: List[Tuple[float, int]] = []
        self.events: Deque[str] = deque(
            [f"{client.world.rel(start)} holds {sem!r} x{count}"], maxlen=16)

    def known_end(self, now: float) -> float:
        """The end if closed; else how far it certainly lasts so far."""
        if self.end is not None:
            return self.end
        end = min(now, self.client.proven - LEASE_MARGIN)
        return end if self.leaving is None else min(end, self.leaving)

    def describe(self, world: World, now: float) -> str:
        end = self.known_end(now)
        until = f"until {world.rel(end)} ({self.how})" if self.end is not None else (
            f"still held, known until {world.rel(end)}")
        restores = ", ".join(f"{world.rel(t)} on server {g}" for t, g in self.restores)
        return (f"hold #{self.number} {self.name} peer {self.peer} {self.sem!r} x{self.count} "
                f"from {world.rel(self.start)} (server {self.generation}) {until}"
                + (f"; restored at {restores}" if restores else "")
                + "; its requests: " + " | ".join(self.events))

    def record(self, world: World) -> Dict[str, Any]:
        assert self.end is not None, "only a closed hold is recorded"
        return {
            "hold": self.number, "client": self.name, "peer": self.peer, "semaphore": self.sem,
            "count": self.count, "start": round(self.start - world.base, 6),
            "end": round(self.end - world.base, 6), "how": self.how,
            "server": self.generation,
            "restores": [[round(t - world.base, 6), g] for t, g in self.restores],
        }


class Ledger:
    """The shared log of who holds what, and the check that no semaphore ever had more
    holders than its max. Times are the clients' own knowledge (see the module docstring)."""

    WINDOW = 60.0  # closed holds are kept this long past their end for the running check

    def __init__(self, world: World, path: Path) -> None:
        self.world = world
        self.lock = threading.Lock()
        self.holds: Dict[str, List[Hold]] = {sem: [] for sem in SEMAPHORES}
        self.numbers = 0
        self.file: TextIO = open(path, "w", encoding="utf-8")
        self.recorded: Counter[str] = Counter()  # semaphore -> holds recorded
        self.crossed: Counter[str] = Counter()  # restart kind -> holds that lasted across one
        # semaphore -> most counts held at once, as found by the sweeps
        self.peak: Counter[str] = Counter()
        self.reported: Set[frozenset[int]] = set()
        self.overlaps = 0

    def enter(self, client: SoakClient, sem: str, count: int, start: float) -> Hold:
        with self.lock:
            self.numbers += 1
            hold = Hold(self.numbers, client, sem, count, start)
            self.holds[sem].append(hold)
            self.recorded[sem] += 1
        return hold

    def leaving(self, hold: Hold) -> float:
        """The holder is about to send its release: it holds no longer than now."""
        with self.lock:
            hold.leaving = time.monotonic()
            return hold.leaving

    def close(self, hold: Hold, end: float, how: str, generation: int) -> None:
        world = self.world
        with self.lock:
            if hold.leaving is not None:
                end = min(end, hold.leaving)
            hold.end = max(hold.start, end)
            hold.how = how
            for kind in set(world.kinds_between(hold.generation, generation)):
                self.crossed[kind] += 1
            self.file.write(json.dumps(hold.record(world), ensure_ascii=False) + "\n")

    def check(self, final: bool = False) -> None:
        """Sweeps every semaphore's holds; reports each group of holders above max once."""
        world = self.world
        with self.lock:
            now = time.monotonic()
            spans: Dict[str, List[Tuple[float, float, Hold]]] = {}
            for sem, holds in self.holds.items():
                spans[sem] = [(h.start, h.known_end(now), h) for h in holds]
                if not final:
                    open_starts = [h.start for h in holds if h.end is None]
                    horizon = min(open_starts + [now - self.WINDOW])
                    self.holds[sem] = [h for h in holds if h.end is None or h.end >= horizon]
        for sem, intervals in spans.items():
            maximum = SEMAPHORES[sem][0]
            peak, groups = sweep(intervals, maximum)
            with self.lock:
                self.peak[sem] = max(self.peak[sem], peak)
            for at, group in groups:
                key = frozenset(h.number for h in group)
                if key in self.reported:
                    continue
                self.reported.add(key)
                self.overlaps += 1
                held = sum(h.count for h in group)
                until = min(h.known_end(now) for h in group)
                world.violation(
                    f"exclusivity: {sem!r} (max {maximum}): {held} held at once from "
                    f"{world.rel(at)} to {world.rel(until)} by {len(group)} holders:\n    "
                    + "\n    ".join(h.describe(world, now) for h in group)
                    + "\n    restarts: " + restart_timeline(world))

    def finish(self) -> None:
        with self.lock:
            self.file.close()


def sweep(
    intervals: Sequence[Tuple[float, float, Hold]], maximum: int
) -> Tuple[int, List[Tuple[float, List[Hold]]]]:
    """(peak, groups) of `(start, end, hold)` intervals, half open: the highest sum of counts at
    one moment, and for every moment a start took the sum above `maximum`, (moment, holders)."""
    events: List[Tuple[float, int, int, Hold]] = []
    for start, end, hold in intervals:
        if end > start:
            events.append((start, 1, hold.number, hold))
            events.append((end, 0, hold.number, hold))
    events.sort(key=lambda event: event[:3])  # at the same moment, ends before starts
    active: Dict[int, Hold] = {}
    total, peak = 0, 0
    groups: List[Tuple[float, List[Hold]]] = []
    for at, starts, number, hold in events:
        if starts:
            active[number] = hold
            total += hold.count
            peak = max(peak, total)
            if total > maximum:
                groups.append((at, list(active.values())))
        elif active.pop(number, None) is not None:
            total -= hold.count
    return peak, groups


def restart_timeline(world: World) -> str:
    with world.lock:
        restarts = list(world.restarts)
    if not restarts:
        return "none"
    return ", ".join(
        f"{r.kind} at +{r.at:.3f}s (server {r.generation}, down {r.downtime or 0:.2f}s, "
        f"grace {'none' if r.grace is None else f'{r.grace:.3f}s'})" for r in restarts)


class SoakClient:
    """A simulated client process: one peer at a time, with what it believes it holds."""

    def __init__(self, world: World, rng: random.Random, role: str, name: str) -> None:
        self.world = world
        self.rng = rng
        self.role = role
        self.name = name
        self.http = Connection(world)
        self.peer_id: Optional[int] = None
        self.lease = MAX_LEASE  # expires_in of the current peer, seconds
        self.held: Dict[str, int] = {}  # semaphore -> count, as acquired
        self.holds = self.http.holds  # semaphore -> Hold in the ledger, for every lock held
        # The client's own view of its peer's deadline (monotonic): the server's deadline is at
        # least this, since the client's last prolonging request was sent before the server
        # set it, and the client's clock and the server's are the same (CLOCK_MONOTONIC).
        self.proven = 0.0
        self.peer_generation = 0  # server generation the peer was created or restored on

    @property
    def peer(self) -> int:
        """The current peer; only asked for while there is one."""
        if self.peer_id is None:
            raise Violation(f"{self.name} has no peer (a bug in the soak)")
        return self.peer_id

    # --- what the client knows ----------------------------------------------------------------

    def confirmed(self, prolonged: bool) -> None:
        """The last request found the peer alive; if it prolonged the peer, the lease runs at
        least until it was sent plus the lease."""
        sent = self.http.sent
        self.proven = max(self.proven, sent + self.lease if prolonged else sent)

    def enter(self, sem: str, count: int) -> None:
        self.held[sem] = count
        self.holds[sem] = self.world.ledger.enter(self, sem, count, self.http.answered)

    def leave(self, sem: str, end: float, how: str) -> None:
        self.held.pop(sem, None)
        hold = self.holds.pop(sem, None)
        if hold is not None:
            self.world.ledger.close(hold, end, how, self.http.generation)

    def leave_all(self, end: float, how: str) -> None:
        for sem in list(self.held):
            self.leave(sem, end, how)

    # --- requests with the restore protocol -------------------------------------------------

    def call(
        self,
        route: str,
        request: _wire.Request,
        timeout: float = 30.0,
        prolongs: bool = False,
    ) -> Tuple[int, str]:
        """A request about our own peer. On `Unknown peer`, restores it (with the same id) and
        asks again, or raises PeerGone (see on_unknown_peer)."""
        for _ in range(5):
            status, text = self.http.request(route, request, timeout=timeout)
            if status == 400 and unknown_peer(status, text, self.http.peer_state):
                self.on_unknown_peer()
                continue
            self.confirmed(prolongs and status in (200, 202))
            return status, text
        raise Violation(f"{request.method} {request.path}: still `Unknown peer` after 5 restores")

    def on_unknown_peer(self) -> None:
        """`Unknown peer`: expected after a crash, or once the lease may be over (the client was
        slower than its lease). An answer that came before the lease the client knows of
        (`proven`) proves the peer was live when the request arrived: after a crash the client
        restores it and keeps its locks (the grace period protects them); otherwise the server
        lost a live peer, a violation (a graceful restart must keep every live peer). An answer
        after it proves nothing: the lease may have run out and a newcomer may hold the locks,
        so the client gives them up, counted as lost from that point on, and starts over."""
        world = self.world
        answered = self.http.answered
        if world.cluster is not None:
            self.unknown_to_the_cluster()
        kinds = world.kinds_between(self.peer_generation, self.http.generation)
        crashed = "kill" in kinds or "lost" in kinds
        if answered < self.proven - LEASE_MARGIN:
            if crashed:
                world.count("unknown peer after a crash (restored)")
                self.restore()
                return
            if answered < self.proven - 0.05:
                what = "a graceful restart lost" if kinds else "the server lost"
                world.violation(
                    f"{what} peer {self.peer} ({self.name}) "
                    f"{self.proven - answered:.3f}s before its lease ended (answered "
                    f"{world.rel(answered)}); last answers: {list(self.http.history)}"
                )
                self.restore()
                return
        world.count("lease lost (client too slow)" if not kinds
                    else f"lease lost across a {'/'.join(sorted(set(kinds)))} restart")
        self.leave_all(self.proven - LEASE_MARGIN, "lease lost")
        self.peer_id = None
        raise PeerGone()

    def unknown_to_the_cluster(self) -> None:
        """`Unknown peer` from a cluster: nothing restores there, and a cluster loses nothing
        it acknowledged (no restarts of the whole state, only of members). Before the lease the
        client knows of, it is a violation (the grant was lost); after it, the client was too
        slow (it waited on a paused member, say). Either way the client starts over."""
        world = self.world
        answered = self.http.answered
        if answered < self.proven - 0.05:
            world.violation(
                f"the cluster lost peer {self.peer} ({self.name}, holding {self.held}) "
                f"{self.proven - answered:.3f}s before its lease ended (answered "
                f"{world.rel(answered)}); last answers: {list(self.http.history)}; chaos: "
                f"{chaos_timeline(world)}")
            world.count("counts lost", sum(self.held.values()))
            self.leave_all(self.http.sent, "lost by the cluster")
        else:
            world.count("lease lost (client too slow)")
            self.leave_all(self.proven - LEASE_MARGIN, "lease lost")
        self.peer_id = None
        raise PeerGone()

    def restore(self) -> None:
        world = self.world
        locks = dict(self.held)
        status, text = self.http.request(
            "restore", _wire.restore(self.peer, locks, lease(self.lease)))
        if status != 200:
            world.violation(f"restore of peer {self.peer} with {locks} -> {status} {text!r}")
        else:
            self.confirmed(True)
        self.peer_generation = self.http.generation
        for hold in self.holds.values():
            hold.restores.append((self.http.answered, self.http.generation))
        world.count("restores")
        world.count("locks restored", len(locks))

    # --- the operations ---------------------------------------------------------------------

    def new_peer(self, seconds: float) -> None:
        self.lease = seconds
        self.held = {}
        status, text = self.http.request("new_peer", _wire.new_peer(lease(seconds)))
        if status != 200:
            raise Violation(f"new_peer -> {status} {text!r}")
        self.peer_id = _wire.parse_int(status, text)
        self.proven = self.http.sent + seconds
        self.peer_generation = self.http.generation

    def acquire(self, sem: str, count: int, give_up_after: float,
                block_for: Optional[float] = None) -> bool:
        """Asks until granted or `give_up_after` seconds pass. Returns True if acquired; on
        giving up, the pending lock is released."""
        poll = None if block_for is None else lease(block_for)
        give_up = time.monotonic() + give_up_after
        earliest: Optional[float] = None  # the earliest the lock can have been granted
        while True:
            status, text = self.call(
                "acquire",
                _wire.acquire(self.peer, sem, count, lease(self.lease), poll),
                timeout=(block_for or 0) + 30,
                prolongs=True,
            )
            if status in (200, 202):
                earliest = self.http.first_sent if status == 202 else (
                    earliest or self.http.first_sent)
            if status == 200:
                self.enter(sem, count)
                if self.world.cluster is not None:
                    grant = Grant(sem, self.http.fencing, earliest or self.http.first_sent,
                                  self.http.answered, f"{self.name} peer {self.peer}")
                    self.holds[sem].token = grant.token
                    with self.world.lock:
                        self.world.grants.append(grant)
                return True
            if status != 202:
                self.world.violation(f"acquire {sem} x{count} -> {status} {text!r}")
                return False
            if time.monotonic() > give_up or self.world.stop.is_set():
                self.release(sem)
                self.world.count("gave up waiting")
                return False
            if block_for is None:
                time.sleep(self.rng.uniform(0.01, 0.1))
            else:
                # Also after a long poll answered early because every slot was taken.
                time.sleep(0.02)

    def verify(self) -> None:
        """Mid-hold check: repeating an acquire is idempotent and must find every held lock
        still acquired. 202 or a conflict means the server lost (part of) our lock."""
        for sem, count in list(self.held.items()):
            status, text = self.call(
                "verify", _wire.acquire(self.peer, sem, count, None, None))
            hold = self.holds.get(sem)
            if (status == 200 and self.world.cluster is not None and hold is not None
                    and self.http.fencing != hold.token):
                self.world.violation(
                    f"peer {self.peer} holds {sem!r} with fencing token {hold.token}, but "
                    f"re-acquiring answered token {self.http.fencing}")
            if status != 200:
                self.world.violation(
                    f"peer {self.peer} holds {sem} x{count} but re-acquiring answered "
                    f"{status} {text!r}"
                )
                self.world.count("counts lost", count)
                self.leave(sem, self.http.sent, "lost (found by verify)")

    def heartbeat(self) -> None:
        status, text = self.call(
            "heartbeat", _wire.heartbeat(self.peer, lease(self.lease)), prolongs=True)
        if status != 200:
            self.world.violation(f"heartbeat -> {status} {text!r}")

    def release(self, sem: str) -> None:
        hold = self.holds.get(sem)
        leaving = self.world.ledger.leaving(hold) if hold else time.monotonic()
        status, text = self.http.request("release", _wire.release_lock(self.peer, sem))
        if status == 200:
            # The server knew the peer when the release arrived: held until then.
            self.confirmed(False)
            self.leave(sem, leaving, "released")
        elif unknown_peer(status, text, self.http.peer_state):
            if self.world.cluster is not None and self.http.answered < self.proven - 0.05:
                self.world.violation(
                    f"release of {sem!r}: the cluster lost peer {self.peer} ({self.name}) "
                    f"{self.proven - self.http.answered:.3f}s before its lease ended; last "
                    f"answers: {list(self.http.history)}; chaos: {chaos_timeline(self.world)}")
            # After a restart or an expiry that is the answer: held as long as the lease.
            self.leave(sem, min(leaving, self.proven - LEASE_MARGIN),
                       "released, answered Unknown peer")
        else:
            self.world.violation(f"release {sem} -> {status} {text!r}")
            self.leave(sem, leaving, f"release answered {status}")

    def remove_peer(self) -> None:
        ledger = self.world.ledger
        leaving = time.monotonic()
        for hold in self.holds.values():
            ledger.leaving(hold)
        status, text = self.http.request("remove_peer", _wire.release(self.peer))
        if status != 200:
            self.world.violation(f"remove peer -> {status} {text!r}")
        # 200 whether or not the server still knew the peer: held as long as the lease.
        self.leave_all(min(leaving, self.proven - LEASE_MARGIN), "peer removed")
        self.peer_id = None

    def abandon(self) -> None:
        """A crash: the process is gone and holds nothing; its peer and locks stay on the
        server until the lease runs out."""
        self.leave_all(time.monotonic(), "crashed")
        self.peer_id = None
        self.http.close()

    # --- behaviours -------------------------------------------------------------------------

    def pick_locks(self, weights: Optional[Dict[str, int]] = None,
                   max_count: int = 6) -> List[Tuple[str, int]]:
        """One or two semaphores in descending level, so the hierarchy is respected, each with
        a count from 1 up to its max (capped, so big still sees contention)."""
        weights = weights or LOCKABLE
        first = self.rng.choices(list(weights), list(weights.values()))[0]
        choice = [first]
        lower = [s for s in weights if SEMAPHORES[s][1] < SEMAPHORES[first][1]]
        if lower and self.rng.random() < 0.4:
            choice.append(self.rng.choice(lower))
        return [(s, self.rng.randint(1, min(SEMAPHORES[s][0], max_count))) for s in choice]

    def take(self, locks: List[Tuple[str, int]], give_up_after: float) -> bool:
        # A long poll must end before the lease does: the request prolongs the peer when it
        # arrives, not while it waits.
        block_for: Optional[float] = self.rng.choice([None, 0.2, 1.0, 2.0])
        if block_for is not None:
            block_for = min(block_for, self.lease / 2)
        for sem, count in locks:
            if not self.acquire(sem, count, give_up_after, block_for):
                return False
        return True

    def run(self) -> None:
        round_: Callable[[], None] = getattr(self, "round_" + self.role)
        try:
            while not self.world.stop.is_set():
                try:
                    round_()
                except PeerGone:
                    pass  # the locks are given up and the peer forgotten: start over
            if self.peer_id is not None:
                self.remove_peer()
        except Violation as violation:
            self.world.violation(f"{self.name}: {violation}")
        except Exception as error:  # a bug in the test itself: report, do not hide
            self.world.violation(f"{self.name}: test client crashed: {error!r}")
        finally:
            self.http.close()

    def round_worker(self) -> None:
        rng, world = self.rng, self.world
        if self.peer_id is None or rng.random() < 0.3:
            if self.peer_id is not None:
                self.remove_peer()
            self.new_peer(rng.choice([2.0, MAX_LEASE]))
        if self.take(self.pick_locks(), give_up_after=3.0):
            world.count("locks held")
            time.sleep(rng.uniform(0, 0.3))
            if rng.random() < 0.5:
                self.verify()
            time.sleep(rng.uniform(0, 0.2))
        if rng.random() < 0.5:
            for sem in list(self.held):
                self.release(sem)
        else:
            self.remove_peer()

    def round_crasher(self) -> None:
        rng, world = self.rng, self.world
        self.new_peer(rng.choice([1.0, 1.5]))
        if self.take(self.pick_locks(), give_up_after=1.0) and rng.random() < 0.7:
            time.sleep(rng.uniform(0, 0.3))
            world.count("clients crashed")
            self.abandon()
            time.sleep(rng.uniform(0.05, 0.3))  # the process restarts
        else:
            self.remove_peer()

    def round_heartbeater(self) -> None:
        rng, world = self.rng, self.world
        self.new_peer(MAX_LEASE)
        if self.take(self.pick_locks(LONG_HOLD, max_count=4), give_up_after=5.0):
            world.count("long holds")
            hold_until = time.monotonic() + rng.uniform(1.5, 4.0)
            while time.monotonic() < hold_until and not world.stop.is_set():
                time.sleep(0.75)
                self.heartbeat()
                world.count("heartbeats")
                if rng.random() < 0.3:
                    self.verify()
        self.remove_peer()

    def round_expirer(self) -> None:
        rng, world = self.rng, self.world
        self.new_peer(1.0)
        if self.acquire("api", 1, give_up_after=2.0, block_for=rng.choice([None, 0.5])):
            # The slot is the client's until its lease ends: it never releases it.
            world.count("rate-limit slots (left to expire)")
            self.leave("api", self.proven - LEASE_MARGIN, "left to expire")
            self.peer_id = None
        else:
            self.remove_peer()
        time.sleep(rng.uniform(0, 0.2))


class Server:
    """The throttle process (through the repository's harness): start, port, stop, kill,
    restart with the same state file, the grace period it announced, memory."""

    def __init__(self, binary: Path, config: Path, workdir: Path, workers: int) -> None:
        self.workdir = workdir
        self.state_file = workdir / "state.json"
        self.workers = workers
        self.command = [str(binary), "-c", str(config), "--workers", str(workers),
                        "--state-file", str(self.state_file)]
        # Logs server-1.log, server-2.log, ... in the work directory, one per start.
        self.harness = throttle_harness.Server(self.command, log_dir=workdir, name="server",
                                               start_timeout=30)

    @property
    def starts(self) -> int:
        return self.harness.starts

    @property
    def spawned(self) -> float:
        """When the current process was started (monotonic)."""
        return self.harness.spawned

    def start(self, port: int, extra: Sequence[str] = ()) -> int:
        """Starts the server on `port` (0: a free one) with `extra` options; returns the port."""
        self.harness.command = [*self.command, *extra]
        try:
            self.harness.start(port)
        except throttle_harness.HarnessError as error:
            raise SystemExit(f"soak: the server did not start: {error}")
        return self.harness.port

    def grace(self) -> Optional[float]:
        """The grace period the current server announced in its log, in seconds, or None."""
        match = re.search(r"Grace period of ([^(]+) \(", self.harness.log_text())
        return parse_humantime(match.group(1)) if match else None

    def kill(self) -> None:
        self.harness.stop(kill=True, timeout=10)

    def terminate(self) -> Optional[int]:
        """SIGTERM; the exit code, or None if it did not exit within 30 s (then it is killed)."""
        return self.harness.stop(timeout=30)

    def read_state(self) -> Dict[str, Any]:
        try:
            state = json.loads(self.state_file.read_text())
        except (OSError, ValueError) as error:
            return {"error": repr(error)}
        return state if isinstance(state, dict) else {"error": f"not an object: {state!r}"}

    def memory(self) -> Optional[Tuple[int, int]]:
        """(VmRSS, VmHWM) in KiB, or None if the process is gone."""
        fields = self.status()
        if fields is None or "VmRSS" not in fields:  # gone, or exiting (no memory left)
            return None
        return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])

    def status(self) -> Optional[Dict[str, str]]:
        try:
            status = Path(f"/proc/{self.harness.pid}/status").read_text()
        except OSError:
            return None
        pairs = (line.split(":", 1) for line in status.splitlines() if ":" in line)
        return {key: value for key, value in pairs}

    def settled_memory(self) -> Optional[Tuple[int, int]]:
        """The memory once every thread is up (main, expiry, workers): the server logs that it
        listens before it spawns its threads. Waits at most 5 s."""
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            fields = self.status()
            if fields and int(fields["Threads"]) >= self.workers + 2:
                break
            time.sleep(0.01)
        return self.memory()


def parse_metrics(text: str) -> Dict[str, Dict[str, float]]:
    """{metric: {semaphore: value}} for the per-semaphore gauges; unlabelled ones under ""."""
    result: Dict[str, Dict[str, float]] = {}
    pattern = re.compile(r'^(throttle_\w+)\{semaphore="((?:[^"\\]|\\.)*)"\} (\S+)$')
    for line in text.splitlines():
        match = pattern.match(line)
        if match:
            name = re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1),
                          match.group(2))
            result.setdefault(match.group(1), {})[name] = float(match.group(3))
            continue
        match = re.match(r"^(throttle_\w+) (\S+)$", line)
        if match:
            result.setdefault(match.group(1), {})[""] = float(match.group(2))
    return result


class Sampler(threading.Thread):
    """Polls /metrics and the server's memory, and sweeps the ledger once a second. At every
    sample, per semaphore: acquired must not exceed max."""

    def __init__(self, world: World, server: Optional[Server], interval: float) -> None:
        super().__init__(name="sampler", daemon=True)
        self.world = world
        self.server = server
        self.interval = interval
        self.http = Connection(world)
        self.samples = 0
        self.samples_in_grace = 0
        self.remainders = 0
        self.unapplied = 0  # /metrics of a cluster's member without semaphores yet
        self.sweeps = 0
        self.rss: Dict[int, List[int]] = {}  # server start number -> VmRSS samples (KiB)
        self.hwm: Dict[int, int] = {}
        self.done = threading.Event()
        self.rotation = 0  # which member and semaphore the cluster's remainder sample asks

    def memory_sample(self) -> None:
        if self.server is None:
            return
        memory = self.server.memory()
        if memory:
            self.rss.setdefault(self.server.starts, []).append(memory[0])
            self.hwm[self.server.starts] = memory[1]

    def run(self) -> None:
        world = self.world
        next_sweep = time.monotonic() + 1
        while not self.done.is_set():
            try:
                self.memory_sample()
                if world.cluster is not None:
                    self.sample_members(world.cluster)
                elif world.up.is_set():
                    self.sample()
                if time.monotonic() >= next_sweep:
                    world.ledger.check()
                    self.sweeps += 1
                    next_sweep = time.monotonic() + 1
            except Violation as violation:
                world.violation(f"sampler: {violation}")
            except Exception as error:  # a bug in the test itself: report, do not hide
                world.violation(f"sampler: crashed: {error!r}")
            self.done.wait(self.interval)

    def sample(self) -> None:
        world = self.world
        status, text = self.http.request("metrics", _wire.metrics(), timeout=10,
                                         deadline=time.monotonic() + 30)
        if status != 200:
            world.violation(f"/metrics -> {status}")
            return
        metrics = parse_metrics(text)
        self.samples += 1
        if metrics.get("throttle_grace_remaining_seconds", {}).get("", 0) > 0:
            self.samples_in_grace += 1
        for sem, (maximum, _) in SEMAPHORES.items():
            acquired = metrics.get("throttle_acquired", {}).get(sem)
            if acquired is None:
                world.violation(f"/metrics lacks throttle_acquired for {sem!r}")
                continue
            if acquired > maximum:
                world.violation(f"capacity: {sem!r} acquired {acquired:.0f} > max {maximum}")


    def sample_members(self, cluster: throttle_harness.Cluster) -> None:
        """The cluster's sample: /metrics of every member that runs (a member's applied state,
        whichever prefix of the log it has, never holds more than max), and one semaphore's
        /remainder, a linearizable read, from one member in turn (never below 0). A member that
        does not answer within 2 s, or answers 503, is skipped this time."""
        world = self.world
        members = cluster.running()
        for member in members:
            answer = ask(cluster, member, "GET", "/metrics")
            if answer is None or answer[0] != 200:
                continue
            metrics = parse_metrics(answer[1])
            if not metrics.get("throttle_acquired"):
                # A member that has just started lists its semaphores once it has applied the
                # log (a few hundred ms): nothing to check yet.
                self.unapplied += 1
                continue
            self.samples += 1
            for sem, (maximum, _) in SEMAPHORES.items():
                acquired = metrics.get("throttle_acquired", {}).get(sem)
                if acquired is None:
                    world.violation(f"/metrics of member {member} lacks throttle_acquired for "
                                    f"{sem!r}")
                elif acquired > maximum:
                    world.violation(f"capacity: member {member}: {sem!r} acquired "
                                    f"{acquired:.0f} > max {maximum}")
        if not members:
            return
        self.rotation += 1
        member = members[self.rotation % len(members)]
        sem = list(SEMAPHORES)[self.rotation % len(SEMAPHORES)]
        answer = ask(cluster, member, "GET", _wire.remainder(sem).path)
        if answer is not None and answer[0] == 200:
            self.remainders += 1
            if int(answer[1]) < 0:
                world.violation(f"remainder of {sem!r} on member {member}: {answer[1]}")


def ask(cluster: throttle_harness.Cluster, member: int, method: str, path: str,
        timeout: float = 2.0) -> Optional[Tuple[int, str]]:
    """One request to one member, without retries: (status, text), or None on a transport
    error or timeout."""
    conn = http.client.HTTPConnection("127.0.0.1", cluster.member(member).port, timeout=timeout)
    try:
        conn.request(method, path)
        response = conn.getresponse()
        return response.status, response.read().decode("utf-8", "replace")
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def compare_peers(
    before: List[PeerState], b_sent: float, b_answered: float,
    after: List[PeerState], a_sent: float, a_answered: float,
) -> Tuple[List[str], int, int, int]:
    """Problems between GET /peers/ before a graceful restart and after it, the clients paused
    in between: the same peers with the same acquired locks, leases shortened by the time
    between the listings (100 ms of slack). A peer whose lease ran out in between may be gone;
    a lock pending before may have been granted (an expiry freed its count), and that peer's
    lease then started at the grant. Returns
    (problems, peers kept, locks kept, peers expired)."""
    problems: List[str] = []
    expired = 0
    old = {peer.id: peer for peer in before}
    new = {peer.id: peer for peer in after}
    longest = (a_answered - b_sent) * 1000  # the most time between the two listings, ms
    shortest = (a_sent - b_answered) * 1000
    for peer_id, peer in new.items():
        was = old.get(peer_id)
        if was is None:
            problems.append(f"peer {peer_id} appeared across the restart: {peer}")
            continue
        for sem, count in peer.acquired.items():
            if was.acquired.get(sem) != count and was.pending.get(sem) != count:
                problems.append(f"peer {peer_id} holds {sem!r} x{count} after the restart, "
                                f"before: {was}")
        for sem, count in was.acquired.items():
            if peer.acquired.get(sem) != count:
                problems.append(f"peer {peer_id} lost {sem!r} x{count} across the restart: "
                                f"before {was}, after {peer}")
        if peer.pending:
            problems.append(f"peer {peer_id} has pending locks after the restart: {peer}")
        was_ms, now_ms = milliseconds(was.expires_in), milliseconds(peer.expires_in)
        low = was_ms - longest - 100
        high = was_ms - shortest + 100
        if any(was.pending.get(sem) == count and was.acquired.get(sem) != count
               for sem, count in peer.acquired.items()):
            # Granted in between (an expiry freed its count): the lease asked for starts at
            # the grant, so it may be longer than before, but never longer than any lease.
            high = max(high, MAX_LEASE * 1000 + 100)
        if not low <= now_ms <= high:
            problems.append(f"peer {peer_id}: lease {now_ms} ms after the "
                            f"restart, {was_ms} ms before, {shortest:.0f} to "
                            f"{longest:.0f} ms between the listings")
    for peer_id, was in old.items():
        if peer_id in new:
            continue
        if milliseconds(was.expires_in) > longest + 100:
            problems.append(f"peer {peer_id} with {milliseconds(was.expires_in)} ms of lease "
                            f"left is gone after the restart ({longest:.0f} ms later): {was}")
        else:
            expired += 1
    kept = sum(1 for peer_id in new if peer_id in old)
    locks = sum(len(peer.acquired) for peer_id, peer in new.items() if peer_id in old)
    return problems, kept, locks, expired


def milliseconds(duration: timedelta) -> int:
    """A lease as the server lists it (`expires_in_ms`)."""
    return duration // timedelta(milliseconds=1)


def probe(world: World, server: Server, restart: Restart) -> None:
    """A newcomer after a start: on `probe` (no client uses it) it must pend while the grace
    period lasts and be granted once it is over, or at once if there is none."""
    http = Connection(world, gated=False)
    grace = restart.grace or 0.0
    status, text = http.request("probe", _wire.new_peer(lease(MAX_LEASE)))
    if status != 200:
        world.violation(f"probe: new_peer -> {status} {text!r}")
        return
    peer = _wire.parse_int(status, text)
    status, text = http.request("probe", _wire.acquire(peer, "probe", 1, lease(MAX_LEASE), None))
    first, first_answered = status, http.answered - server.spawned
    deadline = time.monotonic() + grace + 10
    long_poll = _wire.acquire(peer, "probe", 1, lease(MAX_LEASE), timedelta(seconds=1))
    while status == 202 and time.monotonic() < deadline:
        status, text = http.request("probe", long_poll)
    granted = http.answered - server.spawned
    try:
        if status != 200:
            world.violation(f"probe after the {restart.kind} restart: {status} {text!r}, "
                            f"{granted:.2f}s after the start (grace {grace:.3f}s)")
        elif grace and granted < grace - 0.005:
            world.violation(f"probe after the {restart.kind} restart: granted "
                            f"{granted:.3f}s after the process started, within the grace "
                            f"period of {grace:.3f}s")
        elif grace and first != 202 and first_answered < grace:
            world.violation(f"probe after the {restart.kind} restart: first acquire answered "
                            f"{first} during the grace period of {grace:.3f}s")
        elif not grace and first != 200:
            world.violation(f"probe after the {restart.kind} restart: {first} with no grace "
                            f"period")
        restart.notes.append(f"probe granted {granted:.2f}s after the start")
    finally:
        http.request("probe", _wire.release(peer))
        http.close()


def guarded(world: World, function: Callable[..., None], *args: Any) -> None:
    """Runs `function` in a thread: what it raises is reported, not lost."""
    try:
        function(*args)
    except Violation as violation:
        world.violation(f"{function.__name__}: {violation}")
    except Exception as error:  # a bug in the test itself: report, do not hide
        world.violation(f"{function.__name__}: crashed: {error!r}")


def settle_long_polls(world: World, admin: Connection, timeout: float = 3.0) -> int:
    """Waits until the server waits on every long poll the paused clients have in flight: one
    sent just before the pause may not have arrived yet, and would prolong its peer or be
    granted after the listing. Equal counts mean none is on its way there or back."""
    deadline = time.monotonic() + timeout
    while True:
        status, text = admin.request("metrics", _wire.metrics())
        waiting = parse_metrics(text).get("throttle_long_polls", {}).get("")
        with world.lock:
            ours = world.inflight_long
        if waiting == ours:
            return ours
        if time.monotonic() > deadline:
            world.violation(f"the server waits on {waiting} long polls, the paused clients "
                            f"have {ours} in flight, {timeout:g}s after the pause")
            return ours
        time.sleep(0.01)


def restart_server(world: World, server: Server, restart: Restart, rng: random.Random,
                   args: argparse.Namespace,
                   previous_probe: Optional[threading.Thread]) -> threading.Thread:
    """One restart of the kind `restart.kind`, with its checks (see the module docstring)."""
    if previous_probe is not None:
        previous_probe.join(timeout=30)
    admin = Connection(world, gated=False)
    extra = ["--grace", _wire.format_duration(lease(args.grace))]
    before: Optional[List[PeerState]] = None
    expected_grace: Optional[float]
    if restart.kind == "term":
        if not world.pause():
            world.violation("requests still in flight 10 s after the clients paused")
        restart.notes.append(f"{settle_long_polls(world, admin)} long polls waiting at SIGTERM")
        status, text = admin.request("list_peers", _wire.list_peers())
        before, b_sent, b_answered = _wire.parse_peers(status, text), admin.sent, admin.answered
        admin.close()
        down = time.monotonic()
        code = server.terminate()
        if code != 0:
            world.violation(f"the server exited with {code} on SIGTERM (the restart)")
        saved = server.read_state()
        if saved.get("clean") is not True:
            world.violation(f"the state file after SIGTERM is not clean: {str(saved)[:300]}")
        restart.notes.append(f"{len(saved.get('peers', []))} peers in the state file")
        expected_grace = None
    else:
        world.up.clear()
        marker = server.read_state()
        longest = marker.get("longest_lease_ms", 0) / 1000
        if restart.kind == "kill" and (marker.get("clean") is not False
                                       or longest < MAX_LEASE):
            world.violation(f"the state file before SIGKILL should be the running marker "
                            f"with a longest lease of at least {MAX_LEASE}s: {str(marker)[:300]}")
        server.kill()
        down = time.monotonic()
        if restart.kind == "lost":
            server.state_file.unlink(missing_ok=True)
            expected_grace = args.grace
        else:
            expected_grace = min(args.grace, longest)
        if not expected_grace:
            expected_grace = None
    time.sleep(rng.uniform(0.3, 1.0))
    server.start(world.port, extra)
    restart.grace = server.grace()
    if restart.grace is None or expected_grace is None:
        mismatch = restart.grace != expected_grace
    else:
        mismatch = abs(restart.grace - expected_grace) > 0.002
    if mismatch:
        world.violation(f"after the {restart.kind} restart the server announced a grace period "
                        f"of {restart.grace}s, expected {expected_grace}s")
    if before is not None:
        status, text = admin.request("list_peers", _wire.list_peers())
        after = _wire.parse_peers(status, text)
        problems, kept, locks, expired = compare_peers(
            before, b_sent, b_answered, after, admin.sent, admin.answered)
        for problem in problems:
            world.violation(f"graceful restart: {problem}")
        restart.notes.append(f"{kept} peers kept with {locks} locks, {expired} expired while "
                             f"down")
    admin.close()
    with world.lock:
        world.generation += 1
        restart.generation = world.generation
        world.restarts.append(restart)
    restart.downtime = time.monotonic() - down
    # The probe's first request goes before the clients come back.
    thread = threading.Thread(target=guarded, args=(world, probe, world, server, restart),
                              name="probe", daemon=True)
    thread.start()
    time.sleep(0.05)
    world.up.set()
    print(f"soak: {restart.kind} restart at +{restart.at:.1f}s ({restart.downtime:.2f}s down, "
          f"grace {'none' if restart.grace is None else f'{restart.grace:g}s'})", flush=True)
    return thread


def build(args: argparse.Namespace) -> Path:
    """--binary, else the release build of this checkout, built first (the harness)."""
    if args.binary:
        return Path(args.binary).resolve()
    return throttle_harness.server_binary(release=True)  # it says that it builds


def config_text() -> str:
    """The semaphores and logging of the server (or of each member, before its `[cluster]`)."""
    lines = ["[semaphores]"]
    for name, (maximum, level) in SEMAPHORES.items():
        lines.append(f"{json.dumps(name)} = {{ max = {maximum}, level = {level} }}")
    lines += ["", "[logging.stderr]", 'level = "INFO"', ""]
    return "\n".join(lines)


def write_config(path: Path) -> None:
    path.write_text(config_text())


def roles(clients: int) -> List[str]:
    """Half workers, the rest split between crashers, heartbeaters and expirers."""
    crashers = max(1, clients * 3 // 16)
    heartbeaters = max(1, clients * 3 // 16)
    expirers = max(1, clients * 2 // 16)
    workers = max(1, clients - crashers - heartbeaters - expirers)
    return ["worker"] * workers + ["crasher"] * crashers + ["heartbeater"] * heartbeaters + [
        "expirer"
    ] * expirers


def end_checks(world: World, admin: Client) -> int:
    """After the run: abandoned peers expire, every remainder is back at max, nothing is
    pending, no grace period is left. Returns the counts lost. These checks measure nothing,
    so they go through the Python client, which retries nothing here (`retry_for` 0): a
    transport error or a 5xx is reported, not ridden out."""
    counts_lost = world.events["counts lost"]
    try:
        # Abandoned peers expire within their lease (at most 2 s for crashers).
        deadline = time.monotonic() + 30
        while True:
            peers = admin.list_peers()
            if peers == [] or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        if peers != []:
            world.violation(f"peers left at the end: {str(peers)[:500]}")
        for sem, (maximum, _) in SEMAPHORES.items():
            remainder = admin.remainder(sem)
            if remainder != maximum:
                world.violation(f"remainder of {sem!r} is {remainder}, not {maximum}")
                counts_lost += abs(maximum - remainder)
        metrics = parse_metrics(admin.metrics())
    except (ThrottleError, requests.RequestException) as error:
        world.violation(f"the checks at the end: {error!r}")
        return counts_lost
    for sem in SEMAPHORES:
        pending = metrics.get("throttle_pending", {}).get(sem)
        if pending != 0:
            world.violation(f"pending count of {sem!r} at the end: {pending}")
    grace_left = metrics.get("throttle_grace_remaining_seconds", {}).get("")
    if grace_left != 0:
        world.violation(f"throttle_grace_remaining_seconds at the end: {grace_left}")
    return counts_lost


def parse_chaos(text: str) -> List[str]:
    kinds = [kind.strip() for kind in text.split(",") if kind.strip()]
    if kinds == ["none"]:
        return []
    for kind in kinds:
        if kind not in CHAOS:
            raise argparse.ArgumentTypeError(
                f"not a fault: {kind!r} ({', '.join(CHAOS)}, or none)")
    return kinds


def chaos_schedule(kinds: Sequence[str], duration: float) -> List[str]:
    """The faults of a run, in order: `kinds` over and over, one per CHAOS_EVERY seconds, each
    kind at least once."""
    if not kinds:
        return []
    count = max(len(kinds), int(duration // CHAOS_EVERY))
    return [kinds[i % len(kinds)] for i in range(count)]


def chaos_timeline(world: World) -> str:
    with world.lock:
        events = list(world.chaos)
    if not events:
        return "none"
    return ", ".join(f"{c.kind} of member {c.member} at {world.rel(c.at)} for {c.lasted:.2f}s"
                     for c in events)


def inject(world: World, cluster: throttle_harness.Cluster, kind: str,
           rng: random.Random) -> None:
    """One fault (see the module docstring, "--cluster"), then a wait until the members that
    run agree on a leader again (30 s at most: a cluster that does not is a violation)."""
    try:
        leader: Optional[int] = cluster.leader(timeout=30)
    except throttle_harness.HarnessError as error:
        world.violation(f"before the {kind}: {error}")
        leader = None
    if kind == "kill-follower":
        member = rng.choice([m for m in cluster.ids if m != leader])
    else:
        member = leader if leader is not None else rng.choice(cluster.ids)
    chaos = Chaos(kind, time.monotonic(), member, leader)
    with world.lock:
        world.chaos.append(chaos)
    try:
        if kind in ("kill-leader", "kill-follower"):
            cluster.kill(member)
            time.sleep(rng.uniform(0.5, 1.5))
            cluster.restart(member)
        elif kind == "pause":
            cluster.pause(member)
            time.sleep(PAUSE)
            cluster.resume(member)
        else:
            cluster.partition([member], [m for m in cluster.ids if m != member])
            time.sleep(PAUSE)
            cluster.heal()
    except throttle_harness.HarnessError as error:
        world.violation(f"{kind} of member {member}: {error}")
    chaos.lasted = time.monotonic() - chaos.at
    try:
        chaos.new_leader = cluster.leader(timeout=30)
    except throttle_harness.HarnessError as error:
        world.violation(f"after the {kind} of member {member}: {error}")
    print(f"soak: {kind} of member {member} (leader {leader}) at "
          f"{world.rel(chaos.at)} for {chaos.lasted:.2f}s; leader now {chaos.new_leader}",
          flush=True)


def end_checks_cluster(world: World, cluster: throttle_harness.Cluster) -> int:
    """After a cluster's run: once the members agree on a leader and the abandoned peers
    expired, every member lists no peer, has every remainder at max and nothing pending.
    Returns the counts lost. Through the Python client, which retries nothing here."""
    counts_lost = world.events["counts lost"]
    try:
        leader = cluster.leader(timeout=30)
    except throttle_harness.HarnessError as error:
        world.violation(f"at the end: {error}")
        return counts_lost
    admins = {m: Client(cluster.url(m), retry_for=timedelta(0), peer_name="")
              for m in cluster.ids}
    try:
        deadline = time.monotonic() + 30
        while True:
            peers = admins[leader].list_peers()
            if peers == [] or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        for member, admin in admins.items():
            peers = admin.list_peers()
            if peers != []:
                world.violation(f"peers left at the end on member {member}: {str(peers)[:500]}")
            for sem, (maximum, _) in SEMAPHORES.items():
                remainder = admin.remainder(sem)
                if remainder != maximum:
                    world.violation(f"remainder of {sem!r} on member {member} is {remainder}, "
                                    f"not {maximum}")
                    counts_lost += abs(maximum - remainder)
            metrics = parse_metrics(admin.metrics())
            for sem in SEMAPHORES:
                pending = metrics.get("throttle_pending", {}).get(sem)
                if pending != 0:
                    world.violation(f"pending count of {sem!r} on member {member} at the end: "
                                    f"{pending}")
    except (ThrottleError, requests.RequestException) as error:
        world.violation(f"the checks at the end: {error!r}")
    finally:
        for admin in admins.values():
            admin.close()
    return counts_lost


def main_cluster(args: argparse.Namespace, seed: int) -> int:
    """The soak against a cluster (--cluster; see the module docstring)."""
    binary = build(args)
    workdir = Path(tempfile.mkdtemp(prefix="throttle-soak-cluster-"))
    world = World(args, workdir)
    cluster = throttle_harness.Cluster(workdir, args.members, config_text(),
                                       args=["--workers", str(args.workers)], binary=binary)
    try:
        cluster.start()
        first_leader = cluster.leader(timeout=30)
    except throttle_harness.HarnessError as error:
        cluster.stop_all(kill=True)
        print(f"soak: the cluster did not start: {error}", file=sys.stderr)
        return 2
    try:
        return soak_cluster(args, seed, world, cluster, first_leader)
    finally:
        cluster.stop_all(kill=True)  # the proxy, and any member left by an exception


def soak_cluster(args: argparse.Namespace, seed: int, world: World,
                 cluster: throttle_harness.Cluster, first_leader: int) -> int:
    """The run, its checks and its summary, once the cluster has a leader."""
    workdir = cluster.work_dir
    world.cluster = cluster
    started = time.monotonic()
    world.base = started
    print(f"soak: {args.members} members on ports "
          f"{', '.join(str(cluster.member(m).port) for m in cluster.ids)} (leader "
          f"{first_leader}), {args.duration:.0f}s, seed {seed}, {args.clients} clients, "
          f"--workers {args.workers}, chaos {','.join(args.chaos) or 'none'}, work dir "
          f"{workdir}", flush=True)

    sampler = Sampler(world, None, args.sample_interval)
    sampler.start()
    master = random.Random(seed)
    client_roles = roles(args.clients)
    clients = [SoakClient(world, random.Random(master.random()), role, f"{role}-{i}")
               for i, role in enumerate(client_roles)]
    for i, client in enumerate(clients):
        client.http.member = 1 + i % args.members  # spread over the members
    threads = [threading.Thread(target=c.run, name=c.name, daemon=True) for c in clients]
    for thread in threads:
        thread.start()

    faults = chaos_schedule(args.chaos, args.duration)
    for i, kind in enumerate(faults):
        at = args.duration * (i + 1) / (len(faults) + 1)
        time.sleep(max(0.0, started + at - time.monotonic()))
        inject(world, cluster, kind, master)

    time.sleep(max(0.0, started + args.duration - time.monotonic()))
    world.stop.set()
    for thread in threads:
        thread.join(timeout=60)
    stuck = [t.name for t in threads if t.is_alive()]
    if stuck:
        world.violation(f"clients did not finish: {stuck}")

    counts_lost = end_checks_cluster(world, cluster)
    if not sampler.is_alive():
        world.violation("the sampler stopped before the end")
    sampler.done.set()
    sampler.join(timeout=30)
    world.ledger.check(final=True)
    world.ledger.finish()

    by_sem: Dict[str, List[Grant]] = {}
    for grant in world.grants:
        by_sem.setdefault(grant.sem, []).append(grant)
    fencing: List[str] = []
    for grants in by_sem.values():
        fencing += fencing_problems(grants, world.base)
    for problem in fencing[:30]:
        world.violation(problem)
    for chaos in world.chaos:
        after = [g.latest for g in world.grants if g.earliest >= chaos.at]
        chaos.resumed = min(after) - chaos.at if after else None

    codes = {member: cluster.member(member).stop(timeout=30) for member in cluster.ids}
    for member, code in codes.items():
        if code != 0:
            world.violation(f"member {member} exited with {code} on SIGTERM")

    ops = sum(world.ops.values())
    statuses: Counter[int] = Counter()
    routes: Counter[str] = Counter()
    for (route, status), n in world.ops.items():
        statuses[status] += n
        routes[route] += n
    other_5xx = sum(n for status, n in statuses.items() if status >= 500 and status != 503)
    elapsed = time.monotonic() - started
    ledger = world.ledger
    print()
    print(f"soak --cluster summary ({elapsed:.0f}s, seed {seed}, {args.members} members, "
          f"{args.clients} clients: {dict(Counter(client_roles))}, --workers {args.workers})")
    print(f"  operations:        {ops} requests ({ops / elapsed:.0f}/s); "
          + ", ".join(f"{r} {n}" for r, n in routes.most_common()))
    print("  statuses:          " + ", ".join(f"{s}: {n}" for s, n in sorted(statuses.items()))
          + " (503: No quorum, the client moved on)")
    print(f"  clients crashed:   {world.events['clients crashed']} (vanished mid-lock; "
          f"their peers expired)")
    print(f"  chaos:             {len(world.chaos)} faults; grants resumed (first grant asked "
          f"for after the fault):")
    for c in world.chaos:
        resumed = "no grant after it" if c.resumed is None else f"{c.resumed:.3f}s"
        print(f"    {c.kind:13} of member {c.member} (leader {c.leader}) at "
              f"{world.rel(c.at)}: lasted {c.lasted:.2f}s, leader then {c.new_leader}; "
              f"grants resumed after {resumed}")
    print(f"  exclusivity:       {sum(ledger.recorded.values())} holds recorded; "
          f"{sampler.sweeps} sweeps; overlaps: {ledger.overlaps}")
    print("    most held at once: " + ", ".join(
        f"{sem} {ledger.peak[sem]}/{maximum} ({ledger.recorded[sem]} holds)"
        for sem, (maximum, _) in SEMAPHORES.items() if sem != "probe"))
    print(f"  fencing tokens:    {len(world.grants)} grants, out of order: {len(fencing)}")
    print(f"  counts lost:       {counts_lost}")
    print(f"  capacity samples:  {sampler.samples} of /metrics ({sampler.unapplied} more "
          f"from a member that had not applied its log yet), {sampler.remainders} of "
          f"/remainder; over max or below 0: "
          f"{sum(1 for v in world.violations if 'capacity' in v or 'remainder of' in v)}")
    print(f"  other 5xx:         {other_5xx}")
    print(f"  transport errors:  {world.transport_errors_cluster} (the client moved on)")
    print("  other events:      " + ", ".join(
        f"{k} {v}" for k, v in sorted(world.events.items())
        if k not in ("clients crashed", "counts lost")))
    print(f"  members' exit on SIGTERM: {codes}")
    return verdict(world, workdir, "member", args.keep)


def verdict(world: World, workdir: Path, logs_of: str, keep: bool) -> int:
    """Prints the violations and where the evidence is (exit code 1), or that the soak passed
    (exit code 0, the work directory removed unless ``keep``)."""
    if world.violations:
        print(f"\nsoak: FAILED with {len(world.violations)} violations:")
        for violation in world.violations[:30]:
            print(f"  {violation}")
        print(f"{logs_of} logs and the ledger (holds.jsonl) in {workdir}")
        return 1
    print("soak: passed")
    if not keep:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="scripts/soak",
        description="Soak and chaos test of the Throttle server (see scripts/soak.py).")
    parser.add_argument("--duration", type=parse_duration, default=None,
                        help="how long the clients run, e.g. 45s or 10m [default: 60s, with "
                             "--cluster 2m]")
    parser.add_argument("--cluster", action="store_true",
                        help="run against a cluster of --members members with --chaos faults "
                             "instead of one server with --restarts")
    parser.add_argument("--members", type=int, default=3,
                        help="members of the cluster (--cluster) [default: 3]")
    parser.add_argument("--chaos", type=parse_chaos, default=parse_chaos(",".join(CHAOS)),
                        help="faults of the cluster, spread evenly over the run: kill-leader "
                             "(kill -9, restarted in its directory), kill-follower, pause "
                             "(SIGSTOP of the leader for longer than any lease), partition "
                             "(the leader cut off from the others, then healed), "
                             "comma-separated, or none; they take turns, one per 30 s of the "
                             "run [default: all four]")
    parser.add_argument("--clients", type=int, default=32, help="client threads [default: 32]")
    parser.add_argument("--workers", type=int, default=16,
                        help="server worker threads; few, so long polls hit their cap "
                             "[default: 16]")
    parser.add_argument("--seed", type=int, default=None, help="random seed [default: random]")
    parser.add_argument("--restarts", type=parse_restarts, default=parse_restarts("term,kill"),
                        help="restarts, spread evenly over the run: term (SIGTERM, the state "
                             "file keeps the peers), kill (SIGKILL, the grace period lets "
                             "holders restore), lost (SIGKILL and the state file deleted: "
                             "only --grace protects), comma-separated, or none "
                             "[default: term,kill]")
    parser.add_argument("--grace", type=parse_duration, default=parse_duration("3s"),
                        help="--grace of the restarted servers. At least 3s (the clients' "
                             "longest lease) for the exclusivity check to hold; shorter, "
                             "holders that restore late overlap newcomers, which the check "
                             "reports (0s: no grace period at all) [default: 3s]")
    parser.add_argument("--binary", help="use this server binary instead of building release")
    parser.add_argument("--rss-slack-mib", type=float, default=8.0,
                        help="allowed growth of the server's VmRSS from its start to the end "
                             "[default: 8]")
    parser.add_argument("--sample-interval", type=float, default=0.1,
                        help="seconds between /metrics samples [default: 0.1]")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    args = parser.parse_args()
    if not sys.platform.startswith("linux"):
        print("soak: needs Linux (/proc, signals)", file=sys.stderr)
        return 2
    seed = args.seed if args.seed is not None else random.randrange(1 << 32)
    if args.duration is None:
        args.duration = parse_duration("2m" if args.cluster else "60s")
    if args.cluster:
        return main_cluster(args, seed)
    if args.grace < MAX_LEASE and any(kind != "term" for kind in args.restarts):
        print(f"soak: --grace {args.grace:g}s is shorter than the clients' leases "
              f"({MAX_LEASE:g}s): after a crash, holders that restore late are not protected and "
              f"the exclusivity check will report them", file=sys.stderr, flush=True)

    binary = build(args)
    workdir = Path(tempfile.mkdtemp(prefix="throttle-soak-"))
    config = workdir / "throttle.toml"
    write_config(config)
    world = World(args, workdir)
    server = Server(binary, config, workdir, args.workers)
    # The first start is a first start (no state file yet): no grace period.
    world.port = server.start(0)
    first_memory = server.settled_memory()
    restart_memory = first_memory
    started = time.monotonic()
    world.base = started
    world.up.set()
    print(f"soak: server on port {world.port}, {args.duration:.0f}s, seed {seed}, "
          f"{args.clients} clients, --workers {args.workers}, restarts "
          f"{','.join(args.restarts) or 'none'}, --grace {args.grace:g}s, work dir {workdir}",
          flush=True)

    sampler = Sampler(world, server, args.sample_interval)
    sampler.start()
    master = random.Random(seed)
    client_roles = roles(args.clients)
    clients = [SoakClient(world, random.Random(master.random()), role, f"{role}-{i}")
               for i, role in enumerate(client_roles)]
    threads = [threading.Thread(target=c.run, name=c.name, daemon=True) for c in clients]
    for thread in threads:
        thread.start()

    # Chaos: the restarts, evenly spread.
    rss_before: List[Optional[Tuple[int, int]]] = []
    probes: List[threading.Thread] = []
    for i, kind in enumerate(args.restarts):
        at = args.duration * (i + 1) / (len(args.restarts) + 1)
        time.sleep(max(0.0, started + at - time.monotonic()))
        rss_before.append(server.memory())
        restart = Restart(kind, time.monotonic() - started)
        probes.append(restart_server(world, server, restart, master, args,
                                     probes[-1] if probes else None))
        restart_memory = server.settled_memory()

    time.sleep(max(0.0, started + args.duration - time.monotonic()))
    world.stop.set()
    for thread in threads + probes:
        thread.join(timeout=60)
    stuck = [t.name for t in threads + probes if t.is_alive()]
    if stuck:
        world.violation(f"clients did not finish: {stuck}")

    admin = Client(world.url, retry_for=timedelta(0), peer_name="")
    counts_lost = end_checks(world, admin)
    admin.close()
    if not sampler.is_alive():
        world.violation("the sampler stopped before the end")
    sampler.done.set()
    sampler.join(timeout=30)
    sampler.memory_sample()
    world.ledger.check(final=True)
    world.ledger.finish()

    # Memory: the last server's RSS at its start against its RSS now.
    end_memory = server.memory()
    start_rss = restart_memory[0] if restart_memory else 0
    end_rss = end_memory[0] if end_memory else 0
    slack = args.rss_slack_mib * 1024
    if end_rss > start_rss + slack:
        world.violation(
            f"memory: VmRSS {end_rss} KiB at the end, {start_rss} KiB at the start "
            f"(allowed: +{args.rss_slack_mib} MiB)"
        )
    peak_kib = max([m for samples in sampler.rss.values() for m in samples]
                   + list(sampler.hwm.values()) + [end_memory[1] if end_memory else 0])

    code = server.terminate()
    if code is None:
        world.violation("the server did not stop within 30 s of SIGTERM")
    elif code != 0:
        world.violation(f"the server exited with {code} on SIGTERM")
    else:
        saved = server.read_state()
        if saved.get("clean") is not True or saved.get("peers") != []:
            world.violation(f"the state file at the end: {str(saved)[:300]}")

    ops = sum(world.ops.values())
    statuses: Counter[int] = Counter()
    routes: Counter[str] = Counter()
    for (route, status), n in world.ops.items():
        statuses[status] += n
        routes[route] += n
    fivexx = sum(n for status, n in statuses.items() if status >= 500)
    elapsed = time.monotonic() - started
    ledger = world.ledger

    def mib(kib: float) -> str:
        return f"{kib / 1024:.1f} MiB"

    first = [first_memory[0] if first_memory else 0] + sampler.rss.get(1, [])
    last = sampler.rss.get(server.starts, [0])
    print()
    print(f"soak summary ({elapsed:.0f}s, seed {seed}, {args.clients} clients: "
          f"{dict(Counter(client_roles))}, server --workers {args.workers})")
    print(f"  operations:        {ops} requests ({ops / elapsed:.0f}/s); "
          + ", ".join(f"{r} {n}" for r, n in routes.most_common()))
    print("  statuses:          " + ", ".join(f"{s}: {n}" for s, n in sorted(statuses.items())))
    print(f"  clients crashed:   {world.events['clients crashed']} (vanished mid-lock; "
          f"their peers expired)")
    print(f"  peers left to expire as rate limits: "
          f"{world.events['rate-limit slots (left to expire)']}")
    print(f"  restarts:          {len(world.restarts)}; {world.events['restores']} restores of "
          f"{world.events['locks restored']} locks, "
          f"{world.events['unknown peer after a crash (restored)']} after a crash")
    for r in world.restarts:
        grace = "no grace period" if r.grace is None else f"grace {r.grace:g}s"
        print(f"    {r.kind:4} at +{r.at:5.1f}s: down {r.downtime:.2f}s, {grace}; "
              + "; ".join(r.notes))
    print(f"  exclusivity:       {sum(ledger.recorded.values())} holds recorded, "
          f"{ledger.crossed['term']} across a graceful restart, "
          f"{ledger.crossed['kill'] + ledger.crossed['lost']} across a crash; "
          f"{sampler.sweeps} sweeps; overlaps: {ledger.overlaps}")
    print("    most held at once: " + ", ".join(
        f"{sem} {ledger.peak[sem]}/{maximum} ({ledger.recorded[sem]} holds)"
        for sem, (maximum, _) in SEMAPHORES.items() if sem != "probe"))
    print(f"  counts lost:       {counts_lost}")
    print(f"  capacity samples:  {sampler.samples} ({sampler.samples_in_grace} during a grace "
          f"period), over max: {sum(1 for v in world.violations if 'capacity' in v)}")
    print(f"  5xx answers:       {fivexx}")
    print(f"  transport errors:  {world.transport_errors_down} while the server was down, "
          f"{world.transport_errors_stale} on connections to a stopped server, "
          f"{world.transport_errors_up} while up (retried)")
    print("  other events:      " + ", ".join(
        f"{k} {v}" for k, v in sorted(world.events.items())
        if k not in ("clients crashed", "restores", "locks restored", "counts lost",
                     "unknown peer after a crash (restored)")))
    print(f"  memory (VmRSS):    first server {mib(first[0])} at start, {mib(max(first))} peak"
          + "".join(f", {mib(m[0])} before restart {i + 1}" for i, m in enumerate(rss_before)
                    if m)
          + f"; last server {mib(start_rss)} at start, {mib(max(last))} peak, "
          f"{mib(end_rss)} at the end (allowed {mib(start_rss + slack)}); "
          f"peak overall {mib(peak_kib)}")
    return verdict(world, workdir, "server", args.keep)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
