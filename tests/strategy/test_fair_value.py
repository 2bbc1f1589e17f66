"""Fair value against independent closed forms (statistics.NormalDist), limits and monotonicity."""

from __future__ import annotations

import math
from statistics import NormalDist

import pytest

from polymm.strategy.fair_value import MIN_SD, digital, prob_above

N = NormalDist()
YEAR = 365 * 24 * 3600


def n_d2(spot: float, strike: float, t: float, sigma: float, extra: float = 0.0) -> float:
    var = sigma**2 * t + extra
    return N.cdf((math.log(spot / strike) - var / 2) / math.sqrt(var))


@pytest.mark.parametrize(
    "spot, strike, t, sigma, extra",
    [
        (97000, 97000, 900, 3e-4, 0.0),
        (97100, 97000, 300, 1e-4, 0.0),
        (96000, 97000, 3600, 2e-4, 0.0),
        (50, 40, 86400, 5e-5, 0.0),
        (100_050, 100_000, 60, 1e-4, (5 / 100_000) ** 2),
        (90_000, 100_000, 600, 1e-4, 0.0),  # deep out of the money: a tail value
    ],
)
def test_matches_n_of_d2(spot, strike, t, sigma, extra):
    expected = n_d2(spot, strike, t, sigma, extra)
    assert prob_above(spot, strike, t, sigma, extra) == pytest.approx(expected, rel=1e-9, abs=1e-15)
    assert digital(spot, strike, t, sigma, extra)[0] == pytest.approx(expected, rel=1e-9, abs=1e-15)


def test_at_the_money_is_one_half_minus_the_lognormal_term():
    sigma, t = 0.8 / math.sqrt(YEAR), 3600
    sd = sigma * math.sqrt(t)
    p = prob_above(100, 100, t, sigma)
    assert p == pytest.approx(N.cdf(-sd / 2), abs=1e-12)
    assert 0.5 - p == pytest.approx(sd / 2 * N.pdf(0), rel=1e-3)  # tiny and below one half


def test_monotone_in_spot_strike_and_time():
    spots = [prob_above(s, 100, 600, 2e-4) for s in (95, 98, 99.5, 100, 100.5, 102, 105)]
    assert spots == sorted(spots) and len(set(spots)) == len(spots)
    strikes = [prob_above(100, k, 600, 2e-4) for k in (95, 98, 100, 102, 105)]
    assert strikes == sorted(strikes, reverse=True)
    itm = [prob_above(101, 100, t, 2e-4) for t in (3600, 600, 60, 1)]  # in the money: -> 1 as t -> 0
    otm = [prob_above(99, 100, t, 2e-4) for t in (3600, 600, 60, 1)]
    assert itm == sorted(itm) and otm == sorted(otm, reverse=True)


def test_limits():
    assert prob_above(101, 100, 0, 2e-4) == 1.0
    assert prob_above(99, 100, 0, 2e-4) == 0.0
    assert prob_above(100, 100, 0, 2e-4) == pytest.approx(0.5)
    assert prob_above(100, 100, 600, 0.0) == pytest.approx(0.5)
    assert prob_above(100.01, 100, 600, 0.0) == 1.0  # vol -> 0: a step
    assert prob_above(100, 0, 10, 1e-4) == 1.0 and prob_above(100, -5, 10, 1e-4) == 1.0
    assert prob_above(0, 100, 10, 1e-4) == 0.0
    assert prob_above(100, 100, -5, 1e-4) == pytest.approx(0.5)  # past expiry = at expiry
    # The step is smoothed over ~MIN_SD in log terms, not a discontinuity at float precision.
    near = prob_above(100 * math.exp(MIN_SD), 100, 0, 0.0)
    assert near == pytest.approx(N.cdf(1.0), abs=1e-6)


def test_basis_uncertainty_pulls_towards_one_half():
    sharp = prob_above(100.2, 100, 5, 1e-5)
    blurred = prob_above(100.2, 100, 5, 1e-5, extra_var=(0.5 / 100) ** 2)
    assert 0.5 < blurred < sharp


@pytest.mark.parametrize("spot", [99.0, 99.8, 100.0, 100.3, 102.0])
def test_greeks_match_finite_differences(spot):
    strike, t, sigma, extra = 100.0, 900.0, 1.5e-4, 1e-6
    _, d_lns, d_sigma = digital(spot, strike, t, sigma, extra)
    h = 1e-6
    up = prob_above(spot * math.exp(h), strike, t, sigma, extra)
    down = prob_above(spot * math.exp(-h), strike, t, sigma, extra)
    assert d_lns == pytest.approx((up - down) / (2 * h), rel=1e-4)
    hs = sigma * 1e-5
    vega = (
        prob_above(spot, strike, t, sigma + hs, extra) - prob_above(spot, strike, t, sigma - hs, extra)
    ) / (2 * hs)
    assert d_sigma == pytest.approx(vega, rel=1e-4, abs=1e-6)
