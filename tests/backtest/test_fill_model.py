"""Hand-computed cases of the latency and queue model, each through the whole backtester: a lake
written by the collector's writer, the executor's rules, a scripted strategy."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from polymm.backtest.report import write_outputs
from polymm.backtest.run import RunOptions, run_backtest
from tests.backtest import scripted
from tests.backtest.lakes import MS, NO, T0, YES, LakeRows, S, markets_toml, write_lake

BIDS = [(0.48, 100.0), (0.47, 200.0)]
ASKS = [(0.52, 100.0), (0.53, 50.0)]


def base_rows(seconds: int = 10) -> LakeRows:
    """Binance every 100 ms and both books at T0 (both feeds fresh: the executor arms at once)."""
    r = LakeRows()
    r.bbo_stream(T0, T0 + seconds * S, 100 * MS)
    r.book(T0, YES, BIDS, ASKS)
    r.book(T0, NO, BIDS, ASKS)
    for i in range(1, seconds):  # Polymarket stays fresh (POLY_FEED_STALE_MS), book unchanged
        r.book(T0 + i * S + 1 * MS, NO, BIDS, ASKS)
    return r


def run(tmp_path: Path, rows: LakeRows, script: list, rtt_ms: float = 10.0) -> tuple[list[dict], list[dict]]:
    scripted.SCRIPT[:] = script
    lake = write_lake(tmp_path / "data", rows)
    opts = RunOptions(
        lake=str(lake),
        start_ns=T0,
        end_ns=T0 + 3600 * S,
        markets_path=markets_toml(tmp_path / "m.toml"),
        latency=f"constant:{rtt_ms}",
        strategy="tests.backtest.scripted:factory",
    )
    write_outputs(run_backtest(opts), tmp_path / "out")
    fills = pq.read_table(tmp_path / "out" / "fills.parquet").to_pylist()
    orders = pq.read_table(tmp_path / "out" / "orders.parquet").to_pylist()
    return fills, orders


def test_queue_of_100_then_trades_of_60_and_50_fill_10_at_the_second(tmp_path: Path) -> None:
    rows = base_rows()
    rows.trade(T0 + 2 * S, YES, 0.48, 60, "SELL")  # queue ahead 100 -> 40
    rows.trade(T0 + 3 * S, YES, 0.48, 50, "SELL")  # 40 more ahead, then 10 for us
    fills, orders = run(tmp_path, rows, [(T0 + 1 * S, {YES: [("BUY", 0.48, 10)]})])
    assert [o["queue_ahead"] for o in orders] == [100.0]
    assert [(f["ts_ns"], f["price"], f["size"], f["side"]) for f in fills] == [
        (T0 + 3 * S, 0.48, 10.0, "BUY")
    ]
    assert orders[0]["status"] == "filled"
    assert [f.size for _, f in scripted.FILLS] == [10.0]  # the strategy heard of it (on_fill)


def test_book_decrease_and_its_trade_count_once(tmp_path: Path) -> None:
    """The same 60 and 50 trades, each with the book update it causes arriving first: still 10
    at the second trade, not earlier (the decrease and the trade are one event)."""
    rows = base_rows()
    rows.book(T0 + 2 * S - 1 * MS, YES, [(0.48, 40.0), (0.47, 200.0)], ASKS)
    rows.trade(T0 + 2 * S, YES, 0.48, 60, "SELL")
    rows.book(T0 + 3 * S - 1 * MS, YES, [(0.47, 200.0)], ASKS)
    rows.trade(T0 + 3 * S, YES, 0.48, 50, "SELL")
    fills, _ = run(tmp_path, rows, [(T0 + 1 * S, {YES: [("BUY", 0.48, 10)]})])
    assert [(f["ts_ns"], f["size"]) for f in fills] == [(T0 + 3 * S, 10.0)]


def test_partial_fill_then_rest(tmp_path: Path) -> None:
    rows = base_rows()
    rows.trade(T0 + 2 * S, YES, 0.48, 104, "SELL")  # 100 ahead, 4 for us
    rows.trade(T0 + 3 * S, YES, 0.48, 50, "SELL")  # our remaining 6
    fills, orders = run(tmp_path, rows, [(T0 + 1 * S, {YES: [("BUY", 0.48, 10)]})])
    assert [(f["ts_ns"], f["size"]) for f in fills] == [(T0 + 2 * S, 4.0), (T0 + 3 * S, 6.0)]
    assert orders[0]["filled"] == 10.0


def test_cancel_sent_5ms_before_a_fill_still_fills(tmp_path: Path) -> None:
    """RTT 10 ms: a cancel sent at t only takes effect for events from t + 10 ms on. A trade 5 ms
    after the cancel was sent still fills us; the fill notice arrives 3 ms later than that trade
    would have been too late to stop it either way."""
    rows = base_rows()
    t_cancel = T0 + 2 * S
    rows.trade(t_cancel + 5 * MS, YES, 0.49, 10, "SELL")  # our 0.49 bid is alone at its level
    fills, orders = run(
        tmp_path,
        rows,
        [(T0 + 1 * S, {YES: [("BUY", 0.49, 10)]}), (t_cancel, {YES: []})],
    )
    assert [(f["ts_ns"], f["size"]) for f in fills] == [(t_cancel + 5 * MS, 10.0)]
    assert orders[0]["cancel_sent_ns"] == t_cancel
    assert orders[0]["status"] == "filled"


def test_cancel_that_took_effect_prevents_the_fill(tmp_path: Path) -> None:
    rows = base_rows()
    t_cancel = T0 + 2 * S
    rows.trade(t_cancel + 11 * MS, YES, 0.49, 10, "SELL")
    fills, orders = run(
        tmp_path,
        rows,
        [(T0 + 1 * S, {YES: [("BUY", 0.49, 10)]}), (t_cancel, {YES: []})],
    )
    assert fills == []
    assert orders[0]["status"] == "canceled" and orders[0]["end_ns"] == t_cancel + 10 * MS


def test_post_that_would_cross_is_rejected(tmp_path: Path) -> None:
    rows = base_rows()
    rows.trade(T0 + 2 * S, YES, 0.52, 50, "SELL")
    fills, orders = run(tmp_path, rows, [(T0 + 1 * S, {YES: [("BUY", 0.52, 10)]})])
    assert [o["status"] for o in orders] == ["rejected_cross"]
    assert fills == []


def test_post_crossing_a_book_that_moved_during_its_latency_is_rejected(tmp_path: Path) -> None:
    rows = base_rows()
    rows.book(T0 + 1 * S + 5 * MS, YES, BIDS, [(0.49, 30.0), (0.52, 100.0)])  # before our post lands
    fills, orders = run(tmp_path, rows, [(T0 + 1 * S, {YES: [("BUY", 0.49, 10)]})])
    assert [o["status"] for o in orders] == ["rejected_cross"]
    assert fills == []


@pytest.mark.parametrize(("trade_after_ms", "fills_expected"), [(39, 0), (40, 1)])
def test_entry_latency_delays_resting(tmp_path: Path, trade_after_ms: int, fills_expected: int) -> None:
    rows = base_rows()
    t_post = T0 + 1 * S
    rows.trade(t_post + trade_after_ms * MS, YES, 0.49, 10, "SELL")
    fills, orders = run(tmp_path, rows, [(t_post, {YES: [("BUY", 0.49, 10)]})], rtt_ms=40)
    assert orders[0]["rest_ns"] == t_post + 40 * MS
    assert len(fills) == fills_expected


def test_trade_through_our_price_fills_the_rest(tmp_path: Path) -> None:
    rows = base_rows()
    rows.trade(T0 + 2 * S, YES, 0.47, 5, "SELL")  # a sell at 0.47 went through our 0.48 level
    fills, _ = run(tmp_path, rows, [(T0 + 1 * S, {YES: [("BUY", 0.48, 10)]})])
    assert [(f["price"], f["size"]) for f in fills] == [(0.48, 10.0)]


def test_no_bid_fills_on_the_no_book(tmp_path: Path) -> None:
    rows = base_rows()
    rows.trade(T0 + 2 * S, NO, 0.49, 10, "SELL")
    rows.trade(T0 + 2 * S, YES, 0.49, 10, "SELL")  # other token: not ours
    fills, _ = run(tmp_path, rows, [(T0 + 1 * S, {NO: [("BUY", 0.49, 10)]})])
    assert [(f["token_id"], f["size"]) for f in fills] == [(NO, 10.0)]


def test_order_rate_limit_holds_back_and_then_sends_the_rest(tmp_path: Path) -> None:
    """The executor's order bucket (40/s, burst 60): 80 orders at once go out as 60 now and the
    other 20 as tokens come back, in later passes, none lost and none twice."""
    from polymm.executor.risk import RiskLimits

    rows = base_rows()
    quotes = [("BUY", round(0.01 * i, 2), 5.0) for i in range(1, 41)]
    scripted.SCRIPT[:] = [(T0 + 1 * S, {YES: quotes, NO: quotes})]
    lake = write_lake(tmp_path / "data", rows)
    opts = RunOptions(
        lake=str(lake), start_ns=T0, end_ns=T0 + 3600 * S, markets_path=markets_toml(tmp_path / "m.toml"),
        latency="constant:10", strategy="tests.backtest.scripted:factory",
        limits=RiskLimits(max_open_orders=200, max_orders_per_s=1000, max_notional=10_000),
    )  # fmt: skip
    res = run_backtest(opts)
    sent = sorted(r.sent_ns for r in res.bt.records.values())
    assert len(sent) == 80
    assert sent.count(T0 + 1 * S) == 60
    assert sent[-1] - sent[0] < 700_000_000  # 20 more at 40/s
    assert res.bt.counters.rate_limited > 0
