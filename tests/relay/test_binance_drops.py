"""Nothing the Binance client receives disappears silently: what it does not use is counted per
reason and logged at most once per interval; microsecond times are normalised to milliseconds.
Against the Binance simulator over a real WebSocket."""

from __future__ import annotations

import logging
import time

from polymm.binance.client import BinanceFeed
from polymm.binance.parse import RAW_PAYLOAD
from polymm.binance.streams import plan_connections
from polymm.relay.events import Bbo, Notice, Trade
from polymm.sim.binance_ws import BinanceSim
from tests.conftest import eventually, running


def feed_for(sim: BinanceSim, events: list[Bbo | Trade]) -> BinanceFeed:
    (plan,) = plan_connections(sim.market, sim.url, ["btcusdt"], True)
    notices: list[Notice] = []
    return BinanceFeed(plan, events.append, lambda *a: notices.append(a))  # type: ignore[arg-type]


async def test_raw_payloads_are_counted_and_logged_once_per_interval(caplog):
    caplog.set_level(logging.INFO, logger="polymm.binance")
    events: list[Bbo | Trade] = []
    async with BinanceSim(rate_hz=0) as sim:
        feed = feed_for(sim, events)
        async with running(feed.run):
            await sim.wait_connections(1)
            trade = sim.trade_message(sim.symbol("btcusdt"), 97000.0, 0.5, False)
            for _ in range(5):
                await sim.push_raw(sim.unwrapped(trade))  # {"e":"trade","s":"BTCUSDT",...} unwrapped
            await sim.push_raw('{"stream":"btcusdt@depth","data":{"s":"BTCUSDT"}}')
            await sim.push_trade("btcusdt", 97001.0, 0.25)  # a good one after them still arrives
            await eventually(lambda: len(events) == 1, what="the enveloped trade")
    stats = feed.stats
    assert stats.dropped == 6 and stats.parse_errors == 0
    assert stats.dropped_by == {RAW_PAYLOAD.reason: 5, "message of unhandled stream kind depth": 1}
    assert [e.price for e in events] == [97001.0]  # type: ignore[union-attr]
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    raw_lines = [m for m in lines if "raw payload" in m]
    assert len(raw_lines) == 1 and "spot-1 dropped a raw payload" in raw_lines[0], lines  # rate-limited
    assert "(1 so far)" in raw_lines[0] and '"e":"trade"' in raw_lines[0]
    assert len([m for m in lines if "unhandled stream kind depth" in m]) == 1  # one line per reason
    assert not [r for r in caplog.records if "control event" in r.getMessage()]  # not a control message


async def test_microsecond_times_are_normalised_to_ms(caplog):
    """Spot streams opened with timeUnit=MICROSECOND (the sim sends us times throughout)."""
    caplog.set_level(logging.INFO, logger="polymm.binance")
    events: list[Bbo | Trade] = []
    async with BinanceSim(rate_hz=0, time_unit="us") as sim:
        feed = feed_for(sim, events)
        async with running(feed.run):
            await sim.wait_connections(1)
            before_ms = time.time_ns() // 1_000_000
            await sim.push_trade("btcusdt", 97000.0, 0.5)
            await sim.push_trade("btcusdt", 97000.5, 0.5)
            await sim.push_bbo("btcusdt", 96999.0, 97001.0)  # spot bookTicker: no time at all
            after_ms = time.time_ns() // 1_000_000
            await eventually(lambda: len(events) == 3, what="events")
    trades = [e for e in events if type(e) is Trade]
    assert len(trades) == 2
    for t in trades:
        assert before_ms <= t.exch_ts <= after_ms and before_ms <= t.trade_ts <= after_ms
    assert [e.exch_ts for e in events if type(e) is Bbo] == [0]
    assert feed.stats.micro_times == 2 and feed.stats.dropped == 0
    lines = [r.getMessage() for r in caplog.records if "microseconds" in r.getMessage()]
    assert lines == ["binance spot-1 sends times in microseconds (timeUnit=MICROSECOND): normalised to ms"]
