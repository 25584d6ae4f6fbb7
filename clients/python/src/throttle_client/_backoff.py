"""Exponentially growing, jittered delays, shared by the retry loop and the long-poll loop.

Jitter matters here: after a server restart every client of a fleet retries at about the same
moment, and spreading their retries keeps them from arriving as one burst.
"""

from __future__ import annotations

import random


class Backoff:
    """Yields delays that double from ``first`` up to ``cap`` seconds, each drawn at random
    from the upper half of its step ("equal jitter"), so a delay is never near zero."""

    def __init__(self, first: float, cap: float) -> None:
        self._first = first
        self._cap = cap
        self._step = first

    def next_delay(self) -> float:
        """The next delay in seconds; the one after it will be about twice as long."""
        step = self._step
        self._step = min(self._step * 2, self._cap)
        return step / 2 + random.uniform(0, step / 2)

    def reset(self) -> None:
        """Start again from the shortest delay, after the condition that caused waiting ended."""
        self._step = self._first
