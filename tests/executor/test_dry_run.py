"""The whole executor in DRY_RUN: signs and journals everything, sends nothing (host is unreachable)."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import dataclasses
import time
from pathlib import Path

from polymm.executor.clob_gateway import GatewayConfig
from polymm.executor.engine import Executor, ExecutorConfig
from polymm.executor.overlap import OverlapMode
from polymm.executor.risk import KillReason, RiskLimits
from polymm.executor.types import MarketSpec, OrderState, Quote, Side
from polymm.executor.user_ws import MakerOrder, OrderEvent, TradeEvent

from ..conftest import eventually
from .conftest import CONDITION, TOKEN_DOWN, TOKEN_UP


def make(tmp_path: Path, key: str, market: MarketSpec, **limits: float) -> Executor:
    cfg = ExecutorConfig(
        gateway=GatewayConfig(host="http://127.0.0.1:9", private_key=key, dry_run=True),
        ws_url="ws://127.0.0.1:9/ws/user",
        markets=(market,),
        journal_dir=tmp_path,
        limits=RiskLimits(**limits),  # type: ignore[arg-type]
        require_poly_feed=False,
        supervise_s=0.01,
    )
    return Executor(cfg)


class BinanceTicks:
    """Stands in for the relay: a Binance update reaches the executor every 20 ms while on."""

    def __init__(self, ex: Executor) -> None:
        self.ex = ex
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            self.ex.on_binance()
            await asyncio.sleep(0.02)


async def test_dry_run_quotes_requotes_fills_and_kills(
    tmp_path: Path, private_key: str, market: MarketSpec
) -> None:
    ex = make(tmp_path, private_key, market, max_position_per_token=50)
    await ex.start()
    stop = asyncio.Event()
    ticks = BinanceTicks(ex)
    ticks.start()
    runner = asyncio.create_task(ex.run(stop))
    await eventually(lambda: ex._armed, 5, "armed")

    bid, ask = Quote(TOKEN_UP, Side.BUY, 0.45, 10), Quote(TOKEN_UP, Side.SELL, 0.55, 10)
    ex.submit({TOKEN_UP: [bid, ask]})
    await eventually(lambda: len(ex.orders.orders) == 2, 5, "two orders live")
    assert all(o.state is OrderState.LIVE for o in ex.orders.orders.values())
    first_ids = set(ex.orders.orders)

    # Move only the ask: the bid is kept, the ask is cancelled and replaced.
    ex.submit({TOKEN_UP: [bid, Quote(TOKEN_UP, Side.SELL, 0.56, 10)]})
    await eventually(lambda: {o.price for o in ex.orders.orders.values()} == {0.45, 0.56}, 5, "requote")
    assert len(first_ids & set(ex.orders.orders)) == 1
    assert ex.orders.stats.posted == 3 and ex.orders.stats.canceled == 1

    # A maker fill arrives on the user channel: position and remaining size update, at-most-once.
    bid_id = next(o.order_id for o in ex.orders.orders.values() if o.side is Side.BUY)
    trade = TradeEvent(
        "t1",
        "MATCHED",
        CONDITION,
        TOKEN_UP,
        "SELL",
        0.45,
        4,
        "0xtaker",
        "MAKER",
        "someone",
        (MakerOrder(bid_id, "dry-run", 4, 0.45, TOKEN_UP, "BUY"),),
        time.time_ns(),
    )
    ex.orders.on_trade_event(trade)
    ex.orders.on_trade_event(dataclasses.replace(trade, status="MINED"))  # later status: not booked twice
    assert ex.orders.positions.get(TOKEN_UP) == 4
    assert ex.orders.orders[bid_id].remaining == 6
    # The strategy still wants 10 on the bid: the partially filled order is replaced.
    ex.orders._wake.set()
    await eventually(lambda: bid_id not in ex.orders.orders and len(ex.orders.orders) == 2, 5, "refill")
    ex.orders.on_order_event(
        OrderEvent("UPDATE", "0xunknown", CONDITION, TOKEN_UP, "BUY", 0.4, 5, 0, "LIVE", "x", 0)
    )

    # A FAILED trade voids the fill.
    ex.orders.on_trade_event(dataclasses.replace(trade, status="FAILED"))
    assert ex.orders.positions.get(TOKEN_UP) == 0

    # Stale Binance -> kill: everything cancelled, nothing new placed while stale.
    await ticks.stop()
    await eventually(lambda: KillReason.BINANCE_STALE in ex.risk.active, 3, "stale kill")
    await eventually(lambda: not ex.orders.orders, 3, "orders cancelled")
    ex.submit({TOKEN_UP: [bid]})
    await asyncio.sleep(0.2)
    assert not ex.orders.orders
    # Fresh data clears the condition; the strategy's next submit quotes again.
    ticks.start()
    await eventually(lambda: not ex.risk.halted, 3, "kill cleared")
    ex.submit({TOKEN_UP: [bid]})
    await eventually(lambda: len(ex.orders.orders) == 1, 3, "quoting again")

    # Manual kill latches.
    ex.kill(KillReason.MANUAL, "test")
    await eventually(lambda: not ex.orders.orders, 3, "manual kill cancels")
    ex.submit({TOKEN_UP: [bid]})
    await asyncio.sleep(0.1)
    assert not ex.orders.orders and ex.risk.halted
    assert ex.resume(KillReason.MANUAL)
    ex.submit({TOKEN_UP: [bid]})
    await eventually(lambda: len(ex.orders.orders) == 1, 3, "resumed")

    stop.set()
    await asyncio.wait_for(runner, 10)
    await ticks.stop()
    assert ex.gateway.requests == 0  # nothing left the process

    rows = list(csv.DictReader(ex.journal.path_for(time.time_ns()).open()))
    events = [r["event"] for r in rows]
    for needed in (
        "start",
        "armed",
        "order_sent",
        "ack",
        "cancel_sent",
        "canceled",
        "fill",
        "fill_void",
        "kill",
        "kill_cleared",
        "cancel_all_sent",
        "stop",
    ):
        assert needed in events, needed
    sent = [r for r in rows if r["event"] == "order_sent"]
    assert all("dry_run=True" in r["detail"] and r["order_id"].startswith("0x") for r in sent)


async def test_risk_limit_refuses_orders(tmp_path: Path, private_key: str, market: MarketSpec) -> None:
    ex = make(tmp_path, private_key, market, max_position_per_token=15, max_open_orders=3)
    await ex.start()
    ex.on_binance()
    await ex.orders.reconcile()
    ex.orders.submit(
        {
            TOKEN_UP: [Quote(TOKEN_UP, Side.BUY, 0.4, 10), Quote(TOKEN_UP, Side.BUY, 0.39, 10)],
            TOKEN_DOWN: [Quote(TOKEN_DOWN, Side.BUY, 0.3, 5)] * 3,
        }
    )
    await ex.orders.converge()
    assert ex.orders.stats.risk_rejects == 2  # second UP bid (position) and third DOWN bid (open orders)
    assert len(ex.orders.orders) == 3
    await ex.gateway.close()
    await asyncio.to_thread(ex.journal.close)


async def test_quotes_held_by_a_kill_go_out_as_soon_as_it_clears(
    tmp_path: Path, private_key: str, market: MarketSpec
) -> None:
    """Quotes submitted while halted are placed on arming / on clearing, not on the idle timer."""
    ex = make(tmp_path, private_key, market)
    converge_loop = ex.orders.run
    # An idle timer longer than the test: only an explicit wake-up can place the orders.
    ex.orders.run = lambda stop, idle_s=60.0: converge_loop(stop, idle_s)  # type: ignore[method-assign]
    await ex.start()
    stop = asyncio.Event()
    runner = asyncio.create_task(ex.run(stop))
    quotes = [Quote(TOKEN_UP, Side.BUY, 0.45, 10), Quote(TOKEN_UP, Side.SELL, 0.55, 10)]
    ex.submit({TOKEN_UP: quotes})  # Binance has never been seen: held back
    await asyncio.sleep(0.1)
    assert not ex.orders.orders

    ticks = BinanceTicks(ex)
    ticks.start()
    await eventually(lambda: len(ex.orders.orders) == 2, 5, "placed on arming")

    await ticks.stop()
    await eventually(lambda: not ex.orders.orders, 5, "stale Binance cancels everything")
    ex.submit({TOKEN_UP: quotes})  # the strategy re-quotes while still halted
    await asyncio.sleep(0.1)
    assert not ex.orders.orders

    ticks.start()
    await eventually(lambda: len(ex.orders.orders) == 2, 5, "placed when the kill clears")
    assert KillReason.BINANCE_STALE not in ex.risk.active

    stop.set()
    await runner
    await ticks.stop()


async def test_slow_signing_is_done_while_the_cancel_is_in_flight(
    tmp_path: Path, private_key: str, market: MarketSpec
) -> None:
    ex = make(tmp_path, private_key, market)
    ex.orders.overlap = OverlapMode.NEVER  # presigning is the cancel-first path's (overlap signs at once)
    await ex.start()
    signed_during_cancel: list[bool] = []
    cancel, sign = ex.gateway.cancel, ex.gateway.sign
    in_cancel = False

    async def slow_cancel(ids: list[str]) -> object:
        nonlocal in_cancel
        in_cancel = True
        await asyncio.sleep(0.05)  # the round trip to the venue
        in_cancel = False
        return await cancel(ids)

    async def watched_sign(quotes: list[Quote]) -> object:
        signed_during_cancel.append(in_cancel)
        return await sign(quotes)

    ex.gateway.cancel, ex.gateway.sign = slow_cancel, watched_sign  # type: ignore[method-assign]
    ticks = BinanceTicks(ex)
    ticks.start()
    stop = asyncio.Event()
    runner = asyncio.create_task(ex.run(stop))
    await eventually(lambda: ex._armed, 5, "armed")
    ex.submit({TOKEN_UP: [Quote(TOKEN_UP, Side.BUY, 0.45, 10)]})
    await eventually(lambda: len(ex.orders.orders) == 1, 5, "placed")

    ex.gateway.sign_ms_median = 0.1  # cheap: sign after the cancel, which goes out uncontended
    ex.submit({TOKEN_UP: [Quote(TOKEN_UP, Side.BUY, 0.44, 10)]})
    await eventually(lambda: [o.price for o in ex.orders.orders.values()] == [0.44], 5, "requoted")
    ex.gateway.sign_ms_median = 5.0  # expensive: overlap it with the cancel's round trip
    ex.submit({TOKEN_UP: [Quote(TOKEN_UP, Side.BUY, 0.43, 10)]})
    await eventually(lambda: [o.price for o in ex.orders.orders.values()] == [0.43], 5, "requoted")
    assert signed_during_cancel == [False, False, True]

    stop.set()
    await runner
    await ticks.stop()
