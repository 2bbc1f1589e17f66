from __future__ import annotations

import logging

from polymm.executor.risk import Health, KillReason, Reject, RiskEngine, RiskLimits
from polymm.executor.types import LiveOrder, MarketSpec, OrderState, Quote, Side

from .conftest import CONDITION, TOKEN_DOWN, TOKEN_UP

NOW = 1_700_000_000_000_000_000
SPEC = MarketSpec(CONDITION, (TOKEN_UP, TOKEN_DOWN), end_ts_s=NOW / 1e9 + 3600)


def engine(**kw: float) -> RiskEngine:
    return RiskEngine(RiskLimits(**kw), [SPEC])  # type: ignore[arg-type]


def live(token: str, side: Side, price: float, size: float) -> LiveOrder:
    return LiveOrder("id", token, CONDITION, side, price, size, state=OrderState.LIVE)


def test_accepts_within_limits() -> None:
    assert engine().check_order(Quote(TOKEN_UP, Side.BUY, 0.5, 10), [], {}, NOW) is None


def test_position_per_token_counts_resting_orders_and_position() -> None:
    r = engine(max_position_per_token=100)
    orders = [live(TOKEN_UP, Side.BUY, 0.4, 50)]
    assert r.check_order(Quote(TOKEN_UP, Side.BUY, 0.5, 40), orders, {TOKEN_UP: 5}, NOW) is None
    assert (
        r.check_order(Quote(TOKEN_UP, Side.BUY, 0.5, 46), orders, {TOKEN_UP: 5}, NOW) is Reject.POSITION_TOKEN
    )
    # Selling against a long position reduces worst case; a short beyond the limit is refused.
    assert r.check_order(Quote(TOKEN_UP, Side.SELL, 0.6, 100), [], {TOKEN_UP: 50}, NOW) is None
    assert (
        r.check_order(Quote(TOKEN_UP, Side.SELL, 0.6, 200), [], {TOKEN_UP: 50}, NOW) is Reject.POSITION_TOKEN
    )
    assert r.rejects[Reject.POSITION_TOKEN] == 2


def test_position_per_market_is_gross_over_tokens() -> None:
    r = engine(max_position_per_token=100, max_position_per_market=150)
    orders = [live(TOKEN_DOWN, Side.BUY, 0.4, 90)]
    assert r.check_order(Quote(TOKEN_UP, Side.BUY, 0.5, 60), orders, {}, NOW) is None
    assert r.check_order(Quote(TOKEN_UP, Side.BUY, 0.5, 61), orders, {}, NOW) is Reject.POSITION_MARKET


def test_open_orders_notional_and_bad_quotes() -> None:
    r = engine(max_open_orders=2, max_notional=30)
    two = [live(TOKEN_UP, Side.BUY, 0.1, 10), live(TOKEN_DOWN, Side.BUY, 0.1, 10)]
    assert r.check_order(Quote(TOKEN_UP, Side.SELL, 0.9, 1), two, {}, NOW) is Reject.OPEN_ORDERS
    one = two[:1]  # notional 1.0
    assert r.check_order(Quote(TOKEN_UP, Side.BUY, 0.5, 58), one, {}, NOW) is None
    assert r.check_order(Quote(TOKEN_UP, Side.BUY, 0.5, 59), one, {}, NOW) is Reject.NOTIONAL
    assert r.check_order(Quote(TOKEN_UP, Side.BUY, 1.0, 5), [], {}, NOW) is Reject.BAD_QUOTE
    assert r.check_order(Quote(TOKEN_UP, Side.BUY, 0.5, 0), [], {}, NOW) is Reject.BAD_QUOTE
    assert r.check_order(Quote("other", Side.BUY, 0.5, 5), [], {}, NOW) is Reject.UNKNOWN_MARKET


def test_order_rate_window() -> None:
    r = engine(max_orders_per_s=3)
    r.record_sent(NOW, 3)
    q = Quote(TOKEN_UP, Side.BUY, 0.5, 5)
    assert r.check_order(q, [], {}, NOW + 500_000_000) is Reject.ORDER_RATE
    assert r.check_order(q, [], {}, NOW + 1_000_000_001) is None


def test_near_expiry_stops_quoting() -> None:
    r = engine(stop_before_expiry_s=60)
    q = Quote(TOKEN_UP, Side.BUY, 0.5, 5)
    assert r.check_order(q, [], {}, NOW + int(3539e9)) is None
    assert r.check_order(q, [], {}, NOW + int(3541e9)) is Reject.NEAR_EXPIRY
    assert r.market_quotable(CONDITION, NOW + int(3600e9)) is Reject.NEAR_EXPIRY


def test_condition_kills_trip_and_clear() -> None:
    r = engine(binance_stale_ms=500)
    good = Health(NOW, NOW - 100_000_000, True, NOW, True, True)
    assert r.evaluate(good) == ([], [])
    stale = Health(NOW, NOW - 600_000_000, True, NOW, True, True)
    assert r.evaluate(stale) == ([KillReason.BINANCE_STALE], [])
    assert r.halted
    assert r.check_order(Quote(TOKEN_UP, Side.BUY, 0.5, 5), [], {}, NOW) is Reject.KILLED
    assert r.evaluate(stale) == ([], [])  # already active: not tripped twice
    assert r.evaluate(good) == ([], [KillReason.BINANCE_STALE])
    assert not r.halted
    everything_down = Health(NOW, 0, False, 0, False, False)
    tripped, _ = r.evaluate(everything_down)
    assert set(tripped) == {
        KillReason.BINANCE_STALE,
        KillReason.POLY_FEED_DOWN,
        KillReason.USER_WS_DOWN,
        KillReason.HEARTBEAT_FAILED,
    }


def test_latching_kill_needs_manual_clear() -> None:
    r = engine()
    assert r.trip(KillReason.MANUAL, "operator")
    assert not r.trip(KillReason.MANUAL)
    good = Health(NOW, NOW, True, NOW, True, True)
    r.evaluate(good)
    assert r.halted and KillReason.MANUAL in r.active
    assert r.clear(KillReason.MANUAL)
    assert not r.halted


def test_position_breach() -> None:
    r = engine(max_position_per_token=10, max_position_per_market=15)
    assert r.position_breach({TOKEN_UP: 10}) is None
    assert r.position_breach({TOKEN_UP: 10.5}) is not None
    assert r.position_breach({TOKEN_UP: 8, TOKEN_DOWN: 8}) is not None


def test_log_levels_tell_alarms_from_a_clean_stop(caplog) -> None:
    risk = RiskEngine(RiskLimits(), [])
    with caplog.at_level(logging.INFO, logger="polymm.executor.risk"):
        risk.trip(KillReason.BINANCE_STALE, "age_ms=900")
        risk.trip(KillReason.SIGTERM, "service stopping")
        risk.trip(KillReason.USER_WS_DOWN, "user channel disconnected")  # the stop closes it
    levels = [(r.levelname, r.getMessage().split()[0]) for r in caplog.records]
    assert levels == [("ERROR", "KILL"), ("WARNING", "KILL"), ("INFO", "while")]
