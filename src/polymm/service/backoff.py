"""Jittered exponential backoff for reconnect loops, and a sleep that ends early on stop."""

from __future__ import annotations

import asyncio
import contextlib
import random


class Backoff:
    """0.1 s, 0.2 s, 0.4 s ... capped, each scaled by a random factor in [0.5, 1] so that
    many clients dropped together do not reconnect in lockstep."""

    def __init__(self, initial_s: float = 0.1, cap_s: float = 5.0) -> None:
        self.initial_s = initial_s
        self.cap_s = cap_s
        self.attempt = 0

    def next_delay(self) -> float:
        delay = min(self.cap_s, self.initial_s * (2**self.attempt))
        self.attempt = min(self.attempt + 1, 30)
        return delay * random.uniform(0.5, 1.0)

    def reset(self) -> None:
        self.attempt = 0


async def sleep_or_stop(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep up to `seconds`; True if stop was set meanwhile."""
    if stop.is_set():
        return True
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
    return stop.is_set()
