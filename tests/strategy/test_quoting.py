"""Quoting maths: exact tick grids, skew, post-only, limits, requote rule."""

from __future__ import annotations

import random
from fractions import Fraction

import pytest

from polymm.strategy.markets import TICKS
from polymm.strategy.quoting import (
    QuoteParams,
    TwoSided,
    floor_size,
    make_quotes,
    needs_requote,
    ticks_per_unit,
    to_ticks,
)


def params(tick: float = 0.01, **kw) -> QuoteParams:
    base = dict(
        min_edge=0.02, quote_size=10.0, min_size=5.0, max_position=100.0, max_net=100.0, max_notional=1e9
    )
    base.update(kw)
    return QuoteParams.for_tick(tick, **base)


@pytest.mark.parametrize("tick", TICKS)
def test_every_tick_size_rounds_outward_on_the_exact_grid(tick):
    n = ticks_per_unit(tick)
    assert Fraction(1, n) == Fraction(str(tick))
    rng = random.Random(int(n))
    p = params(tick, min_edge=0.013)
    for _ in range(500):
        fair = rng.uniform(0.0, 1.0)
        q = make_quotes(fair, p)
        for price in (q.bid, q.ask):
            if price is None:
                continue
            exact = Fraction(str(price)) * n  # the decimal the CLOB sees is an exact multiple
            assert exact.denominator == 1 and float(Fraction(str(price))) == price
            assert tick <= price <= 1 - tick
        if q.bid is not None:
            assert q.bid <= fair - 0.013 + 1e-12 and q.bid > fair - 0.013 - tick
        else:
            assert fair - 0.013 < tick + 1e-12  # dropped only when the edge price is off the grid
        if q.ask is not None:
            assert q.ask >= fair + 0.013 - 1e-12 and q.ask < fair + 0.013 + tick
        else:
            assert fair + 0.013 > 1 - tick - 1e-12


def test_prices_on_a_tick_stay_put_despite_float_noise():
    assert to_ticks(0.0075, 400, up=True) == 3 and to_ticks(0.0075, 400, up=False) == 3
    assert to_ticks(0.1 + 0.2, 10, up=False) == 3 and to_ticks(0.7, 100, up=True) == 70
    q = make_quotes(0.5, params(0.0025, min_edge=0.0075))
    assert (q.bid, q.ask) == (0.4925, 0.5075)
    assert floor_size(10.129) == 10.12 and floor_size(0.29 * 100 / 100) == 0.29


def test_half_spread_is_the_larger_of_min_edge_and_k_uncertainty():
    assert (make_quotes(0.5, params(), uncertainty=0.01).bid, make_quotes(0.5, params()).ask) == (0.48, 0.52)
    wide = make_quotes(0.5, params(uncertainty_k=2.0), uncertainty=0.05)
    assert (wide.bid, wide.ask) == (0.4, 0.6)


def test_inventory_skew_direction_and_magnitude():
    p = params(skew=0.04, max_net=100.0)
    flat = make_quotes(0.5, p)
    long = make_quotes(0.5, p, yes_shares=50)
    short = make_quotes(0.5, p, no_shares=50)
    assert (flat.bid, flat.ask) == (0.48, 0.52)
    assert (long.bid, long.ask) == (0.46, 0.5)  # long YES: both down by 0.04 * 50/100
    assert (short.bid, short.ask) == (0.5, 0.54)
    pair = make_quotes(0.5, p, yes_shares=50, no_shares=50)  # a YES+NO pair is flat
    assert (pair.bid, pair.ask) == (0.48, 0.52)
    # The skew moves the reducing side to fair value at most, never through it.
    big = make_quotes(0.5, params(skew=0.2), yes_shares=100)
    assert big.ask == 0.5 and big.bid is None


