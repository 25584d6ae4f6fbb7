"""``rate_limit``: at most N calls in any window, and freed units reused promptly."""

from __future__ import annotations

import statistics
import threading
import time
from datetime import timedelta
from typing import List

import pytest

from throttle_client import Client, Timeout, rate_limit

# The contract allows a freed unit to be picked up within this long after its lease expired.
REUSE_BOUND_SECONDS = 0.050


@pytest.fixture
def rate_server(start_server):  # type: ignore[no-untyped-def]
    return start_server("[semaphores]\napi = 3\nsolo = 1\n")


def test_at_most_n_calls_in_any_window_under_load(rate_server) -> None:  # type: ignore[no-untyped-def]
    n, per, duration = 3, 0.4, 3.0
    calls: List[float] = []
    calls_lock = threading.Lock()
    stop_at = time.monotonic() + duration

    def worker() -> None:
        while time.monotonic() < stop_at:
            rate_limit(rate_server.url, "api", per=timedelta(seconds=per))
            with calls_lock:
                calls.append(time.monotonic())

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=duration + 30)
    calls.sort()
    # Call i and call i+n must be a full window apart, less the time it takes an answer to
    # travel from the server (where the window starts) back to the caller (where it is
    # recorded): a few milliseconds on loopback.
    gaps = [later - earlier for earlier, later in zip(calls, calls[n:])]
    print(f"{len(calls)} calls, smallest gap between call i and i+{n}: {min(gaps) * 1000:.1f} ms")
    assert min(gaps) >= per - 0.015
    # The units were reused promptly: close to n calls per window got through.
    assert len(calls) >= n * (duration / per) * 0.8


def test_a_freed_unit_is_used_right_after_its_expiry(rate_server) -> None:  # type: ignore[no-untyped-def]
    client = Client(rate_server.url)
    per = timedelta(milliseconds=300)
    latencies = []
    for _ in range(5):
        holder = client.new_peer(expires_in=per)
        asked = time.monotonic()
        assert client.acquire(holder, "solo", expires_in=per)
        # The lease ends `per` after the server handled the acquire, which is after `asked`:
        # measuring from `asked` over-estimates the latency, never under-estimates it.
        rate_limit(rate_server.url, "solo", per=per)
        latencies.append(time.monotonic() - asked - per.total_seconds())
        time.sleep(per.total_seconds() + 0.05)  # Let this round's unit expire too.
    print("freed unit reused after (ms): " + ", ".join(f"{x * 1000:.1f}" for x in latencies))
    assert statistics.median(latencies) <= REUSE_BOUND_SECONDS
    assert max(latencies) <= 4 * REUSE_BOUND_SECONDS


def test_rate_limit_times_out_without_leaving_a_waiter(rate_server) -> None:  # type: ignore[no-untyped-def]
    client = Client(rate_server.url)
    rate_limit(rate_server.url, "solo", per=timedelta(seconds=30))
    with pytest.raises(Timeout):
        rate_limit(rate_server.url, "solo", per=timedelta(seconds=30),
                   timeout=timedelta(milliseconds=200))
    assert not [p for p in client.list_peers() if p.pending]


def test_a_waiter_gets_its_full_window_from_the_grant(rate_server) -> None:  # type: ignore[no-untyped-def]
    """A caller that waited longer than one slice still holds its unit for a whole window."""
    client = Client(rate_server.url)
    rate_limit(rate_server.url, "solo", per=timedelta(milliseconds=300))
    rate_limit(rate_server.url, "solo", per=timedelta(seconds=1))  # waits ~300 ms
    granted = time.monotonic()
    time.sleep(0.7)
    assert client.remainder("solo") == 0
    while client.remainder("solo") == 0 and time.monotonic() - granted < 5:
        time.sleep(0.01)
    assert 0.9 <= time.monotonic() - granted < 1.5
