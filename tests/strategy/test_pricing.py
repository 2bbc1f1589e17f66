"""Fair value, volatility and quoting maths against independent closed forms."""

from __future__ import annotations

import math
import random
from statistics import NormalDist

import pytest

from polymm.strategy.fair_value import prob_above
from polymm.strategy.markets import TICKS
from polymm.strategy.quoting import TwoSided, needs_requote, to_ticks, two_sided
from polymm.strategy.volatility import EwmaVolatility

N = NormalDist()


@pytest.mark.parametrize(
    "spot, strike, t, sigma",
    [(97000, 97000, 900, 3e-4), (97100, 97000, 300, 1e-4), (96000, 97000, 3600, 2e-4), (50, 40, 86400, 5e-5)],
)
def test_prob_above_matches_black_scholes_digital(spot, strike, t, sigma):
    d2 = (math.log(spot / strike) - 0.5 * sigma**2 * t) / (sigma * math.sqrt(t))
    assert prob_above(spot, strike, t, sigma) == pytest.approx(N.cdf(d2), abs=1e-12)


def test_at_the_money_is_just_below_one_half_and_monotone_in_spot():
    p = prob_above(100, 100, 3600, 2e-4)
    assert 0.49 < p < 0.5  # the -sigma^2 t / 2 lognormal term
    prices = [prob_above(s, 100, 600, 2e-4) for s in (98, 99, 99.5, 100, 100.5, 101, 102)]
    assert prices == sorted(prices)


def test_limits_at_expiry_and_zero_vol():
    assert prob_above(101, 100, 0, 2e-4) == 1.0
    assert prob_above(99, 100, 0, 2e-4) == 0.0
    assert prob_above(100, 100, 0, 0.0) == 0.5
    assert prob_above(100, 0, 10, 1e-4) == 1.0


def test_basis_uncertainty_pulls_towards_one_half():
    sharp = prob_above(100.2, 100, 5, 1e-5)
    blurred = prob_above(100.2, 100, 5, 1e-5, extra_var=(0.5 / 100) ** 2)
    assert 0.5 < blurred < sharp


def test_ewma_volatility_recovers_a_known_sigma():
    sigma = 2e-4  # per sqrt(second): about 112 % a year
    rng = random.Random(3)
    vol = EwmaVolatility(prior_per_sqrt_s=5e-5, halflife_s=900)
    price, t_ns = 97000.0, 0
    for _ in range(20_000):
        for _ in range(4):  # several quotes per second must not bias the 1 s sampling
            t_ns += 250_000_000
            vol.update(t_ns, price)
        price *= math.exp(rng.gauss(-0.5 * sigma**2, sigma))
    assert vol.sigma_per_sqrt_s == pytest.approx(sigma, rel=0.15)


@pytest.mark.parametrize("tick", TICKS)
def test_quotes_sit_on_the_grid_outside_the_edge(tick):
    for fair in (0.0137, 0.25, 0.5003, 0.77777, 0.9912):
        q = two_sided(
            fair, tick=tick, half_spread=0.02, position=0, max_position=100, size=10.129, skew_per_max=0
        )
        for price in (q.bid, q.ask):
            if price is not None:
                ticks = price / tick
                assert abs(ticks - round(ticks)) < 1e-6 and tick - 1e-12 <= price <= 1 - tick + 1e-12
        if q.bid is not None and q.bid > tick:
            assert q.bid <= fair - 0.02 + 1e-9
        if q.ask is not None and q.ask < 1 - tick:
            assert q.ask >= fair + 0.02 - 1e-9
        assert q.size == 10.12


def test_inventory_skews_both_quotes_against_the_position():
    flat = two_sided(
        0.5, tick=0.01, half_spread=0.02, position=0, max_position=100, size=10, skew_per_max=0.04
    )
    long = two_sided(
        0.5, tick=0.01, half_spread=0.02, position=50, max_position=100, size=10, skew_per_max=0.04
    )
    short = two_sided(
        0.5, tick=0.01, half_spread=0.02, position=-50, max_position=100, size=10, skew_per_max=0.04
    )
    assert (long.bid, long.ask) == (0.46, 0.5) and (flat.bid, flat.ask) == (0.48, 0.52)
    assert (short.bid, short.ask) == (0.5, 0.54)


def test_position_limits_remove_a_side():
    at_max = two_sided(
        0.5, tick=0.01, half_spread=0.02, position=100, max_position=100, size=10, skew_per_max=0
    )
    at_min = two_sided(
        0.5, tick=0.01, half_spread=0.02, position=-100, max_position=100, size=10, skew_per_max=0
    )
    assert at_max.bid is None and at_max.ask is not None
    assert at_min.ask is None and at_min.bid is not None


def test_post_only_never_crosses_the_book():
    rng = random.Random(5)
    for _ in range(2000):
        best_bid = round(rng.uniform(0.02, 0.9), 2)
        best_ask = round(best_bid + rng.choice([0.01, 0.02, 0.05]), 2)
        fair = rng.uniform(0.01, 0.99)
        q = two_sided(fair, tick=0.01, half_spread=0.01, position=0, max_position=10, size=5, skew_per_max=0,
                      best_bid=best_bid, best_ask=best_ask)  # fmt: skip
        assert q.bid is None or q.bid < best_ask - 1e-9
        assert q.ask is None or q.ask > best_bid + 1e-9


def test_requote_only_on_a_real_move():
    base = TwoSided(0.47, 0.53, 10)
    assert not needs_requote(base, TwoSided(0.48, 0.54, 10), fair_move=0.004, threshold=0.01)  # tick flap
    assert needs_requote(base, TwoSided(0.48, 0.54, 10), fair_move=0.011, threshold=0.01)
    assert needs_requote(base, TwoSided(None, 0.53, 10), fair_move=0.0, threshold=0.01)  # a side vanished
    assert needs_requote(base, TwoSided(0.47, 0.53, 5), fair_move=0.0, threshold=0.01)
    assert needs_requote(base, base, fair_move=0.0, threshold=0.01, best_ask=0.46)  # our bid would cross
    assert not needs_requote(base, base, fair_move=0.0, threshold=0.01, best_bid=0.46, best_ask=0.54)
    assert needs_requote(None, base, fair_move=0.0, threshold=0.01)
    assert to_ticks(0.0075, 0.0025, up=True) == 3 and to_ticks(0.0075, 0.0025, up=False) == 3