def test_post_only_never_crosses_the_book():
    rng = random.Random(5)
    for tick in TICKS:
        n = ticks_per_unit(tick)
        p = params(tick, min_edge=0.005, skew=0.03)
        for _ in range(400):
            best_bid_t = rng.randint(1, n - 2)
            best_ask_t = min(n - 1, best_bid_t + rng.choice([1, 2, 5]))
            best_bid = best_bid_t / n if rng.random() < 0.9 else None
            best_ask = best_ask_t / n if rng.random() < 0.9 else None
            q = make_quotes(
                rng.uniform(0.0, 1.0), p, yes_shares=rng.uniform(0, 80), no_shares=rng.uniform(0, 80),
                best_bid=best_bid, best_ask=best_ask,
            )  # fmt: skip
            assert q.bid is None or best_ask is None or q.bid < best_ask
            assert q.ask is None or best_bid is None or q.ask > best_bid
            if q.bid is not None and q.ask is not None:
                assert q.bid < q.ask
    # One tick back from the touch when the fair sits above the book.
    q = make_quotes(0.9, params(), best_bid=0.5, best_ask=0.52)
    assert q.bid == 0.51 and q.ask == 0.92
    q = make_quotes(0.1, params(), best_bid=0.5, best_ask=0.52)
    assert q.ask == 0.51 and q.bid == 0.08


def test_position_limits_shrink_then_suppress_a_side():
    p = params(max_position=100, max_net=60)
    at_max = make_quotes(0.5, p, yes_shares=100, no_shares=40)
    assert at_max.bid is None and at_max.ask_size == 10  # no more YES; selling via NO still fine
    room = make_quotes(0.5, p, yes_shares=53)  # net room 7 < quote size 10: shrink, >= min size 5
    assert room.bid_size == 7 and room.ask_size == 10
    none = make_quotes(0.5, p, yes_shares=57)  # room 3 < min size 5: no bid
    assert none.bid is None
    short = make_quotes(0.5, p, no_shares=60)
    assert short.ask is None and short.bid_size == 10


def test_notional_budget_scales_buys_down():
    p = params(max_notional=20.0)
    q = make_quotes(0.5, p, spent=12.0)  # 8 pUSD left for 0.48*10 + 0.48*10 = 9.6
    assert q.bid_size == q.ask_size == 8.33
    assert 0.48 * q.bid_size + (1 - 0.52) * q.ask_size <= 8.0
    assert make_quotes(0.5, p, spent=20.0).empty


def test_yes_only_sells_only_what_it_holds():
    p = params(yes_only=True)
    assert make_quotes(0.5, p).ask is None
    q = make_quotes(0.5, p, yes_shares=7, spent=3.5)
    assert q.ask == 0.52 and q.ask_size == 7
    assert make_quotes(0.5, p, yes_shares=3).ask is None  # below min size


def test_requote_threshold():
    live = TwoSided(100, 47, 10.0, 53, 10.0)
    threshold = 0.02
    assert not needs_requote(live, live, threshold)
    assert not needs_requote(live, TwoSided(100, 48, 10.0, 54, 10.0), threshold)  # one tick: keep queue
    assert needs_requote(live, TwoSided(100, 49, 10.0, 53, 10.0), threshold)
    assert needs_requote(live, TwoSided(100, 47, 10.0, 51, 10.0), threshold)
    assert needs_requote(live, TwoSided(100, 47, 7.0, 53, 10.0), threshold)  # size changed
    assert needs_requote(live, TwoSided(100, 0, 0.0, 53, 10.0), threshold)  # a side vanished
    assert needs_requote(TwoSided(100, 0, 0.0, 53, 10.0), live, threshold)  # ... or appeared
    assert needs_requote(live, live, threshold, filled=True)
    assert needs_requote(None, live, threshold)
    assert needs_requote(live, TwoSided(1000, 470, 10.0, 530, 10.0), threshold)  # tick size changed
    assert needs_requote(live, TwoSided(100, 48, 10.0, 54, 10.0), 0.001)  # below a tick = any tick
