"""EWMA volatility on a time grid: recovers a known GBM sigma whatever the tick rate."""

from __future__ import annotations

import math
import random

import pytest

from polymm.strategy.volatility import EwmaVolatility

YEAR = 365 * 24 * 3600


def gbm_path(sigma: float, seconds: int, seed: int) -> list[float]:
    rng = random.Random(seed)
    price, out = 97_000.0, []
    for _ in range(seconds):
        out.append(price)
        price *= math.exp(rng.gauss(-0.5 * sigma**2, sigma))
    return out


def feed(vol: EwmaVolatility, path: list[float], per_second: int, jitter_seed: int = 0) -> None:
    """Each second's price, sent `per_second` times at jittered times inside that second."""
    rng = random.Random(jitter_seed)
    for second, price in enumerate(path):
        for k in sorted(rng.random() for _ in range(per_second)):
            vol.update(int((second + k) * 1e9), price)


def test_recovers_a_known_sigma_and_tick_rate_does_not_bias_it():
    sigma = 2e-4  # per sqrt(second), about 112 % a year
    path = gbm_path(sigma, 6_000, seed=3)
    slow, fast = (EwmaVolatility(0.3, halflife_s=1200, warmup=0) for _ in range(2))
    feed(slow, path, per_second=1)
    feed(fast, path, per_second=20, jitter_seed=1)
    assert slow.sigma == pytest.approx(sigma, rel=0.1)
    assert fast.sigma == pytest.approx(slow.sigma, rel=1e-9)  # same grid closes, same estimate
    assert slow.sigma_annual == pytest.approx(slow.sigma * math.sqrt(YEAR))


def test_quiet_gaps_count_as_several_buckets():
    sigma = 2e-4
    path = gbm_path(sigma, 20_000, seed=7)
    sparse = EwmaVolatility(0.3, halflife_s=3000, warmup=0)
    for second in range(0, len(path), 5):  # one update every 5 s: each return spans 5 buckets
        sparse.update(second * 1_000_000_000, path[second])
    assert sparse.sigma == pytest.approx(sigma, rel=0.1)


def test_prior_holds_during_warm_up_then_the_estimate_takes_over():
    prior = 0.6
    vol = EwmaVolatility(prior, halflife_s=60, warmup=120)
    flat = [97_000.0] * 100  # a dead quiet start must not make us quote tight
    feed(vol, flat, per_second=2)
    assert vol.sigma_annual == pytest.approx(prior) and not vol.ready
    feed(vol, [97_000.0] * 1000, per_second=1)
    assert vol.ready and vol.sigma_annual == pytest.approx(0.05)  # floored, not zero


def test_cap_clip_and_bad_input():
    vol = EwmaVolatility(0.5, halflife_s=10, cap_annual=2.0, warmup=0)
    vol.update(0, 100.0)
    vol.update(1_000_000_000, 100.0)
    vol.update(2_000_000_000, 200.0)  # a bad print: +69 % in a second
    vol.update(3_000_000_000, 200.0)
    assert vol.raw_sigma < 2 * 0.5 / math.sqrt(YEAR)  # clipped at 6 sigma: x1.8, not x10000
    for _ in range(200):  # a sustained crazy market is capped
        vol.update(vol._bucket * 1_000_000_000 + 1_000_000_000, 100.0 if vol._last > 150 else 200.0)
    assert vol.sigma_annual == pytest.approx(2.0)
    before = vol.raw_sigma
    vol.update(0, 150.0)  # out of order
    vol.update(vol._bucket * 1_000_000_000 + 5_000_000_000, float("nan"))
    vol.update(vol._bucket * 1_000_000_000 + 5_000_000_000, -1.0)
    assert vol.raw_sigma == before
    with pytest.raises(ValueError):
        EwmaVolatility(0.0)
