"""Measure the per-call overhead of ``with lock(...)`` on an uncontended semaphore.

Starts the server binary (by default the release build at the repository root) on a free
loopback port, then times many ``with lock(url, "A"): pass`` blocks on one thread. Each block is
three requests on one keep-alive connection (new peer, acquire, remove peer) plus starting and
stopping the heartbeat thread. Prints the median and percentiles per call, and the same for a
bare ``Client.remainder`` round trip as a floor for one request.

    python bench_lock.py [--bin target/release/throttle] [--calls 2000]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, List

from throttle_client import Client, lock

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT / "scripts" / "harness"))
import throttle_harness  # noqa: E402


def start_server(binary: Path, config: Path) -> throttle_harness.Server:
    """Start the server on a free port (the repository's harness reads its address); its log
    goes beside ``config``."""
    server = throttle_harness.Server(
        [str(binary), "-c", str(config)], log_dir=config.parent, name=config.stem,
        start_timeout=10,
    )
    try:
        return server.start()
    except throttle_harness.HarnessError as error:
        sys.exit(f"the server did not start: {error}")


def timed(calls: int, body: Callable[[], None]) -> List[float]:
    """Seconds per call of ``body``, for each of ``calls`` calls after a warm-up."""
    for _ in range(min(200, calls)):
        body()
    samples = []
    for _ in range(calls):
        started = time.perf_counter()
        body()
        samples.append(time.perf_counter() - started)
    return samples


def report(name: str, samples: List[float]) -> None:
    ordered = sorted(samples)

    def pick(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1e6

    print(
        f"{name:<28} median {statistics.median(samples) * 1e6:7.0f} µs   "
        f"mean {statistics.mean(samples) * 1e6:7.0f} µs   p90 {pick(0.9):7.0f} µs   "
        f"p99 {pick(0.99):7.0f} µs   ({len(samples)} calls)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bin", type=Path, default=REPO_ROOT / "target/release/throttle")
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as config:
        config.write("[semaphores]\nA = 1\n")
    server = start_server(args.bin, Path(config.name))
    url = server.url
    try:
        client = Client(url)

        def one_lock() -> None:
            with lock(url, "A"):
                pass

        def one_request() -> None:
            client.remainder("A")

        report("Client.remainder (1 request)", timed(args.calls, one_request))
        report("with lock(url, 'A')", timed(args.calls, one_lock))
    finally:
        server.stop()
        Path(config.name).unlink()
        if server.log_path is not None:
            server.log_path.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
