"""Token bucket mirroring Polymarket's per-signer limits, enforced locally before sending.

The exchange counts a batch as n orders and cancel-all as 1 + n; staying under its buckets
locally means we never learn about the limit from a 429 in the middle of a requote.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class TokenBucket:
    def __init__(self, rate_per_s: float, burst: float, clock: Callable[[], float] = time.monotonic) -> None:
        if rate_per_s <= 0 or burst <= 0:
            raise ValueError("rate and burst must be positive")
        self.rate = rate_per_s
        self.burst = burst
        self._clock = clock
        self._tokens = float(burst)
        self._stamp = clock()
        self.denied = 0  # tokens asked for and refused, for status

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now

    @property
    def available(self) -> float:
        self._refill()
        return self._tokens

    def try_take(self, n: float = 1.0) -> bool:
        self._refill()
        if self._tokens >= n:
            self._tokens -= n
            return True
        self.denied += int(n)
        return False

    def take_up_to(self, n: int) -> int:
        """Take as many whole tokens as are available, at most n; returns how many."""
        self._refill()
        granted = max(0, min(n, int(self._tokens)))
        self._tokens -= granted
        if granted < n:
            self.denied += n - granted
        return granted

    def force_take(self, n: float) -> None:
        """Charge tokens for a call that must go out regardless (kill-switch cancel-all)."""
        self._refill()
        self._tokens -= n

    def wait_time(self, n: float = 1.0) -> float:
        """Seconds until n tokens are available (0 if now)."""
        self._refill()
        missing = n - self._tokens
        return 0.0 if missing <= 0 else missing / self.rate
