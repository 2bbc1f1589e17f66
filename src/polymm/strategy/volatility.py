"""Online volatility from the Binance mid: EWMA of squared log returns on a fixed time grid.

The mid is sampled at the close of each `bucket_s` bucket (the last mid seen in it), so a burst of
quote updates weighs the same as one: the tick rate does not bias the estimate. A return spanning
g buckets (quiet market) counts as g buckets of variance r^2 / g, with the EWMA decayed g times.
Returns beyond `clip_sigmas` standard deviations are clipped so one bad print cannot blow the
spread open for the next half-life; a gap longer than `max_gap_s` re-anchors without a sample.

The variance starts at the prior; until `warmup` samples are in, `sigma` never goes below the prior
(a quiet first minute must not make us quote tight). Output is floored and capped.
O(1) per update, no allocation: ints and floats in slots.
"""

from __future__ import annotations

import math

from polymm.strategy.markets import ANNUAL_S

_SQRT_YEAR = math.sqrt(ANNUAL_S)


class EwmaVolatility:
    __slots__ = (
        "_anchor",
        "_anchor_bucket",
        "_bucket",
        "_bucket_ns",
        "_bucket_s",
        "_cap",
        "_clip2",
        "_floor",
        "_keep",
        "_last",
        "_max_gap",
        "_prior",
        "_var",
        "samples",
        "warmup",
    )

    def __init__(
        self,
        prior_annual: float,
        *,
        halflife_s: float = 300.0,
        bucket_s: float = 1.0,
        floor_annual: float = 0.05,
        cap_annual: float = 5.0,
        warmup: int = 60,
        clip_sigmas: float = 6.0,
        max_gap_s: float = 300.0,
    ) -> None:
        if not (prior_annual > 0 and halflife_s > 0 and bucket_s > 0 and 0 < floor_annual <= cap_annual):
            raise ValueError("volatility parameters must be positive, floor <= cap")
        self._bucket_s = bucket_s
        self._bucket_ns = int(bucket_s * 1e9)
        self._keep = 0.5 ** (bucket_s / halflife_s)  # weight left on the old variance per bucket
        self._prior = prior_annual / _SQRT_YEAR
        self._var = self._prior**2 * bucket_s  # variance per bucket
        self._floor = floor_annual / _SQRT_YEAR
        self._cap = cap_annual / _SQRT_YEAR
        self._clip2 = clip_sigmas * clip_sigmas
        self._max_gap = max(1, int(max_gap_s / bucket_s))
        self._bucket = -1  # bucket of the latest mid
        self._last = 0.0  # latest mid (the close of _bucket so far)
        self._anchor = 0.0  # close of the last sampled bucket
        self._anchor_bucket = -1
        self.samples = 0
        self.warmup = warmup

    def update(self, ts_ns: int, mid: float) -> None:
        if not mid > 0.0:  # also refuses NaN
            return
        bucket = ts_ns // self._bucket_ns
        current = self._bucket
        if bucket == current:
            self._last = mid
            return
        if bucket < current:
            return  # out of order: the grid only moves forward
        if current >= 0:
            self._close(current, self._last)
        self._bucket = bucket
        self._last = mid

    def _close(self, bucket: int, close: float) -> None:
        anchor_bucket = self._anchor_bucket
        self._anchor_bucket = bucket
        anchor, self._anchor = self._anchor, close
        if anchor_bucket < 0:
            return
        gap = bucket - anchor_bucket
        if gap > self._max_gap:
            return  # an outage: one return across it says little about the next minutes
        r = math.log(close / anchor)
        r2 = r * r
        limit = self._clip2 * self._var * gap
        if r2 > limit:
            r2 = limit
        if gap == 1:
            keep = self._keep
            self._var = keep * self._var + (1.0 - keep) * r2
        else:
            keep = self._keep**gap
            self._var = keep * self._var + (1.0 - keep) * (r2 / gap)
        self.samples += 1

    @property
    def ready(self) -> bool:
        return self.samples >= self.warmup

    @property
    def sigma(self) -> float:
        """Per sqrt(second), floored and capped; at least the prior until warmed up."""
        s = math.sqrt(self._var / self._bucket_s)
        if self.samples < self.warmup and s < self._prior:
            s = self._prior
        return self._cap if s > self._cap else self._floor if s < self._floor else s

    @property
    def sigma_annual(self) -> float:
        return self.sigma * _SQRT_YEAR

    @property
    def raw_sigma(self) -> float:
        """The estimate itself, per sqrt(second), without prior, floor or cap."""
        return math.sqrt(self._var / self._bucket_s)
