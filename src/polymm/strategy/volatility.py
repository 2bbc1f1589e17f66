"""Online volatility from the Binance mid: EWMA of squared log returns on a fixed time grid.

Sampling on a grid (1 s by default) rather than per tick keeps a burst of quote updates from
biasing the estimate. O(1) per update, no allocation.
"""

from __future__ import annotations

import math


class EwmaVolatility:
    __slots__ = ("_alpha", "_bucket", "_cap", "_floor", "_last_mid", "_var", "bucket_s", "samples")

    def __init__(
        self, prior_per_sqrt_s: float, *, halflife_s: float = 600.0, bucket_s: float = 1.0,
        floor_per_sqrt_s: float = 1e-5, cap_per_sqrt_s: float = 1e-2,
    ) -> None:  # fmt: skip
        self.bucket_s = bucket_s
        self._alpha = 1.0 - 0.5 ** (bucket_s / halflife_s)  # weight of one new bucket
        self._var = prior_per_sqrt_s**2 * bucket_s  # variance per bucket; the prior is where we start
        self._floor, self._cap = floor_per_sqrt_s, cap_per_sqrt_s
        self._bucket = -1
        self._last_mid = 0.0
        self.samples = 0

    def update(self, ts_ns: int, mid: float) -> None:
        bucket = int(ts_ns / 1e9 / self.bucket_s)
        if bucket == self._bucket or mid <= 0:
            return
        if self._bucket >= 0 and self._last_mid > 0:
            gap = bucket - self._bucket  # quiet seconds: the return spans several buckets
            r2 = math.log(mid / self._last_mid) ** 2 / gap
            self._var += self._alpha * (r2 - self._var)
            self.samples += 1
        self._bucket = bucket
        self._last_mid = mid

    @property
    def sigma_per_sqrt_s(self) -> float:
        sigma = math.sqrt(self._var / self.bucket_s)
        return min(self._cap, max(self._floor, sigma))
