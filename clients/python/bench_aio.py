"""Locks per second through one event loop (``throttle_client.aio``) against the blocking client
with threads, in one run against one server.

Starts the server binary (by default the release build at the repository root) on a free
loopback port with ``A = N`` for N workers, so no worker ever waits for another: this measures
what each client costs per lock, not the semaphore. Then, in turns, N threads each run
``with lock(url, "A"): pass`` and N tasks on one event loop each run ``async with lock(url,
"A"): pass``, for a few seconds each; a lock is three requests (new peer, acquire, remove
peer). Prints locks per second (the median of the rounds) and the client's CPU time per lock.
``--max M`` takes a semaphore of M instead, so that workers queue for it.

    python bench_aio.py [--bin target/release/throttle] [--workers 1,16,64] [--seconds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

from bench_lock import REPO_ROOT, start_server
from throttle_client import lock
from throttle_client.aio import aclose_local_clients
from throttle_client.aio import lock as async_lock


def with_threads(url: str, workers: int, seconds: float) -> int:
    """Locks taken by ``workers`` threads in ``seconds``."""
    counts = [0] * workers
    start = threading.Barrier(workers + 1)
    stop_at = [0.0]

    def worker(index: int) -> None:
        start.wait()
        while time.monotonic() < stop_at[0]:
            with lock(url, "A"):
                pass
            counts[index] += 1

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(workers)]
    for thread in threads:
        thread.start()
    stop_at[0] = time.monotonic() + seconds
    start.wait()
    for thread in threads:
        thread.join()
    return sum(counts)


def with_tasks(url: str, workers: int, seconds: float) -> int:
    """Locks taken by ``workers`` tasks on one event loop in ``seconds``."""

    async def run() -> int:
        stop_at = time.monotonic() + seconds

        async def worker() -> int:
            count = 0
            while time.monotonic() < stop_at:
                async with async_lock(url, "A"):
                    pass
                count += 1
            return count

        counts = await asyncio.gather(*(worker() for _ in range(workers)))
        await aclose_local_clients()
        return sum(counts)

    return asyncio.run(run())


Scenario = Callable[[str, int, float], int]


def measure(
    url: str, scenario: Scenario, workers: int, seconds: float
) -> Tuple[float, float]:
    """Locks per second and client CPU seconds per lock of one round."""
    cpu = time.process_time()
    wall = time.monotonic()
    locks = scenario(url, workers, seconds)
    wall = time.monotonic() - wall
    cpu = time.process_time() - cpu
    return locks / wall, cpu / max(locks, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bin", type=Path, default=REPO_ROOT / "target/release/throttle")
    parser.add_argument("--workers", default="1,16,64", help="comma-separated worker counts")
    parser.add_argument("--seconds", type=float, default=3.0, help="per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max", type=int, default=None, help="semaphore max (default: workers)")
    args = parser.parse_args()
    scenarios: Dict[str, Scenario] = {"threads (blocking)": with_threads, "tasks (aio)": with_tasks}
    print(f"{'workers':>7}  {'client':<20} {'locks/s':>9} {'CPU/lock':>10}   (median of "
          f"{args.rounds} rounds of {args.seconds:g}s)")
    for workers in (int(n) for n in args.workers.split(",")):
        maximum: Optional[int] = args.max if args.max is not None else workers
        with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as config:
            config.write(f"[semaphores]\nA = {maximum}\n")
        server = start_server(args.bin, Path(config.name))
        url = server.url
        try:
            results: Dict[str, List[Tuple[float, float]]] = {name: [] for name in scenarios}
            for _ in range(args.rounds):  # In turns, so both see the same machine.
                for name, scenario in scenarios.items():
                    results[name].append(measure(url, scenario, workers, args.seconds))
            for name, rounds in results.items():
                rate = statistics.median(r[0] for r in rounds)
                cpu = statistics.median(r[1] for r in rounds)
                print(f"{workers:>7}  {name:<20} {rate:>9.0f} {cpu * 1e3:>8.2f}ms   (A = {maximum})")
        finally:
            server.stop()
            Path(config.name).unlink()
            if server.log_path is not None:
                server.log_path.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
