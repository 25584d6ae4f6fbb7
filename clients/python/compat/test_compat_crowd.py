"""The published ``throttle-client==0.5.13`` in a crowd (issue 13): 100 threads of it sharing a
semaphore of 4. The old client long-polls in slices of 5 s; this server keeps every such poll
waiting (none is answered early), so each grant costs a handful of requests, not dozens, and
the count is never exceeded. Bounds are generous: timing belongs in ``scripts/crowd``."""

from __future__ import annotations

import re
import threading
import time
import urllib.request
from datetime import timedelta

from throttle_client import lock

THREADS = 100
MAX = 4
RUN = 4.0


def _requests_answered(url: str) -> float:
    with urllib.request.urlopen(f"{url}/metrics", timeout=30) as answer:
        text = answer.read().decode()
    counts = re.findall(r"^throttle_requests_total\{[^}]*\} (\S+)$", text, re.MULTILINE)
    return sum(float(count) for count in counts)


def test_a_hundred_threads_of_the_old_client_do_not_spin(start_server) -> None:  # type: ignore[no-untyped-def]
    url = start_server(f"[semaphores]\nSmall = {MAX}\n").url
    guard = threading.Lock()
    inside = 0
    most_inside = 0
    grants = 0
    failures: list[BaseException] = []
    stop_at = time.monotonic() + RUN

    def work() -> None:
        nonlocal inside, most_inside, grants
        try:
            while time.monotonic() < stop_at:
                with lock(url, "Small", timeout=timedelta(seconds=60)):
                    with guard:
                        inside += 1
                        grants += 1
                        most_inside = max(most_inside, inside)
                    time.sleep(0.02)
                    with guard:
                        inside -= 1
        except BaseException as error:  # noqa: BLE001 - reported below
            failures.append(error)

    threads = [threading.Thread(target=work) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads), "a thread never finished"
    assert not failures, failures[:3]
    assert most_inside <= MAX
    assert grants >= THREADS, f"only {grants} grants"
    # new_peer, the long polls, the release: a few per grant. A client that spins on early
    # 202s would make dozens.
    per_grant = _requests_answered(url) / grants
    assert per_grant < 8, f"{per_grant:.1f} requests per grant"
