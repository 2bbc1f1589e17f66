"""trading-executor end to end on loopback: local Binance -> binance-sender -> relay ->
executor -> real py-clob-client-v2 -> local CLOB (which checks signatures and auth headers),
with the Polymarket book coming from the CLOB's own market channel."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from eth_account import Account

from polymm.executor.config import ExecutorServiceConfig
from polymm.executor.risk import KillReason
from polymm.executor.service import TradingExecutor
from polymm.executor.strategy_bridge import build_strategy
from polymm.executor.types import Fill, MarketSpec, Quote, Side
from polymm.polymarket.book import OrderBook
from polymm.relay.events import Bbo
from polymm.service.config import Env
from polymm.sim.binance_ws import BinanceSim
from polymm.sim.clob import ClobSim
from polymm.sim.markets_file import write_above_market
from tests.conftest import eventually, running
from tests.executor.conftest import COND, NO, YES
from tests.relay.conftest import running_sender, sender_config


class FollowBinance:
    """A deliberately simple strategy for plumbing tests: YES fair value moves 1 cent per 10 USD of
    Binance mid around 100k; bid YES and bid NO (i.e. offer YES) 3 cents either side."""

    def __init__(self) -> None:
        self.fair: float | None = None
        self.fills: list[Fill] = []
        self.stopped = False

    def quotes(self) -> dict[str, list[Quote]]:
        if self.fair is None or self.stopped:
            return {YES: [], NO: []}
        bid = round(self.fair - 0.03, 2)
        no_bid = round(1 - (self.fair + 0.03), 2)
        return {YES: [Quote(YES, Side.BUY, bid, 10.0)], NO: [Quote(NO, Side.BUY, no_bid, 10.0)]}

    def on_binance_bbo(self, bbo: Bbo) -> Mapping[str, Sequence[Quote]] | None:
        fair = min(0.9, max(0.1, 0.5 + ((bbo.bid + bbo.ask) / 2 - 100_000) / 1000))
        if self.fair is not None and abs(fair - self.fair) < 0.005:
            return None  # re-quote only on a real move
        self.fair = fair
        return self.quotes()

    def on_polymarket_book(self, token_id: str, book: OrderBook, recv_ts: int) -> None:
        return None

    def on_fill(self, fill: Fill) -> Mapping[str, Sequence[Quote]] | None:
        self.fills.append(fill)
        return self.quotes()

    def on_timer(self, now_ns: int) -> None:
        return None


def executor_env(certs: Path, tmp: Path, clob: ClobSim, **extra: str) -> Env:
    markets = tmp / "markets.toml"
    markets.write_text("# markets are given to the service directly in this test\n")
    return Env({
        "LISTEN_HOST": "127.0.0.1", "LISTEN_PORT": "0", "CERT_DIR": str(certs),
        "MARKETS_CONFIG": str(markets),
        "CLOB_URL": clob.url, "CLOB_WS_URL": clob.ws_url, "DRY_RUN": "false",
        "POLY_PRIVATE_KEY": Account.create().key.hex(), "JOURNAL_DIR": str(tmp / "journal"),
        "BINANCE_STALE_MS": "1500", "LINK_DEAD_SECS": "2", "STRATEGY_TIMER_SECS": "0.05", **extra,
    })  # fmt: skip


@asynccontextmanager
async def running_executor(env: Env, strategy: FollowBinance) -> AsyncIterator[TradingExecutor]:
    cfg = ExecutorServiceConfig.from_env(env)
    market = MarketSpec(COND, (YES, NO), end_ts_s=time.time() + 3600, tick_size="0.01")
    executor = TradingExecutor(cfg, strategy, [market])
    async with running(executor.run, 30):
        await eventually(lambda: executor.receiver.port != 0 and executor.feed.connected, what="executor up")
        yield executor


def our_orders(clob: ClobSim, executor: TradingExecutor) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {YES: [], NO: []}
    for order in clob.orders_of(executor.engine.gateway.api_key):
        out[order["asset_id"]].append(float(order["price"]))
    return out


@asynccontextmanager
async def production_chain(
    certs: Path, tmp: Path, clob: ClobSim, strategy: FollowBinance, **env: str
) -> AsyncIterator[tuple[BinanceSim, TradingExecutor]]:
    """Local Binance -> binance-sender -> executor -> local CLOB, with the relay connected."""
    async with (
        BinanceSim(rate_hz=0) as binance,
        running_executor(executor_env(certs, tmp, clob, **env), strategy) as executor,
        running_sender(sender_config(certs, executor.receiver.port, binance, SYMBOLS="btcusdt")),
    ):
        await binance.wait_connections(1)
        await eventually(lambda: executor.receiver.connected_senders == 1)
        yield binance, executor


async def test_quotes_follow_binance_and_fills_move_position(certs: Path, tmp_path: Path, clob: ClobSim):
    strategy = FollowBinance()
    async with production_chain(certs, tmp_path, clob, strategy) as (binance, executor):

        async def tick(mid: float) -> None:
            await binance.push_bbo("btcusdt", mid - 0.5, mid + 0.5)

        await tick(100_000)  # fair 0.50 -> bid YES 0.47, bid NO 0.47 (= offer YES 0.53)
        await eventually(lambda: our_orders(clob, executor) == {YES: [0.47], NO: [0.47]}, what="first quotes")
        await tick(100_050)  # fair 0.55 -> quotes move up by 5 cents
        await eventually(lambda: our_orders(clob, executor) == {YES: [0.52], NO: [0.42]}, what="requote")
        stats = executor.engine.orders.stats
        assert (stats.posted, stats.cancels_sent, stats.rejected) == (4, 2, 0)  # one cancel/replace per side
        await tick(100_052)  # a move below the strategy's threshold: no churn
        await asyncio.sleep(0.3)
        assert stats.posted == 4

        # an outside seller hits our YES bid: a real fill through the user channel
        filled = clob.take(YES, "SELL", 0.52, 6)
        assert filled == 6
        await eventually(
            lambda: executor.engine.orders.positions.get(YES) == 6, what="position from the fill"
        )
        assert strategy.fills and strategy.fills[0].price == 0.52
        assert executor.cash == pytest.approx(-0.52 * 6)  # bought 6 YES at 0.52
        assert "pos" in executor.status_text()

        # Binance goes quiet: stale signal -> everything cancelled, nothing new
        await eventually(lambda: our_orders(clob, executor) == {YES: [], NO: []}, timeout_s=6,
                         what="stale Binance cancels all")  # fmt: skip
        assert KillReason.BINANCE_STALE.value in executor.status_text()
    journal = "".join(p.read_text() for p in (tmp_path / "journal").glob("*.csv"))
    for event in ("order_sent", "fill", "kill"):
        assert event in journal, event


async def test_polymarket_feed_drop_cancels_then_resumes(certs: Path, tmp_path: Path, clob: ClobSim):
    strategy = FollowBinance()
    chain = production_chain(certs, tmp_path, clob, strategy, BINANCE_STALE_MS="60000")
    async with chain as (binance, executor):
        await binance.push_bbo("btcusdt", 99_999.5, 100_000.5)
        await eventually(lambda: our_orders(clob, executor) == {YES: [0.47], NO: [0.47]}, what="quotes")
        clob.drop_ws()  # market and user channels both drop
        await eventually(lambda: our_orders(clob, executor) == {YES: [], NO: []}, what="cancel on feed loss")
        await eventually(lambda: executor.feed.connected and executor.engine.orders.reconciled, what="resync")
        await binance.push_bbo("btcusdt", 100_029.5, 100_030.5)  # a new decision after the outage
        await eventually(
            lambda: our_orders(clob, executor) == {YES: [0.50], NO: [0.44]}, what="quoting again"
        )


async def test_sigterm_cancels_everything(certs: Path, tmp_path: Path, clob: ClobSim):
    strategy = FollowBinance()
    env = executor_env(certs, tmp_path, clob, BINANCE_STALE_MS="60000")
    async with BinanceSim(rate_hz=0) as binance:
        async with running_executor(env, strategy) as executor:
            async with running_sender(
                sender_config(certs, executor.receiver.port, binance, SYMBOLS="btcusdt")
            ):
                await binance.wait_connections(1)
                await eventually(lambda: executor.receiver.connected_senders == 1)
                await binance.push_bbo("btcusdt", 99_999.5, 100_000.5)
                await eventually(lambda: len(our_orders(clob, executor)[YES]) == 1, what="quotes")
            api_key = executor.engine.gateway.api_key
        assert clob.orders_of(api_key) == []  # the stop cancelled every resting order


async def test_risk_limit_blocks_new_orders(certs: Path, tmp_path: Path, clob: ClobSim):
    strategy = FollowBinance()
    limits = {"BINANCE_STALE_MS": "60000", "MAX_POSITION_PER_TOKEN": "5"}
    chain = production_chain(certs, tmp_path, clob, strategy, **limits)
    async with chain as (binance, executor):
        await binance.push_bbo("btcusdt", 99_999.5, 100_000.5)
        # 10-share quotes could take the position to 10 > 5: refused before anything is signed
        await eventually(lambda: executor.engine.orders.stats.risk_rejects >= 2, what="risk rejects")
        await asyncio.sleep(0.3)
        assert our_orders(clob, executor) == {YES: [], NO: []}
        assert clob.counters["orders_posted"] == 0


async def test_api_errors_are_survived_without_a_retry_storm(certs: Path, tmp_path: Path, clob: ClobSim):
    strategy = FollowBinance()
    chain = production_chain(certs, tmp_path, clob, strategy, BINANCE_STALE_MS="60000")
    async with chain as (binance, executor):
        before = clob.counters["http_requests"]
        clob.fail_next(3, status=503, path="/orders", method="POST")
        clob.fail_next(2, status=429, path="/order", method="POST", retry_after=0.5)
        await binance.push_bbo("btcusdt", 99_999.5, 100_000.5)
        # the errors pass, the quotes get through in the end ...
        await eventually(lambda: our_orders(clob, executor) == {YES: [0.47], NO: [0.47]}, timeout_s=20,
                         what="quotes after API errors")  # fmt: skip
        # ... without hammering the API: a handful of requests, not hundreds
        assert clob.counters["http_requests"] - before < 60
        assert executor.engine.gateway.errors  # each failure was counted by kind
        assert not executor.engine.risk.halted


def on_grid(prices: list[float], tick: float) -> bool:
    return all(abs(p / tick - round(p / tick)) < 1e-9 for p in prices)


@asynccontextmanager
async def reference_chain(
    certs: Path, tmp: Path, tick_size: float = 0.01
) -> AsyncIterator[tuple[ClobSim, BinanceSim, TradingExecutor]]:
    """The production chain with the reference strategy from a markets file, on its own CLOB,
    quoting one "BTC above 100k in an hour" market; Binance sits at 100k once connected."""
    clob = ClobSim(heartbeat_timeout_s=3.0, trade_confirm_delay_s=0.05)
    clob.add_market(COND, YES, NO, tick_size=tick_size, min_size=5)
    clob.start_in_thread()
    markets = write_above_market(
        tmp / "reference-markets.toml", name="btc-above-100k", condition_id=COND, yes_token=YES,
        no_token=NO, strike=100_000, expires_in_s=3600, tick_size=tick_size, min_edge=0.025, quote_size=10,
    )  # fmt: skip
    env = executor_env(certs, tmp, clob, MARKETS_CONFIG=str(markets), BINANCE_STALE_MS="60000")
    strategy, specs = build_strategy(markets)
    executor = TradingExecutor(ExecutorServiceConfig.from_env(env), strategy, specs)
    try:
        async with BinanceSim(rate_hz=0) as binance, running(executor.run, 30):
            await eventually(lambda: executor.receiver.port != 0 and executor.feed.connected, what="up")
            async with running_sender(
                sender_config(certs, executor.receiver.port, binance, SYMBOLS="btcusdt")
            ):
                await binance.wait_connections(1)
                await eventually(lambda: executor.receiver.connected_senders == 1)
                await binance.push_bbo("btcusdt", 99_999.5, 100_000.5)
                yield clob, binance, executor
    finally:
        clob.stop_thread()


def resting_prices(clob: ClobSim, executor: TradingExecutor) -> list[float]:
    return [p for side in our_orders(clob, executor).values() for p in side]


async def test_tick_size_change_regrids_the_reference_strategy(certs: Path, tmp_path: Path):
    """Polymarket coarsens the tick (0.001 -> 0.01): quotes move onto the new grid at once, and
    nothing is sent off-grid (the CLOB would reject it)."""
    async with reference_chain(certs, tmp_path, tick_size=0.001) as (clob, _binance, executor):

        def prices() -> list[float]:
            return resting_prices(clob, executor)

        await eventually(lambda: len(prices()) == 2, what="quotes on the fine grid")
        assert not on_grid(prices(), 0.01)  # the test means something: fine-grid prices
        clob.set_tick_size(YES, 0.01)
        await eventually(lambda: len(prices()) == 2 and on_grid(prices(), 0.01), what="re-gridded")
        # The strategy itself asks for on-grid prices (the client would otherwise round them,
        # and the diff would see desired != live and cancel/replace on every pass).
        wanted = [q.price for qs in executor.engine.orders._desired.values() for q in qs]
        assert len(wanted) == 2 and on_grid(wanted, 0.01)
        posted = executor.engine.orders.stats.posted
        await asyncio.sleep(0.3)
        assert executor.engine.orders.stats.posted == posted  # no churn
        assert clob.rejects["tick_size"] == 0


async def test_quotes_return_after_a_kill_clears_without_a_price_move(certs: Path, tmp_path: Path):
    """The Polymarket feed drops (kill: all cancelled) and comes back while Binance has not moved:
    the strategy must quote again at once, not wait for fair value to move past its threshold."""
    async with reference_chain(certs, tmp_path) as (clob, binance, executor):
        await eventually(lambda: len(resting_prices(clob, executor)) == 2, what="quotes")
        before = sorted(resting_prices(clob, executor))
        clob.drop_ws()
        await eventually(lambda: not resting_prices(clob, executor), what="cancel on feed loss")
        await eventually(lambda: not executor.engine.risk.halted, what="kill cleared")
        await binance.push_bbo("btcusdt", 99_999.5, 100_000.5)  # the same price as before
        await eventually(lambda: sorted(resting_prices(clob, executor)) == before, what="quoting again")


async def test_a_strategy_that_raises_is_counted_and_skipped(certs: Path, tmp_path: Path, clob: ClobSim):
    class Flaky(FollowBinance):
        def on_binance_bbo(self, bbo: Bbo) -> Mapping[str, Sequence[Quote]] | None:
            if bbo.bid < 50_000:
                raise ValueError("a bug in user code")
            return super().on_binance_bbo(bbo)

    chain = production_chain(certs, tmp_path, clob, Flaky(), BINANCE_STALE_MS="60000")
    async with chain as (binance, executor):
        await binance.push_bbo("btcusdt", 1.0, 2.0)  # the strategy raises on this one
        await eventually(lambda: executor.strategy_errors == 1, what="error counted")
        await binance.push_bbo("btcusdt", 99_999.5, 100_000.5)  # ... and the service carries on
        await eventually(lambda: our_orders(clob, executor) == {YES: [0.47], NO: [0.47]}, what="quotes")
